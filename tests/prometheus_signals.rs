//! The signals as the real `PromClient` reads them from a real Prometheus fed with
//! kube-state-metrics series: each default PromQL, absent data, config overrides, one HTTP
//! request per snapshot, and how each kind of failing server is classified.

mod support;

use k3s_scale::config;
use k3s_scale::config::units::Secs;
use k3s_scale::plan::snapshot::{NodeSample, Snapshot};
use k3s_scale::signals::{MetricsSource, PromClient, PromError};
use std::collections::BTreeMap;
use std::time::Duration;
use support::prom::{
    BadServer, Cluster, CountingProxy, GIB, MIB, Misbehaviour, PromServer, sample,
};

fn client(url: &str, overrides: &[(&str, &str)], timeout: Duration) -> PromClient {
    let cfg = config::Prometheus {
        url: url.to_string(),
        timeout: Secs(timeout),
        queries: overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..config::Prometheus::default()
    };
    PromClient::new(&cfg).expect("client")
}

fn snapshot(url: &str) -> Snapshot {
    client(url, &[], Duration::from_secs(10))
        .snapshot()
        .expect("snapshot")
}

/// Float results of PromQL arithmetic, compared to 1e-9.
fn assert_near(what: &str, got: Option<f64>, want: f64) {
    match got {
        Some(v) if (v - want).abs() < 1e-9 => {}
        other => panic!("{what}: got {other:?}, want {want}"),
    }
}

fn node_names(s: &Snapshot) -> Vec<&str> {
    s.nodes
        .as_ref()
        .expect("nodes known")
        .keys()
        .map(String::as_str)
        .collect()
}

/// Three scheduled workers plus one lost one; pods in every phase that matters.
fn busy_cluster() -> Cluster {
    Cluster::new()
        .control_plane("server")
        .alloc(4.0, 8.0 * GIB)
        .worker("k3s-worker-1")
        .alloc(4.0, 8.0 * GIB)
        .worker("k3s-worker-2")
        .alloc(2.0, 4.0 * GIB)
        .worker("k3s-worker-3")
        .ready(false)
        .worker("k3s-worker-4")
        .ready_unknown()
        // On the control plane: not a worker's load.
        .pod("coredns")
        .namespace("kube-system")
        .on("server")
        .requests(0.1, 70.0 * MIB)
        // Worker 1: 2 cores, 4 GiB of 4 cores, 8 GiB (two containers in web-1).
        .pod("web-1")
        .on("k3s-worker-1")
        .requests(1.0, GIB)
        .requests(0.5, GIB)
        .pod("web-2")
        .on("k3s-worker-1")
        .requests(0.5, 2.0 * GIB)
        // Worker 2: a pod placed but still starting counts; a finished one does not.
        .pod("db-1")
        .on("k3s-worker-2")
        .phase("Pending")
        .requests(1.0, GIB)
        .pod("job-1")
        .on("k3s-worker-2")
        .phase("Succeeded")
        .requests(1.0, GIB)
        // On the NotReady worker: its own utilisation, not the Ready average.
        .pod("stuck-1")
        .on("k3s-worker-3")
        .requests(1.0, GIB)
        // Unschedulable: 1.5 cores and 3 GiB wanted.
        .pod("big-1")
        .unschedulable()
        .requests(0.5, GIB)
        .pod("big-2")
        .unschedulable()
        .requests(0.5, GIB)
        .pod("big-3")
        .namespace("batch")
        .unschedulable()
        .requests(0.25, 512.0 * MIB)
        .requests(0.25, 512.0 * MIB)
}

#[test]
fn default_queries_read_every_signal_of_a_busy_cluster() {
    let prom = PromServer::with_cluster(&busy_cluster());
    let s = snapshot(&prom.url());

    assert_eq!(s.pending_pods, Some(3.0), "unschedulable pods only");
    assert_near("pending_cpu_cores", s.pending_cpu_cores, 1.5);
    assert_near("pending_memory_bytes", s.pending_memory_bytes, 3.0 * GIB);
    // Ready workers 1 and 2: (2 + 1) cores of (4 + 2); (4 + 1) GiB of (8 + 4).
    assert_near("cpu", s.cpu, 50.0);
    assert_near("memory", s.memory, 500.0 / 12.0);

    assert_eq!(
        node_names(&s),
        [
            "k3s-worker-1",
            "k3s-worker-2",
            "k3s-worker-3",
            "k3s-worker-4"
        ],
        "workers by name, control plane excluded"
    );
    let nodes = s.nodes.as_ref().unwrap();
    let expect = |ready: bool, cpu: f64, memory: f64| NodeSample {
        ready,
        cpu: Some(cpu),
        memory: Some(memory),
    };
    assert_eq!(nodes["k3s-worker-1"], expect(true, 50.0, 50.0));
    assert_eq!(nodes["k3s-worker-2"], expect(true, 50.0, 25.0));
    assert_eq!(nodes["k3s-worker-3"], expect(false, 50.0, 25.0), "NotReady");
    assert_eq!(
        nodes["k3s-worker-4"],
        expect(false, 0.0, 0.0),
        "Ready=unknown is not Ready; no pods is 0"
    );
    let ready: Vec<&str> = s.ready_workers().collect();
    assert_eq!(ready, ["k3s-worker-1", "k3s-worker-2"]);
}

