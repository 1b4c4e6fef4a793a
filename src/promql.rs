//! The default PromQL for each signal, and the one combined expression sent per run.
//! Defaults read kube-state-metrics. Utilisation is *requests* over allocatable (what
//! cluster-autoscaler uses): node-exporter inside k3s-in-Docker sees the whole host on
//! every node, so it cannot tell one worker from another.

use std::collections::BTreeMap;

const WORKER: &str = r#"unless on(node) kube_node_role{role=~"control-plane|master|etcd"}"#;

/// Pods that have been found unschedulable. 0 when kube-state-metrics reports nodes but no
/// such pod; absent (unknown) when kube-state-metrics reports nothing.
const PENDING_PODS: &str =
    r#"(sum(kube_pod_status_unschedulable) or vector(0)) and on() group(kube_node_info)"#;

fn pending_requests(resource: &str) -> String {
    format!(
        r#"(sum(kube_pod_container_resource_requests{{resource="{resource}"}} and on(namespace, pod) (kube_pod_status_unschedulable == 1)) or vector(0)) and on() group(kube_node_info)"#
    )
}

fn ready_workers() -> String {
    format!(r#"(kube_node_status_condition{{condition="Ready",status="true"}} == 1) {WORKER}"#)
}

/// Average utilisation of the Ready workers: their pods' requests over their allocatable.
fn average(resource: &str) -> String {
    let ready = ready_workers();
    format!(
        r#"100 * (sum(kube_pod_container_resource_requests{{resource="{resource}"}} and on(namespace, pod) (kube_pod_status_phase{{phase=~"Pending|Running"}} == 1) and on(node) ({ready})) or vector(0)) / sum(kube_node_status_allocatable{{resource="{resource}"}} and on(node) ({ready}))"#
    )
}

/// Per-worker utilisation; a worker with no pods is 0, not absent.
fn per_node(resource: &str) -> String {
    format!(
        r#"100 * (sum by (node) (kube_pod_container_resource_requests{{resource="{resource}"}} and on(namespace, pod) (kube_pod_status_phase{{phase=~"Pending|Running"}} == 1)) or sum by (node) (0 * kube_node_status_allocatable{{resource="{resource}"}})) / sum by (node) (kube_node_status_allocatable{{resource="{resource}"}}) {WORKER}"#
    )
}

pub fn default_query(signal: &str) -> Option<String> {
    Some(match signal {
        "pending_pods" => PENDING_PODS.to_string(),
        "pending_cpu_cores" => pending_requests("cpu"),
        "pending_memory_bytes" => pending_requests("memory"),
        "cpu" => average("cpu"),
        "memory" => average("memory"),
        // 1 for a Ready worker, 0 for one that is not.
        "node_ready" => format!(
            r#"max by (node) (kube_node_status_condition{{condition="Ready",status="true"}}) {WORKER}"#
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
        assert_eq!(combined.matches("label_replace(").count(), qs.len());
    }
}
