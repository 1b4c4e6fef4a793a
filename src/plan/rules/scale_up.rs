//! Scale-up: any known signal at or above its threshold asks for workers (pending pods by
//! their requests at the configured worker size; CPU or memory enough to bring the average
//! back under the threshold, as Escalator does), then `max_step` and `max_nodes` cap it.
//! Held back by `max_nodes`, workers still provisioning, the cooldown and the back-off.

use super::count::Count;
use super::pending::{Pending, describe};
use super::{pct, running, scale_up_backoff};
use crate::config::Config;
use crate::plan::cluster::ClusterModel;
use crate::plan::decision::{Action, Plan};
use crate::plan::snapshot::Snapshot;
use crate::state::State;
use crate::state::time::Timestamp;

/// Applies scale-up when pods or utilisation ask for it; true when one did (the plan is
/// then final, whether or not something held it back). With the pending pods sorted by
/// the model (`pending`), pods waiting for booting workers ask for nothing, and a burst
/// that does not fit them scales up without waiting for them to boot; utilisation (and
/// pending pods counted without the model) still waits for booting workers.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    snap: &Snapshot,
    model: &ClusterModel,
    pending: Option<&Pending>,
    count: &Count,
    unhealthy: Option<&str>,
    state: &State,
    cfg: &Config,
    now: Timestamp,
    plan: &mut Plan,
) -> bool {
    let (mut want, mut reasons) = match pending {
        Some(_) => utilisation_wanted(snap, count.workers.ready, cfg),
        None => wanted(snap, count.workers.ready, cfg),
    };
    let mut by_pods = 0;
    if let Some(p) = pending
        && p.new_workers > 0
        && p.for_pods.len() as u32 >= cfg.thresholds.pending_pods
    {
        reasons.insert(0, describe(p, cfg, model));
        by_pods = p.new_workers;
    }
    // What waits for booting workers: utilisation, and pods counted without the model.
    let waits = want > 0;
    want = want.max(by_pods);
    if want == 0 {
        if let Some(p) = pending.filter(|p| p.waiting > 0) {
            plan.low_since = None;
            plan.blocked_by.push(format!(
                "{} pending pod(s) fit the {} worker(s) still provisioning; waiting for them to be Ready",
                p.waiting, count.workers.provisioning
            ));
            return true;
        }
        return false;
    }
    plan.pending_fired = by_pods > 0
        || (pending.is_none()
            && snap
                .pending_pods
                .is_some_and(|p| p >= f64::from(cfg.thresholds.pending_pods)));
    plan.reasons.extend(reasons);
    plan.low_since = None;
    // Booting workers hold back only what they may yet satisfy (utilisation, pods counted
    // without the model), not pods the model says no booting worker fits.
    let booting = if by_pods >= want || !waits {
        Booting::Ignored
    } else {
        Booting::Waits
    };
    let mut blocked = blockers_with(count, state, cfg, now, booting);
    if let Some(why) = unhealthy {
        // cluster-autoscaler stops every action, scale-up too, in a sick cluster.
        blocked.push(format!("{why}; no scale-up either"));
    }
    plan.blocked_by.extend(blocked);
    if plan.blocked_by.is_empty() {
        let n = want.min(cfg.scaling.max_step).min(count.room);
        if n < want {
            plan.reasons.push(format!(
                "wanted {want}, capped to {n} by max_step {} and max_nodes {}",
                cfg.scaling.max_step, cfg.limits.max_nodes
            ));
        }
        plan.action = Action::ScaleUp;
        plan.count = n;
        // Remembered only when every pod got its worker: a pod left out by the cap must
        // not be backed off for a worker that was never started for it.
        if let Some(p) = pending
            && n >= by_pods
        {
            plan.memory.scale_up_for = p.for_pods.clone();
        }
    }
    true
}

/// Workers the utilisation signals ask for, as `wanted` without the pending pods.
pub fn utilisation_wanted(snap: &Snapshot, ready: u32, cfg: &Config) -> (u32, Vec<String>) {
    let no_pods = Snapshot {
        pending_pods: None,
        cpu: snap.cpu,
        memory: snap.memory,
        ..Snapshot::default()
    };
    wanted(&no_pods, ready, cfg)
}

/// Workers the signals ask for (0: none asks), with a reason per signal that fired.
pub fn wanted(snap: &Snapshot, ready: u32, cfg: &Config) -> (u32, Vec<String>) {
    let th = &cfg.thresholds;
    let mut want = 0u32;
    let mut reasons = Vec::new();
    if let Some(p) = snap.pending_pods
        && p >= f64::from(th.pending_pods)
    {
        reasons.push(format!("pending_pods {p} >= {}", th.pending_pods));
        want = want.max(pods_to_workers(snap, cfg));
    }
    for (name, value, threshold) in [
        ("cpu", snap.cpu, th.cpu_threshold),
        ("memory", snap.memory, th.memory_threshold),
    ] {
        if let Some(v) = value
            && v >= threshold
        {
            reasons.push(format!("{name} {} >= {}", pct(v), pct(threshold)));
            // Enough workers to bring the average back to the threshold (Escalator).
            let n = f64::from(ready.max(1));
            let needed = (v * n / threshold).ceil() - n;
            want = want.max((needed.max(1.0)) as u32);
        }
    }
    (want, reasons)
}

