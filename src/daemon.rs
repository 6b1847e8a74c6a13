//! `stacksetd run`: every deployment reconciled by its own task, at most one pass per deployment at a time,
//! at most `concurrency` passes at once, each task sleeping for the delay its last pass returned (requeue as a
//! return value). The shutdown signal is passed in as a future so tests can stop the daemon.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tracing::{error, info};

use crate::controller::{self, Context, State};
use crate::desired::Deployment;

/// Run until `shutdown` resolves; then let running passes finish, waiting at most `drain` for them.
pub async fn run(
    ctx: Arc<Context>,
    deployments: Vec<Deployment>,
    concurrency: usize,
    drain: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for deployment in deployments {
        tasks.spawn(deployment_loop(
            ctx.clone(),
            deployment,
            permits.clone(),
            stop_rx.clone(),
        ));
    }
    shutdown.await;
    info!("shutting down: no new passes start; waiting for running ones");
    let _ = stop_tx.send(true);
    if tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        info!(
            ?drain,
            "passes still running after the drain timeout; their operations are adopted at next start"
        );
        tasks.abort_all();
    }
}

async fn deployment_loop(
    ctx: Arc<Context>,
    deployment: Deployment,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let name = deployment.name().to_string();
    loop {
        let delay = {
            let Ok(_permit) = permits.acquire().await else {
                return;
            };
            if *stop.borrow() {
                return;
            }
            match controller::reconcile(&deployment, &ctx).await {
                Ok(outcome) => {
                    if let State::Acted {
                        action,
                        operation_id,
                        summary,
                    } = &outcome.state
                    {
                        info!(deployment = %name, action, operation = ?operation_id, %summary, "acted");
                    }
                    outcome.requeue_after
                }
                Err(e) => {
                    let failures = ctx.memory().failed(&name);
                    let delay = controller::error_backoff(&ctx.config, failures);
                    error!(deployment = %name, error = %e, reason = e.metric_label(), retry_in = ?delay, "reconcile failed");
                    delay
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}
