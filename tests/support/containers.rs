//! An in-memory `WorkerContainers`: which workers have a managed container, which were
//! removed, and switches to make it fail. Cloned handles share one state, so a test keeps
//! one to look at after handing a boxed clone to the code under test.

use k3s_scale::run::scale_down::{ContainerError, WorkerContainers};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Default)]
struct Inner {
    containers: BTreeSet<String>,
    /// Workers whose container is stopped (and still there).
    stopped: BTreeSet<String>,
    removed: Vec<String>,
    /// Every stop and remove, in order, with when it happened ("stop w1", "remove w1").
    ops: Vec<(Instant, String)>,
    fail_stop: bool,
    fail_remove: bool,
    fail_query: bool,
}

#[derive(Clone, Default)]
pub struct FakeContainers(Arc<Mutex<Inner>>);

impl FakeContainers {
    /// Managed containers (with their volumes) for these workers.
    pub fn with(names: &[&str]) -> FakeContainers {
        let f = FakeContainers::default();
        f.0.lock().unwrap().containers = names.iter().map(|s| s.to_string()).collect();
        f
    }
    pub fn exists(&self, name: &str) -> bool {
        self.0.lock().unwrap().containers.contains(name)
    }
    pub fn removed(&self) -> Vec<String> {
        self.0.lock().unwrap().removed.clone()
    }
    pub fn is_stopped(&self, name: &str) -> bool {
        self.0.lock().unwrap().stopped.contains(name)
    }
    /// Stops and removes in order, with when each happened.
    pub fn ops(&self) -> Vec<(Instant, String)> {
        self.0.lock().unwrap().ops.clone()
    }
    pub fn fail_stop(&self) {
        self.0.lock().unwrap().fail_stop = true;
    }
    pub fn fail_remove(&self) {
        self.0.lock().unwrap().fail_remove = true;
    }
    pub fn fail_query(&self) {
        self.0.lock().unwrap().fail_query = true;
    }
    pub fn boxed(&self) -> Box<dyn WorkerContainers> {
        Box::new(self.clone())
    }
}

impl WorkerContainers for FakeContainers {
    fn is_managed(&self, worker: &str) -> Result<bool, ContainerError> {
        let i = self.0.lock().unwrap();
        if i.fail_query {
            return Err("fake: Docker unreachable".into());
        }
        Ok(i.containers.contains(worker))
    }

    fn stop(&mut self, worker: &str) -> Result<(), ContainerError> {
        let mut i = self.0.lock().unwrap();
        if i.fail_stop {
            return Err("fake: container stop failed".into());
        }
        i.ops.push((Instant::now(), format!("stop {worker}")));
        if i.containers.contains(worker) {
            i.stopped.insert(worker.to_string());
        }
        Ok(())
    }

    fn remove(&mut self, worker: &str) -> Result<(), ContainerError> {
        let mut i = self.0.lock().unwrap();
        if i.fail_remove {
            return Err("fake: container removal failed".into());
        }
        i.ops.push((Instant::now(), format!("remove {worker}")));
        i.stopped.remove(worker);
        i.containers.remove(worker);
        i.removed.push(worker.to_string());
        Ok(())
    }
}
