//! What carries out a run's plan on the real systems: Docker starts and removes worker
//! containers, Kubernetes cordons, drains and deletes Nodes. Joins the two into the one
//! `Actuator` that `evaluate`, `up` and `status` use, and repairs drift.

use crate::config::Config;
use crate::docker::{DockerClient, DockerEnv, JoinToken, NODE_LABEL_POOL};
use crate::kube::events::Notice;
use crate::kube::mover::MoveMode;
use crate::kube::{Cluster, KubeCluster, is_ready};
use crate::plan::cluster::ClusterModel;
use crate::plan::model::{ClusterFacts, Node as ModelNode};
use crate::plan::reconcile::{Repair, WorkerContainer, WorkerNode};
use crate::plan::snapshot::Snapshot;
use crate::run::docker_side::DockerActuator;
use crate::run::error::RunError;
use crate::run::report::Report;
use crate::run::scale_down::{ContainerError, ScaleDown, WorkerContainers};
use crate::run::{ActionFailure, Actuator, Observed, PlanOnly, Removal};
use crate::state::PostedEvent;
use crate::state::time::Timestamp;
use std::rc::Rc;

/// The container side of scale-down, on Docker.
pub struct DockerContainers(pub Rc<DockerClient>);

impl WorkerContainers for DockerContainers {
    fn is_managed(&self, worker: &str) -> Result<bool, ContainerError> {
        Ok(self.0.list_workers()?.iter().any(|c| c.name == worker))
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
    docker: Rc<DockerClient>,
    cluster: Rc<KubeCluster>,
    /// Docker's scale-up, or `PlanOnly` in a dry run (which never starts anything and so
    /// needs no join token).
    up: Box<dyn Actuator>,
    down: ScaleDown,
    pool: String,
    /// A new worker as the config describes it (labels, taints), for the DaemonSets'
    /// overhead when no Ready worker of the pool is there to copy.
    config_template: ModelNode,
}

impl Executor {
    /// Connects to Docker and Kubernetes. `token` is None only for a dry run.
    pub fn connect(
        cfg: &Config,
        docker_env: &DockerEnv,
        token: Option<JoinToken>,
    ) -> Result<Executor, RunError> {
        let docker = Rc::new(DockerClient::connect(&cfg.docker, docker_env)?);
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
        })
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

    /// The constraints the API adds to the run's model. A failure to list them does not
    /// fail the run: the decision then places by resources only (and says so), and
    /// scale-down still lists each candidate's pods itself.
    fn facts(&self, nodes: &[k8s_openapi::api::core::v1::Node]) -> Option<ClusterFacts> {
        match crate::kube::facts::cluster_facts(
            self.cluster.as_ref(),
            nodes,
            &self.pool,
            &self.config_template,
        ) {
            Ok(f) => Some(f),
            Err(e) => {
                log::warn!("cluster model without the API's constraints: {e}");
                None
            }
        }
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
    fn observe(&mut self) -> Result<Option<Observed>, ActionFailure> {
        let fail = |m: String| ActionFailure {
            done: Vec::new(),
            message: m,
        };
        let containers = self
            .docker
            .list_workers()
            .map_err(|e| fail(format!("list Docker workers: {e}")))?
            .into_iter()
            .map(|c| WorkerContainer {
                name: c.name,
                state: c.state,
                created: c.created,
            })
            .collect();
        let all = self
            .cluster
            .nodes()
            .map_err(|e| fail(format!("list Nodes: {e}")))?;
        let facts = self.facts(&all);
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
                n.metadata.name.map(|name| WorkerNode {
                    name,
                    ready,
                    drain_left,
                })
            })
            .collect();
        Ok(Some(Observed {
            containers,
            nodes,
            facts,
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
            Repair::UnfinishedDrain { name } => self
                .cluster
                .set_unschedulable(name, false)
                .map_err(|e| ActionFailure {
                    done: Vec::new(),
                    message: format!("uncordon {name}: {e}"),
                }),
            Repair::StaleEntry { name } => self.remove_container(name),
            Repair::Adopt { .. } => Ok(()),
        }
    }

    fn highest_worker_index(&mut self) -> Result<Option<u64>, ActionFailure> {
        self.up.highest_worker_index()
    }

    fn start_workers(&mut self, names: &[String]) -> Result<(), ActionFailure> {
        self.up.start_workers(names)
    }

    fn remove_worker(
        &mut self,
        candidates: &[String],
        dry_run: bool,
        report: &mut Report,
    ) -> Result<Removal, ActionFailure> {
        self.down.remove_worker(candidates, dry_run, report)
    }

    fn write_events(&mut self, notices: &[Notice], posted: &mut Vec<PostedEvent>, now: Timestamp) {
        let n = crate::kube::events::write(self.cluster.as_ref(), notices, posted, now);
        log::info!("wrote {n} Kubernetes Event(s)");
    }
}
