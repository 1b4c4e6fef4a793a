//! Placement on the cluster model, the one function every what-if uses: scale-up sizing
//! (which pending pods the scheduler will place anyway, which no new worker can run, and
//! how many new workers the rest need, first-fit-decreasing as cluster-autoscaler's
//! estimator/binpacking_estimator.go), the scale-down check (do a worker's pods fit on the
//! others: simulator/cluster.go), and `k3s-scale simulate`. Every node, a template one
//! too, holds at most its `allocatable.pods` (estimator/binpacking_estimator_test.go
//! "pods-per-node bound binpacking": a template allowing 10 pods, 20 pods -> 2 nodes).
//!
//! `Fork` is a cheap what-if view over the nodes, as cluster-autoscaler's ClusterSnapshot:
//! pods placed in it are kept beside the base nodes, never copied into them, so a check at
//! 5,000 nodes costs what it places, not a copy of the cluster. Both it and the new workers
//! of an estimate find the first node with room through a `RoomIndex` (by free room), not
//! a scan, and remember requests that fit no node's room; the node chosen is the one a
//! scan would choose (`tests::indexed_placement_is_the_scans`).

use super::model::{self, Misfit, Node, Pod, Resources};
use super::room_index::RoomIndex;
use std::collections::{HashMap, HashSet};

/// A what-if view: the base nodes plus what was placed on them here.
pub struct Fork<'a> {
    base: &'a [Node],
    /// Requests added per node, by index (dense: a float pair per node).
    added: Vec<Resources>,
    /// Pods added per node, by index (they count toward its `allocatable.pods`).
    added_pods: Vec<u32>,
    /// Pods placed per node, for host ports and anti-affinity.
    placed: HashMap<usize, Vec<&'a Pod>>,
    /// Nodes left out (the one being removed).
    removed: Vec<usize>,
    /// At least the most CPU and the most memory free on any node (placing only lowers
    /// them, so a bound taken once stays one): a pod over it fits nowhere, without a scan
    /// of every node. At 5,000 full nodes this is what keeps a burst's sizing cheap.
    bound: Resources,
    /// The nodes by free room (only those that may take one more pod).
    index: RoomIndex,
    /// Requests that fit no node's room (room only shrinks, so they never will): a pod
    /// asking at least as much of both is turned away without a search. Kept short.
    nowhere: Vec<Resources>,
}

/// At most this many requests are remembered as fitting nowhere: a few pod shapes.
const NOWHERE_KEPT: usize = 16;

