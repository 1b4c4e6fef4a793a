//! The cluster model of one run, built from its snapshot: the nodes with their resources
//! (kube-state-metrics) and, when the API was reached, their labels, taints and cordon; the
//! pending pods with their constraints; and the template of a new worker of this pool, as
//! cluster-autoscaler builds a node group's template node (its labels and taints, its
//! allocatable less what the DaemonSets will run on it, the pods it may hold less the
//! DaemonSets' pods).

use super::model::{Effect, Node, NodeFacts, Pod, Resources, Taint};
use super::snapshot::Snapshot;
use crate::config::{Config, NODE_LABEL_POOL};
use std::collections::{BTreeMap, HashMap};

/// The kubelet's default hard eviction threshold (`memory.available<100Mi`) is kept back
/// from a node's allocatable; k3s does not change it.
pub const EVICTION_RESERVE_BYTES: f64 = (100u64 << 20) as f64;

/// The kubelet's `--max-pods` when nothing says otherwise (k8s.io/kubelet config v1beta1
/// defaults: `MaxPods` 110); k3s keeps it.
pub const DEFAULT_MAX_PODS: u32 = 110;

/// Labels the kubelet and k3s set on every node whose value is the node's own: a template
/// must not carry them (a pod pinned to one node is not helped by a new one).
const PER_NODE_LABELS: [&str; 4] = [
    "kubernetes.io/hostname",
    "k3s.io/hostname",
    "k3s.io/internal-ip",
    "k3s.io/external-ip",
];

pub struct ClusterModel {
    /// Every node whose resources are known and that the model may place pods on or
    /// consider: workers, and other nodes the API lists (a schedulable server).
    pub nodes: Vec<Node>,
    index: HashMap<String, usize>,
    /// The pending pods, constraints merged in when the API listed them.
    pub pending: Vec<Pod>,
    /// A new worker of this pool, empty.
    pub template: Node,
    /// Whether selectors, taints, affinity and volumes were checked (the API was reached);
    /// false: resources only.
    pub constraints: bool,
}

impl ClusterModel {
    pub fn build(snap: &Snapshot, cfg: &Config) -> ClusterModel {
        let facts = snap.cluster.as_ref();
        let workers = snap.nodes.as_ref();
        let mut nodes = Vec::new();
        for (name, res) in &snap.node_resources {
            let worker = workers.and_then(|w| w.get(name));
            let fact = facts.and_then(|f| f.nodes.get(name));
            // A node that is neither a worker Prometheus reports nor one the API lists is
            // not known well enough to place a pod on.
            let ready = match (worker, fact) {
                (Some(w), _) => w.ready,
                (None, Some(f)) => f.ready,
                (None, None) => continue,
            };
            let mut node = Node {
                name: name.clone(),
                allocatable: res.allocatable,
                requested: res.requested,
                ready,
                pod_count: res.pods.unwrap_or(0),
                ..Node::default()
            };
            if let Some(f) = fact {
                node.labels = f.labels.clone();
                node.taints = f.taints.clone();
                node.unschedulable = f.unschedulable;
                // Bounded only where both the bound (the API's) and the pods on it
                // (kube-state-metrics') are known.
                node.max_pods = f.max_pods.filter(|_| res.pods.is_some());
            }
            nodes.push(node);
        }
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let pending = snap
            .unschedulable
            .iter()
            .flatten()
            .map(|p| {
                match facts.and_then(|f| f.pending.get(&p.key())) {
                    // The API's pod with kube-state-metrics' requests (what the rest of the
                    // model is measured in).
                    Some(api) => Pod {
                        requests: p.requests,
                        daemonset: p.daemonset || api.daemonset,
                        ..api.clone()
                    },
                    None => p.clone(),
                }
            })
            .collect();
        ClusterModel {
            template: template(cfg, snap),
            nodes,
            index,
            pending,
            constraints: facts.is_some(),
        }
    }

