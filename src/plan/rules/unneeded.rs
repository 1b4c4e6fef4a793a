//! Per-worker timers of scale-down, as cluster-autoscaler keeps them: a Ready worker is
//! unneeded while its own requested CPU and memory are under `cpu_scale_down` and
//! `memory_scale_down` (its unneeded time counts from when that began, whatever the other
//! workers do); a worker NotReady counts from when it was first seen so. And the check
//! that removing one keeps the rest under the scale-up thresholds.

use crate::config::Config;
use crate::plan::snapshot::Snapshot;
use crate::state::State;
use crate::state::time::Timestamp;
use std::collections::BTreeMap;

#[derive(Debug, Default, PartialEq)]
pub struct Timers {
    pub unneeded_since: BTreeMap<String, Timestamp>,
    pub unready_since: BTreeMap<String, Timestamp>,
}

/// The timers after this run. A state from before per-worker timers carries one
/// cluster-wide `low_since`: workers unneeded now inherit it once.
pub fn track(snap: &Snapshot, state: &State, cfg: &Config, now: Timestamp) -> Timers {
    let mut t = Timers::default();
    let Some(nodes) = &snap.nodes else {
        return t;
    };
    let inherited = state
        .unneeded_since
        .is_empty()
        .then_some(state.low_since)
        .flatten();
    let th = &cfg.thresholds;
    for (name, n) in nodes {
        if cfg.kubernetes.permanent_nodes.contains(name) {
            continue;
        }
        if !n.ready {
            let since = state.unready_since.get(name).copied().unwrap_or(now);
            t.unready_since.insert(name.clone(), since);
            continue;
        }
        // Unknown figures: not unneeded (no data, no removal).
        let (Some(cpu), Some(mem)) = (n.cpu, n.memory) else {
            continue;
        };
        if cpu < th.cpu_scale_down && mem < th.memory_scale_down {
            let since = state
                .unneeded_since
                .get(name)
                .copied()
                .or(inherited)
                .unwrap_or(now);
            t.unneeded_since.insert(name.clone(), since);
        }
    }
    t
}

/// The cluster's CPU and memory requests over allocatable of the Ready workers once
/// `without` is gone, in percent; None when a figure is unknown.
pub fn projected(snap: &Snapshot, without: &str) -> Option<(f64, f64)> {
    let nodes = snap.nodes.as_ref()?;
    let (mut used, mut total) = ([0.0; 2], [0.0; 2]);
    for (name, _) in nodes.iter().filter(|(_, n)| n.ready) {
        if name == without {
            continue;
        }
        let r = snap.node_resources.get(name)?;
        used[0] += r.requested.cpu;
        used[1] += r.requested.memory;
        total[0] += r.allocatable.cpu;
        total[1] += r.allocatable.memory;
    }
    // The candidate's requests move to the others.
    if let Some(r) = snap.node_resources.get(without) {
        used[0] += r.requested.cpu;
        used[1] += r.requested.memory;
    }
    // Nothing left to carry nothing: 0 %. Something left with no room: over any threshold.
    let pct = |u: f64, t: f64| {
        if t > 0.0 {
            Some(100.0 * u / t)
        } else if u <= 0.0 {
            Some(0.0)
        } else {
            Some(f64::INFINITY)
        }
    };
    Some((pct(used[0], total[0])?, pct(used[1], total[1])?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::Resources;
    use crate::plan::snapshot::{NodeResources, NodeSample};

    fn snap(nodes: &[(&str, bool, Option<f64>)]) -> Snapshot {
        let mut s = Snapshot::default();
        let mut map = BTreeMap::new();
        for (n, ready, util) in nodes {
            map.insert(
                n.to_string(),
                NodeSample {
                    ready: *ready,
                    cpu: *util,
                    memory: util.map(|u| u / 2.0),
                },
            );
            let used = util.unwrap_or(0.0) / 100.0 * 4.0;
            s.node_resources.insert(
                n.to_string(),
                NodeResources {
                    requested: Resources::new(used, used),
                    allocatable: Resources::new(4.0, 8.0),
                    pods: None,
                },
            );
        }
        s.nodes = Some(map);
        s
    }

    #[test]
    fn timers_table() {
        let mut cfg = Config::default();
        cfg.kubernetes.permanent_nodes = vec!["p".into()];
        let now = Timestamp::from_secs(10_000);
        let old = Timestamp::from_secs(100);
        let mut st = State::default();
        st.unneeded_since.insert("a".into(), old);
        st.unneeded_since.insert("b".into(), old);
        st.unready_since.insert("d".into(), old);
        let s = snap(&[
            ("a", true, Some(10.0)), // still unneeded: keeps its timer
            ("b", true, Some(50.0)), // busy again: timer gone
            ("c", true, Some(5.0)),  // newly unneeded: starts now
            ("d", false, None),      // NotReady: keeps its timer
            ("e", false, None),      // newly NotReady
            ("f", true, None),       // unknown: never unneeded
            ("p", true, Some(0.0)),  // permanent: never
        ]);
        let t = track(&s, &st, &cfg, now);
        let want = |kv: &[(&str, Timestamp)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(t.unneeded_since, want(&[("a", old), ("c", now)]));
        assert_eq!(t.unready_since, want(&[("d", old), ("e", now)]));
    }

    #[test]
    fn an_old_state_hands_its_idle_time_down_once() {
        let cfg = Config::default();
        let old = Timestamp::from_secs(100);
        let st = State {
            low_since: Some(old),
            ..State::default()
        };
        let t = track(
            &snap(&[("a", true, Some(10.0))]),
            &st,
            &cfg,
            Timestamp::from_secs(500),
        );
        assert_eq!(t.unneeded_since.get("a"), Some(&old));
    }

    #[test]
    fn projection_moves_the_candidates_requests_to_the_others() {
        let s = snap(&[
            ("a", true, Some(50.0)),
            ("b", true, Some(10.0)),
            ("x", false, None),
        ]);
        // 2 + 0.4 CPU on a's 4: 60 %.
        let (cpu, _) = projected(&s, "b").unwrap();
        assert!((cpu - 60.0).abs() < 1e-9, "{cpu}");
        let mut unknown = s.clone();
        unknown.node_resources.remove("a");
        assert_eq!(projected(&unknown, "b"), None);
        // The last worker, empty, leaves nothing to carry; with requests, no room for them.
        let last = snap(&[("a", true, Some(0.0))]);
        assert_eq!(projected(&last, "a"), Some((0.0, 0.0)));
        let busy = snap(&[("a", true, Some(10.0))]);
        assert_eq!(projected(&busy, "a").unwrap().0, f64::INFINITY);
    }
}
