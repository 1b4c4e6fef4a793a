//! The words of a move of pods, shared by the `Cluster` trait (`move_pods`) and the mover
//! that carries it out: how pods leave, what the move is allowed, what became of each pod.

use std::time::{Duration, Instant};

/// How pods leave: the Eviction API (honours PDBs), or a plain delete with the pod's grace
/// period (`--disable-eviction`, like kubectl's; PDBs are not consulted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveMode {
    Evict,
    Delete,
}

/// What `Cluster::move_pods` works with.
#[derive(Debug, Clone)]
pub struct MoveOptions {
    pub mode: MoveMode,
    /// Nothing is started or waited on past this.
    pub deadline: Instant,
    /// Cap on each pod's termination grace period.
    pub max_grace: Duration,
    /// Pause before retrying a refused (429) or failed (5xx, timeout) request.
    pub retry_interval: Duration,
    /// API requests in flight at once.
    pub concurrency: usize,
    /// See `DrainOptions::wait_gone`.
    pub wait_gone: bool,
}

/// What became of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Gone from the node (404, or its name now belongs to a new pod).
    Gone,
    /// Evicted (or deleted), but still terminating when the drain stopped.
    Terminating(String),
    /// Never evicted; why.
    Kept(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMove {
    pub pod: String,
    pub fate: Fate,
}

impl PodMove {
    /// The eviction (or delete) was accepted: the pod is leaving.
    pub fn accepted(&self) -> bool {
        !matches!(self.fate, Fate::Kept(_))
    }
}
