//! The drain loop (src/kube/mover.rs) and `drain NODE` (`ScaleDown::drain_named`) with the
//! real kube client against the API server stand-in (a simulator,
//! tests/support/apiserver.rs). Each test names the stand-in behaviour it relies on.

mod support;

use k3s_scale::kube::drain::Skip;
use k3s_scale::kube::mover::{DrainOptions, MoveMode, Recheck, drain_node};
use k3s_scale::kube::{Cluster, KubeCluster};
use k3s_scale::run::scale_down::{DrainRequest, ScaleDown};
use std::time::{Duration, Instant};
use support::apiserver::{ApiServer, Fault};
use support::containers::FakeContainers;
use support::objects::{node, pdb, pod};

const QUICK: Duration = Duration::from_millis(100);

fn cluster(server: &ApiServer) -> KubeCluster {
    KubeCluster::connect(&support::config(server).kubernetes).expect("client")
}

fn options(server: &ApiServer, mode: MoveMode) -> DrainOptions {
    DrainOptions::from_config(&support::config(server).drain, mode)
}

fn evictions(server: &ApiServer) -> Vec<String> {
    let mut v: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/eviction"))
        .map(|r| r.path)
        .collect();
    v.sort();
    v.dedup();
    v
}

// Relies on: pod list by fieldSelector, eviction 201, pods going after their shutdown.
#[test]
fn daemonset_mirror_and_finished_pods_are_skipped() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_node(node("w2").build());
    server.add_pod_exiting_after(pod("web").on("w1").build(), QUICK);
    server.add_pod(
        pod("ds")
            .ns("kube-system")
            .on("w1")
            .owned_by_daemonset()
            .build(),
    );
    server.add_pod(pod("static").ns("kube-system").on("w1").mirror().build());
    server.add_pod(
        pod("done")
            .on("w1")
            .owned_by("Job", "j")
            .phase("Succeeded")
            .build(),
    );
    server.add_pod(
        pod("crashed")
            .on("w1")
            .owned_by("Job", "k")
            .phase("Failed")
            .build(),
    );
    server.add_pod(pod("elsewhere").on("w2").build());
    let c = cluster(&server);

    let drained =
        drain_node(&c, "w1", &options(&server, MoveMode::Evict), Recheck::Pods).expect("drained");

    assert_eq!(drained.moved, vec!["default/web"]);
    assert_eq!(
        drained.skipped,
        vec![
            ("default/crashed".to_string(), Skip::Finished),
            ("default/done".to_string(), Skip::Finished),
            ("kube-system/ds".to_string(), Skip::DaemonSet),
            ("kube-system/static".to_string(), Skip::Mirror),
        ]
    );
    assert_eq!(
        evictions(&server),
        vec!["/api/v1/namespaces/default/pods/web/eviction"]
    );
    assert!(server.pod("default", "web").is_none());
    assert!(
        server.pod("default", "elsewhere").is_some(),
        "other nodes untouched"
    );
    assert_eq!(
        server.is_cordoned("w1"),
        Some(true),
        "a successful drain leaves it cordoned"
    );
}

// Relies on: injected 503 for N calls on the eviction subresource, then normal answers.
#[test]
fn server_errors_mid_drain_are_retried_until_they_pass() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    for i in 0..4 {
        server.add_pod_exiting_after(pod(&format!("p{i}")).on("w1").build(), QUICK);
    }
    server.fault(Fault::status("POST", "/eviction", 503).times(3));
    let c = cluster(&server);

    let drained = drain_node(&c, "w1", &options(&server, MoveMode::Evict), Recheck::Pods)
        .expect("the drain gets through");

    assert_eq!(drained.moved.len(), 4);
    let statuses: Vec<u16> = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/eviction"))
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        4,
        "{statuses:?}"
    );
}

