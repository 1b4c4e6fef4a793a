//! Entry point: parse the command line, run the command, map its outcome to an exit code.

use clap::Parser;
use k3s_scale::cli::{self, commands, logging};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // clap exits 0 for --help/--version and 2 for usage errors, as documented.
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    logging::init(cli.verbose, cli.quiet, cli.log_format);
    // A panic is a bug; it still ends with the documented "unexpected" code, not 101.
    match std::panic::catch_unwind(|| commands::run(&cli)) {
        Ok(code) => ExitCode::from(code),
        Err(_) => {
            log::error!("internal error (a bug): the run panicked; see the message above");
            ExitCode::from(1)
        }
    }
}
