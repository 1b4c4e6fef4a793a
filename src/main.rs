//! Entry point: parse the command line, run the command, map its outcome to an exit code.

use clap::Parser;
use k3s_scale::{cli, commands, logging};
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
    ExitCode::from(commands::run(&cli))
}
