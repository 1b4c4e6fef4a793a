//! The API server stand-in's own contract, checked over raw HTTP (ureq): the status codes
//! and `Status` bodies the real apiserver gives for the cases k3s-scale meets, PDB
//! arithmetic, graceful deletion on the clock, and fault injection. If the simulator
//! drifted from the apiserver here, the other Kubernetes tests would prove nothing.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::apiserver::{ApiServer, Fault};
use support::objects::{node, pdb, pod};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut r = r.expect("an HTTP answer");
    let code = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn get(s: &ApiServer, path: &str) -> (u16, Value) {
    answer(agent().get(format!("{}{path}", s.url())).call())
}

fn post(s: &ApiServer, path: &str, body: Value) -> (u16, Value) {
    answer(
        agent()
            .post(format!("{}{path}", s.url()))
            .header("Content-Type", "application/json")
            .send(body.to_string()),
    )
}

fn evict(s: &ApiServer, ns: &str, name: &str, grace: Option<i64>) -> (u16, Value) {
    let mut body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}});
    if let Some(g) = grace {
        body["deleteOptions"] = json!({"gracePeriodSeconds": g});
    }
    post(
        s,
        &format!("/api/v1/namespaces/{ns}/pods/{name}/eviction"),
        body,
    )
}

fn is_status(v: &Value, code: u16, reason: &str) {
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["apiVersion"], "v1", "{v}");
    assert_eq!(v["status"], "Failure", "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["reason"], reason, "{v}");
}

#[test]
fn not_found_and_unknown_paths_answer_like_the_apiserver() {
    let s = ApiServer::start();
    let (code, v) = get(&s, "/api/v1/nodes/nope");
    assert_eq!(code, 404);
    is_status(&v, 404, "NotFound");
    assert_eq!(v["message"], "nodes \"nope\" not found");
    assert_eq!(v["details"], json!({"name": "nope", "kind": "nodes"}));
    let (code, v) = get(&s, "/apis/example.com/v1/things");
    assert_eq!(code, 404);
    assert_eq!(
        v["message"],
        "the server could not find the requested resource"
    );
    let (code, v) = evict(&s, "default", "ghost", None);
    assert_eq!(code, 404);
    is_status(&v, 404, "NotFound");
    let (code, _) = answer(
        agent()
            .put(format!("{}/api/v1/nodes/x", s.url()))
            .send("{}"),
    );
    assert_eq!(code, 405);
}

#[test]
fn pod_lists_filter_by_node_and_refuse_unknown_fields() {
    let s = ApiServer::start();
    s.add_pod(pod("a").on("w1").build());
    s.add_pod(pod("b").ns("prod").on("w1").label("app", "x").build());
    s.add_pod(pod("c").on("w2").build());
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (code, v) = get(&s, "/api/v1/pods?fieldSelector=spec.nodeName%3Dw1");
    assert_eq!(code, 200);
    assert_eq!(v["kind"], "PodList");
    assert_eq!(names(&v), vec!["a", "b"]);
    assert_eq!(names(&get(&s, "/api/v1/namespaces/prod/pods").1), vec!["b"]);
    assert_eq!(
        names(&get(&s, "/api/v1/pods?labelSelector=app%3Dx").1),
        vec!["b"]
    );
    let (code, v) = get(&s, "/api/v1/pods?fieldSelector=spec.hostname%3Dw1");
    assert_eq!(code, 400);
    assert_eq!(v["message"], "field label not supported: spec.hostname");
}

#[test]
fn node_patches_merge_and_other_patch_types_are_refused() {
    let s = ApiServer::start();
    s.add_node(node("w1").label("zone", "a").build());
    let patch = |ct: &str, body: &str| {
        answer(
            agent()
                .patch(format!("{}/api/v1/nodes/w1", s.url()))
                .header("Content-Type", ct)
                .send(body.to_string()),
        )
    };
    let (code, v) = patch(
        "application/strategic-merge-patch+json",
        r#"{"spec":{"unschedulable":true}}"#,
    );
    assert_eq!(code, 200);
    assert_eq!(v["spec"]["unschedulable"], true);
    assert_eq!(v["metadata"]["labels"]["zone"], "a", "the rest is kept");
    let (_, v) = patch(
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"zone":null}}}"#,
    );
    assert!(
        v["metadata"]["labels"].get("zone").is_none(),
        "null deletes"
    );
    assert_eq!(s.is_cordoned("w1"), Some(true));
    let (code, v) = patch("application/json-patch+json", "[]");
    assert_eq!(code, 415);
    is_status(&v, 415, "UnsupportedMediaType");
}

