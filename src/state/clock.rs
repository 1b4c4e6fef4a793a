//! Times in the state that lie in the future (a clock stepped back, a state copied from
//! another machine, a hand edit): each is taken as "now", so no cooldown, back-off or
//! timer can last longer than its configured length from the present.

use super::State;
use super::time::Timestamp;
use std::collections::BTreeMap;

/// Sets every time in `state` that is later than `now` to `now`; returns one warning per
/// key changed, naming it (`last_scale_up`, `provisioning[k3s-worker-3].started_at`, ...).
pub fn clamp_future(state: &mut State, now: Timestamp) -> Vec<String> {
    let mut warned = Vec::new();
    let mut one = |key: String, t: &mut Timestamp| {
        if *t > now {
            warned.push(format!(
                "state key {key} is in the future ({t}, now {now}): taken as now"
            ));
            *t = now;
        }
    };
    let singles = [
        ("last_scale_up", &mut state.last_scale_up),
        ("last_scale_down", &mut state.last_scale_down),
        ("last_scale_up_failure", &mut state.last_scale_up_failure),
        (
            "last_scale_down_failure",
            &mut state.last_scale_down_failure,
        ),
        ("low_since", &mut state.low_since),
    ];
    for (key, t) in singles {
        if let Some(t) = t.as_mut() {
            one(key.to_string(), t);
        }
    }
    for p in &mut state.provisioning {
        one(
            format!("provisioning[{}].started_at", p.name),
            &mut p.started_at,
        );
    }
    let maps = [
        ("unneeded_since", &mut state.unneeded_since),
        ("unready_since", &mut state.unready_since),
        ("fits_since", &mut state.fits_since),
        ("pod_backoff", &mut state.pod_backoff),
    ];
    for (key, map) in maps {
        clamp_map(key, map, &mut one);
    }
    for e in &mut state.posted {
        one(format!("posted[{}].first", e.key), &mut e.first);
        one(format!("posted[{}].written", e.key), &mut e.written);
    }
    if let Some(a) = state.acting.as_mut() {
        one("acting.started_at".to_string(), &mut a.started_at);
    }
    warned
}

fn clamp_map(
    key: &str,
    map: &mut BTreeMap<String, Timestamp>,
    one: &mut impl FnMut(String, &mut Timestamp),
) {
    for (name, t) in map.iter_mut() {
        one(format!("{key}[{name}]"), t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Provisioning;

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
    const PAST: Timestamp = Timestamp::from_secs(1_799_999_000);
    // 2099-01-01.
    const FUTURE: Timestamp = Timestamp::from_secs(4_070_908_800);

    #[test]
    fn each_time_in_the_future_is_now_and_named() {
        type Set = fn(&mut State, Timestamp);
        let cases: [(&str, Set); 8] = [
            ("last_scale_up", |s, t| s.last_scale_up = Some(t)),
            ("last_scale_down", |s, t| s.last_scale_down = Some(t)),
            ("last_scale_up_failure", |s, t| {
                s.last_scale_up_failure = Some(t)
            }),
            ("last_scale_down_failure", |s, t| {
                s.last_scale_down_failure = Some(t)
            }),
            ("low_since", |s, t| s.low_since = Some(t)),
            ("provisioning[w-1].started_at", |s, t| {
                s.provisioning.push(Provisioning {
                    name: "w-1".into(),
                    started_at: t,
                    host: None,
                })
            }),
            ("unneeded_since[w-2]", |s, t| {
                s.unneeded_since.insert("w-2".into(), t);
            }),
            ("pod_backoff[ns/p]", |s, t| {
                s.pod_backoff.insert("ns/p".into(), t);
            }),
        ];
        for (key, set) in cases {
            let mut future = State::fresh();
            set(&mut future, FUTURE);
            let warned = clamp_future(&mut future, NOW);
            assert_eq!(warned.len(), 1, "{key}: {warned:?}");
            assert!(warned[0].contains(key), "{key}: {warned:?}");
            let mut expected = State::fresh();
            set(&mut expected, NOW);
            assert_eq!(future, expected, "{key}");

            let mut past = State::fresh();
            set(&mut past, PAST);
            let before = past.clone();
            assert!(clamp_future(&mut past, NOW).is_empty(), "{key}");
            assert_eq!(past, before, "{key}: a past time is left alone");
        }
    }
}
