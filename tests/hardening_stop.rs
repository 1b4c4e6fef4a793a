//! Asked to stop, it stops cleanly (issue 23 points 6 and 7): SIGTERM or SIGINT sent to the
//! built binary mid-start and mid-drain, and a run that reaches `scaling.run_timeout`.
//! Real Prometheus, real Docker (a socket proxy holds the container creates back), the
//! apiserver stand-in (simulated Kubernetes: evictions refused with 429, or accepted with
//! pods slow to terminate). Each test checks the exit code, what is left in Docker and the
//! API, and what the state file recorded.

#[path = "support/docker.rs"]
mod docker_support;
mod hardening_support;
mod support;

use hardening_support::{
    ChildGuard, DockerFault, DockerFaults, DockerRule, Knobs, LiveProm, Rig, bin, idle_cluster, run,
};
use k3s_scale::kube::drain::drain_mark;
use k3s_scale::state::State;
use k3s_scale::state::time::Timestamp;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::Run;
use support::apiserver::Fault;
use support::prom::Cluster;

const WAIT: Duration = Duration::from_secs(30);

/// kube-state-metrics (and the API) with three pending pods of 0.8 cores: with 1-core
/// workers and max_step 3, `evaluate` starts three workers, one after the other.
fn three_pending() -> Cluster {
    let mut c = Cluster::new().control_plane("server");
    for i in 1..=3 {
        c = c
            .pod(&format!("big-{i}"))
            .unschedulable()
            .requests(0.8, 64.0 * 1024.0 * 1024.0);
    }
    c
}

/// The binary started with its output kept (for the message and the JSON report).
fn start(cfg: &Path, args: &[&str]) -> ChildGuard {
    ChildGuard::new(
        bin()
            .arg("--config")
            .arg(cfg)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn k3s-scale"),
    )
}

fn finish(child: ChildGuard) -> Run {
    Run::from_output(child_output(child))
}

/// `kill -SIG pid`: the signal systemd (`systemctl stop`), `timeout` or Ctrl-C sends.
fn signal(child: &ChildGuard, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.pid().to_string())
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -{sig} failed");
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn state_of(rig: &Rig) -> State {
    rig.state().expect("state loads").expect("state written")
}

fn idle_for_an_hour() -> State {
    State {
        low_since: Some(Timestamp::from_millis(
            Timestamp::now().as_millis() - 3_600_000,
        )),
        next_worker_index: 2,
        ..State::fresh()
    }
}

/// A running worker container with its Node, idle in Prometheus, drains of up to 30 s,
/// Kubernetes calls of up to `kube_timeout`.
fn idle_worker(kube_timeout: &'static str) -> (Rig, String, LiveProm, std::path::PathBuf) {
    let mut rig = Rig::new();
    let worker = rig.worker(1);
    let prom = LiveProm::start(idle_cluster(&worker));
    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        drain_timeout: "30s",
        kube_timeout,
        ..Knobs::default()
    });
    rig.run_worker_container(1);
    rig.add_worker_node(&worker);
    (rig, worker, prom, cfg)
}

/// Starts the run for three workers with each container create held back `hold`.
fn scale_up_rig(
    hold: Duration,
    scaling_extra: &str,
) -> (Rig, LiveProm, DockerFaults, std::path::PathBuf) {
    let mut rig = Rig::new();
    let prom = LiveProm::start(three_pending());
    rig.lists(&three_pending());
    let faults = DockerFaults::start(&rig.pool.dir.join("faults.sock"));
    faults.set_rules(vec![DockerRule {
        method: "POST",
        path: "/containers/create",
        fault: DockerFault::Delay(hold),
    }]);
    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        docker_host: Some(faults.host()),
        max_step: 3,
        scaling_extra: scaling_extra.into(),
        ..Knobs::default()
    });
    (rig, prom, faults, cfg)
}

