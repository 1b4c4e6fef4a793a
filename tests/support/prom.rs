//! A real Prometheus for tests: kube-state-metrics series built by a small `Cluster`
//! builder, written as OpenMetrics stamped just before "now", backfilled with
//! `promtool tsdb create-blocks-from openmetrics` and served by `prometheus` on 127.0.0.1.
//! Also a counting proxy (how many queries a run sends) and a misbehaving server
//! (refuses, hangs, 500, garbage, cut-off body) for the failure paths.

use super::http::{Acceptor, Request, SOCKET_TIMEOUT, http_get, read_request};
use super::{TempDir, free_port};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How far before "now" samples are stamped. An instant query sees a series' newest sample
/// up to 5 min old (Prometheus' default lookback delta), so a few seconds back keeps the
/// data visible for the whole test and never ahead of the server's clock.
pub const SAMPLE_AGE: Duration = Duration::from_secs(5);

/// Prometheus 2.42 on a tiny TSDB is ready in ~0.1-0.3 s; the deadline covers a loaded
/// 2-core CI machine, and a clear failure beats a hung test.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL: Duration = Duration::from_millis(10);
/// Attempts when the port we picked was taken by another process before Prometheus bound it.
const PORT_TRIES: usize = 5;
/// Pause between restart attempts on the same port.
const RESTART_PAUSE: Duration = Duration::from_millis(200);

pub const MIB: f64 = 1024.0 * 1024.0;
pub const GIB: f64 = 1024.0 * MIB;

/// Labels a scrape of kube-state-metrics adds to every series it stores; the default
/// queries must not trip over them.
const KSM_TARGET: [(&str, &str); 2] = [
    ("job", "kube-state-metrics"),
    ("instance", "kube-state-metrics:8080"),
];

/// One sample of one series (gauge).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

pub fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        name: name.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    }
}

