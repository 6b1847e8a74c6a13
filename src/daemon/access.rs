//! The member access check (`spec.accessCheck.roleName`): sts:AssumeRole into that role in every targeted active
//! member account, from stacksetd's own identity, to prove the access the stack set is meant to grant actually
//! works (the accounts the vendor's diagram would tint red). It touches every account, so it never runs inside a
//! reconcile pass: the daemon runs it on its own cadence (`access_check_interval`), at most
//! `access_check_concurrency` calls at a time. Results go to /status (accounts and reasons) and to the
//! `member_access_failures` gauge (a count: no per-account labels).

use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

use futures::StreamExt;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cloud::Cloud;
use crate::controller::Context;
use crate::coverage;
use crate::desired::{Deployment, Ensure};
use crate::error::Error;
use crate::metrics::FleetMetrics;
use crate::status::StatusBoard;

/// The role session name the check uses (visible in the member accounts' CloudTrail).
pub const SESSION_NAME: &str = crate::cloud::ACCESS_CHECK_SESSION;
/// How many failing accounts /status lists by name; the count is always complete.
const FAILURES_LISTED: usize = 200;

pub use crate::status::{AccessFailure, AccessReport};

pub use crate::cloud::role_arn;

/// Assume the role in each account, `concurrency` at a time.
pub async fn check_accounts(
    cloud: &dyn Cloud,
    partition: &str,
    accounts: &[String],
    role_name: &str,
    concurrency: usize,
) -> AccessReport {
    // Boxed futures over owned ids: the stream combinators then need no higher-ranked lifetimes, which would
    // keep the checker's task from being `Send`.
    let attempts = accounts.iter().cloned().map(|account| {
        let arn = role_arn(partition, &account, role_name);
        let attempt: futures::future::BoxFuture<'_, Option<AccessFailure>> = Box::pin(async move {
            match cloud.assume_role(&arn, SESSION_NAME).await {
                Ok(()) => None,
                Err(e) => Some(AccessFailure {
                    account,
                    kind: e.metric_label().into(),
                    reason: e.to_string(),
                }),
            }
        });
        attempt
    });
    let results: Vec<Option<AccessFailure>> = futures::stream::iter(attempts)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut failures: Vec<AccessFailure> = results.into_iter().flatten().collect();
    failures.sort_by(|a, b| a.account.cmp(&b.account));
    let failed = failures.len();
    failures.truncate(FAILURES_LISTED);
    AccessReport {
        role_name: role_name.to_string(),
        checked_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        checked: accounts.len(),
        failed,
        failures,
    }
}

/// One deployment's check: the targeted active accounts from the (cached) organization.
pub async fn check_deployment(
    deployment: &Deployment,
    ctx: &Context,
    concurrency: usize,
) -> Result<Option<AccessReport>, Error> {
    let spec = &deployment.spec;
    let Some(access) = &spec.access_check else {
        return Ok(None);
    };
    if spec.ensure == Ensure::Absent {
        return Ok(None);
    }
    let org = ctx.organization().await?;
    let stack_set = ctx
        .cloud
        .describe_stack_set(&spec.stack_set_name, spec.call_as)
        .await?;
    let partition = stack_set
        .as_ref()
        .and_then(|s| s.arn.as_deref())
        .and_then(|arn| arn.split(':').nth(1))
        .unwrap_or("aws")
        .to_string();
    let targeted: Vec<String> = coverage::coverage(deployment, &org, &[])
        .targeted
        .into_iter()
        .collect();
    let report = check_accounts(
        ctx.cloud.as_ref(),
        &partition,
        &targeted,
        &access.role_name,
        concurrency,
    )
    .await;
    Ok(Some(report))
}

/// The daemon's checker: every `interval` (the first soon after start), each deployment with an access check,
/// until `stop` is cancelled.
pub async fn run_checks(
    contexts: Arc<crate::controller::credentials::Contexts>,
    status: Arc<StatusBoard>,
    metrics: FleetMetrics,
    deployments: watch::Receiver<Vec<Arc<Deployment>>>,
    interval: Duration,
    concurrency: usize,
    stop: CancellationToken,
) {
    // Let the first passes run (and create the roles) before the first check.
    let first = tokio::time::Instant::now() + interval.min(FIRST_CHECK_DELAY);
    let mut ticks = tokio::time::interval_at(first, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let current: Vec<Arc<Deployment>> = deployments.borrow().clone();
        for deployment in current {
            let name = deployment.name();
            // From the deployment's own identity: member roles trust its management account.
            let checked = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                r = async {
                    let ctx = contexts.for_deployment(&deployment).await?;
                    check_deployment(&deployment, &ctx, concurrency).await
                } => r,
            };
            match checked {
                Ok(Some(report)) => {
                    if report.failed > 0 {
                        warn!(deployment = %name, role = %report.role_name, failed = report.failed,
                            checked = report.checked, "member access check: some accounts cannot be reached");
                    } else {
                        info!(deployment = %name, role = %report.role_name, checked = report.checked,
                            "member access check passed");
                    }
                    metrics.record_access(name, report.checked, report.failed);
                    status.record_access(name, report);
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(deployment = %name, error = %e, "member access check could not run");
                }
            }
        }
    }
}

/// The first check waits this long (or the interval, when shorter) after the daemon starts.
const FIRST_CHECK_DELAY: Duration = Duration::from_secs(60);
