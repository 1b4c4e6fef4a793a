//! Reading Prometheus's answer to the one query into a `Snapshot`: series by their `signal`
//! label, and the utilisation signals worked out from the per-node requests and
//! allocatable (promql.rs says why they are not asked for one by one); with them the pods
//! on each node.

use crate::plan::model::{Pod, Resources};
use crate::plan::snapshot::{NodeResources, NodeSample, Snapshot};
use crate::signals::PromError;
use crate::signals::promql::{
    self, NODE_ALLOCATABLE, NODE_REQUESTS, PENDING_POD, PENDING_POD_REQUESTS,
};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

#[derive(Deserialize)]
struct ApiResponse<'a> {
    status: String,
    #[serde(default, borrow)]
    data: Option<ApiData<'a>>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData<'a> {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(borrow)]
    result: Vec<Series<'a>>,
}

/// One series; only the labels we read are kept, borrowed from the body where possible
/// (a 5,000-node answer has 25,000 of these).
#[derive(Deserialize)]
struct Series<'a> {
    #[serde(borrow)]
    metric: Labels<'a>,
    #[serde(borrow)]
    value: (f64, Cow<'a, str>),
}

#[derive(Deserialize)]
struct Labels<'a> {
    #[serde(default, borrow)]
    signal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    node: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    resource: Option<Cow<'a, str>>,
    /// `promql::NO_WORKERS_LABEL`: marks "nodes known, none is a worker".
    #[serde(default, borrow)]
    workers: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pod: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    created_by_kind: Option<Cow<'a, str>>,
}

/// The error Prometheus put in a failed answer, if the body is one.
pub(crate) fn api_error(body: &[u8]) -> Option<String> {
    let r: ApiResponse = serde_json::from_slice(body).ok()?;
    Some(format!(
        "{}: {}",
        r.error_type.unwrap_or_else(|| "error".into()),
        r.error.unwrap_or_default()
    ))
}

/// CPU, memory and pods, in that order, for the per-node parts (`pods`: the pods on the
/// node, in `node_requests`; an allocatable `pods` series, which the default query does
/// not ask for, is not read).
type PerResource = [Option<f64>; 3];
/// CPU and memory requests of one unschedulable pod.
type PodRequests = [Option<f64>; 2];
const RESOURCES: [&str; 3] = ["cpu", "memory", "pods"];
const PODS: usize = 2;

fn resource_index(resource: Option<&str>) -> Option<usize> {
    RESOURCES.iter().position(|r| Some(*r) == resource)
}

/// Reads a `/api/v1/query` answer into a snapshot. Series are matched by their `signal`
/// label; a scalar signal with more than one series, or a per-node series without a `node`
/// label, is malformed (a wrong override), not something to guess at. `defaulted` names
/// the signals sent with their default query (`promql::Query`): where the answer has no
/// series of its own for one of them, it is worked out here (the utilisation from the
/// per-node parts; pending requests are 0 when no pod is pending). An override is never
/// filled in: its empty answer stays unknown.
pub fn parse_response(body: &[u8], defaulted: &[&str]) -> Result<Snapshot, PromError> {
    let data = vector(body)?;
    let mut read = Read::default();
    for s in &data.result {
        read.series(s)?;
    }
    read.snapshot(defaulted)
}

/// The series of a successful instant-vector answer.
fn vector(body: &[u8]) -> Result<ApiData<'_>, PromError> {
    let r: ApiResponse =
        serde_json::from_slice(body).map_err(|e| PromError::Malformed(e.to_string()))?;
    if r.status != "success" {
        return Err(PromError::Malformed(format!(
            "status {:?}: {}",
            r.status,
            r.error.unwrap_or_default()
        )));
    }
    let data = r
        .data
        .ok_or_else(|| PromError::Malformed("no `data` in a success answer".into()))?;
    if data.result_type != "vector" {
        return Err(PromError::Malformed(format!(
            "resultType {:?}, expected \"vector\"",
            data.result_type
        )));
    }
    Ok(data)
}

