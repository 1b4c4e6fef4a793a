//! The exit codes k3s-scale ends with, numbered in this one place as README's Exit codes
//! table documents them; every command and outcome maps to one of these.

/// What a command's end means to a timer, a script or CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Nothing to do; and every command that only reads or prints, done.
    Nothing,
    /// An unexpected error: a bug.
    Bug,
    /// A usage or config error (the message names the key or the line).
    Usage,
    /// The run lock is held by another run.
    Locked,
    /// Prometheus is unavailable or answered garbage.
    Metrics,
    /// A Docker or Kubernetes action failed, or the run reached `scaling.run_timeout`.
    Action,
    /// The state is unreadable or corrupt, or could not be written ahead of an action:
    /// nothing was done.
    State,
    /// An action was carried out but the state could not be saved afterwards.
    Unsaved,
    /// Stopped by SIGTERM or SIGINT after the call in flight, the state saved.
    Stopped,
    /// Scaled up (with `--dry-run`: would have).
    ScaledUp,
    /// Scaled down (with `--dry-run`: would have).
    ScaledDown,
}

impl Exit {
    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Nothing => 0,
            Exit::Bug => 1,
            Exit::Usage => 2,
            Exit::Locked => 3,
            Exit::Metrics => 4,
            Exit::Action => 5,
            Exit::State => 6,
            Exit::Unsaved => 7,
            Exit::Stopped => 8,
            Exit::ScaledUp => 10,
            Exit::ScaledDown => 11,
        }
    }

    /// Every exit there is, in the order of their codes.
    pub const ALL: [Exit; 11] = [
        Exit::Nothing,
        Exit::Bug,
        Exit::Usage,
        Exit::Locked,
        Exit::Metrics,
        Exit::Action,
        Exit::State,
        Exit::Unsaved,
        Exit::Stopped,
        Exit::ScaledUp,
        Exit::ScaledDown,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README's Exit codes table lists exactly these codes, each once.
    #[test]
    fn the_readme_documents_every_exit_code_and_no_other() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("## Exit codes")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has an Exit codes section");
        let mut documented: Vec<u8> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| "))
            .filter_map(|l| l.split(" |").next())
            .filter_map(|c| c.trim().parse().ok())
            .collect();
        documented.sort_unstable();
        let mut codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        assert_eq!(documented, codes);
    }
}
