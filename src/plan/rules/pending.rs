//! The pending pods, sorted the way cluster-autoscaler sorts them before a scale-up: a
//! DaemonSet's pods are left to their controller; pods that fit an existing node are left
//! to the scheduler (unless it has kept them unschedulable for `SCHEDULER_TRUST`: then the
//! model is missing something and the scheduler is right); pods no new worker could run are
//! unhelpable, as are pods still unschedulable after the workers started for them joined
//! (for `POD_BACKOFF`); the rest are packed onto booting and then new workers.

use super::count::Count;
use crate::config::Config;
use crate::plan::cluster::ClusterModel;
use crate::plan::decision::Unhelpable;
use crate::plan::model::{Misfit, Pod, bytes, num};
use crate::plan::placement;
use crate::plan::snapshot::Snapshot;
use crate::state::State;
use crate::state::time::Timestamp;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// How long a pod the model places on an existing node may stay unschedulable before the
/// scheduler is believed: two runs of the 30 s timer. The scheduler retries such a pod
/// within seconds of a node gaining room (its back-off caps at 10 s:
/// pkg/scheduler/backend/queue, DefaultPodMaxBackoffDuration).
pub const SCHEDULER_TRUST: Duration = Duration::from_secs(60);

/// How long a pod still unschedulable after its workers joined is no reason to scale up:
/// a model that missed a constraint must not grow the pool without bound.
pub const POD_BACKOFF: Duration = Duration::from_secs(600);

/// At most this many pods are remembered in the state's per-pod maps (a burst of
/// thousands must not grow the state file past its limit).
pub const MAX_TRACKED_PODS: usize = 2_000;

#[derive(Debug, Default, PartialEq)]
pub struct Pending {
    /// New workers the pods need, and the pods placed on them.
    pub new_workers: u32,
    pub for_pods: Vec<String>,
    /// Pods that fit a worker still booting: they wait for it.
    pub waiting: usize,
    /// Pods that fit an existing node: the scheduler will place them.
    pub schedulable: usize,
    /// Pods scale-up cannot help, each with why.
    pub unhelpable: Vec<Unhelpable>,
    /// Pods a worker (existing, booting or new) can help: these block a scale-down.
    pub helpable: usize,
    pub fits_since: BTreeMap<String, Timestamp>,
    pub scaled_for: BTreeMap<String, Vec<String>>,
    pub pod_backoff: BTreeMap<String, Timestamp>,
}

pub fn classify(
    model: &ClusterModel,
    snap: &Snapshot,
    count: &Count,
    state: &State,
    now: Timestamp,
) -> Pending {
    let mut out = Pending::default();
    let pods = still_counted(model, snap, state, now, &mut out);
    let trusted = trusted(&pods, state, now);
    let e = placement::estimate(
        &pods,
        &model.nodes,
        &model.template,
        count.workers.provisioning,
        u32::MAX,
        &trusted,
    );
    for key in &e.schedulable {
        let since = state.fits_since.get(key).copied().unwrap_or(now);
        out.fits_since.insert(key.clone(), since);
    }
    for (key, why) in &e.unhelpable {
        out.unhelpable.push(Unhelpable {
            pod: key.clone(),
            why: against_template(why),
        });
    }
    out.schedulable = e.schedulable.len();
    out.waiting = e.on_upcoming.len();
    out.new_workers = e.new_workers;
    out.helpable = e.schedulable.len() + e.on_upcoming.len() + e.on_new.len();
    out.for_pods = e.on_new;
    for map_len in [
        out.fits_since.len(),
        out.scaled_for.len(),
        out.pod_backoff.len(),
    ] {
        debug_assert!(map_len <= pods.len() + model.pending.len());
    }
    truncate(&mut out.fits_since);
    truncate(&mut out.pod_backoff);
    out
}

/// The pending pods a worker could still be started for; a pod still pending after the
/// workers started for it joined is set aside (`POD_BACKOFF`) into `out` instead.
fn still_counted<'a>(
    model: &'a ClusterModel,
    snap: &Snapshot,
    state: &State,
    now: Timestamp,
    out: &mut Pending,
) -> Vec<&'a Pod> {
    let ready = |w: &str| {
        snap.nodes
            .as_ref()
            .and_then(|n| n.get(w))
            .is_some_and(|n| n.ready)
            && !state.provisioning.iter().any(|p| p.name == w)
    };
    let exists = |w: &str| {
        snap.nodes.as_ref().is_some_and(|n| n.contains_key(w))
            || state.provisioning.iter().any(|p| p.name == w)
    };
    let mut pods: Vec<&Pod> = Vec::new();
    for p in model.pending.iter().filter(|p| !p.daemonset) {
        let key = p.key();
        if let Some(until) = state.pod_backoff.get(&key).filter(|u| now < **u) {
            out.pod_backoff.insert(key.clone(), *until);
            out.unhelpable.push(Unhelpable {
                pod: key.clone(),
                why: format!(
                    "still pending after a worker for it joined; not a reason to scale up until {until}"
                ),
            });
            continue;
        }
        if let Some(workers) = state.scaled_for.get(&key) {
            if workers.iter().all(|w| ready(w)) {
                let until = now.plus(POD_BACKOFF);
                out.pod_backoff.insert(key.clone(), until);
                out.unhelpable.push(Unhelpable {
                    pod: key.clone(),
                    why: format!(
                        "still pending after a worker for it joined ({}); not a reason to scale up until {until}",
                        workers.join(", ")
                    ),
                });
                continue;
            }
            if workers.iter().all(|w| exists(w)) {
                out.scaled_for.insert(key.clone(), workers.clone());
            }
        }
        pods.push(p);
    }
    pods
}

