//! Security: the join token, the Prometheus credentials (bearer token file, basic-auth
//! password file) and the kubeconfig's user token never appear in logs (-vvv with
//! RUST_LOG=trace, text and JSON), stdout, the state file, the metrics textfile, Docker
//! labels or command of the workers, or the process's arguments; the files k3s-scale makes
//! get restrictive modes even under umask 000; world-writable config and secret files are
//! refused (exit 2); TLS is verified by default for Prometheus and the apiserver, with CA
//! options; no process is ever spawned from src/; names from the config are validated
//! before any outside call; no link or loose folder makes a run write through or into
//! something else (issue 17), and odd or fuzzed own-file paths give a clear error. Each
//! test prints what it checked.

#[path = "support/docker.rs"]
mod docker_support;
mod hardening_support;
mod support;

use docker_support::{inspect, write_file};
use hardening_support::{
    BIN, ChildGuard, DockerFaults, HttpProxy, Knobs, LiveProm, Rig, Rng, bin, idle_cluster,
    pending_cluster, run,
};
use k3s_scale::state::State;
use k3s_scale::state::time::Timestamp;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::Run;

/// Where a secret must not show: its text, or any 8 characters in a row of its random part
/// (a hex dump or a wrapped line splits a secret; 8 random characters do not occur by
/// chance, while words such as "password" do).
fn leaks(secret: &str, haystack: &str) -> bool {
    if haystack.contains(secret) {
        return true;
    }
    secret.split([':', '-']).any(|part| {
        let chars: Vec<char> = part.chars().collect();
        chars.len() >= 16
            && chars
                .windows(8)
                .any(|w| haystack.contains(&w.iter().collect::<String>()))
    })
}

/// `n` random letters and digits.
fn random_text(rng: &mut Rng, n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..n)
        .map(|_| ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn assert_no_secret(secrets: &[(&str, &str)], place: &str, text: &str) {
    for (what, s) in secrets {
        assert!(!leaks(s, text), "the {what} leaked into {place}:\n{text}");
    }
}

/// A kubeconfig for `server` whose user authenticates with `token`.
fn kubeconfig(path: &Path, server: &str, token: &str, ca: Option<&Path>) {
    let ca = ca
        .map(|p| format!("    certificate-authority: {}\n", p.display()))
        .unwrap_or_default();
    write_file(
        path,
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n{ca}\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n\
             users:\n- name: u\n  user:\n    token: {token}\n"
        ),
        0o600,
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Runs the binary under `umask 000` (through sh, in the test only), JSON logs at every
/// level; samples /proc/<pid>/cmdline while it runs.
fn run_logged(cfg: &Path, args: &[&str], json_logs: bool) -> (Run, String) {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(BIN)
        .arg("--config")
        .arg(cfg)
        .arg("-vvv");
    if json_logs {
        cmd.args(["--log-format", "json"]);
    }
    cmd.args(args)
        .env("RUST_LOG", "trace")
        .env_remove("K3S_TOKEN")
        .env_remove("KUBECONFIG")
        .env_remove("DOCKER_HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    let pid = child.id();
    // The run waits on a slow Prometheus: its arguments are readable meanwhile.
    let mut cmdline = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(b) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let text = String::from_utf8_lossy(&b).replace('\0', " ");
            if text.contains("evaluate") || text.contains("drain") {
                cmdline = text;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("wait");
    (Run::from_output(out), cmdline)
}

#[test]
fn secrets_never_reach_logs_output_state_metrics_labels_or_arguments() {
    let mut rig = Rig::new();
    let mut rng = Rng::from_env();
    // A k3s join token has this shape: K10<CA hash>::server:<password>.
    rig.token = format!(
        "K10{}::server:{}",
        random_text(&mut rng, 32),
        random_text(&mut rng, 24)
    );
    let bearer = random_text(&mut rng, 24);
    let password = random_text(&mut rng, 24);
    let kube_token = random_text(&mut rng, 24);
    let (bearer, password, kube_token) = (bearer.as_str(), password.as_str(), kube_token.as_str());
    let secrets = [
        ("join token", rig.token.clone()),
        ("bearer token", bearer.to_string()),
        ("basic-auth password", password.to_string()),
        ("kubeconfig token", kube_token.to_string()),
    ];
    let secrets: Vec<(&str, &str)> = secrets.iter().map(|(w, s)| (*w, s.as_str())).collect();
    write_file(&rig.pool.dir.join("bearer"), &format!("{bearer}\n"), 0o600);
    write_file(
        &rig.pool.dir.join("password"),
        &format!("{password}\n"),
        0o600,
    );
    // The stand-in behind a recording proxy, reached with the token.
    let api_proxy = HttpProxy::start(rig.api.url().trim_start_matches("http://"), Duration::ZERO);
    let kc = rig.pool.dir.join("kubeconfig");
    kubeconfig(&kc, &api_proxy.url(), kube_token, None);
    let mut checked = Vec::new();

    // 1. A scale-up: bearer token, JSON logs.
    let pending = LiveProm::start(pending_cluster());
    rig.lists(&pending_cluster());
    let prom = HttpProxy::start(&pending.addr(), Duration::from_millis(300));
    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        prom_extra: format!(
            "  bearer_token_file: {}\n",
            rig.pool.dir.join("bearer").display()
        ),
        kubeconfig: Some(kc.clone()),
        ..Knobs::default()
    });
    let (r, cmdline) = run_logged(&cfg, &["evaluate", "--output", "json"], true);
    assert_eq!(r.code, 10, "{r:?}");
    // Logging was on at every level: k3s-scale's own debug lines and its clients' lines.
    let levels = |target: &str, level: &str| {
        r.stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| {
                v["level"] == level && v["target"].as_str().unwrap_or("").starts_with(target)
            })
            .count()
    };
    assert!(levels("k3s_scale", "DEBUG") > 0, "{}", r.stderr);
    assert!(levels("ureq", "DEBUG") > 0, "{}", r.stderr);
    println!(
        "security: JSON log of the scale-up run at -vvv, RUST_LOG=trace: {} lines",
        r.stderr.lines().count()
    );
    assert!(
        r.stderr
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "JSON logs"
    );
    // The secrets were used: otherwise their absence proves nothing.
    let auth = prom.requests()[0].header("authorization");
    assert_eq!(auth.as_deref(), Some(&*format!("Bearer {bearer}")));
    assert!(
        api_proxy
            .requests()
            .iter()
            .all(|s| s.header("authorization").as_deref() == Some(&*format!("Bearer {kube_token}"))),
        "the kube client authenticates with the kubeconfig token"
    );
    let worker = rig.worker(1);
    let c = inspect("container", &worker);
    let env: Vec<String> = serde_json::from_value(c["Config"]["Env"].clone()).unwrap();
    assert!(
        env.contains(&format!("K3S_TOKEN={}", rig.token)),
        "the join token goes to the worker's environment, its one place"
    );
    assert!(!cmdline.is_empty(), "read the running process's arguments");
    let places = [
        ("stdout", r.stdout.clone()),
        ("stderr (-vvv, RUST_LOG=trace, JSON)", r.stderr.clone()),
        ("/proc/<pid>/cmdline", cmdline),
        (
            "the state file",
            std::fs::read_to_string(rig.state_path()).unwrap(),
        ),
        (
            "the metrics textfile",
            std::fs::read_to_string(rig.metrics_path()).unwrap(),
        ),
        ("the worker's labels", c["Config"]["Labels"].to_string()),
        ("the worker's command", c["Config"]["Cmd"].to_string()),
        (
            "the worker's entrypoint",
            c["Config"]["Entrypoint"].to_string(),
        ),
        (
            "the worker volume's labels",
            inspect("volume", &format!("{worker}-data"))["Labels"].to_string(),
        ),
    ];
    for (place, text) in &places {
        assert_no_secret(&secrets, place, text);
        checked.push(place.to_string());
    }
    // Made under umask 000: the modes are k3s-scale's own.
    assert_eq!(mode(&rig.state_path()), 0o600, "state");
    assert_eq!(mode(&rig.lock_path()), 0o600, "lock");
    assert_eq!(
        mode(&rig.metrics_path()) & 0o022,
        0,
        "metrics not group/world-writable"
    );
    assert_eq!(
        mode(&rig.metrics_path()),
        0o644,
        "metrics readable by node-exporter"
    );
    println!(
        "security: file modes under umask 000: state {:o}, lock {:o}, metrics {:o}",
        mode(&rig.state_path()),
        mode(&rig.lock_path()),
        mode(&rig.metrics_path())
    );

    // 2. A scale-down with a drain: basic auth, text logs, every Kubernetes call at trace.
    rig.clear_docker();
    rig.fresh_dir();
    rig.run_worker_container(1);
    rig.add_worker_node(&worker);
    rig.add_pods(&worker, 2, Duration::from_millis(50));
    rig.write_state(&State {
        low_since: Some(Timestamp::from_millis(
            Timestamp::now().as_millis() - 3_600_000,
        )),
        next_worker_index: 2,
        ..State::fresh()
    });
    let idle = LiveProm::start(idle_cluster(&worker));
    let prom = HttpProxy::start(&idle.addr(), Duration::from_millis(300));
    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        prom_extra: format!(
            "  basic_auth:\n    username: k3s-scale\n    password_file: {}\n",
            rig.pool.dir.join("password").display()
        ),
        kubeconfig: Some(kc.clone()),
        ..Knobs::default()
    });
    let (r, cmdline) = run_logged(&cfg, &["evaluate"], false);
    assert_eq!(r.code, 11, "{r:?}");
    let auth = prom.requests()[0].header("authorization").unwrap();
    assert!(auth.starts_with("Basic "), "{auth}");
    assert!(api_proxy.count() > 5, "the drain went through the API");
    for (place, text) in [
        ("stdout", r.stdout.clone()),
        ("stderr (-vvv, RUST_LOG=trace, text)", r.stderr.clone()),
        ("/proc/<pid>/cmdline (drain run)", cmdline),
        (
            "the state file (drain run)",
            std::fs::read_to_string(rig.state_path()).unwrap(),
        ),
        (
            "the metrics textfile (drain run)",
            std::fs::read_to_string(rig.metrics_path()).unwrap(),
        ),
    ] {
        assert_no_secret(&secrets, place, &text);
        checked.push(place.to_string());
    }
    println!(
        "security: {} secrets (join token, bearer token, basic-auth password, kubeconfig token) absent from {} places: {}",
        secrets.len(),
        checked.len(),
        checked.join("; ")
    );
}

