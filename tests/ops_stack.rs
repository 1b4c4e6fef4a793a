//! The compose stack checked statically and in parts (images cannot be pulled here):
//! the Compose file as `docker compose`/`docker-compose` read it, Prometheus's config and
//! rules as promtool reads them, Grafana's provisioning, the systemd units as
//! `systemd-analyze verify` reads them, and the cron entry.

mod ops_support;
mod support;

use k3s_scale::config::Config;
use ops_support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Compose implementations on this machine: `docker compose` (v2 plugin) and/or
/// `docker-compose` (v1, e.g. Debian's 1.29).
fn compose_tools() -> Vec<Vec<&'static str>> {
    let mut tools = Vec::new();
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if v2 {
        tools.push(vec!["docker", "compose"]);
    }
    if have("docker-compose") {
        tools.push(vec!["docker-compose"]);
    }
    tools
}

/// `<tool> --env-file ENV -f compose/docker-compose.yml config`, parsed.
fn compose_config(tool: &[&str], env_file: &Path) -> Value {
    let out = Command::new(tool[0])
        .args(&tool[1..])
        .arg("--env-file")
        .arg(env_file)
        .arg("-f")
        .arg(repo().join("compose/docker-compose.yml"))
        .arg("config")
        .output()
        .expect("run compose");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{tool:?} config failed:\n{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// (host_ip, published, target) of each published port, short or long syntax.
fn ports(svc: &Value) -> Vec<(String, String, String)> {
    let Some(list) = svc.get("ports").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|p| match p {
            Value::String(text) => {
                let text = text.split('/').next().unwrap();
                let parts: Vec<&str> = text.rsplitn(3, ':').collect();
                assert_eq!(parts.len(), 3, "port {text} binds no host address");
                (parts[2].into(), parts[1].into(), parts[0].into())
            }
            obj => (
                s(obj.get("host_ip").unwrap_or(&Value::Null)),
                s(&obj["published"]),
                s(&obj["target"]),
            ),
        })
        .collect()
}

/// (source, target, read_only) of each mount, short or long syntax.
fn volumes(svc: &Value) -> Vec<(String, String, bool)> {
    let Some(list) = svc.get("volumes").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|v| match v {
            Value::String(text) => {
                let parts: Vec<&str> = text.split(':').collect();
                (
                    parts[0].into(),
                    parts[1].into(),
                    parts
                        .get(2)
                        .is_some_and(|m| m.split(',').any(|x| x == "ro")),
                )
            }
            obj => (
                s(&obj["source"]),
                s(&obj["target"]),
                obj.get("read_only")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            ),
        })
        .collect()
}

/// The host path or volume name mounted at `target`.
fn mounted_at(svc: &Value, target: &str) -> Option<String> {
    volumes(svc)
        .into_iter()
        .find(|(_, t, _)| t == target)
        .map(|(src, _, _)| src)
}

/// The mount whose target is the longest prefix of `path`: (source, target).
fn mount_holding(svc: &Value, path: &str) -> Option<(String, String)> {
    volumes(svc)
        .into_iter()
        .filter(|(_, t, _)| path == t || path.starts_with(&format!("{t}/")))
        .max_by_key(|(_, t, _)| t.len())
        .map(|(src, t, _)| (src, t))
}

fn env(svc: &Value, key: &str) -> Option<String> {
    match svc.get("environment")? {
        Value::Object(m) => m.get(key).map(s),
        Value::Array(a) => a.iter().filter_map(Value::as_str).find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }),
        _ => None,
    }
}

