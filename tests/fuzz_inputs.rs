//! Bad input, fuzzed with proptest: config YAML, state JSON and Prometheus answers never
//! panic, and every rejection names the problem. Each test prints its case count and time.

use k3s_scale::config::{Config, SIGNAL_NAMES};
use k3s_scale::signals::answer;
use k3s_scale::state::State;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use std::time::Instant;

const CASES: u32 = 3000;

fn report(name: &str, cases: u32, started: Instant) {
    println!(
        "fuzz {name}: {cases} cases in {:.2} s, no panic",
        started.elapsed().as_secs_f64()
    );
}

/// YAML built from the real key names with random values and random typos, plus raw noise.
fn yaml_strategy() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "prometheus",
        "url",
        "timeout",
        "thresholds",
        "pending_pods",
        "cpu_threshold",
        "memory_threshold",
        "cpu_scale_down",
        "memory_scale_down",
        "limits",
        "min_nodes",
        "max_nodes",
        "scale_up_cooldown",
        "docker",
        "cpus",
        "memory",
        "name_prefix",
        "drain",
        "concurrency",
        "dry_run",
        "queries",
        "cpu",
        "bogus_key",
        "<<",
        "&a",
        "*a",
    ]);
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| v.to_string()),
        Just(".nan".to_string()),
        Just("-.inf".to_string()),
        Just("~".to_string()),
        Just("[1, 2, {a: b}]".to_string()),
        "[a-z0-9 :\\-\\[\\]{}'\"]{0,20}",
    ];
    let line = (0usize..4, key, value)
        .prop_map(|(indent, k, v)| format!("{}{k}: {v}", "  ".repeat(indent)));
    prop_oneof![
        4 => prop::collection::vec(line, 0..20).prop_map(|l| l.join("\n")),
        1 => ".{0,200}",
        1 => prop::collection::vec(Just("- ["), 0..300).prop_map(|v| v.concat()),
    ]
}

#[test]
fn config_yaml_never_panics_and_errors_say_something() {
    let started = Instant::now();
    let mut runner = TestRunner::new(PtConfig {
        cases: CASES,
        failure_persistence: None,
        ..PtConfig::default()
    });
    runner
        .run(&yaml_strategy(), |text| {
            if let Err(e) = Config::parse(&text) {
                let msg = e.to_string();
                prop_assert!(msg.len() > 10, "vague error {msg:?} for {text:?}");
            }
            Ok(())
        })
        .unwrap();
    report("config YAML", CASES, started);
}

#[test]
fn deeply_nested_and_huge_yaml_is_rejected_without_hanging() {
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(Config::parse(&nested).is_err());
    let mut many = String::from("prometheus:\n  queries:\n");
    for i in 0..50_000 {
        many.push_str(&format!("    q{i}: up\n"));
    }
    let e = Config::parse(&many).unwrap_err().to_string();
    assert!(
        e.contains("prometheus.queries.q0") || e.contains("budget") || e.contains("limit"),
        "{e}"
    );
    let bomb = "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d]\n";
    assert!(
        Config::parse(bomb).is_err(),
        "alias expansion is refused or fails on unknown keys"
    );
}

