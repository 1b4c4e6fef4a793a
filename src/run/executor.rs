//! What carries out a run's plan on the real systems: Docker starts and removes worker
//! containers, Kubernetes cordons, drains and deletes Nodes. Joins the two into the one
//! `Actuator` that `evaluate`, `up` and `status` use, and repairs drift.

use crate::config::Config;
use crate::docker::{DockerEnv, DockerHosts, JoinToken, NODE_LABEL_HOST, NODE_LABEL_POOL};
use crate::kube::events::Notice;
use crate::kube::mover::MoveMode;
use crate::kube::{Cluster, KubeCluster, is_ready};
use crate::plan::cluster::ClusterModel;
use crate::plan::model::{ClusterFacts, Node as ModelNode};
use crate::plan::reconcile::{Repair, WorkerContainer, WorkerNode};
use crate::plan::snapshot::Snapshot;
use crate::plan::worker_hosts::Placement;
use crate::run::docker_side::DockerActuator;
use crate::run::error::RunError;
use crate::run::report::{Report, Unremovable};
use crate::run::scale_down::{ContainerError, ScaleDown, WorkerContainers};
use crate::run::{ActionFailure, Actuator, HostSeen, IndexSeen, Observed, PlanOnly, Removal};
use crate::state::PostedEvent;
use crate::state::time::Timestamp;
use std::rc::Rc;

/// The container side of scale-down, on the pool's Docker hosts.
pub struct DockerContainers(pub Rc<DockerHosts>);

impl WorkerContainers for DockerContainers {
    fn is_managed(&self, worker: &str) -> Result<bool, ContainerError> {
        Ok(self.0.locate(worker)?.is_some())
    }

    fn stop(&mut self, worker: &str) -> Result<(), ContainerError> {
        self.0.stop_worker(worker)?;
        Ok(())
    }

    fn remove(&mut self, worker: &str) -> Result<(), ContainerError> {
        self.0.remove_worker(worker)?;
        Ok(())
    }
}

pub struct Executor {
    docker: Rc<DockerHosts>,
    cluster: Rc<KubeCluster>,
    /// Docker's scale-up, or `PlanOnly` in a dry run (which never starts anything and so
    /// needs no join token).
    up: Box<dyn Actuator>,
    down: ScaleDown,
    pool: String,
    /// A new worker as the config describes it (labels, taints), for the DaemonSets'
    /// overhead when no Ready worker of the pool is there to copy.
    config_template: ModelNode,
    cfg: crate::config::Docker,
    /// Workers whose Node names a Docker host that could not be listed this run: never
    /// removed while it cannot be seen.
    unseen: Vec<(String, String)>,
}

impl Executor {
    /// Connects to Docker and Kubernetes. `token` is None only for a dry run.
    pub fn connect(
        cfg: &Config,
        docker_env: &DockerEnv,
        token: Option<JoinToken>,
    ) -> Result<Executor, RunError> {
        let docker = Rc::new(DockerHosts::connect(&cfg.docker, docker_env)?);
        let cluster = Rc::new(
            KubeCluster::connect(&cfg.kubernetes)
                .map_err(|e| RunError::Action(format!("Kubernetes: {e}")))?,
        );
        let up: Box<dyn Actuator> = match token {
            Some(t) => Box::new(DockerActuator::new(
                docker.clone(),
                &cfg.docker,
                t,
                Box::new(PlanOnly),
            )),
            None => Box::new(PlanOnly),
        };
        let down = ScaleDown::new(
            Box::new(cluster.clone()),
            Box::new(DockerContainers(docker.clone())),
            cfg,
            MoveMode::Evict,
        );
        Ok(Executor {
            docker,
            cluster,
            up,
            down,
            pool: cfg.docker.pool.clone(),
            config_template: crate::plan::cluster::template(cfg, &Snapshot::default()),
            cfg: cfg.docker.clone(),
            unseen: Vec::new(),
        })
    }

    /// Each Docker host's capacity, what the workers there take and the room left, for
    /// `status` (read-only).
    pub fn host_facts(&self) -> Vec<crate::plan::worker_hosts::HostFacts> {
        self.docker.facts(&self.cfg)
    }

    fn delete_node(&self, name: &str) -> Result<(), ActionFailure> {
        let fail = |e: crate::kube::KubeError| ActionFailure {
            done: Vec::new(),
            message: format!("delete Node {name}: {e}"),
        };
        // k3s deletes the Node's `<name>.node-password.k3s` secret itself when the Node
        // goes (see `kube::Cluster::delete_node`).
        self.cluster.delete_node(name).map_err(fail)?;
        Ok(())
    }

    fn remove_container(&self, name: &str) -> Result<(), ActionFailure> {
        self.docker
            .remove_worker(name)
            .map(|_| ())
            .map_err(|e| ActionFailure {
                done: Vec::new(),
                message: format!("remove container {name}: {e}"),
            })
    }
}

impl Actuator for Executor {
    fn pending_facts(&mut self, facts: &mut ClusterFacts) -> Result<(), String> {
        crate::kube::facts::add_pending(
            self.cluster.as_ref(),
            facts,
            &self.pool,
            &self.config_template,
        )
        .map_err(|e| e.to_string())
    }

