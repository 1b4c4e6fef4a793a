//! The Docker client: which endpoint (docker.host, else $DOCKER_HOST, else the default
//! socket), TLS, the first call that proves the daemon answers, and one timeout around
//! every call. bollard is async; this client owns a current_thread tokio runtime and
//! blocks on each call, so the synchronous run flow never sees a future.

use super::DockerError;
use crate::config;
use bollard::Docker;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// The docker CLI's defaults when a tcp:// host names no port.
const DEFAULT_TCP_PORT: u16 = 2375;
const DEFAULT_TLS_PORT: u16 = 2376;

/// What the process environment says about Docker, read once by `commands`: nothing below
/// reads environment variables.
#[derive(Debug, Clone, Default)]
pub struct DockerEnv {
    /// $DOCKER_HOST
    pub host: Option<String>,
    /// $DOCKER_TLS_VERIFY set (to anything non-empty), as the docker CLI reads it.
    pub tls_verify: bool,
    /// $DOCKER_CERT_PATH, else ~/.docker: holds ca.pem, cert.pem and key.pem.
    pub cert_path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
    Tls {
        addr: String,
        ca_file: PathBuf,
        cert_file: PathBuf,
        key_file: PathBuf,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
            Endpoint::Tls { addr, .. } => write!(f, "tcp://{addr} (TLS)"),
        }
    }
}

/// Picks the endpoint: `docker.host`, else $DOCKER_HOST, else the default socket. TLS comes
/// from `docker.tls`, else from $DOCKER_TLS_VERIFY/$DOCKER_CERT_PATH like the docker CLI.
pub fn resolve_endpoint(cfg: &config::Docker, env: &DockerEnv) -> Result<Endpoint, DockerError> {
    let (host, source) = match (&cfg.host, &env.host) {
        (Some(h), _) => (h.as_str(), "docker.host"),
        (None, Some(h)) if !h.trim().is_empty() => (h.trim(), "DOCKER_HOST"),
        _ => (DEFAULT_HOST, "the default"),
    };
    resolve(host, source, cfg.tls.as_ref(), env)
}

/// The endpoint of one `docker.hosts` entry: its own `host` and `tls` only (the
/// environment's DOCKER_HOST and DOCKER_TLS_VERIFY are for the single-host form).
pub fn resolve_host_entry(h: &config::DockerHost, key: &str) -> Result<Endpoint, DockerError> {
    resolve(&h.host, key, h.tls.as_ref(), &DockerEnv::default())
}

fn resolve(
    host: &str,
    source: &str,
    tls: Option<&config::DockerTls>,
    env: &DockerEnv,
) -> Result<Endpoint, DockerError> {
    let bad = |why: &str| DockerError::Setup(format!("{source} {host:?}: {why}"));
    if let Some(path) = host.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(bad("names no socket path"));
        }
        if tls.is_some() {
            return Err(bad("docker.tls applies to a tcp:// host only"));
        }
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    let (rest, scheme_says_tls) = if let Some(r) = host.strip_prefix("tcp://") {
        (r, false)
    } else if let Some(r) = host.strip_prefix("http://") {
        (r, false)
    } else if let Some(r) = host.strip_prefix("https://") {
        (r, true)
    } else {
        return Err(bad(
            "unsupported scheme; use unix:///path or tcp://host:port",
        ));
    };
    let addr = rest.trim_end_matches('/');
    if addr.is_empty() || addr.contains(['/', '@', ' ']) {
        return Err(bad("expected tcp://host:port"));
    }
    let tls_files = match (tls, env.tls_verify) {
        (Some(t), _) => Some((t.ca_file.clone(), t.cert_file.clone(), t.key_file.clone())),
        (None, true) => {
            let dir = env.cert_path.clone().ok_or_else(|| {
                bad("DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor HOME is")
            })?;
            Some((
                dir.join("ca.pem"),
                dir.join("cert.pem"),
                dir.join("key.pem"),
            ))
        }
        (None, false) if scheme_says_tls => {
            return Err(bad("https:// needs docker.tls (or DOCKER_TLS_VERIFY)"));
        }
        (None, false) => None,
    };
    let with_port = |default: u16| {
        // A bracketed IPv6 address or host:port already names its port.
        let has_port = match addr.rfind(':') {
            Some(i) => !addr[i..].contains(']'),
            None => false,
        };
        if has_port {
            addr.to_string()
        } else {
            format!("{addr}:{default}")
        }
    };
    Ok(match tls_files {
        Some((ca_file, cert_file, key_file)) => Endpoint::Tls {
            addr: with_port(DEFAULT_TLS_PORT),
            ca_file,
            cert_file,
            key_file,
        },
        None => Endpoint::Tcp(with_port(DEFAULT_TCP_PORT)),
    })
}

