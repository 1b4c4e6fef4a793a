//! Concurrency: 20 `evaluate` processes released at once (a barrier, then spawn) against
//! a plan that scales up (a real Prometheus with a pending pod, the real Docker engine with
//! a unique pool, the Kubernetes stand-in): exactly one acts (exit 10, one container), the
//! other 19 exit 3 naming the lock; the state file loads and says one run, one scale-up;
//! repeated 50 times, each repetition with a fresh state directory and an empty pool.
//! Prints the counts and times.

#[path = "support/docker.rs"]
mod docker_support;
mod hardening_support;
mod support;

use hardening_support::{HttpProxy, Knobs, LiveProm, Rig, bin, median, ms, pending_cluster};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const PROCESSES: usize = 20;
const REPETITIONS: usize = 50;
/// Prometheus answers this late, so the winner holds the lock at least this long: on a
/// loaded 2-core machine the 20 spawns spread over up to ~0.4 s, and a process that came
/// after the winner had finished would rightly take the lock (and find nothing to do).
const SLOW_QUERY: std::time::Duration = std::time::Duration::from_millis(500);

struct Outcome {
    pid: u32,
    code: i32,
    stdout: String,
    spawned: Instant,
    wall: Duration,
}

#[test]
fn twenty_runs_at_once_one_acts_and_the_rest_exit_3_fifty_times() {
    let started = Instant::now();
    let mut rig = Rig::new();
    let mut prom = LiveProm::start(pending_cluster());
    rig.lists(&pending_cluster());
    let slow = HttpProxy::start(&prom.addr(), SLOW_QUERY);
    let mut codes: BTreeMap<i32, usize> = BTreeMap::new();
    let (mut winner_walls, mut spreads, mut rep_walls) = (vec![], vec![], vec![]);
    let mut named_pid = 0usize;
    for rep in 1..=REPETITIONS {
        let rep_started = Instant::now();
        prom.keep_fresh();
        rig.fresh_dir();
        let cfg = rig.config(&Knobs {
            prom_url: slow.url(),
            ..Knobs::default()
        });
        let barrier = Arc::new(Barrier::new(PROCESSES));
        let threads: Vec<_> = (0..PROCESSES)
            .map(|_| {
                let (barrier, cfg) = (barrier.clone(), cfg.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let spawned = Instant::now();
                    let child = bin()
                        .arg("--config")
                        .arg(&cfg)
                        .arg("evaluate")
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .expect("spawn k3s-scale");
                    let pid = child.id();
                    let out = child.wait_with_output().expect("wait");
                    Outcome {
                        pid,
                        code: out.status.code().expect("exited, not killed"),
                        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                        spawned,
                        wall: spawned.elapsed(),
                    }
                })
            })
            .collect();
        let outcomes: Vec<Outcome> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for o in &outcomes {
            *codes.entry(o.code).or_default() += 1;
        }
        let first = outcomes.iter().map(|o| o.spawned).min().unwrap();
        let last = outcomes.iter().map(|o| o.spawned).max().unwrap();
        spreads.push(last - first);
        assert_eq!(
            slow.count(),
            rep,
            "rep {rep}: one query, by the winner only"
        );

        let winners: Vec<&Outcome> = outcomes.iter().filter(|o| o.code == 10).collect();
        let summary: Vec<(i32, &str)> = outcomes
            .iter()
            .map(|o| (o.code, o.stdout.lines().next().unwrap_or("")))
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "rep {rep}: exactly one run acts: {summary:?}"
        );
        let winner = winners[0];
        winner_walls.push(winner.wall);
        for o in outcomes.iter().filter(|o| o.code != 10) {
            assert_eq!(o.code, 3, "rep {rep}: the others exit 3: {summary:?}");
            assert!(
                o.stdout.contains("holds the lock"),
                "rep {rep}: {}",
                o.stdout
            );
            // The PID in the lock file is the winner's (unless read before it was written).
            if o.stdout.contains("(PID ") {
                assert!(
                    o.stdout.contains(&format!("(PID {})", winner.pid)),
                    "rep {rep}: names the holder: {}",
                    o.stdout
                );
                named_pid += 1;
            }
        }

        // One container, one state that says so.
        let worker = rig.worker(1);
        assert_eq!(rig.containers(), std::slice::from_ref(&worker), "rep {rep}");
        let state = rig
            .state()
            .unwrap_or_else(|e| panic!("rep {rep}: state does not load: {e}"))
            .expect("the winner saved the state");
        assert_eq!(state.totals.runs, 1, "rep {rep}: only the winner ran");
        assert_eq!(state.totals.scale_ups, 1, "rep {rep}");
        assert_eq!(state.next_worker_index, 2, "rep {rep}");
        let provisioning: Vec<&str> = state.provisioning.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(provisioning, [worker.as_str()], "rep {rep}");
        for (path, want) in [(rig.state_path(), 0o600), (rig.lock_path(), 0o600)] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, want, "rep {rep}: mode of {}", path.display());
        }
        let metrics = std::fs::read_to_string(rig.metrics_path()).expect("the winner's metrics");
        assert!(
            metrics.contains("k3s_scale_last_run_exit_code 10"),
            "rep {rep}: {metrics}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&rig.dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "rep {rep}: temp files {leftovers:?}");
        rig.clear_docker();
        rep_walls.push(rep_started.elapsed());
    }
    let runs = PROCESSES * REPETITIONS;
    println!(
        "concurrency: {REPETITIONS} repetitions x {PROCESSES} processes = {runs} runs; exit codes {codes:?}; \
         exactly one scale-up per repetition: {REPETITIONS}/{REPETITIONS}; losers naming the holder's PID: {named_pid}/{}",
        runs - REPETITIONS
    );
    println!(
        "concurrency: spawn spread median {}, max {}; winner's run median {}, max {}; repetition median {}; total {:.1} s",
        ms(median(spreads.clone())),
        ms(*spreads.iter().max().unwrap()),
        ms(median(winner_walls.clone())),
        ms(*winner_walls.iter().max().unwrap()),
        ms(median(rep_walls)),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(codes.get(&10), Some(&REPETITIONS));
    assert_eq!(codes.get(&3), Some(&(runs - REPETITIONS)));
}
