//! The API's objects turned into the cluster model (`plan::model`): a Pod into a model pod
//! (requests, owner, selectors, required node affinity, tolerations, host ports, required
//! anti-affinity, the node affinity of its volumes), a Node into `NodeFacts`; and the facts
//! the other files read off a Pod or Node (its controller's kind, Ready). Pure: the volume
//! lookups come in through a closure, so the conversion is table-tested.
//!
//! Semantics follow the scheduler and the helpers it uses:
//! - requests: k8s.io/component-helpers resource/helpers.go `PodRequests` (containers
//!   summed; an init container's requests taken as a maximum with the rest, a sidecar's
//!   (restartPolicy Always) added; pod overhead added; pod-level `spec.resources`
//!   requests win where set), as pkg/scheduler/framework/plugins/noderesources/fit.go;
//! - node affinity: component-helpers scheduling/corev1/nodeaffinity/nodeaffinity.go (terms
//!   ORed; an empty or invalid term matches nothing; matchFields only on metadata.name);
//! - tolerations: k8s.io/api core/v1 toleration.go (operator Exists, or Equal by default);
//! - host ports: pkg/scheduler/framework/plugins/nodeports/node_ports.go (containers' and
//!   sidecars' hostPort > 0, protocol TCP when unset);
//! - anti-affinity: pkg/scheduler/framework/plugins/interpodaffinity (a term without a
//!   labelSelector selects no pod; no namespaces means the pod's own).
//!
//! Not followed (said where a decision could depend on it): a term's namespaceSelector
//! (namespace labels are not listed; the term counts for the namespaces it names, else the
//! pod's own), in-place resize (spec requests, not the resized ones), and a term's
//! topologyKey (taken per node, as `plan::model` says).

use crate::plan::model::{
    self, AntiAffinity, Effect, FIELD_NAME, NodeFacts, NodeTerms, Op, Requirement, Resources,
    Taint, Toleration,
};
use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelector, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// A Kubernetes quantity as a number: "250m" -> 0.25, "1Gi" -> 2^30, "1e3" -> 1000.
/// (k8s.io/apimachinery pkg/api/resource/quantity.go: decimal and binary suffixes, or an
/// exponent.) None for text the API would not have accepted.
pub fn quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        // Fractions are divided, so "100m" is exactly 0.1.
        ("n", -1e9),
        ("u", -1e6),
        ("m", -1e3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let number = |n: &str| -> Option<f64> {
        let ok = !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-'));
        ok.then(|| n.parse::<f64>().ok()).flatten()
    };
    for (suffix, scale) in SUFFIXES {
        if let Some(n) = s.strip_suffix(suffix) {
            return number(n).map(|v| if scale < 0.0 { v / -scale } else { v * scale });
        }
    }
    for big in ["P", "E"] {
        if let Some(n) = s.strip_suffix(big) {
            let scale = if big == "P" { 1e15 } else { 1e18 };
            return number(n).map(|v| v * scale);
        }
    }
    if let Some((m, e)) = s.split_once(['e', 'E']) {
        let e: i32 = e.parse().ok()?;
        return number(m).map(|v| v * 10f64.powi(e));
    }
    number(s)
}

fn requests_of(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
    let get = |k: &str| {
        list.and_then(|l| l.get(k))
            .and_then(|q| quantity(&q.0))
            .unwrap_or(0.0)
    };
    Resources::new(get("cpu"), get("memory"))
}

