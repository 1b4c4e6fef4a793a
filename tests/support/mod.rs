//! The one test support tree of every test binary: unique names, per-test temp dirs, free
//! loopback ports, the built binary (path and clean environment), a child guard; `http`
//! the one HTTP reader, TCP acceptor and byte pipe, `prom` the real-Prometheus launcher and
//! harness, `apiserver` the Kubernetes API stand-in (a simulator), `objects` Kubernetes
//! object builders and `containers` an in-memory `WorkerContainers`. `docker.rs` (the
//! Docker harness and its one proxy), `dockerd.rs`, `kubelet.rs` and `scenario.rs` are
//! included by path where a suite needs them; tests/ops_support and
//! tests/hardening_support build their higher-level helpers on this tree.
//! Each suite uses part of it, so unused items are expected here.
#![allow(dead_code)]

pub mod apiserver;
pub mod containers;
pub mod http;
pub mod objects;
pub mod prom;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A value unique to this process and call: for temp dir names, labels, worker names.
pub fn unique(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(&format!("k3s-scale-test-{tag}")));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A loopback port that was free a moment ago (the OS picks it). Whoever binds it next
/// may lose a race with another process; callers that start servers retry on failure.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The built `k3s-scale` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_k3s-scale");

/// The built binary with an environment that cannot leak into the run: no config from
/// $K3S_SCALE_CONFIG, no RUST_LOG, no kubeconfig, Docker host or token from the caller.
pub fn bin() -> Command {
    let mut c = Command::new(BIN);
    for v in [
        "K3S_SCALE_CONFIG",
        "RUST_LOG",
        "KUBECONFIG",
        "DOCKER_HOST",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "K3S_TOKEN",
    ] {
        c.env_remove(v);
    }
    c
}

/// `bin()` run in `cwd` (no config from the working directory either).
pub fn k3s_scale(cwd: &Path) -> Command {
    let mut c = bin();
    c.current_dir(cwd);
    c
}

/// A child process killed (SIGKILL, by PID) and reaped if the test ends first.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn new(c: Child) -> ChildGuard {
        ChildGuard(Some(c))
    }
    pub fn pid(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }
    /// kill -9 and reap; the exit status says whether it had ended already.
    pub fn kill9(&mut self) -> std::process::ExitStatus {
        let mut c = self.0.take().expect("running");
        let _ = c.kill();
        c.wait().expect("reap")
    }
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.0.take().expect("running").wait().expect("reap")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a finished run left: exit code and its output as text.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(o: Output) -> Run {
        Run {
            code: o.status.code().expect("exited, not killed by a signal"),
            stdout: String::from_utf8(o.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(o.stderr).expect("stderr is UTF-8"),
        }
    }

    /// stdout as the one JSON object `--output json` prints.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {self:?}"))
    }
}

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