#[test]
fn world_writable_config_and_secret_files_are_refused_with_exit_2() {
    let mut rig = Rig::new();
    let prom = HttpProxy::start("127.0.0.1:9", Duration::ZERO);
    let mut cases = Vec::new();

    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        ..Knobs::default()
    });
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
    for args in [&["evaluate"][..], &["config", "check"]] {
        let r = run(&cfg, args);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(
            r.stderr.contains("world-writable") && r.stderr.contains("chmod o-w"),
            "{r:?}"
        );
        cases.push(format!("config file 0666 ({})", args.join(" ")));
    }

    // The join token is read when Docker is first needed: a run that gets that far.
    let pending = LiveProm::start(pending_cluster());
    rig.lists(&pending_cluster());
    let cfg = rig.config(&Knobs {
        prom_url: pending.url(),
        token_file_mode: 0o666,
        ..Knobs::default()
    });
    for args in [&["evaluate"][..], &["up", "--count", "1"]] {
        let r = run(&cfg, args);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(
            r.stdout.contains("world-writable")
                && r.stdout.contains("docker.token_file")
                && r.stdout.contains(&rig.token_path().display().to_string()),
            "{r:?}"
        );
        assert!(!r.stdout.contains(&rig.token) && !r.stderr.contains(&rig.token));
        assert!(rig.containers().is_empty());
        cases.push(format!("join token file 0666 ({})", args.join(" ")));
    }

    for (what, extra, file) in [
        ("bearer token file", "  bearer_token_file: {f}\n", "bearer"),
        (
            "basic-auth password file",
            "  basic_auth:\n    username: u\n    password_file: {f}\n",
            "password",
        ),
    ] {
        let f = rig.pool.dir.join(file);
        write_file(&f, "s3cret-value\n", 0o666);
        let cfg = rig.config(&Knobs {
            prom_url: prom.url(),
            prom_extra: extra.replace("{f}", &f.display().to_string()),
            ..Knobs::default()
        });
        let r = run(&cfg, &["evaluate"]);
        assert_eq!(r.code, 2, "{what}: {r:?}");
        assert!(r.stderr.contains("world-writable"), "{what}: {r:?}");
        assert!(
            r.stderr.contains(&f.display().to_string()),
            "{what}: names it"
        );
        assert!(!r.stderr.contains("s3cret-value"), "{what}");
        assert_eq!(prom.count(), 0, "{what}: no query sent");
        cases.push(format!("{what} 0666 (evaluate)"));
    }

    // The CA file too: a writable CA lets anyone answer for Prometheus.
    let ca = rig.pool.dir.join("ca.pem");
    write_file(&ca, "not read\n", 0o666);
    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        prom_extra: format!("  ca_file: {}\n", ca.display()),
        ..Knobs::default()
    });
    let r = run(&cfg, &["evaluate"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("world-writable") && r.stderr.contains(&ca.display().to_string()),
        "{r:?}"
    );
    assert_eq!(prom.count(), 0, "CA: no query sent");
    cases.push("prometheus.ca_file 0666 (evaluate)".into());

    // Judged on the file opened, not on the link (a link's own mode is always 0777): a
    // link to a world-writable file is refused, a link to a 0600 file is read.
    let links = rig.pool.dir.join("links");
    std::fs::create_dir_all(&links).unwrap();
    let good = rig.config(&Knobs {
        prom_url: prom.url(),
        ..Knobs::default()
    });
    let loose = links.join("loose-config.yaml");
    write_file(&loose, &std::fs::read_to_string(&good).unwrap(), 0o666);
    for (target, code) in [(&loose, 2), (&good, 0)] {
        let link = links.join(format!("config-link-{code}.yaml"));
        std::os::unix::fs::symlink(target, &link).unwrap();
        let r = run(&link, &["config", "check"]);
        assert_eq!(r.code, code, "config link to {}: {r:?}", target.display());
        if code == 2 {
            assert!(
                r.stderr.contains("world-writable")
                    && r.stderr.contains(&link.display().to_string()),
                "{r:?}"
            );
        }
    }
    cases.push("config through a link: to a 0666 file exit 2, to a 0600 file read".into());
    let loose_bearer = links.join("loose-bearer");
    let tight_bearer = links.join("tight-bearer");
    write_file(&loose_bearer, "s3cret-loose\n", 0o666);
    write_file(&tight_bearer, "s3cret-tight\n", 0o600);
    for (target, code) in [(&loose_bearer, 2), (&tight_bearer, 4)] {
        let link = links.join(format!("bearer-link-{code}"));
        std::os::unix::fs::symlink(target, &link).unwrap();
        let cfg = rig.config(&Knobs {
            prom_url: prom.url(),
            prom_extra: format!("  bearer_token_file: {}\n", link.display()),
            ..Knobs::default()
        });
        let before = prom.count();
        let r = run(&cfg, &["evaluate"]);
        assert_eq!(r.code, code, "bearer link to {}: {r:?}", target.display());
        if code == 2 {
            assert!(r.stderr.contains("world-writable"), "{r:?}");
            assert_eq!(prom.count(), before, "no query sent");
        } else {
            // Read through the link: the query went out with the token (and Prometheus
            // behind the proxy is down, hence exit 4).
            let auth = prom.requests().last().unwrap().header("authorization");
            assert_eq!(auth.as_deref(), Some("Bearer s3cret-tight"));
        }
    }
    cases.push(
        "bearer token file through a link: to a 0666 file exit 2, to a 0600 file used".into(),
    );
    let token_target = links.join("loose-token");
    write_file(&token_target, &format!("{}\n", rig.token), 0o666);
    let pending = LiveProm::start(pending_cluster());
    rig.lists(&pending_cluster());
    let cfg = rig.config(&Knobs {
        prom_url: pending.url(),
        ..Knobs::default()
    });
    std::fs::remove_file(rig.token_path()).unwrap();
    std::os::unix::fs::symlink(&token_target, rig.token_path()).unwrap();
    let r = run(&cfg, &["evaluate"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("world-writable")
            && r.stdout.contains(&rig.token_path().display().to_string()),
        "{r:?}"
    );
    assert!(rig.containers().is_empty());
    std::fs::remove_file(rig.token_path()).unwrap();
    cases.push("join token file through a link to a 0666 file (evaluate)".into());
    println!(
        "security: refused with exit 2 and a message saying world-writable: {}",
        cases.join("; ")
    );
}

// ---------------------------------------------------------------------------------------
// TLS: certificates made with openssl; `openssl s_server` terminates TLS and the test
// bridges its one connection's plain text to the real server behind.

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}); the TLS tests need it"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ca.pem (a self-signed CA) and server.pem/server.key for 127.0.0.1 signed by it.
fn make_certs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=k3s-scale-test-ca",
            "-days",
            "1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ],
    );
}

