//! Runs each command and turns its result into output and an exit code.

use crate::cli::stdout;
use crate::cli::{Cli, Command, ConfigCommand, OutputFormat, StateCommand};
use crate::config::Config;
use crate::docker::{DockerEnv, DockerHosts};
use crate::run::error::RunError;
use crate::run::executor::{DockerContainers, Executor};
use crate::run::exit::Exit;
use crate::run::report::Report;
use crate::run::scale_down::{DrainRequest, ScaleDown, WorkerContainers};
use crate::run::{self, Actuator, Context, Outcome};
use crate::signals::{MetricsSource, PromClient, PromError};
use crate::state::State;
use crate::state::time::Timestamp;
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
            start_deadline(&cfg);
            let started = std::time::Instant::now();
            let dry_run = cli.dry_run || cfg.dry_run;
            let ctx = Context {
                config: &cfg,
                state_path: state_path(cli, &cfg),
                dry_run,
                now: Timestamp::now(),
            };
            // A client that cannot be set up (unreadable token or CA file) fails the run
            // inside `evaluate`, so it is counted and shows in the metrics like any other
            // metrics error.
            let source: Box<dyn MetricsSource> = match PromClient::new(&cfg.prometheus) {
                Ok(c) => Box::new(c),
                Err(e) => Box::new(Unavailable(e.to_string())),
            };
            let env = ProcessEnv::read();
            let mut make_actuator = || actuator(&cfg, &env, dry_run);
            let outcome = run::evaluate::evaluate(&ctx, source.as_ref(), &mut make_actuator);
            let code = outcome.exit_code();
            let mut report = outcome.report;
            report.exit_code = code;
            print_report(&report, *output);
            if let Some(e) = &outcome.error {
                log::error!("{e}");
            }
            if !dry_run
                && let Err(e) = crate::cli::metrics::after_run(
                    &cfg,
                    &outcome.held,
                    &report,
                    code,
                    started.elapsed(),
                )
            {
                // The run's outcome stands; a stale textfile shows as an old
                // k3s_scale_last_run_timestamp_seconds (alert K3sScaleNotRunning).
                log::error!("{e}");
            }
            Ok(code)
        }
        Command::Simulate {
            scenario,
            output,
            chart,
            from_prometheus,
            since,
            interval,
        } => {
            let req = SimulateRequest {
                scenario: scenario.as_deref(),
                output: *output,
                chart: chart.as_deref(),
                from_prometheus: *from_prometheus,
                since: *since,
                interval: *interval,
            };
            simulate(cli, &req)
        }
        Command::Completions { shell } => {
            stdout::print(crate::cli::completions::completions(*shell))?;
            Ok(Exit::Nothing.code())
        }
        Command::Man => {
            stdout::print(crate::cli::completions::man_page())?;
            Ok(Exit::Nothing.code())
        }
        Command::Up { count, output } => {
            let cfg = load_config(cli)?;
            start_deadline(&cfg);
            let dry_run = cli.dry_run || cfg.dry_run;
            let ctx = Context {
                config: &cfg,
                state_path: state_path(cli, &cfg),
                dry_run,
                now: Timestamp::now(),
            };
            let source: Box<dyn MetricsSource> = Box::new(PromClient::new(&cfg.prometheus)?);
            let env = ProcessEnv::read();
            let mut make_actuator = || up_actuator(&cfg, &env);
            let outcome = run::up::up(&ctx, *count, source.as_ref(), &mut make_actuator);
            Ok(print_outcome(outcome, *output))
        }
        Command::Init {
            from_k3d,
            dir,
            force,
        } => {
            let env = ProcessEnv::read();
            let req = super::init::InitRequest {
                cluster: from_k3d,
                dir,
                force: *force,
            };
            let init_env = super::init::InitEnv {
                docker: env.docker,
                home: env.home,
                xdg_config_home: env.xdg_config_home,
            };
            // The files are written: what follows is only the account of it.
            stdout::report(super::init::from_k3d(&req, &init_env)?);
            Ok(Exit::Nothing.code())
        }
        Command::Status { output } => {
            let cfg = load_config(cli)?;
            let path = state_path(cli, &cfg);
            let mut state = State::load(&path)?;
            let now = Timestamp::now();
            // Shown as the next run will read it.
            for w in crate::state::clock::clamp_future(&mut state, now) {
                log::warn!("{w}");
            }
            let workers = observe_workers(&cfg, &state, now);
            let text = crate::cli::status::render(&cfg, &path, &state, now, *output, &workers);
            stdout::print(text)?;
            Ok(Exit::Nothing.code())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let path = Config::locate(cli.config.as_deref())?;
            let mut cfg = Config::load(&path)?;
            // The values that apply, defaults derived from other keys included.
            cfg.scaling.run_timeout = Some(crate::config::units::Secs(cfg.run_timeout()));
            let effective = serde_saphyr::to_string(&cfg)
                .map_err(|e| RunError::Internal(format!("cannot print config: {e}")))?;
            stdout::print(format!(
                "# {} is valid; effective config:\n{effective}",
                path.display()
            ))?;
            Ok(Exit::Nothing.code())
        }
        Command::Drain {
            node,
            keep_cordoned,
            disable_eviction,
            force,
            output,
        } => {
            let req = DrainRequest {
                keep_cordoned: *keep_cordoned,
                force: *force,
                dry_run: false,
            };
            drain(cli, node, req, *disable_eviction, *output)
        }
        Command::State { command } => {
            let cfg = load_config(cli)?;
            let path = state_path(cli, &cfg);
            match command {
                StateCommand::Show => {
                    let state = State::load(&path)?;
                    let json = serde_json::to_string_pretty(&state).expect("state serializes");
                    stdout::print(json + "\n")?;
                    Ok(Exit::Nothing.code())
                }
                StateCommand::Reset => reset_state(&cfg, &path, cli.dry_run),
            }
        }
    }
}

