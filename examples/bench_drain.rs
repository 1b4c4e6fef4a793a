//! Benchmark (not a test): drain one node of 110 pods (the kubelet's default max pods)
//! through the real kube client against the API server stand-in, where each eviction
//! takes 100 ms to be accepted and each pod 1 s to terminate. Target: under 3 s in all.
//! Run: tests/bench_drain.sh  (or cargo run --example bench_drain -- [--pods N]
//! [--concurrency N] [--serial N]); `--serial N` also times N pods drained one at a time
//! (evict, wait until gone, next) and extrapolates that to all pods.

#[path = "../tests/support/apiserver.rs"]
#[allow(dead_code)]
mod apiserver;
#[path = "../tests/support/objects.rs"]
#[allow(dead_code)]
mod objects;

use apiserver::{ApiServer, Fault};
use k3s_scale::config::Config;
use k3s_scale::kube::mover::{DrainOptions, MoveMode, Recheck, drain_node};
use k3s_scale::kube::{Cluster, KubeCluster};
use std::time::{Duration, Instant};

const EVICTION_LATENCY: Duration = Duration::from_millis(100);
const TERMINATION: Duration = Duration::from_secs(1);

fn arg(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
}

fn setup(pods: usize) -> ApiServer {
    let server = ApiServer::start();
    server.add_node(objects::node("w1").build());
    for i in 0..pods {
        let p = objects::pod(&format!("p{i:03}")).on("w1").build();
        server.add_pod_exiting_after(p, TERMINATION);
    }
    server.fault(Fault::latency("POST", "/eviction", EVICTION_LATENCY));
    server
}

fn config(server: &ApiServer, concurrency: usize) -> Config {
    Config::parse(&format!(
        "kubernetes:\n  kubeconfig: {}\n  timeout: 10s\ndrain:\n  timeout: 10m\n  concurrency: {concurrency}\n",
        server.kubeconfig().display()
    ))
    .expect("config")
}

fn main() {
    let pods = arg("--pods").unwrap_or(110);
    let concurrency = arg("--concurrency").unwrap_or(16);
    println!(
        "drain of {pods} pods: eviction accepted after {} ms, pod gone {} ms later; drain.concurrency {concurrency}",
        EVICTION_LATENCY.as_millis(),
        TERMINATION.as_millis()
    );

    let server = setup(pods);
    let cfg = config(&server, concurrency);
    let cluster = KubeCluster::connect(&cfg.kubernetes).expect("client");
    let opts = DrainOptions::from_config(&cfg.drain, MoveMode::Evict);
    let started = Instant::now();
    let drained = drain_node(&cluster, "w1", &opts, Recheck::Pods).expect("drain succeeds");
    let took = started.elapsed();
    assert_eq!(drained.moved.len(), pods);
    assert!(server.pod_names().is_empty(), "every pod gone");
    println!(
        "parallel: {:.2} s for {pods} pods (cordon, list, evict, wait until gone); target < 3 s: {}",
        took.as_secs_f64(),
        if took < Duration::from_secs(3) {
            "MET"
        } else {
            "MISSED"
        }
    );

    if let Some(n) = arg("--serial") {
        let server = setup(n);
        let cfg = config(&server, 1);
        let cluster = KubeCluster::connect(&cfg.kubernetes).expect("client");
        let list = cluster.pods_on("w1").expect("pods");
        let started = Instant::now();
        for p in &list {
            let how = opts.moving(Instant::now() + Duration::from_secs(600));
            let moved = cluster.move_pods(std::slice::from_ref(p), &how);
            assert!(moved[0].accepted());
        }
        let took = started.elapsed();
        let each = took.as_secs_f64() / n as f64;
        println!(
            "serial: {:.2} s for {n} pods one at a time ({each:.2} s each; about {:.0} s for {pods})",
            took.as_secs_f64(),
            each * pods as f64
        );
    }
}
