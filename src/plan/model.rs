//! The cluster model the scheduling-aware decisions run on: nodes (allocatable, requested,
//! labels, taints, cordon, Ready, the pods placed on them) and pods (requests, owner,
//! selectors, required node affinity, tolerations, host ports, required anti-affinity, the
//! node affinity of their volumes), and `fits`, the scheduler's predicates over them. Pure
//! data, filled by `signals` (resources) and `kube` (constraints).
//!
//! A node holds at most `allocatable.pods` pods, DaemonSet pods included, as the scheduler
//! counts them (noderesources/fit.go `fitsRequest`: `len(nodeInfo.Pods)+1 >
//! allowedPodNumber` is "Too many pods"; its pod informer leaves out finished pods,
//! scheduler.go `newPodInformer`).
//!
//! Simpler than the scheduler on purpose, and said so where it shows: no topology spread,
//! no inter-pod affinity beyond required anti-affinity (taken per node), no extended
//! resources or volume limits. The predicates follow kube-scheduler's plugins
//! (pkg/scheduler/framework/plugins: noderesources/fit.go, nodeaffinity, tainttoleration,
//! nodeports, interpodaffinity, volumebinding) and component-helpers'
//! scheduling/corev1/nodeaffinity for selector terms.

use std::collections::BTreeMap;
use std::fmt;

/// CPU in cores and memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    pub cpu: f64,
    pub memory: f64,
}

