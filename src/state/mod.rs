//! What carries memory between one-shot runs: the JSON state file (cooldowns, idle timer,
//! workers booting, the name counter, totals, recent events), how a run's outcomes are
//! recorded in it, the run lock, the instants it stores, and whether the run was asked to
//! stop. May use `config` only.

pub mod clock;
pub mod file;
pub mod lock;
pub mod records;
pub mod stop;
pub mod time;

pub use file::*;
pub use records::{
    finish_unfinished, record_failed_scale_down, record_failed_scale_up, record_scale_down,
    record_scale_up, write_ahead,
};
