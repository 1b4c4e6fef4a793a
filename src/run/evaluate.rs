//! One `evaluate` run: lock, state, snapshot, decision, actions (the scale-up in
//! `scale_up`), state save. The outside systems come in through `MetricsSource` and
//! `Actuator`, so this flow is tested without them and the real clients are tested
//! against the real services.

use super::{Actuator, ActuatorCell, Context, Held, Observed, Outcome, Save};
use crate::kube::events::{About, Notice};
use crate::plan::cluster::ClusterModel;
use crate::plan::decide::{Action, decide_with};
use crate::plan::model::ClusterFacts;
use crate::plan::reconcile::{self, Repair};
use crate::plan::snapshot::Snapshot;
use crate::plan::view::{self, Listing};
use crate::run::error::RunError;
use crate::run::report::Report;
use crate::signals::MetricsSource;
use crate::state::lock::RunLock;
use crate::state::stop;
use crate::state::time::Timestamp;
use crate::state::{
    State, finish_unfinished, record_failed_scale_down, record_scale_down, write_ahead,
};
use std::rc::Rc;

/// The Events a run's outcome calls for, as cluster-autoscaler writes them: on the pods a
/// scale-up started workers for, that it did (TriggeredScaleUp); on each pod no worker can
/// help, why (NotTriggerScaleUp); on the other unschedulable pods, when their rule fired
/// but something held the scale-up back, what (NotTriggerScaleUp); on the node removed,
/// that it was (ScaleDown), or on the one whose removal failed, why (ScaleDownFailed, a
/// Warning). Only from what the run knows: the plan and the report of what was done.
pub fn notices(
    plan: &crate::plan::decide::Plan,
    report: &Report,
    failure: Option<&str>,
) -> Vec<Notice> {
    let mut out = Vec::new();
    let scaled_up = plan.action == Action::ScaleUp && !report.started.is_empty();
    if scaled_up && !plan.memory.scale_up_for.is_empty() {
        out.push(Notice {
            about: About::Pods(plan.memory.scale_up_for.clone()),
            reason: "TriggeredScaleUp",
            message: format!(
                "pod triggered scale-up: k3s-scale started {} worker(s): {}",
                report.started.len(),
                report.started.join(", ")
            ),
            warning: false,
        });
    }
    let mut unhelpable = Vec::new();
    for u in &plan.unhelpable {
        unhelpable.push(u.pod.clone());
        out.push(Notice {
            about: About::Pods(vec![u.pod.clone()]),
            reason: "NotTriggerScaleUp",
            message: format!("pod didn't trigger scale-up: {}", u.why),
            warning: false,
        });
    }
    if !scaled_up && plan.pending_fired && !plan.blocked_by.is_empty() {
        out.push(Notice {
            about: About::PendingPods { except: unhelpable },
            reason: "NotTriggerScaleUp",
            message: format!(
                "pod didn't trigger scale-up: {}",
                plan.blocked_by.join("; ")
            ),
            warning: false,
        });
    }
    if plan.action == Action::ScaleDown {
        if let Some(node) = report.removed.first() {
            out.push(Notice {
                about: About::Node(node.clone()),
                reason: "ScaleDown",
                message: format!(
                    "node removed by k3s-scale ({}): drained ({} pod(s) evicted), container \
                     stopped, Node deleted, container and volume removed",
                    plan.reasons.join("; "),
                    report.evicted.len()
                ),
                warning: false,
            });
        } else if let Some(why) = failure {
            // The candidate that was being removed: the first not passed over.
            let tried = plan
                .candidates
                .iter()
                .find(|c| !report.unremovable.iter().any(|u| u.node == **c));
            if let Some(node) = tried {
                out.push(Notice {
                    about: About::Node(node.clone()),
                    reason: "ScaleDownFailed",
                    message: format!("failed to remove the node: {why}"),
                    warning: true,
                });
            }
        }
    }
    out
}

