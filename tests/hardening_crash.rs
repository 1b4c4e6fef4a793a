//! Crashes: `evaluate` killed with SIGKILL (kill -9) at random moments of four phases,
//! 50 kills each, 200 in all (and 12 more between the steps of a removal, below): during the Prometheus query (a proxy that answers late),
//! during the Docker creates (a Docker socket proxy that passes the volume create, the
//! container create and the start on late), during the drain (the stand-in answers
//! evictions late), and around the state write (random delays, a 2 MB state). After every
//! kill the state file loads (or is absent), and the next, undisturbed run leaves the pool
//! consistent: every container of the pool is in the state's provisioning list or has a
//! Node, and every Node of the pool has a container. Each test prints its counts.

#[path = "support/docker.rs"]
mod docker_support;
mod hardening_support;
mod support;

use hardening_support::{
    ChildGuard, DockerFault, DockerFaults, DockerRule, HttpProxy, Knobs, LiveProm, Rig, Rng,
    idle_cluster, median, ms, pending_cluster, run, spawn,
};
use k3s_scale::state::time::Timestamp;
use k3s_scale::state::{Event, State};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::apiserver::Fault;
use support::prom::Cluster;

const KILLS: usize = 50;
/// How long a request is held back at the phase under test: the window the kill lands in.
const HOLD: Duration = Duration::from_millis(150);
const WAIT: Duration = Duration::from_secs(30);

/// What the kills of one phase came to.
#[derive(Default)]
struct Tally {
    /// Where each kill landed (as the proxies saw it).
    landed: BTreeMap<String, usize>,
    /// The process had ended before the signal.
    ended_first: usize,
    /// The state file was absent after the kill (a run that never wrote one).
    state_absent: usize,
    /// Temp files of an interrupted state write left beside the state.
    temp_files: usize,
    /// Exit codes of the undisturbed runs after the kills.
    next_codes: BTreeMap<i32, usize>,
    /// Repairs those runs carried out (from their JSON report).
    repairs: BTreeMap<String, usize>,
}

impl Tally {
    fn print(&self, phase: &str, started: Instant) {
        println!(
            "crash [{phase}]: {} kills; landed {:?}; ended before the kill {}; state absent {}; \
             temp files left {}; next run exit codes {:?}; its repairs {:?}; state loaded and pool consistent after every kill; {:.1} s",
            self.landed.values().sum::<usize>(),
            self.landed,
            self.ended_first,
            self.state_absent,
            self.temp_files,
            self.next_codes,
            self.repairs,
            started.elapsed().as_secs_f64()
        );
    }
}

/// After a kill: the state loads (or is absent), then an undisturbed run reconciles and the
/// pool holds nothing k3s-scale does not know about.
fn check_after_kill(rig: &Rig, cfg: &std::path::Path, tally: &mut Tally, what: &str) {
    match rig.state() {
        Ok(Some(_)) => {}
        Ok(None) => tally.state_absent += 1,
        Err(e) => panic!("{what}: the state does not load after the kill: {e}"),
    }
    tally.temp_files += temp_files(rig).len();
    let r = run(cfg, &["evaluate", "--output", "json"]);
    assert!(
        [0, 10, 11].contains(&r.code),
        "{what}: the next run failed: {r:?}"
    );
    *tally.next_codes.entry(r.code).or_default() += 1;
    for rep in r.json()["repairs"].as_array().into_iter().flatten() {
        let kind = rep.as_str().unwrap_or("").split(':').next().unwrap_or("");
        let kind = kind.split_whitespace().next().unwrap_or("").to_string();
        *tally.repairs.entry(kind).or_default() += 1;
    }
    let bad = rig.unknown_objects();
    assert!(bad.is_empty(), "{what}: after the next run: {bad:?}\n{r:?}");
    let left = temp_files(rig);
    assert!(
        left.is_empty(),
        "{what}: the next run removes what the kill left: {left:?}"
    );
}