/// A connected client: the daemon has answered.
pub struct DockerClient {
    rt: tokio::runtime::Runtime,
    docker: Docker,
    endpoint: Endpoint,
    /// Limit for each call (docker.timeout).
    pub(super) timeout: Duration,
    /// Grace given to a worker's processes when it is stopped (docker.stop_timeout).
    pub(super) stop_timeout: Duration,
    /// The label value that marks this pool's containers and volumes.
    pub(super) pool: String,
}

impl DockerClient {
    /// Builds the client and pings the daemon (one call), so an unreachable or hung daemon
    /// shows here, before anything is created. There is no API version to agree on:
    /// bollard 0.21 sends unversioned paths (`GET /containers/json`; its `Uri::parse` joins
    /// the absolute path over the `/vX.Y` prefix), which every daemon serves at its own
    /// version, so Docker 20.10 (API 1.41) and Docker 29 (at least 1.44) both work.
    pub fn connect(cfg: &config::Docker, env: &DockerEnv) -> Result<DockerClient, DockerError> {
        Self::connect_endpoint(resolve_endpoint(cfg, env)?, cfg, true)
    }

    /// Connects to `endpoint` with the timeouts and pool of `cfg` (one `docker.hosts` entry).
    /// Without `ping`, nothing is sent yet: the first call shows whether the daemon answers
    /// (`DockerHosts` asks several hosts at once and takes a failed first call as the
    /// host being down).
    pub fn connect_endpoint(
        endpoint: Endpoint,
        cfg: &config::Docker,
        ping: bool,
    ) -> Result<DockerClient, DockerError> {
        let timeout = cfg.timeout.get();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DockerError::Setup(format!("cannot start the async runtime: {e}")))?;
        // bollard's own limit is in whole seconds; ours (below) is exact and fires first.
        let secs = timeout.as_secs_f64().ceil().max(1.0) as u64;
        let version = bollard::API_DEFAULT_VERSION;
        let built = match &endpoint {
            Endpoint::Unix(p) => Docker::connect_with_unix(&p.to_string_lossy(), secs, version),
            Endpoint::Tcp(addr) => {
                Docker::connect_with_http(&format!("tcp://{addr}"), secs, version)
            }
            Endpoint::Tls {
                addr,
                ca_file,
                cert_file,
                key_file,
            } => {
                for (key, p) in [
                    ("ca_file", ca_file),
                    ("cert_file", cert_file),
                    ("key_file", key_file),
                ] {
                    std::fs::File::open(p).map_err(|e| {
                        DockerError::Setup(format!("TLS {key} {}: {e}", p.display()))
                    })?;
                }
                Docker::connect_with_ssl(
                    &format!("tcp://{addr}"),
                    key_file,
                    cert_file,
                    ca_file,
                    secs,
                    version,
                )
            }
        };
        let client = DockerClient {
            rt,
            docker: match built {
                Ok(d) => d,
                Err(e) => return Err(classify(&endpoint, "connecting", timeout, e)),
            },
            endpoint,
            timeout,
            stop_timeout: cfg.stop_timeout.get(),
            pool: cfg.pool.clone(),
        };
        // `/_ping`, not `/version`: dockerd answers /version by running `runc --version`
        // and `docker-init --version` (9-55 ms on the test machine, most of a dry run's
        // time; /_ping takes under 1 ms).
        if ping {
            let docker = client.docker.clone();
            client.call("pinging the Docker daemon", timeout, docker.ping())?;
            log::debug!("Docker at {} answered", client.endpoint);
        }
        Ok(client)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The bollard client with its own limit raised to `limit` (for calls that wait, such
    /// as a stop with a grace period).
    pub(super) fn api(&self, limit: Duration) -> Docker {
        if limit <= self.timeout {
            self.docker.clone()
        } else {
            let secs = limit.as_secs_f64().ceil() as u64;
            self.docker.clone().with_timeout(Duration::from_secs(secs))
        }
    }

    /// Runs one API call to completion within `limit`; `what` names it in errors.
    pub(super) fn call<T>(
        &self,
        what: &str,
        limit: Duration,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        // The timer is made inside the runtime: it needs the runtime's clock.
        match self
            .rt
            .block_on(async { tokio::time::timeout(limit, fut).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(&self.endpoint, what, limit, e)),
            Err(_) => Err(DockerError::Timeout {
                what: what.to_string(),
                after: limit,
            }),
        }
    }
}

/// Sorts a bollard error into what went wrong. API refusals keep their HTTP status, so the
/// caller can tell "no such image" from "name in use".
fn classify(
    endpoint: &Endpoint,
    what: &str,
    limit: Duration,
    e: bollard::errors::Error,
) -> DockerError {
    use bollard::errors::Error as B;
    let unreachable = |detail: String| DockerError::Unreachable {
        endpoint: endpoint.to_string(),
        detail,
    };
    match e {
        B::DockerResponseServerError {
            status_code,
            message,
        } => DockerError::Refused {
            what: what.to_string(),
            status: status_code,
            message: message.trim().to_string(),
        },
        B::RequestTimeoutError => DockerError::Timeout {
            what: what.to_string(),
            after: limit,
        },
        B::JsonDataError { message, .. } => DockerError::Malformed {
            what: what.to_string(),
            detail: message,
        },
        B::JsonSerdeError { err } => DockerError::Malformed {
            what: what.to_string(),
            detail: err.to_string(),
        },
        B::APIVersionParseError {} => DockerError::Malformed {
            what: what.to_string(),
            detail: "no usable API version".into(),
        },
        B::SocketNotFoundError(path) => unreachable(format!("no socket at {path}")),
        B::CertPathError { path } | B::CertParseError { path } => DockerError::Setup(format!(
            "TLS file {} is unreadable or not PEM",
            path.display()
        )),
        B::CertMultipleKeys { count, path } => DockerError::Setup(format!(
            "TLS key file {} holds {count} keys; expected one",
            path.display()
        )),
        other => unreachable(error_chain(&other)),
    }
}

/// "outer: inner: innermost", skipping repeats: hyper's top-level messages alone ("client
/// error (Connect)") do not say what happened.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DockerTls};

