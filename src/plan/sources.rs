//! Where Prometheus (kube-state-metrics) and the Kubernetes API disagree about what exists
//! now, the API wins: Prometheus is for utilisation and history, the API for the present. A
//! stale, NaN or missing kube-state-metrics sample must not scale up for a pod that is bound
//! or gone, remove a Node the API reports Ready, or count a control-plane node as a worker.
//! Pure: it reads the snapshot's `cluster` (the API's facts) and returns a note for each
//! disagreement, naming which source decided.

use super::model::{CONTROL_PLANE_LABELS, ClusterFacts, NodeFacts};
use super::snapshot::Snapshot;

/// Brings the snapshot in line with the API where the API answered; returns what it
/// changed, one note per disagreement. Without the API's facts nothing changes.
pub fn prefer_api(snap: &mut Snapshot) -> Vec<String> {
    let Some(facts) = snap.cluster.take() else {
        return Vec::new();
    };
    let mut notes = control_plane(snap, &facts);
    notes.extend(readiness(snap, &facts));
    notes.extend(pending(snap, &facts));
    snap.cluster = Some(facts);
    notes
}

/// Whether the API's labels or taints mark a control-plane node (k3s sets both
/// `node-role.kubernetes.io/control-plane` and the legacy `master` label on servers).
pub fn is_control_plane(node: &NodeFacts) -> bool {
    CONTROL_PLANE_LABELS
        .iter()
        .any(|l| node.labels.contains_key(*l) || node.taints.iter().any(|t| t.key == *l))
}

/// A node the worker signal lists (`kube_node_role` missing or relabelled) that the API
/// marks control plane is not a worker; it stays in the model as a node pods may use.
fn control_plane(snap: &mut Snapshot, facts: &ClusterFacts) -> Vec<String> {
    let Some(nodes) = snap.nodes.as_mut() else {
        return Vec::new();
    };
    let servers: Vec<String> = nodes
        .keys()
        .filter(|n| facts.nodes.get(*n).is_some_and(is_control_plane))
        .cloned()
        .collect();
    servers
        .into_iter()
        .map(|n| {
            nodes.remove(&n);
            format!(
                "node {n}: Prometheus counts it as a worker, the API's labels or taints mark \
                 it control plane; the API decided: not a worker"
            )
        })
        .collect()
}

/// Readiness as the API reports it now, over a NaN, missing or stale condition series.
fn readiness(snap: &mut Snapshot, facts: &ClusterFacts) -> Vec<String> {
    let mut notes = Vec::new();
    for (name, sample) in snap.nodes.iter_mut().flatten() {
        let Some(api) = facts.nodes.get(name) else {
            continue;
        };
        if api.ready != sample.ready {
            let say = |r: bool| if r { "Ready" } else { "not Ready" };
            notes.push(format!(
                "node {name}: kube-state-metrics says {}, the API says {}; the API decided",
                say(sample.ready),
                say(api.ready)
            ));
            sample.ready = api.ready;
        }
    }
    notes
}