/// Whether something listens on 127.0.0.1:port (from /proc/net/tcp, without connecting:
/// a probe connection would use up the server's one accept).
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
}

/// `openssl s_server` on 127.0.0.1 with the test certificate. `upstream`: bridge its one
/// connection's first request to this plain HTTP server and send back the answer; None:
/// accept connections forever and answer nothing (enough for a handshake to fail).
struct TlsServer {
    child: ChildGuard,
    port: u16,
    bridge: Option<JoinHandle<()>>,
}

impl TlsServer {
    fn start(certs: &Path, upstream: Option<String>) -> TlsServer {
        let port = support::free_port();
        let mut cmd = Command::new("openssl");
        cmd.current_dir(certs)
            .args([
                "s_server",
                "-quiet",
                "-cert",
                "server.pem",
                "-key",
                "server.key",
            ])
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if upstream.is_some() {
            cmd.args(["-naccept", "1"]);
        }
        let mut child: Child = cmd.spawn().expect("start openssl s_server");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let bridge = upstream.map(|up| std::thread::spawn(move || bridge_one(stdout, stdin, &up)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listening(port) {
            assert!(Instant::now() < deadline, "openssl s_server did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        TlsServer {
            child: ChildGuard::new(child),
            port,
            bridge,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(b) = self.bridge.take() {
            let _ = b.join();
        }
    }
}

/// Reads one HTTP request off s_server's stdout, forwards it to `upstream` (plain HTTP,
/// `Connection: close`), writes the answer to s_server's stdin and closes it.
fn bridge_one(
    stdout: std::process::ChildStdout,
    mut stdin: std::process::ChildStdin,
    upstream: &str,
) {
    let mut r = BufReader::new(stdout);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push_str(line.trim_end());
            head.push_str("\r\n");
        }
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let Ok(mut up) = std::net::TcpStream::connect(upstream) else {
        return;
    };
    let _ = up.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
    let _ = up.write_all(&body);
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer);
    let _ = stdin.write_all(&answer);
    let _ = stdin.flush();
}

#[test]
fn tls_is_verified_by_default_for_prometheus_and_the_apiserver() {
    let mut rig = Rig::new();
    let certs = rig.pool.dir.join("certs");
    make_certs(&certs);
    let ca = certs.join("ca.pem");
    let pending = LiveProm::start(pending_cluster());
    rig.lists(&pending_cluster());
    let mut lines = Vec::new();

    // Prometheus over https, self-signed: refused without prometheus.ca_file.
    let tls = TlsServer::start(&certs, None);
    let cfg = rig.config(&Knobs {
        prom_url: tls.url(),
        ..Knobs::default()
    });
    let r = run(&cfg, &["--dry-run", "evaluate", "--output", "json"]);
    assert_eq!(r.code, 4, "{r:?}");
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"),
        "{e}"
    );
    lines.push(format!("Prometheus https, no ca_file: exit 4 ({e})"));
    drop(tls);

    // With its CA named, the same server is trusted and answers.
    let tls = TlsServer::start(&certs, Some(pending.addr()));
    let cfg = rig.config(&Knobs {
        prom_url: tls.url(),
        prom_extra: format!("  ca_file: {}\n", ca.display()),
        ..Knobs::default()
    });
    let r = run(&cfg, &["--dry-run", "evaluate", "--output", "json"]);
    assert_eq!(r.code, 10, "{r:?}");
    assert_eq!(r.json()["signals"]["pending_pods"], 1.0);
    lines.push("Prometheus https, ca_file names the CA: exit 10, real answer read".into());
    drop(tls);

    // The apiserver over https with a self-signed certificate and no CA in the kubeconfig:
    // the real run stops at reconcile, naming the certificate.
    let tls = TlsServer::start(&certs, None);
    let kc = rig.pool.dir.join("tls.kubeconfig");
    kubeconfig(&kc, &tls.url(), "kube-token-Ub4Mi8Ne1Xo3Vq7", None);
    let cfg = rig.config(&Knobs {
        prom_url: pending.url(),
        kubeconfig: Some(kc.clone()),
        kube_timeout: "2s",
        ..Knobs::default()
    });
    let r = run(&cfg, &["evaluate", "--output", "json"]);
    assert_eq!(r.code, 5, "{r:?}");
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(e.contains("cannot reconcile"), "{e}");
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"),
        "{e}"
    );
    assert!(rig.containers().is_empty(), "nothing started");
    lines.push(format!(
        "apiserver https, no CA in the kubeconfig: exit 5 ({e})"
    ));
    drop(tls);

