//! Docker test harness: the daemon check (no daemon is a failure, never a skip), the
//! worker test image (FROM scratch + busybox, tagged like a k3s image, built once and
//! reused), and `Pool`, a per-test unique pool label and name prefix whose Drop removes
//! every container, volume and network the test made, found by label, even after a panic.
//! Everything is inspected through the docker CLI, independently of the code under test.
//!
//! k3s workers are privileged. A daemon that lacks capabilities itself (this machine's
//! dockerd runs without CAP_SYS_RESOURCE) cannot start privileged containers at all. The
//! tests then reach it through `DockerProxy`, a unix-socket pass-through that records every
//! request and clears `Privileged` in container-create bodies, so the rest of what
//! k3s-scale asked for can still be started and inspected; the recorded body shows what
//! was asked. `privileged_runs()` says which case holds; a test runs against the daemon
//! directly to check the privileged start itself either way.

#![allow(dead_code)]

use serde_json::Value;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Tagged like the real image so config and output look as they would in production.
pub const TEST_IMAGE: &str = "k3s-scale-test/k3s:v1.31.4-k3s1";
/// Marks the objects a test creates that k3s-scale must NOT manage (foreign ones).
pub const OWNER_LABEL: &str = "io.k3s-scale.test-owner";
const IMAGE_LABEL: &str = "io.k3s-scale.test-image";
pub const BUSYBOX: &str = "/bin/busybox";

/// Stays up like `k3s agent` would, takes any arguments (the `agent ...` command), and
/// exits at once on SIGTERM so a stop does not wait out its grace.
pub const DOCKERFILE: &str = r#"FROM scratch
COPY busybox /bin/busybox
ENTRYPOINT ["/bin/busybox", "sh", "-c", "trap 'exit 0' TERM; /bin/busybox sleep 100000 & wait", "k3s"]
"#;

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI ({e}); these tests need it"))
}

