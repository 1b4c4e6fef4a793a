//! Counting the workers the decision works on: Ready, unready, still provisioning, and
//! what counts toward `max_nodes` (registered workers plus those booting) and `min_nodes`
//! (capacity: Ready workers and those booting; an unready worker is not capacity).

use crate::config::Config;
use crate::plan::decide::WorkerCounts;
use crate::plan::snapshot::NodeSample;
use crate::state::State;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    pub workers: WorkerCounts,
    /// Provisioning workers now seen Ready: they leave the provisioning list.
    pub joined: Vec<String>,
    /// Ready workers and those still provisioning: what `min_nodes` is measured on.
    pub capacity: u32,
    /// Workers that may still be added before `max_nodes`.
    pub room: u32,
}

pub fn count(nodes: &BTreeMap<String, NodeSample>, state: &State, cfg: &Config) -> Count {
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
    Count {
        capacity: workers.ready + still_provisioning,
        room: cfg.limits.max_nodes.saturating_sub(workers.total),
        workers,
        joined,
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

    fn booting(names: &[&str]) -> State {
        let mut s = State::default();
        for n in names {
            s.provisioning.push(Provisioning {
                name: n.to_string(),
                started_at: Timestamp::from_secs(0),
                host: None,
            });
        }
        s
    }

    #[test]
    fn counts_table() {
        let mut cfg = Config::default();
        cfg.limits.max_nodes = 5;
        // (nodes, provisioning, ready, unready, provisioning, total, capacity, room, joined)
        type Row<'a> = (
            &'a [(&'a str, bool)],
            &'a [&'a str],
            [u32; 6],
            &'a [&'a str],
        );
        let table: &[Row] = &[
            (&[], &[], [0, 0, 0, 0, 0, 5], &[]),
            (
                &[("w-1", true), ("w-2", false)],
                &[],
                [1, 1, 0, 2, 1, 3],
                &[],
            ),
            // Booting, not yet registered: counts toward both limits.
            (&[("w-1", true)], &["w-2"], [1, 0, 1, 2, 2, 3], &[]),
            // Registered but not Ready: still provisioning, counted once.
            (
                &[("w-1", true), ("w-2", false)],
                &["w-2"],
                [1, 1, 1, 2, 2, 3],
                &[],
            ),
            // Ready: joined, no longer provisioning.
            (
                &[("w-1", true), ("w-2", true)],
                &["w-2"],
                [2, 0, 0, 2, 2, 3],
                &["w-2"],
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
                &["f"],
                [5, 0, 1, 6, 6, 0],
                &[],
            ),
        ];
        for (n, p, want, joined) in table {
            let c = count(&nodes(n), &booting(p), &cfg);
            let got = [
                c.workers.ready,
                c.workers.unready,
                c.workers.provisioning,
                c.workers.total,
                c.capacity,
                c.room,
            ];
            assert_eq!(got, *want, "{n:?} {p:?}");
            assert_eq!(c.joined, *joined, "{n:?} {p:?}");
        }
    }
}
