//! A SIMULATOR of the Kubernetes API server for tests: an HTTP/1.1 server on 127.0.0.1
//! (std TcpListener, a thread per connection) that the real kube client reaches through a
//! generated kubeconfig (http://127.0.0.1:PORT, no TLS, no auth). It is not an apiserver:
//! it simulates the behaviour k3s-scale relies on, with the apiserver's status codes and
//! `Status` bodies, and nothing else:
//!
//! - nodes: list, get, patch (merge and strategic-merge patch, applied as a JSON merge
//!   patch: enough for spec.unschedulable and annotations, where null removes a key in
//!   both, apimachinery pkg/util/strategicpatch/patch.go mergeMap), delete (immediate, like a Node without
//!   finalizers; its pods stay until the caller removes them, as pod GC would later). As
//!   k3s's server does, a Node's delete also deletes its `kube-system/<node>.node-password.k3s`
//!   secret (k3s-io/k3s pkg/node/controller.go onRemove -> nodepassword.Delete; newer k3s:
//!   pkg/nodepassword/controller.go, an owner reference the garbage collector follows);
//! - pods: list (all namespaces or one; fieldSelector spec.nodeName / metadata.name;
//!   equality labelSelector), get, delete with a grace period (body DeleteOptions or the
//!   gracePeriodSeconds query; UID preconditions -> 409). A deleted pod gets its
//!   deletionTimestamp and disappears when its process exits: after its simulated
//!   shutdown time (default: the whole grace period), capped by the grace period, measured
//!   on the real clock. Finished or unscheduled pods go at once, as the apiserver does;
//!   a pod marked `respawn` comes back at once under the same name with a new UID (a
//!   StatefulSet's replacement);
//! - the eviction subresource (POST .../pods/NAME/eviction, policy/v1 body with
//!   `deleteOptions`), after kubernetes pkg/registry/core/pod/storage/eviction.go: 404 for
//!   a missing pod; terminating, finished and pending pods are deleted without a budget
//!   check (canIgnorePDB); more than one matching PDB -> the Status {Failure, 500, "This pod
//!   has more than one PodDisruptionBudget, ..."} that eviction.go returns as a result,
//!   answered as HTTP 500 because the create handler's finisher turns a Failure Status
//!   into an error (apiserver/pkg/endpoints/handlers/finisher/finisher.go, result.Return;
//!   no `reason`); an unready pod goes without touching the budget when the PDB's
//!   `unhealthyPodEvictionPolicy` is AlwaysAllow, or (IfHealthyBudget, the default) when
//!   currentHealthy >= desiredHealthy and desiredHealthy > 0; a PDB whose status has not
//!   observed its generation -> 429 "still being processed"; a PDB that allows no
//!   disruption -> 429 TooManyRequests with a DisruptionBudget cause; else the pod is
//!   deleted as above (a UID precondition that no longer matches -> 409 with eviction.go's
//!   "the UID in the precondition (...) does not match the UID in record (...)") and 201
//!   returned;
//! - namespaces being deleted (`terminate_namespace`): every create in them (evictions,
//!   events) -> 403 Forbidden with cause NamespaceTerminating, as the NamespaceLifecycle
//!   admission plugin answers (apiserver/pkg/admission/plugin/namespace/lifecycle/
//!   admission.go); their pods are deleted with their grace period, as the namespace
//!   controller does;
//! - core/v1 events: create (409 AlreadyExists for a taken name), patch (strategic merge
//!   applied as a JSON merge patch: count, lastTimestamp, message, as client-go's
//!   recorder sends them), get, list;
//! - PodDisruptionBudgets (list, get): minAvailable / maxUnavailable (int or percent) over
//!   a label selector; status recomputed on every read: healthy = matching pods that are
//!   Ready and not terminating; expected = the matching pods when the PDB was added (the
//!   controller's scale: evicted pods are not replaced unless marked `respawn`);
//! - secrets: get, delete;
//! - for the cluster model (issue 13): pod list field selectors as the apiserver serves
//!   them (`field_matches`), PersistentVolumeClaims (namespaced get and list),
//!   PersistentVolumes and StorageClasses (get and list), DaemonSets (list, all namespaces
//!   or one); objects are stored and served as given (node labels and taints, pod
//!   nodeSelector, tolerations, affinity, hostPorts, volumes, a PV's nodeAffinity). No
//!   controller runs: a DaemonSet makes no pods, a claim is never bound by a provisioner;
//!   the test sets the claim's volumeName and phase as the PV controller would;
//! - fault injection per request (method + path substring): added latency, an error
//!   status for the next N calls, a dropped connection (request read, socket closed, no
//!   answer) for the next N calls;
//! - a request log (method, path, query, status) and a log of deletions with the grace
//!   period used, for assertions.
//!
//! Not simulated: watches, resourceVersion conflicts on writes, authentication and RBAC
//! (the request log is what tests/kube_rbac.rs compares with the ClusterRole), admission
//! other than NamespaceLifecycle, JSON patch and server-side apply (415), the disruption
//! controller's delay, event TTL.

