//! Scale-up carried out: names for the new workers (never one still in use), their Docker
//! hosts as placement chose them, the write-ahead of the counter and the workers about to
//! start, the starts, and the records (cooldown; back-off on a failure, none on a stop).
//! `evaluate` and `up` both start workers through here.

use super::{ActuatorCell, Context, Save};
use crate::plan::names;
use crate::plan::worker_hosts::Placement;
use crate::run::error::RunError;
use crate::run::report::Report;
use crate::state::stop::{self, Stop};
use crate::state::time::Timestamp;
use crate::state::{Provisioning, State, record_failed_scale_up, record_scale_up};

/// Starts `count` workers (in dry-run, only names them) on the hosts placement picks, and
/// records the result in the state; `up` uses it too. Workers no host has room for are
/// not started, and the report says why.
pub(crate) fn scale_up(
    ctx: &Context,
    state: &mut State,
    count: u32,
    cell: &mut ActuatorCell,
    report: &mut Report,
) -> Result<(), RunError> {
    scale_up_with(ctx, state, count, cell, report, &mut |s| {
        s.save(&ctx.state_path)
    })
}

/// `scale_up` with the write-ahead save handed in (`simulate` writes no file).
pub(crate) fn scale_up_with(
    ctx: &Context,
    state: &mut State,
    count: u32,
    cell: &mut ActuatorCell,
    report: &mut Report,
    save: &mut Save,
) -> Result<(), RunError> {
    let prefix = &ctx.config.docker.name_prefix;
    if ctx.dry_run {
        let mut names = names::worker_names(prefix, state.next_worker_index, count);
        // Placement is read-only: show it when the hosts can be asked.
        if let Ok(a) = cell.get()
            && let Ok(p) = a.place(count)
        {
            names.truncate(p.hosts.len());
            note_placement(report, &names, &p, count);
        }
        log::info!("dry run: would start {}", names.join(", "));
        report.started = names;
        return Ok(());
    }
    let now = ctx.now;
    let actuator = match cell.get() {
        Ok(a) => a,
        Err(e) => {
            record_failed_scale_up(state, now, &e.to_string());
            return Err(e);
        }
    };
    // A fresh or reset state must not hand out a name a container or volume still has.
    let seen = match actuator.highest_worker_index() {
        Ok(h) => h,
        Err(f) => {
            record_failed_scale_up(state, now, &f.message);
            return Err(RunError::Action(f.message));
        }
    };
    if !seen.unlisted.is_empty() && state.next_worker_index <= 1 {
        // The counter knows nothing and a host's numbers are unknown: a name could come
        // back. Wait for the host (or its removal from docker.hosts).
        let m = format!(
            "the state's worker counter is new and Docker host(s) {} cannot be listed, so a \
             worker name there could be handed out again; starting none until they answer",
            seen.unlisted.join(", ")
        );
        record_failed_scale_up(state, now, &m);
        return Err(RunError::Action(m));
    }
    let placement = match actuator.place(count) {
        Ok(p) => p,
        Err(f) => {
            record_failed_scale_up(state, now, &f.message);
            return Err(RunError::Action(f.message));
        }
    };
    let placed = placement.hosts.len() as u32;
    let first = names::next_free_index(state.next_worker_index, seen.highest);
    let names = names::worker_names(prefix, first, placed);
    note_placement(report, &names, &placement, count);
    if placed == 0 {
        log::warn!("no worker started: no Docker host has room");
        return Ok(());
    }
    // Written ahead, before anything is created: the moved counter and the workers about
    // to start are on disk, so a run killed half-way never hands a name out twice and
    // leaves no container the next run does not know (an entry whose container never
    // came is forgotten by reconcile).
    state.next_worker_index = first + u64::from(placed);
    for (name, host) in names.iter().zip(&placement.hosts) {
        state.provisioning.push(Provisioning {
            name: name.clone(),
            started_at: now,
            host: (!host.is_empty()).then(|| host.clone()),
        });
    }
    if let Err(e) = save(state) {
        state.provisioning.retain(|p| !names.contains(&p.name));
        return Err(RunError::State(e));
    }
    report.started = names.clone();
    match actuator.start_placed(&names, &placement.hosts) {
        Ok(()) => {
            record_scale_up(state, now, &names);
            Ok(())
        }
        Err(f) => {
            state
                .provisioning
                .retain(|p| !names.contains(&p.name) || f.done.contains(&p.name));
            report.started = f.done.clone();
            report.count = f.done.len() as u32;
            if !f.done.is_empty() {
                record_scale_up(state, now, &f.done);
            }
            // A stop is no failure of the workers: no back-off, the next run decides anew.
            if let Some(why) = stop::why() {
                log::warn!("{}", f.message);
                return Err(stopped_scale_up(why, &names, &f.done));
            }
            // The back-off runs from when the failure happened, not from the run's start.
            record_failed_scale_up(state, now.max(Timestamp::now()), &f.message);
            Err(RunError::Action(f.message))
        }
    }
}

/// A scale-up cut short by a stop: which workers started, which did not.
fn stopped_scale_up(why: Stop, names: &[String], started: &[String]) -> RunError {
    let not: Vec<&str> = names
        .iter()
        .filter(|n| !started.contains(n))
        .map(String::as_str)
        .collect();
    let started = if started.is_empty() {
        "none".to_string()
    } else {
        started.join(", ")
    };
    RunError::Stopped {
        why,
        during: format!(
            "the scale-up: started {started}; not started: {}",
            not.join(", ")
        ),
    }
}

/// Puts where each worker goes, and why any did not fit, into the report.
fn note_placement(report: &mut Report, names: &[String], p: &Placement, wanted: u32) {
    for (name, host) in names.iter().zip(&p.hosts) {
        if !host.is_empty() {
            report.hosts.insert(name.clone(), host.clone());
        }
    }
    report.count = names.len() as u32;
    if p.unplaced > 0 {
        report.blocked_by.push(format!(
            "{} of {wanted} worker(s) not started: no Docker host has room ({})",
            p.unplaced,
            p.why.join("; ")
        ));
    }
}
