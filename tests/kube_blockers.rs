//! Scale-down's own blockers (issue 13) through the built binary: `evaluate` runs against a
//! real Prometheus (fed from the API stand-in as kube-state-metrics would be), the real
//! Docker engine (the workers are containers k3s-scale started) and the Kubernetes API
//! stand-in (a simulator, tests/support/apiserver.rs) with its kubelet stand-in. Each test
//! checks every run's exit code, output, containers, volumes and Nodes (`Scenario::check`),
//! and that a kept worker's pods were never touched.
//!
//! Simulated: the API (claims, volumes and classes are stored and served as given; no PV
//! controller or provisioner runs: the test binds claims as the PV controller would) and
//! the kubelets (Nodes only, no pods run).

#[path = "support/docker.rs"]
mod docker_support;
#[path = "support/kubelet.rs"]
mod kubelet;
#[path = "support/scenario.rs"]
mod scenario;
mod support;

use scenario::{Expect, Knobs, Scenario, Step};
use std::time::Duration;
use support::objects::{claim, local_path_class, local_volume, pod};

const MIB: u64 = 1 << 20;
const POD_EXIT: Duration = Duration::from_millis(50);

/// Two Ready workers, started by k3s-scale and joined, with no cooldown left to wait for
/// once `idle` has run.
fn two_workers(knobs: Knobs) -> Scenario {
    let mut s = Scenario::new(Knobs {
        min_nodes: 1,
        delay_after_scale_up: "1s",
        ..knobs
    });
    let r = s.run(&["up", "--count", "2", "--output", "json"]);
    s.check(
        &r,
        &Expect {
            code: 10,
            action: "scale_up",
            started: &[1, 2],
            removed: &[],
            containers: &[1, 2],
            nodes: &[],
        },
    );
    s.kubelet.resume();
    s.wait_joined(&[1, 2]);
    s.kubelet.pause();
    s
}

/// One run that sees the cluster idle (starting the unneeded timer), then waits until a
/// scale-down may be decided.
fn idle(s: &mut Scenario) {
    let r = s.evaluate(&[]);
    s.check(
        &r,
        &Expect {
            code: 0,
            action: "none",
            started: &[],
            removed: &[],
            containers: &[1, 2],
            nodes: &[1, 2],
        },
    );
    let st = s.state();
    s.wait_past(st.low_since, s.knobs.unneeded_time);
    s.wait_past(st.last_scale_up, s.knobs.delay_after_scale_up);
}

/// The reason given for each worker passed over, by worker number.
fn unremovable(s: &Scenario, step: &Step) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for u in step.json["unremovable"].as_array().into_iter().flatten() {
        let node = u["node"].as_str().unwrap_or("");
        let n = (1..=5).find(|n| s.worker(*n) == node).unwrap_or(0);
        out.push((n, u["reason"].as_str().unwrap_or("").to_string()));
    }
    out.sort();
    out
}

/// A run that decides to scale down, finds every candidate unremovable and touches nothing.
fn kept(s: &mut Scenario) -> Step {
    let evictions = s.api.count("POST", "/eviction");
    let patches = s.api.count("PATCH", "/nodes/");
    let r = s.evaluate(&[]);
    s.check(
        &r,
        &Expect {
            code: 0,
            action: "scale_down",
            started: &[],
            removed: &[],
            containers: &[1, 2],
            nodes: &[1, 2],
        },
    );
    assert!(
        r.blocked_by("every candidate is unremovable"),
        "{}",
        r.run.stdout
    );
    assert_eq!(s.api.count("POST", "/eviction"), evictions, "no eviction");
    assert_eq!(s.api.count("PATCH", "/nodes/"), patches, "no cordon");
    r
}

#[test]
fn a_statefulset_pod_on_a_local_path_volume_is_never_drained_by_evaluate() {
    let mut s = two_workers(Knobs::default());
    // k3s's local-path: the claim of each replica is bound to a volume under
    // /var/lib/rancher/k3s/storage on its worker, i.e. in the worker's `<name>-data`.
    s.api.add_storage_class(local_path_class());
    for n in [1, 2] {
        let w = s.worker(n);
        let pv = format!("pvc-{n}");
        s.api.add_volume(local_volume(&pv, &w));
        s.api.add_claim(claim("shop", &format!("data-db-{n}"), &pv));
        s.api.add_pod_exiting_after(
            pod(&format!("db-{n}"))
                .ns("shop")
                .on(&w)
                .owned_by("StatefulSet", "db")
                .requests(100, 64 * MIB)
                .claim("data", &format!("data-db-{n}"))
                .build(),
            POD_EXIT,
        );
    }
    idle(&mut s);

    // Twice: a kept worker stays kept, run after run.
    for _ in 0..2 {
        let r = kept(&mut s);
        let reasons = unremovable(&s, &r);
        assert_eq!(reasons.len(), 2, "{}", r.run.stdout);
        for (n, why) in &reasons {
            assert!(
                why.contains(&format!(
                    "pod shop/db-{n} has claim shop/data-db-{n} on a PersistentVolume pinned to this node"
                )) && why.contains("would be lost"),
                "worker {n}: {why}"
            );
        }
        for n in [1, 2] {
            let p = s
                .api
                .pod("shop", &format!("db-{n}"))
                .expect("the replica stays");
            assert!(p.metadata.deletion_timestamp.is_none());
        }
    }
    // The claims and volumes were read, never every pod of the cluster.
    assert!(s.api.count("GET", "/persistentvolumeclaims/data-db-") >= 2);
    assert!(s.api.count("GET", "/persistentvolumes/pvc-") >= 2);
    let unfiltered = s
        .api
        .requests()
        .iter()
        .filter(|l| l.path == "/api/v1/pods" && !l.query.contains("fieldSelector"))
        .count();
    assert_eq!(unfiltered, 0, "no list of every pod");

    // Once the replica is gone (scaled down with its claim deleted), the worker may go.
    let w2 = s.worker(2);
    assert!(s.api.remove_pod("shop", "db-2"));
    let r = s.evaluate(&[]);
    s.check(
        &r,
        &Expect {
            code: 11,
            action: "scale_down",
            started: &[],
            removed: &[2],
            containers: &[1],
            nodes: &[1],
        },
    );
    assert!(s.api.node(&w2).is_none());
}

