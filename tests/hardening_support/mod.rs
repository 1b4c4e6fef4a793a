//! Shared harness of the hardening suites (tests/hardening_*.rs): one test's world (a
//! unique Docker pool, the Kubernetes stand-in, a real Prometheus, a join token and a
//! config), the built binary with a clean environment, a delaying and recording HTTP proxy,
//! a Docker socket proxy that injects faults (delay, hang, dropped connection), the
//! invariant "k3s-scale knows every container and Node of its pool", and a seeded PRNG.
//! The binary, the child guard, HTTP reading and the TCP acceptor are tests/support's;
//! the suites include it next to `support` (tests/support/mod.rs) and `docker_support`
//! (tests/support/docker.rs), which it builds on.
#![allow(dead_code)]

use crate::docker_support::{
    Pool, clear_privileged, daemon_socket, docker, docker_ok, privileged_runs, write_file,
};
// Each suite uses part of it.
use crate::support::Run;
use crate::support::apiserver::ApiServer;
use crate::support::http::http_get;
use crate::support::http::{Acceptor, SOCKET_TIMEOUT, header_in, read_message};
use crate::support::objects::{node, pod};
use crate::support::prom::{Cluster, PromServer};
#[allow(unused_imports)]
pub use crate::support::{BIN, ChildGuard, bin};
use k3s_scale::state::State;
use serde_json::Value;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The Node label a worker registers with (`--node-label`); reconcile finds the pool's
/// Nodes by it.
pub const NODE_POOL_LABEL: &str = "k3s-scale.io/pool";
/// Prometheus finds a sample up to 5 minutes old (its lookback); the backfilled data is
/// reloaded before it gets that old, so a long loop never loses it.
const PROM_DATA_FRESH_FOR: Duration = Duration::from_secs(200);

// ---------------------------------------------------------------------------------------
// The binary.

/// Runs the binary to its end.
pub fn run(config: &Path, args: &[&str]) -> Run {
    let out = bin()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run k3s-scale");
    Run::from_output(out)
}

/// Starts the binary (stdout and stderr discarded); the caller waits on or kills it.
pub fn spawn(config: &Path, args: &[&str]) -> Child {
    bin()
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn k3s-scale")
}

// ---------------------------------------------------------------------------------------
// A seeded PRNG (xorshift64*): reproducible random kill points; the seed is printed.

pub struct Rng(u64);

impl Rng {
    /// From $HARDENING_SEED when set, else from the clock.
    pub fn from_env() -> Rng {
        let seed = std::env::var("HARDENING_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("PRNG seed {seed} (HARDENING_SEED={seed} repeats this run)");
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, max).
    pub fn below(&mut self, max: Duration) -> Duration {
        let ns = max.as_nanos().max(1) as u64;
        Duration::from_nanos(self.next() % ns)
    }
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        lo + self.below(hi.saturating_sub(lo))
    }
}

// ---------------------------------------------------------------------------------------
// A real Prometheus whose backfilled data never ages out of the lookback.

pub struct LiveProm {
    pub server: PromServer,
    cluster: Cluster,
    loaded: Instant,
}

impl LiveProm {
    pub fn start(cluster: Cluster) -> LiveProm {
        LiveProm {
            server: PromServer::with_cluster(&cluster),
            cluster,
            loaded: Instant::now(),
        }
    }
    pub fn url(&self) -> String {
        self.server.url()
    }
    pub fn addr(&self) -> String {
        self.server.addr()
    }
    /// Reloads the same data (same port) when it is getting old.
    pub fn keep_fresh(&mut self) {
        if self.loaded.elapsed() > PROM_DATA_FRESH_FOR {
            self.server.load_cluster(&self.cluster);
            self.loaded = Instant::now();
        }
    }
}

/// kube-state-metrics of a cluster with no worker yet and one unschedulable pod of 0.5
/// cores: with 1-core workers, `evaluate` plans to add one.
pub fn pending_cluster() -> Cluster {
    Cluster::new()
        .control_plane("server")
        .pod("big-1")
        .unschedulable()
        .requests(0.5, 64.0 * 1024.0 * 1024.0)
}

