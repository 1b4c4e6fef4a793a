//! Table and property tests of the decision and its invariants.

use super::*;
use crate::config::Config;
use crate::plan::model::Resources;
use crate::plan::rules::scale_down::rank_candidates;
use crate::plan::snapshot::{NodeResources, NodeSample, Snapshot};
use crate::state::time::Timestamp;
use crate::state::{Provisioning, State};
use proptest::prelude::*;
use std::collections::BTreeMap;

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

fn ago(secs: i64) -> Option<Timestamp> {
    Some(Timestamp::from_secs(1_800_000_000 - secs))
}

/// A snapshot builder: `snap().workers(3).cpu(50.0)`.
#[derive(Clone)]
struct Snap(Snapshot);

fn snap() -> Snap {
    Snap(Snapshot {
        pending_pods: Some(0.0),
        pending_cpu_cores: Some(0.0),
        pending_memory_bytes: Some(0.0),
        cpu: Some(50.0),
        memory: Some(50.0),
        nodes: Some(BTreeMap::new()),
        ..Snapshot::default()
    })
}

impl Snap {
    fn workers(mut self, n: u32) -> Snap {
        for i in 1..=n {
            self = self.node(&format!("k3s-worker-{i}"), true, 50.0);
        }
        self
    }
    fn node(mut self, name: &str, ready: bool, util: f64) -> Snap {
        self.0.nodes.get_or_insert_with(BTreeMap::new).insert(
            name.to_string(),
            NodeSample {
                ready,
                cpu: Some(util),
                memory: Some(util / 2.0),
            },
        );
        // Requests and allocatable that give those figures (2 CPU, 2 GiB workers).
        let gib = (1u64 << 30) as f64;
        self.0.node_resources.insert(
            name.to_string(),
            NodeResources {
                requested: Resources::new(2.0 * util / 100.0, 2.0 * gib * util / 200.0),
                allocatable: Resources::new(2.0, 2.0 * gib),
                pods: None,
            },
        );
        self
    }
    /// Every worker's own figures, as the cluster's (they are what the average is made of).
    fn nodes_at(mut self, util: f64) -> Snap {
        let names: Vec<(String, bool)> = self
            .0
            .nodes
            .iter()
            .flatten()
            .map(|(n, s)| (n.clone(), s.ready))
            .collect();
        for (n, ready) in names {
            self = self.node(&n, ready, util);
        }
        self
    }
    fn pending(mut self, pods: f64, cpu: f64, mem_gib: f64) -> Snap {
        self.0.pending_pods = Some(pods);
        self.0.pending_cpu_cores = Some(cpu);
        self.0.pending_memory_bytes = Some(mem_gib * (1u64 << 30) as f64);
        self
    }
    fn cpu(mut self, v: Option<f64>) -> Snap {
        self.0.cpu = v;
        self
    }
    fn mem(mut self, v: Option<f64>) -> Snap {
        self.0.memory = v;
        self
    }
    fn low(self) -> Snap {
        self.cpu(Some(10.0)).mem(Some(10.0)).nodes_at(10.0)
    }
    fn no_nodes_signal(mut self) -> Snap {
        self.0.nodes = None;
        self
    }
}

fn cfg() -> Config {
    Config::default()
}

fn idle_state() -> State {
    // Low for long enough, nothing recent.
    State {
        low_since: ago(3600),
        ..State::fresh()
    }
}

fn run(s: &Snap, st: &State, c: &Config) -> Plan {
    decide(&s.0, st, c, NOW)
}

fn blocked(p: &Plan, needle: &str) -> bool {
    p.blocked_by.iter().any(|b| b.contains(needle))
}

