//! The command line, the top layer: arguments and the exit codes `--help` documents
//! (`args`), each command run and its outcome printed (`commands`), `status`, the metrics
//! textfile written after a run, completions and the man page, and log set-up; every print
//! to stdout goes through `stdout` (a closed stdout ends quietly). The only
//! layer that reads the environment and the clock to hand them down. May use every layer.

pub mod args;
pub mod commands;
pub mod completions;
pub mod init;
pub mod logging;
pub mod metrics;
pub mod status;
pub mod stdout;

pub use args::*;
