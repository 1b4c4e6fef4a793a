//! Drift repair planned at the start of every `evaluate`: from the Docker and Kubernetes
//! listings of managed workers and the state's provisioning list, what must be cleaned up
//! before deciding. Pure, like the decision; `evaluate` carries the repairs out through
//! `Actuator::repair` (`run::executor` on the real systems).

use crate::config::Config;
use crate::state::State;
use crate::state::time::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A managed worker container as Docker lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerContainer {
    pub name: String,
    pub state: ContainerState,
    pub created: Option<Timestamp>,
    /// The Docker host it was listed on.
    pub host: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    Created,
    Running,
    Restarting,
    Paused,
    Exited,
    Dead,
    Removing,
    Unknown,
}

impl ContainerState {
    /// Docker's word for it ("running", "exited", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Restarting => "restarting",
            ContainerState::Paused => "paused",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
            ContainerState::Removing => "removing",
            ContainerState::Unknown => "unknown",
        }
    }
}

/// A Node of a managed worker as the API lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerNode {
    pub name: String,
    pub ready: bool,
    /// Still marked by a drain that never finished (`drain::DRAINING_ANNOTATION`).
    pub drain_left: bool,
    /// That drain found the node cordoned by someone else
    /// (`drain::CORDONED_BEFORE_ANNOTATION`): the cordon is theirs, not the drain's.
    pub cordoned_before_drain: bool,
    /// Its Node label `k3s-scale.io/host`; None on workers started before it existed.
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Repair {
    /// Started but not Ready within the provision timeout: remove the container and
    /// volume, delete the Node if one registered; counts as a failed scale-up.
    NeverReady {
        name: String,
        since: Timestamp,
        node_registered: bool,
    },
    /// The Node of a managed worker whose container is gone: delete it (k3s deletes its
    /// node-password secret) and remove the worker's volume.
    OrphanNode { name: String },
    /// A container that exited or died and is not restarting: remove it, and its Node.
    DeadContainer {
        name: String,
        state: ContainerState,
        node_registered: bool,
    },
    /// A container of the pool that was created and never started (the Docker daemon
    /// restarted, or the run was killed, between its create and its start): remove it and
    /// its volume (it never ran, so the volume holds nothing), and its Node if one
    /// registered; the run then decides afresh. Not counted as a failed scale-up: the run
    /// that created it met (and counted) the failure, or was killed before it could.
    NeverStarted { name: String, node_registered: bool },
    /// A provisioning entry with no container behind it: drop it.
    StaleEntry { name: String },
    /// A Node that a drain cordoned and never finished with (its run was killed): the
    /// run lock is held, so no drain is in progress; undo that drain's cordon: uncordon it
    /// and remove the marks, or, when it was `cordoned_before` the drain (by an operator),
    /// remove the marks only and leave their cordon.
    UnfinishedDrain { name: String, cordoned_before: bool },
    /// A container of the pool without a Node that the state does not list (the state
    /// was reset or lost): listed as provisioning since it was created, so it counts
    /// toward max_nodes, holds back further scale-ups while it boots, and is removed if
    /// it never gets Ready.
    Adopt { name: String, since: Timestamp },
}

impl Repair {
    pub fn name(&self) -> &str {
        match self {
            Repair::NeverReady { name, .. }
            | Repair::OrphanNode { name }
            | Repair::DeadContainer { name, .. }
            | Repair::NeverStarted { name, .. }
            | Repair::StaleEntry { name }
            | Repair::UnfinishedDrain { name, .. }
            | Repair::Adopt { name, .. } => name,
        }
    }

    /// Whether the worker has no Node once this is carried out, so the decision must not
    /// count one even if the Prometheus snapshot (a scrape older than the API listing)
    /// still shows it: its Node was deleted, or, adopted, the API lists none (a run killed
    /// after deleting the Node of a worker it was removing leaves its container so).
    pub fn leaves_no_node(&self) -> bool {
        !matches!(
            self,
            Repair::StaleEntry { .. } | Repair::UnfinishedDrain { .. }
        )
    }

