//! The decision: a pure function of (snapshot, state, config, now) that returns a plan and
//! the reasons for it. No I/O and no clock reads here, so every rule is table-tested.

use crate::config::Config;
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::time::Timestamp;
use serde::Serialize;
use std::time::Duration;

/// cluster-autoscaler halts scale-down when more than 45 % (or more than 3) of the nodes
/// are unready: removing capacity from a sick cluster makes it sicker.
pub const MAX_UNREADY_FRACTION: f64 = 0.45;
pub const MAX_UNREADY_NODES: usize = 3;

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
    fn none(workers: WorkerCounts) -> Plan {
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

fn pct(v: f64) -> String {
    format!("{v:.1}%")
}

/// Waits on `since + wait`; `Some(end)` while it is still running.
fn running(since: Option<Timestamp>, wait: Duration, now: Timestamp) -> Option<Timestamp> {
    let end = since?.plus(wait);
    (now < end).then_some(end)
}

pub fn decide(snap: &Snapshot, state: &State, cfg: &Config, now: Timestamp) -> Plan {
    let limits = &cfg.limits;
    let th = &cfg.thresholds;
    let Some(nodes) = &snap.nodes else {
        let mut plan = Plan::none(WorkerCounts::default());
        plan.blocked_by
            .push("signal node_ready is unknown: cannot count workers, so no action".to_string());
        plan.joined = Vec::new();
        plan.low_since = None;
        return plan;
    };

    let joined: Vec<String> = state
        .provisioning
        .iter()
        .filter(|p| nodes.get(&p.name).is_some_and(|n| n.ready))
        .map(|p| p.name.clone())
        .collect();
    let booting = state
        .provisioning
        .iter()
        .filter(|p| !nodes.contains_key(&p.name))
        .count() as u32;
    let still_provisioning = state.provisioning.len() as u32 - joined.len() as u32;
    let ready = nodes.values().filter(|n| n.ready).count() as u32;
    let unready = nodes.len() as u32 - ready;
    let workers = WorkerCounts {
        ready,
        unready,
        provisioning: still_provisioning,
        total: nodes.len() as u32 + booting,
    };
    let mut plan = Plan::none(workers.clone());
    plan.joined = joined;

    let scale_down_wait_reset = |plan: &mut Plan| plan.low_since = None;

    // What counts toward min_nodes is capacity: Ready workers and those still booting.
    // An unready worker is not capacity (it still counts toward max_nodes: it exists).
    let capacity = workers.ready + still_provisioning;
    let room = limits.max_nodes.saturating_sub(workers.total);
    let registered = workers.ready + workers.unready;
    let unhealthy = (workers.unready > MAX_UNREADY_NODES as u32
        || (registered > 0
            && f64::from(workers.unready) > MAX_UNREADY_FRACTION * f64::from(registered)))
    .then(|| {
        format!(
            "cluster unhealthy: {} of {} workers unready (limit: more than {} or {:.0}%)",
            workers.unready,
            registered,
            MAX_UNREADY_NODES,
            MAX_UNREADY_FRACTION * 100.0
        )
    });

    // Floor first: below min_nodes, add what is missing, whatever the signals and the
    // cooldown say (the failure back-off still holds, so a broken start is not retried
    // every run).
    if capacity < limits.min_nodes {
        let missing = (limits.min_nodes - capacity).min(room);
        plan.reasons.push(format!(
            "Ready and booting workers {capacity} < min_nodes {}",
            limits.min_nodes
        ));
        if let Some(why) = &unhealthy {
            // Replacing unready workers in a sick cluster piles up nodes; cluster-autoscaler
            // halts here too.
            plan.blocked_by.push(why.clone());
        } else if missing == 0 {
            plan.blocked_by.push(format!(
                "at max_nodes {} ({} workers, {} unready)",
                limits.max_nodes, workers.total, workers.unready
            ));
        } else if let Some(end) = running(
            state.last_scale_up_failure,
            cfg.scaling.failure_backoff.get(),
            now,
        ) {
            plan.blocked_by
                .push(format!("back-off after a failed scale-up until {end}"));
        } else {
            plan.action = Action::ScaleUp;
            plan.count = missing;
        }
        scale_down_wait_reset(&mut plan);
        return plan;
    }

    // Scale-up rules: any known signal at or above its threshold.
    let mut want_up = 0u32;
    if let Some(p) = snap.pending_pods
        && p >= f64::from(th.pending_pods)
    {
        plan.reasons
            .push(format!("pending_pods {p} >= {}", th.pending_pods));
        want_up = want_up.max(pods_to_workers(snap, cfg));
    }
    for (name, value, threshold) in [
        ("cpu", snap.cpu, th.cpu_threshold),
        ("memory", snap.memory, th.memory_threshold),
    ] {
        if let Some(v) = value
            && v >= threshold
        {
            plan.reasons
                .push(format!("{name} {} >= {}", pct(v), pct(threshold)));
            // Enough workers to bring the average back to the threshold (Escalator).
            let n = f64::from(workers.ready.max(1));
            let needed = (v * n / threshold).ceil() - n;
            want_up = want_up.max((needed.max(1.0)) as u32);
        }
    }
    if want_up > 0 {
        scale_down_wait_reset(&mut plan);
        if room == 0 {
            plan.blocked_by.push(format!(
                "at max_nodes {} ({} workers)",
                limits.max_nodes, workers.total
            ));
        }
        if still_provisioning > 0 {
            plan.blocked_by.push(format!(
                "{still_provisioning} worker(s) still provisioning; waiting for them to be Ready"
            ));
        }
        if let Some(end) = running(state.last_scale_up, limits.scale_up_cooldown.get(), now) {
            plan.blocked_by
                .push(format!("scale_up_cooldown until {end}"));
        }
        if let Some(end) = running(
            state.last_scale_up_failure,
            cfg.scaling.failure_backoff.get(),
            now,
        ) {
            plan.blocked_by
                .push(format!("back-off after a failed scale-up until {end}"));
        }
        if plan.blocked_by.is_empty() {
            let count = want_up.min(cfg.scaling.max_step).min(room);
            if count < want_up {
                plan.reasons.push(format!(
                    "wanted {want_up}, capped to {count} by max_step {} and max_nodes {}",
                    cfg.scaling.max_step, limits.max_nodes
                ));
            }
            plan.action = Action::ScaleUp;
            plan.count = count;
        }
        return plan;
    }

    // Scale-down: every signal known and low, for long enough.
    let mut unknown = Vec::new();
    let mut high = Vec::new();
    match snap.pending_pods {
        None => unknown.push("pending_pods"),
        Some(p) if p > 0.0 => high.push(format!("pending_pods {p} > 0")),
        Some(_) => {}
    }
    for (name, value, threshold) in [
        ("cpu", snap.cpu, th.cpu_scale_down),
        ("memory", snap.memory, th.memory_scale_down),
    ] {
        match value {
            None => unknown.push(name),
            Some(v) if v >= threshold => high.push(format!(
                "{name} {} >= scale-down threshold {}",
                pct(v),
                pct(threshold)
            )),
            Some(_) => {}
        }
    }
    if !unknown.is_empty() {
        scale_down_wait_reset(&mut plan);
        plan.blocked_by.push(format!(
            "signal(s) unknown: {}; never scale down without data",
            unknown.join(", ")
        ));
        return plan;
    }
    if !high.is_empty() {
        scale_down_wait_reset(&mut plan);
        return plan;
    }
    let low_since = state.low_since.unwrap_or(now);
    plan.low_since = Some(low_since);
    plan.reasons.push(format!(
        "no pending pods, cpu {} < {}, memory {} < {}",
        pct(snap.cpu.unwrap_or_default()),
        pct(th.cpu_scale_down),
        pct(snap.memory.unwrap_or_default()),
        pct(th.memory_scale_down)
    ));
    if let Some(end) = running(
        Some(low_since),
        cfg.scaling.scale_down_unneeded_time.get(),
        now,
    ) {
        plan.blocked_by.push(format!(
            "low since {low_since}; scale_down_unneeded_time runs until {end}"
        ));
    }
    if capacity <= limits.min_nodes {
        plan.blocked_by.push(format!(
            "at min_nodes {} ({capacity} Ready or booting workers)",
            limits.min_nodes
        ));
    }
    if still_provisioning > 0 {
        plan.blocked_by
            .push(format!("{still_provisioning} worker(s) still provisioning"));
    }
    if let Some(why) = &unhealthy {
        plan.blocked_by.push(why.clone());
    }
    if let Some(end) = running(state.last_scale_down, limits.scale_down_cooldown.get(), now) {
        plan.blocked_by
            .push(format!("scale_down_cooldown until {end}"));
    }
    if let Some(end) = running(
        state.last_scale_up,
        cfg.scaling.scale_down_delay_after_scale_up.get(),
        now,
    ) {
        plan.blocked_by
            .push(format!("scale_down_delay_after_scale_up until {end}"));
    }
    if let Some(end) = running(
        state.last_scale_down_failure,
        cfg.scaling.failure_backoff.get(),
        now,
    ) {
        plan.blocked_by
            .push(format!("back-off after a failed scale-down until {end}"));
    }
    let candidates = rank_candidates(snap, cfg);
    if candidates.is_empty() {
        plan.blocked_by.push(
            "no removable worker (all permanent, not Ready, or utilisation unknown)".to_string(),
        );
    }
    if plan.blocked_by.is_empty() {
        plan.action = Action::ScaleDown;
        plan.count = 1;
        plan.candidates = candidates;
    }
    plan
}

/// Workers needed for the pending pods' requests at the configured worker size; 1 when
/// the requests are unknown.
fn pods_to_workers(snap: &Snapshot, cfg: &Config) -> u32 {
    let by_cpu = snap
        .pending_cpu_cores
        .map(|c| c / cfg.docker.cpus)
        .unwrap_or(0.0);
    let by_mem = snap
        .pending_memory_bytes
        .map(|m| m / cfg.docker.memory.0 as f64)
        .unwrap_or(0.0);
    let n = by_cpu.max(by_mem).ceil();
    if n.is_finite() && n >= 1.0 {
        n.min(f64::from(u32::MAX)) as u32
    } else {
        1
    }
}

/// Ready workers with known utilisation that may be removed, least utilised first; ties go to the newest (the
/// highest worker number, then the name).
pub fn rank_candidates(snap: &Snapshot, cfg: &Config) -> Vec<String> {
    let Some(nodes) = &snap.nodes else {
        return Vec::new();
    };
    let mut list: Vec<(&String, f64, u64)> = nodes
        .iter()
        .filter(|(name, n)| n.ready && !cfg.kubernetes.permanent_nodes.contains(name))
        // A worker whose utilisation is unknown is never a candidate: no data, no removal.
        .filter_map(|(name, n)| Some((name, n.utilisation()?, worker_number(name))))
        .collect();
    list.sort_by(|a, b| a.1.total_cmp(&b.1).then(b.2.cmp(&a.2)).then(b.0.cmp(a.0)));
    list.into_iter().map(|(n, _, _)| n.clone()).collect()
}

/// The trailing number of `<prefix>-<n>`; 0 when there is none.
pub fn worker_number(name: &str) -> u64 {
    name.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
