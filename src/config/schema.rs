//! The configuration file: its schema, defaults, parsing and validation. Everything after
//! `Config::parse` works on a validated value; nothing else reads the file.

use crate::config::files;
use crate::config::units::{Bytes, Secs};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where `--config` is looked for when not given.
pub const DEFAULT_PATHS: [&str; 2] = ["config.yaml", "/etc/k3s-scale/config.yaml"];

/// Config files larger than this are refused before parsing (a config is a few KiB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no config file found (looked at {})", joined(.0))]
    NotFound(Vec<PathBuf>),
    #[error("cannot read config {path}: {1}", path = .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error("config {path} is {1} bytes, over the {MAX_CONFIG_BYTES}-byte limit", path = .0.display())]
    TooLarge(PathBuf, u64),
    #[error(
        "refusing {path}: it is world-writable, so anyone on this host could change what \
         the autoscaler does (chmod o-w it)",
        path = .0.display()
    )]
    WorldWritable(PathBuf),
    #[error("config {path}: {1}", path = .0.display())]
    Parse(PathBuf, String),
    /// A value that parsed but makes no sense: the dotted key and why.
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

/// The paths looked at, as `NotFound` names them.
fn joined(paths: &[PathBuf]) -> String {
    let list: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
    list.join(", ")
}