    // With `certificate-authority`, the same server is trusted: the Node list goes through.
    let tls = TlsServer::start(
        &certs,
        Some(rig.api.url().trim_start_matches("http://").to_string()),
    );
    kubeconfig(&kc, &tls.url(), "kube-token-Ub4Mi8Ne1Xo3Vq7", Some(&ca));
    let r = run(&cfg, &["--dry-run", "evaluate", "--output", "json"]);
    assert_eq!(r.code, 10, "{r:?}");
    let blocked = r.json()["blocked_by"].to_string();
    assert!(!blocked.contains("reconcile skipped"), "{blocked}");
    lines.push("apiserver https, certificate-authority set: Nodes listed, exit 10".into());
    for l in &lines {
        println!("security TLS: {l}");
    }
}

#[test]
fn no_process_is_spawned_from_src() {
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let forbidden = [
        "process::Command",
        "Command::new",
        "std::os::unix::process",
        "CommandExt",
        "Stdio",
        "execv",
        "posix_spawn",
        "libc::fork",
        "/bin/sh",
        "\"sh\"",
    ];
    // libc is a dependency for open(2) flags and errno constants only (config::files),
    // and the numbers of the signals state::stop names: any other use of it (fork, exec,
    // system, raw syscalls, kill) fails here.
    let libc_allowed = [
        "SIGTERM",
        "SIGINT",
        "O_NOFOLLOW",
        "O_NONBLOCK",
        "ELOOP",
        "EISDIR",
        "ENOTDIR",
        "ENAMETOOLONG",
    ];
    let mut libc_uses = 0;
    let mut lines = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        lines += text.lines().count();
        for (i, line) in text.lines().enumerate() {
            for word in forbidden {
                assert!(
                    !line.contains(word),
                    "{}:{}: {word}: {line}",
                    f.display(),
                    i + 1
                );
            }
            assert!(
                !line.contains("extern crate") && !line.contains("use libc"),
                "{}:{}: libc is named in full at each use: {line}",
                f.display(),
                i + 1
            );
            for (at, _) in line.match_indices("libc::") {
                let name: String = line[at + 6..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    libc_allowed.contains(&name.as_str()),
                    "{}:{}: libc::{name} is not one of the constants src/ may use: {line}",
                    f.display(),
                    i + 1
                );
                libc_uses += 1;
            }
        }
    }
    assert!(libc_uses > 0, "the libc scan looked at nothing");
    // The manifest names no crate whose job is running commands.
    let manifest =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .unwrap();
    for c in ["duct", "xshell", "subprocess", "nix"] {
        assert!(
            !manifest
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{c} "))),
            "Cargo.toml depends on {c}"
        );
    }
    println!(
        "security: no process spawning in src/: {} files, {lines} lines scanned for {} patterns; {libc_uses} uses of libc, all open(2)/errno/signal-number constants",
        files.len(),
        forbidden.len()
    );
}