/// A run that acts ends by `scaling.run_timeout` from now (`state::stop`).
fn start_deadline(cfg: &Config) {
    crate::state::stop::set_deadline(Some(std::time::Instant::now() + cfg.run_timeout()));
}

/// A run's report as `--output` asks; once the run has acted, the code stands whether or
/// not stdout takes it (`stdout::report`).
fn print_report(report: &Report, output: OutputFormat) {
    match output {
        OutputFormat::Json => stdout::report(report.to_json() + "\n"),
        OutputFormat::Text => stdout::report(report.to_text()),
    }
}

/// Stands in for a Prometheus client that could not be set up: every snapshot fails with
/// the setup error.
struct Unavailable(String);

impl MetricsSource for Unavailable {
    fn snapshot(&self) -> Result<crate::plan::snapshot::Snapshot, PromError> {
        Err(PromError::Setup(self.0.clone()))
    }
}

/// The environment variables the actuators honour, read once here: nothing deeper reads
/// the environment.
struct ProcessEnv {
    docker: DockerEnv,
    /// $K3S_TOKEN, used when docker.token_file is not set.
    k3s_token: Option<String>,
    /// $HOME and $XDG_CONFIG_HOME: where k3d keeps a cluster's kubeconfig (`init`).
    home: Option<PathBuf>,
    xdg_config_home: Option<PathBuf>,
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
            home: var("HOME").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
        }
    }
}

/// The run's actuator: Docker and Kubernetes joined (`executor::Executor`). A dry run
/// connects too (it lists workers, checks candidates and pods) but never loads the join
/// token, since it starts nothing.
fn actuator(cfg: &Config, env: &ProcessEnv, dry_run: bool) -> Result<Box<dyn Actuator>, RunError> {
    let token = if dry_run {
        None
    } else {
        // The token first: a missing token is a config error, whether or not Docker answers.
        Some(crate::docker::load_token(
            cfg.docker.token_file.as_deref(),
            env.k3s_token.as_deref(),
        )?)
    };
    Ok(Box::new(Executor::connect(cfg, &env.docker, token)?))
}

