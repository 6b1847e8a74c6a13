//! The one submission path: how an operation's id is derived, how a running operation is adopted rather than
//! queued behind, and what each answer to a submission means. A plan step (`controller::submit`) and a drift
//! detection (`drift::detect_if_due`) both go through here, so a lost answer, a resend or a busy stack set is
//! handled the same way whatever was sent.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::info;

use super::observe::check_operation;
use super::{Context, DeploymentState, Outcome, Report, State, waiting};
use crate::cloud::{
    CreateStackSet, DeleteInstancesRequest, DeleteStackRequest, InstancesRequest, Operation,
    Setting, StackRequest, UpdateStackSet,
};
use crate::desired::{Deployment, OperationPreferences};
use crate::error::{AwsErrorKind, Error};
use crate::plan::Action;
use crate::template;

/// `stacksetd-<kind>-<first 20 hex digits of sha256(material)>`: the base of a deterministic OperationId, so a
/// resend after a crash or a lost answer carries the same id and AWS refuses to run it twice.
pub fn id_base(kind: &str, material: &str) -> String {
    format!(
        "stacksetd-{kind}-{}",
        &hex::encode(Sha256::digest(material.as_bytes()))[..20]
    )
}

/// The next attempt number for `base`: one past the highest already used (0 when none is known). Reusing a
/// finished id would be refused as OperationIdAlreadyExists, so a deliberate retry takes the next number.
pub fn next_sequence<'a>(base: &str, known: impl Iterator<Item = &'a str>) -> u64 {
    known
        .filter_map(|id| {
            id.strip_prefix(base)?
                .strip_prefix('-')?
                .parse::<u64>()
                .ok()
        })
        .max()
        .map_or(0, |n| n + 1)
}

/// The id to send for `base`: the next sequence past the ids AWS listed and the ones this deployment finished.
fn next_id(state: &DeploymentState, base: &str, recent: &[Operation]) -> String {
    let finished = state.finished();
    let sequence = next_sequence(
        base,
        recent
            .iter()
            .map(|op| op.id.as_str())
            .chain(finished.iter().map(String::as_str)),
    );
    format!("{base}-{sequence}")
}

/// An operation already holding the stack set's slot (ours from before a restart, or anyone's) is adopted and
/// waited for, never queued behind or duplicated.
pub(super) fn adopt_running(
    ctx: &Context,
    state: &mut DeploymentState,
    recent: &[Operation],
    report: &Report,
) -> Option<Outcome> {
    let active = recent.iter().find(|op| op.status.is_active())?;
    info!(operation = %active.id, action = active.action.as_str(), "adopting the running operation");
    Some(adopted(ctx, state, active, report))
}

/// `operation` is this deployment's to wait for from now on.
fn adopted(
    ctx: &Context,
    state: &mut DeploymentState,
    operation: &Operation,
    report: &Report,
) -> Outcome {
    state.adopt(&operation.id);
    waiting(ctx, operation, Instant::now(), None, report.clone())
}

/// How a submission ended, for the caller's bookkeeping.
pub(super) enum Sent {
    /// Accepted under this id.
    Accepted(String),
    /// CloudFormation found nothing to change (an UpdateStack answered "No updates are to be performed").
    NothingToDo,
    /// The pass ends here with this outcome (a resend adopted, a busy stack set, a stack set already created).
    Decided(Box<Outcome>),
}

/// What a submission's id and the triage of a lost answer depend on.
pub(super) struct Submission<'a> {
    /// The id's stem, derived from what the call changes ([`id_base`]).
    pub base: &'a str,
    /// The operations AWS listed: the id takes the next sequence past theirs.
    pub recent: &'a [Operation],
    /// Whether a lost answer may hide a started operation (the next pass then asks for the id).
    pub may_have_happened: bool,
}

/// The one submission sequence, for plan steps and drift detection alike: the id (the next past the ones AWS
/// listed and this deployment finished), preflight, the call, and the triage of its answer. `call` gets the id
/// and answers whether something was started.
pub(super) async fn submit<F, Fut>(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    submission: Submission<'_>,
    report: &Report,
    call: F,
) -> Result<Sent, Error>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<bool, Error>>,
{
    let Submission {
        base,
        recent,
        may_have_happened,
    } = submission;
    let id = next_id(state, base, recent);
    crate::controller::preflight::ensure(deployment, ctx).await?;
    let answer = match call(id.clone()).await {
        Ok(false) => return Ok(Sent::NothingToDo),
        answer => answer.map(drop),
    };
    match triage(
        deployment,
        ctx,
        state,
        &id,
        answer,
        may_have_happened,
        report,
    )
    .await?
    {
        Answer::Decided(outcome) => Ok(Sent::Decided(outcome)),
        Answer::Accepted => Ok(Sent::Accepted(id)),
    }
}

/// What a submission's answer means.
enum Answer {
    /// Accepted: the caller records what it sent.
    Accepted,
    /// The pass ends here with this outcome (a resend adopted, a busy stack set, a stack set already created).
    Decided(Box<Outcome>),
}

