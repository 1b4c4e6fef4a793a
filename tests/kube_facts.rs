//! The Kubernetes side of the cluster model (issue 13) with the real kube client against
//! the API server stand-in (a simulator, tests/support/apiserver.rs) and an in-memory
//! `WorkerContainers`: what the run lists for the model (`cluster_facts`), and scale-down's
//! checks on one candidate (`ScaleDown`): volumes that cannot be looked up, the fit check
//! on a model, and a candidate whose Node is not Ready. Each test names the stand-in
//! behaviour it relies on.

mod support;

use k3s_scale::kube::facts::cluster_facts;
use k3s_scale::kube::mover::MoveMode;
use k3s_scale::kube::{Cluster, KubeCluster};
use k3s_scale::plan::cluster::ClusterModel;
use k3s_scale::plan::model::{Node as ModelNode, Resources};
use k3s_scale::plan::snapshot::{NodeResources, NodeSample, Snapshot};
use k3s_scale::run::report::Report;
use k3s_scale::run::scale_down::ScaleDown;
use std::rc::Rc;
use std::time::{Duration, Instant};
use support::apiserver::{ApiServer, Fault};
use support::containers::FakeContainers;
use support::objects::{claim, daemon_set, local_path_class, local_volume, node, pod};

const MIB: u64 = 1 << 20;
const QUICK: Duration = Duration::from_millis(100);

fn client(server: &ApiServer) -> KubeCluster {
    KubeCluster::connect(&support::config(server).kubernetes).expect("client")
}

fn scale_down(server: &ApiServer, containers: &FakeContainers) -> ScaleDown {
    let cfg = support::config(server);
    ScaleDown::new(
        Box::new(client(server)),
        containers.boxed(),
        &cfg,
        MoveMode::Evict,
    )
}

