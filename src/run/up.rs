//! Worker names (a number never handed out twice) and the on-demand scale-up,
//! `k3s-scale up --count N`: start N workers now, ignoring cooldowns, never above
//! `limits.max_nodes`.
//!
//! `up` counts workers exactly as `evaluate` does (nodes in the Prometheus snapshot plus
//! the ones still booting from the state), so `max_nodes` means the same thing to both
//! commands, and nodes that k3s-scale did not start (permanent ones, other pools) count.

use crate::plan::decide::decide;
use crate::run::error::RunError;
use crate::run::report::Report;
use crate::run::{Actuator, ActuatorCell, Context, Outcome};
use crate::signals::{MetricsSource, PromError};
use crate::state::State;
use crate::state::lock::RunLock;

/// `k3s-scale up --count N`.
pub fn up(
    ctx: &Context,
    count: u32,
    source: &dyn MetricsSource,
    make_actuator: &mut dyn FnMut() -> Result<Box<dyn Actuator>, RunError>,
) -> Outcome {
    let mut report = Report::new(ctx.dry_run);
    match run_up(ctx, count, source, make_actuator, &mut report) {
        Ok(()) => Outcome {
            report,
            error: None,
            held: Default::default(),
        },
        Err(e) => {
            report.error = Some(e.to_string());
            Outcome {
                report,
                error: Some(e),
                held: Default::default(),
            }
        }
    }
}

