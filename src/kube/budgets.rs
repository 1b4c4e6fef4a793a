//! PodDisruptionBudgets indexed for checking many pods against them, and the checks
//! scale-down makes with the index on every pod of every candidate node (a pod's own rules
//! and a budget's are in drain.rs, below this file).

use crate::kube::drain::{
    Blocker, PodBlocker, SAFE_TO_EVICT, annotation, blockers_with, budget_named, exhausted,
    selector_matches, several_budgets, skip_reason,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Name -> value, hashed with FNV-1a. The keys are short names (namespaces, label keys
/// and values) looked up for every pod of every candidate: one hash and one comparison
/// each, where an ordered map compares strings at every tree step (the comparisons were
/// the largest part of the index's samples in a profile of benches/scale.rs; the whole
/// candidate choice did not get measurably faster, its time is in the per-pod checks).
/// Not hardened against crafted collisions: the keys come from the cluster's own
/// objects, and a collision only costs time.
type Map<V> = HashMap<String, V, BuildHasherDefault<Fnv1a>>;

/// FNV-1a, 64 bit.
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The cluster's PodDisruptionBudgets indexed for matching many pods: by namespace, and
/// within it by one label their selector requires (its first matchLabels entry), so a
/// pod is only tried against the budgets that could select it. Scanning every budget for
/// every pod made the worst-case candidate choice at 150,000 pods and 500 budgets take
/// ~470 ms (benches/scale.rs); the index gives the same answers (`matching_budgets`,
/// `budget_blocker`) without the scan.
#[derive(Debug, Default)]
pub struct Budgets {
    pdbs: Vec<PodDisruptionBudget>,
    /// Per budget, whether it allows no disruption now: `blocker` reads this compact
    /// copy and only looks at the budget itself (its selector) when it is exhausted.
    exhausted: Vec<bool>,
    by_namespace: Map<NamespaceBudgets>,
}

#[derive(Debug, Default)]
struct NamespaceBudgets {
    /// label key -> label value -> budgets whose selector requires that label.
    by_label: Map<Map<Vec<usize>>>,
    /// Budgets without matchLabels (expressions only, or empty: they match every pod).
    others: Vec<usize>,
}

impl Budgets {
    pub fn new(pdbs: Vec<PodDisruptionBudget>) -> Budgets {
        let mut by_namespace: Map<NamespaceBudgets> = Map::default();
        for (i, b) in pdbs.iter().enumerate() {
            // A budget without a selector selects nothing (as `matching_budgets`).
            let Some(sel) = b.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            let ns = b.metadata.namespace.as_deref().unwrap_or("default");
            let entry = by_namespace.entry(ns.to_string()).or_default();
            match sel.match_labels.as_ref().and_then(|m| m.iter().next()) {
                Some((k, v)) => entry
                    .by_label
                    .entry(k.clone())
                    .or_default()
                    .entry(v.clone())
                    .or_default()
                    .push(i),
                None => entry.others.push(i),
            }
        }
        let exhausted = pdbs.iter().map(exhausted).collect();
        Budgets {
            pdbs,
            exhausted,
            by_namespace,
        }
    }

    /// The budgets whose selector matches the pod, in list order (as `matching_budgets`).
    pub fn matching(&self, pod: &Pod) -> Vec<&PodDisruptionBudget> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let Some(nb) = self.by_namespace.get(ns) else {
            return Vec::new();
        };
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let mut found: Vec<usize> = nb.others.clone();
        for (k, by_value) in &nb.by_label {
            if let Some(ids) = labels.get(k).and_then(|v| by_value.get(v)) {
                found.extend_from_slice(ids);
            }
        }
        found.sort_unstable();
        found
            .into_iter()
            .map(|i| &self.pdbs[i])
            .filter(|b| {
                b.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|sel| selector_matches(sel, labels))
            })
            .collect()
    }

    /// `budget_blocker` over the indexed budgets: several budgets selecting the pod, else
    /// the first budget in list order that selects it and allows no disruption now.
    /// Without allocating unless the pod is blocked: it runs for every pod of every
    /// candidate. Every budget that could select the pod has its selector tried (the
    /// eviction subresource refuses a pod that two budgets select, whatever they allow);
    /// the index keeps those few.
    pub fn blocker(&self, pod: &Pod) -> Option<Blocker> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let nb = self.by_namespace.get(ns)?;
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let mut matched = 0usize;
        let mut first_exhausted: Option<usize> = None;
        let mut consider = |i: usize| {
            let b = &self.pdbs[i];
            if b.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| selector_matches(sel, labels))
            {
                matched += 1;
                if self.exhausted[i] && first_exhausted.is_none_or(|f| i < f) {
                    first_exhausted = Some(i);
                }
            }
        };
        for &i in &nb.others {
            consider(i);
        }
        // The few label keys the namespace's budgets select on, looked up in the pod's
        // labels (a pod has more labels than that, each of which would be hashed).
        for (k, by_value) in &nb.by_label {
            if let Some(ids) = labels.get(k).and_then(|v| by_value.get(v)) {
                for &i in ids {
                    consider(i);
                }
            }
        }
        if matched > 1 {
            return Some(several_budgets(&self.matching(pod)));
        }
        first_exhausted.map(|i| budget_named(&self.pdbs[i]))
    }
}

