//! A `simulate` scenario: how long, how often the timer runs, how long a worker takes to
//! join, the workers at the start, and the pods as groups (count, requests, optional
//! nodeSelector, start and end offsets). Parsed from YAML with serde-saphyr; every error
//! names the line it is about, as config errors do.

use crate::config::units::{Bytes, Secs, parse_duration};
use serde::{Deserialize, Deserializer, de};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The scenario `simulate` runs when given none: a day on the default config.
pub const BUILTIN: &str = include_str!("builtin.yaml");

/// Scenario files larger than this are refused (a scenario is a few KiB).
pub const MAX_SCENARIO_BYTES: usize = 1 << 20;
/// More pods than this would be a cluster no single-pool autoscaler is for.
pub const MAX_PODS: u64 = 100_000;
/// More steps than this (a year at 30 s is about a million) is refused.
pub const MAX_STEPS: u64 = 1_100_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub duration: Duration,
    pub interval: Duration,
    pub join_time: Duration,
    pub workers: u32,
    pub pods: Vec<Group>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub count: u32,
    /// Cores.
    pub cpu: f64,
    /// Bytes.
    pub memory: f64,
    pub node_selector: BTreeMap<String, String>,
    pub start: Duration,
    /// None: until the end of the scenario.
    pub end: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ScenarioError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    duration: Spanned<Secs>,
    #[serde(default)]
    interval: Option<Spanned<Secs>>,
    #[serde(default)]
    join_time: Option<Spanned<Secs>>,
    #[serde(default)]
    workers: Option<Spanned<u32>>,
    #[serde(default)]
    pods: Vec<RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    #[serde(default = "one")]
    count: u32,
    cpu: Spanned<Cpu>,
    memory: Spanned<Bytes>,
    #[serde(default)]
    node_selector: BTreeMap<String, String>,
    #[serde(default)]
    start: Option<Spanned<Secs>>,
    #[serde(default)]
    end: Option<Spanned<Secs>>,
}

fn one() -> u32 {
    1
}

/// CPU as Kubernetes writes it: cores as a number ("0.5", 2) or millicores ("500m").
struct Cpu(f64);