pub fn evaluate(
    ctx: &Context,
    source: &dyn MetricsSource,
    actuator: &mut dyn FnMut() -> Result<Box<dyn Actuator>, RunError>,
) -> Outcome {
    let mut report = Report::new(ctx.dry_run);
    let mut held = Held::default();
    match run(ctx, source, actuator, &mut report, &mut held) {
        Ok(()) => Outcome {
            report,
            error: None,
            held,
        },
        Err(e) => {
            report.error = Some(e.to_string());
            if matches!(e, RunError::State(_) | RunError::Unsaved { .. }) {
                held.state = None;
            }
            Outcome {
                report,
                error: Some(e),
                held,
            }
        }
    }
}

fn run(
    ctx: &Context,
    source: &dyn MetricsSource,
    make_actuator: &mut dyn FnMut() -> Result<Box<dyn Actuator>, RunError>,
    report: &mut Report,
    held: &mut Held,
) -> Result<(), RunError> {
    let cfg = ctx.config;
    // A dry run writes nothing, not even the lock file; it only reads the state.
    if !ctx.dry_run {
        held.lock = Some(RunLock::acquire(&cfg.state.lock_path)?);
    }
    let state = held.state.insert(State::load(&ctx.state_path)?);
    let now = ctx.now;

    // Reconcile's Docker and Kubernetes listings are taken while Prometheus answers:
    // neither needs the other. (Used only once the snapshot is there.)
    let mut cell = ActuatorCell::new(make_actuator);
    let mut observed = None;
    let snap = source.snapshot_while(&mut || observed = Some(observe(&mut cell)));
    let snap = match snap {
        Ok(s) => s,
        Err(e) => {
            let e = RunError::Metrics(e);
            if !ctx.dry_run {
                // Counted; no cooldown changes. The idle timer restarts: the signals were
                // not seen low during the outage, so the unneeded time starts again.
                state.low_since = None;
                state.unneeded_since.clear();
                state.totals.runs += 1;
                state.count_error(e.kind());
                state.record(now, "error", e.to_string());
                state.save(&ctx.state_path)?;
            }
            return Err(e);
        }
    };
    let observed = observed.unwrap_or_else(|| observe(&mut cell));
    let mut save = |s: &State| {
        if ctx.dry_run {
            Ok(())
        } else {
            s.save(&ctx.state_path)
        }
    };
    decide_and_act(ctx, state, snap, observed, &mut cell, report, &mut save).map(|_| ())
}

