//! `simulate --from-prometheus --since 24h`: a scenario rebuilt from kube-state-metrics
//! history, so a user sees what k3s-scale would have done to their real last day. One
//! query per series family, each bounded in size: how many pods the window holds (one
//! number), each pod's largest CPU and memory requests and its DaemonSet ownership over the
//! window (one value per pod: `max_over_time`), and each pod's lifetime (the one range
//! query). The range query's step is the timer interval, or coarser so that the answer
//! stays under `MAX_POINTS_IN_ALL` points (about 32 MiB of JSON) and every series under
//! Prometheus's 11,000 points; more than `MAX_PODS` pods is refused.
//!
//! What the replay cannot know, and so leaves out: pods' placement constraints
//! (nodeSelector, affinity, tolerations, host ports, volumes: kube-state-metrics exports
//! none of them, so every pod may go on any worker), which node a pod ran on and whether
//! it was on this pool's workers at all (every non-DaemonSet pod is replayed onto the
//! simulated pool), pods that lived and died between two steps, and requests that changed
//! over a pod's life (its largest is taken).

use super::scenario::{Group, Scenario};
use crate::config::Config;
use crate::plan::model::{Pod, Resources};
use crate::plan::placement;
use crate::signals::range::Series;
use crate::signals::{PromClient, PromError};
use crate::state::time::Timestamp;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// The most pods a replay takes in.
pub const MAX_PODS: usize = 20_000;
/// Prometheus refuses a range query of more than 11,000 points per series.
const MAX_POINTS: u64 = 10_000;
/// Points in the lifetime answer, all series together (a point is ~18 bytes of JSON).
pub const MAX_POINTS_IN_ALL: u64 = 1_800_000;

/// The pods the window holds (Pending or Running at some sample).
pub fn q_count(window: &str) -> String {
    format!(
        r#"count(max by (namespace, pod) (max_over_time(kube_pod_status_phase{{phase=~"Pending|Running"}}[{window}])))"#
    )
}
/// Each pod's largest request of a resource over the window (per container, summed; each
/// series once, whatever number of kube-state-metrics instances or jobs stored it).
pub fn q_requests(resource: &str, window: &str) -> String {
    format!(
        r#"sum by (namespace, pod) (max without (instance, job) (max_over_time(kube_pod_container_resource_requests{{resource="{resource}"}}[{window}])))"#
    )
}
/// Pods a DaemonSet owned at some point of the window.
pub fn q_daemonset(window: &str) -> String {
    format!(
        r#"max by (namespace, pod) (max_over_time(kube_pod_owner{{owner_kind="DaemonSet"}}[{window}]))"#
    )
}
/// 1 while a pod is Pending or Running (absent otherwise): its lifetime.
pub const Q_ALIVE: &str =
    r#"max by (namespace, pod) (kube_pod_status_phase{phase=~"Pending|Running"}) == 1"#;

/// The step of the lifetime query: the timer interval, or coarser when `pods` series over
/// the window would pass either bound.
pub fn step_for(since: Duration, interval: Duration, pods: u64) -> u64 {
    let s = since.as_secs().max(1);
    let by_series = s.div_ceil(MAX_POINTS);
    let by_answer = (s * pods.max(1)).div_ceil(MAX_POINTS_IN_ALL);
    interval.as_secs().max(1).max(by_series).max(by_answer)
}

/// Reads the window `[end - since, end]` and turns it into a scenario; returns it with
/// the window's start (offset 0 of the simulation).
pub fn scenario(
    cfg: &Config,
    client: &PromClient,
    since: Duration,
    end: Timestamp,
    interval: Duration,
) -> Result<(Scenario, Timestamp), PromError> {
    let end_s = end.as_secs_f64().floor();
    let start_s = end_s - since.as_secs_f64();
    let window = format!("{}s", since.as_secs());
    // Instant values at the window's end: a range query of one point.
    let at_end = |q: &str, max: usize| client.query_range(q, end_s, end_s, 60, max);
    let pods = at_end(&q_count(&window), 1)?
        .first()
        .and_then(|s| s.values.last())
        .map_or(0.0, |v| v.1);
    if pods > MAX_PODS as f64 {
        return Err(PromError::Malformed(format!(
            "the window holds {pods} pods, over the replay's limit of {MAX_PODS}"
        )));
    }
    let cpu = at_end(&q_requests("cpu", &window), MAX_PODS)?;
    let memory = at_end(&q_requests("memory", &window), MAX_PODS)?;
    let daemonsets = at_end(&q_daemonset(&window), MAX_PODS)?;
    let step = step_for(since, interval, pods as u64);
    let alive = client.query_range(Q_ALIVE, start_s, end_s, step, MAX_PODS)?;
    let scenario = build(
        cfg,
        &cpu,
        &memory,
        &alive,
        &daemonsets,
        start_s,
        end_s,
        step,
        interval,
    );
    Ok((scenario, Timestamp::from_secs(start_s as i64)))
}

fn key(s: &Series) -> Option<(String, String)> {
    Some((
        s.labels.get("namespace")?.clone(),
        s.labels.get("pod")?.clone(),
    ))
}