    pub fn describe(&self) -> String {
        match self {
            Repair::NeverReady {
                name,
                since,
                node_registered,
            } => format!(
                "remove {name}: not Ready since it started at {since} (provision timeout){}",
                if *node_registered {
                    "; delete its Node"
                } else {
                    ""
                }
            ),
            Repair::OrphanNode { name } => {
                format!("delete Node {name} and remove its volume: its container is gone")
            }
            Repair::DeadContainer {
                name,
                state,
                node_registered,
            } => format!(
                "remove {name}: container is {} and not restarting{}",
                state.as_str(),
                if *node_registered {
                    "; delete its Node"
                } else {
                    ""
                }
            ),
            Repair::NeverStarted {
                name,
                node_registered,
            } => format!(
                "remove {name} and its volume: container was created but never started{}",
                if *node_registered {
                    "; delete its Node"
                } else {
                    ""
                }
            ),
            Repair::StaleEntry { name } => {
                format!("forget {name}: provisioning entry with no container (its volume goes too)")
            }
            Repair::UnfinishedDrain {
                name,
                cordoned_before: false,
            } => format!(
                "uncordon {name}: a drain that never finished (its run was killed) left it cordoned"
            ),
            Repair::UnfinishedDrain {
                name,
                cordoned_before: true,
            } => format!(
                "clear the drain marks of {name}: a drain that never finished (its run was \
                 killed) left them; it stays cordoned, as it was before the drain"
            ),
            Repair::Adopt { name, since } => format!(
                "adopt {name}: container without a Node that the state did not list; \
                 provisioning since it was created at {since}"
            ),
        }
    }
}

/// What needs repair. Containers and nodes are only those k3s-scale manages (by label).
///
/// Destructive repairs only ever act on what k3s-scale knows it started and on what is
/// visibly dead, never on a Ready worker: a wrong Docker host or kubeconfig (the listings
/// then disagree about everything) must not turn into deleting healthy nodes.
/// - `NeverReady` only for workers in the state's provisioning list (or adopted ones past
///   the timeout);
/// - `NeverStarted` only for a container Docker lists as `created`: it never ran;
/// - `OrphanNode` only for a Node that is NotReady (its kubelet is gone with the container);
/// - permanent nodes are never touched;
/// - nothing is concluded from the absence of a container on a Docker host that could not
///   be listed (`unlisted`): a Node or provisioning entry of such a host, or of no known
///   host while any host is unlisted, is left as it is.
pub fn plan_repairs(
    containers: &[WorkerContainer],
    nodes: &[WorkerNode],
    state: &State,
    cfg: &Config,
    now: Timestamp,
    unlisted: &[String],
) -> Vec<Repair> {
    let seen = Seen {
        containers: containers.iter().map(|c| (c.name.as_str(), c)).collect(),
        nodes: nodes.iter().map(|n| (n.name.as_str(), n)).collect(),
        provisioning: state
            .provisioning
            .iter()
            .map(|p| (p.name.as_str(), p.started_at))
            .collect(),
        permanent: &cfg.kubernetes.permanent_nodes,
        unlisted,
        timeout: cfg.scaling.provision_timeout.get(),
        now,
    };
    let mut repairs = Vec::new();
    // Workers whose container goes: a drain's marks and a provisioning entry go with it.
    let mut handled = BTreeSet::new();
    for c in containers {
        if let Some(r) = seen.container_repair(c) {
            if !matches!(r, Repair::Adopt { .. }) {
                handled.insert(c.name.as_str());
            }
            repairs.push(r);
        }
    }
    repairs.extend(nodes.iter().filter_map(|n| seen.node_repair(n, &handled)));
    for p in &state.provisioning {
        if !seen.containers.contains_key(p.name.as_str())
            && !handled.contains(p.name.as_str())
            && !seen.blind(p.host.as_ref())
        {
            repairs.push(Repair::StaleEntry {
                name: p.name.clone(),
            });
        }
    }
    repairs
}

/// What `plan_repairs` reads: the listings by name, and the settings of its rules.
struct Seen<'a> {
    containers: BTreeMap<&'a str, &'a WorkerContainer>,
    nodes: BTreeMap<&'a str, &'a WorkerNode>,
    /// The state's provisioning list: name -> started at.
    provisioning: BTreeMap<&'a str, Timestamp>,
    permanent: &'a [String],
    unlisted: &'a [String],
    timeout: Duration,
    now: Timestamp,
}