/// The part of a run after the lock, the state and the snapshot: reconcile's repairs from
/// what the actuator listed (`observed`), the decision on the cluster model, the state's
/// transitions (joined workers leave provisioning, the plan's per-worker and per-pod
/// memory, idle timer), the action through the actuator and its records (scale-up with the
/// pods it is for, scale-down, cooldown and back-off). `evaluate` and `simulate` both run
/// this one function; they differ only in the actuator, the snapshot and `save`.
/// Returns the plan as decided (before a failed repair held a scale-down).
pub fn decide_and_act(
    ctx: &Context,
    state: &mut State,
    snap: Snapshot,
    observed: Result<Option<Observed>, RunError>,
    cell: &mut ActuatorCell,
    report: &mut Report,
    save: &mut Save,
) -> Result<crate::plan::decide::Plan, RunError> {
    let cfg = ctx.config;
    let now = ctx.now;
    let mut repairs = Vec::new();
    let mut reconcile_note = None;
    if let Ok(Some(o)) = &observed {
        report.docker_hosts = o.hosts.clone();
    }
    // A time in the future (a clock stepped back, a copied state) would hold a cooldown
    // or a booting worker for as long: each is taken as now, and said.
    let mut warnings = crate::state::clock::clamp_future(state, now);
    // An action a killed run wrote ahead and never finished: judged by what is there now.
    let listed = match &observed {
        Ok(Some(o)) if o.unlisted().is_empty() => Some(
            o.containers
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>(),
        ),
        _ => None,
    };
    warnings.extend(finish_unfinished(state, listed.as_deref()));
    for w in &warnings {
        log::warn!("{w}");
    }
    let reconciled = match reconcile_run(ctx, state, cell, observed, &mut repairs, save) {
        Ok(r) => r,
        Err(e) if ctx.dry_run => {
            // A dry run still decides: say that drift was not looked at.
            reconcile_note = Some(format!("reconcile skipped: {e}"));
            Reconciled::default()
        }
        Err(e) => {
            state.totals.runs += 1;
            state.count_error(e.kind());
            let kind = match e {
                RunError::Stopped { .. } => "stopped",
                _ => "error",
            };
            state.record(now, kind, e.to_string());
            save(state)?;
            report.repairs = repairs;
            return Err(e);
        }
    };
    let Reconciled {
        observed,
        applied,
        failed: repair_failed,
    } = reconciled;
    let (snap, disagreements) = match observed {
        Some(mut o) => {
            let facts = pending_facts(&snap, o.facts.take(), cell);
            let listing = Listing {
                containers: &o.containers,
                nodes: &o.nodes,
                hosts: o.hosts.len(),
            };
            view::compose(snap, Some(listing), &applied, facts)
        }
        None => view::compose(snap, None, &[], None),
    };
    for d in &disagreements {
        log::info!("{d}");
    }
    let model = Rc::new(ClusterModel::build(&snap, cfg));
    let mut plan = decide_with(&snap, &model, state, cfg, now);
    let decided = plan.clone();
    if let Some(m) = &repair_failed
        && plan.action == Action::ScaleDown
    {
        // Something is off with a worker we could not repair: remove no capacity now.
        plan.action = Action::None;
        plan.count = 0;
        plan.candidates.clear();
        plan.blocked_by
            .push(format!("a repair failed this run ({m})"));
    }
    *report = std::mem::replace(report, Report::new(ctx.dry_run)).with_plan(&snap, &plan);
    report.repairs = repairs;
    if let Some(note) = reconcile_note {
        report.blocked_by.push(note);
    }
    report.notes.extend(warnings);
    report.notes.extend(disagreements);
    state.low_since = plan.low_since;
    remember(state, &plan);
    state
        .provisioning
        .retain(|p| !plan.joined.contains(&p.name));
    for name in &plan.joined {
        log::info!("worker {name} is Ready; provisioning done");
    }
    state.totals.runs += 1;

    // Asked to stop (or out of time) before acting: nothing more starts.
    let stopped = (plan.action != Action::None).then(stop::why).flatten();
    let result = match plan.action {
        _ if stopped.is_some() => Err(RunError::Stopped {
            why: stopped.expect("checked"),
            during: format!(
                "the run, before its {} (nothing was done)",
                match plan.action {
                    Action::ScaleUp => "scale-up",
                    _ => "scale-down",
                }
            ),
        }),
        Action::None => Ok(()),
        Action::ScaleUp => {
            super::scale_up::scale_up_with(ctx, state, plan.count, cell, report, save).map(|()| {
                // The pods these workers are for: still pending once they joined, they are
                // backed off rather than scaled for again.
                if !report.started.is_empty() {
                    for pod in &plan.memory.scale_up_for {
                        state.scaled_for.insert(pod.clone(), report.started.clone());
                    }
                }
            })
        }
        Action::ScaleDown => {
            if let Ok(a) = cell.get() {
                a.use_model(Rc::clone(&model));
            }
            scale_down(ctx, state, &plan.candidates, cell, report, save)
        }
    };
    // A failed repair fails the run (exit 5) even when the scale-up went through.
    let result = result.and_then(|()| match repair_failed {
        Some(m) => Err(RunError::Action(format!("a repair failed: {m}"))),
        None => Ok(()),
    });
    if let Err(e) = &result {
        state.count_error(e.kind());
        if matches!(e, RunError::Stopped { .. }) {
            state.record(now, "stopped", e.to_string());
        }
    }
    if !ctx.dry_run {
        let failure = result.as_ref().err().map(|e| e.to_string());
        let notes = notices(&plan, report, failure.as_deref());
        // Only where the run already has its clients: Events never connect on their own.
        // A run asked to stop (or out of time) makes no further call, Events included.
        if !notes.is_empty()
            && stop::why().is_none()
            && let Some(actuator) = cell.made()
        {
            actuator.write_events(&notes, &mut state.posted, now);
        }
    }
    if let Err(e) = save(state) {
        let done = acted(report);
        return Err(if done.is_empty() {
            RunError::State(e)
        } else {
            RunError::Unsaved { done, error: e }
        });
    }
    result.map(|()| decided)
}

