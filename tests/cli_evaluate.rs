//! The built `k3s-scale` binary end to end against a real Prometheus (or a misbehaving
//! one): every exit code it can produce without Docker/Kubernetes, `--output json`,
//! dry-run writing nothing, the state file a real run saves, lock contention between two
//! processes, corrupt state, `status`, `config check`, `state reset`, JSON logs, a stdout
//! closed before the report is written.

mod support;

use k3s_scale::state::State;
use k3s_scale::state::time::Timestamp;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use support::apiserver::{ApiServer, Fault};
use support::prom::{BadServer, Cluster, CountingProxy, GIB, Misbehaviour, PromServer};
use support::{ChildGuard, Run, TempDir, k3s_scale};

/// A temp dir with a config pointing at `url`; state and lock go under `state/`.
struct Setup {
    dir: TempDir,
    /// Every real run lists the pool's workers in Docker and Kubernetes (reconcile): the
    /// Kubernetes stand-in answers, and the pool is unique so the machine's Docker holds
    /// nothing of it.
    api: ApiServer,
}

impl Setup {
    fn new(url: &str, timeout: &str, extra_yaml: &str) -> Setup {
        let dir = TempDir::new("cli");
        let api = ApiServer::start();
        let state = dir.join("state");
        let text = format!(
            "prometheus:\n  url: {url}\n  timeout: {timeout}\n\
             state:\n  path: {}\n  lock_path: {}\n\
             kubernetes:\n  kubeconfig: {}\n\
             docker:\n  pool: {}\n  token_file: {}\n{extra_yaml}",
            state.join("state.json").display(),
            state.join("k3s-scale.lock").display(),
            api.kubeconfig().display(),
            support::unique("cli").replace('-', "x"),
            api.dir().join("token").display(),
        );
        std::fs::write(api.dir().join("token"), "test-token\n").unwrap();
        std::fs::write(dir.join("config.yaml"), text).unwrap();
        Setup { dir, api }
    }

    /// The stand-in lists the pods `c` shows unschedulable as pending, as a real API
    /// would beside that kube-state-metrics (the run takes the API's word on them).
    fn lists(self, c: &Cluster) -> Setup {
        self.api.add_pods(c.api_pending_pods());
        self
    }

    fn config(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    /// A second config file with the same state and lock paths but another Prometheus.
    fn another_config(&self, url: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let first_line = text.lines().nth(1).unwrap();
        let p = self.dir.join("another.yaml");
        std::fs::write(&p, text.replacen(first_line, &format!("  url: {url}"), 1)).unwrap();
        p
    }

    fn run_with(&self, config: &std::path::Path, args: &[&str]) -> Run {
        let mut c = k3s_scale(self.dir.path());
        c.arg("--config").arg(config).args(args);
        Run::from_output(c.output().expect("run k3s-scale"))
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state/state.json")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("state/k3s-scale.lock")
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = k3s_scale(self.dir.path());
        c.arg("--config").arg(self.config()).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from_output(self.command(args).output().expect("run k3s-scale"))
    }

    /// A run whose stdout is a pipe with no reader left: the read end is closed before the
    /// process starts, so its first write to stdout fails with EPIPE (`| head -1` that
    /// already has its line, `| true`).
    fn run_into_closed_pipe(&self, args: &[&str]) -> Run {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = self
            .command(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run k3s-scale");
        Run::from_output(out)
    }

    /// `evaluate --dry-run --output json`: exit code and the report.
    fn dry_run_json(&self) -> (i32, Value) {
        let r = self.run(&["--dry-run", "evaluate", "--output", "json"]);
        let v = r.json();
        assert_eq!(v["exit_code"], r.code, "{r:?}");
        (r.code, v)
    }

    fn write_state(&self, state: &State) {
        state.save(&self.state_path()).unwrap();
    }

    /// Every file under the temp dir, relative, sorted.
    fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                out.push(
                    p.strip_prefix(self.dir.path())
                        .unwrap()
                        .display()
                        .to_string(),
                );
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }
}

fn ago(secs: i64) -> Timestamp {
    Timestamp::from_millis(Timestamp::now().as_millis() - secs * 1000)
}

/// Two Ready workers at 50 % CPU and 25 % memory: nothing to do either way.
fn steady() -> Cluster {
    Cluster::new()
        .control_plane("server")
        .worker("k3s-worker-1")
        .worker("k3s-worker-2")
        .pod("web-1")
        .on("k3s-worker-1")
        .requests(1.0, GIB)
        .pod("web-2")
        .on("k3s-worker-2")
        .requests(1.0, GIB)
}

/// Two workers whose CPU is all requested, and three unschedulable pods wanting 1.5 cores
/// and 3 GiB: the scheduler has nowhere to put them (that is why they are unschedulable).
fn pending() -> Cluster {
    Cluster::new()
        .control_plane("server")
        .worker("k3s-worker-1")
        .worker("k3s-worker-2")
        .pod("web-1")
        .on("k3s-worker-1")
        .requests(2.0, GIB)
        .pod("web-2")
        .on("k3s-worker-2")
        .requests(2.0, GIB)
        .pod("big-1")
        .unschedulable()
        .requests(0.5, GIB)
        .pod("big-2")
        .unschedulable()
        .requests(0.5, GIB)
        .pod("big-3")
        .unschedulable()
        .requests(0.5, GIB)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string"))
        .collect()
}

#[test]
fn nothing_to_do_exits_0_with_the_report_fields() {
    let prom = PromServer::with_cluster(&steady());
    let s = Setup::new(&prom.url(), "5s", "");
    let (code, v) = s.dry_run_json();
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["action"], "none");
    assert_eq!(v["count"], 0);
    assert_eq!(v["dry_run"], true);
    assert_eq!(strings(&v["reasons"]), Vec::<&str>::new());
    assert!(v.get("blocked_by").is_none(), "nothing blocked: {v}");
    let sig = &v["signals"];
    assert_eq!(sig["pending_pods"], 0.0);
    assert_eq!(sig["cpu"], 50.0);
    assert_eq!(sig["memory"], 25.0);
    assert_eq!(sig["ready_workers"], 2.0);
    assert_eq!(sig["unready_workers"], 0.0);
    assert_eq!(v["workers"]["total"], 2);

