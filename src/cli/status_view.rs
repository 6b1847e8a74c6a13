//! `stacksetd status`: one document per run, whichever source answered. It asks a running daemon first
//! (GET /status at the listen address: its last passes, drift, access checks, conditions) and observes AWS
//! directly when no daemon answers (the same observation `plan` makes, plus the access check when configured).
//! Both sources give the same JSON shape (the daemon's /status deployment entries), so the table is rendered by
//! one function, and `--output json` prints the document itself.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::controller::{self, Context};
use crate::daemon::access;
use crate::desired::DesiredState;

/// How long `status` waits for a daemon before observing AWS itself.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(2);

/// The daemon's /status, or `None` when nothing answers at `addr` (then AWS is observed directly). `token` is
/// sent as `Authorization: Bearer` (the daemon's `status_token`); a daemon that refuses it is an error, never a
/// reason to fall back silently.
pub async fn from_daemon(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<Option<Value>, crate::Error> {
    let Ok(client) = reqwest::Client::builder()
        .timeout(DAEMON_TIMEOUT)
        .no_proxy()
        .build()
    else {
        return Ok(None);
    };
    let mut request = client.get(format!("http://{addr}/status"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let Ok(response) = request.send().await else {
        return Ok(None);
    };
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Err(crate::Error::Settings(format!(
            "the daemon at {addr} needs its status_token for /status: {} (set status_token, or \
             STACKSETD_STATUS_TOKEN, to the daemon's)",
            if token.is_some() {
                "the one given was refused"
            } else {
                "none was given"
            }
        )));
    }
    if !response.status().is_success() {
        return Ok(None);
    }
    let Some(status) = response
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return Ok(None);
    };
    Ok(Some(json!({
        "source": "daemon",
        "daemon": addr.to_string(),
        "deployments": status.get("deployments").cloned().unwrap_or_else(|| json!({})),
    })))
}

/// Observe AWS for every deployment (no writes), in the daemon's /status shape.
pub async fn from_aws(ctx: &Context, desired: &DesiredState, access_concurrency: usize) -> Value {
    let mut deployments = serde_json::Map::new();
    for deployment in &desired.deployments {
        let mut entry = json!({ "stackSetName": deployment.spec.stack_set_name });
        match controller::dry_run(deployment, ctx).await {
            Ok((plan, report)) => {
                let (status, reason, message) = if plan.is_empty() {
                    (
                        "True",
                        "Converged",
                        "the stack set matches the desired state".to_string(),
                    )
                } else {
                    (
                        "False",
                        "ChangesPending",
                        format!(
                            "{} step(s) pending; `stacksetd plan` shows them",
                            plan.steps.len()
                        ),
                    )
                };
                entry["conditions"] = json!([{ "type": "Ready", "status": status, "reason": reason, "message": message }]);
                entry["template"] = serde_json::to_value(&report.template).unwrap_or(Value::Null);
                entry["observed"] = serde_json::to_value(&report).unwrap_or(Value::Null);
                match access::check_deployment(deployment, ctx, access_concurrency).await {
                    Ok(report) => {
                        entry["access"] = serde_json::to_value(report).unwrap_or(Value::Null)
                    }
                    Err(e) => {
                        entry["access"] = json!({ "error": e.to_string() });
                    }
                }
            }
            Err(e) => {
                entry["conditions"] = json!([{
                    "type": "Ready", "status": "False", "reason": e.metric_label(), "message": e.to_string()
                }]);
                entry["lastError"] =
                    json!({ "reason": e.metric_label(), "message": e.to_string() });
            }
        }
        deployments.insert(deployment.name().to_string(), entry);
    }
    json!({ "source": "aws", "deployments": deployments })
}

/// Whether any deployment is in error (the command's exit code).
pub fn has_errors(doc: &Value) -> bool {
    doc["deployments"]
        .as_object()
        .is_some_and(|d| d.values().any(|d| !d["lastError"].is_null()))
}

/// The human table. Every string in it came from AWS, a template or the daemon, so each is escaped first
/// ([`crate::cli::output::safe`]): a value cannot add a line or hide text.
pub fn text(doc: &Value) -> String {
    let mut doc = doc.clone();
    escape_strings(&mut doc);
    let doc = &doc;
    let mut out = String::new();
    match doc["source"].as_str() {
        Some("daemon") => out.push_str(&format!(
            "source: the daemon at {} (its last passes)\n",
            doc["daemon"].as_str().unwrap_or("?")
        )),
        _ => out.push_str("source: AWS, observed now (no daemon answered)\n"),
    }
    let Some(deployments) = doc["deployments"].as_object() else {
        return out;
    };
    if deployments.is_empty() {
        out.push_str("no deployments\n");
    }
    for (name, d) in deployments {
        out.push_str(&format!(
            "\n{name} (stack set {})\n",
            d["stackSetName"].as_str().unwrap_or("?")
        ));
        let conditions: Vec<String> = d["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{}={} ({})",
                    s(&c["type"]),
                    s(&c["status"]),
                    s(&c["reason"])
                )
            })
            .collect();
        row(&mut out, "conditions", &conditions.join(", "));
        if let Some(e) = d["lastError"].as_object() {
            row(
                &mut out,
                "last error",
                &format!("{} ({})", s(&e["message"]), s(&e["reason"])),
            );
        }
        let r = &d["observed"];
        if r.is_null() {
            row(
                &mut out,
                "observed",
                "not yet (no pass has observed the stack set)",
            );
        } else {
            observed_rows(&mut out, r);
        }
        access_row(&mut out, &d["access"]);
        template_row(&mut out, &d["template"]);
    }
    out
}

