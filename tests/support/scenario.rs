//! The scenario harness: one test's world and the runs of the built binary in it. A
//! `Scenario` owns the Kubernetes API stand-in with its kubelet stand-in, a real
//! Prometheus fed from the stand-in the way kube-state-metrics is fed from the API, the
//! real Docker engine reached through a recording proxy (and a `Pool` guard that removes
//! this test's containers and volumes by label, also after a panic), and a temp dir with
//! the config, join token and state. `check` asserts what every run must be checked
//! against: exit code, JSON output, Docker containers and volumes, Nodes.
//! Each suite uses part of it, so unused items are expected here.
#![allow(dead_code)]

use crate::docker_support::{DockerProxy, Pool, Recorded, daemon_socket, test_image, write_file};
use crate::kubelet::{Kubelet, NodeSize};
use crate::support::apiserver::ApiServer;
use crate::support::objects::{node, pod};
use crate::support::prom::{Cluster, PromServer, Sample};
use crate::support::{Run, k3s_scale};
use k3s_scale::state::State;
use k3s_scale::state::time::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The Node label k3s-scale finds its pool's workers by (set through the agent flags).
pub const POOL_NODE_LABEL: &str = "k3s-scale.io/pool";
/// The control-plane node every scenario's cluster has; k3s-scale must never touch it.
pub const SERVER: &str = "server";
/// Waits for a timer (cooldown, back-off, ...) end this much after it: the state keeps
/// whole seconds, and the run must start after the end, not on it.
const TIMER_MARGIN: Duration = Duration::from_millis(150);
/// Worker size: `docker.cpus` / `docker.memory`, and what the kubelet stand-in reports.
pub const WORKER_CPU_MILLIS: u32 = 1000;
pub const WORKER_MEMORY: u64 = 1 << 30;

/// The timing and limit keys a scenario sets (durations as config strings).
#[derive(Clone, Debug)]
pub struct Knobs {
    pub min_nodes: u32,
    pub max_nodes: u32,
    pub max_step: u32,
    pub scale_up_cooldown: &'static str,
    pub scale_down_cooldown: &'static str,
    pub unneeded_time: &'static str,
    pub delay_after_scale_up: &'static str,
    pub failure_backoff: &'static str,
    pub provision_timeout: &'static str,
    /// `docker.timeout`: `provision_timeout` must be at least this plus a join (5 s).
    pub docker_timeout: &'static str,
    pub drain_timeout: &'static str,
    /// `kubernetes.skip_nodes_with_system_pods`.
    pub skip_nodes_with_system_pods: bool,
    /// More `docker.agent_args` after the scenario's node label (e.g.
    /// `--kubelet-arg=max-pods=20`, which the kubelet stand-in follows).
    pub agent_args: &'static [&'static str],
}

impl Default for Knobs {
    fn default() -> Knobs {
        Knobs {
            min_nodes: 1,
            max_nodes: 5,
            max_step: 3,
            scale_up_cooldown: "3s",
            scale_down_cooldown: "1s",
            unneeded_time: "1s",
            delay_after_scale_up: "2s",
            failure_backoff: "2s",
            provision_timeout: "30s",
            docker_timeout: "20s",
            drain_timeout: "2s",
            skip_nodes_with_system_pods: true,
            agent_args: &[],
        }
    }
}

/// One run of the binary: its output, its wall time and the Docker requests it sent.
pub struct Step {
    pub run: Run,
    pub json: Value,
    pub wall: Duration,
    pub started: Instant,
    /// The wall clock when the run began, in the whole seconds the state keeps.
    pub started_secs: Timestamp,
    pub docker: Vec<Recorded>,
    /// The command line after the config (`evaluate --output json`, `up ...`).
    pub args: Vec<String>,
    /// The state file before the run (bytes, and as read).
    pub before_bytes: Option<Vec<u8>>,
    pub before: State,
}

impl Step {
    pub fn strings(&self, key: &str) -> Vec<String> {
        strings(&self.json[key])
    }

