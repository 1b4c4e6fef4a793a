//! One run, joining the plan to the outside systems: `evaluate` (lock, state, one query,
//! reconcile, decide, act, save), `up --count N`, the scale-down and `drain NODE` on
//! Kubernetes, and the `Actuator` interface that carries a plan out, with the executor that
//! implements it on Docker and Kubernetes. Also the run's report and its error kinds with
//! their exit codes. May use every layer below: `signals`, `kube`, `docker`, `plan`,
//! `state`, `config`.

pub mod docker_side;
pub mod error;
pub mod evaluate;
pub mod executor;
pub mod exit;
pub mod report;
pub mod scale_down;
pub mod scale_up;
pub mod up;

use crate::config::Config;
use crate::kube::events::Notice;
use crate::plan::cluster::ClusterModel;
use crate::plan::decide::Action;
use crate::plan::model::ClusterFacts;
use crate::plan::reconcile::{Repair, WorkerContainer, WorkerNode};
use crate::plan::worker_hosts::Placement;
use crate::state::PostedEvent;
use crate::state::time::Timestamp;
use error::RunError;
// Defined beside the report that prints it, which then needs nothing of this file.
pub use report::HostSeen;
use report::Report;
use std::path::PathBuf;
use std::rc::Rc;

/// An action that failed part-way: what it did manage, and why it stopped.
#[derive(Debug)]
pub struct ActionFailure {
    pub done: Vec<String>,
    pub message: String,
}

/// This pool's workers as the outside systems list them.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub containers: Vec<WorkerContainer>,
    pub nodes: Vec<WorkerNode>,
    /// What the API adds to the cluster model (constraints), when it was listed.
    pub facts: Option<ClusterFacts>,
    /// Every Docker host and whether its workers could be listed (the error if not).
    pub hosts: Vec<HostSeen>,
}

impl Observed {
    /// The Docker hosts whose workers could not be listed: nothing of theirs is repaired.
    pub fn unlisted(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| !h.up)
            .map(|h| h.name.clone())
            .collect()
    }
}

/// The worker numbers the Docker hosts still carry, whatever the state file says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexSeen {
    pub highest: Option<u64>,
    /// Hosts that could not be listed: their numbers are unknown.
    pub unlisted: Vec<String>,
}

/// The actuator of a run, made on first use (it connects to Docker and Kubernetes).
pub struct ActuatorCell<'f> {
    make: &'f mut dyn FnMut() -> Result<Box<dyn Actuator>, RunError>,
    made: Option<Box<dyn Actuator>>,
}

impl<'f> ActuatorCell<'f> {
    pub fn new(make: &'f mut dyn FnMut() -> Result<Box<dyn Actuator>, RunError>) -> Self {
        ActuatorCell { make, made: None }
    }

    /// The actuator if it was made already.
    pub fn made(&mut self) -> Option<&mut (dyn Actuator + 'static)> {
        self.made.as_deref_mut()
    }

    pub fn get(&mut self) -> Result<&mut dyn Actuator, RunError> {
        if self.made.is_none() {
            self.made = Some((self.make)()?);
        }
        Ok(self.made.as_deref_mut().expect("just made"))
    }
}

/// What a scale-down did.
#[derive(Debug, Default)]
pub struct Removal {
    /// The worker removed; None when every candidate was unremovable.
    pub removed: Option<String>,
    pub evicted: Vec<String>,
}

