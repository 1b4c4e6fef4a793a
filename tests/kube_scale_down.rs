//! Scale-down through `ScaleDown` (the `Actuator::remove_worker` implementation) and the
//! `evaluate` run, with the real kube client against the API server stand-in (a
//! simulator, tests/support/apiserver.rs) and an in-memory `WorkerContainers`.
//! Each test names the stand-in behaviour it relies on.

mod support;

use k3s_scale::kube::KubeCluster;
use k3s_scale::kube::mover::MoveMode;
use k3s_scale::plan::model::Resources;
use k3s_scale::plan::snapshot::{NodeResources, NodeSample, Snapshot};
use k3s_scale::run::report::Report;
use k3s_scale::run::scale_down::{ScaleDown, WithScaleDown};
use k3s_scale::run::{Actuator, Context, PlanOnly, evaluate};
use k3s_scale::signals::{MetricsSource, PromError};
use k3s_scale::state::State;
use k3s_scale::state::time::Timestamp;
use std::time::{Duration, Instant};
use support::apiserver::{ApiServer, Fault};
use support::containers::FakeContainers;
use support::objects::{node, pdb, pod};

const QUICK: Duration = Duration::from_millis(100);

fn scale_down(server: &ApiServer, containers: &FakeContainers) -> ScaleDown {
    let cfg = support::config(server);
    let cluster = KubeCluster::connect(&cfg.kubernetes).expect("client");
    ScaleDown::new(Box::new(cluster), containers.boxed(), &cfg, MoveMode::Evict)
}

/// w1 with one movable pod of each kind the drain skips, plus its k3s password secret.
fn worker_with_pods(server: &ApiServer, name: &str) {
    server.add_node(node(name).build());
    server.add_secret("kube-system", &format!("{name}.node-password.k3s"));
    server.add_pod_exiting_after(pod(&format!("{name}-web")).on(name).build(), QUICK);
    server.add_pod_exiting_after(
        pod(&format!("{name}-api")).ns("prod").on(name).build(),
        QUICK,
    );
    server.add_pod(
        pod(&format!("{name}-ds"))
            .ns("kube-system")
            .on(name)
            .owned_by_daemonset()
            .build(),
    );
    server.add_pod(
        pod(&format!("{name}-static"))
            .ns("kube-system")
            .on(name)
            .mirror()
            .build(),
    );
    server.add_pod(
        pod(&format!("{name}-job"))
            .on(name)
            .owned_by("Job", "j")
            .phase("Succeeded")
            .build(),
    );
}

// Relies on: eviction 201, pods disappearing after their shutdown time, node delete (and
// k3s's secret delete with it), the request log.
#[test]
fn happy_path_removes_the_worker() {
    let server = ApiServer::start();
    worker_with_pods(&server, "w1");
    let containers = FakeContainers::with(&["w1"]);
    let mut sd = scale_down(&server, &containers);
    let mut report = Report::new(false);

    let removal = sd
        .remove_worker(&["w1".to_string()], false, &mut report)
        .expect("scale-down succeeds");

    assert_eq!(removal.removed.as_deref(), Some("w1"));
    let mut evicted = removal.evicted.clone();
    evicted.sort();
    assert_eq!(evicted, vec!["default/w1-web", "prod/w1-api"]);
    assert!(server.node("w1").is_none(), "Node deleted");
    assert!(
        !server.secret_exists("kube-system", "w1.node-password.k3s"),
        "k3s deleted the secret with the Node"
    );
    assert_eq!(
        server.count("DELETE", "/secrets/"),
        0,
        "k3s-scale leaves the secret to k3s"
    );
    assert_eq!(
        containers.removed(),
        vec!["w1"],
        "container and volume removed"
    );
    assert!(report.unremovable.is_empty());
    // Only the two movable pods were touched, both through the Eviction API.
    let deletions = server.deletions();
    assert_eq!(deletions.len(), 2, "{deletions:?}");
    assert!(deletions.iter().all(|d| d.via == "eviction"));
    assert_eq!(
        server.count("DELETE", "/pods/"),
        0,
        "no pod deleted outside the Eviction API"
    );
    assert_eq!(server.count("POST", "/eviction"), 2);
    let left = server.pod_names();
    assert_eq!(
        left,
        vec![
            "default/w1-job",
            "kube-system/w1-ds",
            "kube-system/w1-static"
        ]
    );
}

