//! The run lock: an exclusive, non-blocking flock on a lock file, held for the whole run
//! and released by the kernel when the process ends (even by kill -9), so it never expires
//! early and is never left stale. The lock file is never opened through a link, and its
//! folder must be one no other user can write (`config::files`).

use crate::config::files::{self, FileError};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds the lock; the PID it wrote, when readable.
    #[error("another k3s-scale run {}holds the lock {path}", holder(*.1), path = .0.display())]
    Held(PathBuf, Option<u32>),
    #[error("cannot open lock file {path}: {1}", path = .0.display())]
    Io(PathBuf, #[source] std::io::Error),
    /// The lock path is unsafe or unusable (a link, a folder, a folder others can write):
    /// a configuration problem (exit 2).
    #[error("lock file: {0}")]
    Refused(#[source] FileError),
}

/// The holder's PID as `Held` names it (`(PID 42) `), or nothing when it is not known.
fn holder(pid: Option<u32>) -> String {
    pid.map(|pid| format!("(PID {pid}) ")).unwrap_or_default()
}

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    pub fn acquire(path: &Path) -> Result<RunLock, LockError> {
        let ioerr = |e| LockError::Io(path.into(), e);
        // Not truncated on open: the holder's PID must stay readable for the loser.
        let mut file = files::open_own_rw(path, 0o600).map_err(|e| match e {
            FileError::Refused { .. } => LockError::Refused(e),
            FileError::Io(p, e) if p == path => LockError::Io(p, e),
            FileError::Io(p, e) => LockError::Io(
                path.into(),
                std::io::Error::new(e.kind(), format!("{}: {e}", p.display())),
            ),
        })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held(path.into(), text.trim().parse().ok()));
            }
            Err(TryLockError::Error(e)) => return Err(ioerr(e)),
        }
        file.set_len(0).map_err(ioerr)?;
        file.seek(SeekFrom::Start(0)).map_err(ioerr)?;
        writeln!(file, "{}", std::process::id()).map_err(ioerr)?;
        Ok(RunLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_told_the_pid() {
        let d = std::env::temp_dir().join(format!("k3s-scale-lock-{}", std::process::id()));
        let p = d.join("run.lock");
        let first = RunLock::acquire(&p).unwrap();
        match RunLock::acquire(&p) {
            Err(LockError::Held(_, Some(pid))) => assert_eq!(pid, std::process::id()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        RunLock::acquire(&p).expect("free again once the holder is gone");
    }
}
