//! Log set-up: env_logger on stderr, text or one JSON object per line.

use crate::cli::LogFormat;
use std::io::Write;

pub fn init(verbose: u8, quiet: bool, format: LogFormat) {
    let level = if quiet {
        log::LevelFilter::Error
    } else {
        match verbose {
            0 => log::LevelFilter::Warn,
            1 => log::LevelFilter::Info,
            2 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    };
    let mut b = env_logger::Builder::new();
    // Our own crate at the chosen level; dependencies stay quieter unless RUST_LOG says.
    b.filter_level(level.min(log::LevelFilter::Warn));
    b.filter_module("k3s_scale", level);
    // kube's client logs every non-2xx answer as an error of its own; k3s-scale reports
    // those itself with context, so the duplicate is shown only from -vv.
    if verbose < 2 {
        b.filter_module("kube_client", log::LevelFilter::Off);
    }
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    b.target(env_logger::Target::Stderr);
    match format {
        LogFormat::Text => {
            b.format(|buf, r| {
                if may_carry_secrets(r) {
                    return Ok(());
                }
                writeln!(
                    buf,
                    "{} {:<5} {}",
                    crate::state::time::Timestamp::now(),
                    r.level(),
                    r.args()
                )
            });
        }
        LogFormat::Json => {
            b.format(|buf, r| {
                if may_carry_secrets(r) {
                    return Ok(());
                }
                let line = serde_json::json!({
                    "ts": crate::state::time::Timestamp::now().to_string(),
                    "level": r.level().as_str(),
                    "target": r.target(),
                    "msg": r.args().to_string(),
                });
                writeln!(buf, "{line}")
            });
        }
    }
    let _ = b.try_init();
}

/// Dependency lines that may carry secrets, dropped whatever RUST_LOG asks for: bollard
/// logs request and response bodies at debug and trace (a worker's create body carries
/// the join token); ureq hex-dumps every request at trace, the Authorization header (the
/// Prometheus bearer token or basic-auth password) included; the other clients' trace
/// lines are wire-level too. k3s-scale's own lines are kept at every level: it never logs
/// a secret.
fn may_carry_secrets(r: &log::Record) -> bool {
    let target = r.target();
    if target.starts_with("k3s_scale") {
        return false;
    }
    r.level() == log::Level::Trace
        || (r.level() >= log::Level::Debug && target.starts_with("bollard"))
}
