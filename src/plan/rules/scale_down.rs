//! Scale-down: every signal known and low (no pending pod, CPU and memory under their
//! scale-down thresholds) for `scale_down_unneeded_time`, then one worker, the least
//! utilised. Held back by `min_nodes`, workers still provisioning, the health guard, the
//! cooldowns and the back-off. Unknown data never removes a worker.

use super::count::Count;
use super::pending::Pending;
use super::unneeded::projected;
use super::{pct, running};
use crate::config::Config;
use crate::plan::decision::{Action, Kept, Memory, Plan};
use crate::plan::names::worker_number;
use crate::plan::snapshot::Snapshot;
use crate::state::State;
use crate::state::time::Timestamp;

/// Applies scale-down (the last rule: the plan is final after it). Each worker has its
/// own unneeded timer (`unneeded::track`, kept in `plan.memory`); a worker whose timer has
/// run `scale_down_unneeded_time`, or that has been NotReady `scale_down_unready_time`, is
/// a candidate unless removing it would push the rest over the scale-up thresholds.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    snap: &Snapshot,
    pending: Option<&Pending>,
    count: &Count,
    unhealthy: Option<&str>,
    state: &State,
    cfg: &Config,
    now: Timestamp,
    plan: &mut Plan,
) {
    plan.low_since = plan.memory.unneeded_since.values().min().copied();
    match low(snap, pending) {
        Low::Unknown(why) => {
            // A gap in the data restarts every idle timer: the workers were not seen idle.
            plan.memory.unneeded_since.clear();
            plan.low_since = None;
            plan.blocked_by.push(why);
            return;
        }
        Low::High => return,
        Low::Yes => {}
    }
    let due = due(snap, &plan.memory, cfg, now);
    if due.unready.is_empty() && due.ready.is_empty() {
        // Say what else would hold it once the timer has run.
        if let Some(w) = due.waiting {
            plan.blocked_by.push(w);
            plan.blocked_by
                .extend(blockers(count, unhealthy, state, cfg, now));
        }
        return;
    }
    let mut candidates = due.unready.clone();
    for name in due.ready {
        match kept_because(snap, &name, cfg) {
            None => candidates.push(name),
            Some(reason) => plan.kept.push(Kept { node: name, reason }),
        }
    }
    if let Some(first) = candidates.first() {
        plan.reasons.push(reason(first, &plan.memory, cfg));
    }
    // An unready worker is no capacity: removing it never takes the pool below min_nodes.
    let only_unready = !candidates.is_empty() && candidates.iter().all(|c| due.unready.contains(c));
    let floor = if only_unready {
        Floor::Ignored
    } else {
        Floor::Holds
    };
    plan.blocked_by
        .extend(blockers_with(count, unhealthy, state, cfg, now, floor));
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

/// Why an unneeded Ready worker stays, if it does: its removal would put the rest over
/// the scale-up thresholds, leave its pods no Ready worker, or is unknown.
fn kept_because(snap: &Snapshot, name: &str, cfg: &Config) -> Option<String> {
    match projected(snap, name) {
        Some((cpu, mem))
            if cpu < cfg.thresholds.cpu_threshold && mem < cfg.thresholds.memory_threshold =>
        {
            None
        }
        Some((cpu, mem)) if !(cpu.is_finite() && mem.is_finite()) => {
            Some("no other Ready worker would be left for its pods' requests".into())
        }
        Some((cpu, mem)) => Some(format!(
            "removing it would put the rest at cpu {} / memory {}, over the scale-up thresholds {} / {}",
            pct(cpu),
            pct(mem),
            pct(cfg.thresholds.cpu_threshold),
            pct(cfg.thresholds.memory_threshold)
        )),
        None => Some("the cluster's requests after its removal are unknown".into()),
    }
}

/// The reason to remove `first`, the best candidate: how long it has been NotReady, or
/// unneeded.
fn reason(first: &str, memory: &Memory, cfg: &Config) -> String {
    match memory.unready_since.get(first) {
        Some(since) => format!(
            "{first} NotReady since {since} (scale_down_unready_time {})",
            crate::config::units::format_duration(cfg.scaling.scale_down_unready_time.get())
        ),
        None => format!(
            "{first} unneeded since {} (its requests under cpu {} and memory {})",
            memory.unneeded_since[first],
            pct(cfg.thresholds.cpu_scale_down),
            pct(cfg.thresholds.memory_scale_down)
        ),
    }
}

/// The workers whose timers have run out, best first, and what the first timer still
/// running waits for.
#[derive(Debug, Default, PartialEq)]
pub struct Due {
    /// NotReady past `scale_down_unready_time`, longest first.
    pub unready: Vec<String>,
    /// Unneeded past `scale_down_unneeded_time`, least utilised first, then newest.
    pub ready: Vec<String>,
    pub waiting: Option<String>,
}

pub fn due(snap: &Snapshot, memory: &Memory, cfg: &Config, now: Timestamp) -> Due {
    let mut out = Due::default();
    let mut unready: Vec<(&String, &Timestamp)> = memory
        .unready_since
        .iter()
        .filter(|(_, since)| now >= since.plus(cfg.scaling.scale_down_unready_time.get()))
        .collect();
    unready.sort_by_key(|(n, since)| (**since, std::cmp::Reverse(worker_number(n))));
    out.unready = unready.into_iter().map(|(n, _)| n.clone()).collect();
    let wait = cfg.scaling.scale_down_unneeded_time.get();
    for name in rank_candidates(snap, cfg) {
        let Some(since) = memory.unneeded_since.get(&name) else {
            continue;
        };
        match running(Some(*since), wait, now) {
            None => out.ready.push(name),
            Some(end) => {
                out.waiting.get_or_insert_with(|| {
                    format!(
                        "{name} unneeded since {since}; scale_down_unneeded_time runs until {end}"
                    )
                });
            }
        }
    }
    out
}

/// Whether the cluster is calm enough to shrink.
#[derive(Debug, PartialEq)]
pub enum Low {
    /// A signal is unknown: never scale down without data (the reason names them).
    Unknown(String),
    /// Pods are pending that a worker could run.
    High,
    Yes,
}

/// Whether scale-down may look at the workers at all: every signal known, and no pending
/// pod a worker could run (with the model: pods it calls unhelpable or backed off, and
/// DaemonSet pods, do not hold it). The cluster's averages need not be low: each worker is
/// judged on its own requests (`unneeded`), and a removal on what it leaves (`projected`).
pub fn low(snap: &Snapshot, pending: Option<&Pending>) -> Low {
    let mut unknown = Vec::new();
    let mut high = false;
    match (snap.pending_pods, pending) {
        (None, _) => unknown.push("pending_pods"),
        (Some(_), Some(p)) => high = p.helpable > 0,
        (Some(p), None) => high = p > 0.0,
    }
    for (name, value) in [("cpu", snap.cpu), ("memory", snap.memory)] {
        if value.is_none() {
            unknown.push(name);
        }
    }
    if !unknown.is_empty() {
        return Low::Unknown(format!(
            "signal(s) unknown: {}; never scale down without data",
            unknown.join(", ")
        ));
    }
    if high { Low::High } else { Low::Yes }
}

/// What holds a scale-down back once a worker is due, each with its reason.
pub fn blockers(
    count: &Count,
    unhealthy: Option<&str>,
    state: &State,
    cfg: &Config,
    now: Timestamp,
) -> Vec<String> {
    blockers_with(count, unhealthy, state, cfg, now, Floor::Holds)
}

/// Whether `limits.min_nodes` holds a scale-down back: not when only unready workers
/// would go (they are no capacity, so removing them never takes the pool below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Floor {
    Holds,
    Ignored,
}

