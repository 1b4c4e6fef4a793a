//! Bad input at the process level, with figures: a Prometheus answer over the 16 MiB cap
//! (announced as 1 GiB, or streamed without a length), one nested 100,000 deep, a state
//! file over its 4 MiB cap, a config file over its 1 MiB cap, a join token file over its
//! 4 KiB cap. Each is refused with a message naming the problem and the documented exit
//! code, within seconds, and in bounded memory: the peak RSS of each run (GNU time) is
//! printed next to that of a run refused on a tiny answer, and must stay under 64 MiB.

mod support;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::http::{Acceptor, read_message};
use support::{BIN, TempDir};

/// Bounded memory: the answer cap is 16 MiB; the rest of the process needs a few MiB.
const MAX_PEAK_RSS_KIB: u64 = 64 * 1024;
const GNU_TIME: &str = "/usr/bin/time";

/// How the fake Prometheus answers.
#[derive(Clone, Copy)]
enum Answer {
    /// HTTP 500 with a short body: the baseline.
    Small500,
    /// 200, Content-Length 1 GiB, bytes of a valid-looking answer until the client leaves.
    Announced,
    /// 200, chunked, bytes until the client leaves (at most 1 GiB).
    Streamed,
    /// 200, a whole answer whose result is nested 100,000 deep.
    Nested,
}

struct FakeProm {
    acceptor: Acceptor,
    sent: Arc<AtomicU64>,
}

impl FakeProm {
    fn start(how: Answer) -> FakeProm {
        let sent = Arc::new(AtomicU64::new(0));
        let sent2 = sent.clone();
        let acceptor = Acceptor::start(move |conn| {
            let _ = answer(conn, how, &sent2);
        });
        FakeProm { acceptor, sent }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.acceptor.port)
    }
    fn sent_mib(&self) -> f64 {
        self.sent.load(Ordering::SeqCst) as f64 / (1 << 20) as f64
    }
}

const GIB: u64 = 1 << 30;
const START: &str = r#"{"status":"success","data":{"resultType":"vector","result":["#;
const SERIES: &str =
    r#"{"metric":{"signal":"node_ready","node":"k3s-worker-000000"},"value":[1800000000.1,"1"]},"#;

fn answer(conn: TcpStream, how: Answer, sent: &AtomicU64) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    if read_message(&mut r)?.is_none() {
        return Ok(());
    }
    let mut w = conn;
    let mut chunk = String::from(START);
    while chunk.len() < 64 * 1024 {
        chunk.push_str(SERIES);
    }
    match how {
        Answer::Small500 => {
            let b = r#"{"status":"error","errorType":"internal","error":"boom"}"#;
            write!(
                w,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                b.len()
            )?;
        }
        Answer::Nested => {
            let b = format!("{START}{}{}]}}}}", "[".repeat(100_000), "]".repeat(100_000));
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                b.len()
            )?;
        }
        Answer::Announced => {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {GIB}\r\nConnection: close\r\n\r\n"
            )?;
            let mut total = 0u64;
            while total < GIB {
                w.write_all(chunk.as_bytes())?;
                total += chunk.len() as u64;
                sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
        Answer::Streamed => {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            )?;
            let mut total = 0u64;
            while total < GIB {
                write!(w, "{:x}\r\n{chunk}\r\n", chunk.len())?;
                total += chunk.len() as u64;
                sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    }
    Ok(())
}

fn config(dir: &Path, prom_url: &str) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(
        &p,
        format!(
            "prometheus:\n  url: {prom_url}\n  timeout: 20s\n\
             kubernetes:\n  kubeconfig: {}\n\
             state:\n  path: {}\n  lock_path: {}\n",
            dir.join("no-kubeconfig").display(),
            dir.join("state.json").display(),
            dir.join("k3s-scale.lock").display()
        ),
    )
    .unwrap();
    p
}

/// One run under GNU time: exit code, stdout + stderr, wall time, peak RSS in KiB.
struct Measured {
    code: i32,
    output: String,
    wall: Duration,
    peak_kib: u64,
}

fn measure(dir: &Path, args: &[&str]) -> Measured {
    assert!(
        Path::new(GNU_TIME).exists(),
        "{GNU_TIME} is missing: install Debian's `time` package (tests/ci.sh does)"
    );
    let rss = dir.join("rss");
    let t = Instant::now();
    let out = Command::new(GNU_TIME)
        .args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(BIN)
        .args(args)
        .env_remove("K3S_SCALE_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run k3s-scale under GNU time");
    let wall = t.elapsed();
    let peak_kib = std::fs::read_to_string(&rss)
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("GNU time's %M");
    Measured {
        code: out.status.code().expect("exited"),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        wall,
        peak_kib,
    }
}

