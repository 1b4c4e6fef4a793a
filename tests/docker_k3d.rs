//! k3d clusters on the real Docker engine: `init --from-k3d NAME` reads a cluster made of
//! containers that carry k3d 5's labels (the busybox test image standing in for k3s, a
//! network `k3d-NAME`), writes a config `config check` accepts and a 0600 token file, never
//! shows the token, names what is missing; a worker started with that config carries the
//! labels k3d lists and deletes nodes by; `up` starts workers without any kubeconfig (real
//! Prometheus for the count). Each test owns a unique cluster name, and removes every
//! container, volume and network labelled with it, as `k3d cluster delete` would.

#[path = "support/docker.rs"]
mod docker_support;
mod support;

use docker_support::{OWNER_LABEL, Pool, docker, docker_ok, inspect, test_image};
use k3s_scale::config::Config;
use k3s_scale::docker::{DockerClient, DockerEnv};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use support::prom::{Cluster, PromServer};
use support::{Run, k3s_scale};

/// k3d 5's label names (k3d-io/k3d pkg/types/types.go, DefaultRuntimeLabels and
/// DefaultRuntimeLabelsVar in pkg/types/defaults.go) and the values ClusterCreate gives
/// every node of cluster NAME (pkg/client/cluster.go: ClusterPrepNetwork,
/// ClusterPrepImageVolume, ClusterCreate's GlobalLabels; NodeCreate's FillRuntimeLabels
/// adds the role).
fn k3d5_labels(name: &str, role: &str, token: &str, network_id: &str) -> Vec<(String, String)> {
    let mut l = vec![
        ("app", "k3d".to_string()),
        ("k3d.version", "v5.8.3".into()),
        ("k3d.role", role.into()),
        ("k3d.cluster", name.into()),
        ("k3d.cluster.token", token.into()),
        (
            "k3d.cluster.url",
            format!("https://k3d-{name}-server-0:6443"),
        ),
        ("k3d.cluster.network", format!("k3d-{name}")),
        ("k3d.cluster.network.id", network_id.into()),
        ("k3d.cluster.network.iprange", "".into()),
        ("k3d.cluster.network.external", "false".into()),
        ("k3d.cluster.imageVolume", format!("k3d-{name}-images")),
        ("k3d.server.loadbalancer", format!("k3d-{name}-serverlb")),
    ];
    if role == "server" {
        // patchServerSpec (pkg/client/node.go): the exposed API, for the kubeconfig.
        l.extend([
            ("k3d.server.api.host", "0.0.0.0".to_string()),
            ("k3d.server.api.hostIP", "0.0.0.0".into()),
            ("k3d.server.api.port", "6550".into()),
        ]);
    }
    l.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The labels by which k3d finds a node: `k3d node list` filters on `app=k3d`
/// (pkg/client/node.go NodeList), `k3d cluster delete` on `app=k3d` and `k3d.cluster`
/// (pkg/client/cluster.go ClusterGet); it shows and counts nodes by `k3d.role`, joins agents
/// at `k3d.cluster.url` and reads their IP on `k3d.cluster.network`
/// (pkg/runtimes/docker/translate.go TranslateContainerDetailsToNode). A worker carries these
/// with the values k3d's own agents have.
const K3D_NODE_LABELS: [&str; 5] = [
    "app",
    "k3d.cluster",
    "k3d.role",
    "k3d.cluster.url",
    "k3d.cluster.network",
];

/// k3d's labels a worker must not carry: the token (a secret) and the facts k3d stamps on
/// the nodes it creates itself.
const K3D_LEFT_OUT: [&str; 7] = [
    "k3d.cluster.token",
    "k3d.version",
    "k3d.cluster.network.id",
    "k3d.cluster.network.iprange",
    "k3d.cluster.network.external",
    "k3d.cluster.imageVolume",
    "k3d.server.loadbalancer",
];

/// A k3d cluster as k3d 5 leaves it on the Docker host, made of test containers. Drop
/// removes every container and volume labelled `k3d.cluster=NAME` (those it made, and the
/// workers the binary started for it) and its network.
struct FakeK3d {
    name: String,
    token: String,
    network: String,
    dir: PathBuf,
}

impl FakeK3d {
    /// `roles`: the nodes to make, e.g. ["server", "agent", "agent", "loadbalancer"].
    fn new(pool: &Pool, roles: &[&str]) -> FakeK3d {
        // The pool's unique name doubles as the cluster name (k3d: <= 32 characters).
        let name = pool.name.clone();
        assert!(name.len() <= 25, "{name}: k3d-NAME-autoscaled must fit 40");
        let network = format!("k3d-{name}");
        let owner = format!("{OWNER_LABEL}={name}");
        let network_id = docker_ok(&[
            "network",
            "create",
            "--internal",
            "--label",
            "app=k3d",
            "--label",
            &format!("k3d.cluster={name}"),
            "--label",
            &owner,
            &network,
        ]);
        let token = format!("K10{}::server:k3dT0ken", name.replace('-', ""));
        let k = FakeK3d {
            name: name.clone(),
            token,
            network,
            dir: pool.dir.clone(),
        };
        docker_ok(&[
            "volume",
            "create",
            "--label",
            "app=k3d",
            "--label",
            &format!("k3d.cluster={name}"),
            &format!("k3d-{name}-images"),
        ]);
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for role in roles {
            let n = counts.entry(role).or_default();
            let node = if *role == "loadbalancer" {
                format!("k3d-{name}-serverlb")
            } else {
                format!("k3d-{name}-{role}-{n}")
            };
            *n += 1;
            k.node(&node, &k3d5_labels(&name, role, &k.token, &network_id));
        }
        k
    }

    /// Creates (does not start) one node container on the cluster network.
    fn node(&self, node: &str, labels: &[(String, String)]) {
        let mut args: Vec<String> = ["create", "--name", node, "--hostname", node, "--network"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(self.network.clone());
        for (k, v) in labels {
            args.extend(["--label".to_string(), format!("{k}={v}")]);
        }
        args.push(test_image().to_string());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&refs);
    }

    fn container(&self, role: &str, n: u32) -> String {
        format!("k3d-{}-{role}-{n}", self.name)
    }

    /// Runs `k3s-scale init --from-k3d NAME --dir DIR [extra]` with HOME in the test's dir.
    fn init(&self, cluster: &str, dir: &Path, extra: &[&str]) -> Run {
        self.init_env(cluster, dir, extra, &[])
    }

    fn init_env(&self, cluster: &str, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let out = k3s_scale(&self.dir)
            .args(["init", "--from-k3d", cluster, "--dir"])
            .arg(dir)
            .args(extra)
            .env("HOME", self.dir.join("home"))
            .env_remove("XDG_CONFIG_HOME")
            .envs(env.iter().copied())
            .output()
            .expect("run k3s-scale");
        Run::from_output(out)
    }

    fn pool(&self) -> String {
        format!("k3d-{}-autoscaled", self.name)
    }

    fn assert_no_token(&self, what: &str, run: &Run) {
        for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            assert!(
                !text.contains(&self.token) && !text.contains("k3dT0ken"),
                "{what}: the token is in {stream}:\n{text}"
            );
        }
    }
}