    let text = s.run(&["--dry-run", "evaluate"]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.starts_with("no action\n"), "{text:?}");
    assert!(text.stdout.contains("cpu=50"), "{text:?}");
}

#[test]
fn one_run_sends_exactly_one_query() {
    let prom = PromServer::with_cluster(&steady());
    let proxy = CountingProxy::start(&prom.addr());
    let s = Setup::new(&proxy.url(), "5s", "");
    for (args, runs) in [(&["--dry-run", "evaluate"][..], 1), (&["evaluate"], 2)] {
        let r = s.run(args);
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(proxy.queries(), runs, "{args:?}");
        assert_eq!(proxy.requests().len(), runs, "no other request");
    }
}

#[test]
fn pending_pods_exit_10_sized_by_packing() {
    let prom = PromServer::with_cluster(&pending());
    // A new worker of 2 cores / 2 GiB (the defaults of docker.cpus and docker.memory)
    // allocates 2 GiB less the kubelet's 100 MiB eviction reserve: one 1 GiB pod each, so
    // 3 workers. Summed requests (3 GiB / 2 GiB) would say 2 and leave a pod pending.
    let s = Setup::new(&prom.url(), "5s", "");
    // The API refuses the pending-pod list (RBAC without `pods list`, say): the run goes
    // on by resources only.
    s.api.fault(Fault::status("GET", "/api/v1/pods", 403));
    let (code, v) = s.dry_run_json();
    assert_eq!(code, 10, "{v}");
    assert_eq!(v["action"], "scale_up");
    assert_eq!(v["count"], 3);
    assert_eq!(
        strings(&v["started"]),
        ["k3s-worker-1", "k3s-worker-2", "k3s-worker-3"]
    );
    let reasons = strings(&v["reasons"]);
    assert!(
        reasons[0].starts_with("3 pending pod(s) need 3 new worker(s) of 2 CPU / 1.9Gi"),
        "{v}"
    );
    // The constraints could not be listed: the report says what was not checked.
    assert!(strings(&v["notes"])[0].contains("not checked"), "{v}");
    assert_eq!(v["signals"]["pending_cpu_cores"], 1.5);
    assert_eq!(v["signals"]["pending_memory_bytes"], 3.0 * GIB);

    let text = s.run(&["--dry-run", "evaluate"]);
    assert_eq!(text.code, 10);
    assert!(
        text.stdout.starts_with(
            "scale up: would add 3 worker(s) (k3s-worker-1, k3s-worker-2, k3s-worker-3)\n"
        ),
        "{text:?}"
    );
}

