//! The run's write-ahead under a state that cannot be saved (a full or read-only disk):
//! no action without its record, and a save that fails after an action names what was done.

use super::*;
use crate::config::Config;
use crate::plan::model::Resources;
use crate::plan::snapshot::{NodeResources, NodeSample};
use crate::run::{ActionFailure, Removal};
use crate::state::StateError;
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

/// A pool of workers that scale-down can really remove from.
struct Pool {
    workers: Rc<RefCell<Vec<String>>>,
}

impl Actuator for Pool {
    fn start_workers(&mut self, names: &[String]) -> Result<(), ActionFailure> {
        self.workers.borrow_mut().extend(names.iter().cloned());
        Ok(())
    }
    fn remove_worker(
        &mut self,
        candidates: &[String],
        dry_run: bool,
        _report: &mut Report,
    ) -> Result<Removal, ActionFailure> {
        let name = candidates.first().cloned();
        if let Some(n) = &name
            && !dry_run
        {
            self.workers.borrow_mut().retain(|w| w != n);
        }
        Ok(Removal {
            removed: name,
            evicted: Vec::new(),
        })
    }
}

/// Idle workers (10 % of 2 CPU and 2 GiB requested each), nothing pending.
fn idle_snapshot(workers: &[String], util: f64) -> Snapshot {
    let gib = (1u64 << 30) as f64;
    let mut snap = Snapshot {
        pending_pods: Some(0.0),
        pending_cpu_cores: Some(0.0),
        pending_memory_bytes: Some(0.0),
        cpu: Some(util),
        memory: Some(util),
        nodes: Some(BTreeMap::new()),
        ..Snapshot::default()
    };
    for w in workers {
        snap.nodes.as_mut().unwrap().insert(
            w.clone(),
            NodeSample {
                ready: true,
                cpu: Some(util),
                memory: Some(util),
            },
        );
        snap.node_resources.insert(
            w.clone(),
            NodeResources {
                requested: Resources::new(2.0 * util / 100.0, 2.0 * gib * util / 100.0),
                allocatable: Resources::new(2.0, 2.0 * gib),
                pods: None,
            },
        );
    }
    snap
}

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.limits.min_nodes = 1;
    cfg
}

/// Low for an hour and every worker unneeded as long: scale-down is due.
fn idle_state(workers: &[String]) -> State {
    let hour_ago = Timestamp::from_secs(1_800_000_000 - 3600);
    State {
        low_since: Some(hour_ago),
        unneeded_since: workers.iter().map(|w| (w.clone(), hour_ago)).collect(),
        next_worker_index: 10,
        ..State::fresh()
    }
}

fn disk_full() -> StateError {
    StateError::Write(
        PathBuf::from("/var/lib/k3s-scale/state.json"),
        std::io::Error::other("No space left on device"),
    )
}

/// One evaluate after the snapshot, with `save` as the state's writer.
fn one_run(
    cfg: &Config,
    state: &mut State,
    pool: &Rc<RefCell<Vec<String>>>,
    now: Timestamp,
    util: f64,
    save: &mut Save,
) -> (Report, Result<crate::plan::decide::Plan, RunError>) {
    one_run_seen(cfg, state, pool, now, util, save, false)
}

/// One run; `listed`: with the pool's workers listed by Docker and the API (else nothing
/// listed, as when the run has no actuator listing).
fn one_run_seen(
    cfg: &Config,
    state: &mut State,
    pool: &Rc<RefCell<Vec<String>>>,
    now: Timestamp,
    util: f64,
    save: &mut Save,
    listed: bool,
) -> (Report, Result<crate::plan::decide::Plan, RunError>) {
    let observed = listed.then(|| Observed {
        containers: pool
            .borrow()
            .iter()
            .map(|n| crate::plan::reconcile::WorkerContainer {
                name: n.clone(),
                state: crate::plan::reconcile::ContainerState::Running,
                created: Some(NOW),
                host: "local".into(),
            })
            .collect(),
        nodes: pool
            .borrow()
            .iter()
            .map(|n| crate::plan::reconcile::WorkerNode {
                name: n.clone(),
                ready: true,
                drain_left: false,
                cordoned_before_drain: false,
                host: None,
            })
            .collect(),
        facts: None,
        hosts: vec![crate::run::HostSeen {
            name: "local".into(),
            up: true,
            error: None,
        }],
    });
    let ctx = Context {
        config: cfg,
        state_path: PathBuf::from("/nonexistent/state.json"),
        dry_run: false,
        now,
    };
    let snap = idle_snapshot(&pool.borrow(), util);
    let workers = pool.clone();
    let mut make = move || -> Result<Box<dyn Actuator>, RunError> {
        Ok(Box::new(Pool {
            workers: workers.clone(),
        }))
    };
    let mut cell = ActuatorCell::new(&mut make);
    let mut report = Report::new(false);
    let r = decide_and_act(
        &ctx,
        state,
        snap,
        Ok(observed),
        &mut cell,
        &mut report,
        save,
    );
    (report, r)
}

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("k3s-worker-{i}")).collect()
}

