//! The decision's rules, one file each, each a short pure function with its own table test:
//! counting the workers (`count`), the health guard (`health`), the `min_nodes` floor
//! (`floor`), scale-up (`scale_up`) and scale-down (`scale_down`). `plan::decide` calls them
//! in that order.

pub mod count;
pub mod floor;
pub mod health;
pub mod pending;
pub mod scale_down;
pub mod scale_up;
pub mod unneeded;

use crate::state::time::Timestamp;
use std::time::Duration;

pub(crate) fn pct(v: f64) -> String {
    format!("{v:.1}%")
}

/// Waits on `since + wait`; `Some(end)` while it is still running.
pub(crate) fn running(
    since: Option<Timestamp>,
    wait: Duration,
    now: Timestamp,
) -> Option<Timestamp> {
    let end = since?.plus(wait);
    (now < end).then_some(end)
}

/// The failure back-off after a failed scale-up, while it runs: it holds the floor fill and
/// the scale-up alike, so a broken start is not retried every run.
pub(crate) fn scale_up_backoff(
    state: &crate::state::State,
    cfg: &crate::config::Config,
    now: Timestamp,
) -> Option<String> {
    running(
        state.last_scale_up_failure,
        cfg.scaling.failure_backoff.get(),
        now,
    )
    .map(|end| format!("back-off after a failed scale-up until {end}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_until_the_end_and_not_after() {
        let t = |s| Timestamp::from_secs(s);
        let wait = Duration::from_secs(60);
        for (since, now, want) in [
            (None, 100, None),
            (Some(100), 100, Some(160)),
            (Some(100), 159, Some(160)),
            (Some(100), 160, None),
            (Some(100), 500, None),
        ] {
            assert_eq!(
                running(since.map(t), wait, t(now)),
                want.map(t),
                "{since:?} {now}"
            );
        }
    }
}
