//! A running daemon, in three steps that `Daemon::run` takes in order: `start` (watch the file, serve HTTP, load
//! the desired state once, spawn the background tasks), `serve` (the main loop: file events, SIGHUP, template
//! publications, the systemd watchdog) and `stop` (drain within `shutdown_timeout`). The tasks it spawns each
//! watch one cancellation token; `stop` waits for each by name.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{Daemon, HTTP_GRACE, Options, READY_RECHECK, gate, scheduler, systemd, templates};
use crate::cloud::Connector;
use crate::controller::{self, credentials::Contexts};
use crate::desired::Deployment;
use crate::error::Error;
use crate::file_watch::{FileWatch, Load, Loader};
use crate::http::{self, HttpState};
use crate::leases::Leases;
use crate::metrics::{Metrics, ReloadResult};
use crate::status::StatusBoard;

/// The deployments the main loop hands to the pollers (template publications, access checks, orphan scans).
type Deployments = Vec<Arc<Deployment>>;

/// Everything a running daemon holds between `start`, `serve` and `stop`.
pub(super) struct Running {
    options: Options,
    gate: Arc<gate::Gate>,
    status: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    contexts: Arc<Contexts>,
    leases: Option<Arc<Leases>>,
    watch: FileWatch,
    loader: Loader,
    scheduler: scheduler::Scheduler,
    /// A change read once, confirmed by a second read STABLE_GAP later (and whether it was a SIGHUP).
    confirm: Option<(Instant, bool)>,
    deployments: watch::Sender<Deployments>,
    reload_rx: mpsc::Receiver<()>,
    /// Deployments whose template a poll found republished.
    published_rx: mpsc::UnboundedReceiver<Vec<String>>,
    /// Deployments an event concerns (events.rs), with where to say which passes will observe it.
    dispatch_rx: mpsc::Receiver<super::events::Dispatch>,
    watchdog: systemd::Watchdog,
    /// `stopping` (passes, pollers, scans) is cancelled when shutdown begins; its parent `closing` (the HTTP
    /// server, which keeps answering probes during the drain) at the very end.
    closing: CancellationToken,
    stopping: CancellationToken,
    http: JoinHandle<()>,
    /// The background tasks, by what they do; each ends when `stopping` is cancelled.
    background: Vec<(&'static str, JoinHandle<()>)>,
}

impl Running {
    /// Watch the file, serve HTTP, load the desired state once and start the background tasks.
    pub(super) async fn start(daemon: Daemon) -> Result<Running, Error> {
        let Daemon {
            ctx,
            gate,
            connector,
            leases,
            events,
            options,
            listener,
            status,
            metrics,
            reload_tx: _,
            reload_rx,
        } = daemon;
        let mut watch = FileWatch::new(&options.desired_state)?;
        let mut loader = Loader::new(&options.desired_state);

        let closing = CancellationToken::new();
        let stopping = closing.child_token();
        let http = serve_http(listener, &options, &status, &metrics, &closing);
        let mut background: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
        let ready = stopping
            .clone()
            .run_until_cancelled_owned(systemd::notify_ready(status.subscribe_ready()));
        background.push((
            "the systemd readiness notice",
            tokio::spawn(async move {
                ready.await;
            }),
        ));
        let watchdog = systemd::Watchdog::from_env();

        let connector = connector.map(|inner| {
            Arc::new(gate::GatedConnector {
                gate: gate.clone(),
                inner,
            }) as Arc<dyn Connector>
        });
        let contexts = Arc::new(Contexts::new(ctx.clone(), connector));
        let shared = Arc::new(scheduler::Shared {
            contexts: contexts.clone(),
            status: status.clone(),
            metrics: metrics.clone(),
            permits: Semaphore::new(options.concurrency.max(1)),
            stop: stopping.clone(),
            leases: leases.clone(),
        });
        let mut scheduler = scheduler::Scheduler::new(shared);
        let first = loader.load_stable(true).await;
        apply_load(first, &loader, &mut scheduler, &status, &metrics, true);
        if let Some(leases) = &leases {
            leases.set_deployments(deployment_names(&scheduler.deployments()));
            background.push((
                "the lease renewal",
                tokio::spawn(leases.clone().run(stopping.clone())),
            ));
            // Readiness waits for a session and a pass of each deployment held, which no pass event signals
            // alone: look again until then.
            let board = status.clone();
            let stop = stopping.clone();
            tokio::spawn(async move {
                while !board.is_ready() && !stop.is_cancelled() {
                    tokio::time::sleep(READY_RECHECK).await;
                    board.update_ready();
                }
            });
        }
        watch.follow_symlink();
        let (deployments, deployments_rx) = watch::channel(scheduler.deployments());
        let (published_tx, published_rx) = mpsc::unbounded_channel();
        background.push((
            "the member access check",
            tokio::spawn(crate::daemon::access::run_checks(
                contexts.clone(),
                status.clone(),
                metrics.fleet.clone(),
                deployments_rx.clone(),
                options.access_check_interval,
                options.access_check_concurrency,
                stopping.clone(),
            )),
        ));
        let scan = scan_orphans(contexts.clone(), status.clone(), deployments_rx.clone());
        let stop = stopping.clone();
        background.push((
            "the orphaned stack set scan",
            tokio::spawn(async move {
                stop.run_until_cancelled(scan).await;
            }),
        ));
        background.push((
            "the template poller",
            tokio::spawn(templates::poll_templates(
                ctx,
                status.clone(),
                deployments_rx.clone(),
                published_tx,
                stopping.clone(),
            )),
        ));
        let (dispatch_tx, dispatch_rx) = mpsc::channel(16);
        if let Some(queue) = events {
            // A replica does not see the events another one receives: with leases, events only hasten passes.
            if leases.is_none() {
                contexts.base().events.trust();
            }
            info!(
                queue = queue.url(),
                "following the events on the event queue"
            );
            let reader = super::events::Reader {
                queue,
                contexts: contexts.clone(),
                deployments: deployments_rx.clone(),
                dispatch: dispatch_tx,
                metrics: metrics.events.clone(),
                status: status.clone(),
            };
            background.push((
                "the event reader",
                tokio::spawn(reader.run(stopping.clone())),
            ));
        }
        Ok(Running {
            dispatch_rx,
            options,
            gate,
            status,
            metrics,
            contexts,
            leases,
            watch,
            loader,
            scheduler,
            confirm: None,
            deployments,
            reload_rx,
            published_rx,
            watchdog,
            closing,
            stopping,
            http,
            background,
        })
    }

