//! Test support shared by the Kubernetes tests: the API server stand-in (a simulator),
//! object builders, an in-memory `WorkerContainers`, and configs pointing at the stand-in.
#![allow(dead_code)]

pub mod apiserver;
pub mod containers;
pub mod objects;

use apiserver::ApiServer;
use k3s_scale::config::Config;

/// Config YAML for a run against `server`: short deadlines so failing drains end quickly,
/// state and lock in the server's scratch directory. `extra` is appended (top-level keys
/// it repeats must not already be here).
pub fn config_yaml(server: &ApiServer, drain: &str, extra: &str) -> String {
    let dir = server.dir().display();
    format!(
        "kubernetes:\n  kubeconfig: {}\n  timeout: 2s\n  permanent_nodes: [keep-1]\n\
         drain:\n{drain}\
         state:\n  path: {dir}/state.json\n  lock_path: {dir}/k3s-scale.lock\n{extra}",
        server.kubeconfig().display()
    )
}

/// The default drain section of the tests: 3 s deadline, retries every 200 ms.
pub const DRAIN: &str =
    "  timeout: 3s\n  max_grace_period: 10s\n  eviction_retry_interval: 200ms\n  concurrency: 4\n";

pub fn config(server: &ApiServer) -> Config {
    Config::parse(&config_yaml(server, DRAIN, "")).expect("test config is valid")
}

pub fn config_with_drain(server: &ApiServer, drain: &str) -> Config {
    Config::parse(&config_yaml(server, drain, "")).expect("test config is valid")
}
