//! `k3s-scale simulate`: what would this config do to this load? A scenario (or a day of
//! history read back from Prometheus) is replayed on a simulated cluster through the same
//! run `evaluate` makes (`run::evaluate::decide_and_act`: the decision, the cluster model,
//! state transitions, cooldowns, idle timers, provisioning and joins), with a virtual clock.
//! Nothing outside is touched: no Docker, Kubernetes or state file (Prometheus only when
//! replaying, read-only). A layer above `run`, below `cli`; may use every layer below.

pub mod chart;
pub mod engine;
pub mod output;
pub mod replay;
pub mod scenario;
pub mod world;

pub use engine::{Simulation, simulate};
pub use scenario::{Scenario, ScenarioError};
