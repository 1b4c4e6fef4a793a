//! `Cluster` on the kube client. The client owns a current_thread runtime, turns the
//! client's own 429/503/504 retries off and puts every call under a timeout, so the retry
//! loops (and the drain's deadline) are ours.

use super::mover;
use super::moves::{MoveOptions, PodMove};
use super::{Cluster, KubeError, TRANSIENT_ATTEMPTS, TRANSIENT_RETRY_DELAY, timed};
use crate::config;
use ::kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use std::future::Future;
use std::time::Duration;

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
    /// One call under the timeout, not retried (best-effort writes).
    fn call_once<T, Fut>(&self, what: &str, fut: Fut) -> Result<T, KubeError>
    where
        Fut: Future<Output = Result<T, ::kube::Error>>,
    {
        self.rt.block_on(timed(what, self.timeout, fut))
    }

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

    fn cordon(&self, node: &str, cordoned_before: bool) -> Result<(), KubeError> {
        // The strategic-merge patch of spec.unschedulable that kubectl cordon sends
        // (kubectl pkg/drain/cordon.go, CordonHelper.PatchOrReplaceWithContext), with the
        // drain marks in the same write, so no cordon of ours is ever left unmarked and no
        // one else's is ever taken for ours. Sent even on a node already cordoned (kubectl
        // would skip it, UpdateIfRequired): the marks must be there.
        let since = crate::state::time::Timestamp::now().to_string();
        let before = cordoned_before.then_some("true");
        let patch = serde_json::json!({
            "metadata": { "annotations": {
                crate::kube::drain::DRAINING_ANNOTATION: since,
                crate::kube::drain::CORDONED_BEFORE_ANNOTATION: before,
            } },
            "spec": { "unschedulable": true },
        });
        self.patch_node(&format!("cordon node {node}"), node, patch)
    }

    fn uncordon(&self, node: &str) -> Result<(), KubeError> {
        // null removes a key in a strategic-merge patch of a map, as in a JSON merge patch
        // (apimachinery pkg/util/strategicpatch/patch.go, mergeMap).
        let patch = serde_json::json!({
            "metadata": { "annotations": drain_marks_removed() },
            "spec": { "unschedulable": false },
        });
        self.patch_node(&format!("uncordon node {node}"), node, patch)
    }

    fn clear_drain_mark(&self, node: &str) -> Result<(), KubeError> {
        let patch = serde_json::json!({
            "metadata": { "annotations": drain_marks_removed() },
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
        self.rt.block_on(mover::move_pods(
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

    fn create_event(&self, namespace: &str, event: &serde_json::Value) -> Result<(), KubeError> {
        let ev: Event = serde_json::from_value(event.clone()).map_err(|e| KubeError::Decode {
            call: "create event".into(),
            message: e.to_string(),
        })?;
        let api = Api::<Event>::namespaced(self.client.clone(), namespace);
        self.call_once(
            &format!("create event in {namespace}"),
            api.create(&PostParams::default(), &ev),
        )
        .map(|_| ())
    }

    fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<(), KubeError> {
        let api = Api::<Event>::namespaced(self.client.clone(), namespace);
        self.call_once(
            &format!("patch event {namespace}/{name}"),
            api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)),
        )
        .map(|_| ())
    }

    fn pending_pods(&self) -> Result<Vec<Pod>, KubeError> {
        self.list_pending()
    }

    fn daemon_sets(&self) -> Result<Vec<DaemonSet>, KubeError> {
        self.call("list daemonsets", |c| async move {
            Api::<DaemonSet>::all(c).list(&ListParams::default()).await
        })
        .map(|l| l.items)
    }

    fn claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, KubeError> {
        self.call(
            &format!("get persistentvolumeclaim {namespace}/{name}"),
            |c| async move {
                Api::<PersistentVolumeClaim>::namespaced(c, namespace)
                    .get_opt(name)
                    .await
            },
        )
    }

    fn volume(&self, name: &str) -> Result<Option<PersistentVolume>, KubeError> {
        self.call(&format!("get persistentvolume {name}"), |c| async move {
            Api::<PersistentVolume>::all(c).get_opt(name).await
        })
    }

    fn storage_class(&self, name: &str) -> Result<Option<StorageClass>, KubeError> {
        self.call(&format!("get storageclass {name}"), |c| async move {
            Api::<StorageClass>::all(c).get_opt(name).await
        })
    }
}

impl KubeCluster {
    /// Lists the pods no node is bound to: the field selector is served by the apiserver
    /// (pkg/registry/core/pod/strategy.go `PodToSelectableFields`), so a large cluster's
    /// placed pods never cross the wire.
    fn list_pending(&self) -> Result<Vec<Pod>, KubeError> {
        let lp = ListParams::default().fields(PENDING_FIELDS);
        self.call("list pending pods", |c| {
            let lp = lp.clone();
            async move { Api::<Pod>::all(c).list(&lp).await }
        })
        .map(|l| l.items)
    }
}

/// Unbound pods that are still Pending (a finished pod that never ran is left out).
pub const PENDING_FIELDS: &str = "spec.nodeName=,status.phase=Pending";

/// The annotations part of a patch that removes both drain marks.
fn drain_marks_removed() -> serde_json::Value {
    serde_json::json!({
        crate::kube::drain::DRAINING_ANNOTATION: null,
        crate::kube::drain::CORDONED_BEFORE_ANNOTATION: null,
    })
}

/// A delete of something already gone did what was asked: Ok(false).
fn gone_ok<T>(r: Result<T, KubeError>) -> Result<bool, KubeError> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}