use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::api::policy::v1::{Eviction, PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// How long a connection may sit idle before its thread gives up on it.
const IDLE_CONNECTION: Duration = Duration::from_secs(60);
/// Requests larger than this are refused (413) rather than read.
const MAX_BODY: usize = 8 << 20;

static DIRS: AtomicU64 = AtomicU64::new(0);

/// A rule that changes how matching requests are answered.
#[derive(Debug, Clone)]
pub struct Fault {
    method: Option<String>,
    path: String,
    action: FaultAction,
    /// How many more requests it applies to; None: all.
    times: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Answer normally, this much later.
    Latency(Duration),
    /// Answer with this status and a `Status` body instead.
    Status(u16),
    /// Read the request, close the connection, answer nothing.
    Drop,
}

impl Fault {
    fn new(method: &str, path: &str, action: FaultAction) -> Fault {
        Fault {
            method: (!method.is_empty()).then(|| method.to_string()),
            path: path.to_string(),
            action,
            times: None,
        }
    }
    /// Every `method` request whose path contains `path` is answered `d` later.
    pub fn latency(method: &str, path: &str, d: Duration) -> Fault {
        Fault::new(method, path, FaultAction::Latency(d))
    }
    /// Matching requests get `code` (e.g. 503) with a Status body.
    pub fn status(method: &str, path: &str, code: u16) -> Fault {
        Fault::new(method, path, FaultAction::Status(code))
    }
    /// Matching requests get their connection closed without an answer.
    pub fn drop_connection(method: &str, path: &str) -> Fault {
        Fault::new(method, path, FaultAction::Drop)
    }
    /// Only for the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }
    fn matches(&self, method: &str, path: &str) -> bool {
        self.times != Some(0)
            && self.method.as_deref().is_none_or(|m| m == method)
            && path.contains(&self.path)
    }
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    /// 0 when the connection was dropped.
    pub status: u16,
    /// When the request was read, and when it was answered (or dropped).
    pub started: Instant,
    pub finished: Instant,
}

/// A pod deletion the stand-in carried out.
#[derive(Debug, Clone)]
pub struct Deletion {
    /// `namespace/name`.
    pub pod: String,
    /// "eviction" or "delete".
    pub via: &'static str,
    pub grace_seconds: i64,
}

struct SimPod {
    pod: Pod,
    /// How long its process takes to exit after SIGTERM; None: it uses the whole grace.
    exit_after: Option<Duration>,
    gone_at: Option<Instant>,
    /// Comes back under the same name with a new UID on this node when gone.
    respawn: Option<String>,
}

struct SimPdb {
    pdb: PodDisruptionBudget,
    expected: i32,
    /// The generation the disruption controller last saw (status.observedGeneration).
    observed: Option<i64>,
}

#[derive(Default)]
struct World {
    storage: Issue13Objects,
    nodes: BTreeMap<String, Node>,
    pods: BTreeMap<(String, String), SimPod>,
    pdbs: BTreeMap<(String, String), SimPdb>,
    secrets: BTreeMap<(String, String), Secret>,
    events: BTreeMap<(String, String), Value>,
    /// Namespaces being deleted: creates in them are refused.
    terminating: std::collections::BTreeSet<String>,
    faults: Vec<Fault>,
    log: Vec<Logged>,
    deletions: Vec<Deletion>,
    rv: u64,
    uids: u64,
}

struct Shared {
    world: Mutex<World>,
    stop: AtomicBool,
}

/// The running stand-in. Dropping it stops it and removes its kubeconfig.
pub struct ApiServer {
    port: u16,
    shared: Arc<Shared>,
    dir: PathBuf,
    accept: Option<JoinHandle<()>>,
}

impl ApiServer {
    pub fn start() -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            world: Mutex::new(World::default()),
            stop: AtomicBool::new(false),
        });
        let dir = std::env::temp_dir().join(format!(
            "k3s-scale-apiserver-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        let server = ApiServer {
            port,
            shared,
            dir,
            accept: Some(accept),
        };
        std::fs::write(server.kubeconfig(), server.kubeconfig_text()).unwrap();
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A scratch directory that lives as long as the server (configs, state files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The generated kubeconfig that points the kube client here.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    fn kubeconfig_text(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: {}\n\
             contexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: stand-in\n\
             current-context: stand-in\nusers:\n- name: stand-in\n  user: {{}}\n",
            self.url()
        )
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.shared.world.lock().unwrap()
    }

    pub fn add_node(&self, node: Node) {
        let mut w = self.world();
        let mut node = node;
        w.stamp(&mut node.metadata);
        let name = node.metadata.name.clone().unwrap();
        w.nodes.insert(name, node);
    }

    /// Adds a pod (Running and Ready unless its status says otherwise) whose process
    /// takes its whole grace period to exit.
    pub fn add_pod(&self, pod: Pod) {
        self.add_sim_pod(pod, None, None);
    }

    /// Adds a pod whose process exits `d` after SIGTERM (capped by its grace period).
    /// Adds each pod (e.g. `Cluster::api_pending_pods`, so the API lists what
    /// Prometheus shows pending).
    pub fn add_pods(&self, pods: Vec<Pod>) {
        for p in pods {
            self.add_pod(p);
        }
    }

    pub fn add_pod_exiting_after(&self, pod: Pod, d: Duration) {
        self.add_sim_pod(pod, Some(d), None);
    }

    /// Adds a pod that, once gone, is replaced at once by a pod of the same name with a
    /// new UID on `node` (as a StatefulSet would).
    pub fn add_pod_respawning(&self, pod: Pod, exit_after: Duration, node: &str) {
        self.add_sim_pod(pod, Some(exit_after), Some(node.to_string()));
    }

    fn add_sim_pod(&self, mut pod: Pod, exit_after: Option<Duration>, respawn: Option<String>) {
        let mut w = self.world();
        if pod.metadata.namespace.is_none() {
            pod.metadata.namespace = Some("default".into());
        }
        w.stamp(&mut pod.metadata);
        if pod.status.is_none() {
            pod.status = Some(running_ready());
        }
        let key = (
            pod.metadata.namespace.clone().unwrap(),
            pod.metadata.name.clone().unwrap(),
        );
        w.pods.insert(
            key,
            SimPod {
                pod,
                exit_after,
                gone_at: None,
                respawn,
            },
        );
    }

    /// Adds a PDB; its expected pod count is the matching pods at this moment.
    pub fn add_pdb(&self, mut pdb: PodDisruptionBudget) {
        let mut w = self.world();
        if pdb.metadata.namespace.is_none() {
            pdb.metadata.namespace = Some("default".into());
        }
        w.stamp(&mut pdb.metadata);
        pdb.metadata.generation = Some(1);
        let ns = pdb.metadata.namespace.clone().unwrap();
        let expected = w
            .matching(&ns, pdb.spec.as_ref().and_then(|s| s.selector.as_ref()))
            .len() as i32;
        let key = (ns, pdb.metadata.name.clone().unwrap());
        w.pdbs.insert(
            key,
            SimPdb {
                pdb,
                expected,
                observed: Some(1),
            },
        );
    }

    pub fn add_secret(&self, ns: &str, name: &str) {
        let mut w = self.world();
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some(ns.into());
        w.stamp(&mut s.metadata);
        w.secrets.insert((ns.into(), name.into()), s);
    }

    /// Deletes a namespace: from now on every create in it is refused (403
    /// NamespaceTerminating) and its pods are deleted with their own grace period, as the
    /// namespace controller does (they go when their process exits).
    pub fn terminate_namespace(&self, ns: &str) {
        let mut w = self.world();
        w.terminating.insert(ns.to_string());
        let names: Vec<String> = w
            .pods
            .keys()
            .filter(|(pns, _)| pns == ns)
            .map(|(_, n)| n.clone())
            .collect();
        let now = Instant::now();
        for n in names {
            w.delete_pod(ns, &n, &DeleteOptions::default(), "namespace", now);
        }
    }

    /// The PDB's spec changed and the disruption controller has not caught up: its
    /// generation moves past the status's observedGeneration until `observe_pdb`.
    pub fn make_pdb_stale(&self, ns: &str, name: &str) {
        let mut w = self.world();
        let p = w
            .pdbs
            .get_mut(&(ns.into(), name.into()))
            .expect("no such PDB");
        p.pdb.metadata.generation = Some(p.pdb.metadata.generation.unwrap_or(1) + 1);
    }

    /// The disruption controller catches up with the PDB's generation.
    pub fn observe_pdb(&self, ns: &str, name: &str) {
        let mut w = self.world();
        let p = w
            .pdbs
            .get_mut(&(ns.into(), name.into()))
            .expect("no such PDB");
        p.observed = p.pdb.metadata.generation;
    }

    /// Every Event, as stored (JSON).
    pub fn events(&self) -> Vec<Value> {
        self.world().events.values().cloned().collect()
    }

    pub fn fault(&self, f: Fault) {
        self.world().faults.push(f);
    }

    pub fn clear_faults(&self) {
        self.world().faults.clear();
    }

    pub fn node(&self, name: &str) -> Option<Node> {
        self.world().nodes.get(name).cloned()
    }

    pub fn is_cordoned(&self, name: &str) -> Option<bool> {
        self.node(name)
            .map(|n| n.spec.and_then(|s| s.unschedulable) == Some(true))
    }

    /// The pod as a GET would see it now (None once it is gone).
    pub fn pod(&self, ns: &str, name: &str) -> Option<Pod> {
        let mut w = self.world();
        w.reap(Instant::now());
        w.pods.get(&(ns.into(), name.into())).map(|p| p.pod.clone())
    }

    pub fn pod_names(&self) -> Vec<String> {
        let mut w = self.world();
        w.reap(Instant::now());
        w.pods.keys().map(|(ns, n)| format!("{ns}/{n}")).collect()
    }

    /// Every Node, by name.
    pub fn nodes(&self) -> Vec<Node> {
        self.world().nodes.values().cloned().collect()
    }

    /// Every pod as a list would show it now (pods whose process exited are gone).
    pub fn pods(&self) -> Vec<Pod> {
        let mut w = self.world();
        w.reap(Instant::now());
        w.pods.values().map(|p| p.pod.clone()).collect()
    }

    /// Deletes a Node at once, as `kubectl delete node` by hand would; its pods stay (pod
    /// GC would remove them later). True when it existed.
    pub fn remove_node(&self, name: &str) -> bool {
        self.world().nodes.remove(name).is_some()
    }

    /// Removes a pod at once (a finished Job, a scaled-down Deployment). True when it existed.
    pub fn remove_pod(&self, ns: &str, name: &str) -> bool {
        self.world()
            .pods
            .remove(&(ns.to_string(), name.to_string()))
            .is_some()
    }

    pub fn secret_exists(&self, ns: &str, name: &str) -> bool {
        self.world().secrets.contains_key(&(ns.into(), name.into()))
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.world().log.clone()
    }

    /// Requests matching a method and a path substring.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.world()
            .log
            .iter()
            .filter(|l| l.method == method && l.path.contains(path))
            .count()
    }

    /// The most requests matching `method` and `path` that were being served at once.
    pub fn max_concurrent(&self, method: &str, path: &str) -> usize {
        let log = self.world().log.clone();
        let reqs: Vec<&Logged> = log
            .iter()
            .filter(|l| l.method == method && l.path.contains(path))
            .collect();
        reqs.iter()
            .map(|a| {
                reqs.iter()
                    .filter(|b| b.started <= a.started && a.started < b.finished)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    pub fn deletions(&self) -> Vec<Deletion> {
        self.world().deletions.clone()
    }

    /// The PDB's status as the next read would report it.
    pub fn pdb_status(&self, ns: &str, name: &str) -> Option<PodDisruptionBudgetStatus> {
        let mut w = self.world();
        w.reap(Instant::now());
        let p = w.pdbs.get(&(ns.into(), name.into()))?;
        Some(w.pdb_status(p))
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the stop flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_ready() -> k8s_openapi::api::core::v1::PodStatus {
    serde_json::from_value(json!({
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}]
    }))
    .unwrap()
}

fn time_in(d: Duration) -> Time {
    Time(k8s_openapi::jiff::Timestamp::try_from(SystemTime::now() + d).unwrap())
}

// ---------------------------------------------------------------------------------------
// HTTP

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    raw_query: String,
    content_type: String,
    body: Vec<u8>,
    close: bool,
    received: Instant,
}

fn serve(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(IDLE_CONNECTION));
    let _ = conn.set_nodelay(true);
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut conn = conn;
    loop {
        let req = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(code) => {
                let _ = respond(
                    &mut conn,
                    code,
                    &status_body(code, "BadRequest", "malformed request", None),
                );
                return;
            }
        };
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let (latency, fault) = shared.world.lock().unwrap().take_fault(&req);
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        let (code, body) = match fault {
            Some(FaultAction::Drop) => {
                shared.world.lock().unwrap().log(&req, 0);
                let _ = conn.shutdown(Shutdown::Both);
                return;
            }
            Some(FaultAction::Status(code)) => (
                code,
                status_body(code, reason_for(code), "injected fault (stand-in)", None),
            ),
            _ => shared.world.lock().unwrap().handle(&req, Instant::now()),
        };
        shared.world.lock().unwrap().log(&req, code);
        if respond(&mut conn, code, &body).is_err() || req.close {
            return;
        }
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> Result<Option<Request>, u16> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) | Err(_) => return Ok(None),
        Ok(_) => {}
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(400);
    };
    let (path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let mut content_length = 0usize;
    let mut chunked = false;
    let mut content_type = String::new();
    let mut close = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).map_err(|_| 400u16)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((k, v)) = h.split_once(':') else {
            return Err(400);
        };
        let v = v.trim();
        match k.to_ascii_lowercase().as_str() {
            "content-length" => content_length = v.parse().map_err(|_| 400u16)?,
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "content-type" => content_type = v.to_string(),
            "connection" => close = v.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(r)?
    } else {
        if content_length > MAX_BODY {
            return Err(413);
        }
        let mut b = vec![0; content_length];
        r.read_exact(&mut b).map_err(|_| 400u16)?;
        b
    };
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: parse_query(raw_query),
        raw_query: raw_query.to_string(),
        content_type,
        body,
        close,
        received: Instant::now(),
    }))
}

