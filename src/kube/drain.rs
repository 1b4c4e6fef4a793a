//! Pure rules over Kubernetes objects, no I/O: which pods a drain moves and which it skips
//! (as kubectl drain), which pods make a node unremovable and which nodes may never be
//! removed (as cluster-autoscaler). Table-tested in tests/kube_rules.rs.

use crate::kube::model::{claims, controller_kind};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;
use std::fmt;

/// The kubelet's mark on the API copy of a static pod; the API cannot evict those.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// cluster-autoscaler's per-pod override: "true" lets any pod go, "false" keeps the node.
pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
/// Node opt-outs from scale-down: cluster-autoscaler's, and ours of the same meaning.
pub const SCALE_DOWN_DISABLED: [&str; 2] = [
    "cluster-autoscaler.kubernetes.io/scale-down-disabled",
    "k3s-scale.io/scale-down-disabled",
];
pub use crate::plan::model::CONTROL_PLANE_LABELS;
/// Set on a Node with the cordon of every drain k3s-scale starts, removed with the
/// uncordon (or when a `drain --keep-cordoned` ends): a Node that still carries it when a
/// run starts was left cordoned by a drain that never finished (the run was killed), and
/// reconcile undoes that drain's cordon (only its own, see `CORDONED_BEFORE_ANNOTATION`).
/// Drains run under the run lock, so none is in progress then.
pub const DRAINING_ANNOTATION: &str = "k3s-scale.io/draining-since";
/// Set ("true") in the same write as `DRAINING_ANNOTATION` when the Node was already
/// cordoned before the drain (by a person, or a tool other than k3s-scale): that cordon is
/// theirs, so whatever becomes of the drain, only the marks are removed and the Node stays
/// cordoned. Removed with the drain mark.
pub const CORDONED_BEFORE_ANNOTATION: &str = "k3s-scale.io/cordoned-before-drain";
/// The grace period the apiserver applies when a pod sets none.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// `namespace/name`, the way pods are named in output.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

pub(crate) fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Why a drain leaves a pod where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The DaemonSet controller would put it straight back; it dies with the node.
    DaemonSet,
    /// A static pod's API copy: only the kubelet's manifest can remove it.
    Mirror,
    /// Succeeded or Failed: nothing runs, nothing to move.
    Finished,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Skip::DaemonSet => "DaemonSet pod",
            Skip::Mirror => "mirror (static) pod",
            Skip::Finished => "finished pod",
        })
    }
}

/// The pods of one node, sorted into those to move and those to leave.
#[derive(Debug, Clone, Default)]
pub struct PodPlan {
    pub to_move: Vec<Pod>,
    pub skipped: Vec<(String, Skip)>,
}

impl PodPlan {
    pub fn names(&self) -> Vec<String> {
        self.to_move.iter().map(pod_key).collect()
    }
}

/// Whether a drain leaves this pod alone, and why.
pub fn skip_reason(pod: &Pod) -> Option<Skip> {
    if annotation(&pod.metadata, MIRROR_ANNOTATION).is_some() {
        return Some(Skip::Mirror);
    }
    if controller_kind(pod) == Some("DaemonSet") {
        return Some(Skip::DaemonSet);
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded") | Some("Failed")) {
        return Some(Skip::Finished);
    }
    None
}

/// Sorts a node's pods: DaemonSet, mirror and finished pods stay; the rest are moved.
pub fn plan_pods(pods: &[Pod]) -> PodPlan {
    into_plan(pods.to_vec())
}

/// `plan_pods` on pods the caller owns (as the API returned them): moved, not copied.
pub fn into_plan(pods: Vec<Pod>) -> PodPlan {
    let mut plan = PodPlan::default();
    for p in pods {
        match skip_reason(&p) {
            Some(s) => plan.skipped.push((pod_key(&p), s)),
            None => plan.to_move.push(p),
        }
    }
    plan
}

