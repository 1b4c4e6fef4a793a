//! Kubernetes Events about what k3s-scale did, where `kubectl describe` and `kubectl get
//! events` show them: written the way cluster-autoscaler's recorder writes them (core/v1
//! Events through client-go's tools/record: a new Event named `<object>.<hex nanos>`, then
//! the same Event patched with a higher `count` and `lastTimestamp` when it happens again,
//! and created anew when the patch finds it gone), with cluster-autoscaler's reasons
//! (processors/status/eventing_scale_up_processor.go: TriggeredScaleUp, NotTriggerScaleUp;
//! core/scaledown/actuation: ScaleDown, ScaleDownFailed). Best effort: a failure is logged,
//! never fails the run. A one-shot run has no recorder cache between runs, so what was
//! written lately is kept in the state (`State::posted`): no object gets an Event for the
//! same reason more than once per `RATE_WINDOW`; the occurrences in between are counted.

use crate::kube::{Cluster, KubeError};
use crate::state::PostedEvent;
use crate::state::time::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use std::time::Duration;

/// No object gets a second write for the same reason within this: a run every 30 s would
/// otherwise patch every pending pod's Event every run. client-go's spam filter allows an
/// object one event per 5 minutes once its burst is spent (tools/record/events_cache.go,
/// defaultSpamQPS = 1/300).
pub const RATE_WINDOW: Duration = Duration::from_secs(300);
/// An Event older than this is gone from the apiserver (its default --event-ttl, 1 h): the
/// next occurrence creates a new one rather than patching, and the memo entry is dropped.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);
/// At most this many entries are kept in the state (the oldest go first): a cap on its size
/// whatever the number of pending pods.
pub const MAX_POSTED: usize = 500;
/// `source.component` and `reportingComponent` of every Event.
pub const COMPONENT: &str = "k3s-scale";

/// What an Event says and about what.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub about: About,
    pub reason: &'static str,
    pub message: String,
    pub warning: bool,
}

/// The objects a notice is written on.
#[derive(Debug, Clone, PartialEq)]
pub enum About {
    /// Every pod the API lists as unschedulable (Pending, no node, PodScheduled False with
    /// reason Unschedulable: the pods cluster-autoscaler considers), but these
    /// (`namespace/name`).
    PendingPods { except: Vec<String> },
    /// These unschedulable pods (`namespace/name`).
    Pods(Vec<String>),
    /// One Node (its Events go to the `default` namespace, as client-go puts them).
    Node(String),
}

/// The object an Event is written on.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
}

impl Target {
    /// Where the Event lives: the object's namespace, `default` for a cluster-scoped one
    /// (client-go tools/record/event.go, makeEvent).
    pub fn event_namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    fn key(&self, reason: &str) -> String {
        format!(
            "{}/{}/{}/{}/{reason}",
            self.event_namespace(),
            self.kind,
            self.name,
            self.uid.as_deref().unwrap_or("")
        )
    }
}

/// What to do about one occurrence, given what was written for its object and reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Written within `RATE_WINDOW`: only count it.
    Count,
    /// The Event (still within its TTL) gets the new count.
    Patch { name: String, count: u32 },
    /// A new Event.
    Create,
}

/// The rate limit and reuse rule. Pure, table-tested.
pub fn next_step(posted: Option<&PostedEvent>, now: Timestamp) -> Step {
    match posted {
        Some(p) if now.since(p.written) < RATE_WINDOW => Step::Count,
        Some(p) if now.since(p.first) < EVENT_TTL => Step::Patch {
            name: p.name.clone(),
            count: p.count + 1,
        },
        _ => Step::Create,
    }
}