/// The answer's series read so far. Node names are borrowed from the answer until the
/// snapshot is built (a 5,000-node answer has 25,000 series, most of them per node).
#[derive(Default)]
struct Read<'d> {
    snap: Snapshot,
    seen: Vec<&'d str>,
    ready: Option<BTreeMap<&'d str, bool>>,
    node_cpu: HashMap<&'d str, Option<f64>>,
    node_mem: HashMap<&'d str, Option<f64>>,
    requests: HashMap<&'d str, PerResource>,
    allocatable: HashMap<&'d str, PerResource>,
    /// Unschedulable pods by (namespace, pod): DaemonSet-owned, and requests.
    pods: BTreeMap<(&'d str, &'d str), (bool, PodRequests)>,
    pod_requests: Vec<((&'d str, &'d str), usize, f64)>,
}

impl<'d> Read<'d> {
    /// Reads one series, by its `signal` label.
    fn series(&mut self, s: &'d Series<'_>) -> Result<(), PromError> {
        let Some(signal) = s.metric.signal.as_deref() else {
            return Err(PromError::Malformed(
                "a series without a `signal` label".into(),
            ));
        };
        let value = parse_value(&s.value.1).ok_or_else(|| {
            PromError::Malformed(format!("signal {signal}: value {:?}", s.value.1))
        })?;
        // NaN/Inf (e.g. an override's 0/0) say nothing: unknown.
        let finite = value.filter(|v| v.is_finite());
        // A signal's second series (NaN or not) is a duplicate for a scalar.
        let repeated = self.seen.contains(&signal);
        if !repeated {
            self.seen.push(signal);
        }
        let scalar = |slot: &mut Option<f64>| -> Result<(), PromError> {
            if repeated {
                return Err(PromError::Malformed(format!(
                    "signal {signal} has more than one series"
                )));
            }
            *slot = finite;
            Ok(())
        };
        match signal {
            "pending_pods" => scalar(&mut self.snap.pending_pods),
            "pending_cpu_cores" => scalar(&mut self.snap.pending_cpu_cores),
            "pending_memory_bytes" => scalar(&mut self.snap.pending_memory_bytes),
            "cpu" => scalar(&mut self.snap.cpu),
            "memory" => scalar(&mut self.snap.memory),
            "node_ready"
                if s.metric.node.is_none()
                    && s.metric.workers.as_deref() == Some(promql::NO_WORKERS_VALUE) =>
            {
                // Nodes are known and none is a worker: zero workers, not unknown.
                self.ready.get_or_insert_with(BTreeMap::new);
                Ok(())
            }
            "node_ready" | "node_cpu" | "node_memory" => {
                let node = node_of(s, signal)?;
                let map = match signal {
                    "node_ready" => {
                        let known = self.ready.get_or_insert_with(BTreeMap::new);
                        if known.insert(node, value == Some(1.0)).is_some() {
                            return Err(duplicate(signal, node));
                        }
                        return Ok(());
                    }
                    "node_cpu" => &mut self.node_cpu,
                    _ => &mut self.node_mem,
                };
                if map.insert(node, finite).is_some() {
                    return Err(duplicate(signal, node));
                }
                Ok(())
            }
            NODE_REQUESTS | NODE_ALLOCATABLE => self.node_part(s, signal, finite),
            PENDING_POD | PENDING_POD_REQUESTS => self.pod(s, signal, finite),
            other => Err(PromError::Malformed(format!("unexpected signal {other:?}"))),
        }
    }