/// The host of an http(s) URL (`http://HOST[:PORT][/...]`), None when it has none or
/// it holds characters no host has.
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]:9090`.
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '\\';
    (!host.is_empty() && !host.contains(bad)).then_some(host)
}

/// Whether two configured paths name one file: the same path, or the same name in
/// folders that are one folder (through a link) where the folders exist already.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    if a == b {
        return true;
    }
    let resolve = |p: &std::path::Path| {
        let folder = match p.parent() {
            Some(f) if !f.as_os_str().is_empty() => f,
            _ => std::path::Path::new("."),
        };
        let real = std::fs::canonicalize(folder).ok()?;
        let real = real.join(p.file_name()?);
        // The file itself may be a link to another (own files refuse links at use; here
        // it would name the pair to fix).
        Some(std::fs::canonicalize(&real).unwrap_or(real))
    };
    matches!((resolve(a), resolve(b)), (Some(x), Some(y)) if x == y)
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub prometheus: Prometheus,
    pub thresholds: Thresholds,
    pub limits: Limits,
    pub scaling: Scaling,
    pub docker: Docker,
    pub kubernetes: Kubernetes,
    pub drain: Drain,
    pub state: StatePaths,
    pub metrics: Metrics,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Prometheus {
    pub url: String,
    pub timeout: Secs,
    pub bearer_token_file: Option<PathBuf>,
    pub basic_auth: Option<BasicAuth>,
    pub ca_file: Option<PathBuf>,
    /// Per-signal PromQL overrides, keyed by signal name.
    pub queries: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub pending_pods: u32,
    pub cpu_threshold: f64,
    pub memory_threshold: f64,
    pub cpu_scale_down: f64,
    pub memory_scale_down: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub min_nodes: u32,
    pub max_nodes: u32,
    pub scale_up_cooldown: Secs,
    pub scale_down_cooldown: Secs,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Scaling {
    pub max_step: u32,
    pub scale_down_unneeded_time: Secs,
    pub scale_down_delay_after_scale_up: Secs,
    pub failure_backoff: Secs,
    pub provision_timeout: Secs,
    /// A worker NotReady this long is removed like an unneeded one (cluster-autoscaler's
    /// `--scale-down-unready-time`, 20 min by default); until then it is neither capacity
    /// nor a candidate.
    pub scale_down_unready_time: Secs,
    /// A whole run's deadline: past it no new outside call starts, the state is saved and
    /// the run exits 5 naming the step. Unset: `drain.timeout` plus `RUN_MARGIN`
    /// (`Config::run_timeout`; `config check` prints the value that applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_timeout: Option<Secs>,
    /// The health guard (plan/rules/health.rs): the cluster is unhealthy only when more
    /// than this many workers are unready *and* more than `max_total_unready_percentage`
    /// of them are (cluster-autoscaler's `--ok-total-unready-count`, 3).
    pub ok_total_unready_count: u32,
    /// ...percent of the registered workers (cluster-autoscaler's
    /// `--max-total-unready-percentage`, 45).
    pub max_total_unready_percentage: f64,
}

/// What a run may take beyond its drain when `scaling.run_timeout` is unset: the query,
/// the listings, a worker's stop and removal.
pub const RUN_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// The longest `scaling.run_timeout`: systemd/k3s-scale.service's `TimeoutStartSec`, past
/// which systemd stops the run from outside.
pub const MAX_RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Docker {
    pub host: Option<String>,
    pub tls: Option<DockerTls>,
    /// Several Docker hosts for one pool; empty: the one host of `host` (or $DOCKER_HOST).
    pub hosts: Vec<DockerHost>,
    /// How far the workers' limits on a host may add up past its CPUs and memory when
    /// placing a new worker (1.0: not at all).
    pub overcommit: f64,
    pub timeout: Secs,
    pub image: String,
    pub network: String,
    pub name_prefix: String,
    pub pool: String,
    pub server_url: String,
    pub token_file: Option<PathBuf>,
    pub agent_args: Vec<String>,
    pub cpus: f64,
    pub memory: Bytes,
    pub stop_timeout: Secs,
    /// Open-file limit (soft = hard) of each worker; k3s's own compose file uses 65535.
    pub ulimit_nofile: u64,
    /// Process limit (soft = hard) of each worker; k3s's own compose file uses 65535.
    pub ulimit_nproc: u64,
    /// The k3d cluster this pool's workers belong to: they then also carry k3d's labels,
    /// so `k3d node list` shows them and `k3d cluster delete` removes them. None: a plain
    /// k3s-in-Docker cluster.
    pub k3d_cluster: Option<String>,
}

/// One Docker host of a multi-host pool (`docker.hosts`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DockerHost {
    /// Short name used in labels (`io.k3s-scale.host`, Node label `k3s-scale.io/host`).
    pub name: String,
    /// The endpoint, as `docker.host` takes it: unix:///path or tcp://host:port.
    pub host: String,
    #[serde(default)]
    pub tls: Option<DockerTls>,
    /// At most this many k3s-scale workers (of any pool) on this host; None: no cap.
    #[serde(default)]
    pub max_workers: Option<u32>,
}

/// The name the one host of a single-host config goes by in labels and status.
/// The least a k3s agent needs from its container's start to its Node's Ready (the image
/// present, a fast host: ~5-20 s); `scaling.provision_timeout` must leave at least this
/// beyond `docker.timeout`.
pub const MIN_JOIN: std::time::Duration = std::time::Duration::from_secs(5);

pub const SINGLE_HOST_NAME: &str = "default";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DockerTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The Node label every worker registers with (`--node-label`): how reconcile finds this
/// pool's Nodes, even when their container is gone, and what a new worker's template has.
pub const NODE_LABEL_POOL: &str = "k3s-scale.io/pool";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Kubernetes {
    pub kubeconfig: Option<PathBuf>,
    pub timeout: Secs,
    pub permanent_nodes: Vec<String>,
    /// Keep a worker that runs a kube-system pod (not a DaemonSet's) without a
    /// PodDisruptionBudget, as cluster-autoscaler's `--skip-nodes-with-system-pods` (on by
    /// default): k3s's single CoreDNS, metrics-server and local-path-provisioner.
    pub skip_nodes_with_system_pods: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Drain {
    pub timeout: Secs,
    pub max_grace_period: Secs,
    pub eviction_retry_interval: Secs,
    pub concurrency: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StatePaths {
    pub path: PathBuf,
    pub lock_path: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    pub textfile: Option<PathBuf>,
}

impl Default for Prometheus {
    fn default() -> Self {
        Prometheus {
            url: "http://127.0.0.1:9090".into(),
            timeout: Secs::from_secs(5),
            bearer_token_file: None,
            basic_auth: None,
            ca_file: None,
            queries: BTreeMap::new(),
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        // The defaults of the Python service this replaces.
        Thresholds {
            pending_pods: 1,
            cpu_threshold: 80.0,
            memory_threshold: 80.0,
            cpu_scale_down: 30.0,
            memory_scale_down: 30.0,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_nodes: 2,
            max_nodes: 6,
            scale_up_cooldown: Secs::from_secs(60),
            scale_down_cooldown: Secs::from_secs(120),
        }
    }
}

impl Default for Scaling {
    fn default() -> Self {
        // Delays follow cluster-autoscaler: 10 min unneeded, 10 min after a scale-up,
        // 3 min after a failure, 15 min max-node-provision-time.
        Scaling {
            max_step: 3,
            scale_down_unneeded_time: Secs::from_secs(600),
            scale_down_delay_after_scale_up: Secs::from_secs(600),
            failure_backoff: Secs::from_secs(180),
            provision_timeout: Secs::from_secs(900),
            scale_down_unready_time: Secs::from_secs(1200),
            run_timeout: None,
            // cluster-autoscaler's flags (clusterstate/clusterstate.go IsClusterHealthy).
            ok_total_unready_count: 3,
            max_total_unready_percentage: 45.0,
        }
    }
}

impl Default for Docker {
    fn default() -> Self {
        Docker {
            host: None,
            tls: None,
            hosts: Vec::new(),
            overcommit: 1.0,
            timeout: Secs::from_secs(30),
            image: "rancher/k3s:v1.31.4-k3s1".into(),
            network: "k3s".into(),
            name_prefix: "k3s-worker".into(),
            pool: "default".into(),
            server_url: "https://k3s-server:6443".into(),
            token_file: None,
            agent_args: Vec::new(),
            cpus: 2.0,
            memory: Bytes(2 << 30),
            stop_timeout: Secs::from_secs(30),
            ulimit_nofile: 65535,
            ulimit_nproc: 65535,
            k3d_cluster: None,
        }
    }
}

impl Default for Kubernetes {
    fn default() -> Self {
        Kubernetes {
            kubeconfig: None,
            timeout: Secs::from_secs(10),
            permanent_nodes: Vec::new(),
            skip_nodes_with_system_pods: true,
        }
    }
}

impl Default for Drain {
    fn default() -> Self {
        // cluster-autoscaler: evictions retried every 5 s up to 2 min; grace capped at 600 s.
        Drain {
            timeout: Secs::from_secs(120),
            max_grace_period: Secs::from_secs(600),
            eviction_retry_interval: Secs::from_secs(5),
            concurrency: 16,
        }
    }
}

impl Default for StatePaths {
    fn default() -> Self {
        StatePaths {
            path: "/var/lib/k3s-scale/state.json".into(),
            lock_path: "/var/lib/k3s-scale/k3s-scale.lock".into(),
        }
    }
}

/// Signals whose PromQL may be overridden under `prometheus.queries`.
pub const SIGNAL_NAMES: [&str; 8] = [
    "pending_pods",
    "pending_cpu_cores",
    "pending_memory_bytes",
    "cpu",
    "memory",
    "node_ready",
    "node_cpu",
    "node_memory",
];

impl Config {
    /// Finds the config file: the given path, else the first of `DEFAULT_PATHS` that exists.
    pub fn locate(given: Option<&Path>) -> Result<PathBuf, ConfigError> {
        if let Some(p) = given {
            return Ok(p.to_path_buf());
        }
        let candidates: Vec<PathBuf> = DEFAULT_PATHS.iter().map(PathBuf::from).collect();
        candidates
            .iter()
            .find(|p| p.exists())
            .cloned()
            .ok_or(ConfigError::NotFound(candidates))
    }

    /// Reads, parses and validates the config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = read_config(path, MAX_CONFIG_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            ConfigError::Read(
                path.into(),
                std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
            )
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse(_, msg) => ConfigError::Parse(path.into(), msg),
            other => other,
        })
    }

    /// Parses and validates config text. An empty document gives the defaults.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str::<Option<Config>>(text)
                .map_err(|e| ConfigError::Parse(PathBuf::new(), e.to_string()))?
                .unwrap_or_default()
        };
        config.validate()?;
        Ok(config)
    }

    /// The run's deadline from its start (`scaling.run_timeout`, or its default).
    pub fn run_timeout(&self) -> std::time::Duration {
        self.scaling.run_timeout.map_or(
            (self.drain.timeout.get() + RUN_MARGIN).min(MAX_RUN_TIMEOUT),
            |t| t.get(),
        )
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let t = &self.thresholds;
        for (key, v) in [
            ("thresholds.cpu_threshold", t.cpu_threshold),
            ("thresholds.memory_threshold", t.memory_threshold),
            ("thresholds.cpu_scale_down", t.cpu_scale_down),
            ("thresholds.memory_scale_down", t.memory_scale_down),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err(invalid(key, format!("{v} is not a percentage in 0-100")));
            }
        }
        // A scale-up threshold of 0 % fires on every run; said of the key that is 0, not
        // of the scale-down threshold that cannot be below it.
        for (key, v) in [
            ("thresholds.cpu_threshold", t.cpu_threshold),
            ("thresholds.memory_threshold", t.memory_threshold),
        ] {
            if v == 0.0 {
                return Err(invalid(
                    key,
                    "0 would scale up on every run; it must be above 0",
                ));
            }
        }
        if t.cpu_scale_down >= t.cpu_threshold {
            return Err(invalid(
                "thresholds.cpu_scale_down",
                format!(
                    "{} must be below thresholds.cpu_threshold ({}), or the cluster would flap",
                    t.cpu_scale_down, t.cpu_threshold
                ),
            ));
        }
        if t.memory_scale_down >= t.memory_threshold {
            return Err(invalid(
                "thresholds.memory_scale_down",
                format!(
                    "{} must be below thresholds.memory_threshold ({}), or the cluster would flap",
                    t.memory_scale_down, t.memory_threshold
                ),
            ));
        }
        if t.pending_pods == 0 {
            return Err(invalid(
                "thresholds.pending_pods",
                "must be at least 1 (0 would scale up on every run)",
            ));
        }
        let l = &self.limits;
        if l.max_nodes == 0 {
            return Err(invalid("limits.max_nodes", "must be at least 1"));
        }
        if l.min_nodes > l.max_nodes {
            return Err(invalid(
                "limits.min_nodes",
                format!(
                    "{} is above limits.max_nodes ({})",
                    l.min_nodes, l.max_nodes
                ),
            ));
        }
        if self.scaling.max_step == 0 {
            return Err(invalid("scaling.max_step", "must be at least 1"));
        }
        let pct = self.scaling.max_total_unready_percentage;
        if !(0.0..=100.0).contains(&pct) {
            return Err(invalid(
                "scaling.max_total_unready_percentage",
                format!("{pct} is not a percentage in 0-100"),
            ));
        }
        self.validate_prometheus()?;
        self.validate_docker()?;
        self.validate_provision_timeout()?;
        self.validate_run_timeout()?;
        let k = &self.kubernetes;
        if k.timeout.get().is_zero() {
            return Err(invalid("kubernetes.timeout", "must be above zero"));
        }
        for (i, n) in k.permanent_nodes.iter().enumerate() {
            if !is_dns_subdomain(n) {
                return Err(invalid(
                    &format!("kubernetes.permanent_nodes[{i}]"),
                    format!("{n:?} is not a valid Kubernetes node name"),
                ));
            }
        }
        let d = &self.drain;
        if d.timeout.get().is_zero() {
            return Err(invalid("drain.timeout", "must be above zero"));
        }
        if d.eviction_retry_interval.get().is_zero() {
            return Err(invalid(
                "drain.eviction_retry_interval",
                "must be above zero",
            ));
        }
        if d.concurrency == 0 {
            return Err(invalid("drain.concurrency", "must be at least 1"));
        }
        if self.state.path.as_os_str().is_empty() {
            return Err(invalid("state.path", "must not be empty"));
        }
        if self.state.lock_path.as_os_str().is_empty() {
            return Err(invalid("state.lock_path", "must not be empty"));
        }
        self.validate_own_files_distinct()
    }

    /// The state, the lock and the metrics textfile are three files: one path for two of
    /// them (or two paths reaching one file through a link) breaks every run (the lock
    /// read as a corrupt state, the state overwritten with metrics).
    fn validate_own_files_distinct(&self) -> Result<(), ConfigError> {
        let mut files = vec![
            ("state.path", &self.state.path),
            ("state.lock_path", &self.state.lock_path),
        ];
        if let Some(t) = &self.metrics.textfile {
            files.push(("metrics.textfile", t));
        }
        for (i, (a, pa)) in files.iter().enumerate() {
            for (b, pb) in &files[i + 1..] {
                if same_file(pa, pb) {
                    return Err(invalid(
                        b,
                        format!(
                            "{} is the same file as {a} ({}); the two must differ",
                            pb.display(),
                            pa.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_prometheus(&self) -> Result<(), ConfigError> {
        let p = &self.prometheus;
        if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
            return Err(invalid(
                "prometheus.url",
                format!("{:?} must start with http:// or https://", p.url),
            ));
        }
        if url_host(&p.url).is_none() {
            return Err(invalid(
                "prometheus.url",
                format!("{:?} names no host", p.url),
            ));
        }
        if p.url.contains('@') {
            return Err(invalid(
                "prometheus.url",
                "must not carry credentials; use prometheus.basic_auth or bearer_token_file",
            ));
        }
        if p.timeout.get().is_zero() {
            return Err(invalid("prometheus.timeout", "must be above zero"));
        }
        if p.bearer_token_file.is_some() && p.basic_auth.is_some() {
            return Err(invalid(
                "prometheus.bearer_token_file",
                "set either bearer_token_file or basic_auth, not both",
            ));
        }
        for (name, q) in &p.queries {
            if !SIGNAL_NAMES.contains(&name.as_str()) {
                return Err(invalid(
                    &format!("prometheus.queries.{name}"),
                    format!("unknown signal; known signals: {}", SIGNAL_NAMES.join(", ")),
                ));
            }
            if q.trim().is_empty() {
                return Err(invalid(
                    &format!("prometheus.queries.{name}"),
                    "empty query",
                ));
            }
        }
        Ok(())
    }

    /// A worker is given up past `scaling.provision_timeout` from the moment its start was
    /// recorded; its Docker calls alone may take `docker.timeout` before the agent even
    /// runs. Shorter than that plus a join, every worker started is removed unjoined, and
    /// every run starts and removes workers (0 did).
    fn validate_provision_timeout(&self) -> Result<(), ConfigError> {
        let floor = self.docker.timeout.get() + MIN_JOIN;
        let p = self.scaling.provision_timeout.get();
        if p < floor {
            return Err(invalid(
                "scaling.provision_timeout",
                format!(
                    "{} is below docker.timeout ({}) plus the {} s a k3s agent needs at \
                     least to join: every worker would be removed before it could be Ready",
                    Secs(p),
                    self.docker.timeout,
                    MIN_JOIN.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// A run must have room for its query and a whole drain (else every drain would be
    /// cut short by the run's deadline), and end before systemd's backstop stops it.
    fn validate_run_timeout(&self) -> Result<(), ConfigError> {
        let Some(t) = self.scaling.run_timeout else {
            return Ok(());
        };
        let floor = self.drain.timeout.get() + self.prometheus.timeout.get();
        if t.get() < floor {
            return Err(invalid(
                "scaling.run_timeout",
                format!(
                    "{t} is below drain.timeout ({}) plus prometheus.timeout ({}): a drain \
                     would be cut short by the run's deadline",
                    self.drain.timeout, self.prometheus.timeout
                ),
            ));
        }
        if t.get() > MAX_RUN_TIMEOUT {
            return Err(invalid(
                "scaling.run_timeout",
                format!(
                    "{t} is above {}, systemd/k3s-scale.service's TimeoutStartSec, past which \
                     systemd stops the run from outside",
                    Secs(MAX_RUN_TIMEOUT)
                ),
            ));
        }
        Ok(())
    }

    fn validate_docker(&self) -> Result<(), ConfigError> {
        let d = &self.docker;
        if d.image.trim().is_empty() || d.image.chars().any(char::is_whitespace) {
            return Err(invalid(
                "docker.image",
                format!("{:?} is not an image reference", d.image),
            ));
        }
        if !is_docker_name(&d.network) {
            return Err(invalid(
                "docker.network",
                format!("{:?} is not a valid Docker network name", d.network),
            ));
        }
        // Worker names become container, volume and Node names: keep them DNS labels.
        if d.name_prefix.is_empty()
            || d.name_prefix.len() > 40
            || !is_dns_label(&format!("{}-1", d.name_prefix))
        {
            return Err(invalid(
                "docker.name_prefix",
                format!(
                    "{:?} must be lower-case letters, digits and '-', start with a letter, at most 40 characters",
                    d.name_prefix
                ),
            ));
        }
        if !is_dns_label(&d.pool) {
            return Err(invalid(
                "docker.pool",
                format!("{:?} must be lower-case letters, digits and '-'", d.pool),
            ));
        }
        if !(d.server_url.starts_with("https://") || d.server_url.starts_with("http://")) {
            return Err(invalid(
                "docker.server_url",
                format!(
                    "{:?} must be a URL such as https://k3s-server:6443",
                    d.server_url
                ),
            ));
        }
        if !(d.cpus > 0.0 && d.cpus <= 1024.0) {
            return Err(invalid(
                "docker.cpus",
                format!("{} must be above 0", d.cpus),
            ));
        }
        if d.memory.0 < (64 << 20) {
            return Err(invalid("docker.memory", "must be at least 64Mi"));
        }
        if d.timeout.get().is_zero() {
            return Err(invalid("docker.timeout", "must be above zero"));
        }
        if let Some(host) = &d.host {
            check_endpoint("docker.host", host, d.tls.is_some(), "docker.tls")?;
        }
        if !(d.overcommit >= 1.0 && d.overcommit <= 100.0) {
            return Err(invalid(
                "docker.overcommit",
                format!("{} must be between 1.0 (none) and 100", d.overcommit),
            ));
        }
        self.validate_docker_hosts()?;
        // Below a few thousand, k3s (kubelet, containerd) runs out of files or threads.
        for (key, v) in [
            ("docker.ulimit_nofile", d.ulimit_nofile),
            ("docker.ulimit_nproc", d.ulimit_nproc),
        ] {
            if !(1024..=1 << 30).contains(&v) {
                return Err(invalid(key, format!("{v} must be between 1024 and 2^30")));
            }
        }
        if let Some(name) = &d.k3d_cluster
            && let Err(why) = check_k3d_cluster_name(name)
        {
            return Err(invalid("docker.k3d_cluster", why));
        }
        for (i, a) in d.agent_args.iter().enumerate() {
            if a.to_ascii_lowercase().contains("token") {
                return Err(invalid(
                    &format!("docker.agent_args[{i}]"),
                    "must not carry the join token; use docker.token_file or K3S_TOKEN",
                ));
            }
        }
        kubelet_max_pods(&d.agent_args)
            .map_err(|(i, why)| invalid(&format!("docker.agent_args[{i}]"), why))?;
        Ok(())
    }
}

impl Docker {
    /// The `--max-pods` the workers' kubelet is given in `agent_args`
    /// (`--kubelet-arg=max-pods=N`), if any: what a new worker's `allocatable.pods` will be.
    pub fn max_pods(&self) -> Option<u32> {
        kubelet_max_pods(&self.agent_args).ok().flatten()
    }
}

/// `--kubelet-arg=max-pods=N` in k3s agent flags, in each form k3s takes: the value joined
/// by `=` or the next argument, the kubelet flag with or without its `--` (k3s trims it:
/// pkg/daemons/config `GetArgs`); the last one wins, as for the kubelet. Err names the
/// argument (by index) whose value is not a whole number above 0.
fn kubelet_max_pods(args: &[String]) -> Result<Option<u32>, (usize, String)> {
    let mut found = None;
    for (i, a) in args.iter().enumerate() {
        let (value, at) = match a.strip_prefix("--kubelet-arg=") {
            Some(v) => (v, i),
            None if a == "--kubelet-arg" => match args.get(i + 1) {
                Some(v) => (v.as_str(), i + 1),
                None => continue,
            },
            None => continue,
        };
        let Some(n) = value.trim_start_matches("--").strip_prefix("max-pods=") else {
            continue;
        };
        match n.parse::<u32>() {
            Ok(n) if n > 0 => found = Some(n),
            _ => {
                return Err((
                    at,
                    format!("max-pods value {n:?} is not a whole number above 0"),
                ));
            }
        }
    }
    Ok(found)
}

/// An endpoint as `docker.host` takes it; `tls` only with tcp://.
fn check_endpoint(key: &str, host: &str, tls: bool, tls_key: &str) -> Result<(), ConfigError> {
    let known = ["unix://", "tcp://", "http://", "https://"];
    if !known.iter().any(|s| host.starts_with(s)) || known.contains(&host) {
        return Err(invalid(
            key,
            format!("{host:?} must be unix:///path or tcp://host:port"),
        ));
    }
    if tls && host.starts_with("unix://") {
        return Err(invalid(
            tls_key,
            format!("TLS applies to a tcp:// {key} only"),
        ));
    }
    Ok(())
}

/// An endpoint as written, made comparable: `tcp://h:2375/` and `tcp://h:2375` are one.
fn endpoint_key(host: &str) -> String {
    let h = host.trim_end_matches('/');
    match h.strip_prefix("http://") {
        Some(rest) => format!("tcp://{rest}"),
        None => h.to_string(),
    }
}