fn command(svc: &Value) -> Vec<String> {
    match svc.get("command") {
        Some(Value::Array(a)) => a.iter().map(s).collect(),
        Some(Value::String(t)) => t.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

fn flag_value(cmd: &[String], flag: &str) -> Option<String> {
    cmd.iter()
        .find_map(|a| a.strip_prefix(&format!("{flag}=")).map(str::to_string))
}

fn compose_dir() -> PathBuf {
    repo().join("compose").canonicalize().unwrap()
}

fn host_path(rel: &str) -> String {
    compose_dir().join(rel).display().to_string()
}

fn stack_config() -> Config {
    Config::parse(&read_repo("compose/k3s-scale/config.yaml")).expect("compose k3s-scale config")
}

fn check_stack(c: &Value, bind: &str, grafana_port: &str) {
    let svcs = &c["services"];
    let cfg = stack_config();

    // Every image pinned to a version; k3s-scale is built from this repository.
    for (name, svc) in svcs.as_object().unwrap() {
        if svc.get("build").is_some() {
            let ctx = s(&svc["build"]["context"]);
            assert_eq!(
                Path::new(&ctx).canonicalize().unwrap(),
                repo().canonicalize().unwrap(),
                "{name}: builds from the repository root"
            );
            continue;
        }
        let image = s(&svc["image"]);
        let (_, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{name}: {image} untagged"));
        assert!(
            tag != "latest" && tag.chars().any(|ch| ch.is_ascii_digit()),
            "{name}: {image} is not pinned"
        );
    }

    // k3s nodes: privileged, tmpfs /run and /var/run, the token from the secret file only.
    let token = host_path("secrets/k3s-token");
    for name in ["k3s-server", "k3s-agent-1", "k3s-agent-2"] {
        let svc = &svcs[name];
        assert_eq!(svc["privileged"], Value::Bool(true), "{name}");
        let tmpfs: Vec<String> = svc["tmpfs"].as_array().unwrap().iter().map(s).collect();
        for t in ["/run", "/var/run"] {
            assert!(
                tmpfs.iter().any(|x| x.split(':').next() == Some(t)),
                "{name}: tmpfs {t}"
            );
        }
        assert!(svc["ulimits"].get("nproc").is_some() && svc["ulimits"].get("nofile").is_some());
        assert!(
            env(svc, "K3S_TOKEN").is_none(),
            "{name}: no token in the environment"
        );
        let token_file = env(svc, "K3S_TOKEN_FILE").expect("K3S_TOKEN_FILE");
        assert_eq!(
            mounted_at(svc, &token_file).as_deref(),
            Some(token.as_str()),
            "{name}"
        );
    }
    let server = &svcs["k3s-server"];
    let cmd = command(server);
    assert_eq!(cmd[0], "server");
    assert!(cmd.contains(&"--tls-san=k3s-server".to_string()), "{cmd:?}");
    let out = env(server, "K3S_KUBECONFIG_OUTPUT").unwrap();
    let (src, _) = mount_holding(server, &out).expect("kubeconfig output is mounted");
    assert_eq!(src, host_path("kubeconfig"));
    assert_eq!(env(server, "K3S_KUBECONFIG_MODE").as_deref(), Some("644"));
    let kubeconfig_name = Path::new(&out)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    // The two permanent agents: joined to the server, and permanent in k3s-scale's config.
    for name in ["k3s-agent-1", "k3s-agent-2"] {
        let svc = &svcs[name];
        assert_eq!(command(svc), vec!["agent".to_string()]);
        // Sized like k3s-scale's workers, the rest of the host reserved from the kubelet,
        // so the demo's allocatable is each container's share (issue 13's quick start).
        assert_eq!(svc["cpus"].as_f64(), Some(cfg.docker.cpus), "{name}: {svc}");
        let mem = &svc["mem_limit"];
        // "2g" as written, or bytes as Compose v2 prints it.
        let mem = mem.as_u64().or_else(|| {
            mem.as_str()
                .and_then(|m| k3s_scale::config::units::parse_bytes(m).ok())
        });
        assert_eq!(mem, Some(cfg.docker.memory.0), "{name}: {svc}");
        // Compose v1 prints the file's `$$` escapes as they are; v2 unescaped.
        let entry = svc["entrypoint"].to_string().replace("$$", "$");
        assert!(
            entry.contains("--kubelet-arg=system-reserved=cpu=${cpu}m,memory=${mem}")
                && entry.contains("exec /bin/k3s"),
            "{name}: {entry}"
        );
        assert_eq!(
            env(svc, "K3S_URL").as_deref(),
            Some("https://k3s-server:6443")
        );
        assert_eq!(env(svc, "K3S_NODE_NAME").as_deref(), Some(name));
        assert!(
            cfg.kubernetes.permanent_nodes.contains(&name.to_string()),
            "{name}"
        );
    }
    assert_eq!(
        cfg.limits.min_nodes, 2,
        "the two permanent agents are the floor"
    );

    // Published ports: 6443, 9090, 3000 (or as the env file says), on the chosen address.
    let mut published: Vec<(String, String)> = Vec::new();
    for (name, svc) in svcs.as_object().unwrap() {
        for (ip, host, target) in ports(svc) {
            assert_eq!(ip, bind, "{name}: port {target} binds {ip}");
            published.push((name.clone(), format!("{host}->{target}")));
        }
    }
    published.sort();
    assert_eq!(
        published,
        vec![
            ("grafana".to_string(), format!("{grafana_port}->3000")),
            ("k3s-server".to_string(), "6443->6443".to_string()),
            ("prometheus".to_string(), "9090->9090".to_string()),
        ]
    );

    // kube-state-metrics reads k3s's kubeconfig and reaches the server by its compose name.
    let ksm = &svcs["kube-state-metrics"];
    let kcmd = command(ksm);
    let kpath = flag_value(&kcmd, "--kubeconfig").unwrap();
    let (src, target) = mount_holding(ksm, &kpath).unwrap();
    assert_eq!(src, host_path("kubeconfig"));
    assert_eq!(kpath, format!("{target}/{kubeconfig_name}"));
    assert_eq!(
        flag_value(&kcmd, "--apiserver").as_deref(),
        Some("https://k3s-server:6443")
    );
    let ksm_port = flag_value(&kcmd, "--port").unwrap();

    // node-exporter's textfile folder is the volume k3s-scale writes metrics.textfile into.
    let ne = &svcs["node-exporter"];
    let dir = flag_value(&command(ne), "--collector.textfile.directory").unwrap();
    let volume = mounted_at(ne, &dir).expect("textfile folder mounted");
    assert!(
        c["volumes"].get(&volume).is_some(),
        "{volume} is a named volume"
    );
    let textfile = cfg.metrics.textfile.clone().expect("metrics.textfile set");
    assert!(
        textfile.extension().is_some_and(|e| e == "prom"),
        "the collector reads *.prom"
    );
    let ks = &svcs["k3s-scale"];
    assert_eq!(
        mounted_at(ks, textfile.parent().unwrap().to_str().unwrap()).as_deref(),
        Some(volume.as_str())
    );

    // Prometheus gets its config and rules; its scrape targets are these services.
    let prom = &svcs["prometheus"];
    assert_eq!(
        mounted_at(prom, "/etc/prometheus/prometheus.yml"),
        Some(host_path("prometheus/prometheus.yml"))
    );
    assert_eq!(
        mounted_at(prom, "/etc/prometheus/alerts.yml"),
        Some(host_path("prometheus/alerts.yml"))
    );
    let pcfg: Value =
        serde_saphyr::from_str(&read_repo("compose/prometheus/prometheus.yml")).unwrap();
    let targets: Vec<String> = pcfg["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|j| j["static_configs"].as_array().unwrap().clone())
        .flat_map(|sc| sc["targets"].as_array().unwrap().clone())
        .map(|t| s(&t))
        .collect();
    assert!(
        targets.contains(&format!("kube-state-metrics:{ksm_port}")),
        "{targets:?}"
    );
    assert!(
        targets.contains(&"node-exporter:9100".to_string()),
        "{targets:?}"
    );

    // Grafana: the dashboard provider's path is a mount that really holds the dashboard.
    let graf = &svcs["grafana"];
    assert_eq!(
        mounted_at(graf, "/etc/grafana/provisioning"),
        Some(host_path("grafana/provisioning"))
    );
    let provider: Value = serde_saphyr::from_str(&read_repo(
        "compose/grafana/provisioning/dashboards/k3s-scale.yml",
    ))
    .unwrap();
    let ppath = s(&provider["providers"][0]["options"]["path"]);
    let src = mounted_at(graf, &ppath).expect("the provider path is mounted");
    assert!(
        Path::new(&src).join("k3s-scale.json").is_file(),
        "{src} (mounted at {ppath}) holds no k3s-scale.json"
    );

    // k3s-scale: Docker socket, config, token, state volume, kubeconfig source.
    assert_eq!(
        mounted_at(ks, "/var/run/docker.sock").as_deref(),
        Some("/var/run/docker.sock")
    );
    let cpath = env(ks, "K3S_SCALE_CONFIG").unwrap();
    assert_eq!(
        mounted_at(ks, &cpath),
        Some(host_path("k3s-scale/config.yaml"))
    );
    let tf = cfg.docker.token_file.clone().unwrap();
    assert_eq!(mounted_at(ks, tf.to_str().unwrap()), Some(token.clone()));
    let state_dir = cfg
        .state
        .path
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let state_vol = mounted_at(ks, &state_dir).expect("state folder mounted");
    assert!(
        c["volumes"].get(&state_vol).is_some(),
        "state survives restarts in a volume"
    );
    assert_eq!(
        cfg.state.lock_path.parent().unwrap().to_str().unwrap(),
        state_dir
    );
    // k3s-scale reaches the API as its ServiceAccount (deploy/rbac.yaml, applied by k3s
    // from its manifests folder): its kubeconfig comes from a volume that only it and the
    // service writing it mount; the admin kubeconfig folder is not mounted in k3s-scale.
    let src_kc = env(ks, "K3S_SCALE_KUBECONFIG_SOURCE").unwrap();
    let (kc_vol, kc_dir) = mount_holding(ks, &src_kc).unwrap();
    assert!(
        c["volumes"].get(&kc_vol).is_some(),
        "{kc_vol} is a named volume"
    );
    assert!(
        volumes(ks)
            .iter()
            .all(|(src, _, _)| *src != host_path("kubeconfig")),
        "no admin kubeconfig in k3s-scale"
    );
    let maker = &svcs["k3s-scale-kubeconfig"];
    let (maker_src, maker_dir) = mount_holding(maker, "/out/k3s-scale.yaml").unwrap();
    assert_eq!(maker_src, kc_vol);
    assert_eq!(
        Path::new(&src_kc).strip_prefix(&kc_dir).unwrap(),
        Path::new("/out/k3s-scale.yaml")
            .strip_prefix(&maker_dir)
            .unwrap()
    );
    assert_eq!(
        mounted_at(maker, "/make-kubeconfig"),
        Some(host_path("k3s-scale/make-kubeconfig"))
    );
    assert_eq!(mounted_at(maker, "/admin"), Some(host_path("kubeconfig")));
    assert!(
        read_repo("compose/k3s-scale/make-kubeconfig")
            .contains(&format!("admin=/admin/{kubeconfig_name}")),
        "the script reads the kubeconfig k3s writes"
    );
    assert_eq!(
        mounted_at(
            server,
            "/var/lib/rancher/k3s/server/manifests/k3s-scale-rbac.yaml"
        ),
        Some(
            repo()
                .join("deploy/rbac.yaml")
                .canonicalize()
                .unwrap()
                .display()
                .to_string()
        ),
        "k3s applies the RBAC manifest"
    );
    let kc = cfg.kubernetes.kubeconfig.clone().unwrap();
    let tmpfs: Vec<String> = ks["tmpfs"].as_array().unwrap().iter().map(s).collect();
    assert!(
        tmpfs
            .iter()
            .any(|t| kc.starts_with(t.split(':').next().unwrap())),
        "{kc:?} lives on a tmpfs ({tmpfs:?})"
    );
    assert_eq!(
        env(ks, "K3S_SCALE_API_SERVER").as_deref(),
        Some("https://k3s-server:6443")
    );
    assert_eq!(cfg.docker.server_url, "https://k3s-server:6443");
    assert!(cfg.prometheus.url.starts_with("http://prometheus:9090"));
    assert!(svcs.get("prometheus").is_some());

    // Workers that k3s-scale starts join the network the stack runs on, by name.
    assert_eq!(s(&c["networks"]["k3s"]["name"]), cfg.docker.network);
}

#[test]
fn compose_file_parses_and_wires_the_stack_together() {
    let tools = compose_tools();
    if tools.is_empty() {
        eprintln!("NOTE: neither `docker compose` nor `docker-compose` is installed; skipped");
        return;
    }
    let dir = TempDir::new("compose-env");
    let empty = dir.join("empty.env");
    std::fs::write(&empty, "").unwrap();
    let exposed = dir.join("exposed.env");
    std::fs::write(&exposed, "K3S_SCALE_BIND=0.0.0.0\nGRAFANA_PORT=3300\n").unwrap();
    for tool in &tools {
        eprintln!("checking with {tool:?}");
        check_stack(&compose_config(tool, &empty), "127.0.0.1", "3000");
        check_stack(
            &compose_config(tool, &repo().join("compose/.env.example")),
            "127.0.0.1",
            "3000",
        );
        check_stack(&compose_config(tool, &exposed), "0.0.0.0", "3300");
    }
}

#[test]
fn no_secret_or_kubeconfig_is_committed() {
    let out = Command::new("git")
        .args([
            "ls-files",
            "compose/secrets",
            "compose/kubeconfig",
            "compose/.env",
        ])
        .current_dir(repo())
        .output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        eprintln!("NOTE: not a git checkout; skipped");
        return;
    };
    let files = String::from_utf8(out.stdout).unwrap();
    let mut files: Vec<&str> = files.lines().collect();
    files.sort();
    assert_eq!(
        files,
        vec!["compose/kubeconfig/.gitkeep", "compose/secrets/.gitkeep"]
    );
    for f in [
        "compose/docker-compose.yml",
        "compose/.env.example",
        "compose/k3s-scale/config.yaml",
    ] {
        let text = read_repo(f);
        assert!(!text.contains("K3S_TOKEN="), "{f} sets a token");
        assert!(!text.contains("K3S_TOKEN:"), "{f} sets a token");
    }
}

#[test]
fn prometheus_config_and_rules_pass_promtool() {
    let dir = repo().join("compose/prometheus");
    let out = Command::new("promtool")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 rule files found"),
        "the rules are loaded: {text}"
    );
    let out = Command::new("promtool")
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn grafana_datasource_is_the_one_the_dashboard_uses() {
    let ds: Value = serde_saphyr::from_str(&read_repo(
        "compose/grafana/provisioning/datasources/prometheus.yml",
    ))
    .unwrap();
    let ds = &ds["datasources"][0];
    assert_eq!(s(&ds["type"]), "prometheus");
    assert_eq!(s(&ds["url"]), "http://prometheus:9090");
    let uid = s(&ds["uid"]);
    let dash: Value =
        serde_json::from_str(&read_repo("compose/grafana/dashboards/k3s-scale.json")).unwrap();
    let mut refs = Vec::new();
    fn walk(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Object(m) => {
                if let Some(d) = m.get("datasource") {
                    out.push(d.clone());
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&dash, &mut refs);
    assert!(refs.len() > 20, "panels and targets name their datasource");
    for r in refs {
        if r["type"] == "grafana" {
            continue; // the built-in annotation source
        }
        assert_eq!(s(&r["type"]), "prometheus", "{r}");
        assert_eq!(s(&r["uid"]), uid, "{r}");
    }
}

fn unit(name: &str) -> String {
    read_repo(&format!("systemd/{name}"))
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l.trim() == line)
}

#[test]
fn systemd_units_say_what_the_readme_promises() {
    let svc = unit("k3s-scale.service");
    for line in [
        "Type=oneshot",
        "ExecStart=/usr/local/bin/k3s-scale --config /etc/k3s-scale/config.yaml evaluate",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "SuccessExitStatus=8 10 11",
        // A stopped run finishes its call in flight and saves (issue 23 point 6).
        "TimeoutStopSec=90s",
    ] {
        assert!(has_line(&svc, line), "k3s-scale.service lacks {line}");
    }
    let rw = svc
        .lines()
        .find_map(|l| l.strip_prefix("ReadWritePaths="))
        .expect("ReadWritePaths");
    let rw: Vec<&str> = rw
        .split_whitespace()
        .map(|p| p.trim_start_matches('-'))
        .collect();
    let defaults = default_config();
    for needed in [
        defaults.state.path.parent().unwrap(),
        defaults.state.lock_path.parent().unwrap(),
        Path::new("/var/lib/node-exporter/textfile"),
    ] {
        assert!(
            rw.contains(&needed.to_str().unwrap()),
            "{needed:?} not in {rw:?}"
        );
    }
    assert!(
        svc.contains("Docker-socket") && svc.contains("root"),
        "says what the socket implies"
    );
    let timer = unit("k3s-scale.timer");
    for line in [
        "OnBootSec=30s",
        "OnUnitActiveSec=30s",
        "AccuracySec=1s",
        "Unit=k3s-scale.service",
        "WantedBy=timers.target",
    ] {
        assert!(has_line(&timer, line), "k3s-scale.timer lacks {line}");
    }
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        eprintln!("NOTE: systemd-analyze is not installed; `verify` skipped");
        return;
    }
    // verify insists that ExecStart's binary exists: point it at the one cargo built.
    let dir = TempDir::new("systemd");
    let bin = support::BIN;
    let svc = unit("k3s-scale.service").replace("/usr/local/bin/k3s-scale", bin);
    std::fs::write(dir.join("k3s-scale.service"), svc).unwrap();
    std::fs::write(dir.join("k3s-scale.timer"), unit("k3s-scale.timer")).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("k3s-scale.service"))
        .arg(dir.join("k3s-scale.timer"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // Unknown keys and bad values are only warnings: any about our units is a failure.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("k3s-scale")).collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze warns:\n{}",
        ours.join("\n")
    );

    // The check itself catches a typo (so the assertion above can fail).
    let bad = unit("k3s-scale.service")
        .replace("/usr/local/bin/k3s-scale", bin)
        .replace("ProtectHome=yes", "ProtectHom=yes");
    std::fs::write(dir.join("k3s-scale.service"), bad).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("k3s-scale.service"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("ProtectHom"));
}

#[test]
fn cron_entry_runs_every_30_seconds_into_syslog() {
    let text = read_repo("cron/k3s-scale");
    let jobs: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
        .collect();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let cmd = "k3s-scale --config /etc/k3s-scale/config.yaml evaluate 2>&1 | logger -t k3s-scale";
    assert_eq!(jobs[0], format!("* * * * * root {cmd}"));
    assert_eq!(jobs[1], format!("* * * * * root sleep 30 && {cmd}"));
    // The command part is valid sh.
    for job in jobs {
        let command = job.splitn(7, ' ').nth(6).unwrap();
        let ok = Command::new("sh")
            .args(["-n", "-c", command])
            .status()
            .unwrap();
        assert!(ok.success(), "{command}");
    }
}
