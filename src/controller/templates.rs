//! The template side of a pass: the update policy applied to the version held for the deployment's URL, the
//! version the plan uses as a result, and the decision logged when it changes.

use std::sync::Arc;

use tracing::{info, warn};

use super::{Context, TemplateReport};
use crate::desired::Deployment;
use crate::error::Error;
use crate::plan::Observed;
use crate::template::{self, Assessment, Decision, Template};

/// The template side of an observation.
pub struct TemplateView {
    /// What `plan` gets: the version fetched when the decision allows it, else the stack set's applied template
    /// (so the plan proposes no template change).
    pub effective: Arc<Template>,
    pub report: TemplateReport,
}

/// Apply the update policy to the version held. A version that may not be applied is reported and the plan is
/// made with the applied template; before the stack set exists there is nothing to fall back to, so a refused
/// first version is an error (nothing is created).
pub(super) async fn template_view(
    deployment: &Deployment,
    ctx: &Context,
    url: &str,
    candidate: Arc<Template>,
    observed: &Observed,
) -> Result<TemplateView, Error> {
    let spec = &deployment.spec;
    let applied_body = observed
        .stack_set
        .as_ref()
        .map(|s| s.template_body.as_str());
    let mut assessment = ctx
        .assessments
        .assess(&spec.template, &spec.parameters, applied_body, &candidate);
    if spec.template.access_analyzer
        && let (Decision::Apply { judgment }, Some(applied)) = (&assessment.decision, applied_body)
        && !candidate.same_as(applied)
    {
        let reasons = second_opinion(ctx, &spec.parameters, applied, &candidate).await?;
        if !reasons.is_empty() {
            let mut judgment = judgment.clone();
            judgment.widening = true;
            judgment.findings.extend(reasons.into_iter().map(|r| crate::guard::Finding {
                widening: true,
                subject: "IAM Access Analyzer".into(),
                text: r,
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
    log_decision(ctx, deployment, &candidate, &assessment);
    let report = TemplateReport::new(
        &spec.template,
        url,
        &candidate,
        applied_body,
        &assessment,
        ctx.templates.state(url),
    );
    let effective = match (decision.allows(), applied_body) {
        (true, _) => candidate,
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
    Ok(TemplateView { effective, report })
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
        serde_json::json!([template::sha256_hex(applied.as_bytes()), candidate.sha256, parameters])
            .to_string()
            .as_bytes(),
    );
    if let Some(reasons) = ctx.analyzer_verdicts.lock().expect("verdict cache").get(&key) {
        return Ok(reasons.clone());
    }
    let applied_doc = template::parse_document(applied).unwrap_or_default();
    let pairs = crate::guard::policy_pairs(&applied_doc, &candidate.document, parameters).map_err(|e| {
        Error::Template {
            url: candidate.url.clone(),
            reason: e.to_string(),
            label: "template_too_complex",
        }
    })?;
    let mut reasons = Vec::new();
    for pair in &pairs {
        let verdict = ctx.cloud.check_no_new_access(&pair.existing, &pair.new, pair.kind).await?;
        if !verdict.pass {
            reasons.extend(verdict.reasons.iter().map(|r| format!("{}: {r}", pair.holder)));
        }
    }
    info!(checks = pairs.len(), found = reasons.len(), "IAM Access Analyzer checked the changed policies");
    ctx.analyzer_verdicts
        .lock()
        .expect("verdict cache")
        .insert(key, reasons.clone());
    Ok(reasons)
}

fn log_decision(ctx: &Context, deployment: &Deployment, candidate: &Template, assessment: &Assessment) {
    let decision = &assessment.decision;
    let key = (candidate.sha256.clone(), decision.label());
    let mut logged = ctx.template_log.lock().expect("template log lock poisoned");
    if logged.get(deployment.name()) == Some(&key) {
        return;
    }
    logged.insert(deployment.name().to_string(), key);
    let message = decision.message(&candidate.sha256);
    let diff = decision
        .judgment()
        .map(|d| d.lines().join("; "))
        .unwrap_or_default();
    for warning in &assessment.warnings {
        warn!(sha256 = %candidate.sha256, "template warning: {warning}");
    }
    match decision {
        Decision::UpToDate | Decision::Apply { .. } => {
            info!(sha256 = %candidate.sha256, decision = decision.label(), iam_diff = %diff, "{message}")
        }
        _ => {
            warn!(sha256 = %candidate.sha256, decision = decision.label(), iam_diff = %diff, "{message}")
        }
    }
}
