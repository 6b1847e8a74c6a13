//! Retrying: the error backoff of the daemon and `converge`, the loop behind `reconcile --once` and the demo.

use tracing::warn;

use super::{Context, DeploymentState, Outcome, State, reconcile};
use crate::desired::Deployment;
use crate::error::{AwsErrorKind, Error};
use std::time::Duration;

use super::Config;

/// What to do after a failed pass, in the style of kube-runtime's `error_policy`: how long to wait before the
/// next one. `failures` counts the consecutive failures including this one; the caller owns that count (the
/// daemon's worker, `converge`) and resets it on success. A pass refused by the shutdown gate is no failure.
pub fn error_policy(config: &Config, failures: u32, error: &Error) -> Duration {
    match error {
        Error::ShuttingDown(_) | Error::DesiredChanged { .. } => Duration::ZERO,
        // The worker then waits for the lease; if it is still held here (the table could not confirm it), the
        // next try waits a little rather than spinning.
        Error::LeaseLost { .. } | Error::CallAbandoned { .. } => config.error_backoff_base,
        _ => error_backoff(config, failures),
    }
}

/// Exponential backoff with ±20% jitter after `failures` consecutive failed passes.
pub fn error_backoff(config: &Config, failures: u32) -> Duration {
    backoff(
        config.error_backoff_base,
        config.error_backoff_max,
        failures,
        0.8..1.2,
    )
}

/// `base` doubled `doublings` times (at most 16), capped at `max`, then scaled by a factor drawn from `jitter`:
/// every retry loop's wait (the passes' error policy, the event reader's).
pub fn backoff(
    base: Duration,
    max: Duration,
    doublings: u32,
    jitter: std::ops::Range<f64>,
) -> Duration {
    let exp = base.saturating_mul(1u32 << doublings.min(16));
    exp.min(max).mul_f64(rand::random_range(jitter))
}

/// Errors worth retrying within `reconcile --once` (the daemon retries every error, with backoff).
pub fn is_transient(error: &Error) -> bool {
    matches!(
        error.aws_kind(),
        Some(
            AwsErrorKind::Throttling
                | AwsErrorKind::Transport
                | AwsErrorKind::OperationInProgress
                | AwsErrorKind::StaleRequest
        )
    )
}

/// How many transient errors in a row `converge` rides out before giving up.
pub const CONVERGE_TRANSIENT_RETRIES: u32 = 8;

/// Run passes until the deployment is converged (or suspended), honouring each pass's requeue delay: the
/// `reconcile --once` command and the demo. Transient errors are retried with backoff; any other error ends it.
pub async fn converge(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    on_outcome: impl FnMut(&Outcome),
) -> Result<Outcome, Error> {
    converge_until(deployment, ctx, state, true, on_outcome).await
}

/// `converge`, choosing whether to wait for deletions held by `deletion_delay` (`reconcile --once`) or to stop
/// there (`reconcile --once --no-wait`: the outcome is `DeletionPending`).
pub async fn converge_until(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    wait_for_deletions: bool,
    mut on_outcome: impl FnMut(&Outcome),
) -> Result<Outcome, Error> {
    let mut transient = 0;
    loop {
        match reconcile(deployment, ctx, state).await {
            Ok(outcome) => {
                transient = 0;
                on_outcome(&outcome);
                // A coverage gap with nothing to submit is as far as a pass can go: reported, not waited on. So is
                // a staged rollout holding the rest (a bake of up to a week, a halt, a manual promotion).
                if matches!(
                    outcome.state,
                    State::Converged
                        | State::Suspended { .. }
                        | State::CoverageGap(_)
                        | State::TemplateUnapproved { .. }
                        | State::RollingOut(_)
                ) || (!wait_for_deletions
                    && matches!(outcome.state, State::DeletionPending { .. }))
                {
                    return Ok(outcome);
                }
                tokio::time::sleep(outcome.requeue_after).await;
            }
            Err(error) if is_transient(&error) && transient < CONVERGE_TRANSIENT_RETRIES => {
                transient += 1;
                let delay = error_policy(&ctx.config, transient, &error);
                warn!(%error, retry_in = ?delay, "transient error; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}
