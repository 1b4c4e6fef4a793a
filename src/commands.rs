//! Runs each command and turns its result into output and an exit code.

use crate::cli::{Cli, Command, ConfigCommand, OutputFormat, StateCommand};
use crate::config::Config;
use crate::docker::{DockerActuator, DockerClient, DockerEnv};
use crate::error::RunError;
use crate::evaluate::{self, Actuator, Context, Outcome, PlanOnly};
use crate::prometheus::{MetricsSource, PromClient};
use crate::state::State;
use crate::time::Timestamp;
use crate::workers;
use std::path::PathBuf;

pub fn run(cli: &Cli) -> u8 {
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e}");
            e.exit_code()
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, RunError> {
    let path = Config::locate(cli.config.as_deref())?;
    log::debug!("config: {}", path.display());
    Ok(Config::load(&path)?)
}

fn state_path(cli: &Cli, cfg: &Config) -> PathBuf {
    cli.state.clone().unwrap_or_else(|| cfg.state.path.clone())
}

fn dispatch(cli: &Cli) -> Result<u8, RunError> {
    match &cli.command {
        Command::Evaluate { output } => {
            let cfg = load_config(cli)?;
            let dry_run = cli.dry_run || cfg.dry_run;
            let ctx = Context {
                config: &cfg,
                state_path: state_path(cli, &cfg),
                dry_run,
                now: Timestamp::now(),
            };
            let source: Box<dyn MetricsSource> = Box::new(PromClient::new(&cfg.prometheus)?);
            let env = ProcessEnv::read();
            let mut make_actuator = || actuator(&cfg, &env, dry_run);
            let outcome = evaluate::evaluate(&ctx, source.as_ref(), &mut make_actuator);
            let code = outcome.exit_code();
            let mut report = outcome.report;
            report.exit_code = code;
            match output {
                OutputFormat::Json => println!("{}", report.to_json()),
                OutputFormat::Text => print!("{}", report.to_text()),
            }
            if let Some(e) = &outcome.error {
                log::error!("{e}");
            }
            Ok(code)
        }
        Command::Up { count, output } => {
            let cfg = load_config(cli)?;
            let dry_run = cli.dry_run || cfg.dry_run;
            let ctx = Context {
                config: &cfg,
                state_path: state_path(cli, &cfg),
                dry_run,
                now: Timestamp::now(),
            };
            let source: Box<dyn MetricsSource> = Box::new(PromClient::new(&cfg.prometheus)?);
            let env = ProcessEnv::read();
            let mut make_actuator = || actuator(&cfg, &env, dry_run);
            let outcome = workers::up(&ctx, *count, source.as_ref(), &mut make_actuator);
            Ok(print_outcome(outcome, *output))
        }
        Command::Status { output } => {
            let cfg = load_config(cli)?;
            let path = state_path(cli, &cfg);
            let state = State::load(&path)?;
            let text = crate::status::render(&cfg, &path, &state, Timestamp::now(), *output);
            print!("{text}");
            Ok(0)
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let path = Config::locate(cli.config.as_deref())?;
            let cfg = Config::load(&path)?;
            println!("# {} is valid; effective config:", path.display());
            print!(
                "{}",
                serde_saphyr::to_string(&cfg)
                    .map_err(|e| RunError::Internal(format!("cannot print config: {e}")))?
            );
            Ok(0)
        }
        Command::State { command } => {
            let cfg = load_config(cli)?;
            let path = state_path(cli, &cfg);
            match command {
                StateCommand::Show => {
                    let state = State::load(&path)?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&state).expect("state serializes")
                    );
                    Ok(0)
                }
                StateCommand::Reset => reset_state(&cfg, &path, cli.dry_run),
            }
        }
    }
}

/// The environment variables the actuators honour, read once here: nothing deeper reads
/// the environment.
struct ProcessEnv {
    docker: DockerEnv,
    /// $K3S_TOKEN, used when docker.token_file is not set.
    k3s_token: Option<String>,
}

impl ProcessEnv {
    fn read() -> ProcessEnv {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        ProcessEnv {
            docker: DockerEnv {
                host: var("DOCKER_HOST"),
                tls_verify: var("DOCKER_TLS_VERIFY").is_some(),
                cert_path: var("DOCKER_CERT_PATH")
                    .map(PathBuf::from)
                    .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".docker"))),
            },
            k3s_token: var("K3S_TOKEN"),
        }
    }
}

/// Workers start in Docker; removal stays with `PlanOnly` until the Kubernetes side
/// exists. A dry run never needs Docker or the token: `PlanOnly` answers it.
fn actuator(cfg: &Config, env: &ProcessEnv, dry_run: bool) -> Result<Box<dyn Actuator>, RunError> {
    if dry_run {
        return Ok(Box::new(PlanOnly));
    }
    // The token first: a missing token is a config error, whether or not Docker answers.
    let token =
        crate::docker::load_token(cfg.docker.token_file.as_deref(), env.k3s_token.as_deref())?;
    let client = DockerClient::connect(&cfg.docker, &env.docker)?;
    Ok(Box::new(DockerActuator::new(
        client,
        &cfg.docker,
        token,
        Box::new(PlanOnly),
    )))
}

fn print_outcome(outcome: Outcome, output: OutputFormat) -> u8 {
    let code = outcome.exit_code();
    let mut report = outcome.report;
    report.exit_code = code;
    match output {
        OutputFormat::Json => println!("{}", report.to_json()),
        OutputFormat::Text => print!("{}", report.to_text()),
    }
    if let Some(e) = &outcome.error {
        log::error!("{e}");
    }
    code
}

fn reset_state(cfg: &Config, path: &std::path::Path, dry_run: bool) -> Result<u8, RunError> {
    if !path.exists() {
        println!("no state file at {}; nothing to reset", path.display());
        return Ok(0);
    }
    let aside = PathBuf::from(format!(
        "{}.bad-{}",
        path.display(),
        Timestamp::now().to_string().replace(':', "")
    ));
    if dry_run {
        println!("would move {} to {}", path.display(), aside.display());
        return Ok(0);
    }
    // Hold the run lock so a running evaluate is not pulled from under.
    let _lock = crate::lock::RunLock::acquire(&cfg.state.lock_path)?;
    std::fs::rename(path, &aside)
        .map_err(|e| RunError::State(crate::state::StateError::Write(path.to_path_buf(), e)))?;
    println!(
        "moved {} to {}; the next run starts from a fresh state",
        path.display(),
        aside.display()
    );
    Ok(0)
}