/// `up`'s actuator: Docker alone. `up` only starts workers (a dry run never calls it), so
/// it needs no Kubernetes access: it works without a kubeconfig.
fn up_actuator(cfg: &Config, env: &ProcessEnv) -> Result<Box<dyn Actuator>, RunError> {
    let token =
        crate::docker::load_token(cfg.docker.token_file.as_deref(), env.k3s_token.as_deref())?;
    let hosts = std::rc::Rc::new(DockerHosts::connect(&cfg.docker, &env.docker)?);
    Ok(Box::new(crate::run::docker_side::DockerActuator::new(
        hosts,
        &cfg.docker,
        token,
        Box::new(crate::run::PlanOnly),
    )))
}

fn print_outcome(outcome: Outcome, output: OutputFormat) -> u8 {
    let code = outcome.exit_code();
    let mut report = outcome.report;
    report.exit_code = code;
    print_report(&report, output);
    if let Some(e) = &outcome.error {
        log::error!("{e}");
    }
    code
}

/// `state reset`: moves the state aside under `<path>.bad-<time>` (a new name, made with
/// link(2), which never follows or replaces anything there) and starts a fresh state that
/// keeps the worker counter when it can be read. The state must be a regular file in a
/// folder no other user can write, as for every run.
fn reset_state(cfg: &Config, path: &std::path::Path, dry_run: bool) -> Result<u8, RunError> {
    use crate::config::files;
    use crate::state::StateError;
    use std::io::Read;
    let refused = |e: files::FileError| match e {
        files::FileError::Refused { .. } => RunError::State(StateError::Refused(e)),
        files::FileError::Io(p, e) => RunError::State(StateError::Read(p, e)),
    };
    // Checked (folder, link, kind) before anything else, dry run included.
    let Some((file, meta)) = files::open_own(path).map_err(refused)? else {
        stdout::report(format!(
            "no state file at {}; nothing to reset\n",
            path.display()
        ));
        return Ok(Exit::Nothing.code());
    };
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(
        ".bad-{}",
        Timestamp::now().to_string().replace(':', "")
    ));
    let aside = PathBuf::from(aside);
    if dry_run {
        stdout::report(format!(
            "would move {} to {}\n",
            path.display(),
            aside.display()
        ));
        return Ok(Exit::Nothing.code());
    }
    // Hold the run lock so a running evaluate is not pulled from under.
    let _lock = crate::state::lock::RunLock::acquire(&cfg.state.lock_path)?;
    // The worker-name counter is worth saving from the wreck when it can be read: names
    // must never come back (the next scale-up also skips every number still in Docker).
    // Read from the file checked above, and no more than a state may hold.
    let mut bytes = Vec::new();
    let counter = (meta.len() <= crate::state::MAX_STATE_BYTES)
        .then(|| {
            file.take(crate::state::MAX_STATE_BYTES)
                .read_to_end(&mut bytes)
                .ok()
        })
        .flatten()
        .and_then(|_| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|v| v.get("next_worker_index")?.as_u64())
        .filter(|n| *n > 1);
    let aside = move_aside(path, &aside)
        .map_err(|e| RunError::State(StateError::Write(path.to_path_buf(), e)))?;
    match counter {
        Some(n) => {
            let fresh = State {
                next_worker_index: n,
                ..State::fresh()
            };
            fresh.save(path)?;
            stdout::report(format!(
                "moved {} to {}; started a fresh state that keeps the worker counter ({n})\n",
                path.display(),
                aside.display()
            ));
        }
        None => stdout::report(format!(
            "moved {} to {}; the next run starts from a fresh state\n",
            path.display(),
            aside.display()
        )),
    }
    Ok(Exit::Nothing.code())
}

/// Gives `path`'s file the new name `aside` (or `aside-<random>` when that is taken: two
/// resets in one second) and removes the old name. link(2) fails rather than replace or
/// follow whatever is at the new name.
fn move_aside(path: &std::path::Path, aside: &std::path::Path) -> std::io::Result<PathBuf> {
    let mut target = aside.to_path_buf();
    if let Err(e) = std::fs::hard_link(path, &target) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(e);
        }
        let mut other = aside.as_os_str().to_owned();
        other.push(format!("-{}", &crate::config::files::random_hex()?[..8]));
        target = PathBuf::from(other);
        std::fs::hard_link(path, &target)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", target.display())))?;
    }
    std::fs::remove_file(path)?;
    std::fs::File::open(crate::config::files::folder_of(path))?.sync_all()?;
    Ok(target)
}