    /// The main loop, until `shutdown` resolves: one event at a time, then the deployments handed on.
    pub(super) async fn serve(&mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(()) = self.reload_rx.recv() => {
                    info!("SIGHUP: reloading the desired state and reconciling every deployment");
                    // Never waits for a scan under way: the next pass scans again after it.
                    self.contexts.invalidate_organizations().await;
                    let load = self.loader.observe(true);
                    self.apply(load, true);
                }
                () = self.watch.changed() => {
                    let forced = self.confirm.is_some_and(|(_, f)| f);
                    let load = self.loader.observe(forced);
                    self.apply(load, forced);
                }
                () = tokio::time::sleep_until(self.confirm.map_or_else(Instant::now, |(at, _)| at)), if self.confirm.is_some() => {
                    let forced = self.confirm.is_some_and(|(_, f)| f);
                    let load = self.loader.confirm();
                    self.apply(load, forced);
                }
                Some(dispatch) = self.dispatch_rx.recv() => {
                    let _ = dispatch.reply.send(self.scheduler.dispatch(&dispatch.names));
                }
                Some(names) = self.published_rx.recv() => {
                    for name in &names {
                        self.scheduler.trigger(name);
                    }
                }
                () = self.watchdog.due() => self.watchdog.ping(),
            }
            self.watch.follow_symlink();
            self.hand_on_deployments().await;
        }
    }

    fn apply(&mut self, load: Load, forced: bool) {
        self.confirm = apply_load(
            load,
            &self.loader,
            &mut self.scheduler,
            &self.status,
            &self.metrics,
            forced,
        );
    }

    /// When the deployments changed: to the pollers, the leases and the per-deployment contexts.
    async fn hand_on_deployments(&mut self) {
        let scheduler = &self.scheduler;
        let changed = self.deployments.send_if_modified(|current| {
            let now = scheduler.deployments();
            let same = now.len() == current.len()
                && now
                    .iter()
                    .zip(current.iter())
                    .all(|(a, b)| Arc::ptr_eq(a, b));
            if !same {
                *current = now;
            }
            !same
        });
        if changed {
            let now = self.deployments.borrow().clone();
            if let Some(leases) = &self.leases {
                leases.set_deployments(deployment_names(&now));
            }
            self.contexts.retain(&now).await;
        }
    }

    /// Shutdown: no new passes, no new operations; running passes finish their bookkeeping, the leases are handed
    /// over, then HTTP stops, all within `shutdown_timeout`.
    pub(super) async fn stop(self) {
        let Running {
            options,
            gate,
            status,
            leases,
            mut scheduler,
            closing,
            stopping,
            mut http,
            background,
            ..
        } = self;
        let started = Instant::now();
        let deadline = started + options.shutdown_timeout;
        // The HTTP server's last moments come out of the same budget.
        let drain_deadline = started + options.shutdown_timeout.saturating_sub(HTTP_GRACE);
        info!(timeout = ?options.shutdown_timeout, "shutting down: no new passes or operations; waiting for running passes");
        systemd::notify_stopping();
        status.set_shutting_down();
        gate.close();
        stopping.cancel();
        if tokio::time::timeout_at(drain_deadline, scheduler.drain())
            .await
            .is_err()
        {
            warn!(
                "passes still running at the shutdown timeout: cancelled; a submitted operation is adopted at next start"
            );
            scheduler.abort();
        }
        if let Some(leases) = &leases {
            // Nothing of ours runs any more: hand the leases over now rather than after a lease duration.
            if tokio::time::timeout_at(drain_deadline, leases.release_all())
                .await
                .is_err()
            {
                warn!(
                    "releasing the leases did not finish by the shutdown timeout: they expire instead"
                );
            }
        }
        closing.cancel();
        if tokio::time::timeout_at(deadline, &mut http).await.is_err() {
            http.abort();
        }
        // Every task watches the token; whatever has not ended by the deadline is cancelled here.
        for (what, task) in background {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                warn!(
                    task = what,
                    "a background task did not stop by the shutdown timeout"
                );
            }
        }
        info!("stopped");
    }
}