#[test]
fn each_nodes_pods_are_counted_as_the_scheduler_counts_them_in_the_same_query() {
    // Every pod placed and not finished counts toward allocatable.pods, requests or not,
    // DaemonSets' too; finished ones do not (kube-scheduler's pod informer leaves them out).
    let cluster = busy_cluster()
        .pod("svclb-1")
        .on("k3s-worker-1")
        .created_by("DaemonSet")
        .pod("best-effort")
        .on("k3s-worker-1")
        .pod("crashed")
        .on("k3s-worker-2")
        .phase("Failed")
        .worker("k3s-worker-5");
    let once = cluster.samples();
    let proxy_prom = PromServer::start(&once);
    let proxy = CountingProxy::start(&proxy_prom.addr());
    let s = snapshot(&proxy.url());
    assert_eq!(proxy.queries(), 1, "the pod counts come in the one query");
    // allocatable.pods is the API's Node's; the query gives the pods on each node.
    let pods = |s: &Snapshot, n: &str| s.node_resources[n].pods;
    let want = [
        ("server", 1),
        ("k3s-worker-1", 4),
        ("k3s-worker-2", 1),
        ("k3s-worker-3", 1),
        ("k3s-worker-4", 0),
        ("k3s-worker-5", 0),
    ];
    for (n, w) in want {
        assert_eq!(pods(&s, n), Some(w), "{n}");
    }
    // kube-state-metrics scraped twice: every pod still counted once.
    let mut twice = once.clone();
    twice.extend(once.iter().cloned().map(|mut s| {
        for (k, v) in &mut s.labels {
            if k == "instance" {
                *v = "kube-state-metrics-2:8080".into();
            }
        }
        s
    }));
    let prom = PromServer::start(&twice);
    let s2 = snapshot(&prom.url());
    for (n, w) in want {
        assert_eq!(pods(&s2, n), Some(w), "{n}, scraped twice");
    }
}

#[test]
fn the_unschedulable_pods_come_one_by_one_with_their_owner_and_requests() {
    let cluster = busy_cluster()
        .pod("agent-x")
        .namespace("kube-system")
        .unschedulable()
        .created_by("DaemonSet")
        .requests(0.1, 64.0 * MIB)
        .pod("no-requests")
        .unschedulable();
    let prom = PromServer::with_cluster(&cluster);
    let s = snapshot(&prom.url());
    assert_eq!(s.pending_pods, Some(5.0));
    let pods = s.unschedulable.as_ref().expect("the pods are listed");
    let got: Vec<(String, f64, f64, bool)> = pods
        .iter()
        .map(|p| (p.key(), p.requests.cpu, p.requests.memory, p.daemonset))
        .collect();
    assert_eq!(
        got,
        [
            ("batch/big-3".to_string(), 0.5, GIB, false),
            ("default/big-1".to_string(), 0.5, GIB, false),
            ("default/big-2".to_string(), 0.5, GIB, false),
            ("default/no-requests".to_string(), 0.0, 0.0, false),
            ("kube-system/agent-x".to_string(), 0.1, 64.0 * MIB, true),
        ],
        "placed pods are not listed; a pod without request series requests nothing"
    );
    // Every node's requested and allocatable, the server's too (it may take a moved pod).
    let r = &s.node_resources;
    assert_eq!(r["k3s-worker-1"].requested.cpu, 2.0);
    assert_eq!(r["k3s-worker-1"].allocatable.memory, 8.0 * GIB);
    assert_eq!(
        r["k3s-worker-2"].requested.memory, GIB,
        "the finished pod is not counted"
    );
    assert_eq!(r["server"].requested.cpu, 0.1);

    // With pending_pods overridden, the pods are not asked for: the decision then sizes
    // by summed requests.
    let c = client(
        &prom.url(),
        &[("pending_pods", "sum(kube_pod_status_unschedulable)")],
        Duration::from_secs(10),
    );
    assert_eq!(c.snapshot().unwrap().unschedulable, None);
}

