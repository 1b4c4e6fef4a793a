//! Scale-down: every signal known and low (no pending pod, CPU and memory under their
//! scale-down thresholds) for `scale_down_unneeded_time`, then one worker, the least
//! utilised. Held back by `min_nodes`, workers still provisioning, the health guard, the
//! cooldowns and the back-off. Unknown data never removes a worker.

use super::count::Count;
use super::{pct, running};
use crate::config::Config;
use crate::plan::decide::{Action, Plan};
use crate::plan::names::worker_number;
use crate::plan::snapshot::Snapshot;
use crate::state::State;
use crate::state::time::Timestamp;

/// Applies scale-down (the last rule: the plan is final after it).
pub fn apply(
    snap: &Snapshot,
    count: &Count,
    unhealthy: Option<&str>,
    state: &State,
    cfg: &Config,
    now: Timestamp,
    plan: &mut Plan,
) {
    let reason = match low(snap, cfg) {
        Low::Unknown(why) => {
            plan.low_since = None;
            plan.blocked_by.push(why);
            return;
        }
        Low::High => {
            plan.low_since = None;
            return;
        }
        Low::Yes(reason) => reason,
    };
    let low_since = state.low_since.unwrap_or(now);
    plan.low_since = Some(low_since);
    plan.reasons.push(reason);
    plan.blocked_by
        .extend(blockers(count, unhealthy, low_since, state, cfg, now));
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
}

/// Whether the cluster is idle enough to shrink.
#[derive(Debug, PartialEq)]
pub enum Low {
    /// A signal is unknown: never scale down without data (the reason names them).
    Unknown(String),
    /// Something is pending or busy.
    High,
    /// Everything is low; the reason says how low.
    Yes(String),
}

pub fn low(snap: &Snapshot, cfg: &Config) -> Low {
    let th = &cfg.thresholds;
    let mut unknown = Vec::new();
    let mut high = false;
    match snap.pending_pods {
        None => unknown.push("pending_pods"),
        Some(p) if p > 0.0 => high = true,
        Some(_) => {}
    }
    for (name, value, threshold) in [
        ("cpu", snap.cpu, th.cpu_scale_down),
        ("memory", snap.memory, th.memory_scale_down),
    ] {
        match value {
            None => unknown.push(name),
            Some(v) if v >= threshold => high = true,
            Some(_) => {}
        }
    }
    if !unknown.is_empty() {
        return Low::Unknown(format!(
            "signal(s) unknown: {}; never scale down without data",
            unknown.join(", ")
        ));
    }
    if high {
        return Low::High;
    }
    Low::Yes(format!(
        "no pending pods, cpu {} < {}, memory {} < {}",
        pct(snap.cpu.unwrap_or_default()),
        pct(th.cpu_scale_down),
        pct(snap.memory.unwrap_or_default()),
        pct(th.memory_scale_down)
    ))
}

/// What holds a scale-down back once the cluster is low, each with its reason.
pub fn blockers(
    count: &Count,
    unhealthy: Option<&str>,
    low_since: Timestamp,
    state: &State,
    cfg: &Config,
    now: Timestamp,
) -> Vec<String> {
    let limits = &cfg.limits;
    let scaling = &cfg.scaling;
    let mut blocked = Vec::new();
    if let Some(end) = running(Some(low_since), scaling.scale_down_unneeded_time.get(), now) {
        blocked.push(format!(
            "low since {low_since}; scale_down_unneeded_time runs until {end}"
        ));
    }
    if count.capacity <= limits.min_nodes {
        blocked.push(format!(
            "at min_nodes {} ({} Ready or booting workers)",
            limits.min_nodes, count.capacity
        ));
    }
    let provisioning = count.workers.provisioning;
    if provisioning > 0 {
        blocked.push(format!("{provisioning} worker(s) still provisioning"));
    }
    blocked.extend(unhealthy.map(str::to_string));
    for (since, wait, what) in [
        (
            state.last_scale_down,
            limits.scale_down_cooldown.get(),
            "scale_down_cooldown",
        ),
        (
            state.last_scale_up,
            scaling.scale_down_delay_after_scale_up.get(),
            "scale_down_delay_after_scale_up",
        ),
        (
            state.last_scale_down_failure,
            scaling.failure_backoff.get(),
            "back-off after a failed scale-down",
        ),
    ] {
        if let Some(end) = running(since, wait, now) {
            blocked.push(format!("{what} until {end}"));
        }
    }
    blocked
}