    /// One resource of a node's requests or allocatable.
    fn node_part(
        &mut self,
        s: &'d Series<'_>,
        signal: &str,
        finite: Option<f64>,
    ) -> Result<(), PromError> {
        let node = node_of(s, signal)?;
        let resource = s.metric.resource.as_deref();
        let Some(i) = resource_index(resource) else {
            return Err(PromError::Malformed(match resource {
                None => format!("signal {signal}: a series without a `resource` label"),
                Some(r) => {
                    format!(
                        "signal {signal}: resource {r:?}, expected \"cpu\", \"memory\" or \"pods\""
                    )
                }
            }));
        };
        let map = if signal == NODE_REQUESTS {
            &mut self.requests
        } else {
            &mut self.allocatable
        };
        let slot = &mut map.entry(node).or_insert([None; 3])[i];
        if slot.is_some() {
            let resource = RESOURCES[i];
            return Err(duplicate(
                signal,
                &format!("{node} and resource {resource}"),
            ));
        }
        // A non-finite value is kept as NaN: the node's figure is then unknown.
        *slot = Some(finite.unwrap_or(f64::NAN));
        Ok(())
    }

    /// An unschedulable pod, or one resource of its requests.
    fn pod(
        &mut self,
        s: &'d Series<'_>,
        signal: &str,
        finite: Option<f64>,
    ) -> Result<(), PromError> {
        let (Some(ns), Some(pod)) = (s.metric.namespace.as_deref(), s.metric.pod.as_deref()) else {
            return Err(PromError::Malformed(format!(
                "signal {signal}: a series without `namespace` and `pod` labels"
            )));
        };
        if signal == PENDING_POD {
            let daemonset = s.metric.created_by_kind.as_deref() == Some("DaemonSet");
            if self
                .pods
                .insert((ns, pod), (daemonset, [None; 2]))
                .is_some()
            {
                return Err(PromError::Malformed(format!(
                    "signal {signal} has more than one series for pod {ns}/{pod}"
                )));
            }
        } else {
            let Some(i) = resource_index(s.metric.resource.as_deref()).filter(|i| *i < PODS) else {
                return Err(PromError::Malformed(format!(
                    "signal {signal}: pod {ns}/{pod} without resource cpu or memory"
                )));
            };
            self.pod_requests
                .push(((ns, pod), i, finite.unwrap_or(f64::NAN)));
        }
        Ok(())
    }

    /// The snapshot, with what the defaulted signals the answer gave nothing for work out to.
    fn snapshot(self, defaulted: &[&str]) -> Result<Snapshot, PromError> {
        let Read {
            mut snap,
            seen,
            ready,
            node_cpu,
            node_mem,
            requests,
            allocatable,
            pods,
            pod_requests,
        } = self;
        // Filled in only for a defaulted signal the answer gave nothing for.
        let derive = |name: &str| defaulted.contains(&name) && !seen.contains(&name);
        if snap.pending_pods == Some(0.0) {
            for (name, slot) in [
                ("pending_cpu_cores", &mut snap.pending_cpu_cores),
                ("pending_memory_bytes", &mut snap.pending_memory_bytes),
            ] {
                if derive(name) {
                    *slot = Some(0.0);
                }
            }
        }
        snap.unschedulable = unschedulable(&snap, defaulted, pods, pod_requests)?;
        snap.node_resources = node_resources(&requests, &allocatable);
        let usage = Usage::new(&requests, &allocatable);
        if let Some(ready) = &ready {
            let ready_workers = || ready.iter().filter(|(_, r)| **r).map(|(n, _)| *n);
            if derive("cpu") {
                snap.cpu = usage.average(ready_workers(), 0);
            }
            if derive("memory") {
                snap.memory = usage.average(ready_workers(), 1);
            }
        }
        // Per node: the answer's own figure, or worked out.
        let derive_node = [derive("node_cpu"), derive("node_memory")];
        let figure = |name: &str, given: &HashMap<&str, Option<f64>>, i: usize| {
            if derive_node[i] {
                usage.of_node(name, i)
            } else {
                given.get(name).copied().flatten()
            }
        };
        snap.nodes = ready.map(|ready| {
            ready
                .into_iter()
                .map(|(name, is_ready)| {
                    let sample = NodeSample {
                        ready: is_ready,
                        cpu: figure(name, &node_cpu, 0),
                        memory: figure(name, &node_mem, 1),
                    };
                    (name.to_string(), sample)
                })
                .collect()
        });
        Ok(snap)
    }
}

