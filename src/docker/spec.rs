//! What a worker container is, as pure data: its name-derived volume, its labels, its
//! `k3s agent` command and environment, its limits and the kubelet reservation that makes
//! the node offer its share of the host rather than all of it. No I/O here.

use super::k3d;
use super::labels::{LABEL_CPUS, LABEL_MEMORY, NODE_LABEL_HOST, NODE_LABEL_POOL, worker_labels};
use super::token::JoinToken;
use crate::config;
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, ResourcesUlimits, RestartPolicy,
    RestartPolicyNameEnum, VolumeCreateRequest,
};
use std::collections::HashMap;

/// Where k3s keeps the node's data (containerd images, the node password, certificates).
pub const VOLUME_TARGET: &str = "/var/lib/rancher/k3s";

/// The Docker host's capacity, as its daemon reports it (/info: NCPU, MemTotal). This is
/// what the kubelet inside a worker sees as the node's capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostCapacity {
    pub cpus: f64,
    pub memory: u64,
}

/// The volume holding a worker's k3s data.
pub fn volume_name(worker: &str) -> String {
    format!("{worker}-data")
}

/// `--kubelet-arg=system-reserved=...` that takes from the node's capacity (the whole host)
/// everything above the container's limits, so the node's allocatable is its share. None
/// when the limits cover the whole host. CPU is in millicores, memory in bytes.
pub fn system_reserved_arg(cpus: f64, memory: u64, host: &HostCapacity) -> Option<String> {
    let cpu_m = ((host.cpus - cpus) * 1000.0).floor().max(0.0) as u64;
    let mem = host.memory.saturating_sub(memory);
    if cpu_m == 0 && mem == 0 {
        return None;
    }
    Some(format!(
        "--kubelet-arg=system-reserved=cpu={cpu_m}m,memory={mem}"
    ))
}

/// Everything needed to create one kind of worker; built once per run.
pub struct WorkerSpec<'a> {
    pub cfg: &'a config::Docker,
    pub token: &'a JoinToken,
    /// None: no reservation is added (the configured agent_args set their own).
    pub host: Option<HostCapacity>,
    /// The Docker host's name in labels (`docker.hosts[].name`, or "default").
    pub host_name: &'a str,
}