/// Serve HTTP in its own task until `closing` is cancelled.
fn serve_http(
    listener: TcpListener,
    options: &Options,
    status: &Arc<StatusBoard>,
    metrics: &Arc<Metrics>,
    closing: &CancellationToken,
) -> JoinHandle<()> {
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let state = HttpState {
        status: status.clone(),
        metrics: metrics.clone(),
        status_token: options.status_token.as_deref().map(Arc::from),
        allowed_hosts: options
            .allowed_hosts
            .iter()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            .collect(),
    };
    let closing = closing.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = http::serve(listener, state, closing.cancelled_owned()).await {
            error!(error = %e, "HTTP server failed");
        }
    });
    info!(%address, "serving /healthz /readyz /metrics /status");
    task
}

/// Apply what a read of the file found: a valid, confirmed result is applied; an invalid or unreadable file is
/// reported and the last good desired state keeps being reconciled. Returns when to confirm a pending change
/// (and whether it was forced by SIGHUP).
fn apply_load(
    load: Load,
    loader: &Loader,
    scheduler: &mut scheduler::Scheduler,
    status: &StatusBoard,
    metrics: &Metrics,
    forced: bool,
) -> Option<(tokio::time::Instant, bool)> {
    let file = loader.path().display().to_string();
    match load {
        Load::Unchanged => {
            if forced {
                scheduler.trigger_all();
            }
        }
        Load::Pending => {
            return Some((
                tokio::time::Instant::now() + crate::file_watch::STABLE_GAP,
                forced,
            ));
        }
        Load::Valid { state, sha256 } => {
            info!(file, sha256 = %&sha256[..12], deployments = state.deployments.len(), "desired state loaded");
            metrics.reconcile.record_reload(ReloadResult::Valid);
            // Status first: a worker's first pass may end before apply returns.
            status.record_valid_load(&sha256, &state.deployments);
            scheduler.apply(state.deployments, forced);
        }
        Load::Invalid { error, sha256 } => {
            if let Error::Invalid(invalid) = &error {
                for problem in &invalid.problems {
                    error!(%problem, "desired state rejected");
                }
            }
            error!(
                file,
                "desired state rejected; still reconciling the last good one"
            );
            metrics.reconcile.record_reload(ReloadResult::Invalid);
            status.record_rejected_load(ReloadResult::Invalid, Some(&sha256), &error);
            if forced {
                scheduler.trigger_all();
            }
        }
        Load::Unreadable(error) => {
            warn!(error = %error, "desired state unreadable; still reconciling the last good one");
            metrics.reconcile.record_reload(ReloadResult::Unreadable);
            status.record_rejected_load(ReloadResult::Unreadable, None, &error);
            if forced {
                scheduler.trigger_all();
            }
        }
    }
    None
}

/// Every `org_scan_interval`, the stack sets tagged for deployments the desired state no longer names, into
/// /status (reported only; a failed scan keeps the last result and is logged).
async fn scan_orphans(
    contexts: Arc<Contexts>,
    status: Arc<StatusBoard>,
    mut deployments: watch::Receiver<Vec<Arc<crate::desired::Deployment>>>,
) {
    loop {
        let current = deployments.borrow_and_update().clone();
        if !current.is_empty() {
            let named: Vec<&crate::desired::Deployment> =
                current.iter().map(|d| d.as_ref()).collect();
            match controller::ownership::orphans_across(&contexts, &named).await {
                Ok(orphans) => {
                    for o in &orphans {
                        warn!(stack_set = %o.stack_set, deployment = %o.deployment, "orphaned stack set: {}", o.advice);
                    }
                    status.set_orphans(orphans);
                }
                Err(e) => {
                    warn!(error = %e, "scanning for orphaned stack sets failed; the last result stays")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(contexts.base().config.org_scan_interval) => {}
            changed = deployments.changed() => if changed.is_err() { return },
        }
    }
}

fn deployment_names(deployments: &[Arc<Deployment>]) -> Vec<String> {
    deployments.iter().map(|d| d.name().to_string()).collect()
}