/// The stand-in with the k3s server's Node the clusters above name ("server", control
/// plane, schedulable): the cluster model places a removed worker's pods on the nodes the
/// API lists and kube-state-metrics sizes.
fn with_server(api: ApiServer) -> ApiServer {
    api.add_node(
        node("server")
            .control_plane()
            .allocatable(2000, 4 << 30)
            .build(),
    );
    api
}

/// An idle cluster: the server (with CoreDNS, so pod series exist as in any k3s cluster;
/// its allocatable, as kube-state-metrics exports every node's: the pods of a worker being
/// removed have somewhere to go in the cluster model) and Ready worker `worker` with no
/// pods (0 % requested).
pub fn idle_cluster(worker: &str) -> Cluster {
    Cluster::new()
        .control_plane("server")
        .alloc(2.0, 4.0 * 1024.0 * 1024.0 * 1024.0)
        .worker(worker)
        .alloc(1.0, 1024.0 * 1024.0 * 1024.0)
        .pod("coredns")
        .on("server")
        .requests(0.1, 64.0 * 1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------------
// One test's world.

/// What a config varies in.
pub struct Knobs {
    pub prom_url: String,
    pub prom_timeout: &'static str,
    /// Extra lines under `prometheus:` (indented by two spaces).
    pub prom_extra: String,
    /// None: the pool's way to the daemon (`Pool::docker_host`).
    pub docker_host: Option<String>,
    pub docker_timeout: &'static str,
    /// None: the stand-in's generated kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    pub kube_timeout: &'static str,
    pub drain_timeout: &'static str,
    pub max_step: u32,
    /// Extra lines under `scaling:` (indented by two spaces).
    pub scaling_extra: String,
    pub max_nodes: u32,
    pub token_file_mode: u32,
    /// Write the metrics textfile.
    pub metrics: bool,
    /// Extra top-level YAML.
    pub extra: String,
}

impl Default for Knobs {
    fn default() -> Knobs {
        Knobs {
            prom_url: "http://127.0.0.1:9".into(),
            prom_timeout: "5s",
            prom_extra: String::new(),
            docker_host: None,
            docker_timeout: "20s",
            kubeconfig: None,
            kube_timeout: "2s",
            drain_timeout: "3s",
            max_step: 1,
            scaling_extra: String::new(),
            max_nodes: 50,
            token_file_mode: 0o600,
            metrics: true,
            extra: String::new(),
        }
    }
}

pub struct Rig {
    pub pool: Pool,
    pub api: ApiServer,
    /// The k3s join token the token file holds.
    pub token: String,
    /// Where state, lock, metrics and config files go (changes with `fresh_dir`).
    pub dir: PathBuf,
    dirs: u32,
}

impl Rig {
    pub fn new() -> Rig {
        let pool = Pool::new();
        let token = format!(
            "K10{}::server:join-s3cr3t-7f3a9c2e5b1d",
            pool.name.replace('-', "")
        );
        let dir = pool.dir.join("run-0");
        std::fs::create_dir_all(&dir).unwrap();
        Rig {
            pool,
            api: with_server(ApiServer::start()),
            token,
            dir,
            dirs: 0,
        }
    }

    /// Replaces the Kubernetes stand-in with a fresh one (the server's Node only, no
    /// pods or faults).
    pub fn new_cluster(&mut self) {
        self.api = with_server(ApiServer::start());
    }

    /// The stand-in lists the pods `c` shows unschedulable as pending, as a real API
    /// would beside that kube-state-metrics (the run takes the API's word on them).
    pub fn lists(&self, c: &Cluster) {
        self.api.add_pods(c.api_pending_pods());
    }

    /// Worker `n` of this pool.
    pub fn worker(&self, n: u64) -> String {
        self.pool.worker(n)
    }

    /// A new, empty directory for state, lock, metrics and config.
    pub fn fresh_dir(&mut self) {
        self.dirs += 1;
        self.dir = self.pool.dir.join(format!("run-{}", self.dirs));
        std::fs::create_dir_all(&self.dir).unwrap();
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join("k3s-scale.lock")
    }
    pub fn metrics_path(&self) -> PathBuf {
        self.dir.join("k3s-scale.prom")
    }
    pub fn token_path(&self) -> PathBuf {
        self.pool.dir.join("k3s-token")
    }

    /// Writes the config (mode 0600) and returns its path.
    pub fn config(&mut self, k: &Knobs) -> PathBuf {
        let host = match &k.docker_host {
            Some(h) => h.clone(),
            None => self.pool.docker_host(),
        };
        write_file(
            &self.token_path(),
            &format!("{}\n", self.token),
            k.token_file_mode,
        );
        let kubeconfig = k
            .kubeconfig
            .clone()
            .unwrap_or_else(|| self.api.kubeconfig());
        let metrics = if k.metrics {
            format!("metrics:\n  textfile: {}\n", self.metrics_path().display())
        } else {
            String::new()
        };
        let yaml = format!(
            "prometheus:\n  url: {prom}\n  timeout: {pt}\n{prom_extra}\
             limits:\n  min_nodes: 0\n  max_nodes: {max}\n  scale_up_cooldown: 1h\n\
             scaling:\n  max_step: {step}\n{scaling_extra}\
             docker:\n  host: {host}\n  timeout: {dt}\n  image: {image}\n  network: none\n  \
             name_prefix: {pool}\n  pool: {pool}\n  server_url: https://127.0.0.1:6443\n  \
             token_file: {token}\n  cpus: 1\n  memory: 256Mi\n  stop_timeout: 1s\n  \
             ulimit_nofile: 4096\n  ulimit_nproc: 4096\n\
             kubernetes:\n  kubeconfig: {kubeconfig}\n  timeout: {kt}\n\
             drain:\n  timeout: {drain}\n  max_grace_period: 10s\n  eviction_retry_interval: 200ms\n  concurrency: 4\n\
             state:\n  path: {state}\n  lock_path: {lock}\n{metrics}{extra}",
            prom = k.prom_url,
            pt = k.prom_timeout,
            prom_extra = k.prom_extra,
            max = k.max_nodes,
            step = k.max_step,
            scaling_extra = k.scaling_extra,
            dt = k.docker_timeout,
            image = crate::docker_support::test_image(),
            pool = self.pool.name,
            token = self.token_path().display(),
            kubeconfig = kubeconfig.display(),
            kt = k.kube_timeout,
            drain = k.drain_timeout,
            state = self.state_path().display(),
            lock = self.lock_path().display(),
            extra = k.extra,
        );
        let p = self.dir.join("config.yaml");
        write_file(&p, &yaml, 0o600);
        p
    }

    /// The state file: Ok(None) when there is none, Err when it does not load.
    pub fn state(&self) -> Result<Option<State>, String> {
        if !self.state_path().exists() {
            return Ok(None);
        }
        State::load(&self.state_path())
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Writes a state (e.g. idle for an hour, so a scale-down is due).
    pub fn write_state(&self, s: &State) {
        s.save(&self.state_path()).expect("write state");
    }

    /// This pool's containers (any state), by name.
    pub fn containers(&self) -> Vec<String> {
        self.pool.containers()
    }

    /// This pool's volumes, by name.
    pub fn volumes(&self) -> Vec<String> {
        self.pool.volumes()
    }

    /// The stand-in's Nodes that carry this pool's label, as the API lists them.
    pub fn pool_nodes(&self) -> Vec<String> {
        let addr = self.api.url().trim_start_matches("http://").to_string();
        let (status, body) = http_get(&addr, "/api/v1/nodes").expect("list nodes");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("NodeList JSON");
        let mut names: Vec<String> = v["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|n| n["metadata"]["labels"][NODE_POOL_LABEL] == self.pool.name.as_str())
            .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    /// Adds a Ready Node for worker `name`, labelled with this pool (as `k3s agent
    /// --node-label` would register it).
    pub fn add_worker_node(&self, name: &str) {
        self.api
            .add_node(node(name).label(NODE_POOL_LABEL, &self.pool.name).build());
    }

    /// Adds `n` movable pods on `node` whose processes exit `exit_after` after SIGTERM.
    pub fn add_pods(&self, node: &str, n: usize, exit_after: Duration) -> Vec<String> {
        (0..n)
            .map(|i| {
                let name = format!("{node}-app-{i}");
                self.api
                    .add_pod_exiting_after(pod(&name).on(node).build(), exit_after);
                format!("default/{name}")
            })
            .collect()
    }

    /// A running worker container (and its volume) as k3s-scale would have made it: the
    /// same labels, on the daemon directly.
    pub fn run_worker_container(&self, n: u64) -> String {
        let name = self.worker(n);
        let labels = [
            "io.k3s-scale.managed=true".to_string(),
            format!("io.k3s-scale.pool={}", self.pool.name),
            format!("io.k3s-scale.worker={name}"),
            format!("io.k3s-scale.index={n}"),
        ];
        let mut vol = vec!["volume", "create"];
        for l in &labels {
            vol.extend(["--label", l.as_str()]);
        }
        let vol_name = format!("{name}-data");
        vol.push(&vol_name);
        docker_ok(&vol);
        let mount = format!("{vol_name}:/var/lib/rancher/k3s");
        let mut args = vec![
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &name,
            "-v",
            &mount,
        ];
        for l in &labels {
            args.extend(["--label", l.as_str()]);
        }
        args.push(crate::docker_support::test_image());
        docker_ok(&args);
        name
    }

    /// Removes every container and volume of the pool (directly on the daemon).
    pub fn clear_docker(&self) {
        let filter = format!("label=io.k3s-scale.pool={}", self.pool.name);
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
            .split_whitespace()
            .map(String::from)
            .collect();
        if !ids.is_empty() {
            let mut a = vec!["rm", "-f"];
            a.extend(ids.iter().map(String::as_str));
            let _ = docker(&a);
        }
        let vols = docker(&["volume", "ls", "-q", "--filter", &filter]);
        let vols: Vec<String> = String::from_utf8_lossy(&vols.stdout)
            .split_whitespace()
            .map(String::from)
            .collect();
        if !vols.is_empty() {
            let mut a = vec!["volume", "rm", "-f"];
            a.extend(vols.iter().map(String::as_str));
            let _ = docker(&a);
        }
    }

    /// The crash invariant: every container of the pool is in the state's provisioning
    /// list or has a Node, and every Node of the pool has a container. Returns what breaks
    /// it (empty: it holds).
    pub fn unknown_objects(&self) -> Vec<String> {
        let containers = self.containers();
        let nodes = self.pool_nodes();
        let provisioning: Vec<String> = match self.state() {
            Ok(Some(s)) => s.provisioning.iter().map(|p| p.name.clone()).collect(),
            Ok(None) => Vec::new(),
            Err(e) => return vec![format!("state does not load: {e}")],
        };
        let mut bad = Vec::new();
        for c in &containers {
            if !provisioning.contains(c) && !nodes.contains(c) {
                bad.push(format!("container {c}: neither provisioning nor a Node"));
            }
        }
        for n in &nodes {
            if !containers.contains(n) {
                bad.push(format!("Node {n}: no container (orphan)"));
            }
        }
        bad
    }
}

// ---------------------------------------------------------------------------------------
// What the HTTP proxy records.

/// One request: head (request line and headers, as text) and body.
#[derive(Clone, Debug)]
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(&self.head, name)
    }
}

// ---------------------------------------------------------------------------------------
// HTTP proxy: records every request, answers after a settable delay.

/// Forwards each HTTP request to `upstream` after `delay` (one request per connection,
/// `Connection: close` both ways) and records it: a slow Prometheus or apiserver, and a
/// witness of the headers a client sent.
pub struct HttpProxy {
    acceptor: Acceptor,
    seen: Arc<Mutex<Vec<Seen>>>,
    answered: Arc<Mutex<Vec<Instant>>>,
    delay: Arc<Mutex<Duration>>,
}

impl HttpProxy {
    pub fn start(upstream: &str, delay: Duration) -> HttpProxy {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let answered: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let delay = Arc::new(Mutex::new(delay));
        let (seen2, answered2, delay2) = (seen.clone(), answered.clone(), delay.clone());
        let upstream = upstream.to_string();
        let acceptor = Acceptor::start(move |client| {
            let _ = proxy_http(client, &upstream, &seen2, &answered2, &delay2);
        });
        HttpProxy {
            acceptor,
            seen,
            answered,
            delay,
        }
    }
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.acceptor.port)
    }
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.acceptor.port)
    }
    pub fn set_delay(&self, d: Duration) {
        *self.delay.lock().unwrap() = d;
    }
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    pub fn answered(&self) -> usize {
        self.answered.lock().unwrap().len()
    }
    /// Waits until at least `n` requests arrived; when the n-th did (None after `within`).
    pub fn wait_for(&self, n: usize, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.seen.lock().unwrap().get(n - 1) {
                return Some(s.at);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn proxy_http(
    client: TcpStream,
    upstream: &str,
    seen: &Mutex<Vec<Seen>>,
    answered: &Mutex<Vec<Instant>>,
    delay: &Mutex<Duration>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let Some((head, body)) = read_message(&mut reader)? else {
        return Ok(());
    };
    seen.lock().unwrap().push(Seen {
        head: head.clone(),
        body: body.clone(),
        at: Instant::now(),
    });
    let d = *delay.lock().unwrap();
    std::thread::sleep(d);
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    let mut out = String::new();
    for line in head.lines().filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    up.write_all(out.as_bytes())?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    // Say that the connection closes, so that the client does not send a second request
    // on it (the Kubernetes stand-in does not say so itself).
    if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
        if !head.contains("\r\nconnection:") {
            answer.splice(end + 2..end + 2, b"Connection: close\r\n".iter().copied());
        }
    }
    let mut client = client;
    client.write_all(&answer)?;
    answered.lock().unwrap().push(Instant::now());
    client.shutdown(Shutdown::Both)
}

// ---------------------------------------------------------------------------------------
// Docker socket proxy with injected faults.

/// What happens to a matching Docker API request.
#[derive(Clone, Debug, PartialEq)]
pub enum DockerFault {
    /// Forwarded this much later.
    Delay(Duration),
    /// Read and never answered (the connection is held open).
    Hang,
    /// Read, then the connection is closed without an answer.
    Drop,
}

#[derive(Clone, Debug)]
pub struct DockerRule {
    /// "POST", "GET", ...; empty: any.
    pub method: &'static str,
    /// A substring of the request path.
    pub path: &'static str,
    pub fault: DockerFault,
}

/// One request through the Docker proxy: its first line, when it came, when it was passed
/// on to the daemon and when the daemon began to answer (None: held, dropped, or not yet).
#[derive(Clone, Debug)]
pub struct DockerSeen {
    pub line: String,
    pub at: Instant,
    pub forwarded: Option<Instant>,
    pub answered: Option<Instant>,
    /// Held (Hang) or dropped by a rule: never forwarded.
    pub stopped: bool,
}

/// A unix-socket pass-through to the Docker daemon that applies `DockerRule`s and records
/// every request. Like `docker_support::DockerProxy` it clears `Privileged` in create
/// bodies (the same `docker_support::clear_privileged`) when this daemon cannot run privileged containers.
pub struct DockerFaults {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    rules: Arc<Mutex<Vec<DockerRule>>>,
    seen: Arc<Mutex<Vec<DockerSeen>>>,
    held: Arc<Mutex<Vec<UnixStream>>>,
}

impl DockerFaults {
    pub fn start(path: &Path) -> DockerFaults {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the Docker proxy socket");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let rules: Arc<Mutex<Vec<DockerRule>>> = Arc::default();
        let seen: Arc<Mutex<Vec<DockerSeen>>> = Arc::default();
        let held: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let clear_privileged = !privileged_runs();
        let upstream = daemon_socket();
        let (stop2, rules2, seen2, held2) =
            (stop.clone(), rules.clone(), seen.clone(), held.clone());
        let handle = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                let Ok(up) = UnixStream::connect(&upstream) else {
                    continue;
                };
                let ctx = ConnCtx {
                    rules: rules2.clone(),
                    seen: seen2.clone(),
                    held: held2.clone(),
                    clear_privileged,
                };
                std::thread::spawn(move || docker_connection(client, up, &ctx));
            }
        });
        DockerFaults {
            path: path.to_path_buf(),
            stop,
            handle: Some(handle),
            rules,
            seen,
            held,
        }
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }
    pub fn set_rules(&self, rules: Vec<DockerRule>) {
        *self.rules.lock().unwrap() = rules;
    }
    pub fn requests(&self) -> Vec<DockerSeen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn clear_log(&self) {
        self.seen.lock().unwrap().clear();
    }
    /// Waits until the daemon has answered every request it was sent or is still to be
    /// sent (delayed ones): what a killed client had asked for is then done, as it would be
    /// long before the next run 30 s later. False after `within`.
    pub fn wait_settled(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let settled = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .all(|s| s.stopped || s.answered.is_some());
            if settled {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until a request whose first line contains `needle` arrived.
    pub fn wait_for(&self, needle: &str, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.line.contains(needle))
            {
                return Some(s.at);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for DockerFaults {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in self.held.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

struct ConnCtx {
    rules: Arc<Mutex<Vec<DockerRule>>>,
    seen: Arc<Mutex<Vec<DockerSeen>>>,
    held: Arc<Mutex<Vec<UnixStream>>>,
    clear_privileged: bool,
}

fn docker_connection(client: UnixStream, up: UnixStream, ctx: &ConnCtx) {
    let (Ok(mut up_r), Ok(mut client_w)) = (up.try_clone(), client.try_clone()) else {
        return;
    };
    // The request last passed on: the next bytes from the daemon answer it (HTTP/1.1
    // without pipelining). Read on even when the client is gone, to see the answer come.
    let pending: Arc<Mutex<Option<usize>>> = Arc::default();
    let (pending2, seen2) = (pending.clone(), ctx.seen.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        let mut client_alive = true;
        loop {
            let n = match up_r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(i) = pending2.lock().unwrap().take()
                && let Some(s) = seen2.lock().unwrap().get_mut(i)
            {
                s.answered = Some(Instant::now());
            }
            if client_alive && client_w.write_all(&buf[..n]).is_err() {
                client_alive = false;
            }
        }
        let _ = client_w.shutdown(Shutdown::Write);
    });
    let mut reader = BufReader::new(match client.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut up_w = up;
    while let Ok(Some((head, body))) = read_message(&mut reader) {
        let line = head.lines().next().unwrap_or("").to_string();
        let fault = {
            let rules = ctx.rules.lock().unwrap();
            rules
                .iter()
                .find(|r| {
                    (r.method.is_empty() || line.starts_with(&format!("{} ", r.method)))
                        && line
                            .split_whitespace()
                            .nth(1)
                            .unwrap_or("")
                            .contains(r.path)
                })
                .map(|r| r.fault.clone())
        };
        let index = {
            let mut seen = ctx.seen.lock().unwrap();
            seen.push(DockerSeen {
                line: line.clone(),
                at: Instant::now(),
                forwarded: None,
                answered: None,
                stopped: matches!(fault, Some(DockerFault::Hang | DockerFault::Drop)),
            });
            seen.len() - 1
        };
        match fault {
            Some(DockerFault::Hang) => {
                let mut held = ctx.held.lock().unwrap();
                held.push(client);
                held.push(up_w);
                return;
            }
            Some(DockerFault::Drop) => {
                let _ = client.shutdown(Shutdown::Both);
                let _ = up_w.shutdown(Shutdown::Both);
                return;
            }
            Some(DockerFault::Delay(d)) => std::thread::sleep(d),
            None => {}
        }
        let (head, body) = if ctx.clear_privileged {
            clear_privileged(head, body)
        } else {
            (head, body)
        };
        *pending.lock().unwrap() = Some(index);
        if let Some(s) = ctx.seen.lock().unwrap().get_mut(index) {
            s.forwarded = Some(Instant::now());
        }
        if up_w.write_all(head.as_bytes()).is_err() || up_w.write_all(&body).is_err() {
            break;
        }
    }
    let _ = up_w.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------------------------------
// Odds and ends.

/// `/proc/<pid>/status` VmHWM (peak resident set) of a running process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Median of durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
