//! The monitoring artifacts are part of the product: an alert that cannot fire, or a dashboard panel that queries a
//! metric stacksetd does not export, fails silently exactly when it is needed. These tests check
//! deploy/prometheus/alerts.yaml with `promtool check rules`, run its unit tests (deploy/prometheus/alerts_test.yaml)
//! with `promtool test rules`, check that deploy/grafana/stacksetd.json is a dashboard whose every panel queries
//! something and whose every query parses, and hold every `stacksetd_*` name and label these files use to the list
//! of metric families stacksetd exports.
//!
//! promtool comes from Debian's prometheus package; scripts/test.sh installs it when missing. A missing promtool is
//! a failure, never a skip.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use stacksetd::metrics::catalog::{self, Family, Kind};

const ALERTS: &str = "deploy/prometheus/alerts.yaml";
const ALERTS_TEST: &str = "deploy/prometheus/alerts_test.yaml";
const DASHBOARD: &str = "deploy/grafana/stacksetd.json";

/// Every metric family stacksetd exports, with its labels: derived from the daemon's own registration code
/// (`stacksetd::metrics::catalog`), never listed by hand. The alerts, their unit tests and the dashboard may only
/// use these names and labels (plus the `job` and `instance` labels Prometheus adds, and `le` on a histogram's
/// `_bucket` series); the end-to-end tests hold a live scrape to the same list.
fn exported() -> &'static [Family] {
    static FAMILIES: OnceLock<Vec<Family>> = OnceLock::new();
    FAMILIES.get_or_init(catalog::families)
}

/// The alerts of alerts.yaml (docs/operations.md names them too).
const ALERT_NAMES: &[&str] = &[
    "StacksetdDown",
    "StacksetdAbsent",
    "StacksetdReconcileFailing",
    "StacksetdReconcileStale",
    "StacksetdStackSetDrifted",
    "StacksetdSpecDrift",
    "StacksetdAccountsMissingInstance",
    "StacksetdMemberAccessFailures",
    "StacksetdTemplateUpdatePending",
    "StacksetdTemplateRejected",
    "StacksetdManagementStackFailed",
    "StacksetdDesiredStateInvalid",
    "StacksetdCoverageGap",
    "StacksetdRolloutHalted",
    "StacksetdEventQueueDown",
];

/// Labels the scrape adds to every series.
const TARGET_LABELS: &[&str] = &["job", "instance"];
const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];
const PREFIX: &str = "stacksetd_";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// `promtool` from PATH; a missing tool is a failure (scripts/test.sh installs it), never a skip.
fn promtool() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool is not installed, so the Prometheus alerts cannot be checked. Run scripts/test.sh \
                 (it installs it) or, as root: apt-get update && apt-get install -y --no-install-recommends prometheus"
            )
        })
}

/// Runs promtool in the repository root; (success, stdout, stderr).
fn run_promtool(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool {args:?}: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Which family a series name belongs to, with the labels it may carry.
fn family(name: &str) -> Option<(&'static str, Vec<&'static str>)> {
    exported().iter().find_map(|f| {
        let family = f.name.as_str();
        let bucket = if name == family {
            false
        } else if f.kind == Kind::Histogram
            && HISTOGRAM_SUFFIXES
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(family))
        {
            name.ends_with("_bucket")
        } else {
            return None;
        };
        let mut allowed: Vec<&'static str> = f
            .labels
            .iter()
            .map(String::as_str)
            .chain(TARGET_LABELS.iter().copied())
            .collect();
        if bucket {
            allowed.push("le");
        }
        Some((family, allowed))
    })
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Every `stacksetd_*` word in `text` (comments, expressions, annotations, test series alike).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices(PREFIX) {
        if text[..start].chars().next_back().is_some_and(is_name_char) {
            continue;
        }
        let name: String = text[start..]
            .chars()
            .take_while(|c| is_name_char(*c))
            .collect();
        // "stacksetd_*" in prose names the prefix, not a metric.
        if name != PREFIX {
            names.insert(name);
        }
    }
    names
}

