//! The simulated cluster: workers (booting until `join_time` has passed, then Ready), pods
//! (a scenario's groups, each living from its start to its end), a scheduler that places
//! pending pods with the planner's own placement (`plan::placement`, first-fit-decreasing
//! over the Ready workers), and the two seams a run talks through: the snapshot a
//! Prometheus query would give (as the default signals compute it, from requests over
//! allocatable), and `SimActuator`, the `run::Actuator` that starts and removes simulated
//! workers (a removal checks that the worker's pods fit elsewhere on the run's cluster
//! model, as the real scale-down does, and puts them back to pending).

use super::scenario::Scenario;
use crate::config::Config;
use crate::plan::cluster::ClusterModel;
use crate::plan::model::{ClusterFacts, Node, NodeFacts, Pod, Resources};
use crate::plan::placement::{self, Fork};
use crate::plan::reconcile::{ContainerState, Repair, WorkerContainer, WorkerNode};
use crate::plan::snapshot::{NodeResources, NodeSample, Snapshot};
use crate::run::report::{Report, Unremovable};
use crate::run::{ActionFailure, Actuator, Observed, Removal};
use crate::state::time::Timestamp;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// Simulated pods live in this namespace (their keys are `sim/<group>-<n>`).
pub const NAMESPACE: &str = "sim";

#[derive(Debug, Clone)]
pub struct SimNode {
    pub name: String,
    pub created: Duration,
    pub ready_at: Duration,
    pub requested: Resources,
    /// Pods bound to it (they count toward the template's `allocatable.pods`).
    pub pods: u32,
    pub gone: bool,
}

#[derive(Debug, Clone)]
pub struct SimPod {
    pub pod: Pod,
    pub group: usize,
    pub start: Duration,
    pub end: Option<Duration>,
    /// Index into `World::nodes` while bound.
    pub node: Option<usize>,
    /// When the pod was first placed (for how long its group waited).
    pub first_bound: Option<Duration>,
}

impl SimPod {
    fn alive(&self, t: Duration) -> bool {
        self.start <= t && self.end.is_none_or(|e| t < e)
    }
}

#[derive(Clone)]
pub struct World {
    /// Offset from the scenario's start.
    pub t: Duration,
    /// Wall-clock time of offset 0 (the virtual clock the runs see).
    pub epoch: Timestamp,
    pub nodes: Vec<SimNode>,
    pub pods: Vec<SimPod>,
    /// A new worker: its allocatable and labels (the config's template).
    pub template: Node,
    pub join_time: Duration,
    /// Pods evicted by removals, in all.
    pub evicted: u64,
}

impl World {
    pub fn new(scenario: &Scenario, cfg: &Config, epoch: Timestamp) -> World {
        let template = crate::plan::cluster::template(cfg, &Snapshot::default());
        let mut world = World {
            t: Duration::ZERO,
            epoch,
            nodes: Vec::new(),
            pods: Vec::new(),
            template,
            join_time: scenario.join_time,
            evicted: 0,
        };
        let prefix = &cfg.docker.name_prefix;
        for i in 1..=scenario.workers {
            world.nodes.push(SimNode {
                name: format!("{prefix}-{i}"),
                created: Duration::ZERO,
                ready_at: Duration::ZERO,
                requested: Resources::default(),
                pods: 0,
                gone: false,
            });
        }
        for (gi, g) in scenario.pods.iter().enumerate() {
            for n in 0..g.count {
                world.pods.push(SimPod {
                    pod: Pod {
                        namespace: NAMESPACE.into(),
                        name: format!("{}-{n}", g.name),
                        requests: Resources::new(g.cpu, g.memory),
                        node_selector: g.node_selector.clone(),
                        ..Pod::default()
                    },
                    group: gi,
                    start: g.start,
                    end: g.end,
                    node: None,
                    first_bound: None,
                });
            }
        }
        world
    }

    pub fn now(&self) -> Timestamp {
        self.epoch.plus(self.t)
    }

    fn ready(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        !n.gone && n.ready_at <= self.t
    }

    /// Moves the clock to `t`: finished pods leave their nodes, booted workers are Ready,
    /// and the scheduler places what it can.
    pub fn advance(&mut self, t: Duration) {
        self.t = t;
        for p in &mut self.pods {
            if let Some(i) = p.node
                && !p.alive(t)
            {
                let n = &mut self.nodes[i];
                n.requested = n.requested.minus(p.pod.requests);
                n.pods -= 1;
                p.node = None;
            }
        }
        self.schedule();
    }