#[test]
fn a_server_without_workers_scales_up_to_min_nodes() {
    let prom = PromServer::with_cluster(&Cluster::new().control_plane("server"));
    let s = Setup::new(&prom.url(), "5s", "limits:\n  min_nodes: 2\n");
    let (code, v) = s.dry_run_json();
    assert_eq!(code, 10, "{v}");
    assert_eq!(v["count"], 2);
    assert_eq!(
        strings(&v["reasons"]),
        ["Ready and booting workers 0 < min_nodes 2"]
    );
    assert_eq!(v["signals"]["ready_workers"], 0.0);
}

#[test]
fn idle_for_long_enough_plans_a_scale_down_checks_each_candidate_and_leaves_the_state_alone() {
    let idle = Cluster::new()
        .control_plane("server")
        .worker("k3s-worker-1")
        .worker("k3s-worker-2")
        .worker("k3s-worker-3")
        .pod("small")
        .on("k3s-worker-2")
        .requests(0.1, 0.1 * GIB);
    let prom = PromServer::with_cluster(&idle);
    let s = Setup::new(
        &prom.url(),
        "5s",
        "scaling:\n  scale_down_unneeded_time: 10m\n",
    );
    let mut state = State::fresh();
    state.low_since = Some(ago(3600));
    s.write_state(&state);
    let before = std::fs::read(s.state_path()).unwrap();
    let mtime = std::fs::metadata(s.state_path())
        .unwrap()
        .modified()
        .unwrap();

    let (code, v) = s.dry_run_json();
    // The plan is a scale-down; each candidate is then checked against the Kubernetes
    // stand-in, which has no Node of theirs (and no container backs them), so the dry run
    // reports every one as unremovable and would remove nothing: exit 0. A removal
    // through the binary is covered by tests/kube_cli.rs and tests/scenarios.rs.
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["action"], "scale_down");
    assert_eq!(v["count"], 1);
    assert!(v["removed"].is_null(), "{v}");
    let unremovable: Vec<&str> = v["unremovable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["node"].as_str().unwrap())
        .collect();
    // Workers 1 and 3 are empty; the tie goes to the newest.
    assert_eq!(
        unremovable,
        ["k3s-worker-3", "k3s-worker-1", "k3s-worker-2"]
    );
    assert_eq!(
        strings(&v["candidates"]),
        ["k3s-worker-3", "k3s-worker-1", "k3s-worker-2"]
    );
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("k3s-worker-3 unneeded since")
    );

    assert_eq!(std::fs::read(s.state_path()).unwrap(), before);
    assert_eq!(
        std::fs::metadata(s.state_path())
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    assert!(!s.lock_path().exists(), "a dry run takes no lock file");

    // Without the hour of low signals, the same data only starts the clock.
    std::fs::remove_file(s.state_path()).unwrap();
    let (code, v) = s.dry_run_json();
    assert_eq!(code, 0, "{v}");
    let blocked = strings(&v["blocked_by"]);
    assert!(
        blocked[0].contains("scale_down_unneeded_time runs until"),
        "{blocked:?}"
    );
}

#[test]
fn unknown_signals_print_null_and_block_the_scale_down() {
    // Both workers NotReady: no Ready allocatable, so no utilisation to speak of.
    let sick = Cluster::new()
        .control_plane("server")
        .worker("k3s-worker-1")
        .ready(false)
        .worker("k3s-worker-2")
        .ready(false)
        // A system pod: kube-state-metrics reports pods, so "none pending" is known.
        .pod("coredns")
        .on("server")
        .requests(0.1, 0.1 * GIB);
    let mut prom = PromServer::with_cluster(&sick);
    // min_nodes 0, so the floor (which an unhealthy cluster would block) is not in the way.
    let s = Setup::new(&prom.url(), "5s", "limits:\n  min_nodes: 0\n");
    let (code, v) = s.dry_run_json();
    assert_eq!(code, 0, "{v}");
    let sig = v["signals"].as_object().unwrap();
    assert!(sig["cpu"].is_null() && sig["memory"].is_null(), "{v}");
    assert_eq!(sig["pending_pods"], 0.0, "zero where zero is the truth");
    assert_eq!(sig["unready_workers"], 2.0);
    assert_eq!(
        strings(&v["blocked_by"]),
        ["signal(s) unknown: cpu, memory; never scale down without data"]
    );

    // kube-state-metrics gone: every signal null, and no action at all.
    prom.load(&[]);
    let (code, v) = s.dry_run_json();
    assert_eq!(code, 0, "{v}");
    let sig = v["signals"].as_object().unwrap();
    assert_eq!(sig.len(), 7, "{v}");
    assert!(sig.values().all(Value::is_null), "{v}");
    assert_eq!(v["action"], "none");
    assert!(
        strings(&v["blocked_by"])[0].contains("node_ready is unknown"),
        "{v}"
    );
}