/// This pool's workers as Docker and Kubernetes list them, and what reconcile would repair;
/// read-only (no token, no change).
fn observe_workers(cfg: &Config, state: &State, now: Timestamp) -> crate::cli::status::Workers {
    let env = ProcessEnv::read();
    let mut ex = Executor::connect(cfg, &env.docker, None).map_err(|e| e.to_string())?;
    let obs = ex.observe().map_err(|f| f.message)?.unwrap_or_default();
    let repairs = crate::plan::reconcile::plan_repairs(
        &obs.containers,
        &obs.nodes,
        state,
        cfg,
        now,
        &obs.unlisted(),
    );
    let hosts = ex.host_facts();
    Ok((obs, repairs, hosts))
}

/// The container side for `drain`: this pool's Docker workers.
fn worker_containers(cfg: &Config) -> Result<Box<dyn WorkerContainers>, RunError> {
    let env = ProcessEnv::read();
    let hosts = DockerHosts::connect(&cfg.docker, &env.docker)?;
    Ok(Box::new(DockerContainers(std::rc::Rc::new(hosts))))
}

/// `k3s-scale drain NODE`: under the run lock, drain; record what happened in the state.
fn drain(
    cli: &Cli,
    node: &str,
    mut req: DrainRequest,
    disable_eviction: bool,
    output: OutputFormat,
) -> Result<u8, RunError> {
    let cfg = load_config(cli)?;
    start_deadline(&cfg);
    req.dry_run = cli.dry_run || cfg.dry_run;
    if !crate::config::is_dns_subdomain(node) {
        return Err(RunError::Usage(format!(
            "{node:?} is not a valid Kubernetes node name"
        )));
    }
    // The drain runs under the run lock: an evaluate must not scale around it.
    let _lock = if req.dry_run {
        None
    } else {
        Some(crate::state::lock::RunLock::acquire(&cfg.state.lock_path)?)
    };
    let path = state_path(cli, &cfg);
    let mut state = if req.dry_run {
        None
    } else {
        Some(State::load(&path)?)
    };
    let cluster = crate::kube::KubeCluster::connect(&cfg.kubernetes)
        .map_err(|e| RunError::Action(e.to_string()))?;
    let mode = if disable_eviction {
        crate::kube::mover::MoveMode::Delete
    } else {
        crate::kube::mover::MoveMode::Evict
    };
    let mut down = ScaleDown::new(Box::new(cluster), worker_containers(&cfg)?, &cfg, mode);
    if let Some(state) = state.as_mut() {
        let mut warnings = crate::state::clock::clamp_future(state, Timestamp::now());
        // Docker is not listed here: an unfinished removal counts as failed (the back-off).
        warnings.extend(crate::state::finish_unfinished(state, None));
        for w in warnings {
            log::warn!("{w}");
        }
        // Written ahead of the cordon: if the state cannot be written, nothing is done.
        crate::state::write_ahead(state, Timestamp::now(), "drain", &[node.to_string()]);
        state.save(&path)?;
    }
    let rep = down.drain_named(node, &req);
    match output {
        OutputFormat::Json => stdout::report(rep.to_json() + "\n"),
        OutputFormat::Text => stdout::report(rep.to_text()),
    }
    if let Some(state) = state.as_mut() {
        state.acting = None;
    }
    if let Some(state) = state.as_mut()
        && rep.exit_code == Exit::Usage.code()
    {
        // No such node: nothing was done; only the write-ahead is taken back.
        state.save(&path)?;
    }
    if let Some(state) = state.as_mut()
        && rep.exit_code != Exit::Usage.code()
    {
        let now = Timestamp::now();
        let evicted = rep.evicted.len() as u64;
        if rep.removed {
            crate::state::record_scale_down(state, now, node, evicted, " (drain command)");
        } else {
            state.totals.evicted_pods += evicted;
            match &rep.error {
                Some(e) if rep.exit_code == Exit::Stopped.code() => {
                    state.count_error("stopped");
                    state.record(now, "stopped", e.clone());
                }
                Some(e) => {
                    state.count_error("action");
                    state.record(now, "drain_failed", e.clone());
                }
                None => state.record(now, "drain", format!("drained {node}; left cordoned")),
            }
        }
        if let Err(e) = state.save(&path) {
            let mut done = Vec::new();
            if !rep.evicted.is_empty() {
                done.push(format!("evicted {} pod(s) from {node}", rep.evicted.len()));
            }
            if rep.removed {
                done.push(format!("removed {node}"));
            }
            return Err(if done.is_empty() {
                RunError::State(e)
            } else {
                RunError::Unsaved { done, error: e }
            });
        }
    }
    if let Some(e) = &rep.error {
        log::error!("{e}");
    }
    Ok(rep.exit_code)
}