    /// The scheduler: pending pods onto Ready workers, largest first, each on the first
    /// node it fits (`plan::placement`, the code scale-up sizing and the scale-down check
    /// use). Pods that fit nowhere stay pending.
    pub fn schedule(&mut self) {
        let t = self.t;
        let waiting: Vec<usize> = (0..self.pods.len())
            .filter(|&i| self.pods[i].node.is_none() && self.pods[i].alive(t))
            .collect();
        if waiting.is_empty() {
            return;
        }
        let (model_nodes, index) = self.model_nodes();
        if model_nodes.is_empty() {
            return;
        }
        let mut order: Vec<&Pod> = waiting.iter().map(|&i| &self.pods[i].pod).collect();
        placement::decreasing(&mut order, self.template.allocatable);
        let mut fork = Fork::new(&model_nodes);
        let mut bound = Vec::new();
        for p in order {
            if let Ok(m) = fork.place_first_fit(p) {
                bound.push((p.name.clone(), index[m]));
            }
        }
        let by_name: BTreeMap<&str, usize> = waiting
            .iter()
            .map(|&i| (self.pods[i].pod.name.as_str(), i))
            .collect();
        let bound: Vec<(usize, usize)> = bound
            .iter()
            .map(|(n, w)| (by_name[n.as_str()], *w))
            .collect();
        for (pi, wi) in bound {
            let p = &mut self.pods[pi];
            p.node = Some(wi);
            p.first_bound.get_or_insert(t);
            let n = &mut self.nodes[wi];
            n.requested = n.requested.plus(p.pod.requests);
            n.pods += 1;
        }
    }

    /// The Ready workers as model nodes, and each one's index in `nodes`.
    fn model_nodes(&self) -> (Vec<Node>, Vec<usize>) {
        let mut out = Vec::new();
        let mut index = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if self.ready(i) {
                out.push(Node {
                    name: n.name.clone(),
                    allocatable: self.template.allocatable,
                    requested: n.requested,
                    labels: self.template.labels.clone(),
                    taints: self.template.taints.clone(),
                    ready: true,
                    max_pods: self.template.max_pods,
                    pod_count: n.pods,
                    ..Node::default()
                });
                index.push(i);
            }
        }
        (out, index)
    }

    pub fn pending(&self) -> impl Iterator<Item = &SimPod> {
        let t = self.t;
        self.pods
            .iter()
            .filter(move |p| p.node.is_none() && p.alive(t))
    }

    /// Workers that exist (booting or Ready).
    pub fn workers(&self) -> usize {
        self.nodes.iter().filter(|n| !n.gone).count()
    }

    pub fn ready_workers(&self) -> usize {
        (0..self.nodes.len()).filter(|&i| self.ready(i)).count()
    }

    /// What the one Prometheus query would give now, as the default signals compute it:
    /// per-node requests over allocatable, their sums over the Ready workers, the
    /// unschedulable pods with their requests. A booting worker has no Node yet.
    pub fn snapshot(&self) -> Snapshot {
        let alloc = self.template.allocatable;
        let mut nodes = BTreeMap::new();
        let mut node_resources = BTreeMap::new();
        let (mut used, mut total) = (Resources::default(), Resources::default());
        for (i, n) in self.nodes.iter().enumerate() {
            if !self.ready(i) {
                continue;
            }
            nodes.insert(
                n.name.clone(),
                NodeSample {
                    ready: true,
                    cpu: pct(n.requested.cpu, alloc.cpu),
                    memory: pct(n.requested.memory, alloc.memory),
                },
            );
            node_resources.insert(
                n.name.clone(),
                NodeResources {
                    requested: n.requested,
                    allocatable: alloc,
                    pods: Some(n.pods),
                },
            );
            used = used.plus(n.requested);
            total = total.plus(alloc);
        }
        let pending: Vec<Pod> = self.pending().map(|p| p.pod.clone()).collect();
        let sum = pending
            .iter()
            .fold(Resources::default(), |a, p| a.plus(p.requests));
        Snapshot {
            pending_pods: Some(pending.len() as f64),
            pending_cpu_cores: Some(sum.cpu),
            pending_memory_bytes: Some(sum.memory),
            cpu: pct(used.cpu, total.cpu),
            memory: pct(used.memory, total.memory),
            nodes: Some(nodes),
            unschedulable: Some(pending),
            node_resources,
            cluster: None,
            hosts: Default::default(),
        }
    }

    /// What Docker and the API would list: every worker's container, the Nodes of those
    /// that joined, and the constraints (labels, the pending pods' selectors).
    pub fn observed(&self) -> Observed {
        let mut facts = ClusterFacts::default();
        let mut containers = Vec::new();
        let mut nodes = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.gone {
                continue;
            }
            containers.push(WorkerContainer {
                name: n.name.clone(),
                state: ContainerState::Running,
                created: Some(self.epoch.plus(n.created)),
                host: String::new(),
            });
            if self.ready(i) {
                nodes.push(WorkerNode {
                    name: n.name.clone(),
                    ready: true,
                    drain_left: false,
                    cordoned_before_drain: false,
                    host: None,
                });
                facts.nodes.insert(
                    n.name.clone(),
                    NodeFacts {
                        labels: self.template.labels.clone(),
                        taints: self.template.taints.clone(),
                        unschedulable: false,
                        ready: true,
                        max_pods: self.template.max_pods,
                    },
                );
            }
        }
        for p in self.pending() {
            facts.pending.insert(p.pod.key(), p.pod.clone());
        }
        Observed {
            containers,
            nodes,
            facts: Some(facts),
            hosts: Vec::new(),
        }
    }

    pub fn start_worker(&mut self, name: &str) {
        self.nodes.push(SimNode {
            name: name.to_string(),
            created: self.t,
            ready_at: self.t + self.join_time,
            requested: Resources::default(),
            pods: 0,
            gone: false,
        });
    }

    /// Removes a worker; its pods go back to pending (the next scheduling places them).
    /// Returns the pods evicted.
    pub fn remove_worker(&mut self, name: &str) -> Vec<String> {
        let Some(i) = self.nodes.iter().position(|n| n.name == name && !n.gone) else {
            return Vec::new();
        };
        self.nodes[i].gone = true;
        self.nodes[i].requested = Resources::default();
        self.nodes[i].pods = 0;
        let mut evicted = Vec::new();
        for p in &mut self.pods {
            if p.node == Some(i) {
                p.node = None;
                evicted.push(p.pod.key());
            }
        }
        self.evicted += evicted.len() as u64;
        evicted
    }

    pub fn pods_on(&self, name: &str) -> Vec<&Pod> {
        let Some(i) = self.nodes.iter().position(|n| n.name == name && !n.gone) else {
            return Vec::new();
        };
        self.pods
            .iter()
            .filter(|p| p.node == Some(i))
            .map(|p| &p.pod)
            .collect()
    }
}