/// A pod Prometheus still lists as unschedulable but the API does not (bound, or gone) is
/// no reason to scale up; the pending counts and requests are those of the pods left.
fn pending(snap: &mut Snapshot, facts: &ClusterFacts) -> Vec<String> {
    if !facts.pending_listed {
        return Vec::new();
    }
    let Some(pods) = snap.unschedulable.as_mut() else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    pods.retain(|p| {
        let listed = facts.pending.contains_key(&p.key());
        if !listed {
            notes.push(format!(
                "pod {}: kube-state-metrics shows it unschedulable, the API does not list it \
                 pending; the API decided: not scaled for",
                p.key()
            ));
        }
        listed
    });
    if !notes.is_empty() {
        snap.pending_pods = Some(pods.len() as f64);
        snap.pending_cpu_cores = Some(pods.iter().fold(0.0, |a, p| a + p.requests.cpu));
        snap.pending_memory_bytes = Some(pods.iter().fold(0.0, |a, p| a + p.requests.memory));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::{Effect, Pod, Resources, Taint};
    use crate::plan::snapshot::NodeSample;
    use std::collections::BTreeMap;

    fn node(ready: bool, label: Option<&str>, taint: Option<&str>) -> NodeFacts {
        NodeFacts {
            labels: label
                .map(|l| BTreeMap::from([(l.to_string(), "true".to_string())]))
                .unwrap_or_default(),
            taints: taint
                .map(|t| {
                    vec![Taint {
                        key: t.into(),
                        value: String::new(),
                        effect: Effect::NoSchedule,
                    }]
                })
                .unwrap_or_default(),
            unschedulable: false,
            max_pods: None,
            ready,
        }
    }

    fn pod(name: &str, cpu: f64) -> Pod {
        Pod {
            namespace: "default".into(),
            name: name.into(),
            requests: Resources::new(cpu, 1.0),
            ..Pod::default()
        }
    }

    /// A snapshot of workers (name, ready per Prometheus) and pending pods.
    fn snap(workers: &[(&str, bool)], pending: &[&str]) -> Snapshot {
        let pods: Vec<Pod> = pending.iter().map(|p| pod(p, 0.5)).collect();
        Snapshot {
            pending_pods: Some(pods.len() as f64),
            pending_cpu_cores: Some(0.5 * pods.len() as f64),
            pending_memory_bytes: Some(pods.len() as f64),
            nodes: Some(
                workers
                    .iter()
                    .map(|(n, r)| {
                        let s = NodeSample {
                            ready: *r,
                            ..NodeSample::default()
                        };
                        (n.to_string(), s)
                    })
                    .collect(),
            ),
            unschedulable: Some(pods),
            ..Snapshot::default()
        }
    }

    fn facts(nodes: &[(&str, NodeFacts)], pending: Option<&[&str]>) -> ClusterFacts {
        ClusterFacts {
            nodes: nodes
                .iter()
                .map(|(n, f)| (n.to_string(), f.clone()))
                .collect(),
            pending: pending
                .into_iter()
                .flatten()
                .map(|p| (format!("default/{p}"), pod(p, 0.5)))
                .collect(),
            pending_listed: pending.is_some(),
            ..ClusterFacts::default()
        }
    }

    #[test]
    fn the_api_decides_what_exists_now() {
        let ready = || node(true, None, None);
        // (case, workers per Prometheus, pending per Prometheus, API facts,
        //  workers after (name, ready), pending after, notes naming)
        type Case<'a> = (
            &'a str,
            Snapshot,
            Option<ClusterFacts>,
            Vec<(&'a str, bool)>,
            Vec<&'a str>,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "no API: nothing changes",
                snap(&[("w-1", false)], &["a"]),
                None,
                vec![("w-1", false)],
                vec!["a"],
                vec![],
            ),
            (
                "agree: nothing said",
                snap(&[("w-1", true)], &["a"]),
                Some(facts(&[("w-1", ready())], Some(&["a"]))),
                vec![("w-1", true)],
                vec!["a"],
                vec![],
            ),
            (
                "NaN or stale NotReady, the API says Ready",
                snap(&[("w-1", false)], &[]),
                Some(facts(&[("w-1", ready())], Some(&[]))),
                vec![("w-1", true)],
                vec![],
                vec!["node w-1: kube-state-metrics says not Ready, the API says Ready"],
            ),
            (
                "Ready per Prometheus, not per the API",
                snap(&[("w-1", true)], &[]),
                Some(facts(&[("w-1", node(false, None, None))], None)),
                vec![("w-1", false)],
                vec![],
                vec!["the API says not Ready"],
            ),
            (
                "a node the API does not list keeps Prometheus's word",
                snap(&[("w-9", false)], &[]),
                Some(facts(&[], None)),
                vec![("w-9", false)],
                vec![],
                vec![],
            ),
            (
                "control plane by label",
                snap(&[("server", true), ("w-1", true)], &[]),
                Some(facts(
                    &[
                        ("server", node(true, Some(CONTROL_PLANE_LABELS[0]), None)),
                        ("w-1", ready()),
                    ],
                    None,
                )),
                vec![("w-1", true)],
                vec![],
                vec!["node server: Prometheus counts it as a worker"],
            ),
            (
                "control plane by the legacy master taint",
                snap(&[("server", true)], &[]),
                Some(facts(
                    &[("server", node(true, None, Some(CONTROL_PLANE_LABELS[1])))],
                    None,
                )),
                vec![],
                vec![],
                vec!["mark it control plane"],
            ),
            (
                "a pod the API no longer lists pending",
                snap(&[("w-1", true)], &["a", "b"]),
                Some(facts(&[("w-1", ready())], Some(&["b"]))),
                vec![("w-1", true)],
                vec!["b"],
                vec!["pod default/a: kube-state-metrics shows it unschedulable"],
            ),
            (
                "pending not listed by the API: Prometheus's list stands",
                snap(&[("w-1", true)], &["a"]),
                Some(facts(&[("w-1", ready())], None)),
                vec![("w-1", true)],
                vec!["a"],
                vec![],
            ),
        ];
        for (case, mut s, f, workers, pending, said) in cases {
            s.cluster = f;
            let notes = prefer_api(&mut s);
            let got: Vec<(&str, bool)> = s
                .nodes
                .iter()
                .flatten()
                .map(|(n, v)| (n.as_str(), v.ready))
                .collect();
            assert_eq!(got, workers, "{case}");
            let left: Vec<&str> = s
                .unschedulable
                .iter()
                .flatten()
                .map(|p| p.name.as_str())
                .collect();
            assert_eq!(left, pending, "{case}");
            assert_eq!(s.pending_pods, Some(pending.len() as f64), "{case}");
            assert_eq!(
                s.pending_cpu_cores,
                Some(0.5 * pending.len() as f64),
                "{case}"
            );
            assert_eq!(notes.len(), said.len(), "{case}: {notes:?}");
            for (n, want) in notes.iter().zip(&said) {
                assert!(n.contains(want), "{case}: {n}");
                assert!(n.contains("the API decided"), "{case}: {n}");
            }
        }
    }
}