fn temp_files(rig: &Rig) -> Vec<String> {
    std::fs::read_dir(&rig.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect()
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

#[test]
fn killed_during_the_prometheus_query() {
    let started = Instant::now();
    let mut rng = Rng::from_env();
    let mut rig = Rig::new();
    let mut prom = LiveProm::start(pending_cluster());
    rig.lists(&pending_cluster());
    let proxy = HttpProxy::start(&prom.addr(), HOLD);
    let cfg = rig.config(&Knobs {
        prom_url: proxy.url(),
        ..Knobs::default()
    });
    let mut tally = Tally::default();
    for i in 1..=KILLS {
        prom.keep_fresh();
        proxy.set_delay(HOLD);
        let before = proxy.count();
        let mut child = ChildGuard::new(spawn(&cfg, &["evaluate"]));
        let at = proxy
            .wait_for(before + 1, WAIT)
            .expect("the run queried Prometheus");
        sleep_until(at + rng.below(HOLD));
        let answered = proxy.answered();
        let status = child.kill9();
        if status.code().is_some() {
            tally.ended_first += 1;
        }
        let landed = if answered > before {
            "after the answer"
        } else {
            "query in flight"
        };
        *tally.landed.entry(landed.into()).or_default() += 1;
        proxy.set_delay(Duration::ZERO);
        check_after_kill(&rig, &cfg, &mut tally, &format!("kill {i}"));
    }
    tally.print("Prometheus query", started);
    // The first undisturbed run starts the worker; later ones wait for it to get Ready.
    assert_eq!(rig.containers(), [rig.worker(1)]);
}

#[test]
fn killed_during_the_docker_creates() {
    let started = Instant::now();
    let mut rng = Rng::from_env();
    let mut rig = Rig::new();
    let mut prom = LiveProm::start(pending_cluster());
    rig.lists(&pending_cluster());
    let faults = DockerFaults::start(&rig.pool.dir.join("faults.sock"));
    let rules = vec![
        DockerRule {
            method: "POST",
            path: "/volumes/create",
            fault: DockerFault::Delay(HOLD),
        },
        DockerRule {
            method: "POST",
            path: "/containers/create",
            fault: DockerFault::Delay(HOLD),
        },
        DockerRule {
            method: "POST",
            path: "/start",
            fault: DockerFault::Delay(HOLD),
        },
    ];
    let mut tally = Tally::default();
    let mut orphan_volumes = 0;
    for i in 1..=KILLS {
        prom.keep_fresh();
        // Every kill starts from an empty pool and a fresh state: the run creates a worker.
        rig.clear_docker();
        rig.fresh_dir();
        let cfg = rig.config(&Knobs {
            prom_url: prom.url(),
            docker_host: Some(faults.host()),
            ..Knobs::default()
        });
        faults.set_rules(rules.clone());
        faults.clear_log();
        let mut child = ChildGuard::new(spawn(&cfg, &["evaluate"]));
        let at = faults
            .wait_for("/volumes/create", WAIT)
            .expect("the run creates a volume");
        // Three held requests and the daemon's own work on them: the start is reached.
        let kill_at = at + rng.below(HOLD * 6);
        sleep_until(kill_at);
        let status = child.kill9();
        if status.code().is_some() {
            tally.ended_first += 1;
        }
        let reached = |needle: &str| {
            faults.requests().iter().any(|s| {
                s.line.starts_with("POST ")
                    && s.line.contains(needle)
                    && s.forwarded.is_some_and(|f| f < kill_at)
            })
        };
        let landed = if reached("/start") {
            "start sent"
        } else if reached("/containers/create") {
            "container create sent"
        } else if reached("/volumes/create") {
            "volume create sent"
        } else {
            "before the volume create"
        };
        *tally.landed.entry(landed.into()).or_default() += 1;
        // What the daemon had been sent it finishes (the next run comes 30 s later).
        assert!(
            faults.wait_settled(WAIT),
            "kill {i}: the daemon never answered"
        );
        faults.set_rules(Vec::new());
        check_after_kill(&rig, &cfg, &mut tally, &format!("kill {i} ({landed})"));
        let containers = rig.containers();
        orphan_volumes += rig
            .volumes()
            .iter()
            .filter(|v| !containers.contains(&v.trim_end_matches("-data").to_string()))
            .count();
    }
    tally.print("Docker creates", started);
    println!(
        "crash [Docker creates]: volumes left without a container (names never reused, not removed): {orphan_volumes}"
    );
}

#[test]
fn killed_during_the_drain() {
    let started = Instant::now();
    let mut rng = Rng::from_env();
    let mut rig = Rig::new();
    let worker = rig.worker(1);
    let mut prom = LiveProm::start(idle_cluster(&worker));
    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        ..Knobs::default()
    });
    let mut tally = Tally::default();
    let mut evicted = 0;
    for i in 1..=KILLS {
        prom.keep_fresh();
        // An idle worker, idle for an hour: the run drains and removes it.
        rig.clear_docker();
        rig.run_worker_container(1);
        rig.add_worker_node(&worker);
        let pods = rig.add_pods(&worker, 3, Duration::from_millis(50));
        rig.write_state(&State {
            low_since: Some(Timestamp::from_millis(
                Timestamp::now().as_millis() - 3_600_000,
            )),
            next_worker_index: 2,
            ..State::fresh()
        });
        rig.api.fault(Fault::latency("POST", "/eviction", HOLD));
        let cordons = rig.api.count("PATCH", &format!("/nodes/{worker}"));
        let deletions = rig.api.deletions().len();
        let evictions_before = rig.api.count("POST", "/eviction");
        let node_deletes_before = rig.api.count("DELETE", &format!("/nodes/{worker}"));
        let mut child = ChildGuard::new(spawn(&cfg, &["evaluate"]));
        let deadline = Instant::now() + WAIT;
        while rig.api.count("PATCH", &format!("/nodes/{worker}")) == cordons {
            assert!(
                Instant::now() < deadline,
                "kill {i}: the run never cordoned"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Evictions, the wait for the pods to go (polled every 0.5 s), the Node delete
        // and the container's removal all fall within this window.
        let at = Instant::now();
        sleep_until(at + rng.below(HOLD * 6));
        let status = child.kill9();
        if status.code().is_some() {
            tally.ended_first += 1;
        }
        let evictions = rig.api.count("POST", "/eviction") - evictions_before;
        let node_deleted =
            rig.api.count("DELETE", &format!("/nodes/{worker}")) > node_deletes_before;
        let landed = if status.code().is_some() {
            "after the run ended"
        } else if node_deleted {
            "after the Node delete"
        } else if rig.api.deletions().len() > deletions {
            "pods leaving"
        } else if evictions > 0 {
            "evictions sent"
        } else {
            "cordoned"
        };
        *tally.landed.entry(landed.into()).or_default() += 1;
        rig.api.clear_faults();
        check_after_kill(&rig, &cfg, &mut tally, &format!("kill {i} ({landed})"));
        // No pod was lost: every pod that left, left by eviction.
        let gone: Vec<_> = rig.api.deletions();
        assert!(
            gone.iter().all(|d| d.via == "eviction"),
            "kill {i}: a pod was deleted, not evicted: {:?}",
            gone.iter().map(|d| (&d.pod, d.via)).collect::<Vec<_>>()
        );
        evicted = gone.len();
        assert_eq!(
            rig.api.count("DELETE", "/pods/"),
            0,
            "kill {i}: no pod DELETE"
        );
        for p in &pods {
            let (ns, name) = p.split_once('/').unwrap();
            if rig.api.pod(ns, name).is_some() {
                // Still there: the node must then still be there too, not cordoned forever
                // by a dead run (reported, see below).
                assert!(
                    rig.api.node(&worker).is_some(),
                    "kill {i}: {p} left on a deleted node"
                );
            }
        }
    }
    tally.print("drain", started);
    println!("crash [drain]: pods evicted in all {evicted}, deleted 0");
}

/// How many kills per removal step.
const STEP_KILLS: usize = 4;

/// A removal killed between its steps (stop the container, delete the Node, remove
/// container and volume): each step's request is held (Docker's stop or remove never
/// forwarded; the Node DELETE dropped unanswered) and the run is killed while it waits, so
/// the steps before it are done and the ones after are not. The next run leaves nothing of
/// the worker: it finishes the removal or reconcile repairs what is left (a stopped
/// container and, once the node lifecycle controller has marked it NotReady, its Node).
#[test]
fn killed_between_the_removal_steps() {
    let started = Instant::now();
    let mut rig = Rig::new();
    let worker = rig.worker(1);
    let mut prom = LiveProm::start(idle_cluster(&worker));
    let faults = DockerFaults::start(&rig.pool.dir.join("faults.sock"));
    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        docker_host: Some(faults.host()),
        ..Knobs::default()
    });
    let mut tally = Tally::default();
    for step in ["container stop", "Node delete", "container remove"] {
        for i in 1..=STEP_KILLS {
            prom.keep_fresh();
            rig.clear_docker();
            rig.api.clear_faults();
            rig.run_worker_container(1);
            rig.add_worker_node(&worker);
            rig.write_state(&State {
                low_since: Some(Timestamp::from_millis(
                    Timestamp::now().as_millis() - 3_600_000,
                )),
                next_worker_index: 2,
                ..State::fresh()
            });
            faults.clear_log();
            let node_deletes = rig.api.count("DELETE", &format!("/nodes/{worker}"));
            match step {
                "container stop" => faults.set_rules(vec![DockerRule {
                    method: "POST",
                    path: "/stop",
                    fault: DockerFault::Hang,
                }]),
                "Node delete" => {
                    faults.set_rules(Vec::new());
                    rig.api.fault(Fault::drop_connection(
                        "DELETE",
                        &format!("/nodes/{worker}"),
                    ));
                }
                _ => faults.set_rules(vec![DockerRule {
                    method: "DELETE",
                    path: "/containers/",
                    fault: DockerFault::Hang,
                }]),
            }
            let mut child = ChildGuard::new(spawn(&cfg, &["evaluate"]));
            let deadline = Instant::now() + WAIT;
            loop {
                let reached = match step {
                    "container stop" => faults.requests().iter().any(|s| s.line.contains("/stop")),
                    "Node delete" => {
                        rig.api.count("DELETE", &format!("/nodes/{worker}")) > node_deletes
                    }
                    _ => faults
                        .requests()
                        .iter()
                        .any(|s| s.line.starts_with("DELETE /") && s.line.contains("/containers/")),
                };
                if reached {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{step} {i}: the run never got there"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            let status = child.kill9();
            assert!(
                status.code().is_none(),
                "{step} {i}: killed while it waited"
            );
            *tally
                .landed
                .entry(format!("during the {step}"))
                .or_default() += 1;
            faults.set_rules(Vec::new());
            rig.api.clear_faults();
            assert!(
                faults.wait_settled(WAIT),
                "{step} {i}: the daemon never answered"
            );
            // What the kill left, as the next run (30 s later) finds it.
            let node = rig.api.node(&worker);
            match step {
                "container stop" => {
                    assert!(node.is_some(), "{step} {i}: Node kept");
                    assert_eq!(rig.api.is_cordoned(&worker), Some(true));
                }
                "Node delete" => {
                    // The agent stopped: the node lifecycle controller marks its Node
                    // NotReady (after 40 s; here at once).
                    let mut n = node.expect("the dropped delete did nothing");
                    for c in n
                        .status
                        .as_mut()
                        .and_then(|s| s.conditions.as_mut())
                        .into_iter()
                        .flatten()
                        .filter(|c| c.type_ == "Ready")
                    {
                        c.status = "Unknown".into();
                    }
                    rig.api.add_node(n);
                }
                _ => assert!(
                    node.is_none(),
                    "{step} {i}: the Node went before the remove"
                ),
            }
            if step != "container stop" {
                assert!(
                    rig.containers().contains(&worker),
                    "{step} {i}: container left"
                );
            }
            check_after_kill(&rig, &cfg, &mut tally, &format!("{step} {i}"));
            assert!(
                !rig.containers().contains(&worker),
                "{step} {i}: container gone: {:?}",
                rig.containers()
            );
            assert!(
                !rig.volumes().contains(&format!("{worker}-data")),
                "{step} {i}: volume gone"
            );
            assert!(rig.api.node(&worker).is_none(), "{step} {i}: Node gone");
        }
    }
    tally.print("removal steps", started);
}

#[test]
fn killed_around_the_state_write() {
    let started = Instant::now();
    let mut rng = Rng::from_env();
    let mut rig = Rig::new();
    // Nothing to do: every run only loads, reconciles, decides and saves the state.
    let mut prom = LiveProm::start(Cluster::new().control_plane("server"));
    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        ..Knobs::default()
    });
    // A 2 MB state (50 events of 40 KB): its write takes long enough to be hit.
    let mut big = State::fresh();
    for i in 0..50 {
        big.events.push_back(Event {
            at: Timestamp::from_secs(1_800_000_000 + i),
            kind: "note".into(),
            message: format!("{i}:{}", "x".repeat(40_000)),
        });
    }
    rig.write_state(&big);
    let mut walls = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = run(&cfg, &["evaluate"]);
        assert_eq!(r.code, 0, "{r:?}");
        walls.push(t.elapsed());
    }
    let t = median(walls);
    println!(
        "crash [state write]: an undisturbed run takes {}; kills land between 50 % and 105 % of that",
        ms(t)
    );
    let mut tally = Tally::default();
    let mut kept_old = 0;
    for i in 1..=KILLS {
        prom.keep_fresh();
        let runs_before = rig.state().unwrap().unwrap().totals.runs;
        let mut child = ChildGuard::new(spawn(&cfg, &["evaluate"]));
        std::thread::sleep(rng.between(t / 2, t * 21 / 20));
        let status = child.kill9();
        if status.code().is_some() {
            tally.ended_first += 1;
        }
        let state = rig
            .state()
            .unwrap_or_else(|e| panic!("kill {i}: the state does not load: {e}"))
            .expect("the state is never removed");
        // Whole: either the old file or the new one, never a mix.
        let runs = state.totals.runs;
        assert!(
            runs == runs_before || runs == runs_before + 1,
            "kill {i}: runs {runs_before} -> {runs}"
        );
        assert_eq!(state.events.len(), 50, "kill {i}: the events survive whole");
        // The run before removed older leftovers: any temp file is this kill's.
        let left = temp_files(&rig).len();
        let landed = if status.code().is_some() {
            "after the run ended"
        } else if left > 0 {
            "mid-write (temp file left)"
        } else if runs == runs_before {
            "before the write"
        } else {
            "after the rename"
        };
        if runs == runs_before {
            kept_old += 1;
        }
        *tally.landed.entry(landed.into()).or_default() += 1;
        if let Ok(text) = std::fs::read_to_string(rig.metrics_path()) {
            assert!(
                text.ends_with('\n') && text.contains("k3s_scale_last_run_timestamp_seconds"),
                "kill {i}: the metrics textfile is whole"
            );
        }
        check_after_kill(&rig, &cfg, &mut tally, &format!("kill {i} ({landed})"));
    }
    tally.print("state write", started);
    println!(
        "crash [state write]: old state kept {kept_old}, new state {}",
        KILLS - kept_old
    );
}