fn container_requests(c: &Container) -> Resources {
    requests_of(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

fn max(a: Resources, b: Resources) -> Resources {
    Resources::new(a.cpu.max(b.cpu), a.memory.max(b.memory))
}

/// What the scheduler counts a pod as requesting (component-helpers `PodRequests`).
pub fn pod_requests(spec: &PodSpec) -> Resources {
    let mut reqs = spec
        .containers
        .iter()
        .map(container_requests)
        .fold(Resources::default(), Resources::plus);
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let own = container_requests(c);
        let this = if c.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running beside the containers: it adds to them.
            reqs = reqs.plus(own);
            sidecars = sidecars.plus(own);
            sidecars
        } else {
            // A regular init container runs alone, beside the sidecars started before it.
            own.plus(sidecars)
        };
        init_max = max(init_max, this);
    }
    let mut reqs = max(reqs, init_max);
    // Pod-level resources (PodLevelResources), where set, are the pod's requests.
    let pod_level = spec.resources.as_ref().and_then(|r| r.requests.as_ref());
    if let Some(l) = pod_level {
        let set = requests_of(Some(l));
        if l.contains_key("cpu") {
            reqs.cpu = set.cpu;
        }
        if l.contains_key("memory") {
            reqs.memory = set.memory;
        }
    }
    reqs.plus(requests_of(spec.overhead.as_ref()))
}

/// One requirement of a nodeSelectorTerm; None when the API would not accept it (the term
/// then matches nothing, as component-helpers drops a term that does not parse).
fn requirement(key: &str, op: &str, values: Option<&Vec<String>>) -> Option<Requirement> {
    let op = Op::parse(op)?;
    let values = values.cloned().unwrap_or_default();
    let ok = match op {
        Op::In | Op::NotIn => !values.is_empty(),
        Op::Exists | Op::DoesNotExist => values.is_empty(),
        Op::Gt | Op::Lt => values.len() == 1 && values[0].parse::<i64>().is_ok(),
    };
    ok.then(|| Requirement {
        key: key.to_string(),
        op,
        values,
    })
}

/// Required node affinity (or a PV's node affinity) as model terms.
pub fn node_terms(sel: &NodeSelector) -> NodeTerms {
    let terms = sel
        .node_selector_terms
        .iter()
        .map(|t| {
            let mut reqs = Vec::new();
            for e in t.match_expressions.iter().flatten() {
                match requirement(&e.key, &e.operator, e.values.as_ref()) {
                    Some(r) => reqs.push(r),
                    None => return Vec::new(),
                }
            }
            for f in t.match_fields.iter().flatten() {
                // Only metadata.name, with In or NotIn and one value, is a valid field term.
                let valid = f.key == FIELD_NAME
                    && matches!(f.operator.as_str(), "In" | "NotIn")
                    && f.values.as_ref().is_some_and(|v| v.len() == 1);
                match requirement(FIELD_NAME, &f.operator, f.values.as_ref()) {
                    Some(r) if valid => reqs.push(r),
                    _ => return Vec::new(),
                }
            }
            reqs
        })
        .collect();
    Some(terms)
}

/// A label selector as requirements over labels; None when it selects nothing (absent,
/// or an operator the API would refuse).
fn selector(sel: Option<&LabelSelector>) -> Option<Vec<Requirement>> {
    let sel = sel?;
    let mut reqs: Vec<Requirement> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| Requirement {
            key: k.clone(),
            op: Op::In,
            values: vec![v.clone()],
        })
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let op = match e.operator.as_str() {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            _ => return None,
        };
        reqs.push(Requirement {
            key: e.key.clone(),
            op,
            values: e.values.clone().unwrap_or_default(),
        });
    }
    Some(reqs)
}

/// The claims a pod mounts: `(claim name, ephemeral)`. A generic ephemeral volume's claim
/// is named `<pod>-<volume>` (pkg/controller/volume/ephemeral).
pub fn claims(pod: &Pod) -> Vec<(String, bool)> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some((c.claim_name.clone(), false))
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| (format!("{name}-{}", v.name), true))
            }
        })
        .collect()
}

