//! The default PromQL for each signal, and the one combined expression sent per run.
//! Defaults read kube-state-metrics. Utilisation is *requests* over allocatable (what
//! cluster-autoscaler uses): node-exporter inside k3s-in-Docker sees the whole host on
//! every node, so it cannot tell one worker from another.

use std::collections::BTreeMap;

/// The label (and value) of the one `node_ready` series that says "no worker at all".
pub const NO_WORKERS_LABEL: &str = "workers";
pub const NO_WORKERS_VALUE: &str = "none";

const WORKER: &str = r#"unless on(node) kube_node_role{role=~"control-plane|master|etcd"}"#;

/// Every series counted once: two kube-state-metrics replicas, or one scraped by two
/// jobs, give each series twice with another `instance`/`job`; summing those would
/// double pods and requests. Applied inside every sum (a `max by` of its own identity
/// needs none).
const ONCE: &str = "max without (instance, job)";
/// A zero is only honest where the series it stands in for are known to be collected:
/// `ZERO_IF_PODS` is 0 while kube-state-metrics reports pods at all, and absent (so the
/// signal is unknown) when the pod series are missing, e.g. dropped by a relabel rule or a
/// failing collector. Zero is then never read into "no pod pending". kube-state-metrics
/// gives every pod one phase series per phase (value 1 for the current one), so the
/// `Running` series exists for every pod whatever its phase: selecting that one reads a
/// fifth of the series for the same answer.
const ZERO_IF_PODS: &str = r#"0 * group(kube_pod_status_phase{phase="Running"})"#;

