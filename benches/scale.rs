//! Benchmark (not a test): the decision step at the upstream Kubernetes scalability limits.
//! 5,000 worker nodes with 150,000 pods between them, summarised by Prometheus into one
//! answer of that size: parse it into a snapshot, decide, rank scale-down candidates
//! (target <= 50 ms and <= 64 MiB peak RSS). Then the choice of a scale-down candidate
//! among those 5,000 nodes with their 150,000 pods and 500 PodDisruptionBudgets: the
//! ranking, then per candidate the node rules and the removability rules over its pods
//! with PDB matching, in the worst case where every candidate but the last is blocked
//! (target <= 20 ms). Only the computation is timed: in a run each candidate's pods come
//! from the API (decoded, later freed); here they are built and freed between the timed
//! parts. The plain scan of every PDB for every pod, as before `budgets::Budgets`, is timed
//! too, for reference.
//! Run: `cargo bench --bench scale` (prints median/max per step and the peak RSS).

use k3s_scale::config::{Config, SIGNAL_NAMES};
use k3s_scale::kube::budgets::Budgets;
use k3s_scale::kube::drain;
use k3s_scale::plan::decide::decide;
use k3s_scale::plan::rules::scale_down::rank_candidates;
use k3s_scale::plan::snapshot::Snapshot;
use k3s_scale::run::scale_down::blocking;
use k3s_scale::signals::answer::parse_response;
use k3s_scale::state::State;
use k3s_scale::state::time::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, Node, Pod, PodSpec, PodStatus, ProjectedVolumeSource, Volume,
};
use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::time::{Duration, Instant};

const NODES: usize = 5_000;
const PODS: usize = 150_000;
const ROUNDS: usize = 30;
/// The candidate choice builds 150,000 pods per round (untimed): fewer rounds.
const CHOICE_ROUNDS: usize = 10;
/// The plain scan of every PDB for every pod (before `budgets::Budgets`) is slow: a few rounds.
const SCAN_ROUNDS: usize = 3;
const NAMESPACES: usize = 100;
/// Apps per namespace; the first `APPS_WITH_PDB` of them have a PodDisruptionBudget.
const APPS: usize = 10;
const APPS_WITH_PDB: usize = 5;

/// Unschedulable pods in the answer, each listed with its owner and two request series.
const UNSCHEDULABLE: usize = 1_000;

/// Series in the answer: pending pods, per worker its readiness, requests and allocatable
/// of CPU and memory, the pods on it, and per unschedulable pod its owner and requests.
const SERIES: usize = 1 + NODES * 6 + UNSCHEDULABLE * 3;

/// The answer Prometheus gives to the default query for such a cluster: per-node series
/// for readiness, requests and allocatable per resource, and the pods on each (the
/// 150,000 pods are already summed and counted per node: 30 each); the reader works out
/// each worker's utilisation and the averages.
fn answer() -> String {
    let pods_per_node = PODS / NODES;
    let mut series = Vec::with_capacity(SERIES);
    series.push(format!(
        r#"{{"metric":{{"signal":"pending_pods"}},"value":[1800000000.123,"{UNSCHEDULABLE}"]}}"#
    ));
    // 2 cores / 1 GiB each: more than any worker has free, so each one is tried against
    // every node before it goes to a new worker (the decision's worst case).
    for i in 0..UNSCHEDULABLE {
        let id = format!(r#""namespace":"ns-{}","pod":"burst-{i}""#, i % NAMESPACES);
        series.push(format!(
            r#"{{"metric":{{"signal":"pending_pod",{id},"created_by_kind":"ReplicaSet"}},"value":[1800000000.123,"1"]}}"#
        ));
        for (resource, v) in [("cpu", 2.0), ("memory", 1073741824.0)] {
            series.push(format!(
                r#"{{"metric":{{"signal":"pending_pod_requests",{id},"resource":"{resource}"}},"value":[1800000000.123,"{v}"]}}"#
            ));
        }
    }
    for i in 0..NODES {
        let node = format!("k3s-worker-{i}");
        // 2.5 to 3.5 of 4 cores requested.
        let cpu = 2.5 + (i * 7 % 100) as f64 * 0.01 + pods_per_node as f64 * 0.0001;
        let mem = (i * 13 % 100) as f64 * 0.002 * 8589934592.0;
        let mut s = String::new();
        write!(
            s,
            r#"{{"metric":{{"signal":"node_ready","node":"{node}"}},"value":[1800000000.123,"1"]}}"#
        )
        .unwrap();
        series.push(s);
        for (sig, resource, v) in [
            ("node_requests", "cpu", cpu),
            ("node_requests", "memory", mem),
            ("node_allocatable", "cpu", 4.0),
            ("node_allocatable", "memory", 8589934592.0),
            ("node_requests", "pods", pods_per_node as f64),
        ] {
            let mut s = String::new();
            write!(
                s,
                r#"{{"metric":{{"signal":"{sig}","node":"{node}","resource":"{resource}"}},"value":[1800000000.123,"{v}"]}}"#
            )
            .unwrap();
            series.push(s);
        }
    }
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        series.join(",")
    )
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn stats(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<40} median {:>8.2} ms   max {:>8.2} ms   ({} rounds)",
        samples[samples.len() / 2].as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
        samples.len()
    );
}

