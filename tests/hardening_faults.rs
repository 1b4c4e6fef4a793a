//! Faults, one `evaluate` run each, against a world where an action is due: Prometheus
//! refusing, hanging past its timeout, answering 500, cutting the body off or leaving a
//! signal out (a scale-down is due); the Docker daemon gone, hung, or failing at the
//! container create (a scale-up is due); the apiserver answering 5xx, timing out or
//! dropping the connection during the drain, failing the Node delete or the pod list, or
//! unreachable (a scale-down is due). For each: the documented exit code, no scale-down on
//! partial information, no pod lost (pods leave only by eviction), the node uncordoned
//! after a failed drain, the state loading and saying what happened, nothing of the pool
//! left that k3s-scale does not know about. Prints the table fault -> exit code -> outcome.

#[path = "support/docker.rs"]
mod docker_support;
mod hardening_support;
mod support;

use docker_support::docker;
use hardening_support::{
    DockerFault, DockerFaults, DockerRule, Knobs, LiveProm, Rig, idle_cluster, pending_cluster, run,
};
use k3s_scale::state::State;
use k3s_scale::state::time::Timestamp;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::Run;
use support::apiserver::Fault;
use support::prom::{BadServer, Misbehaviour};

/// One line of the printed table.
struct Row {
    fault: String,
    code: i32,
    outcome: String,
}

fn running(name: &str) -> Option<bool> {
    let out = docker(&["inspect", "-f", "{{.State.Running}}", name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim() == "true")
}

/// The stand-in's mutating traffic so far.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Writes {
    patches: usize,
    evictions: usize,
    deletes: usize,
}

fn writes(rig: &Rig) -> Writes {
    Writes {
        patches: rig.api.count("PATCH", "/"),
        evictions: rig.api.count("POST", "/eviction"),
        deletes: rig.api.count("DELETE", "/"),
    }
}

/// A worker idle for an hour, with three movable pods: a scale-down is due.
fn idle_world(rig: &mut Rig) -> Vec<String> {
    rig.clear_docker();
    rig.api.clear_faults();
    rig.fresh_dir();
    let worker = rig.worker(1);
    rig.run_worker_container(1);
    rig.add_worker_node(&worker);
    let pods = rig.add_pods(&worker, 3, Duration::from_millis(50));
    rig.write_state(&State {
        low_since: Some(Timestamp::from_millis(
            Timestamp::now().as_millis() - 3_600_000,
        )),
        next_worker_index: 2,
        ..State::fresh()
    });
    pods
}

fn state(rig: &Rig) -> State {
    rig.state()
        .expect("the state loads")
        .expect("the state was saved")
}

/// No pod lost: nothing deleted a pod; every pod is there or left by eviction (counting
/// the stand-in's deletions from index `since`). Returns how many were evicted.
fn no_pod_lost(rig: &Rig, pods: &[String], since: usize, what: &str) -> usize {
    assert_eq!(rig.api.count("DELETE", "/pods/"), 0, "{what}: a pod DELETE");
    let deletions = rig.api.deletions();
    let recent = &deletions[since.min(deletions.len())..];
    let evicted: Vec<String> = recent
        .iter()
        .filter(|d| d.via == "eviction")
        .map(|d| d.pod.clone())
        .collect();
    assert!(
        recent.iter().all(|d| d.via == "eviction"),
        "{what}: a pod left other than by eviction"
    );
    for p in pods {
        let (ns, name) = p.split_once('/').unwrap();
        assert!(
            rig.api.pod(ns, name).is_some() || evicted.contains(p),
            "{what}: pod {p} lost"
        );
    }
    pods.iter().filter(|p| evicted.contains(p)).count()
}

fn consistent(rig: &Rig, what: &str) {
    let bad = rig.unknown_objects();
    assert!(bad.is_empty(), "{what}: {bad:?}");
}

fn error_of(r: &Run) -> String {
    r.json()["error"].as_str().unwrap_or("").to_string()
}

