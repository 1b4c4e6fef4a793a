//! The drain of one node, under one deadline: cordon, list its pods, move them (eviction,
//! several at once; a PDB's 429 retried until the deadline; wait until each pod is gone),
//! and on any failure undo its own cordon (never one that was there before) and report
//! every pod not moved and why. Asked to stop (`state::stop`), it sends no new request.

use crate::config;
use crate::kube::drain::{self, PodBlocker, Skip, pod_key};
/// The words of a move live below the `Cluster` trait that speaks them; the drain's
/// callers find them here too.
pub use crate::kube::moves::{Fate, MoveMode, MoveOptions, PodMove};
use crate::kube::{Cluster, KubeError, failure_in_body, timed};
use crate::state::stop::{self, Stop};
use ::kube::api::{Api, DeleteParams, PostParams, Preconditions};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How often to look whether an evicted pod is gone. kubectl drain polls every 1 s; half
/// that, because a one-shot run waits on it and a GET of one pod is cheap.
pub const GONE_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How often a drain looks whether the run was asked to stop (`state::stop`).
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What the apiserver says when a pod is covered by several PDBs: a misconfiguration that
/// no retry fixes. kubernetes pkg/registry/core/pod/storage/eviction.go returns a Status
/// {Failure, code 500, "This pod has more than one PodDisruptionBudget, which the eviction
/// subresource does not support."} and the create handler's finisher
/// (apiserver/pkg/endpoints/handlers/finisher/finisher.go) answers it as HTTP 500.
const MULTIPLE_PDBS: &str = "more than one PodDisruptionBudget";

/// The Status cause of a create refused in a namespace being deleted (the NamespaceLifecycle
/// admission plugin, apiserver/pkg/admission/plugin/namespace/lifecycle/admission.go; 403).
pub const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";

/// The drain settings, from `drain.*` and the command line.
#[derive(Debug, Clone)]
pub struct DrainOptions {
    pub mode: MoveMode,
    pub timeout: Duration,
    pub max_grace: Duration,
    pub retry_interval: Duration,
    pub concurrency: usize,
    /// Wait until each evicted pod is gone. Off for a node that is not Ready: its kubelet
    /// cannot finish them, they stay Terminating until the Node is deleted (then pod GC
    /// removes them, pkg/controller/podgc), so waiting would only run into the deadline.
    pub wait_gone: bool,
}

impl DrainOptions {
    pub fn from_config(d: &config::Drain, mode: MoveMode) -> DrainOptions {
        DrainOptions {
            mode,
            timeout: d.timeout.get(),
            max_grace: d.max_grace_period.get(),
            retry_interval: d.eviction_retry_interval.get(),
            concurrency: d.concurrency.max(1) as usize,
            wait_gone: true,
        }
    }

    pub fn moving(&self, deadline: Instant) -> MoveOptions {
        MoveOptions {
            mode: self.mode,
            deadline,
            max_grace: self.max_grace,
            retry_interval: self.retry_interval,
            concurrency: self.concurrency,
            wait_gone: self.wait_gone,
        }
    }
}

/// Whether a drain re-checks the removability rules on the pods it finds after the cordon
/// (a pod may have landed between the check and the cordon).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recheck {
    Pods,
    Nothing,
}

/// A drain that finished: every pod it had to move is gone.
#[derive(Debug, Clone, Default)]
pub struct Drained {
    pub moved: Vec<String>,
    pub skipped: Vec<(String, Skip)>,
    /// The node was cordoned by someone else before the drain: anything that gives up on
    /// it afterwards leaves it cordoned (`restore_cordon`).
    pub cordoned_before: bool,
}

/// A drain that did not finish. The node was uncordoned (unless it was cordoned before:
/// then only the drain marks were removed).
#[derive(Debug, Clone)]
pub struct DrainFailure {
    pub node: String,
    /// What stopped it before pods were moved (cordon or list failed, a blocker appeared).
    pub cause: Option<String>,
    /// Pods whose eviction was accepted (gone or terminating).
    pub moved: Vec<String>,
    /// Every pod not moved, and why.
    pub not_moved: Vec<(String, String)>,
    /// How the node was left: "uncordoned", "left cordoned (it was before)", or why the
    /// uncordon failed.
    pub node_left: String,
}

