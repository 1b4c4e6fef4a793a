//! `k3s-scale status`: the config in brief, cooldowns and when they end, since-when the
//! cluster has been idle, workers provisioning, totals and recent events.

use crate::cli::OutputFormat;
use crate::config::Config;
use crate::plan::reconcile::Repair;
use crate::plan::worker_hosts::{HostFacts, WorkerSize, room};
use crate::run::Observed;
use crate::state::State;
use crate::state::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

struct Wait {
    name: &'static str,
    since: Option<Timestamp>,
    length: Duration,
}

fn waits(cfg: &Config, state: &State) -> Vec<Wait> {
    vec![
        Wait {
            name: "scale_up_cooldown",
            since: state.last_scale_up,
            length: cfg.limits.scale_up_cooldown.get(),
        },
        Wait {
            name: "scale_down_cooldown",
            since: state.last_scale_down,
            length: cfg.limits.scale_down_cooldown.get(),
        },
        Wait {
            name: "scale_down_delay_after_scale_up",
            since: state.last_scale_up,
            length: cfg.scaling.scale_down_delay_after_scale_up.get(),
        },
        Wait {
            name: "scale_up_failure_backoff",
            since: state.last_scale_up_failure,
            length: cfg.scaling.failure_backoff.get(),
        },
        Wait {
            name: "scale_down_failure_backoff",
            since: state.last_scale_down_failure,
            length: cfg.scaling.failure_backoff.get(),
        },
    ]
}

/// What Docker and Kubernetes say about this pool's workers, what reconcile would repair,
/// and each Docker host's facts; or why they could not be asked.
pub type Workers = Result<(Observed, Vec<Repair>, Vec<HostFacts>), String>;

/// One Docker host as `status` shows it.
#[derive(Serialize)]
struct HostRow<'a> {
    name: &'a str,
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    cpus: Option<f64>,
    memory: Option<u64>,
    /// k3s-scale workers of every pool on it, and the limits they add up to.
    workers: u32,
    used_cpus: f64,
    used_memory: u64,
    max_workers: Option<u32>,
    /// Workers of this pool's size that still fit.
    room: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    no_room: Option<String>,
}

fn host_rows<'a>(cfg: &Config, obs: &'a Observed, facts: &'a [HostFacts]) -> Vec<HostRow<'a>> {
    let size = WorkerSize {
        cpus: cfg.docker.cpus,
        memory: cfg.docker.memory.0,
    };
    facts
        .iter()
        .map(|f| {
            let seen = obs.hosts.iter().find(|h| h.name == f.name);
            let room = room(f, size, cfg.docker.overcommit);
            HostRow {
                name: &f.name,
                reachable: f.capacity.is_some() && seen.is_none_or(|h| h.up),
                error: seen.and_then(|h| h.error.as_deref()),
                cpus: f.capacity.map(|c| c.0),
                memory: f.capacity.map(|c| c.1),
                workers: f.workers,
                used_cpus: f.used_cpus,
                used_memory: f.used_memory,
                max_workers: f.max_workers,
                room: *room.as_ref().unwrap_or(&0),
                no_room: room.err(),
            }
        })
        .collect()
}

/// Workers by name: container state and Node state side by side.
fn side_by_side(obs: &Observed) -> Vec<(String, String, String)> {
    let mut names: BTreeMap<&str, (String, String)> = BTreeMap::new();
    for c in &obs.containers {
        let state = c.state.as_str().to_string();
        names
            .entry(&c.name)
            .or_insert_with(|| ("-".into(), "no Node".into()))
            .0 = state;
    }
    for n in &obs.nodes {
        names
            .entry(&n.name)
            .or_insert_with(|| ("no container".into(), "-".into()))
            .1 = if n.ready {
            "Ready".into()
        } else {
            "NotReady".into()
        };
    }
    names
        .into_iter()
        .map(|(n, (c, k))| (n.to_string(), c, k))
        .collect()
}