#[test]
fn a_kube_system_pod_without_a_budget_keeps_its_worker_unless_switched_off() {
    let mut s = two_workers(Knobs::default());
    for n in [1, 2] {
        s.api.add_pod_exiting_after(
            pod(&format!("metrics-server-{n}"))
                .ns("kube-system")
                .on(&s.worker(n))
                .requests(100, 64 * MIB)
                .build(),
            POD_EXIT,
        );
    }
    idle(&mut s);

    let r = kept(&mut s);
    let reasons = unremovable(&s, &r);
    assert_eq!(reasons.len(), 2, "{}", r.run.stdout);
    for (n, why) in &reasons {
        assert!(
            why.contains(&format!(
                "pod kube-system/metrics-server-{n} runs in kube-system without a PodDisruptionBudget"
            )),
            "worker {n}: {why}"
        );
    }

    // kubernetes.skip_nodes_with_system_pods: false: the newest idle worker goes, its
    // system pod evicted like any other (it fits on worker 1).
    s.reconfigure(|k| k.skip_nodes_with_system_pods = false);
    let r = s.evaluate(&[]);
    s.check(
        &r,
        &Expect {
            code: 11,
            action: "scale_down",
            started: &[],
            removed: &[2],
            containers: &[1],
            nodes: &[1],
        },
    );
    assert_eq!(r.strings("evicted"), ["kube-system/metrics-server-2"]);
}

#[test]
fn a_worker_whose_pods_fit_no_other_node_is_kept_with_the_reason() {
    let mut s = two_workers(Knobs::default());
    let (w1, w2) = (s.worker(1), s.worker(2));
    // Worker 2 has the only SSD; web-7 needs one. Worker 1 runs a pod pinned to it by
    // hostname. Both small: each worker is idle by its numbers.
    let mut n2 = s.api.node(&w2).expect("worker 2 joined");
    n2.metadata
        .labels
        .get_or_insert_default()
        .insert("disk".into(), "ssd".into());
    s.api.add_node(n2);
    s.api.add_pod_exiting_after(
        pod("web-7")
            .on(&w2)
            .requests(200, 64 * MIB)
            .node_selector("disk", "ssd")
            .build(),
        POD_EXIT,
    );
    s.api.add_pod_exiting_after(
        pod("agent")
            .on(&w1)
            .requests(100, 64 * MIB)
            .node_selector("kubernetes.io/hostname", &w1)
            .build(),
        POD_EXIT,
    );
    idle(&mut s);

    let r = kept(&mut s);
    let reasons = unremovable(&s, &r);
    assert_eq!(reasons.len(), 2, "{}", r.run.stdout);
    assert_eq!(reasons[0].0, 1);
    assert!(
        reasons[0].1.contains(&format!(
            "pod default/agent (0.1 CPU, 64Mi) fits no other node: nodeSelector kubernetes.io/hostname={w1} not matched"
        )),
        "{}",
        reasons[0].1
    );
    assert_eq!(reasons[1].0, 2);
    assert!(
        reasons[1]
            .1
            .contains("pod default/web-7 (0.2 CPU, 64Mi) fits no other node: nodeSelector disk=ssd not matched"),
        "{}",
        reasons[1].1
    );

    // Without the SSD requirement web-7 fits on worker 1: worker 2 goes (worker 1, the
    // less utilised, is still passed over first).
    assert!(s.api.remove_pod("default", "web-7"));
    s.api.add_pod_exiting_after(
        pod("web-7").on(&w2).requests(200, 64 * MIB).build(),
        POD_EXIT,
    );
    let r = s.evaluate(&[]);
    s.check(
        &r,
        &Expect {
            code: 11,
            action: "scale_down",
            started: &[],
            removed: &[2],
            containers: &[1],
            nodes: &[1],
        },
    );
    assert_eq!(r.strings("evicted"), ["default/web-7"]);
    let reasons = unremovable(&s, &r);
    assert_eq!(reasons.len(), 1, "{}", r.run.stdout);
    assert_eq!(reasons[0].0, 1, "{}", r.run.stdout);
    assert!(
        reasons[0].1.contains("fits no other node"),
        "{}",
        reasons[0].1
    );
}