/// What holds a wanted scale-up back, each with its reason.
pub fn blockers(count: &Count, state: &State, cfg: &Config, now: Timestamp) -> Vec<String> {
    blockers_with(count, state, cfg, now, Booting::Waits)
}

/// Whether workers still provisioning hold a scale-up back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Booting {
    Waits,
    Ignored,
}

fn blockers_with(
    count: &Count,
    state: &State,
    cfg: &Config,
    now: Timestamp,
    booting: Booting,
) -> Vec<String> {
    let mut blocked = Vec::new();
    if count.room == 0 {
        blocked.push(format!(
            "at max_nodes {} ({} workers)",
            cfg.limits.max_nodes, count.workers.total
        ));
    }
    let provisioning = count.workers.provisioning;
    if provisioning > 0 && booting == Booting::Waits {
        blocked.push(format!(
            "{provisioning} worker(s) still provisioning; waiting for them to be Ready"
        ));
    }
    if let Some(end) = running(state.last_scale_up, cfg.limits.scale_up_cooldown.get(), now) {
        blocked.push(format!("scale_up_cooldown until {end}"));
    }
    blocked.extend(scale_up_backoff(state, cfg, now));
    blocked
}

/// Workers needed for the pending pods' requests at the configured worker size; 1 when
/// the requests are unknown.
pub fn pods_to_workers(snap: &Snapshot, cfg: &Config) -> u32 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(pending: Option<f64>, cpu_cores: f64, cpu: f64, mem: f64) -> Snapshot {
        Snapshot {
            pending_pods: pending,
            pending_cpu_cores: Some(cpu_cores),
            pending_memory_bytes: Some(0.0),
            cpu: Some(cpu),
            memory: Some(mem),
            nodes: None,
            ..Snapshot::default()
        }
    }

    #[test]
    fn wanted_table() {
        let mut cfg = Config::default();
        cfg.docker.cpus = 2.0;
        cfg.thresholds.pending_pods = 1;
        cfg.thresholds.cpu_threshold = 80.0;
        cfg.thresholds.memory_threshold = 80.0;
        // (snapshot, ready workers, wanted, reasons)
        for (s, ready, want, reasons) in [
            (snap(Some(0.0), 0.0, 50.0, 50.0), 2, 0, 0),
            (snap(None, 0.0, 50.0, 50.0), 2, 0, 0),
            // 5 cores pending on 2-core workers: 3.
            (snap(Some(4.0), 5.0, 50.0, 50.0), 2, 3, 1),
            // Requests unknown or zero: 1.
            (snap(Some(1.0), 0.0, 50.0, 50.0), 2, 1, 1),
            // 120 % on 2 workers: ceil(120*2/80) - 2 = 1; 160 %: 2.
            (snap(Some(0.0), 0.0, 120.0, 50.0), 2, 1, 1),
            (snap(Some(0.0), 0.0, 160.0, 50.0), 2, 2, 1),
            // At the threshold exactly: at least one.
            (snap(Some(0.0), 0.0, 80.0, 80.0), 4, 1, 2),
            // The largest ask wins.
            (snap(Some(2.0), 8.0, 160.0, 50.0), 2, 4, 2),
        ] {
            let (w, r) = wanted(&s, ready, &cfg);
            assert_eq!((w, r.len()), (want, reasons), "{s:?}");
        }
    }

    #[test]
    fn blockers_table() {
        use crate::plan::decision::WorkerCounts;
        let cfg = Config::default();
        let now = Timestamp::from_secs(100_000);
        let c = |provisioning, room| Count {
            workers: WorkerCounts {
                ready: 2,
                unready: 0,
                provisioning,
                total: 2 + provisioning,
            },
            joined: Vec::new(),
            overdue: Vec::new(),
            capacity: 2 + provisioning,
            room,
            starting: 0,
        };
        let recent = State {
            last_scale_up: Some(Timestamp::from_secs(100_000 - 1)),
            ..State::default()
        };
        let failed = State {
            last_scale_up_failure: Some(Timestamp::from_secs(100_000 - 1)),
            ..State::default()
        };
        let fresh = State::default();
        for (count, state, want) in [
            (c(0, 3), &fresh, vec![]),
            (c(0, 0), &fresh, vec!["at max_nodes"]),
            (c(1, 3), &fresh, vec!["still provisioning"]),
            (c(0, 3), &recent, vec!["scale_up_cooldown"]),
            (c(0, 3), &failed, vec!["back-off"]),
            (
                c(1, 0),
                &recent,
                vec!["at max_nodes", "still provisioning", "cooldown"],
            ),
        ] {
            let got = blockers(&count, state, &cfg, now);
            assert_eq!(got.len(), want.len(), "{got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g.contains(w), "{g} should say {w}");
            }
        }
    }
}