pub fn render(
    cfg: &Config,
    state_path: &Path,
    state: &State,
    now: Timestamp,
    fmt: OutputFormat,
    workers: &Workers,
) -> String {
    let waits = waits(cfg, state);
    match fmt {
        OutputFormat::Json => json(cfg, state_path, state, now, &waits, workers),
        OutputFormat::Text => {
            let mut out = String::new();
            text_config(&mut out, cfg, state_path);
            text_waits(&mut out, &waits, now);
            text_idle(&mut out, cfg, state);
            text_totals(&mut out, state);
            match workers {
                Ok((obs, repairs, facts)) => {
                    text_hosts(&mut out, cfg, obs, facts);
                    text_workers(&mut out, obs, repairs);
                }
                Err(e) => out.push_str(&format!("workers: cannot list ({e})\n")),
            }
            text_events(&mut out, state);
            out
        }
    }
}

/// `--output json`: one object.
fn json(
    cfg: &Config,
    state_path: &Path,
    state: &State,
    now: Timestamp,
    waits: &[Wait],
    workers: &Workers,
) -> String {
    let v = serde_json::json!({
        "state_path": state_path.display().to_string(),
        "limits": {"min_nodes": cfg.limits.min_nodes, "max_nodes": cfg.limits.max_nodes},
        "thresholds": cfg.thresholds,
        "prometheus": cfg.prometheus.url,
        "waits": waits_json(waits, now),
        "low_since": state.low_since.map(|t| t.to_string()),
        "unneeded_until": state.low_since.map(|t| t.plus(cfg.scaling.scale_down_unneeded_time.get()).to_string()),
        "provisioning": state.provisioning,
        "next_worker": format!("{}-{}", cfg.docker.name_prefix, state.next_worker_index),
        "totals": state.totals,
        "events": state.events,
        "docker_hosts": match workers {
            Ok((obs, _, facts)) => serde_json::json!(host_rows(cfg, obs, facts)),
            Err(_) => serde_json::Value::Null,
        },
        "workers": match workers {
            Ok((obs, _, _)) => worker_rows_json(obs),
            Err(e) => serde_json::json!({"error": e}),
        },
        "would_repair": match workers {
            Ok((_, r, _)) => serde_json::json!(r.iter().map(Repair::describe).collect::<Vec<_>>()),
            Err(_) => serde_json::Value::Null,
        },
    });
    format!("{v}\n")
}

/// Each wait, when it ends and whether it is running.
fn waits_json(waits: &[Wait], now: Timestamp) -> serde_json::Map<String, serde_json::Value> {
    waits
        .iter()
        .map(|w| {
            let end = w.since.map(|s| s.plus(w.length));
            (
                w.name.to_string(),
                serde_json::json!({
                    "until": end.map(|e| e.to_string()),
                    "active": end.is_some_and(|e| now < e),
                }),
            )
        })
        .collect()
}

/// This pool's workers, container and Node side by side, with the Docker host of each.
fn worker_rows_json(obs: &Observed) -> serde_json::Value {
    serde_json::json!(
        side_by_side(obs)
            .into_iter()
            .map(|(n, c, k)| {
                let host = obs
                    .containers
                    .iter()
                    .find(|x| x.name == n)
                    .map(|x| x.host.clone());
                serde_json::json!({"name": n, "container": c, "node": k, "host": host})
            })
            .collect::<Vec<_>>()
    )
}

/// The config in one line, and where the state is.
fn text_config(out: &mut String, cfg: &Config, state_path: &Path) {
    let t = &cfg.thresholds;
    out.push_str(&format!(
        "config: workers {}..{}, scale up at pending>={} cpu>={}% memory>={}%, \
         down below cpu {}% memory {}%; prometheus {}\n",
        cfg.limits.min_nodes,
        cfg.limits.max_nodes,
        t.pending_pods,
        t.cpu_threshold,
        t.memory_threshold,
        t.cpu_scale_down,
        t.memory_scale_down,
        cfg.prometheus.url
    ));
    out.push_str(&format!("state: {}\n", state_path.display()));
}

