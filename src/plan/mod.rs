//! The plan: everything pure that decides, with no I/O and no clock reads. `decide` takes
//! (snapshot, state, config, now) and returns a `Plan` (`decision`) by calling one function
//! per rule (`rules`) over the cluster model (`model`: nodes, pods and their constraints;
//! `cluster`: the model built from a snapshot; `placement`: which pods fit where);
//! `reconcile` plans drift repairs from the listings of Docker and Kubernetes; `snapshot`
//! is what one Prometheus query tells, `sources` lets the API's word on what exists now win
//! over it, and `view` composes the one snapshot a run decides on from every source;
//! `names` hands out worker names; `worker_hosts` picks the Docker host of each new worker.
//! May use `state` and `config` only.

pub mod cluster;
pub mod decide;
pub mod decision;
pub mod model;
pub mod names;
pub mod placement;
pub mod reconcile;
pub mod room_index;
pub mod rules;
pub mod snapshot;
pub mod sources;
pub mod view;
pub mod worker_hosts;