fn read_chunked(r: &mut BufReader<TcpStream>) -> Result<Vec<u8>, u16> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size).map_err(|_| 400u16)?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| 400u16)?;
        if body.len() + n > MAX_BODY {
            return Err(413);
        }
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk).map_err(|_| 400u16)?;
        if n == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(conn: &mut TcpStream, code: u16, body: &Value) -> std::io::Result<()> {
    let body = serde_json::to_vec(body).unwrap();
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        reason_phrase(code),
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(&body)?;
    conn.flush()
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// The `reason` field the apiserver puts in a Status for a code.
fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

fn status_body(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": if code < 400 { "Success" } else { "Failure" },
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        v["details"] = d;
    }
    v
}

fn not_found(kind: &str, name: &str) -> (u16, Value) {
    (
        404,
        status_body(
            404,
            "NotFound",
            &format!("{kind} \"{name}\" not found"),
            Some(json!({"name": name, "kind": kind})),
        ),
    )
}

/// The Status of an immediate deletion.
fn success(kind: &str, name: &str, uid: Option<&str>) -> (u16, Value) {
    (
        200,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "kind": kind, "uid": uid},
        }),
    )
}

fn list(kind: &str, api_version: &str, rv: u64, items: Vec<Value>) -> (u16, Value) {
    (
        200,
        json!({
            "kind": kind,
            "apiVersion": api_version,
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }),
    )
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

/// JSON merge patch (RFC 7386): objects merge, null deletes, everything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Label selector semantics (matchLabels, matchExpressions); an empty selector matches all.
fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().flatten().all(|e| {
            let vals = e.values.clone().unwrap_or_default();
            let have = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => have.is_some_and(|v| vals.contains(v)),
                "NotIn" => have.is_none_or(|v| !vals.contains(v)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        })
}

/// Equality-based `labelSelector` query terms: k=v, k==v, k!=v, k, !k.
fn label_query_matches(q: &str, labels: &BTreeMap<String, String>) -> bool {
    q.split(',').filter(|t| !t.is_empty()).all(|t| {
        if let Some((k, v)) = t.split_once("!=") {
            labels.get(k.trim()).map(String::as_str) != Some(v.trim())
        } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            labels.get(k.trim()).map(String::as_str) == Some(v.trim())
        } else if let Some(k) = t.strip_prefix('!') {
            !labels.contains_key(k.trim())
        } else {
            labels.contains_key(t.trim())
        }
    })
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn scaled(v: &IntOrString, expected: i32) -> i32 {
    match v {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            (pct * f64::from(expected) / 100.0).ceil() as i32
        }
    }
}

