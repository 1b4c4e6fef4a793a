//! Shell completions and the man page, generated from the clap definition in `cli::args` so
//! they never drift from the real flags (`k3s-scale completions bash|zsh|fish`, `k3s-scale man`).

use crate::cli::{Cli, Shell};
use clap::CommandFactory;

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Generated into memory: clap_complete panics on a write error (`| head`), we do not.
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// The man page (roff, section 1).
pub fn man_page() -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .expect("writing to memory cannot fail");
    out
}