/// Triage the answer to a submission of `id`. `may_have_happened`: an answer that never arrived may hide a
/// submission that did (every call but CreateStackSet, whose name is its own proof), so the next pass asks
/// DescribeStackSetOperation about the id before anything else.
async fn triage(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    id: &str,
    answer: Result<(), Error>,
    may_have_happened: bool,
    report: &Report,
) -> Result<Answer, Error> {
    let spec = &deployment.spec;
    let settle = |requeue_after: Duration| {
        Ok(Answer::Decided(Box::new(Outcome {
            state: State::Settling,
            requeue_after,
            report: report.clone(),
        })))
    };
    match answer {
        Ok(()) => Ok(Answer::Accepted),
        Err(e) if e.is_aws(AwsErrorKind::OperationIdAlreadyExists) => {
            // Submitted before (a crash, a timeout, a lost response): adopt it, never send it again.
            let op = ctx
                .cloud
                .describe_operation(&spec.stack_set_name, id, spec.call_as)
                .await?;
            if op.status.is_active() {
                return Ok(Answer::Decided(Box::new(adopted(ctx, state, &op, report))));
            }
            state.finish(id);
            state.record_ended(op.action.as_str(), op.status.as_str());
            check_operation(ctx, deployment, &op).await?;
            settle(Duration::ZERO)
        }
        Err(e)
            if e.is_aws(AwsErrorKind::OperationInProgress)
                || e.is_aws(AwsErrorKind::StaleRequest) =>
        {
            // A resend of our own id while the first is still running is answered this way too: ask for that id.
            match ctx
                .cloud
                .describe_operation(&spec.stack_set_name, id, spec.call_as)
                .await
            {
                Ok(op) if op.status.is_active() => {
                    info!(operation = %id, "our own operation is running (a resend): adopting it");
                    return Ok(Answer::Decided(Box::new(adopted(ctx, state, &op, report))));
                }
                Ok(_) => state.sent_unconfirmed(id),
                Err(e) if e.is_aws(AwsErrorKind::NotFound) => {}
                Err(e) => return Err(e),
            }
            info!("another operation holds the stack set; waiting");
            settle(ctx.config.poll_min)
        }
        // Created by an earlier attempt whose response was lost: observe it next pass.
        Err(e) if e.is_aws(AwsErrorKind::NameAlreadyExists) => settle(Duration::ZERO),
        Err(e) => {
            // An answer that never arrived (a timeout, a dropped connection, a 5xx after the SDK's retries) may
            // hide a submission that happened.
            let unanswered = matches!(
                e.aws_kind(),
                Some(AwsErrorKind::Transport | AwsErrorKind::Throttling | AwsErrorKind::Other)
            ) || matches!(e, Error::CallAbandoned { .. });
            if may_have_happened && unanswered {
                state.sent_unconfirmed(id);
            }
            Err(e)
        }
    }
}

/// `stacksetd-<action>-<digest>`: the digest covers the stack set, the action with everything it applies and the
/// preferences, so the same change always gets the same id. A sequence number is appended per attempt.
pub fn operation_id_base(
    stack_set: &str,
    action: &Action,
    preferences: &OperationPreferences,
) -> String {
    let material = serde_json::json!({ "stackSet": stack_set, "action": id_material(action), "preferences": preferences });
    let short = match action {
        Action::CreateStackSet { .. } => "create-set",
        // A staged rollout's canary: the id says so (`controller::rollout` finds the canary operation by it).
        // `stacksetd promote`'s tagging update does not restart the bake; `--retry` is a canary again.
        Action::UpdateStackSet {
            only: Some(_),
            settings,
            ..
        } if settings.tags.contains_key(super::rollout::PROMOTE_TAG) => {
            super::rollout::PROMOTE_OPERATION
        }
        Action::UpdateStackSet { only: Some(_), .. } => super::rollout::CANARY_OPERATION,
        Action::UpdateStackSet { .. } => "update-set",
        Action::CreateStackInstances { .. } => "create-inst",
        Action::UpdateStackInstances { .. } => "update-inst",
        Action::DeleteStackInstances { .. } => "delete-inst",
        Action::DeleteStackSet => "delete-set",
        Action::CreateStack { .. } => "create-stack",
        Action::UpdateStack { .. } => "update-stack",
        Action::DeleteStack { .. } => "delete-stack",
    };
    id_base(short, &material.to_string())
}

/// The action as its OperationId covers it. This is a contract across releases (a restarted, upgraded stacksetd
/// must derive the same id for the same change), so it is written out here, not left to the action's derived
/// form: an UpdateStackSet is the form of the releases that spelled its template and parameters out
/// (`template_body` null and each parameter's `value` null for UsePreviousTemplate / UsePreviousValue).
pub(super) fn id_material(action: &Action) -> serde_json::Value {
    match action {
        Action::UpdateStackSet {
            settings,
            keep_template,
            only,
        } => {
            let mut material = serde_json::Map::new();
            material.insert("action".into(), "UpdateStackSet".into());
            for setting in Setting::ALL {
                let (key, value) = setting.id_field(settings, *keep_template);
                material.insert(key.into(), value);
            }
            // Only when scoped, so the ids of every earlier release's updates stay as they were.
            if let Some(only) = only {
                material.insert("only".into(), serde_json::json!(only));
            }
            serde_json::Value::Object(material)
        }
        other => serde_json::to_value(other).unwrap_or_default(),
    }
}