// Relies on: dropped connections (request read, socket closed) for N calls, on the
// eviction and on the pod GETs of the wait, then normal answers.
#[test]
fn dropped_connections_mid_drain_are_retried() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_pod_exiting_after(pod("a").on("w1").build(), Duration::from_millis(300));
    server.add_pod_exiting_after(pod("b").on("w1").build(), Duration::from_millis(300));
    server.fault(Fault::drop_connection("POST", "/eviction").times(2));
    server.fault(Fault::drop_connection("GET", "/namespaces/default/pods/").times(2));
    let c = cluster(&server);

    let drained = drain_node(&c, "w1", &options(&server, MoveMode::Evict), Recheck::Pods)
        .expect("the drain gets through");

    assert_eq!(drained.moved.len(), 2);
    let dropped = server.requests().iter().filter(|r| r.status == 0).count();
    assert_eq!(dropped, 4, "all four injected drops happened");
    assert!(server.pod("default", "a").is_none() && server.pod("default", "b").is_none());
}

// Relies on: a dropped connection on the cordon patch (once), then normal answers.
#[test]
fn a_dropped_cordon_is_retried() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.fault(Fault::drop_connection("PATCH", "/nodes/w1").times(1));
    let c = cluster(&server);
    drain_node(&c, "w1", &options(&server, MoveMode::Evict), Recheck::Pods).expect("drained");
    assert_eq!(server.count("PATCH", "/nodes/w1"), 2);
    assert_eq!(server.is_cordoned("w1"), Some(true));
}

// Relies on: an injected 503 on every eviction.
#[test]
fn a_server_that_keeps_failing_fails_the_drain_at_the_deadline() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_pod_exiting_after(pod("a").on("w1").build(), QUICK);
    server.fault(Fault::status("POST", "/eviction", 503));
    let c = cluster(&server);

    let started = Instant::now();
    let f =
        drain_node(&c, "w1", &options(&server, MoveMode::Evict), Recheck::Pods).expect_err("fails");

    assert!(started.elapsed() < Duration::from_secs(15), "deadline held");
    assert_eq!(f.not_moved.len(), 1);
    assert!(f.not_moved[0].1.contains("503"), "{:?}", f.not_moved);
    assert!(
        f.not_moved[0].1.contains("until the drain deadline"),
        "{:?}",
        f.not_moved
    );
    assert_eq!(f.node_left, "uncordoned");
    assert_eq!(server.is_cordoned("w1"), Some(false));
    assert!(server.pod("default", "a").is_some(), "nothing deleted");
}

// Relies on: 500 from the eviction subresource when two PDBs match a pod.
#[test]
fn two_pdbs_on_a_pod_stop_the_drain_at_once() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_pod_exiting_after(pod("a").on("w1").label("app", "web").build(), QUICK);
    server.add_pdb(
        pdb("one")
            .selecting("app", "web")
            .max_unavailable(1)
            .build(),
    );
    server.add_pdb(
        pdb("two")
            .selecting("app", "web")
            .max_unavailable(1)
            .build(),
    );
    let c = cluster(&server);

    let started = Instant::now();
    let f =
        drain_node(&c, "w1", &options(&server, MoveMode::Evict), Recheck::Pods).expect_err("fails");

    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no retry until the 3 s deadline"
    );
    assert!(
        f.not_moved[0]
            .1
            .contains("more than one PodDisruptionBudget"),
        "{:?}",
        f.not_moved
    );
    assert_eq!(server.count("POST", "/eviction"), 1);
    assert_eq!(server.is_cordoned("w1"), Some(false));
}

// Relies on: eviction honouring deleteOptions.gracePeriodSeconds, recorded per deletion.
#[test]
fn grace_periods_are_capped_by_config() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_pod_exiting_after(pod("slow").on("w1").grace(600).build(), QUICK);
    server.add_pod_exiting_after(pod("quick").on("w1").grace(2).build(), QUICK);
    let c = cluster(&server);
    let opts = DrainOptions::from_config(
        &support::config_with_drain(
            &server,
            "  timeout: 3s\n  max_grace_period: 5s\n  eviction_retry_interval: 200ms\n",
        )
        .drain,
        MoveMode::Evict,
    );

    drain_node(&c, "w1", &opts, Recheck::Pods).expect("drained");

    let mut graces: Vec<(String, i64)> = server
        .deletions()
        .into_iter()
        .map(|d| (d.pod, d.grace_seconds))
        .collect();
    graces.sort();
    assert_eq!(
        graces,
        vec![("default/quick".into(), 2), ("default/slow".into(), 5)]
    );
}