fn main() {
    let body = answer();
    let rss_before = peak_rss_kib().unwrap_or(0);
    println!(
        "answer: {} series, {:.1} MiB; peak RSS before the decision step {:.1} MiB",
        SERIES,
        body.len() as f64 / (1 << 20) as f64,
        rss_before as f64 / 1024.0
    );
    let mut cfg = Config::default();
    cfg.limits.max_nodes = 10_000;
    cfg.limits.min_nodes = 1;
    // Workers of the size the answer's nodes have: 4 cores, 8 GiB.
    cfg.docker.cpus = 4.0;
    cfg.docker.memory = k3s_scale::config::units::Bytes(8 << 30);
    let state = State {
        low_since: Some(Timestamp::from_secs(1_700_000_000)),
        ..State::fresh()
    };
    let now = Timestamp::from_secs(1_800_000_000);
    let (mut parse_t, mut decide_t, mut rank_t, mut whole_t) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        let snap = parse_response(body.as_bytes(), &SIGNAL_NAMES).expect("valid answer");
        let t1 = Instant::now();
        let plan = decide(&snap, &state, &cfg, now);
        let t2 = Instant::now();
        let ranked = rank_candidates(&snap, &cfg);
        let t3 = Instant::now();
        assert_eq!(plan.workers.ready as usize, NODES);
        assert_eq!(ranked.len(), NODES);
        // 1,000 pods of 2 cores, two to a new 4-core worker: placement really ran.
        assert_eq!(plan.action, k3s_scale::plan::decide::Action::ScaleUp);
        assert!(
            plan.reasons[0].starts_with("1000 pending pod(s) need 500 new worker(s)"),
            "{:?}",
            plan.reasons
        );
        parse_t.push(t1 - t0);
        decide_t.push(t2 - t1);
        rank_t.push(t3 - t2);
        whole_t.push(t2 - t0);
    }
    stats("parse answer -> snapshot", parse_t);
    stats("decide (placement of 1,000 pods, ranking)", decide_t);
    stats("rank candidates alone", rank_t);
    stats("whole decision step (parse + decide)", whole_t);
    if let Some(rss) = peak_rss_kib() {
        println!(
            "peak RSS of the whole process: {:.1} MiB (target: decision step <= 64 MiB)",
            rss as f64 / 1024.0
        );
    }
    let snap = parse_response(body.as_bytes(), &SIGNAL_NAMES).expect("valid answer");
    drop(body);
    fit_check(&snap, &cfg);
    candidate_choice(&snap, &cfg);
    ca_estimate();
    fragmented_existing();
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