fn ksm(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
    let mut s = sample(name, labels, value);
    s.labels.extend(
        KSM_TARGET
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    s
}

/// The samples as an OpenMetrics text file, every sample stamped `at` (Unix seconds).
/// Families are grouped (OpenMetrics forbids interleaving them); empty label values are
/// left out, as Prometheus treats them as absent.
pub fn openmetrics(samples: &[Sample], at: f64) -> String {
    let mut families: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        families.entry(&s.name).or_default().push(s);
    }
    let mut out = String::new();
    for (name, series) in families {
        writeln!(out, "# TYPE {name} gauge").unwrap();
        for s in series {
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            writeln!(
                out,
                "{name}{{{}}} {} {at:.3}",
                labels.join(","),
                number(s.value)
            )
            .unwrap();
        }
    }
    out.push_str("# EOF\n");
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------
// Cluster builder: the kube-state-metrics view of a k3s cluster.

#[derive(Clone, Debug)]
struct Node {
    name: String,
    roles: Vec<&'static str>,
    /// Ready condition: Some(true/false), None for "unknown" (node lost).
    ready: Option<bool>,
    cordoned: bool,
    cpu: f64,
    memory: f64,
    /// allocatable.pods (the kubelet's `--max-pods`).
    pods: f64,
}

#[derive(Clone, Debug)]
struct Pod {
    namespace: String,
    name: String,
    node: Option<String>,
    phase: String,
    unschedulable: bool,
    /// (cpu cores, memory bytes) requested by each container.
    containers: Vec<(f64, f64)>,
    /// kube_pod_info's `created_by_kind`.
    created_by: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Last {
    #[default]
    Nothing,
    Node,
    Pod,
}

/// A cluster as kube-state-metrics reports it. Node modifiers (`ready`, `alloc`,
/// `cordoned`) apply to the node added last; pod modifiers (`on`, `requests`, `phase`,
/// `unschedulable`, `namespace`) to the pod added last.
///
/// ```ignore
/// Cluster::new()
///     .control_plane("server")
///     .worker("k3s-worker-1").alloc(4.0, 8.0 * GIB)
///     .worker("k3s-worker-2").ready(false)
///     .pod("web-1").on("k3s-worker-1").requests(0.5, 512.0 * MIB)
///     .pod("big-1").unschedulable().requests(0.5, GIB)
/// ```
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    extra: Vec<Sample>,
    last: Last,
}

/// What a node offers when `alloc` is not given: a small k3s-in-Docker worker.
pub const DEFAULT_NODE_CPU: f64 = 2.0;
pub const DEFAULT_NODE_MEMORY: f64 = 4.0 * GIB;
/// allocatable.pods when `max_pods` is not given: the kubelet's default.
pub const DEFAULT_NODE_PODS: f64 = 110.0;

impl Cluster {
    pub fn new() -> Cluster {
        Cluster::default()
    }

    fn node(mut self, name: &str, roles: Vec<&'static str>) -> Cluster {
        assert!(
            self.nodes.iter().all(|n| n.name != name),
            "node {name} added twice"
        );
        self.nodes.push(Node {
            name: name.to_string(),
            roles,
            ready: Some(true),
            cordoned: false,
            cpu: DEFAULT_NODE_CPU,
            memory: DEFAULT_NODE_MEMORY,
            pods: DEFAULT_NODE_PODS,
        });
        self.last = Last::Node;
        self
    }

    /// A k3s server node: kube-state-metrics reports the roles control-plane and master.
    pub fn control_plane(self, name: &str) -> Cluster {
        self.node(name, vec!["control-plane", "master"])
    }

    /// A worker (agent) node: no role label, as k3s agents have none.
    pub fn worker(self, name: &str) -> Cluster {
        self.node(name, Vec::new())
    }

    fn last_node(&mut self) -> &mut Node {
        assert_eq!(self.last, Last::Node, "a node modifier must follow a node");
        self.nodes.last_mut().expect("a node")
    }

    fn last_pod(&mut self) -> &mut Pod {
        assert_eq!(self.last, Last::Pod, "a pod modifier must follow a pod");
        self.pods.last_mut().expect("a pod")
    }

    /// The node's Ready condition is true / false.
    pub fn ready(mut self, ready: bool) -> Cluster {
        self.last_node().ready = Some(ready);
        self
    }

    /// The node's Ready condition is "unknown" (the kubelet stopped reporting).
    pub fn ready_unknown(mut self) -> Cluster {
        self.last_node().ready = None;
        self
    }

    pub fn cordoned(mut self) -> Cluster {
        self.last_node().cordoned = true;
        self
    }

    /// Allocatable CPU (cores) and memory (bytes) of the node.
    pub fn alloc(mut self, cpu: f64, memory: f64) -> Cluster {
        let n = self.last_node();
        n.cpu = cpu;
        n.memory = memory;
        self
    }

    /// allocatable.pods of the node (the kubelet's `--max-pods`).
    pub fn max_pods(mut self, pods: u32) -> Cluster {
        self.last_node().pods = f64::from(pods);
        self
    }

    /// The unschedulable pods as the API lists them (pending, bound to no node, the
    /// scheduler's `PodScheduled: False, Unschedulable`), for a stand-in that must agree
    /// with this Prometheus: the run takes the API's list of pending pods over
    /// kube-state-metrics' (plan/sources.rs).
    pub fn api_pending_pods(&self) -> Vec<k8s_openapi::api::core::v1::Pod> {
        self.pods
            .iter()
            .filter(|p| p.unschedulable)
            .map(|p| {
                let (cpu, memory) = p
                    .containers
                    .iter()
                    .fold((0.0, 0.0), |(c, m), (pc, pm)| (c + pc, m + pm));
                super::objects::pod(&p.name)
                    .ns(&p.namespace)
                    .requests((cpu * 1000.0).round() as u32, memory as u64)
                    .unschedulable()
                    .build()
            })
            .collect()
    }

    /// A pod in namespace `default`, phase Running, not yet placed (use `on`).
    pub fn pod(mut self, name: &str) -> Cluster {
        self.pods.push(Pod {
            namespace: "default".into(),
            name: name.to_string(),
            node: None,
            phase: "Running".into(),
            unschedulable: false,
            containers: Vec::new(),
            created_by: "ReplicaSet".into(),
        });
        self.last = Last::Pod;
        self
    }

    /// What created the pod (kube_pod_info's `created_by_kind`), e.g. "DaemonSet".
    pub fn created_by(mut self, kind: &str) -> Cluster {
        self.last_pod().created_by = kind.to_string();
        self
    }

    pub fn namespace(mut self, ns: &str) -> Cluster {
        self.last_pod().namespace = ns.to_string();
        self
    }

    pub fn on(mut self, node: &str) -> Cluster {
        self.last_pod().node = Some(node.to_string());
        self
    }

    /// One more container with these requests (cores, bytes).
    pub fn requests(mut self, cpu: f64, memory: f64) -> Cluster {
        self.last_pod().containers.push((cpu, memory));
        self
    }

    /// Pending, Running, Succeeded, Failed or Unknown.
    pub fn phase(mut self, phase: &str) -> Cluster {
        self.last_pod().phase = phase.to_string();
        self
    }

    /// Pending and marked unschedulable by the scheduler (no node).
    pub fn unschedulable(mut self) -> Cluster {
        let p = self.last_pod();
        p.phase = "Pending".into();
        p.unschedulable = true;
        p.node = None;
        self
    }

    /// Any other series to store alongside (node-exporter, up, ...).
    pub fn with(mut self, s: Sample) -> Cluster {
        self.extra.push(s);
        self
    }

    /// The series kube-state-metrics v2 exports for this cluster.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out = self.extra.clone();
        for n in &self.nodes {
            let node = n.name.as_str();
            out.push(ksm(
                "kube_node_info",
                &[
                    ("node", node),
                    ("kubelet_version", "v1.31.4+k3s1"),
                    ("container_runtime_version", "containerd://1.7.23-k3s2"),
                ],
                1.0,
            ));
            for role in &n.roles {
                out.push(ksm(
                    "kube_node_role",
                    &[("node", node), ("role", role)],
                    1.0,
                ));
            }
            let active = match n.ready {
                Some(true) => "true",
                Some(false) => "false",
                None => "unknown",
            };
            for status in ["true", "false", "unknown"] {
                out.push(ksm(
                    "kube_node_status_condition",
                    &[("node", node), ("condition", "Ready"), ("status", status)],
                    f64::from(u8::from(status == active)),
                ));
            }
            out.push(ksm(
                "kube_node_spec_unschedulable",
                &[("node", node)],
                f64::from(u8::from(n.cordoned)),
            ));
            for (resource, unit, v) in [
                ("cpu", "core", n.cpu),
                ("memory", "byte", n.memory),
                ("pods", "integer", n.pods),
            ] {
                out.push(ksm(
                    "kube_node_status_allocatable",
                    &[("node", node), ("resource", resource), ("unit", unit)],
                    v,
                ));
            }
        }
        for p in &self.pods {
            let uid = format!("uid-{}-{}", p.namespace, p.name);
            let node = p.node.as_deref().unwrap_or("");
            let id = [
                ("namespace", p.namespace.as_str()),
                ("pod", p.name.as_str()),
                ("uid", uid.as_str()),
            ];
            out.push(ksm(
                "kube_pod_info",
                &[
                    &id[..],
                    &[("node", node), ("created_by_kind", p.created_by.as_str())],
                ]
                .concat(),
                1.0,
            ));
            for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
                out.push(ksm(
                    "kube_pod_status_phase",
                    &[&id[..], &[("phase", phase)]].concat(),
                    f64::from(u8::from(phase == p.phase)),
                ));
            }
            if p.unschedulable {
                out.push(ksm("kube_pod_status_unschedulable", &id, 1.0));
            }
            for (i, (cpu, mem)) in p.containers.iter().enumerate() {
                let c = format!("c{i}");
                for (resource, unit, v) in [("cpu", "core", cpu), ("memory", "byte", mem)] {
                    out.push(ksm(
                        "kube_pod_container_resource_requests",
                        &[
                            &id[..],
                            &[
                                ("container", c.as_str()),
                                ("node", node),
                                ("resource", resource),
                                ("unit", unit),
                            ],
                        ]
                        .concat(),
                        *v,
                    ));
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// The Prometheus server.

/// Scrapes nothing: all data comes from backfilled blocks.
const PROMETHEUS_YML: &str = "global:\n  scrape_interval: 1m\nscrape_configs: []\n";

/// A `prometheus` process on 127.0.0.1 serving backfilled samples. Killed (by PID) and its
/// files removed on drop.
pub struct PromServer {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    generation: u32,
}

impl PromServer {
    /// Backfills the samples and starts Prometheus on a free port; returns once it is ready.
    pub fn start(samples: &[Sample]) -> PromServer {
        PromServer::start_with(PROMETHEUS_YML, |s| s.backfill(samples))
    }

    /// Backfills OpenMetrics text whose samples carry their own timestamps (a day of
    /// history for `simulate --from-prometheus`) and starts Prometheus on it.
    pub fn start_history(openmetrics: &str) -> PromServer {
        PromServer::start_with(PROMETHEUS_YML, |s| s.backfill_text(openmetrics))
    }

    /// Starts Prometheus with an empty TSDB and `config` (YAML) written next to copies of
    /// `files` (name, contents), so a config can name rule files by relative path and
    /// scrape targets of its own.
    pub fn start_configured(config: &str, files: &[(&str, &str)]) -> PromServer {
        PromServer::start_with(config, |s| {
            for (name, text) in files {
                std::fs::write(s.dir.join(name), text).expect("write a Prometheus file");
            }
            s.backfill(&[]);
        })
    }

    fn start_with(config: &str, fill: impl FnOnce(&mut PromServer)) -> PromServer {
        let dir = TempDir::new("prometheus");
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let mut server = PromServer {
            dir,
            port: 0,
            child: None,
            generation: 0,
        };
        fill(&mut server);
        let mut last_err = String::new();
        for _ in 0..PORT_TRIES {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("prometheus did not start after {PORT_TRIES} tries: {last_err}");
    }

    pub fn with_cluster(c: &Cluster) -> PromServer {
        PromServer::start(&c.samples())
    }

    /// Replaces all data: stops the server, backfills the samples into a fresh TSDB and
    /// starts it again on the same port. A fresh TSDB (rather than a newer block beside the
    /// old one) means a series left out of the new data is gone, not still visible for
    /// the 5-minute lookback.
    pub fn load(&mut self, samples: &[Sample]) {
        self.stop();
        self.backfill(samples);
        // The port was ours a moment ago and Go listens with SO_REUSEADDR, so it binds
        // again; should a short-lived outgoing connection have taken it meanwhile, it is
        // free again shortly.
        let mut last_err = String::new();
        for _ in 0..PORT_TRIES {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last_err = e,
            }
            std::thread::sleep(RESTART_PAUSE);
        }
        panic!(
            "prometheus did not restart on port {}: {last_err}",
            self.port
        );
    }

    /// Prometheus goes down: the process is killed (by its PID); the port stays closed
    /// until `load` starts it again there.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Whether the process is running (it was started and not killed).
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    pub fn load_cluster(&mut self, c: &Cluster) {
        self.load(&c.samples());
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs an instant query and returns the raw JSON answer (for checks and diagnostics).
    pub fn query(&self, promql: &str) -> serde_json::Value {
        let body = ureq::post(format!("{}/api/v1/query", self.url()))
            .send_form([("query", promql)])
            .expect("query Prometheus")
            .body_mut()
            .read_to_string()
            .expect("read answer");
        serde_json::from_str(&body).expect("Prometheus answers JSON")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join(format!("data-{}", self.generation))
    }

    fn backfill(&mut self, samples: &[Sample]) {
        let _ = std::fs::remove_dir_all(self.data_dir());
        self.generation += 1;
        let data = self.data_dir();
        std::fs::create_dir_all(&data).expect("create data dir");
        if samples.is_empty() {
            return; // an empty TSDB: Prometheus knows no series at all
        }
        let at = unix_now() - SAMPLE_AGE.as_secs_f64();
        self.write_blocks(&openmetrics(samples, at));
    }

    fn backfill_text(&mut self, text: &str) {
        let _ = std::fs::remove_dir_all(self.data_dir());
        self.generation += 1;
        std::fs::create_dir_all(self.data_dir()).expect("create data dir");
        self.write_blocks(text);
    }

    fn write_blocks(&mut self, text: &str) {
        let data = self.data_dir();
        let om = self.dir.join(format!("data-{}.om", self.generation));
        std::fs::write(&om, text).expect("write OpenMetrics file");
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&data)
            .stdin(Stdio::null())
            .output()
            .expect("run promtool (Debian package prometheus)");
        assert!(
            out.status.success(),
            "promtool failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.dir.join(format!("prometheus-{}.log", self.generation));
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let mut child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", self.data_dir().display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run prometheus (Debian package prometheus): {e}"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("prometheus exited with {status}: {log}"));
            }
            if matches!(http_get(&self.addr(), "/-/ready"), Ok((200, _))) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("not ready within {READY_TIMEOUT:?}: {log}"));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// Kills the process by its PID and reaps it.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// Counting proxy.

/// Forwards every HTTP request to Prometheus and records it, so a test can count the
/// queries one run sends. Each request is forwarded on its own upstream connection with
/// `Connection: close`, so the client opens a new connection per request and none slips by
/// uncounted on a kept-alive socket.
pub struct CountingProxy {
    acceptor: Acceptor,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl CountingProxy {
    pub fn start(upstream: &str) -> CountingProxy {
        let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
        let seen2 = seen.clone();
        let upstream = upstream.to_string();
        let acceptor = Acceptor::start(move |client| {
            if let Err(e) = proxy_one(client, &upstream, &seen2) {
                eprintln!("counting proxy: {e}");
            }
        });
        CountingProxy { acceptor, seen }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.acceptor.port)
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests went to `/api/v1/query`.
    pub fn queries(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path() == "/api/v1/query")
            .count()
    }
}

fn proxy_one(client: TcpStream, upstream: &str, seen: &Mutex<Vec<Request>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(req) = read_request(&mut reader)? else {
        return Ok(());
    };
    seen.lock().unwrap().push(req.clone());
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
    for (k, v) in &req.headers {
        if !k.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let mut client = client;
    client.write_all(&answer)?;
    client.shutdown(Shutdown::Both)
}

// ---------------------------------------------------------------------------------------
// Misbehaving server.

/// How a fake Prometheus fails.
#[derive(Clone, Debug)]
pub enum Misbehaviour {
    /// Nothing listens: connection refused.
    Refuse,
    /// Reads the request and never answers (until the server is dropped).
    Hang,
    /// Answers with this status and body.
    Status(u16, &'static str),
    /// Answers 200 with this body (not a Prometheus answer).
    Body(&'static str),
    /// Answers 200, announces a 4 KiB body, sends the start of a valid answer, then closes.
    CutOff,
}

/// A fake Prometheus on 127.0.0.1 that fails in one chosen way.
pub struct BadServer {
    port: u16,
    acceptor: Option<Acceptor>,
    received: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl BadServer {
    pub fn start(how: Misbehaviour) -> BadServer {
        let received = Arc::new(AtomicUsize::new(0));
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        if let Misbehaviour::Refuse = how {
            return BadServer {
                port: free_port(),
                acceptor: None,
                received,
                held,
            };
        }
        let (received2, held2) = (received.clone(), held.clone());
        let acceptor = Acceptor::start(move |conn| {
            let mut reader = BufReader::new(conn.try_clone().expect("clone socket"));
            if !matches!(read_request(&mut reader), Ok(Some(_))) {
                return;
            }
            received2.fetch_add(1, Ordering::SeqCst);
            let mut conn = conn;
            let answer = |status: u16, body: &str, announced: usize| {
                format!(
                    "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n\
                     Content-Length: {announced}\r\nConnection: close\r\n\r\n{body}"
                )
            };
            let text = match &how {
                Misbehaviour::Refuse => unreachable!(),
                Misbehaviour::Hang => {
                    held2.lock().unwrap().push(conn);
                    return;
                }
                Misbehaviour::Status(code, body) => answer(*code, body, body.len()),
                Misbehaviour::Body(body) => answer(200, body, body.len()),
                Misbehaviour::CutOff => {
                    let start = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"signal":"cpu"},"#;
                    answer(200, start, 4096)
                }
            };
            let _ = conn.write_all(text.as_bytes());
            let _ = conn.shutdown(Shutdown::Both);
        });
        BadServer {
            port: acceptor.port,
            acceptor: Some(acceptor),
            received,
            held,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests read in full so far.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived (panics after `within`).
    pub fn wait_for_requests(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.received() < n {
            assert!(
                Instant::now() < deadline,
                "no request reached the bad server within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for BadServer {
    fn drop(&mut self) {
        self.acceptor.take();
        self.held.lock().unwrap().clear();
    }
}