#[test]
fn scale_up_rules_table() {
    // (case, snapshot, state, expected action, expected count)
    let st = State::fresh();
    let cases: Vec<(&str, Snap, State, Action, u32)> = vec![
        (
            "steady load: nothing",
            snap().workers(3),
            st.clone(),
            Action::None,
            0,
        ),
        (
            "one pending pod that fits on one worker",
            snap().workers(3).pending(1.0, 0.5, 1.0),
            st.clone(),
            Action::ScaleUp,
            1,
        ),
        (
            "10 pods x 500m/1Gi need 5 workers by memory (2Gi each), capped by max_step 3",
            snap().workers(2).pending(10.0, 5.0, 10.0),
            st.clone(),
            Action::ScaleUp,
            3,
        ),
        (
            "pending requests unknown: at least one worker",
            {
                let mut s = snap().workers(2).pending(2.0, 0.0, 0.0);
                s.0.pending_cpu_cores = None;
                s.0.pending_memory_bytes = None;
                s
            },
            st.clone(),
            Action::ScaleUp,
            1,
        ),
        (
            "cpu at threshold",
            snap().workers(3).cpu(Some(80.0)),
            st.clone(),
            Action::ScaleUp,
            1,
        ),
        (
            "cpu 120% of requests on 4 workers -> 2 more to get back to 80%",
            snap().workers(4).cpu(Some(120.0)),
            st.clone(),
            Action::ScaleUp,
            2,
        ),
        (
            "memory over threshold",
            snap().workers(3).mem(Some(95.0)),
            st.clone(),
            Action::ScaleUp,
            1,
        ),
        (
            "just below every threshold",
            snap().workers(3).cpu(Some(79.9)).mem(Some(79.9)),
            st.clone(),
            Action::None,
            0,
        ),
        (
            "below min: fill to min without any signal",
            snap().workers(0).cpu(None).mem(None),
            st.clone(),
            Action::ScaleUp,
            2,
        ),
        (
            "at max: nothing even with pending pods",
            snap().workers(6).pending(4.0, 2.0, 2.0),
            st.clone(),
            Action::None,
            0,
        ),
        (
            "5 of max 6: only one fits",
            snap().workers(5).pending(10.0, 10.0, 10.0),
            st.clone(),
            Action::ScaleUp,
            1,
        ),
        (
            "cooldown holds a scale-up",
            snap().workers(3).pending(1.0, 0.5, 1.0),
            State {
                last_scale_up: ago(30),
                ..st.clone()
            },
            Action::None,
            0,
        ),
        (
            "cooldown over",
            snap().workers(3).pending(1.0, 0.5, 1.0),
            State {
                last_scale_up: ago(61),
                ..st.clone()
            },
            Action::ScaleUp,
            1,
        ),
        (
            "failure back-off holds a scale-up",
            snap().workers(3).pending(1.0, 0.5, 1.0),
            State {
                last_scale_up_failure: ago(60),
                ..st.clone()
            },
            Action::None,
            0,
        ),
        (
            "provisioning workers hold further scale-ups",
            snap().workers(3).pending(1.0, 0.5, 1.0),
            State {
                provisioning: vec![Provisioning {
                    name: "k3s-worker-9".into(),
                    started_at: ago(100).unwrap(),
                    host: None,
                }],
                ..st.clone()
            },
            Action::None,
            0,
        ),
        (
            "a provisioning worker now Ready no longer holds",
            snap().workers(3).pending(1.0, 0.5, 1.0),
            State {
                provisioning: vec![Provisioning {
                    name: "k3s-worker-3".into(),
                    started_at: ago(100).unwrap(),
                    host: None,
                }],
                ..st.clone()
            },
            Action::ScaleUp,
            1,
        ),
        (
            "a worker not Ready past provision_timeout no longer holds (its host was not listed, so reconcile could not remove it)",
            snap().workers(3).pending(1.0, 0.5, 1.0),
            State {
                provisioning: vec![Provisioning {
                    name: "k3s-worker-9".into(),
                    started_at: ago(901).unwrap(),
                    host: Some("b".into()),
                }],
                ..st.clone()
            },
            Action::ScaleUp,
            1,
        ),
        (
            "node count unknown: no action at all",
            snap().pending(3.0, 1.0, 1.0).no_nodes_signal(),
            st.clone(),
            Action::None,
            0,
        ),
    ];
    for (name, s, state, action, count) in cases {
        let p = run(&s, &state, &cfg());
        assert_eq!(p.action, action, "{name}: {p:#?}");
        assert_eq!(p.count, count, "{name}: {p:#?}");
        if action == Action::None && (!p.reasons.is_empty()) {
            assert!(
                !p.blocked_by.is_empty(),
                "{name}: a fired rule that did not act must say why"
            );
        }
    }
}