/// cluster-autoscaler's `BenchmarkBinpackingEstimate` (estimator/binpacking_estimator_test.go):
/// 50,000 pods of 50 m / 100 MiB and 1,000 of 95 m / 190 MiB onto templates of 1,000 m /
/// 5,000 MiB allowing 100 pods, at most 3,000 nodes; CA expects 2,595 nodes.
fn ca_estimate() {
    use k3s_scale::plan::model::{Node as ModelNode, Pod as ModelPod, Resources};
    use k3s_scale::plan::placement::estimate;
    const MI: f64 = 1048576.0;
    let template = ModelNode {
        name: "template".into(),
        allocatable: Resources::new(1.0, 5000.0 * MI),
        ready: true,
        max_pods: Some(100),
        ..ModelNode::default()
    };
    let labels: BTreeMap<String, String> = [("app".to_string(), "estimatee".to_string())].into();
    let group = |n: usize, millicores: f64, mib: f64| -> Vec<ModelPod> {
        (0..n)
            .map(|i| ModelPod {
                namespace: "universe".into(),
                name: format!("estimatee-{millicores}-{i}"),
                requests: Resources::new(millicores / 1000.0, mib * MI),
                labels: labels.clone(),
                ..ModelPod::default()
            })
            .collect()
    };
    let pods = [group(50_000, 50.0, 100.0), group(1_000, 95.0, 190.0)].concat();
    let refs: Vec<&ModelPod> = pods.iter().collect();
    let none = std::collections::HashSet::new();
    let (mut t, mut nodes) = (Vec::new(), 0);
    for _ in 0..CHOICE_ROUNDS {
        let t0 = Instant::now();
        let e = estimate(&refs, &[], &template, 0, 3000, &none);
        t.push(t0.elapsed());
        assert_eq!(e.on_new.len(), 51_000);
        nodes = e.new_workers;
    }
    println!(
        "estimate 51000 pods onto templates: median {:.2} ms, {nodes} nodes",
        median_ms(t)
    );
}

/// 5,000 existing 4-core / 16 GiB nodes whose free room is fragmented: every other node
/// has 1.5 cores free but 0.5 GiB, the others 8 GiB but 0.25 cores. 1,000 pending pods of
/// 1 core / 1 GiB fit none of them, though the most free CPU and the most free memory
/// (each on some node) would hold one: each pod is checked against the existing nodes,
/// then goes to new workers.
fn fragmented_existing() {
    use k3s_scale::plan::model::{Node as ModelNode, Pod as ModelPod, Resources};
    use k3s_scale::plan::placement::estimate;
    const GI: f64 = 1073741824.0;
    let nodes: Vec<ModelNode> = (0..NODES)
        .map(|i| {
            let (cpu, mem) = if i % 2 == 0 { (2.5, 15.5) } else { (3.75, 8.0) };
            ModelNode {
                name: format!("k3s-worker-{i}"),
                allocatable: Resources::new(4.0, 16.0 * GI),
                requested: Resources::new(cpu, mem * GI),
                ready: true,
                max_pods: Some(110),
                pod_count: 30,
                ..ModelNode::default()
            }
        })
        .collect();
    // A new worker: 4 cores / 16 GiB, one DaemonSet pod of 0.1 core / 0.1 GiB.
    let template = ModelNode {
        name: "template".into(),
        requested: Resources::new(0.1, 0.1 * GI),
        pod_count: 1,
        ..nodes[0].clone()
    };
    let pods: Vec<ModelPod> = (0..UNSCHEDULABLE)
        .map(|i| ModelPod {
            namespace: format!("ns-{}", i % NAMESPACES),
            name: format!("burst-{i}"),
            requests: Resources::new(1.0, GI),
            ..ModelPod::default()
        })
        .collect();
    let refs: Vec<&ModelPod> = pods.iter().collect();
    let none = std::collections::HashSet::new();
    let (mut t, mut count) = (Vec::new(), 0);
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        let e = estimate(&refs, &nodes, &template, 0, 10_000, &none);
        t.push(t0.elapsed());
        assert!(e.schedulable.is_empty());
        count = e.new_workers;
    }
    println!(
        "existing 5000 fragmented nodes, 1000 pending: median {:.2} ms, {count} nodes",
        median_ms(t)
    );
}

