//! The metrics of a one-shot program: after every `evaluate` run, a Prometheus text-format
//! file for node-exporter's textfile collector, written atomically (temp file + rename).
//! Gauges describe the last run; counters come from `State::totals`, so they survive runs
//! and only ever count what happened.

use crate::config::Config;
use crate::config::files::{self, FileError, Folder};
use crate::plan::decide::Action;
use crate::plan::snapshot::Snapshot;
use crate::run::Held;
use crate::run::exit::Exit;
use crate::run::report::Report;
use crate::state::time::Timestamp;
use crate::state::{State, Totals};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Every metric name starts with this.
pub const PREFIX: &str = "k3s_scale_";
/// node-exporter runs as an unprivileged user and must read the file; it holds no secret.
pub const TEXTFILE_MODE: u32 = 0o644;
/// Error kinds that a run can count (`State::count_error`); exported as 0 until they
/// happen, so `increase()` sees the first one.
pub const COUNTED_ERROR_KINDS: [&str; 2] = ["action", "metrics"];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("{}", write_message(.0))]
    Write(#[source] FileError),
}

/// `MetricsError::Write`'s message: an I/O failure names the file it could not write.
fn write_message(e: &FileError) -> String {
    match e {
        FileError::Io(p, e) => format!("cannot write metrics textfile {}: {e}", p.display()),
        e => format!("metrics textfile: {e}"),
    }
}

/// What the textfile describes: one finished run.
pub struct RunRecord<'a> {
    pub config: &'a Config,
    pub report: &'a Report,
    /// None when the state could not be read: the counters are then left out, not zeroed.
    pub state: Option<&'a State>,
    pub exit_code: u8,
    pub finished_at: Timestamp,
    pub duration: Duration,
}

impl RunRecord<'_> {
    /// Exit codes 0, 10 and 11 are successful runs; every other code is a failure.
    pub fn success(&self) -> bool {
        [Exit::Nothing, Exit::ScaledUp, Exit::ScaledDown]
            .iter()
            .any(|e| e.code() == self.exit_code)
    }

    /// What the run carried out, which is not always what it planned.
    pub fn action_taken(&self) -> Action {
        if !self.report.started.is_empty() {
            Action::ScaleUp
        } else if !self.report.removed.is_empty() {
            Action::ScaleDown
        } else {
            Action::None
        }
    }
}

fn action_label(a: &Action) -> &'static str {
    match a {
        Action::None => "none",
        Action::ScaleUp => "scale_up",
        Action::ScaleDown => "scale_down",
    }
}

/// Prometheus text format for a sample value.
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Builds the text one metric family at a time (the format wants a family's samples together).
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(self.0, "# TYPE {PREFIX}{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        let _ = write!(self.0, "{PREFIX}{name}");
        if !labels.is_empty() {
            let body: Vec<String> = labels
                .iter()
                .map(|(k, val)| format!("{k}=\"{}\"", escape_label(val)))
                .collect();
            let _ = write!(self.0, "{{{}}}", body.join(","));
        }
        let _ = writeln!(self.0, " {}", value(v));
    }

    fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], v);
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], v as f64);
    }
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Renders the textfile for one run, one section after the other.
pub fn render(run: &RunRecord) -> String {
    let mut o = Out(String::with_capacity(4096));
    last_run(&mut o, run);
    last_action(&mut o, run);
    let signals = signals(&mut o, run.report);
    settings(&mut o, run.config);
    docker_hosts(&mut o, run.report);
    // Worker counts exist only when the run could count the nodes.
    let nodes_known = signals
        .iter()
        .any(|(name, v)| *name == "ready_workers" && v.is_some());
    if nodes_known {
        workers(&mut o, run.report);
    }
    if let Some(state) = run.state {
        totals(&mut o, &state.totals);
        errors(&mut o, &state.totals);
        last_changes(&mut o, state);
    }
    o.0
}

/// Which k3s-scale wrote the file, and how its last run went.
fn last_run(o: &mut Out, run: &RunRecord) {
    o.family(
        "info",
        "gauge",
        "Always 1; the version label says which k3s-scale wrote this file.",
    );
    o.sample("info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    o.gauge(
        "last_run_timestamp_seconds",
        "When the last evaluate run ended, in seconds since the Unix epoch.",
        (run.finished_at.as_millis() as f64 / 1000.0).floor(),
    );
    o.gauge(
        "last_run_success",
        "1 when the last run ended with exit code 0, 10 or 11; 0 when it failed.",
        flag(run.success()),
    );
    o.gauge(
        "last_run_exit_code",
        "Exit code of the last run (see `k3s-scale --help`).",
        f64::from(run.exit_code),
    );
    o.gauge(
        "last_run_duration_seconds",
        "Wall-clock time the last run took.",
        run.duration.as_secs_f64(),
    );
}

