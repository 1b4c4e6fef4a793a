//! Everything k3s-scale prints to stdout goes through here. A reader that went away early
//! (`status | head -1`, `evaluate --output json | true`) is no error: Rust ignores SIGPIPE,
//! so the write fails with EPIPE, the rest is dropped and the command ends with its own
//! exit code. `println!` would panic instead, so no other file in src/ prints.

use crate::run::error::RunError;
use std::io::{ErrorKind, Write};

/// Writes `text` to stdout and flushes it. A closed stdout is done, not failed; any other
/// write error (a full disk behind `>`) is an error of the command.
pub fn print(text: impl AsRef<[u8]>) -> Result<(), RunError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_ref()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(RunError::Internal(format!("cannot write to stdout: {e}"))),
    }
}

/// The report of a command that has acted (`evaluate`, `up`, `drain`, `init`, `state
/// reset`): the output is only the account of what was done, so a failure to write it
/// does not change the run's exit code; it is logged.
pub fn report(text: impl AsRef<[u8]>) {
    if let Err(e) = print(text) {
        log::error!("{e}");
    }
}