impl Drop for FakeK3d {
    fn drop(&mut self) {
        let filter = format!("label=k3d.cluster={}", self.name);
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = docker(&["rm", "-f", "-v", id]);
        }
        let vols = docker(&["volume", "ls", "-q", "--filter", &filter]);
        for v in String::from_utf8_lossy(&vols.stdout).split_whitespace() {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        let _ = docker(&["network", "rm", &self.network]);
    }
}

fn config_check(config: &Path, cwd: &Path) -> Run {
    Run::from_output(
        k3s_scale(cwd)
            .arg("--config")
            .arg(config)
            .args(["config", "check"])
            .output()
            .expect("run k3s-scale"),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn names(list: &str) -> Vec<String> {
    let mut v: Vec<String> = list.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn init_from_k3d_writes_a_config_of_the_clusters_values_and_a_0600_token() {
    let pool = Pool::new();
    let k = FakeK3d::new(&pool, &["server", "loadbalancer", "agent", "agent"]);
    let dir = pool.path("out");
    // Every log line there is, dependencies' too (those that could dump the answer are
    // dropped): the listing Docker answers holds the token label.
    let run = k.init_env(&k.name, &dir, &["-vvv"], &[("RUST_LOG", "trace")]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("DEBUG") && run.stderr.contains("servers k3d-"),
        "debug logging is on: {run:?}"
    );
    k.assert_no_token("init -vvv with RUST_LOG=trace", &run);
    let (config, token) = (dir.join("config.yaml"), dir.join("k3s-token"));
    assert!(
        run.stdout.contains(&config.display().to_string()),
        "{run:?}"
    );

    let check = config_check(&config, &pool.dir);
    assert_eq!(check.code, 0, "{check:?}");
    k.assert_no_token("config check", &check);

    let c = Config::load(&config).unwrap();
    let d = &c.docker;
    assert_eq!(d.k3d_cluster.as_deref(), Some(k.name.as_str()));
    assert_eq!(d.network, k.network);
    assert_eq!(d.image, test_image(), "the server's image");
    assert_eq!(
        d.server_url,
        format!("https://k3d-{}-server-0:6443", k.name)
    );
    assert_eq!(d.token_file.as_deref(), Some(token.as_path()));
    assert_eq!(
        (d.pool.clone(), d.name_prefix.clone()),
        (k.pool(), k.pool())
    );
    assert_eq!(
        c.kubernetes.permanent_nodes,
        [k.container("agent", 0), k.container("agent", 1)]
    );
    assert_eq!((c.limits.min_nodes, c.limits.max_nodes), (2, 5));
    assert_eq!(
        c.kubernetes.kubeconfig,
        Some(
            k.dir
                .join(format!("home/.config/k3d/kubeconfig-{}.yaml", k.name))
        ),
        "the kubeconfig `k3d kubeconfig write NAME` writes"
    );
    assert!(run.stdout.contains("k3d kubeconfig write"), "{run:?}");
    assert_eq!(c.state.path, dir.join("state.json"));

    assert_eq!(mode(&token), 0o600);
    assert_eq!(
        std::fs::read_to_string(&token).unwrap(),
        format!("{}\n", k.token)
    );
    assert!(!std::fs::read_to_string(&config).unwrap().contains(&k.token));

    // Existing files are kept unless --force; then replaced, the token still 0600.
    std::fs::write(&token, "older\n").unwrap();
    let again = k.init(&k.name, &dir, &[]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(
        again.stderr.contains("refusing to overwrite")
            && again.stderr.contains("config.yaml")
            && again.stderr.contains("k3s-token"),
        "{again:?}"
    );
    assert_eq!(std::fs::read_to_string(&token).unwrap(), "older\n");
    let forced = k.init(&k.name, &dir, &["--force"]);
    assert_eq!(forced.code, 0, "{forced:?}");
    k.assert_no_token("init --force", &forced);
    assert_eq!(
        std::fs::read_to_string(&token).unwrap(),
        format!("{}\n", k.token)
    );
    assert_eq!(mode(&token), 0o600);

    // A symlink where the token file goes is not followed: refused, its target untouched.
    let dir2 = pool.path("out2");
    std::fs::create_dir_all(&dir2).unwrap();
    let target = pool.path("victim");
    std::fs::write(&target, "keep\n").unwrap();
    std::os::unix::fs::symlink(&target, dir2.join("k3s-token")).unwrap();
    let linked = k.init(&k.name, &dir2, &[]);
    assert_eq!(linked.code, 2, "{linked:?}");
    assert!(!dir2.join("config.yaml").exists(), "nothing half-done");
    let forced = k.init(&k.name, &dir2, &["--force"]);
    assert_eq!(forced.code, 0, "{forced:?}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
    assert!(
        !dir2
            .join("k3s-token")
            .symlink_metadata()
            .unwrap()
            .is_symlink()
    );
    assert_eq!(mode(&dir2.join("k3s-token")), 0o600);
}

#[test]
fn init_names_what_it_could_not_find_exits_2_and_writes_nothing() {
    let pool = Pool::new();
    let k = FakeK3d::new(&pool, &["server", "agent"]);
    let dir = pool.path("out");
    let empty = |dir: &Path| std::fs::read_dir(dir).map_or(0, |d| d.count()) == 0;

    let run = k.init("no-such-cluster", &dir, &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("no k3d cluster \"no-such-cluster\"") && run.stderr.contains(&k.name),
        "names the cluster asked for and lists the ones there are: {run:?}"
    );
    assert!(empty(&dir));

    let run = k.init("Not_a_name", &dir, &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--from-k3d"), "{run:?}");

    // Only agents: no server.
    let p2 = Pool::new();
    let agents_only = FakeK3d::new(&p2, &["agent", "loadbalancer"]);
    let run = agents_only.init(&agents_only.name, &dir, &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("has no server"), "{run:?}");
    assert!(empty(&dir));

    // A server without the token label (or the URL, or the network).
    for missing in [
        "k3d.cluster.token",
        "k3d.cluster.url",
        "k3d.cluster.network",
    ] {
        let p = Pool::new();
        let c = FakeK3d::new(&p, &["agent"]);
        let labels: Vec<(String, String)> = k3d5_labels(&c.name, "server", &c.token, "x")
            .into_iter()
            .filter(|(key, _)| key != missing)
            .collect();
        c.node(&c.container("server", 0), &labels);
        let run = c.init(&c.name, &dir, &[]);
        assert_eq!(run.code, 2, "{missing}: {run:?}");
        assert!(
            run.stderr.contains(missing) && run.stderr.contains(&c.container("server", 0)),
            "{missing}: {run:?}"
        );
        c.assert_no_token(missing, &run);
        assert!(empty(&dir), "{missing}: nothing written");
    }
}

#[test]
fn workers_of_a_k3d_pool_carry_k3ds_labels_and_up_needs_no_kubeconfig() {
    let mut pool = Pool::new();
    let k = FakeK3d::new(&pool, &["server", "loadbalancer", "agent", "agent"]);
    let dir = pool.path("out");
    let run = k.init(&k.name, &dir, &[]);
    assert_eq!(run.code, 0, "{run:?}");

    // The written config, with what this machine needs: the Docker proxy (no privileged
    // containers here), lower ulimits, small workers, and a real Prometheus that sees the
    // cluster's two agents as workers.
    let config = dir.join("config.yaml");
    let prom = PromServer::with_cluster(
        &Cluster::new()
            .control_plane(&k.container("server", 0))
            .worker(&k.container("agent", 0))
            .worker(&k.container("agent", 1)),
    );
    let mut c = Config::load(&config).unwrap();
    let kubeconfig = c.kubernetes.kubeconfig.clone().expect("k3d's kubeconfig");
    assert!(!kubeconfig.exists(), "no kubeconfig anywhere for this run");
    c.prometheus.url = prom.url();
    c.docker.host = Some(pool.docker_host());
    c.docker.ulimit_nofile = 4096;
    c.docker.ulimit_nproc = 4096;
    c.docker.cpus = 0.5;
    c.docker.memory = k3s_scale::config::units::Bytes(256 << 20);
    c.docker.stop_timeout = k3s_scale::config::units::Secs::from_secs(2);
    std::fs::write(&config, serde_saphyr::to_string(&c).unwrap()).unwrap();

    let up = |count: &str| {
        Run::from_output(
            k3s_scale(&pool.dir)
                .arg("--config")
                .arg(&config)
                .args(["up", "--count", count, "--output", "json"])
                .env("HOME", pool.path("no-home"))
                .output()
                .expect("run k3s-scale"),
        )
    };
    // 2 agents + 4 > max_nodes 5: refused, as ever.
    let refused = up("4");
    assert_eq!(refused.code, 2, "{refused:?}");
    let run = up("2");
    assert_eq!(
        run.code, 10,
        "up starts workers with no kubeconfig: {run:?}"
    );
    k.assert_no_token("up", &run);
    let workers = [format!("{}-1", k.pool()), format!("{}-2", k.pool())];
    let started: Vec<String> = run.json()["started"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(started, workers.to_vec());

    let agent = inspect("container", &k.container("agent", 0));
    for w in &workers {
        let got = inspect("container", w);
        let labels = got["Config"]["Labels"].as_object().unwrap();
        for key in K3D_NODE_LABELS {
            assert_eq!(
                labels.get(key),
                agent["Config"]["Labels"].get(key),
                "{w}: label {key} as on k3d's own agent"
            );
        }
        for key in K3D_LEFT_OUT {
            assert!(!labels.contains_key(key), "{w} carries {key}");
        }
        assert!(
            labels
                .values()
                .all(|v| !v.as_str().unwrap().contains(&k.token)),
            "{w}: the token is in a label"
        );
        assert_eq!(labels["io.k3s-scale.managed"], "true");
        assert_eq!(
            labels["io.k3s-scale.pool"].as_str(),
            Some(k.pool().as_str())
        );
        assert!(
            got["NetworkSettings"]["Networks"].get(&k.network).is_some(),
            "{w} is on {}",
            k.network
        );
        let env: Vec<&str> = got["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(env.contains(&format!("K3S_URL=https://k3d-{}-server-0:6443", k.name).as_str()));
        assert!(env.contains(&format!("K3S_TOKEN={}", k.token).as_str()));
        let vol = inspect("volume", &format!("{w}-data"));
        assert_eq!(vol["Labels"]["app"], "k3d");
        assert_eq!(vol["Labels"]["k3d.cluster"].as_str(), Some(k.name.as_str()));
    }
    // The create bodies asked for privileged workers (the proxy cleared it for this daemon).
    for body in pool.create_bodies() {
        assert_eq!(body["HostConfig"]["Privileged"], true);
    }

    // k3d's own queries (pkg/runtimes/docker/node.go getContainersByLabel): `k3d node list`
    // sees the workers as agents of the cluster.
    let listed = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "label=app=k3d",
        "--filter",
        &format!("label=k3d.cluster={}", k.name),
        "--filter",
        "label=k3d.role=agent",
        "--format",
        "{{.Names}}",
    ]);
    let mut want = vec![k.container("agent", 0), k.container("agent", 1)];
    want.extend(workers.iter().cloned());
    want.sort();
    assert_eq!(names(&listed), want);

    // k3s-scale itself still sees only its own workers: k3d's agents are not its pool's.
    let ours = DockerClient::connect(&c.docker, &DockerEnv::default())
        .unwrap()
        .list_workers()
        .unwrap();
    let mut ours: Vec<String> = ours.into_iter().map(|w| w.name).collect();
    ours.sort();
    assert_eq!(ours, workers.to_vec());

    // init again (--force): the workers look like k3d agents but are not made permanent.
    let again = k.init(&k.name, &dir, &["--force"]);
    assert_eq!(again.code, 0, "{again:?}");
    let c2 = Config::load(&config).unwrap();
    assert_eq!(
        c2.kubernetes.permanent_nodes,
        [k.container("agent", 0), k.container("agent", 1)]
    );

    // What `k3d cluster delete NAME` does (pkg/client/cluster.go ClusterDelete): remove the
    // nodes it finds by app=k3d and k3d.cluster, then the network (which fails while
    // anything is still attached), then the cluster's volumes by the same labels.
    let filter = format!("label=k3d.cluster={}", k.name);
    let nodes = docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        "label=app=k3d",
        "--filter",
        &filter,
    ]);
    for id in nodes.split_whitespace() {
        docker_ok(&["rm", "-f", "-v", id]);
    }
    docker_ok(&["network", "rm", &k.network]);
    let vols = docker_ok(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        "label=app=k3d",
        "--filter",
        &filter,
    ]);
    for v in vols.split_whitespace() {
        docker_ok(&["volume", "rm", v]);
    }
    let left = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.k3s-scale.pool={}", k.pool()),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(left, "", "workers left after the cluster's deletion");
    let left = docker_ok(&[
        "volume",
        "ls",
        "--filter",
        &format!("label=io.k3s-scale.pool={}", k.pool()),
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(left, "", "worker volumes left after the cluster's deletion");
}
