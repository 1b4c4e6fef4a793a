//! The state disk full or read-only, under the built binary: the state folder is a real
//! tmpfs (64 KiB, mode 0700) mounted for the test, filled by `dd` until ENOSPC or
//! remounted read-only, with a real Prometheus, real Docker worker containers and the
//! apiserver stand-in. Cases: an idle worker due for removal (`evaluate` and `drain
//! NODE`), a never-started container due for a removing repair, a scale-up (the disk full
//! from the start, and filling while the worker is created). The lock and the metrics
//! textfile stay in the test's own folder,
//! so what fails is the state write alone (one run more puts the lock beside the state,
//! as the default layout has it: exit 6 on the full disk, 3 on the read-only one, where
//! the lock file cannot be opened). For each: the documented exit code (6: the
//! state could not be written, nothing was done; 7: acted, not saved, what was done
//! named), the state path in the output, and in real Docker (by label) no worker lost
//! and none started unrecorded. Each test then gives the disk room again and shows that
//! the same world does act: the runs before were held by the disk, not by something else.
//!
//! Needs root (mount(2)); where mounting is not permitted (EPERM) each test says so and
//! skips. The tmpfs is unmounted on drop, also after a panic; the pool's containers and
//! volumes are removed by label (`Pool`).

#[path = "support/docker.rs"]
mod docker_support;
mod hardening_support;
mod support;

use docker_support::{docker, docker_ok, write_file};
use hardening_support::{
    ChildGuard, DockerFault, DockerFaults, DockerRule, Knobs, LiveProm, Rig, bin, idle_cluster,
    pending_cluster, run,
};
use k3s_scale::state::State;
use k3s_scale::state::time::Timestamp;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Run;
use support::prom::Cluster;

/// Small, so `dd` fills it at once; mode 0700 as k3s-scale wants its state folder.
const TMPFS_OPTIONS: &str = "size=64k,mode=0700";
const FILLER: &str = "filler";
const ENOSPC_TEXT: &str = "No space left on device";
const EROFS_TEXT: &str = "Read-only file system";

// ---------------------------------------------------------------------------------------
// The tmpfs.

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in the path")
}