    /// True when some `blocked_by` entry contains `text`.
    pub fn blocked_by(&self, text: &str) -> bool {
        self.strings("blocked_by").iter().any(|b| b.contains(text))
    }

    /// Docker requests that create or start a worker: volume create, container create,
    /// container start.
    pub fn docker_creates(&self) -> Vec<&Recorded> {
        self.docker
            .iter()
            .filter(|r| {
                r.head.starts_with("POST ")
                    && (r.head.contains("/volumes/create")
                        || r.head.contains("/containers/create")
                        || (r.head.contains("/containers/") && r.head.contains("/start")))
            })
            .collect()
    }

    /// Requests that change something in Docker (create, start, stop, remove).
    pub fn docker_writes(&self) -> Vec<String> {
        self.docker
            .iter()
            .filter(|r| r.head.starts_with("POST ") || r.head.starts_with("DELETE "))
            .map(|r| r.head.lines().next().unwrap_or("").to_string())
            .collect()
    }
}

/// What every run is checked against. Worker numbers, not names.
pub struct Expect<'a> {
    pub code: i32,
    pub action: &'a str,
    pub started: &'a [u64],
    pub removed: &'a [u64],
    /// Running worker containers, each with its volume.
    pub containers: &'a [u64],
    /// Workers with a Node in the stand-in.
    pub nodes: &'a [u64],
}

pub struct Scenario {
    // Field order is drop order: the kubelet stops first, the pool removes what is left.
    pub kubelet: Kubelet,
    pub api: Arc<ApiServer>,
    pub prom: PromServer,
    loaded: Option<Vec<Sample>>,
    /// Prometheus is no longer fed from the stand-in (`freeze_prometheus`).
    frozen: bool,
    proxy: DockerProxy,
    pub pool: Pool,
    pub knobs: Knobs,
    config: PathBuf,
    steps: usize,
}

impl Scenario {
    pub fn new(knobs: Knobs) -> Scenario {
        let image = test_image();
        let pool = Pool::new();
        let api = Arc::new(ApiServer::start());
        api.add_node(
            node(SERVER)
                .control_plane()
                .allocatable(4000, 8 << 30)
                .build(),
        );
        // As in every k3s cluster: CoreDNS on the server, with k3s's requests. (Without any
        // pod requests kube-state-metrics exports no request series and utilisation is
        // unknown, rightly.)
        api.add_pod(
            pod("coredns")
                .ns("kube-system")
                .on(SERVER)
                .requests(100, 70 << 20)
                .build(),
        );
        let size = NodeSize {
            cpu_millis: WORKER_CPU_MILLIS,
            memory: WORKER_MEMORY,
        };
        let kubelet = Kubelet::start(api.clone(), &daemon_socket(), &pool.name, size);
        // Joins happen when a scenario lets them (`resume`), so every run sees a known set.
        kubelet.pause();
        let loaded = ksm_samples(&api);
        let prom = PromServer::start(&loaded);
        // Always through the proxy: it records k3s-scale's Docker requests (for the
        // reaction-time figure) and lets a daemon without privileges start the workers.
        let proxy = DockerProxy::start(&daemon_socket(), &pool.path("docker.sock"));
        let token = pool.path("k3s-token");
        write_file(
            &token,
            &format!(
                "K10{}::server:scenario-join-token\n",
                pool.name.replace('-', "")
            ),
            0o600,
        );
        let config = pool.path("config.yaml");
        let s = Scenario {
            kubelet,
            api,
            prom,
            loaded: Some(loaded),
            frozen: false,
            proxy,
            pool,
            knobs,
            config,
            steps: 0,
        };
        write_file(&s.config, &s.config_yaml(image), 0o600);
        s
    }

