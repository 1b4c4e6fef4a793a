//! Whether this run has been asked to stop: SIGTERM or SIGINT received, or the run's
//! deadline (`scaling.run_timeout`) passed. The loops that make outside calls ask `why()`
//! before each new call; the call in flight is always finished, never cut off.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

/// The first stop signal received (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// When this run must end (`scaling.run_timeout` from its start); None: no deadline.
static DEADLINE: Mutex<Option<Instant>> = Mutex::new(None);

/// Why a run stops early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A signal (its number) asked the process to stop.
    Signal(i32),
    /// `scaling.run_timeout` passed.
    Deadline,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Signal(n) => write!(f, "asked to stop ({})", signal_name(*n)),
            Stop::Deadline => f.write_str("the run's deadline (scaling.run_timeout) passed"),
        }
    }
}

/// "SIGTERM", "SIGINT", else "signal N".
pub fn signal_name(n: i32) -> String {
    match n {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        n => format!("signal {n}"),
    }
}

/// Whether the run should start no new outside call, and why. A signal wins over the
/// deadline: it is what the operator asked for.
pub fn why() -> Option<Stop> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => {}
        n => return Some(Stop::Signal(n)),
    }
    deadline()
        .is_some_and(|d| Instant::now() >= d)
        .then_some(Stop::Deadline)
}

/// Sets (or clears) the run's deadline. `main`'s commands set it once per run.
pub fn set_deadline(at: Option<Instant>) {
    *DEADLINE.lock().unwrap_or_else(|e| e.into_inner()) = at;
}

pub fn deadline() -> Option<Instant> {
    *DEADLINE.lock().unwrap_or_else(|e| e.into_inner())
}

/// `at`, or the run's deadline when that comes first: a drain never outlives its run.
pub fn within(at: Instant) -> Instant {
    deadline().map_or(at, |d| d.min(at))
}

/// Records a stop signal; returns whether it is the first one.
fn received(n: i32) -> bool {
    SIGNAL
        .compare_exchange(0, n, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}

/// Listens for SIGTERM and SIGINT on a thread of its own, for the rest of the process.
/// The first asks the run to stop (it finishes the call in flight, saves the state and
/// exits 8); a second ends the process at once with 128 + the signal, as the default
/// action would have. Called once, by `main`; without it signals keep their default.
pub fn listen() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Registered here, before the thread starts: a signal right after `listen` returns is
    // already caught.
    let (mut term, mut int) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                loop {
                    let n = tokio::select! {
                        _ = term.recv() => libc::SIGTERM,
                        _ = int.recv() => libc::SIGINT,
                    };
                    if received(n) {
                        log::warn!(
                            "{}: finishing the call in flight, then saving the state and \
                             stopping (a second signal ends the run at once)",
                            signal_name(n)
                        );
                    } else {
                        log::error!(
                            "{}: stopping at once, nothing more is saved",
                            signal_name(n)
                        );
                        std::process::exit(128 + n);
                    }
                }
            })
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_says_what_stopped_the_run() {
        let cases = [
            (Stop::Signal(libc::SIGTERM), "asked to stop (SIGTERM)"),
            (Stop::Signal(libc::SIGINT), "asked to stop (SIGINT)"),
            (Stop::Signal(1), "asked to stop (signal 1)"),
            (
                Stop::Deadline,
                "the run's deadline (scaling.run_timeout) passed",
            ),
        ];
        for (stop, text) in cases {
            assert_eq!(stop.to_string(), text);
        }
    }
}
