//! What the API adds to the cluster model of one run (`ClusterFacts`): every Node's labels,
//! taints, cordon and readiness; the pods the scheduler marked unschedulable, listed by
//! field selector, with their constraints and the node affinity of their volumes; and what
//! the DaemonSets would run on a new worker of the pool. Also the per-run cache of volume
//! lookups that scale-down shares. Only what a decision needs is asked for: never every pod.

use crate::kube::model::{self, claim_terms};
use crate::kube::{Cluster, KubeError};
use crate::plan::model::{ClusterFacts, Node as ModelNode, NodeTerms, Resources, fits_constraints};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use std::collections::HashMap;

/// Where each claim's volume may be used, looked up once per run (a StatefulSet's pods
/// share a class; a pod's claim is asked for by scale-up and scale-down alike).
pub struct Volumes<'a> {
    cluster: &'a dyn Cluster,
    claims: HashMap<(String, String), Result<NodeTerms, String>>,
}

impl<'a> Volumes<'a> {
    pub fn new(cluster: &'a dyn Cluster) -> Volumes<'a> {
        Volumes {
            cluster,
            claims: HashMap::new(),
        }
    }

    /// `kube::model::claim_terms` for the claim `namespace/name`, asking the API for the
    /// claim, then its PersistentVolume (or, not bound yet, its StorageClass).
    pub fn terms(&mut self, namespace: &str, name: &str) -> Result<NodeTerms, String> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(r) = self.claims.get(&key) {
            return r.clone();
        }
        let c = self.cluster;
        let r = match c.claim(namespace, name) {
            Err(e) => Err(e.to_string()),
            Ok(claim) => claim_terms(
                claim.as_ref(),
                |pv| c.volume(pv).map_err(|e| e.to_string()),
                |sc| c.storage_class(sc).map_err(|e| e.to_string()),
            ),
        };
        self.claims.insert(key, r.clone());
        r
    }
}

/// Whether the scheduler has tried the pod and found no node (PodScheduled False,
/// reason Unschedulable): the pods kube-state-metrics counts as unschedulable.
pub fn unschedulable(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
        })
}

/// Tolerations the DaemonSet controller adds to every pod it makes
/// (pkg/controller/daemon/util/daemonset_util.go `AddOrUpdateDaemonPodTolerations`).
const DAEMON_TOLERATIONS: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// The requests of the DaemonSet pods a new worker like `template` would run, and how
/// many pods they are (each takes one of its `allocatable.pods`): each DaemonSet whose pod
/// template tolerates its taints and matches its labels (the DaemonSet controller places
/// its pods with the scheduler's predicates, pkg/controller/daemon/daemon_controller.go
/// `NodeShouldRunDaemonPod`).
pub fn daemonset_overhead(sets: &[DaemonSet], template: &ModelNode) -> (Resources, u32) {
    let mut total = Resources::default();
    let mut pods = 0;
    for ds in sets {
        let spec = &ds.spec;
        let pod = Pod {
            metadata: spec.template.metadata.clone().unwrap_or_default(),
            spec: spec.template.spec.clone(),
            status: None,
        };
        // A DaemonSet pod's volumes do not decide where it runs in this estimate.
        let mut mp = model::pod(&pod, |_, _| Ok(None));
        for (key, effect) in DAEMON_TOLERATIONS {
            mp.tolerations.push(crate::plan::model::Toleration {
                key: key.to_string(),
                exists: true,
                value: String::new(),
                effect: crate::plan::model::Effect::parse(effect),
            });
        }
        if fits_constraints(&mp, template).is_ok() {
            total = total.plus(mp.requests);
            pods += 1;
        }
    }
    (total, pods)
}

/// The facts of one run. `nodes` is the Node list the run already has; `pool` names this
/// pool (the `k3s-scale.io/pool` label); `config_template` is a new worker as the config
/// describes it (used when no Ready worker of the pool is there to copy).
pub fn cluster_facts(
    cluster: &dyn Cluster,
    nodes: &[Node],
    pool: &str,
    config_template: &ModelNode,
) -> Result<ClusterFacts, KubeError> {
    let mut facts = node_facts(nodes);
    add_pending(cluster, &mut facts, pool, config_template)?;
    Ok(facts)
}