#[test]
fn evictions_follow_the_budget() {
    let s = ApiServer::start();
    for (n, node) in [("a", "w1"), ("b", "w1"), ("c", "w2"), ("d", "w2")] {
        s.add_pod_exiting_after(
            pod(n).on(node).label("app", "web").build(),
            Duration::from_millis(50),
        );
    }
    s.add_pdb(
        pdb("web")
            .selecting("app", "web")
            .max_unavailable(1)
            .build(),
    );
    let st = s.pdb_status("default", "web").unwrap();
    assert_eq!(
        (
            st.expected_pods,
            st.desired_healthy,
            st.current_healthy,
            st.disruptions_allowed
        ),
        (Some(4), Some(3), Some(4), Some(1))
    );
    let (_, list) = get(&s, "/apis/policy/v1/poddisruptionbudgets");
    assert_eq!(list["items"][0]["status"]["disruptionsAllowed"], 1);

    let (code, v) = evict(&s, "default", "a", None);
    assert_eq!(code, 201);
    assert_eq!(
        v,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    );
    // a is terminating: not healthy, so the budget is spent at once.
    assert_eq!(
        s.pdb_status("default", "web").unwrap().disruptions_allowed,
        Some(0)
    );
    let (code, v) = evict(&s, "default", "b", None);
    assert_eq!(code, 429);
    is_status(&v, 429, "TooManyRequests");
    assert_eq!(
        v["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(v["details"]["causes"][0]["reason"], "DisruptionBudget");
    assert_eq!(
        v["details"]["causes"][0]["message"],
        "The disruption budget web needs 3 healthy pods and has 3 currently"
    );
    // Evicting a pod already terminating skips the budget.
    assert_eq!(evict(&s, "default", "a", None).0, 201);
    // No controller replaces a: the budget stays spent after it is gone.
    std::thread::sleep(Duration::from_millis(100));
    assert!(s.pod("default", "a").is_none());
    assert_eq!(evict(&s, "default", "b", None).0, 429);

    s.add_pdb(
        pdb("also-web")
            .expression("app", "In", &["web"])
            .min_available_pct("10%")
            .build(),
    );
    // eviction.go's Status, answered as HTTP 500 by the create handler's finisher, with
    // no reason.
    let (code, v) = evict(&s, "default", "c", None);
    assert_eq!(code, 500);
    assert_eq!(v["status"], "Failure", "{v}");
    assert_eq!(v["code"], 500, "{v}");
    assert!(v.get("reason").is_none(), "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("more than one PodDisruptionBudget")
    );
}

#[test]
fn eviction_bodies_are_checked_and_grace_is_honoured() {
    let s = ApiServer::start();
    s.add_pod(pod("a").on("w1").grace(30).build());
    let (code, v) = post(
        &s,
        "/api/v1/namespaces/default/pods/a/eviction",
        json!({"metadata": {"name": "b"}}),
    );
    assert_eq!(code, 400);
    is_status(&v, 400, "BadRequest");
    // kube's Api::evict sends `delete_options`: the apiserver does not know that field,
    // so the pod's own 30 s grace applies.
    let (code, _) = post(
        &s,
        "/api/v1/namespaces/default/pods/a/eviction",
        json!({"metadata": {"name": "a"}, "delete_options": {"gracePeriodSeconds": 1}}),
    );
    assert_eq!(code, 201);
    assert_eq!(s.deletions()[0].grace_seconds, 30);
    let p = s.pod("default", "a").expect("still terminating");
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(30));
    assert!(p.metadata.deletion_timestamp.is_some());
}

#[test]
fn pods_go_when_their_process_exits_or_their_grace_ends() {
    let s = ApiServer::start();
    s.add_pod(pod("full").on("w1").grace(1).build());
    s.add_pod_exiting_after(
        pod("fast").on("w1").grace(30).build(),
        Duration::from_millis(200),
    );
    s.add_pod(pod("done").on("w1").grace(30).phase("Succeeded").build());
    let started = Instant::now();
    for n in ["full", "fast", "done"] {
        let (code, _) = answer(
            agent()
                .delete(format!("{}/api/v1/namespaces/default/pods/{n}", s.url()))
                .call(),
        );
        assert_eq!(code, 200, "{n}");
    }
    assert!(
        s.pod("default", "done").is_none(),
        "a finished pod goes at once"
    );
    while s.pod("default", "fast").is_some() {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        s.pod("default", "full").is_some(),
        "full still within its 1 s grace"
    );
    while s.pod("default", "full").is_some() {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "full took its grace period"
    );
    // A stale UID precondition is a 409 Conflict.
    s.add_pod(pod("x").on("w1").build());
    let (code, v) = answer(
        agent()
            .delete(format!("{}/api/v1/namespaces/default/pods/x", s.url()))
            .force_send_body()
            .send(json!({"preconditions": {"uid": "not-it"}}).to_string()),
    );
    assert_eq!(code, 409);
    is_status(&v, 409, "Conflict");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("Precondition failed")
    );
}

