//! The metrics textfile: its format (checked by `promtool check metrics`), unknown signals
//! left out rather than zeroed, counters taken from the state, atomic 0644 writes, and the
//! real binary writing it after runs that succeed and runs that fail.

mod ops_support;
mod support;

use k3s_scale::cli::metrics::{self, RunRecord};
use k3s_scale::plan::decide::Action;
use k3s_scale::run::report::Report;
use k3s_scale::state::lock::RunLock;
use ops_support::*;
use std::time::Duration;
use support::apiserver;

fn render(report: &Report, state: Option<&k3s_scale::state::State>, exit_code: u8) -> String {
    let cfg = default_config();
    metrics::render(&RunRecord {
        config: &cfg,
        report,
        state,
        exit_code,
        finished_at: k3s_scale::state::time::Timestamp::from_secs(1_800_000_200),
        duration: Duration::from_millis(1250),
    })
}

fn assert_promtool_ok(text: &str) {
    let (ok, out) = promtool_check_metrics(text);
    assert!(
        ok,
        "promtool check metrics failed:\n{out}\n--- file ---\n{text}"
    );
}

#[test]
fn textfile_passes_promtool_check_metrics_in_every_shape() {
    let state = sample_state();
    let mut unknown = sample_report();
    unknown.signals.insert("cpu", None);
    unknown.signals.insert("ready_workers", None);
    let shapes = [
        (
            "successful scale-up",
            render(&sample_report(), Some(&state), 10),
        ),
        (
            "failed before any snapshot",
            render(&Report::new(false), Some(&state), 4),
        ),
        ("state unreadable", render(&Report::new(false), None, 6)),
        ("some signals unknown", render(&unknown, Some(&state), 0)),
    ];
    for (what, text) in &shapes {
        assert!(!text.is_empty(), "{what}");
        assert_promtool_ok(text);
        for fam in families(text) {
            assert!(
                fam.starts_with("k3s_scale_"),
                "{what}: {fam} lacks the prefix"
            );
        }
        assert!(!text.contains("k3s-token") && !text.to_lowercase().contains("token"));
    }
}

