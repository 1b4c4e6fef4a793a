//! Least privilege: every Kubernetes API call k3s-scale makes, as the API server stand-in
//! records it, is allowed by the ClusterRole in deploy/rbac.yaml, and every rule there is
//! used. The calls are classified the way kube-apiserver's RequestInfoFactory does
//! (apiserver/pkg/endpoints/request/requestinfo.go: GET on a collection is `list`, on an
//! object `get`; POST `create`, PATCH `patch`, DELETE `delete`; `/api` is the core group,
//! `/apis/<group>/<version>` a named one; a path past the object name is a subresource).
//! Every call goes through `kube::Cluster` (src/kube/mod.rs, src/kube/client.rs) and the
//! pod mover (src/kube/mover.rs), so exercising each method of it, both ways of moving pods, a
//! scale-down and the Event writer covers them. The stand-in does not enforce RBAC: this
//! compares the recorded calls with the manifest.

mod support;

use k3s_scale::kube::events::{self, About, Notice};
use k3s_scale::kube::mover::{DrainOptions, MoveMode, Recheck, drain_node};
use k3s_scale::kube::{Cluster, KubeCluster};
use k3s_scale::run::report::Report;
use k3s_scale::run::scale_down::ScaleDown;
use k3s_scale::state::time::Timestamp;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use support::apiserver::{ApiServer, Logged};
use support::containers::FakeContainers;
use support::objects::{node, pdb, pod};

/// (apiGroup, resource[/subresource], verb)
type Call = (String, String, String);

/// What RBAC sees in a request (requestinfo.go).
fn classify(l: &Logged) -> Call {
    let segs: Vec<&str> = l.path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest.to_vec()),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest.to_vec()),
        _ => panic!("not an API path: {}", l.path),
    };
    let rest = match rest.as_slice() {
        ["namespaces", _ns, more @ ..] if !more.is_empty() => more.to_vec(),
        other => other.to_vec(),
    };
    let (resource, has_name) = match rest.as_slice() {
        [res] => (res.to_string(), false),
        [res, _name] => (res.to_string(), true),
        [res, _name, sub] => (format!("{res}/{sub}"), true),
        _ => panic!("unexpected path {}", l.path),
    };
    let watch = l
        .query
        .split('&')
        .any(|q| q == "watch=true" || q == "watch=1");
    let verb = match (l.method.as_str(), has_name) {
        ("GET", _) if watch => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        (m, _) => panic!("unexpected method {m}"),
    };
    (group, resource, verb.to_string())
}

/// The rules of a ClusterRole in deploy/rbac.yaml, spelled out per verb.
fn role(name: &str) -> BTreeSet<Call> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml"))
        .expect("deploy/rbac.yaml");
    let mut out = BTreeSet::new();
    let mut found = false;
    for doc in text.split("\n---\n") {
        let v: Value = serde_saphyr::from_str(doc).expect("each document parses");
        if v["kind"] != "ClusterRole" || v["metadata"]["name"] != name {
            continue;
        }
        found = true;
        for rule in v["rules"].as_array().expect("rules") {
            let list = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .unwrap_or_else(|| panic!("{k} in {rule}"))
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect()
            };
            for g in list("apiGroups") {
                for r in list("resources") {
                    for verb in list("verbs") {
                        assert!(
                            g != "*" && r != "*" && verb != "*",
                            "no wildcards in a least-privilege role: {rule}"
                        );
                        out.insert((g.clone(), r.clone(), verb));
                    }
                }
            }
        }
    }
    assert!(found, "no ClusterRole {name} in deploy/rbac.yaml");
    out
}

fn calls(server: &ApiServer) -> BTreeSet<Call> {
    server.requests().iter().map(classify).collect()
}