/// The scale-down check of one candidate with 110 pods against the 4,999 other nodes: do
/// its pods fit elsewhere (target <= 20 ms). Pods of 1.45 cores fit only the few nodes
/// with 1.5 cores free, spread over the cluster, so most nodes are tried for each pod.
fn fit_check(snap: &Snapshot, cfg: &Config) {
    use k3s_scale::plan::cluster::ClusterModel;
    use k3s_scale::plan::model::{Pod as ModelPod, Resources};
    use k3s_scale::plan::placement::fit_elsewhere;
    let model = ClusterModel::build(snap, cfg);
    let candidate = model.index_of("k3s-worker-4999").expect("a node");
    let pods: Vec<ModelPod> = (0..110)
        .map(|i| ModelPod {
            namespace: "ns-1".into(),
            name: format!("p-{i}"),
            requests: Resources::new(if i < 10 { 1.45 } else { 0.01 }, 1048576.0),
            ..ModelPod::default()
        })
        .collect();
    let refs: Vec<&ModelPod> = pods.iter().collect();
    let mut t = Vec::new();
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        let r = fit_elsewhere(&refs, &model.nodes, candidate);
        t.push(t0.elapsed());
        assert!(r.is_ok(), "{r:?}");
    }
    stats("scale-down fit check (110 pods, 4,999 nodes)", t);
}

fn meta(name: String, ns: Option<String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: ns,
        ..Default::default()
    }
}

/// A worker Node as k3s registers it.
fn node(name: &str) -> Node {
    let mut m = meta(name.to_string(), None);
    m.labels = Some(BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("k3s-scale.io/pool".to_string(), "default".to_string()),
    ]));
    Node {
        metadata: m,
        ..Default::default()
    }
}

