//! Extra Docker daemons on this machine, each a Docker host of its own: started as
//! ../shared/notes/field.md says ("Several Docker hosts on one machine"), every one in its
//! own network namespace (`unshare --net`, so `--bridge=none` cannot touch the machine's
//! docker0), with its own data root, exec root, pidfile, unix socket and an empty
//! `--config-file` (the machine's daemon.json sets data-root and storage-driver). Each gets
//! the busybox test image built on it. `stop` is a host going down (SIGTERM to its PID:
//! dockerd stops its containers and its containerd), `start` brings it back on the same
//! data. Drop stops it by PID (also after a panic) and removes its directories.
//!
//! A daemon can also listen with TLS (`--tlsverify`) on 127.0.0.1:2376 inside its
//! namespace. The root namespace cannot reach that address, so `TlsDoor` forwards a
//! 127.0.0.1 port of the root namespace to it: its forwarding thread enters the daemon's
//! network namespace (setns(2)) before it connects, and the bytes pass through untouched,
//! so the TLS handshake is between k3s-scale and dockerd itself.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a daemon may take to answer after it is started (they answer in ~0.2-6 s).
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a stopped daemon may take to exit before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// The TLS port inside the daemon's namespace (the docker CLI's default TLS port).
const TLS_PORT: u16 = 2376;

/// TLS files for the daemon (server.pem, server.key, ca.pem) in `dir`.
pub struct TlsFiles {
    pub dir: PathBuf,
}

pub struct ExtraDaemon {
    pub name: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    tls: Option<PathBuf>,
    child: Option<Child>,
}

impl ExtraDaemon {
    /// Starts a daemon and builds the test image on it. `tls_dir` holds server.pem,
    /// server.key and ca.pem: the daemon then also listens with TLS (see `TlsDoor`).
    pub fn start(name: &str, tls_dir: Option<&Path>) -> ExtraDaemon {
        let dir = std::env::temp_dir().join(format!("kst-dd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("empty.json"), "{}").unwrap();
        let mut d = ExtraDaemon {
            name: name.to_string(),
            socket: dir.join("d.sock"),
            dir,
            tls: tls_dir.map(Path::to_path_buf),
            child: None,
        };
        d.run();
        d.build_image();
        d
    }

    /// The docker.host value for this daemon.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn run(&mut self) {
        let d = &self.dir;
        let mut args: Vec<String> = vec![
            "dockerd".into(),
            "--config-file".into(),
            d.join("empty.json").display().to_string(),
            "--data-root".into(),
            d.join("data").display().to_string(),
            "--exec-root".into(),
            d.join("exec").display().to_string(),
            "--pidfile".into(),
            d.join("pid").display().to_string(),
            "-H".into(),
            self.host(),
            "--storage-driver=vfs".into(),
            "--bridge=none".into(),
            "--iptables=false".into(),
            "--ip-masq=false".into(),
        ];
        let mut cmd = Command::new("unshare");
        cmd.arg("--net");
        if let Some(t) = &self.tls {
            // The TLS listener needs the namespace's loopback up (a new one starts down).
            args.extend([
                "--tlsverify".into(),
                format!("--tlscacert={}", t.join("ca.pem").display()),
                format!("--tlscert={}", t.join("server.pem").display()),
                format!("--tlskey={}", t.join("server.key").display()),
                "-H".into(),
                format!("tcp://127.0.0.1:{TLS_PORT}"),
            ]);
            cmd.args(["sh", "-c", "ip link set lo up && exec \"$@\"", "sh"]);
        }
        cmd.args(&args);
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start unshare --net dockerd ({e})"));
        self.child = Some(child);
        let start = Instant::now();
        loop {
            let out = self.docker(&["info", "--format", "{{.NCPU}}"]);
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() != "0" {
                break;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "dockerd {} exited ({status}): {}",
                    self.name,
                    std::fs::read_to_string(d.join("dockerd.log")).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < START_LIMIT,
                "dockerd {} did not answer within {START_LIMIT:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "dockerd {} (pid {}) answered after {:.1} s",
            self.name,
            self.pid().unwrap_or(0),
            start.elapsed().as_secs_f64()
        );
    }

    /// The docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .env_remove("DOCKER_HOST")
            .env("DOCKER_BUILDKIT", "0")
            .arg("-H")
            .arg(self.host())
            .args(args)
            .output()
            .expect("run the docker CLI")
    }

    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker -H {} {}: {}",
            self.host(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn build_image(&self) {
        let ctx = self.dir.join("image");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::copy(super::docker_support::BUSYBOX, ctx.join("busybox")).unwrap_or_else(|e| {
            panic!("/bin/busybox is missing ({e}): install Debian's busybox-static")
        });
        std::fs::write(ctx.join("Dockerfile"), super::docker_support::DOCKERFILE).unwrap();
        let ctx = ctx.display().to_string();
        self.docker_ok(&["build", "-q", "-t", super::docker_support::TEST_IMAGE, &ctx]);
    }

    /// The host goes down: SIGTERM to dockerd, wait for it to exit (SIGKILL after
    /// STOP_LIMIT).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < STOP_LIMIT {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The host comes back, on the same data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.run();
    }

    /// Names of the containers of this pool on this daemon.
    pub fn containers(&self, pool: &str) -> Vec<String> {
        let f = format!("label=io.k3s-scale.pool={pool}");
        let mut v: Vec<String> = self
            .docker_ok(&["ps", "-a", "--format", "{{.Names}}", "--filter", &f])
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    pub fn volumes(&self, pool: &str) -> Vec<String> {
        let f = format!("label=io.k3s-scale.pool={pool}");
        let mut v: Vec<String> = self
            .docker_ok(&["volume", "ls", "--format", "{{.Name}}", "--filter", &f])
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }
}

impl Drop for ExtraDaemon {
    fn drop(&mut self) {
        // Its containers go with the daemon's data: nothing of it outlives the test.
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A 127.0.0.1 port of the root namespace that reaches the TLS listener of `daemon` in
/// its own namespace.
pub struct TlsDoor {
    pub port: u16,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

unsafe extern "C" {
    /// setns(2) from the C library std already links: enter another namespace (this
    /// thread only).
    fn setns(fd: i32, nstype: i32) -> i32;
}
const CLONE_NEWNET: i32 = 0x4000_0000;

impl TlsDoor {
    pub fn open(daemon: &ExtraDaemon) -> TlsDoor {
        use std::os::fd::AsRawFd;
        let pid = daemon.pid().expect("daemon running");
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("daemon's netns");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            // SAFETY: setns only changes this thread's network namespace; `ns` is open.
            let rc = unsafe { setns(ns.as_raw_fd(), CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns into the daemon's network namespace");
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                // In the daemon's namespace: its 127.0.0.1.
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", TLS_PORT)) else {
                    continue;
                };
                crate::support::http::pipe(client, upstream);
            }
        });
        TlsDoor {
            port,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for TlsDoor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
