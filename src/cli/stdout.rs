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

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// `println!` and `print!` panic on a closed stdout: only this file writes to it.
    #[test]
    fn nothing_else_in_src_prints_to_stdout() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let mut wrong = Vec::new();
        for f in &all {
            if f.ends_with("cli/stdout.rs") {
                continue;
            }
            let text = std::fs::read_to_string(f).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                // `eprintln!` and `eprint!` (stderr) are fine.
                if ["println!", "print!", "stdout()"]
                    .iter()
                    .any(|m| code.matches(m).count() > code.matches(&format!("e{m}")).count())
                {
                    wrong.push(format!("{}:{}: {line}", f.display(), i + 1));
                }
            }
        }
        assert!(all.len() > 20, "the scan looked at {} files", all.len());
        assert!(
            wrong.is_empty(),
            "prints outside cli/stdout.rs:\n{}",
            wrong.join("\n")
        );
    }
}