// Relies on: PDB status (minAvailable over a selector, recomputed), 429 from the eviction
// subresource while the PDB allows no disruption, node patch.
#[test]
fn pdb_blocks_until_the_deadline_then_uncordons_and_keeps_the_container() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_node(node("w2").build());
    for (name, on) in [("web-a", "w1"), ("web-b", "w1"), ("web-c", "w2")] {
        server.add_pod_exiting_after(pod(name).on(on).label("app", "web").build(), QUICK);
    }
    // 3 healthy, 2 needed: one disruption allowed, so the node passes the check; the
    // second eviction is refused until the first pod is replaced, which never happens.
    server.add_pdb(pdb("web").selecting("app", "web").min_available(2).build());
    let containers = FakeContainers::with(&["w1"]);
    let mut sd = scale_down(&server, &containers);
    let mut report = Report::new(false);

    let started = Instant::now();
    let err = sd
        .remove_worker(&["w1".to_string()], false, &mut report)
        .expect_err("the drain fails");
    let took = started.elapsed();

    // drain.timeout is 3 s; the kube client's own 429 back-off would take minutes.
    assert!(
        took >= Duration::from_secs(3),
        "waited for the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "the deadline held: {took:?}"
    );
    assert_eq!(err.done.len(), 1, "one pod was evicted: {:?}", err.done);
    let kept = if err.done[0] == "default/web-a" {
        "default/web-b"
    } else {
        "default/web-a"
    };
    assert!(err.message.contains(kept), "{}", err.message);
    assert!(
        err.message.contains("PodDisruptionBudget"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains("needs 2 healthy pods and has 2 currently"),
        "{}",
        err.message
    );
    assert!(err.message.contains("uncordoned"), "{}", err.message);
    assert!(err.message.contains("container kept"), "{}", err.message);
    assert_eq!(server.is_cordoned("w1"), Some(false), "node uncordoned");
    assert!(
        containers.exists("w1") && containers.removed().is_empty(),
        "container kept"
    );
    let refusals = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/eviction") && r.status == 429)
        .count();
    assert!(refusals >= 5, "retried every 200 ms: {refusals} refusals");
    assert_eq!(report.evicted, err.done);
}