// ---------------------------------------------------------------------------------------
// The simulated API

impl World {
    fn stamp(&mut self, meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
        self.rv += 1;
        self.uids += 1;
        if meta.uid.is_none() {
            meta.uid = Some(format!("00000000-0000-4000-8000-{:012x}", self.uids));
        }
        meta.resource_version = Some(self.rv.to_string());
    }

    fn bump(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn log(&mut self, req: &Request, status: u16) {
        self.log.push(Logged {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.raw_query.clone(),
            status,
            started: req.received,
            finished: Instant::now(),
        });
    }

    /// The summed latency of matching latency rules, and the first error rule that applies.
    fn take_fault(&mut self, req: &Request) -> (Duration, Option<FaultAction>) {
        let mut latency = Duration::ZERO;
        let mut action = None;
        for f in self.faults.iter_mut() {
            if !f.matches(&req.method, &req.path) {
                continue;
            }
            match &f.action {
                FaultAction::Latency(d) => latency += *d,
                other if action.is_none() => {
                    action = Some(other.clone());
                    if let Some(n) = f.times.as_mut() {
                        *n -= 1;
                    }
                    continue;
                }
                _ => continue,
            }
            if let Some(n) = f.times.as_mut() {
                *n -= 1;
            }
        }
        (latency, action)
    }

    /// Removes the pods whose process has exited; respawns the ones that come back.
    fn reap(&mut self, now: Instant) {
        let gone: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, p)| p.gone_at.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            let old = self.pods.remove(&k).unwrap();
            if let Some(node) = old.respawn {
                let mut pod = old.pod;
                pod.metadata.uid = None;
                pod.metadata.deletion_timestamp = None;
                pod.metadata.deletion_grace_period_seconds = None;
                pod.spec.as_mut().unwrap().node_name = Some(node);
                pod.status = Some(running_ready());
                self.stamp(&mut pod.metadata);
                self.pods.insert(
                    k,
                    SimPod {
                        pod,
                        exit_after: old.exit_after,
                        gone_at: None,
                        respawn: None,
                    },
                );
            }
        }
    }

    fn matching(&self, ns: &str, sel: Option<&LabelSelector>) -> Vec<&SimPod> {
        let Some(sel) = sel else { return Vec::new() };
        let empty = BTreeMap::new();
        self.pods
            .iter()
            .filter(|((pns, _), _)| pns == ns)
            .filter(|(_, p)| {
                selector_matches(sel, p.pod.metadata.labels.as_ref().unwrap_or(&empty))
            })
            .map(|(_, p)| p)
            .collect()
    }

    fn pdb_status(&self, p: &SimPdb) -> PodDisruptionBudgetStatus {
        let ns = p.pdb.metadata.namespace.as_deref().unwrap();
        let spec = p.pdb.spec.clone().unwrap_or_default();
        let pods = self.matching(ns, spec.selector.as_ref());
        let healthy = pods
            .iter()
            .filter(|sp| sp.pod.metadata.deletion_timestamp.is_none() && is_ready(&sp.pod))
            .count() as i32;
        let desired = match (&spec.min_available, &spec.max_unavailable) {
            (Some(m), _) => scaled(m, p.expected),
            (None, Some(m)) => (p.expected - scaled(m, p.expected)).max(0),
            (None, None) => p.expected,
        };
        PodDisruptionBudgetStatus {
            current_healthy: Some(healthy),
            desired_healthy: Some(desired),
            expected_pods: Some(p.expected),
            disruptions_allowed: Some((healthy - desired).max(0)),
            observed_generation: p.observed,
            ..Default::default()
        }
    }

    fn pdb_json(&self, p: &SimPdb) -> Value {
        let mut pdb = p.pdb.clone();
        pdb.status = Some(self.pdb_status(p));
        to_json(&pdb)
    }

    fn handle(&mut self, req: &Request, now: Instant) -> (u16, Value) {
        self.reap(now);
        let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
        let m = req.method.as_str();
        if let Some(answer) = self.storage.handle(&segs, m, self.rv) {
            return answer;
        }
        match segs.as_slice() {
            ["api", "v1", "nodes"] => match m {
                "GET" => self.list_nodes(req),
                _ => not_allowed(m),
            },
            ["api", "v1", "nodes", name] => match m {
                "GET" => match self.nodes.get(*name) {
                    Some(n) => (200, to_json(n)),
                    None => not_found("nodes", name),
                },
                "PATCH" => self.patch_node(name, req),
                "DELETE" => match self.nodes.remove(*name) {
                    Some(n) => {
                        // k3s's server deletes the node's password secret with it (see
                        // the module doc).
                        self.secrets
                            .remove(&("kube-system".into(), format!("{name}.node-password.k3s")));
                        success("nodes", name, n.metadata.uid.as_deref())
                    }
                    None => not_found("nodes", name),
                },
                _ => not_allowed(m),
            },
            ["api", "v1", "pods"] if m == "GET" => self.list_pods(None, req),
            ["api", "v1", "namespaces", ns, "pods"] if m == "GET" => self.list_pods(Some(ns), req),
            ["api", "v1", "namespaces", ns, "pods", name] => match m {
                "GET" => match self.pods.get(&(ns.to_string(), name.to_string())) {
                    Some(p) => (200, to_json(&p.pod)),
                    None => not_found("pods", name),
                },
                "DELETE" => {
                    let opts = match delete_options(req) {
                        Ok(o) => o,
                        Err(e) => return e,
                    };
                    self.delete_pod(ns, name, &opts, "delete", now)
                }
                _ => not_allowed(m),
            },
            ["api", "v1", "namespaces", ns, "pods", name, "eviction"] => match m {
                "POST" => self.evict(ns, name, req, now),
                _ => not_allowed(m),
            },
            ["apis", "policy", "v1", "poddisruptionbudgets"] if m == "GET" => {
                let items = self.pdbs.values().map(|p| self.pdb_json(p)).collect();
                list("PodDisruptionBudgetList", "policy/v1", self.rv, items)
            }
            [
                "apis",
                "policy",
                "v1",
                "namespaces",
                ns,
                "poddisruptionbudgets",
            ] if m == "GET" => {
                let items = self
                    .pdbs
                    .iter()
                    .filter(|((pns, _), _)| pns == ns)
                    .map(|(_, p)| self.pdb_json(p))
                    .collect();
                list("PodDisruptionBudgetList", "policy/v1", self.rv, items)
            }
            [
                "apis",
                "policy",
                "v1",
                "namespaces",
                ns,
                "poddisruptionbudgets",
                name,
            ] if m == "GET" => match self.pdbs.get(&(ns.to_string(), name.to_string())) {
                Some(p) => (200, self.pdb_json(p)),
                None => not_found("poddisruptionbudgets.policy", name),
            },
            ["api", "v1", "namespaces", ns, "events"] => match m {
                "POST" => self.create_event(ns, req),
                "GET" => {
                    let items = self
                        .events
                        .iter()
                        .filter(|((ens, _), _)| ens == ns)
                        .map(|(_, e)| e.clone())
                        .collect();
                    list("EventList", "v1", self.rv, items)
                }
                _ => not_allowed(m),
            },
            ["api", "v1", "namespaces", ns, "events", name] => match m {
                "GET" => match self.events.get(&(ns.to_string(), name.to_string())) {
                    Some(e) => (200, e.clone()),
                    None => not_found("events", name),
                },
                "PATCH" => self.patch_event(ns, name, req),
                _ => not_allowed(m),
            },
            ["api", "v1", "namespaces", ns, "secrets", name] => {
                let key = (ns.to_string(), name.to_string());
                match m {
                    "GET" => match self.secrets.get(&key) {
                        Some(s) => (200, to_json(s)),
                        None => not_found("secrets", name),
                    },
                    "DELETE" => match self.secrets.remove(&key) {
                        Some(s) => success("secrets", name, s.metadata.uid.as_deref()),
                        None => not_found("secrets", name),
                    },
                    _ => not_allowed(m),
                }
            }
            _ => (
                404,
                status_body(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                    None,
                ),
            ),
        }
    }

    /// A create in a namespace being deleted, as the NamespaceLifecycle admission plugin
    /// refuses it: 403 with a NamespaceTerminating cause (admission.NewForbidden names the
    /// resource and object).
    fn refuse_in_terminating(&self, ns: &str, resource: &str, name: &str) -> Option<(u16, Value)> {
        if !self.terminating.contains(ns) {
            return None;
        }
        Some((
            403,
            status_body(
                403,
                "Forbidden",
                &format!(
                    "{resource} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"
                ),
                Some(json!({"name": name, "kind": resource, "causes": [{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {ns} is being terminated"),
                    "field": "metadata.namespace",
                }]})),
            ),
        ))
    }

    fn create_event(&mut self, ns: &str, req: &Request) -> (u16, Value) {
        let Ok(mut ev) = serde_json::from_slice::<Value>(&req.body) else {
            return (
                400,
                status_body(400, "BadRequest", "the event is not JSON", None),
            );
        };
        let name = ev["metadata"]["name"].as_str().unwrap_or("").to_string();
        if let Some(refused) = self.refuse_in_terminating(ns, "events", &name) {
            return refused;
        }
        if name.is_empty() || ev["involvedObject"]["name"].as_str().is_none() {
            return (
                422,
                status_body(
                    422,
                    "Invalid",
                    "Event is invalid: metadata.name and involvedObject are required",
                    None,
                ),
            );
        }
        let key = (ns.to_string(), name.clone());
        if self.events.contains_key(&key) {
            return (
                409,
                status_body(
                    409,
                    "AlreadyExists",
                    &format!("events \"{name}\" already exists"),
                    Some(json!({"name": name, "kind": "events"})),
                ),
            );
        }
        let rv = self.bump();
        ev["metadata"]["namespace"] = json!(ns);
        ev["metadata"]["resourceVersion"] = json!(rv);
        ev["metadata"]["uid"] = json!(format!("ev-{rv}"));
        self.events.insert(key, ev.clone());
        (201, ev)
    }

    fn patch_event(&mut self, ns: &str, name: &str, req: &Request) -> (u16, Value) {
        let Ok(patch) = serde_json::from_slice::<Value>(&req.body) else {
            return (
                400,
                status_body(400, "BadRequest", "the patch is not JSON", None),
            );
        };
        let rv = self.bump();
        let Some(ev) = self.events.get_mut(&(ns.to_string(), name.to_string())) else {
            return not_found("events", name);
        };
        merge_patch(ev, &patch);
        ev["metadata"]["resourceVersion"] = json!(rv);
        (200, ev.clone())
    }

    fn list_nodes(&self, req: &Request) -> (u16, Value) {
        let empty = BTreeMap::new();
        let items = self
            .nodes
            .values()
            .filter(|n| {
                req.query.get("labelSelector").is_none_or(|q| {
                    label_query_matches(q, n.metadata.labels.as_ref().unwrap_or(&empty))
                })
            })
            .map(to_json)
            .collect();
        list("NodeList", "v1", self.rv, items)
    }

    fn list_pods(&self, ns: Option<&str>, req: &Request) -> (u16, Value) {
        let field_terms = match pod_field_selector(req.query.get("fieldSelector")) {
            Ok(t) => t,
            Err(answer) => return answer,
        };
        let empty = BTreeMap::new();
        let items = self
            .pods
            .iter()
            .filter(|((pns, _), _)| ns.is_none_or(|n| n == pns))
            .filter(|(_, p)| field_matches(&field_terms, &p.pod))
            .filter(|(_, p)| {
                req.query.get("labelSelector").is_none_or(|q| {
                    label_query_matches(q, p.pod.metadata.labels.as_ref().unwrap_or(&empty))
                })
            })
            .map(|(_, p)| to_json(&p.pod))
            .collect();
        list("PodList", "v1", self.rv, items)
    }

    fn patch_node(&mut self, name: &str, req: &Request) -> (u16, Value) {
        let ct = req.content_type.split(';').next().unwrap_or("").trim();
        if !matches!(
            ct,
            "application/merge-patch+json" | "application/strategic-merge-patch+json"
        ) {
            return (
                415,
                status_body(
                    415,
                    "UnsupportedMediaType",
                    &format!("the stand-in does not simulate patch type {ct:?}"),
                    None,
                ),
            );
        }
        let Ok(patch) = serde_json::from_slice::<Value>(&req.body) else {
            return (
                400,
                status_body(400, "BadRequest", "the patch is not JSON", None),
            );
        };
        let rv = self.bump();
        let Some(node) = self.nodes.get_mut(name) else {
            return not_found("nodes", name);
        };
        let mut v = to_json(node);
        merge_patch(&mut v, &patch);
        match serde_json::from_value::<Node>(v) {
            Ok(mut n) => {
                n.metadata.resource_version = Some(rv);
                *node = n.clone();
                (200, to_json(&n))
            }
            Err(e) => (
                422,
                status_body(
                    422,
                    "Invalid",
                    &format!("Node \"{name}\" is invalid: {e}"),
                    None,
                ),
            ),
        }
    }

    /// A pod deletion with the apiserver's grace rules; the pod goes when its process
    /// exits, at the latest when the grace period ends.
    fn delete_pod(
        &mut self,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
        via: &'static str,
        now: Instant,
    ) -> (u16, Value) {
        let key = (ns.to_string(), name.to_string());
        let rv = self.bump();
        let Some(sp) = self.pods.get_mut(&key) else {
            return not_found("pods", name);
        };
        if let Some(want) = opts.preconditions.as_ref().and_then(|p| p.uid.as_ref())
            && Some(want) != sp.pod.metadata.uid.as_ref()
        {
            let have = sp.pod.metadata.uid.clone().unwrap_or_default();
            let (message, kind) = if via == "eviction" {
                // eviction.go addConditionAndDeletePod: errors.NewConflict on Resource
                // "Pod" before the DisruptionTarget condition is added.
                (
                    format!(
                        "Operation cannot be fulfilled on Pod \"{name}\": the UID in the precondition ({want}) does not match the UID in record ({have}). The object might have been deleted and then recreated"
                    ),
                    "Pod",
                )
            } else {
                // The generic store's precondition check (apiserver storage
                // Preconditions.Check), as a conflict on pods.
                (
                    format!(
                        "Operation cannot be fulfilled on pods \"{name}\": Precondition failed: UID in precondition: {want}, UID in object meta: {have}"
                    ),
                    "pods",
                )
            };
            return (
                409,
                status_body(
                    409,
                    "Conflict",
                    &message,
                    Some(json!({"name": name, "kind": kind})),
                ),
            );
        }
        let own = sp
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let mut grace = opts.grace_period_seconds.unwrap_or(own).max(0);
        let unscheduled = sp
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_none();
        if unscheduled || matches!(phase(&sp.pod), "Succeeded" | "Failed") {
            grace = 0;
        }
        let exit = sp
            .exit_after
            .unwrap_or(Duration::from_secs(grace as u64))
            .min(Duration::from_secs(grace as u64));
        let at = now + exit;
        sp.gone_at = Some(sp.gone_at.map_or(at, |t| t.min(at)));
        if sp.pod.metadata.deletion_timestamp.is_none() || grace == 0 {
            sp.pod.metadata.deletion_timestamp = Some(time_in(Duration::from_secs(grace as u64)));
            sp.pod.metadata.deletion_grace_period_seconds = Some(grace);
        }
        sp.pod.metadata.resource_version = Some(rv);
        let body = to_json(&sp.pod);
        let uid = sp.pod.metadata.uid.clone();
        self.deletions.push(Deletion {
            pod: format!("{ns}/{name}"),
            via,
            grace_seconds: grace,
        });
        if exit.is_zero() {
            self.reap(now);
            return success("pods", name, uid.as_deref());
        }
        (200, body)
    }

    fn evict(&mut self, ns: &str, name: &str, req: &Request, now: Instant) -> (u16, Value) {
        let ev: Eviction = match serde_json::from_slice(&req.body) {
            Ok(e) => e,
            Err(e) => {
                return (
                    400,
                    status_body(400, "BadRequest", &format!("invalid Eviction: {e}"), None),
                );
            }
        };
        if ev.metadata.name.as_deref() != Some(name) {
            return (
                400,
                status_body(
                    400,
                    "BadRequest",
                    "name in URL does not match name in Eviction object",
                    None,
                ),
            );
        }
        if let Some(refused) = self.refuse_in_terminating(ns, "pods", name) {
            return refused;
        }
        let opts = ev.delete_options.unwrap_or_default();
        let key = (ns.to_string(), name.to_string());
        let Some(sp) = self.pods.get(&key) else {
            return not_found("pods", name);
        };
        let pod = sp.pod.clone();
        let ignore_budget = pod.metadata.deletion_timestamp.is_some()
            || matches!(phase(&pod), "Succeeded" | "Failed" | "Pending");
        if !ignore_budget {
            let empty = BTreeMap::new();
            let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
            let matching: Vec<&SimPdb> = self
                .pdbs
                .iter()
                .filter(|((pns, _), _)| pns == ns)
                .filter(|(_, p)| {
                    p.pdb
                        .spec
                        .as_ref()
                        .and_then(|s| s.selector.as_ref())
                        .is_some_and(|s| selector_matches(s, labels))
                })
                .map(|(_, p)| p)
                .collect();
            if matching.len() > 1 {
                // eviction.go returns this Status as its result; finisher.go turns a
                // Failure Status into an error, written with its code and no reason.
                return (
                    500,
                    json!({
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                        "code": 500,
                    }),
                );
            }
            if let Some(p) = matching.first() {
                let st = self.pdb_status(p);
                let allowed = st.disruptions_allowed.unwrap_or(0);
                let healthy = st.current_healthy.unwrap_or(0);
                let desired = st.desired_healthy.unwrap_or(0);
                let pdb = p.pdb.metadata.name.clone().unwrap_or_default();
                // eviction.go: an unready pod does not count as healthy; it goes without
                // spending the budget under AlwaysAllow, or under IfHealthyBudget (the
                // default) while the application is not disrupted and the budget asks
                // for some healthy pods.
                let always = p
                    .pdb
                    .spec
                    .as_ref()
                    .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref())
                    == Some("AlwaysAllow");
                let unready_ok = !is_ready(&pod) && (always || (healthy >= desired && desired > 0));
                // checkAndDecrement: a status that has not caught up with the spec is
                // not trusted.
                let stale = p.observed < p.pdb.metadata.generation;
                if !unready_ok && stale {
                    return (
                        429,
                        status_body(
                            429,
                            "TooManyRequests",
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                            Some(json!({"retryAfterSeconds": 10, "causes": [{
                                "reason": "DisruptionBudget",
                                "message": format!("The disruption budget {pdb} is still being processed by the server."),
                            }]})),
                        ),
                    );
                }
                if allowed < 1 && !unready_ok {
                    return (
                        429,
                        status_body(
                            429,
                            "TooManyRequests",
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                            Some(json!({"causes": [{
                                "reason": "DisruptionBudget",
                                "message": format!("The disruption budget {pdb} needs {desired} healthy pods and has {healthy} currently"),
                            }]})),
                        ),
                    );
                }
            }
        }
        let (code, body) = self.delete_pod(ns, name, &opts, "eviction", now);
        if code >= 300 {
            return (code, body);
        }
        (
            201,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        )
    }
}