#[test]
fn a_full_disk_removes_no_worker_in_any_run() {
    // Before the write-ahead, four idle workers became one in three runs: each run removed
    // one and could not record it, so the cooldown never applied.
    let cfg = config();
    let pool = Rc::new(RefCell::new(names(4)));
    let on_disk = idle_state(&pool.borrow());
    for run in 0..4 {
        let mut state = on_disk.clone();
        let now = NOW.plus(std::time::Duration::from_secs(30 * run));
        let mut save = |_: &State| Err(disk_full());
        let (report, r) = one_run(&cfg, &mut state, &pool, now, 10.0, &mut save);
        let e = r.expect_err("the state cannot be written");
        assert_eq!(e.exit_code(), 6, "nothing was done: {e}");
        assert!(report.removed.is_empty(), "run {run}: {report:?}");
        assert_eq!(pool.borrow().len(), 4, "run {run}");
    }
}

#[test]
fn a_save_that_fails_after_the_removal_names_it_and_exits_7() {
    let cfg = config();
    let pool = Rc::new(RefCell::new(names(3)));
    let mut state = idle_state(&pool.borrow());
    let writes = RefCell::new(Vec::new());
    // The write-ahead goes through; the disk fills before the run's last save.
    let mut save = |s: &State| {
        writes.borrow_mut().push(s.acting.clone());
        if writes.borrow().len() == 1 {
            Ok(())
        } else {
            Err(disk_full())
        }
    };
    let (report, r) = one_run(&cfg, &mut state, &pool, NOW, 10.0, &mut save);
    let e = r.expect_err("the last save failed");
    assert_eq!(e.exit_code(), 7, "{e}");
    let text = e.to_string();
    assert!(text.contains("removed k3s-worker-"), "{text}");
    assert_eq!(report.removed.len(), 1);
    let writes = writes.into_inner();
    let ahead = writes[0]
        .as_ref()
        .expect("the scale-down was written ahead");
    assert_eq!(ahead.kind, "scale_down");
    assert_eq!(ahead.started_at, NOW);
    assert_eq!(writes[1], None, "the outcome replaces the write-ahead");
}

#[test]
fn an_unfinished_scale_down_is_judged_by_what_is_listed() {
    let cfg = config();
    let later = NOW.plus(std::time::Duration::from_secs(30));
    // Killed after the removal, before its save: recorded, and the cooldown holds.
    let pool = Rc::new(RefCell::new(names(3)));
    let mut state = idle_state(&pool.borrow());
    let gone = "k3s-worker-9".to_string();
    crate::state::write_ahead(&mut state, NOW, "scale_down", std::slice::from_ref(&gone));
    let mut save = |_: &State| Ok(());
    let (report, r) = one_run_seen(&cfg, &mut state, &pool, later, 10.0, &mut save, true);
    r.expect("run");
    assert!(report.removed.is_empty(), "cooldown: {report:?}");
    assert_eq!(
        (state.acting.clone(), state.last_scale_down),
        (None, Some(NOW))
    );
    assert_eq!(state.totals.workers_removed, 1);
    assert!(
        report.notes.iter().any(|n| n.contains("before it saved")),
        "{:?}",
        report.notes
    );
    // Killed before it removed anything: the run decides afresh and removes one.
    let pool = Rc::new(RefCell::new(names(3)));
    let mut state = idle_state(&pool.borrow());
    crate::state::write_ahead(&mut state, NOW, "scale_down", &names(1));
    let (report, r) = one_run_seen(&cfg, &mut state, &pool, later, 10.0, &mut save, true);
    r.expect("run");
    assert_eq!(report.removed.len(), 1, "{report:?}");
    assert_eq!(state.last_scale_down_failure, None);
    assert!(
        report.notes.iter().any(|n| n.contains("never finished")),
        "{:?}",
        report.notes
    );
}

/// Logs each repair it is asked to carry out, in `log` with the state's saves.
struct Repairer {
    log: Rc<RefCell<Vec<String>>>,
}

impl Actuator for Repairer {
    fn repair(&mut self, repair: &Repair) -> Result<(), ActionFailure> {
        self.log
            .borrow_mut()
            .push(format!("repair {}", repair.name()));
        Ok(())
    }
    fn start_workers(&mut self, names: &[String]) -> Result<(), ActionFailure> {
        self.log
            .borrow_mut()
            .push(format!("start {}", names.join(",")));
        Ok(())
    }
    fn remove_worker(
        &mut self,
        _: &[String],
        _: bool,
        _: &mut Report,
    ) -> Result<Removal, ActionFailure> {
        unreachable!("nothing to remove")
    }
}

