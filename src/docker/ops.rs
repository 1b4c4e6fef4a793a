//! Operations on this pool's workers: list them (containers and volumes), start one (and
//! leave nothing behind when that fails), stop and remove one with its volume, remove a
//! volume. Every object is found through the pool's labels, so nothing else is touched.
//! Containers are never inspected: the answer carries their environment (the join token).

use super::DockerError;
use super::client::DockerClient;
use super::labels::{
    LABEL_CPUS, LABEL_INDEX, LABEL_MEMORY, LABEL_WORKER, is_managed, managed_filter, pool_filter,
};
use super::spec::{HostCapacity, WorkerSpec, volume_name};
use crate::plan::names::worker_number;
use crate::state::time::Timestamp;
use bollard::models::ContainerSummaryStateEnum as S;
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, ListVolumesOptions, RemoveContainerOptions,
    RemoveVolumeOptions, StopContainerOptions,
};
use std::collections::HashMap;

/// The container states are reconcile's (one enum for the domain); this maps Docker's.
pub use crate::plan::reconcile::ContainerState;

fn state_from_docker(s: Option<&S>) -> ContainerState {
    match s {
        Some(S::CREATED) => ContainerState::Created,
        Some(S::RUNNING) => ContainerState::Running,
        Some(S::RESTARTING) => ContainerState::Restarting,
        Some(S::PAUSED) => ContainerState::Paused,
        Some(S::EXITED) => ContainerState::Exited,
        Some(S::DEAD) => ContainerState::Dead,
        Some(S::REMOVING) => ContainerState::Removing,
        _ => ContainerState::Unknown,
    }
}

/// A worker container of this pool.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedContainer {
    pub id: String,
    pub name: String,
    pub index: u64,
    pub state: ContainerState,
    /// When Docker created it; None if Docker did not say.
    pub created: Option<Timestamp>,
}

/// A worker data volume of this pool.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedVolume {
    pub name: String,
    pub worker: String,
    pub index: u64,
}

/// What a removal found and removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Removed {
    pub container: bool,
    pub volume: bool,
}

/// A start that failed: why, and anything its clean-up could not remove.
#[derive(Debug, thiserror::Error)]
#[error("{cause}{}", left_behind_note(.left_behind))]
pub struct StartError {
    #[source]
    pub cause: DockerError,
    pub left_behind: Vec<String>,
}

/// What `StartError` adds to its cause: nothing when the clean-up removed everything.
fn left_behind_note(left_behind: &[String]) -> String {
    if left_behind.is_empty() {
        String::new()
    } else {
        format!("; clean-up failed, left behind: {}", left_behind.join("; "))
    }
}

fn index_of(labels: &HashMap<String, String>, name: &str) -> u64 {
    labels
        .get(LABEL_INDEX)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| worker_number(name))
}

fn status(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::Refused { status, .. } => Some(*status),
        _ => None,
    }
}

impl DockerClient {
    /// This pool's worker containers, in any state.
    pub fn list_workers(&self) -> Result<Vec<ManagedContainer>, DockerError> {
        self.list_containers_of(None)
    }

