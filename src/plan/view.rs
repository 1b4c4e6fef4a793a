//! The one view a run decides on, composed once from what each source said: Prometheus's
//! snapshot, Docker's and the API's listings of this pool, the repairs carried out, and the
//! API's constraints. Pure; nothing changes a snapshot after this.

use super::model::ClusterFacts;
use super::reconcile::{Repair, WorkerContainer, WorkerNode};
use super::snapshot::{NodeSample, Snapshot};

/// This pool as Docker and the API listed it this run.
#[derive(Debug, Clone, Copy)]
pub struct Listing<'a> {
    pub containers: &'a [WorkerContainer],
    pub nodes: &'a [WorkerNode],
    /// How many Docker hosts the pool has (one: no host to prefer among).
    pub hosts: usize,
}

/// What the decision sees, and one note per disagreement between Prometheus and the API
/// (`sources::prefer_api`). Without a listing, Prometheus's snapshot as it came.
pub fn compose(
    metrics: Snapshot,
    listing: Option<Listing>,
    applied: &[Repair],
    facts: Option<ClusterFacts>,
) -> (Snapshot, Vec<String>) {
    let mut snap = metrics;
    let Some(listing) = listing else {
        return (snap, Vec::new());
    };
    snap.cluster = facts;
    if let Some(nodes) = snap.nodes.as_mut() {
        // A worker the API lists but Prometheus does not yet is counted all the same
        // (once): otherwise a run could start one past max_nodes.
        for n in listing.nodes {
            nodes.entry(n.name.clone()).or_insert_with(|| NodeSample {
                ready: n.ready,
                ..Default::default()
            });
        }
        // A worker a repair took away is no longer there to count or remove.
        for r in applied.iter().filter(|r| r.leaves_no_node()) {
            nodes.remove(r.name());
        }
    }
    if listing.hosts > 1 {
        snap.hosts = listing
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.host.clone()))
            .collect();
    }
    let notes = super::sources::prefer_api(&mut snap);
    (snap, notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::reconcile::ContainerState;
    use std::collections::BTreeMap;

    fn container(name: &str, host: &str) -> WorkerContainer {
        WorkerContainer {
            name: name.into(),
            state: ContainerState::Running,
            created: None,
            host: host.into(),
        }
    }

    fn node(name: &str, ready: bool) -> WorkerNode {
        WorkerNode {
            name: name.into(),
            ready,
            drain_left: false,
            cordoned_before_drain: false,
            host: None,
        }
    }

    fn prometheus(workers: &[(&str, bool)]) -> Snapshot {
        Snapshot {
            nodes: Some(
                workers
                    .iter()
                    .map(|(n, ready)| {
                        (
                            n.to_string(),
                            NodeSample {
                                ready: *ready,
                                cpu: Some(10.0),
                                ..Default::default()
                            },
                        )
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    /// (case, Prometheus's workers, listed Nodes, hosts, repairs applied) -> the workers
    /// the decision sees (name, ready) and the hosts map's size.
    #[test]
    fn the_view_joins_the_sources_once() {
        let orphan = Repair::OrphanNode { name: "w-3".into() };
        let stale = Repair::StaleEntry { name: "w-1".into() };
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, bool)>,
            Vec<WorkerNode>,
            usize,
            Vec<Repair>,
            Vec<(&'a str, bool)>,
            usize,
        );
        let cases: Vec<Case> = vec![
            (
                "Prometheus alone",
                vec![("w-1", true)],
                vec![node("w-1", true)],
                1,
                vec![],
                vec![("w-1", true)],
                0,
            ),
            (
                "a Node the API lists first is counted, as the API says",
                vec![("w-1", true)],
                vec![node("w-1", true), node("w-2", false)],
                1,
                vec![],
                vec![("w-1", true), ("w-2", false)],
                0,
            ),
            (
                "a repair that removed the worker takes it away",
                vec![("w-1", true), ("w-3", false)],
                vec![node("w-1", true), node("w-3", false)],
                1,
                vec![orphan.clone()],
                vec![("w-1", true)],
                0,
            ),
            (
                "a repair that leaves the Node keeps it",
                vec![("w-1", true)],
                vec![node("w-1", true)],
                1,
                vec![stale],
                vec![("w-1", true)],
                0,
            ),
            (
                "several Docker hosts: each worker's host is known",
                vec![("w-1", true)],
                vec![node("w-1", true)],
                2,
                vec![],
                vec![("w-1", true)],
                2,
            ),
        ];
        let containers = [container("w-1", "box-1"), container("w-2", "box-2")];
        for (case, prom, nodes, hosts, applied, want, hosts_known) in cases {
            let listing = Listing {
                containers: &containers,
                nodes: &nodes,
                hosts,
            };
            let (snap, _) = compose(prometheus(&prom), Some(listing), &applied, None);
            let got: Vec<(&str, bool)> = snap
                .nodes
                .as_ref()
                .unwrap()
                .iter()
                .map(|(n, s)| (n.as_str(), s.ready))
                .collect();
            assert_eq!(got, want, "{case}");
            assert_eq!(snap.hosts.len(), hosts_known, "{case}");
        }
    }

    #[test]
    fn without_a_listing_the_snapshot_is_prometheuss() {
        let metrics = prometheus(&[("w-1", true)]);
        let facts = ClusterFacts {
            nodes: BTreeMap::new(),
            ..Default::default()
        };
        let (snap, notes) = compose(metrics.clone(), None, &[], Some(facts));
        assert_eq!(snap, metrics);
        assert!(notes.is_empty());
    }
}
