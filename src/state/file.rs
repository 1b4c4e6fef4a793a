//! The JSON state file that carries memory between one-shot runs: cooldown timestamps,
//! since-when the cluster has been idle, workers still booting, the worker-name counter,
//! running totals for metrics and recent events. Written atomically, mode 0600, in a
//! folder no other user can write (`config::files`).

use crate::config::files::{self, FileError, Folder};
use crate::state::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const STATE_VERSION: u32 = 1;
/// How many recent events the state keeps (for `status` and post-mortems).
pub const MAX_EVENTS: usize = 50;
/// A state file is a few KiB; anything past this is refused rather than read into memory.
pub const MAX_STATE_BYTES: u64 = 4 << 20;

/// What every message about an unusable state file ends with.
const RESET_HINT: &str = "run `k3s-scale state reset` to move it aside and start fresh";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state {path}: {1}", path = .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error(
        "state {path} is {1} bytes, over the {MAX_STATE_BYTES}-byte limit; {RESET_HINT}",
        path = .0.display()
    )]
    TooLarge(PathBuf, u64),
    #[error("state {path} is corrupt ({1}); {RESET_HINT}", path = .0.display())]
    Corrupt(PathBuf, String),
    #[error(
        "state {path} has version {1}, this k3s-scale understands {STATE_VERSION}; {RESET_HINT}",
        path = .0.display()
    )]
    Version(PathBuf, u32),
    #[error("cannot write state {path}: {1}", path = .0.display())]
    Write(PathBuf, #[source] std::io::Error),
    /// The state path is unsafe or unusable (a link, a folder, a folder others can write):
    /// a configuration problem (exit 2).
    #[error("state: {0}")]
    Refused(#[source] FileError),
}

impl StateError {
    /// A file error while reading (`write`: false) or writing the state at `path`.
    fn from_file(path: &Path, e: FileError, write: bool) -> StateError {
        match e {
            FileError::Refused { .. } => StateError::Refused(e),
            FileError::Io(p, io) => {
                // Name the file that failed when it is not the state itself (the folder,
                // the temp file).
                let io = if p == path {
                    io
                } else {
                    std::io::Error::new(io.kind(), format!("{}: {io}", p.display()))
                };
                if write {
                    StateError::Write(path.into(), io)
                } else {
                    StateError::Read(path.into(), io)
                }
            }
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub last_scale_up: Option<Timestamp>,
    #[serde(default)]
    pub last_scale_down: Option<Timestamp>,
    #[serde(default)]
    pub last_scale_up_failure: Option<Timestamp>,
    #[serde(default)]
    pub last_scale_down_failure: Option<Timestamp>,
    /// Since when every signal has been below its scale-down threshold (None: not low now).
    #[serde(default)]
    pub low_since: Option<Timestamp>,
    /// Workers started whose Node has not yet been seen Ready.
    #[serde(default)]
    pub provisioning: Vec<Provisioning>,
    /// Per worker: since when it has been unneeded (its own requests under the scale-down
    /// thresholds). One worker's timer restarting leaves the others' alone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unneeded_since: BTreeMap<String, Timestamp>,
    /// Per worker: since when it has been seen NotReady.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unready_since: BTreeMap<String, Timestamp>,
    /// Unschedulable pods the model placed on an existing node, since when: past
    /// `SCHEDULER_TRUST` the scheduler is believed and they count for scale-up.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fits_since: BTreeMap<String, Timestamp>,
    /// The workers a scale-up started for each pending pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scaled_for: BTreeMap<String, Vec<String>>,
    /// Pods still unschedulable after the workers started for them joined: no reason to
    /// scale up until then.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_backoff: BTreeMap<String, Timestamp>,
    /// The next worker number; only ever grows, so a name is never reused.
    #[serde(default = "first_index")]
    pub next_worker_index: u64,
    #[serde(default)]
    pub totals: Totals,
    #[serde(default)]
    pub events: VecDeque<Event>,
    /// Kubernetes Events written lately, for their rate limit and count
    /// (`events::next_step`); entries older than the apiserver's event TTL are dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub posted: Vec<PostedEvent>,
    /// An action written ahead of its first outside call (a scale-down, `drain NODE`,
    /// repairs that remove): saved before anything changes, cleared when its outcome is
    /// recorded. Still here at load, it belongs to a run that was killed half-way
    /// (`records::finish_unfinished`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting: Option<Acting>,
}

/// What a run is about to do, on disk before it starts (`State::acting`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Acting {
    /// "scale_down", "drain" or "repair".
    pub kind: String,
    /// The workers or nodes it is about (a scale-down: its candidates, best first).
    pub about: Vec<String>,
    pub started_at: Timestamp,
}

/// A Kubernetes Event k3s-scale wrote: which object and reason it is about, the Event's
/// name, how often the thing happened and when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostedEvent {
    /// `namespace/kind/name/uid/reason` of the object the Event is about.
    pub key: String,
    pub namespace: String,
    pub name: String,
    /// Times it happened (the Event's `count`), counting runs within the rate limit.
    pub count: u32,
    /// When the Event was created, and when it was last written.
    pub first: Timestamp,
    pub written: Timestamp,
}

fn first_index() -> u64 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Provisioning {
    pub name: String,
    pub started_at: Timestamp,
    /// The Docker host it was started on (`docker.hosts[].name`); absent in older states
    /// and for adopted workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Running totals, exported as Prometheus counters; they only grow, and only when the
/// thing they count happened.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Totals {
    pub runs: u64,
    pub scale_ups: u64,
    pub scale_downs: u64,
    pub workers_added: u64,
    pub workers_removed: u64,
    pub failed_scale_ups: u64,
    pub failed_scale_downs: u64,
    pub evicted_pods: u64,
    pub repairs: u64,
    /// Errors by kind (config, lock, metrics, action, state, internal).
    pub errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub at: Timestamp,
    pub kind: String,
    pub message: String,
}

impl State {
    pub fn fresh() -> State {
        State {
            version: STATE_VERSION,
            next_worker_index: 1,
            ..State::default()
        }
    }

    /// Reads the state file; a missing file is a fresh state. A link, or anything but a
    /// regular file, at its name is refused, and so is a folder others can write.
    pub fn load(path: &Path) -> Result<State, StateError> {
        let Some((file, meta)) =
            files::open_own(path).map_err(|e| StateError::from_file(path, e, false))?
        else {
            return Ok(State::fresh());
        };
        if meta.len() > MAX_STATE_BYTES {
            return Err(StateError::TooLarge(path.into(), meta.len()));
        }
        let mut bytes = Vec::new();
        file.take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| StateError::Read(path.into(), e))?;
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(StateError::TooLarge(path.into(), bytes.len() as u64));
        }
        State::from_json(&bytes).map_err(|e| match e {
            StateError::Corrupt(_, m) => StateError::Corrupt(path.into(), m),
            StateError::Version(_, v) => StateError::Version(path.into(), v),
            other => other,
        })
    }

    pub fn from_json(bytes: &[u8]) -> Result<State, StateError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: Option<u32>,
        }
        let v: VersionOnly = serde_json::from_slice(bytes)
            .map_err(|e| StateError::Corrupt(PathBuf::new(), e.to_string()))?;
        match v.version {
            Some(STATE_VERSION) => {}
            Some(other) => return Err(StateError::Version(PathBuf::new(), other)),
            None => {
                return Err(StateError::Corrupt(
                    PathBuf::new(),
                    "no `version` field".into(),
                ));
            }
        }
        let state: State = serde_json::from_slice(bytes)
            .map_err(|e| StateError::Corrupt(PathBuf::new(), e.to_string()))?;
        if state.next_worker_index == 0 {
            return Err(StateError::Corrupt(
                PathBuf::new(),
                "next_worker_index is 0".into(),
            ));
        }
        Ok(state)
    }

    /// Writes the state atomically (`files::write_atomically`): a crash leaves either the
    /// old or the new file, whole. The folder is created 0700 when missing.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(self).expect("state always serializes");
        files::write_atomically(path, &json, 0o600, Folder::Private)
            .map_err(|e| StateError::from_file(path, e, true))
    }

    pub fn record(&mut self, at: Timestamp, kind: &str, message: impl Into<String>) {
        self.events.push_back(Event {
            at,
            kind: kind.to_string(),
            message: message.into(),
        });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    pub fn count_error(&mut self, kind: &str) {
        *self.totals.errors.entry(kind.to_string()).or_insert(0) += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("k3s-scale-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn missing_file_is_a_fresh_state() {
        let d = tmpdir("missing");
        let s = State::load(&d.join("nope.json")).unwrap();
        assert_eq!(s, State::fresh());
        assert_eq!(s.next_worker_index, 1);
    }

    #[test]
    fn save_then_load_round_trips_with_mode_0600() {
        let d = tmpdir("roundtrip");
        let p = d.join("sub/state.json");
        let mut s = State::fresh();
        s.last_scale_up = Some(Timestamp::from_secs(1_800_000_000));
        s.provisioning.push(Provisioning {
            name: "k3s-worker-3".into(),
            started_at: Timestamp::from_secs(1_800_000_001),
            host: None,
        });
        s.next_worker_index = 4;
        s.record(Timestamp::from_secs(1_800_000_002), "scale_up", "added 1");
        s.save(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(State::load(&p).unwrap(), s);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"2027-01-15T08:00:00Z\""), "{text}");
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn temp_files_of_dead_writers_are_removed_and_others_kept() {
        let d = tmpdir("stale");
        let p = d.join("state.json");
        // PID 0 is never a process; our own PID is alive; other names are not ours.
        let dead = d.join(".state.json.tmp.0");
        let unrelated = d.join(".other.json.tmp.0");
        std::fs::write(&dead, "half").unwrap();
        std::fs::write(&unrelated, "x").unwrap();
        State::fresh().save(&p).unwrap();
        assert!(!dead.exists(), "a dead writer's temp file is removed");
        assert!(
            unrelated.exists(),
            "another file's temp is not ours to remove"
        );
        let left: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "state.json and the unrelated file: {left:?}");
        assert_eq!(State::load(&p).unwrap(), State::fresh());
    }

    #[test]
    fn events_are_capped() {
        let mut s = State::fresh();
        for i in 0..(MAX_EVENTS + 20) {
            s.record(Timestamp::from_secs(i as i64), "x", format!("{i}"));
        }
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(s.events.front().unwrap().message, "20");
    }

    #[test]
    fn corrupt_and_foreign_files_are_errors_that_say_how_to_recover() {
        let d = tmpdir("corrupt");
        let p = d.join("state.json");
        for (body, needle) in [
            (&b"{not json"[..], "corrupt"),
            (b"{}", "no `version`"),
            (b"{\"version\": 99}", "version 99"),
            (b"{\"version\": 1, \"last_scale_up\": \"soon\"}", "RFC 3339"),
            (b"{\"version\": 1, \"surprise\": 1}", "surprise"),
        ] {
            std::fs::write(&p, body).unwrap();
            let e = State::load(&p).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
            assert!(e.contains("state reset"), "{e}");
            assert_eq!(std::fs::read(&p).unwrap(), body, "file left untouched");
        }
    }
}
