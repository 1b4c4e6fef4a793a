//! Small builders for the Kubernetes objects tests need:
//! `pod("p").on("w1").owned_by_daemonset()`, `node("w1").control_plane()`,
//! `pdb("web").selecting("app", "web").min_available(2)`.

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{Value, json};

pub struct PodBuilder(Value);

/// A Running, Ready pod in `default`, owned by a ReplicaSet (movable) unless told otherwise.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(json!({
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {},
            "annotations": {},
            "ownerReferences": [owner("ReplicaSet", &format!("{name}-rs"))],
        },
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }))
}

fn owner(kind: &str, name: &str) -> Value {
    let api = match kind {
        "ReplicaSet" | "DaemonSet" | "StatefulSet" | "Deployment" => "apps/v1",
        "Job" => "batch/v1",
        _ => "v1",
    };
    json!({"apiVersion": api, "kind": kind, "name": name, "uid": format!("uid-{name}"), "controller": true})
}

impl PodBuilder {
    pub fn ns(mut self, ns: &str) -> Self {
        self.0["metadata"]["namespace"] = json!(ns);
        self
    }
    pub fn on(mut self, node: &str) -> Self {
        self.0["spec"]["nodeName"] = json!(node);
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["labels"][k] = json!(v);
        self
    }
    pub fn annotate(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["annotations"][k] = json!(v);
        self
    }
    pub fn owned_by(mut self, kind: &str, name: &str) -> Self {
        self.0["metadata"]["ownerReferences"] = json!([owner(kind, name)]);
        self
    }
    pub fn owned_by_daemonset(self) -> Self {
        self.owned_by("DaemonSet", "ds")
    }
    /// An owner reference that is not a controller (e.g. a garbage-collection link).
    pub fn non_controller_owner(mut self) -> Self {
        let mut o = owner("ConfigMap", "cm");
        o["controller"] = json!(false);
        self.0["metadata"]["ownerReferences"] = json!([o]);
        self
    }
    pub fn no_controller(mut self) -> Self {
        self.0["metadata"]["ownerReferences"] = json!([]);
        self
    }
    /// The API copy of a static pod, as the kubelet creates it.
    pub fn mirror(self) -> Self {
        let b = self.annotate("kubernetes.io/config.mirror", "abc123");
        let node = b.0["spec"]["nodeName"]
            .as_str()
            .unwrap_or("node")
            .to_string();
        b.owned_by("Node", &node)
    }
    pub fn phase(mut self, phase: &str) -> Self {
        self.0["status"]["phase"] = json!(phase);
        if phase != "Running" {
            self.0["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        }
        self
    }
    /// Being deleted already (deletionTimestamp set).
    pub fn terminating(mut self) -> Self {
        self.0["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
        self
    }
    pub fn unready(mut self) -> Self {
        self.0["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        self
    }
    pub fn grace(mut self, secs: i64) -> Self {
        self.0["spec"]["terminationGracePeriodSeconds"] = json!(secs);
        self
    }
    fn volume(mut self, v: Value) -> Self {
        let vols = self.0["spec"]
            .as_object_mut()
            .unwrap()
            .entry("volumes")
            .or_insert(json!([]));
        vols.as_array_mut().unwrap().push(v);
        self
    }
    pub fn host_path(self, name: &str) -> Self {
        self.volume(json!({"name": name, "hostPath": {"path": "/var/data"}}))
    }
    pub fn empty_dir(self, name: &str) -> Self {
        self.volume(json!({"name": name, "emptyDir": {}}))
    }
    pub fn empty_dir_memory(self, name: &str) -> Self {
        self.volume(json!({"name": name, "emptyDir": {"medium": "Memory"}}))
    }
    pub fn config_map_volume(self, name: &str) -> Self {
        self.volume(json!({"name": name, "configMap": {"name": "cfg"}}))
    }
    /// Requests of its (first) container: CPU in millicores, memory in bytes.
    pub fn requests(mut self, cpu_millis: u32, memory: u64) -> Self {
        self.0["spec"]["containers"][0]["resources"] =
            json!({"requests": {"cpu": format!("{cpu_millis}m"), "memory": memory.to_string()}});
        self
    }
    /// Pending and found unschedulable by the scheduler (no node fits it).
    pub fn unschedulable(mut self) -> Self {
        if let Some(spec) = self.0["spec"].as_object_mut() {
            spec.remove("nodeName");
        }
        self.0["status"] = json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
        });
        self
    }
    pub fn build(self) -> Pod {
        serde_json::from_value(self.0).expect("pod builder makes a valid Pod")
    }
}

/// What the cluster model reads from a pod (issue 13).
impl PodBuilder {
    /// Mounts the PersistentVolumeClaim `claim` as volume `volume`.
    pub fn claim(self, volume: &str, claim: &str) -> Self {
        self.volume(json!({"name": volume, "persistentVolumeClaim": {"claimName": claim}}))
    }
    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.0["spec"]["nodeSelector"][k] = json!(v);
        self
    }
    /// Tolerates `key` (any value) with `effect` ("" for every effect).
    pub fn tolerate(mut self, key: &str, effect: &str) -> Self {
        let mut t = json!({"key": key, "operator": "Exists"});
        if !effect.is_empty() {
            t["effect"] = json!(effect);
        }
        let spec = self.0["spec"].as_object_mut().unwrap();
        let list = spec.entry("tolerations").or_insert(json!([]));
        list.as_array_mut().unwrap().push(t);
        self
    }
    /// Binds `port` on its node (TCP).
    pub fn host_port(mut self, port: i32) -> Self {
        self.0["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": port, "hostPort": port}]);
        self
    }
    /// Required node affinity: label `key` In `values`.
    pub fn node_affinity(mut self, key: &str, values: &[&str]) -> Self {
        self.0["spec"]["affinity"]["nodeAffinity"] = json!({
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": key, "operator": "In", "values": values}]}]}});
        self
    }
    /// Required anti-affinity per node to pods labelled `k=v` (its own namespace).
    pub fn anti_affinity(mut self, k: &str, v: &str) -> Self {
        self.0["spec"]["affinity"]["podAntiAffinity"] = json!({
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {k: v}}}]});
        self
    }
}