/// A template over CloudFormation's TemplateBody limit goes by URL: exactly these bytes are uploaded to the
/// operator's staging bucket under a content-addressed key, and that object's URL is sent. (The update decision
/// refuses such a template when no staging bucket is set, so the error below is a second line of defence.)
async fn stage_if_large(
    deployment: &Deployment,
    ctx: &Context,
    body: &str,
) -> Result<Option<String>, Error> {
    if body.len() <= template::MAX_TEMPLATE_BODY_BYTES {
        return Ok(None);
    }
    let Some(bucket) = &deployment.spec.template.staging_bucket else {
        return Err(Error::Template {
            url: deployment.spec.template.url.clone().unwrap_or_default(),
            reason: format!(
                "the template is {} bytes, over CloudFormation's {}-byte TemplateBody limit; set \
                 spec.template.stagingBucket to an S3 bucket of yours in the management account",
                body.len(),
                template::MAX_TEMPLATE_BODY_BYTES
            ),
            label: "template_too_large",
        });
    };
    let key = template::staging_key(body);
    let url = ctx.cloud.stage_template(bucket, &key, body).await?;
    info!(bucket = %bucket, key = %key, "staged the template ({} bytes) for CloudFormation", body.len());
    Ok(Some(url))
}

/// Send one step. `Ok(false)`: CloudFormation found nothing to change (an UpdateStack it answered with "No updates
/// are to be performed").
pub(super) async fn send(
    deployment: &Deployment,
    ctx: &Context,
    action: &Action,
    id: &str,
) -> Result<bool, Error> {
    let spec = &deployment.spec;
    let name = spec.stack_set_name.clone();
    let call_as = spec.call_as;
    let preferences = spec.operation_preferences.clone();
    let operation_id = id.to_string();
    let cloud = ctx.cloud.as_ref();
    let instances = |targets, regions| InstancesRequest {
        name: name.clone(),
        call_as,
        targets,
        regions,
        preferences: preferences.clone(),
        operation_id: operation_id.clone(),
    };
    let role_arn = spec
        .management_account
        .as_ref()
        .and_then(|m| m.service_role_arn.clone());
    match action.clone() {
        Action::CreateStackSet { settings } => {
            let request = CreateStackSet {
                name,
                call_as,
                template_url: stage_if_large(deployment, ctx, &settings.template_body).await?,
                settings,
                client_token: operation_id,
            };
            sent(cloud.create_stack_set(&request).await)
        }
        Action::UpdateStackSet {
            settings,
            keep_template,
            only,
        } => {
            let template_url = if keep_template {
                None
            } else {
                stage_if_large(deployment, ctx, &settings.template_body).await?
            };
            let request = UpdateStackSet {
                name,
                call_as,
                settings,
                keep_template,
                template_url,
                preferences,
                operation_id,
                only,
            };
            sent(cloud.update_stack_set(&request).await)
        }
        Action::CreateStackInstances { targets, regions } => {
            let request = instances(targets, regions);
            sent(cloud.create_stack_instances(&request).await)
        }
        Action::UpdateStackInstances { targets, regions } => {
            let request = instances(targets, regions);
            sent(cloud.update_stack_instances(&request).await)
        }
        Action::DeleteStackInstances {
            targets,
            regions,
            retain_stacks,
        } => {
            let request = DeleteInstancesRequest {
                name,
                call_as,
                targets,
                regions,
                retain_stacks,
                preferences,
                operation_id,
            };
            sent(cloud.delete_stack_instances(&request).await)
        }
        Action::DeleteStackSet => sent(cloud.delete_stack_set(&name, call_as).await),
        Action::CreateStack { region, settings } | Action::UpdateStack { region, settings } => {
            let request = StackRequest {
                name,
                region,
                template_url: stage_if_large(deployment, ctx, &settings.template_body).await?,
                template_body: settings.template_body,
                parameters: settings.parameters,
                capabilities: settings.capabilities,
                tags: settings.tags,
                role_arn,
                client_token: operation_id,
            };
            if matches!(action, Action::CreateStack { .. }) {
                sent(cloud.create_stack(&request).await)
            } else {
                cloud.update_stack(&request).await
            }
        }
        Action::DeleteStack { region, stack_id } => {
            let request = DeleteStackRequest {
                stack_id,
                region,
                role_arn,
                client_token: operation_id,
            };
            sent(cloud.delete_stack(&request).await)
        }
    }
}

/// A call's answer as [`send`] gives it: accepted means something was started.
fn sent<T>(result: Result<T, Error>) -> Result<bool, Error> {
    result.map(|_| true)
}