// Relies on: node get/patch, pod list by fieldSelector, PDB list, the request log.
#[test]
fn unremovable_candidates_are_passed_over_for_the_next() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_pod(pod("bare").on("w1").no_controller().build());
    server.add_node(node("w2").build());
    server.add_pod(pod("cache").on("w2").empty_dir("scratch").build());
    server.add_node(node("w3").build());
    server.add_pod(
        pod("pinned")
            .on("w3")
            .annotate("cluster-autoscaler.kubernetes.io/safe-to-evict", "false")
            .build(),
    );
    server.add_node(
        node("w4")
            .annotate("k3s-scale.io/scale-down-disabled", "true")
            .build(),
    );
    server.add_node(node("keep-1").build());
    server.add_node(node("s1").control_plane().build());
    server.add_node(node("other").build());
    server.add_node(node("w5").build());
    server.add_pod(pod("guarded").on("w5").label("app", "db").build());
    server.add_pod(pod("guarded-2").on("w9").label("app", "db").build());
    server.add_pdb(pdb("db").selecting("app", "db").min_available(2).build());
    server.add_node(node("w6").build());
    server.add_pod_exiting_after(
        pod("fine")
            .on("w6")
            .host_path("x")
            .annotate("cluster-autoscaler.kubernetes.io/safe-to-evict", "true")
            .build(),
        QUICK,
    );
    let containers = FakeContainers::with(&["w1", "w2", "w3", "w4", "keep-1", "s1", "w5", "w6"]);
    let mut sd = scale_down(&server, &containers);
    let mut report = Report::new(false);
    let candidates: Vec<String> = [
        "gone", "w1", "w2", "w3", "w4", "keep-1", "s1", "other", "w5", "w6",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let removal = sd
        .remove_worker(&candidates, false, &mut report)
        .expect("w6 removed");

    assert_eq!(removal.removed.as_deref(), Some("w6"));
    assert_eq!(removal.evicted, vec!["default/fine"]);
    let reasons: Vec<(String, String)> = report
        .unremovable
        .iter()
        .map(|u| (u.node.clone(), u.reason.clone()))
        .collect();
    let want = [
        ("gone", "no Node by that name"),
        ("w1", "pod default/bare has no controller"),
        ("w2", "pod default/cache has local storage (volume scratch)"),
        (
            "w3",
            "pod default/pinned annotated cluster-autoscaler.kubernetes.io/safe-to-evict: \"false\"",
        ),
        ("w4", "annotated k3s-scale.io/scale-down-disabled: \"true\""),
        ("keep-1", "listed in kubernetes.permanent_nodes"),
        ("s1", "control-plane node"),
        ("other", "not a k3s-scale worker"),
        (
            "w5",
            "pod default/guarded PodDisruptionBudget default/db allows no disruption now",
        ),
    ];
    assert_eq!(reasons.len(), want.len(), "{reasons:?}");
    for ((node, reason), (want_node, want_reason)) in reasons.iter().zip(want) {
        assert_eq!(node, want_node);
        assert!(
            reason.contains(want_reason),
            "{node}: {reason:?} should say {want_reason:?}"
        );
    }
    // The passed-over nodes were only looked at: no cordon, no eviction.
    let patched: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(patched, vec!["/api/v1/nodes/w6"]);
    assert_eq!(server.count("POST", "/eviction"), 1);
    assert_eq!(
        server.count("GET", "/poddisruptionbudgets"),
        1,
        "PDBs listed once"
    );
}

// Relies on: node/pod reads and the request log (every write would show there).
#[test]
fn dry_run_reports_and_changes_nothing() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_pod(pod("bare").on("w1").no_controller().build());
    worker_with_pods(&server, "w2");
    let containers = FakeContainers::with(&["w1", "w2"]);
    let mut sd = scale_down(&server, &containers);
    let mut report = Report::new(true);

    let removal = sd
        .remove_worker(&["w1".to_string(), "w2".to_string()], true, &mut report)
        .expect("dry run");

    assert_eq!(removal.removed.as_deref(), Some("w2"));
    assert_eq!(removal.evicted, vec!["default/w2-web", "prod/w2-api"]);
    assert_eq!(report.unremovable.len(), 1);
    assert_eq!(report.unremovable[0].node, "w1");
    let writes: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(
        writes.is_empty(),
        "a dry run writes nothing, not even a cordon: {writes:?}"
    );
    assert_eq!(server.is_cordoned("w2"), Some(false));
    assert!(containers.removed().is_empty());
}