/// A PersistentVolumeClaim `name` in `ns`, bound to the volume `pv` (as the PV controller
/// leaves it); `pv` "" for a claim not bound yet, of StorageClass `local-path`.
pub fn claim(ns: &str, name: &str, pv: &str) -> k8s_openapi::api::core::v1::PersistentVolumeClaim {
    let mut c = json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                 "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Pending"},
    });
    if !pv.is_empty() {
        c["spec"]["volumeName"] = json!(pv);
        c["status"]["phase"] = json!("Bound");
    }
    serde_json::from_value(c).expect("a valid claim")
}

/// A PersistentVolume as k3s's local-path provisioner makes it: a hostPath under
/// /var/lib/rancher/k3s/storage, pinned to `node` by node affinity (`node` "": a network
/// volume without affinity).
pub fn local_volume(name: &str, node: &str) -> k8s_openapi::api::core::v1::PersistentVolume {
    let mut v = json!({
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-path",
                 "hostPath": {"path": format!("/var/lib/rancher/k3s/storage/{name}"), "type": "DirectoryOrCreate"}},
        "status": {"phase": "Bound"},
    });
    if !node.is_empty() {
        v["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}});
    }
    serde_json::from_value(v).expect("a valid volume")
}

/// k3s's default StorageClass: local-path, WaitForFirstConsumer.
pub fn local_path_class() -> k8s_openapi::api::storage::v1::StorageClass {
    serde_json::from_value(json!({
        "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }))
    .expect("a valid class")
}

/// A DaemonSet in kube-system whose pods request `cpu_millis` and `memory`; `tolerate_all`
/// as k3s's svclb and most CNI DaemonSets do.
pub fn daemon_set(
    name: &str,
    cpu_millis: u32,
    memory: u64,
    tolerate_all: bool,
) -> k8s_openapi::api::apps::v1::DaemonSet {
    let mut spec = json!({"containers": [{"name": "main", "image": "busybox",
        "resources": {"requests": {"cpu": format!("{cpu_millis}m"), "memory": memory.to_string()}}}]});
    if tolerate_all {
        spec["tolerations"] = json!([{"operator": "Exists"}]);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
    }))
    .expect("a valid DaemonSet")
}

pub struct NodeBuilder(Value);

/// A Ready worker node.
pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}, "annotations": {}},
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }))
}

