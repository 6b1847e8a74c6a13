//! `stacksetd status`: one document per run, whichever source answered. It asks a running daemon first
//! (GET /status at the listen address: its last passes, drift, access checks, conditions) and observes AWS
//! directly when no daemon answers (the same observation `plan` makes, plus the access check when configured).
//! Both sources give the same JSON shape (the daemon's /status deployment entries), so the table is rendered by
//! one function, and `--output json` prints the document itself.

use std::net::SocketAddr;
use std::time::Duration;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::controller::credentials::Contexts;
use crate::controller::{self, DeploymentState, Report, TemplateReport};
use crate::daemon::access::{self, AccessReport};
use crate::desired::DesiredState;
use crate::status::{Condition, DeploymentStatus, ErrorRecord, Status};

/// How long `status` waits for a daemon before observing AWS itself.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(2);

/// What `stacksetd status` prints (`--output json`) and renders as the table: the daemon's deployment entries
/// as /status has them, or the same entries observed from AWS now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDocument {
    pub source: Source,
    /// The daemon's address, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon: Option<String>,
    /// The daemon's last load of the desired-state file (a rejected edit is shown, and fails the command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<crate::status::LoadRecord>,
    /// The daemon's event queue (`events.queue_url`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<crate::status::EventQueueStatus>,
    pub deployments: BTreeMap<String, DeploymentStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Daemon,
    Aws,
}

/// The daemon's /status, or `None` when nothing answers at `addr` (then AWS is observed directly). `token` is
/// sent as `Authorization: Bearer` (the daemon's `status_token`); a daemon that refuses it is an error, never a
/// reason to fall back silently.
pub async fn from_daemon(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<Option<StatusDocument>, crate::Error> {
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
        .and_then(|b| serde_json::from_slice::<Status>(&b).ok())
    else {
        return Ok(None);
    };
    Ok(Some(StatusDocument {
        source: Source::Daemon,
        daemon: Some(addr.to_string()),
        desired_state: status.desired_state.last_load,
        events: status.events,
        deployments: status.deployments,
    }))
}

/// Observe AWS for every deployment (no writes), as /status deployment entries.
pub async fn from_aws(
    contexts: &Contexts,
    desired: &DesiredState,
    access_concurrency: usize,
) -> StatusDocument {
    let mut deployments = BTreeMap::new();
    for deployment in &desired.deployments {
        let ctx = contexts.base();
        let mut entry = DeploymentStatus {
            stack_set_name: deployment.spec.stack_set_name.clone(),
            generation: deployment.generation(),
            ..DeploymentStatus::default()
        };
        let ready = |status: &'static str, reason: String, message: String| Condition {
            kind: "Ready".into(),
            status: status.into(),
            reason,
            message,
            last_transition_time: controller::rfc3339(ctx.wall_now()),
        };
        let observed = match contexts.for_deployment(deployment).await {
            Ok(ctx) => {
                controller::dry_run_verdict(deployment, &ctx, &mut DeploymentState::default())
                    .await
                    .map(|answer| (answer, ctx))
            }
            Err(e) => Err(e),
        };
        match observed {
            Ok(((plan, report, verdict), ctx)) => {
                // The controller's own verdict (the daemon's would be the same), never one derived here.
                entry.conditions = vec![match verdict {
                    Some(controller::State::Converged) => ready(
                        "True",
                        "Converged".into(),
                        "the stack set matches the desired state".into(),
                    ),
                    Some(controller::State::CoverageGap(gap)) => {
                        ready("False", "CoverageGap".into(), gap.why)
                    }
                    Some(controller::State::TemplateUnapproved { message }) => {
                        ready("False", "TemplateUnapproved".into(), message)
                    }
                    Some(controller::State::RollingOut(rollout)) => {
                        let (reason, message) = rollout.condition();
                        ready("False", reason.into(), message)
                    }
                    _ if plan.is_empty() => ready(
                        "False",
                        "Pending".into(),
                        "nothing to change now, but instances are still being worked on or a drift check is due"
                            .into(),
                    ),
                    _ => ready(
                        "False",
                        "ChangesPending".into(),
                        format!(
                            "{} step(s) pending; `stacksetd plan` shows them",
                            plan.steps.len()
                        ),
                    ),
                }];
                entry.template = report.template.clone();
                entry.observed = Some(report);
                match access::check_deployment(deployment, &ctx, access_concurrency).await {
                    Ok(report) => entry.access = report,
                    Err(e) => entry.access_error = Some(e.to_string()),
                }
                entry.overlay_access();
            }
            Err(e) => {
                entry.conditions = vec![ready("False", e.metric_label().into(), e.to_string())];
                entry.last_error = Some(ErrorRecord {
                    reason: e.metric_label().into(),
                    message: e.to_string(),
                    at: controller::rfc3339(ctx.wall_now()),
                });
            }
        }
        deployments.insert(deployment.name().to_string(), entry);
    }
    StatusDocument {
        source: Source::Aws,
        daemon: None,
        desired_state: None,
        events: None,
        deployments,
    }
}

