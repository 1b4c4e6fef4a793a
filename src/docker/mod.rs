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

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The endpoint, TLS files or join token are not usable: fix the config or environment.
    #[error("Docker client setup: {0}")]
    Setup(String),
    /// No answer from the daemon at all (no socket, connection refused, TLS failure).
    #[error("cannot reach the Docker daemon at {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    /// A host of `docker.hosts` that did not answer this run (`cause`), asked again.
    #[error("Docker host {host} is unreachable this run ({cause})")]
    HostDown { host: String, cause: String },
    /// The daemon took longer than `docker.timeout` (or the stop grace) to answer.
    #[error(
        "{what}: the Docker daemon did not answer within {}",
        crate::config::units::format_duration(*after)
    )]
    Timeout { what: String, after: Duration },
    #[error(
        "image {image} is not on the Docker host (k3s-scale never pulls: \
         `docker pull {image}` first, or fix docker.image)"
    )]
    ImageMissing { image: String },
    #[error("Docker network {network} does not exist (create it, or fix docker.network)")]
    NetworkMissing { network: String },
    /// A container or volume of that name exists already (ours or someone else's).
    #[error(
        "a {kind} named {name} exists already; k3s-scale does not touch it \
         (remove or rename it, or change docker.name_prefix)"
    )]
    NameConflict { name: String, kind: &'static str },
    /// Asked to remove something that lacks this pool's labels: refused, untouched.
    #[error("{kind} {name} does not carry this pool's k3s-scale labels; not touching it")]
    NotManaged { name: String, kind: &'static str },
    /// The daemon refused the request for another reason.
    #[error("{what}: Docker answered HTTP {status}: {message}")]
    Refused {
        what: String,
        status: u16,
        message: String,
    },
    /// The daemon's answer could not be read.
    #[error("{what}: unreadable answer from Docker: {detail}")]
    Malformed { what: String, detail: String },
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