fn not_allowed(method: &str) -> (u16, Value) {
    (
        405,
        status_body(
            405,
            "MethodNotAllowed",
            &format!("the server does not allow this method ({method}) on the requested resource"),
            None,
        ),
    )
}

fn delete_options(req: &Request) -> Result<DeleteOptions, (u16, Value)> {
    let mut opts: DeleteOptions = if req.body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(&req.body).map_err(|e| {
            (
                400,
                status_body(
                    400,
                    "BadRequest",
                    &format!("invalid DeleteOptions: {e}"),
                    None,
                ),
            )
        })?
    };
    if let Some(g) = req.query.get("gracePeriodSeconds") {
        opts.grace_period_seconds = g.parse().ok();
    }
    Ok(opts)
}

// ---------------------------------------------------------------------------------------
// Issue 13: what the cluster model lists (kept apart from the rest to merge easily).

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

/// Claims, volumes, classes and DaemonSets, served as stored.
#[derive(Default)]
struct Issue13Objects {
    claims: BTreeMap<(String, String), PersistentVolumeClaim>,
    volumes: BTreeMap<String, PersistentVolume>,
    classes: BTreeMap<String, StorageClass>,
    daemon_sets: BTreeMap<(String, String), DaemonSet>,
}

impl Issue13Objects {
    /// Answers the requests for these kinds; None for any other path.
    fn handle(&self, segs: &[&str], method: &str, rv: u64) -> Option<(u16, Value)> {
        if method != "GET" {
            let ours = matches!(
                segs,
                ["api", "v1", "namespaces", _, "persistentvolumeclaims", ..]
                    | ["api", "v1", "persistentvolumes", ..]
                    | ["apis", "storage.k8s.io", "v1", "storageclasses", ..]
                    | ["apis", "apps", "v1", "daemonsets"]
                    | ["apis", "apps", "v1", "namespaces", _, "daemonsets", ..]
            );
            return ours.then(|| not_allowed(method));
        }
        Some(match segs {
            ["api", "v1", "namespaces", ns, "persistentvolumeclaims"] => {
                let items = self
                    .claims
                    .iter()
                    .filter(|((cns, _), _)| cns == ns)
                    .map(|(_, c)| to_json(c))
                    .collect();
                list("PersistentVolumeClaimList", "v1", rv, items)
            }
            [
                "api",
                "v1",
                "namespaces",
                ns,
                "persistentvolumeclaims",
                name,
            ] => match self.claims.get(&(ns.to_string(), name.to_string())) {
                Some(c) => (200, to_json(c)),
                None => not_found("persistentvolumeclaims", name),
            },
            ["api", "v1", "persistentvolumes"] => list(
                "PersistentVolumeList",
                "v1",
                rv,
                self.volumes.values().map(to_json).collect(),
            ),
            ["api", "v1", "persistentvolumes", name] => match self.volumes.get(*name) {
                Some(v) => (200, to_json(v)),
                None => not_found("persistentvolumes", name),
            },
            ["apis", "storage.k8s.io", "v1", "storageclasses"] => list(
                "StorageClassList",
                "storage.k8s.io/v1",
                rv,
                self.classes.values().map(to_json).collect(),
            ),
            ["apis", "storage.k8s.io", "v1", "storageclasses", name] => {
                match self.classes.get(*name) {
                    Some(c) => (200, to_json(c)),
                    None => not_found("storageclasses.storage.k8s.io", name),
                }
            }
            ["apis", "apps", "v1", "daemonsets"] => list(
                "DaemonSetList",
                "apps/v1",
                rv,
                self.daemon_sets.values().map(to_json).collect(),
            ),
            ["apis", "apps", "v1", "namespaces", ns, "daemonsets"] => {
                let items = self
                    .daemon_sets
                    .iter()
                    .filter(|((dns, _), _)| dns == ns)
                    .map(|(_, d)| to_json(d))
                    .collect();
                list("DaemonSetList", "apps/v1", rv, items)
            }
            _ => return None,
        })
    }
}

