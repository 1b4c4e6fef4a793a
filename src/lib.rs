//! k3s-scale as a library: the modules the binary is built from, public so that the
//! integration tests and benchmarks exercise the same code.

pub mod answer;
pub mod budgets;
pub mod cli;
pub mod commands;
pub mod completions;
pub mod config;
pub mod decide;
pub mod docker;
pub mod drain;
pub mod drain_run;
pub mod error;
pub mod evaluate;
pub mod executor;
pub mod kube;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod prometheus;
pub mod promql;
pub mod reconcile;
pub mod report;
pub mod scale_down;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod time;
pub mod units;
pub mod workers;