// Relies on: a pod that takes its whole (capped) grace period; the drain deadline.
#[test]
fn a_pod_still_terminating_at_the_deadline_fails_the_drain() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_pod(pod("stubborn").on("w1").grace(30).build());
    let c = cluster(&server);

    let f =
        drain_node(&c, "w1", &options(&server, MoveMode::Evict), Recheck::Pods).expect_err("fails");

    assert_eq!(
        f.moved,
        vec!["default/stubborn"],
        "its eviction was accepted"
    );
    assert!(
        f.not_moved[0]
            .1
            .contains("still terminating at the drain deadline"),
        "{:?}",
        f.not_moved
    );
    assert_eq!(server.is_cordoned("w1"), Some(false));
}

// Relies on: a pod replaced at once by one of the same name with a new UID (StatefulSet).
#[test]
fn a_pod_replaced_under_the_same_name_counts_as_gone() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_node(node("w2").build());
    server.add_pod_respawning(
        pod("db-0").on("w1").owned_by("StatefulSet", "db").build(),
        QUICK,
        "w2",
    );
    let c = cluster(&server);
    let uid_before = server.pod("default", "db-0").unwrap().metadata.uid;

    drain_node(&c, "w1", &options(&server, MoveMode::Evict), Recheck::Pods).expect("drained");

    let now = server.pod("default", "db-0").expect("replaced");
    assert_ne!(now.metadata.uid, uid_before);
    assert_eq!(now.spec.unwrap().node_name.as_deref(), Some("w2"));
}

// Relies on: pods bound after the check; the request log.
#[test]
fn a_blocking_pod_found_after_the_cordon_stops_the_drain() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_pod(pod("bare").on("w1").no_controller().build());
    let c = cluster(&server);
    let f = drain_node(&c, "w1", &options(&server, MoveMode::Evict), Recheck::Pods)
        .expect_err("refused");
    assert!(
        f.not_moved[0].1.contains("no controller"),
        "{:?}",
        f.not_moved
    );
    assert_eq!(server.count("POST", "/eviction"), 0);
    assert_eq!(server.is_cordoned("w1"), Some(false));
}

// Relies on: node patch; a cordon that was there before the drain stays.
#[test]
fn a_node_cordoned_before_stays_cordoned_after_a_failure() {
    let server = ApiServer::start();
    server.add_node(node("w1").cordoned().build());
    server.add_pod(pod("stubborn").on("w1").build());
    server.fault(Fault::status("POST", "/eviction", 503));
    let c = cluster(&server);
    let f =
        drain_node(&c, "w1", &options(&server, MoveMode::Evict), Recheck::Pods).expect_err("fails");
    assert!(f.node_left.starts_with("left cordoned"), "{}", f.node_left);
    assert_eq!(server.is_cordoned("w1"), Some(true));
    // No drain mark left behind: the next run's reconcile would take the operator's
    // cordon for a killed drain's and uncordon it.
    assert_eq!(marks(&server, "w1"), Vec::<String>::new());
}

/// The drain marks on the Node (issue 23 point 4).
fn marks(server: &ApiServer, name: &str) -> Vec<String> {
    use k3s_scale::kube::drain::{CORDONED_BEFORE_ANNOTATION, DRAINING_ANNOTATION};
    let annotations = server
        .node(name)
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default();
    [DRAINING_ANNOTATION, CORDONED_BEFORE_ANNOTATION]
        .into_iter()
        .filter(|k| annotations.contains_key(*k))
        .map(String::from)
        .collect()
}