/// Carries out plans on Docker and Kubernetes. Implementations leave nothing half-made.
pub trait Actuator {
    /// This pool's workers as Docker and Kubernetes list them, for drift repair. None when
    /// the actuator cannot look (then reconcile is skipped).
    fn observe(&mut self) -> Result<Option<Observed>, ActionFailure> {
        Ok(None)
    }
    /// Carries out one repair (never called in dry-run).
    fn repair(&mut self, repair: &Repair) -> Result<(), ActionFailure> {
        Err(ActionFailure {
            done: Vec::new(),
            message: format!(
                "cannot {}: no Docker or Kubernetes client",
                repair.describe()
            ),
        })
    }
    /// The highest worker number still in use by a container or volume, whatever the state
    /// file says (it may be fresh or reset); None when there is none or nothing to ask.
    fn highest_worker_index(&mut self) -> Result<IndexSeen, ActionFailure> {
        Ok(IndexSeen::default())
    }
    /// Which Docker host each of `count` new workers goes to (`plan::worker_hosts`); fewer
    /// than `count` when the hosts lack room. Read-only. Without hosts to choose from,
    /// every worker goes to the one host there is (named "").
    fn place(&mut self, count: u32) -> Result<Placement, ActionFailure> {
        Ok(Placement {
            hosts: vec![String::new(); count as usize],
            ..Placement::default()
        })
    }
    /// Starts workers with these names; on failure, the ones that started are in `done`.
    fn start_workers(&mut self, names: &[String]) -> Result<(), ActionFailure>;
    /// Starts each worker on the host `place` chose for it (`hosts[i]` for `names[i]`).
    fn start_placed(&mut self, names: &[String], hosts: &[String]) -> Result<(), ActionFailure> {
        let _ = hosts;
        self.start_workers(names)
    }
    /// Adds the pending pods' constraints and the DaemonSets' overhead to the facts
    /// `observe` gave; asked only when the snapshot has unschedulable pods.
    fn pending_facts(&mut self, _facts: &mut ClusterFacts) -> Result<(), String> {
        Ok(())
    }
    /// The run's cluster model, handed over before `remove_worker`: a candidate whose pods
    /// fit on no other node in it is unremovable. Without one, no fit check is made.
    fn use_model(&mut self, _model: Rc<ClusterModel>) {}
    /// Removes the first removable of the candidates (best first), noting in the report
    /// the ones passed over and the pods evicted. In dry-run, only reports.
    fn remove_worker(
        &mut self,
        candidates: &[String],
        dry_run: bool,
        report: &mut Report,
    ) -> Result<Removal, ActionFailure>;
    /// Writes Kubernetes Events for these notices, best effort (never called in dry-run),
    /// updating the rate-limit memo. Where there is no Kubernetes client, nothing.
    fn write_events(
        &mut self,
        _notices: &[Notice],
        _posted: &mut Vec<PostedEvent>,
        _now: Timestamp,
    ) {
    }
}

/// Saves the state where a run must have it on disk (a no-op in dry-run and in `simulate`).
/// Here, beside `Context`, because evaluate and scale_up (which evaluate calls) both take it.
pub type Save<'a> = dyn FnMut(&crate::state::State) -> Result<(), crate::state::StateError> + 'a;

pub struct Context<'a> {
    pub config: &'a Config,
    pub state_path: PathBuf,
    pub dry_run: bool,
    pub now: Timestamp,
}

/// A run's result: its report, the error that ended it early if any, and what it still
/// holds (the lock, the state as saved) for what comes after it under the same lock.
pub struct Outcome {
    pub report: Report,
    pub error: Option<RunError>,
    pub held: Held,
}

/// What a run hands back: its lock, still held, and the state as it saved it; None where
/// the run never got that far, or where the state on disk is not what it holds (a save
/// that failed: its counters would be ones the next run never sees).
#[derive(Default)]
pub struct Held {
    pub lock: Option<crate::state::lock::RunLock>,
    pub state: Option<crate::state::State>,
}

impl Outcome {
    pub fn exit(&self) -> exit::Exit {
        use exit::Exit;
        match &self.error {
            Some(e) => e.exit(),
            None => match self.report.action {
                Action::ScaleUp if self.report.count > 0 => Exit::ScaledUp,
                Action::ScaleDown if !self.report.removed.is_empty() => Exit::ScaledDown,
                _ => Exit::Nothing,
            },
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.exit().code()
    }
}

/// Stands in where no Docker or Kubernetes client is configured: a dry run reports the
/// best candidate, a real run refuses.
pub struct PlanOnly;

impl Actuator for PlanOnly {
    fn start_workers(&mut self, _names: &[String]) -> Result<(), ActionFailure> {
        Err(ActionFailure {
            done: Vec::new(),
            message: "no Docker client in this build: cannot start workers".into(),
        })
    }

    fn remove_worker(
        &mut self,
        candidates: &[String],
        dry_run: bool,
        _report: &mut Report,
    ) -> Result<Removal, ActionFailure> {
        if dry_run {
            return Ok(Removal {
                removed: candidates.first().cloned(),
                evicted: Vec::new(),
            });
        }
        Err(ActionFailure {
            done: Vec::new(),
            message: "no Kubernetes client in this build: cannot remove workers".into(),
        })
    }
}