#[test]
fn faults_apply_to_matching_requests_the_given_number_of_times() {
    let s = ApiServer::start();
    s.add_node(node("w1").build());
    s.fault(Fault::status("GET", "/nodes/w1", 503).times(2));
    s.fault(Fault::latency("GET", "/nodes", Duration::from_millis(150)));
    let codes: Vec<u16> = (0..3).map(|_| get(&s, "/api/v1/nodes/w1").0).collect();
    assert_eq!(codes, vec![503, 503, 200]);
    let slowed = s.requests();
    assert!(
        slowed
            .iter()
            .all(|r| r.finished - r.started >= Duration::from_millis(150))
    );
    s.clear_faults();
    s.fault(Fault::status("GET", "/nodes/w1", 503).times(1));
    let (_, v) = get(&s, "/api/v1/nodes/w1");
    is_status(&v, 503, "ServiceUnavailable");
    s.fault(Fault::drop_connection("GET", "/nodes/w1").times(1));
    assert!(
        agent()
            .get(format!("{}/api/v1/nodes/w1", s.url()))
            .call()
            .is_err(),
        "no answer"
    );
    assert_eq!(get(&s, "/api/v1/nodes/w1").0, 200);
}

#[test]
fn secrets_and_nodes_delete_with_a_success_status() {
    let s = ApiServer::start();
    s.add_node(node("w1").build());
    s.add_secret("kube-system", "w1.node-password.k3s");
    let del = |p: &str| answer(agent().delete(format!("{}{p}", s.url())).call());
    let (code, v) = del("/api/v1/namespaces/kube-system/secrets/w1.node-password.k3s");
    assert_eq!(code, 200);
    assert_eq!(v["status"], "Success");
    assert_eq!(v["details"]["kind"], "secrets");
    assert_eq!(
        del("/api/v1/namespaces/kube-system/secrets/w1.node-password.k3s").0,
        404
    );
    assert_eq!(del("/api/v1/nodes/w1").0, 200);
    assert_eq!(get(&s, "/api/v1/nodes/w1").0, 404);
}

// k3s's server deletes a Node's password secret with it (pkg/node/controller.go).
#[test]
fn a_node_delete_takes_its_k3s_password_secret_with_it() {
    let s = ApiServer::start();
    s.add_node(node("w1").build());
    s.add_secret("kube-system", "w1.node-password.k3s");
    s.add_secret("kube-system", "w2.node-password.k3s");
    let (code, _) = answer(
        agent()
            .delete(format!("{}/api/v1/nodes/w1", s.url()))
            .call(),
    );
    assert_eq!(code, 200);
    assert!(!s.secret_exists("kube-system", "w1.node-password.k3s"));
    assert!(s.secret_exists("kube-system", "w2.node-password.k3s"));
}

// eviction.go: the UID precondition fails with NewConflict on "Pod" and its own words;
// a plain DELETE keeps the store's "Precondition failed".
#[test]
fn an_eviction_with_a_stale_uid_is_a_409_in_eviction_gos_words() {
    let s = ApiServer::start();
    s.add_pod(pod("a").on("w1").build());
    let uid = s.pod("default", "a").unwrap().metadata.uid.unwrap();
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "a", "namespace": "default"},
        "deleteOptions": {"preconditions": {"uid": "old-uid"}}});
    let (code, v) = post(&s, "/api/v1/namespaces/default/pods/a/eviction", body);
    assert_eq!(code, 409);
    is_status(&v, 409, "Conflict");
    assert_eq!(
        v["message"],
        format!(
            "Operation cannot be fulfilled on Pod \"a\": the UID in the precondition (old-uid) \
             does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        )
    );
    assert_eq!(v["details"]["kind"], "Pod");
    assert!(s.pod("default", "a").is_some(), "not deleted");
}

// NamespaceLifecycle admission: creates in a terminating namespace are 403 with the cause;
// the namespace controller deletes its pods.
#[test]
fn a_terminating_namespace_refuses_evictions_and_events_and_its_pods_go() {
    let s = ApiServer::start();
    s.add_pod_exiting_after(
        pod("a").ns("gone").on("w1").build(),
        Duration::from_millis(300),
    );
    s.terminate_namespace("gone");
    let p = s.pod("gone", "a").expect("terminating, not gone yet");
    assert!(p.metadata.deletion_timestamp.is_some());
    let (code, v) = evict(&s, "gone", "a", None);
    assert_eq!(code, 403);
    is_status(&v, 403, "Forbidden");
    assert_eq!(
        v["message"],
        "pods \"a\" is forbidden: unable to create new content in namespace gone because it is being terminated"
    );
    assert_eq!(v["details"]["causes"][0]["reason"], "NamespaceTerminating");
    assert_eq!(v["details"]["causes"][0]["field"], "metadata.namespace");
    let ev = json!({"metadata": {"name": "a.1"}, "involvedObject": {"name": "a"}, "reason": "X"});
    assert_eq!(post(&s, "/api/v1/namespaces/gone/events", ev).0, 403);
    std::thread::sleep(Duration::from_millis(400));
    assert!(s.pod("gone", "a").is_none(), "gone with its process");
}