fn pct(used: f64, total: f64) -> Option<f64> {
    (total > 0.0).then(|| 100.0 * used / total)
}

/// The `run::Actuator` of a simulation: starts and removes simulated workers.
pub struct SimActuator {
    pub world: Rc<RefCell<World>>,
    model: Option<Rc<ClusterModel>>,
}

impl SimActuator {
    pub fn new(world: Rc<RefCell<World>>) -> SimActuator {
        SimActuator { world, model: None }
    }
}

impl Actuator for SimActuator {
    fn observe(&mut self) -> Result<Option<Observed>, ActionFailure> {
        Ok(Some(self.world.borrow().observed()))
    }

    /// Reconcile's repairs (a worker that never joined within the provision timeout):
    /// the worker goes.
    fn repair(&mut self, repair: &Repair) -> Result<(), ActionFailure> {
        self.world.borrow_mut().remove_worker(repair.name());
        Ok(())
    }

    fn start_workers(&mut self, names: &[String]) -> Result<(), ActionFailure> {
        let mut w = self.world.borrow_mut();
        for n in names {
            w.start_worker(n);
        }
        Ok(())
    }

    fn use_model(&mut self, model: Rc<ClusterModel>) {
        self.model = Some(model);
    }

    /// The first candidate whose pods all fit on the other nodes of the run's model
    /// (`plan::placement::fit_elsewhere`, as the real scale-down checks) is removed.
    fn remove_worker(
        &mut self,
        candidates: &[String],
        dry_run: bool,
        report: &mut Report,
    ) -> Result<Removal, ActionFailure> {
        let mut world = self.world.borrow_mut();
        for c in candidates {
            if let Some(model) = &self.model
                && let Some(i) = model.index_of(c)
            {
                let pods = world.pods_on(c);
                if let Err((pod, _, why)) = placement::fit_elsewhere(&pods, &model.nodes, i) {
                    report.unremovable.push(Unremovable {
                        node: c.clone(),
                        reason: format!("pod {pod} fits no other node: {why}"),
                    });
                    continue;
                }
            }
            let evicted = if dry_run {
                Vec::new()
            } else {
                world.remove_worker(c)
            };
            world.schedule();
            return Ok(Removal {
                removed: Some(c.clone()),
                evicted,
            });
        }
        Ok(Removal::default())
    }
}
