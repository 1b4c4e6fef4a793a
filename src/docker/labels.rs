//! The labels that mark what k3s-scale made on a Docker host (containers, volumes) and
//! the Node labels its workers start with; the label sets and list filters built from them.
//! Below both `spec` (what a worker is) and `k3d` (which of k3d's nodes are k3s-scale's).

use std::collections::HashMap;

/// Marks what k3s-scale created; it never touches anything without it.
pub const LABEL_MANAGED: &str = "io.k3s-scale.managed";
/// Which pool (config) a worker belongs to: two configs on one host never touch each
/// other's workers.
pub const LABEL_POOL: &str = "io.k3s-scale.pool";
/// The worker a container or volume belongs to.
pub const LABEL_WORKER: &str = "io.k3s-scale.worker";
/// The worker's number, so that a fresh state still never reuses a name.
pub const LABEL_INDEX: &str = "io.k3s-scale.index";
pub use crate::config::NODE_LABEL_POOL;
/// The Docker host (`docker.hosts[].name`, or "default") a container or volume was made on.
pub const LABEL_HOST: &str = "io.k3s-scale.host";
/// The CPU and memory limits the container was given, so that placement can add up what
/// the workers on a host take without inspecting them (an inspect answer carries the
/// join token).
pub const LABEL_CPUS: &str = "io.k3s-scale.cpus";
pub const LABEL_MEMORY: &str = "io.k3s-scale.memory";
/// The Node label that says which Docker host a worker runs on, for topology spread.
pub const NODE_LABEL_HOST: &str = "k3s-scale.io/host";

/// k3s-scale's own labels on a worker's container and volume.
pub fn worker_labels(pool: &str, worker: &str, index: u64, host: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_POOL.to_string(), pool.to_string()),
        (LABEL_WORKER.to_string(), worker.to_string()),
        (LABEL_INDEX.to_string(), index.to_string()),
        (LABEL_HOST.to_string(), host.to_string()),
    ])
}

/// The Docker list filter for every k3s-scale object, whatever its pool.
pub(super) fn managed_filter() -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{LABEL_MANAGED}=true")])])
}

/// The Docker list filter for this pool's managed objects (labels are ANDed).
pub(super) fn pool_filter(pool: &str, worker: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut labels = vec![
        format!("{LABEL_MANAGED}=true"),
        format!("{LABEL_POOL}={pool}"),
    ];
    if let Some(w) = worker {
        labels.push(format!("{LABEL_WORKER}={w}"));
    }
    HashMap::from([("label".to_string(), labels)])
}

/// True when `labels` mark an object as this pool's.
pub(super) fn is_managed(labels: &HashMap<String, String>, pool: &str) -> bool {
    labels.get(LABEL_MANAGED).map(String::as_str) == Some("true")
        && labels.get(LABEL_POOL).map(String::as_str) == Some(pool)
}