fn row(case: &str, m: &Measured, note: &str) {
    println!(
        "| {case} | {} | {:.2} s | {:.1} MiB | {note} |",
        m.code,
        m.wall.as_secs_f64(),
        m.peak_kib as f64 / 1024.0
    );
}

#[test]
fn oversized_and_hostile_input_is_refused_in_bounded_time_and_memory() {
    let dir = TempDir::new("input");
    println!("| input | exit code | wall | peak RSS | message |\n|---|---|---|---|---|");

    let small = FakeProm::start(Answer::Small500);
    let cfg = config(dir.path(), &small.url());
    let cfg_s = cfg.to_str().unwrap();
    let base = measure(dir.path(), &["--config", cfg_s, "evaluate"]);
    assert_eq!(base.code, 4, "{}", base.output);
    row("Prometheus answers HTTP 500 (baseline)", &base, "HTTP 500");

    for (case, how) in [
        ("Prometheus answer announced as 1 GiB", Answer::Announced),
        (
            "Prometheus answer streamed without a length",
            Answer::Streamed,
        ),
    ] {
        let prom = FakeProm::start(how);
        let cfg = config(dir.path(), &prom.url());
        let m = measure(dir.path(), &["--config", cfg.to_str().unwrap(), "evaluate"]);
        assert_eq!(m.code, 4, "{case}: {}", m.output);
        assert!(
            m.output.contains("larger than 16777216 bytes"),
            "{case}: {}",
            m.output
        );
        assert!(m.peak_kib < MAX_PEAK_RSS_KIB, "{case}: {} KiB", m.peak_kib);
        assert!(m.wall < Duration::from_secs(20), "{case}: {:?}", m.wall);
        // The stream is cut where the cap is reached, not read on to its end.
        assert!(
            prom.sent_mib() < 200.0,
            "{case}: {} MiB sent",
            prom.sent_mib()
        );
        row(
            case,
            &m,
            &format!(
                "body larger than 16777216 bytes ({:.0} MiB sent before the client left)",
                prom.sent_mib()
            ),
        );
    }

    let nested = FakeProm::start(Answer::Nested);
    let cfg = config(dir.path(), &nested.url());
    let m = measure(dir.path(), &["--config", cfg.to_str().unwrap(), "evaluate"]);
    assert_eq!(m.code, 4, "{}", m.output);
    assert!(m.output.contains("invalid type: sequence"), "{}", m.output);
    assert!(m.peak_kib < MAX_PEAK_RSS_KIB);
    row(
        "Prometheus answer nested 100,000 deep",
        &m,
        "malformed: invalid type: sequence, expected a string at line 1 column 62",
    );

    // A 5 MiB state file: refused before it is read.
    let state = dir.join("state.json");
    let mut big = String::from("{\"version\":1,\"events\":[");
    while big.len() < 5 << 20 {
        big.push_str("{\"at\":\"2027-01-15T08:00:00Z\",\"kind\":\"x\",\"message\":\"padding\"},");
    }
    big.pop();
    big.push_str("]}");
    std::fs::write(&state, &big).unwrap();
    let m = measure(dir.path(), &["--config", cfg_s, "evaluate"]);
    assert_eq!(m.code, 6, "{}", m.output);
    assert!(
        m.output.contains("over the 4194304-byte limit") && m.output.contains("state reset"),
        "{}",
        m.output
    );
    assert!(m.peak_kib < MAX_PEAK_RSS_KIB);
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        big,
        "left untouched"
    );
    row(
        "state file of 5 MiB",
        &m,
        "over the 4194304-byte limit; run `k3s-scale state reset`",
    );
    std::fs::remove_file(&state).unwrap();

    // A 2 MiB config file.
    let huge_cfg = dir.join("huge.yaml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    while text.len() < 2 << 20 {
        text.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&huge_cfg, text).unwrap();
    let m = measure(
        dir.path(),
        &["--config", huge_cfg.to_str().unwrap(), "evaluate"],
    );
    assert_eq!(m.code, 2, "{}", m.output);
    assert!(
        m.output.contains("over the 1048576-byte limit"),
        "{}",
        m.output
    );
    row("config file of 2 MiB", &m, "over the 1048576-byte limit");

    // A join token file of 1 MiB (read when Docker is first needed; checked directly).
    let token = dir.join("token");
    std::fs::write(&token, "x".repeat(1 << 20)).unwrap();
    let e = k3s_scale::docker::load_token(Some(&token), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1048576 bytes; a join token is one short line"),
        "{e}"
    );
    println!("| join token file of 1 MiB | 2 | - | - | {e} |");
    println!(
        "input: baseline peak RSS {:.1} MiB; cap for every case {} MiB",
        base.peak_kib as f64 / 1024.0,
        MAX_PEAK_RSS_KIB / 1024
    );
}
