//! Prometheus: the one HTTP query per run and the reading of its answer into a `Snapshot`.
//! Any failure (connection, timeout, status, malformed body, ambiguous series) is an error:
//! a failed query is never read as zeros.

use crate::config;
use crate::promql;
use crate::snapshot::{NodeSample, Snapshot};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The answer to our query is a few series per worker; 16 MiB covers 5,000 nodes many
/// times over, and a hostile or broken server cannot make us buffer more.
pub const MAX_RESPONSE_BYTES: u64 = 16 << 20;

#[derive(Debug)]
pub enum PromError {
    /// Could not read a credential or CA file named in the config.
    Setup(String),
    /// Connection refused, DNS, TLS.
    Connect(String),
    Timeout(Duration),
    Status(u16, String),
    /// The body was not a Prometheus query answer we can trust.
    Malformed(String),
}

impl PromError {
    /// Worth trying again next run (the server may come back); config problems are not.
    pub fn is_transient(&self) -> bool {
        !matches!(self, PromError::Setup(_))
    }
}

impl fmt::Display for PromError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromError::Setup(m) => write!(f, "Prometheus client setup: {m}"),
            PromError::Connect(m) => write!(f, "cannot reach Prometheus: {m}"),
            PromError::Timeout(d) => {
                write!(
                    f,
                    "Prometheus did not answer within {}",
                    crate::units::format_duration(*d)
                )
            }
            PromError::Status(code, m) => write!(f, "Prometheus answered HTTP {code}: {m}"),
            PromError::Malformed(m) => write!(f, "Prometheus answer is malformed: {m}"),
        }
    }
}

impl std::error::Error for PromError {}

/// Where the snapshot comes from; the real one is `PromClient`.
pub trait MetricsSource {
    fn snapshot(&self) -> Result<Snapshot, PromError>;

    /// The snapshot, with `meanwhile` run while the query is under way (`PromClient` sends
    /// it from a thread of its own). By default one after the other, and `meanwhile` only
    /// when the snapshot was taken.
    fn snapshot_while(&self, meanwhile: &mut dyn FnMut()) -> Result<Snapshot, PromError> {
        let snap = self.snapshot();
        if snap.is_ok() {
            meanwhile();
        }
        snap
    }
}

pub struct PromClient {
    agent: ureq::Agent,
    endpoint: String,
    authorization: Option<String>,
    timeout: Duration,
    query: String,
}

impl PromClient {
    pub fn new(cfg: &config::Prometheus) -> Result<PromClient, PromError> {
        let timeout = cfg.timeout.get();
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| PromError::Setup(format!("cannot read {}: {e}", ca.display())))?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(PromError::Setup(format!(
                    "{} holds no PEM certificate",
                    ca.display()
                )));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("k3s-scale/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .into();
        let authorization = if let Some(path) = &cfg.bearer_token_file {
            Some(format!("Bearer {}", read_secret(path)?))
        } else if let Some(b) = &cfg.basic_auth {
            let password = read_secret(&b.password_file)?;
            Some(format!(
                "Basic {}",
                base64(format!("{}:{password}", b.username).as_bytes())
            ))
        } else {
            None
        };
        let queries = promql::signal_queries(&cfg.queries);
        Ok(PromClient {
            agent,
            endpoint: format!("{}/api/v1/query", cfg.url.trim_end_matches('/')),
            authorization,
            timeout,
            query: promql::combined_query(&queries),
        })
    }

    pub fn query_text(&self) -> &str {
        &self.query
    }
}

fn read_secret(path: &std::path::Path) -> Result<String, PromError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| PromError::Setup(format!("cannot read {}: {e}", path.display())))?;
    config::refuse_world_writable(path, &meta).map_err(|e| PromError::Setup(e.to_string()))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| PromError::Setup(format!("cannot read {}: {e}", path.display())))?;
    let secret = text.trim().to_string();
    if secret.is_empty() || secret.contains(['\r', '\n']) {
        return Err(PromError::Setup(format!(
            "{} must hold one non-empty line",
            path.display()
        )));
    }
    Ok(secret)
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl MetricsSource for PromClient {
    /// The query goes out from a scoped thread while `meanwhile` (a run's Docker and
    /// Kubernetes listings) runs here: each is a round trip to a server, and a dry run
    /// spent most of its time waiting on them one after the other.
    fn snapshot_while(&self, meanwhile: &mut dyn FnMut()) -> Result<Snapshot, PromError> {
        std::thread::scope(|s| {
            let query = s.spawn(|| self.snapshot());
            meanwhile();
            query.join().unwrap_or_else(|_| {
                Err(PromError::Malformed(
                    "the thread reading the answer panicked".into(),
                ))
            })
        })
    }

    fn snapshot(&self) -> Result<Snapshot, PromError> {
        let mut req = self.agent.post(&self.endpoint);
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        let mut resp = req
            .send_form([("query", self.query.as_str())])
            .map_err(|e| self.classify(e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| self.classify(e))?;
        if !(200..300).contains(&status) {
            let detail = api_error(&body).unwrap_or_else(|| {
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
            });
            return Err(PromError::Status(status, detail));
        }
        parse_response(&body)
    }
}

impl PromClient {
    fn classify(&self, e: ureq::Error) -> PromError {
        match e {
            ureq::Error::Timeout(_) => PromError::Timeout(self.timeout),
            ureq::Error::BodyExceedsLimit(n) => {
                PromError::Malformed(format!("body larger than {n} bytes"))
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                PromError::Timeout(self.timeout)
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                PromError::Malformed(format!("body cut off: {io}"))
            }
            other => PromError::Connect(other.to_string()),
        }
    }
}

#[derive(Deserialize)]
struct ApiResponse<'a> {
    status: String,
    #[serde(default, borrow)]
    data: Option<ApiData<'a>>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData<'a> {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(borrow)]
    result: Vec<Series<'a>>,
}