#[test]
fn bad_names_in_the_config_exit_2_naming_the_key_before_any_outside_call() {
    let mut rig = Rig::new();
    let faults = DockerFaults::start(&rig.pool.dir.join("record.sock"));
    let prom = HttpProxy::start("127.0.0.1:9", Duration::ZERO);
    let cases = [
        (
            "docker.network",
            "  network: none\n",
            "  network: 'bad net'\n",
        ),
        ("docker.network", "  network: none\n", "  network: -net\n"),
        (
            "docker.name_prefix",
            "  name_prefix: {pool}\n",
            "  name_prefix: Bad_Name\n",
        ),
        (
            "docker.name_prefix",
            "  name_prefix: {pool}\n",
            "  name_prefix: a-name-prefix-that-is-much-longer-than-forty\n",
        ),
        ("docker.pool", "  pool: {pool}\n", "  pool: 'pool!'\n"),
        ("docker.image", "  image: ", "  image: 'bad image' #"),
        (
            "docker.server_url",
            "  server_url: https://127.0.0.1:6443\n",
            "  server_url: k3s-server:6443\n",
        ),
        (
            "kubernetes.permanent_nodes[1]",
            "  timeout: 2s\ndrain:",
            "  timeout: 2s\n  permanent_nodes: [server, Node_1]\ndrain:",
        ),
    ];
    let api_before = rig.api.requests().len();
    for (key, from, to) in cases {
        let cfg = rig.config(&Knobs {
            prom_url: prom.url(),
            docker_host: Some(faults.host()),
            ..Knobs::default()
        });
        let from = from.replace("{pool}", &rig.pool.name);
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert!(text.contains(&from), "{from:?} in\n{text}");
        write_file(&cfg, &text.replacen(&from, to, 1), 0o600);
        let r = run(&cfg, &["evaluate"]);
        assert_eq!(r.code, 2, "{key}: {r:?}");
        assert!(r.stderr.contains(&format!("`{key}`")), "{key}: {r:?}");
        let r = bin()
            .arg("--config")
            .arg(&cfg)
            .args(["up", "--count", "1"])
            .output()
            .unwrap();
        assert_eq!(r.status.code(), Some(2), "{key}");
    }
    assert!(
        faults.requests().is_empty(),
        "a Docker call was made: {:?}",
        faults.requests()
    );
    assert_eq!(
        rig.api.requests().len(),
        api_before,
        "a Kubernetes call was made"
    );
    assert_eq!(prom.count(), 0, "a Prometheus query was sent");
    println!(
        "security: {} invalid names refused with exit 2 naming the key (evaluate and up); Docker, Kubernetes and Prometheus calls made: 0",
        cases.len()
    );
}

// ---------------------------------------------------------------------------------------
// Own files (issue 17): k3s-scale runs as root, so every path it writes is a way in for
// whoever can put something there first. Victim files stand for the rest of the host.

/// Files outside the folders under test, each with content of its own: no run may change
/// them.
struct Victims {
    dir: PathBuf,
    files: Vec<(PathBuf, String)>,
}

impl Victims {
    fn new(dir: &Path) -> Victims {
        std::fs::create_dir_all(dir).unwrap();
        Victims {
            dir: dir.to_path_buf(),
            files: Vec::new(),
        }
    }

    /// A new victim file, mode 0644.
    fn make(&mut self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        let text = format!("victim {name}: must never change\n");
        write_file(&p, &text, 0o644);
        self.files.push((p.clone(), text));
        p
    }

    fn assert_unchanged(&self, after: &str) {
        for (p, text) in &self.files {
            let now = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{after}: {e}"));
            assert_eq!(&now, text, "{after}: victim {} changed", p.display());
            assert_eq!(mode(p), 0o644, "{after}: victim {} mode", p.display());
        }
    }
}

/// A folder with exactly `mode` (set after creation, past the umask).
fn folder(p: &Path, mode: u32) -> PathBuf {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.to_path_buf()
}

/// The rig's config with the state, lock and metrics textfile moved to the given paths;
/// Prometheus at a closed loopback port, so `evaluate` fails with exit 4 before Docker or
/// Kubernetes, yet loads and saves the state and writes the metrics.
fn own_files_config(rig: &mut Rig, state: &Path, lock: &Path, metrics: &Path) -> PathBuf {
    let cfg = rig.config(&Knobs::default());
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text
        .replace(
            &format!("path: {}\n", rig.state_path().display()),
            &format!("path: {}\n", state.display()),
        )
        .replace(
            &format!("lock_path: {}\n", rig.lock_path().display()),
            &format!("lock_path: {}\n", lock.display()),
        )
        .replace(
            &format!("textfile: {}\n", rig.metrics_path().display()),
            &format!("textfile: {}\n", metrics.display()),
        );
    for p in [state, lock, metrics] {
        assert!(text.contains(&p.display().to_string()), "{text}");
    }
    write_file(&cfg, &text, 0o600);
    cfg
}

/// stdout and stderr together (evaluate prints its error in the report and the log).
fn said(r: &Run) -> String {
    format!("{}\n{}", r.stdout, r.stderr)
}

/// A run's exit code and the start of what it said: a failure message that stays
/// readable when the paths are thousands of bytes long.
fn brief(r: &Run) -> String {
    let s = said(r);
    let cut: String = s.chars().take(600).collect();
    format!(
        "exit {}: {cut}{}",
        r.code,
        if s.len() > 600 { " [...]" } else { "" }
    )
}

/// A path for a failure message: at most 120 bytes of it and its length.
fn short(p: &std::ffi::OsStr) -> String {
    let s = p.to_string_lossy();
    let cut: String = s.chars().take(120).collect();
    format!("{cut}[{} bytes]", p.len())
}

/// `.<name>.tmp.<pid>`, the temp name every PID the next runs may get would have used
/// before issue 17, from the kernel's last PID on: `n` links to `victim`. Returns the range.
fn plant_pid_temp_links(dir: &Path, name: &str, victim: &Path, n: u32) -> (u32, u32) {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for i in 1..=n {
        let pid = (last + i) % max;
        let _ = std::os::unix::fs::symlink(victim, dir.join(format!(".{name}.tmp.{pid}")));
    }
    (last + 1, (last + n) % max)
}