/// Whether any deployment is in error (the command's exit code).
pub fn has_errors(doc: &StatusDocument) -> bool {
    doc.deployments.values().any(|d| d.last_error.is_some())
        || doc
            .desired_state
            .as_ref()
            .is_some_and(|l| l.rejected().is_some())
}

/// The human table. Every string in it came from AWS, a template or the daemon, so each is escaped first
/// ([`crate::cli::output::safe`]): a value cannot add a line or hide text.
pub fn text(doc: &StatusDocument) -> String {
    let doc = escaped(doc);
    let mut out = String::new();
    match (doc.source, &doc.daemon) {
        (Source::Daemon, daemon) => out.push_str(&format!(
            "source: the daemon at {} (its last passes)\n",
            daemon.as_deref().unwrap_or("?")
        )),
        (Source::Aws, _) => out.push_str("source: AWS, observed now (no daemon answered)\n"),
    }
    if let Some(rejected) = doc.desired_state.as_ref().and_then(|l| l.rejected()) {
        out.push_str(&format!("desired state: REJECTED: {rejected}\n"));
    }
    if let Some(events) = &doc.events {
        out.push_str(&event_queue_line(events));
    }
    if doc.deployments.is_empty() {
        out.push_str("no deployments\n");
    }
    for (name, d) in &doc.deployments {
        out.push_str(&format!("\n{name} (stack set {})\n", d.stack_set_name));
        let conditions: Vec<String> = d
            .conditions
            .iter()
            .map(|c| format!("{}={} ({})", c.kind, c.status, c.reason))
            .collect();
        row(&mut out, "conditions", &conditions.join(", "));
        if let Some(e) = &d.last_error {
            row(
                &mut out,
                "last error",
                &format!("{} ({})", e.message, e.reason),
            );
        }
        match &d.observed {
            None => row(
                &mut out,
                "observed",
                "not yet (no pass has observed the stack set)",
            ),
            Some(r) => observed_rows(&mut out, r),
        }
        access_row(&mut out, d.access.as_ref(), d.access_error.as_deref());
        if let Some(template) = &d.template {
            template_row(&mut out, template);
        }
    }
    out
}

/// The document with every string escaped, whatever its field (through its JSON form, so no field is missed).
fn escaped(doc: &StatusDocument) -> StatusDocument {
    let mut value = serde_json::to_value(doc).unwrap_or(Value::Null);
    escape_strings(&mut value);
    serde_json::from_value(value).unwrap_or_else(|_| doc.clone())
}

/// The event queue in one line: read (and whether converged passes trust it), or polling and why.
fn event_queue_line(q: &crate::status::EventQueueStatus) -> String {
    match q.unreadable() {
        Some(error) => format!(
            "event queue: POLLING since {} (cannot read {}: {error})\n",
            q.since, q.queue_url
        ),
        None if q.mode == crate::status::QueueMode::Polling => format!(
            "event queue: polling since {} (not read yet: {})\n",
            q.since, q.queue_url
        ),
        None => format!(
            "event queue: reading {} since {}; {} event(s), {} dropped{}\n",
            q.queue_url,
            q.since,
            q.received,
            q.dropped,
            if q.converged_pass_trusts_events {
                "; converged passes trust it (one call each)"
            } else {
                ""
            }
        ),
    }
}