#[test]
fn a_never_started_container_is_written_ahead_of_its_removal() {
    // A container created and never started (the daemon restarted between create and
    // start): its removal is on disk before the first outside call, and a state that
    // cannot be written removes nothing.
    let cfg = config();
    let observed = || Observed {
        containers: vec![crate::plan::reconcile::WorkerContainer {
            name: "k3s-worker-4".into(),
            state: crate::plan::reconcile::ContainerState::Created,
            created: Some(NOW),
            host: "local".into(),
        }],
        nodes: Vec::new(),
        facts: None,
        hosts: vec![crate::run::HostSeen {
            name: "local".into(),
            up: true,
            error: None,
        }],
    };
    for disk_ok in [true, false] {
        let log = Rc::new(RefCell::new(Vec::new()));
        let ctx = Context {
            config: &cfg,
            state_path: PathBuf::from("/nonexistent/state.json"),
            dry_run: false,
            now: NOW,
        };
        let actuator_log = log.clone();
        let mut make = move || -> Result<Box<dyn Actuator>, RunError> {
            Ok(Box::new(Repairer {
                log: actuator_log.clone(),
            }))
        };
        let mut cell = ActuatorCell::new(&mut make);
        let mut report = Report::new(false);
        let mut state = State::fresh();
        let save_log = log.clone();
        let mut save = |s: &State| {
            let acting = s
                .acting
                .as_ref()
                .map(|a| format!("{} {}", a.kind, a.about.join(",")));
            save_log.borrow_mut().push(format!("save {acting:?}"));
            if disk_ok { Ok(()) } else { Err(disk_full()) }
        };
        let r = decide_and_act(
            &ctx,
            &mut state,
            idle_snapshot(&[], 50.0),
            Ok(Some(observed())),
            &mut cell,
            &mut report,
            &mut save,
        );
        let log = log.borrow().clone();
        let ahead = "save Some(\"repair k3s-worker-4\")".to_string();
        if disk_ok {
            r.expect("run");
            assert_eq!(
                log[..2],
                [ahead, "repair k3s-worker-4".to_string()],
                "{log:?}"
            );
            assert_eq!(state.acting, None);
            assert_eq!(state.totals.repairs, 1);
            assert_eq!(state.totals.failed_scale_ups, 0, "no back-off");
        } else {
            let e = r.expect_err("the state cannot be written");
            assert_eq!(e.exit_code(), 6, "{e}");
            assert_eq!(
                log,
                [ahead.clone(), "save None".to_string()],
                "nothing removed"
            );
        }
    }
}

proptest! {
    /// For any sequence of runs where every state write fails, the number of workers
    /// never drops.
    #[test]
    fn no_state_write_no_fewer_workers(
        workers in 1usize..8,
        gaps in proptest::collection::vec(1u64..900, 1..8),
        util in 0.0f64..100.0,
    ) {
        let cfg = config();
        let pool = Rc::new(RefCell::new(names(workers)));
        let on_disk = idle_state(&pool.borrow());
        let mut now = NOW;
        for gap in gaps {
            now = now.plus(std::time::Duration::from_secs(gap));
            let mut state = on_disk.clone();
            let mut save = |_: &State| Err(disk_full());
            let _ = one_run(&cfg, &mut state, &pool, now, util, &mut save);
            prop_assert!(pool.borrow().len() >= workers, "{} < {workers}", pool.borrow().len());
        }
    }
}

/// Prometheus's word for `held_back_*`: one Ready worker at 50 %, nothing to do.
struct Steady;
impl crate::signals::MetricsSource for Steady {
    fn snapshot(&self) -> Result<Snapshot, crate::signals::PromError> {
        Ok(idle_snapshot(&names(1), 50.0))
    }
}

/// What comes after a run (the metrics textfile) gets the run's lock, still held, and the
/// state as saved, not a second lock and a re-read: while it holds them no other run can
/// begin; a run that never got the lock hands back neither.
#[test]
fn a_run_hands_back_its_lock_and_the_state_it_saved() {
    let dir = std::env::temp_dir().join(format!("k3s-scale-held-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = config();
    cfg.state.path = dir.join("state.json");
    cfg.state.lock_path = dir.join("lock");
    let ctx = Context {
        config: &cfg,
        state_path: cfg.state.path.clone(),
        dry_run: false,
        now: NOW,
    };
    let mut make = || -> Result<Box<dyn Actuator>, RunError> { Ok(Box::new(crate::run::PlanOnly)) };
    let first = evaluate(&ctx, &Steady, &mut make);
    assert_eq!(first.exit_code(), 0, "{:?}", first.error);
    let saved = State::load(&cfg.state.path).unwrap();
    let held = first.held.state.as_ref().expect("the state handed back");
    assert_eq!(held.totals.runs, 1);
    assert_eq!(held.totals.runs, saved.totals.runs, "as saved");
    assert!(first.held.lock.is_some());
    // Its lock still held: the next run cannot begin, and hands back nothing.
    let second = evaluate(&ctx, &Steady, &mut make);
    assert_eq!(second.exit_code(), 3, "{:?}", second.error);
    assert!(second.held.lock.is_none() && second.held.state.is_none());
    drop(first);
    let third = evaluate(&ctx, &Steady, &mut make);
    assert_eq!(third.exit_code(), 0, "{:?}", third.error);
    assert_eq!(third.held.state.unwrap().totals.runs, 2);
    let _ = std::fs::remove_dir_all(&dir);
}
