//! Scale-down and `drain NODE` on Kubernetes: check candidates against the API as
//! cluster-autoscaler does (kubectl's drain rules, then system pods, volumes pinned to the
//! node, and whether every pod fits on the other nodes of the run's cluster model), drain
//! the first removable one, then remove it in the safe order: stop its container, delete
//! its Node, remove container and volume. The container side (Docker) comes in through
//! `WorkerContainers`.

use crate::config::Config;
use crate::kube::budgets::{Budgets, pod_blockers, system_pod_blocker};
use crate::kube::drain::{self, Blocker, PodBlocker, PodPlan};
use crate::kube::facts::Volumes;
use crate::kube::mover::{
    DrainOptions, LEFT_FOR_REPAIR, MoveMode, Recheck, drain_node, restore_cordon,
};
use crate::kube::{Cluster, KubeCluster, KubeError, is_ready};
use crate::plan::cluster::ClusterModel;
use crate::plan::placement::fit_elsewhere;
use crate::run::exit::Exit;
use crate::run::report::{Report, Unremovable};
use crate::run::{ActionFailure, Actuator, Removal};
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use std::fmt::Write;
use std::rc::Rc;

pub type ContainerError = Box<dyn std::error::Error + Send + Sync>;

/// What scale-down needs from the container side. The Docker implementation finds
/// containers by the labels `io.k3s-scale.managed=true`, `io.k3s-scale.pool=<pool>`,
/// `io.k3s-scale.worker=<name>`; the worker name is also the Node name.
pub trait WorkerContainers {
    /// Whether a k3s-scale container of this pool backs the node of this name.
    fn is_managed(&self, worker: &str) -> Result<bool, ContainerError>;
    /// Stops the worker's container (within `docker.stop_timeout`); it stays stopped.
    /// Already stopped or gone is success.
    fn stop(&mut self, worker: &str) -> Result<(), ContainerError>;
    /// Stops the worker's container and removes it and its volume `<worker>-data`.
    /// Already gone is success.
    fn remove(&mut self, worker: &str) -> Result<(), ContainerError>;
}

/// Where no container client is plugged in: cannot tell, cannot remove. A node is then
/// treated as unmanaged, so nothing is ever deleted.
pub struct NoContainers;