/// Ready workers with known utilisation that may be removed, least utilised first; ties go
/// to the newest (the highest worker number, then the name).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::decide::WorkerCounts;

    fn snap(pending: Option<f64>, cpu: Option<f64>, mem: Option<f64>) -> Snapshot {
        Snapshot {
            pending_pods: pending,
            cpu,
            memory: mem,
            ..Snapshot::default()
        }
    }

    #[test]
    fn low_table() {
        let mut cfg = Config::default();
        cfg.thresholds.cpu_scale_down = 30.0;
        cfg.thresholds.memory_scale_down = 30.0;
        let unknown = |s: &str| {
            Low::Unknown(format!(
                "signal(s) unknown: {s}; never scale down without data"
            ))
        };
        for (s, want) in [
            (snap(Some(0.0), Some(10.0), Some(10.0)), None),
            (
                snap(None, Some(10.0), Some(10.0)),
                Some(unknown("pending_pods")),
            ),
            (snap(Some(0.0), None, None), Some(unknown("cpu, memory"))),
            // Unknown wins over high: the reason is the missing data.
            (snap(Some(3.0), None, Some(10.0)), Some(unknown("cpu"))),
            (snap(Some(1.0), Some(10.0), Some(10.0)), Some(Low::High)),
            (snap(Some(0.0), Some(30.0), Some(10.0)), Some(Low::High)),
            (snap(Some(0.0), Some(10.0), Some(31.0)), Some(Low::High)),
        ] {
            let got = low(&s, &cfg);
            match want {
                None => assert!(matches!(got, Low::Yes(_)), "{s:?}: {got:?}"),
                Some(w) => assert_eq!(got, w, "{s:?}"),
            }
        }
    }

    #[test]
    fn blockers_table() {
        let mut cfg = Config::default();
        cfg.limits.min_nodes = 2;
        let now = Timestamp::from_secs(1_000_000);
        let ago = |s: i64| Timestamp::from_secs(1_000_000 - s);
        let c = |ready, provisioning| Count {
            workers: WorkerCounts {
                ready,
                unready: 0,
                provisioning,
                total: ready + provisioning,
            },
            joined: Vec::new(),
            capacity: ready + provisioning,
            room: 10,
        };
        let long = ago(100_000);
        let fresh = State::default();
        let st = |f: fn(&mut State, Timestamp)| {
            let mut s = State::default();
            f(&mut s, ago(1));
            s
        };
        for (count, sick, since, state, want) in [
            (c(3, 0), None, long, fresh.clone(), vec![]),
            (
                c(3, 0),
                None,
                now,
                fresh.clone(),
                vec!["scale_down_unneeded_time"],
            ),
            (c(2, 0), None, long, fresh.clone(), vec!["at min_nodes 2"]),
            (
                c(3, 1),
                None,
                long,
                fresh.clone(),
                vec!["still provisioning"],
            ),
            (c(3, 0), Some("sick"), long, fresh.clone(), vec!["sick"]),
            (
                c(3, 0),
                None,
                long,
                st(|s, t| s.last_scale_down = Some(t)),
                vec!["scale_down_cooldown"],
            ),
            (
                c(3, 0),
                None,
                long,
                st(|s, t| s.last_scale_up = Some(t)),
                vec!["delay_after_scale_up"],
            ),
            (
                c(3, 0),
                None,
                long,
                st(|s, t| s.last_scale_down_failure = Some(t)),
                vec!["back-off"],
            ),
        ] {
            let got = blockers(&count, sick, since, &state, &cfg, now);
            assert_eq!(got.len(), want.len(), "{got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g.contains(w), "{g} should say {w}");
            }
        }
    }
}