/// The series' `node` label: a per-node signal without one is malformed.
fn node_of<'d>(s: &'d Series<'_>, signal: &str) -> Result<&'d str, PromError> {
    s.metric
        .node
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            PromError::Malformed(format!("signal {signal}: a series without a `node` label"))
        })
}

fn duplicate(signal: &str, node: &str) -> PromError {
    PromError::Malformed(format!(
        "signal {signal} has more than one series for node {node}"
    ))
}

/// The unschedulable pods for the model, when the default `pending_pods` was asked and
/// is known. None (the decision then sizes by summed requests) when the list disagrees
/// with the count (the two parts were read a moment apart) or a request is not a number.
fn unschedulable<'a>(
    snap: &Snapshot,
    defaulted: &[&str],
    mut pods: BTreeMap<(&'a str, &'a str), (bool, PodRequests)>,
    requests: Vec<((&'a str, &'a str), usize, f64)>,
) -> Result<Option<Vec<Pod>>, PromError> {
    let Some(count) = snap.pending_pods else {
        return Ok(None);
    };
    if !defaulted.contains(&"pending_pods") {
        return Ok(None);
    }
    for (key, i, v) in requests {
        // Requests of a pod the owner part did not list: it was placed in between.
        if let Some((_, r)) = pods.get_mut(&key) {
            if r[i].is_some() {
                return Err(PromError::Malformed(format!(
                    "signal {PENDING_POD_REQUESTS} has more than one series for pod {}/{}",
                    key.0, key.1
                )));
            }
            r[i] = Some(v);
        }
    }
    if pods.len() as f64 != count {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(pods.len());
    for ((ns, name), (daemonset, r)) in pods {
        // A pod without request series requests nothing (kube-state-metrics writes none).
        let [cpu, memory] = r.map(|v| v.unwrap_or(0.0));
        if !(cpu.is_finite() && memory.is_finite() && cpu >= 0.0 && memory >= 0.0) {
            return Ok(None);
        }
        out.push(Pod {
            namespace: ns.to_string(),
            name: name.to_string(),
            requests: Resources::new(cpu, memory),
            daemonset,
            ..Pod::default()
        });
    }
    Ok(Some(out))
}

/// Requested and allocatable of each node for which all four figures are known numbers
/// (a placed pod's requests of a resource nobody requests anywhere count as 0), with the
/// pods on it (a node without a pod count has no pod while some node has one; with none
/// anywhere, the count is unknown).
fn node_resources(
    requests: &HashMap<&str, PerResource>,
    allocatable: &HashMap<&str, PerResource>,
) -> BTreeMap<String, NodeResources> {
    let seen = [0, 1, PODS].map(|i| requests.values().any(|r| r[i].is_some()));
    allocatable
        .iter()
        .filter_map(|(node, a)| {
            let req = requests.get(node).copied().unwrap_or([None; 3]);
            let r = [0, 1, PODS].map(|i| req[i].or(seen[i].then_some(0.0)));
            let ok = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);
            let pods = ok(r[PODS]).map(|v| v.round().min(f64::from(u32::MAX)) as u32);
            Some((
                node.to_string(),
                NodeResources {
                    requested: Resources::new(ok(r[0])?, ok(r[1])?),
                    allocatable: Resources::new(ok(a[0])?, ok(a[1])?),
                    pods,
                },
            ))
        })
        .collect()
}

/// Utilisation in percent from the per-node parts: requests over allocatable.
struct Usage<'a> {
    requests: &'a HashMap<&'a str, PerResource>,
    allocatable: &'a HashMap<&'a str, PerResource>,
    /// Per resource: some placed pod has request series for it, so a node without any
    /// is at 0; when none has, the resource is unknown (its series may not be collected).
    seen: [bool; 2],
}

