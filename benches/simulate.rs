//! Benchmark (not a test) of `k3s-scale simulate`: a simulated day at 30 s steps (2,880
//! runs, each through `run::evaluate::decide_and_act`) with 500 pods (target <= 1 s);
//! and the replay's own part for a day of a 50-node cluster (1,500 pods read from range
//! series at a 30 s step: turning them into a scenario, then simulating it; target <= 5 s
//! beside Prometheus's time, which is not counted here).
//! Run: `cargo bench --bench simulate` (prints the median and max of the rounds).

use k3s_scale::config::Config;
use k3s_scale::config::units::{Bytes, Secs};
use k3s_scale::signals::range::Series;
use k3s_scale::sim::engine::{default_epoch, simulate};
use k3s_scale::sim::replay;
use k3s_scale::sim::scenario::Scenario;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const ROUNDS: usize = 7;

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.docker.cpus = 4.0;
    cfg.docker.memory = Bytes(8 << 30);
    cfg.limits.min_nodes = 5;
    cfg.limits.max_nodes = 60;
    cfg.limits.scale_up_cooldown = Secs::from_secs(60);
    cfg
}

/// 500 pods: 200 all day, 150 in a morning burst, 100 through the day, 50 in a night batch.
const DAY: &str = "
duration: 24h
interval: 30s
join_time: 90s
workers: 5
pods:
  - {name: base, count: 200, cpu: 250m, memory: 256Mi}
  - {name: burst, count: 150, cpu: 500m, memory: 512Mi, start: 8h, end: 10h}
  - {name: day, count: 100, cpu: 250m, memory: 512Mi, start: 9h, end: 18h}
  - {name: batch, count: 50, cpu: 1, memory: 1Gi, start: 1h, end: 3h}
";

fn median_max(mut t: Vec<Duration>) -> (Duration, Duration) {
    t.sort();
    (t[t.len() / 2], t[t.len() - 1])
}

fn series(pod: &str, from: f64, to: f64, step: f64, v: f64) -> Series {
    let mut labels = BTreeMap::new();
    labels.insert("namespace".into(), "apps".into());
    labels.insert("pod".into(), pod.into());
    let mut values = Vec::new();
    let mut t = from;
    while t < to {
        values.push((t, v));
        t += step;
    }
    Series { labels, values }
}

fn main() {
    let cfg = config();
    let scenario = Scenario::parse(DAY).unwrap();
    let pods: u32 = scenario.pods.iter().map(|g| g.count).sum();
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let sim = simulate(&scenario, &cfg, default_epoch()).unwrap();
        times.push(t.elapsed());
        last = Some(sim.summary);
    }
    let (med, max) = median_max(times);
    let s = last.unwrap();
    println!(
        "simulated day: {} runs, {pods} pods: median {:.1} ms, max {:.1} ms (target <= 1000 ms); peak {} workers, {} scale-ups, {} scale-downs, {} flaps",
        s.runs,
        med.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        s.peak_workers,
        s.scale_ups,
        s.scale_downs,
        s.flaps
    );

    // The replay's own part at 50 nodes: 1,500 pods (30 a node), a third of them living
    // a few hours, their range series at a 30 s step over the day.
    let (start, end, step) = (0.0, 86_400.0, 30.0);
    let (mut cpu, mut mem, mut alive) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..1_500 {
        let name = format!("pod-{i}");
        let (from, to) = if i % 3 == 0 {
            let h = (i % 20) as f64 * 3600.0;
            (h, (h + 4.0 * 3600.0).min(end))
        } else {
            (start, end)
        };
        cpu.push(series(&name, from, to, step, 0.1));
        mem.push(series(&name, from, to, step, 128.0 * 1048576.0));
        alive.push(series(&name, from, to, step, 1.0));
    }
    let mut cfg50 = config();
    cfg50.limits.max_nodes = 80;
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let sc = replay::build(
            &cfg50,
            &cpu,
            &mem,
            &alive,
            &[],
            start,
            end,
            30,
            Duration::from_secs(30),
        );
        let sim = simulate(&sc, &cfg50, default_epoch()).unwrap();
        times.push(t.elapsed());
        assert_eq!(sim.summary.runs, 2880);
    }
    let (med, max) = median_max(times);
    println!(
        "replay of a 50-node day (1,500 pods, series at 30 s), without Prometheus's time: median {:.1} ms, max {:.1} ms (target <= 5000 ms)",
        med.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}