    fn config_yaml(&self, image: &str) -> String {
        let k = &self.knobs;
        let dir = self.pool.dir.display();
        let pool = &self.pool.name;
        format!(
            r#"prometheus:
  url: {prom}
  timeout: 5s
limits:
  min_nodes: {min}
  max_nodes: {max}
  scale_up_cooldown: {up_cd}
  scale_down_cooldown: {down_cd}
scaling:
  max_step: {step}
  scale_down_unneeded_time: {unneeded}
  scale_down_delay_after_scale_up: {after_up}
  failure_backoff: {backoff}
  provision_timeout: {provision}
docker:
  host: unix://{dir}/docker.sock
  timeout: {docker_timeout}
  image: {image}
  network: none
  name_prefix: {pool}
  pool: {pool}
  server_url: https://127.0.0.1:6443
  token_file: {dir}/k3s-token
  agent_args: ["--node-label=scenario=yes"{agent_args}]
  cpus: {cpus}
  memory: {memory}
  stop_timeout: 2s
  ulimit_nofile: 4096
  ulimit_nproc: 4096
kubernetes:
  kubeconfig: {kubeconfig}
  timeout: 5s
  skip_nodes_with_system_pods: {system_pods}
drain:
  timeout: {drain}
  max_grace_period: 10s
  eviction_retry_interval: 200ms
  concurrency: 4
state:
  path: {dir}/state.json
  lock_path: {dir}/k3s-scale.lock
"#,
            prom = self.prom.url(),
            min = k.min_nodes,
            max = k.max_nodes,
            up_cd = k.scale_up_cooldown,
            down_cd = k.scale_down_cooldown,
            step = k.max_step,
            unneeded = k.unneeded_time,
            after_up = k.delay_after_scale_up,
            backoff = k.failure_backoff,
            provision = k.provision_timeout,
            docker_timeout = k.docker_timeout,
            cpus = f64::from(WORKER_CPU_MILLIS) / 1000.0,
            memory = WORKER_MEMORY,
            kubeconfig = self.api.kubeconfig().display(),
            drain = k.drain_timeout,
            system_pods = k.skip_nodes_with_system_pods,
            agent_args = k
                .agent_args
                .iter()
                .map(|a| format!(", {a:?}"))
                .collect::<String>(),
        )
    }