/// Whether the pod is one cluster-autoscaler would act for: Pending, on no node, and
/// marked unschedulable by the scheduler.
pub fn is_unschedulable(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some("Pending")
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_none()
        && status.conditions.iter().flatten().any(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
}

/// Writes the notices (best effort) and updates `posted`. Returns how many Events were
/// created or patched.
pub fn write(
    cluster: &dyn Cluster,
    notices: &[Notice],
    posted: &mut Vec<PostedEvent>,
    now: Timestamp,
) -> usize {
    posted.retain(|p| now.since(p.first) < EVENT_TTL);
    let mut written = 0;
    for n in notices {
        let targets = match targets(cluster, &n.about) {
            Ok(t) => t,
            Err(e) => {
                log::warn!("no Event {} written: {e}", n.reason);
                continue;
            }
        };
        for t in targets {
            match write_one(cluster, &t, n, posted, now) {
                Ok(true) => written += 1,
                Ok(false) => {}
                Err(e) => log::warn!(
                    "could not write Event {} on {} {}: {e}",
                    n.reason,
                    t.kind,
                    t.name
                ),
            }
        }
    }
    if posted.len() > MAX_POSTED {
        posted.sort_by_key(|p| p.written);
        let drop = posted.len() - MAX_POSTED;
        posted.drain(..drop);
    }
    written
}

fn targets(cluster: &dyn Cluster, about: &About) -> Result<Vec<Target>, KubeError> {
    let key = |p: &Pod| {
        format!(
            "{}/{}",
            p.metadata.namespace.as_deref().unwrap_or("default"),
            p.metadata.name.as_deref().unwrap_or("")
        )
    };
    let wanted = |p: &Pod| match about {
        About::PendingPods { except } => !except.contains(&key(p)),
        About::Pods(these) => these.contains(&key(p)),
        About::Node(_) => false,
    };
    Ok(match about {
        About::PendingPods { .. } | About::Pods(_) => cluster
            .pending_pods()?
            .iter()
            .filter(|p| is_unschedulable(p) && wanted(p))
            .map(|p| Target {
                kind: "Pod",
                namespace: Some(
                    p.metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                ),
                name: p.metadata.name.clone().unwrap_or_default(),
                uid: p.metadata.uid.clone(),
            })
            .collect(),
        About::Node(name) => {
            // The Node may be gone already (a removal): the Event still names it.
            let uid = cluster
                .node(name)
                .ok()
                .flatten()
                .and_then(|n| n.metadata.uid);
            vec![Target {
                kind: "Node",
                namespace: None,
                name: name.clone(),
                uid,
            }]
        }
    })
}

/// One occurrence on one object: counted, patched or created. Ok(true) when written.
fn write_one(
    cluster: &dyn Cluster,
    t: &Target,
    n: &Notice,
    posted: &mut Vec<PostedEvent>,
    now: Timestamp,
) -> Result<bool, KubeError> {
    let key = t.key(n.reason);
    let at = posted.iter().position(|p| p.key == key);
    let ns = t.event_namespace().to_string();
    match next_step(at.map(|i| &posted[i]), now) {
        Step::Count => {
            posted[at.expect("counted entries exist")].count += 1;
            Ok(false)
        }
        Step::Patch { name, count } => {
            // What client-go's recorder patches on a repeated event (events_cache.go).
            let patch = json!({
                "count": count,
                "lastTimestamp": k8s_time(now),
                "message": n.message,
            });
            match cluster.patch_event(&ns, &name, &patch) {
                Ok(()) => {
                    let p = &mut posted[at.expect("patched entries exist")];
                    p.count = count;
                    p.written = now;
                    Ok(true)
                }
                // Expired or deleted: create it anew, as client-go does on NotFound.
                Err(e) if e.is_not_found() => {
                    posted.remove(at.expect("patched entries exist"));
                    create(cluster, t, n, &key, posted, now)
                }
                Err(e) => Err(e),
            }
        }
        Step::Create => {
            if let Some(i) = at {
                posted.remove(i);
            }
            create(cluster, t, n, &key, posted, now)
        }
    }
}

fn create(
    cluster: &dyn Cluster,
    t: &Target,
    n: &Notice,
    key: &str,
    posted: &mut Vec<PostedEvent>,
    now: Timestamp,
) -> Result<bool, KubeError> {
    let ns = t.event_namespace().to_string();
    // client-go's name: the object's name and the time in nanoseconds, in hex.
    let name = format!(
        "{}.{:x}",
        t.name,
        u64::try_from(now.as_millis()).unwrap_or(0) * 1_000_000
    );
    let body = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": t.kind,
            "namespace": t.namespace,
            "name": t.name,
            "uid": t.uid,
        },
        "reason": n.reason,
        "message": n.message,
        "type": if n.warning { "Warning" } else { "Normal" },
        "count": 1,
        "firstTimestamp": k8s_time(now),
        "lastTimestamp": k8s_time(now),
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
    });
    cluster.create_event(&ns, &body)?;
    posted.push(PostedEvent {
        key: key.to_string(),
        namespace: ns,
        name,
        count: 1,
        first: now,
        written: now,
    });
    Ok(true)
}

/// metav1.Time: RFC 3339 in whole seconds.
fn k8s_time(t: Timestamp) -> String {
    Timestamp::from_millis(t.as_millis() - t.as_millis().rem_euclid(1000)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posted(first_ago: u64, written_ago: u64, count: u32) -> PostedEvent {
        let now = Timestamp::from_secs(1_800_000_000);
        PostedEvent {
            key: "k".into(),
            namespace: "default".into(),
            name: "p.1".into(),
            count,
            first: Timestamp::from_millis(now.as_millis() - first_ago as i64 * 1000),
            written: Timestamp::from_millis(now.as_millis() - written_ago as i64 * 1000),
        }
    }

    #[test]
    fn rate_limit_and_reuse_table() {
        let now = Timestamp::from_secs(1_800_000_000);
        let cases: Vec<(&str, Option<PostedEvent>, Step)> = vec![
            ("never written: created", None, Step::Create),
            (
                "written 30 s ago: only counted",
                Some(posted(30, 30, 1)),
                Step::Count,
            ),
            (
                "written 299 s ago: only counted",
                Some(posted(299, 299, 3)),
                Step::Count,
            ),
            (
                "written 5 min ago, created 20 min ago: patched with the next count",
                Some(posted(1200, 300, 7)),
                Step::Patch {
                    name: "p.1".into(),
                    count: 8,
                },
            ),
            (
                "created an hour ago: its Event has expired, a new one",
                Some(posted(3600, 400, 9)),
                Step::Create,
            ),
        ];
        for (what, p, want) in cases {
            assert_eq!(next_step(p.as_ref(), now), want, "{what}");
        }
    }

    #[test]
    fn only_pods_the_scheduler_marked_unschedulable_count() {
        let pod = |v: serde_json::Value| -> Pod { serde_json::from_value(v).unwrap() };
        let unsched = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable"});
        assert!(is_unschedulable(&pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": []}, "status": {"phase": "Pending", "conditions": [unsched]}})
        )));
        // Bound, still starting: not the autoscaler's business.
        assert!(!is_unschedulable(&pod(
            json!({"metadata": {"name": "b"}, "spec": {"containers": [], "nodeName": "w1"}, "status": {"phase": "Pending", "conditions": [unsched]}})
        )));
        // Not yet looked at by the scheduler.
        assert!(!is_unschedulable(&pod(
            json!({"metadata": {"name": "c"}, "spec": {"containers": []}, "status": {"phase": "Pending"}})
        )));
        assert!(!is_unschedulable(&pod(
            json!({"metadata": {"name": "d"}, "spec": {"containers": []}, "status": {"phase": "Running"}})
        )));
    }
}