fn json_value(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "[a-z0-9:TZ\\-]{0,25}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(depth, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "version",
                    "last_scale_up",
                    "low_since",
                    "provisioning",
                    "name",
                    "started_at",
                    "next_worker_index",
                    "totals",
                    "events",
                    "status",
                    "data",
                    "resultType",
                    "result",
                    "metric",
                    "value",
                    "signal",
                    "node",
                    "error",
                ])
                .prop_map(String::from),
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn state_json_never_panics() {
    let started = Instant::now();
    let mut runner = TestRunner::new(PtConfig {
        cases: CASES,
        failure_persistence: None,
        ..PtConfig::default()
    });
    runner
        .run(&json_value(5), |v| {
            let bytes = serde_json::to_vec(&v).unwrap();
            if let Err(e) = State::from_json(&bytes) {
                prop_assert!(e.to_string().contains("state reset"), "{e}");
            }
            Ok(())
        })
        .unwrap();
    // Deep nesting: serde_json's recursion limit turns it into an error, not a crash.
    let deep = format!(
        "{{\"version\":1,\"events\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(State::from_json(deep.as_bytes()).is_err());
    report("state JSON", CASES, started);
}

fn prom_series() -> impl Strategy<Value = String> {
    let signal = prop::sample::select(vec![
        "pending_pods",
        "pending_cpu_cores",
        "pending_memory_bytes",
        "cpu",
        "memory",
        "node_ready",
        "node_cpu",
        "node_memory",
        "node_requests",
        "node_allocatable",
        "other",
    ]);
    let value = prop_oneof![
        Just("\"NaN\"".to_string()),
        Just("\"+Inf\"".to_string()),
        Just("\"-Inf\"".to_string()),
        any::<f64>().prop_map(|v| format!("\"{v}\"")),
        any::<i32>().prop_map(|v| v.to_string()),
        Just("null".to_string()),
        Just("\"x\"".to_string()),
    ];
    let node = prop::option::of("[a-z]{1,3}");
    let resource = prop::option::of(prop::sample::select(vec!["cpu", "memory", "gpu"]));
    (signal, value, node, resource).prop_map(|(s, v, n, r)| {
        let node = n.map(|n| format!(",\"node\":\"{n}\"")).unwrap_or_default();
        let resource = r
            .map(|r| format!(",\"resource\":\"{r}\""))
            .unwrap_or_default();
        format!("{{\"metric\":{{\"signal\":\"{s}\"{node}{resource}}},\"value\":[1.5,{v}]}}")
    })
}

#[test]
fn prometheus_answers_never_panic() {
    let started = Instant::now();
    let strategy = prop_oneof![
        3 => prop::collection::vec(prom_series(), 0..30).prop_map(|s| format!(
            "{{\"status\":\"success\",\"data\":{{\"resultType\":\"vector\",\"result\":[{}]}}}}", s.join(","))),
        1 => json_value(6).prop_map(|v| v.to_string()),
        1 => ".{0,100}",
    ];
    let mut runner = TestRunner::new(PtConfig {
        cases: CASES,
        failure_persistence: None,
        ..PtConfig::default()
    });
    runner
        .run(&strategy, |body| {
            match answer::parse_response(body.as_bytes(), &SIGNAL_NAMES) {
                Ok(snap) => {
                    for (name, v) in snap.signals() {
                        prop_assert!(
                            v.is_none_or(f64::is_finite),
                            "{name} = {v:?} leaked a non-finite value"
                        );
                    }
                }
                Err(e) => prop_assert!(e.to_string().len() > 20, "vague: {e}"),
            }
            Ok(())
        })
        .unwrap();
    report("Prometheus answers", CASES, started);
}

/// Keys and values of the wrong type for them.
const WRONG_TYPES: [(&str, &str, &str); 16] = [
    ("limits", "max_nodes", "many"),
    ("limits", "min_nodes", "[1]"),
    ("limits", "scale_up_cooldown", "5x"),
    ("limits", "scale_down_cooldown", "-5s"),
    ("thresholds", "cpu_threshold", "high"),
    ("thresholds", "pending_pods", "-3"),
    ("docker", "cpus", "true"),
    ("docker", "agent_args", "7"),
    ("docker", "memory", "lots"),
    ("docker", "ulimit_nofile", "1e3"),
    ("drain", "concurrency", "1.5"),
    ("scaling", "max_step", "{a: 1}"),
    ("kubernetes", "permanent_nodes", "{a: b}"),
    ("state", "path", "[1]"),
    ("prometheus", "queries", "[1]"),
    ("prometheus", "timeout", "[1]"),
];

#[test]
fn config_type_errors_name_their_line_and_column() {
    let started = Instant::now();
    let cases = 1000;
    let mut runner = TestRunner::new(PtConfig {
        cases,
        failure_persistence: None,
        ..PtConfig::default()
    });
    // Comment and blank lines, a valid section, then the section with the bad value
    // after some valid keys of another section: the error must point at the bad line.
    let strategy = (0usize..30, prop::bool::ANY, 0usize..WRONG_TYPES.len());
    runner
        .run(&strategy, |(filler, with_valid, which)| {
            let (section, key, value) = WRONG_TYPES[which];
            let mut text = String::new();
            for i in 0..filler {
                text.push_str(if i % 3 == 0 {
                    "\n"
                } else {
                    "# a comment line\n"
                });
            }
            if with_valid && section != "metrics" {
                text.push_str("metrics:\n  textfile: /tmp/k3s-scale.prom\n");
            }
            text.push_str(&format!("{section}:\n  {key}: {value}\n"));
            let line = text.lines().count();
            let e = Config::parse(&text).unwrap_err().to_string();
            // The value's column; a sequence where a scalar is due points at the key.
            let at_value = format!("line {line} column {}", key.len() + 5);
            let at_key = format!("line {line} column 3");
            prop_assert!(
                e.contains(&at_value) || e.contains(&at_key),
                "{key}: {value} at line {line}: {e}"
            );
            Ok(())
        })
        .unwrap();
    report("config type errors with line and column", cases, started);
}

#[test]
fn prometheus_answers_nested_deep_or_with_structure_missing_are_refused() {
    let started = Instant::now();
    let nest = |inner: &str| format!("{}{inner}{}", "[".repeat(100_000), "]".repeat(100_000));
    // Nested where a series is due: refused at the first wrong type.
    let deep_result = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        nest("")
    );
    // Nested in a label the parser skips: skipped without recursing, the rest is read.
    let deep_label = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"signal":"cpu","deep":{}}},"value":[1,"1"]}}]}}}}"#,
        nest("")
    );
    assert_eq!(
        answer::parse_response(deep_label.as_bytes(), &SIGNAL_NAMES)
            .unwrap()
            .cpu,
        Some(1.0)
    );
    // Nested where a sample value is due.
    let deep_value = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"signal":"cpu"}},"value":{}}}]}}}}"#,
        nest("")
    );
    let cases: Vec<(String, &str)> = vec![
        (deep_result, "invalid type: sequence"),
        (deep_value, "invalid type: sequence"),
        (r#"{"data":{"resultType":"vector","result":[]}}"#.into(), "missing field `status`"),
        (r#"{"status":"success","data":{"result":[]}}"#.into(), "resultType"),
        (r#"{"status":"success","data":{"resultType":"vector"}}"#.into(), "missing field `result`"),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"signal":"cpu"}}]}}"#.into(),
            "missing field `value`",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"signal":"cpu"},"value":[1]}]}}"#.into(),
            "invalid length",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"signal":7},"value":[1,"1"]}]}}"#.into(),
            "invalid type",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"signal":"node_ready","node":"a"},"value":[1,"1"]},{"metric":{"signal":"node_ready","node":"a"},"value":[1,"0"]}]}}"#.into(),
            "more than one series for node a",
        ),
    ];
    let n = cases.len() as u32 + 1;
    for (body, needle) in cases {
        let e = answer::parse_response(body.as_bytes(), &SIGNAL_NAMES)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
    report("Prometheus answers, deep or incomplete", n, started);
}