/// The pods the scheduler has kept unschedulable for `SCHEDULER_TRUST` although they fit
/// an existing node in the model: then the scheduler is believed and they count.
fn trusted(pods: &[&Pod], state: &State, now: Timestamp) -> HashSet<String> {
    pods.iter()
        .map(|p| p.key())
        .filter(|k| {
            state
                .fits_since
                .get(k)
                .is_some_and(|since| now >= since.plus(SCHEDULER_TRUST))
        })
        .collect()
}

/// A misfit against an empty template worker, said as what a worker has.
fn against_template(m: &Misfit) -> String {
    match m {
        Misfit::Cpu { need, free } => {
            format!(
                "requests {} CPU, a worker allocates {}",
                num(*need),
                num(*free)
            )
        }
        Misfit::Memory { need, free } => format!(
            "requests {} memory, a worker allocates {}",
            bytes(*need),
            bytes(*free)
        ),
        Misfit::TooManyPods { used, allowed } => format!(
            "a new worker allows {allowed} pods (allocatable.pods) and its DaemonSets take {used}"
        ),
        other => format!("{other} on a new worker"),
    }
}

fn truncate<V>(map: &mut BTreeMap<String, V>) {
    while map.len() > MAX_TRACKED_PODS {
        map.pop_last();
    }
}