// eviction.go: an unready pod under AlwaysAllow goes whatever the budget; under
// IfHealthyBudget only while currentHealthy >= desiredHealthy > 0.
#[test]
fn unready_pods_follow_the_unhealthy_pod_eviction_policy() {
    let s = ApiServer::start();
    // Two pods, one Ready, one not; the budget wants both: nothing allowed.
    s.add_pod(pod("r1").on("w1").label("app", "x").build());
    s.add_pod(pod("u1").on("w1").label("app", "x").unready().build());
    s.add_pdb(pdb("x").selecting("app", "x").min_available(2).build());
    assert_eq!(
        s.pdb_status("default", "x").unwrap().disruptions_allowed,
        Some(0)
    );
    // IfHealthyBudget: healthy 1 < desired 2: the unready pod is refused too.
    assert_eq!(evict(&s, "default", "u1", None).0, 429);

    // AlwaysAllow: it goes, and the budget is not spent on it.
    s.add_pod(pod("r2").on("w1").label("app", "y").build());
    s.add_pod(pod("u2").on("w1").label("app", "y").unready().build());
    s.add_pdb(
        pdb("y")
            .selecting("app", "y")
            .min_available(2)
            .unhealthy_policy("AlwaysAllow")
            .build(),
    );
    assert_eq!(evict(&s, "default", "u2", Some(0)).0, 201);
    assert_eq!(
        evict(&s, "default", "r2", None).0,
        429,
        "the Ready one is guarded"
    );

    // desiredHealthy 0 (maxUnavailable equal to the pods): an unready pod takes the
    // budget path, not the "application healthy" shortcut; the budget allows it here.
    s.add_pod(pod("u3").on("w1").label("app", "z").unready().build());
    s.add_pdb(pdb("z").selecting("app", "z").max_unavailable(1).build());
    let st = s.pdb_status("default", "z").unwrap();
    assert_eq!((st.current_healthy, st.desired_healthy), (Some(0), Some(0)));
    assert_eq!(st.disruptions_allowed, Some(0), "healthy 0 - desired 0");
    assert_eq!(
        evict(&s, "default", "u3", None).0,
        429,
        "desiredHealthy > 0 is required for the shortcut"
    );
}

// eviction.go checkAndDecrement: a PDB whose status has not seen its generation is 429.
#[test]
fn a_stale_budget_status_is_a_429_still_being_processed() {
    let s = ApiServer::start();
    s.add_pod(pod("a").on("w1").label("app", "a").build());
    s.add_pod(pod("b").on("w1").label("app", "a").build());
    s.add_pdb(pdb("p").selecting("app", "a").min_available(1).build());
    s.make_pdb_stale("default", "p");
    let (code, v) = evict(&s, "default", "a", None);
    assert_eq!(code, 429);
    is_status(&v, 429, "TooManyRequests");
    assert_eq!(
        v["details"]["causes"][0]["message"],
        "The disruption budget p is still being processed by the server."
    );
    s.observe_pdb("default", "p");
    assert_eq!(evict(&s, "default", "a", Some(0)).0, 201);
}

// core/v1 events: create (409 for a taken name), patch, get.
#[test]
fn events_are_created_and_patched() {
    let s = ApiServer::start();
    let ev = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "p.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "TriggeredScaleUp", "message": "m1", "count": 1});
    assert_eq!(
        post(&s, "/api/v1/namespaces/default/events", ev.clone()).0,
        201
    );
    let (code, v) = post(&s, "/api/v1/namespaces/default/events", ev);
    assert_eq!(code, 409);
    is_status(&v, 409, "AlreadyExists");
    let (code, v) = answer(
        agent()
            .patch(format!("{}/api/v1/namespaces/default/events/p.1", s.url()))
            .header("Content-Type", "application/strategic-merge-patch+json")
            .send(json!({"count": 2, "message": "m2"}).to_string()),
    );
    assert_eq!(code, 200);
    assert_eq!(
        (v["count"].clone(), v["message"].clone()),
        (json!(2), json!("m2"))
    );
    assert_eq!(v["reason"], "TriggeredScaleUp");
    assert_eq!(s.events().len(), 1);
    assert_eq!(
        answer(
            agent()
                .patch(format!("{}/api/v1/namespaces/default/events/nope", s.url()))
                .header("Content-Type", "application/strategic-merge-patch+json")
                .send("{}".to_string()),
        )
        .0,
        404
    );
}