/// Runs the docker CLI and returns stdout; panics with stderr on failure.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Fails the test, saying why, when no Docker daemon answers.
pub fn require_daemon() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let r = CHECKED.get_or_init(|| {
        let out = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .map_err(|e| format!("cannot run the docker CLI: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    });
    if let Err(e) = r {
        panic!(
            "no Docker daemon answers (docker info: {e}); the Docker worker tests need a \
             running Docker engine (see tests/ci.sh)"
        );
    }
}

/// The Docker host the tests and the binary talk to: $DOCKER_HOST or the default socket.
pub fn daemon_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => PathBuf::from(&h["unix://".len()..]),
        Ok(h) if !h.is_empty() => panic!("these tests expect a unix:// DOCKER_HOST, got {h}"),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

/// Builds the test image unless an image of the same recipe is there. nextest runs each
/// test in its own process, so a file lock makes the build happen once.
pub fn test_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_daemon();
        let meta = std::fs::metadata(BUSYBOX).unwrap_or_else(|e| {
            panic!("{BUSYBOX} is missing ({e}): install Debian's busybox-static (tests/ci.sh does)")
        });
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let recipe = format!("{:x}-{}-{mtime}", fnv(DOCKERFILE.as_bytes()), meta.len());
        let lock = File::create(std::env::temp_dir().join("k3s-scale-test-image.lock"))
            .expect("create the image lock file");
        lock.lock().expect("lock the image lock file");
        let have = docker(&[
            "image",
            "inspect",
            "--format",
            &format!("{{{{index .Config.Labels \"{IMAGE_LABEL}\"}}}}"),
            TEST_IMAGE,
        ]);
        if have.status.success() && String::from_utf8_lossy(&have.stdout).trim() == recipe {
            return;
        }
        let dir = std::env::temp_dir().join(format!("k3s-scale-test-image-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(BUSYBOX, dir.join("busybox")).unwrap();
        std::fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
        let out = Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args([
                "build",
                "-q",
                "--label",
                &format!("{IMAGE_LABEL}={recipe}"),
                "-t",
                TEST_IMAGE,
            ])
            .arg(&dir)
            .output()
            .expect("run docker build");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "building {TEST_IMAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    TEST_IMAGE
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// One test's share of the Docker host: a unique pool label value, used also as the
/// worker name prefix and the owner label of anything else the test creates.
pub struct Pool {
    pub name: String,
    pub dir: PathBuf,
    networks: Vec<String>,
    proxy: Option<DockerProxy>,
}

impl Pool {
    pub fn new() -> Pool {
        static N: AtomicU32 = AtomicU32::new(0);
        require_daemon();
        let n = N.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        // Unique across parallel test processes (pid), within one (n), and across runs
        // that reuse a pid (the clock).
        let name = format!("kst-{}-{n}-{:x}", std::process::id(), nanos % 4096);
        let dir = std::env::temp_dir().join(format!("k3s-scale-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Pool {
            name,
            dir,
            networks: Vec::new(),
            proxy: None,
        }
    }

    /// The docker.host this test's k3s-scale should use: the daemon itself when it can run
    /// privileged containers, else a `DockerProxy` in front of it.
    pub fn docker_host(&mut self) -> String {
        if privileged_runs() {
            return format!("unix://{}", daemon_socket().display());
        }
        if self.proxy.is_none() {
            self.proxy = Some(DockerProxy::start(
                &daemon_socket(),
                &self.dir.join("docker.sock"),
            ));
        }
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    /// The unix socket behind `docker_host()`.
    pub fn docker_socket(&mut self) -> PathBuf {
        PathBuf::from(&self.docker_host()["unix://".len()..])
    }

    /// The container-create bodies sent through the proxy, as k3s-scale sent them; empty
    /// when the tests talk to the daemon directly.
    pub fn create_bodies(&self) -> Vec<Value> {
        self.proxy.as_ref().map_or_else(Vec::new, |p| {
            p.requests
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.head.starts_with("POST ") && r.head.contains("/containers/create"))
                .map(|r| serde_json::from_slice(&r.body).expect("create body is JSON"))
                .collect()
        })
    }

    /// Every request (head and body) sent through the proxy.
    pub fn requests(&self) -> Vec<Recorded> {
        self.proxy
            .as_ref()
            .map_or_else(Vec::new, |p| p.requests.lock().unwrap().clone())
    }

    /// The name of this pool's worker number `n`.
    pub fn worker(&self, n: u64) -> String {
        format!("{}-{n}", self.name)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// An internal (no outside traffic) network owned by this test.
    pub fn network(&mut self) -> String {
        let name = format!("{}-net", self.name);
        docker_ok(&[
            "network",
            "create",
            "--internal",
            "--label",
            &format!("{OWNER_LABEL}={}", self.name),
            &name,
        ]);
        self.networks.push(name.clone());
        name
    }

    /// A container k3s-scale must never touch: this test's owner label, plus `labels`.
    pub fn foreign_container(&self, name: &str, labels: &[&str]) -> String {
        let owner = format!("{OWNER_LABEL}={}", self.name);
        let mut args = vec![
            "create",
            "--network",
            "none",
            "--name",
            name,
            "--label",
            &owner,
        ];
        for l in labels {
            args.extend(["--label", l]);
        }
        args.push(test_image());
        docker_ok(&args)
    }

    /// A volume k3s-scale must never touch.
    pub fn foreign_volume(&self, name: &str, labels: &[&str]) {
        let owner = format!("{OWNER_LABEL}={}", self.name);
        let mut args = vec!["volume", "create", "--label", &owner];
        for l in labels {
            args.extend(["--label", l]);
        }
        args.push(name);
        docker_ok(&args);
    }

    /// Names of the containers carrying this pool's label (managed or not).
    pub fn containers(&self) -> Vec<String> {
        list_names(
            &["ps", "-a", "--format", "{{.Names}}", "--filter"],
            &self.pool_label(),
        )
    }

    /// Names of the volumes carrying this pool's label.
    pub fn volumes(&self) -> Vec<String> {
        list_names(
            &["volume", "ls", "--format", "{{.Name}}", "--filter"],
            &self.pool_label(),
        )
    }

    fn pool_label(&self) -> String {
        format!("label=io.k3s-scale.pool={}", self.name)
    }

    fn owner_label(&self) -> String {
        format!("label={OWNER_LABEL}={}", self.name)
    }
}

fn list_names(args: &[&str], filter: &str) -> Vec<String> {
    let mut a = args.to_vec();
    a.push(filter);
    let mut names: Vec<String> = docker_ok(&a).lines().map(str::to_string).collect();
    names.sort();
    names
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The proxy first: cleaning up talks to the daemon directly.
        drop(self.proxy.take());
        for filter in [self.pool_label(), self.owner_label()] {
            let ids = docker(&["ps", "-aq", "--filter", &filter]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = docker(&["rm", "-f", id]);
            }
            let vols = docker(&["volume", "ls", "-q", "--filter", &filter]);
            for v in String::from_utf8_lossy(&vols.stdout).split_whitespace() {
                let _ = docker(&["volume", "rm", "-f", v]);
            }
        }
        for n in &self.networks {
            let _ = docker(&["network", "rm", n]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `docker inspect` of one object, as JSON.
pub fn inspect(kind: &str, name: &str) -> Value {
    let text = docker_ok(&[kind, "inspect", name]);
    let v: Value = serde_json::from_str(&text).expect("docker inspect prints JSON");
    v[0].clone()
}

pub fn exists(kind: &str, name: &str) -> bool {
    docker(&[kind, "inspect", name]).status.success()
}

/// NCPU and MemTotal of the Docker host, as the docker CLI reports them.
pub fn host_capacity() -> (f64, u64) {
    let text = docker_ok(&["info", "--format", "{{.NCPU}} {{.MemTotal}}"]);
    let mut parts = text.split_whitespace();
    let cpus: f64 = parts.next().unwrap().parse().unwrap();
    let mem: u64 = parts.next().unwrap().parse().unwrap();
    (cpus, mem)
}

/// Writes a file with the given mode.
pub fn write_file(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// True when this daemon can start a privileged container.
pub fn privileged_runs() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let image = test_image();
        docker(&[
            "run",
            "--rm",
            "--privileged",
            "--network",
            "none",
            "--entrypoint",
            "/bin/busybox",
            image,
            "true",
        ])
        .status
        .success()
    })
}

/// One request as the client sent it, with when it was read in full and when the first
/// bytes of the daemon's answer came back (clients send one request at a time on a
/// connection, so the next answer bytes are this request's).
#[derive(Clone, Debug)]
pub struct Recorded {
    pub head: String,
    pub body: Vec<u8>,
    pub at: std::time::Instant,
    pub answered: Option<std::time::Instant>,
}

impl Recorded {
    /// How long the daemon took to start answering; None when it never did.
    pub fn latency(&self) -> Option<std::time::Duration> {
        self.answered.map(|a| a.saturating_duration_since(self.at))
    }
}

/// A pass-through to the Docker socket that records requests and clears `Privileged` in
/// container-create bodies (see the module comment).
pub struct DockerProxy {
    path: PathBuf,
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<JoinHandle<()>>,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

impl DockerProxy {
    pub fn start(upstream: &Path, path: &Path) -> DockerProxy {
        let listener = UnixListener::bind(path).expect("bind the proxy socket");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop2, requests2, upstream) = (stop.clone(), requests.clone(), upstream.to_path_buf());
        // Polled, so that Drop can stop it whatever became of the socket file.
        listener.set_nonblocking(true).unwrap();
        let handle = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                let Ok(up) = UnixStream::connect(&upstream) else {
                    continue;
                };
                let requests = requests2.clone();
                std::thread::spawn(move || proxy_connection(client, up, requests));
            }
        });
        DockerProxy {
            path: path.to_path_buf(),
            stop,
            handle: Some(handle),
            requests,
        }
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn proxy_connection(client: UnixStream, up: UnixStream, requests: Arc<Mutex<Vec<Recorded>>>) {
    let (Ok(mut up_r), Ok(mut client_w)) = (up.try_clone(), client.try_clone()) else {
        return;
    };
    // The request (index in `requests`) whose answer has not started yet.
    let awaiting: Arc<Mutex<Option<usize>>> = Arc::default();
    let (awaiting2, requests2) = (awaiting.clone(), requests.clone());
    let back = std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            let n = match up_r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(i) = awaiting2.lock().unwrap().take() {
                requests2.lock().unwrap()[i].answered = Some(std::time::Instant::now());
            }
            if client_w.write_all(&chunk[..n]).is_err() {
                break;
            }
        }
        let _ = client_w.shutdown(std::net::Shutdown::Write);
    });
    let (mut client_r, mut up_w) = (client, up);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    'requests: loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match client_r.read(&mut chunk) {
                Ok(0) | Err(_) => break 'requests,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let lower = head.to_ascii_lowercase();
        if lower.contains("transfer-encoding: chunked") {
            // Not sent by k3s-scale; pass the rest through untouched.
            let _ = up_w.write_all(&buf);
            let _ = std::io::copy(&mut client_r, &mut up_w);
            break;
        }
        let len: usize = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap_or(0));
        while buf.len() < head_end + len {
            match client_r.read(&mut chunk) {
                Ok(0) | Err(_) => break 'requests,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        {
            let mut log = requests.lock().unwrap();
            log.push(Recorded {
                head: head.clone(),
                body: body.clone(),
                at: std::time::Instant::now(),
                answered: None,
            });
            *awaiting.lock().unwrap() = Some(log.len() - 1);
        }
        let (head, body) = clear_privileged(head, body);
        if up_w.write_all(head.as_bytes()).is_err() || up_w.write_all(&body).is_err() {
            break;
        }
    }
    let _ = up_w.shutdown(std::net::Shutdown::Write);
    let _ = back.join();
}

/// A container-create request (head, body) with `HostConfig.Privileged` set to false and
/// Content-Length fixed; any other request unchanged. The one rewrite both Docker proxies
/// (this one and hardening_support's fault injector) apply on a daemon that cannot start
/// privileged containers.
pub fn clear_privileged(head: String, body: Vec<u8>) -> (String, Vec<u8>) {
    if !(head.starts_with("POST ")
        && head
            .lines()
            .next()
            .unwrap_or("")
            .contains("/containers/create"))
    {
        return (head, body);
    }
    let mut v: Value = serde_json::from_slice(&body).expect("create body is JSON");
    v["HostConfig"]["Privileged"] = Value::Bool(false);
    let body = serde_json::to_vec(&v).unwrap();
    let head: String = head
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length:") {
                format!("content-length: {}", body.len())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    (head, body)
}

// TLS certificates for the TLS tests (the docker CLI's file names).

pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}); the TLS test needs it"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (ca.pem), a server certificate for 127.0.0.1, and a client certificate
/// (cert.pem, key.pem): the file names DOCKER_CERT_PATH expects.
pub fn make_certs(dir: &std::path::Path, ca_name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let subj = format!("/CN={ca_name}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-subj", &subj, "-days", "1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (who, key, cert, ext) in [
        ("127.0.0.1", "server.key", "server.pem", "server.ext"),
        ("k3s-scale", "key.pem", "cert.pem", "client.ext"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key,
                "-out",
                "req.csr",
                "-subj",
                &format!("/CN={who}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "req.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                cert,
                "-days",
                "1",
                "-extfile",
                ext,
            ],
        );
    }
}