impl WorkerContainers for NoContainers {
    fn is_managed(&self, _worker: &str) -> Result<bool, ContainerError> {
        Err("no Docker client in this build".into())
    }
    fn stop(&mut self, _worker: &str) -> Result<(), ContainerError> {
        Err("no Docker client in this build".into())
    }
    fn remove(&mut self, _worker: &str) -> Result<(), ContainerError> {
        Err("no Docker client in this build".into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScaleDownError {
    #[error("{0}")]
    Kube(#[from] KubeError),
    #[error("cannot tell whether {worker} is a k3s-scale worker: {message}")]
    Containers { worker: String, message: String },
}

/// The verdict on one candidate.
#[derive(Debug)]
pub enum Verdict {
    /// It may go with these pods; `ready` false: its Node is not Ready.
    Removable {
        plan: PodPlan,
        ready: bool,
    },
    Unremovable(String),
}

/// The worker chosen for removal.
#[derive(Debug)]
pub struct Chosen {
    pub worker: String,
    pub plan: PodPlan,
    /// Its Node is Ready; when not, its pods are evicted but not waited for.
    pub ready: bool,
}

/// The outcome of checking the candidates: the worker to remove with its pods, and the
/// candidates passed over (with why).
#[derive(Debug)]
pub struct Choice {
    pub chosen: Option<Chosen>,
    pub passed: Vec<Unremovable>,
}

/// What keeps a candidate, judged by its pods once the API has listed them: every pod
/// that blocks it, or None when it may go. Pure, so benches/scale.rs measures it at
/// 5,000 nodes and 150,000 pods.
pub fn blocking(pods: &[Pod], budgets: Option<&Budgets>) -> Option<String> {
    let found = pod_blockers(pods, budgets);
    join_blockers(&found)
}

fn join_blockers(found: &[PodBlocker]) -> Option<String> {
    if found.is_empty() {
        return None;
    }
    let mut why = String::new();
    for (i, b) in found.iter().enumerate() {
        let sep = if i == 0 { "" } else { "; " };
        let _ = write!(why, "{sep}{b}");
    }
    Some(why)
}

/// Scale-down on a cluster and its worker containers.
pub struct ScaleDown {
    cluster: Box<dyn Cluster>,
    containers: Box<dyn WorkerContainers>,
    permanent: Vec<String>,
    drain: DrainOptions,
    /// `kubernetes.skip_nodes_with_system_pods`.
    skip_system_pods: bool,
    /// The run's cluster model (`use_model`): the candidate's pods must fit elsewhere in
    /// it. None: no fit check (`drain NODE`, or a caller without a model).
    model: Option<Rc<ClusterModel>>,
}

impl ScaleDown {
    pub fn new(
        cluster: Box<dyn Cluster>,
        containers: Box<dyn WorkerContainers>,
        cfg: &Config,
        mode: MoveMode,
    ) -> ScaleDown {
        ScaleDown {
            cluster,
            containers,
            permanent: cfg.kubernetes.permanent_nodes.clone(),
            drain: DrainOptions::from_config(&cfg.drain, mode),
            skip_system_pods: cfg.kubernetes.skip_nodes_with_system_pods,
            model: None,
        }
    }

    /// Hands over the run's cluster model for the fit check (`Actuator::use_model`).
    pub fn use_model(&mut self, model: Rc<ClusterModel>) {
        self.model = Some(model);
    }

    /// On the cluster the config points at (scale-down always evicts).
    pub fn connect(
        cfg: &Config,
        containers: Box<dyn WorkerContainers>,
    ) -> Result<ScaleDown, KubeError> {
        let cluster = KubeCluster::connect(&cfg.kubernetes)?;
        Ok(ScaleDown::new(
            Box::new(cluster),
            containers,
            cfg,
            MoveMode::Evict,
        ))
    }

    /// The first removable candidate (best first) with its pods, and the ones passed over.
    pub fn choose(&self, candidates: &[String]) -> Result<Choice, ScaleDownError> {
        let mut passed = Vec::new();
        let mut pdbs = None;
        for c in candidates {
            match self.check(c, &mut pdbs)? {
                Verdict::Removable { plan, ready } => {
                    return Ok(Choice {
                        chosen: Some(Chosen {
                            worker: c.clone(),
                            plan,
                            ready,
                        }),
                        passed,
                    });
                }
                Verdict::Unremovable(reason) => {
                    log::info!("not removing {c}: {reason}");
                    passed.push(Unremovable {
                        node: c.clone(),
                        reason,
                    });
                }
            }
        }
        Ok(Choice {
            chosen: None,
            passed,
        })
    }

    /// Checks one candidate: its Node, whether k3s-scale manages it, then its pods: the
    /// drain's blockers (as `drain NODE`), then scale-down's own (system pods, volumes
    /// pinned to the node), then whether every pod that would be evicted fits on the other
    /// nodes of the model. `pdbs` is listed on first need and reused for the next
    /// candidates.
    pub fn check(
        &self,
        worker: &str,
        pdbs: &mut Option<Budgets>,
    ) -> Result<Verdict, ScaleDownError> {
        let Some(node) = self.cluster.node(worker)? else {
            return Ok(Verdict::Unremovable("no Node by that name".into()));
        };
        if let Some(reason) = drain::node_unremovable(&node, &self.permanent) {
            return Ok(Verdict::Unremovable(reason));
        }
        let managed =
            self.containers
                .is_managed(worker)
                .map_err(|e| ScaleDownError::Containers {
                    worker: worker.to_string(),
                    message: e.to_string(),
                })?;
        if !managed {
            return Ok(Verdict::Unremovable(
                "not a k3s-scale worker (no managed container backs it)".into(),
            ));
        }
        let pods = self.cluster.pods_on(worker)?;
        if pdbs.is_none() && pods.iter().any(|p| drain::skip_reason(p).is_none()) {
            *pdbs = Some(Budgets::new(self.cluster.disruption_budgets()?));
        }
        let mut found = pod_blockers(&pods, pdbs.as_ref());
        found.extend(self.scale_down_blockers(&pods, pdbs.as_ref()));
        if let Some(why) = join_blockers(&found) {
            return Ok(Verdict::Unremovable(why));
        }
        if let Some(why) = self.fits_nowhere(worker, &pods) {
            return Ok(Verdict::Unremovable(why));
        }
        Ok(Verdict::Removable {
            plan: drain::into_plan(pods),
            ready: is_ready(&node),
        })
    }

    /// What keeps a worker that `drain NODE` would still drain: a kube-system pod without a
    /// budget (when `kubernetes.skip_nodes_with_system_pods`), and a claim on a volume
    /// pinned to the node or that could not be looked up (the worker's volume holds
    /// local-path data: removing it destroys the data). Only pods a drain would move and
    /// that are not leaving anyway.
    fn scale_down_blockers(&self, pods: &[Pod], budgets: Option<&Budgets>) -> Vec<PodBlocker> {
        let mut volumes = Volumes::new(self.cluster.as_ref());
        let mut found = Vec::new();
        let moving = pods
            .iter()
            .filter(|p| drain::skip_reason(p).is_none() && p.metadata.deletion_timestamp.is_none());
        let empty = Budgets::default();
        for p in moving {
            let ns = p.metadata.namespace.as_deref().unwrap_or("default");
            let system = if self.skip_system_pods {
                system_pod_blocker(p, budgets.unwrap_or(&empty))
            } else {
                None
            };
            let blocker: Option<Blocker> =
                system.or_else(|| drain::volume_blocker(p, |claim| volumes.terms(ns, claim)));
            if let Some(blocker) = blocker {
                found.push(PodBlocker {
                    pod: drain::pod_key(p),
                    blocker,
                });
            }
        }
        found
    }

    /// With the run's model: the first pod that would be evicted and fits on no other
    /// Ready, schedulable node once this one is gone (cluster-autoscaler's
    /// simulator/cluster.go), as a reason. Requests from the pods' specs, the other nodes'
    /// room from the model (kube-state-metrics), their labels and taints from the API.
    fn fits_nowhere(&self, worker: &str, pods: &[Pod]) -> Option<String> {
        let model = self.model.as_ref()?;
        let moving: Vec<crate::plan::model::Pod> = pods
            .iter()
            .filter(|p| drain::skip_reason(p).is_none() && p.metadata.deletion_timestamp.is_none())
            // The volumes were checked above: none is pinned to a node.
            .map(|p| crate::kube::model::pod(p, |_, _| Ok(None)))
            .collect();
        let refs: Vec<&crate::plan::model::Pod> = moving.iter().collect();
        // A candidate the model does not know still has its pods checked against the rest.
        let index = model.index_of(worker).unwrap_or(usize::MAX);
        let (pod, requests, misfit) = fit_elsewhere(&refs, &model.nodes, index).err()?;
        let cpu = format!("{:.2}", requests.cpu);
        let cpu = cpu.trim_end_matches('0').trim_end_matches('.');
        Some(format!(
            "pod {pod} ({cpu} CPU, {}) fits no other node: {misfit}",
            crate::plan::model::bytes(requests.memory)
        ))
    }

    /// After a drain, in the order that keeps the worker from coming back: stop its
    /// container (a k3s agent whose Node is deleted while it runs registers it again:
    /// k3s-io/k3s#5404, #945), delete its Node, then remove container and volume. A
    /// failure before the container stops undoes the drain's cordon (only its own: one
    /// set before the drain stays) and keeps everything; after it, the stopped container
    /// (and its NotReady Node, if still there) is what the next run's reconcile removes (a
    /// dead container, see reconcile.rs).
    fn remove_drained(&mut self, worker: &str, cordoned_before: bool) -> Result<(), String> {
        // Asked to stop between two steps: the next is not begun; what is left is what the
        // next run's reconcile repairs (a drain mark, a stopped container).
        let stopped = |left: &str| {
            crate::state::stop::why().map(|why| format!("{worker} was drained, then {why}: {left}"))
        };
        if let Some(m) = stopped(&format!("container running, node {LEFT_FOR_REPAIR}")) {
            return Err(m);
        }
        if let Err(e) = self.containers.stop(worker) {
            let left = restore_cordon(self.cluster.as_ref(), worker, cordoned_before);
            return Err(format!(
                "{worker} was drained but its container could not be stopped ({e}); node {left}, \
                 Node and container kept"
            ));
        }
        log::info!("stopped the container of {worker}");
        if let Some(m) = stopped("its container is stopped; the next run removes it and its Node") {
            return Err(m);
        }
        if let Err(e) = self.cluster.delete_node(worker) {
            return Err(format!(
                "{worker} was drained and its container stopped, but deleting its Node failed \
                 ({e}); the next run removes both (a stopped container is repaired)"
            ));
        }
        log::info!("deleted Node {worker}");
        if let Some(m) = stopped("its Node is deleted; the next run removes its stopped container")
        {
            return Err(m);
        }
        self.containers.remove(worker).map_err(|e| {
            format!(
                "Node {worker} deleted, but its stopped container could not be removed ({e}); \
                 the next run removes container {worker} and volume {worker}-data"
            )
        })?;
        log::info!("removed container and volume of {worker}");
        Ok(())
    }

    /// `k3s-scale drain NODE`: the same checks and drain for one named node; a managed
    /// worker is then removed (unless `keep_cordoned`), any other node is left cordoned.
    pub fn drain_named(&mut self, node: &str, req: &DrainRequest) -> DrainReport {
        let mut rep = DrainReport::new(node, req.dry_run, self.drain.mode);
        let found = match self.cluster.node(node) {
            Ok(Some(n)) => n,
            Ok(None) => {
                rep.error = Some(format!("no node named {node}"));
                rep.exit_code = Exit::Usage.code();
                return rep;
            }
            Err(e) => return rep.failed(e.to_string()),
        };
        rep.kept_because = if req.keep_cordoned {
            Some("--keep-cordoned was given".into())
        } else if let Some(r) = drain::node_unremovable(&found, &self.permanent) {
            Some(r)
        } else {
            match self.containers.is_managed(node) {
                Ok(true) => None,
                Ok(false) => Some("not a k3s-scale worker (no managed container backs it)".into()),
                // Draining a node we cannot classify would leave it cordoned for nothing.
                Err(e) => {
                    return rep.failed(format!(
                        "cannot tell whether {node} is a k3s-scale worker ({e}); nothing was done"
                    ));
                }
            }
        };
        let pods = match self.cluster.pods_on(node) {
            Ok(p) => p,
            Err(e) => return rep.failed(e.to_string()),
        };
        let plan = drain::into_plan(pods);
        rep.skipped = plan
            .skipped
            .iter()
            .map(|(p, why)| format!("{p}: {why}"))
            .collect();
        let found = if req.force {
            Vec::new()
        } else {
            drain::blockers(&plan, None)
        };
        if !found.is_empty() {
            rep.blockers = found.iter().map(ToString::to_string).collect();
            let would = if req.dry_run {
                "would refuse"
            } else {
                "refusing"
            };
            return rep.failed(format!(
                "{would} to drain {node}: {} pod(s) cannot be moved safely (--force drains anyway)",
                found.len()
            ));
        }
        if req.dry_run {
            if self.drain.mode == MoveMode::Evict && !plan.to_move.is_empty() {
                match self.cluster.disruption_budgets() {
                    Ok(pdbs) => {
                        for p in &plan.to_move {
                            if let Some(b) = drain::budget_blocker(p, &pdbs) {
                                rep.waits.push(format!(
                                    "pod {} {b}: the eviction would be retried until drain.timeout",
                                    drain::pod_key(p)
                                ));
                            }
                        }
                    }
                    Err(e) => rep
                        .waits
                        .push(format!("cannot list PodDisruptionBudgets: {e}")),
                }
            }
            rep.evicted = plan.names();
            rep.removed = rep.kept_because.is_none();
            rep.exit_code = if rep.removed {
                Exit::ScaledDown
            } else {
                Exit::Nothing
            }
            .code();
            return rep;
        }
        let recheck = if req.force {
            Recheck::Nothing
        } else {
            Recheck::Pods
        };
        match drain_node(self.cluster.as_ref(), node, &self.drain, recheck) {
            Err(f) => {
                rep.evicted = f.moved.clone();
                rep.not_moved = f
                    .not_moved
                    .iter()
                    .map(|(p, why)| format!("{p}: {why}"))
                    .collect();
                rep.node_left = Some(f.node_left.clone());
                rep.failed(f.to_string())
            }
            Ok(d) => {
                rep.evicted = d.moved;
                if rep.kept_because.is_some() {
                    // Cordoned on purpose now: not a drain left unfinished.
                    if let Err(e) = self.cluster.clear_drain_mark(node) {
                        log::warn!(
                            "{node} stays cordoned, but its drain mark could not be removed ({e}); \
                             the next evaluate would uncordon it if it is a k3s-scale worker \
                             that was not cordoned before the drain"
                        );
                    }
                    rep.node_left = Some("cordoned".into());
                    rep.exit_code = Exit::Nothing.code();
                    return rep;
                }
                match self.remove_drained(node, d.cordoned_before) {
                    Ok(()) => {
                        rep.removed = true;
                        rep.exit_code = Exit::ScaledDown.code();
                        rep
                    }
                    Err(m) => rep.failed(m),
                }
            }
        }
    }
}

impl ScaleDown {
    /// `Actuator::remove_worker`, for composing with a scale-up side (see `WithScaleDown`).
    pub fn remove_worker(
        &mut self,
        candidates: &[String],
        dry_run: bool,
        report: &mut Report,
    ) -> Result<Removal, ActionFailure> {
        let Choice { chosen, passed } = self.choose(candidates).map_err(|e| ActionFailure {
            done: Vec::new(),
            message: format!("scale-down: {e}"),
        })?;
        report.unremovable.extend(passed);
        let Some(Chosen {
            worker,
            plan,
            ready,
        }) = chosen
        else {
            return Ok(Removal::default());
        };
        let mut drain = self.drain.clone();
        if !ready {
            // A dead kubelet cannot finish its pods: they stay Terminating until the Node
            // is gone, so waiting for them would only run into the drain deadline.
            drain.wait_gone = false;
            let would = if dry_run { "would be" } else { "are" };
            report.notes.push(format!(
                "{worker} is not Ready: its pods {would} evicted and its Node deleted without \
                 waiting for them to terminate (its kubelet cannot finish them)"
            ));
        }
        if dry_run {
            return Ok(Removal {
                removed: Some(worker),
                evicted: plan.names(),
            });
        }
        log::info!("removing {worker}: draining {} pod(s)", plan.to_move.len());
        let drained = match drain_node(self.cluster.as_ref(), &worker, &drain, Recheck::Pods) {
            Ok(d) => d,
            Err(f) => {
                report.evicted = f.moved.clone();
                return Err(ActionFailure {
                    done: f.moved.clone(),
                    message: format!("scale-down: {f}; container kept"),
                });
            }
        };
        if let Err(message) = self.remove_drained(&worker, drained.cordoned_before) {
            report.evicted = drained.moved.clone();
            return Err(ActionFailure {
                done: drained.moved,
                message: format!("scale-down: {message}"),
            });
        }
        Ok(Removal {
            removed: Some(worker),
            evicted: drained.moved,
        })
    }
}

/// A scale-up actuator (Docker) joined with this scale-down into one `Actuator`.
pub struct WithScaleDown<U> {
    pub up: U,
    pub down: ScaleDown,
}

impl<U: Actuator> Actuator for WithScaleDown<U> {
    fn start_workers(&mut self, names: &[String]) -> Result<(), ActionFailure> {
        self.up.start_workers(names)
    }

    fn use_model(&mut self, model: Rc<ClusterModel>) {
        self.down.use_model(model);
    }

    fn remove_worker(
        &mut self,
        candidates: &[String],
        dry_run: bool,
        report: &mut Report,
    ) -> Result<Removal, ActionFailure> {
        self.down.remove_worker(candidates, dry_run, report)
    }
}

/// The flags of `k3s-scale drain NODE`.
#[derive(Debug, Clone, Default)]
pub struct DrainRequest {
    pub keep_cordoned: bool,
    pub force: bool,
    pub dry_run: bool,
}

/// What `drain NODE` did (or would do).
#[derive(Debug, Clone, Serialize)]
pub struct DrainReport {
    pub node: String,
    pub dry_run: bool,
    /// "eviction" or "delete" (`--disable-eviction`).
    pub mode: &'static str,
    /// Why the node is not removed after the drain; absent when it is (would be) removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_because: Option<String>,
    pub removed: bool,
    /// Pods evicted (or that would be).
    pub evicted: Vec<String>,
    /// Pods left in place, and why.
    pub skipped: Vec<String>,
    /// Pods that make the drain refuse (without `--force`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<String>,
    /// Dry run: evictions a PodDisruptionBudget would hold up now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waits: Vec<String>,
    /// Pods a failed drain did not move, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_moved: Vec<String>,
    /// How the node was left ("cordoned", "uncordoned", ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_left: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub exit_code: u8,
}

impl DrainReport {
    fn new(node: &str, dry_run: bool, mode: MoveMode) -> DrainReport {
        DrainReport {
            node: node.to_string(),
            dry_run,
            mode: match mode {
                MoveMode::Evict => "eviction",
                MoveMode::Delete => "delete",
            },
            kept_because: None,
            removed: false,
            evicted: Vec::new(),
            skipped: Vec::new(),
            blockers: Vec::new(),
            waits: Vec::new(),
            not_moved: Vec::new(),
            node_left: None,
            error: None,
            exit_code: 0,
        }
    }

    fn failed(mut self, message: String) -> DrainReport {
        self.error = Some(message);
        // Asked to stop by a signal: 8, as `RunError::Stopped`; a deadline is 5, a failure.
        self.exit_code = match crate::state::stop::why() {
            Some(crate::state::stop::Stop::Signal(_)) => Exit::Stopped,
            _ => Exit::Action,
        }
        .code();
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("drain report always serializes")
    }

    pub fn to_text(&self) -> String {
        let would = if self.dry_run { "would " } else { "" };
        let verb = if self.mode == "delete" {
            "delete"
        } else {
            "evict"
        };
        let mut out = String::new();
        for p in &self.evicted {
            out.push_str(&format!("  {would}{verb} {p}\n"));
        }
        for p in &self.skipped {
            out.push_str(&format!("  leave {p}\n"));
        }
        for b in &self.blockers {
            out.push_str(&format!("  blocked: {b}\n"));
        }
        for w in &self.waits {
            out.push_str(&format!("  wait: {w}\n"));
        }
        for n in &self.not_moved {
            out.push_str(&format!("  not moved: {n}\n"));
        }
        let n = &self.node;
        let head = match (&self.error, self.dry_run, &self.kept_because) {
            // The pods are listed below; the full message is in the log and the JSON.
            (Some(_), _, _) if !self.not_moved.is_empty() => format!(
                "error: drain of {n} failed: {} pod(s) not moved\n",
                self.not_moved.len()
            ),
            (Some(e), _, _) => format!("error: {e}\n"),
            (None, true, None) => format!(
                "would drain {n} ({} pod(s)), then remove it: stop its container, delete its Node, remove container and volume\n",
                self.evicted.len()
            ),
            (None, true, Some(why)) => format!(
                "would drain {n} ({} pod(s)) and leave it cordoned; not removed: {why}; nothing would be deleted\n",
                self.evicted.len()
            ),
            (None, false, None) => format!(
                "drained {n} ({} pod(s) evicted) and removed it: container stopped, Node deleted, container and volume removed\n",
                self.evicted.len()
            ),
            (None, false, Some(why)) => format!(
                "drained {n} ({} pod(s) evicted); left cordoned, not removed: {why}; nothing was deleted\n",
                self.evicted.len()
            ),
        };
        let mut text = head + &out;
        if self.error.is_some()
            && let Some(left) = &self.node_left
        {
            text.push_str(&format!("  node {left}\n"));
        }
        text
    }
}
