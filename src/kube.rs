//! The Kubernetes side: the small `Cluster` interface that scale-down and `drain` need, and
//! its implementation on the kube client. The client owns a current_thread runtime, turns
//! the client's own 429/503/504 retries off and puts every call under a timeout, so the
//! retry loops (and the drain's deadline) are ours.

use crate::config;
use crate::drain_run::{self, MoveOptions, PodMove};
use ::kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// Where k3s keeps the password a node name registered with.
pub const NODE_PASSWORD_NAMESPACE: &str = "kube-system";

/// A call that failed on a transient error (5xx, 429, timeout, dropped connection) is
/// tried this many times in all. Short on purpose: a one-shot run must end, and the next
/// run (30 s later) tries again anyway. The drain's own loops run until its deadline instead.
pub const TRANSIENT_ATTEMPTS: u32 = 3;
/// Pause between those attempts: long enough for an apiserver restart to be noticed,
/// short next to the 30 s run interval.
pub const TRANSIENT_RETRY_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub enum KubeError {
    /// No usable kubeconfig or client (the message never carries credentials).
    Config(String),
    /// The API server answered with an error status.
    Api {
        call: String,
        code: u16,
        reason: String,
        message: String,
    },
    /// No answer within `kubernetes.timeout` (or the drain's remaining time).
    Timeout { call: String, after: Duration },
    /// Connection refused, reset or dropped before a full answer.
    Transport { call: String, message: String },
    /// An answer that is not what the API promises.
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
                // The PDB's own words ("needs 2 healthy pods and has 2 currently") are in the
                // causes; they say more than the generic message.
                if let Some(d) = &s.details {
                    for c in &d.causes {
                        if !c.message.is_empty() {
                            message.push_str(&format!(" ({})", c.message));
                        }
                    }
                }
                KubeError::Api {
                    call: call.to_string(),
                    code: s.code,
                    reason: s.reason.clone(),
                    message,
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

impl fmt::Display for KubeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KubeError::Config(m) => write!(f, "Kubernetes client: {m}"),
            KubeError::Api {
                call,
                code,
                reason,
                message,
            } => write!(f, "Kubernetes {call}: {code} {reason}: {message}"),
            KubeError::Timeout { call, after } => write!(
                f,
                "Kubernetes {call}: no answer within {}",
                crate::units::format_duration(*after)
            ),
            KubeError::Transport { call, message } => write!(f, "Kubernetes {call}: {message}"),
            KubeError::Decode { call, message } => {
                write!(f, "Kubernetes {call}: unexpected answer: {message}")
            }
        }
    }
}

impl std::error::Error for KubeError {}

/// What k3s-scale asks of the cluster. Synchronous: the run flow is; the implementation
/// blocks on its own runtime.
pub trait Cluster {
    /// The Node, or None when there is none by that name.
    fn node(&self, name: &str) -> Result<Option<Node>, KubeError>;
    /// Every Node (for drift repair).
    fn nodes(&self) -> Result<Vec<Node>, KubeError>;
    /// Cordons (`true`) or uncordons (`false`) the node for a drain: the cordon marks the
    /// node with `drain::DRAINING_ANNOTATION`, the uncordon removes the mark.
    fn set_unschedulable(&self, node: &str, unschedulable: bool) -> Result<(), KubeError>;
    /// Removes the drain mark and leaves the node cordoned (a drain that keeps it so).
    fn clear_drain_mark(&self, node: &str) -> Result<(), KubeError>;
    /// Every pod bound to the node, in every namespace.
    fn pods_on(&self, node: &str) -> Result<Vec<Pod>, KubeError>;
    /// Every PodDisruptionBudget, in every namespace.
    fn disruption_budgets(&self) -> Result<Vec<PodDisruptionBudget>, KubeError>;
    /// Moves the pods off their node (evicts or deletes them, then waits until each is
    /// gone), several at once, until `how.deadline`. One result per pod, in order.
    fn move_pods(&self, pods: &[Pod], how: &MoveOptions) -> Vec<PodMove>;
    /// Deletes the Node; false when it was already gone.
    fn delete_node(&self, name: &str) -> Result<bool, KubeError>;
    /// Deletes k3s's `<node>.node-password.k3s` secret; false when there was none.
    fn delete_node_password(&self, node: &str) -> Result<bool, KubeError>;
}