/// What this run changed outside, as the report has it (empty in a dry run): named when
/// the state cannot be saved afterwards.
fn acted(report: &Report) -> Vec<String> {
    if report.dry_run {
        return Vec::new();
    }
    let mut done = Vec::new();
    if !report.started.is_empty() {
        done.push(format!("started {}", report.started.join(", ")));
    }
    if !report.evicted.is_empty() {
        done.push(format!("evicted {} pod(s)", report.evicted.len()));
    }
    if !report.removed.is_empty() {
        done.push(format!("removed {}", report.removed.join(", ")));
    }
    let repaired: Vec<&str> = report
        .repairs
        .iter()
        .filter(|r| !r.starts_with("FAILED: "))
        .map(String::as_str)
        .collect();
    if !repaired.is_empty() {
        done.push(format!("repaired: {}", repaired.join(", ")));
    }
    done
}

/// The API's facts with the pending pods' constraints, asked of the API only when the
/// snapshot has an unschedulable pod that is not a DaemonSet's. A failure leaves the model
/// on resources only (the decision says so), never fails the run.
fn pending_facts(
    snap: &Snapshot,
    facts: Option<ClusterFacts>,
    cell: &mut ActuatorCell,
) -> Option<ClusterFacts> {
    let wanted = snap
        .unschedulable
        .as_ref()
        .is_some_and(|pods| pods.iter().any(|p| !p.daemonset));
    let mut facts = facts?;
    if !wanted {
        return Some(facts);
    }
    let asked = match cell.get() {
        Ok(a) => a.pending_facts(&mut facts),
        Err(e) => Err(e.to_string()),
    };
    match asked {
        Ok(()) => Some(facts),
        Err(e) => {
            log::warn!("cluster model without the API's constraints: {e}");
            None
        }
    }
}

/// What reconcile leaves for the view: the listing (None when nothing could be listed),
/// the repairs that took effect (all of them in a dry run: the decision sees the pool as
/// they would leave it), and the first repair that failed.
#[derive(Default)]
struct Reconciled {
    observed: Option<Observed>,
    applied: Vec<Repair>,
    failed: Option<String>,
}

/// Repairs drift before deciding: from this pool's containers and Nodes as listed
/// (`observed`), plans repairs, carries them out (dry-run: only lists them) and records
/// them.
fn reconcile_run(
    ctx: &Context,
    state: &mut State,
    cell: &mut ActuatorCell,
    observed: Result<Option<Observed>, RunError>,
    listed: &mut Vec<String>,
    save: &mut Save,
) -> Result<Reconciled, RunError> {
    let Some(observed) = observed? else {
        return Ok(Reconciled::default());
    };
    let actuator = cell.get()?;
    let unlisted = observed.unlisted();
    for h in observed.hosts.iter().filter(|h| !h.up) {
        log::warn!(
            "Docker host {} cannot be listed ({}): its workers are neither repaired nor removed this run",
            h.name,
            h.error.as_deref().unwrap_or("no answer")
        );
    }
    // The API can see a worker Ready before Prometheus does: it is done booting.
    if !ctx.dry_run {
        let joined = reconcile::joined(&observed.nodes, state);
        state
            .provisioning
            .retain(|p| !joined.contains(&p.name.as_str()));
    }
    let repairs = reconcile::plan_repairs(
        &observed.containers,
        &observed.nodes,
        state,
        ctx.config,
        ctx.now,
        &unlisted,
    );
    // Written ahead: a repair that removes must be on disk before it starts, and if the
    // state cannot be written, none is made (a full disk must not cost a worker per run).
    let changes = repairs.iter().any(|r| !matches!(r, Repair::Adopt { .. }));
    if !ctx.dry_run && changes {
        let names: Vec<String> = repairs.iter().map(|r| r.name().to_string()).collect();
        write_ahead(state, ctx.now, "repair", &names);
        if let Err(e) = save(state) {
            state.acting = None;
            return Err(RunError::State(e));
        }
    }
    let mut done = Vec::new();
    let mut failed = None;
    let mut stopped = None;
    for (i, r) in repairs.iter().enumerate() {
        let text = r.describe();
        if ctx.dry_run {
            listed.push(text);
            continue;
        }
        if let Some(why) = stop::why() {
            let left: Vec<&str> = repairs[i..].iter().map(|r| r.name()).collect();
            stopped = Some(RunError::Stopped {
                why,
                during: format!(
                    "the repairs: {} of {} tried, none started for {}",
                    i,
                    repairs.len(),
                    left.join(", ")
                ),
            });
            break;
        }
        match actuator.repair(r) {
            Ok(()) => {
                log::warn!("repaired: {text}");
                listed.push(text);
                done.push(r.clone());
            }
            Err(f) => {
                log::error!("repair failed: {text}: {}", f.message);
                listed.push(format!("FAILED: {text}: {}", f.message));
                failed.get_or_insert(f.message);
            }
        }
    }
    if !ctx.dry_run {
        state.acting = None;
        reconcile::record(state, &done, ctx.now);
    }
    if let Some(e) = stopped {
        return Err(e);
    }
    Ok(Reconciled {
        observed: Some(observed),
        applied: if ctx.dry_run { repairs } else { done },
        failed,
    })
}

