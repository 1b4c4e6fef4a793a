//! `simulate --from-prometheus --since 24h`: a scenario rebuilt from kube-state-metrics
//! history, so a user sees what k3s-scale would have done to their real last day. One
//! range query per series family (CPU requests, memory requests, phase, DaemonSet
//! ownership), each bounded: the step keeps a series under Prometheus's 11,000 points and
//! at least the timer interval, and more than `MAX_PODS` pods is refused.
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

/// The most pods a replay takes in (series per family).
pub const MAX_PODS: usize = 20_000;
/// Prometheus refuses a range query of more than 11,000 points per series.
const MAX_POINTS: u64 = 10_000;

pub const Q_CPU: &str =
    r#"sum by (namespace, pod) (kube_pod_container_resource_requests{resource="cpu"})"#;
pub const Q_MEMORY: &str =
    r#"sum by (namespace, pod) (kube_pod_container_resource_requests{resource="memory"})"#;
pub const Q_ALIVE: &str =
    r#"max by (namespace, pod) (kube_pod_status_phase{phase=~"Pending|Running"}) == 1"#;
pub const Q_DAEMONSET: &str = r#"max by (namespace, pod) (kube_pod_owner{owner_kind="DaemonSet"})"#;

/// The step of the range queries: the timer interval, or coarser when the window would
/// need more points than Prometheus answers.
pub fn step_for(since: Duration, interval: Duration) -> u64 {
    let i = interval.as_secs().max(1);
    i.max(since.as_secs().div_ceil(MAX_POINTS))
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
    let step = step_for(since, interval);
    let end_s = end.as_secs_f64().floor();
    let start_s = end_s - since.as_secs_f64();
    let q = |query: &str| client.query_range(query, start_s, end_s, step, MAX_PODS);
    let cpu = q(Q_CPU)?;
    let memory = q(Q_MEMORY)?;
    let alive = q(Q_ALIVE)?;
    let daemonsets = q(Q_DAEMONSET)?;
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
    fn steps_stay_under_the_point_limit() {
        assert_eq!(
            step_for(Duration::from_secs(86_400), Duration::from_secs(30)),
            30
        );
        assert_eq!(
            step_for(Duration::from_secs(30 * 86_400), Duration::from_secs(30)),
            260
        );
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