/// SIGTERM while the first of three workers is being created: that one is finished (it
/// runs and is in provisioning), the other two are not begun, no back-off is recorded
/// (a stop is no failed scale-up), and the run exits 8 saying what it did. Without the
/// stop check the run would start all three; without the listener it would die with
/// the signal and record nothing.
#[test]
fn sigterm_mid_start_finishes_the_worker_in_flight_and_starts_no_other() {
    let (rig, _prom, faults, cfg) = scale_up_rig(Duration::from_millis(1500), "");
    let child = start(&cfg, &["evaluate", "--output", "json"]);
    faults
        .wait_for("/containers/create", WAIT)
        .expect("the run creates the first container");
    signal(&child, "TERM");
    let r = finish(child);
    assert_eq!(r.code, 8, "{r:?}");
    let (w1, w2, w3) = (rig.worker(1), rig.worker(2), rig.worker(3));
    assert_eq!(
        rig.containers(),
        std::slice::from_ref(&w1),
        "only the one in flight"
    );
    assert_eq!(r.json()["started"], serde_json::json!([w1]), "{}", r.stdout);
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("asked to stop (SIGTERM)")
            && msg.contains(&format!("started {w1}"))
            && msg.contains(&format!("not started: {w2}, {w3}")),
        "{msg}"
    );
    let s = state_of(&rig);
    let booting: Vec<&str> = s.provisioning.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(booting, [w1.as_str()], "the started worker is recorded");
    assert!(s.last_scale_up.is_some(), "its cooldown runs");
    assert!(s.last_scale_up_failure.is_none(), "no back-off: {s:?}");
    assert!(s.acting.is_none());
    let last = s.events.back().expect("an event");
    assert_eq!(last.kind, "stopped", "{last:?}");
    assert_eq!(s.totals.errors.get("stopped"), Some(&1));
    rig.clear_docker();
}

/// `scaling.run_timeout` reached while workers start: the one in flight at the deadline is
/// finished, no other is begun, the state is saved, and the run exits 5 naming the step
/// and the key. (8 s: drain.timeout 3 s + prometheus.timeout 5 s, the least accepted;
/// each create is held 5 s, so the deadline falls in the second worker's start.)
#[test]
fn run_timeout_ends_the_start_loop_with_exit_5_naming_the_step() {
    let (rig, _prom, _faults, cfg) = scale_up_rig(Duration::from_secs(5), "  run_timeout: 8s\n");
    let r = finish(start(&cfg, &["evaluate", "--output", "json"]));
    assert_eq!(r.code, 5, "{r:?}");
    let started: Vec<String> = serde_json::from_value(r.json()["started"].clone()).unwrap();
    assert!(
        !started.is_empty() && started.len() < 3,
        "some, not all, started: {started:?}"
    );
    let mut containers = rig.containers();
    containers.sort();
    assert_eq!(
        containers, started,
        "Docker has exactly the workers reported"
    );
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("scaling.run_timeout")
            && msg.contains("during the scale-up")
            && msg.contains("not started: ")
            && msg.contains(&rig.worker(3)),
        "{msg}"
    );
    let s = state_of(&rig);
    let booting: Vec<String> = s.provisioning.iter().map(|p| p.name.clone()).collect();
    assert_eq!(booting, started);
    assert_eq!(s.totals.errors.get("timeout"), Some(&1));
    assert!(s.last_scale_up_failure.is_none(), "{s:?}");
    rig.clear_docker();
}

/// An idle worker being drained, every eviction refused (429, as a PodDisruptionBudget
/// that allows no disruption answers): SIGINT stops the retries, no pod has left, so the
/// drain's own cordon is undone at once; the container stays, the state records the stop
/// and no scale-down back-off, exit 8.
#[test]
fn sigint_mid_drain_before_any_eviction_uncordons() {
    let (rig, worker, _prom, cfg) = idle_worker("2s");
    let pods = rig.add_pods(&worker, 2, Duration::from_millis(50));
    rig.write_state(&idle_for_an_hour());
    rig.api.fault(Fault::status("POST", "/eviction", 429));
    let child = start(&cfg, &["evaluate", "--output", "json"]);
    wait_until("evictions refused twice", || {
        rig.api.count("POST", "/eviction") >= 2
    });
    assert_eq!(rig.api.is_cordoned(&worker), Some(true));
    signal(&child, "INT");
    let r = finish(child);
    assert_eq!(r.code, 8, "{r:?}");
    assert!(r.stderr.contains("SIGINT"), "{}", r.stderr);
    assert_eq!(rig.api.is_cordoned(&worker), Some(false), "uncordoned");
    assert!(drain_mark(&rig.api.node(&worker).unwrap()).is_none());
    for p in &pods {
        let (ns, name) = p.split_once('/').unwrap();
        assert!(rig.api.pod(ns, name).is_some(), "{p} still there");
    }
    assert_eq!(
        rig.containers(),
        std::slice::from_ref(&worker),
        "container kept"
    );
    let s = state_of(&rig);
    assert!(s.last_scale_down_failure.is_none(), "no back-off: {s:?}");
    assert!(s.acting.is_none());
    assert_eq!(s.events.back().map(|e| e.kind.as_str()), Some("stopped"));
    rig.clear_docker();
}