impl fmt::Display for DrainFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "drain of {} failed", self.node)?;
        if let Some(c) = &self.cause {
            write!(f, ": {c}")?;
        }
        if !self.not_moved.is_empty() {
            let list: Vec<String> = self
                .not_moved
                .iter()
                .map(|(p, why)| format!("{p} ({why})"))
                .collect();
            write!(
                f,
                "; {} pod(s) not moved: {}",
                self.not_moved.len(),
                list.join("; ")
            )?;
        }
        if !self.moved.is_empty() {
            write!(f, "; {} pod(s) evicted", self.moved.len())?;
        }
        write!(f, "; node {}", self.node_left)
    }
}

/// Cordons `node`, moves its pods off and waits until they are gone, all before
/// `opts.timeout` has passed. On failure the node is uncordoned again if this drain
/// cordoned it (a cordon someone else set stays, only the drain marks go) and the failure
/// lists every pod not moved.
pub fn drain_node(
    cluster: &dyn Cluster,
    node: &str,
    opts: &DrainOptions,
    recheck: Recheck,
) -> Result<Drained, DrainFailure> {
    // Never past the run's own deadline (`scaling.run_timeout`).
    let deadline = stop::within(Instant::now() + opts.timeout);
    let fail = |cause: Option<String>, moved, not_moved, node_left| DrainFailure {
        node: node.to_string(),
        cause,
        moved,
        not_moved,
        node_left,
    };
    // Cordoned by someone else before this drain: left so, whatever becomes of it.
    let cordoned_before = match cluster.node(node) {
        Ok(Some(n)) => drain::cordoned_by_someone_else(&n),
        Ok(None) => {
            return Err(fail(
                Some(format!("no node named {node}")),
                vec![],
                vec![],
                "untouched".into(),
            ));
        }
        Err(e) => {
            return Err(fail(
                Some(e.to_string()),
                vec![],
                vec![],
                "untouched".into(),
            ));
        }
    };
    let restore = || restore_cordon(cluster, node, cordoned_before);
    let stopped = |why: Stop| Some(format!("stopped: {why}"));
    if let Some(why) = stop::why() {
        return Err(fail(stopped(why), vec![], vec![], "untouched".into()));
    }
    if let Err(e) = cluster.cordon(node, cordoned_before) {
        // A timed-out patch may still have been applied: put it back either way.
        return Err(fail(Some(e.to_string()), vec![], vec![], restore()));
    }
    log::info!("cordoned {node}");
    if let Some(why) = stop::why() {
        return Err(fail(stopped(why), vec![], vec![], restore()));
    }
    let pods = match cluster.pods_on(node) {
        Ok(p) => p,
        Err(e) => return Err(fail(Some(e.to_string()), vec![], vec![], restore())),
    };
    let plan = drain::into_plan(pods);
    if recheck == Recheck::Pods {
        let found = drain::blockers(&plan, None);
        if !found.is_empty() {
            return Err(fail(
                Some("a pod that cannot be moved is on the node".into()),
                vec![],
                blocker_list(&found),
                restore(),
            ));
        }
    }
    for (p, why) in &plan.skipped {
        log::info!("leaving {p} on {node}: {why}");
    }
    if let Some(why) = stop::why() {
        let not_moved = plan
            .to_move
            .iter()
            .map(|p| (pod_key(p), "not evicted: the drain stopped".to_string()))
            .collect();
        return Err(fail(stopped(why), vec![], not_moved, restore()));
    }
    let results = cluster.move_pods(&plan.to_move, &opts.moving(deadline));
    let moved: Vec<String> = results
        .iter()
        .filter(|m| m.accepted())
        .map(|m| m.pod.clone())
        .collect();
    let not_moved: Vec<(String, String)> = results
        .iter()
        .filter_map(|m| match &m.fate {
            Fate::Gone => None,
            // Evicted from a node that is not Ready: left to terminate with the Node.
            Fate::Terminating(_) if !opts.wait_gone => None,
            Fate::Terminating(why) | Fate::Kept(why) => Some((m.pod.clone(), why.clone())),
        })
        .collect();
    if not_moved.is_empty() {
        return Ok(Drained {
            moved,
            skipped: plan.skipped,
            cordoned_before,
        });
    }
    match stop::why() {
        // Asked to stop before any pod left: the node is as it was.
        Some(why) if moved.is_empty() => Err(fail(stopped(why), moved, not_moved, restore())),
        // Pods were evicted: no more calls now; the cordon and the drain mark stay, and
        // the next run's repair (an unfinished drain) undoes this drain's cordon.
        Some(why) => Err(fail(stopped(why), moved, not_moved, LEFT_FOR_REPAIR.into())),
        None => Err(fail(None, moved, not_moved, restore())),
    }
}