/// Pods that have been found unschedulable; 0 when there are pods and none is.
fn pending_pods() -> String {
    format!(r#"sum({ONCE} (kube_pod_status_unschedulable)) or {ZERO_IF_PODS}"#)
}

/// The requests of the unschedulable pods. Absent when there are none: the answer reader
/// makes that 0 when `pending_pods` is 0 (no guard series here, see `REQUESTS`). An
/// unschedulable pod has no node, so `node=""` (kube-state-metrics' label for an unbound
/// pod) leaves the placed pods' series unread: Prometheus's time on this part 0.34 ->
/// 0.08 ms at 60 pods.
fn pending_requests(resource: &str) -> String {
    format!(
        r#"sum({ONCE} (kube_pod_container_resource_requests{{resource="{resource}",node=""}}) and on(namespace, pod) (kube_pod_status_unschedulable == 1))"#
    )
}

/// What the four utilisation signals (`cpu`, `memory`, `node_cpu`, `node_memory`) are
/// worked out from when not overridden: per node and resource, the requests of its pods
/// that are placed and not finished, and its allocatable. Both are summed the same way, so
/// a kube-state-metrics scraped twice doubles both sides and the ratio holds. The reader
/// (answer.rs) divides them for each node `node_ready` names, and sums them over its Ready
/// ones for the averages.
///
/// Prometheus's cost is one read per series a selector picks (~10 us each once a series'
/// chunk holds an hour of 30 s samples), and PromQL cannot share a sub-expression: the four
/// expressions these replace read every pod's series twelve times, these read them once
/// (19 -> 5 ms of Prometheus time for the whole query at 60 pods, on a Prometheus scraping
/// every second). Where the answers differ from those four expressions, they differ
/// towards unknown: a resource that no placed, unfinished pod requests (control plane
/// included) is unknown rather than 0 %, as are requests without a `node` label; a Ready
/// node without allocatable makes the average unknown rather than leaving its allocatable
/// out. The averages follow a `node_ready` override (it names the workers, e.g. one pool's).
///
/// `node_requests` also carries each node's pods (`resource="pods"`): those the scheduler
/// counts against its `allocatable.pods`, every placed pod not finished (its pod informer
/// leaves out Succeeded and Failed pods: kube-scheduler's scheduler.go `newPodInformer`),
/// each pod once (`group by` its identity). That reads each placed pod's `kube_pod_info`
/// and two of its phase series more, in the same one query, and adds one series per node
/// to the answer. The bound itself, `allocatable.pods`, comes with the Node list the run
/// has anyway (kube/model.rs), not as another series per node.
pub const NODE_REQUESTS: &str = "node_requests";
pub const NODE_ALLOCATABLE: &str = "node_allocatable";
const REQUESTS: &str = concat!(
    r#"sum by (node, resource) (max without (instance, job) (kube_pod_container_resource_requests{resource=~"cpu|memory",node!=""}) and on(namespace, pod) (kube_pod_status_phase{phase=~"Pending|Running"} == 1))"#,
    r#" or label_replace(count by (node) (group by (namespace, pod, node) (kube_pod_info{node!=""}) unless on(namespace, pod) (kube_pod_status_phase{phase=~"Succeeded|Failed"} == 1)), "resource", "pods", "", "")"#
);
const ALLOCATABLE: &str =
    r#"max by (node, resource) (kube_node_status_allocatable{resource=~"cpu|memory"})"#;

/// The unschedulable pods one by one, for the cluster model: each pod once with the kind
/// of what created it (`created_by_kind`: a DaemonSet's pods are never a reason to scale
/// up), and each pod's CPU and memory requests. Sent with the default `pending_pods`.
/// Both select unbound pods only (`node=""`): `kube_pod_info` carries the owner without
/// reading `kube_pod_owner` for every pod of the cluster, and
/// `kube_pod_status_unschedulable` exists only for pods the scheduler gave up on.
pub const PENDING_POD: &str = "pending_pod";
pub const PENDING_POD_REQUESTS: &str = "pending_pod_requests";
const PENDING_POD_QUERY: &str = r#"max by (namespace, pod, created_by_kind) (kube_pod_info{node=""} and on(namespace, pod) (kube_pod_status_unschedulable == 1))"#;
const PENDING_POD_REQUESTS_QUERY: &str = r#"sum by (namespace, pod, resource) (max without (instance, job) (kube_pod_container_resource_requests{resource=~"cpu|memory",node=""}) and on(namespace, pod) (kube_pod_status_unschedulable == 1))"#;

/// The signals the reader works out from `NODE_REQUESTS` and `NODE_ALLOCATABLE`.
pub const DERIVED: [&str; 4] = ["cpu", "memory", "node_cpu", "node_memory"];

pub fn default_query(signal: &str) -> Option<String> {
    Some(match signal {
        "pending_pods" => pending_pods(),
        "pending_cpu_cores" => pending_requests("cpu"),
        "pending_memory_bytes" => pending_requests("memory"),
        // 1 for a Ready worker, 0 for one that is not. When kube-state-metrics reports the
        // Ready condition of nodes but none is a worker, one `workers="none"` series says
        // so: zero workers is then known, and the run can scale up to min_nodes. (`or on()`
        // adds it only when the left side is empty.)
        "node_ready" => format!(
            r#"(max by (node) (kube_node_status_condition{{condition="Ready",status="true"}}) {WORKER}) or on() label_replace(group(kube_node_status_condition{{condition="Ready"}}), "{NO_WORKERS_LABEL}", "{NO_WORKERS_VALUE}", "", "")"#
        ),
        _ => return None,
    })
}

/// The query of one run: its labelled parts, and which signals keep their default (the
/// reader fills those in where the answer leaves them out; an override's empty answer
/// stays unknown).
#[derive(Debug, Clone)]
pub struct Query {
    pub parts: Vec<(&'static str, String)>,
    pub defaulted: Vec<&'static str>,
}

/// Every signal with its default query (what the reader assumes when not told).
pub fn all_defaults() -> Query {
    signal_queries(&BTreeMap::new())
}

/// The parts to send, with config overrides applied: an overridden signal is sent as its
/// override; `cpu`, `memory`, `node_cpu` and `node_memory` are derived from the two
/// per-node parts, sent once when any of the four keeps its default.
pub fn signal_queries(overrides: &BTreeMap<String, String>) -> Query {
    let mut parts = Vec::new();
    let mut defaulted = Vec::new();
    for &name in crate::config::SIGNAL_NAMES.iter() {
        match overrides.get(name) {
            Some(q) => parts.push((name, q.clone())),
            None => {
                defaulted.push(name);
                if let Some(q) = default_query(name) {
                    parts.push((name, q));
                }
            }
        }
    }
    if defaulted.contains(&"pending_pods") {
        parts.push((PENDING_POD, PENDING_POD_QUERY.to_string()));
        parts.push((PENDING_POD_REQUESTS, PENDING_POD_REQUESTS_QUERY.to_string()));
    }
    // The per-node parts also give the cluster model its resources, so they are sent
    // whenever the pods are.
    if DERIVED.iter().any(|d| defaulted.contains(d)) || defaulted.contains(&"pending_pods") {
        parts.push((NODE_REQUESTS, REQUESTS.to_string()));
        parts.push((NODE_ALLOCATABLE, ALLOCATABLE.to_string()));
    }
    Query { parts, defaulted }
}

/// One expression for all parts: each labelled `signal="<name>"` and joined with `or`
/// (without distinct labels `or` would drop all but one).
pub fn combined_query(queries: &[(&str, String)]) -> String {
    queries
        .iter()
        .map(|(name, q)| format!(r#"label_replace(({q}), "signal", "{name}", "", "")"#))
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_has_a_default_and_overrides_win() {
        let mut o = BTreeMap::new();
        o.insert("cpu".to_string(), "vector(42)".to_string());
        let q = signal_queries(&o);
        let cpu = q.parts.iter().find(|(n, _)| *n == "cpu").unwrap();
        assert_eq!(cpu.1, "vector(42)");
        assert!(!q.defaulted.contains(&"cpu"));
        // memory and the per-node signals still come from the two per-node parts.
        let names: Vec<&str> = q.parts.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "pending_pods",
                "pending_cpu_cores",
                "pending_memory_bytes",
                "cpu",
                "node_ready",
                PENDING_POD,
                PENDING_POD_REQUESTS,
                NODE_REQUESTS,
                NODE_ALLOCATABLE
            ]
        );
        let combined = combined_query(&q.parts);
        assert!(combined.contains(r#"label_replace((vector(42)), "signal", "cpu", "", "")"#));
        assert_eq!(combined.matches(r#", "signal", ""#).count(), q.parts.len());
    }

    #[test]
    fn the_per_node_parts_carry_each_nodes_pods() {
        // The pods on each node the scheduler counts (not finished, each once), as
        // resource "pods" of node_requests; allocatable.pods is the API's.
        assert!(ALLOCATABLE.contains(r#"resource=~"cpu|memory"}"#));
        assert!(REQUESTS.contains(
            r#"count by (node) (group by (namespace, pod, node) (kube_pod_info{node!=""})"#
        ));
        assert!(REQUESTS.contains(
            r#"unless on(namespace, pod) (kube_pod_status_phase{phase=~"Succeeded|Failed"} == 1)"#
        ));
        assert!(REQUESTS.ends_with(r#""resource", "pods", "", "")"#));
    }

    #[test]
    fn the_per_node_parts_go_when_a_derived_signal_or_the_pods_keep_their_default() {
        let mut o: BTreeMap<String, String> = DERIVED
            .iter()
            .map(|d| (d.to_string(), "vector(1)".to_string()))
            .collect();
        // The cluster model still needs them for the pending pods.
        let names = |q: &Query| q.parts.iter().map(|(n, _)| *n).collect::<Vec<_>>();
        let with_pods = signal_queries(&o);
        assert!(names(&with_pods).contains(&NODE_REQUESTS));
        assert!(names(&with_pods).contains(&PENDING_POD));
        o.insert("pending_pods".into(), "vector(0)".into());
        let without = signal_queries(&o);
        for part in [
            NODE_REQUESTS,
            NODE_ALLOCATABLE,
            PENDING_POD,
            PENDING_POD_REQUESTS,
        ] {
            assert!(!names(&without).contains(&part), "{part}");
        }
        let q = with_pods;
        assert_eq!(
            q.defaulted,
            [
                "pending_pods",
                "pending_cpu_cores",
                "pending_memory_bytes",
                "node_ready"
            ]
        );
        assert_eq!(all_defaults().defaulted, crate::config::SIGNAL_NAMES);
    }
}