impl ApiServer {
    pub fn add_claim(&self, mut c: PersistentVolumeClaim) {
        let mut w = self.world();
        if c.metadata.namespace.is_none() {
            c.metadata.namespace = Some("default".into());
        }
        w.stamp(&mut c.metadata);
        let key = (
            c.metadata.namespace.clone().unwrap(),
            c.metadata.name.clone().unwrap(),
        );
        w.storage.claims.insert(key, c);
    }

    pub fn add_volume(&self, mut v: PersistentVolume) {
        let mut w = self.world();
        w.stamp(&mut v.metadata);
        let name = v.metadata.name.clone().unwrap();
        w.storage.volumes.insert(name, v);
    }

    pub fn add_storage_class(&self, mut c: StorageClass) {
        let mut w = self.world();
        w.stamp(&mut c.metadata);
        let name = c.metadata.name.clone().unwrap();
        w.storage.classes.insert(name, c);
    }

    pub fn add_daemon_set(&self, mut d: DaemonSet) {
        let mut w = self.world();
        if d.metadata.namespace.is_none() {
            d.metadata.namespace = Some("default".into());
        }
        w.stamp(&mut d.metadata);
        let key = (
            d.metadata.namespace.clone().unwrap(),
            d.metadata.name.clone().unwrap(),
        );
        w.storage.daemon_sets.insert(key, d);
    }
}