impl Seen<'_> {
    /// Whether a missing container says nothing: its host (or, with no known host, any
    /// host) could not be listed.
    fn blind(&self, host: Option<&String>) -> bool {
        !self.unlisted.is_empty() && host.is_none_or(|h| self.unlisted.contains(h))
    }

    /// The repair of one listed container, if it needs one.
    fn container_repair(&self, c: &WorkerContainer) -> Option<Repair> {
        if self.permanent.contains(&c.name) {
            return None;
        }
        let node = self.nodes.get(c.name.as_str());
        let registered = node.is_some();
        // A Ready worker is never repaired, whatever its container looks like.
        if node.is_some_and(|n| n.ready) {
            return None;
        }
        if matches!(c.state, ContainerState::Exited | ContainerState::Dead) {
            return Some(Repair::DeadContainer {
                name: c.name.clone(),
                state: c.state,
                node_registered: registered,
            });
        }
        if let Some(r) = never_started(c, registered) {
            return Some(r);
        }
        match self.provisioning.get(c.name.as_str()) {
            // Started by k3s-scale and still not Ready past the provision timeout.
            Some(&since) if self.now.since(since) >= self.timeout => Some(Repair::NeverReady {
                name: c.name.clone(),
                since,
                node_registered: registered,
            }),
            Some(_) => None,
            None if !registered && c.state != ContainerState::Removing => Some(self.unknown(c)),
            None => None,
        }
    }

    /// A live container without a Node that the state does not list (a run killed
    /// between deleting a Node and removing its container, a lost state, a Node deleted by
    /// hand): adopted as provisioning since it was created, so it counts toward max_nodes
    /// and goes if no Node comes within the provision timeout.
    fn unknown(&self, c: &WorkerContainer) -> Repair {
        let since = c.created.unwrap_or(self.now);
        if self.now.since(since) >= self.timeout {
            // Already past the timeout (its Node was deleted by hand long after it
            // joined, say): no Node is coming.
            Repair::NeverReady {
                name: c.name.clone(),
                since,
                node_registered: false,
            }
        } else {
            Repair::Adopt {
                name: c.name.clone(),
                since,
            }
        }
    }

    /// The repair of one listed Node, if it needs one; `handled`: workers whose container
    /// is being removed.
    fn node_repair(&self, n: &WorkerNode, handled: &BTreeSet<&str>) -> Option<Repair> {
        if self.permanent.contains(&n.name) {
            return None;
        }
        let Some(c) = self.containers.get(n.name.as_str()) else {
            // Its kubelet went with the container, so the Node turns NotReady; a Ready
            // one is someone else's worker as far as this Docker host can tell.
            return (!self.blind(n.host.as_ref()) && !n.ready).then(|| Repair::OrphanNode {
                name: n.name.clone(),
            });
        };
        // A stopped container behind a drained Node is a removal killed after the stop:
        // the worker is going (a dead container, once its Node is NotReady), and an
        // uncordon would invite pods onto a node whose kubelet is gone.
        let stopped = matches!(c.state, ContainerState::Exited | ContainerState::Dead);
        (n.drain_left && !handled.contains(n.name.as_str()) && !stopped)
            .then(|| unfinished_drain(n))
    }
}

/// The repair of a drain a killed run left: it undoes only the drain's own cordon. A
/// node cordoned before the drain (by an operator) stays cordoned; only the marks go.
fn unfinished_drain(n: &WorkerNode) -> Repair {
    Repair::UnfinishedDrain {
        name: n.name.clone(),
        cordoned_before: n.cordoned_before_drain,
    }
}

/// A container Docker lists as `created`, never started. Reconcile runs before this run
/// creates anything and under the run lock, so it is never one a run is starting right
/// now: a run died, or the daemon restarted, between the create and the start (a daemon
/// restart starts only the containers that were running). Removed rather than started:
/// its provisioning entry may be gone or stale (the failed start dropped it), so starting
/// it would bring up a worker the state does not know about, on a token and a spec that
/// may have changed since; removed, the decision starts a fresh one if one is still
/// needed. Left as it is, it would be adopted as booting for the whole provision timeout
/// while no kubelet is coming, holding back scale-ups and counting toward max_nodes.
fn never_started(c: &WorkerContainer, node_registered: bool) -> Option<Repair> {
    (c.state == ContainerState::Created).then(|| Repair::NeverStarted {
        name: c.name.clone(),
        node_registered,
    })
}

