//! Worker containers on the real Docker engine: what `evaluate` and `up` create (name,
//! command, env, labels, privileges, tmpfs, ulimits, volume, network, restart policy,
//! limits, kubelet reservation), that a failed start leaves nothing behind and exits 5,
//! that the join token goes nowhere but the container env, that `up` respects max_nodes,
//! that foreign containers are never touched, that a worker created but never started is
//! removed by the next run's reconcile, and the list/stop/remove operations.
//! Each test owns a unique pool label; its `Pool` guard removes what it made.

#[path = "support/docker.rs"]
mod docker_support;
// Every real run also lists the pool's Nodes (reconcile): the Kubernetes stand-in answers.
mod support;

use docker_support::{
    OWNER_LABEL, Pool, daemon_socket, docker, docker_ok, exists, host_capacity, inspect,
    make_certs, privileged_runs, test_image, write_file,
};
use k3s_scale::config::Config;
use k3s_scale::docker::{
    ContainerState, DockerClient, DockerEnv, DockerError, JoinToken, WorkerSpec,
};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// A Prometheus stand-in: answers every /api/v1/query with a canned vector, so `evaluate`
// and `up` can count the workers. (The real Prometheus is tested in the Prometheus tests.)

/// Stops (and joins its thread) on drop.
type FakeProm = support::http::Acceptor;

