//! The health guard, as cluster-autoscaler's (clusterstate/clusterstate.go
//! `IsClusterHealthy`): the cluster is unhealthy only when more than
//! `scaling.ok_total_unready_count` (3) workers are unready *and* they are more than
//! `scaling.max_total_unready_percentage` (45 %) of the registered workers. Then every
//! action stops: removing capacity from a sick cluster makes it sicker, and replacing
//! unready workers in it piles up nodes. Both conditions, so one NotReady worker of two (a
//! Docker host rebooting) does not freeze a small pool.
//!
//! Counted as cluster-autoscaler counts (`updateReadinessStats`): a registered worker not
//! Ready yet that is still provisioning is NotStarted, one of the nodes but not one of the
//! unready. Unlike cluster-autoscaler, the nodes are this pool's workers, not every node
//! of the cluster: the control plane is not k3s-scale's to replace.

use super::count::Count;
use crate::config::Scaling;
use crate::plan::model::num;

/// Why the cluster counts as unhealthy, or None.
pub fn guard(count: &Count, cfg: &Scaling) -> Option<String> {
    let w = &count.workers;
    let registered = w.ready + w.unready;
    let unready = w.unready.saturating_sub(count.starting);
    unhealthy(
        registered,
        unready,
        cfg.ok_total_unready_count,
        cfg.max_total_unready_percentage,
    )
}

/// cluster-autoscaler's rule over `registered` nodes of which `unready` are unready:
/// `unready > ok_count && unready > max_percentage / 100 * registered`.
pub fn unhealthy(
    registered: u32,
    unready: u32,
    ok_count: u32,
    max_percentage: f64,
) -> Option<String> {
    let too_many =
        unready > ok_count && f64::from(unready) > max_percentage / 100.0 * f64::from(registered);
    too_many.then(|| {
        format!(
            "cluster unhealthy: {unready} of {registered} workers unready (limit: more than \
             {ok_count} and more than {}%)",
            num(max_percentage)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::decision::WorkerCounts;

    /// cluster-autoscaler's config in clusterstate_test.go: `MaxTotalUnreadyPercentage:
    /// 10, OkTotalUnreadyCount: 1`.
    const CA_TEST: (u32, f64) = (1, 10.0);
    /// The defaults (cluster-autoscaler's flags).
    const DEFAULT: (u32, f64) = (3, 45.0);

    #[test]
    fn unhealthy_table() {
        // ((ok count, max %), registered, unready, unhealthy, what)
        type Row = ((u32, f64), u32, u32, bool, &'static str);
        let table: &[Row] = &[
            // Rows of cluster-autoscaler's clusterstate_test.go.
            (CA_TEST, 2, 0, false, "TestOKWithScaleUp"),
            (CA_TEST, 0, 0, false, "TestEmptyOK"),
            (CA_TEST, 2, 1, false, "TestOKOneUnreadyNode"),
            (
                CA_TEST,
                2,
                1,
                false,
                "TestOKOneUnreadyNodeWithScaleDownCandidate",
            ),
            (CA_TEST, 2, 0, false, "TestMissingNodes"),
            (CA_TEST, 2, 2, true, "TestTooManyUnready"),
            (CA_TEST, 1, 0, false, "TestExpiredScaleUp"),
            (CA_TEST, 3, 0, false, "TestScaleUpBackoff, 3 nodes"),
            (CA_TEST, 4, 0, false, "TestScaleUpBackoff, 4 nodes"),
            // The defaults: both limits must be passed.
            (DEFAULT, 2, 1, false, "one NotReady worker of two"),
            (DEFAULT, 3, 3, false, "all three unready: not more than 3"),
            (DEFAULT, 4, 2, false, "2 of 4: over 45 %, not over 3"),
            (DEFAULT, 4, 4, true, "4 of 4"),
            (DEFAULT, 8, 4, true, "4 of 8: 50 %"),
            (DEFAULT, 9, 4, false, "4 of 9: 44 %, not over 45 %"),
            (DEFAULT, 20, 9, false, "9 of 20: exactly 45 % is not more"),
            (DEFAULT, 20, 10, true, "10 of 20"),
            (DEFAULT, 20, 3, false, "3 of 20"),
            ((0, 100.0), 5, 5, false, "ok count 0, 100 %: never"),
            ((0, 0.0), 5, 1, true, "ok count 0, 0 %: any unready worker"),
        ];
        for ((ok, pct), registered, unready, want, what) in table {
            let got = unhealthy(*registered, *unready, *ok, *pct);
            assert_eq!(got.is_some(), *want, "{what}: {got:?}");
        }
        assert_eq!(
            unhealthy(8, 4, 3, 45.0).unwrap(),
            "cluster unhealthy: 4 of 8 workers unready (limit: more than 3 and more than 45%)"
        );
    }

    #[test]
    fn workers_still_starting_are_nodes_but_not_unready() {
        let count = |ready, unready, starting| Count {
            workers: WorkerCounts {
                ready,
                unready,
                provisioning: starting,
                total: ready + unready,
            },
            joined: Vec::new(),
            overdue: Vec::new(),
            capacity: ready + starting,
            room: 0,
            starting,
        };
        let cfg = Scaling::default();
        // (ready, unready, of which still starting, unhealthy)
        for (ready, unready, starting, want) in [
            // Five new workers registered and booting beside one Ready: NotStarted.
            (1, 5, 5, false),
            // Four broken long ago and one booting: 4 of 6 unready.
            (1, 5, 1, true),
            (0, 4, 0, true),
            (0, 4, 1, false),
        ] {
            let got = guard(&count(ready, unready, starting), &cfg);
            assert_eq!(got.is_some(), want, "{ready} {unready} {starting}: {got:?}");
        }
    }
}