impl<'a> Fork<'a> {
    pub fn new(base: &'a [Node]) -> Fork<'a> {
        let bound = base
            .iter()
            .filter(|n| n.ready && !n.unschedulable)
            .map(Node::free)
            .fold(Resources::new(f64::MIN, f64::MIN), |m, f| {
                Resources::new(m.cpu.max(f.cpu), m.memory.max(f.memory))
            });
        let index = RoomIndex::new(
            base.iter()
                .map(|n| model::fits_pod_count(n, 0).ok().map(|_| n.free())),
        );
        Fork {
            base,
            added: vec![Resources::default(); base.len()],
            added_pods: vec![0; base.len()],
            placed: HashMap::new(),
            removed: Vec::new(),
            bound,
            index,
            nowhere: Vec::new(),
        }
    }

    /// Leaves a node out of the view (the scale-down candidate).
    pub fn remove(&mut self, index: usize) {
        self.removed.push(index);
        if index < self.index.len() {
            self.index.set(index, None);
        }
    }

    /// Node `i`'s room for one more pod in this view, None if it takes none.
    fn room(&self, i: usize) -> Option<Resources> {
        if self.removed.contains(&i) {
            return None;
        }
        model::fits_pod_count(&self.base[i], self.added_pods[i])
            .ok()
            .map(|_| self.free(i))
    }

    pub fn free(&self, i: usize) -> Resources {
        self.base[i].free().minus(self.added[i])
    }

    /// The pods on node `i` in this view (its own and those placed here).
    pub fn pods(&self, i: usize) -> u32 {
        self.base[i].pod_count + self.added_pods[i]
    }

    /// Whether the pod fits node `i` in this view. Room first (the pod count, then CPU
    /// and memory, as fit.go): a few compares, and most nodes fail there when the cluster
    /// is full.
    pub fn fits(&self, pod: &Pod, i: usize) -> Result<(), Misfit> {
        let node = &self.base[i];
        if self.removed.contains(&i) {
            return Err(Misfit::NotReady);
        }
        model::fits_pod_count(node, self.added_pods[i])?;
        let free = self.free(i);
        if !pod.requests.within(free) {
            return Err(if pod.requests.cpu > free.cpu + 1e-9 {
                Misfit::Cpu {
                    need: pod.requests.cpu,
                    free: free.cpu,
                }
            } else {
                Misfit::Memory {
                    need: pod.requests.memory,
                    free: free.memory,
                }
            });
        }
        model::fits_constraints(pod, node)?;
        // The base node was checked above; what was placed on it in this view only adds
        // host ports and anti-affinity (both ways: the rule is symmetric).
        for p in self.placed.get(&i).into_iter().flatten() {
            if let Some(port) = pod.host_ports.iter().find(|x| p.host_ports.contains(x)) {
                return Err(Misfit::HostPort(port.1));
            }
            if repels(pod, p) || repels(p, pod) {
                return Err(Misfit::AntiAffinity);
            }
        }
        Ok(())
    }

    pub fn place(&mut self, pod: &'a Pod, i: usize) {
        self.added[i] = self.added[i].plus(pod.requests);
        self.added_pods[i] += 1;
        self.index.set(i, self.room(i));
        if !pod.host_ports.is_empty() || !pod.labels.is_empty() || !pod.anti_affinity.is_empty() {
            self.placed.entry(i).or_default().push(pod);
        }
    }

    /// Places the pod on the first node it fits; the index, or the reason it fits none
    /// (a constraint where some node had room, else the resource), as a scan of every
    /// node in order gives them.
    pub fn place_first_fit(&mut self, pod: &'a Pod) -> Result<usize, Misfit> {
        if let Some(m) = self.over_bound(pod) {
            return Err(m);
        }
        let mut why: Option<Misfit> = None;
        let known_nowhere = self.nowhere.iter().any(|n| n.within(pod.requests));
        let mut next = if known_nowhere {
            None
        } else {
            self.index.first_from(0, pod.requests)
        };
        let any_room = next.is_some();
        while let Some(i) = next {
            match self.fits(pod, i) {
                Ok(()) => {
                    self.place(pod, i);
                    return Ok(i);
                }
                // Nodes with room fail on constraints only; the first one named is kept.
                Err(m) => {
                    if why.is_none() && !matches!(m, Misfit::NotReady) {
                        why = Some(m);
                    }
                }
            }
            next = self.index.first_from(i + 1, pod.requests);
        }
        if !any_room && !known_nowhere && self.nowhere.len() < NOWHERE_KEPT {
            self.nowhere.push(pod.requests);
        }
        Err(why
            .or_else(|| self.first_room_misfit(pod))
            .unwrap_or(Misfit::NotReady))
    }

    /// A pod over the most free CPU or memory of any node fits nowhere, and says so.
    fn over_bound(&self, pod: &Pod) -> Option<Misfit> {
        if pod.requests.within(self.bound) {
            return None;
        }
        Some(if pod.requests.cpu > self.bound.cpu + 1e-9 {
            Misfit::Cpu {
                need: pod.requests.cpu,
                free: self.bound.cpu.max(0.0),
            }
        } else {
            Misfit::Memory {
                need: pod.requests.memory,
                free: self.bound.memory.max(0.0),
            }
        })
    }

    /// The room misfit of the first node (not left out) without room for the pod: what a
    /// scan names when no node with room turned the pod away on a constraint.
    fn first_room_misfit(&self, pod: &Pod) -> Option<Misfit> {
        (0..self.base.len())
            .filter(|i| !self.removed.contains(i))
            .filter(|&i| !self.room(i).is_some_and(|r| pod.requests.within(r)))
            .find_map(|i| self.fits(pod, i).err())
    }
}

/// Whether `pod`'s required anti-affinity keeps it off a node `other` is on.
fn repels(pod: &Pod, other: &Pod) -> bool {
    pod.anti_affinity.iter().any(|term| {
        let in_ns = if term.namespaces.is_empty() {
            other.namespace == pod.namespace
        } else {
            term.namespaces.contains(&other.namespace)
        };
        in_ns && term.selector.iter().all(|r| r.matches(&other.labels, ""))
    })
}

/// The order first-fit-decreasing takes pods in: the largest share of a worker first
/// (CPU and memory together), then by name so the result never depends on input order.
pub fn decreasing(pods: &mut [&Pod], unit: Resources) {
    let share = |need: f64, of: f64| if of > 0.0 { need / of } else { 0.0 };
    let mut scored: Vec<(f64, &Pod)> = pods
        .iter()
        .map(|p| {
            let score = share(p.requests.cpu, unit.cpu) + share(p.requests.memory, unit.memory);
            (score, *p)
        })
        .collect();
    scored.sort_by(|(sa, a), (sb, b)| {
        sb.total_cmp(sa)
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.name.cmp(&b.name))
    });
    for (slot, (_, p)) in pods.iter_mut().zip(scored) {
        *slot = p;
    }
}