impl<'a> Usage<'a> {
    fn new(
        requests: &'a HashMap<&'a str, PerResource>,
        allocatable: &'a HashMap<&'a str, PerResource>,
    ) -> Usage<'a> {
        let seen = [0, 1].map(|i| requests.values().any(|r| r[i].is_some()));
        Usage {
            requests,
            allocatable,
            seen,
        }
    }

    fn requested(&self, node: &str, i: usize) -> Option<f64> {
        match self.requests.get(node).and_then(|r| r[i]) {
            Some(v) => Some(v),
            None if self.seen[i] => Some(0.0),
            None => None,
        }
    }

    fn allocatable(&self, node: &str, i: usize) -> Option<f64> {
        self.allocatable.get(node).and_then(|a| a[i])
    }

    /// One node's utilisation; unknown without its allocatable or with 0 of it.
    fn of_node(&self, node: &str, i: usize) -> Option<f64> {
        percent(self.requested(node, i)?, self.allocatable(node, i)?)
    }

    /// The Ready workers' requests over their allocatable, summed first (a big worker
    /// weighs more). Unknown when any of them has no usable figures: leaving one out
    /// could hide its load (a negative one would lower the sum).
    fn average<'n>(&self, nodes: impl Iterator<Item = &'n str>, i: usize) -> Option<f64> {
        let (mut used, mut total) = (0.0, 0.0);
        for n in nodes {
            let (r, a) = (self.requested(n, i)?, self.allocatable(n, i)?);
            if r < 0.0 || a <= 0.0 {
                return None;
            }
            used += r;
            total += a;
        }
        percent(used, total)
    }
}

/// `100 * used / total` when that is a number; unknown for a total of 0 or less, a
/// negative use, or anything non-finite (a negative figure would read as "idle").
fn percent(used: f64, total: f64) -> Option<f64> {
    let p = 100.0 * used / total;
    (total > 0.0 && used >= 0.0 && p.is_finite()).then_some(p)
}