/// Each cooldown and back-off: running until when, ended, or never started.
fn text_waits(out: &mut String, waits: &[Wait], now: Timestamp) {
    for w in waits {
        match w.since.map(|s| s.plus(w.length)) {
            Some(end) if now < end => out.push_str(&format!(
                "  {:<32} active until {end} ({}s left)\n",
                w.name,
                end.since(now).as_secs()
            )),
            Some(end) => out.push_str(&format!("  {:<32} ended {end}\n", w.name)),
            None => out.push_str(&format!("  {:<32} never started\n", w.name)),
        }
    }
}

/// Since when the signals have been low, and the workers still provisioning.
fn text_idle(out: &mut String, cfg: &Config, state: &State) {
    match state.low_since {
        Some(s) => out.push_str(&format!(
            "  signals low since {s}; scale-down allowed from {}\n",
            s.plus(cfg.scaling.scale_down_unneeded_time.get())
        )),
        None => out.push_str("  signals not low (or not known) at the last run\n"),
    }
    if state.provisioning.is_empty() {
        out.push_str("  no workers provisioning\n");
    }
    for p in &state.provisioning {
        out.push_str(&format!(
            "  provisioning {} since {} (times out {})\n",
            p.name,
            p.started_at,
            p.started_at.plus(cfg.scaling.provision_timeout.get())
        ));
    }
}

fn text_totals(out: &mut String, state: &State) {
    let tot = &state.totals;
    out.push_str(&format!(
        "totals: {} runs, {} scale-ups (+{}), {} scale-downs (-{}), {} failed up, {} failed down, {} pods evicted, {} repairs\n",
        tot.runs, tot.scale_ups, tot.workers_added, tot.scale_downs, tot.workers_removed,
        tot.failed_scale_ups, tot.failed_scale_downs, tot.evicted_pods, tot.repairs
    ));
}

/// Each Docker host: unreachable, or its capacity, the workers on it and the room left.
fn text_hosts(out: &mut String, cfg: &Config, obs: &Observed, facts: &[HostFacts]) {
    out.push_str("Docker hosts:\n");
    for h in host_rows(cfg, obs, facts) {
        if !h.reachable {
            out.push_str(&format!(
                "  {:<16} unreachable ({})\n",
                h.name,
                h.error.unwrap_or("its capacity could not be read")
            ));
            continue;
        }
        let max = h
            .max_workers
            .map_or(String::new(), |m| format!(" (max {m})"));
        out.push_str(&format!(
            "  {:<16} reachable; {} CPUs, {}; {} k3s-scale worker(s){max} taking {} CPUs, {}; room for {} more{}\n",
            h.name,
            crate::run::report::trim_float(h.cpus.unwrap_or_default()),
            crate::config::units::Bytes(h.memory.unwrap_or_default()),
            h.workers,
            crate::run::report::trim_float(h.used_cpus),
            crate::config::units::Bytes(h.used_memory),
            h.room,
            h.no_room.map_or(String::new(), |w| format!(" ({w})")),
        ));
    }
}

/// This pool's workers, container and Node side by side, and what reconcile would repair.
fn text_workers(out: &mut String, obs: &Observed, repairs: &[Repair]) {
    out.push_str("workers (container / node):\n");
    let rows = side_by_side(obs);
    if rows.is_empty() {
        out.push_str("  none managed by this pool\n");
    }
    let several = obs.hosts.len() > 1;
    for (n, c, k) in rows {
        let host = if several {
            let h = obs.containers.iter().find(|x| x.name == n);
            format!(" on {:<12}", h.map_or("?", |x| x.host.as_str()))
        } else {
            String::new()
        };
        out.push_str(&format!("  {n:<24}{host} {c:<14} {k}\n"));
    }
    for r in repairs {
        out.push_str(&format!("  reconcile would: {}\n", r.describe()));
    }
}

/// The last ten events, newest first.
fn text_events(out: &mut String, state: &State) {
    out.push_str("recent events:\n");
    if state.events.is_empty() {
        out.push_str("  none\n");
    }
    for e in state.events.iter().rev().take(10) {
        out.push_str(&format!("  {} {:<18} {}\n", e.at, e.kind, e.message));
    }
}
