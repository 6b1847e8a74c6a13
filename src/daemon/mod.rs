//! `stacksetd run`: the daemon. It loads the desired-state file and watches it (src/file_watch.rs), keeps one worker
//! per deployment (scheduler.rs), serves /healthz, /readyz, /metrics and /status (src/http.rs), talks to systemd
//! (systemd.rs), keeps every deployment's CloudFormation reads within one shared budget (read_budget.rs, applied
//! by gate.rs), and shuts down cleanly: the first signal stops new passes and new operations (gate.rs), lets
//! running passes finish their bookkeeping, and returns within `shutdown_timeout`.
//!
//! The shutdown signal is a future passed in (mini-redis style) and SIGHUP is a `Reloader` call, so tests run the
//! whole daemon in-process; main.rs wires both to real signals.

pub mod access;
mod gate;
pub mod read_budget;
mod scheduler;
mod systemd;
mod templates;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cloud::{Cloud, Connector};
use crate::controller::credentials::Contexts;
use crate::controller::{self, Context};
use crate::error::Error;
use crate::file_watch::{FileWatch, Load, Loader};
use crate::http::{self, HttpState};
use crate::leases::Leases;
use crate::metrics::{Metrics, ReloadResult};
use crate::status::StatusBoard;

pub use gate::Gate;

/// The last part of `shutdown_timeout`, kept for the HTTP server to finish requests in flight after the drain.
const HTTP_GRACE: Duration = Duration::from_millis(200);

/// SIGHUP waits at most this long to drop the cached organization tree; longer means a scan is running, whose
/// result is fresh anyway, and the daemon must stay responsive to signals.
const ORG_INVALIDATE_WAIT: Duration = Duration::from_secs(1);

/// With leases, readiness is looked at again this often until reached (leases are taken by their own loop).
const READY_RECHECK: Duration = Duration::from_millis(500);

/// How the daemon runs (from the settings).
#[derive(Debug, Clone)]
pub struct Options {
    pub desired_state: PathBuf,
    pub listen: SocketAddr,
    pub concurrency: usize,
    pub shutdown_timeout: Duration,
    /// The member access check runs this often (for deployments with `accessCheck`).
    pub access_check_interval: Duration,
    /// At most this many AssumeRole calls at once during an access check.
    pub access_check_concurrency: usize,
    /// When set, GET /status requires `Authorization: Bearer <token>`.
    pub status_token: Option<String>,
    /// Host names accepted besides IP literals and `localhost` (`http_allowed_hosts`).
    pub allowed_hosts: Vec<String>,
    /// CloudFormation reads a second, all deployments together (`aws.max_read_rate`).
    pub max_read_rate: u32,
}

/// Forces a reload of the desired-state file and a pass of every deployment: what SIGHUP does.
#[derive(Clone)]
pub struct Reloader(mpsc::Sender<()>);

impl Reloader {
    pub fn reload(&self) {
        // A reload already pending covers this one.
        let _ = self.0.try_send(());
    }
}

/// A daemon with its HTTP listener bound, not yet running.
pub struct Daemon {
    ctx: Arc<Context>,
    gate: Arc<Gate>,
    /// Assumes the roles of `spec.credentials`; without one such deployments stall with a clear error.
    connector: Option<Arc<dyn Connector>>,
    /// With `leases.table`: the deployments are shared with other replicas.
    leases: Option<Arc<Leases>>,
    options: Options,
    listener: TcpListener,
    status: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    reload_tx: mpsc::Sender<()>,
    reload_rx: mpsc::Receiver<()>,
}