/// How a drain stopped after evictions leaves its node.
pub const LEFT_FOR_REPAIR: &str = "left cordoned with its drain mark (pods were evicted); the \
     next run's repair of the unfinished drain undoes this drain's cordon";

/// Undoes a drain's cordon, and only its own: a node that was cordoned before the drain
/// keeps that cordon and loses only the drain marks. Says how the node was left.
pub fn restore_cordon(cluster: &dyn Cluster, node: &str, cordoned_before: bool) -> String {
    if cordoned_before {
        return match cluster.clear_drain_mark(node) {
            Ok(()) => "left cordoned (it was cordoned before the drain)".into(),
            Err(e) => format!(
                "left cordoned (it was cordoned before the drain); its drain marks could not \
                 be removed ({e}), the next evaluate removes them and leaves it cordoned"
            ),
        };
    }
    match cluster.uncordon(node) {
        Ok(()) => "uncordoned".into(),
        Err(e) => {
            format!("LEFT CORDONED: the uncordon failed ({e}); run `kubectl uncordon {node}`")
        }
    }
}

pub fn blocker_list(found: &[PodBlocker]) -> Vec<(String, String)> {
    found
        .iter()
        .map(|b| (b.pod.clone(), b.blocker.to_string()))
        .collect()
}

/// Moves the pods concurrently: at most `how.concurrency` requests in flight, retries
/// until `how.deadline`; a refusal no retry can fix stops the pods not yet evicted.
pub(crate) async fn move_pods(
    client: ::kube::Client,
    pods: Vec<Pod>,
    how: MoveOptions,
    call_timeout: Duration,
) -> Vec<PodMove> {
    let keys: Vec<String> = pods.iter().map(pod_key).collect();
    let permits = Arc::new(Semaphore::new(how.concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel::<Option<String>>(None);
    let stop_tx = Arc::new(stop_tx);
    let mut set = JoinSet::new();
    for (i, pod) in pods.into_iter().enumerate() {
        let mover = Mover {
            client: client.clone(),
            permits: permits.clone(),
            stop_tx: stop_tx.clone(),
            stop: stop_rx.clone(),
            how: how.clone(),
            call_timeout,
        };
        set.spawn(async move { (i, mover.run(pod).await) });
    }
    // A stop of the run (a signal, its deadline) stops the movers as a fatal refusal does:
    // the requests in flight finish, no new eviction is sent.
    let watcher = {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            loop {
                if let Some(why) = stop::why() {
                    stop_tx.send_replace(Some(why.to_string()));
                    return;
                }
                tokio::time::sleep(STOP_POLL_INTERVAL).await;
            }
        })
    };
    let mut fates: Vec<Option<Fate>> = vec![None; keys.len()];
    while let Some(done) = set.join_next().await {
        match done {
            Ok((i, fate)) => fates[i] = Some(fate),
            Err(e) => log::error!("a pod mover failed: {e}"),
        }
    }
    watcher.abort();
    keys.into_iter()
        .zip(fates)
        .map(|(pod, fate)| PodMove {
            pod,
            fate: fate.unwrap_or_else(|| Fate::Kept("internal error: its mover failed".into())),
        })
        .collect()
}

/// One pod's way off the node.
struct Mover {
    client: ::kube::Client,
    permits: Arc<Semaphore>,
    stop_tx: Arc<watch::Sender<Option<String>>>,
    stop: watch::Receiver<Option<String>>,
    how: MoveOptions,
    call_timeout: Duration,
}

