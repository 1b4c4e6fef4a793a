//! `k3s-scale simulate`: the built-in day's summary (bursts served, no flapping, the
//! oversized pod never scaled for); every simulated run equals what the decision gives on
//! the same snapshot and state, and the acting runs equal a real `evaluate` (state file,
//! lock, the same snapshot through a `MetricsSource`, the simulated actuator); scenario
//! errors through the binary; the SVG chart parsed and holding the series it names; the
//! replay of a backfilled day from a real Prometheus.

mod support;

use k3s_scale::config::Config;
use k3s_scale::plan::decide::decide;
use k3s_scale::plan::reconcile;
use k3s_scale::plan::snapshot::Snapshot;
use k3s_scale::run::error::RunError;
use k3s_scale::run::{Actuator, Context};
use k3s_scale::signals::{MetricsSource, PromError};
use k3s_scale::sim::engine::{self, Seen, simulate_observed};
use k3s_scale::sim::world::SimActuator;
use k3s_scale::sim::{Scenario, simulate};
use k3s_scale::state::State;
use std::cell::RefCell;
use std::rc::Rc;
use support::prom::PromServer;
use support::{Run, TempDir, k3s_scale};

#[test]
fn the_builtin_day_serves_its_bursts_without_flapping() {
    let cfg = Config::default();
    let sim = simulate(&Scenario::builtin(), &cfg, engine::default_epoch()).unwrap();
    let s = &sim.summary;
    assert_eq!(s.runs, 2880);
    assert_eq!(s.flaps, 0, "{s:?}");
    assert!(s.scale_ups >= 1 && s.scale_downs >= 1, "{s:?}");
    assert!(s.peak_workers > cfg.limits.min_nodes as usize, "{s:?}");
    assert!(s.peak_workers <= cfg.limits.max_nodes as usize, "{s:?}");
    // The quiet night gives the extra workers back, down to the floor.
    assert_eq!(s.final_workers, cfg.limits.min_nodes as usize, "{s:?}");
    let group = |n: &str| s.groups.iter().find(|g| g.name == n).unwrap();
    // Bursts are served within a worker's join time and a run or two.
    for g in ["morning-burst", "steady-day"] {
        let w = group(g)
            .waited
            .unwrap_or_else(|| panic!("{g} never ran: {s:?}"));
        assert!(w > 0 && w <= 90 + 2 * 30, "{g} waited {w}s");
    }
    assert_eq!(group("base").waited, Some(0));
    // Nothing is started for the pod no worker can run.
    let over = group("oversized");
    assert_eq!((over.waited, over.never_placed), (None, 1));
    let at_noon = sim
        .steps
        .iter()
        .filter(|st| (12 * 3600..13 * 3600).contains(&st.t));
    for st in at_noon {
        assert!(
            st.started.is_empty(),
            "scaled up for the oversized pod: {st:?}"
        );
    }
    // Worker-hours: between the floor all day and the peak all day.
    assert!(s.worker_hours > 2.0 * 24.0 && s.worker_hours < s.peak_workers as f64 * 24.0);
}

/// A snapshot source that hands out one fixed snapshot (the simulated one).
struct Fixed(Snapshot);

impl MetricsSource for Fixed {
    fn snapshot(&self) -> Result<Snapshot, PromError> {
        Ok(self.0.clone())
    }
}

