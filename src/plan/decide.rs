//! The decision: a pure function of (snapshot, state, config, now) that returns a plan and
//! the reasons for it, made of one call per rule (`plan::rules`). No I/O and no clock
//! reads here, so every rule is table-tested.

use super::rules;
use crate::config::Config;
use crate::plan::snapshot::Snapshot;
use crate::state::State;
use crate::state::time::Timestamp;
use serde::Serialize;

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
        }
    }
}

/// The decision. Each rule is a function in `rules`, in the order they are tried: count the
/// workers; the floor (`min_nodes`) comes first; then scale-up; then scale-down. The health
/// guard holds back the floor fill and the scale-down.
pub fn decide(snap: &Snapshot, state: &State, cfg: &Config, now: Timestamp) -> Plan {
    let Some(nodes) = &snap.nodes else {
        let mut plan = Plan::none(WorkerCounts::default());
        plan.blocked_by
            .push("signal node_ready is unknown: cannot count workers, so no action".to_string());
        return plan;
    };
    let count = rules::count::count(nodes, state, cfg);
    let mut plan = Plan::none(count.workers.clone());
    plan.joined = count.joined.clone();
    let unhealthy = rules::health::unhealthy(&count.workers);

    if rules::floor::apply(&count, unhealthy.as_deref(), state, cfg, now, &mut plan) {
        return plan;
    }
    if rules::scale_up::apply(snap, &count, state, cfg, now, &mut plan) {
        return plan;
    }
    rules::scale_down::apply(
        snap,
        &count,
        unhealthy.as_deref(),
        state,
        cfg,
        now,
        &mut plan,
    );
    plan
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