fn observed_rows(out: &mut String, r: &Report) {
    let instances: Vec<String> = r
        .instances
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let total: usize = r.instances.values().sum();
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
            r.accounts_targeted,
            r.missing_instances,
            r.accounts_missing_instance,
            r.orphaned_instances,
            r.outdated_instances,
            r.inoperable_instances,
            r.inactive_accounts,
            r.skipped_suspended_instances,
        ),
    );
    for warning in &r.target_warnings {
        row(out, "warning", warning);
    }
    list_row(out, "missing", &r.missing_accounts);
    list_row(out, "orphaned", &r.orphaned);
    for problem in &r.inoperable {
        row(
            out,
            "INOPERABLE",
            &format!(
                "{}: {}",
                problem.instance,
                problem.reason.as_deref().unwrap_or("-")
            ),
        );
    }
    if let Some(drift) = &r.drift {
        row(
            out,
            "drift",
            &format!(
                "{}; {} DRIFTED instance(s); last check {}",
                drift.status,
                drift.drifted_instances,
                drift.last_check.as_deref().unwrap_or("never")
            ),
        );
        list_row(out, "drifted", &drift.drifted);
    }
    let spec_drift: Vec<String> = r
        .spec_drift
        .iter()
        .map(|d| format!("{}: {} -> {}", d.field, d.applied, d.found))
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
    if let Some(stack) = &r.management_stack {
        row(
            out,
            "mgmt stack",
            &format!(
                "{} in {}: {}{}; drift {}",
                stack.name,
                stack.region,
                stack.status,
                if stack.managed || stack.status == "ABSENT" {
                    ""
                } else {
                    " (not stacksetd's: left alone)"
                },
                stack.drift.as_deref().unwrap_or("NOT_CHECKED")
            ),
        );
    }
    for line in &r.pending {
        row(out, "pending", line);
    }
}

fn access_row(out: &mut String, access: Option<&AccessReport>, error: Option<&str>) {
    if let Some(error) = error {
        row(out, "access", &format!("check failed: {error}"));
        return;
    }
    let Some(access) = access else {
        row(
            out,
            "access",
            "not checked (spec.accessCheck not set, or no check has run yet)",
        );
        return;
    };
    row(
        out,
        "access",
        &format!(
            "role {}: {} account(s) checked, {} failed (at {})",
            access.role_name, access.checked, access.failed, access.checked_at
        ),
    );
    for failure in &access.failures {
        row(
            out,
            "no access",
            &format!("{}: {}", failure.account, failure.reason),
        );
    }
}

fn template_row(out: &mut String, template: &TemplateReport) {
    let short = |v: Option<&str>| v.map_or("(none)".to_string(), |x| x.chars().take(12).collect());
    row(
        out,
        "template",
        &format!(
            "{} applied sha256:{}, latest sha256:{}; {}{}",
            template.policy,
            short(template.applied_sha256.as_deref()),
            short(Some(&template.sha256)),
            template.decision,
            if template.update_available {
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

fn list_row(out: &mut String, label: &str, items: &[String]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(doc: Value) -> StatusDocument {
        serde_json::from_value(doc).expect("a status document")
    }

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
        // The keys of a daemon before the camelCase release (snake_case report keys) are still read.
        let doc = read(doc);
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
        let text = text(&read(doc));
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

    #[test]
    fn the_event_queue_line_says_whether_it_is_read_or_why_not() {
        let url = "https://sqs.us-east-1.amazonaws.com/111111111111/stacksetd-events";
        let doc =
            |events: Value| read(json!({"source": "daemon", "events": events, "deployments": {}}));
        let reading = text(&doc(
            json!({"queueUrl": url, "mode": "events", "since": "2026-12-07T10:00:00Z",
            "convergedPassTrustsEvents": true, "received": 12, "dropped": 1}),
        ));
        assert!(reading.contains(&format!("event queue: reading {url} since 2026-12-07T10:00:00Z; 12 event(s), 1 dropped; converged passes trust it")), "{reading}");
        let down = text(&doc(
            json!({"queueUrl": url, "mode": "polling", "since": "2026-12-07T11:00:00Z",
            "lastError": "sqs:ReceiveMessage failed (AccessDenied): no", "convergedPassTrustsEvents": true, "received": 12, "dropped": 1}),
        ));
        assert!(
            down.contains("event queue: POLLING since 2026-12-07T11:00:00Z (cannot read"),
            "{down}"
        );
        assert!(down.contains("AccessDenied"), "{down}");
        // No queue: no line.
        let none = text(&read(json!({"source": "daemon", "deployments": {}})));
        assert!(!none.contains("event queue"), "{none}");
    }
}
