//! k3s-scale as a library: the modules the binary is built from, public so that the
//! integration tests and benchmarks exercise the same code.

pub mod cli;
pub mod commands;
pub mod config;
pub mod decide;
pub mod docker;
pub mod error;
pub mod evaluate;
pub mod lock;
pub mod logging;
pub mod prometheus;
pub mod promql;
pub mod report;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod time;
pub mod units;
pub mod workers;