/// What one eviction (or delete) request came to.
enum Answer {
    Accepted,
    /// 404: the pod is gone.
    AlreadyGone,
    /// 409: the UID precondition failed (a replacement took the name: eviction.go's "the
    /// UID in the precondition (...) does not match the UID in record (...)", or the
    /// store's "Precondition failed") or a write raced. Look at the pod again: gone or
    /// replaced is done, the same pod is tried again.
    LookAgain(String),
    /// 403 NamespaceTerminating: no eviction can succeed in a namespace being deleted, and
    /// the namespace controller deletes its pods; wait for the pod to go, as kubectl drain
    /// does (pkg/drain/drain.go, evictPods).
    NamespaceTerminating(String),
    Retry(String),
    Fatal(String),
}

impl Mover {
    async fn run(mut self, pod: Pod) -> Fate {
        let key = pod_key(&pod);
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone();
        let grace = drain::grace_seconds(&pod, self.how.max_grace);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let (verb, done) = match self.how.mode {
            MoveMode::Evict => ("evict", "evicted"),
            MoveMode::Delete => ("delete", "deleted"),
        };
        let what = format!("{verb} pod {key}");

        let mut last: Option<String> = None;
        loop {
            if let Some(why) = self.stopped() {
                return Fate::Kept(format!("not {done}: the drain stopped ({why})"));
            }
            let Some(left) = self.time_left() else {
                return Fate::Kept(self.deadline_reason(last.as_deref(), done));
            };
            let answer = {
                // Waiting for a slot counts against the deadline, and the limit is taken
                // after the wait: no eviction is sent once the drain has given up.
                let Ok(_permit) = tokio::time::timeout(left, self.permits.acquire()).await else {
                    return Fate::Kept(self.deadline_reason(last.as_deref(), done));
                };
                let Some(left) = self.time_left() else {
                    return Fate::Kept(self.deadline_reason(last.as_deref(), done));
                };
                let limit = self.call_timeout.min(left);
                let res = match self.how.mode {
                    // A 2xx whose body is a Failure Status is a refusal, not an eviction
                    // (`kube::failure_in_body`): it becomes the error it describes.
                    MoveMode::Evict => {
                        timed(&what, limit, evict(&api, &name, &ns, uid.clone(), grace))
                            .await
                            .and_then(|v| match failure_in_body(&what, &v) {
                                Some(e) => Err(e),
                                None => Ok(v),
                            })
                    }
                    MoveMode::Delete => {
                        timed(&what, limit, delete(&api, &name, uid.clone(), grace)).await
                    }
                };
                classify(res, self.how.mode)
            };
            match answer {
                Answer::Accepted => {
                    log::info!("{done} {key} (grace {grace}s)");
                    if !self.how.wait_gone {
                        return Fate::Terminating(format!(
                            "{done}; not waited for: its node is not Ready"
                        ));
                    }
                    break;
                }
                Answer::AlreadyGone => return Fate::Gone,
                Answer::LookAgain(why) => match self.look_again(&api, &name, &uid).await {
                    Some(true) => {
                        log::info!("{key} is gone or was replaced by a new pod ({why})");
                        return Fate::Gone;
                    }
                    Some(false) | None => {
                        log::debug!("{what}: {why}; the pod is still there, retrying");
                        last = Some(why);
                        self.pause(self.how.retry_interval).await;
                    }
                },
                Answer::NamespaceTerminating(why) => {
                    log::info!("{what}: {why}; waiting for the namespace's deletion to take it");
                    break;
                }
                Answer::Retry(why) => {
                    log::debug!("{what}: {why}; retrying");
                    last = Some(why);
                    self.pause(self.how.retry_interval).await;
                }
                Answer::Fatal(why) => {
                    self.stop_tx.send_replace(Some(format!("{key}: {why}")));
                    return Fate::Kept(why);
                }
            }
        }

        // Wait until it is gone: a 404, or its name taken by a pod with a new UID.
        let mut last: Option<String> = None;
        loop {
            if self.stopped().is_some() {
                return Fate::Terminating(format!(
                    "{done}, still terminating when the drain stopped"
                ));
            }
            let Some(left) = self.time_left() else {
                let mut why = format!("{done}, but still terminating at the drain deadline");
                if let Some(l) = last {
                    why.push_str(&format!(" (last check: {l})"));
                }
                return Fate::Terminating(why);
            };
            let got = {
                let Ok(_permit) = tokio::time::timeout(left, self.permits.acquire()).await else {
                    continue;
                };
                let Some(left) = self.time_left() else {
                    continue;
                };
                timed(
                    &format!("get pod {key}"),
                    self.call_timeout.min(left),
                    api.get_opt(&name),
                )
                .await
            };
            match got {
                Ok(None) => return Fate::Gone,
                Ok(Some(p)) if p.metadata.uid != uid => return Fate::Gone,
                Ok(Some(_)) => last = None,
                Err(e) => last = Some(e.to_string()),
            }
            self.pause(GONE_POLL_INTERVAL).await;
        }
    }