struct SimulateRequest<'a> {
    scenario: Option<&'a std::path::Path>,
    output: OutputFormat,
    chart: Option<&'a std::path::Path>,
    from_prometheus: bool,
    since: std::time::Duration,
    interval: std::time::Duration,
}

/// `k3s-scale simulate`: the config (the defaults when none is found and none was named),
/// the scenario (a file, the built-in day, or history from Prometheus), the simulation,
/// its output and chart. Writes nothing but stdout and the chart file.
fn simulate(cli: &Cli, req: &SimulateRequest) -> Result<u8, RunError> {
    use crate::sim::{Scenario, engine, output, replay};
    let cfg = match Config::locate(cli.config.as_deref()) {
        Ok(path) => Config::load(&path)?,
        Err(crate::config::ConfigError::NotFound(_)) => {
            log::warn!("no config file found: simulating the default config");
            Config::default()
        }
        Err(e) => return Err(e.into()),
    };
    let (scenario, epoch, what) = if req.from_prometheus {
        let client = PromClient::new(&cfg.prometheus).map_err(RunError::Metrics)?;
        let (s, epoch) = replay::scenario(&cfg, &client, req.since, Timestamp::now(), req.interval)
            .map_err(RunError::Metrics)?;
        let what = format!(
            "the last {} from {}",
            crate::config::units::format_duration(req.since),
            cfg.prometheus.url
        );
        (s, epoch, what)
    } else {
        match req.scenario {
            Some(path) => {
                let meta = std::fs::metadata(path).map_err(|e| {
                    RunError::Usage(format!("cannot read scenario {}: {e}", path.display()))
                })?;
                if meta.len() > crate::sim::scenario::MAX_SCENARIO_BYTES as u64 {
                    return Err(RunError::Usage(format!(
                        "scenario {} is {} bytes, over the limit",
                        path.display(),
                        meta.len()
                    )));
                }
                let text = std::fs::read_to_string(path).map_err(|e| {
                    RunError::Usage(format!("cannot read scenario {}: {e}", path.display()))
                })?;
                let s = Scenario::parse(&text)
                    .map_err(|e| RunError::Usage(format!("scenario {}: {e}", path.display())))?;
                (s, engine::default_epoch(), path.display().to_string())
            }
            None => (
                Scenario::builtin(),
                engine::default_epoch(),
                "the built-in day".to_string(),
            ),
        }
    };
    let sim = engine::simulate(&scenario, &cfg, epoch)?;
    if let Some(path) = req.chart {
        let svg = crate::sim::chart::svg(&sim, &cfg, &format!("k3s-scale simulate: {what}"))
            .map_err(RunError::Internal)?;
        std::fs::write(path, svg)
            .map_err(|e| RunError::Usage(format!("cannot write chart {}: {e}", path.display())))?;
    }
    let text = match req.output {
        OutputFormat::Json => output::to_json(&sim) + "\n",
        OutputFormat::Text => output::to_text(&sim, &cfg, &what),
    };
    stdout::print(text)?;
    Ok(Exit::Nothing.code())
}
