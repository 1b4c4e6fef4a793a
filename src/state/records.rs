//! How each outcome of a run is written into the state: the scale-up started, and the
//! failed scale-up or scale-down that starts a back-off. `evaluate`, `up` and reconcile's
//! repairs share these, so a failure is counted the same way whoever met it.

use super::State;
use super::file::Provisioning;
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
