//! Every PromQL expression the stack ships (Grafana dashboard, alert rules, k3s-scale's
//! default signal queries) run through a real Prometheus, and the textfile scraped and
//! queried the way the dashboard queries it.

mod ops_support;
mod support;

use k3s_scale::cli::metrics::{self, RunRecord};
use ops_support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long the scrape test waits for Prometheus to have what it needs (scrapes every 1 s).
const SCRAPE_DEADLINE: Duration = Duration::from_secs(30);

fn dashboard() -> Value {
    serde_json::from_str(&read_repo("compose/grafana/dashboards/k3s-scale.json"))
        .expect("dashboard JSON loads")
}

fn dashboard_exprs() -> Vec<String> {
    let mut out = Vec::new();
    exprs_in(&dashboard(), &mut out);
    out
}

fn alert_exprs() -> Vec<(String, String)> {
    let rules: Value = serde_saphyr::from_str(&read_repo("compose/prometheus/alerts.yml")).unwrap();
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_string(),
                r["expr"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn render_sample(runs: u64, scale_ups: u64) -> String {
    let cfg = default_config();
    let mut state = sample_state();
    state.totals.runs = runs;
    state.totals.scale_ups = scale_ups;
    state.totals.scale_downs = scale_ups;
    state.totals.failed_scale_ups = scale_ups;
    state.totals.failed_scale_downs = scale_ups;
    state.totals.workers_added = scale_ups * 2;
    metrics::render(&RunRecord {
        config: &cfg,
        report: &sample_report(),
        state: Some(&state),
        exit_code: 10,
        finished_at: k3s_scale::state::time::Timestamp::now(),
        duration: Duration::from_millis(800),
    })
}

fn assert_accepted(prom: &TestPrometheus, what: &str, expr: &str) -> Value {
    let answer = prom.query(expr);
    assert_eq!(
        answer["status"], "success",
        "{what}: Prometheus refused\n  {expr}\n  {answer}"
    );
    answer
}

#[test]
fn the_dashboard_loads_and_shows_what_the_issue_asks_for() {
    let d = dashboard();
    assert_eq!(d["uid"], "k3s-scale");
    let titles: Vec<String> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_string())
        .collect();
    for wanted in [
        "CPU requests vs thresholds",
        "Memory requests vs thresholds",
        "Workers by state",
        "Pending pods vs threshold",
        "Failures",
        "Run duration",
    ] {
        assert!(
            titles.iter().any(|t| t == wanted),
            "no panel {wanted}: {titles:?}"
        );
    }
    let ann = d["annotations"]["list"].as_array().unwrap();
    let exprs: Vec<&str> = ann.iter().filter_map(|a| a["expr"].as_str()).collect();
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("k3s_scale_scale_ups_total")),
        "{exprs:?}"
    );
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("k3s_scale_scale_downs_total")),
        "{exprs:?}"
    );
    // Every panel has a target, and panel ids are unique.
    let mut ids = std::collections::BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_i64().unwrap()),
            "duplicate id {}",
            p["id"]
        );
        assert!(
            !p["targets"].as_array().unwrap().is_empty(),
            "{}",
            p["title"]
        );
    }
}

#[test]
fn dashboard_and_alerts_use_only_metric_names_the_textfile_has() {
    // The sample run knows every signal and has a state, so every family is written.
    let text = render_sample(5, 1);
    let known: std::collections::BTreeSet<String> = families(&text).into_iter().collect();
    let mut used = Vec::new();
    for e in dashboard_exprs() {
        used.extend(k3s_scale_names(&e));
    }
    for (_, e) in alert_exprs() {
        used.extend(k3s_scale_names(&e));
    }
    assert!(
        used.len() > 20,
        "the dashboard is about k3s-scale: {used:?}"
    );
    for name in used {
        assert!(
            known.contains(&name),
            "{name} is not written by the textfile writer ({known:?})"
        );
    }
}

