//! Where each new worker goes when the pool spans several Docker hosts: a pure function of
//! the hosts' facts (capacity from the daemon's /info, the limits of the k3s-scale workers
//! already there, `max_workers`) and the worker size. No I/O: the Docker side gathers the
//! facts, this decides, and the table test below pins the rules.

use serde::Serialize;

/// Float slack when counting how many workers fit: 4 x 0.5 CPUs on 2 CPUs is exactly full.
const EPSILON: f64 = 1e-9;

/// What placement knows about one Docker host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostFacts {
    pub name: String,
    /// CPUs and memory (bytes) as the daemon reports them; None when the host could not
    /// be reached or read: it gets no worker.
    pub capacity: Option<(f64, u64)>,
    /// Sum of the CPU and memory limits of the k3s-scale workers on it (every pool).
    pub used_cpus: f64,
    pub used_memory: u64,
    /// k3s-scale workers on it (every pool).
    pub workers: u32,
    pub max_workers: Option<u32>,
}

/// The limits every new worker gets (`docker.cpus`, `docker.memory`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerSize {
    pub cpus: f64,
    pub memory: u64,
}

/// Where the workers go: one host name per placed worker, in start order, and why the
/// rest (if any) found no room.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Placement {
    pub hosts: Vec<String>,
    pub unplaced: u32,
    /// Set when `unplaced > 0`: each host and why it has no room.
    pub why: Vec<String>,
}

/// How many more workers of `size` fit on a host, or why none does.
pub fn room(h: &HostFacts, size: WorkerSize, overcommit: f64) -> Result<u32, String> {
    let Some((cpus, memory)) = h.capacity else {
        return Err(format!("{}: unreachable", h.name));
    };
    let by_max = h
        .max_workers
        .map_or(u32::MAX, |m| m.saturating_sub(h.workers));
    if by_max == 0 {
        return Err(format!(
            "{}: at max_workers {}",
            h.name,
            h.max_workers.unwrap_or_default()
        ));
    }
    let fits = |total: f64, used: f64, each: f64| -> u32 {
        let n = ((total * overcommit - used) / each + EPSILON).floor();
        if n.is_finite() && n > 0.0 {
            n.min(f64::from(u32::MAX)) as u32
        } else {
            0
        }
    };
    let by_cpu = fits(cpus, h.used_cpus, size.cpus);
    if by_cpu == 0 {
        return Err(format!(
            "{}: {} of {} CPUs taken by workers' limits (overcommit {overcommit})",
            h.name, h.used_cpus, cpus
        ));
    }
    let by_mem = fits(memory as f64, h.used_memory as f64, size.memory as f64);
    if by_mem == 0 {
        return Err(format!(
            "{}: {} of {} bytes of memory taken by workers' limits (overcommit {overcommit})",
            h.name, h.used_memory, memory
        ));
    }
    Ok(by_max.min(by_cpu).min(by_mem))
}