fn observed_rows(out: &mut String, r: &Value) {
    let n = |key: &str| r[key].as_u64().unwrap_or(0);
    let instances: Vec<String> = r["instances"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let total: u64 = r["instances"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    row(
        out,
        "instances",
        &if instances.is_empty() {
            "none".to_string()
        } else {
            format!("{total} ({})", instances.join(", "))
        },
    );
    row(
        out,
        "coverage",
        &format!(
            "{} account(s) targeted; missing {} instance(s) in {} account(s); orphaned {}; OUTDATED {}; \
             INOPERABLE {}; suspended/closing {} account(s), {} skipped",
            n("accounts_targeted"),
            n("missing_instances"),
            n("accounts_missing_instance"),
            n("orphaned_instances"),
            n("outdated_instances"),
            n("inoperable_instances"),
            n("inactive_accounts"),
            n("skipped_suspended_instances"),
        ),
    );
    for warning in r["target_warnings"].as_array().into_iter().flatten() {
        row(out, "warning", s(warning));
    }
    list_row(out, "missing", &r["missing_accounts"]);
    list_row(out, "orphaned", &r["orphaned"]);
    for problem in r["inoperable"].as_array().into_iter().flatten() {
        row(
            out,
            "INOPERABLE",
            &format!("{}: {}", s(&problem["instance"]), s(&problem["reason"])),
        );
    }
    let drift = &r["drift"];
    if !drift.is_null() {
        row(
            out,
            "drift",
            &format!(
                "{}; {} DRIFTED instance(s); last check {}",
                s(&drift["status"]),
                drift["driftedInstances"].as_u64().unwrap_or(0),
                drift["lastCheck"].as_str().unwrap_or("never")
            ),
        );
        list_row(out, "drifted", &drift["drifted"]);
    }
    let spec_drift: Vec<String> = r["spec_drift"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{}: {} -> {}",
                s(&d["field"]),
                s(&d["applied"]),
                s(&d["found"])
            )
        })
        .collect();
    row(
        out,
        "spec drift",
        &if spec_drift.is_empty() {
            "none".to_string()
        } else {
            spec_drift.join("; ")
        },
    );
    for line in r["pending"].as_array().into_iter().flatten() {
        row(out, "pending", s(line));
    }
}

fn access_row(out: &mut String, access: &Value) {
    if access.is_null() {
        row(
            out,
            "access",
            "not checked (spec.accessCheck not set, or no check has run yet)",
        );
        return;
    }
    if let Some(error) = access["error"].as_str() {
        row(out, "access", &format!("check failed: {error}"));
        return;
    }
    row(
        out,
        "access",
        &format!(
            "role {}: {} account(s) checked, {} failed (at {})",
            s(&access["roleName"]),
            access["checked"].as_u64().unwrap_or(0),
            access["failed"].as_u64().unwrap_or(0),
            s(&access["checkedAt"])
        ),
    );
    for failure in access["failures"].as_array().into_iter().flatten() {
        row(
            out,
            "no access",
            &format!("{}: {}", s(&failure["account"]), s(&failure["reason"])),
        );
    }
}