/// Why a pod that would be moved makes its node unremovable (cluster-autoscaler's rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// Annotated safe-to-evict: "false".
    NotSafeToEvict,
    /// No controller would recreate it elsewhere: evicting it loses it.
    NoController,
    /// Its data lives on the node (hostPath, or emptyDir not on `medium: Memory`).
    LocalStorage { volume: String },
    /// A PodDisruptionBudget covering it allows no disruption right now.
    Budget { pdb: String },
    /// Scale-down only: a kube-system pod without a budget (cluster-autoscaler's
    /// `--skip-nodes-with-system-pods`, our `kubernetes.skip_nodes_with_system_pods`).
    SystemPod,
    /// Scale-down only: a claim whose PersistentVolume has node affinity (local-path, a
    /// local PV): its data is on this worker and goes with it.
    PinnedVolume { claim: String },
    /// Scale-down only: a claim whose volume could not be looked up; it may be local.
    UnknownVolume { claim: String, why: String },
    /// More than one PodDisruptionBudget selects it: the eviction subresource refuses such
    /// a pod outright (pkg/registry/core/pod/storage/eviction.go), whatever the budgets allow.
    SeveralBudgets { pdbs: String },
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::NotSafeToEvict => write!(f, "annotated {SAFE_TO_EVICT}: \"false\""),
            Blocker::NoController => f.write_str("has no controller, so it would not come back"),
            Blocker::LocalStorage { volume } => {
                write!(f, "has local storage (volume {volume}) that would be lost")
            }
            Blocker::Budget { pdb } => {
                write!(f, "PodDisruptionBudget {pdb} allows no disruption now")
            }
            Blocker::SystemPod => f.write_str(
                "runs in kube-system without a PodDisruptionBudget \
                 (kubernetes.skip_nodes_with_system_pods)",
            ),
            Blocker::PinnedVolume { claim } => write!(
                f,
                "has claim {claim} on a PersistentVolume pinned to this node (local storage: \
                 its data would be lost with the worker)"
            ),
            Blocker::UnknownVolume { claim, why } => write!(
                f,
                "has claim {claim} whose volume could not be looked up ({why}); kept, as it may \
                 be local"
            ),
            Blocker::SeveralBudgets { pdbs } => write!(
                f,
                "is selected by more than one PodDisruptionBudget ({pdbs}), which the Eviction API refuses"
            ),
        }
    }
}

/// A pod and what blocks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodBlocker {
    pub pod: String,
    pub blocker: Blocker,
}

impl fmt::Display for PodBlocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pod {} {}", self.pod, self.blocker)
    }
}

/// The rule that makes a pod unmovable, if any. `safe-to-evict: "true"` overrides all.
pub fn pod_blocker(pod: &Pod) -> Option<Blocker> {
    match annotation(&pod.metadata, SAFE_TO_EVICT) {
        Some("true") => return None,
        Some("false") => return Some(Blocker::NotSafeToEvict),
        _ => {}
    }
    if controller_kind(pod).is_none() {
        return Some(Blocker::NoController);
    }
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for v in volumes.into_iter().flatten() {
        let local = v.host_path.is_some()
            || v.empty_dir
                .as_ref()
                .is_some_and(|e| e.medium.as_deref() != Some("Memory"));
        if local {
            return Some(Blocker::LocalStorage {
                volume: v.name.clone(),
            });
        }
    }
    None
}

/// PDBs (in the pod's namespace) whose selector matches the pod.
pub fn matching_budgets<'a>(
    pod: &Pod,
    pdbs: &'a [PodDisruptionBudget],
) -> Vec<&'a PodDisruptionBudget> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    pdbs.iter()
        .filter(|b| b.metadata.namespace.as_deref().unwrap_or("default") == ns)
        .filter(|b| {
            b.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| selector_matches(sel, labels))
        })
        .collect()
}

/// A PDB that would refuse this pod's eviction now (allows fewer than one disruption).
/// Per pod, as cluster-autoscaler's check: a budget that allows one disruption passes
/// even if the node holds two of its pods; the drain then waits on it until its deadline.
pub fn budget_blocker(pod: &Pod, pdbs: &[PodDisruptionBudget]) -> Option<Blocker> {
    let matching = matching_budgets(pod, pdbs);
    if matching.len() > 1 {
        return Some(several_budgets(&matching));
    }
    matching
        .into_iter()
        .find(|b| exhausted(b))
        .map(budget_named)
}

/// The blocker of a pod that several budgets select, naming them in list order.
pub(crate) fn several_budgets(matching: &[&PodDisruptionBudget]) -> Blocker {
    let names: Vec<String> = matching.iter().map(|b| budget_key(b)).collect();
    Blocker::SeveralBudgets {
        pdbs: names.join(", "),
    }
}

/// Allows fewer than one disruption now (an unknown status allows none).
pub(crate) fn exhausted(b: &PodDisruptionBudget) -> bool {
    b.status
        .as_ref()
        .and_then(|s| s.disruptions_allowed)
        .unwrap_or(0)
        < 1
}

pub(crate) fn budget_named(b: &PodDisruptionBudget) -> Blocker {
    Blocker::Budget { pdb: budget_key(b) }
}

fn budget_key(b: &PodDisruptionBudget) -> String {
    format!(
        "{}/{}",
        b.metadata.namespace.as_deref().unwrap_or("default"),
        b.metadata.name.as_deref().unwrap_or("")
    )
}

/// Every blocker among the pods a drain would move; empty when the node may go. A pod
/// already terminating blocks nothing: it is leaving whatever happens (and its eviction
/// skips the budget check).
pub fn blockers(plan: &PodPlan, pdbs: Option<&[PodDisruptionBudget]>) -> Vec<PodBlocker> {
    blockers_with(plan.to_move.iter(), |p| {
        pdbs.and_then(|b| budget_blocker(p, b))
    })
}