/// Prometheus sends sample values as strings; NaN and ±Inf are legal there.
fn parse_value(text: &str) -> Option<Option<f64>> {
    match text {
        "NaN" => Some(Some(f64::NAN)),
        "+Inf" | "Inf" => Some(Some(f64::INFINITY)),
        "-Inf" => Some(Some(f64::NEG_INFINITY)),
        t => t.parse::<f64>().ok().map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SIGNAL_NAMES;

    fn body(series: &str) -> Vec<u8> {
        format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{series}]}}}}"#)
            .into_bytes()
    }

    fn s(signal: &str, node: Option<&str>, v: &str) -> String {
        let node = node
            .map(|n| format!(r#","node":"{n}""#))
            .unwrap_or_default();
        format!(r#"{{"metric":{{"signal":"{signal}"{node}}},"value":[1700000000.1,"{v}"]}}"#)
    }

    /// A per-node part's series: node and resource labels.
    fn r(signal: &str, node: &str, resource: &str, v: &str) -> String {
        format!(
            r#"{{"metric":{{"signal":"{signal}","node":"{node}","resource":"{resource}"}},"value":[1700000000.1,"{v}"]}}"#
        )
    }

    /// Three workers (w-3 not Ready); requests and allocatable as the default parts give them.
    fn per_node_parts() -> Vec<String> {
        vec![
            s("pending_pods", None, "0"),
            s("node_ready", Some("w-1"), "1"),
            s("node_ready", Some("w-2"), "1"),
            s("node_ready", Some("w-3"), "0"),
            r("node_requests", "w-1", "cpu", "2"),
            r("node_requests", "w-1", "memory", "4294967296"),
            r("node_requests", "w-2", "cpu", "1"),
            r("node_requests", "w-3", "cpu", "1"),
            r("node_requests", "w-3", "memory", "1073741824"),
            // The control plane's pods: not a worker's load.
            r("node_requests", "server", "cpu", "3"),
            r("node_allocatable", "w-1", "cpu", "4"),
            r("node_allocatable", "w-1", "memory", "8589934592"),
            r("node_allocatable", "w-2", "cpu", "2"),
            r("node_allocatable", "w-2", "memory", "4294967296"),
            r("node_allocatable", "w-3", "cpu", "4"),
            r("node_allocatable", "w-3", "memory", "8589934592"),
            r("node_allocatable", "server", "cpu", "4"),
        ]
    }

    fn near(got: Option<f64>, want: f64) -> bool {
        got.is_some_and(|g| (g - want).abs() < 1e-9)
    }

    #[test]
    fn utilisation_is_worked_out_from_per_node_requests_and_allocatable() {
        let snap = parse_response(&body(&per_node_parts().join(",")), &SIGNAL_NAMES).unwrap();
        let nodes = snap.nodes.as_ref().unwrap();
        assert_eq!(nodes.len(), 3, "only node_ready's workers: {nodes:?}");
        assert!(near(nodes["w-1"].cpu, 50.0) && near(nodes["w-1"].memory, 50.0));
        assert!(near(nodes["w-2"].cpu, 50.0));
        assert_eq!(
            nodes["w-2"].memory,
            Some(0.0),
            "no pod requests memory there: 0"
        );
        assert!(near(nodes["w-3"].cpu, 25.0) && near(nodes["w-3"].memory, 12.5));
        // Ready workers only, summed before dividing: (2 + 1) of (4 + 2) cores, 4 of 12 GiB.
        assert!(near(snap.cpu, 50.0), "{:?}", snap.cpu);
        assert!(near(snap.memory, 100.0 / 3.0), "{:?}", snap.memory);
        assert_eq!(
            snap.pending_cpu_cores,
            Some(0.0),
            "no pod pending: none requested"
        );
        assert_eq!(snap.pending_memory_bytes, Some(0.0));
    }

    #[test]
    fn what_cannot_be_worked_out_stays_unknown() {
        // No placed pod requests memory anywhere: memory may not be collected, not 0 %.
        let parts: Vec<String> = per_node_parts()
            .into_iter()
            .filter(|p| !(p.contains("node_requests") && p.contains("memory")))
            .collect();
        let snap = parse_response(&body(&parts.join(",")), &SIGNAL_NAMES).unwrap();
        assert_eq!(snap.memory, None);
        assert!(snap.nodes.unwrap().values().all(|n| n.memory.is_none()));
        assert!(near(snap.cpu, 50.0));

        // A Ready worker without allocatable: its own figure and the average are unknown
        // (leaving it out would hide its load).
        let parts: Vec<String> = per_node_parts()
            .into_iter()
            .filter(|p| !(p.contains("node_allocatable") && p.contains("w-2")))
            .collect();
        let snap = parse_response(&body(&parts.join(",")), &SIGNAL_NAMES).unwrap();
        assert_eq!((snap.cpu, snap.memory), (None, None));
        assert_eq!(snap.nodes.as_ref().unwrap()["w-2"].cpu, None);
        assert!(near(snap.nodes.as_ref().unwrap()["w-1"].cpu, 50.0));
        // Negative or non-finite figures are not "idle", and do not lower the average.
        let mut parts = per_node_parts();
        parts[4] = r("node_requests", "w-1", "cpu", "-2");
        parts[6] = r("node_requests", "w-2", "cpu", "3");
        parts[14] = r("node_allocatable", "w-3", "cpu", "+Inf");
        let snap = parse_response(&body(&parts.join(",")), &SIGNAL_NAMES).unwrap();
        let nodes = snap.nodes.as_ref().unwrap();
        assert_eq!(
            (nodes["w-1"].cpu, nodes["w-3"].cpu, snap.cpu),
            (None, None, None)
        );
        assert!(near(nodes["w-2"].cpu, 150.0));
        // No Ready worker with allocatable at all: no average.
        let parts: Vec<String> = per_node_parts()
            .into_iter()
            .filter(|p| !p.contains("node_allocatable"))
            .collect();
        let snap = parse_response(&body(&parts.join(",")), &SIGNAL_NAMES).unwrap();
        assert_eq!((snap.cpu, snap.memory), (None, None));

        // Pods pending but no requests series for them: unknown, not 0.
        let mut parts = per_node_parts();
        parts[0] = s("pending_pods", None, "2");
        let snap = parse_response(&body(&parts.join(",")), &SIGNAL_NAMES).unwrap();
        assert_eq!(snap.pending_cpu_cores, None);
        // Pending unknown: so are its requests.
        parts.remove(0);
        let snap = parse_response(&body(&parts.join(",")), &SIGNAL_NAMES).unwrap();
        assert_eq!((snap.pending_pods, snap.pending_cpu_cores), (None, None));
        // Nodes unknown: no average either.
        let parts: Vec<String> = per_node_parts()
            .into_iter()
            .filter(|p| !p.contains("node_ready"))
            .collect();
        let snap = parse_response(&body(&parts.join(",")), &SIGNAL_NAMES).unwrap();
        assert_eq!((snap.cpu, snap.memory, snap.nodes), (None, None, None));
    }

    #[test]
    fn each_nodes_pods_come_with_the_per_node_parts() {
        let with = |extra: &[String]| {
            let mut parts = per_node_parts();
            parts.extend(extra.iter().cloned());
            parse_response(&body(&parts.join(",")), &SIGNAL_NAMES).unwrap()
        };
        let snap = with(&[
            r("node_requests", "w-1", "pods", "12"),
            r("node_requests", "w-3", "pods", "NaN"),
            r("node_requests", "server", "pods", "9"),
        ]);
        let pods = |n: &str| snap.node_resources[n].pods;
        assert_eq!(pods("w-1"), Some(12));
        // No pod on w-2 (the count has no series for it) while other nodes have some: 0.
        assert_eq!(pods("w-2"), Some(0));
        assert_eq!(pods("w-3"), None, "not a number: unknown");
        // The utilisation is read as before.
        assert!(near(snap.cpu, 50.0), "{:?}", snap.cpu);
        // No pod count anywhere (the series may not be collected): unknown, not 0.
        let snap = with(&[]);
        assert_eq!(snap.node_resources["w-1"].pods, None);
        // An allocatable pods series (an override's) is not read, and not an error.
        let snap = with(&[r("node_allocatable", "w-1", "pods", "110")]);
        assert_eq!(snap.node_resources["w-1"].pods, None);
        // A pods series twice is malformed, as any other.
        let twice = [
            r("node_requests", "w-1", "pods", "3"),
            r("node_requests", "w-1", "pods", "3"),
        ];
        let mut parts = per_node_parts();
        parts.extend(twice);
        let e = parse_response(&body(&parts.join(",")), &SIGNAL_NAMES).unwrap_err();
        assert!(e.to_string().contains("node w-1 and resource pods"), "{e}");
    }

    #[test]
    fn overrides_are_never_filled_in() {
        // cpu and pending_cpu_cores overridden, and their queries found nothing.
        let defaulted: Vec<&str> = SIGNAL_NAMES
            .into_iter()
            .filter(|n| !matches!(*n, "cpu" | "pending_cpu_cores"))
            .collect();
        let snap = parse_response(&body(&per_node_parts().join(",")), &defaulted).unwrap();
        assert_eq!(snap.cpu, None);
        assert_eq!(snap.pending_cpu_cores, None);
        assert!(near(snap.memory, 100.0 / 3.0));
        assert_eq!(snap.pending_memory_bytes, Some(0.0));
        // An override's own series wins over the per-node parts.
        let mut parts = per_node_parts();
        parts.push(s("cpu", None, "7"));
        parts.push(s("node_cpu", Some("w-1"), "9"));
        let snap = parse_response(&body(&parts.join(",")), &SIGNAL_NAMES).unwrap();
        assert_eq!(snap.cpu, Some(7.0));
        let nodes = snap.nodes.unwrap();
        assert_eq!(nodes["w-1"].cpu, Some(9.0));
        assert_eq!(nodes["w-2"].cpu, None, "node_cpu answered: not worked out");
    }

    #[test]
    fn reads_every_signal_by_its_label() {
        let series = [
            s("pending_pods", None, "3"),
            s("pending_cpu_cores", None, "1.5"),
            s("pending_memory_bytes", None, "1073741824"),
            s("cpu", None, "55.5"),
            s("memory", None, "40"),
            s("node_ready", Some("w-1"), "1"),
            s("node_ready", Some("w-2"), "0"),
            s("node_cpu", Some("w-1"), "70"),
            s("node_memory", Some("w-1"), "20"),
        ]
        .join(",");
        let snap = parse_response(&body(&series), &[]).unwrap();
        assert_eq!(snap.pending_pods, Some(3.0));
        assert_eq!(snap.pending_cpu_cores, Some(1.5));
        assert_eq!(snap.pending_memory_bytes, Some(1073741824.0));
        assert_eq!(snap.cpu, Some(55.5));
        assert_eq!(snap.memory, Some(40.0));
        let nodes = snap.nodes.unwrap();
        assert!(nodes["w-1"].ready);
        assert!(!nodes["w-2"].ready);
        assert_eq!(nodes["w-1"].utilisation(), Some(70.0));
        assert_eq!(nodes["w-2"].utilisation(), None);
    }

    #[test]
    fn absent_signals_are_unknown_not_zero() {
        let snap = parse_response(&body(&s("pending_pods", None, "0")), &[]).unwrap();
        assert_eq!(snap.pending_pods, Some(0.0));
        assert_eq!(snap.cpu, None);
        assert_eq!(snap.memory, None);
        assert_eq!(snap.nodes, None);
    }

    #[test]
    fn the_no_workers_series_means_zero_workers_and_nothing_else_does() {
        let none = r#"{"metric":{"signal":"node_ready","workers":"none"},"value":[1,"1"]}"#;
        let snap = parse_response(&body(none), &[]).unwrap();
        assert_eq!(snap.nodes, Some(BTreeMap::new()));
        // Without the marker label, a node_ready series without `node` is a wrong query.
        let e = parse_response(&body(&s("node_ready", None, "1")), &[]).unwrap_err();
        assert!(e.to_string().contains("`node` label"), "{e}");
    }

    #[test]
    fn nan_and_inf_are_unknown() {
        let series = [s("cpu", None, "NaN"), s("memory", None, "+Inf")].join(",");
        let snap = parse_response(&body(&series), &[]).unwrap();
        assert_eq!(snap.cpu, None);
        assert_eq!(snap.memory, None);
    }

    #[test]
    fn malformed_answers_are_errors_naming_the_problem() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "expected"),
            (br#"{"status":"error","error":"boom"}"#.to_vec(), "boom"),
            (br#"{"status":"success"}"#.to_vec(), "no `data`"),
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.to_vec(),
                "matrix",
            ),
            (
                body(&[s("cpu", None, "1"), s("cpu", None, "2")].join(",")),
                "more than one",
            ),
            (body(&s("node_cpu", None, "1")), "`node` label"),
            (body(&s("cpu", None, "twelve")), "twelve"),
            (body(&s("bogus", None, "1")), "bogus"),
            (body(r#"{"metric":{},"value":[1,"1"]}"#), "`signal` label"),
            (
                body(&s("node_requests", Some("w-1"), "1")),
                "without a `resource` label",
            ),
            (
                body(&r("node_requests", "w-1", "gpu", "1")),
                "expected \"cpu\", \"memory\" or \"pods\"",
            ),
            (
                body(&[s("pending_pods", None, "NaN"), s("pending_pods", None, "0")].join(",")),
                "more than one",
            ),
            (
                body(
                    &[
                        r("node_allocatable", "w-1", "cpu", "4"),
                        r("node_allocatable", "w-1", "cpu", "2"),
                    ]
                    .join(","),
                ),
                "node w-1 and resource cpu",
            ),
            (
                body(r#"{"metric":{"signal":"cpu"},"value":"1"}"#),
                "invalid type",
            ),
        ];
        for (b, needle) in cases {
            let e = parse_response(&b, &SIGNAL_NAMES).unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} should mention {needle:?}");
        }
    }
}