    /// After a 409: Some(true) when the pod by that name is gone or is a new pod (another
    /// UID), Some(false) when it is the same pod, None when the GET failed.
    async fn look_again(&self, api: &Api<Pod>, name: &str, uid: &Option<String>) -> Option<bool> {
        let left = self.time_left()?;
        let _permit = tokio::time::timeout(left, self.permits.acquire())
            .await
            .ok()?;
        let limit = self.call_timeout.min(self.time_left()?);
        match timed(&format!("get pod {name}"), limit, api.get_opt(name)).await {
            Ok(None) => Some(true),
            Ok(Some(p)) => Some(p.metadata.uid != *uid),
            Err(_) => None,
        }
    }

    /// Why the drain stopped: a refusal no retry fixes, or the run asked to stop (read
    /// here too, not only through the watcher, so that no eviction starts after it).
    fn stopped(&self) -> Option<String> {
        self.stop
            .borrow()
            .clone()
            .or_else(|| stop::why().map(|w| w.to_string()))
    }

    fn time_left(&self) -> Option<Duration> {
        let left = self.how.deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    fn deadline_reason(&self, last: Option<&str>, done: &str) -> String {
        match last {
            Some(l) => format!(
                "{l}; retried every {} until the drain deadline",
                crate::config::units::format_duration(self.how.retry_interval)
            ),
            None => format!("not {done} before the drain deadline"),
        }
    }

    /// Sleeps for `d`, but not past the deadline, and wakes when the drain stops.
    async fn pause(&mut self, d: Duration) {
        let until = (Instant::now() + d).min(self.how.deadline);
        let until = tokio::time::Instant::from_std(until);
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = self.stop.changed() => {}
        }
    }
}

fn classify(res: Result<serde_json::Value, KubeError>, mode: MoveMode) -> Answer {
    let e = match res {
        Ok(_) => return Answer::Accepted,
        Err(e) => e,
    };
    match &e {
        KubeError::Api { code: 404, .. } => Answer::AlreadyGone,
        KubeError::Api { code: 409, .. } => Answer::LookAgain(e.to_string()),
        KubeError::Api { code: 403, .. } if e.has_cause(NAMESPACE_TERMINATING) => {
            Answer::NamespaceTerminating(e.to_string())
        }
        KubeError::Api {
            code: 429, message, ..
        } if mode == MoveMode::Evict => Answer::Retry(format!(
            "eviction refused by a PodDisruptionBudget (429): {message}"
        )),
        KubeError::Api {
            code: 500, message, ..
        } if message.contains(MULTIPLE_PDBS) => {
            Answer::Fatal(format!("eviction impossible (500): {message}"))
        }
        _ if e.is_transient() => Answer::Retry(e.to_string()),
        _ => Answer::Fatal(e.to_string()),
    }
}

/// POST .../pods/NAME/eviction with the capped grace period and the pod's UID as a
/// precondition. The body's shape is kubectl's (`deleteOptions`; kube's `Api::evict` sends
/// `delete_options`, a field the apiserver does not know, so the grace cap would be lost).
/// The UID precondition is ours, not kubectl's: current kubectl sends none
/// (pkg/drain/drain.go, makeDeleteOptions), so its eviction may hit a same-name
/// replacement pod; with the precondition the apiserver refuses that with a 409 and the
/// replacement is spared.
async fn evict(
    api: &Api<Pod>,
    name: &str,
    ns: &str,
    uid: Option<String>,
    grace: i64,
) -> Result<serde_json::Value, ::kube::Error> {
    let body = Eviction {
        metadata: meta::ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            ..Default::default()
        },
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(grace),
            preconditions: uid.map(|u| meta::Preconditions {
                uid: Some(u),
                resource_version: None,
            }),
            ..Default::default()
        }),
    };
    api.create_subresource("eviction", name, &PostParams::default(), &body)
        .await
}

