//! The one submission path: how an operation's id is derived, how a running operation is adopted rather than
//! queued behind, and what each answer to a submission means. A plan step (`controller::submit`) and a drift
//! detection (`drift::detect_if_due`) both go through here, so a lost answer, a resend or a busy stack set is
//! handled the same way whatever was sent.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::info;

use super::{Context, Outcome, Report, State, check_operation, waiting};
use crate::cloud::Operation;
use crate::desired::Deployment;
use crate::error::{AwsErrorKind, Error};

/// `stacksetd-<kind>-<first 20 hex digits of sha256(material)>`: the base of a deterministic OperationId, so a
/// resend after a crash or a lost answer carries the same id and AWS refuses to run it twice.
pub fn id_base(kind: &str, material: &str) -> String {
    format!("stacksetd-{kind}-{}", &hex::encode(Sha256::digest(material.as_bytes()))[..20])
}

/// The next attempt number for `base`: one past the highest already used (0 when none is known). Reusing a
/// finished id would be refused as OperationIdAlreadyExists, so a deliberate retry takes the next number.
pub fn next_sequence<'a>(base: &str, known: impl Iterator<Item = &'a str>) -> u64 {
    known
        .filter_map(|id| id.strip_prefix(base)?.strip_prefix('-')?.parse::<u64>().ok())
        .max()
        .map_or(0, |n| n + 1)
}

/// The id to send for `base`: the next sequence past the ids AWS listed and the ones this deployment finished.
pub(super) fn next_id(ctx: &Context, deployment: &str, base: &str, recent: &[Operation]) -> String {
    let finished = ctx.memory.finished(deployment);
    let sequence = next_sequence(
        base,
        recent.iter().map(|op| op.id.as_str()).chain(finished.iter().map(String::as_str)),
    );
    format!("{base}-{sequence}")
}

/// An operation already holding the stack set's slot (ours from before a restart, or anyone's) is adopted and
/// waited for, never queued behind or duplicated.
pub(super) fn adopt_running(ctx: &Context, deployment: &str, recent: &[Operation], report: &Report) -> Option<Outcome> {
    let active = recent.iter().find(|op| op.status.is_active())?;
    info!(operation = %active.id, action = active.action.as_str(), "adopting the running operation");
    ctx.memory.adopt(deployment, &active.id);
    Some(waiting(ctx, active, Instant::now(), None, report.clone()))
}

/// What a submission's answer means.
pub(super) enum Answer {
    /// Accepted: the caller records what it sent.
    Accepted,
    /// The pass ends here with this outcome (a resend adopted, a busy stack set, a stack set already created).
    Decided(Outcome),
}

/// Triage the answer to a submission of `id`. `may_have_happened`: an answer that never arrived may hide a
/// submission that did (every call but CreateStackSet, whose name is its own proof), so the next pass asks
/// DescribeStackSetOperation about the id before anything else.
pub(super) async fn triage(
    deployment: &Deployment,
    ctx: &Context,
    id: &str,
    answer: Result<(), Error>,
    may_have_happened: bool,
    report: &Report,
) -> Result<Answer, Error> {
    let name = deployment.name();
    let spec = &deployment.spec;
    let settle = |requeue_after: Duration| {
        Ok(Answer::Decided(Outcome { state: State::Settling, requeue_after, report: report.clone() }))
    };
    match answer {
        Ok(()) => Ok(Answer::Accepted),
        Err(e) if e.is_aws(AwsErrorKind::OperationIdAlreadyExists) => {
            // Submitted before (a crash, a timeout, a lost response): adopt it, never send it again.
            let op = ctx.cloud.describe_operation(&spec.stack_set_name, id, spec.call_as).await?;
            if op.status.is_active() {
                ctx.memory.adopt(name, id);
                return Ok(Answer::Decided(waiting(ctx, &op, Instant::now(), None, report.clone())));
            }
            ctx.memory.finish(name, id);
            ctx.memory.record_ended(name, op.action.as_str(), op.status.as_str());
            check_operation(ctx, deployment, &op).await?;
            settle(Duration::ZERO)
        }
        Err(e) if e.is_aws(AwsErrorKind::OperationInProgress) || e.is_aws(AwsErrorKind::StaleRequest) => {
            // A resend of our own id while the first is still running is answered this way too: ask for that id.
            match ctx.cloud.describe_operation(&spec.stack_set_name, id, spec.call_as).await {
                Ok(op) if op.status.is_active() => {
                    info!(operation = %id, "our own operation is running (a resend): adopting it");
                    ctx.memory.adopt(name, id);
                    return Ok(Answer::Decided(waiting(ctx, &op, Instant::now(), None, report.clone())));
                }
                Ok(_) => ctx.memory.sent_unconfirmed(name, id),
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
            if may_have_happened
                && matches!(e.aws_kind(), Some(AwsErrorKind::Transport | AwsErrorKind::Throttling | AwsErrorKind::Other))
            {
                ctx.memory.sent_unconfirmed(name, id);
            }
            Err(e)
        }
    }
}
