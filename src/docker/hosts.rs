//! The pool's Docker hosts: `docker.hosts`, or the one host of `docker.host` /
//! $DOCKER_HOST named "default". Sets up a client for each (the single host is pinged at
//! once, as before; several are not, the first question shows which answer), and asks
//! every reachable host the same question in
//! parallel (each call within `docker.timeout`); a host found dead or hung is not asked
//! again in that run, so it costs one timeout, not one per host or question. What to do with the answers is decided elsewhere
//! (placement, reconcile).

use super::DockerError;
use super::client::{DockerClient, DockerEnv, resolve_endpoint, resolve_host_entry};
use super::ops::{ManagedContainer, Removed};
use super::spec::HostCapacity;
use crate::config::{self, SINGLE_HOST_NAME};
use crate::plan::worker_hosts::HostFacts;

/// One configured host: its client, or why it could not be reached this run.
pub struct Host {
    pub name: String,
    /// The endpoint as configured, for messages (never carries credentials: TLS is files).
    pub endpoint: String,
    pub max_workers: Option<u32>,
    pub client: Result<DockerClient, DockerError>,
    /// Set when a call found the host unreachable or too slow: it is not asked again this
    /// run, so a dead host costs one `docker.timeout`, not one per question.
    down: std::sync::Mutex<Option<String>>,
}

impl Host {
    /// Its client, unless it is known to be down this run.
    fn usable(&self) -> Result<&DockerClient, DockerError> {
        let c = self.client.as_ref().map_err(|e| again(&self.name, e))?;
        match &*self.down.lock().expect("not poisoned") {
            Some(cause) => Err(DockerError::HostDown {
                host: self.name.clone(),
                cause: cause.clone(),
            }),
            None => Ok(c),
        }
    }

    /// Notes an unreachable or hung host, so the rest of the run skips it.
    fn note<T>(&self, r: Result<T, DockerError>) -> Result<T, DockerError> {
        if let Err(e @ (DockerError::Unreachable { .. } | DockerError::Timeout { .. })) = &r {
            log::warn!("Docker host {} is unreachable this run: {e}", self.name);
            *self.down.lock().expect("not poisoned") = Some(e.to_string());
        }
        r
    }
}

pub struct DockerHosts {
    hosts: Vec<Host>,
}

/// A host's answer to one question.
pub struct PerHost<'a, T> {
    pub name: &'a str,
    pub answer: Result<T, DockerError>,
}

