//! The simulation loop: a virtual clock stepping by the timer interval; at each step the
//! simulated cluster moves on (pods come and go, workers join, the scheduler places), then
//! one run goes through `run::evaluate::decide_and_act`, the very function `evaluate` runs
//! after its lock, state and query, with the simulated snapshot and actuator and a state
//! kept in memory (no file, no lock). Each step is recorded for the timeline, the summary
//! and the chart.

use super::scenario::Scenario;
use super::world::{SimActuator, World};
use crate::config::Config;
use crate::plan::decide::{Action, Plan};
use crate::plan::snapshot::Snapshot;
use crate::run::error::RunError;
use crate::run::evaluate::decide_and_act;
use crate::run::report::Report;
use crate::run::{Actuator, ActuatorCell, Context};
use crate::state::State;
use crate::state::time::Timestamp;
use serde::Serialize;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

/// One run of the simulation.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Seconds from the scenario's start.
    pub t: u64,
    pub action: Action,
    pub count: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub started: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Workers after the run: every container, booting or Ready.
    pub workers: usize,
    pub ready: usize,
    /// Pending pods the run saw.
    pub pending: usize,
    /// CPU and memory requested over allocatable of the Ready workers, percent.
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<String>,
}

impl Step {
    pub fn acted(&self) -> bool {
        !self.started.is_empty() || !self.removed.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupWait {
    pub name: String,
    pub pods: u32,
    /// Offset of the group's start, seconds.
    pub start: u64,
    /// Longest time one of its pods waited for a node, seconds (None: some never ran).
    pub waited: Option<u64>,
    /// Pods that never got a node while they were wanted.
    pub never_placed: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub peak_workers: usize,
    pub final_workers: usize,
    /// Runs that started workers, and how many they started.
    pub scale_ups: u32,
    pub workers_added: u32,
    pub scale_downs: u32,
    /// Removals followed by an addition within `scale_down_unneeded_time`.
    pub flaps: u32,
    /// Sum over time of the workers that existed (booting ones too).
    pub worker_hours: f64,
    pub evicted_pods: u64,
    /// How long each pod group waited for capacity.
    pub groups: Vec<GroupWait>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    /// Wall-clock time of offset 0.
    pub epoch: Timestamp,
    pub interval: u64,
    pub steps: Vec<Step>,
    pub summary: Summary,
}

/// What a step hands to an observer (tests): the snapshot as the decision saw it (with the
/// constraints reconcile merges in), the state before the run, the run's clock and the
/// plan `decide_and_act` decided.
pub struct Seen<'a> {
    pub snapshot: &'a Snapshot,
    pub state_before: &'a State,
    pub state_after: &'a State,
    pub world_before: &'a World,
    pub now: Timestamp,
    pub plan: &'a Plan,
    pub report: &'a Report,
}

pub fn simulate(
    scenario: &Scenario,
    cfg: &Config,
    epoch: Timestamp,
) -> Result<Simulation, RunError> {
    simulate_observed(scenario, cfg, epoch, None)
}

/// `simulate`, with each step shown to `observe` when given (cloning the state and world,
/// so only tests ask for it).
pub fn simulate_observed(
    scenario: &Scenario,
    cfg: &Config,
    epoch: Timestamp,
    mut observe: Option<&mut dyn FnMut(&Seen)>,
) -> Result<Simulation, RunError> {
    let world = Rc::new(RefCell::new(World::new(scenario, cfg, epoch)));
    let mut state = State {
        next_worker_index: u64::from(scenario.workers) + 1,
        ..State::fresh()
    };
    let interval = scenario.interval;
    let runs = (scenario.duration.as_secs() / interval.as_secs().max(1)) as usize;
    let mut steps = Vec::with_capacity(runs);
    let mut worker_secs = 0.0;
    let mut make = || -> Result<Box<dyn Actuator>, RunError> {
        Ok(Box::new(SimActuator::new(Rc::clone(&world))))
    };
    for k in 0..runs {
        let t = interval * k as u32;
        world.borrow_mut().advance(t);
        let (snap, observed, now, before) = {
            let w = world.borrow();
            let before = observe.as_ref().map(|_| (w.clone(), state.clone()));
            (w.snapshot(), w.observed(), w.now(), before)
        };
        let shown = observe.as_ref().map(|_| {
            let mut s = snap.clone();
            s.cluster = observed.facts.clone();
            s
        });
        let ctx = Context {
            config: cfg,
            state_path: PathBuf::new(),
            dry_run: false,
            now,
        };
        let mut cell = ActuatorCell::new(&mut make);
        let mut report = Report::new(false);
        let pending = snap.unschedulable.as_ref().map_or(0, Vec::len);
        let (cpu, memory) = (snap.cpu, snap.memory);
        let plan = decide_and_act(
            &ctx,
            &mut state,
            snap,
            Ok(Some(observed)),
            &mut cell,
            &mut report,
            &mut |_| Ok(()),
        )?;
        drop(cell);
        if let (Some(f), Some((w, s)), Some(snapshot)) = (observe.as_mut(), &before, &shown) {
            f(&Seen {
                snapshot,
                state_before: s,
                state_after: &state,
                world_before: w,
                now,
                plan: &plan,
                report: &report,
            });
        }
        let w = world.borrow();
        worker_secs += w.workers() as f64 * interval.as_secs_f64();
        steps.push(Step {
            t: t.as_secs(),
            action: report.action.clone(),
            count: report.count,
            started: report.started.clone(),
            removed: report.removed.clone(),
            workers: w.workers(),
            ready: w.ready_workers(),
            pending,
            cpu,
            memory,
            reasons: report.reasons.clone(),
            blocked_by: report.blocked_by.clone(),
        });
    }
    let w = world.borrow();
    let summary = summarise(scenario, cfg, &steps, &w, worker_secs);
    Ok(Simulation {
        epoch,
        interval: interval.as_secs(),
        steps,
        summary,
    })
}

fn summarise(
    scenario: &Scenario,
    cfg: &Config,
    steps: &[Step],
    world: &World,
    worker_secs: f64,
) -> Summary {
    let ups: Vec<u64> = steps
        .iter()
        .filter(|s| !s.started.is_empty())
        .map(|s| s.t)
        .collect();
    let downs: Vec<u64> = steps
        .iter()
        .filter(|s| !s.removed.is_empty())
        .map(|s| s.t)
        .collect();
    let window = cfg.scaling.scale_down_unneeded_time.get().as_secs();
    let flaps = flaps(&downs, &ups, window);
    let groups = scenario
        .pods
        .iter()
        .enumerate()
        .map(|(gi, g)| {
            let mut waited = Some(0u64);
            let mut never = 0;
            for p in world.pods.iter().filter(|p| p.group == gi) {
                match p.first_bound {
                    Some(b) => {
                        waited = waited.map(|w| w.max(b.saturating_sub(p.start).as_secs()));
                    }
                    None => never += 1,
                }
            }
            GroupWait {
                name: g.name.clone(),
                pods: g.count,
                start: g.start.as_secs(),
                waited: if never > 0 { None } else { waited },
                never_placed: never,
            }
        })
        .collect();
    Summary {
        runs: steps.len(),
        peak_workers: steps.iter().map(|s| s.workers).max().unwrap_or(0),
        final_workers: steps.last().map_or(world.workers(), |s| s.workers),
        scale_ups: ups.len() as u32,
        workers_added: steps.iter().map(|s| s.started.len() as u32).sum(),
        scale_downs: downs.len() as u32,
        flaps,
        worker_hours: (worker_secs / 3600.0 * 100.0).round() / 100.0,
        evicted_pods: world.evicted,
        groups,
    }
}

/// Removals followed by an addition within `window` seconds: capacity given back and
/// bought again, the churn a too-short unneeded time causes.
pub fn flaps(downs: &[u64], ups: &[u64], window: u64) -> u32 {
    downs
        .iter()
        .filter(|&&d| ups.iter().any(|&u| u > d && u - d <= window))
        .count() as u32
}

/// `HH:MM:SS` from the scenario's start (`Nd HH:MM:SS` past a day).
pub fn offset(t: u64) -> String {
    let (d, r) = (t / 86_400, t % 86_400);
    let hms = format!("{:02}:{:02}:{:02}", r / 3600, r % 3600 / 60, r % 60);
    if d > 0 { format!("{d}d {hms}") } else { hms }
}

/// The scenario's start as the runs see it when none is given: a fixed instant, so two
/// runs of one scenario print the same.
pub fn default_epoch() -> Timestamp {
    Timestamp::parse("2026-01-01T00:00:00Z").expect("a valid instant")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flaps_table() {
        // (removals, additions, window, flaps)
        let table: &[(&[u64], &[u64], u64, u32)] = &[
            (&[], &[10], 600, 0),
            (&[100], &[50], 600, 0),
            (&[100], &[700], 600, 1),
            (&[100], &[701], 600, 0),
            (&[100, 200], &[300], 600, 2),
        ];
        for (d, u, w, want) in table {
            assert_eq!(flaps(d, u, *w), *want, "{d:?} {u:?}");
        }
    }

    #[test]
    fn offsets() {
        assert_eq!(offset(0), "00:00:00");
        assert_eq!(offset(3661), "01:01:01");
        assert_eq!(offset(90_000), "1d 01:00:00");
    }
}