    /// Changes knobs between runs: the config file is written again.
    pub fn reconfigure(&mut self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.knobs);
        write_file(&self.config, &self.config_yaml(test_image()), 0o600);
    }

    pub fn worker(&self, n: u64) -> String {
        self.pool.worker(n)
    }

    pub fn workers(&self, ns: &[u64]) -> Vec<String> {
        ns.iter().map(|n| self.worker(*n)).collect()
    }

    pub fn state_path(&self) -> PathBuf {
        self.pool.path("state.json")
    }

    /// The state file as k3s-scale reads it (fresh when there is none yet).
    pub fn state(&self) -> State {
        State::load(&self.state_path()).expect("the state file is readable")
    }

    /// The state file's bytes (None when there is none).
    pub fn state_bytes(&self) -> Option<Vec<u8>> {
        std::fs::read(self.state_path()).ok()
    }

    // -----------------------------------------------------------------------------------
    // Prometheus, kept in line with the stand-in.

    /// Loads what kube-state-metrics would export for the stand-in now, if it changed.
    /// Not while Prometheus is down.
    pub fn sync_prometheus(&mut self) {
        if self.frozen || !self.prom.is_up() {
            return;
        }
        let samples = ksm_samples(&self.api);
        if self.loaded.as_ref() != Some(&samples) {
            self.prom.load(&samples);
            self.loaded = Some(samples);
        }
    }

    /// kube-state-metrics stops exporting: Prometheus keeps what it last scraped (still
    /// within its lookback) and no longer follows the stand-in.
    pub fn freeze_prometheus(&mut self) {
        self.sync_prometheus();
        self.frozen = true;
    }

    /// kube-state-metrics exports again: Prometheus follows the stand-in from the next run.
    pub fn thaw_prometheus(&mut self) {
        self.frozen = false;
    }

    /// Prometheus holds these samples (a faulty exporter's) instead of the stand-in's,
    /// and no longer follows the stand-in.
    pub fn load_prometheus(&mut self, samples: &[Sample]) {
        self.prom.load(samples);
        self.loaded = Some(samples.to_vec());
        self.frozen = true;
    }

    /// Prometheus goes down (killed); runs until `prometheus_up` find nothing listening.
    pub fn prometheus_down(&mut self) {
        self.prom.kill();
        self.loaded = None;
    }

    /// Prometheus comes back on the same port, with the stand-in's current data.
    pub fn prometheus_up(&mut self) {
        let samples = ksm_samples(&self.api);
        self.prom.load(&samples);
        self.loaded = Some(samples);
    }

    // -----------------------------------------------------------------------------------
    // Runs.

    /// The binary with this scenario's config, ready to run (Prometheus synced first).
    pub fn command(&mut self, args: &[&str]) -> Command {
        self.sync_prometheus();
        let mut c = k3s_scale(&self.pool.dir);
        c.arg("--config").arg(&self.config).args(args);
        c
    }

    /// `evaluate --output json` (plus `extra` flags).
    pub fn evaluate(&mut self, extra: &[&str]) -> Step {
        let mut args = vec!["evaluate", "--output", "json"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Runs the binary to its end; its stdout must be one JSON object.
    pub fn run(&mut self, args: &[&str]) -> Step {
        let before_bytes = self.state_bytes();
        let before_state = self.state();
        let mut cmd = self.command(args);
        let before = self.proxy.requests.lock().unwrap().len();
        let started = Instant::now();
        let started_secs = Timestamp::from_secs(Timestamp::now().as_millis() / 1000);
        let out = cmd.output().expect("run k3s-scale");
        let wall = started.elapsed();
        let docker = self.proxy.requests.lock().unwrap()[before..].to_vec();
        let run = Run::from_output(out);
        self.steps += 1;
        // Shown when the test fails (the harness captures it otherwise).
        eprintln!(
            "--- run {} `{}`: exit {} in {wall:?}\nstdout: {}\nstderr: {}",
            self.steps,
            args.join(" "),
            run.code,
            run.stdout.trim(),
            run.stderr.trim()
        );
        let json = run.json();
        Step {
            run,
            json,
            wall,
            started,
            started_secs,
            docker,
            args: args.iter().map(|a| a.to_string()).collect(),
            before_bytes,
            before: before_state,
        }
    }

    // -----------------------------------------------------------------------------------
    // What is there, seen independently of k3s-scale.

    /// Running containers of this pool (docker CLI), sorted.
    pub fn running(&self) -> Vec<String> {
        let out = crate::docker_support::docker_ok(&[
            "ps",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=io.k3s-scale.pool={}", self.pool.name),
        ]);
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    }

    /// This pool's worker Nodes in the stand-in (by the pool label), sorted.
    pub fn pool_nodes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .api
            .nodes()
            .iter()
            .filter(|n| {
                n.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(POOL_NODE_LABEL))
                    == Some(&self.pool.name)
            })
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        v.sort();
        v
    }

    fn sorted_names(&self, ns: &[u64]) -> Vec<String> {
        let mut v = self.workers(ns);
        v.sort();
        v
    }

    /// Checks a run's exit code and JSON output, then Docker and the stand-in.
    pub fn check(&self, step: &Step, e: &Expect) {
        let ctx = format!("stdout: {}\nstderr: {}", step.run.stdout, step.run.stderr);
        assert_eq!(step.run.code, e.code, "exit code\n{ctx}");
        assert_eq!(
            step.json["exit_code"].as_i64(),
            Some(i64::from(e.code)),
            "exit_code in the JSON\n{ctx}"
        );
        assert_eq!(step.json["action"], e.action, "action\n{ctx}");
        assert_eq!(
            step.strings("started"),
            self.workers(e.started),
            "started\n{ctx}"
        );
        assert_eq!(
            step.strings("removed"),
            self.workers(e.removed),
            "removed\n{ctx}"
        );
        self.assert_world(e.containers, e.nodes);
        self.check_state(step, e, &ctx);
    }

    /// What every run must have done to the state file, whatever the scenario: nothing in
    /// a dry run or a run that did not get the lock; else the run counted once, counters
    /// that only grow, started and removed workers counted, names never handed out twice,
    /// and nothing provisioning without a container.
    fn check_state(&self, step: &Step, e: &Expect, ctx: &str) {
        let dry_run = step.json["dry_run"] == true;
        if dry_run || e.code == 3 {
            assert_eq!(
                self.state_bytes(),
                step.before_bytes,
                "state file written\n{ctx}"
            );
            return;
        }
        let (b, a) = (&step.before, self.state());
        let (bt, at) = (&b.totals, &a.totals);
        let evaluate = step.args.first().map(String::as_str) == Some("evaluate");
        assert_eq!(at.runs, bt.runs + u64::from(evaluate), "totals.runs\n{ctx}");
        for (name, before, after) in [
            ("scale_ups", bt.scale_ups, at.scale_ups),
            ("scale_downs", bt.scale_downs, at.scale_downs),
            ("failed_scale_ups", bt.failed_scale_ups, at.failed_scale_ups),
            (
                "failed_scale_downs",
                bt.failed_scale_downs,
                at.failed_scale_downs,
            ),
            ("evicted_pods", bt.evicted_pods, at.evicted_pods),
            ("repairs", bt.repairs, at.repairs),
        ] {
            assert!(after >= before, "totals.{name} went down\n{ctx}");
        }
        assert_eq!(
            at.workers_added,
            bt.workers_added + e.started.len() as u64,
            "totals.workers_added\n{ctx}"
        );
        assert_eq!(
            at.workers_removed,
            bt.workers_removed + e.removed.len() as u64,
            "totals.workers_removed\n{ctx}"
        );
        assert!(
            a.next_worker_index >= b.next_worker_index,
            "name counter\n{ctx}"
        );
        if let Some(top) = e.started.iter().max() {
            assert!(a.next_worker_index > *top, "name counter\n{ctx}");
            assert!(
                a.last_scale_up >= Some(step.started_secs),
                "last_scale_up stamped by this run\n{ctx}"
            );
            for n in e.started {
                assert!(
                    a.provisioning.iter().any(|p| p.name == self.worker(*n)),
                    "{} provisioning\n{ctx}",
                    self.worker(*n)
                );
            }
        }
        if !e.removed.is_empty() {
            assert!(
                a.last_scale_down >= Some(step.started_secs),
                "last_scale_down stamped by this run\n{ctx}"
            );
        }
        if [0, 10, 11].contains(&e.code) {
            let running = self.running();
            for p in &a.provisioning {
                assert!(
                    running.contains(&p.name),
                    "{} provisioning without a container\n{ctx}",
                    p.name
                );
            }
        }
    }

    /// Docker: exactly these workers' containers (running) and volumes; stand-in: exactly
    /// these workers' Nodes, and the control plane untouched.
    pub fn assert_world(&self, containers: &[u64], nodes: &[u64]) {
        let want = self.sorted_names(containers);
        assert_eq!(self.pool.containers(), want, "containers of the pool");
        assert_eq!(self.running(), want, "running containers of the pool");
        let vols: Vec<String> = want.iter().map(|n| format!("{n}-data")).collect();
        assert_eq!(self.pool.volumes(), vols, "volumes of the pool");
        assert_eq!(
            self.pool_nodes(),
            self.sorted_names(nodes),
            "Nodes of the pool"
        );
        let server = self
            .api
            .node(SERVER)
            .expect("the control plane is never deleted");
        assert_ne!(
            server.spec.and_then(|s| s.unschedulable),
            Some(true),
            "the control plane is never cordoned"
        );
    }

    /// Sleeps until `since + wait` (a timer in the state) is over, and no longer.
    pub fn wait_past(&self, since: Option<Timestamp>, wait: &str) {
        let since = since.expect("the timer to wait out is set in the state");
        let d = k3s_scale::config::units::parse_duration(wait).expect("a duration");
        let end = since.plus(d).as_millis() + TIMER_MARGIN.as_millis() as i64;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        if end > now {
            std::thread::sleep(Duration::from_millis((end - now) as u64));
        }
    }

    /// When Docker created this worker's container.
    pub fn created(&self, n: u64) -> Timestamp {
        let text = crate::docker_support::docker_ok(&[
            "inspect",
            "--format",
            "{{.Created}}",
            &self.worker(n),
        ]);
        Timestamp::parse(&text).expect("Docker's Created is RFC 3339")
    }

    /// Lets the kubelet stand-in look once (new workers join, stopped ones go Unknown),
    /// then holds it again.
    pub fn kubelet_catch_up(&self) {
        self.kubelet.resume();
        self.kubelet.settle();
        self.kubelet.pause();
    }

    /// Whether this worker's Node is Ready in the stand-in (None: no Node).
    pub fn node_ready(&self, n: u64) -> Option<bool> {
        let node = self.api.node(&self.worker(n))?;
        Some(
            node.status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|x| x.type_ == "Ready" && x.status == "True"),
        )
    }

    /// Waits until the kubelet stand-in has registered these workers.
    pub fn wait_joined(&self, ns: &[u64]) {
        self.kubelet.wait_joined(&self.workers(ns));
    }
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// kube-state-metrics: the stand-in's Nodes and pods as the series KSM exports.

