//! The template side of a pass: the update policy applied to the version held for the deployment's URL, the
//! version the plan uses as a result, and the decision logged when it changes.

use std::sync::Arc;

use tracing::{info, warn};

use super::{Context, DeploymentState, TemplateReport};
use crate::desired::Deployment;
use crate::error::Error;
use crate::plan::Observed;
use crate::template::{self, Assessment, BaselineState, Decision, Template};

/// The template side of an observation.
pub struct TemplateView {
    /// What `plan` gets: the version fetched when the decision allows it, else the stack set's applied template
    /// (so the plan proposes no template change).
    pub effective: Arc<Template>,
    pub report: TemplateReport,
    /// The approval record the stack set should carry after the plan (`stacksetd.dev/template-sha256`): the
    /// digest of the version stacksetd approved, left as it is while a version is held.
    pub record: Option<String>,
    /// The stack set's template is not the approved one (it was changed outside stacksetd).
    pub unapproved_change: Option<String>,
}

/// The template side of a revocation (`ensure: Absent`): nothing is fetched, parsed or judged (the vendor's URL
/// may be gone); the plan only deletes.
pub(super) fn revocation_view(
    deployment: &Deployment,
    url: &str,
    observed: &Observed,
) -> TemplateView {
    let body = observed
        .stack_set
        .as_ref()
        .map_or_else(|| "{}".to_string(), |s| s.settings.template_body.clone());
    let effective = Template::from_body(url, body)
        .or_else(|_| Template::from_body(url, "{}".to_string()))
        .expect("an empty mapping is a template");
    TemplateView {
        effective: Arc::new(effective),
        report: TemplateReport {
            url: url.to_string(),
            policy: deployment
                .spec
                .template
                .policy
                .map_or("custom", |p| p.as_str())
                .into(),
            decision: "revoking".into(),
            message: "ensure: Absent: the template is neither fetched nor judged".into(),
            ..TemplateReport::default()
        },
        record: observed
            .stack_set
            .as_ref()
            .and_then(|s| super::ownership::recorded(s).map(String::from)),
        unapproved_change: None,
    }
}

/// Apply the update policy to the version held. A version that may not be applied is reported and the plan is
/// made with the applied template; before the stack set exists there is nothing to fall back to, so a refused
/// first version is an error (nothing is created).
pub(super) async fn template_view(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    url: &str,
    candidate: Arc<Template>,
    observed: &Observed,
) -> Result<TemplateView, Error> {
    let spec = &deployment.spec;
    let applied_body = observed
        .stack_set
        .as_ref()
        .map(|s| s.settings.template_body.as_str());
    // The baseline: the stack set's template when it is the version stacksetd approved (the approval record in
    // its tags); the candidate itself when the candidate is that version (a console edit is then reverted to it);
    // otherwise the stack set's template, unapproved.
    let record = observed
        .stack_set
        .as_ref()
        .and_then(super::ownership::recorded);
    let live_sha = applied_body.map(|b| template::sha256_hex(b.as_bytes()));
    let baseline = match (applied_body, record) {
        (None, _) => None,
        (Some(body), Some(r)) if live_sha.as_deref() == Some(r) => {
            Some((body, BaselineState::Approved))
        }
        (Some(_), Some(r)) if candidate.sha256 == r => {
            Some((candidate.body.as_str(), BaselineState::Approved))
        }
        (Some(body), Some(_)) => Some((body, BaselineState::Unapproved)),
        (Some(body), None) => Some((body, BaselineState::Unrecorded)),
    };
    let unapproved_change = match (record, &live_sha) {
        (Some(r), Some(live)) if r != live => Some(format!(
            "the stack set's template (sha256:{}) is not the version stacksetd approved (sha256:{}): changed \
             outside stacksetd",
            &live[..12],
            &r[..r.len().min(12)]
        )),
        _ => None,
    };
    let mut assessment =
        ctx.assessments
            .assess(&spec.template, &spec.parameters, baseline, &candidate);
    if spec.template.access_analyzer
        && let (Decision::Apply { judgment }, Some(applied)) = (&assessment.decision, applied_body)
        && !candidate.same_as(applied)
    {
        let reasons = second_opinion(ctx, &spec.parameters, applied, &candidate).await?;
        if !reasons.is_empty() {
            let mut judgment = judgment.clone();
            judgment.widening = true;
            judgment
                .findings
                .extend(reasons.into_iter().map(|r| crate::guard::Finding {
                    widening: true,
                    subject: "IAM Access Analyzer".into(),
                    text: r,
                    path: String::new(),
                }));
            assessment = Arc::new(Assessment {
                decision: Decision::Hold {
                    reason: crate::template::HoldReason::AccessAnalyzer,
                    judgment,
                },
                warnings: assessment.warnings.clone(),
            });
        }
    }
    let decision = &assessment.decision;
    log_decision(state, &candidate, &assessment);
    let report = TemplateReport::new(
        &spec.template,
        url,
        &candidate,
        applied_body,
        &assessment,
        ctx.templates.state(url),
    );
    let effective = match (decision.allows(), applied_body) {
        (true, _) => candidate.clone(),
        (false, Some(body)) => {
            Arc::new(Template::from_body(url, body.to_string()).map_err(|e| {
                Error::Conflict(format!(
                    "the stack set's applied template cannot be read back: {e}"
                ))
            })?)
        }
        (false, None) => {
            return Err(Error::Template {
                url: url.to_string(),
                reason: format!(
                    "{}; the stack set is not created",
                    decision.message(&candidate.sha256)
                ),
                label: match decision.rejection() {
                    Some("allowlist") => "template_refused_allowlist",
                    Some("too_complex") => "template_too_complex",
                    Some("pin_mismatch") => "template_pin_mismatch",
                    Some("too_large") => "template_too_large",
                    _ => "template_held",
                },
            });
        }
    };
    // The record names the bytes the stack set will hold: the candidate's when the plan applies them, the stack
    // set's own when they are the candidate's content already (reformatted, or an adopted stack set).
    let record = if decision.allows() {
        match (applied_body, &live_sha) {
            (Some(body), Some(live)) if candidate.same_as(body) => Some(live.clone()),
            _ => Some(candidate.sha256.clone()),
        }
    } else {
        record.map(String::from)
    };
    Ok(TemplateView {
        effective,
        report,
        record,
        unapproved_change,
    })
}

