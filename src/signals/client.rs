//! The Prometheus client: the one HTTP query per run (credentials, TLS, timeout, a cap on
//! the answer's size), handing the body to `answer` to read into a `Snapshot`.

use super::answer::{api_error, parse_response};
use super::{MetricsSource, PromError, promql};
use crate::config;
use crate::plan::snapshot::Snapshot;
use std::sync::Arc;
use std::time::Duration;

/// The answer to our query is a few series per worker; 16 MiB covers 5,000 nodes many
/// times over, and a hostile or broken server cannot make us buffer more.
pub const MAX_RESPONSE_BYTES: u64 = 16 << 20;

pub struct PromClient {
    agent: ureq::Agent,
    endpoint: String,
    authorization: Option<String>,
    timeout: Duration,
    query: String,
    /// The signals sent with their default query (the reader fills those in).
    defaulted: Vec<&'static str>,
}

impl PromClient {
    pub fn new(cfg: &config::Prometheus) -> Result<PromClient, PromError> {
        let timeout = cfg.timeout.get();
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &cfg.ca_file {
            let pem = read_config_file(ca, MAX_CA_BYTES)?;
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
        let query = promql::signal_queries(&cfg.queries);
        Ok(PromClient {
            agent,
            endpoint: format!("{}/api/v1/query", cfg.url.trim_end_matches('/')),
            authorization,
            timeout,
            query: promql::combined_query(&query.parts),
            defaulted: query.defaulted,
        })
    }

    pub fn query_text(&self) -> &str {
        &self.query
    }

    /// POSTs a form to `url` with the client's credentials and timeout, and returns the
    /// body of a 2xx answer (at most `limit` bytes); any other status is an error carrying
    /// Prometheus's message, or the body's start.
    fn post(&self, url: &str, form: &[(&str, &str)], limit: u64) -> Result<Vec<u8>, PromError> {
        let mut req = self.agent.post(url);
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        let mut resp = req
            .send_form(form.iter().copied())
            .map_err(|e| self.classify(e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| self.classify(e))?;
        if !(200..300).contains(&status) {
            let detail = api_error(&body).unwrap_or_else(|| {
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
            });
            return Err(PromError::Status(status, detail));
        }
        Ok(body)
    }

    /// One range query (`simulate --from-prometheus`), with the client's credentials,
    /// timeout and size cap; more than `max_series` series is an error.
    pub fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step_secs: u64,
        max_series: usize,
    ) -> Result<Vec<super::range::Series>, PromError> {
        let (start, end, step) = (
            format!("{start:.3}"),
            format!("{end:.3}"),
            step_secs.to_string(),
        );
        let body = self.post(
            &format!("{}_range", self.endpoint),
            &[
                ("query", query),
                ("start", start.as_str()),
                ("end", end.as_str()),
                ("step", step.as_str()),
            ],
            MAX_RESPONSE_BYTES * 4,
        )?;
        super::range::parse_matrix(&body, max_series)
    }
}

/// A credential file is one line.
const MAX_SECRET_BYTES: u64 = 4096;
/// A CA bundle: Debian's whole ca-certificates.crt is about 220 KiB.
const MAX_CA_BYTES: u64 = 4 << 20;

/// A credential or CA file the config names, checked on the file opened (after links):
/// world-writable is refused, since anyone could then answer for Prometheus.
fn read_config_file(path: &std::path::Path, max: u64) -> Result<Vec<u8>, PromError> {
    use config::files::{ReadError, read_checked};
    read_checked(path, max).map_err(|e| {
        PromError::Setup(match e {
            ReadError::Io(e) => format!("cannot read {}: {e}", path.display()),
            ReadError::WorldWritable => config::ConfigError::WorldWritable(path.into()).to_string(),
            ReadError::TooLarge(n) => {
                format!("{} is {n} bytes, over the {max}-byte limit", path.display())
            }
        })
    })
}

fn read_secret(path: &std::path::Path) -> Result<String, PromError> {
    let bytes = read_config_file(path, MAX_SECRET_BYTES)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| PromError::Setup(format!("{} is not UTF-8 text", path.display())))?;
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
        let body = self.post(
            &self.endpoint,
            &[("query", self.query.as_str())],
            MAX_RESPONSE_BYTES,
        )?;
        parse_response(&body, &self.defaulted)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }
}