// Relies on: node patch (null deletes an annotation); the request log.
/// The cordon of a drain that finds the node cordoned by someone records it in the same
/// patch as the drain mark: a run killed mid-drain leaves that said on the Node.
#[test]
fn the_cordon_of_a_hand_cordoned_node_records_that_it_was_cordoned_before() {
    use k3s_scale::kube::drain::{CORDONED_BEFORE_ANNOTATION, DRAINING_ANNOTATION};
    let server = ApiServer::start();
    server.add_node(node("w1").cordoned().build());
    server.add_node(node("w2").build());
    let c = cluster(&server);
    c.cordon("w1", true).unwrap();
    c.cordon("w2", false).unwrap();
    assert_eq!(
        marks(&server, "w1"),
        [DRAINING_ANNOTATION, CORDONED_BEFORE_ANNOTATION]
    );
    assert_eq!(marks(&server, "w2"), [DRAINING_ANNOTATION]);
    assert_eq!(server.count("PATCH", "/nodes/w1"), 1, "one write");
    c.clear_drain_mark("w1").unwrap();
    assert_eq!(server.is_cordoned("w1"), Some(true));
    assert_eq!(marks(&server, "w1"), Vec::<String>::new());
    c.uncordon("w2").unwrap();
    assert_eq!(server.is_cordoned("w2"), Some(false));
    assert_eq!(marks(&server, "w2"), Vec::<String>::new());
}

// Relies on: node patch (null deletes an annotation).
/// A drain killed on a node an operator had cordoned left both marks; a later drain of it
/// (`drain NODE` before any evaluate repaired it) that fails keeps the operator's cordon.
#[test]
fn a_killed_drains_marks_on_a_hand_cordoned_node_keep_it_cordoned() {
    use k3s_scale::kube::drain::{CORDONED_BEFORE_ANNOTATION, DRAINING_ANNOTATION};
    let server = ApiServer::start();
    server.add_node(
        node("w1")
            .cordoned()
            .annotate(DRAINING_ANNOTATION, "2026-11-27T00:00:00Z")
            .annotate(CORDONED_BEFORE_ANNOTATION, "true")
            .build(),
    );
    server.add_pod(pod("stubborn").on("w1").build());
    server.fault(Fault::status("POST", "/eviction", 503));
    let c = cluster(&server);
    let f =
        drain_node(&c, "w1", &options(&server, MoveMode::Evict), Recheck::Pods).expect_err("fails");
    assert!(f.node_left.starts_with("left cordoned"), "{}", f.node_left);
    assert_eq!(server.is_cordoned("w1"), Some(true));
    assert_eq!(marks(&server, "w1"), Vec::<String>::new());
}

// Relies on: strategic-merge patches applied as JSON merge patches (null deletes a key).
#[test]
fn a_cordon_left_by_a_dead_drain_is_undone_not_taken_for_the_users() {
    let server = ApiServer::start();
    server.add_node(
        node("w1")
            .cordoned()
            .annotate(
                k3s_scale::kube::drain::DRAINING_ANNOTATION,
                "2026-11-27T00:00:00Z",
            )
            .build(),
    );
    server.add_pod(pod("stubborn").on("w1").build());
    server.fault(Fault::status("POST", "/eviction", 503));
    let c = cluster(&server);
    let f =
        drain_node(&c, "w1", &options(&server, MoveMode::Evict), Recheck::Pods).expect_err("fails");
    assert_eq!(f.node_left, "uncordoned", "{f}");
    assert_eq!(server.is_cordoned("w1"), Some(false));
    let annotations = server
        .node("w1")
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default();
    assert!(
        !annotations.contains_key(k3s_scale::kube::drain::DRAINING_ANNOTATION),
        "the mark goes with the cordon: {annotations:?}"
    );
}

// Relies on: pod delete with a grace period (no PDB check), recorded per deletion.
#[test]
fn disable_eviction_deletes_with_grace_and_ignores_pdbs() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_pod_exiting_after(
        pod("a").on("w1").label("app", "web").grace(7).build(),
        QUICK,
    );
    server.add_pdb(pdb("web").selecting("app", "web").min_available(1).build());
    let c = cluster(&server);

    drain_node(&c, "w1", &options(&server, MoveMode::Delete), Recheck::Pods).expect("drained");

    assert_eq!(server.count("POST", "/eviction"), 0);
    let d = server.deletions();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].via, d[0].grace_seconds), ("delete", 7));
}