/// A shared cluster client is a cluster client (scale-down and reconcile share one).
impl<T: Cluster + ?Sized> Cluster for std::rc::Rc<T> {
    fn node(&self, name: &str) -> Result<Option<Node>, KubeError> {
        (**self).node(name)
    }
    fn nodes(&self) -> Result<Vec<Node>, KubeError> {
        (**self).nodes()
    }
    fn set_unschedulable(&self, node: &str, unschedulable: bool) -> Result<(), KubeError> {
        (**self).set_unschedulable(node, unschedulable)
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
    fn delete_node_password(&self, node: &str) -> Result<bool, KubeError> {
        (**self).delete_node_password(node)
    }
}

/// Whether the Node's Ready condition is True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The name of k3s's node-password secret for a node.
pub fn node_password_secret(node: &str) -> String {
    format!("{node}.node-password.k3s")
}

/// The kube-client implementation of `Cluster`.
pub struct KubeCluster {
    rt: tokio::runtime::Runtime,
    client: ::kube::Client,
    timeout: Duration,
}

impl KubeCluster {
    /// Builds the client from `kubernetes.kubeconfig`, else the usual inference
    /// ($KUBECONFIG, ~/.kube/config, in-cluster). Does not contact the server.
    pub fn connect(cfg: &config::Kubernetes) -> Result<KubeCluster, KubeError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| KubeError::Config(format!("cannot start a runtime: {e}")))?;
        let timeout = cfg.timeout.get();
        let kubeconfig = cfg.kubeconfig.clone();
        // The client spawns its request buffer on the runtime, so it is built inside it.
        let client = rt.block_on(async move {
            let mut config = match &kubeconfig {
                Some(path) => {
                    let kc = Kubeconfig::read_from(path).map_err(|e| {
                        KubeError::Config(format!("kubeconfig {}: {e}", path.display()))
                    })?;
                    ::kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                        .await
                        .map_err(|e| {
                            KubeError::Config(format!("kubeconfig {}: {e}", path.display()))
                        })?
                }
                None => ::kube::Config::infer().await.map_err(|e| {
                    KubeError::Config(format!(
                        "no kubeconfig (kubernetes.kubeconfig unset, none inferred): {e}"
                    ))
                })?,
            };
            // The client's built-in retry waits out 429s with back-off of up to minutes
            // (a PDB-blocked eviction surfaced after 354 s): the drain's deadline could not
            // hold. Our loops retry instead.
            config.default_retry = false;
            config.connect_timeout = Some(timeout);
            config.read_timeout = Some(timeout);
            config.write_timeout = Some(timeout);
            // Count the read timeout from the request, not from when a pooled connection
            // went idle.
            config.reset_reader_on_write = true;
            ::kube::Client::try_from(config)
                .map_err(|e| KubeError::Config(format!("cannot build the client: {e}")))
        })?;
        Ok(KubeCluster {
            rt,
            client,
            timeout,
        })
    }

    /// One call under the timeout, retried on transient errors (`TRANSIENT_ATTEMPTS`).
    fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, KubeError>
    where
        F: Fn(::kube::Client) -> Fut,
        Fut: Future<Output = Result<T, ::kube::Error>>,
    {
        self.rt.block_on(async {
            let mut attempt = 1;
            loop {
                match timed(what, self.timeout, f(self.client.clone())).await {
                    Err(e) if e.is_transient() && attempt < TRANSIENT_ATTEMPTS => {
                        log::warn!(
                            "{e}; trying again (attempt {} of {TRANSIENT_ATTEMPTS})",
                            attempt + 1
                        );
                        attempt += 1;
                        tokio::time::sleep(TRANSIENT_RETRY_DELAY).await;
                    }
                    other => return other,
                }
            }
        })
    }
}