    fn list_containers_of(
        &self,
        worker: Option<&str>,
    ) -> Result<Vec<ManagedContainer>, DockerError> {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(pool_filter(&self.pool, worker)),
            ..Default::default()
        };
        let api = self.api(self.timeout);
        let list = self.call(
            "listing worker containers",
            self.timeout,
            api.list_containers(Some(opts)),
        )?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                // The daemon filtered already; checking again costs nothing.
                if !is_managed(&labels, &self.pool) {
                    return None;
                }
                let name = c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())?;
                Some(ManagedContainer {
                    id: c.id.unwrap_or_default(),
                    index: index_of(&labels, &name),
                    state: state_from_docker(c.state.as_ref()),
                    created: c.created.filter(|&t| t > 0).map(Timestamp::from_secs),
                    name,
                })
            })
            .collect())
    }

    /// What the k3s-scale workers of every pool on this host take: (count, CPUs, memory)
    /// from the limits their labels record; a container made before those labels existed
    /// counts at `default` (this pool's worker size). Exited and dead containers take
    /// nothing (reconcile removes them).
    pub fn managed_use(&self, default: (f64, u64)) -> Result<(u32, f64, u64), DockerError> {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(managed_filter()),
            ..Default::default()
        };
        let api = self.api(self.timeout);
        let list = self.call(
            "listing k3s-scale workers of every pool",
            self.timeout,
            api.list_containers(Some(opts)),
        )?;
        let mut total = (0u32, 0.0f64, 0u64);
        for c in list {
            if matches!(
                state_from_docker(c.state.as_ref()),
                ContainerState::Exited | ContainerState::Dead | ContainerState::Removing
            ) {
                continue;
            }
            let labels = c.labels.unwrap_or_default();
            let cpus = labels
                .get(LABEL_CPUS)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .unwrap_or(default.0);
            let memory = labels
                .get(LABEL_MEMORY)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default.1);
            total.0 += 1;
            total.1 += cpus;
            total.2 = total.2.saturating_add(memory);
        }
        Ok(total)
    }

    /// This pool's worker data volumes.
    pub fn list_volumes(&self) -> Result<Vec<ManagedVolume>, DockerError> {
        self.list_volumes_of(None)
    }

    fn list_volumes_of(&self, worker: Option<&str>) -> Result<Vec<ManagedVolume>, DockerError> {
        let opts = ListVolumesOptions {
            filters: Some(pool_filter(&self.pool, worker)),
        };
        let api = self.api(self.timeout);
        let list = self.call(
            "listing worker volumes",
            self.timeout,
            api.list_volumes(Some(opts)),
        )?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter(|v| is_managed(&v.labels, &self.pool))
            .map(|v| {
                let worker = v
                    .labels
                    .get(LABEL_WORKER)
                    .cloned()
                    .unwrap_or_else(|| v.name.trim_end_matches("-data").to_string());
                ManagedVolume {
                    index: index_of(&v.labels, &worker),
                    worker,
                    name: v.name,
                }
            })
            .collect())
    }

    /// The highest worker number among this pool's containers and volumes (a volume
    /// outlives a container removed by hand, and its name must not come back either).
    pub fn highest_index(&self) -> Result<Option<u64>, DockerError> {
        let containers = self.list_workers()?;
        let volumes = self.list_volumes()?;
        Ok(containers
            .iter()
            .map(|c| c.index)
            .chain(volumes.iter().map(|v| v.index))
            .max())
    }

    /// The host's CPUs and memory as the daemon reports them.
    pub fn host_capacity(&self) -> Result<HostCapacity, DockerError> {
        let api = self.api(self.timeout);
        let info = self.call(
            "reading the Docker host's capacity",
            self.timeout,
            api.info(),
        )?;
        match (info.ncpu, info.mem_total) {
            (Some(c), Some(m)) if c > 0 && m > 0 => Ok(HostCapacity {
                cpus: c as f64,
                memory: m as u64,
            }),
            _ => Err(DockerError::Malformed {
                what: "reading the Docker host's capacity".into(),
                detail: "/info lacks NCPU or MemTotal".into(),
            }),
        }
    }

    /// Creates and starts one worker: its volume, then its container. On any failure what
    /// this call created is removed again (found by this worker's labels, so a container
    /// that merely has the same name is never touched).
    pub fn start_worker(
        &self,
        spec: &WorkerSpec,
        name: &str,
        index: u64,
    ) -> Result<(), StartError> {
        let fail = |cause| StartError {
            cause,
            left_behind: Vec::new(),
        };
        // Never adopt an existing volume: it would hold another node's identity.
        let vol = volume_name(name);
        let api = self.api(self.timeout);
        match self.call(
            &format!("checking volume {vol}"),
            self.timeout,
            api.inspect_volume(&vol),
        ) {
            Ok(_) => {
                return Err(fail(DockerError::NameConflict {
                    name: vol,
                    kind: "volume",
                }));
            }
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => return Err(fail(e)),
        }
        match self.create_and_start(spec, name, index) {
            Ok(()) => {
                log::info!("started worker {name}");
                Ok(())
            }
            Err(cause) => {
                log::warn!("worker {name} did not start ({cause}); removing what was created");
                let left_behind = self.discard(name);
                Err(StartError { cause, left_behind })
            }
        }
    }

    fn create_and_start(
        &self,
        spec: &WorkerSpec,
        name: &str,
        index: u64,
    ) -> Result<(), DockerError> {
        let api = self.api(self.timeout);
        let vol = volume_name(name);
        self.call(
            &format!("creating volume {vol}"),
            self.timeout,
            api.create_volume(spec.volume(name, index)),
        )?;
        let opts = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let image = &spec.cfg.image;
        let network = &spec.cfg.network;
        let created = self.call(
            &format!("creating container {name}"),
            self.timeout,
            api.create_container(Some(opts), spec.container(name, index)),
        );
        let created = match created {
            Err(e) => return Err(refine(e, name, image, network)),
            Ok(c) => c,
        };
        for w in created.warnings {
            log::warn!("Docker, creating {name}: {w}");
        }
        self.call(
            &format!("starting container {name}"),
            self.timeout,
            api.start_container(name, None),
        )
        .map_err(|e| refine(e, name, image, network))
    }

    /// Removes, without grace, this worker's container and volume if they exist; returns
    /// what could not be removed.
    fn discard(&self, name: &str) -> Vec<String> {
        let mut left = Vec::new();
        match self.list_containers_of(Some(name)) {
            Ok(list) => {
                for c in list {
                    if let Err(e) = self.remove_container(&c.id, true) {
                        left.push(format!("container {name} ({e})"));
                    }
                }
            }
            Err(e) => left.push(format!("container {name}, if created ({e})")),
        }
        match self.list_volumes_of(Some(name)) {
            Ok(list) => {
                for v in list {
                    if let Err(e) = self.delete_volume(&v.name) {
                        left.push(format!("volume {} ({e})", v.name));
                    }
                }
            }
            Err(e) => left.push(format!("volume {}, if created ({e})", volume_name(name))),
        }
        for l in &left {
            log::error!("could not clean up after worker {name}: {l}");
        }
        left
    }

    /// Stops a worker's container: its processes get `docker.stop_timeout` to exit. A
    /// stopped container stays stopped under the restart policy unless-stopped (Docker
    /// records the stop as manual), so its k3s agent cannot come back and register its
    /// Node again. False when there was no container; an already stopped one is fine.
    pub fn stop_worker(&self, name: &str) -> Result<bool, DockerError> {
        let mut found = false;
        for c in self.list_containers_of(Some(name))? {
            let grace = self.stop_timeout;
            let limit = self.timeout + grace;
            let api = self.api(limit);
            let opts = StopContainerOptions {
                t: Some(grace.as_secs().min(i32::MAX as u64) as i32),
                signal: None,
            };
            match self.call(
                &format!("stopping worker {name}"),
                limit,
                api.stop_container(&c.id, Some(opts)),
            ) {
                Ok(()) => found = true,
                Err(e) if status(&e) == Some(404) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// Stops a worker (`stop_worker`), then removes its container and its volume. Missing
    /// pieces are fine: the result says what was there.
    pub fn remove_worker(&self, name: &str) -> Result<Removed, DockerError> {
        let mut removed = Removed::default();
        self.stop_worker(name)?;
        for c in self.list_containers_of(Some(name))? {
            // force: a container restarting right now cannot be removed otherwise.
            self.remove_container(&c.id, true)?;
            removed.container = true;
        }
        for v in self.list_volumes_of(Some(name))? {
            removed.volume |= self.delete_volume(&v.name)?;
        }
        log::info!(
            "removed worker {name} (container: {}, volume: {})",
            removed.container,
            removed.volume
        );
        Ok(removed)
    }

    /// Removes a volume of this pool; refuses one without the pool's labels. False when
    /// there was no such volume.
    pub fn remove_volume(&self, name: &str) -> Result<bool, DockerError> {
        let api = self.api(self.timeout);
        match self.call(
            &format!("checking volume {name}"),
            self.timeout,
            api.inspect_volume(name),
        ) {
            Ok(v) if is_managed(&v.labels, &self.pool) => self.delete_volume(name),
            Ok(_) => Err(DockerError::NotManaged {
                name: name.to_string(),
                kind: "volume",
            }),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn remove_container(&self, id: &str, force: bool) -> Result<(), DockerError> {
        let api = self.api(self.timeout);
        let opts = RemoveContainerOptions {
            force,
            ..Default::default()
        };
        match self.call(
            "removing a worker container",
            self.timeout,
            api.remove_container(id, Some(opts)),
        ) {
            Err(e) if status(&e) != Some(404) => Err(e),
            _ => Ok(()),
        }
    }

    fn delete_volume(&self, name: &str) -> Result<bool, DockerError> {
        let api = self.api(self.timeout);
        match self.call(
            &format!("removing volume {name}"),
            self.timeout,
            api.remove_volume(name, None::<RemoveVolumeOptions>),
        ) {
            Ok(()) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Turns the daemon's 404s and 409s into the failure they stand for.
fn refine(e: DockerError, name: &str, image: &str, network: &str) -> DockerError {
    match &e {
        DockerError::Refused {
            status: 409,
            message,
            ..
        } if message.contains("already in use") || message.contains("Conflict") => {
            DockerError::NameConflict {
                name: name.to_string(),
                kind: "container",
            }
        }
        DockerError::Refused {
            status: 404,
            message,
            ..
        } => {
            let m = message.to_ascii_lowercase();
            if m.contains("network") {
                DockerError::NetworkMissing {
                    network: network.to_string(),
                }
            } else if m.contains("image") {
                DockerError::ImageMissing {
                    image: image.to_string(),
                }
            } else {
                e
            }
        }
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, message: &str) -> DockerError {
        DockerError::Refused {
            what: "x".into(),
            status,
            message: message.into(),
        }
    }

    #[test]
    fn daemon_refusals_become_named_failures() {
        let e = refine(
            refused(404, "No such image: rancher/k3s:v9"),
            "w-1",
            "rancher/k3s:v9",
            "k3s",
        );
        assert!(matches!(e, DockerError::ImageMissing { .. }), "{e:?}");
        let e = refine(refused(404, "network k3s not found"), "w-1", "i", "k3s");
        assert!(matches!(e, DockerError::NetworkMissing { .. }), "{e:?}");
        let e = refine(
            refused(
                409,
                "Conflict. The container name \"/w-1\" is already in use by container \"ab\".",
            ),
            "w-1",
            "i",
            "k3s",
        );
        assert!(
            matches!(
                e,
                DockerError::NameConflict {
                    kind: "container",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = refine(refused(500, "OCI runtime create failed"), "w-1", "i", "k3s");
        assert!(
            matches!(e, DockerError::Refused { status: 500, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn the_index_comes_from_the_label_else_the_name() {
        let labels = HashMap::from([(LABEL_INDEX.to_string(), "12".to_string())]);
        assert_eq!(index_of(&labels, "w-3"), 12);
        assert_eq!(index_of(&HashMap::new(), "w-3"), 3);
    }
}