/// What the last run carried out, and what its decision asked for.
fn last_action(o: &mut Out, run: &RunRecord) {
    let report = run.report;
    let taken = run.action_taken();
    o.family(
        "last_action",
        "gauge",
        "1 for the action the last run carried out (scale_up, scale_down or none), 0 for the others.",
    );
    for a in [Action::ScaleUp, Action::ScaleDown, Action::None] {
        o.sample(
            "last_action",
            &[("action", action_label(&a))],
            flag(a == taken),
        );
    }
    o.family(
        "last_decision",
        "gauge",
        "1 for the action the last run's decision asked for, 0 for the others; differs from \
         last_action when the action failed or every scale-down candidate was unremovable.",
    );
    for a in [Action::ScaleUp, Action::ScaleDown, Action::None] {
        o.sample(
            "last_decision",
            &[("action", action_label(&a))],
            flag(a == report.action),
        );
    }
}

/// Each signal the run decided on, and whether it was known; returned for the sections
/// that depend on them.
fn signals<'r>(o: &mut Out, report: &'r Report) -> Vec<(&'r str, Option<f64>)> {
    // Signals: a run that never got a snapshot knows none of them.
    let signals: Vec<(&str, Option<f64>)> = if report.signals.is_empty() {
        Snapshot::default().signals()
    } else {
        report.signals.iter().map(|(k, v)| (*k, *v)).collect()
    };
    o.family(
        "signal",
        "gauge",
        "Each signal the last run decided on (pending_pods: pods; pending_cpu_cores: cores; \
         pending_memory_bytes: bytes; cpu, memory: percent of allocatable; *_workers: nodes). \
         No sample when the signal is unknown.",
    );
    for (name, v) in &signals {
        if let Some(v) = v {
            o.sample("signal", &[("signal", name)], *v);
        }
    }
    o.family(
        "signal_known",
        "gauge",
        "1 when the last run knew the signal, 0 when Prometheus had no data for it.",
    );
    for (name, v) in &signals {
        o.sample("signal_known", &[("signal", name)], flag(v.is_some()));
    }
    signals
}

/// The configured thresholds and limits.
fn settings(o: &mut Out, config: &Config) {
    let t = &config.thresholds;
    o.family(
        "threshold",
        "gauge",
        "Configured thresholds by signal; direction up: scale up at or above, down: scale \
         down only below.",
    );
    for (signal, direction, v) in [
        ("pending_pods", "up", f64::from(t.pending_pods)),
        ("cpu", "up", t.cpu_threshold),
        ("cpu", "down", t.cpu_scale_down),
        ("memory", "up", t.memory_threshold),
        ("memory", "down", t.memory_scale_down),
    ] {
        o.sample(
            "threshold",
            &[("signal", signal), ("direction", direction)],
            v,
        );
    }
    let l = &config.limits;
    o.family(
        "workers_limit",
        "gauge",
        "Configured limits.min_nodes (bound=min) and limits.max_nodes (bound=max).",
    );
    o.sample("workers_limit", &[("bound", "min")], f64::from(l.min_nodes));
    o.sample("workers_limit", &[("bound", "max")], f64::from(l.max_nodes));
}

/// Each Docker host, up or not: present once the run listed the pool's workers (no sample
/// otherwise).
fn docker_hosts(o: &mut Out, report: &Report) {
    if !report.docker_hosts.is_empty() {
        o.family(
            "docker_host_up",
            "gauge",
            "1 when the last run could list this pool's workers on the Docker host, 0 when it \
             could not (its workers are then neither placed on, repaired nor removed).",
        );
        for h in &report.docker_hosts {
            o.sample("docker_host_up", &[("host", &h.name)], flag(h.up));
        }
    }
}

/// The workers counted, by state, and the pending pods no worker could run.
fn workers(o: &mut Out, report: &Report) {
    let w = &report.workers;
    o.family(
        "workers",
        "gauge",
        "Workers by state at the last run; provisioning ones that registered but are not \
         Ready are also counted as unready.",
    );
    o.sample("workers", &[("state", "ready")], f64::from(w.ready));
    o.sample("workers", &[("state", "unready")], f64::from(w.unready));
    o.sample(
        "workers",
        &[("state", "provisioning")],
        f64::from(w.provisioning),
    );
    o.gauge(
        "workers_counted",
        "Workers counted toward min_nodes/max_nodes: registered plus still booting.",
        f64::from(w.total),
    );
    o.gauge(
        "unhelpable_pods",
        "Pending pods the last run found no worker could run (too big, a constraint no \
         worker meets, or still pending after a worker for them joined); they neither \
         scale up nor hold a scale-down.",
        report.unhelpable.len() as f64,
    );
}