/// Where the volume behind a claim may be used, from the claim, its bound PV, and (for a
/// claim not bound yet) its StorageClass: Ok(None) anywhere; Ok(Some(terms)) on the nodes
/// the terms match; Err(why) when the model cannot tell (unbound with immediate binding:
/// the scheduler waits for the binding; a missing object).
pub fn claim_terms(
    claim: Option<&PersistentVolumeClaim>,
    volume: impl FnOnce(&str) -> Result<Option<PersistentVolume>, String>,
    class: impl FnOnce(&str) -> Result<Option<StorageClass>, String>,
) -> Result<NodeTerms, String> {
    let claim = claim.ok_or("claim not found")?;
    let spec = claim.spec.as_ref();
    if let Some(pv) = spec
        .and_then(|s| s.volume_name.as_deref())
        .filter(|v| !v.is_empty())
    {
        let pv = volume(pv)?.ok_or_else(|| format!("its volume {pv} not found"))?;
        return Ok(pv
            .spec
            .as_ref()
            .and_then(|s| s.node_affinity.as_ref())
            .and_then(|a| a.required.as_ref())
            .and_then(node_terms));
    }
    // Not bound yet. With WaitForFirstConsumer (k3s's local-path) the volume is made where
    // the pod lands, within the class's allowedTopologies (pkg/scheduler/framework/plugins/
    // volumebinding); with Immediate the scheduler waits for the binding.
    let name = spec
        .and_then(|s| s.storage_class_name.as_deref())
        .ok_or("not bound, and no StorageClass")?;
    let sc = class(name)?.ok_or_else(|| format!("not bound, StorageClass {name} not found"))?;
    if sc.volume_binding_mode.as_deref() != Some("WaitForFirstConsumer") {
        return Err("not bound yet".into());
    }
    let Some(topologies) = sc.allowed_topologies.as_ref().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    Ok(Some(
        topologies
            .iter()
            .map(|t| {
                t.match_label_expressions
                    .iter()
                    .flatten()
                    .map(|e| Requirement {
                        key: e.key.clone(),
                        op: Op::In,
                        values: e.values.clone(),
                    })
                    .collect()
            })
            .collect(),
    ))
}

/// A Pod as the model sees it. `volume` gives where each claim's volume may be used (see
/// `claim_terms`); the first claim it cannot tell makes the pod's `unknown_volume`.
pub fn pod(p: &Pod, mut volume: impl FnMut(&str, bool) -> Result<NodeTerms, String>) -> model::Pod {
    let namespace = p
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut out = model::Pod {
        name: p.metadata.name.clone().unwrap_or_default(),
        daemonset: controller_kind(p) == Some("DaemonSet"),
        labels: p.metadata.labels.clone().unwrap_or_default(),
        ..model::Pod::default()
    };
    if let Some(spec) = &p.spec {
        out.requests = pod_requests(spec);
        out.node_selector = spec.node_selector.clone().unwrap_or_default();
        let affinity = spec.affinity.as_ref();
        out.affinity = affinity
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .and_then(node_terms);
        out.tolerations = spec
            .tolerations
            .iter()
            .flatten()
            .map(|t| Toleration {
                key: t.key.clone().unwrap_or_default(),
                exists: t.operator.as_deref() == Some("Exists"),
                value: t.value.clone().unwrap_or_default(),
                effect: t.effect.as_deref().and_then(Effect::parse),
            })
            .collect();
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        for c in spec.containers.iter().chain(sidecars) {
            for port in c.ports.iter().flatten() {
                if let Some(hp) = port.host_port.filter(|p| *p > 0) {
                    let proto = port.protocol.clone().unwrap_or_else(|| "TCP".into());
                    out.host_ports.push((proto, hp));
                }
            }
        }
        out.anti_affinity = affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some(AntiAffinity {
                    selector: selector(t.label_selector.as_ref())?,
                    namespaces: t.namespaces.clone().unwrap_or_default(),
                })
            })
            .collect();
    }
    for (claim, ephemeral) in claims(p) {
        match volume(&claim, ephemeral) {
            Ok(None) => {}
            Ok(terms) => out.volume_affinity.push(terms),
            Err(why) => {
                log::debug!("pod {namespace}/{}: claim {claim}: {why}", out.name);
                out.unknown_volume
                    .get_or_insert_with(|| format!("{namespace}/{claim}"));
            }
        }
    }
    out.namespace = namespace;
    out
}