    fn cfg(host: Option<&str>) -> config::Docker {
        let mut c = Config::default().docker;
        c.host = host.map(str::to_string);
        c
    }

    fn env(host: Option<&str>) -> DockerEnv {
        DockerEnv {
            host: host.map(str::to_string),
            ..DockerEnv::default()
        }
    }

    #[test]
    fn config_wins_over_docker_host_which_wins_over_the_default() {
        let e = resolve_endpoint(&cfg(Some("unix:///a.sock")), &env(Some("tcp://h:1"))).unwrap();
        assert_eq!(e, Endpoint::Unix("/a.sock".into()));
        let e = resolve_endpoint(&cfg(None), &env(Some("tcp://127.0.0.1:2375"))).unwrap();
        assert_eq!(e, Endpoint::Tcp("127.0.0.1:2375".into()));
        let e = resolve_endpoint(&cfg(None), &env(None)).unwrap();
        assert_eq!(e, Endpoint::Unix("/var/run/docker.sock".into()));
        let e = resolve_endpoint(&cfg(None), &env(Some(""))).unwrap();
        assert_eq!(e, Endpoint::Unix("/var/run/docker.sock".into()));
    }

    #[test]
    fn tcp_gets_the_cli_default_ports() {
        let e = resolve_endpoint(&cfg(Some("tcp://docker.example")), &env(None)).unwrap();
        assert_eq!(e, Endpoint::Tcp("docker.example:2375".into()));
        let e = resolve_endpoint(&cfg(Some("tcp://[::1]/")), &env(None)).unwrap();
        assert_eq!(e, Endpoint::Tcp("[::1]:2375".into()));
        let e = resolve_endpoint(&cfg(Some("tcp://[::1]:99")), &env(None)).unwrap();
        assert_eq!(e, Endpoint::Tcp("[::1]:99".into()));
    }

    #[test]
    fn tls_from_config_or_from_the_cli_environment() {
        let mut c = cfg(Some("tcp://d.example"));
        c.tls = Some(DockerTls {
            ca_file: "/c/ca".into(),
            cert_file: "/c/cert".into(),
            key_file: "/c/key".into(),
        });
        match resolve_endpoint(&c, &env(None)).unwrap() {
            Endpoint::Tls { addr, ca_file, .. } => {
                assert_eq!(addr, "d.example:2376");
                assert_eq!(ca_file, PathBuf::from("/c/ca"));
            }
            other => panic!("{other:?}"),
        }
        let e = DockerEnv {
            host: Some("tcp://d.example:2376".into()),
            tls_verify: true,
            cert_path: Some("/home/u/.docker".into()),
        };
        match resolve_endpoint(&cfg(None), &e).unwrap() {
            Endpoint::Tls { key_file, .. } => {
                assert_eq!(key_file, PathBuf::from("/home/u/.docker/key.pem"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unusable_hosts_are_setup_errors_naming_their_source() {
        for (c, e, needle) in [
            (cfg(None), env(Some("ssh://u@h")), "DOCKER_HOST"),
            (
                cfg(None),
                env(Some("npipe:////./pipe/docker_engine")),
                "unsupported scheme",
            ),
            (cfg(Some("tcp://u:p@h:1")), env(None), "docker.host"),
            (cfg(Some("https://h:1")), env(None), "needs docker.tls"),
            (cfg(None), env(Some("unix://")), "no socket path"),
        ] {
            let err = resolve_endpoint(&c, &e).unwrap_err();
            assert!(matches!(err, DockerError::Setup(_)), "{err:?}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn a_missing_socket_is_unreachable_not_a_panic() {
        let c = cfg(Some("unix:///nonexistent/k3s-scale-test.sock"));
        let err = DockerClient::connect(&c, &env(None))
            .err()
            .expect("no socket there");
        assert!(matches!(err, DockerError::Unreachable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("unix:///nonexistent/k3s-scale-test.sock"),
            "{text}"
        );
        assert!(err.is_transient());
    }
}