fn largest(series: &[Series]) -> BTreeMap<(String, String), f64> {
    series
        .iter()
        .filter_map(|s| {
            let v = s
                .values
                .iter()
                .map(|(_, v)| *v)
                .filter(|v| v.is_finite() && *v >= 0.0)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
            Some((key(s)?, v))
        })
        .collect()
}

/// The scenario from the series: each pod a group of one, from its first sample while
/// Pending or Running to its last (still running at the end: no end), with its largest
/// requests; DaemonSet pods left out (a new worker brings its own). The workers at the
/// start are as many as the pods running then need (first-fit-decreasing on the config's
/// worker), within the limits.
#[allow(clippy::too_many_arguments)]
pub fn build(
    cfg: &Config,
    cpu: &[Series],
    memory: &[Series],
    alive: &[Series],
    daemonsets: &[Series],
    start_s: f64,
    end_s: f64,
    step: u64,
    interval: Duration,
) -> Scenario {
    let cpu = largest(cpu);
    let memory = largest(memory);
    let ds: HashSet<(String, String)> = daemonsets.iter().filter_map(key).collect();
    let mut pods = Vec::new();
    for s in alive {
        let Some(k) = key(s) else { continue };
        if ds.contains(&k) || s.values.is_empty() {
            continue;
        }
        let first = s.values.first().map(|v| v.0).unwrap_or(start_s);
        let last = s.values.last().map(|v| v.0).unwrap_or(end_s);
        let start = Duration::from_secs_f64((first - start_s).max(0.0));
        // Seen at the window's last step: still running.
        let end = (last + (step as f64) < end_s)
            .then(|| Duration::from_secs_f64((last - start_s).max(0.0) + step as f64));
        pods.push(Group {
            name: format!("{}.{}", k.0, k.1),
            count: 1,
            cpu: cpu.get(&k).copied().unwrap_or(0.0),
            memory: memory.get(&k).copied().unwrap_or(0.0),
            node_selector: BTreeMap::new(),
            start,
            end,
        });
    }
    let template = crate::plan::cluster::template(cfg, &crate::plan::snapshot::Snapshot::default());
    let at_start: Vec<Pod> = pods
        .iter()
        .filter(|g| g.start.is_zero())
        .map(|g| Pod {
            name: g.name.clone(),
            requests: Resources::new(g.cpu, g.memory),
            ..Pod::default()
        })
        .collect();
    let refs: Vec<&Pod> = at_start.iter().collect();
    let need = placement::estimate(
        &refs,
        &[],
        &template,
        0,
        cfg.limits.max_nodes,
        &HashSet::new(),
    )
    .new_workers;
    Scenario {
        duration: Duration::from_secs_f64((end_s - start_s).max(interval.as_secs_f64())),
        interval,
        join_time: Duration::from_secs(90),
        workers: need.clamp(
            cfg.limits.min_nodes,
            cfg.limits.max_nodes.max(cfg.limits.min_nodes),
        ),
        pods,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pod: &str, values: &[(f64, f64)]) -> Series {
        let mut labels = BTreeMap::new();
        labels.insert("namespace".to_string(), "web".to_string());
        labels.insert("pod".to_string(), pod.to_string());
        Series {
            labels,
            values: values.to_vec(),
        }
    }

    #[test]
    fn steps_keep_the_answer_bounded() {
        let day = Duration::from_secs(86_400);
        let i = Duration::from_secs(30);
        // (window, pods, step)
        for (since, pods, want) in [
            (day, 10, 30),
            (day, 600, 30),
            // 1,500 pods over a day at 30 s would be 4.3 M points.
            (day, 1_500, 72),
            (day * 30, 10, 260),
            (day, 20_000, 960),
        ] {
            let step = step_for(since, i, pods);
            assert_eq!(step, want, "{since:?} {pods}");
            assert!(since.as_secs() / step * pods <= MAX_POINTS_IN_ALL);
            assert!(since.as_secs() / step <= MAX_POINTS);
        }
    }

    #[test]
    fn pods_from_series() {
        let cfg = Config::default();
        let alive = [
            series("a", &[(1000.0, 1.0), (1030.0, 1.0)]),
            series("b", &[(1600.0, 1.0), (2000.0, 1.0)]),
            series("ds", &[(1000.0, 1.0)]),
        ];
        let cpu = [
            series("a", &[(1000.0, 0.5), (1030.0, 0.7)]),
            series("b", &[(1600.0, 1.0)]),
        ];
        let memory = [series("a", &[(1000.0, 1e9)])];
        let ds = [series("ds", &[(1000.0, 1.0)])];
        let s = build(
            &cfg,
            &cpu,
            &memory,
            &alive,
            &ds,
            1000.0,
            2000.0,
            30,
            Duration::from_secs(30),
        );
        assert_eq!(s.pods.len(), 2);
        let a = &s.pods[0];
        assert_eq!((a.cpu, a.memory, a.start), (0.7, 1e9, Duration::ZERO));
        assert_eq!(a.end, Some(Duration::from_secs(60)));
        let b = &s.pods[1];
        assert_eq!((b.start, b.end), (Duration::from_secs(600), None));
        assert_eq!(s.duration, Duration::from_secs(1000));
        assert_eq!(s.workers, cfg.limits.min_nodes);
    }
}