/// `blockers` straight from a node's pods (those a drain would move), with the PDBs
/// indexed (`Budgets`): what scale-down checks each candidate with, before any plan is
/// made.
pub fn pod_blockers(pods: &[Pod], budgets: Option<&Budgets>) -> Vec<PodBlocker> {
    blockers_with(pods.iter().filter(|p| skip_reason(p).is_none()), |p| {
        budgets.and_then(|b| b.blocker(p))
    })
}

/// The namespace cluster-autoscaler's `--skip-nodes-with-system-pods` looks at.
pub const SYSTEM_NAMESPACE: &str = "kube-system";

/// Scale-down's rule for system pods (cluster-autoscaler simulator/drainability/rules/
/// system): a pod that would be moved, in kube-system, that no PodDisruptionBudget covers,
/// blocks its node unless annotated safe-to-evict "true".
pub fn system_pod_blocker(pod: &Pod, budgets: &Budgets) -> Option<Blocker> {
    let system = pod.metadata.namespace.as_deref() == Some(SYSTEM_NAMESPACE);
    let safe = annotation(&pod.metadata, SAFE_TO_EVICT) == Some("true");
    (system && !safe && budgets.matching(pod).is_empty()).then_some(Blocker::SystemPod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::drain::{budget_blocker, matching_budgets};
    use serde_json::json;

    fn pod(ns: &str, labels: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": ns, "labels": labels}}),
        )
        .unwrap()
    }

    fn pdb(ns: &str, name: &str, selector: serde_json::Value, allowed: i32) -> PodDisruptionBudget {
        let mut v = json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1},
        });
        if !selector.is_null() {
            v["spec"]["selector"] = selector;
        }
        serde_json::from_value(v).unwrap()
    }

    /// The index finds exactly what the plain scan finds, in the same order, for budgets
    /// with one label, several labels, expressions only, an empty selector or none.
    #[test]
    fn indexed_budgets_match_like_the_plain_scan() {
        let pdbs = vec![
            pdb("a", "web", json!({"matchLabels": {"app": "web"}}), 0),
            pdb(
                "a",
                "web-canary",
                json!({"matchLabels": {"app": "web", "track": "canary"}}),
                1,
            ),
            pdb(
                "a",
                "tier",
                json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]}),
                0,
            ),
            pdb("a", "everything", json!({}), 1),
            pdb("a", "no-selector", serde_json::Value::Null, 0),
            pdb("b", "web-b", json!({"matchLabels": {"app": "web"}}), 1),
            pdb(
                "b",
                "mixed",
                json!({"matchLabels": {"team": "x"}, "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
                0,
            ),
        ];
        let index = Budgets::new(pdbs.clone());
        let label_sets = [
            json!({}),
            json!({"app": "web"}),
            json!({"app": "web", "track": "canary"}),
            json!({"tier": "db", "app": "api"}),
            json!({"team": "x", "app": "api"}),
            json!({"team": "x", "app": "web"}),
        ];
        let mut compared = 0;
        for ns in ["a", "b", "c"] {
            for labels in &label_sets {
                let p = pod(ns, labels.clone());
                let names = |v: Vec<&PodDisruptionBudget>| -> Vec<String> {
                    v.iter().map(|b| b.metadata.name.clone().unwrap()).collect()
                };
                assert_eq!(
                    names(index.matching(&p)),
                    names(matching_budgets(&p, &pdbs)),
                    "{ns} {labels}"
                );
                assert_eq!(
                    index.blocker(&p),
                    budget_blocker(&p, &pdbs),
                    "{ns} {labels}"
                );
                compared += 1;
            }
        }
        assert_eq!(compared, 18);
        let web = index.matching(&pod("a", json!({"app": "web", "track": "canary"})));
        assert_eq!(web.len(), 3, "web, web-canary and the empty selector");
    }

    #[test]
    fn system_pod_table() {
        let budgets = Budgets::new(vec![pdb(
            "kube-system",
            "dns",
            json!({"matchLabels": {"k8s-app": "kube-dns"}}),
            0,
        )]);
        let with = |ns: &str, labels: serde_json::Value, safe: Option<&str>| {
            let mut p = pod(ns, labels);
            if let Some(v) = safe {
                p.metadata.annotations = Some([(SAFE_TO_EVICT.to_string(), v.to_string())].into());
            }
            p
        };
        // (pod, blocks)
        for (what, p, want) in [
            (
                "metrics-server",
                with("kube-system", json!({"k8s-app": "metrics-server"}), None),
                true,
            ),
            (
                "CoreDNS under a PDB",
                with("kube-system", json!({"k8s-app": "kube-dns"}), None),
                false,
            ),
            (
                "safe to evict",
                with("kube-system", json!({}), Some("true")),
                false,
            ),
            (
                "annotated false: another rule's",
                with("kube-system", json!({}), Some("false")),
                true,
            ),
            ("another namespace", with("default", json!({}), None), false),
        ] {
            assert_eq!(
                system_pod_blocker(&p, &budgets) == Some(Blocker::SystemPod),
                want,
                "{what}"
            );
        }
    }
}