    fn observe(&mut self) -> Result<Option<Observed>, ActionFailure> {
        let fail = |m: String| ActionFailure {
            done: Vec::new(),
            message: m,
        };
        let mut containers = Vec::new();
        let mut hosts = Vec::new();
        let mut errors = Vec::new();
        for a in self.docker.list_workers() {
            match a.answer {
                Ok(list) => {
                    containers.extend(list.into_iter().map(|c| WorkerContainer {
                        name: c.name,
                        state: c.state,
                        created: c.created,
                        host: a.name.to_string(),
                    }));
                    hosts.push(HostSeen {
                        name: a.name.to_string(),
                        up: true,
                        error: None,
                    });
                }
                Err(e) => {
                    errors.push(format!("{}: {e}", a.name));
                    hosts.push(HostSeen {
                        name: a.name.to_string(),
                        up: false,
                        error: Some(e.to_string()),
                    });
                }
            }
        }
        if errors.len() == hosts.len() {
            // No host listed at all: nothing can be reconciled (as with one host down).
            return Err(fail(format!("list Docker workers: {}", errors.join("; "))));
        }
        let all = self
            .cluster
            .nodes()
            .map_err(|e| fail(format!("list Nodes: {e}")))?;
        // The pending pods and DaemonSets are asked later, only when the snapshot has
        // unschedulable pods (`pending_facts`).
        let facts = Some(crate::kube::facts::node_facts(&all));
        let nodes = all
            .into_iter()
            .filter(|n| {
                n.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(NODE_LABEL_POOL))
                    .is_some_and(|p| *p == self.pool)
            })
            .filter_map(|n| {
                let ready = is_ready(&n);
                let drain_left = crate::kube::drain::drain_mark(&n).is_some();
                let cordoned_before_drain = crate::kube::drain::marked_cordoned_before(&n);
                let host = n
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(NODE_LABEL_HOST))
                    .cloned();
                n.metadata.name.map(|name| WorkerNode {
                    name,
                    ready,
                    drain_left,
                    cordoned_before_drain,
                    host,
                })
            })
            .collect::<Vec<_>>();
        let down: Vec<&HostSeen> = hosts.iter().filter(|h| !h.up).collect();
        self.unseen = nodes
            .iter()
            .filter_map(|n| {
                let h = n.host.as_ref()?;
                down.iter()
                    .any(|d| d.name == *h)
                    .then(|| (n.name.clone(), h.clone()))
            })
            .collect();
        Ok(Some(Observed {
            containers,
            nodes,
            facts,
            hosts,
        }))
    }

    fn use_model(&mut self, model: Rc<ClusterModel>) {
        self.down.use_model(model);
    }

    fn repair(&mut self, repair: &Repair) -> Result<(), ActionFailure> {
        match repair {
            Repair::NeverReady {
                name,
                node_registered,
                ..
            }
            | Repair::DeadContainer {
                name,
                node_registered,
                ..
            }
            // Never started: `remove_worker` takes the container and only the volume of
            // this pool labelled as this worker's (the one its spec created), never another
            // volume mounted into it; the container is removed without `v`, so nothing
            // else goes with it.
            | Repair::NeverStarted {
                name,
                node_registered,
            } => {
                self.remove_container(name)?;
                if *node_registered {
                    self.delete_node(name)?;
                }
                Ok(())
            }
            // `docker rm` leaves a worker's named volume behind; nothing else would ever
            // remove it (names are never reused), so it goes with the Node.
            Repair::OrphanNode { name } => {
                self.delete_node(name)?;
                self.remove_container(name)
            }
            // Only the drain's own cordon is undone: an operator's stays, marks cleared.
            Repair::UnfinishedDrain {
                name,
                cordoned_before: true,
            } => self
                .cluster
                .clear_drain_mark(name)
                .map_err(|e| ActionFailure {
                    done: Vec::new(),
                    message: format!("clear the drain marks of {name}: {e}"),
                }),
            Repair::UnfinishedDrain {
                name,
                cordoned_before: false,
            } => self.cluster.uncordon(name).map_err(|e| ActionFailure {
                done: Vec::new(),
                message: format!("uncordon {name}: {e}"),
            }),
            Repair::StaleEntry { name } => self.remove_container(name),
            Repair::Adopt { .. } => Ok(()),
        }
    }

    fn highest_worker_index(&mut self) -> Result<IndexSeen, ActionFailure> {
        self.up.highest_worker_index()
    }

    fn place(&mut self, count: u32) -> Result<Placement, ActionFailure> {
        if self.docker.single() {
            // One host: no choice to make (named "", as `Actuator::place` says).
            return Ok(Placement {
                hosts: vec![String::new(); count as usize],
                ..Placement::default()
            });
        }
        // Read-only, so a dry run shows it too.
        Ok(crate::run::docker_side::place(&self.docker, &self.cfg, count).0)
    }

    fn start_workers(&mut self, names: &[String]) -> Result<(), ActionFailure> {
        self.up.start_workers(names)
    }

    fn start_placed(&mut self, names: &[String], hosts: &[String]) -> Result<(), ActionFailure> {
        self.up.start_placed(names, hosts)
    }

    fn remove_worker(
        &mut self,
        candidates: &[String],
        dry_run: bool,
        report: &mut Report,
    ) -> Result<Removal, ActionFailure> {
        // A worker on a host that cannot be listed is left alone: its container cannot be
        // removed, and draining it would only move its pods for nothing.
        let mut kept = Vec::new();
        for (node, host) in &self.unseen {
            if candidates.contains(node) {
                kept.push(Unremovable {
                    node: node.clone(),
                    reason: format!("its Docker host {host} cannot be reached this run"),
                });
            }
        }
        let rest: Vec<String> = candidates
            .iter()
            .filter(|c| !kept.iter().any(|k| k.node == **c))
            .cloned()
            .collect();
        report.unremovable.extend(kept);
        self.down.remove_worker(&rest, dry_run, report)
    }

    fn write_events(&mut self, notices: &[Notice], posted: &mut Vec<PostedEvent>, now: Timestamp) {
        let n = crate::kube::events::write(self.cluster.as_ref(), notices, posted, now);
        log::info!("wrote {n} Kubernetes Event(s)");
    }
}
