//! The run's failure kinds and the documented exit code of each; `main` maps through here.

use crate::config::ConfigError;
use crate::docker::DockerError;
use crate::run::exit::Exit;
use crate::signals::PromError;
use crate::state::StateError;
use crate::state::lock::LockError;
use crate::state::stop::Stop;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Lock(#[from] LockError),
    #[error("{0}")]
    Metrics(#[from] PromError),
    /// A Docker or Kubernetes action failed; the message says which and why.
    #[error("{0}")]
    Action(String),
    #[error("{0}")]
    State(#[from] StateError),
    /// The state could not be saved after an action was carried out: what was done
    /// (workers started, a worker removed, repairs) is named, since "nothing was done"
    /// (exit 6) would be false.
    #[error(
        "{error}, after this run had already acted ({}); the next run finds what \
         exists from Docker and the API",
        .done.join("; ")
    )]
    Unsaved {
        done: Vec<String>,
        #[source]
        error: StateError,
    },
    /// The run was asked to stop (a signal) or ran out of `scaling.run_timeout`; the call
    /// in flight was finished, no other started, and the state saved. `during` says which
    /// step was cut short and what of it was done.
    #[error("{why} during {during}")]
    Stopped { why: Stop, during: String },
    #[error("{0}")]
    Internal(String),
}