/// A Prometheus failure: exit 4, nothing touched, the error counted, no timer moved.
fn prometheus_row(rig: &mut Rig, fault: &str, url: &str, cause: &str) -> Row {
    let pods = idle_world(rig);
    let since = rig.api.deletions().len();
    let before = writes(rig);
    assert!(
        state(rig).low_since.is_some(),
        "{fault}: the idle timer runs before"
    );
    let cfg = rig.config(&Knobs {
        prom_url: url.to_string(),
        prom_timeout: "1s",
        ..Knobs::default()
    });
    let t = Instant::now();
    let r = run(&cfg, &["evaluate", "--output", "json"]);
    let took = t.elapsed();
    assert_eq!(r.code, 4, "{fault}: {r:?}");
    assert!(error_of(&r).contains(cause), "{fault}: {r:?}");
    assert!(took < Duration::from_secs(10), "{fault}: took {took:?}");
    assert_eq!(writes(rig), before, "{fault}: the cluster was touched");
    assert_eq!(
        running(&rig.worker(1)),
        Some(true),
        "{fault}: container kept"
    );
    assert_eq!(rig.api.is_cordoned(&rig.worker(1)), Some(false), "{fault}");
    assert_eq!(no_pod_lost(rig, &pods, since, fault), 0);
    let s = state(rig);
    assert_eq!(s.totals.errors.get("metrics"), Some(&1), "{fault}");
    // The idle timer restarts: the signals were not seen low during the outage.
    assert_eq!(s.low_since, None, "{fault}: idle timer restarted");
    assert_eq!(s.last_scale_down, None);
    consistent(rig, fault);
    Row {
        fault: fault.into(),
        code: r.code,
        outcome: format!(
            "no action; cluster and container untouched; errors{{metrics}}=1, idle timer kept; {:.1} s",
            took.as_secs_f64()
        ),
    }
}

