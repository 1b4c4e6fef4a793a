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
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// Could not read a credential or CA file named in the config.
    #[error("Prometheus client setup: {0}")]
    Setup(String),
    /// Connection refused, DNS, TLS.
    #[error("cannot reach Prometheus: {0}")]
    Connect(String),
    #[error(
        "Prometheus did not answer within {}",
        crate::config::units::format_duration(*.0)
    )]
    Timeout(Duration),
    #[error("Prometheus answered HTTP {0}: {1}")]
    Status(u16, String),
    /// The body was not a Prometheus query answer we can trust.
    #[error("Prometheus answer is malformed: {0}")]
    Malformed(String),
}

impl PromError {
    /// Worth trying again next run (the server may come back); config problems are not.
    pub fn is_transient(&self) -> bool {
        !matches!(self, PromError::Setup(_))
    }
}

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