/// mount(2); the error carries errno.
fn sys_mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> std::io::Result<()> {
    let source = source.map(|s| CString::new(s).unwrap());
    let fstype = fstype.map(|s| CString::new(s).unwrap());
    let data = data.map(|s| CString::new(s).unwrap());
    let target = c_path(target);
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A tmpfs mounted on a folder of the test's for its lifetime: unmounted and the folder
/// removed on drop, even when the test panics.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// None, with the reason printed, when this process may not mount (EPERM); any other
    /// failure fails the test.
    fn mount(dir: &Path, test: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        match sys_mount(Some("tmpfs"), dir, Some("tmpfs"), 0, Some(TMPFS_OPTIONS)) {
            Ok(()) => Some(Tmpfs { dir: dir.into() }),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                let _ = std::fs::remove_dir(dir);
                let why = format!(
                    "SKIPPED {test}: mounting a tmpfs on {} is not permitted here ({e}); this \
                     test needs root (CAP_SYS_ADMIN)",
                    dir.display()
                );
                println!("{why}");
                eprintln!("{why}");
                None
            }
            Err(e) => panic!(
                "mount -t tmpfs -o {TMPFS_OPTIONS} tmpfs {}: {e}",
                dir.display()
            ),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `dd` writes zeros into one file until the disk refuses (ENOSPC); then not one more
    /// byte fits, which a probe checks.
    fn fill(&self) {
        let out = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", self.path(FILLER).display()))
            .arg("bs=4k")
            .output()
            .expect("run dd");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(ENOSPC_TEXT),
            "dd should end with ENOSPC: {out:?}"
        );
        let probe = self.path("probe");
        let e = std::fs::write(&probe, b"x").expect_err("the disk is full");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        let _ = std::fs::remove_file(&probe);
    }

    /// Room again: the filler removed.
    fn free(&self) {
        std::fs::remove_file(self.path(FILLER)).expect("remove the filler");
    }

    /// `mount -o remount,ro` (or back to rw).
    fn remount(&self, read_only: bool) {
        let flags = libc::MS_REMOUNT | if read_only { libc::MS_RDONLY } else { 0 };
        sys_mount(None, &self.dir, None, flags, None)
            .unwrap_or_else(|e| panic!("remount {} (ro: {read_only}): {e}", self.dir.display()));
        if read_only {
            let e = std::fs::write(self.path("probe"), b"x").expect_err("read-only");
            assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
        }
    }

    /// The names in the folder, sorted.
    fn listing(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = c_path(&self.dir);
        // SAFETY: a NUL-terminated path that outlives the calls.
        let mut rc = unsafe { libc::umount2(target.as_ptr(), 0) };
        if rc != 0 {
            // Something still has a file open there: detach it now, freed when closed.
            rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        if rc != 0 {
            eprintln!(
                "cannot unmount {}: {}",
                self.dir.display(),
                std::io::Error::last_os_error()
            );
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------
// Runs and checks.

fn evaluate(cfg: &Path, state: &Path) -> Run {
    run(
        cfg,
        &[
            "--state",
            state.to_str().unwrap(),
            "evaluate",
            "--output",
            "json",
        ],
    )
}

fn running(name: &str) -> Option<bool> {
    let out = docker(&["inspect", "-f", "{{.State.Running}}", name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim() == "true")
}

fn error_of(r: &Run) -> String {
    r.json()["error"].as_str().unwrap_or("").to_string()
}

/// Idle for an hour: a scale-down of every unneeded worker is due.
fn idle_state() -> State {
    State {
        low_since: Some(Timestamp::from_millis(
            Timestamp::now().as_millis() - 3_600_000,
        )),
        next_worker_index: 2,
        ..State::fresh()
    }
}

/// The worker, its volume, its Node and its pods are as they were: nothing was cordoned,
/// evicted or deleted, the container (counted by the pool's label) still runs.
fn nothing_removed(rig: &Rig, worker: &str, pods: &[String], what: &str) {
    assert_eq!(rig.containers(), vec![worker.to_string()], "{what}");
    assert_eq!(rig.volumes(), vec![format!("{worker}-data")], "{what}");
    assert_eq!(running(worker), Some(true), "{what}: the container runs");
    assert_eq!(
        rig.api.is_cordoned(worker),
        Some(false),
        "{what}: Node kept"
    );
    assert_eq!(rig.api.count("PATCH", "/"), 0, "{what}: a patch (cordon)");
    assert_eq!(rig.api.count("POST", "/eviction"), 0, "{what}: an eviction");
    assert_eq!(rig.api.count("DELETE", "/"), 0, "{what}: a delete");
    for p in pods {
        let (ns, name) = p.split_once('/').unwrap();
        assert!(rig.api.pod(ns, name).is_some(), "{what}: pod {p} gone");
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Full,
    ReadOnly,
}

/// An idle worker that every run would remove; the state folder full or read-only.
/// Three `evaluate` runs and a `drain NODE`: each exits 6 naming the state path and the
/// cause, the worker stays (container, volume, Node, pods), the state on disk is the one
/// written before. Then with room again, the next run removes it (exit 11).
fn an_idle_worker_survives(fault: Fault, test: &str) {
    let started = Instant::now();
    let mut rig = Rig::new();
    let Some(disk) = Tmpfs::mount(&rig.pool.dir.join("state-disk"), test) else {
        return;
    };
    let worker = rig.worker(1);
    rig.run_worker_container(1);
    rig.add_worker_node(&worker);
    let pods = rig.add_pods(&worker, 3, Duration::from_millis(50));
    let state_path = disk.path("state.json");
    let state = idle_state();
    state.save(&state_path).expect("write the state");
    let prom = LiveProm::start(idle_cluster(&worker));
    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        ..Knobs::default()
    });
    // The default layout keeps the lock beside the state (one folder): a second config
    // does so, with the lock file there from an earlier run.
    let lock_on_disk = disk.path("k3s-scale.lock");
    write_file(&lock_on_disk, "1\n", 0o600);
    let shared_cfg = rig.dir.join("config-lock-on-disk.yaml");
    let yaml = std::fs::read_to_string(&cfg).unwrap();
    let lock_line = format!("lock_path: {}", rig.lock_path().display());
    assert!(yaml.contains(&lock_line), "{yaml}");
    let yaml = yaml.replace(
        &lock_line,
        &format!("lock_path: {}", lock_on_disk.display()),
    );
    write_file(&shared_cfg, &yaml, 0o600);
    let shown = state_path.display().to_string();
    let cause = match fault {
        Fault::Full => {
            disk.fill();
            ENOSPC_TEXT
        }
        Fault::ReadOnly => {
            disk.remount(true);
            EROFS_TEXT
        }
    };
    let listed = disk.listing();

    for i in 1..=3 {
        let what = format!("{fault:?}, evaluate run {i}");
        let r = evaluate(&cfg, &state_path);
        assert_eq!(r.code, 6, "{what}: {r:?}");
        let v = r.json();
        assert_eq!(
            v["action"], "scale_down",
            "{what}: the run was for {worker}: {v}"
        );
        assert_eq!(
            v["removed"].as_array().map_or(0, Vec::len),
            0,
            "{what}: {v}"
        );
        let e = error_of(&r);
        assert!(
            e.contains(&format!("cannot write state {shown}")) && e.contains(cause),
            "{what}: the error names the state path and why: {e}"
        );
        assert!(r.stderr.contains(&shown), "{what}: {}", r.stderr);
        nothing_removed(&rig, &worker, &pods, &what);
    }

    let what = format!("{fault:?}, drain {worker}");
    let r = run(
        &cfg,
        &["--state", state_path.to_str().unwrap(), "drain", &worker],
    );
    assert_eq!(r.code, 6, "{what}: {r:?}");
    assert!(
        r.stderr.contains(&format!("cannot write state {shown}")) && r.stderr.contains(cause),
        "{what}: {}",
        r.stderr
    );
    nothing_removed(&rig, &worker, &pods, &what);

    // Lock and state in the one folder: on a full disk the lock file (there already)
    // still takes the PID and the state write fails as above (exit 6); on a read-only
    // one the lock file cannot be opened for writing, so the run stops before anything
    // (exit 3, the lock path named). Either way nothing is done.
    let what = format!("{fault:?}, lock beside the state");
    let r = evaluate(&shared_cfg, &state_path);
    match fault {
        Fault::Full => {
            assert_eq!(r.code, 6, "{what}: {r:?}");
            assert!(error_of(&r).contains(&shown), "{what}: {r:?}");
        }
        Fault::ReadOnly => {
            assert_eq!(r.code, 3, "{what}: {r:?}");
            let lock = format!("cannot open lock file {}", lock_on_disk.display());
            assert!(
                r.stderr.contains(&lock) && r.stderr.contains(EROFS_TEXT),
                "{what}: {}",
                r.stderr
            );
        }
    }
    nothing_removed(&rig, &worker, &pods, &what);

    assert_eq!(
        State::load(&state_path).expect("the state loads"),
        state,
        "{fault:?}: the state on disk is the one written before the runs"
    );
    assert_eq!(
        disk.listing(),
        listed,
        "{fault:?}: no temp file left behind"
    );

    // Room again: the same world removes the worker, so the runs above were held by the
    // disk alone.
    match fault {
        Fault::Full => disk.free(),
        Fault::ReadOnly => disk.remount(false),
    }
    let r = evaluate(&cfg, &state_path);
    assert_eq!(r.code, 11, "{fault:?}, with room again: {r:?}");
    assert_eq!(r.json()["removed"][0], worker.as_str(), "{r:?}");
    assert!(rig.containers().is_empty(), "{:?}", rig.containers());
    println!(
        "state disk {fault:?} ({}): 3 evaluate runs and a drain, each exit 6 naming {shown} \
         (lock beside the state: exit {}); worker {worker} kept (container, volume, Node, 3 pods; 0 cordons, evictions, deletes); \
         with room again exit 11, removed; {:.1} s",
        cause,
        match fault {
            Fault::Full => 6,
            Fault::ReadOnly => 3,
        },
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_full_state_disk_removes_no_worker_in_any_run() {
    an_idle_worker_survives(
        Fault::Full,
        "a_full_state_disk_removes_no_worker_in_any_run",
    );
}

#[test]
fn a_read_only_state_disk_removes_no_worker_in_any_run() {
    an_idle_worker_survives(
        Fault::ReadOnly,
        "a_read_only_state_disk_removes_no_worker_in_any_run",
    );
}

/// A scale-up is due (one unschedulable pod, listed pending by the stand-in too). On a
/// full disk the write-ahead fails first: each of three runs exits 6 and creates nothing.
/// With room at the write-ahead and the disk filling while the worker is created (the
/// Docker creates held 1 s, `dd` run meanwhile), the final save fails: exit 7 naming the
/// worker started and the state path; the worker runs, and the state on disk, written
/// ahead, has it provisioning and the counter past its name. The next run, disk still
/// full, starts no second worker for the same pod and removes none (exit 6).
#[test]
fn a_scale_up_on_a_full_state_disk_starts_nothing_or_names_what_it_started() {
    let test = "a_scale_up_on_a_full_state_disk_starts_nothing_or_names_what_it_started";
    let started = Instant::now();
    let mut rig = Rig::new();
    let Some(disk) = Tmpfs::mount(&rig.pool.dir.join("state-disk"), test) else {
        return;
    };
    let state_path = disk.path("state.json");
    let shown = state_path.display().to_string();
    let cluster = pending_cluster();
    rig.lists(&cluster);
    let prom = LiveProm::start(cluster);
    let faults = DockerFaults::start(&rig.pool.dir.join("faults.sock"));
    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        docker_host: Some(faults.host()),
        ..Knobs::default()
    });
    let worker = rig.worker(1);

    disk.fill();
    for i in 1..=3 {
        let what = format!("full disk, evaluate run {i}");
        let r = evaluate(&cfg, &state_path);
        assert_eq!(r.code, 6, "{what}: {r:?}");
        assert_eq!(r.json()["action"], "scale_up", "{what}: {r:?}");
        let e = error_of(&r);
        assert!(
            e.contains(&format!("cannot write state {shown}")) && e.contains(ENOSPC_TEXT),
            "{what}: {e}"
        );
        assert!(
            rig.containers().is_empty(),
            "{what}: {:?}",
            rig.containers()
        );
        assert!(rig.volumes().is_empty(), "{what}: {:?}", rig.volumes());
        let posts: Vec<String> = faults
            .requests()
            .into_iter()
            .filter(|s| s.line.starts_with("POST "))
            .map(|s| s.line)
            .collect();
        assert!(posts.is_empty(), "{what}: Docker was asked to {posts:?}");
    }
    assert_eq!(
        disk.listing(),
        vec![FILLER.to_string()],
        "no state, no temp file"
    );

    // Room at the write-ahead; the disk fills while the worker is created.
    disk.free();
    faults.set_rules(vec![DockerRule {
        method: "POST",
        path: "/create",
        fault: DockerFault::Delay(Duration::from_secs(1)),
    }]);
    let child = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["--state", state_path.to_str().unwrap()])
        .args(["evaluate", "--output", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn k3s-scale");
    let mut child = ChildGuard::new(child);
    faults
        .wait_for("/create", Duration::from_secs(30))
        .expect("the run asks Docker to create the worker");
    disk.fill();
    let out = child
        .0
        .take()
        .unwrap()
        .wait_with_output()
        .expect("wait for k3s-scale");
    let r = Run::from_output(out);
    faults.set_rules(Vec::new());
    assert_eq!(r.code, 7, "filled during the create: {r:?}");
    let v = r.json();
    assert_eq!(v["started"], serde_json::json!([worker]), "{v}");
    let e = error_of(&r);
    assert!(
        e.contains(&format!("cannot write state {shown}"))
            && e.contains(ENOSPC_TEXT)
            && e.contains(&format!("started {worker}")),
        "the error names the state, why and what was done: {e}"
    );
    assert!(
        r.stderr.contains(&format!("started {worker}")),
        "{}",
        r.stderr
    );
    assert_eq!(rig.containers(), vec![worker.clone()]);
    assert_eq!(running(&worker), Some(true), "the worker started");
    let s = State::load(&state_path).expect("the written-ahead state loads");
    let booting: Vec<&str> = s.provisioning.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(booting, vec![worker.as_str()], "written ahead: {s:?}");
    assert_eq!(s.next_worker_index, 2, "written ahead: the name is spent");

    let r = evaluate(&cfg, &state_path);
    assert_eq!(r.code, 6, "the next run, disk still full: {r:?}");
    assert_eq!(rig.containers(), vec![worker.clone()], "{r:?}");
    assert_eq!(running(&worker), Some(true));
    println!(
        "scale-up, state disk full: 3 runs exit 6 with nothing created; filled during the \
         create: exit 7 naming `started {worker}`, the state on disk has it provisioning \
         (counter 2); the next run exit 6, still one worker; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A repair that removes (a worker created but never started, as a daemon restart leaves
/// it) on a full state disk: the repair's write-ahead fails, so each of three runs exits
/// 6 naming the state path and the container and its volume stay; with room again the
/// next run removes both (exit 0).
#[test]
fn a_removing_repair_waits_for_a_writable_state_disk() {
    let test = "a_removing_repair_waits_for_a_writable_state_disk";
    let started = Instant::now();
    let mut rig = Rig::new();
    let Some(disk) = Tmpfs::mount(&rig.pool.dir.join("state-disk"), test) else {
        return;
    };
    let state_path = disk.path("state.json");
    let shown = state_path.display().to_string();
    let worker = rig.worker(1);
    let labels = [
        "io.k3s-scale.managed=true".to_string(),
        format!("io.k3s-scale.pool={}", rig.pool.name),
        format!("io.k3s-scale.worker={worker}"),
        "io.k3s-scale.index=1".to_string(),
    ];
    let volume = format!("{worker}-data");
    let mut args = vec!["volume", "create"];
    for l in &labels {
        args.extend(["--label", l.as_str()]);
    }
    args.push(&volume);
    docker_ok(&args);
    let mount = format!("type=volume,src={volume},dst=/var/lib/rancher/k3s");
    let mut args = vec![
        "create",
        "--name",
        &worker,
        "--network",
        "none",
        "--mount",
        &mount,
    ];
    for l in &labels {
        args.extend(["--label", l.as_str()]);
    }
    args.push(docker_support::test_image());
    docker_ok(&args);
    let status = || docker_support::inspect("container", &worker)["State"]["Status"].clone();
    assert_eq!(status(), "created");
    State {
        next_worker_index: 2,
        ..State::fresh()
    }
    .save(&state_path)
    .expect("write the state");
    let prom = LiveProm::start(
        Cluster::new()
            .control_plane("server")
            .alloc(2.0, 4.0 * 1024.0 * 1024.0 * 1024.0)
            .pod("coredns")
            .on("server")
            .requests(0.1, 64.0 * 1024.0 * 1024.0),
    );
    let cfg = rig.config(&Knobs {
        prom_url: prom.url(),
        ..Knobs::default()
    });

    disk.fill();
    for i in 1..=3 {
        let what = format!("full disk, evaluate run {i}");
        let r = evaluate(&cfg, &state_path);
        assert_eq!(r.code, 6, "{what}: {r:?}");
        let e = error_of(&r);
        assert!(
            e.contains(&format!("cannot write state {shown}")) && e.contains(ENOSPC_TEXT),
            "{what}: {e}"
        );
        assert_eq!(rig.containers(), vec![worker.clone()], "{what}");
        assert_eq!(rig.volumes(), vec![volume.clone()], "{what}");
        assert_eq!(status(), "created", "{what}: never started either");
    }

    disk.free();
    let r = evaluate(&cfg, &state_path);
    assert_eq!(r.code, 0, "with room again: {r:?}");
    let repairs = r.json()["repairs"].to_string();
    assert!(
        repairs.contains(&format!("remove {worker} and its volume")),
        "{repairs}"
    );
    assert!(rig.containers().is_empty(), "{:?}", rig.containers());
    assert!(rig.volumes().is_empty(), "{:?}", rig.volumes());
    println!(
        "repair, state disk full: 3 runs exit 6 naming {shown}, never-started {worker} and \
         its volume kept; with room again exit 0, both removed; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
