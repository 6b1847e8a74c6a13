//! The template poller: every `template_poll_interval` (independent of the resync), one conditional GET per
//! distinct template URL in the desired state. An unchanged template costs that one request (answered 304); a new
//! version is stored in the controller's `TemplateSource` and the deployments using that URL get a pass at once,
//! where the update policy decides what happens to it. A failed poll is shown in /status and counted; the version
//! held stays in use, so nothing changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info};

use crate::controller::Context;
use crate::desired::Deployment;
use crate::status::StatusBoard;
use crate::template::Poll;

/// Poll until `stop` is cancelled; send the names of the deployments whose template changed on `changed`.
pub async fn poll_templates(
    ctx: Arc<Context>,
    status: Arc<StatusBoard>,
    deployments: watch::Receiver<Vec<Arc<Deployment>>>,
    changed: mpsc::UnboundedSender<Vec<String>>,
    stop: CancellationToken,
) {
    let period = ctx.config.template_poll_interval;
    // The first tick would fire at once; the deployments' first passes fetch at start, so skip it.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let mut by_url: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for deployment in deployments.borrow().iter() {
            if let Ok(url) = ctx.template_url(deployment) {
                by_url
                    .entry(url)
                    .or_default()
                    .push(deployment.name().to_string());
            }
        }
        for (url, names) in by_url {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let poll = ctx.templates.poll(&url, &refs).await;
            status.record_template_fetch(&refs, ctx.templates.state(&url));
            match poll {
                Poll::Changed { previous, sha256 } => {
                    info!(%url, %sha256, previous = ?previous, deployments = ?names,
                        "new template version published: reconciling the deployments that use it");
                    let _ = changed.send(names);
                }
                Poll::Unchanged => debug!(%url, "template unchanged"),
                // Logged and counted by the source; the version held stays.
                Poll::Failed(_) => {}
            }
        }
    }
}