pub(crate) fn blockers_with<'a>(
    to_move: impl Iterator<Item = &'a Pod>,
    budget: impl Fn(&Pod) -> Option<Blocker>,
) -> Vec<PodBlocker> {
    to_move
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            pod_blocker(p)
                .or_else(|| budget(p))
                .map(|blocker| PodBlocker {
                    pod: pod_key(p),
                    blocker,
                })
        })
        .collect()
}

/// Scale-down's rule for volumes: the first claim (not a generic ephemeral one, whose
/// claim goes with the pod) whose volume has node affinity, or whose volume could not be
/// looked up. `terms` says where a claim's volume may be used (kube::model::claim_terms).
/// safe-to-evict does not lift it: the data would be destroyed with the worker's volume.
pub fn volume_blocker(
    pod: &Pod,
    mut terms: impl FnMut(&str) -> Result<crate::plan::model::NodeTerms, String>,
) -> Option<Blocker> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    for (claim, ephemeral) in claims(pod) {
        if ephemeral {
            continue;
        }
        let claim_key = format!("{ns}/{claim}");
        match terms(&claim) {
            Ok(None) => {}
            Ok(Some(_)) => return Some(Blocker::PinnedVolume { claim: claim_key }),
            Err(why) => {
                return Some(Blocker::UnknownVolume {
                    claim: claim_key,
                    why,
                });
            }
        }
    }
    None
}

/// Label selector semantics: matchLabels and matchExpressions (In, NotIn, Exists,
/// DoesNotExist) all hold; an empty selector matches everything.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_exprs = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            // An operator the API would have refused: match nothing rather than guess.
            _ => false,
        }
    });
    by_labels && by_exprs
}

/// When an unfinished k3s-scale drain cordoned this Node, if one did (`DRAINING_ANNOTATION`).
pub fn drain_mark(node: &Node) -> Option<&str> {
    annotation(&node.metadata, DRAINING_ANNOTATION)
}

/// Whether the drain whose mark this Node carries found it already cordoned
/// (`CORDONED_BEFORE_ANNOTATION`): its cordon is not k3s-scale's to undo.
pub fn marked_cordoned_before(node: &Node) -> bool {
    annotation(&node.metadata, CORDONED_BEFORE_ANNOTATION) == Some("true")
}

/// Whether a drain about to start finds the Node cordoned by someone else, so that it
/// must leave it cordoned whatever happens. A cordon without our drain mark is someone's;
/// one with the mark is a killed drain's, someone's only if that drain found it so.
pub fn cordoned_by_someone_else(node: &Node) -> bool {
    let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
    cordoned && (drain_mark(node).is_none() || marked_cordoned_before(node))
}

/// Why this Node may never be removed by k3s-scale, if so. (Whether a container backs it
/// is asked of Docker separately.)
pub fn node_unremovable(node: &Node, permanent: &[String]) -> Option<String> {
    let name = node.metadata.name.as_deref().unwrap_or("");
    let labels = node.metadata.labels.as_ref();
    if let Some(l) = CONTROL_PLANE_LABELS
        .iter()
        .find(|l| labels.is_some_and(|m| m.contains_key(**l)))
    {
        return Some(format!("control-plane node (label {l})"));
    }
    if permanent.iter().any(|p| p == name) {
        return Some("listed in kubernetes.permanent_nodes".to_string());
    }
    if let Some(a) = SCALE_DOWN_DISABLED
        .iter()
        .find(|a| annotation(&node.metadata, a) == Some("true"))
    {
        return Some(format!("annotated {a}: \"true\""));
    }
    None
}

/// The grace period to ask for: the pod's own, capped by `drain.max_grace_period`.
pub fn grace_seconds(pod: &Pod, max: std::time::Duration) -> i64 {
    let own = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE_SECONDS)
        .max(0);
    own.min(i64::try_from(max.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn volume_table() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "db-0", "namespace": "shop"},
            "spec": {"containers": [], "volumes": [
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}},
            ]},
        }))
        .unwrap();
        let pinned: crate::plan::model::NodeTerms = Some(vec![]);
        // (what the lookup of data-db-0 says, the blocker)
        for (answer, want) in [
            (Ok(None), None),
            (
                Ok(pinned),
                Some(Blocker::PinnedVolume {
                    claim: "shop/data-db-0".into(),
                }),
            ),
            (
                Err("403 Forbidden".to_string()),
                Some(Blocker::UnknownVolume {
                    claim: "shop/data-db-0".into(),
                    why: "403 Forbidden".into(),
                }),
            ),
        ] {
            let mut asked = Vec::new();
            let got = volume_blocker(&p, |c| {
                asked.push(c.to_string());
                answer.clone()
            });
            assert_eq!(got, want);
            // The ephemeral claim goes with the pod: never asked about.
            assert_eq!(asked, ["data-db-0"]);
        }
    }
}