/// Pod `i` of the 30 on node `n`: spread over 100 namespaces and 10 apps, owned by a
/// ReplicaSet, with the service-account volume, every tenth with a memory emptyDir; the
/// first is a DaemonSet pod (skipped). With `blocked`, the second has no controller,
/// which makes the node unremovable.
fn pod(n: usize, i: usize, blocked: bool) -> Pod {
    let ns = format!("ns-{}", (n * 7 + i) % NAMESPACES);
    let app = format!("app-{}", (n + i) % APPS);
    let mut m = meta(format!("{app}-{n}-{i}"), Some(ns));
    m.uid = Some(format!("uid-{n}-{i}"));
    m.labels = Some(BTreeMap::from([
        ("app".to_string(), app.clone()),
        ("pod-template-hash".to_string(), "5d8f7c9b4".to_string()),
    ]));
    let (kind, owner) = if i == 0 {
        ("DaemonSet", "node-exporter".to_string())
    } else {
        ("ReplicaSet", format!("{app}-5d8f7c9b4"))
    };
    if !(blocked && i == 1) {
        m.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: owner,
            uid: format!("uid-{kind}-{app}"),
            controller: Some(true),
            ..Default::default()
        }]);
    }
    let mut volumes = vec![Volume {
        name: "kube-api-access".into(),
        projected: Some(ProjectedVolumeSource::default()),
        ..Default::default()
    }];
    if i % 10 == 5 {
        volumes.push(Volume {
            name: "cache".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    Pod {
        metadata: m,
        spec: Some(PodSpec {
            node_name: Some(format!("k3s-worker-{n}")),
            containers: vec![Container {
                name: "main".into(),
                image: Some(format!("registry.example/{app}:1.0")),
                ..Default::default()
            }],
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        }),
    }
}

/// 500 PodDisruptionBudgets: apps 0-4 of every namespace, each allowing one disruption.
fn budgets() -> Vec<PodDisruptionBudget> {
    let mut out = Vec::new();
    for ns in 0..NAMESPACES {
        for app in 0..APPS_WITH_PDB {
            out.push(PodDisruptionBudget {
                metadata: meta(format!("app-{app}"), Some(format!("ns-{ns}"))),
                spec: Some(PodDisruptionBudgetSpec {
                    selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            "app".to_string(),
                            format!("app-{app}"),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                status: Some(PodDisruptionBudgetStatus {
                    disruptions_allowed: Some(1),
                    current_healthy: Some(3),
                    desired_healthy: Some(2),
                    expected_pods: Some(3),
                    ..Default::default()
                }),
            });
        }
    }
    out
}

/// What `ScaleDown::choose` computes once the API has answered, candidate by candidate;
/// `indexed` picks `budgets::Budgets` (what the product does) or the plain scan of every
/// budget for every pod (what it did before), for reference.
fn choose_once(
    snap: &Snapshot,
    cfg: &Config,
    nodes: &HashMap<String, Node>,
    pdbs: &[PodDisruptionBudget],
    clean: &str,
    indexed: bool,
) -> (Duration, usize, Option<String>) {
    let mut timed = Duration::ZERO;
    let t = Instant::now();
    let ranked = rank_candidates(snap, cfg);
    timed += t.elapsed();
    let owned = pdbs.to_vec();
    let t = Instant::now();
    let index = indexed.then(|| Budgets::new(owned));
    timed += t.elapsed();
    let mut checked = 0;
    for name in &ranked {
        let n: usize = name.rsplit('-').next().unwrap().parse().unwrap();
        let node = &nodes[name];
        let pods: Vec<Pod> = (0..PODS / NODES)
            .map(|i| pod(n, i, name != clean))
            .collect();
        let t = Instant::now();
        checked += 1;
        if drain::node_unremovable(node, &cfg.kubernetes.permanent_nodes).is_some() {
            timed += t.elapsed();
            continue;
        }
        let removable = if indexed {
            blocking(&pods, index.as_ref()).is_none()
        } else {
            let plan = drain::plan_pods(&pods);
            drain::blockers(&plan, Some(pdbs)).is_empty()
        };
        timed += t.elapsed();
        if removable {
            return (timed, checked, Some(name.clone()));
        }
    }
    (timed, checked, None)
}

fn candidate_choice(snap: &Snapshot, cfg: &Config) {
    let nodes: HashMap<String, Node> = snap
        .nodes
        .as_ref()
        .unwrap()
        .keys()
        .map(|n| (n.clone(), node(n)))
        .collect();
    let pdbs = budgets();
    // Every candidate but the one ranked last is blocked: all 5,000 are checked.
    let ranked = rank_candidates(snap, cfg);
    let clean = ranked.last().unwrap().clone();
    println!(
        "candidate choice: {} nodes, {} pods ({} per node, 1 DaemonSet pod each), {} namespaces, {} PDBs; worst case: every candidate checked",
        nodes.len(),
        nodes.len() * (PODS / NODES),
        PODS / NODES,
        NAMESPACES,
        pdbs.len()
    );
    let mut times = Vec::new();
    for _ in 0..CHOICE_ROUNDS {
        let (t, checked, chosen) = choose_once(snap, cfg, &nodes, &pdbs, &clean, true);
        assert_eq!(checked, NODES);
        assert_eq!(chosen.as_deref(), Some(clean.as_str()));
        times.push(t);
    }
    stats("choose a candidate (ranking + pod rules + PDBs)", times);
    let mut times = Vec::new();
    for _ in 0..SCAN_ROUNDS {
        let (t, checked, chosen) = choose_once(snap, cfg, &nodes, &pdbs, &clean, false);
        assert_eq!(checked, NODES);
        assert_eq!(chosen.as_deref(), Some(clean.as_str()));
        times.push(t);
    }
    stats("  same with the plain PDB scan (reference)", times);
    if let Some(rss) = peak_rss_kib() {
        println!(
            "peak RSS after the candidate choice: {:.1} MiB (its pods are built per candidate, as a run lists them)",
            rss as f64 / 1024.0
        );
    }
}
