//! The Docker side of `Actuator`: starts workers for `evaluate` and `up`. Removal belongs
//! to the Kubernetes side (cordon, drain, delete the Node first): `executor` joins the
//! two, so `remove_worker` here only passes on to the inner actuator it was given.

use crate::config;
use crate::docker::{DockerClient, HostCapacity, JoinToken, WorkerSpec};
use crate::plan::names::worker_number;
use crate::run::report::Report;
use crate::run::{ActionFailure, Actuator, Removal};
use std::rc::Rc;

pub struct DockerActuator {
    client: Rc<DockerClient>,
    cfg: config::Docker,
    token: JoinToken,
    /// Read from the daemon at the first start of the run.
    host: Option<HostCapacity>,
    remover: Box<dyn Actuator>,
}

impl DockerActuator {
    pub fn new(
        client: Rc<DockerClient>,
        cfg: &config::Docker,
        token: JoinToken,
        remover: Box<dyn Actuator>,
    ) -> DockerActuator {
        DockerActuator {
            client,
            cfg: cfg.clone(),
            token,
            host: None,
            remover,
        }
    }

    pub fn client(&self) -> &DockerClient {
        &self.client
    }
}

impl Actuator for DockerActuator {
    fn highest_worker_index(&mut self) -> Result<Option<u64>, ActionFailure> {
        self.client.highest_index().map_err(|e| ActionFailure {
            done: Vec::new(),
            message: format!("cannot list this pool's workers to pick a new name: {e}"),
        })
    }

    fn start_workers(&mut self, names: &[String]) -> Result<(), ActionFailure> {
        let mut done = Vec::new();
        if self.host.is_none() && !WorkerSpec::user_sets_reservation(&self.cfg) {
            // Without the host's capacity the node would offer the whole host: do not start.
            let host = self.client.host_capacity().map_err(|e| ActionFailure {
                done: Vec::new(),
                message: format!("cannot size the workers' allocatable: {e}"),
            })?;
            log::debug!(
                "Docker host: {} CPUs, {} bytes of memory",
                host.cpus,
                host.memory
            );
            self.host = Some(host);
        }
        let spec = WorkerSpec {
            cfg: &self.cfg,
            token: &self.token,
            host: self.host,
        };
        for name in names {
            if let Err(e) = self.client.start_worker(&spec, name, worker_number(name)) {
                let mut message = format!("cannot start worker {name}: {e}");
                if !done.is_empty() {
                    message.push_str(&format!(" (started before it: {})", done.join(", ")));
                }
                return Err(ActionFailure { done, message });
            }
            done.push(name.clone());
        }
        Ok(())
    }

    fn remove_worker(
        &mut self,
        candidates: &[String],
        dry_run: bool,
        report: &mut Report,
    ) -> Result<Removal, ActionFailure> {
        self.remover.remove_worker(candidates, dry_run, report)
    }
}
