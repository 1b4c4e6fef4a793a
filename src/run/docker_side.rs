//! The Docker side of `Actuator`: places and starts workers for `evaluate` and `up`, on
//! the pool's Docker hosts. Removal belongs to the Kubernetes side (cordon, drain, delete
//! the Node first): `executor` joins the two, so `remove_worker` here only passes on to
//! the inner actuator it was given.

use crate::config;
use crate::docker::{DockerHosts, HostCapacity, JoinToken, WorkerSpec};
use crate::plan::names::worker_number;
use crate::plan::worker_hosts::{self, Placement, WorkerSize};
use crate::run::report::Report;
use crate::run::{ActionFailure, Actuator, IndexSeen, Removal};
use std::collections::BTreeMap;
use std::rc::Rc;

pub struct DockerActuator {
    hosts: Rc<DockerHosts>,
    cfg: config::Docker,
    token: JoinToken,
    /// Each host's capacity, read from its daemon at placement or at the first start there.
    capacity: BTreeMap<String, HostCapacity>,
    remover: Box<dyn Actuator>,
}

/// Where `count` new workers go on these hosts (read-only: /info and a listing per host,
/// all hosts at once). Also returns the capacities read, for the kubelet reservation.
pub fn place(
    hosts: &DockerHosts,
    cfg: &config::Docker,
    count: u32,
) -> (Placement, BTreeMap<String, HostCapacity>) {
    let facts = hosts.facts(cfg);
    let size = WorkerSize {
        cpus: cfg.cpus,
        memory: cfg.memory.0,
    };
    let p = worker_hosts::place(&facts, size, cfg.overcommit, count);
    let caps = facts
        .iter()
        .filter_map(|f| {
            let (cpus, memory) = f.capacity?;
            Some((f.name.clone(), HostCapacity { cpus, memory }))
        })
        .collect();
    (p, caps)
}

impl DockerActuator {
    pub fn new(
        hosts: Rc<DockerHosts>,
        cfg: &config::Docker,
        token: JoinToken,
        remover: Box<dyn Actuator>,
    ) -> DockerActuator {
        DockerActuator {
            hosts,
            cfg: cfg.clone(),
            token,
            capacity: BTreeMap::new(),
            remover,
        }
    }

    /// The capacity of a host, read once per run; None when the configured agent args set
    /// their own reservation.
    fn capacity_of(&mut self, host: &str) -> Result<Option<HostCapacity>, ActionFailure> {
        if WorkerSpec::user_sets_reservation(&self.cfg) {
            return Ok(None);
        }
        if let Some(c) = self.capacity.get(host) {
            return Ok(Some(*c));
        }
        // Without the host's capacity the node would offer the whole host: do not start.
        let c = self.hosts.capacity(host).map_err(|e| ActionFailure {
            done: Vec::new(),
            message: format!("cannot size the workers' allocatable on Docker host {host}: {e}"),
        })?;
        log::debug!(
            "Docker host {host}: {} CPUs, {} bytes of memory",
            c.cpus,
            c.memory
        );
        self.capacity.insert(host.to_string(), c);
        Ok(Some(c))
    }
}

impl Actuator for DockerActuator {
    fn highest_worker_index(&mut self) -> Result<IndexSeen, ActionFailure> {
        let (highest, unlisted) = self.hosts.highest_index();
        if unlisted.len() == self.hosts.hosts().len() {
            let why: Vec<String> = unlisted
                .iter()
                .map(|(h, e)| {
                    if self.hosts.single() {
                        e.to_string()
                    } else {
                        format!("{h}: {e}")
                    }
                })
                .collect();
            return Err(ActionFailure {
                done: Vec::new(),
                message: format!(
                    "cannot list this pool's workers to pick a new name: {}",
                    why.join("; ")
                ),
            });
        }
        Ok(IndexSeen {
            highest,
            unlisted: unlisted.into_iter().map(|(h, _)| h).collect(),
        })
    }

    fn place(&mut self, count: u32) -> Result<Placement, ActionFailure> {
        if self.hosts.single() {
            // One host: no choice to make, and its room is the operator's business, as
            // before several hosts existed (max_nodes bounds the pool). Named "", as
            // `Actuator::place` says.
            return Ok(Placement {
                hosts: vec![String::new(); count as usize],
                ..Placement::default()
            });
        }
        let (p, caps) = place(&self.hosts, &self.cfg, count);
        self.capacity.extend(caps);
        Ok(p)
    }

    fn start_workers(&mut self, names: &[String]) -> Result<(), ActionFailure> {
        let p = self.place(names.len() as u32)?;
        if p.hosts.len() < names.len() {
            return Err(ActionFailure {
                done: Vec::new(),
                message: format!("no Docker host has room: {}", p.why.join("; ")),
            });
        }
        self.start_placed(names, &p.hosts)
    }

    fn start_placed(&mut self, names: &[String], hosts: &[String]) -> Result<(), ActionFailure> {
        let mut done = Vec::new();
        let single = self.hosts.hosts()[0].name.clone();
        for (name, host) in names.iter().zip(hosts) {
            // "": the one host of a single-host config.
            let host = if host.is_empty() { &single } else { host };
            let on = if self.hosts.single() {
                String::new()
            } else {
                format!(" on Docker host {host}")
            };
            let fail = |done: Vec<String>, e: String| {
                let mut message = format!("cannot start worker {name}{on}: {e}");
                if !done.is_empty() {
                    message.push_str(&format!(" (started before it: {})", done.join(", ")));
                }
                ActionFailure { done, message }
            };
            // Asked to stop (or out of time): the worker before this one was finished,
            // this one is not begun.
            if let Some(why) = crate::state::stop::why() {
                return Err(fail(done, format!("not started: {why}")));
            }
            let capacity = match self.capacity_of(host) {
                Ok(c) => c,
                Err(f) => return Err(fail(done, f.message)),
            };
            let Some(client) = self.hosts.client(host) else {
                return Err(fail(done, "the host is unreachable this run".into()));
            };
            let spec = WorkerSpec {
                cfg: &self.cfg,
                token: &self.token,
                host: capacity,
                host_name: host,
            };
            if let Err(e) = client.start_worker(&spec, name, worker_number(name)) {
                return Err(fail(done, e.to_string()));
            }
            done.push(name.clone());
        }
        Ok(())
    }

    fn remove_worker(
        &mut self,
        candidates: &[String],
        dry_run: bool,
        report: &mut Report,
    ) -> Result<Removal, ActionFailure> {
        self.remover.remove_worker(candidates, dry_run, report)
    }
}
