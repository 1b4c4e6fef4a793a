//! Worker nodes as Docker containers: the client (endpoint, TLS, timeouts), the worker
//! container's specification and the operations on managed workers, and k3d clusters
//! (`k3d`: read from their labels; the labels a k3d pool's workers add). Only containers
//! and volumes labelled `io.k3s-scale.managed=true` and with this pool's
//! `io.k3s-scale.pool` are ever changed; k3d's are only listed. The `Actuator` that starts workers through this is in
//! `run::docker_side`. May use `plan` (names, container states), `state`, `config`.

mod client;
mod hosts;
pub mod k3d;
mod labels;
mod ops;
mod spec;
mod token;

pub use client::{DockerClient, DockerEnv, Endpoint, resolve_endpoint, resolve_host_entry};
pub use hosts::{DockerHosts, Host, PerHost};
pub use labels::{
    LABEL_CPUS, LABEL_HOST, LABEL_INDEX, LABEL_MANAGED, LABEL_MEMORY, LABEL_POOL, LABEL_WORKER,
    NODE_LABEL_HOST, NODE_LABEL_POOL, worker_labels,
};
pub use ops::{ContainerState, ManagedContainer, ManagedVolume, Removed, StartError};
pub use spec::{HostCapacity, VOLUME_TARGET, WorkerSpec, system_reserved_arg, volume_name};
pub use token::{JoinToken, load_token, write_token_file};

use std::fmt;
use std::time::Duration;

#[derive(Debug)]
pub enum DockerError {
    /// The endpoint, TLS files or join token are not usable: fix the config or environment.
    Setup(String),
    /// No answer from the daemon at all (no socket, connection refused, TLS failure).
    Unreachable {
        endpoint: String,
        detail: String,
    },
    /// A host of `docker.hosts` that did not answer this run (`cause`), asked again.
    HostDown {
        host: String,
        cause: String,
    },
    /// The daemon took longer than `docker.timeout` (or the stop grace) to answer.
    Timeout {
        what: String,
        after: Duration,
    },
    ImageMissing {
        image: String,
    },
    NetworkMissing {
        network: String,
    },
    /// A container or volume of that name exists already (ours or someone else's).
    NameConflict {
        name: String,
        kind: &'static str,
    },
    /// Asked to remove something that lacks this pool's labels: refused, untouched.
    NotManaged {
        name: String,
        kind: &'static str,
    },
    /// The daemon refused the request for another reason.
    Refused {
        what: String,
        status: u16,
        message: String,
    },
    /// The daemon's answer could not be read.
    Malformed {
        what: String,
        detail: String,
    },
}

impl DockerError {
    /// Worth trying again on a later run without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DockerError::Unreachable { .. }
                | DockerError::Timeout { .. }
                | DockerError::HostDown { .. }
        ) || matches!(self, DockerError::Refused { status, .. } if *status >= 500)
    }
}

impl fmt::Display for DockerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerError::Setup(m) => write!(f, "Docker client setup: {m}"),
            DockerError::Unreachable { endpoint, detail } => {
                write!(f, "cannot reach the Docker daemon at {endpoint}: {detail}")
            }
            DockerError::HostDown { host, cause } => {
                write!(f, "Docker host {host} is unreachable this run ({cause})")
            }
            DockerError::Timeout { what, after } => write!(
                f,
                "{what}: the Docker daemon did not answer within {}",
                crate::config::units::format_duration(*after)
            ),
            DockerError::ImageMissing { image } => write!(
                f,
                "image {image} is not on the Docker host (k3s-scale never pulls: \
                 `docker pull {image}` first, or fix docker.image)"
            ),
            DockerError::NetworkMissing { network } => write!(
                f,
                "Docker network {network} does not exist (create it, or fix docker.network)"
            ),
            DockerError::NameConflict { name, kind } => write!(
                f,
                "a {kind} named {name} exists already; k3s-scale does not touch it \
                 (remove or rename it, or change docker.name_prefix)"
            ),
            DockerError::NotManaged { name, kind } => write!(
                f,
                "{kind} {name} does not carry this pool's k3s-scale labels; not touching it"
            ),
            DockerError::Refused {
                what,
                status,
                message,
            } => write!(f, "{what}: Docker answered HTTP {status}: {message}"),
            DockerError::Malformed { what, detail } => {
                write!(f, "{what}: unreadable answer from Docker: {detail}")
            }
        }
    }
}

impl std::error::Error for DockerError {}