/// What scale-up sizing found for the pending pods.
#[derive(Debug, Default, PartialEq)]
pub struct Estimate {
    /// Pods the scheduler can place on a node that exists now (it will).
    pub schedulable: Vec<String>,
    /// Pods that fit a worker still booting (they wait for it).
    pub on_upcoming: Vec<String>,
    /// Pods placed on new workers, and how many new workers that takes.
    pub on_new: Vec<String>,
    pub new_workers: u32,
    /// Pods no new worker could run, with why (against an empty template worker).
    pub unhelpable: Vec<(String, Misfit)>,
}

/// Sizes a scale-up: pending pods first go on the existing nodes (the scheduler will place
/// them), then on `upcoming` workers still booting, then on new workers made from
/// `template`, first-fit-decreasing; a pod that does not fit an empty template is
/// unhelpable. Stops opening workers at `limit` (the rest stay unplaced: counted in none).
/// Pods in `not_existing` skip the existing nodes (the scheduler has kept them off those).
pub fn estimate(
    pending: &[&Pod],
    nodes: &[Node],
    template: &Node,
    upcoming: u32,
    limit: u32,
    not_existing: &HashSet<String>,
) -> Estimate {
    let mut out = Estimate::default();
    let mut order: Vec<&Pod> = pending.to_vec();
    decreasing(&mut order, template.allocatable);

    let mut existing = Fork::new(nodes);
    let mut rest = Vec::new();
    for p in order {
        if !not_existing.is_empty() && not_existing.contains(&p.key()) {
            rest.push(p);
            continue;
        }
        match existing.place_first_fit(p) {
            Ok(_) => out.schedulable.push(p.key()),
            Err(_) => rest.push(p),
        }
    }
    let booting = upcoming as usize;
    let mut bins = Bins::new(template, booting);
    bins.labels_read = rest.iter().any(|p| !p.anti_affinity.is_empty());
    for p in rest {
        if let Err(m) = model::fits(p, template) {
            out.unhelpable.push((p.key(), m));
            continue;
        }
        let slot = match bins.first_fit(p) {
            Some(i) => Some(i),
            None if (bins.nodes.len() - booting) < limit as usize => Some(bins.open()),
            None => None,
        };
        if let Some(i) = slot {
            bins.add(i, p);
            if i < booting {
                out.on_upcoming.push(p.key());
            } else {
                out.on_new.push(p.key());
            }
        }
    }
    out.new_workers = (bins.nodes.len() - booting) as u32;
    out
}

/// The booting and new workers of an estimate, each a copy of the template with what was
/// placed on it, indexed by free room.
struct Bins<'t> {
    template: &'t Node,
    nodes: Vec<Node>,
    index: RoomIndex,
    /// Whether a pod to place has anti-affinity, the one predicate that reads the labels
    /// of the pods on a worker: without one they are not copied onto it.
    labels_read: bool,
}

