//! k3s-scale as a library: the modules the binary is built from, public so that the
//! integration tests and benchmarks exercise the same code. One folder per layer; a layer
//! imports only from the layers below it (docs/architecture.md):
//!
//! `cli` > `sim` > `run` > {`signals`, `kube`, `docker`} > `plan` > `state` > `config`

pub mod cli;
pub mod config;
pub mod docker;
pub mod kube;
pub mod plan;
pub mod run;
pub mod signals;
pub mod sim;
pub mod state;