impl Daemon {
    /// Bind the listen address (port 0 picks a free one, see `local_addr`) and prepare everything.
    pub async fn bind(
        cloud: Arc<dyn Cloud>,
        config: controller::Config,
        options: Options,
    ) -> Result<Daemon, Error> {
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|e| Error::Settings(format!("listen: cannot bind {}: {e}", options.listen)))?;
        let gate = Arc::new(Gate::new(cloud, options.max_read_rate));
        let ctx = Arc::new(Context::new(gate.clone(), config));
        let metrics = Arc::new(Metrics::new(gate.clone()).map_err(metrics_error)?);
        let fetches = metrics.templates.clone();
        ctx.templates
            .set_observer(Arc::new(move |deployment: &str, result: &'static str| {
                fetches.record_fetch(deployment, result)
            }));
        let (reload_tx, reload_rx) = mpsc::channel(1);
        Ok(Daemon {
            ctx,
            gate,
            connector: None,
            leases: None,
            status: Arc::new(StatusBoard::new(options.desired_state.clone())),
            options,
            listener,
            metrics,
            reload_tx,
            reload_rx,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Deployments with `spec.credentials` get their clouds from `connector` (each behind this daemon's gate).
    pub fn with_connector(mut self, connector: Arc<dyn Connector>) -> Daemon {
        self.connector = Some(connector);
        self
    }

    /// Share the deployments with other replicas: a deployment is reconciled here only while this replica holds
    /// its lease, and every mutating call confirms the lease first (the gate).
    pub fn with_leases(mut self, leases: Arc<Leases>) -> Result<Daemon, Error> {
        self.gate.require_leases(leases.clone());
        self.status.show_leases(leases.clone());
        self.metrics
            .register_leases(leases.clone())
            .map_err(metrics_error)?;
        self.leases = Some(leases);
        Ok(self)
    }

    pub fn reloader(&self) -> Reloader {
        Reloader(self.reload_tx.clone())
    }

    /// Run until `shutdown` resolves, then drain within `shutdown_timeout`. Errors only at start (the file's
    /// directory cannot be watched).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let Daemon {
            ctx,
            gate,
            connector,
            leases,
            options,
            listener,
            status,
            metrics,
            reload_tx: _reload_tx,
            mut reload_rx,
        } = self;
        let mut watch = FileWatch::new(&options.desired_state)?;
        let mut loader = Loader::new(&options.desired_state);

        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let http_state = HttpState {
            status: status.clone(),
            metrics: metrics.clone(),
            status_token: options.status_token.as_deref().map(Arc::from),
            allowed_hosts: options
                .allowed_hosts
                .iter()
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        };
        // One token tree: `stopping` (passes, pollers, scans) is cancelled when shutdown begins; its parent
        // `closing` (the HTTP server, which keeps answering probes during the drain) at the very end.
        let closing = CancellationToken::new();
        let stopping = closing.child_token();
        let mut http_task = spawn_http(listener, http_state, closing.clone());
        info!(%address, "serving /healthz /readyz /metrics /status");
        let ready_task = tokio::spawn(
            stopping
                .clone()
                .run_until_cancelled_owned(systemd::notify_ready(status.subscribe_ready())),
        );
        let mut watchdog = systemd::Watchdog::from_env();

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
        let lease_task = leases.clone().map(|leases| {
            leases.set_deployments(deployment_names(&scheduler.deployments()));
            tokio::spawn(leases.run(stopping.clone()))
        });
        if leases.is_some() {
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
        // A change read once, confirmed by a second read STABLE_GAP later (and whether it was a SIGHUP).
        let mut confirm: Option<(tokio::time::Instant, bool)> = None;
        watch.follow_symlink();
        let (deployments_tx, deployments_rx) = watch::channel(scheduler.deployments());
        let (published_tx, mut published_rx) = mpsc::unbounded_channel();
        let access_checker = tokio::spawn(crate::daemon::access::run_checks(
            contexts.clone(),
            status.clone(),
            metrics.fleet.clone(),
            deployments_rx.clone(),
            options.access_check_interval,
            options.access_check_concurrency,
            stopping.clone(),
        ));
        let orphan_scan = {
            let scan = scan_orphans(contexts.clone(), status.clone(), deployments_rx.clone());
            let stop = stopping.clone();
            tokio::spawn(async move {
                stop.run_until_cancelled(scan).await;
            })
        };
        let poller = tokio::spawn(templates::poll_templates(
            ctx.clone(),
            status.clone(),
            deployments_rx,
            published_tx,
            stopping.clone(),
        ));

        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(()) = reload_rx.recv() => {
                    info!("SIGHUP: reloading the desired state and reconciling every deployment");
                    // Bounded: a pass stuck inside an organization scan holds the cache (and will refresh it).
                    let _ = tokio::time::timeout(ORG_INVALIDATE_WAIT, contexts.invalidate_organizations()).await;
                    let load = loader.observe(true);
                    confirm = apply_load(load, &loader, &mut scheduler, &status, &metrics, true);
                }
                () = watch.changed() => {
                    let forced = confirm.is_some_and(|(_, f)| f);
                    let load = loader.observe(forced);
                    confirm = apply_load(load, &loader, &mut scheduler, &status, &metrics, forced);
                }
                () = tokio::time::sleep_until(confirm.map_or_else(tokio::time::Instant::now, |(at, _)| at)), if confirm.is_some() => {
                    let forced = confirm.is_some_and(|(_, f)| f);
                    let load = loader.confirm();
                    confirm = apply_load(load, &loader, &mut scheduler, &status, &metrics, forced);
                }
                Some(names) = published_rx.recv() => {
                    for name in &names {
                        scheduler.trigger(name);
                    }
                }
                () = watchdog.due() => watchdog.ping(),
            }
            watch.follow_symlink();
            let changed = deployments_tx.send_if_modified(|current| {
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
                let now = deployments_tx.borrow().clone();
                if let Some(leases) = &leases {
                    leases.set_deployments(deployment_names(&now));
                }
                contexts.retain(&now).await;
            }
        }

        // Shutdown: no new passes, no new operations; running passes finish their bookkeeping.
        let started = tokio::time::Instant::now();
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
        if tokio::time::timeout_at(deadline, &mut http_task)
            .await
            .is_err()
        {
            http_task.abort();
        }
        // Every task watches the token; whatever has not ended by the deadline is cancelled here.
        for task in [poller, orphan_scan, access_checker]
            .into_iter()
            .chain(lease_task)
        {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                warn!("a background task did not stop by the shutdown timeout");
            }
        }
        let _ = tokio::time::timeout_at(deadline, ready_task).await;
        info!("stopped");
        Ok(())
    }
}

/// Serve HTTP in its own task until `closing` is cancelled.
fn spawn_http(
    listener: TcpListener,
    state: HttpState,
    closing: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = http::serve(listener, state, closing.cancelled_owned()).await {
            error!(error = %e, "HTTP server failed");
        }
    })
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

fn deployment_names(deployments: &[Arc<crate::desired::Deployment>]) -> Vec<String> {
    deployments.iter().map(|d| d.name().to_string()).collect()
}

fn metrics_error(e: prometheus::Error) -> Error {
    Error::Settings(format!("registering metrics: {e}"))
}

/// Bind and run: the whole daemon in one call.
pub async fn run(
    cloud: Arc<dyn Cloud>,
    config: controller::Config,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    Daemon::bind(cloud, config, options)
        .await?
        .run(shutdown)
        .await
}
