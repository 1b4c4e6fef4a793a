//! The command line: flags, commands and the exit codes `--help` documents.

use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0   nothing to do
  10  scaled up (with --dry-run: would have)
  11  scaled down (with --dry-run: would have)
  1   unexpected error
  2   usage or config error (incl. a refused state, lock or secret file path)
  3   lock held by another run
  4   metrics unavailable (Prometheus down, slow or garbled)
  5   an action failed (Docker or Kubernetes)
  6   state file unreadable or corrupt, or unwritable before an action: nothing done
      (see `k3s-scale state reset`)
  7   an action was done but the state could not be saved (the message names it)";

#[derive(Debug, Parser)]
#[command(
    name = "k3s-scale",
    version,
    about = "One-shot autoscaler for k3s clusters whose worker nodes are Docker containers",
    long_about = "One-shot autoscaler for k3s clusters whose worker nodes are Docker containers.\n\
                  Run it every 30 s from a systemd timer or cron: each run reads the config and \
                  state, queries Prometheus once, decides, acts, saves the state and exits with \
                  a code that says what happened.",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// Config file [default: ./config.yaml, then /etc/k3s-scale/config.yaml]
    #[arg(long, global = true, value_name = "PATH", env = "K3S_SCALE_CONFIG")]
    pub config: Option<PathBuf>,

    /// State file (overrides state.path in the config)
    #[arg(long, global = true, value_name = "PATH")]
    pub state: Option<PathBuf>,

    /// Decide and print, change nothing (no Docker, Kubernetes or state writes)
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// More log output (-v info, -vv debug, -vvv trace); default: warnings and errors
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors in the log
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Log line format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One autoscaling run: query, decide, act, save (what the timer runs)
    Evaluate {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Start N workers now, ignoring cooldowns; refused (exit 2) if that would exceed
    /// limits.max_nodes. Needs Docker and Prometheus, not Kubernetes (no kubeconfig)
    Up {
        /// How many workers to start
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        count: u32,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Write a config and token file for autoscaling a k3d cluster
    ///
    /// Reads k3d cluster NAME from its containers' labels through the Docker API and writes
    /// DIR/config.yaml (network, image, server URL, pool k3d-NAME-autoscaled, the cluster's
    /// agents as permanent nodes, min/max from their number, k3d's kubeconfig for the
    /// cluster) and DIR/k3s-token (mode 0600; the token is never printed). Workers of that
    /// config carry k3d's labels: `k3d node list` shows them, `k3d cluster delete` removes
    /// them. Exit 0 written; 2 no such cluster, no server, a missing label, or a file exists
    /// (without --force); 5 Docker unreachable.
    Init {
        /// The k3d cluster (as in `k3d cluster list`)
        #[arg(long, value_name = "NAME")]
        from_k3d: String,
        /// Where to write config.yaml and k3s-token
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// Replace config.yaml and k3s-token if they exist
        #[arg(long)]
        force: bool,
    },
    /// What would this config do? Replay a workload on a simulated cluster
    ///
    /// Runs the same code `evaluate` runs (decision, cluster model, state transitions,
    /// cooldowns, idle timers, provisioning and joins) with a virtual clock stepping by the
    /// scenario's interval. Workers join after `join_time`, pods are placed by the
    /// planner's placement code, evicted pods go back to pending. No Docker, Kubernetes or
    /// state file is touched; Prometheus only with --from-prometheus (read-only). Without
    /// SCENARIO and without a config file, the built-in day runs on the default config.
    /// Exit 0, or 2 for a bad scenario or config, 4 when --from-prometheus cannot read.
    Simulate {
        /// Scenario file (YAML, see docs/simulate.md); default: the built-in day
        #[arg(value_name = "SCENARIO")]
        scenario: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        /// Also draw the simulation into this SVG file
        #[arg(long, value_name = "FILE.svg")]
        chart: Option<PathBuf>,
        /// Rebuild the workload from kube-state-metrics history at prometheus.url
        #[arg(long, conflicts_with = "scenario")]
        from_prometheus: bool,
        /// How far back --from-prometheus reads (e.g. 24h, 90m)
        #[arg(long, value_name = "DURATION", default_value = "24h",
              value_parser = crate::sim::scenario::parse_since, requires = "from_prometheus")]
        since: std::time::Duration,
        /// Timer interval of the replay (a scenario gives its own)
        #[arg(long, value_name = "DURATION", default_value = "30s",
              value_parser = crate::config::units::parse_duration, requires = "from_prometheus")]
        interval: std::time::Duration,
    },
    /// Show the config summary, cooldowns, idle time, Docker hosts, workers and recent events
    Status {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Config file commands
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// State file commands
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Print a shell completion script (e.g. `k3s-scale completions bash > /etc/bash_completion.d/k3s-scale`)
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page in roff (e.g. `k3s-scale man > /usr/local/share/man/man1/k3s-scale.1`)
    Man,
    /// Cordon and drain one node by eviction; remove it if it is a k3s-scale worker
    ///
    /// Cordons the node and evicts its pods through the Eviction API (PodDisruptionBudgets
    /// honoured, blocked evictions retried until drain.timeout). A k3s-scale worker is then
    /// removed: container stopped, Node deleted, container and volume removed. Any other node (and a
    /// worker with --keep-cordoned) is left cordoned and nothing is deleted. If the drain
    /// fails the node is uncordoned, unless it was cordoned before the drain (that cordon
    /// stays). Exit 11 removed, 0 drained, 5 failed or refused,
    /// 2 no such node.
    Drain {
        /// The node, e.g. k3s-worker-3
        node: String,
        /// Leave the node cordoned after the drain instead of removing it
        #[arg(long)]
        keep_cordoned: bool,
        /// Delete the pods (with their grace period) instead of evicting them: PDBs are
        /// NOT consulted (as kubectl drain --disable-eviction)
        #[arg(long)]
        disable_eviction: bool,
        /// Drain even pods without a controller, with local storage or annotated
        /// cluster-autoscaler.kubernetes.io/safe-to-evict: "false" (they are lost)
        #[arg(long)]
        force: bool,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config and print the effective values (defaults filled in)
    Check,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Move the state file aside (to <path>.bad-<time>) so the next run starts fresh
    Reset,
    /// Print the state file
    Show,
}
