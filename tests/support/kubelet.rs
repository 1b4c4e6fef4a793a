//! A kubelet stand-in for the scenario tests, the way KWOK fakes kubelets: a thread that
//! watches the real Docker engine for running managed containers of one pool and, for
//! each new one, registers a Ready Node in the API stand-in (name = container name,
//! labels from the container's `--node-label` agent flags, allocatable = the worker size,
//! allocatable pods = its `--kubelet-arg=max-pods=N`, else the kubelet's 110)
//! and the k3s node-password secret, as a joining k3s agent would. When a registered
//! worker's container stops running, its Node's Ready condition turns Unknown, as the node
//! lifecycle controller does once the kubelet stops posting status (after 40 s in a real
//! cluster; at once here). It can hold back (pause: it does nothing), join late (delay) or
//! never join (per worker). It removes nothing by itself. A Node deleted while its
//! container runs is registered again (with its password secret) on the next poll, as a
//! k3s agent does: "nodes will automatically join the cluster on startup - the first time,
//! or after being deleted; stop the service before deleting the node" (k3s maintainers,
//! k3s-io/k3s#5404; a deleted NotReady node came back within ~30 s in #945). A plain
//! kubelet does not re-register (kubernetes#71398); `no_rejoin` simulates that.

#![allow(dead_code)]