/// Every call k3s-scale makes with eviction (evaluate, drain, reconcile, events).
fn exercise_everything(server: &ApiServer) {
    server.add_node(node("w1").build());
    server.add_node(node("w2").build());
    server.add_pod(pod("web").on("w1").label("app", "web").grace(0).build());
    server.add_pod(pod("waiting").unschedulable().build());
    server.add_pdb(
        pdb("web")
            .selecting("app", "web")
            .max_unavailable(1)
            .build(),
    );
    let cfg = support::config(server);
    let cluster = KubeCluster::connect(&cfg.kubernetes).expect("client");
    // Reconcile and the candidate check.
    cluster.nodes().unwrap();
    cluster.node("w1").unwrap();
    cluster.pods_on("w1").unwrap();
    cluster.disruption_budgets().unwrap();
    cluster.clear_drain_mark("w2").unwrap();
    // The cluster model (issue 13): DaemonSets, a claim, its volume, a storage class.
    cluster.daemon_sets().unwrap();
    assert!(cluster.claim("default", "data").unwrap().is_none());
    assert!(cluster.volume("pv-1").unwrap().is_none());
    assert!(cluster.storage_class("local-path").unwrap().is_none());
    // A scale-down: cordon, evict, look at the pod, delete the Node, (uncordon on failure).
    let containers = FakeContainers::with(&["w1"]);
    let mut sd = ScaleDown::new(
        Box::new(KubeCluster::connect(&cfg.kubernetes).unwrap()),
        containers.boxed(),
        &cfg,
        MoveMode::Evict,
    );
    let removal = sd
        .remove_worker(&["w1".to_string()], false, &mut Report::new(false))
        .expect("removed");
    assert_eq!(removal.removed.as_deref(), Some("w1"));
    cluster.cordon("w2", false).unwrap();
    cluster.uncordon("w2").unwrap();
    // Events: pending pods listed, an Event created, then (past the rate window) patched.
    let notice = Notice {
        about: About::PendingPods { except: Vec::new() },
        reason: "NotTriggerScaleUp",
        message: "pod didn't trigger scale-up: at max_nodes 3".into(),
        warning: false,
    };
    let mut posted = Vec::new();
    let t0 = Timestamp::now();
    assert_eq!(
        events::write(&cluster, std::slice::from_ref(&notice), &mut posted, t0),
        1
    );
    let later = t0.plus(events::RATE_WINDOW + Duration::from_secs(1));
    assert_eq!(events::write(&cluster, &[notice], &mut posted, later), 1);
    assert_eq!(server.count("PATCH", "/events/"), 1);
}

#[test]
fn every_call_k3s_scale_makes_is_allowed_by_its_cluster_role_and_every_rule_is_used() {
    let server = ApiServer::start();
    exercise_everything(&server);
    let made = calls(&server);
    let allowed = role("k3s-scale");
    let missing: Vec<&Call> = made.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "calls the ClusterRole does not allow: {missing:?}"
    );
    let unused: Vec<&Call> = allowed.difference(&made).collect();
    assert!(unused.is_empty(), "rules no call needs: {unused:?}");
    println!("rbac: {} distinct calls, all allowed: {made:?}", made.len());
}

#[test]
fn drain_with_disable_eviction_needs_only_the_extra_role() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_pod(pod("web").on("w1").grace(0).build());
    let cfg = support::config(&server);
    let cluster = KubeCluster::connect(&cfg.kubernetes).unwrap();
    let opts = DrainOptions::from_config(&cfg.drain, MoveMode::Delete);
    drain_node(&cluster, "w1", &opts, Recheck::Pods).expect("drained");
    let made = calls(&server);
    let base = role("k3s-scale");
    let extra = role("k3s-scale-disable-eviction");
    let beyond: BTreeSet<&Call> = made.difference(&base).collect();
    let want = (String::new(), "pods".to_string(), "delete".to_string());
    assert_eq!(beyond, BTreeSet::from([&want]), "{made:?}");
    assert_eq!(extra, BTreeSet::from([want]));
}

#[test]
fn the_manifest_binds_the_role_to_the_service_account_and_grants_no_secrets() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml")).unwrap();
    let docs: Vec<Value> = text
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .expect("a binding");
    assert_eq!(binding["roleRef"]["name"], "k3s-scale");
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], "k3s-scale");
    assert_eq!(binding["subjects"][0]["namespace"], "kube-system");
    assert!(
        docs.iter()
            .filter(|d| d["kind"] == "ClusterRoleBinding")
            .all(|d| d["roleRef"]["name"] != "k3s-scale-disable-eviction"),
        "the pod-delete role is not bound by default"
    );
    let token = docs
        .iter()
        .find(|d| d["kind"] == "Secret")
        .expect("a token Secret");
    assert_eq!(token["type"], "kubernetes.io/service-account-token");
    assert_eq!(
        token["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        "k3s-scale"
    );
    assert!(!role("k3s-scale").iter().any(|(_, r, _)| r == "secrets"));
}