/// Provisioning entries whose Node the API already reports Ready: they are done booting,
/// whatever the (possibly lagging) Prometheus snapshot says.
pub fn joined<'a>(nodes: &'a [WorkerNode], state: &State) -> Vec<&'a str> {
    nodes
        .iter()
        .filter(|n| n.ready && state.provisioning.iter().any(|p| p.name == n.name))
        .map(|n| n.name.as_str())
        .collect()
}

/// Updates the state for repairs that were carried out.
pub fn record(state: &mut State, repairs: &[Repair], now: Timestamp) {
    for r in repairs {
        state.provisioning.retain(|p| p.name != r.name());
        if let Repair::Adopt { name, since } = r {
            state.provisioning.push(crate::state::Provisioning {
                name: name.clone(),
                started_at: *since,
                host: None,
            });
        }
        state.totals.repairs += 1;
        if matches!(r, Repair::NeverReady { .. }) {
            crate::state::record_failed_scale_up(state, now, &r.describe());
        } else {
            state.record(now, "repair", r.describe());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Provisioning;

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn ago(s: i64) -> Timestamp {
        Timestamp::from_secs(1_800_000_000 - s)
    }
    fn c(name: &str, state: ContainerState, created_ago: i64) -> WorkerContainer {
        WorkerContainer {
            name: name.into(),
            state,
            created: Some(ago(created_ago)),
            host: "default".into(),
        }
    }
    fn n(name: &str, ready: bool) -> WorkerNode {
        WorkerNode {
            name: name.into(),
            ready,
            drain_left: false,
            cordoned_before_drain: false,
            host: None,
        }
    }
    fn booting(name: &str, started_ago: i64) -> Provisioning {
        Provisioning {
            name: name.into(),
            started_at: ago(started_ago),
            host: None,
        }
    }

    #[test]
    fn repairs_table() {
        use ContainerState::*;
        let cfg = Config::default(); // provision timeout 15 min
        type Case = (
            &'static str,
            Vec<WorkerContainer>,
            Vec<WorkerNode>,
            Vec<Provisioning>,
            Vec<Repair>,
        );
        let cases: Vec<Case> = vec![
            (
                "healthy worker: nothing",
                vec![c("w-1", Running, 5000)],
                vec![n("w-1", true)],
                vec![],
                vec![],
            ),
            (
                "booting within the timeout: nothing",
                vec![c("w-2", Running, 60)],
                vec![],
                vec![booting("w-2", 60)],
                vec![],
            ),
            (
                "booting past the timeout, never registered",
                vec![c("w-2", Running, 1000)],
                vec![],
                vec![booting("w-2", 1000)],
                vec![Repair::NeverReady {
                    name: "w-2".into(),
                    since: ago(1000),
                    node_registered: false,
                }],
            ),
            (
                "registered but never Ready past the timeout",
                vec![c("w-2", Running, 1000)],
                vec![n("w-2", false)],
                vec![booting("w-2", 1000)],
                vec![Repair::NeverReady {
                    name: "w-2".into(),
                    since: ago(1000),
                    node_registered: true,
                }],
            ),
            (
                "was Ready once, NotReady now, not provisioning: left alone (health guard covers it)",
                vec![c("w-3", Running, 9000)],
                vec![n("w-3", false)],
                vec![],
                vec![],
            ),
            (
                "container gone by hand: its Node (NotReady by now) deleted",
                vec![],
                vec![n("w-4", false)],
                vec![],
                vec![Repair::OrphanNode { name: "w-4".into() }],
            ),
            (
                "a Ready Node without a container is left alone (wrong Docker host?)",
                vec![],
                vec![n("w-4", true)],
                vec![],
                vec![],
            ),
            (
                "a Ready worker is never repaired, even if its container looks exited",
                vec![c("w-9", Exited, 100)],
                vec![n("w-9", true)],
                vec![],
                vec![],
            ),
            (
                "exited container removed with its Node",
                vec![c("w-5", Exited, 100)],
                vec![n("w-5", false)],
                vec![],
                vec![Repair::DeadContainer {
                    name: "w-5".into(),
                    state: Exited,
                    node_registered: true,
                }],
            ),
            (
                "restarting container left to its restart policy",
                vec![c("w-6", Restarting, 100)],
                vec![n("w-6", false)],
                vec![],
                vec![],
            ),
            (
                "provisioning entry with nothing behind it dropped",
                vec![],
                vec![],
                vec![booting("w-7", 10)],
                vec![Repair::StaleEntry { name: "w-7".into() }],
            ),
            (
                "cordoned by a drain that never finished: uncordoned",
                vec![c("w-10", Running, 5000)],
                vec![WorkerNode {
                    drain_left: true,
                    ..n("w-10", true)
                }],
                vec![],
                vec![Repair::UnfinishedDrain {
                    name: "w-10".into(),
                    cordoned_before: false,
                }],
            ),
            (
                "cordoned by an operator before a drain that never finished: marks cleared, \
                 cordon kept",
                vec![c("w-14", Running, 5000)],
                vec![WorkerNode {
                    drain_left: true,
                    cordoned_before_drain: true,
                    ..n("w-14", true)
                }],
                vec![],
                vec![Repair::UnfinishedDrain {
                    name: "w-14".into(),
                    cordoned_before: true,
                }],
            ),
            (
                "cordoned by an operator, no drain mark: nothing to repair",
                vec![c("w-15", Running, 5000)],
                vec![n("w-15", true)],
                vec![],
                vec![],
            ),
            (
                "removal killed after its container stopped, Node still Ready: left alone, \
                 not uncordoned",
                vec![c("w-11", Exited, 5000)],
                vec![WorkerNode {
                    drain_left: true,
                    ..n("w-11", true)
                }],
                vec![],
                vec![],
            ),
            (
                "removal killed after its container stopped, Node NotReady: both removed",
                vec![c("w-12", Exited, 5000)],
                vec![WorkerNode {
                    drain_left: true,
                    ..n("w-12", false)
                }],
                vec![],
                vec![Repair::DeadContainer {
                    name: "w-12".into(),
                    state: Exited,
                    node_registered: true,
                }],
            ),
            (
                "removal killed after the Node delete: stopped container removed",
                vec![c("w-13", Exited, 5000)],
                vec![],
                vec![],
                vec![Repair::DeadContainer {
                    name: "w-13".into(),
                    state: Exited,
                    node_registered: false,
                }],
            ),
            (
                "young container without a Node that the state does not list: adopted",
                vec![c("w-9", Running, 30), c("w-1", Running, 5000)],
                vec![n("w-1", true)],
                vec![],
                vec![Repair::Adopt {
                    name: "w-9".into(),
                    since: ago(30),
                }],
            ),
            (
                "an old container without Node that the state does not list: removed",
                vec![c("w-8", Running, 5000)],
                vec![],
                vec![],
                vec![Repair::NeverReady {
                    name: "w-8".into(),
                    since: ago(5000),
                    node_registered: false,
                }],
            ),
            (
                "containers whose Node was deleted by hand: removed past the timeout, else adopted",
                vec![
                    c("w-8", Running, 5000),
                    c("w-1", Running, 5000),
                    c("w-11", Running, 60),
                ],
                vec![n("w-1", true)],
                vec![],
                vec![
                    Repair::NeverReady {
                        name: "w-8".into(),
                        since: ago(5000),
                        node_registered: false,
                    },
                    Repair::Adopt {
                        name: "w-11".into(),
                        since: ago(60),
                    },
                ],
            ),
            (
                "created, never started, unknown to the state: removed, not adopted",
                vec![c("w-14", Created, 30)],
                vec![],
                vec![],
                vec![Repair::NeverStarted {
                    name: "w-14".into(),
                    node_registered: false,
                }],
            ),
            (
                "created, never started, still provisioning (run killed before the start): removed",
                vec![c("w-15", Created, 30)],
                vec![],
                vec![booting("w-15", 30)],
                vec![Repair::NeverStarted {
                    name: "w-15".into(),
                    node_registered: false,
                }],
            ),
            (
                "created, never started, past the provision timeout: removed as never started",
                vec![c("w-16", Created, 5000)],
                vec![],
                vec![booting("w-16", 5000)],
                vec![Repair::NeverStarted {
                    name: "w-16".into(),
                    node_registered: false,
                }],
            ),
            (
                "created, never started, a NotReady Node of its name registered: both removed",
                vec![c("w-17", Created, 30)],
                vec![n("w-17", false)],
                vec![],
                vec![Repair::NeverStarted {
                    name: "w-17".into(),
                    node_registered: true,
                }],
            ),
            (
                "created, never started, but a Ready Node of its name: left alone",
                vec![c("w-18", Created, 30)],
                vec![n("w-18", true)],
                vec![],
                vec![],
            ),
        ];
        for (name, containers, nodes, prov, expected) in cases {
            let state = State {
                provisioning: prov,
                ..State::fresh()
            };
            assert_eq!(
                plan_repairs(&containers, &nodes, &state, &cfg, NOW, &[]),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn only_a_created_container_is_never_started() {
        use ContainerState::*;
        // (state, registered, expected)
        let cases = [
            (Created, false, true),
            (Created, true, true),
            (Running, false, false),
            (Restarting, false, false),
            (Paused, false, false),
            (Exited, false, false),
            (Dead, false, false),
            (Removing, false, false),
            (Unknown, false, false),
        ];
        for (state, registered, expected) in cases {
            let got = never_started(&c("w-1", state, 10), registered);
            let want = expected.then(|| Repair::NeverStarted {
                name: "w-1".into(),
                node_registered: registered,
            });
            assert_eq!(got, want, "{state:?} registered={registered}");
        }
    }

    #[test]
    fn nothing_is_concluded_from_a_host_that_could_not_be_listed() {
        use ContainerState::*;
        let cfg = Config::default();
        let on = |mut n: WorkerNode, host: Option<&str>| {
            n.host = host.map(str::to_string);
            n
        };
        let entry = |name: &str, host: Option<&str>| Provisioning {
            host: host.map(str::to_string),
            ..booting(name, 10)
        };
        // Listed: box-a. Unlisted: box-b.
        let containers = vec![c("w-1", Running, 5000)];
        let nodes = vec![
            on(n("w-1", true), Some("box-a")),
            on(n("w-2", false), Some("box-b")),
            on(n("w-3", false), None),
            on(n("w-4", false), Some("box-a")),
        ];
        let state = State {
            provisioning: vec![
                entry("w-5", Some("box-b")),
                entry("w-6", None),
                entry("w-7", Some("box-a")),
            ],
            ..State::fresh()
        };
        let unlisted = ["box-b".to_string()];
        assert_eq!(
            plan_repairs(&containers, &nodes, &state, &cfg, NOW, &unlisted),
            vec![
                Repair::OrphanNode { name: "w-4".into() },
                Repair::StaleEntry { name: "w-7".into() },
            ],
            "only what is known to be on a listed host"
        );
        // Every host listed: the same listings are drift everywhere.
        assert_eq!(
            plan_repairs(&containers, &nodes, &state, &cfg, NOW, &[]).len(),
            6
        );
    }

    #[test]
    fn recording_counts_and_backs_off_never_ready_workers() {
        let mut state = State {
            provisioning: vec![booting("w-2", 1000), booting("w-7", 5)],
            ..State::fresh()
        };
        let repairs = vec![
            Repair::NeverReady {
                name: "w-2".into(),
                since: ago(1000),
                node_registered: false,
            },
            Repair::StaleEntry { name: "w-7".into() },
        ];
        record(&mut state, &repairs, NOW);
        assert!(state.provisioning.is_empty());
        assert_eq!(state.totals.repairs, 2);
        assert_eq!(state.totals.failed_scale_ups, 1);
        assert_eq!(state.last_scale_up_failure, Some(NOW));
        assert_eq!(state.events.len(), 2);

        let adopt = Repair::Adopt {
            name: "w-9".into(),
            since: ago(30),
        };
        record(&mut state, &[adopt], NOW);
        assert_eq!(state.provisioning, vec![booting("w-9", 30)]);
        assert_eq!(state.totals.repairs, 3);

        // Never started: the entry goes, no back-off (the run decides afresh).
        let never = Repair::NeverStarted {
            name: "w-9".into(),
            node_registered: false,
        };
        record(&mut state, &[never], NOW);
        assert!(state.provisioning.is_empty());
        assert_eq!(state.totals.repairs, 4);
        assert_eq!(state.totals.failed_scale_ups, 1);
    }
}