#[test]
fn every_simulated_run_is_what_evaluate_decides() {
    let dir = TempDir::new("sim-same");
    let mut cfg = Config::default();
    cfg.state.lock_path = dir.join("lock");
    let state_path = dir.join("state.json");
    let scenario = Scenario::parse(
        "duration: 3h\njoin_time: 60s\nworkers: 2\npods:\n  - name: base\n    count: 3\n    cpu: 250m\n    memory: 256Mi\n  - name: burst\n    count: 8\n    cpu: 600m\n    memory: 300Mi\n    start: 20m\n    end: 1h30m\n  - name: ssd\n    count: 2\n    cpu: 100m\n    memory: 64Mi\n    node_selector: {disk: ssd}\n    start: 30m\n",
    )
    .unwrap();
    let mut checked = 0;
    let mut evaluated = 0;
    let mut check = |seen: &Seen| {
        // The decision alone, on the same snapshot, state and clock (the state as a run
        // hands it over: workers the API lists Ready have left provisioning).
        let mut state = seen.state_before.clone();
        let nodes = seen.world_before.observed().nodes;
        let joined = reconcile::joined(&nodes, &state);
        state
            .provisioning
            .retain(|p| !joined.contains(&p.name.as_str()));
        let plan = decide(seen.snapshot, &state, &cfg, seen.now);
        assert_eq!(&plan, seen.plan, "at {}", seen.now);
        checked += 1;
        if seen.report.started.is_empty() && seen.report.removed.is_empty() && evaluated >= 3 {
            return;
        }
        // A real `evaluate`: the state from a file under the lock, the snapshot from a
        // MetricsSource, the simulated cluster as it was before this run.
        seen.state_before.save(&state_path).unwrap();
        let world = Rc::new(RefCell::new(seen.world_before.clone()));
        let mut raw = seen.snapshot.clone();
        raw.cluster = None; // reconcile fills it from what the actuator lists
        let ctx = Context {
            config: &cfg,
            state_path: state_path.clone(),
            dry_run: false,
            now: seen.now,
        };
        let w = Rc::clone(&world);
        let mut make = move || -> Result<Box<dyn Actuator>, RunError> {
            Ok(Box::new(SimActuator::new(Rc::clone(&w))))
        };
        let out = k3s_scale::run::evaluate::evaluate(&ctx, &Fixed(raw), &mut make);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.report.action, seen.report.action);
        assert_eq!(out.report.started, seen.report.started);
        assert_eq!(out.report.removed, seen.report.removed);
        assert_eq!(out.report.reasons, seen.report.reasons);
        let saved = State::load(&state_path).unwrap();
        assert_eq!(&saved, seen.state_after, "at {}", seen.now);
        evaluated += 1;
    };
    let sim =
        simulate_observed(&scenario, &cfg, engine::default_epoch(), Some(&mut check)).unwrap();
    assert_eq!(checked, 360);
    // The burst made it scale up and back down, so both kinds of action were compared.
    assert!(
        sim.summary.scale_ups >= 1 && sim.summary.scale_downs >= 1,
        "{:?}",
        sim.summary
    );
    assert!(evaluated >= 3 + (sim.summary.scale_ups + sim.summary.scale_downs) as usize);
    // The pods asking for disk=ssd: no worker of this pool has the label, so none ran and
    // none was scaled for (the selector reached the model through the listed constraints).
    let ssd = sim.summary.groups.iter().find(|g| g.name == "ssd").unwrap();
    assert_eq!(ssd.never_placed, 2);
    assert!(
        sim.steps
            .iter()
            .filter(|s| s.t >= 1800 && s.t < 1800 + 60)
            .all(|s| s.pending >= 2)
    );
}

fn simulate_cli(dir: &TempDir, args: &[&str]) -> Run {
    Run::from_output(
        k3s_scale(dir.path())
            .arg("simulate")
            .args(args)
            .output()
            .expect("run k3s-scale"),
    )
}

#[test]
fn a_bad_scenario_exits_2_naming_the_line() {
    let dir = TempDir::new("sim-bad");
    std::fs::write(
        dir.join("s.yaml"),
        "duration: 1h\npods:\n  - name: web\n    cpu: 1\n    memory: 1Gi\n    start: 30m\n    end: 10m\n",
    )
    .unwrap();
    let run = simulate_cli(&dir, &["s.yaml"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("line 7") && run.stderr.contains("end"),
        "{run:?}"
    );
    std::fs::write(dir.join("t.yaml"), "duration: 1h\nworkerz: 2\n").unwrap();
    let run = simulate_cli(&dir, &["t.yaml"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("workerz") && run.stderr.contains("line 2"),
        "{run:?}"
    );
    let run = simulate_cli(&dir, &["missing.yaml"]);
    assert_eq!(run.code, 2, "{run:?}");
}

/// A small XML well-formedness check for the SVG plotters writes: every tag closes in
/// order, attributes are quoted, and no stray `<` or `&` is in the text. Returns the
/// element names seen and the text content of `<text>` elements.
fn parse_xml(doc: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut texts = Vec::new();
    let mut rest = doc.trim_start();
    if let Some(r) = rest.strip_prefix("<?xml") {
        rest = &r[r.find("?>").ok_or("unclosed declaration")? + 2..];
    }
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        check_text(text)?;
        if stack.last().is_some_and(|t| t == "text") && !text.trim().is_empty() {
            texts.push(text.trim().to_string());
        }
        let gt = rest[lt..].find('>').ok_or("unclosed tag")? + lt;
        let tag = &rest[lt + 1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name: String = body.chars().take_while(|c| !c.is_whitespace()).collect();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '-')
        {
            return Err(format!("bad tag <{tag}>"));
        }
        check_attributes(&body[name.len()..])?;
        names.push(name.clone());
        if !self_closing {
            stack.push(name);
        }
    }
    check_text(rest)?;
    if !stack.is_empty() {
        return Err(format!("unclosed: {stack:?}"));
    }
    Ok((names, texts))
}

fn check_text(t: &str) -> Result<(), String> {
    let mut s = t;
    while let Some(i) = s.find('&') {
        let end = s[i..].find(';').ok_or_else(|| format!("bare & in {t:?}"))?;
        let ent = &s[i + 1..i + end];
        if !(["amp", "lt", "gt", "quot", "apos"].contains(&ent) || ent.starts_with('#')) {
            return Err(format!("unknown entity &{ent};"));
        }
        s = &s[i + end..];
    }
    Ok(())
}

fn check_attributes(mut a: &str) -> Result<(), String> {
    loop {
        a = a.trim_start();
        if a.is_empty() {
            return Ok(());
        }
        let eq = a
            .find('=')
            .ok_or_else(|| format!("attribute without value: {a:?}"))?;
        let name = a[..eq].trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("bad attribute name {name:?}"));
        }
        let v = &a[eq + 1..];
        let q = v.chars().next().ok_or("attribute without value")?;
        if q != '"' && q != '\'' {
            return Err(format!("unquoted attribute {name}"));
        }
        let close = v[1..].find(q).ok_or("unclosed attribute value")?;
        if v[1..1 + close].contains('<') {
            return Err(format!("< in attribute {name}"));
        }
        a = &v[close + 2..];
    }
}