// Relies on: node delete answering with an injected 500.
#[test]
fn node_delete_failure_after_the_stop_leaves_the_stopped_worker_for_the_next_run() {
    let server = ApiServer::start();
    worker_with_pods(&server, "w1");
    server.fault(Fault::status("DELETE", "/api/v1/nodes/w1", 500));
    let containers = FakeContainers::with(&["w1"]);
    let mut sd = scale_down(&server, &containers);
    let mut report = Report::new(false);

    let err = sd
        .remove_worker(&["w1".to_string()], false, &mut report)
        .expect_err("fails");

    assert!(
        err.message.contains("deleting its Node failed"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("the next run removes both"),
        "{}",
        err.message
    );
    assert_eq!(err.done.len(), 2, "the evicted pods are reported");
    assert!(server.node("w1").is_some());
    // Stopped, not removed: the next run's reconcile removes a stopped container and its
    // NotReady Node (reconcile.rs, DeadContainer).
    assert!(containers.exists("w1") && containers.is_stopped("w1"));
    assert!(containers.removed().is_empty());
}

// Relies on: cordon/uncordon patches, node delete, the request log's times.
#[test]
fn removal_stops_the_container_before_deleting_the_node_and_removes_it_after() {
    let server = ApiServer::start();
    worker_with_pods(&server, "w1");
    let containers = FakeContainers::with(&["w1"]);
    let mut sd = scale_down(&server, &containers);
    sd.remove_worker(&["w1".to_string()], false, &mut Report::new(false))
        .expect("removed");
    let ops = containers.ops();
    let names: Vec<&str> = ops.iter().map(|(_, o)| o.as_str()).collect();
    assert_eq!(names, ["stop w1", "remove w1"]);
    let delete = server
        .requests()
        .into_iter()
        .find(|l| l.method == "DELETE" && l.path == "/api/v1/nodes/w1")
        .expect("the Node was deleted");
    assert!(ops[0].0 <= delete.started, "stopped before the Node delete");
    assert!(delete.finished <= ops[1].0, "removed after the Node delete");
    // k3s removes the password secret with the Node; k3s-scale sends no secret call.
    assert!(!server.secret_exists("kube-system", "w1.node-password.k3s"));
    assert_eq!(server.count("DELETE", "/secrets/"), 0);
}

// Relies on: cordon/uncordon patches.
#[test]
fn a_container_that_cannot_be_stopped_keeps_everything_and_uncordons() {
    let server = ApiServer::start();
    worker_with_pods(&server, "w1");
    let containers = FakeContainers::with(&["w1"]);
    containers.fail_stop();
    let mut sd = scale_down(&server, &containers);
    let err = sd
        .remove_worker(&["w1".to_string()], false, &mut Report::new(false))
        .expect_err("fails");
    assert!(
        err.message.contains("could not be stopped"),
        "{}",
        err.message
    );
    assert!(server.node("w1").is_some());
    assert_eq!(server.is_cordoned("w1"), Some(false));
    assert!(containers.exists("w1") && !containers.is_stopped("w1"));
    assert_eq!(server.count("DELETE", "/api/v1/nodes/"), 0);
}

#[test]
fn container_side_errors_fail_safe() {
    let server = ApiServer::start();
    worker_with_pods(&server, "w1");
    // Docker unreachable while choosing: nothing is touched.
    let containers = FakeContainers::with(&["w1"]);
    containers.fail_query();
    let mut sd = scale_down(&server, &containers);
    let err = sd
        .remove_worker(&["w1".to_string()], false, &mut Report::new(false))
        .expect_err("fails");
    assert!(
        err.message
            .contains("cannot tell whether w1 is a k3s-scale worker"),
        "{}",
        err.message
    );
    assert_eq!(server.is_cordoned("w1"), Some(false));
    assert_eq!(server.count("PATCH", "/nodes/"), 0);

    // Container removal fails after the Node is gone: reported, with what to clean up.
    let containers = FakeContainers::with(&["w1"]);
    containers.fail_remove();
    let mut sd = scale_down(&server, &containers);
    let err = sd
        .remove_worker(&["w1".to_string()], false, &mut Report::new(false))
        .expect_err("fails");
    assert!(
        err.message
            .contains("Node w1 deleted, but its stopped container could not be removed"),
        "{}",
        err.message
    );
    assert!(err.message.contains("w1-data"), "{}", err.message);
    assert!(server.node("w1").is_none());
}

/// A metrics source with a fixed answer: three idle, Ready workers.
struct Idle;

impl MetricsSource for Idle {
    fn snapshot(&self) -> Result<Snapshot, PromError> {
        let nodes = [("w1", 5.0), ("w2", 1.0), ("w3", 9.0)]
            .into_iter()
            .map(|(n, u)| {
                (
                    n.to_string(),
                    NodeSample {
                        ready: true,
                        cpu: Some(u),
                        memory: Some(u),
                    },
                )
            })
            .collect();
        // What the per-node parts of the real answer give for those figures.
        let node_resources = [("w1", 5.0), ("w2", 1.0), ("w3", 9.0)]
            .into_iter()
            .map(|(n, u)| {
                let r = NodeResources {
                    requested: Resources::new(2.0 * u / 100.0, 2e9 * u / 100.0),
                    allocatable: Resources::new(2.0, 2e9),
                    pods: None,
                };
                (n.to_string(), r)
            })
            .collect();
        Ok(Snapshot {
            pending_pods: Some(0.0),
            pending_cpu_cores: Some(0.0),
            pending_memory_bytes: Some(0.0),
            cpu: Some(5.0),
            memory: Some(5.0),
            nodes: Some(nodes),
            unschedulable: Some(Vec::new()),
            node_resources,
            cluster: None,
            hosts: Default::default(),
        })
    }
}

// The whole `evaluate` run with this scale-down plugged in: the least utilised worker
// (w2) is unremovable, so w1 goes; exit 11 and the state records it.
// Relies on: everything the happy path does.
#[test]
fn evaluate_scales_down_through_the_stand_in() {
    let server = ApiServer::start();
    worker_with_pods(&server, "w1");
    server.add_node(node("w2").build());
    server.add_pod(pod("bare").on("w2").no_controller().build());
    server.add_node(node("w3").build());
    let extra =
        "limits:\n  min_nodes: 1\n  max_nodes: 5\nscaling:\n  scale_down_unneeded_time: 0s\n";
    let cfg =
        k3s_scale::config::Config::parse(&support::config_yaml(&server, support::DRAIN, extra))
            .expect("config");
    let containers = FakeContainers::with(&["w1", "w2", "w3"]);
    let ctx = Context {
        config: &cfg,
        state_path: cfg.state.path.clone(),
        dry_run: false,
        now: Timestamp::now(),
    };
    let mut make = || -> Result<Box<dyn Actuator>, k3s_scale::run::error::RunError> {
        let down = ScaleDown::connect(&cfg, containers.boxed())
            .map_err(|e| k3s_scale::run::error::RunError::Action(e.to_string()))?;
        Ok(Box::new(WithScaleDown { up: PlanOnly, down }))
    };

    let outcome = evaluate::evaluate(&ctx, &Idle, &mut make);

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.exit_code(), 11);
    assert_eq!(outcome.report.candidates, vec!["w2", "w1", "w3"]);
    assert_eq!(outcome.report.removed, vec!["w1"]);
    assert_eq!(outcome.report.unremovable.len(), 1);
    assert_eq!(outcome.report.evicted.len(), 2);
    assert!(server.node("w1").is_none());
    assert_eq!(containers.removed(), vec!["w1"]);
    let state = State::load(&cfg.state.path).expect("state saved");
    assert_eq!(state.totals.workers_removed, 1);
    assert_eq!(state.totals.evicted_pods, 2);
    assert!(state.last_scale_down.is_some());
}