/// A drain killed half-way leaves its node cordoned. When the next run does not want that
/// node gone any more (here: not idle long enough), it must still not stay cordoned for
/// good: reconcile sees the drain mark and uncordons it.
#[test]
fn a_drain_killed_half_way_is_undone_when_the_next_run_keeps_the_node() {
    const ROUNDS: usize = 10;
    let started = Instant::now();
    let mut rng = Rng::from_env();
    let mut rig = Rig::new();
    let worker = rig.worker(1);
    let prom = LiveProm::start(idle_cluster(&worker));
    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        ..Knobs::default()
    });
    let idle_for_an_hour = State {
        low_since: Some(Timestamp::from_millis(
            Timestamp::now().as_millis() - 3_600_000,
        )),
        next_worker_index: 2,
        ..State::fresh()
    };
    rig.run_worker_container(1);
    let mut uncordoned = 0;
    for i in 1..=ROUNDS {
        rig.add_worker_node(&worker);
        rig.add_pods(&worker, 3, Duration::from_millis(50));
        rig.write_state(&idle_for_an_hour);
        // Evictions are slow: the kill lands while the node is cordoned and pods are moving.
        rig.api
            .fault(Fault::latency("POST", "/eviction", Duration::from_secs(2)));
        let cordons = rig.api.count("PATCH", &format!("/nodes/{worker}"));
        let mut child = ChildGuard::new(spawn(&cfg, &["evaluate"]));
        let deadline = Instant::now() + WAIT;
        while rig.api.count("PATCH", &format!("/nodes/{worker}")) == cordons {
            assert!(Instant::now() < deadline, "round {i}: never cordoned");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(rng.below(HOLD * 2));
        child.kill9();
        rig.api.clear_faults();
        assert_eq!(
            rig.api.is_cordoned(&worker),
            Some(true),
            "round {i}: left cordoned"
        );
        let node = rig.api.node(&worker).unwrap();
        assert!(
            k3s_scale::kube::drain::drain_mark(&node).is_some(),
            "round {i}: the cordon carries the drain mark"
        );
        // The next run finds the node not idle long enough: it keeps it, and uncordons it.
        rig.write_state(&State {
            next_worker_index: 2,
            ..State::fresh()
        });
        let r = run(&cfg, &["evaluate", "--output", "json"]);
        assert_eq!(r.code, 0, "round {i}: {r:?}");
        let repairs = r.json()["repairs"].to_string();
        assert!(
            repairs.contains(&format!("uncordon {worker}")),
            "round {i}: {repairs}"
        );
        assert_eq!(rig.api.is_cordoned(&worker), Some(false), "round {i}");
        let node = rig.api.node(&worker).unwrap();
        assert!(
            k3s_scale::kube::drain::drain_mark(&node).is_none(),
            "round {i}: mark removed"
        );
        assert_eq!(
            rig.api.count("DELETE", "/pods/"),
            0,
            "round {i}: no pod deleted"
        );
        assert!(rig.unknown_objects().is_empty(), "round {i}");
        uncordoned += 1;
    }
    println!(
        "crash [drain, node kept]: {ROUNDS} drains killed after the cordon; the next run uncordoned the node {uncordoned}/{ROUNDS} times; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// An operator's cordon is theirs (issue 23 point 4): a worker cordoned by hand before
/// k3s-scale drains it, the drain killed half-way, and the next run (which keeps the node)
/// repairs the unfinished drain by clearing its marks only: the node stays cordoned. Fails
/// without the before-mark: the next run took the cordon for the killed drain's and
/// uncordoned the node.
#[test]
fn an_operators_cordon_survives_a_killed_drain_and_the_next_runs_repair() {
    use k3s_scale::kube::drain::{drain_mark, marked_cordoned_before};
    const ROUNDS: usize = 10;
    let started = Instant::now();
    let mut rng = Rng::from_env();
    let mut rig = Rig::new();
    let worker = rig.worker(1);
    let prom = LiveProm::start(idle_cluster(&worker));
    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        ..Knobs::default()
    });
    rig.run_worker_container(1);
    for i in 1..=ROUNDS {
        // `kubectl cordon` by the operator, before any run touched the node.
        rig.api.add_node(
            support::objects::node(&worker)
                .label(hardening_support::NODE_POOL_LABEL, &rig.pool.name)
                .cordoned()
                .build(),
        );
        rig.add_pods(&worker, 3, Duration::from_millis(50));
        rig.write_state(&State {
            low_since: Some(Timestamp::from_millis(
                Timestamp::now().as_millis() - 3_600_000,
            )),
            next_worker_index: 2,
            ..State::fresh()
        });
        rig.api
            .fault(Fault::latency("POST", "/eviction", Duration::from_secs(2)));
        let cordons = rig.api.count("PATCH", &format!("/nodes/{worker}"));
        let mut child = ChildGuard::new(spawn(&cfg, &["evaluate"]));
        let deadline = Instant::now() + WAIT;
        while rig.api.count("PATCH", &format!("/nodes/{worker}")) == cordons {
            assert!(Instant::now() < deadline, "round {i}: never cordoned");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(rng.below(HOLD * 2));
        child.kill9();
        rig.api.clear_faults();
        let node = rig.api.node(&worker).unwrap();
        assert!(drain_mark(&node).is_some(), "round {i}: the drain mark");
        assert!(
            marked_cordoned_before(&node),
            "round {i}: the cordon's patch says the node was cordoned before"
        );
        // The next run keeps the node (not idle long enough) and repairs the drain.
        rig.write_state(&State {
            next_worker_index: 2,
            ..State::fresh()
        });
        let r = run(&cfg, &["evaluate", "--output", "json"]);
        assert_eq!(r.code, 0, "round {i}: {r:?}");
        let repairs = r.json()["repairs"].to_string();
        assert!(
            repairs.contains(&format!("clear the drain marks of {worker}"))
                && !repairs.contains(&format!("uncordon {worker}")),
            "round {i}: {repairs}"
        );
        assert_eq!(
            rig.api.is_cordoned(&worker),
            Some(true),
            "round {i}: the operator's cordon stays"
        );
        let node = rig.api.node(&worker).unwrap();
        assert!(
            drain_mark(&node).is_none() && !marked_cordoned_before(&node),
            "round {i}: marks removed: {:?}",
            node.metadata.annotations
        );
        // A third run finds nothing left to repair, and still does not uncordon it.
        let r = run(&cfg, &["evaluate", "--output", "json"]);
        assert_eq!(r.code, 0, "round {i}: {r:?}");
        let repairs = r.json()["repairs"].clone();
        assert!(
            repairs.as_array().is_none_or(|a| a.is_empty()),
            "round {i}: {repairs}"
        );
        assert_eq!(rig.api.is_cordoned(&worker), Some(true), "round {i}");
        assert_eq!(
            rig.api.count("DELETE", "/pods/"),
            0,
            "round {i}: no pod deleted"
        );
        assert!(rig.unknown_objects().is_empty(), "round {i}");
    }
    println!(
        "crash [drain of a hand-cordoned node]: {ROUNDS} drains killed after the cordon; the \
         node stayed cordoned and its marks were cleared by the next run every time; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