#[test]
fn scale_down_rules_table() {
    let c = cfg();
    let cases: Vec<(&str, Snap, State, Action, &str)> = vec![
        (
            "idle long enough: one worker goes",
            snap().workers(4).low(),
            idle_state(),
            Action::ScaleDown,
            "",
        ),
        (
            "idle, but only just: unneeded time runs",
            snap().workers(4).low(),
            State {
                low_since: ago(60),
                ..State::fresh()
            },
            Action::None,
            "scale_down_unneeded_time",
        ),
        (
            "first low run starts the clock",
            snap().workers(4).low(),
            State::fresh(),
            Action::None,
            "scale_down_unneeded_time",
        ),
        (
            "at min: nothing",
            snap().workers(2).low(),
            idle_state(),
            Action::None,
            "at min_nodes",
        ),
        (
            "cpu unknown: never scale down",
            snap().workers(4).low().cpu(None),
            idle_state(),
            Action::None,
            "unknown",
        ),
        (
            "pending unknown: never scale down",
            {
                let mut s = snap().workers(4).low();
                s.0.pending_pods = None;
                s
            },
            idle_state(),
            Action::None,
            "pending_pods",
        ),
        (
            "memory above scale-down threshold",
            snap().workers(4).cpu(Some(10.0)).mem(Some(30.0)),
            idle_state(),
            Action::None,
            "",
        ),
        (
            "scale-down cooldown",
            snap().workers(4).low(),
            State {
                last_scale_down: ago(60),
                ..idle_state()
            },
            Action::None,
            "scale_down_cooldown",
        ),
        (
            "delay after scale-up",
            snap().workers(4).low(),
            State {
                last_scale_up: ago(300),
                ..idle_state()
            },
            Action::None,
            "scale_down_delay_after_scale_up",
        ),
        (
            "failure back-off after a failed drain",
            snap().workers(4).low(),
            State {
                last_scale_down_failure: ago(60),
                ..idle_state()
            },
            Action::None,
            "failed scale-down",
        ),
        (
            "workers provisioning",
            snap().workers(4).low(),
            State {
                provisioning: vec![Provisioning {
                    name: "k3s-worker-9".into(),
                    started_at: ago(10).unwrap(),
                    host: None,
                }],
                ..idle_state()
            },
            Action::None,
            "provisioning",
        ),
        (
            "unhealthy: 4 of 8 unready (more than 3)",
            snap()
                .workers(4)
                .node("x-1", false, 0.0)
                .node("x-2", false, 0.0)
                .node("x-3", false, 0.0)
                .node("x-4", false, 0.0)
                .low(),
            State { ..idle_state() },
            Action::None,
            "unhealthy",
        ),
        (
            "healthy: 3 of 6 unready is over 45 % but not over 3 (both must hold)",
            snap()
                .workers(3)
                .node("x-1", false, 0.0)
                .node("x-2", false, 0.0)
                .node("x-3", false, 0.0)
                .low(),
            idle_state(),
            Action::ScaleDown,
            "",
        ),
        (
            "unhealthy: 4 of 5 unready (over 3 and over 45 %)",
            snap()
                .workers(1)
                .node("x-1", false, 0.0)
                .node("x-2", false, 0.0)
                .node("x-3", false, 0.0)
                .node("x-4", false, 0.0)
                .low(),
            idle_state(),
            Action::None,
            "unhealthy",
        ),
        (
            "one of 5 unready is tolerated",
            snap().workers(4).node("x-1", false, 0.0).low(),
            idle_state(),
            Action::ScaleDown,
            "",
        ),
    ];
    let limits = Config {
        limits: crate::config::Limits {
            max_nodes: 10,
            ..c.limits.clone()
        },
        ..c
    };
    for (name, s, state, action, why) in cases {
        let p = run(&s, &state, &limits);
        assert_eq!(p.action, action, "{name}: {p:#?}");
        if !why.is_empty() {
            assert!(
                blocked(&p, why),
                "{name}: expected blocked_by to mention {why:?}: {p:#?}"
            );
        }
        if action == Action::ScaleDown {
            assert_eq!(p.count, 1, "{name}");
            assert!(!p.candidates.is_empty(), "{name}");
        }
    }
}