// Relies on: PDB list. A pod two PDBs select can never be evicted (eviction.go refuses
// it whatever they allow): its node is passed over before any cordon, the next one goes.
#[test]
fn a_candidate_with_a_pod_two_budgets_select_is_unremovable_before_any_cordon() {
    let server = ApiServer::start();
    worker_with_pods(&server, "w1");
    server.add_node(node("w2").build());
    server.add_pod(pod("db").on("w2").label("app", "db").build());
    server.add_pdb(
        pdb("db-a")
            .selecting("app", "db")
            .max_unavailable(1)
            .build(),
    );
    server.add_pdb(
        pdb("db-b")
            .expression("app", "Exists", &[])
            .max_unavailable(5)
            .build(),
    );
    let containers = FakeContainers::with(&["w1", "w2"]);
    let mut sd = scale_down(&server, &containers);
    let mut report = Report::new(false);
    let removal = sd
        .remove_worker(&["w2".to_string(), "w1".to_string()], false, &mut report)
        .expect("w1 goes instead");
    assert_eq!(removal.removed.as_deref(), Some("w1"));
    assert_eq!(report.unremovable.len(), 1);
    assert_eq!(report.unremovable[0].node, "w2");
    assert!(
        report.unremovable[0]
            .reason
            .contains("more than one PodDisruptionBudget (default/db-a, default/db-b)"),
        "{}",
        report.unremovable[0].reason
    );
    assert_eq!(server.count("PATCH", "/nodes/w2"), 0, "w2 never cordoned");
    assert_eq!(server.count("POST", "/pods/db/eviction"), 0);
}