#[test]
fn gauges_describe_the_run_and_counters_are_the_state_totals() {
    let text = render(&sample_report(), Some(&sample_state()), 10);
    let v = |s: &str| sample_value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(v("k3s_scale_last_run_timestamp_seconds"), 1_800_000_200.0);
    assert_eq!(v("k3s_scale_last_run_success"), 1.0);
    assert_eq!(v("k3s_scale_last_run_exit_code"), 10.0);
    assert_eq!(v("k3s_scale_last_run_duration_seconds"), 1.25);
    assert_eq!(v(r#"k3s_scale_last_action{action="scale_up"}"#), 1.0);
    assert_eq!(v(r#"k3s_scale_last_action{action="scale_down"}"#), 0.0);
    assert_eq!(v(r#"k3s_scale_last_action{action="none"}"#), 0.0);
    assert_eq!(v(r#"k3s_scale_signal{signal="cpu"}"#), 85.5);
    assert_eq!(
        v(r#"k3s_scale_signal{signal="pending_memory_bytes"}"#),
        3221225472.0
    );
    assert_eq!(v(r#"k3s_scale_signal_known{signal="cpu"}"#), 1.0);
    assert_eq!(
        v(r#"k3s_scale_threshold{signal="cpu",direction="up"}"#),
        80.0
    );
    assert_eq!(
        v(r#"k3s_scale_threshold{signal="memory",direction="down"}"#),
        30.0
    );
    assert_eq!(
        v(r#"k3s_scale_threshold{signal="pending_pods",direction="up"}"#),
        1.0
    );
    assert_eq!(v(r#"k3s_scale_workers_limit{bound="max"}"#), 6.0);
    assert_eq!(v(r#"k3s_scale_workers{state="ready"}"#), 2.0);
    assert_eq!(v(r#"k3s_scale_workers{state="provisioning"}"#), 0.0);
    assert_eq!(v("k3s_scale_workers_counted"), 2.0);
    assert_eq!(v("k3s_scale_unhelpable_pods"), 0.0);
    // Every total distinct in the sample state, so a swapped field shows.
    for (series, want) in [
        ("k3s_scale_runs_total", 41.0),
        ("k3s_scale_scale_ups_total", 3.0),
        ("k3s_scale_scale_downs_total", 2.0),
        ("k3s_scale_workers_added_total", 5.0),
        ("k3s_scale_workers_removed_total", 4.0),
        ("k3s_scale_failed_scale_ups_total", 1.0),
        ("k3s_scale_failed_scale_downs_total", 6.0),
        ("k3s_scale_evicted_pods_total", 7.0),
        ("k3s_scale_repairs_total", 8.0),
        (r#"k3s_scale_errors_total{kind="metrics"}"#, 9.0),
        (r#"k3s_scale_errors_total{kind="action"}"#, 0.0),
        ("k3s_scale_last_scale_up_timestamp_seconds", 1_800_000_000.0),
        (
            "k3s_scale_last_scale_down_timestamp_seconds",
            1_800_000_100.0,
        ),
    ] {
        assert_eq!(v(series), want, "{series}");
    }
}

#[test]
fn unknown_signals_have_no_sample_and_are_marked_unknown() {
    let mut r = sample_report();
    r.signals.insert("cpu", None);
    r.signals.insert("ready_workers", None);
    r.signals.insert("unready_workers", None);
    let text = render(&r, Some(&sample_state()), 0);
    assert!(
        !text.contains(r#"k3s_scale_signal{signal="cpu"}"#),
        "unknown cpu must have no sample:\n{text}"
    );
    assert_eq!(
        sample_value(&text, r#"k3s_scale_signal_known{signal="cpu"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample_value(&text, r#"k3s_scale_signal{signal="memory"}"#),
        Some(40.0)
    );
    assert_eq!(
        sample_value(&text, r#"k3s_scale_signal_known{signal="memory"}"#),
        Some(1.0)
    );
    // Workers could not be counted: no worker gauges at all, rather than zeros.
    assert!(!text.contains("k3s_scale_workers{"), "{text}");
    assert!(!text.contains("k3s_scale_workers_counted "), "{text}");
}

#[test]
fn a_run_that_failed_before_its_snapshot_knows_no_signal_and_keeps_the_counters() {
    let state = sample_state();
    let text = render(&Report::new(false), Some(&state), 4);
    assert_eq!(sample_value(&text, "k3s_scale_last_run_success"), Some(0.0));
    assert_eq!(
        sample_value(&text, "k3s_scale_last_run_exit_code"),
        Some(4.0)
    );
    assert!(!text.contains("k3s_scale_signal{"), "{text}");
    for name in ["pending_pods", "cpu", "memory", "ready_workers"] {
        let series = format!(r#"k3s_scale_signal_known{{signal="{name}"}}"#);
        assert_eq!(sample_value(&text, &series), Some(0.0), "{series}");
    }
    assert_eq!(sample_value(&text, "k3s_scale_runs_total"), Some(41.0));
    assert_eq!(
        sample_value(&text, r#"k3s_scale_last_action{action="none"}"#),
        Some(1.0)
    );
}

#[test]
fn an_unreadable_state_leaves_the_counters_out_instead_of_zeroing_them() {
    let text = render(&Report::new(false), None, 6);
    assert_eq!(
        sample_value(&text, "k3s_scale_last_run_exit_code"),
        Some(6.0)
    );
    assert!(!text.contains("_total"), "{text}");
}

#[test]
fn the_action_taken_is_what_happened_not_what_was_planned() {
    let mut r = sample_report();
    r.started.clear(); // the scale-up was planned but nothing started
    r.exit_code = 5;
    let text = render(&r, Some(&sample_state()), 5);
    assert_eq!(
        sample_value(&text, r#"k3s_scale_last_action{action="none"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample_value(&text, r#"k3s_scale_last_action{action="scale_up"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample_value(&text, r#"k3s_scale_last_decision{action="scale_up"}"#),
        Some(1.0)
    );
    let mut down = Report::new(false);
    down.action = Action::ScaleDown;
    down.removed = vec!["k3s-worker-3".into()];
    let text = render(&down, Some(&sample_state()), 11);
    assert_eq!(
        sample_value(&text, r#"k3s_scale_last_action{action="scale_down"}"#),
        Some(1.0)
    );
}

#[test]
fn the_textfile_is_written_atomically_with_mode_0644() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("textfile");
    let path = dir.join("collector/k3s-scale.prom");
    metrics::write_textfile(&path, "# first\n").unwrap();
    metrics::write_textfile(&path, "k3s_scale_x 1\n").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "k3s_scale_x 1\n");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o644,
        "node-exporter runs unprivileged and must read it"
    );
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["k3s-scale.prom".to_string()],
        "no temp file left behind"
    );
}

// --- the real binary -------------------------------------------------------------------

/// Signal queries that an empty Prometheus answers: two Ready workers at `cpu`% and 20 %
/// memory, `pending` pods, and pending_cpu_cores deliberately without data (unknown).
fn run_config(
    prom_url: &str,
    dir: &TempDir,
    api: &apiserver::ApiServer,
    pending: u32,
    cpu: u32,
) -> std::path::PathBuf {
    std::fs::write(dir.join("token"), "test-join-token\n").unwrap();
    let pool = format!("ops{}", std::process::id());
    let node = |v: &str| {
        format!(
            r#"label_replace(vector({v}), "node", "k3s-agent-1", "", "") or label_replace(vector({v}), "node", "k3s-agent-2", "", "")"#
        )
    };
    let text = format!(
        r#"
prometheus:
  url: {prom_url}
  timeout: 5s
  queries:
    pending_pods: 'vector({pending})'
    pending_cpu_cores: 'vector(1) > 2'
    pending_memory_bytes: 'vector(0)'
    cpu: 'vector({cpu})'
    memory: 'vector(20)'
    node_ready: '{ready}'
    node_cpu: '{ncpu}'
    node_memory: '{nmem}'
docker:
  # The machine's Docker engine, under a pool of this test's own (nothing else is
  # touched); the image does not exist, so a scale-up fails at create and leaves nothing.
  image: k3s-scale-test/no-such-image:0
  pool: {pool}
  name_prefix: {pool}
  token_file: {dir}/token
kubernetes:
  # Every real run lists the pool's Nodes (reconcile): the Kubernetes stand-in answers.
  kubeconfig: {kubeconfig}
  permanent_nodes: [k3s-agent-1, k3s-agent-2]
state:
  path: {dir}/state/state.json
  lock_path: {dir}/state/k3s-scale.lock
metrics:
  textfile: {dir}/textfile/k3s-scale.prom
"#,
        dir = dir.path().display(),
        kubeconfig = api.kubeconfig().display(),
        ready = node("1"),
        ncpu = node(&cpu.to_string()),
        nmem = node("20"),
    );
    let path = dir.join(format!("config-{pending}-{cpu}-{}.yaml", prom_url.len()));
    std::fs::write(&path, text).unwrap();
    path
}

fn evaluate(config: &std::path::Path, extra: &[&str]) -> (u8, String) {
    let out = support::bin()
        .arg("--config")
        .arg(config)
        .args(extra)
        .arg("evaluate")
        .output()
        .unwrap();
    (
        out.status.code().expect("exited, not killed") as u8,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn evaluate_writes_the_textfile_and_its_counters_rise_only_when_things_happen() {
    let prom = TestPrometheus::start("global:\n  scrape_interval: 1m\n", &[]);
    let dir = TempDir::new("e2e");
    let api = apiserver::ApiServer::start();
    let textfile = dir.join("textfile/k3s-scale.prom");
    let quiet = run_config(&prom.url(), &dir, &api, 0, 50);
    let read = || std::fs::read_to_string(&textfile).unwrap();
    let v =
        |text: &str, s: &str| sample_value(text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));

    // 1, 2: nothing to do (at min_nodes, cpu between the thresholds).
    let (code, out) = evaluate(&quiet, &[]);
    assert_eq!(code, 0, "{out}");
    let first = read();
    assert_promtool_ok(&first);
    assert_eq!(v(&first, "k3s_scale_runs_total"), 1.0);
    assert_eq!(v(&first, "k3s_scale_last_run_success"), 1.0);
    assert_eq!(v(&first, r#"k3s_scale_signal{signal="cpu"}"#), 50.0);
    assert_eq!(v(&first, r#"k3s_scale_workers{state="ready"}"#), 2.0);
    assert!(
        !first.contains(r#"k3s_scale_signal{signal="pending_cpu_cores"}"#),
        "{first}"
    );
    assert_eq!(
        v(
            &first,
            r#"k3s_scale_signal_known{signal="pending_cpu_cores"}"#
        ),
        0.0
    );
    let (code, out) = evaluate(&quiet, &[]);
    assert_eq!(code, 0, "{out}");
    let second = read();
    assert_eq!(v(&second, "k3s_scale_runs_total"), 2.0);
    for unchanged in [
        "k3s_scale_scale_ups_total",
        "k3s_scale_scale_downs_total",
        "k3s_scale_workers_added_total",
        "k3s_scale_failed_scale_ups_total",
        r#"k3s_scale_errors_total{kind="metrics"}"#,
        r#"k3s_scale_errors_total{kind="action"}"#,
    ] {
        assert_eq!(
            v(&second, unchanged),
            0.0,
            "{unchanged} moved without a cause"
        );
    }
    assert!(
        v(&second, "k3s_scale_last_run_timestamp_seconds")
            >= v(&first, "k3s_scale_last_run_timestamp_seconds")
    );

    // 3: a dry run writes nothing, not even metrics.
    let (code, out) = evaluate(&quiet, &["--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(read(), second, "a dry run must not touch the textfile");

    // 4: another run holds the lock: exit 3, and it leaves the textfile to that run.
    {
        let _held = RunLock::acquire(&dir.join("state/k3s-scale.lock")).unwrap();
        let (code, out) = evaluate(&quiet, &[]);
        assert_eq!(code, 3, "{out}");
        assert_eq!(read(), second);
    }

    // 5: Prometheus unreachable: exit 4, success 0, one metrics error, no signal samples.
    let dead = run_config(
        &format!("http://127.0.0.1:{}", free_port()),
        &dir,
        &api,
        0,
        50,
    );
    let (code, out) = evaluate(&dead, &[]);
    assert_eq!(code, 4, "{out}");
    let failed = read();
    assert_promtool_ok(&failed);
    assert_eq!(v(&failed, "k3s_scale_last_run_success"), 0.0);
    assert_eq!(v(&failed, "k3s_scale_last_run_exit_code"), 4.0);
    assert_eq!(v(&failed, r#"k3s_scale_errors_total{kind="metrics"}"#), 1.0);
    assert_eq!(v(&failed, "k3s_scale_runs_total"), 3.0);
    assert!(!failed.contains("k3s_scale_signal{"), "{failed}");
    assert_eq!(v(&failed, r#"k3s_scale_signal_known{signal="cpu"}"#), 0.0);

    // 6: pods pending, but the scale-up cannot start a worker (its image is missing):
    // exit 5; the failure is counted, the scale-up and the workers are not.
    let busy = run_config(&prom.url(), &dir, &api, 4, 50);
    let (code, out) = evaluate(&busy, &[]);
    assert_eq!(code, 5, "{out}");
    let action_failed = read();
    assert_promtool_ok(&action_failed);
    assert_eq!(v(&action_failed, "k3s_scale_failed_scale_ups_total"), 1.0);
    assert_eq!(
        v(&action_failed, r#"k3s_scale_errors_total{kind="action"}"#),
        1.0
    );
    assert_eq!(v(&action_failed, "k3s_scale_scale_ups_total"), 0.0);
    assert_eq!(v(&action_failed, "k3s_scale_workers_added_total"), 0.0);
    assert_eq!(
        v(
            &action_failed,
            r#"k3s_scale_last_decision{action="scale_up"}"#
        ),
        1.0
    );
    assert_eq!(
        v(&action_failed, r#"k3s_scale_last_action{action="none"}"#),
        1.0
    );
    assert_eq!(v(&action_failed, "k3s_scale_runs_total"), 4.0);
    assert_eq!(
        v(&action_failed, r#"k3s_scale_errors_total{kind="metrics"}"#),
        1.0
    );
}