#[test]
fn an_idle_cluster_reads_zero_not_unknown() {
    let cluster = Cluster::new()
        .control_plane("server")
        .worker("k3s-worker-1")
        .worker("k3s-worker-2")
        .pod("coredns")
        .namespace("kube-system")
        .on("server")
        .requests(0.1, 70.0 * MIB);
    let prom = PromServer::with_cluster(&cluster);
    let s = snapshot(&prom.url());
    assert_eq!(s.pending_pods, Some(0.0));
    assert_eq!(s.pending_cpu_cores, Some(0.0));
    assert_eq!(s.pending_memory_bytes, Some(0.0));
    assert_eq!(s.cpu, Some(0.0));
    assert_eq!(s.memory, Some(0.0));
    let idle = NodeSample {
        ready: true,
        cpu: Some(0.0),
        memory: Some(0.0),
    };
    let want: BTreeMap<String, NodeSample> = [
        ("k3s-worker-1".to_string(), idle.clone()),
        ("k3s-worker-2".to_string(), idle),
    ]
    .into();
    assert_eq!(s.nodes, Some(want));
}

#[test]
fn a_cluster_without_workers_has_zero_workers_not_unknown() {
    // A fresh k3s server before any agent joined: kube-state-metrics reports the server,
    // so "no workers" is the truth, and the run must be able to scale up to min_nodes.
    let cluster = Cluster::new()
        .control_plane("server")
        .pod("web-1")
        .unschedulable()
        .requests(0.5, GIB);
    let mut prom = PromServer::with_cluster(&cluster);
    let s = snapshot(&prom.url());
    assert_eq!(s.nodes, Some(BTreeMap::new()));
    assert_eq!(s.pending_pods, Some(1.0));
    assert_eq!(s.cpu, None, "no Ready worker: no average to speak of");
    assert_eq!(s.memory, None);

    // Nodes listed but no Ready condition reported for any (a trimmed kube-state-metrics):
    // that is not evidence of zero workers.
    prom.load(&[sample("kube_node_info", &[("node", "server")], 1.0)]);
    assert_eq!(snapshot(&prom.url()).nodes, None);
}

#[test]
fn nodes_without_pod_series_leave_pending_and_utilisation_unknown() {
    // Node series present, pod series missing (a relabel rule dropped them, or the pod
    // collector failed): "no pod pending" and "0 % used" would be guesses, so the pod-based
    // signals are unknown and the decision can never scale down on them.
    let cluster = Cluster::new()
        .control_plane("server")
        .worker("k3s-worker-1")
        .worker("k3s-worker-2");
    let s = snapshot(&PromServer::with_cluster(&cluster).url());
    assert_eq!(node_names(&s), ["k3s-worker-1", "k3s-worker-2"]);
    assert_eq!(s.pending_pods, None);
    assert_eq!(s.pending_cpu_cores, None);
    assert_eq!(s.cpu, None);
    assert_eq!(s.memory, None);
    let nodes = s.nodes.unwrap();
    assert_eq!(
        nodes["k3s-worker-1"].cpu, None,
        "per-node 0 only while requests are seen"
    );
}

#[test]
fn twice_scraped_kube_state_metrics_or_a_worker_without_allocatable() {
    // Two kube-state-metrics replicas (or two scrape jobs): every series twice, with
    // another `instance`. Requests and allocatable double alike; the figures hold.
    let once = busy_cluster().samples();
    let mut twice = once.clone();
    twice.extend(once.iter().cloned().map(|mut s| {
        for (k, v) in &mut s.labels {
            if k == "instance" {
                *v = "kube-state-metrics-2:8080".into();
            }
        }
        s
    }));
    let mut prom = PromServer::start(&twice);
    let s = snapshot(&prom.url());
    assert_near("cpu", s.cpu, 50.0);
    assert_near("memory", s.memory, 500.0 / 12.0);
    assert_near(
        "worker 1",
        s.nodes.as_ref().unwrap()["k3s-worker-1"].cpu,
        50.0,
    );

    // A Ready worker whose allocatable series are missing: its load cannot be weighed,
    // so the average is unknown (leaving it out would read 25 % here: a scale-down).
    let without: Vec<_> = once
        .into_iter()
        .filter(|s| {
            !(s.name == "kube_node_status_allocatable"
                && s.labels
                    .iter()
                    .any(|(k, v)| k == "node" && v == "k3s-worker-1"))
        })
        .collect();
    prom.load(&without);
    let s = snapshot(&prom.url());
    assert_eq!((s.cpu, s.memory), (None, None));
    let nodes = s.nodes.unwrap();
    assert_eq!(nodes["k3s-worker-1"].utilisation(), None);
    assert_near("worker 2", nodes["k3s-worker-2"].cpu, 50.0);
}