/// The running totals of the state file.
fn totals(o: &mut Out, tot: &Totals) {
    o.counter(
        "runs_total",
        "Evaluate runs that got past the lock and the state.",
        tot.runs,
    );
    o.counter(
        "scale_ups_total",
        "Scale-ups that started at least one worker.",
        tot.scale_ups,
    );
    o.counter(
        "scale_downs_total",
        "Scale-downs that removed a worker.",
        tot.scale_downs,
    );
    o.counter("workers_added_total", "Workers started.", tot.workers_added);
    o.counter(
        "workers_removed_total",
        "Workers removed.",
        tot.workers_removed,
    );
    o.counter(
        "failed_scale_ups_total",
        "Scale-ups that failed.",
        tot.failed_scale_ups,
    );
    o.counter(
        "failed_scale_downs_total",
        "Scale-downs that failed.",
        tot.failed_scale_downs,
    );
    o.counter(
        "evicted_pods_total",
        "Pods evicted by drains.",
        tot.evicted_pods,
    );
    o.counter(
        "repairs_total",
        "Drift repaired by reconciliation.",
        tot.repairs,
    );
}

/// Failed runs by kind, the kinds a run can count at 0 until they happen.
fn errors(o: &mut Out, tot: &Totals) {
    o.family("errors_total", "counter", "Failed runs by kind of error.");
    let mut kinds: Vec<(&str, u64)> = COUNTED_ERROR_KINDS
        .iter()
        .filter(|k| !tot.errors.contains_key(**k))
        .map(|k| (*k, 0))
        .collect();
    kinds.extend(tot.errors.iter().map(|(k, v)| (k.as_str(), *v)));
    kinds.sort();
    for (kind, n) in kinds {
        o.sample("errors_total", &[("kind", kind)], n as f64);
    }
}

/// When the last scale-up and scale-down happened.
fn last_changes(o: &mut Out, state: &State) {
    for (name, help, at) in [
        (
            "last_scale_up_timestamp_seconds",
            "When the last scale-up happened, in seconds since the Unix epoch.",
            state.last_scale_up,
        ),
        (
            "last_scale_down_timestamp_seconds",
            "When the last scale-down happened, in seconds since the Unix epoch.",
            state.last_scale_down,
        ),
    ] {
        if let Some(at) = at {
            o.gauge(name, help, (at.as_millis() as f64 / 1000.0).floor());
        }
    }
}

/// Writes the textfile atomically: node-exporter reads either the old file or the new one.
/// The temp file starts with a dot and does not end in `.prom`, so the collector skips it.
/// The folder may be shared with node-exporter's setup: a link at the textfile's name is
/// replaced, never written through, and the temp file is created exclusively.
pub fn write_textfile(path: &Path, text: &str) -> Result<(), MetricsError> {
    files::write_atomically(path, text.as_bytes(), TEXTFILE_MODE, Folder::Shared)
        .map_err(MetricsError::Write)
}

/// After an `evaluate` run, still under its lock: writes the textfile when
/// `metrics.textfile` is set, from the state the run saved (`Held`; without one, the
/// metrics have no counters). Skipped when the run never got the lock (exit 3): the run
/// that holds it writes a newer file.
pub fn after_run(
    config: &Config,
    held: &Held,
    report: &Report,
    exit_code: u8,
    duration: Duration,
) -> Result<(), MetricsError> {
    let Some(path) = &config.metrics.textfile else {
        return Ok(());
    };
    if exit_code == Exit::Locked.code() || held.lock.is_none() {
        log::debug!("lock held by another run; it writes the metrics");
        return Ok(());
    }
    if held.state.is_none() {
        log::debug!("metrics without counters: the state was not loaded or not saved");
    }
    let text = render(&RunRecord {
        config,
        report,
        state: held.state.as_ref(),
        exit_code,
        finished_at: Timestamp::now(),
        duration,
    });
    write_textfile(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_labels_use_the_text_format_spelling() {
        assert_eq!(value(f64::NAN), "NaN");
        assert_eq!(value(f64::INFINITY), "+Inf");
        assert_eq!(value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(value(80.0), "80");
        assert_eq!(value(0.25), "0.25");
        assert_eq!(escape_label("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
    #[test]
    fn a_write_error_names_the_textfile_and_hands_out_its_cause() {
        use std::error::Error;
        let path = std::path::PathBuf::from("/t/k3s-scale.prom");
        let cases = [
            (
                MetricsError::Write(FileError::Io(path.clone(), std::io::Error::other("full"))),
                "cannot write metrics textfile /t/k3s-scale.prom: full",
                "/t/k3s-scale.prom: full",
            ),
            (
                MetricsError::Write(FileError::Refused {
                    path,
                    reason: "it is a folder, not a file".into(),
                }),
                "metrics textfile: refusing /t/k3s-scale.prom: it is a folder, not a file",
                "refusing /t/k3s-scale.prom: it is a folder, not a file",
            ),
        ];
        for (e, message, source) in cases {
            assert_eq!(e.to_string(), message);
            assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some(source));
        }
    }
}