/// The Nodes' part of the facts, from the list the run already has.
pub fn node_facts(nodes: &[Node]) -> ClusterFacts {
    let mut facts = ClusterFacts::default();
    for n in nodes {
        if let Some(name) = &n.metadata.name {
            facts.nodes.insert(name.clone(), model::node_facts(n));
        }
    }
    facts
}

/// The pending pods' constraints and the DaemonSets' overhead on a new worker: two more
/// lists, asked only when a run has unschedulable pods to place (a run with none needs
/// neither, and their decoding is most of a dry run's extra memory).
pub fn add_pending(
    cluster: &dyn Cluster,
    facts: &mut ClusterFacts,
    pool: &str,
    config_template: &ModelNode,
) -> Result<(), KubeError> {
    let mut volumes = Volumes::new(cluster);
    for p in cluster.pending_pods()? {
        // Only the pods the model is asked about; the others the scheduler has yet to try.
        if !unschedulable(&p) {
            continue;
        }
        let ns = p
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let mp = model::pod(&p, |claim, _| volumes.terms(&ns, claim));
        facts.pending.insert(mp.key(), mp);
    }
    // The template's labels and taints: a Ready worker of the pool's, as plan::cluster
    // takes them, else the config's.
    let sibling = facts.nodes.iter().find(|(_, f)| {
        f.ready
            && f.labels
                .get(crate::config::NODE_LABEL_POOL)
                .map(String::as_str)
                == Some(pool)
    });
    let template = match sibling {
        Some((name, f)) => ModelNode {
            name: name.clone(),
            labels: f.labels.clone(),
            taints: f.taints.clone(),
            ready: true,
            ..ModelNode::default()
        },
        None => config_template.clone(),
    };
    (facts.daemonset_overhead, facts.daemonset_pods) =
        daemonset_overhead(&cluster.daemon_sets()?, &template);
    facts.pending_listed = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::{Effect, Taint};
    use serde_json::json;

    fn ds(name: &str, cpu: &str, extra: serde_json::Value) -> DaemonSet {
        let mut spec = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "10Mi"}}}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
        }))
        .unwrap()
    }

    #[test]
    fn overhead_counts_the_daemonsets_a_new_worker_runs() {
        let mut template = ModelNode {
            name: "w-new".into(),
            ready: true,
            ..ModelNode::default()
        };
        template.labels.insert("pool".into(), "blue".into());
        template.taints.push(Taint {
            key: "dedicated".into(),
            value: "web".into(),
            effect: Effect::NoSchedule,
        });
        let sets = vec![
            // Tolerates everything: runs everywhere (svclb, flannel-style).
            ds(
                "all",
                "100m",
                json!({"tolerations": [{"operator": "Exists"}]}),
            ),
            // Does not tolerate the pool's taint.
            ds("plain", "200m", json!({})),
            // Tolerates it, but selects another pool.
            ds(
                "red",
                "400m",
                json!({"nodeSelector": {"pool": "red"}, "tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
            ),
            // Tolerates it and selects this pool.
            ds(
                "blue",
                "50m",
                json!({"nodeSelector": {"pool": "blue"}, "tolerations": [{"key": "dedicated", "value": "web", "effect": "NoSchedule"}]}),
            ),
        ];
        let (got, pods) = daemonset_overhead(&sets, &template);
        assert!((got.cpu - 0.15).abs() < 1e-9, "{got:?}");
        assert_eq!(got.memory, (20u64 << 20) as f64);
        assert_eq!(pods, 2, "each takes one of the worker's pods");
        // Without the taint, every DaemonSet that selects no other pool runs.
        template.taints.clear();
        let (got, pods) = daemonset_overhead(&sets, &template);
        assert!((got.cpu - 0.35).abs() < 1e-9, "{got:?}");
        assert_eq!(pods, 3);
    }

    #[test]
    fn unschedulable_means_the_scheduler_said_so() {
        let p = |cond: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"phase": "Pending", "conditions": cond}}))
                .unwrap()
        };
        assert!(unschedulable(&p(
            json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}])
        )));
        assert!(!unschedulable(&p(
            json!([{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}])
        )));
        assert!(!unschedulable(&p(json!([]))));
    }
}