/// One series; only the labels we read are kept, borrowed from the body where possible
/// (a 5,000-node answer has 15,000 of these).
#[derive(Deserialize)]
struct Series<'a> {
    #[serde(borrow)]
    metric: Labels<'a>,
    #[serde(borrow)]
    value: (f64, Cow<'a, str>),
}

#[derive(Deserialize)]
struct Labels<'a> {
    #[serde(default, borrow)]
    signal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    node: Option<Cow<'a, str>>,
    /// `promql::NO_WORKERS_LABEL`: marks "nodes known, none is a worker".
    #[serde(default, borrow)]
    workers: Option<Cow<'a, str>>,
}

fn api_error(body: &[u8]) -> Option<String> {
    let r: ApiResponse = serde_json::from_slice(body).ok()?;
    Some(format!(
        "{}: {}",
        r.error_type.unwrap_or_else(|| "error".into()),
        r.error.unwrap_or_default()
    ))
}

/// Reads a `/api/v1/query` answer into a snapshot. Series are matched by their `signal`
/// label; a scalar signal with more than one series, or a per-node series without a `node`
/// label, is malformed (a wrong override), not something to guess at.
pub fn parse_response(body: &[u8]) -> Result<Snapshot, PromError> {
    let r: ApiResponse =
        serde_json::from_slice(body).map_err(|e| PromError::Malformed(e.to_string()))?;
    if r.status != "success" {
        return Err(PromError::Malformed(format!(
            "status {:?}: {}",
            r.status,
            r.error.unwrap_or_default()
        )));
    }
    let data = r
        .data
        .ok_or_else(|| PromError::Malformed("no `data` in a success answer".into()))?;
    if data.result_type != "vector" {
        return Err(PromError::Malformed(format!(
            "resultType {:?}, expected \"vector\"",
            data.result_type
        )));
    }
    let mut snap = Snapshot::default();
    let mut ready: Option<BTreeMap<String, bool>> = None;
    let mut node_cpu = BTreeMap::new();
    let mut node_mem = BTreeMap::new();
    for s in data.result {
        let Some(signal) = s.metric.signal.as_deref() else {
            return Err(PromError::Malformed(
                "a series without a `signal` label".into(),
            ));
        };
        let value = parse_value(&s.value.1).ok_or_else(|| {
            PromError::Malformed(format!("signal {signal}: value {:?}", s.value.1))
        })?;
        let scalar = |slot: &mut Option<f64>| -> Result<(), PromError> {
            if slot.is_some() {
                return Err(PromError::Malformed(format!(
                    "signal {signal} has more than one series"
                )));
            }
            // NaN/Inf (e.g. 0/0 with no allocatable) say nothing: unknown.
            *slot = value.filter(|v| v.is_finite());
            Ok(())
        };
        match signal {
            "pending_pods" => scalar(&mut snap.pending_pods)?,
            "pending_cpu_cores" => scalar(&mut snap.pending_cpu_cores)?,
            "pending_memory_bytes" => scalar(&mut snap.pending_memory_bytes)?,
            "cpu" => scalar(&mut snap.cpu)?,
            "memory" => scalar(&mut snap.memory)?,
            "node_ready"
                if s.metric.node.is_none()
                    && s.metric.workers.as_deref() == Some(promql::NO_WORKERS_VALUE) =>
            {
                // Nodes are known and none is a worker: zero workers, not unknown.
                ready.get_or_insert_with(BTreeMap::new);
            }
            "node_ready" | "node_cpu" | "node_memory" => {
                let node = s
                    .metric
                    .node
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        PromError::Malformed(format!(
                            "signal {signal}: a series without a `node` label"
                        ))
                    })?;
                let dup = match signal {
                    "node_ready" => ready
                        .get_or_insert_with(BTreeMap::new)
                        .insert(node.clone(), value == Some(1.0))
                        .is_some(),
                    "node_cpu" => node_cpu
                        .insert(node.clone(), value.filter(|v| v.is_finite()))
                        .is_some(),
                    _ => node_mem
                        .insert(node.clone(), value.filter(|v| v.is_finite()))
                        .is_some(),
                };
                if dup {
                    return Err(PromError::Malformed(format!(
                        "signal {signal} has more than one series for node {node}"
                    )));
                }
            }
            other => {
                return Err(PromError::Malformed(format!("unexpected signal {other:?}")));
            }
        }
    }
    snap.nodes = ready.map(|ready| {
        ready
            .into_iter()
            .map(|(name, is_ready)| {
                let sample = NodeSample {
                    ready: is_ready,
                    cpu: node_cpu.get(&name).copied().flatten(),
                    memory: node_mem.get(&name).copied().flatten(),
                };
                (name, sample)
            })
            .collect()
    });
    Ok(snap)
}

