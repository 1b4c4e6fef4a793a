//! What a run prints: one JSON object (`--output json`) or a short human summary.

use crate::plan::decide::{Action, Plan, WorkerCounts};
use crate::plan::snapshot::Snapshot;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub action: Action,
    pub count: u32,
    pub dry_run: bool,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<String>,
    pub signals: BTreeMap<&'static str, Option<f64>>,
    pub workers: WorkerCounts,
    /// Scale-down candidates considered, best first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// Workers started this run (or that would be, in dry-run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub started: Vec<String>,
    /// The Docker host each started worker went to (several hosts only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, String>,
    /// Each Docker host and whether it could be listed this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub docker_hosts: Vec<HostSeen>,
    /// Workers removed this run (or that would be).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Nodes passed over for removal, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unremovable: Vec<Unremovable>,
    /// Pods evicted (or that would be) by a scale-down.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evicted: Vec<String>,
    /// Drift repaired at the start of the run (or that would be).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<String>,
    /// Pending pods no worker can help, each with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unhelpable: Vec<String>,
    /// How the decision was made, where it matters (placement by resources only, say).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Unremovable {
    pub node: String,
    pub reason: String,
}

impl Report {
    pub fn new(dry_run: bool) -> Report {
        Report {
            action: Action::None,
            count: 0,
            dry_run,
            reasons: Vec::new(),
            blocked_by: Vec::new(),
            signals: BTreeMap::new(),
            workers: WorkerCounts::default(),
            candidates: Vec::new(),
            started: Vec::new(),
            hosts: BTreeMap::new(),
            docker_hosts: Vec::new(),
            removed: Vec::new(),
            unremovable: Vec::new(),
            evicted: Vec::new(),
            repairs: Vec::new(),
            unhelpable: Vec::new(),
            notes: Vec::new(),
            exit_code: 0,
            error: None,
        }
    }

    pub fn with_plan(mut self, snap: &Snapshot, plan: &Plan) -> Report {
        self.signals = snap.signals().into_iter().collect();
        self.action = plan.action.clone();
        self.count = plan.count;
        self.reasons = plan.reasons.clone();
        self.blocked_by = plan.blocked_by.clone();
        self.workers = plan.workers.clone();
        self.candidates = plan.candidates.clone();
        self.unhelpable = plan.unhelpable.iter().map(ToString::to_string).collect();
        self.notes = plan.notes.clone();
        self.unremovable
            .extend(plan.kept.iter().map(|k| Unremovable {
                node: k.node.clone(),
                reason: k.reason.clone(),
            }));
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("report always serializes")
    }

    pub fn to_text(&self) -> String {
        let would = if self.dry_run { "would " } else { "" };
        let mut out = match (&self.action, &self.error) {
            (_, Some(e)) => format!("error: {e}\n"),
            (Action::ScaleUp, None) => {
                let started: Vec<String> = self
                    .started
                    .iter()
                    .map(|w| match self.hosts.get(w) {
                        Some(h) => format!("{w} on {h}"),
                        None => w.clone(),
                    })
                    .collect();
                format!(
                    "scale up: {would}add {} worker(s){}\n",
                    self.count,
                    list(&started)
                )
            }
            (Action::ScaleDown, None) if self.removed.is_empty() => {
                "scale down: no removable candidate\n".to_string()
            }
            (Action::ScaleDown, None) => {
                format!("scale down: {would}remove {}\n", self.removed.join(", "))
            }
            (Action::None, None) => "no action\n".to_string(),
        };
        for r in &self.reasons {
            out.push_str(&format!("  because {r}\n"));
        }
        for b in &self.blocked_by {
            out.push_str(&format!("  blocked by {b}\n"));
        }
        for u in &self.unremovable {
            out.push_str(&format!("  kept {}: {}\n", u.node, u.reason));
        }
        for p in &self.unhelpable {
            out.push_str(&format!("  no worker can help {p}\n"));
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        for p in &self.evicted {
            out.push_str(&format!("  {would}evict {p}\n"));
        }
        for r in &self.repairs {
            out.push_str(&format!("  repair: {would}{r}\n"));
        }
        for h in self.docker_hosts.iter().filter(|h| !h.up) {
            out.push_str(&format!(
                "  Docker host {} unreachable: {}; its workers are left as they are\n",
                h.name,
                h.error.as_deref().unwrap_or("no answer")
            ));
        }
        if !self.signals.is_empty() {
            let sig: Vec<String> = self
                .signals
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={}", trim_float(*v)),
                    None => format!("{k}=unknown"),
                })
                .collect();
            out.push_str(&format!("  signals: {}\n", sig.join(" ")));
            let w = &self.workers;
            out.push_str(&format!(
                "  workers: {} ready, {} unready, {} provisioning, {} total\n",
                w.ready, w.unready, w.provisioning, w.total
            ));
        }
        out
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    }
}

pub fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// A Docker host as one run saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HostSeen {
    pub name: String,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