#[test]
fn idle_clock_starts_keeps_and_resets() {
    let c = cfg();
    let p = run(&snap().workers(4).low(), &State::fresh(), &c);
    assert_eq!(p.low_since, Some(NOW), "first low run starts the clock now");
    let st = State {
        low_since: ago(100),
        ..State::fresh()
    };
    let p = run(&snap().workers(4).low(), &st, &c);
    assert_eq!(p.low_since, ago(100), "the clock keeps its start");
    let p = run(&snap().workers(4).low().nodes_at(60.0), &st, &c);
    assert_eq!(p.low_since, None, "busy workers reset it");
    let mut unknown = snap().workers(4).low();
    for n in unknown.0.nodes.as_mut().unwrap().values_mut() {
        n.cpu = None;
    }
    let p = run(&unknown, &st, &c);
    assert_eq!(p.low_since, None, "unknown figures reset it");
    // Each worker has its own timer: one busy worker restarts only its own.
    let mut st = State::fresh();
    for i in 1..=4 {
        st.unneeded_since
            .insert(format!("k3s-worker-{i}"), ago(100).unwrap());
    }
    let p = run(
        &snap().workers(4).low().node("k3s-worker-2", true, 60.0),
        &st,
        &c,
    );
    assert_eq!(p.memory.unneeded_since.len(), 3);
    assert!(!p.memory.unneeded_since.contains_key("k3s-worker-2"));
    assert!(
        p.memory
            .unneeded_since
            .values()
            .all(|t| Some(*t) == ago(100))
    );
}

#[test]
fn candidates_least_utilised_first_ties_to_newest_never_permanent() {
    let mut c = cfg();
    c.kubernetes.permanent_nodes = vec!["k3s-agent-1".into()];
    let s = snap()
        .node("k3s-agent-1", true, 0.0)
        .node("k3s-worker-3", true, 20.0)
        .node("k3s-worker-7", true, 20.0)
        .node("k3s-worker-12", true, 20.0)
        .node("k3s-worker-5", true, 5.0)
        .node("k3s-worker-9", false, 0.0);
    assert_eq!(
        rank_candidates(&s.0, &c),
        vec![
            "k3s-worker-5",
            "k3s-worker-12",
            "k3s-worker-7",
            "k3s-worker-3"
        ]
    );
}

