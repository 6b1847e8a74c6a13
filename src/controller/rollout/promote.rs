//! `stacksetd promote NAME [--retry]`: an operator's word on a rollout, written to AWS as a canary-scoped update.

use super::{Phase, TEMPLATE_TAG, canary_scope, canary_update};
use crate::controller::Context;
use crate::desired::Deployment;
use crate::error::Error;

/// `stacksetd promote NAME [--retry]`: let a baked version reach the rest (`promote: Manual`), or re-apply a halted
/// version to the canary. Both are an UpdateStackSet scoped to the canary that keeps the template: a promotion
/// also tags the stack set [`PROMOTE_TAG`] with the version (the daemon then promotes once the bake has ended);
/// a retry re-applies the version to the canary, whose verification and bake start again. Returns the
/// OperationId.
pub async fn promote(deployment: &Deployment, ctx: &Context, retry: bool) -> Result<String, Error> {
    let name = deployment.name();
    let mut state = crate::controller::DeploymentState::default();
    let observation = crate::controller::observe(deployment, ctx, &mut state).await?;
    let decision = crate::controller::decide(
        deployment,
        &ctx.config,
        &observation,
        tokio::time::Instant::now(),
    )?;
    let (Some(status), Some(stack_set), Some(facts)) = (
        &decision.report.rollout,
        &observation.observed.stack_set,
        &observation.rollout,
    ) else {
        return Err(Error::Conflict(format!(
            "{name}: no staged rollout is in progress (spec.rollout, and a version that reached only the canary)"
        )));
    };
    match (retry, status.phase) {
        (true, Phase::Halted)
        | (false, Phase::Baking | Phase::AwaitingPromotion | Phase::Verifying) => {}
        (true, phase) => {
            return Err(Error::Conflict(format!(
                "{name}: version {} is {}, not halted: there is nothing to retry",
                status.version,
                phase.label()
            )));
        }
        (false, phase) => {
            return Err(Error::Conflict(format!(
                "{name}: version {} is {}: only a verified canary is promoted{}",
                status.version,
                phase.label(),
                if phase == Phase::Halted {
                    " (a halted one is retried: --retry)"
                } else {
                    ""
                }
            )));
        }
    }
    let scope = canary_scope(facts, &deployment.spec, &observation.observed)
        .ok_or_else(|| Error::Conflict(format!("{name}: no canary account has an instance")))?;
    let promoted = if retry {
        None
    } else {
        Some(
            stack_set
                .settings
                .tags
                .get(TEMPLATE_TAG)
                .cloned()
                .ok_or_else(|| {
                    Error::Conflict(format!("{name}: the stack set has no {TEMPLATE_TAG} tag"))
                })?,
        )
    };
    let action = canary_update(stack_set, scope, promoted.as_deref());
    let spec = &deployment.spec;
    let base = crate::controller::operation::operation_id_base(
        &spec.stack_set_name,
        &action,
        &spec.operation_preferences,
    );
    let submission = crate::controller::operation::Submission {
        base: &base,
        recent: &observation.operations,
        may_have_happened: true,
    };
    let sent = crate::controller::operation::submit(
        deployment,
        ctx,
        &mut state,
        submission,
        &decision.report,
        |id| async move { crate::controller::operation::send(deployment, ctx, &action, &id).await },
    )
    .await?;
    match sent {
        crate::controller::operation::Sent::Accepted(id) => Ok(id),
        crate::controller::operation::Sent::NothingToDo => Err(Error::Conflict(format!(
            "{name}: CloudFormation found nothing to update"
        ))),
        crate::controller::operation::Sent::Decided(outcome) => Err(Error::Conflict(format!(
            "{name}: not sent: {:?}",
            outcome.state
        ))),
    }
}
