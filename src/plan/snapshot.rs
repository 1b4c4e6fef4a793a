//! What one run knows about the cluster: the signals of the one Prometheus query, and the
//! constraints the Kubernetes API adds when it was reached. `None` means unknown (no
//! data), which is never the same as zero.

use super::model::{ClusterFacts, Pod, Resources};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Pods that cannot be scheduled.
    pub pending_pods: Option<f64>,
    /// CPU cores requested by those pods.
    pub pending_cpu_cores: Option<f64>,
    /// Memory bytes requested by those pods.
    pub pending_memory_bytes: Option<f64>,
    /// Average CPU utilisation of the Ready workers, percent.
    pub cpu: Option<f64>,
    /// Average memory utilisation of the Ready workers, percent.
    pub memory: Option<f64>,
    /// Worker nodes (control plane excluded) by name; `None` when not known at all.
    pub nodes: Option<BTreeMap<String, NodeSample>>,
    /// The unschedulable pods with their requests and owner (kube-state-metrics); `None`
    /// when not asked for or not known, and the decision then sizes by summed requests.
    pub unschedulable: Option<Vec<Pod>>,
    /// Requested and allocatable of every node kube-state-metrics reports, workers or not
    /// (a schedulable server can take a moved pod too).
    pub node_resources: BTreeMap<String, NodeResources>,
    /// The constraints from the API; `None` when it was not reached (a dry run without a
    /// kubeconfig): placement is then by resources only, and the report says so.
    pub cluster: Option<ClusterFacts>,
    /// The Docker host of each of this pool's workers, as Docker listed them (empty
    /// when not listed): scale-down prefers the host with the most workers.
    pub hosts: BTreeMap<String, String>,
}

/// A node's requested and allocatable CPU and memory, when both are known.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeResources {
    pub requested: Resources,
    pub allocatable: Resources,
    /// The pods on it that count toward its `allocatable.pods` (placed, not finished);
    /// None when not known (the bound is then not checked). Its `allocatable.pods` comes
    /// from the API's Node (`ClusterFacts`).
    pub pods: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSample {
    pub ready: bool,
    /// CPU utilisation of this node, percent.
    pub cpu: Option<f64>,
    /// Memory utilisation of this node, percent.
    pub memory: Option<f64>,
}

impl NodeSample {
    /// The node's busiest resource, which is what decides whether it can go.
    pub fn utilisation(&self) -> Option<f64> {
        match (self.cpu, self.memory) {
            (Some(c), Some(m)) => Some(c.max(m)),
            (Some(v), None) | (None, Some(v)) => Some(v),
            (None, None) => None,
        }
    }
}

impl Snapshot {
    pub fn ready_workers(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .iter()
            .flat_map(|n| n.iter())
            .filter(|(_, s)| s.ready)
            .map(|(name, _)| name.as_str())
    }

    /// The scalar signals by name, for output and metrics.
    pub fn signals(&self) -> Vec<(&'static str, Option<f64>)> {
        let (ready, unready) = match &self.nodes {
            Some(n) => {
                let r = n.values().filter(|s| s.ready).count() as f64;
                (Some(r), Some(n.len() as f64 - r))
            }
            None => (None, None),
        };
        vec![
            ("pending_pods", self.pending_pods),
            ("pending_cpu_cores", self.pending_cpu_cores),
            ("pending_memory_bytes", self.pending_memory_bytes),
            ("cpu", self.cpu),
            ("memory", self.memory),
            ("ready_workers", ready),
            ("unready_workers", unready),
        ]
    }
}