#[test]
fn among_equally_good_candidates_the_fullest_host_goes_first() {
    let c = cfg();
    let mut s = snap()
        .node("k3s-worker-1", true, 10.0)
        .node("k3s-worker-2", true, 10.0)
        .node("k3s-worker-3", true, 10.0)
        .node("k3s-worker-4", true, 5.0)
        .node("k3s-worker-5", true, 10.0);
    // box-a holds 1, 4 and 5; box-b holds 2 and 3.
    for (w, h) in [
        (1, "box-a"),
        (2, "box-b"),
        (3, "box-b"),
        (4, "box-a"),
        (5, "box-a"),
    ] {
        s.0.hosts.insert(format!("k3s-worker-{w}"), h.to_string());
    }
    assert_eq!(
        rank_candidates(&s.0, &c),
        vec![
            // Least utilised first, wherever it is.
            "k3s-worker-4",
            // Then the equal ones on the host with most workers, newest first.
            "k3s-worker-5",
            "k3s-worker-1",
            "k3s-worker-3",
            "k3s-worker-2",
        ]
    );
    // One host (or none known): the newest, as before.
    s.0.hosts.clear();
    assert_eq!(rank_candidates(&s.0, &c)[1], "k3s-worker-5");
    assert_eq!(rank_candidates(&s.0, &c)[2], "k3s-worker-3");
}

#[test]
fn worker_joining_leaves_provisioning() {
    let st = State {
        provisioning: vec![
            Provisioning {
                name: "k3s-worker-4".into(),
                started_at: ago(20).unwrap(),
                host: None,
            },
            Provisioning {
                name: "k3s-worker-5".into(),
                started_at: ago(20).unwrap(),
                host: None,
            },
        ],
        ..State::fresh()
    };
    let s = snap()
        .workers(3)
        .node("k3s-worker-4", true, 0.0)
        .node("k3s-worker-5", false, 0.0);
    let p = run(&s, &st, &cfg());
    assert_eq!(p.joined, vec!["k3s-worker-4".to_string()]);
    assert_eq!(p.workers.provisioning, 1);
    assert_eq!(p.workers.total, 5, "registered-but-unready is counted once");
}

#[test]
fn every_plan_explains_itself() {
    let p = run(
        &snap().workers(3).pending(2.0, 1.0, 1.0),
        &State::fresh(),
        &cfg(),
    );
    assert!(
        p.reasons.iter().any(|r| r.contains("pending_pods 2 >= 1")),
        "{p:?}"
    );
    let p = run(
        &snap().workers(3).cpu(Some(90.0)),
        &State {
            last_scale_up: ago(10),
            ..State::fresh()
        },
        &cfg(),
    );
    assert!(
        p.reasons.iter().any(|r| r.contains("cpu 90.0% >= 80.0%")),
        "{p:?}"
    );
    assert!(
        blocked(&p, "scale_up_cooldown until 2027-01-15T08:00:50Z"),
        "{p:?}"
    );
}

fn opt_pct() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![1 => Just(None), 6 => (0.0f64..150.0).prop_map(Some)]
}

prop_compose! {
    fn any_snapshot()(
        ready in 0u32..10, unready in 0u32..4,
        pending in prop_oneof![1 => Just(None), 5 => (0u32..20).prop_map(|p| Some(f64::from(p)))],
        pcpu in prop_oneof![1 => Just(None), 3 => (0.0f64..40.0).prop_map(Some)],
        cpu in opt_pct(), mem in opt_pct(), nodes_known in prop::bool::weighted(0.9),
    ) -> Snapshot {
        let mut nodes = BTreeMap::new();
        for i in 0..ready { nodes.insert(format!("k3s-worker-{i}"), NodeSample { ready: true, cpu: Some(10.0), memory: Some(5.0) }); }
        for i in 0..unready { nodes.insert(format!("k3s-worker-u{i}"), NodeSample { ready: false, cpu: None, memory: None }); }
        Snapshot {
            pending_pods: pending, pending_cpu_cores: pcpu, pending_memory_bytes: pcpu.map(|c| c * 1e9),
            cpu, memory: mem, nodes: nodes_known.then_some(nodes),
            ..Snapshot::default()
        }
    }
}