impl Resources {
    pub const fn new(cpu: f64, memory: f64) -> Resources {
        Resources { cpu, memory }
    }
    pub fn plus(self, o: Resources) -> Resources {
        Resources::new(self.cpu + o.cpu, self.memory + o.memory)
    }
    pub fn minus(self, o: Resources) -> Resources {
        Resources::new(self.cpu - o.cpu, self.memory - o.memory)
    }
    /// Both resources within `room` (a tiny tolerance for sums of floats).
    pub fn within(self, room: Resources) -> bool {
        self.cpu <= room.cpu + 1e-9 && self.memory <= room.memory + 0.5
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl Effect {
    pub fn parse(s: &str) -> Option<Effect> {
        match s {
            "NoSchedule" => Some(Effect::NoSchedule),
            "PreferNoSchedule" => Some(Effect::PreferNoSchedule),
            "NoExecute" => Some(Effect::NoExecute),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: Effect,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Toleration {
    /// Empty with `exists`: tolerates every taint.
    pub key: String,
    pub exists: bool,
    pub value: String,
    /// None: every effect.
    pub effect: Option<Effect>,
}

impl Toleration {
    /// k8s.io/api core/v1 toleration.go `ToleratesTaint`.
    pub fn tolerates(&self, t: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != t.effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != t.key {
            return false;
        }
        self.exists || self.value == t.value
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" => Op::Gt,
            "Lt" => Op::Lt,
            _ => return None,
        })
    }
}

/// One node selector requirement; `key` "metadata.name" stands for a matchFields term.
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

impl Requirement {
    /// component-helpers nodeaffinity: NotIn and DoesNotExist hold when the label is absent;
    /// Gt and Lt compare integers.
    pub fn matches(&self, labels: &BTreeMap<String, String>, name: &str) -> bool {
        let value = if self.key == FIELD_NAME {
            Some(name)
        } else {
            labels.get(&self.key).map(String::as_str)
        };
        match (self.op, value) {
            (Op::In, Some(v)) => self.values.iter().any(|x| x == v),
            (Op::In, None) => false,
            (Op::NotIn, Some(v)) => !self.values.iter().any(|x| x == v),
            (Op::NotIn, None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt | Op::Lt, None) => false,
            (op, Some(v)) => {
                let (Ok(have), Some(Ok(bound))) = (
                    v.parse::<i64>(),
                    self.values.first().map(|b| b.parse::<i64>()),
                ) else {
                    return false;
                };
                if op == Op::Gt {
                    have > bound
                } else {
                    have < bound
                }
            }
        }
    }
}

/// The field a matchFields requirement may name.
pub const FIELD_NAME: &str = "metadata.name";

/// Required node affinity (or a PV's node affinity): terms ORed, requirements ANDed.
/// `None` means no constraint; `Some(vec![])` matches no node, as the API defines.
pub type NodeTerms = Option<Vec<Vec<Requirement>>>;

pub fn terms_match(terms: &NodeTerms, labels: &BTreeMap<String, String>, name: &str) -> bool {
    match terms {
        None => true,
        Some(terms) => terms
            .iter()
            .any(|t| !t.is_empty() && t.iter().all(|r| r.matches(labels, name))),
    }
}

/// A required anti-affinity term: no pod matching `selector` (in `namespaces`) on the same
/// node. Terms with another topology key are taken per node too (see the file's note).
#[derive(Debug, Clone, PartialEq)]
pub struct AntiAffinity {
    /// matchLabels and matchExpressions folded into requirements over pod labels.
    pub selector: Vec<Requirement>,
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub requests: Resources,
    /// Owned by a DaemonSet: placed on every node by its controller, never by scale-up.
    pub daemonset: bool,
    pub labels: BTreeMap<String, String>,
    pub node_selector: BTreeMap<String, String>,
    pub affinity: NodeTerms,
    pub tolerations: Vec<Toleration>,
    /// (protocol, port) pairs the pod binds on its node.
    pub host_ports: Vec<(String, i32)>,
    pub anti_affinity: Vec<AntiAffinity>,
    /// The node affinity of each bound PersistentVolume it mounts (local-path pins one).
    pub volume_affinity: Vec<NodeTerms>,
    /// A claim whose volume could not be looked up: the model cannot say where it may go.
    pub unknown_volume: Option<String>,
}

impl Pod {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub allocatable: Resources,
    pub requested: Resources,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: bool,
    /// Host ports taken by the pods on it.
    pub host_ports: Vec<(String, i32)>,
    /// (namespace, labels) of the pods on it, for anti-affinity.
    pub pods: Vec<(String, BTreeMap<String, String>)>,
    /// `allocatable.pods`: at most this many pods run on it (the kubelet's `--max-pods`);
    /// None when not known, and then not checked.
    pub max_pods: Option<u32>,
    /// The pods on it that count toward `max_pods`: every pod not finished, DaemonSets'
    /// included.
    pub pod_count: u32,
}

impl Node {
    pub fn free(&self) -> Resources {
        self.allocatable.minus(self.requested)
    }

    /// Takes the pod's place on this node in the simulation.
    pub fn add(&mut self, pod: &Pod) {
        self.requested = self.requested.plus(pod.requests);
        self.pod_count += 1;
        self.host_ports.extend(pod.host_ports.iter().cloned());
        if !pod.labels.is_empty() || !pod.anti_affinity.is_empty() {
            self.pods.push((pod.namespace.clone(), pod.labels.clone()));
        }
    }
}

/// What the Kubernetes API adds to the resources Prometheus gives: the constraints. Listed
/// only as far as a decision needs (Nodes; the pending pods by field selector; DaemonSets
/// for a new worker's overhead), never every pod of the cluster.
/// Labels (and taint keys) that mark a control-plane node (current and legacy names).
pub const CONTROL_PLANE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterFacts {
    /// Every Node by name: labels, taints, cordon, Ready.
    pub nodes: BTreeMap<String, NodeFacts>,
    /// The pending (unbound) pods by `namespace/name`, with their constraints and requests.
    pub pending: BTreeMap<String, Pod>,
    /// Whether `pending` is the API's full answer (listed this run), so a pod missing
    /// from it is not pending now (`plan::sources`).
    pub pending_listed: bool,
    /// What the DaemonSets would run on a new worker of this pool (their pods' requests).
    pub daemonset_overhead: Resources,
    /// How many pods those are (they count toward the worker's `allocatable.pods`).
    pub daemonset_pods: u32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFacts {
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: bool,
    /// `status.allocatable.pods` (the kubelet's `--max-pods`); None when not given.
    pub max_pods: Option<u32>,
}

/// Why a pod does not fit a node: the first predicate that failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Misfit {
    NotReady,
    Unschedulable,
    /// The node already holds `used` pods of the `allowed` (`allocatable.pods`).
    TooManyPods {
        used: u32,
        allowed: u32,
    },
    Cpu {
        need: f64,
        free: f64,
    },
    Memory {
        need: f64,
        free: f64,
    },
    Selector(String),
    Affinity,
    Taint(String),
    HostPort(i32),
    AntiAffinity,
    Volume,
    UnknownVolume(String),
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misfit::NotReady => write!(f, "node not Ready"),
            Misfit::Unschedulable => write!(f, "node cordoned"),
            Misfit::TooManyPods { used, allowed } => {
                write!(f, "too many pods: {used} of {allowed} allowed on the node")
            }
            Misfit::Cpu { need, free } => {
                write!(
                    f,
                    "requests {} CPU, {} free",
                    num(*need),
                    num(free.max(0.0))
                )
            }
            Misfit::Memory { need, free } => write!(
                f,
                "requests {} memory, {} free",
                bytes(*need),
                bytes(free.max(0.0))
            ),
            Misfit::Selector(k) => write!(f, "nodeSelector {k} not matched"),
            Misfit::Affinity => write!(f, "required node affinity not matched"),
            Misfit::Taint(k) => write!(f, "taint {k} not tolerated"),
            Misfit::HostPort(p) => write!(f, "host port {p} taken"),
            Misfit::AntiAffinity => write!(f, "required pod anti-affinity"),
            Misfit::Volume => write!(f, "a volume is pinned to another node"),
            Misfit::UnknownVolume(c) => write!(f, "volume of claim {c} unknown"),
        }
    }
}

/// A figure with at most two decimals and no trailing zeros (`1.5`, `16`).
pub fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

pub fn bytes(v: f64) -> String {
    const GI: f64 = (1u64 << 30) as f64;
    const MI: f64 = (1u64 << 20) as f64;
    if v >= GI {
        format!("{}Gi", num(v / GI))
    } else {
        format!("{}Mi", num(v / MI))
    }
}

/// Whether the scheduler could place the pod on the node now: every predicate, resources
/// last (so a misfit names a constraint before a size).
pub fn fits(pod: &Pod, node: &Node) -> Result<(), Misfit> {
    fits_constraints(pod, node)?;
    fits_resources(pod, node)
}

/// The predicates other than resources.
pub fn fits_constraints(pod: &Pod, node: &Node) -> Result<(), Misfit> {
    if !node.ready {
        return Err(Misfit::NotReady);
    }
    if node.unschedulable {
        return Err(Misfit::Unschedulable);
    }
    for (k, v) in &pod.node_selector {
        if node.labels.get(k) != Some(v) {
            return Err(Misfit::Selector(format!("{k}={v}")));
        }
    }
    if !terms_match(&pod.affinity, &node.labels, &node.name) {
        return Err(Misfit::Affinity);
    }
    // Only NoSchedule and NoExecute keep a pod off (tainttoleration.go).
    if let Some(t) = node.taints.iter().find(|t| {
        t.effect != Effect::PreferNoSchedule && !pod.tolerations.iter().any(|x| x.tolerates(t))
    }) {
        return Err(Misfit::Taint(format!(
            "{}={}:{:?}",
            t.key, t.value, t.effect
        )));
    }
    if let Some(p) = pod.host_ports.iter().find(|p| node.host_ports.contains(p)) {
        return Err(Misfit::HostPort(p.1));
    }
    for term in &pod.anti_affinity {
        let hit = node.pods.iter().any(|(ns, labels)| {
            let in_ns = if term.namespaces.is_empty() {
                *ns == pod.namespace
            } else {
                term.namespaces.contains(ns)
            };
            in_ns && term.selector.iter().all(|r| r.matches(labels, ""))
        });
        if hit {
            return Err(Misfit::AntiAffinity);
        }
    }
    if let Some(c) = &pod.unknown_volume {
        return Err(Misfit::UnknownVolume(c.clone()));
    }
    if pod
        .volume_affinity
        .iter()
        .any(|t| !terms_match(t, &node.labels, &node.name))
    {
        return Err(Misfit::Volume);
    }
    Ok(())
}

/// Resources: the pod count first (as fit.go checks it), then CPU and memory.
pub fn fits_resources(pod: &Pod, node: &Node) -> Result<(), Misfit> {
    fits_pod_count(node, 0)?;
    let free = node.free();
    if pod.requests.cpu > free.cpu + 1e-9 {
        return Err(Misfit::Cpu {
            need: pod.requests.cpu,
            free: free.cpu,
        });
    }
    if pod.requests.memory > free.memory + 0.5 {
        return Err(Misfit::Memory {
            need: pod.requests.memory,
            free: free.memory,
        });
    }
    Ok(())
}

/// Whether one more pod may go on the node, which holds `added` pods beyond its own
/// `pod_count` (a what-if view's): fit.go's `len(nodeInfo.Pods)+1 > allowedPodNumber`.
pub fn fits_pod_count(node: &Node, added: u32) -> Result<(), Misfit> {
    match node.max_pods {
        Some(allowed) if node.pod_count + added >= allowed => Err(Misfit::TooManyPods {
            used: node.pod_count + added,
            allowed,
        }),
        _ => Ok(()),
    }
}

/// Whether a misfit is about room on the node (pods, CPU, memory) rather than a
/// constraint: room may be found on another node or a new one.
pub fn is_room(m: &Misfit) -> bool {
    matches!(
        m,
        Misfit::TooManyPods { .. } | Misfit::Cpu { .. } | Misfit::Memory { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: f64 = (1u64 << 30) as f64;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn node(cpu: f64, mem_gi: f64) -> Node {
        Node {
            name: "w-1".into(),
            allocatable: Resources::new(cpu, mem_gi * GI),
            ready: true,
            labels: labels(&[("pool", "blue"), ("kubernetes.io/hostname", "w-1")]),
            ..Node::default()
        }
    }

    fn pod(cpu: f64, mem_gi: f64) -> Pod {
        Pod {
            namespace: "shop".into(),
            name: "web-1".into(),
            requests: Resources::new(cpu, mem_gi * GI),
            ..Pod::default()
        }
    }

    fn req(key: &str, op: Op, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn taint(key: &str, effect: Effect) -> Taint {
        Taint {
            key: key.into(),
            value: "x".into(),
            effect,
        }
    }

    #[test]
    fn requirement_table() {
        let l = labels(&[("zone", "a"), ("size", "4")]);
        for (r, want) in [
            (req("zone", Op::In, &["a", "b"]), true),
            (req("zone", Op::In, &["b"]), false),
            (req("gpu", Op::In, &["yes"]), false),
            (req("zone", Op::NotIn, &["b"]), true),
            (req("zone", Op::NotIn, &["a"]), false),
            (req("gpu", Op::NotIn, &["yes"]), true),
            (req("zone", Op::Exists, &[]), true),
            (req("gpu", Op::Exists, &[]), false),
            (req("gpu", Op::DoesNotExist, &[]), true),
            (req("size", Op::Gt, &["3"]), true),
            (req("size", Op::Gt, &["4"]), false),
            (req("size", Op::Lt, &["5"]), true),
            (req("zone", Op::Gt, &["1"]), false),
            (req(FIELD_NAME, Op::In, &["w-1"]), true),
            (req(FIELD_NAME, Op::In, &["w-2"]), false),
        ] {
            assert_eq!(r.matches(&l, "w-1"), want, "{r:?}");
        }
        assert!(terms_match(&None, &l, "w-1"));
        assert!(
            !terms_match(&Some(vec![]), &l, "w-1"),
            "no term matches nothing"
        );
        assert!(
            !terms_match(&Some(vec![vec![]]), &l, "w-1"),
            "an empty term too"
        );
        let or = Some(vec![
            vec![req("zone", Op::In, &["b"])],
            vec![req("zone", Op::In, &["a"]), req("size", Op::Exists, &[])],
        ]);
        assert!(terms_match(&or, &l, "w-1"));
    }

    #[test]
    fn toleration_table() {
        let t = taint("dedicated", Effect::NoSchedule);
        let tol = |key: &str, exists: bool, value: &str, effect: Option<Effect>| Toleration {
            key: key.into(),
            exists,
            value: value.into(),
            effect,
        };
        for (x, want) in [
            (tol("dedicated", false, "x", None), true),
            (tol("dedicated", false, "y", None), false),
            (tol("dedicated", true, "", None), true),
            (tol("", true, "", None), true),
            (tol("other", true, "", None), false),
            (tol("dedicated", true, "", Some(Effect::NoSchedule)), true),
            (tol("dedicated", true, "", Some(Effect::NoExecute)), false),
        ] {
            assert_eq!(x.tolerates(&t), want, "{x:?}");
        }
    }

    #[test]
    fn fits_table() {
        let mut busy = node(4.0, 8.0);
        busy.requested = Resources::new(3.0, 2.0 * GI);
        busy.host_ports.push(("TCP".into(), 8080));
        busy.pods.push(("shop".into(), labels(&[("app", "db")])));
        let mut tainted = node(4.0, 8.0);
        tainted.taints.push(taint("dedicated", Effect::NoSchedule));
        let mut soft = node(4.0, 8.0);
        soft.taints.push(taint("soft", Effect::PreferNoSchedule));
        let cordoned = Node {
            unschedulable: true,
            ..node(4.0, 8.0)
        };
        let unready = Node {
            ready: false,
            ..node(4.0, 8.0)
        };
        let selector = Pod {
            node_selector: labels(&[("pool", "red")]),
            ..pod(0.1, 0.1)
        };
        let affinity = Pod {
            affinity: Some(vec![vec![req("pool", Op::In, &["red"])]]),
            ..pod(0.1, 0.1)
        };
        let port = Pod {
            host_ports: vec![("TCP".into(), 8080)],
            ..pod(0.1, 0.1)
        };
        let anti = Pod {
            anti_affinity: vec![AntiAffinity {
                selector: vec![req("app", Op::In, &["db"])],
                namespaces: vec![],
            }],
            ..pod(0.1, 0.1)
        };
        let pinned = Pod {
            volume_affinity: vec![Some(vec![vec![req(
                "kubernetes.io/hostname",
                Op::In,
                &["w-9"],
            )]])],
            ..pod(0.1, 0.1)
        };
        let unknown = Pod {
            unknown_volume: Some("shop/data".into()),
            ..pod(0.1, 0.1)
        };
        let cases: Vec<(&str, Pod, &Node, Option<&str>)> = vec![
            (
                "small pod, empty node",
                pod(1.0, 1.0),
                &tainted,
                Some("taint"),
            ),
            ("small pod", pod(1.0, 1.0), &soft, None),
            ("exactly the free cpu", pod(1.0, 1.0), &busy, None),
            ("over cpu", pod(1.5, 1.0), &busy, Some("CPU")),
            ("over memory", pod(0.5, 7.0), &busy, Some("memory")),
            ("selector", selector, &soft, Some("nodeSelector pool=red")),
            ("affinity", affinity, &soft, Some("affinity")),
            ("host port", port, &busy, Some("host port 8080")),
            ("anti-affinity", anti.clone(), &busy, Some("anti-affinity")),
            ("anti-affinity elsewhere", anti, &soft, None),
            ("pinned volume", pinned, &soft, Some("pinned")),
            ("unknown volume", unknown, &soft, Some("claim shop/data")),
            ("cordoned", pod(0.1, 0.1), &cordoned, Some("cordoned")),
            ("not ready", pod(0.1, 0.1), &unready, Some("not Ready")),
        ];
        for (what, p, n, want) in cases {
            match (fits(&p, n), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.to_string().contains(w), "{what}: {e}"),
                (got, _) => panic!("{what}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn pods_per_node_table() {
        // (allocatable.pods, pods on it, fits; the misfit's words)
        for (max, on, want) in [
            (None, 500, None),
            (Some(110), 0, None),
            (Some(110), 109, None),
            (
                Some(110),
                110,
                Some("too many pods: 110 of 110 allowed on the node"),
            ),
            (Some(10), 10, Some("too many pods: 10 of 10 allowed")),
            (Some(10), 12, Some("too many pods: 12 of 10")),
            (Some(0), 0, Some("too many pods: 0 of 0")),
        ] {
            let n = Node {
                max_pods: max,
                pod_count: on,
                ..node(64.0, 64.0)
            };
            match (fits(&pod(0.01, 0.01), &n), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.to_string().starts_with(w), "{max:?} {on}: {e}"),
                (got, _) => panic!("{max:?} {on}: {got:?}, wanted {want:?}"),
            }
        }
        // The count is checked before CPU and memory, as fit.go does: a full node says so.
        let full = Node {
            max_pods: Some(2),
            pod_count: 2,
            ..node(1.0, 1.0)
        };
        let e = fits(&pod(4.0, 4.0), &full).unwrap_err();
        assert!(matches!(e, Misfit::TooManyPods { .. }), "{e}");
        // A pod placed in the simulation takes a place.
        let mut n = Node {
            max_pods: Some(2),
            ..node(4.0, 8.0)
        };
        n.add(&pod(0.1, 0.1));
        assert!(fits(&pod(0.1, 0.1), &n).is_ok());
        n.add(&pod(0.1, 0.1));
        assert!(fits(&pod(0.1, 0.1), &n).is_err());
        assert_eq!(fits_pod_count(&n, 0), fits_resources(&pod(0.0, 0.0), &n));
    }

    #[test]
    fn misfits_read_as_sizes() {
        let e = fits(&pod(16.0, 1.0), &node(4.0, 8.0)).unwrap_err();
        assert_eq!(e.to_string(), "requests 16 CPU, 4 free");
        let e = fits(&pod(1.0, 9.5), &node(4.0, 8.0)).unwrap_err();
        assert_eq!(e.to_string(), "requests 9.5Gi memory, 8Gi free");
    }
}