// Relies on: added latency on evictions; the request log's timings (requests served at
// once).
#[test]
fn evictions_run_concurrently_within_the_bound() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    for i in 0..12 {
        server.add_pod_exiting_after(pod(&format!("p{i}")).on("w1").build(), QUICK);
    }
    server.fault(Fault::latency(
        "POST",
        "/eviction",
        Duration::from_millis(300),
    ));
    let c = cluster(&server);
    let drain = "  timeout: 30s\n  eviction_retry_interval: 200ms\n  concurrency: 4\n";
    let opts = DrainOptions::from_config(
        &support::config_with_drain(&server, drain).drain,
        MoveMode::Evict,
    );

    let drained = drain_node(&c, "w1", &opts, Recheck::Pods).expect("drained");

    assert_eq!(drained.moved.len(), 12);
    let most = server.max_concurrent("POST", "/eviction");
    assert!(most > 1, "evictions overlapped: at most {most} at once");
    assert!(most <= 4, "drain.concurrency 4 held: {most} at once");
}

fn drainer(server: &ApiServer, containers: &FakeContainers, mode: MoveMode) -> ScaleDown {
    let cfg = support::config(server);
    ScaleDown::new(Box::new(cluster(server)), containers.boxed(), &cfg, mode)
}

// Relies on: node, pod, secret reads and deletes; eviction.
#[test]
fn drain_named_removes_a_managed_worker() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_secret("kube-system", "w1.node-password.k3s");
    server.add_pod_exiting_after(pod("web").on("w1").build(), QUICK);
    let containers = FakeContainers::with(&["w1"]);
    let mut d = drainer(&server, &containers, MoveMode::Evict);

    let rep = d.drain_named("w1", &DrainRequest::default());

    assert_eq!(rep.exit_code, 11, "{rep:?}");
    assert!(rep.removed);
    assert_eq!(rep.evicted, vec!["default/web"]);
    assert!(server.node("w1").is_none());
    assert!(!server.secret_exists("kube-system", "w1.node-password.k3s"));
    assert_eq!(containers.removed(), vec!["w1"]);
    assert!(rep.to_text().contains("removed it"), "{}", rep.to_text());
}

// Relies on: node patch and eviction; nothing is deleted.
#[test]
fn drain_named_keeps_a_worker_cordoned_when_asked() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_secret("kube-system", "w1.node-password.k3s");
    server.add_pod_exiting_after(pod("web").on("w1").build(), QUICK);
    let containers = FakeContainers::with(&["w1"]);
    let mut d = drainer(&server, &containers, MoveMode::Evict);

    let rep = d.drain_named(
        "w1",
        &DrainRequest {
            keep_cordoned: true,
            ..Default::default()
        },
    );

    assert_eq!(rep.exit_code, 0, "{rep:?}");
    assert!(!rep.removed);
    assert_eq!(server.is_cordoned("w1"), Some(true));
    assert!(server.secret_exists("kube-system", "w1.node-password.k3s"));
    assert!(containers.exists("w1") && containers.removed().is_empty());
    assert!(server.pod("default", "web").is_none(), "drained");
}

// Relies on: node patch (null deletes an annotation) and eviction; nothing is deleted.
/// `drain NODE` of a worker an operator had cordoned, whose container then cannot be
/// stopped: the drain gives up on the removal and undoes only its own cordon, which here
/// is none: the node stays cordoned, without drain marks.
#[test]
fn drain_named_leaves_an_operators_cordon_when_the_removal_fails() {
    let server = ApiServer::start();
    server.add_node(node("w1").cordoned().build());
    server.add_pod_exiting_after(pod("web").on("w1").build(), QUICK);
    let containers = FakeContainers::with(&["w1"]);
    containers.fail_stop();
    let mut d = drainer(&server, &containers, MoveMode::Evict);

    let rep = d.drain_named("w1", &DrainRequest::default());

    assert_eq!(rep.exit_code, 5, "{rep:?}");
    let error = rep.error.clone().unwrap_or_default();
    assert!(
        error.contains("left cordoned (it was cordoned before the drain)"),
        "{error}"
    );
    assert_eq!(server.is_cordoned("w1"), Some(true));
    assert_eq!(marks(&server, "w1"), Vec::<String>::new());
    assert!(containers.exists("w1") && containers.removed().is_empty());
}