/// What the scale-up asked for: used by the report and by `Config`-free callers.
pub fn describe(p: &Pending, cfg: &Config, model: &ClusterModel) -> String {
    let t = &model.template.allocatable;
    let pods = match model.template.max_pods {
        Some(max) => format!(" / {} pods", max.saturating_sub(model.template.pod_count)),
        None => String::new(),
    };
    format!(
        "{} pending pod(s) need {} new worker(s) of {} CPU / {}{pods} allocatable (first-fit-decreasing{})",
        p.for_pods.len(),
        p.new_workers,
        num(t.cpu),
        bytes(t.memory),
        if cfg.docker.pool.is_empty() {
            String::new()
        } else {
            format!(", pool {}", cfg.docker.pool)
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::decision::WorkerCounts;
    use crate::plan::model::{Node, Resources};
    use crate::state::Provisioning;
    use std::collections::BTreeMap;

    fn shown(u: &[Unhelpable]) -> Vec<String> {
        u.iter().map(ToString::to_string).collect()
    }

    const GI: f64 = (1u64 << 30) as f64;
    const NOW: Timestamp = Timestamp::from_secs(2_000_000);

    fn pod(name: &str, cpu: f64) -> Pod {
        Pod {
            namespace: "d".into(),
            name: name.into(),
            requests: Resources::new(cpu, 0.1 * GI),
            ..Pod::default()
        }
    }

    fn model(pending: Vec<Pod>, free_cpu: &[f64]) -> ClusterModel {
        let nodes = free_cpu
            .iter()
            .enumerate()
            .map(|(i, f)| Node {
                name: format!("w-{i}"),
                allocatable: Resources::new(4.0, 8.0 * GI),
                requested: Resources::new(4.0 - f, 0.0),
                ready: true,
                ..Node::default()
            })
            .collect();
        let template = Node {
            name: "new".into(),
            allocatable: Resources::new(4.0, 8.0 * GI),
            ready: true,
            ..Node::default()
        };
        ClusterModel::from_parts(nodes, pending, template)
    }

    fn count(provisioning: u32) -> Count {
        Count {
            workers: WorkerCounts {
                ready: 1,
                unready: 0,
                provisioning,
                total: 1 + provisioning,
            },
            joined: Vec::new(),
            overdue: Vec::new(),
            capacity: 1 + provisioning,
            room: 10,
            starting: 0,
        }
    }

    fn snap_with(nodes: &[(&str, bool)]) -> Snapshot {
        let mut map = BTreeMap::new();
        for (n, r) in nodes {
            map.insert(
                n.to_string(),
                crate::plan::snapshot::NodeSample {
                    ready: *r,
                    ..Default::default()
                },
            );
        }
        Snapshot {
            nodes: Some(map),
            ..Snapshot::default()
        }
    }

    #[test]
    fn classify_table() {
        let ds = Pod {
            daemonset: true,
            ..pod("ds", 1.0)
        };
        let snap = snap_with(&[("w-0", true)]);
        // (pods, free cpu on existing, booting, new workers, schedulable, waiting,
        //  unhelpable, helpable)
        type Row = (Vec<Pod>, Vec<f64>, u32, [usize; 5]);
        let table: Vec<Row> = vec![
            (
                vec![pod("a", 3.0), pod("b", 3.0)],
                vec![],
                0,
                [2, 0, 0, 0, 2],
            ),
            (vec![pod("a", 1.0)], vec![2.0], 0, [0, 1, 0, 0, 1]),
            (vec![ds.clone(), pod("a", 1.0)], vec![], 0, [1, 0, 0, 0, 1]),
            (vec![pod("big", 16.0)], vec![], 0, [0, 0, 0, 1, 0]),
            (
                vec![pod("a", 1.0), pod("b", 1.0)],
                vec![],
                1,
                [0, 0, 2, 0, 2],
            ),
        ];
        for (pods, free, booting, want) in table {
            let m = model(pods.clone(), &free);
            let p = classify(&m, &snap, &count(booting), &State::default(), NOW);
            let got = [
                p.new_workers as usize,
                p.schedulable,
                p.waiting,
                p.unhelpable.len(),
                p.helpable,
            ];
            assert_eq!(got, want, "{pods:?} on {free:?}");
        }
        let m = model(vec![pod("big", 16.0)], &[]);
        let p = classify(&m, &snap, &count(0), &State::default(), NOW);
        assert_eq!(
            shown(&p.unhelpable),
            ["pod d/big: requests 16 CPU, a worker allocates 4"]
        );
    }

    #[test]
    fn pods_per_node_bound_the_workers_and_say_so() {
        let snap = snap_with(&[("w-0", true)]);
        let tiny: Vec<Pod> = (0..40).map(|i| pod(&format!("t{i}"), 0.01)).collect();
        // (template's allocatable.pods, its DaemonSet pods, new workers, unhelpable)
        for (max, ds, workers, unhelpable) in
            [(20, 0, 2, 0), (20, 4, 3, 0), (110, 0, 1, 0), (4, 4, 0, 40)]
        {
            let mut m = model(tiny.clone(), &[]);
            m.template.max_pods = Some(max);
            m.template.pod_count = ds;
            let p = classify(&m, &snap, &count(0), &State::default(), NOW);
            assert_eq!(
                (p.new_workers, p.unhelpable.len()),
                (workers, unhelpable),
                "{max}/{ds}"
            );
            if unhelpable > 0 {
                assert_eq!(
                    p.unhelpable[0].to_string(),
                    "pod d/t0: a new worker allows 4 pods (allocatable.pods) and its DaemonSets take 4"
                );
            } else {
                let why = describe(&p, &Config::default(), &m);
                assert!(
                    why.contains(&format!("/ {} pods allocatable", max - ds)),
                    "{why}"
                );
            }
        }
    }

    #[test]
    fn the_scheduler_is_believed_after_a_while() {
        let snap = snap_with(&[("w-0", true)]);
        let m = model(vec![pod("a", 1.0)], &[2.0]);
        let mut st = State::default();
        let p = classify(&m, &snap, &count(0), &st, NOW);
        assert_eq!((p.schedulable, p.new_workers), (1, 0));
        assert_eq!(p.fits_since.get("d/a"), Some(&NOW));
        st.fits_since = p.fits_since;
        let later = NOW.plus(SCHEDULER_TRUST);
        let p = classify(&m, &snap, &count(0), &st, later);
        assert_eq!(
            (p.schedulable, p.new_workers),
            (0, 1),
            "counted for scale-up"
        );
    }

    #[test]
    fn a_pod_still_pending_after_its_worker_joined_is_backed_off() {
        let m = model(vec![pod("a", 1.0)], &[]);
        let mut st = State::default();
        st.scaled_for.insert("d/a".into(), vec!["w-9".into()]);
        st.provisioning.push(Provisioning {
            name: "w-9".into(),
            started_at: NOW,
            host: None,
        });
        // Still booting: kept, the pod waits for it.
        let booting = snap_with(&[("w-0", true)]);
        let p = classify(&m, &booting, &count(1), &st, NOW);
        assert!(p.scaled_for.contains_key("d/a"));
        assert_eq!((p.waiting, p.new_workers), (1, 0));
        // Joined and Ready, the pod still pending: backed off, no scale-up for it.
        st.provisioning.clear();
        let joined = snap_with(&[("w-0", true), ("w-9", true)]);
        let p = classify(&m, &joined, &count(0), &st, NOW);
        assert_eq!(p.new_workers, 0);
        assert_eq!(p.pod_backoff.get("d/a"), Some(&NOW.plus(POD_BACKOFF)));
        assert!(
            p.unhelpable[0]
                .to_string()
                .contains("still pending after a worker for it joined")
        );
        // Past the back-off it counts again.
        st.scaled_for.clear();
        st.pod_backoff = p.pod_backoff;
        let p = classify(&m, &joined, &count(0), &st, NOW.plus(POD_BACKOFF));
        assert_eq!(p.new_workers, 1);
    }
}