impl WorkerSpec<'_> {
    /// True when the configured agent args already reserve capacity: then they decide.
    pub fn user_sets_reservation(cfg: &config::Docker) -> bool {
        cfg.agent_args.iter().any(|a| a.contains("system-reserved"))
    }

    /// `agent`, the configured extra flags, and the reservation.
    pub fn command(&self) -> Vec<String> {
        let mut cmd = vec![
            "agent".to_string(),
            format!("--node-label={NODE_LABEL_POOL}={}", self.cfg.pool),
            format!("--node-label={NODE_LABEL_HOST}={}", self.host_name),
        ];
        cmd.extend(self.cfg.agent_args.iter().cloned());
        if !Self::user_sets_reservation(self.cfg)
            && let Some(host) = &self.host
            && let Some(arg) = system_reserved_arg(self.cfg.cpus, self.cfg.memory.0, host)
        {
            cmd.push(arg);
        }
        cmd
    }

    /// The container's labels: k3s-scale's own, and k3d's when the pool belongs to a k3d
    /// cluster. k3s-scale lists and removes by its own labels only.
    pub fn container_labels(&self, worker: &str, index: u64) -> HashMap<String, String> {
        let mut labels = worker_labels(&self.cfg.pool, worker, index, self.host_name);
        labels.insert(LABEL_CPUS.to_string(), self.cfg.cpus.to_string());
        labels.insert(LABEL_MEMORY.to_string(), self.cfg.memory.0.to_string());
        if let Some(cluster) = &self.cfg.k3d_cluster {
            labels.extend(k3d::worker_labels(
                cluster,
                &self.cfg.network,
                &self.cfg.server_url,
            ));
        }
        labels
    }

    pub fn volume(&self, worker: &str, index: u64) -> VolumeCreateRequest {
        let mut labels = worker_labels(&self.cfg.pool, worker, index, self.host_name);
        if let Some(cluster) = &self.cfg.k3d_cluster {
            labels.extend(k3d::volume_labels(cluster));
        }
        VolumeCreateRequest {
            name: Some(volume_name(worker)),
            labels: Some(labels),
            ..Default::default()
        }
    }

    /// The create body. It holds the join token: never log or Debug-print it.
    pub fn container(&self, worker: &str, index: u64) -> ContainerCreateBody {
        let c = self.cfg;
        let env = vec![
            format!("K3S_URL={}", c.server_url),
            format!("K3S_NODE_NAME={worker}"),
            format!("K3S_TOKEN={}", self.token.expose()),
        ];
        let ulimit = |name: &str, v: u64| ResourcesUlimits {
            name: Some(name.to_string()),
            soft: Some(v.min(i64::MAX as u64) as i64),
            hard: Some(v.min(i64::MAX as u64) as i64),
        };
        let memory = c.memory.0.min(i64::MAX as u64) as i64;
        let host_config = HostConfig {
            privileged: Some(true),
            tmpfs: Some(HashMap::from([
                ("/run".to_string(), String::new()),
                ("/var/run".to_string(), String::new()),
            ])),
            ulimits: Some(vec![
                ulimit("nofile", c.ulimit_nofile),
                ulimit("nproc", c.ulimit_nproc),
            ]),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            network_mode: Some(c.network.clone()),
            nano_cpus: Some((c.cpus * 1e9).round() as i64),
            memory: Some(memory),
            // Swap equal to the limit: no swap on top of it, so the limit is real.
            memory_swap: Some(memory),
            mounts: Some(vec![Mount {
                typ: Some(MountType::VOLUME),
                source: Some(volume_name(worker)),
                target: Some(VOLUME_TARGET.to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(c.image.clone()),
            cmd: Some(self.command()),
            env: Some(env),
            // Docker refuses a hostname with the host network; elsewhere the node's
            // hostname matches its name.
            hostname: (c.network != "host").then(|| worker.to_string()),
            labels: Some(self.container_labels(worker, index)),
            stop_timeout: Some(c.stop_timeout.get().as_secs().min(i64::MAX as u64) as i64),
            host_config: Some(host_config),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::docker::labels::{LABEL_HOST, LABEL_INDEX, is_managed};

    const GI: u64 = 1 << 30;

    #[test]
    fn reservation_leaves_the_node_its_limits() {
        let host = HostCapacity {
            cpus: 8.0,
            memory: 32 * GI,
        };
        assert_eq!(
            system_reserved_arg(2.0, 2 * GI, &host).unwrap(),
            format!("--kubelet-arg=system-reserved=cpu=6000m,memory={}", 30 * GI)
        );
        assert_eq!(
            system_reserved_arg(1.5, 2 * GI, &host).unwrap(),
            format!("--kubelet-arg=system-reserved=cpu=6500m,memory={}", 30 * GI)
        );
        // Limits at or above the host: nothing to reserve on that resource.
        assert_eq!(
            system_reserved_arg(8.0, 4 * GI, &host).unwrap(),
            format!("--kubelet-arg=system-reserved=cpu=0m,memory={}", 28 * GI)
        );
        assert_eq!(system_reserved_arg(16.0, 64 * GI, &host), None);
    }

    fn spec_cfg() -> config::Docker {
        let mut c = Config::default().docker;
        c.pool = "blue".into();
        c.agent_args = vec!["--node-label=pool=blue".into()];
        c
    }

    #[test]
    fn the_container_carries_the_worker_contract() {
        let cfg = spec_cfg();
        let token = JoinToken::new("s3cret").unwrap();
        let spec = WorkerSpec {
            cfg: &cfg,
            token: &token,
            host: Some(HostCapacity {
                cpus: 4.0,
                memory: 8 * GI,
            }),
            host_name: "box-2",
        };
        let body = spec.container("k3s-worker-7", 7);
        assert_eq!(
            body.cmd.as_deref().unwrap(),
            [
                "agent".to_string(),
                "--node-label=k3s-scale.io/pool=blue".into(),
                "--node-label=k3s-scale.io/host=box-2".into(),
                "--node-label=pool=blue".into(),
                format!("--kubelet-arg=system-reserved=cpu=2000m,memory={}", 6 * GI)
            ]
        );
        let env = body.env.unwrap();
        assert!(env.contains(&"K3S_NODE_NAME=k3s-worker-7".to_string()));
        assert!(env.contains(&"K3S_TOKEN=s3cret".to_string()));
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_INDEX], "7");
        assert_eq!(labels[LABEL_HOST], "box-2");
        assert_eq!(labels[LABEL_CPUS], "2");
        assert_eq!(labels[LABEL_MEMORY], (2 * GI).to_string());
        assert!(is_managed(&labels, "blue"));
        assert!(!is_managed(&labels, "green"));
        assert!(labels.values().all(|v| !v.contains("s3cret")));
        let hc = body.host_config.unwrap();
        assert_eq!(hc.nano_cpus, Some(2_000_000_000));
        assert_eq!(hc.memory, Some(2 * GI as i64));
        assert_eq!(hc.network_mode.as_deref(), Some("k3s"));
        assert_eq!(body.hostname.as_deref(), Some("k3s-worker-7"));
        assert_eq!(
            spec.volume("k3s-worker-7", 7).name.as_deref(),
            Some("k3s-worker-7-data")
        );
    }

    #[test]
    fn a_k3d_pool_adds_k3ds_labels_and_keeps_its_own() {
        let mut cfg = spec_cfg();
        let token = JoinToken::new("s3cret").unwrap();
        let spec = WorkerSpec {
            cfg: &cfg,
            token: &token,
            host: None,
            host_name: "default",
        };
        assert!(
            !spec
                .container_labels("w-1", 1)
                .keys()
                .any(|k| k.starts_with("k3d") || k == "app")
        );
        cfg.k3d_cluster = Some("dev".into());
        cfg.network = "k3d-dev".into();
        let spec = WorkerSpec {
            cfg: &cfg,
            token: &token,
            host: None,
            host_name: "default",
        };
        let labels = spec.container("w-1", 1).labels.unwrap();
        assert!(is_managed(&labels, "blue"));
        assert_eq!(labels["app"], "k3d");
        assert_eq!(labels["k3d.cluster"], "dev");
        assert_eq!(labels["k3d.role"], "agent");
        assert_eq!(labels["k3d.cluster.network"], "k3d-dev");
        assert_eq!(labels["k3d.cluster.url"], cfg.server_url);
        assert!(labels.values().all(|v| !v.contains("s3cret")));
        let vol = spec.volume("w-1", 1).labels.unwrap();
        assert!(is_managed(&vol, "blue"));
        assert_eq!(
            (vol["app"].as_str(), vol["k3d.cluster"].as_str()),
            ("k3d", "dev")
        );
        assert!(!vol.contains_key("k3d.role"));
    }

    #[test]
    fn a_configured_reservation_is_left_alone_and_host_network_gets_no_hostname() {
        let mut cfg = spec_cfg();
        cfg.agent_args = vec!["--kubelet-arg=system-reserved=cpu=1".into()];
        cfg.network = "host".into();
        let token = JoinToken::new("t").unwrap();
        let spec = WorkerSpec {
            cfg: &cfg,
            token: &token,
            host: Some(HostCapacity {
                cpus: 4.0,
                memory: 8 * GI,
            }),
            host_name: "default",
        };
        let body = spec.container("w-1", 1);
        assert_eq!(
            body.cmd.unwrap(),
            [
                "agent",
                "--node-label=k3s-scale.io/pool=blue",
                "--node-label=k3s-scale.io/host=default",
                "--kubelet-arg=system-reserved=cpu=1"
            ]
        );
        assert_eq!(body.hostname, None);
    }
}