/// What kube-state-metrics would export for the stand-in's objects now.
pub fn ksm_samples(api: &ApiServer) -> Vec<Sample> {
    let mut c = Cluster::new();
    let mut nodes = api.nodes();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for n in &nodes {
        c = ksm_node(c, n);
    }
    let mut pods = api.pods();
    pods.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    for p in &pods {
        c = ksm_pod(c, p);
    }
    c.samples()
}

fn ksm_node(c: Cluster, n: &Node) -> Cluster {
    let name = n.metadata.name.as_deref().unwrap_or("");
    let labels = n.metadata.labels.clone().unwrap_or_default();
    let mut c = if labels.contains_key("node-role.kubernetes.io/control-plane") {
        c.control_plane(name)
    } else {
        c.worker(name)
    };
    let status = n.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|x| x.type_ == "Ready")
        .map_or("Unknown", |x| x.status.as_str());
    c = match ready {
        "True" => c.ready(true),
        "False" => c.ready(false),
        _ => c.ready_unknown(),
    };
    if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        c = c.cordoned();
    }
    let alloc = status.allocatable.unwrap_or_default();
    let q = |k: &str| alloc.get(k).map_or(0.0, |v| quantity(&v.0));
    let c = c.alloc(q("cpu"), q("memory"));
    match alloc.get("pods") {
        Some(p) => c.max_pods(quantity(&p.0) as u32),
        None => c,
    }
}