/// Prometheus sends sample values as strings; NaN and ±Inf are legal there.
fn parse_value(text: &str) -> Option<Option<f64>> {
    match text {
        "NaN" => Some(Some(f64::NAN)),
        "+Inf" | "Inf" => Some(Some(f64::INFINITY)),
        "-Inf" => Some(Some(f64::NEG_INFINITY)),
        t => t.parse::<f64>().ok().map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(series: &str) -> Vec<u8> {
        format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{series}]}}}}"#)
            .into_bytes()
    }

    fn s(signal: &str, node: Option<&str>, v: &str) -> String {
        let node = node
            .map(|n| format!(r#","node":"{n}""#))
            .unwrap_or_default();
        format!(r#"{{"metric":{{"signal":"{signal}"{node}}},"value":[1700000000.1,"{v}"]}}"#)
    }

    #[test]
    fn reads_every_signal_by_its_label() {
        let series = [
            s("pending_pods", None, "3"),
            s("pending_cpu_cores", None, "1.5"),
            s("pending_memory_bytes", None, "1073741824"),
            s("cpu", None, "55.5"),
            s("memory", None, "40"),
            s("node_ready", Some("w-1"), "1"),
            s("node_ready", Some("w-2"), "0"),
            s("node_cpu", Some("w-1"), "70"),
            s("node_memory", Some("w-1"), "20"),
        ]
        .join(",");
        let snap = parse_response(&body(&series)).unwrap();
        assert_eq!(snap.pending_pods, Some(3.0));
        assert_eq!(snap.pending_cpu_cores, Some(1.5));
        assert_eq!(snap.pending_memory_bytes, Some(1073741824.0));
        assert_eq!(snap.cpu, Some(55.5));
        assert_eq!(snap.memory, Some(40.0));
        let nodes = snap.nodes.unwrap();
        assert!(nodes["w-1"].ready);
        assert!(!nodes["w-2"].ready);
        assert_eq!(nodes["w-1"].utilisation(), Some(70.0));
        assert_eq!(nodes["w-2"].utilisation(), None);
    }

    #[test]
    fn absent_signals_are_unknown_not_zero() {
        let snap = parse_response(&body(&s("pending_pods", None, "0"))).unwrap();
        assert_eq!(snap.pending_pods, Some(0.0));
        assert_eq!(snap.cpu, None);
        assert_eq!(snap.memory, None);
        assert_eq!(snap.nodes, None);
    }

    #[test]
    fn the_no_workers_series_means_zero_workers_and_nothing_else_does() {
        let none = r#"{"metric":{"signal":"node_ready","workers":"none"},"value":[1,"1"]}"#;
        let snap = parse_response(&body(none)).unwrap();
        assert_eq!(snap.nodes, Some(BTreeMap::new()));
        // Without the marker label, a node_ready series without `node` is a wrong query.
        let e = parse_response(&body(&s("node_ready", None, "1"))).unwrap_err();
        assert!(e.to_string().contains("`node` label"), "{e}");
    }

    #[test]
    fn nan_and_inf_are_unknown() {
        let series = [s("cpu", None, "NaN"), s("memory", None, "+Inf")].join(",");
        let snap = parse_response(&body(&series)).unwrap();
        assert_eq!(snap.cpu, None);
        assert_eq!(snap.memory, None);
    }

    #[test]
    fn malformed_answers_are_errors_naming_the_problem() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "expected"),
            (br#"{"status":"error","error":"boom"}"#.to_vec(), "boom"),
            (br#"{"status":"success"}"#.to_vec(), "no `data`"),
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.to_vec(),
                "matrix",
            ),
            (
                body(&[s("cpu", None, "1"), s("cpu", None, "2")].join(",")),
                "more than one",
            ),
            (body(&s("node_cpu", None, "1")), "`node` label"),
            (body(&s("cpu", None, "twelve")), "twelve"),
            (body(&s("bogus", None, "1")), "bogus"),
            (body(r#"{"metric":{},"value":[1,"1"]}"#), "`signal` label"),
            (
                body(r#"{"metric":{"signal":"cpu"},"value":"1"}"#),
                "invalid type",
            ),
        ];
        for (b, needle) in cases {
            let e = parse_response(&b).unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} should mention {needle:?}");
        }
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }
}