prop_compose! {
    fn any_state()(
        up in prop::option::of(0i64..2000), down in prop::option::of(0i64..2000),
        upf in prop::option::of(0i64..2000), downf in prop::option::of(0i64..2000),
        low in prop::option::of(0i64..2000), booting in 0usize..3,
    ) -> State {
        State {
            last_scale_up: up.and_then(ago), last_scale_down: down.and_then(ago),
            last_scale_up_failure: upf.and_then(ago), last_scale_down_failure: downf.and_then(ago),
            low_since: low.and_then(ago),
            provisioning: (0..booting).map(|i| Provisioning { name: format!("k3s-worker-b{i}"), started_at: ago(5).unwrap(), host: None }).collect(),
            ..State::fresh()
        }
    }
}

prop_compose! {
    fn any_config()(min in 0u32..5, extra in 0u32..6, step in 1u32..4) -> Config {
        let mut c = Config::default();
        c.limits.min_nodes = min;
        c.limits.max_nodes = (min + extra).max(1);
        c.scaling.max_step = step;
        c
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn invariants_hold(s in any_snapshot(), st in any_state(), c in any_config()) {
        let p = decide(&s, &st, &c, NOW);
        let w = &p.workers;
        match p.action {
            Action::ScaleUp => {
                prop_assert!(p.count >= 1);
                prop_assert!(w.total + p.count <= c.limits.max_nodes, "above max: {p:?}");
                if w.ready + w.provisioning >= c.limits.min_nodes {
                    prop_assert!(p.count <= c.scaling.max_step);
                    // Cooldown, back-off and the provisioning hold always apply above min.
                    prop_assert!(st.last_scale_up.is_none_or(|t| NOW.since(t) >= c.limits.scale_up_cooldown.get()));
                    prop_assert!(w.provisioning == 0);
                }
                prop_assert!(st.last_scale_up_failure.is_none_or(|t| NOW.since(t) >= c.scaling.failure_backoff.get()));
            }
            Action::ScaleDown => {
                prop_assert_eq!(p.count, 1);
                prop_assert!(w.ready + w.provisioning > c.limits.min_nodes, "below min: {p:?}");
                prop_assert_eq!(s.pending_pods, Some(0.0), "scale-down with pods pending or unknown");
                // Every signal known; the averages need not be low (each worker is judged on
                // its own use, as cluster-autoscaler does: plan/rules/scale_down.rs `low`),
                // but the worker removed is under both thresholds.
                prop_assert!(s.cpu.is_some() && s.memory.is_some());
                let first = &s.nodes.as_ref().unwrap()[&p.candidates[0]];
                prop_assert!(first.cpu.is_some_and(|v| v < c.thresholds.cpu_scale_down), "{p:?}");
                prop_assert!(first.memory.is_some_and(|v| v < c.thresholds.memory_scale_down), "{p:?}");
                prop_assert!(s.nodes.is_some());
                prop_assert!(st.last_scale_down.is_none_or(|t| NOW.since(t) >= c.limits.scale_down_cooldown.get()));
                prop_assert!(st.last_scale_up.is_none_or(|t| NOW.since(t) >= c.scaling.scale_down_delay_after_scale_up.get()));
                prop_assert!(st.low_since.is_some_and(|t| NOW.since(t) >= c.scaling.scale_down_unneeded_time.get()));
                prop_assert!(!p.candidates.is_empty());
                prop_assert!(p.blocked_by.is_empty());
            }
            Action::None => prop_assert_eq!(p.count, 0),
        }
        if s.nodes.is_none() {
            prop_assert_eq!(p.action, Action::None);
        }
    }
}

#[test]
fn unready_workers_are_not_capacity_for_min_nodes() {
    // min 2: two Ready and one NotReady worker is *at* min, so nothing is removed.
    let s = snap().workers(2).node("k3s-worker-9", false, 0.0).low();
    let p = run(&s, &idle_state(), &cfg());
    assert_eq!(p.action, Action::None, "{p:#?}");
    assert!(blocked(&p, "at min_nodes 2"), "{p:#?}");
    // min 4, three Ready and one NotReady: below min in capacity, so one more is started.
    let mut c = cfg();
    c.limits.min_nodes = 4;
    let s = snap().workers(3).node("k3s-worker-9", false, 0.0);
    let p = run(&s, &State::fresh(), &c);
    assert_eq!((p.action.clone(), p.count), (Action::ScaleUp, 1), "{p:#?}");
    // ...and with two of four unready (over 45 %, not over 3: healthy, as
    // cluster-autoscaler has it), two more.
    let s = snap()
        .workers(2)
        .node("k3s-worker-8", false, 0.0)
        .node("k3s-worker-9", false, 0.0);
    let p = run(&s, &State::fresh(), &c);
    assert_eq!((p.action.clone(), p.count), (Action::ScaleUp, 2), "{p:#?}");
    // ...but not in an unhealthy cluster (four of five unready): nothing is piled on.
    let s = snap()
        .workers(1)
        .node("k3s-worker-6", false, 0.0)
        .node("k3s-worker-7", false, 0.0)
        .node("k3s-worker-8", false, 0.0)
        .node("k3s-worker-9", false, 0.0);
    let p = run(&s, &State::fresh(), &c);
    assert_eq!(p.action, Action::None, "{p:#?}");
    assert!(blocked(&p, "cluster unhealthy"), "{p:#?}");
}

#[test]
fn a_worker_with_unknown_utilisation_is_never_a_candidate() {
    let mut s = snap().workers(4).low();
    if let Some(n) = s.0.nodes.as_mut() {
        n.get_mut("k3s-worker-4").unwrap().cpu = None;
        n.get_mut("k3s-worker-4").unwrap().memory = None;
    }
    let p = run(&s, &idle_state(), &cfg());
    assert_eq!(p.action, Action::ScaleDown);
    assert!(
        !p.candidates.contains(&"k3s-worker-4".to_string()),
        "{p:#?}"
    );
}

/// Pending pods as kube-state-metrics lists them (requests known, no constraints).
fn with_pods(mut s: Snap, pods: &[(&str, f64, f64)]) -> Snap {
    let gib = (1u64 << 30) as f64;
    let list: Vec<crate::plan::model::Pod> = pods
        .iter()
        .map(|(name, cpu, mem_gib)| crate::plan::model::Pod {
            namespace: "shop".into(),
            name: name.to_string(),
            requests: Resources::new(*cpu, mem_gib * gib),
            ..Default::default()
        })
        .collect();
    let cpu: f64 = pods.iter().map(|p| p.1).sum();
    let mem: f64 = pods.iter().map(|p| p.2).sum();
    s = s.pending(list.len() as f64, cpu, mem);
    s.0.unschedulable = Some(list);
    s
}

#[test]
fn scheduling_aware_cases() {
    let mut c = cfg();
    c.limits.max_nodes = 20;
    c.scaling.max_step = 10;
    c.docker.cpus = 4.0;
    c.docker.memory = crate::config::units::Bytes(8 << 30);
    let six: Vec<(String, f64, f64)> = (0..6).map(|i| (format!("p{i}"), 3.0, 0.5)).collect();
    let six: Vec<(&str, f64, f64)> = six.iter().map(|(n, c, m)| (n.as_str(), *c, *m)).collect();
    // Workers are full (util 100 %) so nothing fits on them.
    let full = || {
        snap()
            .workers(3)
            .nodes_at(100.0)
            .cpu(Some(70.0))
            .mem(Some(50.0))
    };

    let p = run(&with_pods(full(), &six), &State::fresh(), &c);
    assert_eq!(
        (p.action.clone(), p.count),
        (Action::ScaleUp, 6),
        "packing: {p:#?}"
    );

    let p = run(
        &with_pods(full(), &[("cache-0", 16.0, 1.0)]),
        &State::fresh(),
        &c,
    );
    assert_eq!(p.action, Action::None, "oversized pod: no scale-up: {p:#?}");
    let shown: Vec<String> = p.unhelpable.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["pod shop/cache-0: requests 16 CPU, a worker allocates 4"]
    );

    // ... and it does not hold a scale-down of an idle worker.
    let idle = with_pods(snap().workers(4).low(), &[("cache-0", 16.0, 1.0)]);
    let p = run(&idle, &idle_state(), &c);
    assert_eq!(p.action, Action::ScaleDown, "{p:#?}");

    // An empty worker goes at a middling average: the others carry the load.
    let middling = snap()
        .workers(4)
        .cpu(Some(45.0))
        .mem(Some(40.0))
        .nodes_at(60.0)
        .node("k3s-worker-4", true, 0.0);
    let p = run(&middling, &idle_state(), &c);
    assert_eq!(p.action, Action::ScaleDown, "{p:#?}");
    assert_eq!(p.candidates, ["k3s-worker-4"]);

    // Unless the rest would then be over the scale-up threshold.
    let crowded = snap()
        .workers(3)
        .cpu(Some(60.0))
        .mem(Some(40.0))
        .nodes_at(78.0)
        .node("k3s-worker-3", true, 20.0);
    let p = run(&crowded, &idle_state(), &c);
    assert_eq!(p.action, Action::None, "{p:#?}");
    assert!(
        p.kept[0].reason.contains("over the scale-up thresholds"),
        "{p:#?}"
    );

    // The health guard holds a scale-up too (four of seven unready: over 3 and 45 %).
    let sick = with_pods(
        full()
            .node("x-1", false, 0.0)
            .node("x-2", false, 0.0)
            .node("x-3", false, 0.0)
            .node("x-4", false, 0.0),
        &six,
    );
    let p = run(&sick, &State::fresh(), &c);
    assert_eq!(p.action, Action::None);
    assert!(blocked(&p, "unhealthy"), "{p:#?}");

    // A burst bigger than the workers booting scales up at once for the rest.
    let mut booting = State::fresh();
    booting.provisioning.push(Provisioning {
        name: "k3s-worker-9".into(),
        started_at: ago(10).unwrap(),
        host: None,
    });
    let p = run(&with_pods(full(), &six), &booting, &c);
    assert_eq!((p.action.clone(), p.count), (Action::ScaleUp, 5), "{p:#?}");
    // ... and pods that fit the booting worker wait for it.
    let p = run(&with_pods(full(), &six[..1]), &booting, &c);
    assert_eq!(p.action, Action::None, "{p:#?}");
    // Past provision_timeout it is not waited for: the pod scales up, the worker still
    // counts toward max_nodes, and the output says why.
    booting.provisioning[0].started_at = ago(901).unwrap();
    let p = run(&with_pods(full(), &six[..1]), &booting, &c);
    assert_eq!((p.action.clone(), p.count), (Action::ScaleUp, 1), "{p:#?}");
    assert_eq!((p.workers.provisioning, p.workers.total), (0, 4), "{p:#?}");
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("k3s-worker-9 is still not Ready past provision_timeout")),
        "{p:#?}"
    );
}

#[test]
fn a_worker_seen_by_the_api_first_is_counted_once_and_max_nodes_holds() {
    // The counting itself (API-only workers join the snapshot) is in run::evaluate; here:
    // a worker both provisioning and listed counts once.
    let mut c = cfg();
    c.limits.max_nodes = 3;
    c.scaling.max_step = 10;
    let mut st = State::fresh();
    st.provisioning.push(Provisioning {
        name: "k3s-worker-3".into(),
        started_at: ago(10).unwrap(),
        host: None,
    });
    let s = with_pods(
        snap()
            .workers(2)
            .nodes_at(100.0)
            .node("k3s-worker-3", true, 100.0),
        &[("a", 1.0, 0.1), ("b", 1.0, 0.1)],
    );
    let p = run(&s, &st, &c);
    assert_eq!(p.workers.total, 3);
    assert_eq!(p.action, Action::None, "{p:#?}");
    assert!(blocked(&p, "at max_nodes"), "{p:#?}");
}
