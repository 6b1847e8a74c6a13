//! `stacksetd run`: the daemon. It loads the desired-state file and watches it (src/file_watch.rs), keeps one worker
//! per deployment (scheduler.rs), serves /healthz, /readyz, /metrics and /status (src/http.rs), talks to systemd
//! (systemd.rs), keeps every deployment's CloudFormation reads within one shared budget (read_budget.rs, applied
//! by gate.rs), and shuts down cleanly: the first signal stops new passes and new operations (gate.rs), lets
//! running passes finish their bookkeeping, and returns within `shutdown_timeout`.
//!
//! The shutdown signal is a future passed in (mini-redis style) and SIGHUP is a `Reloader` call, so tests run the
//! whole daemon in-process; main.rs wires both to real signals.

pub mod access;
pub mod events;
mod gate;
pub mod read_budget;
mod running;
mod scheduler;
mod systemd;
mod templates;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::cloud::{Cloud, Connector};
use crate::controller::{self, Context};
use crate::error::Error;
use crate::leases::Leases;
use crate::metrics::Metrics;
use crate::status::StatusBoard;

pub use gate::Gate;

/// The last part of `shutdown_timeout`, kept for the HTTP server to finish requests in flight after the drain.
const HTTP_GRACE: Duration = Duration::from_millis(200);

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

impl Options {
    /// A daemon on a free port of 127.0.0.1 reading `desired_state`, without the read budget's limit (1,000 reads a
    /// second), 4 passes at a time, a 10 s drain and an hourly access check: what an in-process run needs (tests,
    /// benchmarks); change a field with `Options { concurrency: 1, ..Options::local(path) }`.
    pub fn local(desired_state: PathBuf) -> Options {
        Options {
            desired_state,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            concurrency: 4,
            shutdown_timeout: Duration::from_secs(10),
            access_check_interval: Duration::from_secs(3600),
            access_check_concurrency: 4,
            status_token: None,
            allowed_hosts: Vec::new(),
            max_read_rate: 1000,
        }
    }
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
    /// With `events.queue_url`: passes follow EventBridge's events (events.rs).
    events: Option<Arc<dyn crate::cloud::queue::EventQueue>>,
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
            events: None,
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

    /// Follow the events on `queue` (`events.queue_url`): passes are triggered by them, and (without leases) a
    /// converged pass skips the operations listing while the queue vouches nothing happened.
    pub fn with_events(mut self, queue: Arc<dyn crate::cloud::queue::EventQueue>) -> Daemon {
        self.events = Some(queue);
        self
    }

    pub fn reloader(&self) -> Reloader {
        Reloader(self.reload_tx.clone())
    }

    /// Run until `shutdown` resolves, then drain within `shutdown_timeout`. Errors only at start (the file's
    /// directory cannot be watched).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let mut running = running::Running::start(self).await?;
        running.serve(shutdown).await;
        running.stop().await;
        Ok(())
    }
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
