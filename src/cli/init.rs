//! `k3s-scale init --from-k3d NAME`: reads a k3d cluster through the Docker API and writes
//! a config for a pool of workers that join it, and the pool's token file. The config is a
//! pure function of the cluster and the paths; it is validated before anything is written,
//! and nothing is written unless both files can be.

use crate::config::{Config, ConfigError};
use crate::docker::k3d::{K3dCluster, K3dError};
use crate::docker::{DockerClient, DockerEnv, write_token_file};
use crate::run::error::RunError;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.yaml";
pub const TOKEN_FILE: &str = "k3s-token";
/// Room above the agents k3d started: `max_nodes` is their number plus this.
const EXTRA_WORKERS: u32 = 3;

/// What `init --from-k3d` was asked for.
pub struct InitRequest<'a> {
    pub cluster: &'a str,
    pub dir: &'a Path,
    pub force: bool,
}

/// The environment `init` reads, read once by `commands`.
pub struct InitEnv {
    pub docker: DockerEnv,
    pub home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
}

/// The pool and worker name prefix of a k3d cluster's autoscaled workers: k3d names its
/// own nodes `k3d-NAME-server-0`, `k3d-NAME-agent-0`; these are `k3d-NAME-autoscaled-<n>`.
pub fn pool_name(cluster: &str) -> String {
    format!("k3d-{cluster}-autoscaled")
}

/// The kubeconfig k3d keeps for cluster `name` alone, as `k3d kubeconfig write NAME` writes
/// it: `$XDG_CONFIG_HOME/kubeconfig-NAME.yaml`, else `~/.config/k3d/kubeconfig-NAME.yaml`
/// (k3d-io/k3d pkg/util/files.go GetConfigDirOrCreate, cmd/kubeconfig/kubeconfigMerge.go).
/// Chosen over ~/.kube/config, where k3d also merges the cluster by default, because it
/// holds this cluster's context only: k3s-scale drains and deletes Nodes, and must not
/// follow a current-context someone switched to another cluster.
pub fn k3d_kubeconfig(
    name: &str,
    xdg_config_home: Option<&Path>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    let dir = match (xdg_config_home, home) {
        (Some(x), _) if !x.as_os_str().is_empty() => x.to_path_buf(),
        (_, Some(h)) if !h.as_os_str().is_empty() => h.join(".config/k3d"),
        _ => return None,
    };
    Some(dir.join(format!("kubeconfig-{name}.yaml")))
}

/// The config for a pool of workers joining `cluster`, with its files in `dir` (absolute).
pub fn config_for(
    cluster: &K3dCluster,
    dir: &Path,
    kubeconfig: Option<PathBuf>,
) -> Result<Config, ConfigError> {
    let mut cfg = Config::default();
    let pool = pool_name(&cluster.name);
    let d = &mut cfg.docker;
    d.k3d_cluster = Some(cluster.name.clone());
    d.network = cluster.network.clone();
    d.image = cluster.image.clone();
    d.server_url = cluster.server_url.clone();
    d.token_file = Some(dir.join(TOKEN_FILE));
    d.name_prefix = pool.clone();
    d.pool = pool;
    cfg.kubernetes.kubeconfig = kubeconfig;
    cfg.kubernetes.permanent_nodes = cluster.agents.clone();
    // Workers are counted with the permanent agents (control plane excluded): never fewer
    // than k3d started, a few more when the load asks for them.
    let agents = u32::try_from(cluster.agents.len()).unwrap_or(u32::MAX);
    cfg.limits.min_nodes = agents;
    cfg.limits.max_nodes = agents.saturating_add(EXTRA_WORKERS);
    // Beside the config, so that a user who is not root can run it as written.
    cfg.state.path = dir.join("state.json");
    cfg.state.lock_path = dir.join("k3s-scale.lock");
    // What is written is what `config check` reads: parse the text back.
    let back = Config::parse(&render(&cfg)?)?;
    if back != cfg {
        return Err(ConfigError::Parse(
            dir.join(CONFIG_FILE),
            "the written config does not read back as generated (a bug)".into(),
        ));
    }
    Ok(back)
}

