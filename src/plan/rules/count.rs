//! Counting the workers the decision works on: Ready, unready, still provisioning, and
//! what counts toward `max_nodes` (registered workers plus those booting) and `min_nodes`
//! (capacity: Ready workers and those booting; an unready worker is not capacity). A worker
//! still not Ready past `provision_timeout` is no longer waited for: reconcile removes it,
//! but not while its Docker host cannot be listed, and until then it counts toward
//! `max_nodes` only (cluster-autoscaler stops counting a node as upcoming once it is past
//! `--max-node-provision-time`).

use crate::config::Config;
use crate::plan::decision::WorkerCounts;
use crate::plan::snapshot::NodeSample;
use crate::state::State;
use crate::state::time::Timestamp;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    pub workers: WorkerCounts,
    /// Provisioning workers now seen Ready: they leave the provisioning list.
    pub joined: Vec<String>,
    /// Provisioning workers not Ready past `provision_timeout`: counted toward
    /// `max_nodes`, not as provisioning or capacity.
    pub overdue: Vec<String>,
    /// Ready workers and those still provisioning: what `min_nodes` is measured on.
    pub capacity: u32,
    /// Workers that may still be added before `max_nodes`.
    pub room: u32,
    /// Registered workers not Ready yet that are still provisioning (within
    /// `provision_timeout`): cluster-autoscaler's NotStarted nodes, which its health guard
    /// counts among the nodes but not among the unready (clusterstate.go
    /// updateReadinessStats).
    pub starting: u32,
}

pub fn count(
    nodes: &BTreeMap<String, NodeSample>,
    state: &State,
    cfg: &Config,
    now: Timestamp,
) -> Count {
    let joined: Vec<String> = state
        .provisioning
        .iter()
        .filter(|p| nodes.get(&p.name).is_some_and(|n| n.ready))
        .map(|p| p.name.clone())
        .collect();
    let timeout = cfg.scaling.provision_timeout.get();
    let overdue: Vec<String> = state
        .provisioning
        .iter()
        .filter(|p| !joined.contains(&p.name) && now.since(p.started_at) >= timeout)
        .map(|p| p.name.clone())
        .collect();
    let booting = state
        .provisioning
        .iter()
        .filter(|p| !nodes.contains_key(&p.name))
        .count() as u32;
    let still_provisioning = (state.provisioning.len() - joined.len() - overdue.len()) as u32;
    let starting = state
        .provisioning
        .iter()
        .filter(|p| nodes.get(&p.name).is_some_and(|n| !n.ready) && !overdue.contains(&p.name))
        .count() as u32;
    let ready = nodes.values().filter(|n| n.ready).count() as u32;
    let unready = nodes.len() as u32 - ready;
    let workers = WorkerCounts {
        ready,
        unready,
        provisioning: still_provisioning,
        total: nodes.len() as u32 + booting,
    };
    Count {
        capacity: workers.ready + still_provisioning,
        room: cfg.limits.max_nodes.saturating_sub(workers.total),
        workers,
        joined,
        overdue,
        starting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Provisioning;
    use crate::state::time::Timestamp;

    fn nodes(list: &[(&str, bool)]) -> BTreeMap<String, NodeSample> {
        list.iter()
            .map(|(n, ready)| {
                let s = NodeSample {
                    ready: *ready,
                    ..NodeSample::default()
                };
                (n.to_string(), s)
            })
            .collect()
    }

    /// Workers started at 0 s; `name@secs` starts at that second instead.
    fn booting(names: &[&str]) -> State {
        let mut s = State::default();
        for n in names {
            let (name, at) = n.split_once('@').unwrap_or((n, "0"));
            s.provisioning.push(Provisioning {
                name: name.to_string(),
                started_at: Timestamp::from_secs(at.parse().unwrap()),
                host: None,
            });
        }
        s
    }

    #[test]
    fn counts_table() {
        let mut cfg = Config::default();
        cfg.limits.max_nodes = 5;
        cfg.scaling.provision_timeout = crate::config::units::Secs::from_secs(900);
        // Every row is counted at 1,000 s: a worker started at 0 s is past the 900 s
        // provision timeout, one started at 500 s is not.
        // (nodes, provisioning, ready, unready, provisioning, total, capacity, room, starting,
        //  joined)
        type Row<'a> = (
            &'a [(&'a str, bool)],
            &'a [&'a str],
            [u32; 7],
            &'a [&'a str],
        );
        let table: &[Row] = &[
            (&[], &[], [0, 0, 0, 0, 0, 5, 0], &[]),
            (
                &[("w-1", true), ("w-2", false)],
                &[],
                [1, 1, 0, 2, 1, 3, 0],
                &[],
            ),
            // Booting, not yet registered: counts toward both limits.
            (&[("w-1", true)], &["w-2@500"], [1, 0, 1, 2, 2, 3, 0], &[]),
            // Registered but not Ready: still provisioning, counted once.
            (
                &[("w-1", true), ("w-2", false)],
                &["w-2@500"],
                [1, 1, 1, 2, 2, 3, 1],
                &[],
            ),
            // Ready: joined, no longer provisioning, however long it took.
            (
                &[("w-1", true), ("w-2", true)],
                &["w-2"],
                [2, 0, 0, 2, 2, 3, 0],
                &["w-2"],
            ),
            // Booting past the provision timeout (its host could not be listed, so
            // reconcile could not remove it): toward max_nodes only.
            (&[("w-1", true)], &["w-2"], [1, 0, 0, 2, 1, 3, 0], &[]),
            // Registered, not Ready, past the timeout: unready, not provisioning.
            (
                &[("w-1", true), ("w-2", false)],
                &["w-2"],
                [1, 1, 0, 2, 1, 3, 0],
                &[],
            ),
            // One of each: only the one in time is waited for.
            (
                &[("w-1", true)],
                &["w-2", "w-3@500"],
                [1, 0, 1, 3, 2, 2, 0],
                &[],
            ),
            // Over max_nodes: no room, never negative.
            (
                &[
                    ("a", true),
                    ("b", true),
                    ("c", true),
                    ("d", true),
                    ("e", true),
                ],
                &["f@500"],
                [5, 0, 1, 6, 6, 0, 0],
                &[],
            ),
        ];
        for (n, p, want, joined) in table {
            let c = count(&nodes(n), &booting(p), &cfg, Timestamp::from_secs(1000));
            let got = [
                c.workers.ready,
                c.workers.unready,
                c.workers.provisioning,
                c.workers.total,
                c.capacity,
                c.room,
                c.starting,
            ];
            assert_eq!(got, *want, "{n:?} {p:?}");
            assert_eq!(c.joined, *joined, "{n:?} {p:?}");
            let overdue: Vec<&str> = p.iter().filter(|w| !w.contains('@')).copied().collect();
            let overdue: Vec<&str> = overdue
                .into_iter()
                .filter(|w| !joined.contains(w))
                .collect();
            assert_eq!(c.overdue, overdue, "{n:?} {p:?}");
        }
    }
}
