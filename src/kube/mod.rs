//! Kubernetes, one of the outside systems: the small `Cluster` interface that scale-down,
//! `drain NODE` and reconcile need, its error kind, and what lives beside it: the client on
//! kube-rs (`client`), the mover that evicts and waits (`mover`; what a move is asked and
//! what became of each pod: `moves`), the pure rules a drain and a scale-down check follow
//! (`drain`, `budgets`), the API's objects turned into the cluster model (`model`, pure;
//! `facts`, the listing), and the Event writer (`events`).
//! May use `config`, `state` (time, the Events memo), `plan` (the model's types) and
//! nothing above.

pub mod budgets;
pub mod client;
pub mod drain;
pub mod events;
pub mod facts;
pub mod model;
pub mod mover;
pub mod moves;

pub use client::KubeCluster;
pub use model::is_ready;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use moves::{MoveOptions, PodMove};
use std::future::Future;
use std::time::Duration;

/// A call that failed on a transient error (5xx, 429, timeout, dropped connection) is
/// tried this many times in all. Short on purpose: a one-shot run must end, and the next
/// run (30 s later) tries again anyway. The drain's own loops run until its deadline instead.
pub const TRANSIENT_ATTEMPTS: u32 = 3;
/// Pause between those attempts: long enough for an apiserver restart to be noticed,
/// short next to the 30 s run interval.
pub const TRANSIENT_RETRY_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, thiserror::Error)]
pub enum KubeError {
    /// No usable kubeconfig or client (the message never carries credentials).
    #[error("Kubernetes client: {0}")]
    Config(String),
    /// The API server answered with an error status.
    #[error("Kubernetes {call}: {code} {reason}: {message}")]
    Api {
        call: String,
        code: u16,
        reason: String,
        message: String,
        /// The machine-readable `reason` of each of the Status's causes (`DisruptionBudget`,
        /// `NamespaceTerminating`, ...): what tells one 429 or 403 from another.
        causes: Vec<String>,
    },
    /// No answer within `kubernetes.timeout` (or the drain's remaining time).
    #[error(
        "Kubernetes {call}: no answer within {}",
        crate::config::units::format_duration(*.after)
    )]
    Timeout { call: String, after: Duration },
    /// Connection refused, reset or dropped before a full answer.
    #[error("Kubernetes {call}: {message}")]
    Transport { call: String, message: String },
    /// An answer that is not what the API promises.
    #[error("Kubernetes {call}: unexpected answer: {message}")]
    Decode { call: String, message: String },
}