// Relies on: pod list with fieldSelector spec.nodeName= and status.phase=Pending, node
// list, DaemonSet list, claim/volume/class get, the request log.
#[test]
fn facts_list_only_the_pending_pods_and_their_volumes() {
    let server = ApiServer::start();
    server.add_node(
        node("w1")
            .label("k3s-scale.io/pool", "blue")
            .taint("dedicated", "web", "NoSchedule")
            .build(),
    );
    server.add_node(
        node("w2")
            .label("k3s-scale.io/pool", "blue")
            .not_ready()
            .build(),
    );
    server.add_storage_class(local_path_class());
    server.add_volume(local_volume("pvc-1", "w1"));
    server.add_claim(claim("shop", "data-db-0", "pvc-1"));
    server.add_claim(claim("shop", "data-db-1", ""));
    // Placed pods: never listed for the model.
    for i in 0..5 {
        server.add_pod(pod(&format!("placed-{i}")).on("w1").build());
    }
    // Pending, pinned by its volume to w1.
    server.add_pod(
        pod("db-0")
            .ns("shop")
            .owned_by("StatefulSet", "db")
            .requests(500, 256 * MIB)
            .claim("data", "data-db-0")
            .tolerate("dedicated", "NoSchedule")
            .unschedulable()
            .build(),
    );
    // Pending, claim not bound yet (local-path waits for its first consumer): no pin.
    server.add_pod(
        pod("db-1")
            .ns("shop")
            .owned_by("StatefulSet", "db")
            .claim("data", "data-db-1")
            .node_selector("disk", "ssd")
            .unschedulable()
            .build(),
    );
    // Pending, a claim that does not exist: unknown.
    server.add_pod(
        pod("lost")
            .claim("data", "nowhere")
            .host_port(8080)
            .unschedulable()
            .build(),
    );
    // Pending but not tried by the scheduler yet: left out.
    let mut fresh = pod("fresh").unschedulable().build();
    fresh.status.as_mut().unwrap().conditions = None;
    server.add_pod(fresh);
    // Finished without ever being bound: not Pending, left out by the field selector.
    server.add_pod(pod("done").unschedulable().phase("Succeeded").build());
    // DaemonSets: one runs everywhere, one does not tolerate the pool's taint.
    server.add_daemon_set(daemon_set("svclb", 100, 32 * MIB, true));
    server.add_daemon_set(daemon_set("logger", 300, 32 * MIB, false));

    let cluster = client(&server);
    let nodes = cluster.nodes().expect("nodes");
    let template = ModelNode::default();
    let facts = cluster_facts(&cluster, &nodes, "blue", &template).expect("facts");

    assert_eq!(facts.nodes.len(), 2);
    assert!(facts.nodes["w1"].ready && !facts.nodes["w2"].ready);
    assert_eq!(facts.nodes["w1"].taints.len(), 1);
    let keys: Vec<&String> = facts.pending.keys().collect();
    assert_eq!(keys, ["default/lost", "shop/db-0", "shop/db-1"]);
    let db0 = &facts.pending["shop/db-0"];
    assert_eq!(db0.requests, Resources::new(0.5, (256 * MIB) as f64));
    assert_eq!(
        db0.volume_affinity.len(),
        1,
        "pinned by its local-path volume"
    );
    assert_eq!(db0.tolerations.len(), 1);
    let db1 = &facts.pending["shop/db-1"];
    assert!(db1.volume_affinity.is_empty() && db1.unknown_volume.is_none());
    assert_eq!(
        db1.node_selector.get("disk").map(String::as_str),
        Some("ssd")
    );
    let lost = &facts.pending["default/lost"];
    assert_eq!(lost.unknown_volume.as_deref(), Some("default/nowhere"));
    assert_eq!(lost.host_ports, [("TCP".to_string(), 8080)]);
    // The template copies w1 (the Ready worker of the pool): tainted, so only the
    // DaemonSet that tolerates everything counts.
    assert_eq!(
        facts.daemonset_overhead,
        Resources::new(0.1, (32 * MIB) as f64)
    );

    let pod_lists: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|l| l.method == "GET" && l.path == "/api/v1/pods")
        .collect();
    assert_eq!(pod_lists.len(), 1, "{pod_lists:?}");
    assert!(
        pod_lists[0]
            .query
            .contains("fieldSelector=spec.nodeName%3D%2Cstatus.phase%3DPending"),
        "{}",
        pod_lists[0].query
    );
    assert_eq!(server.count("GET", "/storageclasses/local-path"), 1);
    assert_eq!(server.count("GET", "/daemonsets"), 1);
}

// The stand-in's own contract for pod field selectors (pkg/registry/core/pod/strategy.go):
// `!=` and `=` on the selectable fields; any other field is a 400, as the apiserver answers.
#[test]
fn the_stand_in_refuses_a_field_the_pod_strategy_does_not_select_on() {
    let server = ApiServer::start();
    server.add_pod(pod("a").on("w1").build());
    server.add_pod(pod("b").unschedulable().build());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let get = |q: &str| -> (u16, serde_json::Value) {
        let url = format!("{}/api/v1/pods?fieldSelector={q}", server.url());
        let mut r = agent.get(url).call().expect("an HTTP answer");
        let code = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (code, serde_json::from_str(&text).unwrap())
    };
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (code, v) = get("spec.nodeName%21%3D");
    assert_eq!((code, names(&v)), (200, vec!["a".to_string()]));
    let (code, v) = get("status.phase%3DPending");
    assert_eq!((code, names(&v)), (200, vec!["b".to_string()]));
    let (code, v) = get("spec.priority%3D1");
    assert_eq!(code, 400);
    assert_eq!(v["message"], "field label not supported: spec.priority");
}