#[test]
fn without_kube_state_metrics_every_signal_is_unknown() {
    // First a cluster, so the swap below also shows old series do not linger.
    let mut prom = PromServer::with_cluster(&busy_cluster());
    assert_eq!(snapshot(&prom.url()).pending_pods, Some(3.0));

    // Prometheus up, node-exporter scraped, kube-state-metrics target down.
    let others = vec![
        sample("up", &[("job", "kube-state-metrics")], 0.0),
        sample("up", &[("job", "node-exporter")], 1.0),
        sample(
            "node_memory_MemTotal_bytes",
            &[("job", "node-exporter")],
            16.0 * GIB,
        ),
        sample(
            "node_memory_MemAvailable_bytes",
            &[("job", "node-exporter")],
            8.0 * GIB,
        ),
    ];
    prom.load(&others);
    let s = snapshot(&prom.url());
    assert_eq!(s, Snapshot::default(), "all unknown, none zero");
    assert!(s.signals().iter().all(|(_, v)| v.is_none()), "{s:?}");

    // A Prometheus that knows no series at all.
    prom.load(&[]);
    assert_eq!(snapshot(&prom.url()), Snapshot::default());
}

#[test]
fn config_overrides_replace_the_default_queries() {
    let prom = PromServer::with_cluster(&busy_cluster());
    let c = client(
        &prom.url(),
        &[
            ("cpu", "vector(42)"),
            // Every Pending pod, scheduled or not: 4 here, where the default says 3.
            (
                "pending_pods",
                r#"count(kube_pod_status_phase{phase="Pending"} == 1)"#,
            ),
            // Counts the control plane as a worker.
            (
                "node_ready",
                r#"max by (node) (kube_node_status_condition{condition="Ready",status="true"})"#,
            ),
        ],
        Duration::from_secs(10),
    );
    assert!(c.query_text().contains("vector(42)"));
    let s = c.snapshot().unwrap();
    assert_eq!(s.cpu, Some(42.0));
    assert_eq!(s.pending_pods, Some(4.0));
    assert!(node_names(&s).contains(&"server"), "{s:?}");
    assert!(s.nodes.as_ref().unwrap()["server"].ready);
    // Signals not overridden keep their defaults, over the workers `node_ready` names:
    // the server (coredns, 70 MiB of 8 GiB) counts now. (5 GiB + 70 MiB) of 20 GiB.
    assert_near("memory", s.memory, 100.0 * (5120.0 + 70.0) / 20480.0);
    assert_near(
        "server's memory",
        s.nodes.as_ref().unwrap()["server"].memory,
        100.0 * 70.0 / 8192.0,
    );
    assert_near("pending_cpu_cores", s.pending_cpu_cores, 1.5);
}

