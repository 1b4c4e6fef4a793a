//! What a decision is: the `Plan` that `decide` returns and the rules fill in, with its
//! parts (the action, the workers counted, the unneeded workers kept, what the state is to
//! remember). Data only, below both `decide` and `rules`.

use crate::state::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

/// A pending pod no worker can help, and why: the pod's key is data (Events go to it), the
/// reason text. Shown as `pod ns/name: why`.
#[derive(Debug, Clone, PartialEq)]
pub struct Unhelpable {
    pub pod: String,
    pub why: String,
}

impl std::fmt::Display for Unhelpable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pod {}: {}", self.pod, self.why)
    }
}

impl Serialize for Unhelpable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    None,
    ScaleUp,
    ScaleDown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub action: Action,
    /// Workers to add (scale-up) or remove (scale-down: always 1).
    pub count: u32,
    /// For scale-down: removable workers, best first (least utilised, then newest).
    pub candidates: Vec<String>,
    /// Which rules fired, with value against threshold.
    pub reasons: Vec<String>,
    /// What held back an action that a rule asked for.
    pub blocked_by: Vec<String>,
    /// Counts the decision was made on.
    pub workers: WorkerCounts,
    /// The new value of `state.low_since`.
    #[serde(skip)]
    pub low_since: Option<Timestamp>,
    /// Provisioning workers now seen Ready: they leave the provisioning list.
    #[serde(skip)]
    pub joined: Vec<String>,
    /// Pending pods no worker can help, each with why: they neither scale up nor hold a
    /// scale-down.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unhelpable: Vec<Unhelpable>,
    /// Unneeded workers kept, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<Kept>,
    /// How the decision was made, where the reader should know (resources only, say).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The pending-pods rule asked for workers (whether or not something held them back):
    /// the pods it counted are told why when no worker starts.
    #[serde(skip)]
    pub pending_fired: bool,
    /// What the state remembers for the next run.
    #[serde(skip)]
    pub memory: Memory,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kept {
    pub node: String,
    pub reason: String,
}

/// The per-worker and per-pod memory a plan hands to the state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    pub unneeded_since: BTreeMap<String, Timestamp>,
    pub unready_since: BTreeMap<String, Timestamp>,
    pub fits_since: BTreeMap<String, Timestamp>,
    pub scaled_for: BTreeMap<String, Vec<String>>,
    pub pod_backoff: BTreeMap<String, Timestamp>,
    /// The pods this scale-up starts workers for.
    pub scale_up_for: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkerCounts {
    pub ready: u32,
    pub unready: u32,
    pub provisioning: u32,
    /// Everything that counts toward max_nodes: registered workers plus those booting.
    pub total: u32,
}

impl Plan {
    pub(crate) fn none(workers: WorkerCounts) -> Plan {
        Plan {
            action: Action::None,
            count: 0,
            candidates: Vec::new(),
            reasons: Vec::new(),
            blocked_by: Vec::new(),
            workers,
            low_since: None,
            joined: Vec::new(),
            unhelpable: Vec::new(),
            kept: Vec::new(),
            notes: Vec::new(),
            pending_fired: false,
            memory: Memory::default(),
        }
    }
}