impl RunError {
    /// The documented exit this error ends the run with.
    pub fn exit(&self) -> Exit {
        match self {
            RunError::Internal(_) => Exit::Bug,
            RunError::Usage(_) | RunError::Config(_) => Exit::Usage,
            // An unreadable or world-writable credential or CA file is a config problem,
            // not Prometheus being down (still counted as a metrics error).
            RunError::Metrics(PromError::Setup(_)) => Exit::Usage,
            // A lock or state path k3s-scale refuses (a link, a folder others can write)
            // is a config problem too: nothing was done.
            RunError::Lock(LockError::Refused(_)) | RunError::State(StateError::Refused(_)) => {
                Exit::Usage
            }
            RunError::Lock(_) => Exit::Locked,
            RunError::Metrics(_) => Exit::Metrics,
            RunError::Action(_) => Exit::Action,
            RunError::State(_) => Exit::State,
            RunError::Unsaved { .. } => Exit::Unsaved,
            // A deadline is the run's own limit running out, as a drain's timeout is: 5.
            RunError::Stopped {
                why: Stop::Deadline,
                ..
            } => Exit::Action,
            RunError::Stopped { .. } => Exit::Stopped,
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.exit().code()
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

impl From<DockerError> for RunError {
    fn from(e: DockerError) -> Self {
        match e {
            // A config or environment problem: exit 2, like any other config error.
            DockerError::Setup(_) => RunError::Usage(e.to_string()),
            other => RunError::Action(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::files::FileError;
    use crate::docker::StartError;
    use crate::kube::KubeError;
    use crate::run::scale_down::ScaleDownError;
    use std::error::Error;
    use std::path::PathBuf;

    fn io() -> std::io::Error {
        std::io::Error::other("disk on fire")
    }

    fn path() -> PathBuf {
        PathBuf::from("/var/lib/k3s-scale/state.json")
    }

    fn refused() -> FileError {
        FileError::Refused {
            path: path(),
            reason: "it is a folder, not a file".into(),
        }
    }

    fn corrupt() -> StateError {
        StateError::Corrupt(path(), "EOF".into())
    }

    /// The message and each `source()` down the chain: every error that wraps another
    /// hands it out, and the messages stay the documented ones.
    #[test]
    fn wrapping_errors_hand_out_their_source() {
        let hint = "run `k3s-scale state reset` to move it aside and start fresh";
        let cases: Vec<(Box<dyn Error>, String, Vec<&str>)> = vec![
            (
                Box::new(FileError::Io(path(), io())),
                "/var/lib/k3s-scale/state.json: disk on fire".into(),
                vec!["disk on fire"],
            ),
            (
                Box::new(refused()),
                format!("refusing {}: it is a folder, not a file", path().display()),
                vec![],
            ),
            (
                Box::new(ConfigError::Read(path(), io())),
                format!("cannot read config {}: disk on fire", path().display()),
                vec!["disk on fire"],
            ),
            (
                Box::new(LockError::Io(path(), io())),
                format!("cannot open lock file {}: disk on fire", path().display()),
                vec!["disk on fire"],
            ),
            (
                Box::new(LockError::Refused(refused())),
                format!(
                    "lock file: refusing {}: it is a folder, not a file",
                    path().display()
                ),
                vec!["refusing /var/lib/k3s-scale/state.json: it is a folder, not a file"],
            ),
            (
                Box::new(StateError::Read(path(), io())),
                format!("cannot read state {}: disk on fire", path().display()),
                vec!["disk on fire"],
            ),
            (
                Box::new(StateError::Write(path(), io())),
                format!("cannot write state {}: disk on fire", path().display()),
                vec!["disk on fire"],
            ),
            (
                Box::new(StateError::Refused(refused())),
                format!(
                    "state: refusing {}: it is a folder, not a file",
                    path().display()
                ),
                vec!["refusing /var/lib/k3s-scale/state.json: it is a folder, not a file"],
            ),
            (
                Box::new(StartError {
                    cause: DockerError::NetworkMissing {
                        network: "k3s".into(),
                    },
                    left_behind: vec!["volume k3s-worker-3-data".into()],
                }),
                "Docker network k3s does not exist (create it, or fix docker.network); \
                 clean-up failed, left behind: volume k3s-worker-3-data"
                    .into(),
                vec!["Docker network k3s does not exist (create it, or fix docker.network)"],
            ),
            (
                Box::new(ScaleDownError::from(KubeError::Config(
                    "no kubeconfig".into(),
                ))),
                "Kubernetes client: no kubeconfig".into(),
                vec!["Kubernetes client: no kubeconfig"],
            ),
            (
                Box::new(RunError::from(ConfigError::Read(path(), io()))),
                format!("cannot read config {}: disk on fire", path().display()),
                vec![
                    "cannot read config /var/lib/k3s-scale/state.json: disk on fire",
                    "disk on fire",
                ],
            ),
            (
                Box::new(RunError::from(LockError::Held(path(), Some(42)))),
                format!(
                    "another k3s-scale run (PID 42) holds the lock {}",
                    path().display()
                ),
                vec!["another k3s-scale run (PID 42) holds the lock /var/lib/k3s-scale/state.json"],
            ),
            (
                Box::new(RunError::from(PromError::Status(503, "down".into()))),
                "Prometheus answered HTTP 503: down".into(),
                vec!["Prometheus answered HTTP 503: down"],
            ),
            (
                Box::new(RunError::from(corrupt())),
                format!("state {} is corrupt (EOF); {hint}", path().display()),
                vec![
                    "state /var/lib/k3s-scale/state.json is corrupt (EOF); run `k3s-scale state reset` to move it aside and start fresh",
                ],
            ),
            (
                Box::new(RunError::Unsaved {
                    done: vec!["started k3s-worker-3".into(), "removed k3s-worker-1".into()],
                    error: StateError::Write(path(), io()),
                }),
                format!(
                    "cannot write state {}: disk on fire, after this run had already acted \
                     (started k3s-worker-3; removed k3s-worker-1); the next run finds what \
                     exists from Docker and the API",
                    path().display()
                ),
                vec![
                    "cannot write state /var/lib/k3s-scale/state.json: disk on fire",
                    "disk on fire",
                ],
            ),
            // Errors that carry only text have no source.
            (
                Box::new(RunError::Action("docker start failed".into())),
                "docker start failed".into(),
                vec![],
            ),
            (
                Box::new(RunError::Stopped {
                    why: Stop::Deadline,
                    during: "the scale-up (1 of 2 workers started)".into(),
                }),
                "the run's deadline (scaling.run_timeout) passed during the scale-up \
                 (1 of 2 workers started)"
                    .into(),
                vec![],
            ),
        ];
        for (e, message, chain) in cases {
            assert_eq!(e.to_string(), message);
            let mut sources = Vec::new();
            let mut next = e.source();
            while let Some(s) = next {
                sources.push(s.to_string());
                next = s.source();
            }
            assert_eq!(sources, chain, "{message}");
        }
    }

    /// `#[from]` changed nothing of the mapping: the documented codes and kinds.
    #[test]
    fn wrapped_errors_keep_their_exit_codes_and_kinds() {
        let cases: [(RunError, u8, &str); 6] = [
            (ConfigError::Read(path(), io()).into(), 2, "config"),
            (LockError::Refused(refused()).into(), 2, "config"),
            (LockError::Held(path(), None).into(), 3, "lock"),
            (PromError::Setup("ca".into()).into(), 2, "metrics"),
            (StateError::Refused(refused()).into(), 2, "config"),
            (corrupt().into(), 6, "state"),
        ];
        for (e, code, kind) in cases {
            assert_eq!((e.exit_code(), e.kind()), (code, kind), "{e}");
        }
    }
}