/// The config file's text: a header saying where it came from, then every key.
pub fn render(cfg: &Config) -> Result<String, ConfigError> {
    let body = serde_saphyr::to_string(cfg)
        .map_err(|e| ConfigError::Parse(PathBuf::from(CONFIG_FILE), e.to_string()))?;
    let cluster = cfg.docker.k3d_cluster.as_deref().unwrap_or("?");
    Ok(format!(
        "# Written by `k3s-scale init --from-k3d {cluster}` from the cluster's Docker labels.\n\
         # docker.network, image, server_url and kubernetes.permanent_nodes are the cluster's;\n\
         # limits.min_nodes is its agents, max_nodes three more. Set prometheus.url to a\n\
         # Prometheus that scrapes kube-state-metrics in the cluster. Every key is listed;\n\
         # see config.yaml in the k3s-scale repository for what each does.\n{body}"
    ))
}

/// `k3s-scale init --from-k3d NAME [--dir DIR] [--force]`.
pub fn from_k3d(req: &InitRequest, env: &InitEnv) -> Result<String, RunError> {
    crate::config::check_k3d_cluster_name(req.cluster)
        .map_err(|e| RunError::Usage(format!("--from-k3d: {e}")))?;
    std::fs::create_dir_all(req.dir)
        .map_err(|e| RunError::Usage(format!("--dir {}: {e}", req.dir.display())))?;
    let dir = std::fs::canonicalize(req.dir)
        .map_err(|e| RunError::Usage(format!("--dir {}: {e}", req.dir.display())))?;
    let (config_path, token_path) = (dir.join(CONFIG_FILE), dir.join(TOKEN_FILE));
    let existing: Vec<String> = [&config_path, &token_path]
        .iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() && !req.force {
        return Err(RunError::Usage(format!(
            "refusing to overwrite {} (pass --force to replace, or choose another --dir)",
            existing.join(" and ")
        )));
    }
    // Defaults for the endpoint, timeout and TLS: $DOCKER_HOST as the written config uses.
    let client = DockerClient::connect(&Config::default().docker, &env.docker)?;
    let cluster = client
        .k3d_cluster(req.cluster)?
        .map_err(|e: K3dError| RunError::Usage(e.to_string()))?;
    log::debug!(
        "k3d cluster {}: servers {}, agents {}",
        cluster.name,
        cluster.servers.join(", "),
        cluster.agents.join(", ")
    );
    let kubeconfig = k3d_kubeconfig(
        &cluster.name,
        env.xdg_config_home.as_deref(),
        env.home.as_deref(),
    );
    let cfg = config_for(&cluster, &dir, kubeconfig.clone()).map_err(|e| {
        RunError::Usage(format!(
            "cannot make a config for k3d cluster {:?}: {e}",
            cluster.name
        ))
    })?;
    let text = render(&cfg)?;
    let write_failed = |p: &Path, e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            RunError::Usage(format!(
                "refusing to overwrite {} (it appeared meanwhile; pass --force)",
                p.display()
            ))
        } else {
            RunError::Internal(format!("cannot write {}: {e}", p.display()))
        }
    };
    write_token_file(&token_path, &cluster.token, req.force)
        .map_err(|e| write_failed(&token_path, e))?;
    if let Err(e) =
        crate::config::files::write_new_file(&config_path, text.as_bytes(), 0o600, req.force)
    {
        // Nothing half-done: the token file goes again unless it replaced an older one.
        if !req.force {
            let _ = std::fs::remove_file(&token_path);
        }
        return Err(write_failed(&config_path, e));
    }
    Ok(summary(&cluster, &cfg, &config_path, &token_path))
}

