//! The signals, one of the outside systems: the PromQL asked (`promql`), the Prometheus
//! client that sends it once per run (`client`) and the reading of its answer into the
//! plan's `Snapshot` (`answer`). Any failure (connection, timeout, status, malformed body,
//! ambiguous series) is a `PromError`: a failed query is never read as zeros. May use
//! `plan` (the snapshot it fills), `config` and nothing else.

pub mod answer;
pub mod client;
pub mod promql;
pub mod range;

pub use client::PromClient;

use crate::plan::snapshot::Snapshot;
use std::fmt;
use std::time::Duration;

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
                    crate::config::units::format_duration(*d)
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