// The stand-in's own contract for the objects the model reads: get and list answer what
// was stored, a missing one is the apiserver's 404 Status, writes are refused (405).
#[test]
fn the_stand_in_serves_claims_volumes_classes_and_daemonsets() {
    let server = ApiServer::start();
    server.add_claim(claim("shop", "data-db-0", "pvc-1"));
    server.add_volume(local_volume("pvc-1", "w1"));
    server.add_storage_class(local_path_class());
    server.add_daemon_set(daemon_set("svclb", 100, 32 * MIB, true));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let get = |path: &str| -> (u16, serde_json::Value) {
        let mut r = agent
            .get(format!("{}{path}", server.url()))
            .call()
            .expect("an HTTP answer");
        let code = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (code, serde_json::from_str(&text).unwrap())
    };
    let (code, v) = get("/api/v1/namespaces/shop/persistentvolumeclaims/data-db-0");
    assert_eq!(
        (code, v["spec"]["volumeName"].as_str()),
        (200, Some("pvc-1"))
    );
    let (code, v) = get("/api/v1/persistentvolumes/pvc-1");
    assert_eq!(code, 200);
    assert_eq!(
        v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
            [0],
        "w1"
    );
    let (code, v) = get("/apis/storage.k8s.io/v1/storageclasses/local-path");
    assert_eq!(
        (code, v["volumeBindingMode"].as_str()),
        (200, Some("WaitForFirstConsumer"))
    );
    let (code, v) = get("/apis/apps/v1/daemonsets");
    assert_eq!((code, v["kind"].as_str()), (200, Some("DaemonSetList")));
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (code, v) = get("/apis/apps/v1/namespaces/default/daemonsets");
    assert_eq!((code, v["items"].as_array().unwrap().len()), (200, 0));
    let (code, v) = get("/api/v1/namespaces/other/persistentvolumeclaims/data-db-0");
    assert_eq!(code, 404);
    assert_eq!(v["reason"], "NotFound");
    assert_eq!(
        v["message"],
        "persistentvolumeclaims \"data-db-0\" not found"
    );
    let r = agent
        .delete(format!("{}/api/v1/persistentvolumes/pvc-1", server.url()))
        .call()
        .expect("an HTTP answer");
    assert_eq!(r.status().as_u16(), 405);
}

// Relies on: claim get, PV get answering an injected 403, eviction never sent.
#[test]
fn a_volume_that_cannot_be_read_keeps_the_worker() {
    let server = ApiServer::start();
    server.add_node(node("w1").build());
    server.add_volume(local_volume("pvc-1", ""));
    server.add_claim(claim("shop", "data-db-0", "pvc-1"));
    server.add_pod(
        pod("db-0")
            .ns("shop")
            .on("w1")
            .owned_by("StatefulSet", "db")
            .claim("data", "data-db-0")
            .build(),
    );
    server.fault(Fault::status("GET", "/persistentvolumes/pvc-1", 403));
    let containers = FakeContainers::with(&["w1"]);
    let mut sd = scale_down(&server, &containers);
    let mut report = Report::new(false);

    let removal = sd
        .remove_worker(&["w1".to_string()], false, &mut report)
        .expect("no error: the worker is passed over");

    assert!(removal.removed.is_none());
    assert_eq!(report.unremovable.len(), 1);
    let why = &report.unremovable[0].reason;
    assert!(
        why.contains("pod shop/db-0 has claim shop/data-db-0 whose volume could not be looked up")
            && why.contains("403"),
        "{why}"
    );
    assert_eq!(server.count("POST", "/eviction"), 0);
    assert!(containers.exists("w1"));

    // Readable and without node affinity (a network volume): the pod may move.
    server.clear_faults();
    let removal = sd
        .remove_worker(&["w1".to_string()], true, &mut Report::new(true))
        .expect("dry run");
    assert_eq!(removal.removed.as_deref(), Some("w1"));
}

