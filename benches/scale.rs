//! Benchmark (not a test): the decision step at the upstream Kubernetes scalability limits.
//! 5,000 worker nodes with 150,000 pods between them, summarised by Prometheus into one
//! answer of that size: parse it into a snapshot, decide, rank scale-down candidates.
//! Run: `cargo bench --bench scale` (prints median/max per step and the peak RSS).

use k3s_scale::config::Config;
use k3s_scale::decide::{decide, rank_candidates};
use k3s_scale::prometheus::parse_response;
use k3s_scale::state::State;
use k3s_scale::time::Timestamp;
use std::fmt::Write;
use std::time::{Duration, Instant};

const NODES: usize = 5_000;
const PODS: usize = 150_000;
const ROUNDS: usize = 30;

/// The answer Prometheus gives to our combined query for such a cluster: per-node series
/// for readiness, CPU and memory (the 150,000 pods are already summed per node).
fn answer() -> String {
    let pods_per_node = PODS / NODES;
    let mut series = Vec::with_capacity(NODES * 3 + 5);
    let scalar = |s: &str, v: f64| {
        format!(r#"{{"metric":{{"signal":"{s}"}},"value":[1800000000.123,"{v}"]}}"#)
    };
    series.push(scalar("pending_pods", 0.0));
    series.push(scalar("pending_cpu_cores", 0.0));
    series.push(scalar("pending_memory_bytes", 0.0));
    series.push(scalar("cpu", 12.5));
    series.push(scalar("memory", 20.0));
    for i in 0..NODES {
        let node = format!("k3s-worker-{i}");
        let cpu = (i * 7 % 100) as f64 * 0.3 + pods_per_node as f64 * 0.01;
        let mem = (i * 13 % 100) as f64 * 0.2;
        for (sig, v) in [("node_ready", 1.0), ("node_cpu", cpu), ("node_memory", mem)] {
            let mut s = String::new();
            write!(
                s,
                r#"{{"metric":{{"signal":"{sig}","node":"{node}","instance":"kube-state-metrics:8080","job":"kube-state-metrics"}},"value":[1800000000.123,"{v}"]}}"#
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
        NODES * 3 + 5,
        body.len() as f64 / (1 << 20) as f64,
        rss_before as f64 / 1024.0
    );
    let mut cfg = Config::default();
    cfg.limits.max_nodes = 10_000;
    cfg.limits.min_nodes = 1;
    let state = State {
        low_since: Some(Timestamp::from_secs(1_700_000_000)),
        ..State::fresh()
    };
    let now = Timestamp::from_secs(1_800_000_000);
    let (mut parse_t, mut decide_t, mut rank_t, mut whole_t) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        let snap = parse_response(body.as_bytes()).expect("valid answer");
        let t1 = Instant::now();
        let plan = decide(&snap, &state, &cfg, now);
        let t2 = Instant::now();
        let ranked = rank_candidates(&snap, &cfg);
        let t3 = Instant::now();
        assert_eq!(plan.workers.ready as usize, NODES);
        assert_eq!(ranked.len(), NODES);
        parse_t.push(t1 - t0);
        decide_t.push(t2 - t1);
        rank_t.push(t3 - t2);
        whole_t.push(t2 - t0);
    }
    stats("parse answer -> snapshot", parse_t);
    stats("decide (includes ranking)", decide_t);
    stats("rank candidates alone", rank_t);
    stats("whole decision step (parse + decide)", whole_t);
    if let Some(rss) = peak_rss_kib() {
        println!(
            "peak RSS of the whole process: {:.1} MiB (target: decision step <= 64 MiB)",
            rss as f64 / 1024.0
        );
    }
}