/// This pool's workers as Docker and Kubernetes list them (connecting on first use).
fn observe(cell: &mut ActuatorCell) -> Result<Option<Observed>, RunError> {
    cell.get()?
        .observe()
        .map_err(|f| RunError::Action(format!("cannot reconcile: {}", f.message)))
}

/// The per-worker and per-pod memory the plan hands over for the next run.
fn remember(state: &mut State, plan: &crate::plan::decide::Plan) {
    let m = &plan.memory;
    state.unneeded_since = m.unneeded_since.clone();
    state.unready_since = m.unready_since.clone();
    state.fits_since = m.fits_since.clone();
    state.scaled_for = m.scaled_for.clone();
    state.pod_backoff = m.pod_backoff.clone();
}

fn scale_down(
    ctx: &Context,
    state: &mut State,
    candidates: &[String],
    cell: &mut ActuatorCell,
    report: &mut Report,
    save: &mut Save,
) -> Result<(), RunError> {
    let now = ctx.now;
    let actuator = match cell.get() {
        Ok(a) => a,
        Err(e) => {
            if !ctx.dry_run {
                record_failed_scale_down(state, now, &e.to_string());
            }
            return Err(e);
        }
    };
    if !ctx.dry_run {
        // Written ahead of the first cordon: if the state cannot be written (a full or
        // read-only disk), nothing is removed, so the cooldown can never be skipped.
        write_ahead(state, now, "scale_down", candidates);
        if let Err(e) = save(state) {
            state.acting = None;
            return Err(RunError::State(e));
        }
    }
    let removed = actuator.remove_worker(candidates, ctx.dry_run, report);
    state.acting = None;
    match removed {
        Ok(removal) => {
            report.evicted = removal.evicted.clone();
            match removal.removed {
                Some(name) => {
                    report.removed = vec![name.clone()];
                    if !ctx.dry_run {
                        let evicted = removal.evicted.len() as u64;
                        record_scale_down(state, now, &name, evicted, "");
                    }
                }
                None => {
                    report
                        .blocked_by
                        .push("every candidate is unremovable (see unremovable)".to_string());
                }
            }
            Ok(())
        }
        Err(f) => {
            if !ctx.dry_run {
                state.totals.evicted_pods += f.done.len() as u64;
                // Stopped, not failed: no back-off (the drain says how it left the node).
                if let Some(why) = stop::why() {
                    return Err(RunError::Stopped {
                        why,
                        during: format!("the {}", f.message),
                    });
                }
                // A drain can take drain.timeout: the back-off runs from its end.
                record_failed_scale_down(state, now.max(Timestamp::now()), &f.message);
            }
            Err(RunError::Action(f.message))
        }
    }
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