/// IAM Access Analyzer's CheckNoNewAccess on every changed policy document (`accessAnalyzer: true`): the reasons
/// it found new access, empty when every check passed. Answers are kept per (applied, candidate, parameters):
/// each check is a charged call, asked once per version.
async fn second_opinion(
    ctx: &Context,
    parameters: &crate::guard::Parameters,
    applied: &str,
    candidate: &Template,
) -> Result<Vec<String>, Error> {
    let key = template::sha256_hex(
        serde_json::json!([
            template::sha256_hex(applied.as_bytes()),
            candidate.sha256,
            parameters
        ])
        .to_string()
        .as_bytes(),
    );
    if let Some(reasons) = ctx
        .analyzer_verdicts
        .lock()
        .expect("verdict cache")
        .get(&key)
    {
        return Ok(reasons.clone());
    }
    let applied_doc = template::parse_document(applied).unwrap_or_default();
    let pairs =
        crate::guard::policy_pairs(&applied_doc, &candidate.document, parameters).map_err(|e| {
            Error::Template {
                url: candidate.url.clone(),
                reason: e.to_string(),
                label: "template_too_complex",
            }
        })?;
    let mut reasons = Vec::new();
    for pair in &pairs {
        let verdict = ctx
            .cloud
            .check_no_new_access(&pair.existing, &pair.new, pair.kind)
            .await?;
        if !verdict.pass {
            reasons.extend(
                verdict
                    .reasons
                    .iter()
                    .map(|r| format!("{}: {r}", pair.holder)),
            );
        }
    }
    info!(
        checks = pairs.len(),
        found = reasons.len(),
        "IAM Access Analyzer checked the changed policies"
    );
    ctx.analyzer_verdicts
        .lock()
        .expect("verdict cache")
        .insert(key, reasons.clone());
    Ok(reasons)
}

/// What the log last said of one deployment's template.
#[derive(Debug, Default)]
pub(crate) struct Logged {
    /// The digest whose warnings were logged.
    warnings_of: String,
    /// The (candidate digest, decision label) logged.
    decision: (String, &'static str),
}

fn log_decision(state: &mut DeploymentState, candidate: &Template, assessment: &Assessment) {
    let decision = &assessment.decision;
    let last = &mut state.template_log;
    // A version's warnings are facts about its text: logged once per version, whatever the decision (a dry run
    // and the pass after it decide differently of the same version, and used to log them twice).
    if last.warnings_of != candidate.sha256 {
        last.warnings_of = candidate.sha256.clone();
        for warning in &assessment.warnings {
            warn!(sha256 = %candidate.sha256, "template warning: {warning}");
        }
    }
    let key = (candidate.sha256.clone(), decision.label());
    if last.decision == key {
        return;
    }
    last.decision = key;
    let message = decision.message(&candidate.sha256);
    let diff = decision
        .judgment()
        .map(|d| d.lines().join("; "))
        .unwrap_or_default();
    match decision {
        Decision::UpToDate | Decision::Apply { .. } => {
            info!(sha256 = %candidate.sha256, decision = decision.label(), iam_diff = %diff, "{message}")
        }
        _ => {
            warn!(sha256 = %candidate.sha256, decision = decision.label(), iam_diff = %diff, "{message}")
        }
    }
}