/// DELETE the pod with the capped grace period, as `kubectl drain --disable-eviction`.
async fn delete(
    api: &Api<Pod>,
    name: &str,
    uid: Option<String>,
    grace: i64,
) -> Result<serde_json::Value, ::kube::Error> {
    let dp = DeleteParams {
        grace_period_seconds: Some(u32::try_from(grace).unwrap_or(u32::MAX)),
        preconditions: uid.map(|u| Preconditions {
            uid: Some(u),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    api.delete(name, &dp).await.map(|_| serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str, causes: &[&str]) -> Result<serde_json::Value, KubeError> {
        Err(KubeError::Api {
            call: "evict pod default/p".into(),
            code,
            reason: String::new(),
            message: message.into(),
            causes: causes.iter().map(|c| c.to_string()).collect(),
        })
    }

    /// Each answer of the eviction subresource (eviction.go, the NamespaceLifecycle
    /// admission plugin, the finisher) and what the mover makes of it.
    #[test]
    fn eviction_answers_table() {
        let several = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";
        let uid = "Operation cannot be fulfilled on Pod \"p\": the UID in the precondition (a) does not match the UID in record (b). The object might have been deleted and then recreated";
        let cases: Vec<(&str, Result<serde_json::Value, KubeError>, MoveMode, &str)> = vec![
            (
                "201",
                Ok(serde_json::json!({})),
                MoveMode::Evict,
                "accepted",
            ),
            (
                "404",
                api(404, "pods \"p\" not found", &[]),
                MoveMode::Evict,
                "gone",
            ),
            (
                "409 replaced",
                api(409, uid, &[]),
                MoveMode::Evict,
                "look again",
            ),
            (
                "409 store precondition",
                api(409, "Precondition failed: UID in precondition: a", &[]),
                MoveMode::Delete,
                "look again",
            ),
            (
                "403 terminating namespace",
                api(403, "forbidden", &[NAMESPACE_TERMINATING]),
                MoveMode::Evict,
                "namespace terminating",
            ),
            (
                "403 otherwise (RBAC)",
                api(403, "forbidden", &[]),
                MoveMode::Evict,
                "fatal",
            ),
            (
                "429 budget",
                api(429, "Cannot evict pod", &["DisruptionBudget"]),
                MoveMode::Evict,
                "retry",
            ),
            (
                "500 several budgets",
                api(500, several, &[]),
                MoveMode::Evict,
                "fatal",
            ),
            (
                "500 otherwise",
                api(500, "etcd", &[]),
                MoveMode::Evict,
                "retry",
            ),
            ("400", api(400, "bad", &[]), MoveMode::Evict, "fatal"),
        ];
        for (what, res, mode, want) in cases {
            let got = match classify(res, mode) {
                Answer::Accepted => "accepted",
                Answer::AlreadyGone => "gone",
                Answer::LookAgain(_) => "look again",
                Answer::NamespaceTerminating(_) => "namespace terminating",
                Answer::Retry(_) => "retry",
                Answer::Fatal(_) => "fatal",
            };
            assert_eq!(got, want, "{what}");
        }
    }

    /// A 2xx with a Failure Status in its body is the error it describes.
    #[test]
    fn a_failure_status_in_a_2xx_body_is_an_error() {
        let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "code": 500, "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."});
        let e = failure_in_body("evict pod default/p", &body).expect("an error");
        assert_eq!(e.code(), Some(500));
        assert!(matches!(
            classify(Err(e), MoveMode::Evict),
            Answer::Fatal(_)
        ));
        // No code: an internal error.
        let e = failure_in_body(
            "x",
            &serde_json::json!({"kind": "Status", "status": "Failure", "details": {"causes": [{"reason": "NamespaceTerminating"}]}}),
        )
        .unwrap();
        assert_eq!(e.code(), Some(500));
        assert!(e.has_cause(NAMESPACE_TERMINATING));
        for ok in [
            serde_json::json!({"kind": "Status", "status": "Success", "code": 201}),
            serde_json::json!({"kind": "Pod", "status": {"phase": "Failure"}}),
            serde_json::json!(null),
        ] {
            assert!(failure_in_body("x", &ok).is_none(), "{ok}");
        }
    }
}
