//! `k3s-scale drain NODE` through the built binary, against the API server stand-in (a
//! simulator, tests/support/apiserver.rs). These nodes are not k3s-scale workers, so the
//! binary drains them and deletes nothing, whatever container client it is built with.
//! (Removing a managed worker through `drain` is tested with the in-memory container
//! side in tests/kube_drain.rs.) Each test names the stand-in behaviour it relies on.

mod support;

use std::process::Output;
use std::time::Duration;
use support::apiserver::{ApiServer, Fault};
use support::objects::{node, pdb, pod};

const QUICK: Duration = Duration::from_millis(100);

fn run(server: &ApiServer, args: &[&str]) -> Output {
    let cfg = server.dir().join("config.yaml");
    std::fs::write(&cfg, support::config_yaml(server, support::DRAIN, "")).unwrap();
    support::bin()
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn state(server: &ApiServer) -> serde_json::Value {
    let bytes = std::fs::read(server.dir().join("state.json")).expect("state written");
    serde_json::from_slice(&bytes).unwrap()
}

// Relies on: node get/patch, pod list by fieldSelector, eviction 201, pods going after
// their shutdown time, secret get; the request log.
#[test]
fn drain_of_an_unmanaged_node_drains_and_deletes_nothing() {
    let server = ApiServer::start();
    server.add_node(node("other").build());
    server.add_secret("kube-system", "other.node-password.k3s");
    server.add_pod_exiting_after(pod("web").on("other").build(), QUICK);
    server.add_pod(pod("ds").on("other").owned_by_daemonset().build());

    let out = run(&server, &["drain", "other"]);
    let (stdout, stderr) = text(&out);

    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("drained other (1 pod(s) evicted)"),
        "{stdout}"
    );
    assert!(stdout.contains("not removed"), "{stdout}");
    assert!(stdout.contains("nothing was deleted"), "{stdout}");
    assert!(
        stdout.contains("leave default/ds: DaemonSet pod"),
        "{stdout}"
    );
    assert!(server.node("other").is_some());
    assert_eq!(
        server.is_cordoned("other"),
        Some(true),
        "left cordoned, as kubectl drain does"
    );
    assert!(server.pod("default", "web").is_none(), "evicted");
    assert!(server.pod("default", "ds").is_some(), "DaemonSet pod left");
    assert!(server.secret_exists("kube-system", "other.node-password.k3s"));
    assert_eq!(server.count("DELETE", "/"), 0, "no DELETE at all");
    let events = state(&server)["events"].to_string();
    assert!(events.contains("drained other; left cordoned"), "{events}");
}