/// The `stacksetd_*` selectors of a PromQL expression (or a promtool series): name and the label names of its
/// matchers, e.g. `stacksetd_spec_drift{deployment=~"$deployment"}` -> ("stacksetd_spec_drift", ["deployment"]).
fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for (start, _) in expr.match_indices(PREFIX) {
        if expr[..start].chars().next_back().is_some_and(is_name_char) {
            continue;
        }
        let rest = &expr[start..];
        let name_len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        let name = rest[..name_len].to_string();
        let mut labels = Vec::new();
        if let Some(body) = rest[name_len..].strip_prefix('{') {
            let mut in_quotes = false;
            let mut escaped = false;
            let mut matcher = String::new();
            for c in body.chars() {
                if in_quotes {
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => in_quotes = false,
                        _ => {}
                    }
                    continue;
                }
                match c {
                    '"' => in_quotes = true,
                    ',' | '}' => {
                        let label: String = matcher
                            .trim_start()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !label.is_empty() {
                            labels.push(label);
                        }
                        matcher.clear();
                        if c == '}' {
                            break;
                        }
                    }
                    _ => matcher.push(c),
                }
            }
        }
        found.push((name, labels));
    }
    found
}

fn yaml(path: &str) -> serde_norway::Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

/// The alerting rules of alerts.yaml.
fn alert_rules() -> Vec<serde_norway::Value> {
    let doc = yaml(ALERTS);
    let groups = doc["groups"]
        .as_sequence()
        .expect("alerts.yaml has `groups`");
    let rules: Vec<_> = groups
        .iter()
        .flat_map(|g| {
            g["rules"]
                .as_sequence()
                .expect("every group has `rules`")
                .clone()
        })
        .collect();
    assert!(!rules.is_empty(), "{ALERTS} has no rules");
    rules
}

/// Every panel, those inside collapsed rows included.
fn panels(dashboard: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut stack: Vec<serde_json::Value> = dashboard["panels"]
        .as_array()
        .expect("the dashboard has `panels`")
        .clone();
    stack.reverse();
    while let Some(panel) = stack.pop() {
        if let Some(children) = panel["panels"].as_array() {
            stack.extend(children.iter().rev().cloned());
        }
        all.push(panel);
    }
    all
}

/// Every query of the dashboard: (panel title, expression).
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    panels(dashboard)
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or("?").to_string();
            panel["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| {
                    (
                        title.clone(),
                        t["expr"].as_str().unwrap_or_default().to_string(),
                    )
                })
        })
        .collect()
}

#[test]
fn promtool_check_rules_accepts_the_alerts() {
    let (ok, stdout, stderr) = run_promtool(&["check", "rules", ALERTS]);
    assert!(
        ok && stdout.contains("SUCCESS") && stderr.trim().is_empty(),
        "promtool check rules {ALERTS} fails:\n{stdout}{stderr}"
    );
}

#[test]
fn promtool_unit_tests_of_the_alerts_pass() {
    let (ok, stdout, stderr) = run_promtool(&["test", "rules", ALERTS_TEST]);
    assert!(
        ok && stdout.contains("SUCCESS"),
        "promtool test rules {ALERTS_TEST} fails:\n{stdout}{stderr}"
    );
}