#[test]
fn two_kube_state_metrics_instances_count_every_series_once() {
    // Two replicas (or two jobs scraping one): every series twice, another instance/job.
    // Before, pending pods and requests doubled (`pending_pods 6 >= 1` for 3 pods).
    let once = PromServer::with_cluster(&pending());
    let mut samples = pending().samples();
    let twice: Vec<_> = samples
        .iter()
        .filter(|s| s.labels.iter().any(|(k, _)| k == "instance"))
        .map(|s| {
            let mut d = s.clone();
            for (k, v) in &mut d.labels {
                match k.as_str() {
                    "instance" => *v = "kube-state-metrics-2:8080".into(),
                    "job" => *v = "kube-state-metrics-replica".into(),
                    _ => {}
                }
            }
            d
        })
        .collect();
    assert!(!twice.is_empty());
    samples.extend(twice);
    let doubled = PromServer::start(&samples);
    let (code_once, v_once) = Setup::new(&once.url(), "5s", "")
        .lists(&pending())
        .dry_run_json();
    let (code, v) = Setup::new(&doubled.url(), "5s", "")
        .lists(&pending())
        .dry_run_json();
    assert_eq!(v["signals"]["pending_pods"], 3.0, "{v}");
    assert_eq!(v["signals"], v_once["signals"], "{v}\n{v_once}");
    assert_eq!((code, &v["count"]), (code_once, &v_once["count"]), "{v}");
    assert!(
        strings(&v["reasons"])[0].starts_with("3 pending pod(s) need 3 new worker(s)"),
        "{v}"
    );
}

#[test]
fn a_cooldown_blocks_the_scale_up_and_says_until_when() {
    let prom = PromServer::with_cluster(&pending());
    let s = Setup::new(&prom.url(), "5s", "limits:\n  scale_up_cooldown: 60\n").lists(&pending());
    let mut state = State::fresh();
    let last = ago(10);
    state.last_scale_up = Some(last);
    s.write_state(&state);
    let (code, v) = s.dry_run_json();
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["action"], "none");
    assert!(strings(&v["reasons"])[0].starts_with("3 pending pod(s) need 3 new worker(s)"));
    assert_eq!(
        strings(&v["blocked_by"]),
        [format!(
            "scale_up_cooldown until {}",
            last.plus(Duration::from_secs(60))
        )]
    );
}

#[test]
fn a_cooldown_or_booting_worker_from_2099_is_taken_as_now_and_named() {
    // A clock stepped back or a copied state: before, scale-up waited until 2099.
    let prom = PromServer::with_cluster(&pending());
    let s = Setup::new(&prom.url(), "5s", "limits:\n  scale_up_cooldown: 60\n").lists(&pending());
    let y2099 = Timestamp::parse("2099-01-01T00:00:00Z").unwrap();
    let mut state = State::fresh();
    state.last_scale_up = Some(y2099);
    state.provisioning.push(k3s_scale::state::Provisioning {
        name: "k3s-worker-7".into(),
        started_at: y2099,
        host: None,
    });
    state.next_worker_index = 8;
    s.write_state(&state);
    let before = Timestamp::now();
    let (code, v) = s.dry_run_json();
    assert_eq!(code, 0, "{v}");
    let notes = strings(&v["notes"]);
    for key in ["last_scale_up", "provisioning[k3s-worker-7].started_at"] {
        assert!(
            notes
                .iter()
                .any(|n| n.contains(key) && n.contains("taken as now")),
            "{key}: {notes:?}"
        );
    }
    // The cooldown runs from now: it ends within its configured 60 s, not in 2099.
    let blocked = strings(&v["blocked_by"]);
    let until = blocked
        .iter()
        .find_map(|b| b.strip_prefix("scale_up_cooldown until "))
        .unwrap_or_else(|| panic!("{blocked:?}"));
    let until = Timestamp::parse(until).unwrap();
    assert!(
        until <= Timestamp::now().plus(Duration::from_secs(60)) && until >= before,
        "{until}"
    );
}

