//! `autoDeployment.dependsOn` resolved to what AWS takes: stack set ARNs. An ARN entry is sent as written; a
//! deployment name becomes that deployment's stack set's ARN, read with DescribeStackSet (same `callAs`) and
//! remembered for `instance_relist_interval` (an ARN only changes when the stack set is deleted and created
//! again), so a converged pass costs no extra call. A dependency that does not exist yet stops the pass with a
//! condition naming it, and the pass is retried: nothing is sent with a dependency left out.

use super::{Context, DeploymentState};
use crate::desired::Deployment;
use crate::desired::depends_on::{self, Dependency};
use crate::error::Error;

/// The ARNs to send, sorted (AWS documents no order; the plan compares them as a set).
pub(super) async fn resolve(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
) -> Result<Vec<String>, Error> {
    let spec = &deployment.spec;
    let mut arns = Vec::new();
    for entry in &spec.auto_deployment.depends_on {
        let arn = match depends_on::parse(entry) {
            Some(Dependency::Arn { arn, .. }) => arn.to_string(),
            Some(Dependency::Deployment(name)) => {
                let stack_set = spec.dependency_stack_sets.get(name).ok_or_else(|| {
                    missing(
                        deployment,
                        entry,
                        "it is not a deployment of the desired state",
                    )
                })?;
                arn_of(deployment, ctx, state, stack_set).await?
            }
            None => {
                return Err(missing(
                    deployment,
                    entry,
                    "it is not a name or a stack set ARN",
                ));
            }
        };
        arns.push(arn);
    }
    arns.sort();
    arns.dedup();
    Ok(arns)
}

async fn arn_of(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    stack_set: &str,
) -> Result<String, Error> {
    let fresh_for = ctx.config.instance_relist_interval;
    if let Some(arn) = state.dependency_arn(stack_set, fresh_for) {
        return Ok(arn);
    }
    let observed = ctx
        .cloud
        .describe_stack_set(stack_set, deployment.spec.call_as)
        .await?;
    let arn = observed.and_then(|s| s.arn).ok_or_else(|| {
        missing(
            deployment,
            stack_set,
            "that stack set does not exist yet (it is created by its own deployment; this pass is retried)",
        )
    })?;
    state.remember_dependency_arn(stack_set, &arn);
    Ok(arn)
}

fn missing(deployment: &Deployment, entry: &str, why: &str) -> Error {
    Error::Preflight {
        reason: "dependency_missing",
        message: format!(
            "{}: autoDeployment.dependsOn `{entry}`: {why}; nothing is sent until every dependency resolves",
            deployment.name()
        ),
    }
}