fn blockers_with(
    count: &Count,
    unhealthy: Option<&str>,
    state: &State,
    cfg: &Config,
    now: Timestamp,
    floor: Floor,
) -> Vec<String> {
    let limits = &cfg.limits;
    let scaling = &cfg.scaling;
    let mut blocked = Vec::new();
    if floor == Floor::Holds && count.capacity <= limits.min_nodes {
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
/// to the worker on the Docker host with the most of this pool's workers (so a pool over
/// several hosts stays balanced), then to the newest (the highest worker number, then the
/// name).
pub fn rank_candidates(snap: &Snapshot, cfg: &Config) -> Vec<String> {
    let Some(nodes) = &snap.nodes else {
        return Vec::new();
    };
    let mut per_host: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
    for h in snap.hosts.values() {
        *per_host.entry(h.as_str()).or_default() += 1;
    }
    let on_host = |name: &str| {
        snap.hosts
            .get(name)
            .and_then(|h| per_host.get(h.as_str()))
            .copied()
            .unwrap_or(0)
    };
    let mut list: Vec<(&String, f64, u32, u64)> = nodes
        .iter()
        .filter(|(name, n)| n.ready && !cfg.kubernetes.permanent_nodes.contains(name))
        // A worker whose utilisation is unknown is never a candidate: no data, no removal.
        .filter_map(|(name, n)| Some((name, n.utilisation()?, on_host(name), worker_number(name))))
        .collect();
    list.sort_by(|a, b| {
        a.1.total_cmp(&b.1)
            .then(b.2.cmp(&a.2))
            .then(b.3.cmp(&a.3))
            .then(b.0.cmp(a.0))
    });
    list.into_iter().map(|(n, ..)| n.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::decision::WorkerCounts;

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
        let unknown = |s: &str| {
            Low::Unknown(format!(
                "signal(s) unknown: {s}; never scale down without data"
            ))
        };
        let helpable = |n| Pending {
            helpable: n,
            ..Pending::default()
        };
        let (none, two) = (helpable(0), helpable(2));
        for (s, pending, want) in [
            (snap(Some(0.0), Some(10.0), Some(10.0)), None, Low::Yes),
            // Busy on average: each worker is judged on its own.
            (snap(Some(0.0), Some(70.0), Some(70.0)), None, Low::Yes),
            (
                snap(None, Some(10.0), Some(10.0)),
                None,
                unknown("pending_pods"),
            ),
            (snap(Some(0.0), None, None), None, unknown("cpu, memory")),
            (snap(Some(3.0), None, Some(10.0)), None, unknown("cpu")),
            (snap(Some(1.0), Some(10.0), Some(10.0)), None, Low::High),
            // With the model: only pods a worker can help hold it.
            (
                snap(Some(3.0), Some(10.0), Some(10.0)),
                Some(&none),
                Low::Yes,
            ),
            (
                snap(Some(3.0), Some(10.0), Some(10.0)),
                Some(&two),
                Low::High,
            ),
        ] {
            assert_eq!(low(&s, pending), want, "{s:?} {pending:?}");
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
            overdue: Vec::new(),
            capacity: ready + provisioning,
            room: 10,
            starting: 0,
        };
        let fresh = State::default();
        let st = |f: fn(&mut State, Timestamp)| {
            let mut s = State::default();
            f(&mut s, ago(1));
            s
        };
        for (count, sick, state, want) in [
            (c(3, 0), None, fresh.clone(), vec![]),
            (c(2, 0), None, fresh.clone(), vec!["at min_nodes 2"]),
            (c(3, 1), None, fresh.clone(), vec!["still provisioning"]),
            (c(3, 0), Some("sick"), fresh.clone(), vec!["sick"]),
            (
                c(3, 0),
                None,
                st(|s, t| s.last_scale_down = Some(t)),
                vec!["scale_down_cooldown"],
            ),
            (
                c(3, 0),
                None,
                st(|s, t| s.last_scale_up = Some(t)),
                vec!["delay_after_scale_up"],
            ),
            (
                c(3, 0),
                None,
                st(|s, t| s.last_scale_down_failure = Some(t)),
                vec!["back-off"],
            ),
        ] {
            let got = blockers(&count, sick, &state, &cfg, now);
            assert_eq!(got.len(), want.len(), "{got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g.contains(w), "{g} should say {w}");
            }
        }
    }

    #[test]
    fn due_table() {
        use crate::plan::snapshot::NodeSample;
        let cfg = Config::default();
        let now = Timestamp::from_secs(1_000_000);
        let ago = |s: i64| Timestamp::from_secs(1_000_000 - s);
        let mut s = snap(Some(0.0), Some(10.0), Some(10.0));
        let mut nodes = std::collections::BTreeMap::new();
        for (n, util) in [("w-1", 5.0), ("w-2", 1.0), ("w-3", 2.0)] {
            nodes.insert(
                n.to_string(),
                NodeSample {
                    ready: true,
                    cpu: Some(util),
                    memory: Some(util),
                },
            );
        }
        s.nodes = Some(nodes);
        let mut m = Memory::default();
        m.unneeded_since.insert("w-1".into(), ago(3600));
        m.unneeded_since.insert("w-2".into(), ago(3600));
        m.unneeded_since.insert("w-3".into(), ago(10));
        m.unready_since.insert("w-8".into(), ago(3600));
        m.unready_since.insert("w-9".into(), ago(60));
        let d = due(&s, &m, &cfg, now);
        assert_eq!(d.unready, ["w-8"]);
        assert_eq!(d.ready, ["w-2", "w-1"], "least utilised first");
        assert!(d.waiting.unwrap().starts_with("w-3 unneeded since"));
    }
}