/// A pod's selectable fields, as kubernetes/kubernetes pkg/registry/core/pod/strategy.go
/// `PodToSelectableFields` (with `AddObjectMetaFieldsSet`) lists them. An unset field is
/// the empty string, so `spec.nodeName=` selects the pods no node is bound to.
fn pod_field(pod: &Pod, key: &str) -> Option<String> {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let s = |v: Option<&String>| v.cloned().unwrap_or_default();
    Some(match key {
        "metadata.name" => s(pod.metadata.name.as_ref()),
        "metadata.namespace" => s(pod.metadata.namespace.as_ref()),
        "spec.nodeName" => s(spec.and_then(|x| x.node_name.as_ref())),
        "spec.restartPolicy" => s(spec.and_then(|x| x.restart_policy.as_ref())),
        "spec.schedulerName" => s(spec.and_then(|x| x.scheduler_name.as_ref())),
        "spec.serviceAccountName" => s(spec.and_then(|x| x.service_account_name.as_ref())),
        "spec.hostNetwork" => spec
            .and_then(|x| x.host_network)
            .unwrap_or(false)
            .to_string(),
        "status.phase" => s(status.and_then(|x| x.phase.as_ref())),
        "status.podIP" => s(status.and_then(|x| x.pod_ip.as_ref())),
        "status.nominatedNodeName" => s(status.and_then(|x| x.nominated_node_name.as_ref())),
        _ => return None,
    })
}