#[test]
fn wrong_overrides_are_errors_not_guesses() {
    let prom = PromServer::with_cluster(&busy_cluster());
    let timeout = Duration::from_secs(10);

    // Prometheus refuses the expression: HTTP 400 with its parse error.
    match client(&prom.url(), &[("cpu", "sum((")], timeout).snapshot() {
        Err(PromError::Status(400, msg)) => assert!(msg.contains("bad_data"), "{msg}"),
        other => panic!("expected HTTP 400 bad_data, got {other:?}"),
    }
    // One series per worker where one number is wanted.
    match client(&prom.url(), &[("memory", "kube_node_info")], timeout).snapshot() {
        Err(PromError::Malformed(msg)) => {
            assert!(msg.contains("memory has more than one series"), "{msg}")
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    // A per-node signal whose series carry no node label.
    match client(
        &prom.url(),
        &[("node_cpu", "vector(1) or vector(2)")],
        timeout,
    )
    .snapshot()
    {
        Err(PromError::Malformed(msg)) => assert!(msg.contains("`node` label"), "{msg}"),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn one_snapshot_is_exactly_one_query_request() {
    let prom = PromServer::with_cluster(&busy_cluster());
    let proxy = CountingProxy::start(&prom.addr());
    let c = client(&proxy.url(), &[], Duration::from_secs(10));

    let through_proxy = c.snapshot().unwrap();
    let reqs = proxy.requests();
    assert_eq!(reqs.len(), 1, "one HTTP request in all: {reqs:?}");
    assert_eq!(proxy.queries(), 1);
    assert_eq!(reqs[0].method, "POST");
    let form = String::from_utf8_lossy(&reqs[0].body);
    assert!(form.starts_with("query="), "{form}");
    // Every part of the query travels in that one request: each signal's own, the per-node
    // requests and allocatable the utilisation signals are worked out from, and the
    // unschedulable pods one by one (owner, requests) for the cluster model.
    let parts = k3s_scale::signals::promql::all_defaults().parts;
    assert_eq!(parts.len(), 8);
    for (name, _) in parts {
        assert!(
            form.contains(&format!("%22{name}%22")),
            "{name} missing: {form}"
        );
    }

    c.snapshot().unwrap();
    assert_eq!(proxy.queries(), 2, "one more per further snapshot");
    assert_eq!(proxy.requests().len(), 2);
    assert_eq!(
        through_proxy,
        snapshot(&prom.url()),
        "the proxy changes nothing"
    );
}

#[test]
fn credentials_from_files_reach_prometheus_as_the_authorization_header() {
    use std::os::unix::fs::PermissionsExt;
    let prom = PromServer::with_cluster(&busy_cluster());
    let proxy = CountingProxy::start(&prom.addr());
    let dir = support::TempDir::new("creds");
    let secret = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    let bearer = config::Prometheus {
        url: proxy.url(),
        bearer_token_file: Some(secret("token", "s3cret-token\n")),
        ..config::Prometheus::default()
    };
    let basic = config::Prometheus {
        url: proxy.url(),
        basic_auth: Some(config::BasicAuth {
            username: "k3s-scale".into(),
            password_file: secret("password", "pa55"),
        }),
        ..config::Prometheus::default()
    };
    for cfg in [bearer, basic] {
        let snap = PromClient::new(&cfg).unwrap().snapshot().unwrap();
        assert_eq!(snap.pending_pods, Some(3.0));
    }
    let auth: Vec<String> = proxy
        .requests()
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect();
    // base64("k3s-scale:pa55") = azNzLXNjYWxlOnBhNTU=
    assert_eq!(auth, ["Bearer s3cret-token", "Basic azNzLXNjYWxlOnBhNTU="]);
}

#[test]
fn failing_servers_are_classified_and_never_read_as_data() {
    let timeout = Duration::from_millis(700);
    let prom_error = r#"{"status":"error","errorType":"unavailable","error":"TSDB not ready"}"#;
    type Check = fn(&PromError) -> bool;
    let cases: Vec<(Misbehaviour, Check)> = vec![
        (Misbehaviour::Refuse, |e| matches!(e, PromError::Connect(_))),
        (Misbehaviour::Hang, |e| matches!(e, PromError::Timeout(_))),
        (
            Misbehaviour::Status(500, "internal error"),
            |e| matches!(e, PromError::Status(500, m) if m.contains("internal error")),
        ),
        (
            Misbehaviour::Status(503, prom_error),
            |e| matches!(e, PromError::Status(503, m) if m == "unavailable: TSDB not ready"),
        ),
        (Misbehaviour::Body("<html>Bad Gateway</html>"), |e| {
            matches!(e, PromError::Malformed(_))
        }),
        (
            Misbehaviour::Body(r#"{"status":"success"}"#),
            |e| matches!(e, PromError::Malformed(m) if m.contains("no `data`")),
        ),
        (
            Misbehaviour::CutOff,
            |e| matches!(e, PromError::Malformed(m) if m.contains("cut off")),
        ),
    ];
    for (how, is_expected) in cases {
        let server = BadServer::start(how.clone());
        let started = std::time::Instant::now();
        let result = client(&server.url(), &[], timeout).snapshot();
        match result {
            Err(e) if is_expected(&e) => {
                assert!(e.is_transient(), "{how:?}: {e}");
                // Not a speed check: proof that the configured timeout bounds the call.
                assert!(started.elapsed() < Duration::from_secs(10), "{how:?}");
            }
            other => panic!("{how:?}: unexpected {other:?}"),
        }
    }
}