// Relies on: node patch and eviction; nothing is deleted.
#[test]
fn drain_named_never_deletes_an_unmanaged_node() {
    let server = ApiServer::start();
    server.add_node(node("other").build());
    server.add_secret("kube-system", "other.node-password.k3s");
    server.add_pod_exiting_after(pod("web").on("other").build(), QUICK);
    let containers = FakeContainers::with(&["w1"]);
    let mut d = drainer(&server, &containers, MoveMode::Evict);

    let rep = d.drain_named("other", &DrainRequest::default());

    assert_eq!(rep.exit_code, 0, "{rep:?}");
    assert!(
        rep.kept_because
            .as_deref()
            .unwrap()
            .contains("not a k3s-scale worker")
    );
    let text = rep.to_text();
    assert!(
        text.contains("not removed") && text.contains("nothing was deleted"),
        "{text}"
    );
    assert!(server.node("other").is_some());
    assert_eq!(server.is_cordoned("other"), Some(true));
    assert!(server.secret_exists("kube-system", "other.node-password.k3s"));
    assert_eq!(server.count("DELETE", "/"), 0, "no DELETE at all");
    assert!(containers.removed().is_empty());
}

// Relies on: the request log (a refusal writes nothing).
#[test]
fn drain_named_refuses_unsafe_pods_unless_forced() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_pod_exiting_after(pod("bare").on("w1").no_controller().build(), QUICK);
    let containers = FakeContainers::with(&["w1"]);
    let mut d = drainer(&server, &containers, MoveMode::Evict);

    let rep = d.drain_named("w1", &DrainRequest::default());
    assert_eq!(rep.exit_code, 5);
    assert_eq!(
        rep.blockers,
        vec!["pod default/bare has no controller, so it would not come back"]
    );
    assert!(rep.error.as_deref().unwrap().contains("--force"));
    assert_eq!(server.count("PATCH", "/"), 0, "not even cordoned");

    let rep = d.drain_named(
        "w1",
        &DrainRequest {
            force: true,
            ..Default::default()
        },
    );
    assert_eq!(rep.exit_code, 11, "{rep:?}");
    assert!(server.pod("default", "bare").is_none());
}

// Relies on: PDB list and status; the request log.
#[test]
fn drain_named_dry_run_lists_pods_and_budget_waits_and_writes_nothing() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_pod(pod("web").on("w1").label("app", "web").build());
    server.add_pod(pod("ds").on("w1").owned_by_daemonset().build());
    server.add_pdb(pdb("web").selecting("app", "web").min_available(1).build());
    let containers = FakeContainers::with(&["w1"]);
    let mut d = drainer(&server, &containers, MoveMode::Evict);

    let rep = d.drain_named(
        "w1",
        &DrainRequest {
            dry_run: true,
            ..Default::default()
        },
    );

    assert_eq!(rep.exit_code, 11, "a managed worker would be removed");
    assert_eq!(rep.evicted, vec!["default/web"]);
    assert_eq!(rep.skipped, vec!["default/ds: DaemonSet pod"]);
    assert_eq!(rep.waits.len(), 1);
    assert!(
        rep.waits[0].contains("PodDisruptionBudget default/web"),
        "{:?}",
        rep.waits
    );
    let text = rep.to_text();
    assert!(
        text.contains("would evict default/web") && text.contains("would drain w1"),
        "{text}"
    );
    let writes: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

// Relies on: node get 404.
#[test]
fn drain_named_of_a_missing_node_is_a_usage_error() {
    let server = ApiServer::start();
    let containers = FakeContainers::default();
    let mut d = drainer(&server, &containers, MoveMode::Evict);
    let rep = d.drain_named("nope", &DrainRequest::default());
    assert_eq!(rep.exit_code, 2);
    assert_eq!(rep.error.as_deref(), Some("no node named nope"));
}

// Relies on: nothing answering on the port (connection refused).
#[test]
fn an_unreachable_apiserver_is_an_error_not_a_hang() {
    let server = ApiServer::start();
    let c = cluster(&server);
    drop(server);
    let started = Instant::now();
    let e = c.node("w1").expect_err("no server");
    assert!(e.is_transient(), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