/// SIGTERM after the pods were evicted, while the drain waits for them to terminate: no
/// further call (the node keeps its cordon and drain mark, the container stays), exit 8;
/// the next run, which keeps the node, repairs the unfinished drain by uncordoning it.
#[test]
fn sigterm_after_evictions_leaves_the_drain_for_the_next_runs_repair() {
    let (rig, worker, _prom, cfg) = idle_worker("2s");
    rig.add_pods(&worker, 2, Duration::from_secs(5));
    rig.write_state(&idle_for_an_hour());
    let child = start(&cfg, &["evaluate", "--output", "json"]);
    wait_until("both pods evicted", || {
        rig.api.count("POST", "/eviction") >= 2
    });
    signal(&child, "TERM");
    let r = finish(child);
    assert_eq!(r.code, 8, "{r:?}");
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("SIGTERM") && msg.contains("left cordoned with its drain mark"),
        "{msg}"
    );
    assert_eq!(rig.api.is_cordoned(&worker), Some(true));
    assert!(drain_mark(&rig.api.node(&worker).unwrap()).is_some());
    assert_eq!(rig.api.count("DELETE", &format!("/nodes/{worker}")), 0);
    assert_eq!(rig.containers(), std::slice::from_ref(&worker));
    let s = state_of(&rig);
    assert!(s.last_scale_down_failure.is_none(), "{s:?}");
    assert_eq!(s.totals.evicted_pods, 2);
    // The next run finds the node not idle long enough: it keeps it and finishes the
    // unfinished drain by undoing its cordon.
    rig.write_state(&State {
        next_worker_index: 2,
        ..State::fresh()
    });
    let next = run(&cfg, &["evaluate", "--output", "json"]);
    assert_eq!(next.code, 0, "{next:?}");
    let repairs = next.json()["repairs"].to_string();
    assert!(repairs.contains(&format!("uncordon {worker}")), "{repairs}");
    assert_eq!(rig.api.is_cordoned(&worker), Some(false));
    rig.clear_docker();
}

/// A second signal while the first waits for a slow eviction to answer ends the process
/// at once with 128 + 15, as the default action would (the operator insists).
#[test]
fn a_second_signal_ends_the_run_at_once() {
    let (rig, worker, _prom, cfg) = idle_worker("20s");
    rig.add_pods(&worker, 1, Duration::from_millis(50));
    rig.write_state(&idle_for_an_hour());
    rig.api
        .fault(Fault::latency("POST", "/eviction", Duration::from_secs(10)));
    let child = start(&cfg, &["evaluate"]);
    // The stand-in logs a request once answered: the cordon is, the eviction (held 10 s)
    // is in flight half a second later.
    wait_until("the cordon", || {
        rig.api.count("PATCH", &format!("/nodes/{worker}")) >= 1
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rig.api.count("POST", "/eviction"), 0, "still in flight");
    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "TERM");
    let out = child_output(child);
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stopping at once"), "{stderr}");
    rig.api.clear_faults();
    rig.clear_docker();
}

fn child_output(mut child: ChildGuard) -> std::process::Output {
    child
        .0
        .take()
        .expect("running")
        .wait_with_output()
        .expect("reap")
}

/// `drain NODE` stopped by SIGTERM while its evictions are refused: the same clean stop
/// (no pod evicted, so its own cordon is undone), its write-ahead taken back, the stop
/// recorded, exit 8.
#[test]
fn sigterm_stops_drain_node_cleanly() {
    let (rig, worker, _prom, cfg) = idle_worker("2s");
    rig.add_pods(&worker, 2, Duration::from_millis(50));
    rig.api.fault(Fault::status("POST", "/eviction", 429));
    let child = start(&cfg, &["drain", &worker, "--output", "json"]);
    wait_until("evictions refused twice", || {
        rig.api.count("POST", "/eviction") >= 2
    });
    signal(&child, "TERM");
    let r = finish(child);
    assert_eq!(r.code, 8, "{r:?}");
    let rep = r.json();
    assert_eq!(rep["removed"], false, "{rep}");
    assert!(
        rep["error"]
            .as_str()
            .unwrap()
            .contains("asked to stop (SIGTERM)"),
        "{rep}"
    );
    assert_eq!(rep["node_left"], "uncordoned", "{rep}");
    assert_eq!(rig.api.is_cordoned(&worker), Some(false));
    assert_eq!(rig.containers(), std::slice::from_ref(&worker));
    let s = state_of(&rig);
    assert!(s.acting.is_none(), "{s:?}");
    assert_eq!(s.events.back().map(|e| e.kind.as_str()), Some("stopped"));
    assert_eq!(s.totals.errors.get("stopped"), Some(&1));
    rig.clear_docker();
}