fn in_range(pid: u32, (lo, hi): (u32, u32)) -> bool {
    if lo <= hi {
        (lo..=hi).contains(&pid)
    } else {
        pid >= lo || pid <= hi
    }
}

/// Runs the binary, returning the run and its PID.
fn run_pid(cfg: &Path, args: &[&str]) -> (Run, u32) {
    let child = bin()
        .arg("--config")
        .arg(cfg)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    (Run::from_output(child.wait_with_output().unwrap()), pid)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn links_and_loose_folders_never_make_a_root_run_write_elsewhere() {
    let mut rig = Rig::new();
    let base = folder(&rig.pool.dir.join("own-files"), 0o755);
    let mut victims = Victims::new(&base.join("victims"));
    let mut lines = Vec::new();

    // 1. State and lock in a shared folder (as /tmp: 1777), links planted at the lock's
    //    name, the state's name and the temp names: refused before anything is opened.
    let shared = folder(&base.join("shared"), 0o1777);
    let (state, lock, metrics) = (
        shared.join("state.json"),
        shared.join("k3s-scale.lock"),
        shared.join("k3s-scale.prom"),
    );
    for (link, v) in [(&lock, "lock"), (&state, "state"), (&metrics, "metrics")] {
        std::os::unix::fs::symlink(victims.make(v), link).unwrap();
    }
    let temps = victims.make("state-temp");
    plant_pid_temp_links(&shared, "state.json", &temps, 2000);
    let cfg = own_files_config(&mut rig, &state, &lock, &metrics);
    let before = names_in(&shared);
    for args in [
        &["evaluate"][..],
        &["state", "reset"],
        &["status"],
        &["drain", "w1"],
    ] {
        let r = run(&cfg, args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        let s = said(&r);
        assert!(
            s.contains(&format!("refusing {}", shared.display()))
                && s.contains("writable by")
                && s.contains("sticky bit"),
            "{args:?}: names the folder and why: {s}"
        );
        assert!(!s.contains("panicked"), "{s}");
        victims.assert_unchanged(&format!("{args:?} with state and lock in a 1777 folder"));
        assert_eq!(
            names_in(&shared),
            before,
            "{args:?}: nothing created or removed"
        );
        lines.push(format!(
            "state and lock in a 1777 folder full of links: {} exit 2",
            args.join(" ")
        ));
    }

    // 2. A state folder another user owns (0700, uid 65534), and a group-writable one.
    for (name, m, uid, why) in [
        ("foreign", 0o700, Some(65534), "owned by uid 65534"),
        ("group", 0o770, None, "writable by its group"),
        ("world", 0o777, None, "writable by its group and all users"),
    ] {
        let d = folder(&base.join(name), m);
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&d, Some(uid), Some(uid)).unwrap();
        }
        let own = folder(&base.join(format!("{name}-lock")), 0o700);
        let cfg = own_files_config(
            &mut rig,
            &d.join("state.json"),
            &own.join("k3s-scale.lock"),
            &own.join("k3s-scale.prom"),
        );
        let r = run(&cfg, &["evaluate"]);
        assert_eq!(r.code, 2, "{name}: {r:?}");
        let s = said(&r);
        assert!(
            s.contains(&format!("refusing {}", d.display())) && s.contains(why),
            "{name}: {s}"
        );
        assert!(names_in(&d).is_empty(), "{name}: nothing written in it");
        // The lock folder alike.
        let cfg = own_files_config(
            &mut rig,
            &own.join("state.json"),
            &d.join("k3s-scale.lock"),
            &own.join("k3s-scale.prom"),
        );
        let r = run(&cfg, &["evaluate"]);
        assert_eq!(r.code, 2, "{name} lock: {r:?}");
        assert!(
            said(&r).contains(&format!("refusing {}", d.display())),
            "{r:?}"
        );
        lines.push(format!(
            "state or lock folder {m:o} ({why}): exit 2, folder named"
        ));
    }
    // A folder above the state folder that others can write, without the sticky bit:
    // the state folder could be moved away and replaced.
    let loose_above = folder(&base.join("loose-above"), 0o777);
    let inner = folder(&loose_above.join("k3s"), 0o700);
    let cfg = own_files_config(
        &mut rig,
        &inner.join("state.json"),
        &inner.join("k3s-scale.lock"),
        &inner.join("k3s-scale.prom"),
    );
    let r = run(&cfg, &["evaluate"]);
    assert_eq!(r.code, 2, "{r:?}");
    let s = said(&r);
    assert!(
        s.contains(&loose_above.display().to_string()) && s.contains("without the sticky bit"),
        "{s}"
    );
    lines.push("a 0777 folder above a 0700 state folder: exit 2, named".into());

    // 3. A private folder (0700, root) where a link sits at an own file's name anyway.
    let private = folder(&base.join("private"), 0o700);
    let (state, lock, metrics) = (
        private.join("state.json"),
        private.join("k3s-scale.lock"),
        private.join("k3s-scale.prom"),
    );
    let cfg = own_files_config(&mut rig, &state, &lock, &metrics);
    std::os::unix::fs::symlink(victims.make("lock-in-private"), &lock).unwrap();
    for args in [&["evaluate"][..], &["state", "reset"]] {
        State::fresh().save(&state).unwrap();
        let r = run(&cfg, args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        let s = said(&r);
        assert!(
            s.contains(&format!("refusing {}", lock.display())) && s.contains("symbolic link"),
            "{args:?}: {s}"
        );
        victims.assert_unchanged(&format!("{args:?} with a link at the lock"));
        assert!(state.exists(), "{args:?}: the state stays where it was");
    }
    std::fs::remove_file(&lock).unwrap();
    std::fs::remove_file(&state).unwrap();
    std::os::unix::fs::symlink(victims.make("state-in-private"), &state).unwrap();
    for args in [&["evaluate"][..], &["state", "reset"], &["state", "show"]] {
        let r = run(&cfg, args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        let s = said(&r);
        assert!(
            s.contains(&format!("refusing {}", state.display())) && s.contains("symbolic link"),
            "{args:?}: {s}"
        );
        victims.assert_unchanged(&format!("{args:?} with a link at the state"));
        assert!(
            std::fs::symlink_metadata(&state).unwrap().is_symlink(),
            "{args:?}: the link is left as found"
        );
    }
    lines.push(
        "links at the lock (evaluate, state reset) and the state (evaluate, state reset, state show) in a 0700 folder: exit 2, path named".into(),
    );
    std::fs::remove_file(&state).unwrap();

    // 4. The temp files: links at `.state.json.tmp.<pid>` for the next 3000 PIDs in the
    //    private folder, and the textfile in a shared 1777 folder with links at its name
    //    and at its temp names. The runs write through none of them.
    let textdir = folder(&base.join("textfile"), 0o1777);
    let metrics = textdir.join("k3s-scale.prom");
    std::os::unix::fs::symlink(victims.make("textfile"), &metrics).unwrap();
    let state_temps = victims.make("state-temps");
    let metric_temps = victims.make("metric-temps");
    let cfg = own_files_config(&mut rig, &state, &lock, &metrics);
    // Other processes on a busy machine use PIDs too: when the run's PID falls outside
    // the planted range, plant again and run again.
    let mut hit = None;
    for attempt in 1..=3u64 {
        let planted = plant_pid_temp_links(&private, "state.json", &state_temps, 3000);
        plant_pid_temp_links(&textdir, "k3s-scale.prom", &metric_temps, 3000);
        let (r, pid) = run_pid(&cfg, &["evaluate"]);
        assert_eq!(r.code, 4, "Prometheus is down: {r:?}");
        victims.assert_unchanged("evaluate with links at every temp name a PID gives");
        assert!(std::fs::symlink_metadata(&state).unwrap().is_file());
        assert_eq!(
            State::load(&state).unwrap().totals.runs,
            attempt,
            "the state was saved"
        );
        let prom = std::fs::symlink_metadata(&metrics).unwrap();
        assert!(
            prom.is_file(),
            "the link at the textfile's name was replaced"
        );
        assert_eq!(mode(&metrics), 0o644);
        assert!(
            std::fs::read_to_string(&metrics)
                .unwrap()
                .contains("k3s_scale_last_run_exit_code 4")
        );
        if in_range(pid, planted) {
            hit = Some((pid, planted));
            break;
        }
        println!("attempt {attempt}: PID {pid} outside the planted range {planted:?}");
    }
    let (pid, planted) = hit.expect("a run whose PID was in the planted range");
    lines.push(format!(
        "evaluate (PID {pid}) with links at `.state.json.tmp.<pid>` and `.k3s-scale.prom.tmp.<pid>` for PIDs {}..{} and at the textfile: 0 victims changed, textfile replaced by a regular file",
        planted.0, planted.1
    ));

    // 5. `state reset` where the name it moves the state to is taken by a link: every
    //    millisecond of the next 10 s. It picks another new name; the victim stays. On a
    //    loaded machine the run may start after the window: then it is tried again.
    let aside_victim = victims.make("aside");
    let bad_files = || -> std::collections::BTreeSet<String> {
        names_in(&private)
            .into_iter()
            .filter(|n| {
                n.starts_with("state.json.bad-")
                    && std::fs::symlink_metadata(private.join(n))
                        .unwrap()
                        .is_file()
            })
            .collect()
    };
    let mut collided = None;
    for attempt in 1..=3 {
        State::fresh().save(&state).unwrap();
        let now = Timestamp::now().as_millis();
        let mut planted = std::collections::HashSet::new();
        for ms in now..now + 10_000 {
            let name = format!(
                "state.json.bad-{}",
                Timestamp::from_millis(ms).to_string().replace(':', "")
            );
            let _ = std::os::unix::fs::symlink(&aside_victim, private.join(&name));
            planted.insert(name);
        }
        let before = bad_files();
        let r = run(&cfg, &["state", "reset"]);
        assert_eq!(r.code, 0, "{r:?}");
        victims.assert_unchanged("state reset with links at the names it would pick");
        let moved: Vec<String> = bad_files().difference(&before).cloned().collect();
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert!(r.stdout.contains(&moved[0]), "{r:?}");
        let (base, suffix) = moved[0].rsplit_once('-').unwrap();
        let random = suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit());
        if planted.contains(base) {
            assert!(random, "{base} was taken: a random suffix is added");
            collided = Some((attempt, moved[0].clone()));
            break;
        }
        assert!(
            planted.contains(&moved[0]) == random,
            "a name not taken is used as it is: {}",
            moved[0]
        );
        println!(
            "attempt {attempt}: the run came after the planted window ({})",
            moved[0]
        );
    }
    let (attempt, moved) = collided.expect("a reset within the planted window");
    lines.push(format!(
        "state reset with links at its timestamped name for 10,000 ms: moved to {moved} (attempt {attempt}), victim unchanged"
    ));

    for l in &lines {
        println!("security own files: {l}");
    }
}

#[test]
fn a_normal_run_in_a_private_folder_works_and_leaves_no_temp_file() {
    let mut rig = Rig::new();
    let base = folder(&rig.pool.dir.join("normal"), 0o755);
    // Missing folders are made: state and lock 0700, metrics 0755, whatever the umask.
    let state = base.join("state/s/state.json");
    let lock = base.join("lock/k3s-scale.lock");
    let metrics = base.join("textfile/k3s-scale.prom");
    let cfg = own_files_config(&mut rig, &state, &lock, &metrics);
    let (r, _) = run_logged(&cfg, &["evaluate"], false);
    assert_eq!(r.code, 4, "{r:?}");
    for (d, m) in [
        (base.join("state"), 0o700),
        (base.join("state/s"), 0o700),
        (base.join("lock"), 0o700),
        (base.join("textfile"), 0o755),
    ] {
        assert_eq!(mode(&d), m, "{} under umask 000", d.display());
    }
    assert_eq!(mode(&state), 0o600);
    assert_eq!(mode(&lock), 0o600);
    assert_eq!(mode(&metrics), 0o644);
    let first = State::load(&state).unwrap();
    // Again, then reset: each folder holds only its file (and the moved-aside state).
    let r = run(&cfg, &["evaluate"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert_eq!(
        State::load(&state).unwrap().totals.runs,
        first.totals.runs + 1
    );
    let r = run(&cfg, &["state", "reset"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(&cfg, &["evaluate"]);
    assert_eq!(r.code, 4, "{r:?}");
    let names = names_in(&base.join("state/s"));
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"state.json".to_string()), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("state.json.bad-")),
        "{names:?}"
    );
    assert_eq!(names_in(&base.join("lock")), ["k3s-scale.lock"]);
    assert_eq!(names_in(&base.join("textfile")), ["k3s-scale.prom"]);
    println!(
        "security own files: evaluate x3 and state reset in new folders: state/lock folders 0700, textfile folder 0755 (umask 000), no temp file left: {names:?}"
    );
}

#[test]
fn odd_and_fuzzed_own_file_paths_give_a_clear_error_never_a_panic() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let mut rig = Rig::new();
    let base = folder(&rig.pool.dir.join("odd"), 0o700);
    let cfg = own_files_config(
        &mut rig,
        &base.join("state.json"),
        &base.join("k3s-scale.lock"),
        &base.join("k3s-scale.prom"),
    );
    let with_state = |state: &OsString, args: &[&str]| {
        let out = bin()
            .arg("--config")
            .arg(&cfg)
            .arg("--state")
            .arg(state)
            .args(args)
            .output()
            .unwrap();
        Run::from_output(out)
    };
    let path = |p: PathBuf| p.into_os_string();
    let mut lines = Vec::new();

    // A non-UTF-8 name is a valid Linux file name: it works.
    let mut raw = base.as_os_str().as_encoded_bytes().to_vec();
    raw.extend_from_slice(b"/st\xffate\xfe.json");
    let odd = OsString::from_vec(raw);
    let r = with_state(&odd, &["evaluate"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        Path::new(&odd).is_file(),
        "state saved under its non-UTF-8 name"
    );
    let r = with_state(&odd, &["state", "show"]);
    assert_eq!(r.code, 0, "{r:?}");
    lines.push(
        "non-UTF-8 state name: works (evaluate exit 4 as Prometheus is down, state show 0)"
            .to_string(),
    );

    // (path, what the error says)
    std::fs::create_dir_all(base.join("a-folder")).unwrap();
    write_file(&base.join("a-file"), "x", 0o600);
    let cases = [
        (path(base.join("a-folder")), "is a folder"),
        (path(base.join("a-file/state.json")), "not a folder"),
        (path(base.join("n".repeat(300))), "too long"),
        (
            path(base.join(format!("{}/state.json", "d/".repeat(3000)))),
            "too long",
        ),
    ];
    for (p, want) in &cases {
        for args in [&["evaluate"][..], &["state", "show"], &["state", "reset"]] {
            let r = with_state(p, args);
            let s = said(&r);
            assert!(!s.contains("panicked"), "{}", brief(&r));
            // `state reset` of a missing state finds nothing to reset.
            if r.code == 0 && args[0] == "state" && s.contains("nothing to reset") {
                continue;
            }
            assert_eq!(r.code, 2, "{args:?} {}: {}", short(p), brief(&r));
            assert!(s.contains(want), "{args:?} {}: {}", short(p), brief(&r));
        }
        lines.push(format!("state path {want}: exit 2 saying so"));
    }
    // The same as the lock path and the metrics textfile.
    let cfg_text = std::fs::read_to_string(&cfg).unwrap();
    for (key, file) in [
        ("lock_path", "k3s-scale.lock"),
        ("textfile", "k3s-scale.prom"),
    ] {
        let from = format!("{key}: {}\n", base.join(file).display());
        let to = format!("{key}: {}\n", base.join("a-folder").display());
        write_file(&cfg, &cfg_text.replace(&from, &to), 0o600);
        let r = run(&cfg, &["evaluate"]);
        let s = said(&r);
        assert!(!s.contains("panicked"), "{s}");
        assert!(
            s.contains("is a folder") && s.contains("a-folder"),
            "{key}: {s}"
        );
        if key == "lock_path" {
            assert_eq!(r.code, 2, "{r:?}");
        } else {
            // The run's outcome stands; the textfile error is logged.
            assert_eq!(r.code, 4, "{r:?}");
        }
        lines.push(format!("{key} a folder: error naming it, exit {}", r.code));
    }
    write_file(&cfg, &cfg_text, 0o600);

    // Fuzzed: random bytes (no NUL, no `..`) under the folder, some names far too long.
    let mut rng = Rng::from_env();
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..150 {
        let mut raw = base.join("fuzz").into_os_string().into_vec();
        let parts = 1 + rng.next() % 4;
        for _ in 0..parts {
            raw.push(b'/');
            // One name in eight may be far past NAME_MAX (255 bytes).
            let max = if rng.next().is_multiple_of(8) {
                400
            } else {
                20
            };
            let len = 1 + rng.next() % max;
            let mut part: Vec<u8> = (0..len)
                .map(|_| match (rng.next() % 255) as u8 + 1 {
                    b'/' => b'_',
                    b => b,
                })
                .collect();
            if part == b"." || part == b".." {
                part = b"x".to_vec();
            }
            raw.extend_from_slice(&part);
        }
        let p = OsString::from_vec(raw);
        let args: &[&str] = match rng.next() % 3 {
            0 => &["evaluate"],
            1 => &["state", "show"],
            _ => &["state", "reset"],
        };
        let r = with_state(&p, args);
        let s = said(&r);
        assert!(!s.contains("panicked"), "{}: {}", short(&p), brief(&r));
        assert!(
            [0, 2, 4].contains(&r.code),
            "{args:?} {}: {}",
            short(&p),
            brief(&r)
        );
        if r.code == 2 {
            assert!(
                s.contains("refusing"),
                "{}: a clear refusal: {}",
                short(&p),
                brief(&r)
            );
        }
        *codes.entry(r.code).or_insert(0) += 1;
    }
    lines.push(format!(
        "150 fuzzed state paths: exit codes {codes:?}, no panic"
    ));
    for l in &lines {
        println!("security own files: {l}");
    }
}