/// A model of `nodes` (name, allocatable CPU, requested CPU, Ready), 4 GiB each.
fn model(nodes: &[(&str, f64, f64, bool)]) -> Rc<ClusterModel> {
    let mut snap = Snapshot::default();
    let mut samples = std::collections::BTreeMap::new();
    for (name, cpu, used, ready) in nodes {
        snap.node_resources.insert(
            name.to_string(),
            NodeResources {
                allocatable: Resources::new(*cpu, (4u64 << 30) as f64),
                requested: Resources::new(*used, 0.0),
                pods: None,
            },
        );
        samples.insert(
            name.to_string(),
            NodeSample {
                ready: *ready,
                cpu: Some(10.0),
                memory: Some(10.0),
            },
        );
    }
    snap.nodes = Some(samples);
    Rc::new(ClusterModel::build(
        &snap,
        &k3s_scale::config::Config::default(),
    ))
}

// Relies on: node get, pod list by fieldSelector spec.nodeName, PDB list.
#[test]
fn the_candidates_pods_must_fit_on_the_other_nodes_of_the_model() {
    let server = ApiServer::start();
    for n in ["w1", "w2", "w3"] {
        server.add_node(node(n).build());
    }
    server.add_pod_exiting_after(
        pod("web-7").on("w3").requests(2200, 64 * MIB).build(),
        QUICK,
    );
    let containers = FakeContainers::with(&["w1", "w2", "w3"]);
    let mut sd = scale_down(&server, &containers);
    // w1 and w2 have 2 CPU free each; web-7 asks for 2.2.
    sd.use_model(model(&[
        ("w1", 4.0, 2.0, true),
        ("w2", 4.0, 2.0, true),
        ("w3", 4.0, 2.2, true),
    ]));
    let mut report = Report::new(true);
    let removal = sd
        .remove_worker(&["w3".to_string()], true, &mut report)
        .expect("checked");
    assert!(removal.removed.is_none());
    assert_eq!(report.unremovable.len(), 1);
    assert_eq!(
        report.unremovable[0].reason,
        "pod default/web-7 (2.2 CPU, 64Mi) fits no other node: requests 2.2 CPU, 2 free"
    );

    // w2 has room now (and an unready w1 is no help either way).
    sd.use_model(model(&[
        ("w1", 4.0, 0.0, false),
        ("w2", 4.0, 1.0, true),
        ("w3", 4.0, 2.2, true),
    ]));
    let removal = sd
        .remove_worker(&["w3".to_string()], true, &mut Report::new(true))
        .expect("checked");
    assert_eq!(removal.removed.as_deref(), Some("w3"));
    assert_eq!(removal.evicted, ["default/web-7"]);
}

// Relies on: eviction 201 with the pod then terminating for its whole grace period (its
// kubelet is gone), node delete, secret delete.
#[test]
fn an_unready_candidate_is_removed_without_waiting_for_its_pods() {
    let server = ApiServer::start();
    server.add_node(node("w1").not_ready().build());
    server.add_node(node("w2").build());
    // A dead kubelet never confirms the pod's exit: it would terminate for 30 s.
    server.add_pod(pod("web").on("w1").grace(30).build());
    let containers = FakeContainers::with(&["w1", "w2"]);
    let mut sd = scale_down(&server, &containers);
    let mut report = Report::new(false);

    let started = Instant::now();
    let removal = sd
        .remove_worker(&["w1".to_string()], false, &mut report)
        .expect("removed");
    let took = started.elapsed();

    assert_eq!(removal.removed.as_deref(), Some("w1"));
    assert_eq!(removal.evicted, ["default/web"]);
    assert!(took < Duration::from_secs(3), "did not wait: {took:?}");
    assert!(server.node("w1").is_none(), "Node deleted");
    assert_eq!(containers.removed(), ["w1"]);
    let p = server.pod("default", "web").expect("still terminating");
    assert!(p.metadata.deletion_timestamp.is_some(), "evicted");
    assert!(
        report
            .notes
            .iter()
            .any(|r| r.contains("w1 is not Ready") && r.contains("without waiting")),
        "{:?}",
        report.notes
    );
}