impl<'t> Bins<'t> {
    fn new(template: &'t Node, booting: usize) -> Bins<'t> {
        let nodes = vec![template.clone(); booting];
        let index = RoomIndex::new(nodes.iter().map(bin_room));
        Bins {
            template,
            nodes,
            index,
            labels_read: true,
        }
    }

    /// The first worker the pod fits (room first, through the index, then every predicate).
    fn first_fit(&self, pod: &Pod) -> Option<usize> {
        let mut next = self.index.first_from(0, pod.requests);
        while let Some(i) = next {
            if model::fits(pod, &self.nodes[i]).is_ok() {
                return Some(i);
            }
            next = self.index.first_from(i + 1, pod.requests);
        }
        None
    }

    /// Opens a new worker; its index.
    fn open(&mut self) -> usize {
        self.nodes.push(self.template.clone());
        self.index.push(bin_room(self.template));
        self.nodes.len() - 1
    }

    fn add(&mut self, i: usize, pod: &Pod) {
        let node = &mut self.nodes[i];
        if self.labels_read {
            node.add(pod);
        } else {
            node.requested = node.requested.plus(pod.requests);
            node.pod_count += 1;
            node.host_ports.extend(pod.host_ports.iter().cloned());
        }
        self.index.set(i, bin_room(&self.nodes[i]));
    }
}

/// A worker's room for one more pod, None once it holds its `allocatable.pods`.
fn bin_room(node: &Node) -> Option<Resources> {
    model::fits_pod_count(node, 0).ok().map(|_| node.free())
}

/// Whether every pod fits on the other nodes once node `removed` is gone: Ok, or the first
/// pod (largest first) that fits nowhere and why.
pub fn fit_elsewhere<'a>(
    pods: &[&'a Pod],
    nodes: &'a [Node],
    removed: usize,
) -> Result<(), (String, Resources, Misfit)> {
    let mut order: Vec<&Pod> = pods.to_vec();
    let unit = nodes
        .get(removed)
        .map(|n| n.allocatable)
        .unwrap_or_default();
    decreasing(&mut order, unit);
    let mut fork = Fork::new(nodes);
    fork.remove(removed);
    for p in order {
        if let Err(m) = fork.place_first_fit(p) {
            return Err((p.key(), p.requests, m));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::{Effect, Taint};
    use proptest::prelude::*;

    const GI: f64 = (1u64 << 30) as f64;

    fn node(name: &str, cpu: f64, used: f64) -> Node {
        Node {
            name: name.into(),
            allocatable: Resources::new(cpu, 8.0 * GI),
            requested: Resources::new(used, 0.0),
            ready: true,
            ..Node::default()
        }
    }

    fn pod(name: &str, cpu: f64) -> Pod {
        Pod {
            namespace: "d".into(),
            name: name.into(),
            requests: Resources::new(cpu, 0.5 * GI),
            ..Pod::default()
        }
    }

    fn pods(n: usize, cpu: f64) -> Vec<Pod> {
        (0..n).map(|i| pod(&format!("p{i}"), cpu)).collect()
    }

    #[test]
    fn estimate_table() {
        let template = node("template", 4.0, 0.0);
        // (pending cpu each, count, existing nodes' free cpu, upcoming, limit,
        //  schedulable, on upcoming, new workers, unhelpable)
        type Row = (f64, usize, &'static [f64], u32, u32, [usize; 4]);
        let table: &[Row] = &[
            // Six 3-core pods on 4-core workers: 6 workers, not ceil(18/4) = 5.
            (3.0, 6, &[], 0, 10, [0, 0, 6, 0]),
            // Eight 1-core pods: 2 workers.
            (1.0, 8, &[], 0, 10, [0, 0, 2, 0]),
            // Two fit the free room of existing nodes.
            (1.0, 6, &[1.0, 1.0], 0, 10, [2, 0, 1, 0]),
            // A booting worker takes four; the rest need one more.
            (1.0, 6, &[], 1, 10, [0, 4, 1, 0]),
            // Oversized: no worker can help.
            (16.0, 1, &[], 0, 10, [0, 0, 0, 1]),
            // The limit stops the count.
            (3.0, 6, &[], 0, 2, [0, 0, 2, 0]),
        ];
        for (cpu, n, free, upcoming, limit, want) in table {
            let nodes: Vec<Node> = free
                .iter()
                .enumerate()
                .map(|(i, f)| node(&format!("w{i}"), 4.0, 4.0 - f))
                .collect();
            let list = pods(*n, *cpu);
            let refs: Vec<&Pod> = list.iter().collect();
            let e = estimate(&refs, &nodes, &template, *upcoming, *limit, &HashSet::new());
            let got = [
                e.schedulable.len(),
                e.on_upcoming.len(),
                e.new_workers as usize,
                e.unhelpable.len(),
            ];
            assert_eq!(got, *want, "{cpu} x {n} on {free:?}, {upcoming} booting");
        }
    }

    #[test]
    fn unhelpable_names_the_constraint() {
        let mut template = node("template", 4.0, 0.0);
        template.taints.push(Taint {
            key: "pool".into(),
            value: "blue".into(),
            effect: Effect::NoSchedule,
        });
        let p = pod("x", 1.0);
        let e = estimate(&[&p], &[], &template, 0, 5, &HashSet::new());
        assert_eq!(e.unhelpable.len(), 1);
        assert!(e.unhelpable[0].1.to_string().contains("taint pool=blue"));
    }

    #[test]
    fn fit_elsewhere_table() {
        // (candidate's pods' cpu, other nodes' free cpu, fits)
        for (pods_cpu, free, want) in [
            (vec![1.0, 1.0], vec![2.0], true),
            (vec![1.0, 1.5], vec![2.0], false),
            (vec![1.0, 1.5], vec![1.0, 1.5], true),
            (vec![2.2], vec![2.0, 2.0], false),
            (vec![], vec![], true),
        ] {
            let mut nodes = vec![node("cand", 4.0, 0.0)];
            nodes.extend(
                free.iter()
                    .enumerate()
                    .map(|(i, f)| node(&format!("o{i}"), 4.0, 4.0 - f)),
            );
            let list: Vec<Pod> = pods_cpu
                .iter()
                .enumerate()
                .map(|(i, c)| pod(&format!("p{i}"), *c))
                .collect();
            let refs: Vec<&Pod> = list.iter().collect();
            let got = fit_elsewhere(&refs, &nodes, 0);
            assert_eq!(got.is_ok(), want, "{pods_cpu:?} on {free:?}: {got:?}");
        }
    }

    #[test]
    fn placed_pods_keep_their_host_ports_and_anti_affinity() {
        let nodes = vec![node("a", 8.0, 0.0)];
        let mut p1 = pod("p1", 1.0);
        p1.host_ports.push(("TCP".into(), 80));
        let p2 = p1.clone();
        let mut fork = Fork::new(&nodes);
        assert_eq!(fork.place_first_fit(&p1), Ok(0));
        assert_eq!(fork.place_first_fit(&p2), Err(Misfit::HostPort(80)));
    }

    /// cluster-autoscaler's estimator table (estimator/binpacking_estimator_test.go
    /// `TestBinpackingEstimate`), the rows this model expresses: every template there
    /// allows 10 pods. Only the estimator's part: no existing node (CA's estimator never
    /// places on one; here those are the scheduler's).
    #[test]
    fn cluster_autoscalers_binpacking_rows() {
        const MI: f64 = (1u64 << 20) as f64;
        let template = |millicores: f64, mib: f64| Node {
            name: "template".into(),
            allocatable: Resources::new(millicores / 1000.0, mib * MI),
            ready: true,
            max_pods: Some(10),
            ..Node::default()
        };
        let group = |n: usize, millicores: f64, mib: f64, port: Option<i32>| -> Vec<Pod> {
            (0..n)
                .map(|i| Pod {
                    namespace: "universe".into(),
                    name: format!("estimatee-{millicores}-{i}"),
                    requests: Resources::new(millicores / 1000.0, mib * MI),
                    host_ports: port.map(|p| ("TCP".to_string(), p)).into_iter().collect(),
                    ..Pod::default()
                })
                .collect()
        };
        // (name, template, pods, max nodes, expected nodes)
        let rows: Vec<(&str, Node, Vec<Pod>, u32, u32)> = vec![
            (
                "simple resource-based binpacking",
                template(350.0 * 3.0 - 50.0, 2.0 * 1000.0),
                group(10, 350.0, 1000.0, None),
                100,
                5,
            ),
            (
                "pods-per-node bound binpacking",
                template(10000.0, 20000.0),
                group(20, 10.0, 100.0, None),
                100,
                2,
            ),
            (
                "hostport conflict forces pod-per-node",
                template(1000.0, 5000.0),
                group(8, 200.0, 1000.0, Some(5555)),
                100,
                8,
            ),
            (
                "limiter cuts binpacking",
                template(1000.0, 5000.0),
                group(20, 500.0, 1000.0, None),
                5,
                5,
            ),
            (
                "decreasing ordered pods are processed first",
                template(1000.0, 5000.0),
                [
                    group(10, 50.0, 1000.0, None),
                    group(10, 500.0, 1000.0, None),
                ]
                .concat(),
                5,
                5,
            ),
        ];
        for (name, t, list, limit, want) in rows {
            let refs: Vec<&Pod> = list.iter().collect();
            let e = estimate(&refs, &[], &t, 0, limit, &HashSet::new());
            assert_eq!(e.new_workers, want, "{name}: {e:?}");
        }
    }

    #[test]
    fn pods_per_node_table() {
        // Tiny pods (0.01 CPU each): only the pod count bounds them.
        let tiny = |n: usize| -> Vec<Pod> { (0..n).map(|i| pod(&format!("t{i}"), 0.01)).collect() };
        let bounded = |name: &str, max: Option<u32>, on: u32| Node {
            max_pods: max,
            pod_count: on,
            allocatable: Resources::new(64.0, 512.0 * GI),
            ..node(name, 64.0, 0.0)
        };
        // (pending, existing nodes (allocatable.pods, pods on it), template's
        //  allocatable.pods and DaemonSet pods, [schedulable, new workers, unhelpable])
        type Row = (
            usize,
            Vec<(Option<u32>, u32)>,
            (Option<u32>, u32),
            [usize; 3],
        );
        let table: Vec<Row> = vec![
            // The case: 40 tiny pods, workers of max-pods=20.
            (40, vec![], (Some(20), 0), [0, 2, 0]),
            (41, vec![], (Some(20), 0), [0, 3, 0]),
            // DaemonSet pods take places on every new worker: 2 of 20 -> 18 each.
            (40, vec![], (Some(20), 2), [0, 3, 0]),
            // Unknown bound: as before, one worker takes them all.
            (200, vec![], (None, 0), [0, 1, 0]),
            // The kubelet's default: 200 pods need 2 workers of 110.
            (200, vec![], (Some(110), 0), [0, 2, 0]),
            // A node with 5 places left takes 5; the rest need a worker.
            (12, vec![(Some(110), 105)], (Some(110), 0), [5, 1, 0]),
            // A full node takes none, whatever its CPU; one without a known bound takes all.
            (12, vec![(Some(110), 110)], (Some(110), 0), [0, 1, 0]),
            (12, vec![(None, 500)], (Some(110), 0), [12, 0, 0]),
            // A template its DaemonSets fill: no new worker can run a pod.
            (3, vec![], (Some(4), 4), [0, 0, 3]),
        ];
        for (n, existing, (t_max, t_ds), want) in table {
            let nodes: Vec<Node> = existing
                .iter()
                .enumerate()
                .map(|(i, (max, on))| bounded(&format!("w{i}"), *max, *on))
                .collect();
            let template = bounded("template", t_max, t_ds);
            let list = tiny(n);
            let refs: Vec<&Pod> = list.iter().collect();
            let e = estimate(&refs, &nodes, &template, 0, 100, &HashSet::new());
            let got = [
                e.schedulable.len(),
                e.new_workers as usize,
                e.unhelpable.len(),
            ];
            assert_eq!(
                got, want,
                "{n} pods on {existing:?}, template {t_max:?}/{t_ds}"
            );
            for (_, why) in &e.unhelpable {
                assert!(
                    matches!(
                        why,
                        Misfit::TooManyPods {
                            used: 4,
                            allowed: 4
                        }
                    ),
                    "its own reason: {why}"
                );
            }
        }
        // Scale-down: a worker's pods fit elsewhere only where places are left.
        let nodes = vec![bounded("cand", Some(110), 3), bounded("o1", Some(110), 108)];
        let list = tiny(3);
        let refs: Vec<&Pod> = list.iter().collect();
        let (_, _, why) = fit_elsewhere(&refs, &nodes, 0).unwrap_err();
        assert_eq!(
            why,
            Misfit::TooManyPods {
                used: 110,
                allowed: 110
            }
        );
        assert!(fit_elsewhere(&refs[..2], &nodes, 0).is_ok());
    }

    /// The placement before the room index, kept as the oracle: every node scanned in
    /// order for the existing nodes, every worker in order for the new ones.
    mod oracle {
        use super::super::*;

        pub fn place_first_fit<'a>(fork: &mut Fork<'a>, pod: &'a Pod) -> Result<usize, Misfit> {
            if let Some(m) = fork.over_bound(pod) {
                return Err(m);
            }
            let mut why: Option<Misfit> = None;
            for i in 0..fork.base.len() {
                match fork.fits(pod, i) {
                    Ok(()) => {
                        fork.place(pod, i);
                        return Ok(i);
                    }
                    Err(m) => {
                        let constraint = !model::is_room(&m);
                        let keep = match &why {
                            None => true,
                            Some(w) if model::is_room(w) => constraint,
                            Some(_) => false,
                        };
                        if keep && !(constraint && matches!(m, Misfit::NotReady)) {
                            why = Some(m);
                        }
                    }
                }
            }
            Err(why.unwrap_or(Misfit::NotReady))
        }

        pub fn estimate(
            pending: &[&Pod],
            nodes: &[Node],
            template: &Node,
            upcoming: u32,
            limit: u32,
        ) -> Estimate {
            let mut out = Estimate::default();
            let mut order: Vec<&Pod> = pending.to_vec();
            decreasing(&mut order, template.allocatable);
            let mut existing = Fork::new(nodes);
            let mut rest = Vec::new();
            for p in order {
                match place_first_fit(&mut existing, p) {
                    Ok(_) => out.schedulable.push(p.key()),
                    Err(_) => rest.push(p),
                }
            }
            let mut bins: Vec<Node> = (0..upcoming).map(|_| template.clone()).collect();
            let booting = upcoming as usize;
            for p in rest {
                if let Err(m) = model::fits(p, template) {
                    out.unhelpable.push((p.key(), m));
                    continue;
                }
                let slot = match bins.iter().position(|b| model::fits(p, b).is_ok()) {
                    Some(i) => Some(i),
                    None if (bins.len() - booting) < limit as usize => {
                        bins.push(template.clone());
                        Some(bins.len() - 1)
                    }
                    None => None,
                };
                if let Some(i) = slot {
                    bins[i].add(p);
                    if i < booting {
                        out.on_upcoming.push(p.key());
                    } else {
                        out.on_new.push(p.key());
                    }
                }
            }
            out.new_workers = (bins.len() - booting) as u32;
            out
        }
    }

    /// A random node for the equivalence test: free room in quarters (ties and exact
    /// fits), a pod bound, and now and then not ready, cordoned, tainted or a port taken.
    fn any_node() -> impl Strategy<Value = Node> {
        (
            (0u32..12, 0u32..12),
            proptest::option::of(0u32..8),
            0u32..6,
            (0u32..10, 0u32..10, 0u32..10, 0u32..10),
        )
            .prop_map(|((c, m), max, on, (ready, cordon, taint, port))| {
                let mut n = Node {
                    name: "n".into(),
                    allocatable: Resources::new(3.0, 3.0 * GI),
                    requested: Resources::new(3.0 - c as f64 * 0.25, (3.0 - m as f64 * 0.25) * GI),
                    ready: ready > 0,
                    unschedulable: cordon == 0,
                    max_pods: max,
                    pod_count: on,
                    ..Node::default()
                };
                if taint == 0 {
                    n.taints.push(Taint {
                        key: "pool".into(),
                        value: "blue".into(),
                        effect: Effect::NoSchedule,
                    });
                }
                if port == 0 {
                    n.host_ports.push(("TCP".into(), 80));
                }
                n
            })
    }

    /// A random pod: requests in quarters, now and then a host port or anti-affinity to
    /// its own kind (both make a node that has room turn it away).
    fn any_pod() -> impl Strategy<Value = (u32, u32, u32, u32)> {
        (0u32..10, 0u32..10, 0u32..8, 0u32..8)
    }

    fn make_pod(i: usize, (c, m, port, anti): (u32, u32, u32, u32)) -> Pod {
        let mut p = Pod {
            namespace: "d".into(),
            name: format!("p{i:03}"),
            requests: Resources::new(c as f64 * 0.25, m as f64 * 0.25 * GI),
            ..Pod::default()
        };
        if port == 0 {
            p.host_ports.push(("TCP".into(), 80));
        }
        if anti == 0 {
            p.labels.insert("app".into(), "solo".into());
            p.anti_affinity.push(crate::plan::model::AntiAffinity {
                selector: vec![crate::plan::model::Requirement {
                    key: "app".into(),
                    op: crate::plan::model::Op::In,
                    values: vec!["solo".into()],
                }],
                namespaces: vec![],
            });
        }
        p
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The indexed placement chooses the node the plain scan chooses, pod by pod, with
        /// the same reason when none fits, on the existing nodes (one left out, as the
        /// scale-down check does) and in a whole estimate onto booting and new workers.
        #[test]
        fn indexed_placement_is_the_scans(
            nodes in proptest::collection::vec(any_node(), 0..12),
            shapes in proptest::collection::vec(any_pod(), 0..40),
            removed in 0usize..16,
            template in any_node(),
            upcoming in 0u32..3,
            limit in 0u32..12,
        ) {
            let list: Vec<Pod> = shapes.into_iter().enumerate().map(|(i, s)| make_pod(i, s)).collect();
            let (mut new, mut old) = (Fork::new(&nodes), Fork::new(&nodes));
            new.remove(removed);
            old.remove(removed);
            for p in &list {
                prop_assert_eq!(new.place_first_fit(p), oracle::place_first_fit(&mut old, p), "{}", p.name);
            }
            let template = Node { ready: true, unschedulable: false, ..template };
            let refs: Vec<&Pod> = list.iter().collect();
            let got = estimate(&refs, &nodes, &template, upcoming, limit, &HashSet::new());
            prop_assert_eq!(got, oracle::estimate(&refs, &nodes, &template, upcoming, limit));
        }
    }

    proptest! {
        /// Placement never puts more pods on a node than its `allocatable.pods`, on
        /// existing nodes (the Fork) and on booting and new workers (the estimate).
        #[test]
        fn placement_never_exceeds_allocatable_pods(
            existing in proptest::collection::vec((0u32..12, 0u32..14), 0..6),
            t_max in 1u32..12,
            t_ds in 0u32..4,
            upcoming in 0u32..3,
            cpus in proptest::collection::vec(0.0f64..1.0, 0..60),
        ) {
            let nodes: Vec<Node> = existing.iter().enumerate().map(|(i, (max, on))| Node {
                max_pods: Some(*max),
                pod_count: *on,
                ..node(&format!("n{i}"), 8.0, 0.0)
            }).collect();
            let list: Vec<Pod> = cpus.iter().enumerate()
                .map(|(i, c)| Pod { requests: Resources::new(*c, 0.0), ..pod(&format!("p{i}"), 0.0) })
                .collect();
            let mut fork = Fork::new(&nodes);
            for p in &list {
                let _ = fork.place_first_fit(p);
            }
            for (i, n) in nodes.iter().enumerate() {
                let max = n.max_pods.unwrap();
                prop_assert!(fork.pods(i) <= max.max(n.pod_count), "node {i}: {} pods of {max}", fork.pods(i));
            }
            let template = Node {
                max_pods: Some(t_max),
                pod_count: t_ds,
                ..node("t", 8.0, 0.0)
            };
            let refs: Vec<&Pod> = list.iter().collect();
            let e = estimate(&refs, &nodes, &template, upcoming, 1000, &HashSet::new());
            let per_worker = t_max.saturating_sub(t_ds) as usize;
            prop_assert!(e.on_upcoming.len() <= upcoming as usize * per_worker);
            prop_assert!(e.on_new.len() <= e.new_workers as usize * per_worker);
            prop_assert_eq!(
                e.schedulable.len() + e.on_upcoming.len() + e.on_new.len() + e.unhelpable.len(),
                list.len()
            );
        }

        #[test]
        fn placement_never_overcommits(
            free in proptest::collection::vec(0.0f64..4.0, 0..6),
            cpus in proptest::collection::vec(0.1f64..5.0, 0..20),
        ) {
            let nodes: Vec<Node> = free.iter().enumerate()
                .map(|(i, f)| node(&format!("n{i}"), 4.0, 4.0 - f)).collect();
            let list: Vec<Pod> = cpus.iter().enumerate().map(|(i, c)| pod(&format!("p{i}"), *c)).collect();
            let mut fork = Fork::new(&nodes);
            for p in &list {
                let _ = fork.place_first_fit(p);
            }
            for i in 0..nodes.len() {
                prop_assert!(fork.free(i).cpu >= -1e-9, "node {i} over-committed");
            }
            let template = node("t", 4.0, 0.0);
            let refs: Vec<&Pod> = list.iter().collect();
            let e = estimate(&refs, &nodes, &template, 0, 100, &HashSet::new());
            for (key, _) in &e.unhelpable {
                let p = list.iter().find(|p| p.key() == *key).unwrap();
                prop_assert!(model::fits(p, &template).is_err(), "{key} is unhelpable but fits the template");
            }
            prop_assert_eq!(
                e.schedulable.len() + e.on_new.len() + e.unhelpable.len(),
                list.len()
            );
        }
    }
}
