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

/// An action a killed run wrote ahead and never recorded: a scale-down or drain counts as
/// failed from when it started (so its back-off and cooldown hold), a repair is noted. What
/// it left behind (a cordoned node, a stopped container) is reconcile's to repair.
/// Returns the message recorded, if any.
pub fn finish_unfinished(state: &mut State) -> Option<String> {
    let a = state.acting.take()?;
    let message = format!(
        "a {} of {} that its run never finished (the run was stopped or killed)",
        a.kind.replace('_', "-"),
        a.about.join(", ")
    );
    match a.kind.as_str() {
        "scale_down" | "drain" => record_failed_scale_down(state, a.started_at, &message),
        _ => state.record(a.started_at, "unfinished", message.clone()),
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp::from_secs(1_800_000_000);

    #[test]
    fn an_unfinished_action_is_recorded_once_by_its_kind() {
        let cases: [(&str, bool); 3] = [("scale_down", true), ("drain", true), ("repair", false)];
        for (kind, backs_off) in cases {
            let mut s = State::fresh();
            write_ahead(&mut s, T, kind, &["w-3".to_string()]);
            let m = finish_unfinished(&mut s).expect(kind);
            assert!(m.contains("w-3") && m.contains("never finished"), "{m}");
            assert_eq!(s.acting, None, "{kind}");
            assert_eq!(s.last_scale_down_failure.is_some(), backs_off, "{kind}");
            assert_eq!(s.totals.failed_scale_downs, u64::from(backs_off), "{kind}");
            assert_eq!(finish_unfinished(&mut s), None, "{kind}: only once");
        }
    }
}