/// One `fieldSelector` term: key, wanted value, and whether it must equal (`=`, `==`)
/// or differ (`!=`), as k8s.io/apimachinery pkg/fields/selector.go parses them.
type FieldTerm = (String, String, bool);

/// Parses a pod list's `fieldSelector`; a field the pod strategy does not list is refused
/// with 400 "field label not supported", as the apiserver does.
fn pod_field_selector(q: Option<&String>) -> Result<Vec<FieldTerm>, (u16, Value)> {
    let mut terms = Vec::new();
    for term in q.into_iter().flat_map(|q| q.split(',')) {
        if term.is_empty() {
            continue;
        }
        let parsed = if let Some((k, v)) = term.split_once("!=") {
            Some((k, v, false))
        } else {
            term.split_once("==")
                .or_else(|| term.split_once('='))
                .map(|(k, v)| (k, v, true))
        };
        let Some((k, v, eq)) = parsed else {
            return Err((
                400,
                status_body(
                    400,
                    "BadRequest",
                    &format!("invalid field selector {term:?}"),
                    None,
                ),
            ));
        };
        if pod_field(&Pod::default(), k).is_none() {
            return Err((
                400,
                status_body(
                    400,
                    "BadRequest",
                    &format!("field label not supported: {k}"),
                    None,
                ),
            ));
        }
        terms.push((k.to_string(), v.to_string(), eq));
    }
    Ok(terms)
}

fn field_matches(terms: &[FieldTerm], pod: &Pod) -> bool {
    terms
        .iter()
        .all(|(k, v, eq)| (pod_field(pod, k).as_deref() == Some(v.as_str())) == *eq)
}