// Relies on: node get/patch; eviction.
#[test]
fn drain_of_a_permanent_node_says_why_it_stays() {
    let server = ApiServer::start();
    server.add_node(node("keep-1").build());
    let out = run(&server, &["drain", "keep-1", "--output", "json"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let rep: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(rep["kept_because"], "listed in kubernetes.permanent_nodes");
    assert_eq!(rep["removed"], false);
    assert_eq!(rep["node_left"], "cordoned");
    assert_eq!(server.is_cordoned("keep-1"), Some(true));
}

// Relies on: reads only; the request log.
#[test]
fn drain_dry_run_prints_the_plan_and_changes_nothing() {
    let server = ApiServer::start();
    server.add_node(node("s1").control_plane().build());
    server.add_pod(pod("web").on("s1").label("app", "web").build());
    server.add_pdb(pdb("web").selecting("app", "web").min_available(1).build());

    let out = run(&server, &["--dry-run", "drain", "s1"]);
    let (stdout, stderr) = text(&out);

    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("would drain s1 (1 pod(s)) and leave it cordoned"),
        "{stdout}"
    );
    assert!(stdout.contains("control-plane node"), "{stdout}");
    assert!(stdout.contains("would evict default/web"), "{stdout}");
    assert!(
        stdout.contains("wait: pod default/web PodDisruptionBudget default/web"),
        "{stdout}"
    );
    let writes: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(
        !server.dir().join("state.json").exists(),
        "a dry run writes no state"
    );
}

// Relies on: 429 from the eviction subresource while a PDB allows no disruption.
#[test]
fn drain_blocked_by_a_pdb_exits_5_and_uncordons() {
    let server = ApiServer::start();
    server.add_node(node("other").build());
    server.add_pod(pod("web").on("other").label("app", "web").build());
    server.add_pdb(pdb("web").selecting("app", "web").min_available(1).build());

    let out = run(&server, &["drain", "other"]);
    let (stdout, stderr) = text(&out);

    assert_eq!(out.status.code(), Some(5), "{stdout}{stderr}");
    assert!(
        stdout.contains("not moved: default/web: eviction refused by a PodDisruptionBudget"),
        "{stdout}"
    );
    assert!(stdout.contains("node uncordoned"), "{stdout}");
    assert_eq!(server.is_cordoned("other"), Some(false));
    assert!(server.pod("default", "web").is_some());
    let st = state(&server);
    assert!(st["events"].to_string().contains("drain_failed"), "{st}");
    assert_eq!(st["totals"]["errors"]["action"], 1);
}

// Relies on: injected 503s on node reads (every attempt).
#[test]
fn drain_with_the_apiserver_failing_exits_5() {
    let server = ApiServer::start();
    server.add_node(node("other").build());
    server.fault(Fault::status("GET", "/api/v1/nodes/other", 503));
    let out = run(&server, &["drain", "other"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{stdout}{stderr}");
    assert!(stdout.contains("503"), "{stdout}");
    assert_eq!(server.count("PATCH", "/"), 0);
}

// Relies on: node get 404.
#[test]
fn drain_of_a_missing_node_or_a_bad_name_is_a_usage_error() {
    let server = ApiServer::start();
    let out = run(&server, &["drain", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).0.contains("no node named nope"));
    let out = run(&server, &["drain", "Bad_Name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("not a valid Kubernetes node name"));
}

fn run_with_drain(server: &ApiServer, drain: &str, args: &[&str]) -> Output {
    let cfg = server.dir().join("config.yaml");
    std::fs::write(&cfg, support::config_yaml(server, drain, "")).unwrap();
    support::bin()
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("the binary runs")
}

/// A 30 s deadline: the cases below must end well before it.
const LONG_DRAIN: &str =
    "  timeout: 30s\n  max_grace_period: 10s\n  eviction_retry_interval: 200ms\n  concurrency: 4\n";

// Relies on: eviction.go's Status for a pod two PDBs select (HTTP 500, no reason).
#[test]
fn drain_of_a_pod_two_budgets_select_fails_at_once_names_it_and_uncordons() {
    let server = ApiServer::start();
    server.add_node(node("other").build());
    server.add_pod(pod("web").on("other").label("app", "web").build());
    server.add_pdb(pdb("a").selecting("app", "web").max_unavailable(1).build());
    server.add_pdb(
        pdb("b")
            .expression("app", "In", &["web"])
            .max_unavailable(1)
            .build(),
    );
    let started = std::time::Instant::now();
    let out = run_with_drain(&server, LONG_DRAIN, &["drain", "other", "--output", "json"]);
    let took = started.elapsed();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{stdout}{stderr}");
    assert!(
        took < Duration::from_secs(5),
        "failed fast: {took:?} (deadline 30 s)"
    );
    let rep: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let not_moved = rep["not_moved"].to_string();
    assert!(
        not_moved.contains("default/web")
            && not_moved.contains("more than one PodDisruptionBudget"),
        "{rep}"
    );
    assert_eq!(rep["node_left"], "uncordoned");
    assert_eq!(server.is_cordoned("other"), Some(false));
    assert_eq!(server.count("POST", "/eviction"), 1, "not retried");
    assert!(server.pod("default", "web").is_some());
}

// Relies on: an injected 429 on the first eviction, then eviction.go's 409 for a UID
// precondition that no longer matches (the pod was replaced by a same-name pod).
#[test]
fn drain_counts_a_pod_replaced_by_a_same_name_pod_as_moved() {
    let server = std::sync::Arc::new(ApiServer::start());
    server.add_node(node("other").build());
    server.add_pod(
        pod("db-0")
            .on("other")
            .owned_by("StatefulSet", "db")
            .build(),
    );
    server.fault(Fault::status("POST", "/pods/db-0/eviction", 429).times(1));
    let s2 = server.clone();
    let replacer = std::thread::spawn(move || {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while s2.count("POST", "/pods/db-0/eviction") == 0 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The StatefulSet controller replaced it (here: on another node) before the retry.
        s2.remove_pod("default", "db-0");
        s2.add_pod(pod("db-0").on("w2").owned_by("StatefulSet", "db").build());
    });
    let out = run_with_drain(&server, LONG_DRAIN, &["drain", "other", "--output", "json"]);
    replacer.join().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let rep: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(rep["evicted"], serde_json::json!(["default/db-0"]), "{rep}");
    let evictions: Vec<u16> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/eviction"))
        .map(|r| r.status)
        .collect();
    assert_eq!(
        evictions,
        [429, 409],
        "one retry, refused by the UID precondition"
    );
    let replacement = server
        .pod("default", "db-0")
        .expect("the replacement is spared");
    assert!(replacement.metadata.deletion_timestamp.is_none());
    assert!(server.deletions().is_empty(), "nothing deleted");
}

// Relies on: NamespaceLifecycle's 403 NamespaceTerminating; the namespace controller's
// pod deletes.
#[test]
fn drain_waits_for_a_pod_whose_namespace_is_terminating() {
    let server = ApiServer::start();
    server.add_node(node("other").build());
    server.add_pod_exiting_after(
        pod("job-x").ns("gone").on("other").grace(30).build(),
        Duration::from_millis(800),
    );
    server.terminate_namespace("gone");
    let out = run_with_drain(&server, LONG_DRAIN, &["drain", "other", "--output", "json"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let rep: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(rep["evicted"], serde_json::json!(["gone/job-x"]), "{rep}");
    assert!(server.pod("gone", "job-x").is_none());
    assert_eq!(
        server.count("POST", "/eviction"),
        1,
        "a 403 NamespaceTerminating is not retried: the pod is waited for"
    );
}