/// A Node's labels, taints, cordon and readiness.
pub fn node_facts(n: &Node) -> NodeFacts {
    let spec = n.spec.as_ref();
    NodeFacts {
        labels: n.metadata.labels.clone().unwrap_or_default(),
        taints: spec
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some(Taint {
                    key: t.key.clone(),
                    value: t.value.clone().unwrap_or_default(),
                    effect: Effect::parse(&t.effect)?,
                })
            })
            .collect(),
        unschedulable: spec.and_then(|s| s.unschedulable) == Some(true),
        ready: is_ready(n),
        max_pods: n
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get("pods"))
            .and_then(|q| quantity(&q.0))
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v.round().min(f64::from(u32::MAX)) as u32),
    }
}

/// The kind of the pod's managing controller, if it has one.
pub fn controller_kind(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.kind.as_str())
}

/// Whether the Node's Ready condition is True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const GI: f64 = (1u64 << 30) as f64;
    const MI: f64 = (1u64 << 20) as f64;

    fn pod_from(spec: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn ctr(cpu: &str, mem: &str) -> Value {
        json!({"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}})
    }

    fn no_volumes(_: &str, _: bool) -> Result<NodeTerms, String> {
        Ok(None)
    }

    #[test]
    fn quantity_table() {
        for (s, want) in [
            ("250m", Some(0.25)),
            ("2", Some(2.0)),
            ("1.5", Some(1.5)),
            ("1Gi", Some(GI)),
            ("512Mi", Some(512.0 * MI)),
            ("1k", Some(1000.0)),
            ("1M", Some(1e6)),
            ("1e3", Some(1000.0)),
            ("100n", Some(100e-9)),
            ("", None),
            ("abc", None),
            ("1Xi", None),
        ] {
            assert_eq!(quantity(s), want, "{s}");
        }
    }

    #[test]
    fn requests_as_the_scheduler_counts_them() {
        // (spec, cpu, memory in Mi)
        let table: Vec<(Value, f64, f64)> = vec![
            (
                json!({"containers": [ctr("100m", "64Mi"), ctr("200m", "64Mi")]}),
                0.3,
                128.0,
            ),
            // A big init container: the maximum, not the sum.
            (
                json!({"containers": [ctr("100m", "64Mi")], "initContainers": [ctr("1", "32Mi")]}),
                1.0,
                64.0,
            ),
            // A sidecar adds to the containers, and to the init containers after it.
            (
                json!({"containers": [ctr("100m", "64Mi")], "initContainers": [
                    {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m", "memory": "16Mi"}}},
                    ctr("500m", "8Mi"),
                ]}),
                0.55,
                80.0,
            ),
            // Overhead (RuntimeClass) is added.
            (
                json!({"containers": [ctr("100m", "64Mi")], "overhead": {"cpu": "10m", "memory": "1Mi"}}),
                0.11,
                65.0,
            ),
            // Pod-level requests win where set.
            (
                json!({"containers": [ctr("100m", "64Mi")], "resources": {"requests": {"cpu": "2"}}}),
                2.0,
                64.0,
            ),
            (json!({"containers": [{"name": "c"}]}), 0.0, 0.0),
        ];
        for (spec, cpu, mem) in table {
            let p = pod(&pod_from(spec.clone()), no_volumes);
            assert!(
                (p.requests.cpu - cpu).abs() < 1e-9,
                "{spec}: {:?}",
                p.requests
            );
            assert_eq!(p.requests.memory, mem * MI, "{spec}");
        }
    }

    #[test]
    fn constraints_convert() {
        let p = pod_from(json!({
            "containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": 8080},
                {"containerPort": 53, "hostPort": 53, "protocol": "UDP"},
                {"containerPort": 9090},
            ]}],
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"},
                {"operator": "Exists"},
            ],
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["w-1"]}]},
                    {"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]},
                    {"matchFields": [{"key": "spec.unschedulable", "operator": "In", "values": ["x"]}]},
                ]}},
                "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname", "labelSelector": {
                        "matchLabels": {"app": "web"},
                        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}},
                    {"topologyKey": "kubernetes.io/hostname", "namespaces": ["other"],
                     "labelSelector": {}},
                    {"topologyKey": "kubernetes.io/hostname"},
                ]},
            },
        }));
        let m = pod(&p, no_volumes);
        assert_eq!(m.key(), "shop/web-1");
        assert!(!m.daemonset);
        assert_eq!(m.node_selector.get("disk").unwrap(), "ssd");
        assert_eq!(
            m.host_ports,
            [("TCP".to_string(), 8080), ("UDP".to_string(), 53)]
        );
        assert_eq!(m.tolerations.len(), 2);
        assert_eq!(m.tolerations[0].effect, Some(Effect::NoSchedule));
        assert!(!m.tolerations[0].exists);
        assert!(m.tolerations[1].exists && m.tolerations[1].key.is_empty());
        let terms = m.affinity.clone().unwrap();
        assert_eq!(terms.len(), 4);
        assert_eq!(terms[1][0].key, FIELD_NAME);
        assert!(
            terms[2].is_empty(),
            "an unknown operator: the term matches nothing"
        );
        assert!(
            terms[3].is_empty(),
            "a field other than metadata.name: nothing"
        );
        let labels = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        for (node_labels, name, want) in [
            (labels(&[("zone", "a")]), "w-9", true),
            (labels(&[("zone", "b")]), "w-1", true),
            (labels(&[("zone", "b")]), "w-2", false),
        ] {
            assert_eq!(
                model::terms_match(&m.affinity, &node_labels, name),
                want,
                "{name}"
            );
        }
        assert_eq!(
            m.anti_affinity.len(),
            2,
            "a term without a selector selects nobody"
        );
        assert_eq!(m.anti_affinity[0].selector.len(), 2);
        assert!(m.anti_affinity[0].namespaces.is_empty());
        assert!(
            m.anti_affinity[1].selector.is_empty(),
            "{{}} selects every pod"
        );
        assert_eq!(m.anti_affinity[1].namespaces, ["other"]);
    }

    #[test]
    fn daemonset_owner_and_node_facts() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "ds-x", "namespace": "kube-system", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "u", "controller": true}]},
            "spec": {"containers": []},
        }))
        .unwrap();
        assert!(pod(&p, no_volumes).daemonset);
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "w-1", "labels": {"pool": "blue"}},
            "spec": {"unschedulable": true, "taints": [
                {"key": "dedicated", "value": "web", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
            ]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
        }))
        .unwrap();
        let f = node_facts(&n);
        assert!(f.unschedulable && !f.ready);
        assert_eq!(f.labels.get("pool").unwrap(), "blue");
        assert_eq!(
            f.taints,
            [
                Taint {
                    key: "dedicated".into(),
                    value: "web".into(),
                    effect: Effect::NoSchedule
                },
                Taint {
                    key: "node.kubernetes.io/unreachable".into(),
                    value: String::new(),
                    effect: Effect::NoExecute
                },
            ]
        );
    }

    #[test]
    fn a_nodes_allocatable_pods() {
        // (status.allocatable.pods, max_pods)
        for (pods, want) in [
            (Some("110"), Some(110)),
            (Some("20"), Some(20)),
            (Some("1k"), Some(1000)),
            (Some("many"), None),
            (None, None),
        ] {
            let mut status = json!({"conditions": [{"type": "Ready", "status": "True"}]});
            if let Some(p) = pods {
                status["allocatable"] = json!({"cpu": "2", "memory": "4Gi", "pods": p});
            }
            let n: Node =
                serde_json::from_value(json!({"metadata": {"name": "w-1"}, "status": status}))
                    .unwrap();
            assert_eq!(node_facts(&n).max_pods, want, "{pods:?}");
        }
    }

    fn pvc(v: Value) -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": "data", "namespace": "shop"}, "spec": v}),
        )
        .unwrap()
    }

    fn local_pv() -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "pvc-1"},
            "spec": {"hostPath": {"path": "/var/lib/rancher/k3s/storage/pvc-1"}, "nodeAffinity": {"required": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["w-1"]}]}]}}},
        }))
        .unwrap()
    }

    fn class(mode: &str, topologies: Value) -> StorageClass {
        serde_json::from_value(json!({
            "metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path",
            "volumeBindingMode": mode, "allowedTopologies": topologies,
        }))
        .unwrap()
    }

    #[test]
    fn claim_table() {
        let bound = pvc(json!({"volumeName": "pvc-1", "storageClassName": "local-path"}));
        let waiting = pvc(json!({"storageClassName": "local-path"}));
        let no_class = pvc(json!({}));
        type Case<'a> = (
            &'a str,
            Option<&'a PersistentVolumeClaim>,
            Result<Option<PersistentVolume>, String>,
            Result<Option<StorageClass>, String>,
            Result<Option<&'a str>, &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "bound local PV",
                Some(&bound),
                Ok(Some(local_pv())),
                Ok(None),
                Ok(Some("w-1")),
            ),
            (
                "bound PV without affinity",
                Some(&bound),
                Ok(Some(
                    serde_json::from_value(json!({"metadata": {"name": "pvc-1"}, "spec": {}}))
                        .unwrap(),
                )),
                Ok(None),
                Ok(None),
            ),
            (
                "PV gone",
                Some(&bound),
                Ok(None),
                Ok(None),
                Err("not found"),
            ),
            (
                "PV unreadable",
                Some(&bound),
                Err("403 Forbidden".into()),
                Ok(None),
                Err("403"),
            ),
            (
                "claim gone",
                None,
                Ok(None),
                Ok(None),
                Err("claim not found"),
            ),
            (
                "waits for its first consumer",
                Some(&waiting),
                Ok(None),
                Ok(Some(class("WaitForFirstConsumer", Value::Null))),
                Ok(None),
            ),
            (
                "waits, within a topology",
                Some(&waiting),
                Ok(None),
                Ok(Some(class(
                    "WaitForFirstConsumer",
                    json!([{"matchLabelExpressions": [
                    {"key": "kubernetes.io/hostname", "values": ["w-1"]}]}]),
                ))),
                Ok(Some("w-1")),
            ),
            (
                "immediate, not bound yet",
                Some(&waiting),
                Ok(None),
                Ok(Some(class("Immediate", Value::Null))),
                Err("not bound"),
            ),
            (
                "no class",
                Some(&no_class),
                Ok(None),
                Ok(None),
                Err("no StorageClass"),
            ),
        ];
        let on = |name: &str| {
            let mut l = BTreeMap::new();
            l.insert("kubernetes.io/hostname".to_string(), name.to_string());
            l
        };
        for (what, claim, pv, sc, want) in cases {
            let got = claim_terms(claim, |_| pv, |_| sc);
            match (got, want) {
                (Ok(None), Ok(None)) => {}
                (Ok(Some(t)), Ok(Some(node))) => {
                    let t = Some(t);
                    assert!(model::terms_match(&t, &on(node), node), "{what}");
                    assert!(!model::terms_match(&t, &on("w-2"), "w-2"), "{what}");
                }
                (Err(e), Err(w)) => assert!(e.contains(w), "{what}: {e}"),
                (got, _) => panic!("{what}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn volumes_of_a_pod() {
        let p = pod_from(json!({"containers": [], "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
            {"name": "cfg", "configMap": {"name": "cfg"}},
        ]}));
        assert_eq!(
            claims(&p),
            [
                ("data-web-1".to_string(), false),
                ("web-1-scratch".to_string(), true)
            ]
        );
        let pinned = pod(&p, |c, _| {
            if c == "data-web-1" {
                claim_terms(None, |_| Ok(None), |_| Ok(None)).or(Ok(Some(vec![])))
            } else {
                Err("forbidden".into())
            }
        });
        assert_eq!(pinned.volume_affinity, [Some(vec![])]);
        assert_eq!(pinned.unknown_volume.as_deref(), Some("shop/web-1-scratch"));
    }
}
