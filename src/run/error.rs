//! The run's failure kinds and the documented exit code of each; `main` maps through here.

use crate::config::ConfigError;
use crate::docker::DockerError;
use crate::signals::PromError;
use crate::state::StateError;
use crate::state::lock::LockError;
use crate::state::stop::Stop;
use std::fmt;

#[derive(Debug)]
pub enum RunError {
    Usage(String),
    Config(ConfigError),
    Lock(LockError),
    Metrics(PromError),
    /// A Docker or Kubernetes action failed; the message says which and why.
    Action(String),
    State(StateError),
    /// The state could not be saved after an action was carried out: what was done
    /// (workers started, a worker removed, repairs) is named, since "nothing was done"
    /// (exit 6) would be false.
    Unsaved {
        done: Vec<String>,
        error: StateError,
    },
    /// The run was asked to stop (a signal) or ran out of `scaling.run_timeout`; the call
    /// in flight was finished, no other started, and the state saved. `during` says which
    /// step was cut short and what of it was done.
    Stopped {
        why: Stop,
        during: String,
    },
    Internal(String),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Internal(_) => 1,
            RunError::Usage(_) | RunError::Config(_) => 2,
            // An unreadable or world-writable credential or CA file is a config problem,
            // not Prometheus being down (still counted as a metrics error).
            RunError::Metrics(PromError::Setup(_)) => 2,
            // A lock or state path k3s-scale refuses (a link, a folder others can write)
            // is a config problem too: nothing was done.
            RunError::Lock(LockError::Refused(_)) | RunError::State(StateError::Refused(_)) => 2,
            RunError::Lock(_) => 3,
            RunError::Metrics(_) => 4,
            RunError::Action(_) => 5,
            RunError::State(_) => 6,
            RunError::Unsaved { .. } => 7,
            // A deadline is the run's own limit running out, as a drain's timeout is: 5.
            RunError::Stopped {
                why: Stop::Deadline,
                ..
            } => 5,
            RunError::Stopped { .. } => 8,
        }
    }

    /// The kind as counted in `k3s_scale_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::Internal(_) => "internal",
            RunError::Usage(_) => "usage",
            RunError::Config(_)
            | RunError::Lock(LockError::Refused(_))
            | RunError::State(StateError::Refused(_)) => "config",
            RunError::Lock(_) => "lock",
            RunError::Metrics(_) => "metrics",
            RunError::Action(_) => "action",
            RunError::State(_) | RunError::Unsaved { .. } => "state",
            RunError::Stopped {
                why: Stop::Deadline,
                ..
            } => "timeout",
            RunError::Stopped { .. } => "stopped",
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Usage(m) | RunError::Action(m) | RunError::Internal(m) => f.write_str(m),
            RunError::Config(e) => e.fmt(f),
            RunError::Lock(e) => e.fmt(f),
            RunError::Metrics(e) => e.fmt(f),
            RunError::State(e) => e.fmt(f),
            RunError::Unsaved { done, error } => write!(
                f,
                "{error}, after this run had already acted ({}); the next run finds what \
                 exists from Docker and the API",
                done.join("; ")
            ),
            RunError::Stopped { why, during } => write!(f, "{why} during {during}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<ConfigError> for RunError {
    fn from(e: ConfigError) -> Self {
        RunError::Config(e)
    }
}
impl From<LockError> for RunError {
    fn from(e: LockError) -> Self {
        RunError::Lock(e)
    }
}
impl From<PromError> for RunError {
    fn from(e: PromError) -> Self {
        RunError::Metrics(e)
    }
}
impl From<StateError> for RunError {
    fn from(e: StateError) -> Self {
        RunError::State(e)
    }
}

impl From<DockerError> for RunError {
    fn from(e: DockerError) -> Self {
        match e {
            // A config or environment problem: exit 2, like any other config error.
            DockerError::Setup(_) => RunError::Usage(e.to_string()),
            other => RunError::Action(other.to_string()),
        }
    }
}