/// What was written and what to do next; never the token.
fn summary(cluster: &K3dCluster, cfg: &Config, config: &Path, token: &Path) -> String {
    let d = &cfg.docker;
    let permanent = if cluster.agents.is_empty() {
        "none".to_string()
    } else {
        cluster.agents.join(", ")
    };
    let kubeconfig = match &cfg.kubernetes.kubeconfig {
        Some(k) if k.exists() => k.display().to_string(),
        Some(k) => format!(
            "{} (not there yet: run `k3d kubeconfig write {}`; evaluate and drain need it, \
             up does not)",
            k.display(),
            cluster.name
        ),
        None => "none found (no HOME): $KUBECONFIG, ~/.kube/config, in-cluster".into(),
    };
    format!(
        "wrote {} and {} (mode 0600) for k3d cluster {}\n\
         \x20 network {}, image {}, server {}\n\
         \x20 workers {}-<n> (pool {}, also labelled for k3d); permanent: {permanent}\n\
         \x20 limits: min_nodes {}, max_nodes {}\n\
         \x20 kubeconfig: {kubeconfig}\n\
         \x20 prometheus.url: {} (set it to a Prometheus that scrapes kube-state-metrics)\n\
         next: k3s-scale --config {} config check\n",
        config.display(),
        token.display(),
        cluster.name,
        d.network,
        d.image,
        d.server_url,
        d.name_prefix,
        d.pool,
        cfg.limits.min_nodes,
        cfg.limits.max_nodes,
        cfg.prometheus.url,
        config.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::JoinToken;

    fn cluster(name: &str, agents: &[&str]) -> K3dCluster {
        K3dCluster {
            name: name.into(),
            network: format!("k3d-{name}"),
            server_url: format!("https://k3d-{name}-server-0:6443"),
            image: "rancher/k3s:v1.31.5-k3s1".into(),
            token: JoinToken::new("s3cret").unwrap(),
            agents: agents.iter().map(|a| a.to_string()).collect(),
            servers: vec![format!("k3d-{name}-server-0")],
        }
    }

    #[test]
    fn the_config_takes_the_clusters_values_and_reads_back() {
        let dir = Path::new("/srv/k3s-scale");
        let kc = PathBuf::from("/home/u/.config/k3d/kubeconfig-dev.yaml");
        let c = config_for(
            &cluster("dev", &["k3d-dev-agent-0", "k3d-dev-agent-1"]),
            dir,
            Some(kc.clone()),
        )
        .unwrap();
        let d = &c.docker;
        assert_eq!(d.k3d_cluster.as_deref(), Some("dev"));
        assert_eq!(d.network, "k3d-dev");
        assert_eq!(d.image, "rancher/k3s:v1.31.5-k3s1");
        assert_eq!(d.server_url, "https://k3d-dev-server-0:6443");
        assert_eq!(
            d.token_file.as_deref(),
            Some(dir.join("k3s-token").as_path())
        );
        assert_eq!(
            (d.name_prefix.as_str(), d.pool.as_str()),
            ("k3d-dev-autoscaled", "k3d-dev-autoscaled")
        );
        assert_eq!(c.kubernetes.kubeconfig, Some(kc));
        assert_eq!(
            c.kubernetes.permanent_nodes,
            ["k3d-dev-agent-0", "k3d-dev-agent-1"]
        );
        assert_eq!((c.limits.min_nodes, c.limits.max_nodes), (2, 5));
        assert_eq!(c.state.path, dir.join("state.json"));
        let text = render(&c).unwrap();
        assert!(text.starts_with("# Written by `k3s-scale init --from-k3d dev`"));
        assert!(!text.contains("s3cret"));
        assert_eq!(Config::parse(&text).unwrap(), c);
    }

    #[test]
    fn limits_follow_the_agent_count() {
        for (agents, min, max) in [(0usize, 0, 3), (1, 1, 4), (4, 4, 7)] {
            let names: Vec<String> = (0..agents).map(|i| format!("k3d-c-agent-{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let c = config_for(&cluster("c", &refs), Path::new("/d"), None).unwrap();
            assert_eq!(
                (c.limits.min_nodes, c.limits.max_nodes),
                (min, max),
                "{agents}"
            );
        }
    }

    #[test]
    fn a_cluster_name_that_makes_no_worker_name_is_refused_naming_the_key() {
        // k3d allows capitals and 32 characters; worker names must be DNS labels of a
        // prefix of at most 40.
        for name in ["Dev", "abcdefghijklmnopqrstuvwxyz012345"] {
            let e = config_for(&cluster(name, &[]), Path::new("/d"), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("docker.name_prefix"), "{name}: {e}");
        }
    }

    #[test]
    fn k3ds_kubeconfig_path() {
        let cases = [
            (Some("/x"), Some("/home/u"), Some("/x/kubeconfig-dev.yaml")),
            (
                None,
                Some("/home/u"),
                Some("/home/u/.config/k3d/kubeconfig-dev.yaml"),
            ),
            (
                Some(""),
                Some("/home/u"),
                Some("/home/u/.config/k3d/kubeconfig-dev.yaml"),
            ),
            (None, None, None),
        ];
        for (xdg, home, want) in cases {
            assert_eq!(
                k3d_kubeconfig("dev", xdg.map(Path::new), home.map(Path::new)),
                want.map(PathBuf::from),
                "{xdg:?} {home:?}"
            );
        }
    }
}
