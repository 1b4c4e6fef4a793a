//! What `simulate` prints: a timeline of the runs that acted and a summary, as text, or the
//! same as one JSON object (`timeline`, `summary`).

use super::engine::{Simulation, offset};
use crate::config::Config;
use serde_json::json;
use std::fmt::Write;

/// Past this many pod groups, the text lists the ones that waited longest.
const MAX_GROUPS_SHOWN: usize = 12;

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}%"))
}

fn wait(w: Option<u64>) -> String {
    match w {
        Some(0) => "none".into(),
        Some(s) if s < 60 => format!("{s}s"),
        Some(s) => format!("{}m{:02}s", s / 60, s % 60),
        None => "never ran".into(),
    }
}

pub fn to_text(sim: &Simulation, cfg: &Config, what: &str) -> String {
    let mut out = String::new();
    let s = &sim.summary;
    let _ = writeln!(
        out,
        "simulated {what}: {} runs every {}s from {} (workers {}..{}, up at cpu/memory {}%/{}%, down under {}%/{}%)",
        s.runs,
        sim.interval,
        sim.epoch,
        cfg.limits.min_nodes,
        cfg.limits.max_nodes,
        cfg.thresholds.cpu_threshold,
        cfg.thresholds.memory_threshold,
        cfg.thresholds.cpu_scale_down,
        cfg.thresholds.memory_scale_down,
    );
    let _ = writeln!(
        out,
        "\n{:<9} {:<10} {:>5} {:>7} {:>7} {:>5} {:>5}  reason",
        "time", "action", "count", "workers", "pending", "cpu", "mem"
    );
    for st in sim.steps.iter().filter(|s| s.acted()) {
        let action = if st.started.is_empty() {
            "scale_down"
        } else {
            "scale_up"
        };
        let count = st.started.len() + st.removed.len();
        let reason = st.reasons.first().cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<9} {:<10} {:>5} {:>7} {:>7} {:>5} {:>5}  {reason}",
            offset(st.t),
            action,
            count,
            st.workers,
            st.pending,
            pct(st.cpu),
            pct(st.memory),
        );
    }
    let _ = writeln!(out, "\nsummary");
    let _ = writeln!(out, "  peak workers     {}", s.peak_workers);
    let _ = writeln!(out, "  final workers    {}", s.final_workers);
    let _ = writeln!(
        out,
        "  scale-ups        {} ({} workers)",
        s.scale_ups, s.workers_added
    );
    let _ = writeln!(out, "  scale-downs      {}", s.scale_downs);
    let _ = writeln!(
        out,
        "  flaps            {} (a removal followed by an addition within {})",
        s.flaps, cfg.scaling.scale_down_unneeded_time
    );
    let _ = writeln!(out, "  worker-hours     {:.2}", s.worker_hours);
    let _ = writeln!(out, "  evicted pods     {}", s.evicted_pods);
    let _ = writeln!(out, "  waited for capacity (longest pod of each group):");
    // A replay has a group per pod: the longest waits only (JSON has them all).
    let mut groups: Vec<_> = s.groups.iter().collect();
    if groups.len() > MAX_GROUPS_SHOWN {
        groups.sort_by_key(|g| std::cmp::Reverse(g.waited.unwrap_or(u64::MAX)));
        let _ = writeln!(
            out,
            "    ({} groups; the {MAX_GROUPS_SHOWN} that waited longest, --output json for all)",
            groups.len()
        );
        groups.truncate(MAX_GROUPS_SHOWN);
    }
    for g in groups {
        let _ = writeln!(
            out,
            "    {:<20} {:>4} pods from {}: {}{}",
            g.name,
            g.pods,
            offset(g.start),
            wait(g.waited),
            if g.never_placed > 0 {
                format!(" ({} never placed)", g.never_placed)
            } else {
                String::new()
            }
        );
    }
    out
}

pub fn to_json(sim: &Simulation) -> String {
    let timeline: Vec<_> = sim.steps.iter().filter(|s| s.acted()).collect();
    serde_json::to_string_pretty(&json!({
        "epoch": sim.epoch,
        "interval": sim.interval,
        "timeline": timeline,
        "summary": sim.summary,
    }))
    .expect("the simulation serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::engine::{default_epoch, simulate};
    use crate::sim::scenario::Scenario;

    #[test]
    fn text_has_the_timeline_and_summary() {
        let cfg = Config::default();
        let sim = simulate(&Scenario::builtin(), &cfg, default_epoch()).unwrap();
        let text = to_text(&sim, &cfg, "the built-in day");
        let acted = sim.steps.iter().filter(|s| s.acted()).count();
        let lines = text.lines().filter(|l| l.contains("scale_")).count();
        assert_eq!(lines, acted, "{text}");
        for want in [
            "peak workers",
            "flaps",
            "worker-hours",
            "morning-burst",
            "never ran",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }

    #[test]
    fn many_groups_show_the_longest_waits() {
        let mut yaml = String::from("duration: 1h\nworkers: 1\npods:\n");
        for i in 0..30 {
            yaml += &format!(
                "  - {{name: p{i}, cpu: 500m, memory: 64Mi, start: {}m}}\n",
                i
            );
        }
        let cfg = Config::default();
        let sim = simulate(&Scenario::parse(&yaml).unwrap(), &cfg, default_epoch()).unwrap();
        let text = to_text(&sim, &cfg, "x");
        assert!(
            text.contains("(30 groups; the 12 that waited longest"),
            "{text}"
        );
        let shown = text.lines().filter(|l| l.contains(" pods from ")).count();
        assert_eq!(shown, MAX_GROUPS_SHOWN);
        let json: serde_json::Value = serde_json::from_str(&to_json(&sim)).unwrap();
        assert_eq!(json["summary"]["groups"].as_array().unwrap().len(), 30);
    }
}
