//! Higher-level helpers of the ops_* tests, built on tests/support (temp dirs, ports, the
//! Prometheus launcher, HTTP): a Prometheus with the repository's config and rules, the
//! repository's files, a small HTTP server that serves a metrics file for Prometheus to
//! scrape, and sample reports and states.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::http::{Acceptor, http_get};
use crate::support::prom::PromServer;

use k3s_scale::config::Config;
use k3s_scale::plan::decide::{Action, WorkerCounts};
use k3s_scale::run::report::Report;
use k3s_scale::state::State;
use k3s_scale::state::time::Timestamp;

// The shared pieces, under the names the ops suites use; each suite uses part of them.
#[allow(unused_imports)]
pub use crate::support::{TempDir, free_port, unique};

/// Per-request limit for the test's HTTP calls to Prometheus.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read_repo(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A real Prometheus (the one launcher, `support::prom::PromServer`) with an empty TSDB
/// and the test's config and rule files; killed and its folder removed on drop.
pub struct TestPrometheus {
    server: PromServer,
    pub port: u16,
}

impl TestPrometheus {
    /// Starts Prometheus with `config` (YAML) written next to copies of `files`
    /// (name, contents), so a config can refer to rule files by relative path.
    pub fn start(config: &str, files: &[(&str, &str)]) -> TestPrometheus {
        let server = PromServer::start_configured(config, files);
        let port = server.port();
        TestPrometheus { server, port }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn pid(&self) -> u32 {
        self.server.pid().expect("running")
    }

    /// Runs an instant query; returns the whole JSON answer (status may be "error").
    pub fn query(&self, expr: &str) -> serde_json::Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(HTTP_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent
            .post(format!("{}/api/v1/query", self.url()))
            .send_form([("query", expr)])
            .expect("query prometheus");
        let body = resp.body_mut().read_to_string().unwrap();
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(&self.server.addr(), path).expect("GET prometheus");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// Serves the current contents of a shared string as `/metrics` on 127.0.0.1, the way
/// node-exporter serves a textfile; stops on drop.
pub struct MetricsServer {
    pub port: u16,
    pub body: Arc<Mutex<String>>,
    _acceptor: Acceptor,
}

impl MetricsServer {
    pub fn start(initial: String) -> MetricsServer {
        let body = Arc::new(Mutex::new(initial));
        let b = body.clone();
        let acceptor = Acceptor::start(move |mut conn| {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let text = b.lock().unwrap().clone();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        });
        MetricsServer {
            port: acceptor.port,
            body,
            _acceptor: acceptor,
        }
    }

    pub fn set(&self, text: String) {
        *self.body.lock().unwrap() = text;
    }
}

/// A report as a successful run that saw every signal and started two workers writes it.
pub fn sample_report() -> Report {
    let mut r = Report::new(false);
    r.action = Action::ScaleUp;
    r.count = 2;
    r.signals.insert("pending_pods", Some(3.0));
    r.signals.insert("pending_cpu_cores", Some(1.5));
    r.signals
        .insert("pending_memory_bytes", Some(3.0 * 1024.0 * 1024.0 * 1024.0));
    r.signals.insert("cpu", Some(85.5));
    r.signals.insert("memory", Some(40.0));
    r.signals.insert("ready_workers", Some(2.0));
    r.signals.insert("unready_workers", Some(0.0));
    r.workers = WorkerCounts {
        ready: 2,
        unready: 0,
        provisioning: 0,
        total: 2,
    };
    r.started = vec!["k3s-worker-1".into(), "k3s-worker-2".into()];
    r.exit_code = 10;
    r
}

/// A state whose totals are all distinct non-zero numbers, so a mix-up shows.
pub fn sample_state() -> State {
    let mut s = State::fresh();
    let t = &mut s.totals;
    t.runs = 41;
    t.scale_ups = 3;
    t.scale_downs = 2;
    t.workers_added = 5;
    t.workers_removed = 4;
    t.failed_scale_ups = 1;
    t.failed_scale_downs = 6;
    t.evicted_pods = 7;
    t.repairs = 8;
    t.errors.insert("metrics".into(), 9);
    s.last_scale_up = Some(Timestamp::from_secs(1_800_000_000));
    s.last_scale_down = Some(Timestamp::from_secs(1_800_000_100));
    s
}

pub fn default_config() -> Config {
    Config::parse("").unwrap()
}

/// Every `expr` string anywhere in a JSON document (dashboard targets and annotations).
pub fn exprs_in(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m {
                if k == "expr" {
                    if let Some(s) = val.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    exprs_in(val, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| exprs_in(x, out)),
        _ => {}
    }
}

/// Grafana's built-in variables replaced by values Prometheus accepts.
pub fn substitute_grafana_vars(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
}

/// Every `k3s_scale_*` metric name an expression mentions.
pub fn k3s_scale_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("k3s_scale_") {
        let start = i + pos;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_')
        };
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.push(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

/// The metric family names in a text-format document (from its TYPE lines).
pub fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Runs `promtool check metrics` on `text`: (success, output).
pub fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The value of the one sample `name{labels}` in a text-format document.
pub fn sample_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.parse().ok()).flatten()
    })
}