#[test]
fn the_xml_check_fails_on_broken_documents() {
    for bad in [
        "<svg><g></svg>",
        "<svg a=1/>",
        "<svg>a & b</svg>",
        "<svg><text>x</text>",
        "<svg a=\"1\"></g>",
    ] {
        assert!(parse_xml(bad).is_err(), "{bad}");
    }
    assert!(parse_xml("<svg a=\"1\"><text>a &amp; b</text><path d='M 0'/></svg>").is_ok());
}

#[test]
fn the_chart_is_well_formed_svg_with_the_series_it_names() {
    let dir = TempDir::new("sim-chart");
    let run = simulate_cli(&dir, &["--chart", "day.svg", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    let summary = &json["summary"];
    for k in [
        "peak_workers",
        "final_workers",
        "scale_ups",
        "scale_downs",
        "flaps",
        "worker_hours",
    ] {
        assert!(summary[k].is_number(), "{k}: {summary}");
    }
    let timeline = json["timeline"].as_array().unwrap();
    assert_eq!(
        timeline.iter().filter(|s| s["started"].is_array()).count() as u64,
        summary["scale_ups"].as_u64().unwrap()
    );
    let svg = std::fs::read_to_string(dir.join("day.svg")).unwrap();
    let (names, texts) = parse_xml(&svg).unwrap_or_else(|e| panic!("not well-formed: {e}"));
    assert_eq!(names.first().map(String::as_str), Some("svg"));
    for s in k3s_scale::sim::chart::SERIES {
        assert!(texts.iter().any(|t| t == s), "legend lacks {s}: {texts:?}");
    }
    assert!(texts.iter().any(|t| t == "scale-up at 80%"), "{texts:?}");
    assert!(
        texts.iter().any(|t| t == "scale-down under 30%"),
        "{texts:?}"
    );
    // One polyline per line series (workers, ready, pending, cpu, memory, 2 thresholds),
    // each with a point per run where it has a value.
    let polylines: Vec<&str> = svg.split("<polyline").skip(1).collect();
    let long = polylines
        .iter()
        .filter(|p| {
            let pts = p.split("points=\"").nth(1).unwrap_or("");
            pts[..pts.find('"').unwrap_or(0)].split_whitespace().count() == 2880
        })
        .count();
    assert_eq!(long, 5, "five series with a point per run");
    // A mark per scale event: vertical paths in the event colours.
    let ups = summary["scale_ups"].as_u64().unwrap() as usize;
    let downs = summary["scale_downs"].as_u64().unwrap() as usize;
    // +1 each: the legend's sample mark.
    assert_eq!(
        svg.matches("stroke=\"#009646\"").count(),
        ups + 1,
        "scale-up marks"
    );
    assert_eq!(
        svg.matches("stroke=\"#C83C28\"").count(),
        downs + 1,
        "scale-down marks"
    );
}

/// A day of kube-state-metrics history as OpenMetrics, one sample a minute: three web
/// pods all day, six batch pods 08:00 to 10:00 (1 CPU each), a DaemonSet pod.
fn history(end: i64) -> String {
    let start = end - 86_400;
    type P = (&'static str, f64, f64, i64, i64, bool);
    let mut pods: Vec<P> = vec![("ds-agent", 0.1, 64.0, 0, 86_400, true)];
    for p in ["web-0", "web-1", "web-2"] {
        pods.push((p, 0.25, 256.0, 0, 86_400, false));
    }
    for p in [
        "batch-0", "batch-1", "batch-2", "batch-3", "batch-4", "batch-5",
    ] {
        pods.push((p, 1.0, 512.0, 8 * 3600, 10 * 3600, false));
    }
    let mut req = String::from("# TYPE kube_pod_container_resource_requests gauge\n");
    let mut phase = String::from("# TYPE kube_pod_status_phase gauge\n");
    let mut owner = String::from("# TYPE kube_pod_owner gauge\n");
    for (pod, cpu, mib, from, to, ds) in &pods {
        let times = || {
            (start..=end)
                .step_by(60)
                .filter(|t| (t - start) >= *from && (t - start) < *to)
        };
        for (res, unit, v) in [("cpu", "core", *cpu), ("memory", "byte", mib * 1048576.0)] {
            for t in times() {
                req += &format!(
                    "kube_pod_container_resource_requests{{namespace=\"apps\",pod=\"{pod}\",container=\"c\",resource=\"{res}\",unit=\"{unit}\"}} {v} {t}\n"
                );
            }
        }
        for ph in ["Running", "Pending"] {
            let v = if ph == "Running" { 1 } else { 0 };
            for t in times() {
                phase += &format!(
                    "kube_pod_status_phase{{namespace=\"apps\",pod=\"{pod}\",phase=\"{ph}\"}} {v} {t}\n"
                );
            }
        }
        let kind = if *ds { "DaemonSet" } else { "ReplicaSet" };
        for t in times() {
            owner += &format!(
                "kube_pod_owner{{namespace=\"apps\",pod=\"{pod}\",owner_kind=\"{kind}\",owner_name=\"x\"}} 1 {t}\n"
            );
        }
    }
    format!("{req}{phase}{owner}# EOF\n")
}

#[test]
fn replays_a_backfilled_day_from_prometheus() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = now - 120;
    let prom = PromServer::start_history(&history(end));
    let dir = TempDir::new("sim-replay");
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "prometheus:\n  url: {}\nstate:\n  path: {}\n  lock_path: {}\n",
            prom.url(),
            dir.join("state.json").display(),
            dir.join("lock").display()
        ),
    )
    .unwrap();
    let run = simulate_cli(
        &dir,
        &[
            "--config",
            "config.yaml",
            "--from-prometheus",
            "--since",
            "24h",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    let groups = json["summary"]["groups"].as_array().unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    // Nine pods; the DaemonSet's is left out (a new worker brings its own).
    assert_eq!(names.len(), 9, "{names:?}");
    assert!(!names.iter().any(|n| n.contains("ds-agent")), "{names:?}");
    // The batch started 8 h after the data's start, which is a little (the time from
    // `end` to the run) after the window's.
    let batch: Vec<_> = groups
        .iter()
        .filter(|g| g["name"].as_str().unwrap().starts_with("apps.batch-"))
        .collect();
    assert_eq!(batch.len(), 6);
    let start = batch[0]["start"].as_u64().unwrap();
    assert!((8 * 3600 - 300..=8 * 3600).contains(&start), "{batch:?}");
    // Some waited for a worker to join; all ran.
    let waits: Vec<u64> = batch
        .iter()
        .map(|g| g["waited"].as_u64().unwrap())
        .collect();
    assert!(
        waits.iter().any(|w| *w > 0) && waits.iter().all(|w| *w <= 300),
        "{waits:?}"
    );
    // Six 1-CPU pods on 2-CPU workers: a scale-up within minutes of the batch, and the
    // workers given back after it ended.
    let timeline = json["timeline"].as_array().unwrap();
    let up = timeline
        .iter()
        .find(|s| s["started"].is_array())
        .unwrap_or_else(|| panic!("no scale-up: {json}"));
    let t = up["t"].as_u64().unwrap();
    assert!(t >= start && t <= start + 120, "{up}");
    assert!(
        timeline
            .iter()
            .any(|s| s["removed"].is_array() && s["t"].as_u64().unwrap() > 10 * 3600)
    );
    assert_eq!(json["summary"]["final_workers"], 2);
    // No state file and no lock: simulate writes nothing but its output.
    assert!(!dir.join("state.json").exists() && !dir.join("lock").exists());
}

#[test]
fn replay_without_prometheus_exits_4() {
    let dir = TempDir::new("sim-noprom");
    let port = support::free_port();
    std::fs::write(
        dir.join("config.yaml"),
        format!("prometheus:\n  url: http://127.0.0.1:{port}\n  timeout: 2s\n"),
    )
    .unwrap();
    let run = simulate_cli(&dir, &["--config", "config.yaml", "--from-prometheus"]);
    assert_eq!(run.code, 4, "{run:?}");
}