use crate::support::apiserver::ApiServer;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the Docker engine is listed: a join is seen within this (a list over the
/// socket takes ~2-5 ms, so this costs little).
const POLL: Duration = Duration::from_millis(25);
/// Limit on one Docker list call: a stuck daemon shows as an error, not a hung thread.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `wait_joined` and `settle` wait before failing the test.
const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// What a kubelet reports: the node's allocatable (the worker container's size).
#[derive(Clone, Debug)]
pub struct NodeSize {
    pub cpu_millis: u32,
    pub memory: u64,
}

#[derive(Default)]
struct Control {
    paused: bool,
    delay: Duration,
    never: BTreeSet<String>,
    /// Containers seen running, by ID: (name, first seen, registered).
    seen: BTreeMap<String, (String, Instant, bool)>,
    /// Registered workers whose container is not running: their Node went Unknown.
    lost: BTreeSet<String>,
    /// Nodes registered, in order.
    joined: Vec<String>,
    /// A plain kubelet: a deleted Node is not registered again.
    no_rejoin: bool,
    /// Nodes registered again after they were deleted while their container ran.
    rejoined: Vec<String>,
    /// Completed polls (for `settle`).
    polls: u64,
    last_error: Option<String>,
}

struct Inner {
    stop: AtomicBool,
    control: Mutex<Control>,
    changed: Condvar,
}

/// The running stand-in; dropping it stops the thread (nothing it registered is removed).
pub struct Kubelet {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl Kubelet {
    /// Starts watching `socket` (the Docker daemon itself, not the test's proxy, so the
    /// proxy's log holds only k3s-scale's requests) for containers of `pool`.
    pub fn start(api: Arc<ApiServer>, socket: &Path, pool: &str, size: NodeSize) -> Kubelet {
        let inner = Arc::new(Inner {
            stop: AtomicBool::new(false),
            control: Mutex::new(Control::default()),
            changed: Condvar::new(),
        });
        let (inner2, socket, pool) = (inner.clone(), socket.to_path_buf(), pool.to_string());
        let thread = std::thread::spawn(move || {
            while !inner2.stop.load(Ordering::SeqCst) {
                let listed = list_running(&socket, &pool);
                {
                    let mut c = inner2.control.lock().unwrap();
                    match listed {
                        Ok(containers) => {
                            c.last_error = None;
                            register_new(&mut c, &containers, &api, &size, &socket);
                        }
                        Err(e) => c.last_error = Some(e),
                    }
                    c.polls += 1;
                }
                inner2.changed.notify_all();
                std::thread::sleep(POLL);
            }
        });
        Kubelet {
            inner,
            thread: Some(thread),
        }
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.inner.control.lock().unwrap()
    }

    /// Holds back every join until `resume` (containers are still noted when first seen).
    pub fn pause(&self) {
        self.control().paused = true;
    }

    pub fn resume(&self) {
        self.control().paused = false;
    }

    /// New workers join this long after they are first seen running.
    pub fn set_delay(&self, d: Duration) {
        self.control().delay = d;
    }

    /// This worker never joins (a k3s agent that cannot reach the server).
    pub fn never(&self, name: &str) {
        self.control().never.insert(name.to_string());
    }

    /// Behave like a plain kubelet (kubernetes#71398): a Node deleted while its container
    /// runs stays deleted.
    pub fn no_rejoin(&self) {
        self.control().no_rejoin = true;
    }

    /// Nodes registered again after a delete while their container ran, in order.
    pub fn rejoined(&self) -> Vec<String> {
        self.control().rejoined.clone()
    }

    /// Nodes registered so far, in order.
    pub fn joined(&self) -> Vec<String> {
        self.control().joined.clone()
    }

    /// Waits until every one of `names` has a Node registered.
    pub fn wait_joined(&self, names: &[String]) {
        self.wait_for(
            |c| names.iter().all(|n| c.joined.contains(n)),
            &format!("{names:?} to join"),
        );
    }

    /// Waits until two more polls have completed: whatever runs now has been seen, and
    /// joined unless paused, delayed or never.
    pub fn settle(&self) {
        let start = self.control().polls;
        self.wait_for(|c| c.polls >= start + 2, "two kubelet polls");
    }

    fn wait_for(&self, done: impl Fn(&Control) -> bool, what: &str) {
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut c = self.control();
        while !done(&c) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "kubelet stand-in: waited {WAIT_LIMIT:?} for {what}; joined {:?}, seen {:?}, \
                 last Docker error {:?}",
                c.joined,
                c.seen.values().map(|s| &s.0).collect::<Vec<_>>(),
                c.last_error
            );
            c = self.inner.changed.wait_timeout(c, left).unwrap().0;
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running managed container of the pool: ID, name and the node labels its agent
/// command asks for.
struct Running {
    id: String,
    name: String,
    labels: BTreeMap<String, String>,
    /// allocatable.pods: `--kubelet-arg=max-pods=N` of its command, else 110.
    max_pods: u32,
}

fn register_new(
    c: &mut Control,
    containers: &[Running],
    api: &ApiServer,
    size: &NodeSize,
    socket: &Path,
) {
    let now = Instant::now();
    for r in containers {
        c.seen
            .entry(r.id.clone())
            .or_insert_with(|| (r.name.clone(), now, false));
    }
    if c.paused {
        return;
    }
    let running: BTreeSet<&str> = containers.iter().map(|r| r.id.as_str()).collect();
    let registered: Vec<(String, bool)> = c
        .seen
        .iter()
        .filter(|(_, (_, _, reg))| *reg)
        .map(|(id, (name, _, _))| (name.clone(), running.contains(id.as_str())))
        .collect();
    for (name, up) in registered {
        // The listing may be a few ms old: a container stopped since (its agent dead)
        // registers nothing, so it is looked at again first.
        let running_now = || {
            containers.iter().find(|r| r.name == name).is_some_and(|r| {
                docker_get(socket, &format!("/containers/{}/json", r.id))
                    .is_ok_and(|v| v["State"]["Running"] == true)
            })
        };
        if up && !c.no_rejoin && api.node(&name).is_none() && running_now() {
            // The agent runs on and its Node is gone: it registers again (module doc).
            let (labels, max_pods) = containers
                .iter()
                .find(|r| r.name == name)
                .map(|r| (r.labels.clone(), r.max_pods))
                .unwrap_or((BTreeMap::new(), DEFAULT_MAX_PODS));
            api.add_node(node(&name, &labels, max_pods, size));
            api.add_secret("kube-system", &format!("{name}.node-password.k3s"));
            c.lost.remove(&name);
            c.rejoined.push(name.clone());
            continue;
        }
        let status = if up { "True" } else { "Unknown" };
        let changed = if up {
            c.lost.remove(&name)
        } else {
            c.lost.insert(name.clone())
        };
        if changed {
            set_ready(api, &name, status);
        }
    }
    for r in containers {
        let (delay, never) = (c.delay, c.never.contains(&r.name));
        let Some(entry) = c.seen.get_mut(&r.id) else {
            continue;
        };
        if entry.2 || never || now.duration_since(entry.1) < delay {
            continue;
        }
        entry.2 = true;
        api.add_node(node(&r.name, &r.labels, r.max_pods, size));
        api.add_secret("kube-system", &format!("{}.node-password.k3s", r.name));
        c.joined.push(r.name.clone());
    }
}

/// Sets the Node's Ready condition (if the Node is still there).
fn set_ready(api: &ApiServer, name: &str, status: &str) {
    let Some(mut node) = api.node(name) else {
        return;
    };
    let reason = if status == "True" {
        "KubeletReady"
    } else {
        "NodeStatusUnknown"
    };
    if let Some(conds) = node.status.as_mut().and_then(|s| s.conditions.as_mut()) {
        for cond in conds.iter_mut().filter(|x| x.type_ == "Ready") {
            cond.status = status.to_string();
            cond.reason = Some(reason.to_string());
        }
    }
    api.add_node(node);
}

/// The kubelet's `--max-pods` default.
const DEFAULT_MAX_PODS: u32 = 110;

/// The Node a k3s agent registers: Ready, its labels, the worker's allocatable.
fn node(
    name: &str,
    labels: &BTreeMap<String, String>,
    max_pods: u32,
    size: &NodeSize,
) -> k8s_openapi::api::core::v1::Node {
    let mut all = labels.clone();
    all.insert("kubernetes.io/hostname".into(), name.into());
    all.insert("kubernetes.io/os".into(), "linux".into());
    let resources = json!({
        "cpu": format!("{}m", size.cpu_millis),
        "memory": size.memory.to_string(),
        "pods": max_pods.to_string(),
    });
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": all},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "allocatable": resources,
            "capacity": resources,
        },
    }))
    .expect("a valid Node")
}

