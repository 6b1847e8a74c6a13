//! The management account's plain stack (`spec.managementAccount`), as a pass reads it: DescribeStacks in the
//! deployment's first Region, its template (GetTemplate, read again only when the stack's LastUpdatedTime moves),
//! and, before a creation, this deployment's stacks in the other desired Regions. The decision is the pure
//! `plan::management_stack`; resource drift is checked with the stack set's, on the same cadence.

use tracing::{info, warn};

use super::{Context, DeploymentState};
use crate::desired::Deployment;
use crate::error::Error;
use crate::plan::Observed;
use crate::plan::management_stack::{FailedCreation, ManagementStackObserved, owned};

/// What the pass sees of the stack; `None` without `spec.managementAccount` (not a single call then).
pub(super) async fn observe(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
) -> Result<Option<ManagementStackObserved>, Error> {
    let spec = &deployment.spec;
    let (Some(_), Some(region)) = (&spec.management_account, spec.regions.first()) else {
        return Ok(None);
    };
    let name = &spec.stack_set_name;
    let owner = deployment.name();
    let stack = ctx.cloud.describe_stack(name, region).await?;
    let template_body = match &stack {
        Some(stack) if owned(stack, owner) && stack.usable() => {
            let cached = state.stack_template(&stack.stack_id, stack.last_changed);
            match cached {
                Some(body) => Some(body),
                None => {
                    let body = ctx
                        .cloud
                        .get_stack_template(&stack.stack_id, region)
                        .await?;
                    state.remember_stack_template(&stack.stack_id, stack.last_changed, &body);
                    Some(body)
                }
            }
        }
        _ => None,
    };
    let mut elsewhere = Vec::new();
    if stack.is_none() && spec.wants_management_stack() {
        for other in spec.regions.iter().skip(1) {
            if let Some(found) = ctx.cloud.describe_stack(name, other).await?
                && owned(&found, owner)
            {
                info!(region = %other, "the management account's stack is in a Region no longer first");
                elsewhere.push(found);
            }
        }
    }
    let failed = stack
        .as_ref()
        .filter(|s| owned(s, owner))
        .and_then(FailedCreation::of);
    if let Some(failed) = &failed {
        warn!(stack = %name, region = %region, reason = %failed.reason, "creating the management account's stack failed");
    }
    let failed_creation = state.failed_stack_creation(failed);
    Ok(Some(ManagementStackObserved {
        region: region.clone(),
        stack,
        template_body,
        elsewhere,
        failed_creation,
    }))
}

/// Start DetectStackDrift on this deployment's stack, alongside the stack set's detection. Its result shows in
/// DescribeStacks (the report's `managementStack.drift`); a failure to start it is logged, not a failed pass.
pub(super) async fn detect_drift(deployment: &Deployment, ctx: &Context, observed: &Observed) {
    let Some(stack) = observed
        .management_stack
        .as_ref()
        .and_then(|m| m.stack.as_ref())
        .filter(|s| owned(s, deployment.name()) && s.usable())
    else {
        return;
    };
    match ctx
        .cloud
        .detect_stack_drift(&stack.stack_id, &stack.region)
        .await
    {
        Ok(()) => {
            info!(stack = %stack.name, region = %stack.region, "detecting the management account stack's drift")
        }
        Err(e) => {
            warn!(stack = %stack.name, error = %e, "could not start drift detection on the management account's stack")
        }
    }
}