fn ksm_pod(c: Cluster, p: &Pod) -> Cluster {
    let mut c = c
        .pod(p.metadata.name.as_deref().unwrap_or(""))
        .namespace(p.metadata.namespace.as_deref().unwrap_or("default"));
    let status = p.status.clone().unwrap_or_default();
    let unschedulable = status.conditions.iter().flatten().any(|x| {
        x.type_ == "PodScheduled"
            && x.status == "False"
            && x.reason.as_deref() == Some("Unschedulable")
    });
    if unschedulable {
        c = c.unschedulable();
    } else {
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            c = c.on(node);
        }
        c = c.phase(status.phase.as_deref().unwrap_or("Pending"));
    }
    for ctr in p.spec.iter().flat_map(|s| s.containers.iter()) {
        if let Some(req) = ctr.resources.as_ref().and_then(|r| r.requests.as_ref()) {
            let q = |k: &str| req.get(k).map_or(0.0, |v| quantity(&v.0));
            c = c.requests(q("cpu"), q("memory"));
        }
    }
    c
}

/// A Kubernetes quantity as a number: "500m" -> 0.5, "1Gi" -> 2^30, "2" -> 2.
pub fn quantity(s: &str) -> f64 {
    let units: [(&str, f64); 8] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("", 1.0),
    ];
    for (suffix, scale) in units {
        if let Some(num) = s.strip_suffix(suffix)
            && let Ok(v) = num.parse::<f64>()
        {
            return v * scale;
        }
    }
    panic!("not a quantity the scenarios use: {s:?}")
}