fn template_row(out: &mut String, template: &Value) {
    if template.is_null() {
        return;
    }
    let short = |v: &Value| {
        v.as_str()
            .map_or("(none)".to_string(), |x| x.chars().take(12).collect())
    };
    row(
        out,
        "template",
        &format!(
            "{} applied sha256:{}, latest sha256:{}; {}{}",
            s(&template["policy"]),
            short(&template["appliedSha256"]),
            short(&template["sha256"]),
            s(&template["decision"]),
            if template["updateAvailable"].as_bool() == Some(true) {
                " (an update is available and not applied)"
            } else {
                ""
            }
        ),
    );
}

fn row(out: &mut String, label: &str, value: &str) {
    out.push_str(&format!("  {label:<11} {value}\n"));
}

fn list_row(out: &mut String, label: &str, items: &Value) {
    let items: Vec<&str> = items
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !items.is_empty() {
        row(out, label, &items.join(", "));
    }
}

fn escape_strings(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let std::borrow::Cow::Owned(escaped) = crate::cli::output::safe(text) {
                *text = escaped;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(escape_strings),
        Value::Object(map) => map.values_mut().for_each(escape_strings),
        _ => {}
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_every_section_from_a_daemon_document() {
        let doc = json!({
            "source": "daemon",
            "daemon": "127.0.0.1:9464",
            "deployments": {"aimably": {
                "stackSetName": "AimablyDataOnly",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Converged"}],
                "observed": {
                    "instances": {"CURRENT/SUCCEEDED": 30, "OUTDATED/FAILED": 1},
                    "accounts_targeted": 32, "missing_instances": 1, "accounts_missing_instance": 1,
                    "missing_accounts": ["222222222222"], "orphaned_instances": 0, "orphaned": [],
                    "outdated_instances": 1, "inoperable_instances": 0, "inoperable": [],
                    "inactive_accounts": 1, "skipped_suspended_instances": 0,
                    "drift": {"status": "DRIFTED", "driftedInstances": 1, "drifted": ["333333333333/us-west-2"],
                              "lastCheck": "2026-11-28T10:00:00Z"},
                    "spec_drift": [{"field": "description", "applied": "\"a\"", "found": "\"b\""}],
                    "pending": ["update stack set settings (description) on all 31 instance(s)"]
                },
                "access": {"roleName": "AimablyMemberRole", "checked": 32, "failed": 1,
                           "checkedAt": "2026-11-28T10:00:00Z",
                           "failures": [{"account": "444444444444", "kind": "access_denied", "reason": "denied"}]},
                "template": {"policy": "DataOnly", "appliedSha256": "abcdef0123456789", "sha256": "fedcba9876543210",
                             "decision": "held_manual", "updateAvailable": true}
            }}
        });
        let text = text(&doc);
        for needle in [
            "source: the daemon at 127.0.0.1:9464",
            "Ready=True (Converged)",
            "instances   31 (CURRENT/SUCCEEDED 30, OUTDATED/FAILED 1)",
            "32 account(s) targeted; missing 1 instance(s) in 1 account(s)",
            "missing     222222222222",
            "drift       DRIFTED; 1 DRIFTED instance(s)",
            "drifted     333333333333/us-west-2",
            "spec drift  description: \"a\" -> \"b\"",
            "1 failed",
            "no access   444444444444: denied",
            "DataOnly applied sha256:abcdef012345, latest sha256:fedcba987654; held_manual (an update",
            "pending     update stack set settings",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(!has_errors(&doc));
    }

    #[test]
    fn a_value_from_aws_cannot_add_a_line_or_hide_text_in_the_table() {
        let doc = json!({
            "source": "daemon",
            "daemon": "127.0.0.1:9464",
            "deployments": {"aimably": {
                "stackSetName": "Aimably\nReady=True (Converged)",
                "conditions": [{"type": "Ready", "status": "False", "reason": "Stalled",
                                "message": "denied\u{1b}[2K\rall good \u{202e}"}],
                "access": {"roleName": "AimablyMemberRole", "checked": 1, "failed": 1,
                           "failures": [{"account": "444444444444", "kind": "access_denied",
                                         "reason": "x\n  no access   none"}]}
            }}
        });
        let text = text(&doc);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{202e}'),
            "{text:?}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("Ready=True")),
            "a forged line: {text}"
        );
        assert!(
            !text.lines().any(|l| l.trim() == "no access   none"),
            "a forged line: {text}"
        );
        assert!(text.contains("\\u{000a}"), "{text}");
    }
}
