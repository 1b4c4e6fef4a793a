//! The default PromQL for each signal, and the one combined expression sent per run.
//! Defaults read kube-state-metrics. Utilisation is *requests* over allocatable (what
//! cluster-autoscaler uses): node-exporter inside k3s-in-Docker sees the whole host on
//! every node, so it cannot tell one worker from another.

use std::collections::BTreeMap;

/// The label (and value) of the one `node_ready` series that says "no worker at all".
pub const NO_WORKERS_LABEL: &str = "workers";
pub const NO_WORKERS_VALUE: &str = "none";

const WORKER: &str = r#"unless on(node) kube_node_role{role=~"control-plane|master|etcd"}"#;

/// A zero is only honest where the series it stands in for are known to be collected:
/// `ZERO_IF_PODS` is 0 while kube-state-metrics reports pods at all, and absent (so the
/// signal is unknown) when the pod series are missing, e.g. dropped by a relabel rule or a
/// failing collector. Zero is then never read into "no pod pending". kube-state-metrics
/// gives every pod one phase series per phase (value 1 for the current one), so the
/// `Running` series exists for every pod whatever its phase: selecting that one reads a
/// fifth of the series for the same answer (the whole query took 26 -> 17 ms of
/// Prometheus time at 60 pods, tests/bench_evaluate.sh).
const ZERO_IF_PODS: &str = r#"0 * group(kube_pod_status_phase{phase="Running"})"#;
const ZERO_IF_REQUESTS: &str = "0 * group(kube_pod_container_resource_requests)";

/// Pods that have been found unschedulable; 0 when there are pods and none is.
fn pending_pods() -> String {
    format!(r#"sum(kube_pod_status_unschedulable) or {ZERO_IF_PODS}"#)
}

fn pending_requests(resource: &str) -> String {
    format!(
        r#"sum(kube_pod_container_resource_requests{{resource="{resource}"}} and on(namespace, pod) (kube_pod_status_unschedulable == 1)) or ({ZERO_IF_PODS} and on() group(kube_pod_container_resource_requests))"#
    )
}

fn ready_workers() -> String {
    format!(r#"(kube_node_status_condition{{condition="Ready",status="true"}} == 1) {WORKER}"#)
}

/// Average utilisation of the Ready workers: their pods' requests over their allocatable.
fn average(resource: &str) -> String {
    let ready = ready_workers();
    format!(
        r#"100 * (sum(kube_pod_container_resource_requests{{resource="{resource}"}} and on(namespace, pod) (kube_pod_status_phase{{phase=~"Pending|Running"}} == 1) and on(node) ({ready})) or {ZERO_IF_REQUESTS}) / sum(kube_node_status_allocatable{{resource="{resource}"}} and on(node) ({ready}))"#
    )
}

/// Per-worker utilisation; a worker with no pods is 0, not absent (while request series
/// are collected at all).
fn per_node(resource: &str) -> String {
    format!(
        r#"100 * (sum by (node) (kube_pod_container_resource_requests{{resource="{resource}"}} and on(namespace, pod) (kube_pod_status_phase{{phase=~"Pending|Running"}} == 1)) or (sum by (node) (0 * kube_node_status_allocatable{{resource="{resource}"}}) and on() group(kube_pod_container_resource_requests))) / sum by (node) (kube_node_status_allocatable{{resource="{resource}"}}) {WORKER}"#
    )
}

pub fn default_query(signal: &str) -> Option<String> {
    Some(match signal {
        "pending_pods" => pending_pods(),
        "pending_cpu_cores" => pending_requests("cpu"),
        "pending_memory_bytes" => pending_requests("memory"),
        "cpu" => average("cpu"),
        "memory" => average("memory"),
        // 1 for a Ready worker, 0 for one that is not. When kube-state-metrics reports the
        // Ready condition of nodes but none is a worker, one `workers="none"` series says
        // so: zero workers is then known, and the run can scale up to min_nodes. (`or on()`
        // adds it only when the left side is empty.)
        "node_ready" => format!(
            r#"(max by (node) (kube_node_status_condition{{condition="Ready",status="true"}}) {WORKER}) or on() label_replace(group(kube_node_status_condition{{condition="Ready"}}), "{NO_WORKERS_LABEL}", "{NO_WORKERS_VALUE}", "", "")"#
        ),
        "node_cpu" => per_node("cpu"),
        "node_memory" => per_node("memory"),
        _ => return None,
    })
}

/// The expression for every signal, with config overrides applied.
pub fn signal_queries(overrides: &BTreeMap<String, String>) -> Vec<(&'static str, String)> {
    crate::config::SIGNAL_NAMES
        .iter()
        .map(|&name| {
            let q = overrides
                .get(name)
                .cloned()
                .or_else(|| default_query(name))
                .expect("every signal has a default query");
            (name, q)
        })
        .collect()
}

/// One expression for all signals: each labelled `signal="<name>"` and joined with `or`
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
        let qs = signal_queries(&o);
        assert_eq!(qs.len(), crate::config::SIGNAL_NAMES.len());
        let cpu = qs.iter().find(|(n, _)| *n == "cpu").unwrap();
        assert_eq!(cpu.1, "vector(42)");
        let combined = combined_query(&qs);
        assert!(combined.contains(r#"label_replace((vector(42)), "signal", "cpu", "", "")"#));
        assert_eq!(combined.matches(r#", "signal", ""#).count(), qs.len());
    }
}
