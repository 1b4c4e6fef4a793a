//! The floor: below `min_nodes`, add what is missing, whatever the signals and the cooldown
//! say. The health guard and the failure back-off still hold, so a sick cluster does not
//! pile up workers and a broken start is not retried every run.

use super::count::Count;
use super::scale_up_backoff;
use crate::config::Config;
use crate::plan::decision::{Action, Plan};
use crate::state::State;
use crate::state::time::Timestamp;

/// Applies the floor when capacity is below `min_nodes`; true when it did (the plan is
/// then final).
pub fn apply(
    count: &Count,
    unhealthy: Option<&str>,
    state: &State,
    cfg: &Config,
    now: Timestamp,
    plan: &mut Plan,
) -> bool {
    let limits = &cfg.limits;
    if count.capacity >= limits.min_nodes {
        return false;
    }
    let missing = (limits.min_nodes - count.capacity).min(count.room);
    plan.reasons.push(format!(
        "Ready and booting workers {} < min_nodes {}",
        count.capacity, limits.min_nodes
    ));
    if let Some(why) = unhealthy {
        plan.blocked_by.push(why.to_string());
    } else if missing == 0 {
        plan.blocked_by.push(format!(
            "at max_nodes {} ({} workers, {} unready)",
            limits.max_nodes, count.workers.total, count.workers.unready
        ));
    } else if let Some(why) = scale_up_backoff(state, cfg, now) {
        plan.blocked_by.push(why);
    } else {
        plan.action = Action::ScaleUp;
        plan.count = missing;
    }
    plan.low_since = None;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::decision::WorkerCounts;

    fn count(ready: u32, unready: u32, provisioning: u32, max: u32) -> Count {
        let total = ready + unready + provisioning;
        Count {
            workers: WorkerCounts {
                ready,
                unready,
                provisioning,
                total,
            },
            joined: Vec::new(),
            overdue: Vec::new(),
            capacity: ready + provisioning,
            room: max.saturating_sub(total),
            starting: 0,
        }
    }

    #[test]
    fn floor_table() {
        let mut cfg = Config::default();
        cfg.limits.min_nodes = 3;
        cfg.limits.max_nodes = 4;
        let now = Timestamp::from_secs(10_000);
        let failed = State {
            last_scale_up_failure: Some(Timestamp::from_secs(9_990)),
            ..State::default()
        };
        let fresh = State::default();
        // (count, unhealthy, state, applies, action, count, blocked_by contains)
        let table = [
            (count(3, 0, 0, 4), None, &fresh, false, Action::None, 0, ""),
            (count(2, 0, 1, 4), None, &fresh, false, Action::None, 0, ""),
            (
                count(1, 0, 0, 4),
                None,
                &fresh,
                true,
                Action::ScaleUp,
                2,
                "",
            ),
            // Capped by max_nodes: 2 unready take the room.
            (
                count(1, 2, 0, 4),
                None,
                &fresh,
                true,
                Action::ScaleUp,
                1,
                "",
            ),
            (
                count(0, 4, 0, 4),
                None,
                &fresh,
                true,
                Action::None,
                0,
                "at max_nodes 4",
            ),
            (
                count(1, 0, 0, 4),
                Some("sick"),
                &fresh,
                true,
                Action::None,
                0,
                "sick",
            ),
            (
                count(1, 0, 0, 4),
                None,
                &failed,
                true,
                Action::None,
                0,
                "back-off",
            ),
        ];
        for (c, sick, st, applies, action, n, blocked) in table {
            let mut plan = Plan::none(c.workers.clone());
            plan.low_since = Some(now);
            let what = format!("{c:?} {sick:?}");
            assert_eq!(apply(&c, sick, st, &cfg, now, &mut plan), applies, "{what}");
            assert_eq!((plan.action, plan.count), (action, n), "{what}");
            assert!(plan.blocked_by.iter().any(|b| b.contains(blocked)) || blocked.is_empty());
            assert_eq!(
                plan.low_since.is_none(),
                applies,
                "{what}: idle timer reset"
            );
        }
    }
}