#[test]
fn every_alert_waits_has_a_severity_says_what_to_do_and_is_unit_tested() {
    // Alert names with at least one expectation that it fires, in the unit tests.
    let tests = yaml(ALERTS_TEST);
    let mut tested_firing = BTreeSet::new();
    for case in tests["tests"]
        .as_sequence()
        .expect("alerts_test.yaml has `tests`")
    {
        for check in case["alert_rule_test"].as_sequence().into_iter().flatten() {
            let fires = check["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty());
            if fires {
                tested_firing.insert(check["alertname"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    let mut names = BTreeSet::new();
    for rule in alert_rules() {
        let Some(name) = rule["alert"].as_str() else {
            continue; // a recording rule
        };
        assert!(
            names.insert(name.to_string()),
            "alert {name} is defined twice"
        );
        assert!(rule["for"].as_str().is_some(), "alert {name} has no `for:`");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "alert {name}: severity {severity:?} is not critical, warning or info"
        );
        let summary = rule["annotations"]["summary"].as_str().unwrap_or_default();
        let description = rule["annotations"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(!summary.is_empty(), "alert {name} has no summary");
        assert!(
            description.contains("`stacksetd status`"),
            "alert {name}: the description should say where to look (`stacksetd status`, /status): {description}"
        );
        assert!(
            tested_firing.contains(name),
            "alert {name} is never expected to fire in {ALERTS_TEST}"
        );
    }
    let expected: BTreeSet<String> = ALERT_NAMES.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        names, expected,
        "the alerts of {ALERTS} changed: update ALERT_NAMES and docs/operations.md"
    );
}

#[test]
fn the_dashboard_is_valid_json_and_every_panel_has_queries() {
    let dashboard = dashboard();
    assert!(
        dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion {} is older than Grafana 9",
        dashboard["schemaVersion"]
    );
    assert_eq!(dashboard["uid"], "stacksetd");

    let variables: BTreeMap<&str, &serde_json::Value> = dashboard["templating"]["list"]
        .as_array()
        .expect("the dashboard has template variables")
        .iter()
        .map(|v| (v["name"].as_str().unwrap_or_default(), v))
        .collect();
    let datasource = variables
        .get("datasource")
        .expect("a `datasource` variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let deployment = variables
        .get("deployment")
        .expect("a `deployment` variable");
    assert_eq!(
        deployment["definition"],
        "label_values(stacksetd_reconcile_total, deployment)"
    );
    assert_eq!(deployment["datasource"]["uid"], "${datasource}");

    let mut ids = BTreeSet::new();
    let mut queried = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(panel["id"].as_u64().expect("every panel has an id")),
            "panel id of {title} repeats"
        );
        assert!(panel["gridPos"].is_object(), "panel {title} has no gridPos");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {title} ignores the datasource variable"
        );
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("panel {title} has no targets"));
        let mut refs = BTreeSet::new();
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(
                !expr.trim().is_empty(),
                "a target of panel {title} has no expr"
            );
            assert!(
                refs.insert(target["refId"].as_str().expect("every target has a refId")),
                "panel {title} repeats a refId"
            );
        }
        queried += 1;
    }
    assert!(
        queried >= 15,
        "expected at least 15 panels with queries, found {queried}"
    );
}

/// Grafana's variables replaced by values, every query must parse: promtool checks them as recording rules.
#[test]
fn every_dashboard_query_parses_as_promql() {
    let dashboard = dashboard();
    let rules: Vec<serde_json::Value> = dashboard_queries(&dashboard)
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$deployment", ".*");
            serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("dashboard_queries.yaml");
    // JSON is YAML.
    let doc = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, doc.to_string()).expect("write the rule file");
    let (ok, stdout, stderr) =
        run_promtool(&["check", "rules", file.to_str().expect("a UTF-8 path")]);
    assert!(
        ok,
        "a query of {DASHBOARD} does not parse:\n{stdout}{stderr}"
    );
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_use_is_exported() {
    let mut unknown = Vec::new();
    for path in [ALERTS, ALERTS_TEST, DASHBOARD] {
        let names = metric_names(&read(path));
        assert!(!names.is_empty(), "{path} names no stacksetd_ metric");
        for name in names {
            if family(&name).is_none() {
                unknown.push(format!("{path}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "not exported by stacksetd (its metrics: src/metrics/):\n{}",
        unknown.join("\n")
    );
}

#[test]
fn every_selector_uses_only_its_metrics_labels_and_the_dashboard_filters_by_deployment() {
    let mut exprs: Vec<(String, String)> = alert_rules()
        .iter()
        .map(|r| {
            (
                format!("{ALERTS}: {}", r["alert"].as_str().unwrap_or("?")),
                r["expr"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let tests = yaml(ALERTS_TEST);
    for case in tests["tests"]
        .as_sequence()
        .expect("alerts_test.yaml has `tests`")
    {
        for series in case["input_series"].as_sequence().into_iter().flatten() {
            let series = series["series"].as_str().unwrap_or_default();
            exprs.push((format!("{ALERTS_TEST}: {series}"), series.to_string()));
        }
    }
    let dashboard_exprs: Vec<(String, String)> = dashboard_queries(&dashboard())
        .into_iter()
        .map(|(title, expr)| (format!("{DASHBOARD}: panel {title}"), expr))
        .collect();

    let mut problems = Vec::new();
    for (place, expr) in exprs.iter().chain(&dashboard_exprs) {
        for (name, labels) in selectors(expr) {
            let Some((_, allowed)) = family(&name) else {
                problems.push(format!("{place}: {name} is not exported"));
                continue;
            };
            for label in labels {
                if !allowed.contains(&label.as_str()) {
                    problems.push(format!(
                        "{place}: {name} has no label {label} (it has {allowed:?})"
                    ));
                }
            }
        }
    }
    for (place, expr) in &dashboard_exprs {
        for (name, _) in selectors(expr) {
            let by_deployment =
                family(&name).is_some_and(|(_, labels)| labels.contains(&"deployment"));
            if by_deployment && !expr.contains(&format!("{name}{{deployment=~\"$deployment\"")) {
                problems.push(format!(
                    "{place}: {name} is not filtered by the deployment variable"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_dashboard_shows_every_exported_metric() {
    let used: BTreeSet<&str> = metric_names(&read(DASHBOARD))
        .iter()
        .filter_map(|name| family(name).map(|(family, _)| family))
        .collect();
    let missing: Vec<&str> = exported()
        .iter()
        .map(|f| f.name.as_str())
        .filter(|name| !used.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "{DASHBOARD} has no panel for {missing:?}"
    );
}

#[test]
fn selectors_and_names_are_found_in_expressions() {
    assert_eq!(
        selectors(
            r#"sum(rate(stacksetd_reconcile_total{deployment=~"$deployment", result!="a,}b"}[5m])) / up"#
        ),
        vec![(
            "stacksetd_reconcile_total".to_string(),
            vec!["deployment".to_string(), "result".to_string()]
        )]
    );
    assert_eq!(
        selectors("stacksetd_spec_drift > 0 unless stacksetd_spec_drift offset 1h"),
        vec![
            ("stacksetd_spec_drift".to_string(), vec![]),
            ("stacksetd_spec_drift".to_string(), vec![])
        ]
    );
    assert_eq!(
        metric_names(
            "every stacksetd_* series; not_stacksetd_x; stacksetd_reconcile_duration_seconds_bucket"
        ),
        BTreeSet::from(["stacksetd_reconcile_duration_seconds_bucket".to_string()])
    );
    assert_eq!(
        family("stacksetd_reconcile_duration_seconds_bucket").map(|(f, l)| (f, l.contains(&"le"))),
        Some(("stacksetd_reconcile_duration_seconds", true))
    );
    assert!(
        family("stacksetd_reconcile_total_count").is_none(),
        "only histograms have _count series"
    );
    assert!(
        family("stacksetd_reconcile_duration_seconds_sum").is_some_and(|(_, l)| !l.contains(&"le"))
    );
}

/// The metrics table of docs/reference.md lists exactly the exported families, each with its type and labels.
#[test]
fn the_reference_documents_every_exported_metric_with_its_type_and_labels() {
    let reference = read("docs/reference.md");
    let mut documented: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for line in reference.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `name` | type | labels |
        if cells.len() < 5 || !cells[1].starts_with('`') {
            continue;
        }
        let kind = cells[2];
        if !matches!(kind, "counter" | "gauge" | "histogram") {
            continue;
        }
        let name = format!("{PREFIX}{}", cells[1].trim_matches('`'));
        let labels = cells[3]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        documented.insert(name, (kind.to_string(), labels));
    }
    let mut problems = Vec::new();
    for f in exported() {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let labels: BTreeSet<String> = f.labels.iter().cloned().collect();
        match documented.remove(&f.name) {
            None => problems.push(format!(
                "{} ({kind}, labels {labels:?}) is not in docs/reference.md's table",
                f.name
            )),
            Some((k, l)) if k != kind || l != labels => problems.push(format!(
                "{}: docs/reference.md says {k} with {l:?}; the code registers {kind} with {labels:?}",
                f.name
            )),
            Some(_) => {}
        }
    }
    for name in documented.keys() {
        problems.push(format!(
            "docs/reference.md documents {name}, which stacksetd does not export"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
