//! How each outcome of a run is written into the state: the scale-up started, and the
//! failed scale-up or scale-down that starts a back-off. `evaluate`, `up` and reconcile's
//! repairs share these, so a failure is counted the same way whoever met it.

use super::State;
use super::file::{Acting, Provisioning};
use super::time::Timestamp;

pub fn record_scale_up(state: &mut State, now: Timestamp, names: &[String]) {
    state.last_scale_up = Some(now);
    state.totals.scale_ups += 1;
    state.totals.workers_added += names.len() as u64;
    for n in names {
        // Already there when written ahead of the start (`scale_up`).
        if !state.provisioning.iter().any(|p| p.name == *n) {
            state.provisioning.push(Provisioning {
                name: n.clone(),
                started_at: now,
                host: None,
            });
        }
    }
    state.record(now, "scale_up", format!("started {}", names.join(", ")));
}

pub fn record_failed_scale_up(state: &mut State, now: Timestamp, message: &str) {
    state.last_scale_up_failure = Some(now);
    state.totals.failed_scale_ups += 1;
    state.record(now, "scale_up_failed", message);
}

pub fn record_failed_scale_down(state: &mut State, now: Timestamp, message: &str) {
    state.last_scale_down_failure = Some(now);
    state.totals.failed_scale_downs += 1;
    state.record(now, "scale_down_failed", message);
}

/// Writes an action ahead of its first outside call (`State::acting`); the caller saves
/// the state before acting and, if that save fails, does nothing.
pub fn write_ahead(state: &mut State, now: Timestamp, kind: &str, about: &[String]) {
    state.acting = Some(Acting {
        kind: kind.to_string(),
        about: about.to_vec(),
        started_at: now,
    });
}

/// A worker removed by scale-down or `drain NODE`: the cooldown runs from `now`.
pub fn record_scale_down(state: &mut State, now: Timestamp, name: &str, evicted: u64, how: &str) {
    state.last_scale_down = Some(now);
    state.totals.scale_downs += 1;
    state.totals.workers_removed += 1;
    state.totals.evicted_pods += evicted;
    state.record(now, "scale_down", format!("removed {name}{how}"));
}

/// An action a killed run wrote ahead and never recorded, judged by what is listed now
/// (`listed`: the worker containers on every Docker host, `None` when a host could not be
/// listed). A scale-down or drain whose worker is gone did remove it: it is recorded as a
/// scale-down at its start, so `scale_down_cooldown` holds. One whose workers are all still
/// there removed nothing: it is noted, reconcile repairs what it left (a cordon, a stopped
/// container) and the run decides afresh. Not known: counted as a failed scale-down, so
/// the back-off holds and no capacity goes on a guess. A repair is noted.
/// Returns the message recorded, if any.
pub fn finish_unfinished(state: &mut State, listed: Option<&[String]>) -> Option<String> {
    let a = state.acting.take()?;
    let what = format!("a {} of {}", a.kind.replace('_', "-"), a.about.join(", "));
    let removes = matches!(a.kind.as_str(), "scale_down" | "drain");
    let gone: Option<Vec<&String>> =
        listed.map(|l| a.about.iter().filter(|n| !l.contains(n)).collect());
    let message = match (removes, gone) {
        (true, Some(gone)) if !gone.is_empty() => {
            for n in gone {
                record_scale_down(
                    state,
                    a.started_at,
                    n,
                    0,
                    " (its run was killed before it saved)",
                );
            }
            format!("{what} finished, but its run was stopped before it saved: recorded now")
        }
        (true, Some(_)) => {
            let m = format!(
                "{what} that its run never finished (the run was stopped or killed); its workers are all still there"
            );
            state.record(a.started_at, "unfinished", m.clone());
            m
        }
        (true, None) => {
            let m = format!(
                "{what} that its run never finished (the run was stopped or killed); not every Docker host could be listed, so it counts as failed"
            );
            record_failed_scale_down(state, a.started_at, &m);
            m
        }
        (false, _) => {
            let m = format!("{what} that its run never finished (the run was stopped or killed)");
            state.record(a.started_at, "unfinished", m.clone());
            m
        }
    };
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp::from_secs(1_800_000_000);

    #[test]
    fn an_unfinished_action_is_judged_by_what_is_listed_now() {
        let w3 = || vec!["w-3".to_string()];
        let listed_with = w3();
        let listed_without = vec!["w-1".to_string()];
        // (kind, listed, removal recorded, backs off)
        let cases: [(&str, Option<&[String]>, bool, bool); 7] = [
            ("scale_down", Some(&listed_without), true, false),
            ("scale_down", Some(&listed_with), false, false),
            ("scale_down", None, false, true),
            ("drain", Some(&listed_without), true, false),
            ("drain", Some(&listed_with), false, false),
            ("drain", None, false, true),
            ("repair", None, false, false),
        ];
        for (kind, listed, removed, backs_off) in cases {
            let what = format!("{kind} {listed:?}");
            let mut s = State::fresh();
            write_ahead(&mut s, T, kind, &w3());
            let m = finish_unfinished(&mut s, listed).expect(&what);
            assert!(m.contains("w-3"), "{what}: {m}");
            assert_eq!(s.acting, None, "{what}");
            assert_eq!(s.last_scale_down == Some(T), removed, "{what}");
            assert_eq!(s.totals.workers_removed, u64::from(removed), "{what}");
            assert_eq!(s.last_scale_down_failure.is_some(), backs_off, "{what}");
            assert_eq!(s.totals.failed_scale_downs, u64::from(backs_off), "{what}");
            assert_eq!(finish_unfinished(&mut s, listed), None, "{what}: only once");
        }
    }
}
