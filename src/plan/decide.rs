//! The decision: a pure function of (snapshot, state, config, now) that returns a plan and
//! the reasons for it, made of one call per rule (`plan::rules`). No I/O and no clock
//! reads here, so every rule is table-tested.

use super::cluster::ClusterModel;
use super::rules;
use crate::config::Config;
use crate::plan::snapshot::Snapshot;
use crate::state::State;
use crate::state::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    None,
    ScaleUp,
    ScaleDown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub action: Action,
    /// Workers to add (scale-up) or remove (scale-down: always 1).
    pub count: u32,
    /// For scale-down: removable workers, best first (least utilised, then newest).
    pub candidates: Vec<String>,
    /// Which rules fired, with value against threshold.
    pub reasons: Vec<String>,
    /// What held back an action that a rule asked for.
    pub blocked_by: Vec<String>,
    /// Counts the decision was made on.
    pub workers: WorkerCounts,
    /// The new value of `state.low_since`.
    #[serde(skip)]
    pub low_since: Option<Timestamp>,
    /// Provisioning workers now seen Ready: they leave the provisioning list.
    #[serde(skip)]
    pub joined: Vec<String>,
    /// Pending pods no worker can help, each with why: they neither scale up nor hold a
    /// scale-down.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unhelpable: Vec<String>,
    /// Unneeded workers kept, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<Kept>,
    /// How the decision was made, where the reader should know (resources only, say).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the state remembers for the next run.
    #[serde(skip)]
    pub memory: Memory,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kept {
    pub node: String,
    pub reason: String,
}

/// The per-worker and per-pod memory a plan hands to the state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    pub unneeded_since: BTreeMap<String, Timestamp>,
    pub unready_since: BTreeMap<String, Timestamp>,
    pub fits_since: BTreeMap<String, Timestamp>,
    pub scaled_for: BTreeMap<String, Vec<String>>,
    pub pod_backoff: BTreeMap<String, Timestamp>,
    /// The pods this scale-up starts workers for.
    pub scale_up_for: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkerCounts {
    pub ready: u32,
    pub unready: u32,
    pub provisioning: u32,
    /// Everything that counts toward max_nodes: registered workers plus those booting.
    pub total: u32,
}

impl Plan {
    pub(crate) fn none(workers: WorkerCounts) -> Plan {
        Plan {
            action: Action::None,
            count: 0,
            candidates: Vec::new(),
            reasons: Vec::new(),
            blocked_by: Vec::new(),
            workers,
            low_since: None,
            joined: Vec::new(),
            unhelpable: Vec::new(),
            kept: Vec::new(),
            notes: Vec::new(),
            memory: Memory::default(),
        }
    }
}

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