#[test]
fn every_shipped_expression_is_accepted_by_prometheus() {
    let prom = TestPrometheus::start(
        "global:\n  scrape_interval: 1m\nrule_files:\n  - alerts.yml\n",
        &[("alerts.yml", &read_repo("compose/prometheus/alerts.yml"))],
    );
    let mut checked = 0;
    for e in dashboard_exprs() {
        assert_accepted(&prom, "dashboard", &substitute_grafana_vars(&e));
        checked += 1;
    }
    for (name, e) in alert_exprs() {
        assert_accepted(&prom, &name, &e);
        checked += 1;
    }
    let defaults = k3s_scale::signals::promql::signal_queries(&BTreeMap::new()).parts;
    for (name, q) in &defaults {
        assert_accepted(&prom, name, q);
        checked += 1;
    }
    assert_accepted(
        &prom,
        "combined",
        &k3s_scale::signals::promql::combined_query(&defaults),
    );
    // The stack's own k3s-scale config overrides nothing, so the defaults are what runs.
    let stack =
        k3s_scale::config::Config::parse(&read_repo("compose/k3s-scale/config.yaml")).unwrap();
    for (name, q) in k3s_scale::signals::promql::signal_queries(&stack.prometheus.queries).parts {
        assert_accepted(&prom, name, &q);
    }
    assert!(checked > 30, "only {checked} expressions found");

    // The check can fail: a broken expression is refused.
    assert_eq!(prom.query("sum(k3s_scale_signal")["status"], "error");

    // Prometheus loaded every alert rule from the shipped file.
    let rules = prom.get_json("/api/v1/rules");
    let loaded: Vec<String> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    let mut want: Vec<String> = alert_exprs().into_iter().map(|(n, _)| n).collect();
    want.sort();
    let mut got = loaded.clone();
    got.sort();
    assert_eq!(got, want);
}

/// A series count in a query answer.
fn series(answer: &Value) -> usize {
    answer["data"]["result"].as_array().map_or(0, Vec::len)
}

#[test]
fn the_textfile_is_scraped_and_every_k3s_scale_panel_shows_data() {
    let server = MetricsServer::start(render_sample(1, 0));
    let prom = TestPrometheus::start(
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node-exporter\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            server.port
        ),
        &[],
    );
    let deadline = Instant::now() + SCRAPE_DEADLINE;
    let wait_for = |expr: &str, want: f64| {
        loop {
            let a = prom.query(expr);
            let v = a["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok());
            if v == Some(want) {
                return;
            }
            assert!(Instant::now() < deadline, "{expr} never became {want}: {a}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("k3s_scale_runs_total", 1.0);
    // A run happens that scales: the counters move, as they do in the real stack.
    server.set(render_sample(2, 1));
    wait_for("k3s_scale_scale_ups_total", 1.0);
    // Let a few more scrapes land so range functions have two samples either side.
    std::thread::sleep(Duration::from_secs(3));

    assert_eq!(
        series(&prom.query(r#"k3s_scale_signal{signal="cpu"}"#)),
        1,
        "labels survive the scrape"
    );
    let ann = dashboard()["annotations"]["list"].clone();
    let scale_up = ann
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "Scale up")
        .unwrap()["expr"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        series(&prom.query(&scale_up)),
        1,
        "the scale-up annotation fires: {scale_up}"
    );

    // Every dashboard query built only on k3s-scale's metrics returns data.
    let mut shown = 0;
    for e in dashboard_exprs() {
        let only_ours = !k3s_scale_names(&e).is_empty() && !e.contains("kube_");
        if !only_ours {
            continue;
        }
        let q = substitute_grafana_vars(&e);
        let a = assert_accepted(&prom, "dashboard", &q);
        assert!(series(&a) > 0, "no data for dashboard query {q}: {a}");
        shown += 1;
    }
    assert!(shown > 15, "{shown}");
}