impl Config {
    fn validate_docker_hosts(&self) -> Result<(), ConfigError> {
        let d = &self.docker;
        if d.hosts.is_empty() {
            return Ok(());
        }
        if d.host.is_some() || d.tls.is_some() {
            return Err(invalid(
                "docker.hosts",
                "set either docker.host (and docker.tls) or docker.hosts, not both",
            ));
        }
        for (i, h) in d.hosts.iter().enumerate() {
            let key = format!("docker.hosts[{i}]");
            // Short, and valid wherever it goes: a Docker label value and a Node label value.
            if h.name.is_empty()
                || h.name.len() > 32
                || !h
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                || h.name.starts_with('-')
                || h.name.ends_with('-')
            {
                return Err(invalid(
                    &format!("{key}.name"),
                    format!(
                        "{:?} must be 1-32 lower-case letters, digits and '-', not starting or ending with '-'",
                        h.name
                    ),
                ));
            }
            check_endpoint(
                &format!("{key}.host"),
                &h.host,
                h.tls.is_some(),
                &format!("{key}.tls"),
            )?;
            if h.max_workers == Some(0) {
                return Err(invalid(
                    &format!("{key}.max_workers"),
                    "must be at least 1 (remove the host to use none)",
                ));
            }
            for (j, other) in d.hosts[..i].iter().enumerate() {
                let same = if other.name == h.name {
                    Some(format!("name {:?}", h.name))
                } else if endpoint_key(&other.host) == endpoint_key(&h.host) {
                    Some(format!("endpoint {:?}", h.host))
                } else {
                    None
                };
                if let Some(what) = same {
                    return Err(invalid(
                        &key,
                        format!(
                            "docker.hosts[{j}] ({}) and docker.hosts[{i}] ({}) have the same {what}",
                            other.name, h.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Reads the config file, refusing one anyone on the host can write: it would let them
/// steer the autoscaler. Judged on the file opened, after links (`files::read_checked`,
/// which the join token, credential and CA files go through as well).
fn read_config(path: &Path, max: u64) -> Result<Vec<u8>, ConfigError> {
    files::read_checked(path, max).map_err(|e| match e {
        files::ReadError::Io(e) => ConfigError::Read(path.into(), e),
        files::ReadError::WorldWritable => ConfigError::WorldWritable(path.into()),
        files::ReadError::TooLarge(n) => ConfigError::TooLarge(path.into(), n),
    })
}

/// RFC 1123 label: what a container and Node name must be.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0].is_ascii_lowercase()
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: what a Node name may be.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// k3d's own rule for a cluster name (k3d-io/k3d pkg/client/clusterName.go, CheckName): an
/// RFC 1123 host name of at most 32 characters, so that k3d's object names built from it
/// stay within Docker's limits.
pub fn check_k3d_cluster_name(name: &str) -> Result<(), String> {
    const MAX: usize = 32; // k3d's DefaultClusterNameMaxLength (pkg/types/defaults.go)
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || !name.split('.').all(label_ok) {
        return Err(format!(
            "{name:?} is not a k3d cluster name (an RFC 1123 host name)"
        ));
    }
    if name.len() > MAX {
        return Err(format!(
            "{name:?} is {} characters; k3d cluster names have at most {MAX}",
            name.len()
        ));
    }
    Ok(())
}

/// Docker object names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn is_docker_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn empty_config_gives_the_seed_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.thresholds.pending_pods, 1);
        assert_eq!(c.thresholds.cpu_threshold, 80.0);
        assert_eq!(c.thresholds.memory_scale_down, 30.0);
        assert_eq!(c.limits.min_nodes, 2);
        assert_eq!(c.limits.max_nodes, 6);
        assert_eq!(c.limits.scale_up_cooldown.get().as_secs(), 60);
        assert_eq!(c.limits.scale_down_cooldown.get().as_secs(), 120);
        assert!(!c.dry_run);
    }

    #[test]
    fn the_shipped_example_config_is_valid_and_states_the_defaults() {
        let text = include_str!("../../config.yaml");
        let c = Config::parse(text).unwrap();
        let mut d = Config::default();
        // The example points at the compose stack; everything else is the default.
        d.prometheus.url = c.prometheus.url.clone();
        d.docker.token_file = c.docker.token_file.clone();
        d.kubernetes = c.kubernetes.clone();
        d.state = c.state.clone();
        d.metrics = c.metrics.clone();
        assert_eq!(c, d);
    }

    #[test]
    fn max_pods_is_read_from_the_kubelet_args_in_every_form_k3s_takes() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (a, want) in [
            (args(&[]), Ok(None)),
            (args(&["--kubelet-arg=max-pods=20"]), Ok(Some(20))),
            (args(&["--kubelet-arg", "max-pods=30"]), Ok(Some(30))),
            (args(&["--kubelet-arg=--max-pods=40"]), Ok(Some(40))),
            (args(&["--kubelet-arg", "--max-pods=50"]), Ok(Some(50))),
            (
                args(&["--kubelet-arg=max-pods=20", "--kubelet-arg=max-pods=60"]),
                Ok(Some(60)),
            ),
            (args(&["--kubelet-arg=pods-per-core=4"]), Ok(None)),
            (args(&["--node-label=max-pods=9"]), Ok(None)),
            (args(&["--kubelet-arg"]), Ok(None)),
            (args(&["--kubelet-arg=max-pods=-1"]), Err(0)),
            (args(&["--kubelet-arg", "max-pods=x"]), Err(1)),
        ] {
            assert_eq!(kubelet_max_pods(&a).map_err(|e| e.0), want, "{a:?}");
        }
    }

    #[test]
    fn durations_accept_integers_and_units() {
        let c =
            Config::parse("limits:\n  scale_up_cooldown: 90\n  scale_down_cooldown: 5m\n").unwrap();
        assert_eq!(c.limits.scale_up_cooldown.get().as_secs(), 90);
        assert_eq!(c.limits.scale_down_cooldown.get().as_secs(), 300);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = err("thresholds:\n  cpu_treshold: 70\n");
        assert!(e.contains("cpu_treshold"), "{e}");
        let e = err("limitz: {}\n");
        assert!(e.contains("limitz"), "{e}");
    }

    #[test]
    fn own_files_reaching_one_file_through_a_link_are_refused() {
        let dir = std::env::temp_dir().join(format!("k3s-scale-same-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real")).unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).unwrap();
        let text = format!(
            "state:\n  path: {0}/real/state.json\n  lock_path: {0}/real/lock\n\
             metrics:\n  textfile: {0}/link/state.json\n",
            dir.display()
        );
        let e = err(&text);
        assert!(
            e.contains("metrics.textfile") && e.contains("state.path"),
            "{e}"
        );
        let apart = text.replace("link/state.json", "link/k3s-scale.prom");
        assert!(Config::parse(&apart).is_ok(), "{apart}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn provision_timeout_leaves_room_for_the_docker_calls_and_a_join() {
        // (config, accepted)
        let cases = [
            ("", true),
            ("scaling:\n  provision_timeout: 35s\n", true),
            ("scaling:\n  provision_timeout: 34s\n", false),
            (
                "scaling:\n  provision_timeout: 7s\ndocker:\n  timeout: 2s\n",
                true,
            ),
            ("scaling:\n  provision_timeout: 0\n", false),
        ];
        for (text, ok) in cases {
            let r = Config::parse(text);
            assert_eq!(r.is_ok(), ok, "{text:?}: {r:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains("docker.timeout (30s)"), "{e}");
            }
        }
    }

    #[test]
    fn run_timeout_leaves_room_for_a_drain_and_ends_before_systemd_stops_it() {
        // (config, Ok(effective run_timeout in s) or Err(words the error has))
        let cases: [(&str, Result<u64, &str>); 7] = [
            ("", Ok(180)),
            ("drain:\n  timeout: 5m\n", Ok(360)),
            ("drain:\n  timeout: 15m\n", Ok(900)),
            ("scaling:\n  run_timeout: 2m5s\n", Ok(125)),
            (
                "scaling:\n  run_timeout: 2m4s\n",
                Err("below drain.timeout (2m) plus prometheus.timeout (5s)"),
            ),
            ("scaling:\n  run_timeout: 15m\n", Ok(900)),
            ("scaling:\n  run_timeout: 16m\n", Err("TimeoutStartSec")),
        ];
        for (text, want) in cases {
            let r = Config::parse(text);
            match (want, r) {
                (Ok(secs), Ok(c)) => {
                    assert_eq!(c.run_timeout().as_secs(), secs, "{text:?}");
                }
                (Err(words), Err(e)) => {
                    let e = e.to_string();
                    assert!(
                        e.contains("scaling.run_timeout") && e.contains(words),
                        "{e}"
                    );
                }
                (want, got) => panic!("{text:?}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            (
                "limits:\n  min_nodes: 7\n  max_nodes: 3\n",
                "limits.min_nodes",
            ),
            (
                "thresholds:\n  cpu_threshold: 120\n",
                "thresholds.cpu_threshold",
            ),
            (
                "thresholds:\n  memory_scale_down: -1\n",
                "thresholds.memory_scale_down",
            ),
            (
                "thresholds:\n  cpu_scale_down: 80\n",
                "thresholds.cpu_scale_down",
            ),
            (
                "thresholds:\n  memory_threshold: 50\n  memory_scale_down: 50\n",
                "thresholds.memory_scale_down",
            ),
            ("prometheus:\n  url: ftp://x\n", "prometheus.url"),
            ("prometheus:\n  url: 'http://'\n", "prometheus.url"),
            ("prometheus:\n  url: 'http://:9090'\n", "prometheus.url"),
            ("prometheus:\n  url: 'https:///api'\n", "prometheus.url"),
            ("prometheus:\n  url: 'http://a b:9090'\n", "prometheus.url"),
            (
                "thresholds:\n  cpu_threshold: 0\n  cpu_scale_down: 0\n",
                "thresholds.cpu_threshold",
            ),
            (
                "thresholds:\n  memory_threshold: 0\n  memory_scale_down: 0\n",
                "thresholds.memory_threshold",
            ),
            (
                "state:\n  path: /var/lib/k3s-scale/x\n  lock_path: /var/lib/k3s-scale/x\n",
                "state.lock_path",
            ),
            (
                "state:\n  path: /var/lib/k3s-scale/s\nmetrics:\n  textfile: /var/lib/k3s-scale/s\n",
                "metrics.textfile",
            ),
            (
                "state:\n  lock_path: /tmp/l\nmetrics:\n  textfile: /tmp/l\n",
                "metrics.textfile",
            ),
            ("prometheus:\n  timeout: 0\n", "prometheus.timeout"),
            (
                "prometheus:\n  queries:\n    cpuu: up\n",
                "prometheus.queries.cpuu",
            ),
            ("scaling:\n  max_step: 0\n", "scaling.max_step"),
            (
                "scaling:\n  max_total_unready_percentage: 101\n",
                "scaling.max_total_unready_percentage",
            ),
            (
                "scaling:\n  max_total_unready_percentage: -1\n",
                "scaling.max_total_unready_percentage",
            ),
            (
                "scaling:\n  provision_timeout: 0\n",
                "scaling.provision_timeout",
            ),
            (
                "scaling:\n  provision_timeout: 34s\n",
                "scaling.provision_timeout",
            ),
            (
                "scaling:\n  provision_timeout: 10s\ndocker:\n  timeout: 6s\n",
                "scaling.provision_timeout",
            ),
            ("docker:\n  name_prefix: Bad_Name\n", "docker.name_prefix"),
            (
                "docker:\n  agent_args: ['--kubelet-arg=max-pods=lots']\n",
                "docker.agent_args[0]",
            ),
            (
                "docker:\n  agent_args: ['--node-label=a=b', '--kubelet-arg', 'max-pods=0']\n",
                "docker.agent_args[2]",
            ),
            ("docker:\n  network: 'a b'\n", "docker.network"),
            (
                "docker:\n  agent_args: ['--token=abc']\n",
                "docker.agent_args[0]",
            ),
            ("docker:\n  host: ssh://x\n", "docker.host"),
            ("docker:\n  host: tcp://\n", "docker.host"),
            (
                "docker:\n  host: unix:///s\n  tls: {ca_file: a, cert_file: b, key_file: c}\n",
                "docker.tls",
            ),
            ("docker:\n  ulimit_nofile: 10\n", "docker.ulimit_nofile"),
            ("docker:\n  k3d_cluster: 'a b'\n", "docker.k3d_cluster"),
            ("docker:\n  k3d_cluster: ''\n", "docker.k3d_cluster"),
            (
                "docker:\n  k3d_cluster: a-name-that-is-much-too-long-for-k3d\n",
                "docker.k3d_cluster",
            ),
            ("docker:\n  overcommit: 0.5\n", "docker.overcommit"),
            (
                "docker:\n  hosts: [{name: A, host: 'unix:///a'}]\n",
                "docker.hosts[0].name",
            ),
            (
                "docker:\n  hosts: [{name: a, host: 'ssh://a'}]\n",
                "docker.hosts[0].host",
            ),
            (
                "docker:\n  hosts: [{name: a, host: 'unix:///a', tls: {ca_file: a, cert_file: b, key_file: c}}]\n",
                "docker.hosts[0].tls",
            ),
            (
                "docker:\n  hosts: [{name: a, host: 'unix:///a', max_workers: 0}]\n",
                "docker.hosts[0].max_workers",
            ),
            (
                "docker:\n  host: unix:///s\n  hosts: [{name: a, host: 'unix:///a'}]\n",
                "docker.hosts",
            ),
            (
                "kubernetes:\n  permanent_nodes: ['Node_1']\n",
                "kubernetes.permanent_nodes[0]",
            ),
        ];
        for (text, key) in cases {
            let e = err(text);
            assert!(
                e.contains(key),
                "{text:?} gave {e:?}, expected it to name {key}"
            );
        }
    }

    #[test]
    fn hosts_with_the_same_name_or_endpoint_are_named_together() {
        let e = err(
            "docker:\n  hosts:\n  - {name: a, host: 'tcp://h1:2375'}\n  - {name: b, host: 'unix:///b'}\n  - {name: a, host: 'tcp://h3:2375'}\n",
        );
        assert!(
            e.contains("docker.hosts[0] (a) and docker.hosts[2] (a)") && e.contains("same name"),
            "{e}"
        );
        let e = err(
            "docker:\n  hosts:\n  - {name: a, host: 'tcp://h1:2375'}\n  - {name: b, host: 'tcp://h1:2375/'}\n",
        );
        assert!(
            e.contains("docker.hosts[0] (a) and docker.hosts[1] (b)")
                && e.contains("same endpoint"),
            "{e}"
        );
        let c = Config::parse(
            "docker:\n  overcommit: 1.5\n  hosts:\n  - {name: box-1, host: 'unix:///a.sock', max_workers: 3}\n  - {name: box-2, host: 'tcp://127.0.0.1:2376', tls: {ca_file: ca, cert_file: c, key_file: k}}\n",
        )
        .unwrap();
        assert_eq!(c.docker.hosts.len(), 2);
        assert_eq!(c.docker.hosts[0].max_workers, Some(3));
        assert!(c.docker.hosts[1].tls.is_some());
        assert_eq!(c.docker.overcommit, 1.5);
    }

    #[test]
    fn wrong_types_and_bad_durations_are_parse_errors_with_a_position() {
        let e = err("limits:\n  max_nodes: many\n");
        assert!(e.contains("max_nodes") || e.contains("line"), "{e}");
        let e = err("limits:\n  scale_up_cooldown: 5x\n");
        assert!(e.contains("unknown unit"), "{e}");
    }

    #[test]
    fn name_validators() {
        assert!(is_dns_label("k3s-worker-12"));
        assert!(!is_dns_label("K3s"));
        assert!(!is_dns_label("-a"));
        assert!(is_dns_subdomain("worker.example.com"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(is_docker_name("k3s_net.1"));
        // k3d's CheckName: RFC 1123 host names (capitals and dots allowed), <= 32.
        for ok in ["k3s-default", "Dev", "a.b", "x", &"a".repeat(32)] {
            assert!(check_k3d_cluster_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a_b", "a b", &"a".repeat(33)] {
            assert!(check_k3d_cluster_name(bad).is_err(), "{bad}");
        }
        assert!(!is_docker_name("-x"));
    }
}