/// Places `count` workers one at a time, each on the host with the most room (workers of
/// this size that still fit); ties go to the host with fewer workers, then name order. So
/// equal hosts fill evenly and a bigger host takes workers until its room is down to the
/// others'. Unreachable hosts, hosts at `max_workers` and full hosts get none; whatever
/// finds no room is counted in `unplaced` with each host's reason.
pub fn place(hosts: &[HostFacts], size: WorkerSize, overcommit: f64, count: u32) -> Placement {
    let mut hosts: Vec<HostFacts> = hosts.to_vec();
    let mut out = Placement::default();
    for placed in 0..count {
        let best = hosts
            .iter()
            .enumerate()
            .filter_map(|(i, h)| Some((i, room(h, size, overcommit).ok()?)))
            .filter(|(_, r)| *r > 0)
            .max_by(|(i, a), (j, b)| {
                let (hi, hj) = (&hosts[*i], &hosts[*j]);
                a.cmp(b)
                    .then(hj.workers.cmp(&hi.workers))
                    .then(hj.name.cmp(&hi.name))
            })
            .map(|(i, _)| i);
        let Some(i) = best else {
            out.unplaced = count - placed;
            out.why = hosts
                .iter()
                .filter_map(|h| room(h, size, overcommit).err())
                .collect();
            break;
        };
        let h = &mut hosts[i];
        h.workers += 1;
        h.used_cpus += size.cpus;
        h.used_memory = h.used_memory.saturating_add(size.memory);
        out.hosts.push(h.name.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1 << 30;
    const SIZE: WorkerSize = WorkerSize {
        cpus: 1.0,
        memory: GI,
    };

    fn host(name: &str, cpus: f64, mem_gi: u64) -> HostFacts {
        HostFacts {
            name: name.into(),
            capacity: Some((cpus, mem_gi * GI)),
            used_cpus: 0.0,
            used_memory: 0,
            workers: 0,
            max_workers: None,
        }
    }
    fn with(mut h: HostFacts, workers: u32) -> HostFacts {
        h.workers = workers;
        h.used_cpus = f64::from(workers) * SIZE.cpus;
        h.used_memory = u64::from(workers) * SIZE.memory;
        h
    }
    fn down(name: &str) -> HostFacts {
        HostFacts {
            capacity: None,
            ..host(name, 0.0, 0)
        }
    }
    fn max(mut h: HostFacts, m: u32) -> HostFacts {
        h.max_workers = Some(m);
        h
    }

    #[test]
    fn placement_table() {
        type Case = (
            &'static str,
            Vec<HostFacts>,
            f64,
            u32,
            Vec<&'static str>,
            u32,
        );
        let cases: Vec<Case> = vec![
            (
                "equal hosts: spread evenly, ties by name",
                vec![host("c", 8.0, 16), host("a", 8.0, 16), host("b", 8.0, 16)],
                1.0,
                6,
                vec!["a", "b", "c", "a", "b", "c"],
                0,
            ),
            (
                "the host with the most room first, until the others catch up",
                vec![host("small", 2.0, 16), host("big", 6.0, 16)],
                1.0,
                5,
                vec!["big", "big", "big", "big", "small"],
                0,
            ),
            (
                "memory counts as well as CPUs",
                vec![host("a", 16.0, 2), host("b", 4.0, 16)],
                1.0,
                3,
                vec!["b", "b", "a"],
                0,
            ),
            (
                "equal room: fewer workers first (another pool's workers count)",
                vec![with(host("a", 5.0, 16), 1), host("b", 4.0, 16)],
                1.0,
                1,
                vec!["b"],
                0,
            ),
            (
                "unreachable host skipped",
                vec![down("a"), host("b", 4.0, 16), host("c", 4.0, 16)],
                1.0,
                3,
                vec!["b", "c", "b"],
                0,
            ),
            (
                "max_workers respected; what does not fit is left out",
                vec![
                    max(host("a", 64.0, 64), 2),
                    max(with(host("b", 64.0, 64), 2), 3),
                ],
                1.0,
                5,
                vec!["a", "a", "b"],
                2,
            ),
            (
                "a full host gets none; overcommit makes room",
                vec![with(host("a", 2.0, 2), 2)],
                1.0,
                1,
                vec![],
                1,
            ),
            (
                "over-commit 1.5 on 2 CPUs: a third worker fits",
                vec![with(host("a", 2.0, 4), 2)],
                1.5,
                2,
                vec!["a"],
                1,
            ),
            (
                "no host reachable: nothing placed",
                vec![down("a"), down("b")],
                1.0,
                2,
                vec![],
                2,
            ),
        ];
        for (name, hosts, oc, count, want, unplaced) in cases {
            let p = place(&hosts, SIZE, oc, count);
            assert_eq!(p.hosts, want, "{name}");
            assert_eq!(p.unplaced, unplaced, "{name}");
            assert_eq!(p.why.is_empty(), unplaced == 0, "{name}: {:?}", p.why);
        }
    }

    #[test]
    fn why_names_each_host_and_its_reason() {
        let hosts = [
            down("a"),
            max(with(host("b", 8.0, 8), 1), 1),
            with(host("c", 2.0, 8), 2),
            with(host("d", 8.0, 2), 2),
        ];
        let p = place(&hosts, SIZE, 1.0, 1);
        assert_eq!(p.unplaced, 1);
        assert_eq!(p.why.len(), 4, "{:?}", p.why);
        assert_eq!(p.why[0], "a: unreachable");
        assert_eq!(p.why[1], "b: at max_workers 1");
        assert!(p.why[2].starts_with("c: 2 of 2 CPUs"), "{}", p.why[2]);
        assert!(
            p.why[3].starts_with("d: 2147483648 of 2147483648 bytes"),
            "{}",
            p.why[3]
        );
    }

    #[test]
    fn room_counts_what_still_fits() {
        assert_eq!(room(&host("a", 4.0, 16), SIZE, 1.0), Ok(4));
        // Exactly full after float sums (0.1 steps): no spurious extra worker, no lost one.
        let small = WorkerSize {
            cpus: 0.1,
            memory: 1,
        };
        let mut h = host("a", 1.0, 1);
        h.used_cpus = (0..7).map(|_| 0.1).sum();
        assert_eq!(room(&h, small, 1.0), Ok(3));
        assert_eq!(
            room(&max(with(host("a", 64.0, 64), 3), 5), SIZE, 1.0),
            Ok(2)
        );
    }
}