fn prom_body(nodes: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let sample = |signal: &str, node: Option<&str>, v: &str| {
        let node = node
            .map(|n| format!(r#","node":"{n}""#))
            .unwrap_or_default();
        format!(r#"{{"metric":{{"signal":"{signal}"{node}}},"value":[{now},"{v}"]}}"#)
    };
    let mut series = vec![
        sample("pending_pods", None, "0"),
        sample("pending_cpu_cores", None, "0"),
        sample("pending_memory_bytes", None, "0"),
        sample("cpu", None, "50"),
        sample("memory", None, "50"),
    ];
    series.extend(nodes.iter().map(|n| sample("node_ready", Some(n), "1")));
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        series.join(",")
    )
}

fn fake_prom(nodes: &[&str]) -> FakeProm {
    let body = prom_body(nodes);
    support::http::Acceptor::start(move |s| {
        let _ = answer(s, &body);
    })
}

fn answer(mut s: TcpStream, body: &str) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    while buf.len() < header_end + len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

// ---------------------------------------------------------------------------------------
// One test's world: a pool, a Prometheus stand-in, a token file and a config.

/// Which docker.host the config names.
enum Host {
    /// The pool's way to the daemon (see `Pool::docker_host`).
    Pool,
    /// None: $DOCKER_HOST or the default socket.
    Unset,
    Given(String),
}

struct Conf {
    image: String,
    network: String,
    min_nodes: u32,
    max_nodes: u32,
    host: Host,
    timeout: &'static str,
    token_file_mode: Option<u32>,
}

impl Default for Conf {
    fn default() -> Conf {
        Conf {
            image: test_image().to_string(),
            network: "none".into(),
            min_nodes: 0,
            max_nodes: 6,
            host: Host::Pool,
            timeout: "20s",
            token_file_mode: Some(0o600),
        }
    }
}

struct World {
    pool: Pool,
    prom: FakeProm,
    token: String,
    api: support::apiserver::ApiServer,
}

impl World {
    fn new(nodes: &[&str]) -> World {
        let pool = Pool::new();
        let token = format!(
            "K10{}::server:s3cr3t-join-token",
            pool.name.replace('-', "")
        );
        World {
            pool,
            prom: fake_prom(nodes),
            token,
            api: support::apiserver::ApiServer::start(),
        }
    }

    /// From now on Prometheus reports these nodes.
    fn set_nodes(&mut self, nodes: &[&str]) {
        self.prom = fake_prom(nodes);
    }

    fn state_path(&self) -> PathBuf {
        self.pool.path("state.json")
    }

    fn config(&mut self, c: &Conf) -> PathBuf {
        let host = match &c.host {
            Host::Pool => self.pool.docker_host(),
            Host::Unset => "null".into(),
            Host::Given(h) => h.clone(),
        };
        let token_file = match c.token_file_mode {
            Some(mode) => {
                let p = self.pool.path("k3s-token");
                write_file(&p, &format!("{}\n", self.token), mode);
                p.display().to_string()
            }
            None => "null".into(),
        };
        let yaml = format!(
            r#"prometheus:
  url: http://127.0.0.1:{port}
  timeout: 5s
limits:
  min_nodes: {min}
  max_nodes: {max}
  scale_up_cooldown: 1h
docker:
  host: {host}
  timeout: {timeout}
  image: {image}
  network: {network}
  name_prefix: {prefix}
  pool: {prefix}
  server_url: https://127.0.0.1:6443
  token_file: {token_file}
  agent_args: ["--node-label=k3s-scale-test=yes"]
  cpus: 0.5
  memory: 256Mi
  stop_timeout: 2s
  ulimit_nofile: 4096
  ulimit_nproc: 4096
state:
  path: {dir}/state.json
  lock_path: {dir}/k3s-scale.lock
kubernetes:
  kubeconfig: {kubeconfig}
"#,
            kubeconfig = self.api.kubeconfig().display(),
            port = self.prom.port,
            min = c.min_nodes,
            max = c.max_nodes,
            host = host,
            timeout = c.timeout,
            image = c.image,
            network = c.network,
            prefix = self.pool.name,
            dir = self.pool.dir.display(),
        );
        let p = self.pool.path("config.yaml");
        write_file(&p, &yaml, 0o600);
        p
    }

    /// Runs the binary; returns (exit code, stdout, stderr).
    fn run(&self, config: &PathBuf, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = support::bin();
        cmd.arg("--config").arg(config).args(args);
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("run k3s-scale");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn state(&self) -> Value {
        let text = std::fs::read_to_string(self.state_path()).expect("state file written");
        serde_json::from_str(&text).unwrap()
    }
}

fn labels_of(v: &Value) -> &serde_json::Map<String, Value> {
    v.as_object().expect("labels are an object")
}

/// Strings of a JSON array.
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_nothing_left(w: &World) {
    assert_eq!(
        w.pool.containers(),
        Vec::<String>::new(),
        "containers left behind"
    );
    assert_eq!(
        w.pool.volumes(),
        Vec::<String>::new(),
        "volumes left behind"
    );
}

// ---------------------------------------------------------------------------------------

#[test]
fn evaluate_starts_workers_exactly_as_specified() {
    let mut w = World::new(&["perm-1"]);
    let network = w.pool.network();
    let cfg = w.config(&Conf {
        network: network.clone(),
        min_nodes: 3,
        ..Conf::default()
    });
    // -vvv and RUST_LOG=trace: every log line there is, including bollard's.
    let (code, out, err) = w.run(&cfg, &["-vvv", "evaluate"], &[("RUST_LOG", "trace")]);
    assert_eq!(code, 10, "stdout: {out}\nstderr: {err}");
    let (a, b) = (w.pool.worker(1), w.pool.worker(2));
    assert!(out.contains(&a) && out.contains(&b), "{out}");
    assert_eq!(w.pool.containers(), [a.clone(), b.clone()]);

    let (host_cpus, host_mem) = host_capacity();
    let reserved_cpu = ((host_cpus - 0.5) * 1000.0).floor() as u64;
    let reserved_mem = host_mem - (256 << 20);
    let c = inspect("container", &a);
    assert_eq!(c["Name"], format!("/{a}"));
    assert_eq!(c["State"]["Running"], true, "{}", c["State"]);
    assert_eq!(
        strings(&c["Config"]["Cmd"]),
        [
            "agent".to_string(),
            format!("--node-label=k3s-scale.io/pool={}", w.pool.name),
            "--node-label=k3s-scale.io/host=default".into(),
            "--node-label=k3s-scale-test=yes".into(),
            format!("--kubelet-arg=system-reserved=cpu={reserved_cpu}m,memory={reserved_mem}"),
        ]
    );
    let env = strings(&c["Config"]["Env"]);
    for want in [
        "K3S_URL=https://127.0.0.1:6443".to_string(),
        format!("K3S_NODE_NAME={a}"),
        format!("K3S_TOKEN={}", w.token),
    ] {
        assert!(env.contains(&want), "{want} not in {env:?}");
    }
    assert_eq!(c["Config"]["Hostname"], a.as_str());
    assert_eq!(c["Config"]["StopTimeout"], 2);
    let labels = labels_of(&c["Config"]["Labels"]);
    assert_eq!(labels["io.k3s-scale.managed"], "true");
    assert_eq!(labels["io.k3s-scale.pool"], w.pool.name.as_str());
    assert_eq!(labels["io.k3s-scale.worker"], a.as_str());
    assert_eq!(labels["io.k3s-scale.index"], "1");
    assert_eq!(labels["io.k3s-scale.host"], "default");
    assert_eq!(labels["io.k3s-scale.cpus"], "0.5");
    assert_eq!(labels["io.k3s-scale.memory"], (256u64 << 20).to_string());
    let hc = &c["HostConfig"];
    if privileged_runs() {
        assert_eq!(hc["Privileged"], true);
    } else {
        // Asked for, as the recorded request shows; cleared by the test proxy because
        // this daemon cannot start privileged containers (see tests/support/docker.rs).
        let bodies = w.pool.create_bodies();
        assert_eq!(bodies.len(), 2);
        for b in &bodies {
            assert_eq!(b["HostConfig"]["Privileged"], true, "{b}");
        }
        assert_eq!(hc["Privileged"], false);
    }
    assert_eq!(hc["Tmpfs"], serde_json::json!({"/run": "", "/var/run": ""}));
    let mut ulimits: Vec<(String, i64, i64)> = hc["Ulimits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["Name"].as_str().unwrap().to_string(),
                u["Soft"].as_i64().unwrap(),
                u["Hard"].as_i64().unwrap(),
            )
        })
        .collect();
    ulimits.sort();
    assert_eq!(
        ulimits,
        [("nofile".into(), 4096, 4096), ("nproc".into(), 4096, 4096)]
    );
    assert_eq!(hc["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(hc["NetworkMode"], network.as_str());
    assert!(
        c["NetworkSettings"]["Networks"].get(&network).is_some(),
        "{}",
        c["NetworkSettings"]["Networks"]
    );
    assert_eq!(hc["NanoCpus"], 500_000_000);
    assert_eq!(hc["Memory"], 256 << 20);
    assert_eq!(hc["MemorySwap"], 256 << 20);
    let mounts = c["Mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Name"], format!("{a}-data"));
    assert_eq!(mounts[0]["Destination"], "/var/lib/rancher/k3s");
    let vol = inspect("volume", &format!("{a}-data"));
    let vlabels = labels_of(&vol["Labels"]);
    assert_eq!(vlabels["io.k3s-scale.managed"], "true");
    assert_eq!(vlabels["io.k3s-scale.pool"], w.pool.name.as_str());
    assert_eq!(vlabels["io.k3s-scale.worker"], a.as_str());
    assert_eq!(vlabels["io.k3s-scale.index"], "1");
    assert_eq!(vlabels["io.k3s-scale.host"], "default");
    assert_eq!(w.pool.volumes(), [format!("{a}-data"), format!("{b}-data")]);

    // The token is in the container env and nowhere else.
    let state_text = std::fs::read_to_string(w.state_path()).unwrap();
    for (place, text) in [
        ("stdout", out.as_str()),
        ("stderr", err.as_str()),
        ("state", state_text.as_str()),
        ("labels", &c["Config"]["Labels"].to_string()),
        ("volume", &vol.to_string()),
    ] {
        assert!(
            !text.contains("s3cr3t"),
            "the token leaked into {place}: {text}"
        );
    }
    assert!(
        err.contains("TRACE") || err.contains("DEBUG"),
        "logs were on: {err}"
    );
    // On the wire too: only the create bodies' Env carries it.
    for r in w.pool.requests() {
        assert!(!r.head.contains("s3cr3t"), "{}", r.head);
        let mut body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if r.head.contains("/containers/create") {
            let env = strings(&body["Env"]);
            assert!(env.contains(&format!("K3S_TOKEN={}", w.token)), "{env:?}");
            body["Env"] = Value::Null;
        }
        assert!(!body.to_string().contains("s3cr3t"), "{} {body}", r.head);
    }

    let state = w.state();
    assert_eq!(state["next_worker_index"], 3);
    let provisioning: Vec<&str> = state["provisioning"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(provisioning, [a.as_str(), b.as_str()]);
    assert_eq!(state["totals"]["workers_added"], 2);
    assert!(state["last_scale_up"].is_string());
}

#[test]
fn up_starts_workers_now_despite_the_cooldown() {
    let mut w = World::new(&["perm-1", "perm-2"]);
    let cfg = w.config(&Conf::default());
    let (code, out, err) = w.run(&cfg, &["up", "--count", "2", "--output", "json"], &[]);
    assert_eq!(code, 10, "{out}\n{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["action"], "scale_up");
    assert_eq!(report["exit_code"], 10);
    assert_eq!(
        strings(&report["started"]),
        [w.pool.worker(1), w.pool.worker(2)]
    );
    // The cooldown (1h) now runs; `up` ignores it.
    let (code, out, err) = w.run(&cfg, &["up", "--count", "1"], &[]);
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(out.contains(&w.pool.worker(3)), "{out}");
    assert_eq!(
        w.pool.containers(),
        [w.pool.worker(1), w.pool.worker(2), w.pool.worker(3)]
    );
    let state = w.state();
    assert_eq!(state["totals"]["scale_ups"], 2);
    assert_eq!(state["provisioning"].as_array().unwrap().len(), 3);
}

#[test]
fn a_worker_seen_ready_leaves_the_provisioning_list() {
    let mut w = World::new(&["perm-1"]);
    let cfg = w.config(&Conf {
        min_nodes: 3,
        ..Conf::default()
    });
    let (code, out, err) = w.run(&cfg, &["evaluate"], &[]);
    assert_eq!(code, 10, "{out}\n{err}");
    assert_eq!(w.state()["provisioning"].as_array().unwrap().len(), 2);
    // Worker 1 has joined and is Ready; worker 2 has not registered yet.
    let w1 = w.pool.worker(1);
    w.set_nodes(&["perm-1", &w1]);
    let cfg = w.config(&Conf {
        min_nodes: 3,
        ..Conf::default()
    });
    let (code, out, err) = w.run(&cfg, &["evaluate"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let state = w.state();
    let left: Vec<&str> = state["provisioning"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(left, [w.pool.worker(2).as_str()]);
    assert_eq!(w.pool.containers(), [w1, w.pool.worker(2)]);
}

#[test]
fn up_above_max_nodes_exits_2_saying_how_many_fit_and_starts_none() {
    // Two nodes registered, one worker booting from an earlier `up`: max 4 leaves room for 1.
    let mut w = World::new(&["perm-1", "perm-2"]);
    let cfg = w.config(&Conf {
        max_nodes: 4,
        ..Conf::default()
    });
    let (code, out, err) = w.run(&cfg, &["up", "--count", "1"], &[]);
    assert_eq!(code, 10, "{out}\n{err}");
    let (code, out, err) = w.run(&cfg, &["up", "--count", "3"], &[]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        out.contains("only 1 more worker(s) fit under limits.max_nodes 4"),
        "{out}"
    );
    assert_eq!(w.pool.containers(), [w.pool.worker(1)]);
    assert_eq!(w.state()["next_worker_index"], 2);
}

#[test]
fn up_dry_run_names_workers_but_creates_nothing() {
    let mut w = World::new(&["perm-1"]);
    let cfg = w.config(&Conf::default());
    let (code, out, err) = w.run(&cfg, &["--dry-run", "up", "--count", "2"], &[]);
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(
        out.contains("would add 2 worker(s)") && out.contains(&w.pool.worker(2)),
        "{out}"
    );
    assert_nothing_left(&w);
    assert!(!w.state_path().exists());
}

#[test]
fn missing_image_leaves_nothing_exits_5_and_starts_the_back_off() {
    let mut w = World::new(&["perm-1"]);
    let image = format!("k3s-scale-test/absent-{}:v0", w.pool.name);
    let cfg = w.config(&Conf {
        image: image.clone(),
        min_nodes: 2,
        ..Conf::default()
    });
    let (code, out, err) = w.run(&cfg, &["evaluate"], &[]);
    assert_eq!(code, 5, "{out}\n{err}");
    assert!(
        out.contains(&format!("image {image} is not on the Docker host")),
        "{out}"
    );
    assert_nothing_left(&w);
    let state = w.state();
    assert!(state["last_scale_up_failure"].is_string(), "{state}");
    assert_eq!(state["totals"]["failed_scale_ups"], 1);
    assert_eq!(state["provisioning"].as_array().unwrap().len(), 0);
    // The failure time holds further attempts back (scaling.failure_backoff).
    let (code, out, _) = w.run(&cfg, &["evaluate"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("back-off after a failed scale-up"), "{out}");
    assert_nothing_left(&w);
}

#[test]
fn missing_network_leaves_nothing_and_exits_5() {
    let mut w = World::new(&["perm-1"]);
    let network = format!("{}-nonet", w.pool.name);
    let cfg = w.config(&Conf {
        network: network.clone(),
        ..Conf::default()
    });
    let (code, out, err) = w.run(&cfg, &["up", "--count", "1"], &[]);
    assert_eq!(code, 5, "{out}\n{err}");
    assert!(
        out.contains(&format!("Docker network {network} does not exist")),
        "{out}"
    );
    // Docker 20.10 creates the container and fails at start: both it and the volume go.
    assert_nothing_left(&w);
    assert!(!exists("volume", &format!("{}-data", w.pool.worker(1))));
}

#[test]
fn name_conflict_leaves_the_other_container_alone_and_exits_5() {
    let mut w = World::new(&["perm-1"]);
    let name = w.pool.worker(1);
    let foreign = w.pool.foreign_container(&name, &[]);
    let cfg = w.config(&Conf::default());
    let (code, out, err) = w.run(&cfg, &["up", "--count", "1"], &[]);
    assert_eq!(code, 5, "{out}\n{err}");
    assert!(
        out.contains(&format!("a container named {name} exists already")),
        "{out}"
    );
    let c = inspect("container", &name);
    assert_eq!(c["Id"], foreign.as_str(), "the foreign container survives");
    assert_eq!(c["State"]["Status"], "created", "and is left as it was");
    assert!(
        !exists("volume", &format!("{name}-data")),
        "our volume was removed"
    );
    assert_eq!(
        w.state()["next_worker_index"],
        2,
        "the name is burnt, not retried"
    );
}

/// A worker container as a run leaves it when the daemon restarted (or the run was
/// killed) between its create and its start: this pool's labels, its volume, never
/// started. `user_volume`, if given, is mounted too (someone else's, never to be removed).
fn created_never_started(w: &World, n: u64, user_volume: Option<&str>) {
    let name = w.pool.worker(n);
    let labels = [
        "io.k3s-scale.managed=true".to_string(),
        format!("io.k3s-scale.pool={}", w.pool.name),
        format!("io.k3s-scale.worker={name}"),
        format!("io.k3s-scale.index={n}"),
        format!("{OWNER_LABEL}={}", w.pool.name),
    ];
    let vol = format!("{name}-data");
    let mut args = vec!["volume", "create"];
    for l in &labels {
        args.extend(["--label", l]);
    }
    args.push(&vol);
    docker_ok(&args);
    let data = format!("type=volume,src={vol},dst=/var/lib/rancher/k3s");
    let user = user_volume.map(|v| format!("type=volume,src={v},dst=/user"));
    let mut args = vec!["create", "--name", &name, "--network", "none"];
    for l in &labels {
        args.extend(["--label", l]);
    }
    args.extend(["--mount", &data]);
    if let Some(u) = &user {
        args.extend(["--mount", u]);
    }
    args.push(test_image());
    docker_ok(&args);
    assert_eq!(inspect("container", &name)["State"]["Status"], "created");
}

#[test]
fn a_created_but_never_started_worker_is_removed_and_the_run_decides_afresh() {
    let mut w = World::new(&["perm-1"]);
    // Two left so: worker 5 without a Node, worker 6 whose NotReady Node somehow
    // registered. Worker 5 also has a volume of someone else's mounted.
    let user = format!("{}-user", w.pool.name);
    w.pool.foreign_volume(&user, &[]);
    created_never_started(&w, 5, Some(&user));
    created_never_started(&w, 6, None);
    let (w5, w6) = (w.pool.worker(5), w.pool.worker(6));
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": w6, "labels": {"k3s-scale.io/pool": w.pool.name}},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
    }))
    .unwrap();
    w.api.add_node(node);
    // perm-1 and one worker: before, worker 5 was adopted as booting for the provision
    // timeout and counted, so nothing started and both containers stayed.
    let cfg = w.config(&Conf {
        min_nodes: 2,
        ..Conf::default()
    });
    let (code, out, err) = w.run(&cfg, &["evaluate", "--output", "json"], &[]);
    assert_eq!(code, 10, "a worker is started afresh\n{out}\n{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    let mut repairs = strings(&report["repairs"]);
    repairs.sort(); // in Docker's listing order
    assert_eq!(
        repairs,
        [
            format!("remove {w5} and its volume: container was created but never started"),
            format!(
                "remove {w6} and its volume: container was created but never started; \
                 delete its Node"
            ),
        ],
        "{report}"
    );
    let started = strings(&report["started"]);
    assert_eq!(started.len(), 1, "{report}");
    assert!(!started.contains(&w5) && !started.contains(&w6), "{report}");
    assert_eq!(
        w.pool.containers(),
        started,
        "both removed, the new one there"
    );
    assert_eq!(w.pool.volumes(), [format!("{}-data", started[0])]);
    assert!(exists("volume", &user), "someone else's volume stays");
    assert!(w.api.node(&w6).is_none(), "its Node deleted");
    let state = w.state();
    assert_eq!(state["totals"]["repairs"], 2, "{state}");
    assert_eq!(
        state["totals"]["failed_scale_ups"], 0,
        "no back-off: {state}"
    );
    assert_eq!(state["acting"], Value::Null, "{state}");
    let _ = docker(&["volume", "rm", &user]);
}

#[test]
fn a_failure_part_way_keeps_and_records_the_workers_that_started() {
    let mut w = World::new(&["perm-1"]);
    w.pool.foreign_container(&w.pool.worker(2), &[]);
    let cfg = w.config(&Conf::default());
    let (code, out, err) = w.run(&cfg, &["up", "--count", "3", "--output", "json"], &[]);
    assert_eq!(code, 5, "{out}\n{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(strings(&report["started"]), [w.pool.worker(1)]);
    let e = report["error"].as_str().unwrap();
    assert!(
        e.contains(&format!("cannot start worker {}", w.pool.worker(2))),
        "{e}"
    );
    // Ours: worker 1 only (worker 3 was never tried); the foreign one is still there.
    let managed = docker_ok(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("label=io.k3s-scale.pool={}", w.pool.name),
    ]);
    assert_eq!(managed, w.pool.worker(1));
    assert!(exists("container", &w.pool.worker(2)));
    assert_eq!(w.pool.volumes(), [format!("{}-data", w.pool.worker(1))]);
    let state = w.state();
    assert_eq!(state["provisioning"][0]["name"], w.pool.worker(1).as_str());
    assert_eq!(state["totals"]["failed_scale_ups"], 1);
    assert_eq!(state["totals"]["workers_added"], 1);
}

#[test]
fn names_are_never_reused_after_the_state_is_lost() {
    let mut w = World::new(&["perm-1"]);
    let cfg = w.config(&Conf::default());
    let (code, out, err) = w.run(&cfg, &["up", "--count", "2"], &[]);
    assert_eq!(code, 10, "{out}\n{err}");
    // Worker 2's container goes by hand, its volume stays; then the state is lost.
    docker_ok(&["rm", "-f", &w.pool.worker(2)]);
    std::fs::remove_file(w.state_path()).unwrap();
    let (code, out, err) = w.run(&cfg, &["up", "--count", "1"], &[]);
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(out.contains(&w.pool.worker(3)), "{out}");
    assert_eq!(w.pool.containers(), [w.pool.worker(1), w.pool.worker(3)]);
    assert_eq!(w.state()["next_worker_index"], 4);
}

#[test]
fn unreachable_daemon_exits_5_naming_it() {
    let mut w = World::new(&["perm-1"]);
    let sock = w.pool.path("no-daemon.sock");
    let cfg = w.config(&Conf {
        host: Host::Given(format!("unix://{}", sock.display())),
        ..Conf::default()
    });
    let (code, out, err) = w.run(&cfg, &["up", "--count", "1"], &[]);
    assert_eq!(code, 5, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "cannot reach the Docker daemon at unix://{}",
            sock.display()
        )),
        "{out}"
    );
    assert!(w.state()["last_scale_up_failure"].is_string());
}

/// A daemon that accepts connections and never answers.
struct HungDaemon {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

fn hung_daemon(path: &std::path::Path) -> HungDaemon {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        while !stop2.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    HungDaemon {
        stop,
        handle: Some(handle),
    }
}

impl Drop for HungDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn a_hung_daemon_does_not_hang_the_run() {
    let mut w = World::new(&["perm-1"]);
    let sock = w.pool.path("hung.sock");
    let _daemon = hung_daemon(&sock);
    let cfg = w.config(&Conf {
        host: Host::Given(format!("unix://{}", sock.display())),
        timeout: "1s",
        ..Conf::default()
    });
    let (code, out, err) = w.run(&cfg, &["up", "--count", "1"], &[]);
    assert_eq!(code, 5, "{out}\n{err}");
    assert!(out.contains("did not answer within 1s"), "{out}");
}

/// Forwards 127.0.0.1:port to the daemon's unix socket: a real Docker over tcp://.
type TcpProxy = support::http::Acceptor;

fn tcp_proxy(socket: PathBuf) -> TcpProxy {
    support::http::Acceptor::start(move |client| {
        if let Ok(upstream) = std::os::unix::net::UnixStream::connect(&socket) {
            support::http::pipe(client, upstream);
        }
    })
}

#[test]
fn tcp_hosts_work_and_docker_host_is_honoured_below_the_config_key() {
    let mut w = World::new(&["perm-1"]);
    let proxy = tcp_proxy(w.pool.docker_socket());
    let tcp = format!("tcp://127.0.0.1:{}", proxy.port);
    // DOCKER_HOST alone.
    let cfg = w.config(&Conf {
        host: Host::Unset,
        ..Conf::default()
    });
    let (code, out, err) = w.run(
        &cfg,
        &["-v", "up", "--count", "1"],
        &[("DOCKER_HOST", &tcp)],
    );
    assert_eq!(code, 10, "{out}\n{err}");
    // docker.host wins over a DOCKER_HOST that points nowhere.
    let cfg = w.config(&Conf {
        host: Host::Given(tcp.clone()),
        ..Conf::default()
    });
    let (code, out, err) = w.run(
        &cfg,
        &["up", "--count", "1"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(code, 10, "{out}\n{err}");
    // And a DOCKER_HOST that points nowhere is used when the key is unset.
    let cfg = w.config(&Conf {
        host: Host::Unset,
        ..Conf::default()
    });
    let (code, out, _) = w.run(
        &cfg,
        &["up", "--count", "1"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("unix:///nonexistent/docker.sock"), "{out}");
    assert_eq!(w.pool.containers(), [w.pool.worker(1), w.pool.worker(2)]);
}

#[test]
fn the_token_comes_from_k3s_token_and_a_world_writable_file_is_refused() {
    let mut w = World::new(&["perm-1"]);
    let cfg = w.config(&Conf {
        token_file_mode: Some(0o666),
        ..Conf::default()
    });
    let (code, out, err) = w.run(&cfg, &["up", "--count", "1"], &[("K3S_TOKEN", &w.token)]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("world-writable"), "{out}");
    assert_nothing_left(&w);

    let cfg = w.config(&Conf {
        token_file_mode: None,
        ..Conf::default()
    });
    let (code, out, err) = w.run(&cfg, &["up", "--count", "1"], &[]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("K3S_TOKEN"), "{out}");
    let (code, out, err) = w.run(
        &cfg,
        &["-vvv", "up", "--count", "1"],
        &[("K3S_TOKEN", &w.token)],
    );
    assert_eq!(code, 10, "{out}\n{err}");
    assert!(!out.contains("s3cr3t") && !err.contains("s3cr3t"));
    let env = strings(&inspect("container", &w.pool.worker(1))["Config"]["Env"]);
    assert!(env.contains(&format!("K3S_TOKEN={}", w.token)), "{env:?}");
}

// ---------------------------------------------------------------------------------------
// The operations the later scale-down and repair work builds on, through the library.

fn client(pool: &mut Pool) -> (Config, DockerClient) {
    let mut cfg = Config::default();
    cfg.docker.host = Some(pool.docker_host());
    cfg.docker.image = test_image().into();
    cfg.docker.network = "none".into();
    cfg.docker.name_prefix = pool.name.clone();
    cfg.docker.pool = pool.name.clone();
    cfg.docker.cpus = 0.5;
    cfg.docker.memory = k3s_scale::config::units::Bytes(256 << 20);
    cfg.docker.stop_timeout = k3s_scale::config::units::Secs::from_secs(2);
    cfg.docker.ulimit_nofile = 4096;
    cfg.docker.ulimit_nproc = 4096;
    let client = DockerClient::connect(&cfg.docker, &DockerEnv::default())
        .expect("connect to the Docker daemon");
    (cfg, client)
}

#[test]
fn list_stop_and_remove_only_ever_touch_this_pools_workers() {
    let mut pool = Pool::new();
    let (cfg, client) = client(&mut pool);
    let token = JoinToken::new("s3cr3t").unwrap();
    let spec = WorkerSpec {
        cfg: &cfg.docker,
        token: &token,
        host: Some(client.host_capacity().unwrap()),
        host_name: "default",
    };
    for n in [1, 2] {
        client.start_worker(&spec, &pool.worker(n), n).unwrap();
    }
    // Look-alikes: our name pattern and pool label, but not managed; another pool's worker.
    let pool_label = format!("io.k3s-scale.pool={}", pool.name);
    let worker3 = format!("io.k3s-scale.worker={}", pool.worker(3));
    pool.foreign_container(
        &pool.worker(3),
        &[&pool_label, &worker3, "io.k3s-scale.index=3"],
    );
    let other = format!("{}-other-1", pool.name);
    pool.foreign_container(
        &other,
        &[
            "io.k3s-scale.managed=true",
            "io.k3s-scale.pool=someone-else",
        ],
    );
    pool.foreign_volume(
        &format!("{}-data", pool.worker(3)),
        &[&pool_label, &worker3],
    );

    docker_ok(&["stop", "-t", "1", &pool.worker(2)]);
    let mut list = client.list_workers().unwrap();
    list.sort_by_key(|c| c.index);
    let seen: Vec<(String, u64, ContainerState)> = list
        .iter()
        .map(|c| (c.name.clone(), c.index, c.state))
        .collect();
    assert_eq!(
        seen,
        [
            (pool.worker(1), 1, ContainerState::Running),
            (pool.worker(2), 2, ContainerState::Exited),
        ]
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for c in &list {
        let created = c.created.expect("Docker says when").as_millis() / 1000;
        assert!((now - 300..=now + 5).contains(&created), "{c:?}");
        assert_eq!(c.id, inspect("container", &c.name)["Id"].as_str().unwrap());
    }
    let vols: Vec<String> = client
        .list_volumes()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(vols.len(), 2, "{vols:?}");
    assert_eq!(client.highest_index().unwrap(), Some(2));

    let removed = client.remove_worker(&pool.worker(1)).unwrap();
    assert!(removed.container && removed.volume, "{removed:?}");
    assert!(!exists("container", &pool.worker(1)));
    assert!(!exists("volume", &format!("{}-data", pool.worker(1))));
    // Again: nothing there, nothing done.
    assert_eq!(
        client.remove_worker(&pool.worker(1)).unwrap(),
        Default::default()
    );
    // The look-alike is not ours: removing "worker 3" finds nothing.
    assert_eq!(
        client.remove_worker(&pool.worker(3)).unwrap(),
        Default::default()
    );
    assert!(exists("container", &pool.worker(3)) && exists("container", &other));
    let e = client
        .remove_volume(&format!("{}-data", pool.worker(3)))
        .unwrap_err();
    assert!(matches!(e, DockerError::NotManaged { .. }), "{e:?}");
    assert!(exists("volume", &format!("{}-data", pool.worker(3))));

    // A volume outliving its container: listed, counted, removable on its own.
    docker_ok(&["rm", &pool.worker(2)]);
    assert_eq!(client.highest_index().unwrap(), Some(2));
    assert!(
        client
            .remove_volume(&format!("{}-data", pool.worker(2)))
            .unwrap()
    );
    assert!(
        !client
            .remove_volume(&format!("{}-data", pool.worker(2)))
            .unwrap()
    );
    assert!(client.list_workers().unwrap().is_empty());
    assert!(client.list_volumes().unwrap().is_empty());
    assert_eq!(client.highest_index().unwrap(), None);
    // What the test made that is not managed is still there for the guard to remove.
    let owned = docker_ok(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("label={OWNER_LABEL}={}", pool.name),
    ]);
    assert_eq!(owned.lines().count(), 2);
}

#[test]
fn a_worker_that_cannot_start_is_removed_with_its_volume() {
    let mut pool = Pool::new();
    let (mut cfg, client) = client(&mut pool);
    cfg.docker.network = format!("{}-nonet", pool.name);
    let token = JoinToken::new("s3cr3t").unwrap();
    let spec = WorkerSpec {
        cfg: &cfg.docker,
        token: &token,
        host: None,
        host_name: "default",
    };
    let e = client.start_worker(&spec, &pool.worker(1), 1).unwrap_err();
    assert!(matches!(e.cause, DockerError::NetworkMissing { .. }), "{e}");
    assert!(e.left_behind.is_empty(), "{e}");
    assert!(!e.to_string().contains("s3cr3t"));
    assert_eq!(pool.containers(), Vec::<String>::new());
    assert_eq!(pool.volumes(), Vec::<String>::new());
    // An existing volume of that name is never adopted, and is left alone.
    pool.foreign_volume(&format!("{}-data", pool.worker(2)), &[]);
    let e = client.start_worker(&spec, &pool.worker(2), 2).unwrap_err();
    assert!(
        matches!(e.cause, DockerError::NameConflict { kind: "volume", .. }),
        "{e}"
    );
    assert!(exists("volume", &format!("{}-data", pool.worker(2))));
    assert!(!exists("container", &pool.worker(2)));
    let _ = docker(&["volume", "rm", &format!("{}-data", pool.worker(2))]);
}

#[test]
fn privileged_workers_against_the_daemon_itself() {
    // No proxy: what this daemon does with a privileged worker, which k3s needs.
    let mut w = World::new(&["perm-1"]);
    let cfg = w.config(&Conf {
        host: Host::Given(format!("unix://{}", daemon_socket().display())),
        ..Conf::default()
    });
    let (code, out, err) = w.run(&cfg, &["up", "--count", "1"], &[]);
    if privileged_runs() {
        assert_eq!(code, 10, "{out}\n{err}");
        assert_eq!(
            inspect("container", &w.pool.worker(1))["HostConfig"]["Privileged"],
            true
        );
    } else {
        // Created, refused at start (the daemon lacks capabilities to hand out), removed.
        assert_eq!(code, 5, "{out}\n{err}");
        assert!(
            out.contains(&format!("cannot start worker {}", w.pool.worker(1)))
                && out.contains("operation not permitted"),
            "{out}"
        );
        assert_nothing_left(&w);
    }
}

// ---------------------------------------------------------------------------------------
// TLS: `openssl s_server` on 127.0.0.1 stands in for a TLS-protected daemon. It requires a
// client certificate and serves canned files, enough for the client's TLS set-up and its
// first call (GET /_ping) to be checked end to end.

struct TlsServer {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

fn tls_server(dir: &std::path::Path) -> TlsServer {
    make_certs(dir, "k3s-scale-test-ca");
    // The client's first call is GET /_ping (bollard sends unversioned paths).
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(
        www.join("_ping"),
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nOK",
    )
    .unwrap();
    let port = support::free_port();
    let child = Command::new("openssl")
        .current_dir(dir.join("www"))
        .args([
            "s_server",
            "-quiet",
            "-HTTP",
            "-Verify",
            "1",
            "-verify_return_error",
        ])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(dir.join("server.pem"))
        .arg("-key")
        .arg(dir.join("server.key"))
        .arg("-CAfile")
        .arg(dir.join("ca.pem"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start openssl s_server");
    let server = TlsServer {
        child,
        port,
        dir: dir.to_path_buf(),
    };
    for _ in 0..500 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("openssl s_server did not listen on 127.0.0.1:{port}");
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_hosts_verify_the_daemon_and_present_the_client_certificate() {
    let pool = Pool::new();
    let server = tls_server(&pool.path("tls"));
    let host = format!("tcp://127.0.0.1:{}", server.port);
    let tls = |dir: &std::path::Path| k3s_scale::config::DockerTls {
        ca_file: dir.join("ca.pem"),
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
    };
    let mut cfg = Config::default().docker;
    cfg.host = Some(host.clone());
    cfg.timeout = k3s_scale::config::units::Secs::from_secs(5);
    cfg.tls = Some(tls(&server.dir));
    let client =
        DockerClient::connect(&cfg, &DockerEnv::default()).expect("TLS handshake and /_ping");
    assert_eq!(
        client.endpoint().to_string(),
        format!("tcp://127.0.0.1:{} (TLS)", server.port)
    );

    // A daemon certificate from another CA is refused.
    let other = pool.path("other-ca");
    make_certs(&other, "some-other-ca");
    cfg.tls = Some(k3s_scale::config::DockerTls {
        ca_file: other.join("ca.pem"),
        ..tls(&server.dir)
    });
    let e = DockerClient::connect(&cfg, &DockerEnv::default())
        .err()
        .expect("unknown CA");
    assert!(matches!(e, DockerError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // A client certificate the daemon does not trust is refused by the daemon.
    cfg.tls = Some(k3s_scale::config::DockerTls {
        ca_file: server.dir.join("ca.pem"),
        ..tls(&other)
    });
    let e = DockerClient::connect(&cfg, &DockerEnv::default())
        .err()
        .expect("untrusted client");
    assert!(matches!(e, DockerError::Unreachable { .. }), "{e:?}");
    // A missing file is a setup error naming it.
    cfg.tls = Some(k3s_scale::config::DockerTls {
        key_file: server.dir.join("nope.pem"),
        ..tls(&server.dir)
    });
    let e = DockerClient::connect(&cfg, &DockerEnv::default())
        .err()
        .expect("missing key");
    assert!(
        matches!(e, DockerError::Setup(_)) && e.to_string().contains("nope.pem"),
        "{e}"
    );

    // The binary, configured like the docker CLI (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH):
    // the handshake and the ping succeed, and the stand-in's non-answer to the next
    // call is reported as such, not as an unreachable daemon.
    let mut w = World::new(&["perm-1"]);
    let config = w.config(&Conf {
        host: Host::Unset,
        timeout: "5s",
        ..Conf::default()
    });
    let certs = server.dir.display().to_string();
    let (code, out, err) = w.run(
        &config,
        &["up", "--count", "1"],
        &[
            ("DOCKER_HOST", &host),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", &certs),
        ],
    );
    assert_eq!(code, 5, "{out}\n{err}");
    assert!(
        out.contains("listing worker containers: unreadable answer"),
        "{out}"
    );
}
