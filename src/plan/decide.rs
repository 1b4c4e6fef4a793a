//! The decision: a pure function of (snapshot, state, config, now) that returns a plan and
//! the reasons for it, made of one call per rule (`plan::rules`). No I/O and no clock
//! reads here, so every rule is table-tested.

use super::cluster::ClusterModel;
use super::rules;
use crate::config::Config;
use crate::plan::snapshot::Snapshot;
use crate::state::State;
use crate::state::time::Timestamp;

// What a decision is lives below both this file and the rules that fill it in.
pub use super::decision::{Action, Kept, Memory, Plan, WorkerCounts};

/// The decision. Each rule is a function in `rules`, in the order they are tried: count the
/// workers; the floor (`min_nodes`) comes first; then scale-up; then scale-down. The health
/// guard holds back the floor fill and the scale-down.
pub fn decide(snap: &Snapshot, state: &State, cfg: &Config, now: Timestamp) -> Plan {
    decide_with(snap, &ClusterModel::build(snap, cfg), state, cfg, now)
}

/// The decision on a model built beforehand (`evaluate` hands the same model to the
/// scale-down's checks).
pub fn decide_with(
    snap: &Snapshot,
    model: &ClusterModel,
    state: &State,
    cfg: &Config,
    now: Timestamp,
) -> Plan {
    let Some(nodes) = &snap.nodes else {
        let mut plan = Plan::none(WorkerCounts::default());
        plan.blocked_by
            .push("signal node_ready is unknown: cannot count workers, so no action".to_string());
        return plan;
    };
    let count = rules::count::count(nodes, state, cfg, now);
    let mut plan = Plan::none(count.workers.clone());
    plan.joined = count.joined.clone();
    for name in &count.overdue {
        plan.notes.push(format!(
            "{name} is still not Ready past provision_timeout: no longer waited for or \
             counted as capacity, still counted toward max_nodes until reconcile removes it \
             (it can once its Docker host is listed)"
        ));
    }
    let unhealthy = rules::health::guard(&count, &cfg.scaling);
    let timers = rules::unneeded::track(snap, state, cfg, now);
    plan.memory.unneeded_since = timers.unneeded_since;
    plan.memory.unready_since = timers.unready_since;
    let pending = snap
        .unschedulable
        .is_some()
        .then(|| rules::pending::classify(model, snap, &count, state, now));
    if let Some(p) = &pending {
        plan.unhelpable = p.unhelpable.clone();
        plan.memory.fits_since = p.fits_since.clone();
        plan.memory.scaled_for = p.scaled_for.clone();
        plan.memory.pod_backoff = p.pod_backoff.clone();
        if !model.constraints && !model.pending.is_empty() {
            plan.notes.push(
                "pending pods placed by their requests only: the Kubernetes API was not \
                 reached, so selectors, taints, affinity and volumes were not checked"
                    .into(),
            );
        }
    }

    if rules::floor::apply(&count, unhealthy.as_deref(), state, cfg, now, &mut plan) {
        return plan;
    }
    let p = pending.as_ref();
    let sick = unhealthy.as_deref();
    if rules::scale_up::apply(snap, model, p, &count, sick, state, cfg, now, &mut plan) {
        return plan;
    }
    rules::scale_down::apply(snap, p, &count, sick, state, cfg, now, &mut plan);
    plan
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