impl KubeCluster {
    fn patch_node(
        &self,
        what: &str,
        node: &str,
        patch: serde_json::Value,
    ) -> Result<(), KubeError> {
        self.call(what, |c| {
            let patch = patch.clone();
            async move {
                Api::<Node>::all(c)
                    .patch(node, &PatchParams::default(), &Patch::Strategic(patch))
                    .await
            }
        })
        .map(|_| ())
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

impl Cluster for KubeCluster {
    fn node(&self, name: &str) -> Result<Option<Node>, KubeError> {
        self.call(&format!("get node {name}"), |c| async move {
            Api::<Node>::all(c).get_opt(name).await
        })
    }

    fn nodes(&self) -> Result<Vec<Node>, KubeError> {
        self.call("list nodes", |c| async move {
            Api::<Node>::all(c).list(&ListParams::default()).await
        })
        .map(|l| l.items)
    }

    fn set_unschedulable(&self, node: &str, unschedulable: bool) -> Result<(), KubeError> {
        let what = if unschedulable { "cordon" } else { "uncordon" };
        // The strategic-merge patch kubectl cordon sends, and the drain mark in the same
        // write (null removes it), so no cordon of ours is ever left unmarked.
        let mark = unschedulable.then(|| crate::time::Timestamp::now().to_string());
        let patch = serde_json::json!({
            "metadata": { "annotations": { crate::drain::DRAINING_ANNOTATION: mark } },
            "spec": { "unschedulable": unschedulable },
        });
        self.patch_node(&format!("{what} node {node}"), node, patch)
    }

    fn clear_drain_mark(&self, node: &str) -> Result<(), KubeError> {
        let patch = serde_json::json!({
            "metadata": { "annotations": { crate::drain::DRAINING_ANNOTATION: null } },
        });
        self.patch_node(&format!("unmark node {node}"), node, patch)
    }

    fn pods_on(&self, node: &str) -> Result<Vec<Pod>, KubeError> {
        let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
        self.call(&format!("list pods on {node}"), |c| {
            let lp = lp.clone();
            async move { Api::<Pod>::all(c).list(&lp).await }
        })
        .map(|l| l.items)
    }

    fn disruption_budgets(&self) -> Result<Vec<PodDisruptionBudget>, KubeError> {
        self.call("list poddisruptionbudgets", |c| async move {
            Api::<PodDisruptionBudget>::all(c)
                .list(&ListParams::default())
                .await
        })
        .map(|l| l.items)
    }

    fn move_pods(&self, pods: &[Pod], how: &MoveOptions) -> Vec<PodMove> {
        self.rt.block_on(drain_run::move_pods(
            self.client.clone(),
            pods.to_vec(),
            how.clone(),
            self.timeout,
        ))
    }

    fn delete_node(&self, name: &str) -> Result<bool, KubeError> {
        gone_ok(self.call(&format!("delete node {name}"), |c| async move {
            Api::<Node>::all(c)
                .delete(name, &DeleteParams::default())
                .await
        }))
    }

    fn delete_node_password(&self, node: &str) -> Result<bool, KubeError> {
        let secret = node_password_secret(node);
        gone_ok(self.call(
            &format!("delete secret {NODE_PASSWORD_NAMESPACE}/{secret}"),
            |c| {
                let secret = secret.clone();
                async move {
                    Api::<Secret>::namespaced(c, NODE_PASSWORD_NAMESPACE)
                        .delete(&secret, &DeleteParams::default())
                        .await
                }
            },
        ))
    }
}

/// A delete of something already gone did what was asked: Ok(false).
fn gone_ok<T>(r: Result<T, KubeError>) -> Result<bool, KubeError> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}