impl KubeError {
    pub fn code(&self) -> Option<u16> {
        match self {
            KubeError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// Whether the Status names this cause (apimachinery's `errors.HasStatusCause`).
    pub fn has_cause(&self, cause: &str) -> bool {
        matches!(self, KubeError::Api { causes, .. } if causes.iter().any(|c| c == cause))
    }

    /// Worth trying again: the server was busy, failing or unreachable, not refusing.
    pub fn is_transient(&self) -> bool {
        match self {
            KubeError::Api { code, .. } => *code == 429 || *code >= 500,
            KubeError::Timeout { .. } | KubeError::Transport { .. } => true,
            KubeError::Config(_) | KubeError::Decode { .. } => false,
        }
    }

    pub(crate) fn from_kube(call: &str, e: ::kube::Error) -> KubeError {
        match e {
            ::kube::Error::Api(s) => {
                let mut message = s.message.clone();
                let mut causes = Vec::new();
                // The PDB's own words ("needs 2 healthy pods and has 2 currently") are in the
                // causes; they say more than the generic message.
                if let Some(d) = &s.details {
                    for c in &d.causes {
                        if !c.message.is_empty() {
                            message.push_str(&format!(" ({})", c.message));
                        }
                        causes.push(c.reason.clone());
                    }
                }
                KubeError::Api {
                    call: call.to_string(),
                    code: s.code,
                    reason: s.reason.clone(),
                    message,
                    causes,
                }
            }
            ::kube::Error::SerdeError(e) => KubeError::Decode {
                call: call.to_string(),
                message: e.to_string(),
            },
            other => KubeError::Transport {
                call: call.to_string(),
                message: error_chain(&other),
            },
        }
    }
}

/// A 2xx answer whose body is a `Status` with `status: Failure`, as an error carrying the
/// body's code, reason and message. kube-apiserver itself never writes one (its create
/// handler turns a Failure Status returned by a REST storage into an error answer with the
/// Status's code: apiserver/pkg/endpoints/handlers/finisher/finisher.go, `result.Return`),
/// and current client-go reads any 2xx as success (rest/request.go, transformResponse); a
/// proxy or an aggregated API server might still send one, and the body says plainly that
/// the call failed.
pub fn failure_in_body(call: &str, body: &serde_json::Value) -> Option<KubeError> {
    if body.get("kind")?.as_str()? != "Status" || body.get("status")?.as_str()? != "Failure" {
        return None;
    }
    let text = |k: &str| {
        body.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let causes = body
        .pointer("/details/causes")
        .and_then(|c| c.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("reason").and_then(|r| r.as_str()).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Some(KubeError::Api {
        call: call.to_string(),
        // A Failure without a code is an internal error, as apimachinery's ErrorToAPIStatus.
        code: body
            .get("code")
            .and_then(|c| c.as_u64())
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| *c != 0)
            .unwrap_or(500),
        reason: text("reason"),
        message: text("message"),
        causes,
    })
}

/// An error and its sources on one line: hyper's top-level message alone ("client error")
/// does not say that the connection was reset.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        src = s.source();
    }
    out
}

/// What k3s-scale asks of the cluster. Synchronous: the run flow is; the implementation
/// blocks on its own runtime.
pub trait Cluster {
    /// The Node, or None when there is none by that name.
    fn node(&self, name: &str) -> Result<Option<Node>, KubeError>;
    /// Every Node (for drift repair).
    fn nodes(&self) -> Result<Vec<Node>, KubeError>;
    /// Cordons the node for a drain and marks it, in the same write, with
    /// `drain::DRAINING_ANNOTATION` and, when `cordoned_before` (someone else's cordon was
    /// there already), `drain::CORDONED_BEFORE_ANNOTATION`.
    fn cordon(&self, node: &str, cordoned_before: bool) -> Result<(), KubeError>;
    /// Uncordons the node and removes both drain marks: only for a cordon of k3s-scale's.
    fn uncordon(&self, node: &str) -> Result<(), KubeError>;
    /// Removes both drain marks and leaves the node cordoned (a drain that keeps it so, or
    /// one that found it cordoned by someone else).
    fn clear_drain_mark(&self, node: &str) -> Result<(), KubeError>;
    /// Every pod bound to the node, in every namespace.
    fn pods_on(&self, node: &str) -> Result<Vec<Pod>, KubeError>;
    /// Every PodDisruptionBudget, in every namespace.
    fn disruption_budgets(&self) -> Result<Vec<PodDisruptionBudget>, KubeError>;
    /// Moves the pods off their node (evicts or deletes them, then waits until each is
    /// gone), several at once, until `how.deadline`. One result per pod, in order.
    fn move_pods(&self, pods: &[Pod], how: &MoveOptions) -> Vec<PodMove>;
    /// Deletes the Node; false when it was already gone. k3s deletes the Node's
    /// `kube-system/<node>.node-password.k3s` secret itself when the Node goes, on every
    /// k3s that keeps node passwords in secrets: the node controller's OnRemove handler
    /// (k3s-io/k3s pkg/node/controller.go, removeNodePassword, v1.20 to v1.32), later an
    /// owner reference from the secret to its Node that the garbage collector follows
    /// (pkg/nodepassword/controller.go, onChangeNode; its sync also deletes secrets left
    /// without a Node after 10 min). So k3s-scale does not delete it, and needs no RBAC
    /// rule on secrets.
    fn delete_node(&self, name: &str) -> Result<bool, KubeError>;
    /// The pods no node is bound to yet (`spec.nodeName=,status.phase=Pending`): what the
    /// scheduler has not placed. Never every pod of the cluster.
    fn pending_pods(&self) -> Result<Vec<Pod>, KubeError>;
    /// Every DaemonSet (their pod templates run on a new worker too).
    fn daemon_sets(&self) -> Result<Vec<DaemonSet>, KubeError>;
    /// One PersistentVolumeClaim, or None when there is none by that name.
    fn claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, KubeError>;
    /// One PersistentVolume, or None.
    fn volume(&self, name: &str) -> Result<Option<PersistentVolume>, KubeError>;
    /// One StorageClass, or None (for a claim not bound yet: does it wait for its pod?).
    fn storage_class(&self, name: &str) -> Result<Option<StorageClass>, KubeError>;
    /// Creates a core/v1 Event in `namespace` (one attempt: Events are best effort).
    fn create_event(&self, namespace: &str, event: &serde_json::Value) -> Result<(), KubeError>;
    /// Strategic-merge-patches an Event (one attempt).
    fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<(), KubeError>;
}

/// A shared cluster client is a cluster client (scale-down and reconcile share one).
impl<T: Cluster + ?Sized> Cluster for std::rc::Rc<T> {
    fn node(&self, name: &str) -> Result<Option<Node>, KubeError> {
        (**self).node(name)
    }
    fn nodes(&self) -> Result<Vec<Node>, KubeError> {
        (**self).nodes()
    }
    fn cordon(&self, node: &str, cordoned_before: bool) -> Result<(), KubeError> {
        (**self).cordon(node, cordoned_before)
    }
    fn uncordon(&self, node: &str) -> Result<(), KubeError> {
        (**self).uncordon(node)
    }
    fn clear_drain_mark(&self, node: &str) -> Result<(), KubeError> {
        (**self).clear_drain_mark(node)
    }
    fn pods_on(&self, node: &str) -> Result<Vec<Pod>, KubeError> {
        (**self).pods_on(node)
    }
    fn disruption_budgets(&self) -> Result<Vec<PodDisruptionBudget>, KubeError> {
        (**self).disruption_budgets()
    }
    fn move_pods(&self, pods: &[Pod], how: &MoveOptions) -> Vec<PodMove> {
        (**self).move_pods(pods, how)
    }
    fn delete_node(&self, name: &str) -> Result<bool, KubeError> {
        (**self).delete_node(name)
    }
    fn create_event(&self, namespace: &str, event: &serde_json::Value) -> Result<(), KubeError> {
        (**self).create_event(namespace, event)
    }
    fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<(), KubeError> {
        (**self).patch_event(namespace, name, patch)
    }
    fn pending_pods(&self) -> Result<Vec<Pod>, KubeError> {
        (**self).pending_pods()
    }
    fn daemon_sets(&self) -> Result<Vec<DaemonSet>, KubeError> {
        (**self).daemon_sets()
    }
    fn claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, KubeError> {
        (**self).claim(namespace, name)
    }
    fn volume(&self, name: &str) -> Result<Option<PersistentVolume>, KubeError> {
        (**self).volume(name)
    }
    fn storage_class(&self, name: &str) -> Result<Option<StorageClass>, KubeError> {
        (**self).storage_class(name)
    }
}

/// Runs one API call under `limit`, classifying its failure.
pub(crate) async fn timed<T>(
    what: &str,
    limit: Duration,
    fut: impl Future<Output = Result<T, ::kube::Error>>,
) -> Result<T, KubeError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(KubeError::from_kube(what, e)),
        Err(_) => Err(KubeError::Timeout {
            call: what.to_string(),
            after: limit,
        }),
    }
}