fn run_up(
    ctx: &Context,
    count: u32,
    source: &dyn MetricsSource,
    make_actuator: &mut dyn FnMut() -> Result<Box<dyn Actuator>, RunError>,
    report: &mut Report,
) -> Result<(), RunError> {
    let cfg = ctx.config;
    let _lock = if ctx.dry_run {
        None
    } else {
        Some(RunLock::acquire(&cfg.state.lock_path)?)
    };
    let mut state = State::load(&ctx.state_path)?;
    let warnings = crate::state::clock::clamp_future(&mut state, ctx.now);
    for w in &warnings {
        log::warn!("{w}");
    }
    let snap = source.snapshot()?;
    let plan = decide(&snap, &state, cfg, ctx.now);
    let mut r = Report::new(ctx.dry_run).with_plan(&snap, &plan);
    r.action = crate::plan::decide::Action::ScaleUp;
    r.count = count;
    r.reasons = vec![format!("requested: up --count {count}")];
    r.blocked_by.clear();
    r.candidates.clear();
    r.notes.extend(warnings);
    *report = r;
    if snap.nodes.is_none() {
        return Err(RunError::Metrics(PromError::Malformed(
            "no node_ready series, so the workers cannot be counted against limits.max_nodes; \
             starting none"
                .into(),
        )));
    }
    let total = plan.workers.total;
    let max = cfg.limits.max_nodes;
    let room = max.saturating_sub(total);
    if count > room {
        return Err(RunError::Usage(format!(
            "up --count {count}: only {room} more worker(s) fit under limits.max_nodes {max} \
             ({total} workers now, booting ones included); started none"
        )));
    }
    for name in &plan.joined {
        log::info!("worker {name} is Ready; provisioning done");
    }
    state
        .provisioning
        .retain(|p| !plan.joined.contains(&p.name));
    let mut cell = ActuatorCell::new(make_actuator);
    let result = super::scale_up::scale_up(ctx, &mut state, count, &mut cell, report);
    if let Err(e) = &result {
        state.count_error(e.kind());
    }
    if !ctx.dry_run
        && let Err(error) = state.save(&ctx.state_path)
    {
        // Workers that started are said: "nothing was done" (exit 6) would be false.
        return Err(if report.started.is_empty() {
            RunError::State(error)
        } else {
            RunError::Unsaved {
                done: vec![format!("started {}", report.started.join(", "))],
                error,
            }
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::plan::snapshot::{NodeSample, Snapshot};
    use crate::run::{ActionFailure, IndexSeen, Removal};
    use crate::state::time::Timestamp;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::rc::Rc;

    struct Source(Option<usize>);
    impl MetricsSource for Source {
        fn snapshot(&self) -> Result<Snapshot, PromError> {
            let nodes = self.0.map(|n| {
                (0..n)
                    .map(|i| {
                        (
                            format!("node-{i}"),
                            NodeSample {
                                ready: true,
                                ..Default::default()
                            },
                        )
                    })
                    .collect::<BTreeMap<_, _>>()
            });
            Ok(Snapshot {
                nodes,
                ..Default::default()
            })
        }
    }

    #[derive(Default)]
    struct Log {
        started: Vec<String>,
    }
    struct Fake {
        log: Rc<RefCell<Log>>,
        highest: Option<u64>,
        fail_at: Option<usize>,
        /// Once the workers started, a folder takes the state file's place: the save fails.
        break_state: Option<PathBuf>,
    }
    impl Actuator for Fake {
        fn highest_worker_index(&mut self) -> Result<IndexSeen, ActionFailure> {
            Ok(IndexSeen {
                highest: self.highest,
                unlisted: Vec::new(),
            })
        }
        fn start_workers(&mut self, names: &[String]) -> Result<(), ActionFailure> {
            for (i, n) in names.iter().enumerate() {
                if Some(i) == self.fail_at {
                    return Err(ActionFailure {
                        done: names[..i].to_vec(),
                        message: format!("cannot start worker {n}: boom"),
                    });
                }
                self.log.borrow_mut().started.push(n.clone());
            }
            if let Some(p) = &self.break_state {
                std::fs::remove_file(p).unwrap();
                std::fs::create_dir(p).unwrap();
            }
            Ok(())
        }
        fn remove_worker(
            &mut self,
            _: &[String],
            _: bool,
            _: &mut Report,
        ) -> Result<Removal, ActionFailure> {
            unreachable!("up never removes")
        }
    }

    struct Case {
        dir: PathBuf,
        cfg: Config,
    }

    fn case(name: &str) -> Case {
        let dir = std::env::temp_dir().join(format!("k3s-scale-up-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = Config::default();
        cfg.limits.max_nodes = 5;
        cfg.state.lock_path = dir.join("lock");
        cfg.state.path = dir.join("state.json");
        Case { dir, cfg }
    }

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn run(c: &Case, count: u32, nodes: Option<usize>, fake: Fake, dry_run: bool) -> Outcome {
        let ctx = Context {
            config: &c.cfg,
            state_path: c.cfg.state.path.clone(),
            dry_run,
            now: NOW,
        };
        let mut fake = Some(fake);
        let mut make = || -> Result<Box<dyn Actuator>, RunError> {
            Ok(Box::new(fake.take().expect("made once")))
        };
        up(&ctx, count, &Source(nodes), &mut make)
    }

    fn fake(log: &Rc<RefCell<Log>>) -> Fake {
        Fake {
            log: log.clone(),
            highest: None,
            fail_at: None,
            break_state: None,
        }
    }

    #[test]
    fn starts_now_despite_cooldowns_and_records_like_evaluate() {
        let c = case("ok");
        let mut s = State::fresh();
        s.last_scale_up = Some(NOW);
        s.last_scale_up_failure = Some(NOW);
        s.next_worker_index = 4;
        s.save(&c.cfg.state.path).unwrap();
        let log = Rc::new(RefCell::new(Log::default()));
        let out = run(&c, 2, Some(2), fake(&log), false);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.exit_code(), 10);
        assert_eq!(log.borrow().started, ["k3s-worker-4", "k3s-worker-5"]);
        let s = State::load(&c.cfg.state.path).unwrap();
        assert_eq!(s.next_worker_index, 6);
        assert_eq!(s.provisioning.len(), 2);
        assert_eq!(s.totals.workers_added, 2);
        assert_eq!(s.last_scale_up, Some(NOW));
        assert_eq!(out.report.started, ["k3s-worker-4", "k3s-worker-5"]);
        let _ = std::fs::remove_dir_all(&c.dir);
    }

    #[test]
    fn refuses_above_max_nodes_saying_how_many_fit() {
        let c = case("max");
        let mut s = State::fresh();
        s.provisioning.push(crate::state::Provisioning {
            name: "k3s-worker-9".into(),
            started_at: NOW,
            host: None,
        });
        s.save(&c.cfg.state.path).unwrap();
        let log = Rc::new(RefCell::new(Log::default()));
        // 3 nodes + 1 booting, max 5: one fits.
        let out = run(&c, 2, Some(3), fake(&log), false);
        assert_eq!(out.exit_code(), 2);
        let e = out.error.unwrap().to_string();
        assert!(
            e.contains("only 1 more worker(s) fit") && e.contains("max_nodes 5"),
            "{e}"
        );
        assert!(log.borrow().started.is_empty());
        assert_eq!(
            State::load(&c.cfg.state.path).unwrap(),
            s,
            "state untouched"
        );
        let _ = std::fs::remove_dir_all(&c.dir);
    }

    #[test]
    fn unknown_worker_count_starts_nothing() {
        let c = case("unknown");
        let log = Rc::new(RefCell::new(Log::default()));
        let out = run(&c, 1, None, fake(&log), false);
        assert_eq!(out.exit_code(), 4);
        assert!(log.borrow().started.is_empty());
        let _ = std::fs::remove_dir_all(&c.dir);
    }

    #[test]
    fn a_reset_state_still_skips_numbers_in_use() {
        let c = case("reset");
        let log = Rc::new(RefCell::new(Log::default()));
        let mut f = fake(&log);
        f.highest = Some(11);
        let out = run(&c, 1, Some(0), f, false);
        assert_eq!(out.exit_code(), 10);
        assert_eq!(log.borrow().started, ["k3s-worker-12"]);
        assert_eq!(
            State::load(&c.cfg.state.path).unwrap().next_worker_index,
            13
        );
        let _ = std::fs::remove_dir_all(&c.dir);
    }

    #[test]
    fn a_partial_failure_records_both_the_started_and_the_failure() {
        let c = case("partial");
        let log = Rc::new(RefCell::new(Log::default()));
        let mut f = fake(&log);
        f.fail_at = Some(1);
        let out = run(&c, 2, Some(0), f, false);
        assert_eq!(out.exit_code(), 5);
        assert_eq!(out.report.started, ["k3s-worker-1"]);
        let s = State::load(&c.cfg.state.path).unwrap();
        assert_eq!(s.provisioning.len(), 1);
        assert_eq!(s.last_scale_up_failure, Some(NOW));
        assert_eq!(s.totals.failed_scale_ups, 1);
        assert_eq!(
            s.next_worker_index, 3,
            "the failed name is not handed out again"
        );
        let _ = std::fs::remove_dir_all(&c.dir);
    }

    #[test]
    fn a_save_that_fails_after_the_start_names_the_workers_and_exits_7() {
        let c = case("unsaved");
        let log = Rc::new(RefCell::new(Log::default()));
        let mut f = fake(&log);
        f.break_state = Some(c.cfg.state.path.clone());
        let out = run(&c, 2, Some(0), f, false);
        assert_eq!(out.exit_code(), 7, "{:?}", out.error);
        let msg = out.error.unwrap().to_string();
        assert!(msg.contains("started k3s-worker-1, k3s-worker-2"), "{msg}");
        let _ = std::fs::remove_dir_all(&c.dir);
    }

    #[test]
    fn dry_run_names_but_starts_and_writes_nothing() {
        let c = case("dry");
        let log = Rc::new(RefCell::new(Log::default()));
        let out = run(&c, 2, Some(1), fake(&log), true);
        assert_eq!(out.exit_code(), 10);
        assert_eq!(out.report.started, ["k3s-worker-1", "k3s-worker-2"]);
        assert!(log.borrow().started.is_empty());
        assert!(!c.cfg.state.path.exists() && !c.cfg.state.lock_path.exists());
        let _ = std::fs::remove_dir_all(&c.dir);
    }
}
