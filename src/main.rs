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
    // SIGTERM/SIGINT ask the run to stop between two outside calls (state::stop); without
    // the listener a signal would end it mid-drain with nothing recorded.
    if let Err(e) = k3s_scale::state::stop::listen() {
        log::warn!("cannot listen for SIGTERM/SIGINT ({e}): a signal ends the run at once");
    }
    // A panic is a bug; it still ends with the documented "unexpected" code, not 101 or
    // an abort's 134. The release build aborts on panic (Cargo.toml: no unwinding code,
    // less to map), so this hook is the one place it can be turned into exit 1; debug and
    // test builds unwind but end here too, before any unwinding starts.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        log::error!("internal error (a bug): the run panicked; see the message above");
        std::process::exit(i32::from(k3s_scale::run::exit::Exit::Bug.code()));
    }));
    ExitCode::from(commands::run(&cli))
}