impl NodeBuilder {
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["labels"][k] = json!(v);
        self
    }
    pub fn annotate(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["annotations"][k] = json!(v);
        self
    }
    /// Labelled as k3s labels its server nodes.
    pub fn control_plane(self) -> Self {
        self.label("node-role.kubernetes.io/control-plane", "true")
            .label("node-role.kubernetes.io/master", "true")
    }
    pub fn cordoned(mut self) -> Self {
        self.0["spec"]["unschedulable"] = json!(true);
        self
    }
    /// A taint, as `kubectl taint` or the kubelet's `--register-with-taints` sets it.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let spec = self.0["spec"].as_object_mut().unwrap();
        let list = spec.entry("taints").or_insert(json!([]));
        list.as_array_mut()
            .unwrap()
            .push(json!({"key": key, "value": value, "effect": effect}));
        self
    }
    /// Not Ready: the kubelet stopped posting status.
    pub fn not_ready(mut self) -> Self {
        self.0["status"]["conditions"] = json!([{"type": "Ready", "status": "Unknown"}]);
        self
    }
    /// Allocatable (and capacity) as the kubelet reports it: CPU in millicores, bytes.
    pub fn allocatable(mut self, cpu_millis: u32, memory: u64) -> Self {
        let r =
            json!({"cpu": format!("{cpu_millis}m"), "memory": memory.to_string(), "pods": "110"});
        self.0["status"]["allocatable"] = r.clone();
        self.0["status"]["capacity"] = r;
        self
    }
    pub fn build(self) -> Node {
        serde_json::from_value(self.0).expect("node builder makes a valid Node")
    }
}

pub struct PdbBuilder(Value);

/// A PDB in `default` with an empty selector (set one with `selecting`).
pub fn pdb(name: &str) -> PdbBuilder {
    PdbBuilder(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"matchLabels": {}}},
    }))
}

impl PdbBuilder {
    pub fn ns(mut self, ns: &str) -> Self {
        self.0["metadata"]["namespace"] = json!(ns);
        self
    }
    pub fn selecting(mut self, k: &str, v: &str) -> Self {
        self.0["spec"]["selector"]["matchLabels"][k] = json!(v);
        self
    }
    pub fn expression(mut self, key: &str, op: &str, values: &[&str]) -> Self {
        let e = json!({"key": key, "operator": op, "values": values});
        let sel = self.0["spec"]["selector"].as_object_mut().unwrap();
        sel.entry("matchExpressions")
            .or_insert(json!([]))
            .as_array_mut()
            .unwrap()
            .push(e);
        self
    }
    pub fn min_available(mut self, n: i32) -> Self {
        self.0["spec"]["minAvailable"] = json!(n);
        self
    }
    pub fn min_available_pct(mut self, pct: &str) -> Self {
        self.0["spec"]["minAvailable"] = json!(pct);
        self
    }
    pub fn max_unavailable(mut self, n: i32) -> Self {
        self.0["spec"]["maxUnavailable"] = json!(n);
        self
    }
    /// `spec.unhealthyPodEvictionPolicy`: IfHealthyBudget (the default) or AlwaysAllow.
    pub fn unhealthy_policy(mut self, policy: &str) -> Self {
        self.0["spec"]["unhealthyPodEvictionPolicy"] = json!(policy);
        self
    }
    /// The status a disruption controller would have written.
    pub fn allowing(mut self, n: i32) -> Self {
        self.0["status"] = json!({"disruptionsAllowed": n, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0});
        self
    }
    pub fn build(self) -> PodDisruptionBudget {
        serde_json::from_value(self.0).expect("pdb builder makes a valid PDB")
    }
}