    /// A model from parts (tests and `simulate`).
    pub fn from_parts(nodes: Vec<Node>, pending: Vec<Pod>, template: Node) -> ClusterModel {
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        ClusterModel {
            nodes,
            index,
            pending,
            template,
            constraints: true,
        }
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// A new worker of this pool: labels and taints of a Ready worker of the pool when the API
/// lists one (less the per-node labels), else what the config gives it (`--node-label`,
/// `--node-taint` in `docker.agent_args`, the pool label, the OS); allocatable of a Ready
/// worker of the pool when known, else `docker.cpus` and `docker.memory` less the eviction
/// reserve; less the DaemonSets' overhead. It holds at most `--kubelet-arg=max-pods=N`
/// of `docker.agent_args` (what the new worker will be started with), else the Ready
/// sibling's `allocatable.pods`, else the kubelet's default; the DaemonSets' pods among
/// them.
pub fn template(cfg: &Config, snap: &Snapshot) -> Node {
    let pool = &cfg.docker.pool;
    let sibling = snap.cluster.as_ref().and_then(|f| {
        f.nodes.iter().find(|(name, n)| {
            n.ready
                && n.labels.get(NODE_LABEL_POOL) == Some(pool)
                && snap.node_resources.contains_key(*name)
        })
    });
    let (labels, taints) = match sibling {
        Some((_, n)) => from_sibling(n),
        None => from_config(cfg),
    };
    let allocatable = sibling
        .and_then(|(name, _)| snap.node_resources.get(name))
        .map(|r| r.allocatable)
        .unwrap_or_else(|| {
            Resources::new(
                cfg.docker.cpus,
                (cfg.docker.memory.0 as f64 - EVICTION_RESERVE_BYTES).max(0.0),
            )
        });
    let max_pods = cfg
        .docker
        .max_pods()
        .or_else(|| sibling.and_then(|(_, n)| n.max_pods))
        .unwrap_or(DEFAULT_MAX_PODS);
    let (overhead, daemonset_pods) = snap
        .cluster
        .as_ref()
        .map(|f| (f.daemonset_overhead, f.daemonset_pods))
        .unwrap_or_default();
    Node {
        name: format!("{}-new", cfg.docker.name_prefix),
        allocatable: allocatable.minus(overhead),
        labels,
        taints,
        ready: true,
        max_pods: Some(max_pods),
        pod_count: daemonset_pods,
        ..Node::default()
    }
}

fn from_sibling(n: &NodeFacts) -> (BTreeMap<String, String>, Vec<Taint>) {
    let mut labels = n.labels.clone();
    for l in PER_NODE_LABELS {
        labels.remove(l);
    }
    (labels, n.taints.clone())
}

fn from_config(cfg: &Config) -> (BTreeMap<String, String>, Vec<Taint>) {
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
    labels.insert(NODE_LABEL_POOL.to_string(), cfg.docker.pool.clone());
    let mut taints = Vec::new();
    let args = &cfg.docker.agent_args;
    for (i, a) in args.iter().enumerate() {
        for (flag, is_label) in [("--node-label", true), ("--node-taint", false)] {
            let value = if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
                Some(v.to_string())
            } else if a == flag {
                args.get(i + 1).cloned()
            } else {
                None
            };
            let Some(v) = value else { continue };
            if is_label {
                if let Some((k, v)) = v.split_once('=') {
                    labels.insert(k.to_string(), v.to_string());
                }
            } else if let Some(t) = parse_taint(&v) {
                taints.push(t);
            }
        }
    }
    (labels, taints)
}

/// `key=value:Effect` or `key:Effect`, as kubelet's `--register-with-taints` takes them.
pub fn parse_taint(s: &str) -> Option<Taint> {
    let (kv, effect) = s.rsplit_once(':')?;
    let effect = Effect::parse(effect)?;
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    Some(Taint {
        key: key.to_string(),
        value: value.to_string(),
        effect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::ClusterFacts;
    use crate::plan::snapshot::NodeResources;

    #[test]
    fn template_from_config() {
        let mut cfg = Config::default();
        cfg.docker.pool = "blue".into();
        cfg.docker.cpus = 4.0;
        cfg.docker.memory = crate::config::units::Bytes(4 << 30);
        cfg.docker.agent_args = vec![
            "--node-label=tier=web".into(),
            "--node-taint".into(),
            "dedicated=web:NoSchedule".into(),
            "--node-label".into(),
            "disk=ssd".into(),
        ];
        let t = template(&cfg, &Snapshot::default());
        assert_eq!(t.allocatable.cpu, 4.0);
        assert_eq!(
            t.allocatable.memory,
            (4u64 << 30) as f64 - EVICTION_RESERVE_BYTES
        );
        for (k, v) in [
            ("tier", "web"),
            ("disk", "ssd"),
            (NODE_LABEL_POOL, "blue"),
            ("kubernetes.io/os", "linux"),
        ] {
            assert_eq!(t.labels.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert_eq!(
            t.taints,
            [Taint {
                key: "dedicated".into(),
                value: "web".into(),
                effect: Effect::NoSchedule
            }]
        );
    }

    #[test]
    fn template_from_a_ready_sibling_less_daemonsets() {
        let mut cfg = Config::default();
        cfg.docker.pool = "blue".into();
        let mut facts = ClusterFacts {
            daemonset_overhead: Resources::new(0.25, 64.0),
            ..ClusterFacts::default()
        };
        let mut labels = BTreeMap::new();
        labels.insert(NODE_LABEL_POOL.to_string(), "blue".to_string());
        labels.insert("kubernetes.io/hostname".to_string(), "w-1".to_string());
        labels.insert("kubernetes.io/arch".to_string(), "arm64".to_string());
        facts.nodes.insert(
            "w-1".into(),
            NodeFacts {
                labels,
                ready: true,
                ..NodeFacts::default()
            },
        );
        let mut snap = Snapshot {
            cluster: Some(facts),
            ..Snapshot::default()
        };
        snap.node_resources.insert(
            "w-1".into(),
            NodeResources {
                requested: Resources::new(1.0, 1.0),
                allocatable: Resources::new(2.0, 1000.0),
                pods: None,
            },
        );
        let t = template(&cfg, &snap);
        assert_eq!(t.allocatable, Resources::new(1.75, 936.0));
        assert_eq!(t.labels.get("kubernetes.io/arch").unwrap(), "arm64");
        assert!(!t.labels.contains_key("kubernetes.io/hostname"));
    }

    #[test]
    fn the_pods_a_new_worker_holds() {
        let with_sibling = |pods: Option<u32>| {
            let mut labels = BTreeMap::new();
            labels.insert(NODE_LABEL_POOL.to_string(), "default".to_string());
            let mut facts = ClusterFacts {
                daemonset_pods: 3,
                ..ClusterFacts::default()
            };
            facts.nodes.insert(
                "w-1".into(),
                NodeFacts {
                    labels,
                    ready: true,
                    max_pods: pods,
                    ..NodeFacts::default()
                },
            );
            let mut snap = Snapshot {
                cluster: Some(facts),
                ..Snapshot::default()
            };
            snap.node_resources.insert(
                "w-1".into(),
                NodeResources {
                    requested: Resources::new(0.0, 0.0),
                    allocatable: Resources::new(2.0, 1e9),
                    pods: Some(7),
                },
            );
            snap
        };
        let args = |a: &[&str]| {
            let mut cfg = Config::default();
            cfg.docker.agent_args = a.iter().map(|s| s.to_string()).collect();
            cfg
        };
        // (agent_args, snapshot, allocatable.pods, DaemonSet pods)
        let table = [
            (args(&[]), Snapshot::default(), 110, 0),
            (
                args(&["--kubelet-arg=max-pods=20"]),
                Snapshot::default(),
                20,
                0,
            ),
            (
                args(&["--kubelet-arg", "max-pods=30"]),
                Snapshot::default(),
                30,
                0,
            ),
            (
                args(&["--kubelet-arg=--max-pods=40"]),
                Snapshot::default(),
                40,
                0,
            ),
            // The Ready sibling's, with the DaemonSets' pods among them.
            (args(&[]), with_sibling(Some(50)), 50, 3),
            (args(&[]), with_sibling(None), 110, 3),
            // What the new worker is started with wins over what a sibling has.
            (
                args(&["--kubelet-arg=max-pods=20"]),
                with_sibling(Some(50)),
                20,
                3,
            ),
        ];
        for (cfg, snap, pods, ds) in table {
            let t = template(&cfg, &snap);
            assert_eq!(
                (t.max_pods, t.pod_count),
                (Some(pods), ds),
                "{:?}",
                cfg.docker.agent_args
            );
        }
    }

    #[test]
    fn taints_parse_as_the_kubelet_takes_them() {
        for (s, want) in [
            ("a=b:NoSchedule", Some(("a", "b", Effect::NoSchedule))),
            ("a:NoExecute", Some(("a", "", Effect::NoExecute))),
            ("a=b", None),
            ("a=b:Sometimes", None),
        ] {
            let got = parse_taint(s);
            let want = want.map(|(k, v, e)| Taint {
                key: k.into(),
                value: v.into(),
                effect: e,
            });
            assert_eq!(got, want, "{s}");
        }
    }
}
