//! The health guard: cluster-autoscaler halts when more than 45 % (or more than 3) of the
//! nodes are unready: removing capacity from a sick cluster makes it sicker, and replacing
//! unready workers in it piles up nodes.

use crate::plan::decision::WorkerCounts;

pub const MAX_UNREADY_FRACTION: f64 = 0.45;
pub const MAX_UNREADY_NODES: usize = 3;

/// Why the cluster counts as unhealthy, or None.
pub fn unhealthy(workers: &WorkerCounts) -> Option<String> {
    let registered = workers.ready + workers.unready;
    let too_many = workers.unready > MAX_UNREADY_NODES as u32
        || (registered > 0
            && f64::from(workers.unready) > MAX_UNREADY_FRACTION * f64::from(registered));
    too_many.then(|| {
        format!(
            "cluster unhealthy: {} of {} workers unready (limit: more than {} or {:.0}%)",
            workers.unready,
            registered,
            MAX_UNREADY_NODES,
            MAX_UNREADY_FRACTION * 100.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_table() {
        // (ready, unready, unhealthy)
        for (ready, unready, want) in [
            (0, 0, false),
            (3, 0, false),
            (0, 1, true),
            (2, 1, false),
            (1, 1, true),
            (20, 3, false),
            (20, 4, true),
            (11, 9, true),
            (12, 9, true),
        ] {
            let w = WorkerCounts {
                ready,
                unready,
                provisioning: 0,
                total: ready + unready,
            };
            assert_eq!(
                unhealthy(&w).is_some(),
                want,
                "{ready} ready, {unready} unready"
            );
        }
    }
}