/// `--node-label=k=v` and `--node-label k=v` flags of an agent command line.
fn node_labels(command: &str) -> BTreeMap<String, String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut out = BTreeMap::new();
    for (i, w) in words.iter().enumerate() {
        let value = match w.strip_prefix("--node-label=") {
            Some(v) => Some(v),
            None if *w == "--node-label" => words.get(i + 1).copied(),
            None => None,
        };
        if let Some((k, v)) = value.and_then(|v| v.split_once('=')) {
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// `--kubelet-arg=max-pods=N` (or `--kubelet-arg max-pods=N`) of an agent command line,
/// else the kubelet's default.
fn max_pods(command: &str) -> u32 {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut out = DEFAULT_MAX_PODS;
    for (i, w) in words.iter().enumerate() {
        let value = match w.strip_prefix("--kubelet-arg=") {
            Some(v) => Some(v),
            None if *w == "--kubelet-arg" => words.get(i + 1).copied(),
            None => None,
        };
        if let Some(n) = value
            .and_then(|v| v.trim_start_matches("--").strip_prefix("max-pods="))
            .and_then(|n| n.parse().ok())
        {
            out = n;
        }
    }
    out
}

/// Running managed containers of `pool`, listed over the Docker socket.
fn list_running(socket: &Path, pool: &str) -> Result<Vec<Running>, String> {
    let filters = json!({
        "label": ["io.k3s-scale.managed=true", format!("io.k3s-scale.pool={pool}")],
        "status": ["running"],
    });
    let path = format!(
        "/containers/json?filters={}",
        percent_encode(&filters.to_string())
    );
    let list = docker_get(socket, &path)?;
    let items = list
        .as_array()
        .ok_or("Docker's container list is not an array")?;
    Ok(items
        .iter()
        .filter_map(|c| {
            let name = c["Names"][0].as_str()?.trim_start_matches('/').to_string();
            Some(Running {
                id: c["Id"].as_str()?.to_string(),
                labels: node_labels(c["Command"].as_str().unwrap_or("")),
                max_pods: max_pods(c["Command"].as_str().unwrap_or("")),
                name,
            })
        })
        .collect())
}

/// One GET on the Docker API over its unix socket (HTTP/1.0: the answer ends with the
/// connection, never chunked).
pub fn docker_get(socket: &Path, path: &str) -> Result<Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("connect {socket:?}: {e}"))?;
    s.set_read_timeout(Some(DOCKER_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(DOCKER_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP head")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
    }
    serde_json::from_str(body).map_err(|e| format!("GET {path}: {e}"))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_labels_from_agent_flags() {
        let l = super::node_labels(
            "/bin/busybox sh -c 'x' k3s agent --node-label=a=1 --node-label b=2 --other=c=3",
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l["a"], "1");
        assert_eq!(l["b"], "2");
    }
}