#[test]
fn dry_run_writes_nothing_flag_or_config() {
    let prom = PromServer::with_cluster(&pending());
    let s = Setup::new(&prom.url(), "5s", "").lists(&pending());
    let before = s.files();
    assert_eq!(before, ["config.yaml"]);
    let r = s.run(&["--dry-run", "evaluate"]);
    assert_eq!(r.code, 10, "{r:?}");
    assert_eq!(s.files(), before, "no state, no lock, not even the folder");

    let by_config = Setup::new(&prom.url(), "5s", "dry_run: true\n");
    let r = by_config.run(&["evaluate", "--output", "json"]);
    assert_eq!(r.code, 10, "{r:?}");
    assert_eq!(r.json()["dry_run"], true);
    assert_eq!(by_config.files(), ["config.yaml"]);
}

#[test]
fn a_real_run_saves_versioned_state_0600_and_status_shows_it() {
    let prom = PromServer::with_cluster(&steady());
    let s = Setup::new(&prom.url(), "5s", "");
    for run in 1..=2 {
        let r = s.run(&["evaluate", "--output", "json"]);
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(r.json()["dry_run"], false);
        let mode = std::fs::metadata(s.state_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let state: Value = serde_json::from_slice(&std::fs::read(s.state_path()).unwrap()).unwrap();
        assert_eq!(state["version"], 1);
        assert_eq!(state["totals"]["runs"], run);
        assert_eq!(state["next_worker_index"], 1);
        assert!(state["last_scale_up"].is_null(), "{state}");
    }
    let lock_mode = std::fs::metadata(s.lock_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(lock_mode & 0o777, 0o600);
    assert_eq!(
        s.files(),
        [
            "config.yaml",
            "state",
            "state/k3s-scale.lock",
            "state/state.json"
        ],
        "no temp file left"
    );

    let st = s.run(&["status"]);
    assert_eq!(st.code, 0, "{st:?}");
    assert!(st.stdout.starts_with("config: workers 2..6"), "{st:?}");
    assert!(st.stdout.contains("totals: 2 runs"), "{st:?}");
    assert!(st.stdout.contains("scale_up_cooldown"), "{st:?}");
    let st = s.run(&["status", "--output", "json"]);
    assert_eq!(st.code, 0, "{st:?}");
    let v = st.json();
    assert_eq!(v["totals"]["runs"], 2);
    assert_eq!(v["next_worker"], "k3s-worker-1");
    assert_eq!(v["state_path"], s.state_path().display().to_string());
    assert_eq!(v["waits"]["scale_up_cooldown"]["active"], false);

    let show = s.run(&["state", "show"]);
    assert_eq!(show.code, 0, "{show:?}");
    assert_eq!(show.json()["totals"]["runs"], 2);
}

#[test]
fn status_shows_a_running_cooldown_and_when_it_ends() {
    // No Prometheus needed: status reads only config and state.
    let s = Setup::new("http://127.0.0.1:9", "5s", "");
    let mut state = State::fresh();
    let last = ago(10);
    state.last_scale_up = Some(last);
    state.record(last, "scale_up", "started k3s-worker-1");
    s.write_state(&state);
    let st = s.run(&["status", "--output", "json"]);
    assert_eq!(st.code, 0, "{st:?}");
    let v = st.json();
    let w = &v["waits"]["scale_up_cooldown"];
    assert_eq!(w["active"], true);
    assert_eq!(w["until"], last.plus(Duration::from_secs(60)).to_string());
    assert_eq!(v["events"][0]["message"], "started k3s-worker-1");
    let text = s.run(&["status"]);
    assert!(
        text.stdout.contains(&format!(
            "active until {}",
            last.plus(Duration::from_secs(60))
        )),
        "{text:?}"
    );
}

#[test]
fn config_errors_exit_2_naming_the_key() {
    let cases = [
        ("thresholds:\n  cpu_treshold: 70\n", "cpu_treshold"),
        (
            "limits:\n  min_nodes: 7\n  max_nodes: 3\n",
            "limits.min_nodes",
        ),
        (
            "thresholds:\n  cpu_scale_down: 90\n",
            "thresholds.cpu_scale_down",
        ),
        ("prometheus:\n  timeout: 0\n", "prometheus.timeout"),
        (
            "prometheus:\n  queries:\n    cpuu: up\n",
            "prometheus.queries.cpuu",
        ),
        // Each of these broke every run instead (issue 23 point 8).
        ("prometheus:\n  url: 'http://:9090'\n", "prometheus.url"),
        (
            "thresholds:\n  cpu_threshold: 0\n  cpu_scale_down: 0\n",
            "thresholds.cpu_threshold",
        ),
        (
            "state:\n  path: /nonexistent/k3s-scale/s\n  lock_path: /nonexistent/k3s-scale/s\n",
            "state.lock_path",
        ),
        (
            "state:\n  path: /nonexistent/k3s-scale/s\nmetrics:\n  textfile: /nonexistent/k3s-scale/s\n",
            "metrics.textfile",
        ),
        (
            "scaling:\n  provision_timeout: 0\n",
            "scaling.provision_timeout",
        ),
    ];
    for (yaml, key) in cases {
        let dir = TempDir::new("badcfg");
        std::fs::write(dir.join("config.yaml"), yaml).unwrap();
        for args in [
            &["evaluate"][..],
            &["--dry-run", "evaluate"],
            &["config", "check"],
        ] {
            let r = Run::from_output(
                k3s_scale(dir.path())
                    .arg("--config")
                    .arg(dir.join("config.yaml"))
                    .args(args)
                    .output()
                    .unwrap(),
            );
            assert_eq!(r.code, 2, "{yaml:?} {args:?}: {r:?}");
            assert!(r.stderr.contains(key), "{yaml:?} should name {key}: {r:?}");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "nothing but the config: {left:?}");
    }

    let dir = TempDir::new("nocfg");
    let r = Run::from_output(
        k3s_scale(dir.path())
            .args(["--config", "missing.yaml", "evaluate"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("missing.yaml"), "{r:?}");
    // No --config and none in the working directory: the default places are named.
    let r = Run::from_output(k3s_scale(dir.path()).arg("status").output().unwrap());
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("config.yaml"), "{r:?}");
    // Usage errors are 2 as well.
    let r = Run::from_output(
        k3s_scale(dir.path())
            .args(["evaluate", "--output", "yaml"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn config_check_prints_the_effective_config_and_help_lists_exit_codes() {
    let s = Setup::new("http://127.0.0.1:9", "3s", "limits:\n  max_nodes: 9\n");
    let r = s.run(&["config", "check"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("# "), "{r:?}");
    assert!(r.stdout.contains("is valid"), "{r:?}");
    assert!(r.stdout.contains("max_nodes: 9"), "given value: {r:?}");
    assert!(r.stdout.contains("max_step: 3"), "default filled in: {r:?}");
    assert!(r.stdout.contains("timeout: 3s"), "{r:?}");

    let help = s.run(&["--help"]);
    assert_eq!(help.code, 0);
    for line in [
        "10  scaled up",
        "3   lock held",
        "4   metrics unavailable",
        "6   state",
    ] {
        assert!(help.stdout.contains(line), "{line}: {help:?}");
    }
}

#[test]
fn a_second_run_exits_3_while_the_first_holds_the_lock_and_not_after_it_died() {
    // The first run takes the lock, then waits on a Prometheus that never answers.
    let hang = BadServer::start(Misbehaviour::Hang);
    let s = Setup::new(&hang.url(), "60s", "");
    // The same state and lock, but a Prometheus that refuses at once.
    let refused = BadServer::start(Misbehaviour::Refuse);
    let quick = s.another_config(&refused.url());
    let mut first = ChildGuard::new(
        s.command(&["evaluate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    hang.wait_for_requests(1, Duration::from_secs(30));

    let second = s.run_with(&quick, &["evaluate"]);
    assert_eq!(second.code, 3, "{second:?}");
    assert!(
        second.stderr.contains(&format!("(PID {})", first.pid())),
        "names the holder: {second:?}"
    );
    assert!(
        second.stderr.contains(&s.lock_path().display().to_string()),
        "{second:?}"
    );
    // A dry run takes no lock: it goes on to Prometheus.
    let dry = s.run_with(&quick, &["--dry-run", "evaluate"]);
    assert_eq!(dry.code, 4, "{dry:?}");

    // kill -9 the holder: the kernel drops its flock, so no stale lock is left behind.
    let mut holder = first.0.take().expect("running");
    holder.kill().unwrap();
    holder.wait().unwrap();
    let third = s.run_with(&quick, &["evaluate"]);
    assert_eq!(
        third.code, 4,
        "gets the lock, then finds Prometheus down: {third:?}"
    );
}

#[test]
fn a_lock_held_by_another_process_exits_3() {
    let s = Setup::new("http://127.0.0.1:9", "1s", "");
    std::fs::create_dir_all(s.lock_path().parent().unwrap()).unwrap();
    let mut held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(s.lock_path())
        .unwrap();
    held.try_lock().expect("the test takes the lock");
    use std::io::Write;
    writeln!(held, "{}", std::process::id()).unwrap();

    for args in [&["evaluate"][..], &["state", "reset"]] {
        if args[0] == "state" {
            std::fs::write(s.state_path(), "{}").unwrap();
        }
        let r = s.run(args);
        assert_eq!(r.code, 3, "{args:?}: {r:?}");
        assert!(
            r.stderr.contains(&format!("(PID {})", std::process::id())),
            "{r:?}"
        );
    }
    assert_eq!(
        std::fs::read(s.state_path()).unwrap(),
        b"{}",
        "reset did not move the state while another run held the lock"
    );
}

#[test]
fn metrics_failures_exit_4_naming_the_cause_and_act_on_nothing() {
    let cases = [
        (Misbehaviour::Refuse, "cannot reach Prometheus"),
        (Misbehaviour::Hang, "did not answer within 700ms"),
        (Misbehaviour::Status(500, "boom"), "HTTP 500: boom"),
        (Misbehaviour::Body("<html>oops</html>"), "malformed"),
        (Misbehaviour::CutOff, "cut off"),
    ];
    for (how, cause) in cases {
        let bad = BadServer::start(how.clone());
        let s = Setup::new(&bad.url(), "700ms", "");
        let (code, v) = s.dry_run_json();
        assert_eq!(code, 4, "{how:?}: {v}");
        assert_eq!(v["action"], "none");
        assert!(v["error"].as_str().unwrap().contains(cause), "{how:?}: {v}");
        assert_eq!(s.files(), ["config.yaml"], "dry run: nothing written");

        // A real run counts the error in the state and changes nothing else.
        let r = s.run(&["evaluate"]);
        assert_eq!(r.code, 4, "{how:?}: {r:?}");
        assert!(r.stdout.starts_with("error: "), "{r:?}");
        assert!(r.stderr.contains(cause), "{how:?}: {r:?}");
        let state = State::load(&s.state_path()).unwrap();
        assert_eq!(state.totals.runs, 1);
        assert_eq!(state.totals.errors.get("metrics"), Some(&1));
        assert_eq!(state.last_scale_up, None);
        assert_eq!(state.last_scale_down, None);
        assert_eq!(state.low_since, None);
        assert_eq!(state.events.back().unwrap().kind, "error");
    }
}

#[test]
fn corrupt_state_exits_6_untouched_until_reset() {
    let prom = PromServer::with_cluster(&steady());
    let s = Setup::new(&prom.url(), "5s", "");
    std::fs::create_dir_all(s.state_path().parent().unwrap()).unwrap();
    let garbage = b"{\"version\": 1, \"last_scale_up\": tomorrow";
    std::fs::write(s.state_path(), garbage).unwrap();
    let mtime = std::fs::metadata(s.state_path())
        .unwrap()
        .modified()
        .unwrap();

    for args in [&["evaluate"][..], &["--dry-run", "evaluate"], &["status"]] {
        let r = s.run(args);
        assert_eq!(r.code, 6, "{args:?}: {r:?}");
        assert!(
            r.stderr.contains("state reset"),
            "says how to recover: {r:?}"
        );
        assert_eq!(std::fs::read(s.state_path()).unwrap(), garbage);
        assert_eq!(
            std::fs::metadata(s.state_path())
                .unwrap()
                .modified()
                .unwrap(),
            mtime
        );
    }

    let r = s.run(&["--dry-run", "state", "reset"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("would move"), "{r:?}");
    assert_eq!(std::fs::read(s.state_path()).unwrap(), garbage);

    let r = s.run(&["state", "reset"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!s.state_path().exists());
    let aside: Vec<String> = s
        .files()
        .into_iter()
        .filter(|f| f.starts_with("state/state.json.bad-"))
        .collect();
    assert_eq!(aside.len(), 1, "{:?}", s.files());
    assert_eq!(std::fs::read(s.dir.join(&aside[0])).unwrap(), garbage);

    let r = s.run(&["evaluate"]);
    assert_eq!(r.code, 0, "a fresh start: {r:?}");
    assert_eq!(State::load(&s.state_path()).unwrap().totals.runs, 1);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let prom = PromServer::with_cluster(&steady());
    let ok = Setup::new(&prom.url(), "5s", "");
    let refused = BadServer::start(Misbehaviour::Refuse);
    let down = Setup::new(&refused.url(), "5s", "");
    for (s, code, level) in [(&ok, 0, "DEBUG"), (&down, 4, "ERROR")] {
        let r = s.run(&["-vv", "--log-format", "json", "--dry-run", "evaluate"]);
        assert_eq!(r.code, code, "{r:?}");
        let lines: Vec<Value> = r
            .stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect();
        assert!(
            lines.iter().any(|l| l["level"] == level),
            "a {level} line: {r:?}"
        );
        for l in &lines {
            let o = l.as_object().expect("an object per line");
            for key in ["ts", "level", "target", "msg"] {
                assert!(o.contains_key(key), "{key} missing: {l}");
            }
            Timestamp::parse(o["ts"].as_str().unwrap()).expect("RFC 3339 time");
        }
    }
}

/// Issue 13's cases through the binary: a pending pod that asks for more than a worker has
/// neither scales up nor holds the scale-down of an empty worker, and that worker goes at a
/// middling average (40 % CPU, between the scale-down and scale-up thresholds), which the
/// cluster-wide rule kept forever.
#[test]
fn an_oversized_pod_is_unhelpable_and_an_empty_worker_goes_at_a_middling_average() {
    let cluster = Cluster::new()
        .control_plane("server")
        .worker("k3s-worker-1")
        .worker("k3s-worker-2")
        .worker("k3s-worker-3")
        .pod("web-1")
        .on("k3s-worker-1")
        .requests(1.2, GIB)
        .pod("web-2")
        .on("k3s-worker-2")
        .requests(1.2, GIB)
        .pod("huge")
        .unschedulable()
        .requests(16.0, GIB);
    let prom = PromServer::with_cluster(&cluster);
    let s = Setup::new(&prom.url(), "5s", "").lists(&cluster);
    let mut state = State::fresh();
    state.low_since = Some(ago(3600));
    s.write_state(&state);
    let (_, v) = s.dry_run_json();
    assert_eq!(v["signals"]["pending_pods"], 1.0, "{v}");
    assert_eq!(v["signals"]["cpu"], 40.0, "{v}");
    assert_eq!(
        strings(&v["unhelpable"]),
        ["pod default/huge: requests 16 CPU, a worker allocates 2"]
    );
    assert_eq!(v["action"], "scale_down", "{v}");
    assert_eq!(strings(&v["candidates"]), ["k3s-worker-3"], "{v}");
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("k3s-worker-3 unneeded since"),
        "{v}"
    );
}

/// Issue 22 point 9: `println!` panicked on a closed stdout (exit 1 from the panic hook,
/// a backtrace on stderr). Now every command ends quietly with its own code: the run's
/// (here 10 for a dry-run scale-up) for a command that acts, 0 for one that only prints;
/// a real run still saves its state.
#[test]
fn a_closed_stdout_ends_quietly_with_the_commands_own_code() {
    let pending_prom = PromServer::with_cluster(&pending());
    let pending = Setup::new(&pending_prom.url(), "5s", "");
    let steady_prom = PromServer::with_cluster(&steady());
    let steady = Setup::new(&steady_prom.url(), "5s", "");
    let cases: [(&Setup, &[&str], i32); 10] = [
        (&pending, &["--dry-run", "evaluate", "--output", "json"], 10),
        (&pending, &["--dry-run", "evaluate"], 10),
        (&steady, &["evaluate", "--output", "json"], 0),
        (&steady, &["status"], 0),
        (&steady, &["status", "--output", "json"], 0),
        (&steady, &["config", "check"], 0),
        (&steady, &["state", "show"], 0),
        (&steady, &["--dry-run", "state", "reset"], 0),
        (&steady, &["man"], 0),
        (&steady, &["completions", "bash"], 0),
    ];
    for (s, args, code) in cases {
        let r = s.run_into_closed_pipe(args);
        assert_eq!(r.code, code, "{args:?}: {r:?}");
        assert!(!r.stderr.contains("panicked"), "{args:?}: {r:?}");
        assert!(!r.stderr.contains("stdout"), "quietly: {args:?}: {r:?}");
    }
    let state = State::load(&steady.state_path()).unwrap();
    assert_eq!(state.totals.runs, 1, "the real run saved its state");
}