impl<'de> Deserialize<'de> for Cpu {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Cpu;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("CPU as cores (0.5, 2) or millicores (\"500m\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cpu, E> {
                Ok(Cpu(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cpu, E> {
                Ok(Cpu(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cpu, E> {
                Ok(Cpu(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cpu, E> {
                parse_cpu(v).map(Cpu).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

pub fn parse_cpu(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('m') {
        Some(n) => (n, 0.001),
        None => (t, 1.0),
    };
    num.parse::<f64>()
        .map(|v| v * scale)
        .map_err(|_| format!("CPU {s:?} is not cores (0.5) or millicores (500m)"))
}

fn at(line: u64, what: impl fmt::Display) -> ScenarioError {
    ScenarioError(format!("line {line}: {what}"))
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        if text.len() > MAX_SCENARIO_BYTES {
            return Err(ScenarioError(format!(
                "the scenario is {} bytes, over the {MAX_SCENARIO_BYTES}-byte limit",
                text.len()
            )));
        }
        // serde-saphyr's own message carries the line and column of what it could not read.
        let raw: Raw = serde_saphyr::from_str(text).map_err(|e| ScenarioError(e.to_string()))?;
        let duration = raw.duration.value.get();
        let dline = raw.duration.referenced.line();
        if duration.is_zero() {
            return Err(at(dline, "duration must be more than 0"));
        }
        let interval = match &raw.interval {
            Some(i) if i.value.get() < Duration::from_secs(1) => {
                return Err(at(i.referenced.line(), "interval must be at least 1s"));
            }
            Some(i) => i.value.get(),
            None => Duration::from_secs(30),
        };
        let steps = duration.as_secs() / interval.as_secs().max(1);
        if steps > MAX_STEPS {
            return Err(at(
                dline,
                format!("{steps} runs (duration / interval) is over the limit of {MAX_STEPS}"),
            ));
        }
        let join_time = raw
            .join_time
            .map(|j| j.value.get())
            .unwrap_or(Duration::from_secs(90));
        let workers = match raw.workers {
            Some(w) if w.value > 1000 => {
                return Err(at(w.referenced.line(), "workers must be at most 1000"));
            }
            Some(w) => w.value,
            None => 0,
        };
        let mut pods = Vec::new();
        let mut total: u64 = 0;
        let mut names = std::collections::HashSet::new();
        for g in raw.pods {
            let line = g.name.referenced.line();
            let name = g.name.value;
            if !crate::config::is_dns_label(&name) {
                return Err(at(
                    line,
                    format!("pod group name {name:?} must be a DNS label (a-z, 0-9, -)"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(at(line, format!("pod group {name:?} is named twice")));
            }
            let cpu = g.cpu.value.0;
            if !cpu.is_finite() || cpu < 0.0 {
                return Err(at(
                    g.cpu.referenced.line(),
                    format!("group {name}: cpu must be 0 or more"),
                ));
            }
            let memory = g.memory.value.0 as f64;
            let start = g.start.as_ref().map(|s| s.value.get()).unwrap_or_default();
            let end = g.end.as_ref().map(|e| e.value.get());
            if let (Some(e), Some(el)) = (end, &g.end)
                && e <= start
            {
                return Err(at(
                    el.referenced.line(),
                    format!("group {name}: end must come after start"),
                ));
            }
            if start >= duration {
                let l = g
                    .start
                    .as_ref()
                    .map(|s| s.referenced.line())
                    .unwrap_or(line);
                return Err(at(
                    l,
                    format!("group {name}: start is at or past the scenario's duration"),
                ));
            }
            total += u64::from(g.count);
            if total > MAX_PODS {
                return Err(at(line, format!("more than {MAX_PODS} pods in all")));
            }
            pods.push(Group {
                name,
                count: g.count,
                cpu,
                memory,
                node_selector: g.node_selector,
                start,
                end,
            });
        }
        Ok(Scenario {
            duration,
            interval,
            join_time,
            workers,
            pods,
        })
    }

    pub fn builtin() -> Scenario {
        Scenario::parse(BUILTIN).expect("the built-in scenario parses")
    }
}

/// A duration given on the command line (`--since 24h`).
pub fn parse_since(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(60) {
        return Err("must be at least 1m".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_scenario_parses() {
        let s = Scenario::builtin();
        assert_eq!(s.duration, Duration::from_secs(86_400));
        assert_eq!(s.interval, Duration::from_secs(30));
        assert!(s.pods.len() >= 4);
    }

    #[test]
    fn a_small_scenario_with_defaults() {
        let s = Scenario::parse(
            "duration: 2h\npods:\n  - name: web\n    count: 3\n    cpu: 250m\n    memory: 128Mi\n    node_selector: {disk: ssd}\n    start: 10m\n    end: 1h\n",
        )
        .unwrap();
        assert_eq!(s.interval, Duration::from_secs(30));
        assert_eq!(s.join_time, Duration::from_secs(90));
        assert_eq!(s.workers, 0);
        let g = &s.pods[0];
        assert_eq!((g.count, g.cpu, g.memory), (3, 0.25, (128u64 << 20) as f64));
        assert_eq!(g.node_selector.get("disk").unwrap(), "ssd");
        assert_eq!(g.start, Duration::from_secs(600));
        assert_eq!(g.end, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn errors_name_the_line() {
        // (scenario, the line the error must name, a word it must say)
        let table: &[(&str, u64, &str)] = &[
            (
                "duration: 1h\npods:\n  - name: a\n    cpu: 1\n    memory: 1Gi\n    start: 2h\n",
                6,
                "start",
            ),
            (
                "duration: 1h\npods:\n  - name: a\n    cpu: 1\n    memory: 1Gi\n    start: 20m\n    end: 10m\n",
                7,
                "end",
            ),
            (
                "duration: 1h\npods:\n  - name: a\n    cpu: -1\n    memory: 1Gi\n",
                4,
                "cpu",
            ),
            (
                "duration: 1h\npods:\n  - name: a\n    cpu: 1\n    memory: 1Gi\n  - name: a\n    cpu: 1\n    memory: 1Gi\n",
                6,
                "twice",
            ),
            (
                "duration: 1h\npods:\n  - name: Bad_Name\n    cpu: 1\n    memory: 1Gi\n",
                3,
                "DNS",
            ),
            ("duration: 0s\n", 1, "duration"),
            ("duration: 1h\ninterval: 0s\n", 2, "interval"),
            (
                "duration: 1h\npods:\n  - name: a\n    cpu: 1\n    memory: lots\n",
                5,
                "memory",
            ),
            (
                "duration: 1h\npods:\n  - name: a\n    cpu: 1\n    memory: 1Gi\n    colour: red\n",
                6,
                "colour",
            ),
            ("duration: 1h\nworkers: many\n", 2, "workers"),
        ];
        for (text, line, word) in table {
            let e = Scenario::parse(text).unwrap_err().to_string();
            assert!(
                e.contains(&format!("line {line}")),
                "{text:?}: want line {line}: {e}"
            );
            assert!(
                e.to_lowercase().contains(&word.to_lowercase()),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn cpu_quantities() {
        assert_eq!(parse_cpu("500m").unwrap(), 0.5);
        assert_eq!(parse_cpu("2").unwrap(), 2.0);
        assert!(parse_cpu("two").is_err());
    }
}
