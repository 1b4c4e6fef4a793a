//! Security: the join token, the Prometheus credentials (bearer token file, basic-auth
//! password file) and the kubeconfig's user token never appear in logs (-vvv with
//! RUST_LOG=trace, text and JSON), stdout, the state file, the metrics textfile, Docker
//! labels or command of the workers, or the process's arguments; the files k3s-scale makes
//! get restrictive modes even under umask 000; world-writable config and secret files are
//! refused (exit 2); TLS is verified by default for Prometheus and the apiserver, with CA
//! options; no process is ever spawned from src/; names from the config are validated
//! before any outside call. Each test prints what it checked.

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
        }
    }
    // The manifest names no crate whose job is running commands.
    let manifest =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .unwrap();
    for c in ["duct", "xshell", "subprocess", "nix", "libc"] {
        assert!(
            !manifest
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{c} "))),
            "Cargo.toml depends on {c}"
        );
    }
    println!(
        "security: no process spawning in src/: {} files, {lines} lines scanned for {} patterns",
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