impl DockerHosts {
    /// Resolves every endpoint (a bad one is a setup error: exit 2) and connects to all
    /// hosts in parallel. A host that does not answer is kept as unreachable; only when
    /// none answers is that an error, so the single-host form fails as it always did.
    pub fn connect(cfg: &config::Docker, env: &DockerEnv) -> Result<DockerHosts, DockerError> {
        let targets = if cfg.hosts.is_empty() {
            vec![(
                SINGLE_HOST_NAME.to_string(),
                resolve_endpoint(cfg, env)?,
                None,
            )]
        } else {
            cfg.hosts
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let ep = resolve_host_entry(h, &format!("docker.hosts[{i}].host"))?;
                    Ok((h.name.clone(), ep, h.max_workers))
                })
                .collect::<Result<Vec<_>, DockerError>>()?
        };
        // One host: ping it, so an unreachable daemon fails the run here as it always did.
        // Several: no ping (it would cost a round trip per host and a thread each); the
        // first question asked shows which hosts answer, and a host that does not is
        // reported and skipped from there on.
        let single = targets.len() == 1;
        let clients: Vec<_> = targets
            .iter()
            .map(|(_, ep, _)| DockerClient::connect_endpoint(ep.clone(), cfg, single))
            .collect();
        let mut hosts = Vec::with_capacity(targets.len());
        for ((name, ep, max_workers), client) in targets.into_iter().zip(clients) {
            if let Err(e @ DockerError::Setup(_)) = &client {
                // TLS files missing or unreadable: the config is wrong, not the host.
                return Err(DockerError::Setup(format!("Docker host {name}: {e}")));
            }
            if let Err(e) = &client {
                log::warn!("Docker host {name} ({ep}) is unreachable this run: {e}");
            }
            hosts.push(Host {
                name,
                endpoint: ep.to_string(),
                max_workers,
                client,
                down: std::sync::Mutex::new(None),
            });
        }
        if hosts.iter().all(|h| h.client.is_err()) {
            let mut errs: Vec<DockerError> =
                hosts.into_iter().filter_map(|h| h.client.err()).collect();
            if errs.len() == 1 {
                return Err(errs.remove(0));
            }
            let detail = errs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(DockerError::Unreachable {
                endpoint: "every configured Docker host".into(),
                detail,
            });
        }
        Ok(DockerHosts { hosts })
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// True for the single-host form (one host).
    pub fn single(&self) -> bool {
        self.hosts.len() == 1
    }

    /// The client of the host called `name`, if it answered.
    pub fn client(&self, name: &str) -> Option<&DockerClient> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.usable().ok())
    }

    /// Asks every host the same question at once; an unreachable host answers with the
    /// error it gave when connecting.
    pub fn ask<T: Send>(
        &self,
        f: impl Fn(&DockerClient) -> Result<T, DockerError> + Sync,
    ) -> Vec<PerHost<'_, T>> {
        let answers = par_map(&self.hosts, |h| match h.usable() {
            Ok(c) => h.note(f(c)),
            Err(e) => Err(e),
        });
        self.hosts
            .iter()
            .zip(answers)
            .map(|(h, answer)| PerHost {
                name: &h.name,
                answer,
            })
            .collect()
    }

    /// This pool's workers on every host, by host.
    pub fn list_workers(&self) -> Vec<PerHost<'_, Vec<ManagedContainer>>> {
        self.ask(DockerClient::list_workers)
    }

    /// What placement needs from every host: /info's CPUs and memory, and what the
    /// k3s-scale workers (of any pool) there take. An unreadable host has no capacity and
    /// gets no worker.
    pub fn facts(&self, cfg: &config::Docker) -> Vec<HostFacts> {
        let size = (cfg.cpus, cfg.memory.0);
        let answers = self.ask(|c| Ok((c.host_capacity()?, c.managed_use(size)?)));
        self.hosts
            .iter()
            .zip(answers)
            .map(|(h, a)| match a.answer {
                Ok((cap, (workers, used_cpus, used_memory))) => HostFacts {
                    name: h.name.clone(),
                    capacity: Some((cap.cpus, cap.memory)),
                    used_cpus,
                    used_memory,
                    workers,
                    max_workers: h.max_workers,
                },
                Err(e) => {
                    log::warn!("Docker host {}: cannot read its capacity: {e}", h.name);
                    HostFacts {
                        name: h.name.clone(),
                        capacity: None,
                        used_cpus: 0.0,
                        used_memory: 0,
                        workers: 0,
                        max_workers: h.max_workers,
                    }
                }
            })
            .collect()
    }

    /// The highest worker number on any host this run could list, and the hosts it could
    /// not (their numbers are unknown).
    pub fn highest_index(&self) -> (Option<u64>, Vec<(String, DockerError)>) {
        let mut highest = None;
        let mut unlisted = Vec::new();
        for a in self.ask(DockerClient::highest_index) {
            match a.answer {
                Ok(h) => highest = highest.max(h),
                Err(e) => {
                    log::warn!("Docker host {}: cannot list its workers: {e}", a.name);
                    unlisted.push((a.name.to_string(), e));
                }
            }
        }
        (highest, unlisted)
    }

    /// The host a worker's container is on, looked up on every reachable host. Err when
    /// it is on none of them and some host could not be asked (it may be there).
    pub fn locate(&self, worker: &str) -> Result<Option<&str>, DockerError> {
        let mut failed = None;
        for a in self.list_workers() {
            match a.answer {
                Ok(list) if list.iter().any(|c| c.name == worker) => return Ok(Some(a.name)),
                Ok(_) => {}
                Err(e) => {
                    failed.get_or_insert(again(a.name, &e));
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Removes a worker's container and volume from every reachable host that has them
    /// (found by this worker's labels, so a host without it is untouched).
    pub fn remove_worker(&self, worker: &str) -> Result<Removed, DockerError> {
        let mut removed = Removed::default();
        for h in &self.hosts {
            let Ok(c) = h.usable() else { continue };
            let r = h.note(c.remove_worker(worker))?;
            removed.container |= r.container;
            removed.volume |= r.volume;
        }
        Ok(removed)
    }

    /// Stops a worker's container on every reachable host that has it (found by its
    /// labels). False when no host had it.
    pub fn stop_worker(&self, worker: &str) -> Result<bool, DockerError> {
        let mut found = false;
        for h in &self.hosts {
            let Ok(c) = h.usable() else { continue };
            found |= h.note(c.stop_worker(worker))?;
        }
        Ok(found)
    }

    /// The capacity of one host, for the kubelet reservation of a worker started there.
    pub fn capacity(&self, name: &str) -> Result<HostCapacity, DockerError> {
        match self.hosts.iter().find(|h| h.name == name) {
            Some(h) => h.note(h.usable()?.host_capacity()),
            None => Err(DockerError::Setup(format!("no Docker host named {name}"))),
        }
    }
}

/// A connect error, again, for each question asked of that host.
fn again(host: &str, e: &DockerError) -> DockerError {
    DockerError::HostDown {
        host: host.to_string(),
        cause: e.to_string(),
    }
}

/// `f` over `items`, at once: the first on this thread, each other one on a thread of its
/// own (each host's client has its own runtime, so the calls do not wait on each other);
/// one item runs here alone, with no thread at all.
fn par_map<I: Sync, T: Send>(items: &[I], f: impl Fn(&I) -> T + Sync) -> Vec<T> {
    let Some((first, rest)) = items.split_first() else {
        return Vec::new();
    };
    if rest.is_empty() {
        return vec![f(first)];
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = rest.iter().map(|i| s.spawn(|| f(i))).collect();
        let mut out = Vec::with_capacity(items.len());
        out.push(f(first));
        out.extend(
            handles
                .into_iter()
                .map(|h| h.join().expect("a Docker host thread panicked")),
        );
        out
    })
}