#[test]
fn faults_end_in_the_documented_exit_code_and_lose_nothing() {
    let started = Instant::now();
    let mut rig = Rig::new();
    let worker = rig.worker(1);
    let mut rows = Vec::new();

    // --- Prometheus (a scale-down is due) ---------------------------------------------
    let refused = BadServer::start(Misbehaviour::Refuse);
    rows.push(prometheus_row(
        &mut rig,
        "Prometheus refuses the connection",
        &refused.url(),
        "cannot reach Prometheus",
    ));
    let hang = BadServer::start(Misbehaviour::Hang);
    rows.push(prometheus_row(
        &mut rig,
        "Prometheus hangs past prometheus.timeout (1s)",
        &hang.url(),
        "did not answer within 1s",
    ));
    let e500 = BadServer::start(Misbehaviour::Status(500, "boom"));
    rows.push(prometheus_row(
        &mut rig,
        "Prometheus answers HTTP 500",
        &e500.url(),
        "HTTP 500",
    ));
    let cut = BadServer::start(Misbehaviour::CutOff);
    rows.push(prometheus_row(
        &mut rig,
        "Prometheus cuts the body off",
        &cut.url(),
        "cut off",
    ));
    drop((refused, hang, e500, cut));

    let mut idle = LiveProm::start(idle_cluster(&worker));
    {
        let fault = "Prometheus answers, but without the memory signal";
        let pods = idle_world(&mut rig);
        let since = rig.api.deletions().len();
        let before = writes(&rig);
        let cfg = rig.config(&Knobs {
            prom_url: idle.url(),
            prom_extra: "  queries:\n    memory: k3s_scale_test_no_such_series\n".into(),
            ..Knobs::default()
        });
        let r = run(&cfg, &["evaluate", "--output", "json"]);
        assert_eq!(r.code, 0, "{fault}: {r:?}");
        let v = r.json();
        assert!(v["signals"]["memory"].is_null(), "{v}");
        let blocked = v["blocked_by"].to_string();
        assert!(blocked.contains("unknown: memory"), "{fault}: {blocked}");
        assert_eq!(writes(&rig), before, "{fault}: no drain on partial data");
        assert_eq!(no_pod_lost(&rig, &pods, since, fault), 0);
        assert_eq!(running(&worker), Some(true));
        let s = state(&rig);
        assert_eq!(s.low_since, None, "{fault}: the idle timer restarts");
        consistent(&rig, fault);
        rows.push(Row {
            fault: fault.into(),
            code: r.code,
            outcome: "no scale-down (blocked: signal unknown); idle timer reset; cluster untouched"
                .into(),
        });
    }

    // --- Docker (a scale-up is due) ------------------------------------------------------
    let mut pending = LiveProm::start(pending_cluster());
    let faults = DockerFaults::start(&rig.pool.dir.join("faults.sock"));
    rig.new_cluster();
    rig.lists(&pending_cluster());
    // (fault, docker.host, proxy rules, cause in the error, whether the create was reached)
    type DockerRow = (
        &'static str,
        Option<String>,
        Vec<DockerRule>,
        &'static str,
        bool,
    );
    let docker_rows: Vec<DockerRow> = vec![
        (
            "Docker daemon gone (no socket)",
            Some(format!(
                "unix://{}",
                rig.pool.dir.join("gone.sock").display()
            )),
            vec![],
            "cannot reach the Docker daemon",
            false,
        ),
        (
            "Docker daemon hangs (accepts, never answers)",
            Some(faults.host()),
            vec![DockerRule {
                method: "",
                path: "/",
                fault: DockerFault::Hang,
            }],
            "did not answer within 1s",
            false,
        ),
        (
            "Docker connection dropped at the container create",
            Some(faults.host()),
            vec![DockerRule {
                method: "POST",
                path: "/containers/create",
                fault: DockerFault::Drop,
            }],
            "cannot start worker",
            true,
        ),
        (
            "Docker hangs at the container create",
            Some(faults.host()),
            vec![DockerRule {
                method: "POST",
                path: "/containers/create",
                fault: DockerFault::Hang,
            }],
            "did not answer within 1s",
            true,
        ),
    ];
    for (fault, host, rules, cause, reached_create) in docker_rows {
        pending.keep_fresh();
        rig.clear_docker();
        rig.api.clear_faults();
        rig.fresh_dir();
        faults.set_rules(rules);
        let cfg = rig.config(&Knobs {
            prom_url: pending.url(),
            docker_host: host,
            docker_timeout: "1s",
            ..Knobs::default()
        });
        let t = Instant::now();
        let r = run(&cfg, &["evaluate", "--output", "json"]);
        let took = t.elapsed();
        faults.set_rules(Vec::new());
        assert_eq!(r.code, 5, "{fault}: {r:?}");
        assert!(error_of(&r).contains(cause), "{fault}: {r:?}");
        assert!(took < Duration::from_secs(15), "{fault}: took {took:?}");
        assert!(rig.containers().is_empty(), "{fault}: a container left");
        assert!(rig.volumes().is_empty(), "{fault}: a volume left");
        let s = state(&rig);
        assert!(s.provisioning.is_empty(), "{fault}: {:?}", s.provisioning);
        assert_eq!(s.totals.errors.get("action"), Some(&1), "{fault}");
        let outcome = if reached_create {
            assert_eq!(s.totals.failed_scale_ups, 1, "{fault}");
            assert!(
                s.last_scale_up_failure.is_some(),
                "{fault}: back-off starts"
            );
            assert_eq!(s.next_worker_index, 2, "{fault}: the name is spent");
            "nothing left (volume removed again); failed_scale_ups=1, back-off started, name spent"
        } else {
            assert_eq!(s.totals.failed_scale_ups, 0, "{fault}");
            "nothing created (reconcile could not list the pool); errors{action}=1"
        };
        consistent(&rig, fault);
        rows.push(Row {
            fault: fault.into(),
            code: r.code,
            outcome: format!("{outcome}; {:.1} s", took.as_secs_f64()),
        });
    }

    // --- apiserver during the drain (a scale-down is due) -------------------------------
    struct KubeCase {
        fault: &'static str,
        inject: Vec<Fault>,
        cause: &'static str,
        /// The drain began (the node was cordoned) and must have been undone.
        drained: bool,
        /// The pods may have left (by eviction) before the failure.
        evictions_succeed: bool,
    }
    let kube_cases = vec![
        KubeCase {
            fault: "apiserver answers 503 to every eviction",
            inject: vec![Fault::status("POST", "/eviction", 503)],
            cause: "not moved",
            drained: true,
            evictions_succeed: false,
        },
        KubeCase {
            fault: "apiserver times evictions out (3s > kubernetes.timeout 1s)",
            inject: vec![Fault::latency("POST", "/eviction", Duration::from_secs(3))],
            cause: "not moved",
            drained: true,
            evictions_succeed: false,
        },
        KubeCase {
            fault: "apiserver drops the connection on evictions",
            inject: vec![Fault::drop_connection("POST", "/eviction")],
            cause: "not moved",
            drained: true,
            evictions_succeed: false,
        },
        KubeCase {
            fault: "apiserver answers 500 to the Node delete after the drain",
            inject: vec![Fault::status("DELETE", "/nodes/", 500)],
            cause: "deleting its Node failed",
            drained: true,
            evictions_succeed: true,
        },
        KubeCase {
            fault: "apiserver answers 503 to the pod list (candidate check)",
            inject: vec![Fault::status("GET", "/api/v1/pods", 503)],
            cause: "503",
            drained: false,
            evictions_succeed: false,
        },
    ];
    for case in kube_cases {
        idle.keep_fresh();
        let fault = case.fault;
        let pods = idle_world(&mut rig);
        let since = rig.api.deletions().len();
        for f in case.inject {
            rig.api.fault(f);
        }
        let before = writes(&rig);
        let cfg = rig.config(&Knobs {
            prom_url: idle.url(),
            kube_timeout: "1s",
            drain_timeout: "2s",
            ..Knobs::default()
        });
        let t = Instant::now();
        let r = run(&cfg, &["evaluate", "--output", "json"]);
        let took = t.elapsed();
        assert_eq!(r.code, 5, "{fault}: {r:?}");
        assert!(error_of(&r).contains(case.cause), "{fault}: {r:?}");
        // Requests the client gave up on are still carried out by the server (timed-out
        // evictions, answered 3 s after they came): wait for them before judging.
        if fault.contains("times") {
            std::thread::sleep(Duration::from_millis(3500));
        }
        rig.api.clear_faults();
        let after = writes(&rig);
        let s = state(&rig);
        assert_eq!(s.last_scale_down, None, "{fault}");
        assert!(rig.api.node(&worker).is_some(), "{fault}: Node kept");
        if fault.contains("Node delete") {
            // The container was stopped first (so its agent cannot register the Node
            // again): it stays stopped, the node cordoned; the next run removes both once
            // the Node is NotReady (reconcile: a dead container).
            assert_eq!(
                running(&worker),
                Some(false),
                "{fault}: container stopped, kept"
            );
            assert_eq!(rig.api.is_cordoned(&worker), Some(true), "{fault}");
        } else {
            assert_eq!(running(&worker), Some(true), "{fault}: container kept");
            assert_eq!(
                rig.api.is_cordoned(&worker),
                Some(false),
                "{fault}: uncordoned after the failed drain"
            );
        }
        let evicted = no_pod_lost(&rig, &pods, since, fault);
        if !case.evictions_succeed && !fault.contains("times") {
            assert_eq!(evicted, 0, "{fault}");
        }
        let outcome = if case.drained {
            assert_eq!(s.totals.failed_scale_downs, 1, "{fault}");
            assert!(s.last_scale_down_failure.is_some(), "{fault}: back-off");
            if fault.contains("Node delete") {
                assert_eq!(
                    after.patches - before.patches,
                    1,
                    "{fault}: the cordon stays"
                );
                format!(
                    "removal failed after the container stopped: node left cordoned, container stopped and Node kept for the next run's reconcile; {evicted}/3 pods evicted (by the Eviction API), 0 deleted; failed_scale_downs=1"
                )
            } else {
                assert_eq!(
                    after.patches - before.patches,
                    2,
                    "{fault}: one cordon, one uncordon"
                );
                format!(
                    "drain failed: node cordoned then uncordoned; container and Node kept; {evicted}/3 pods evicted (by the Eviction API), 0 deleted; failed_scale_downs=1"
                )
            }
        } else {
            assert_eq!(after.patches, before.patches, "{fault}: never cordoned");
            assert_eq!(after.evictions, before.evictions, "{fault}");
            "no candidate could be checked: never cordoned, nothing evicted; errors{action}=1"
                .to_string()
        };
        assert_eq!(s.totals.errors.get("action"), Some(&1), "{fault}");
        consistent(&rig, fault);
        rows.push(Row {
            fault: fault.into(),
            code: r.code,
            outcome: format!("{outcome}; {:.1} s", took.as_secs_f64()),
        });
    }

    {
        idle.keep_fresh();
        let fault = "apiserver unreachable (connection refused)";
        let pods = idle_world(&mut rig);
        let since = rig.api.deletions().len();
        let kubeconfig: PathBuf = rig.dir.join("unreachable.kubeconfig");
        let port = support::free_port();
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
                 contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
            ),
        )
        .unwrap();
        let before = writes(&rig);
        let cfg = rig.config(&Knobs {
            prom_url: idle.url(),
            kubeconfig: Some(kubeconfig),
            kube_timeout: "1s",
            ..Knobs::default()
        });
        let t = Instant::now();
        let r = run(&cfg, &["evaluate", "--output", "json"]);
        let took = t.elapsed();
        assert_eq!(r.code, 5, "{fault}: {r:?}");
        assert!(error_of(&r).contains("cannot reconcile"), "{fault}: {r:?}");
        assert_eq!(writes(&rig), before);
        assert_eq!(no_pod_lost(&rig, &pods, since, fault), 0);
        assert_eq!(running(&worker), Some(true));
        let s = state(&rig);
        assert_eq!(s.totals.errors.get("action"), Some(&1));
        assert_eq!(s.last_scale_down, None);
        rows.push(Row {
            fault: fault.into(),
            code: r.code,
            outcome: format!(
                "stopped before deciding (reconcile cannot list Nodes): nothing touched; errors{{action}}=1; {:.1} s",
                took.as_secs_f64()
            ),
        });
    }

    println!("\n| fault | exit code | outcome |\n|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} |", r.fault, r.code, r.outcome);
    }
    println!(
        "faults: {} cases in {:.1} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
}
