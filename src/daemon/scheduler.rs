//! Scheduling passes: one worker task per deployment, so a deployment is reconciled by at most one pass at a
//! time; a semaphore caps passes across deployments (settings `concurrency`). Each worker sleeps for the delay
//! its last pass returned (requeue as a return value) or until triggered. Triggers (an edit, SIGHUP) are a
//! `Notify` permit: any number of them during a pass leave one permit, so they cause exactly one more pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::controller::credentials::Contexts;
use crate::controller::{self, DeploymentState, State};
use crate::desired::Deployment;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::status::StatusBoard;

/// What every worker shares.
pub struct Shared {
    /// The context each deployment's passes run in (the daemon's, or its `spec.credentials` role's).
    pub contexts: Arc<Contexts>,
    pub status: Arc<StatusBoard>,
    pub metrics: Arc<Metrics>,
    pub permits: Semaphore,
    /// True once shutdown begins: no pass starts after that.
    /// Cancelled when shutdown begins: workers start no new pass (a running one finishes).
    pub stop: CancellationToken,
    /// With `leases.table`: a worker runs passes only while this replica holds its deployment's lease.
    pub leases: Option<Arc<crate::leases::Leases>>,
}

struct Worker {
    stack_set: String,
    deployment: watch::Sender<Arc<Deployment>>,
    trigger: Arc<Notify>,
    removed: watch::Sender<bool>,
    passes: watch::Receiver<Passes>,
    task: JoinHandle<()>,
}

/// A worker's pass count: passes started, and the number of the last one that ended (one runs at a time).
#[derive(Debug, Clone, Copy, Default)]
pub struct Passes {
    started: u64,
    ended: u64,
}

/// A pass owed to an event: it resolves once a pass of the deployment that started after the trigger has ended
/// (or the deployment is gone).
pub struct PassWatch {
    passes: watch::Receiver<Passes>,
    after: u64,
}

impl PassWatch {
    pub async fn observed(mut self) {
        let after = self.after;
        // An error means the worker ended (the deployment removed, or shutdown): nothing is owed any more.
        let _ = self.passes.wait_for(|p| p.ended > after).await;
    }
}

/// A removed deployment's worker, possibly still finishing its pass.
struct Retiring {
    name: String,
    stack_set: String,
    task: JoinHandle<()>,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    workers: BTreeMap<String, Worker>,
    retiring: Vec<Retiring>,
}

impl Scheduler {
    pub fn new(shared: Arc<Shared>) -> Scheduler {
        Scheduler {
            shared,
            workers: BTreeMap::new(),
            retiring: Vec::new(),
        }
    }

    /// Make the workers match a newly loaded desired state: new deployments start at once, changed ones get
    /// their new generation and a pass at once, removed ones stop (their stack sets are left as they are: only
    /// `ensure: Absent` deletes). With `trigger_all` (SIGHUP), unchanged deployments get a pass too.
    pub fn apply(&mut self, deployments: Vec<Deployment>, trigger_all: bool) {
        self.retiring.retain(|r| !r.task.is_finished());
        let wanted: BTreeMap<String, Deployment> = deployments
            .into_iter()
            .map(|d| (d.name().to_string(), d))
            .collect();
        let removed: Vec<String> = self
            .workers
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for name in removed {
            if let Some(worker) = self.workers.remove(&name) {
                info!(deployment = %name, stack_set = %worker.stack_set,
                    "removed from the desired state: no longer reconciled; its stack set is left as it is");
                worker.removed.send_replace(true);
                self.shared.metrics.forget(&name);
                self.retiring.push(Retiring {
                    name,
                    stack_set: worker.stack_set,
                    task: worker.task,
                });
            }
        }
        for (name, deployment) in wanted {
            match self.workers.get_mut(&name) {
                Some(worker) => {
                    let changed = worker.deployment.borrow().spec != deployment.spec;
                    if changed {
                        info!(deployment = %name, generation = %deployment.generation(), "changed: reconciling now");
                        worker.stack_set = deployment.spec.stack_set_name.clone();
                        worker.deployment.send_replace(Arc::new(deployment));
                        worker.trigger.notify_one();
                    } else if trigger_all {
                        worker.trigger.notify_one();
                    }
                }
                None => {
                    info!(deployment = %name, generation = %deployment.generation(), "reconciling");
                    let worker = self.spawn(deployment);
                    self.workers.insert(name, worker);
                }
            }
        }
    }

    fn spawn(&mut self, deployment: Deployment) -> Worker {
        let stack_set = deployment.spec.stack_set_name.clone();
        // A worker of the same name or stack set may still be finishing a pass: the new one waits for it, so a
        // stack set never has two passes at once, even across a rename or a remove-and-re-add.
        let (before, keep): (Vec<Retiring>, Vec<Retiring>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(|r| r.name == deployment.name() || r.stack_set == stack_set);
        self.retiring = keep;
        let (deployment_tx, deployment_rx) = watch::channel(Arc::new(deployment));
        let (removed_tx, removed_rx) = watch::channel(false);
        let (passes_tx, passes) = watch::channel(Passes::default());
        let trigger = Arc::new(Notify::new());
        let task = tokio::spawn(run_worker(
            self.shared.clone(),
            deployment_rx,
            trigger.clone(),
            removed_rx,
            passes_tx,
            before.into_iter().map(|r| r.task).collect(),
        ));
        Worker {
            stack_set,
            deployment: deployment_tx,
            trigger,
            removed: removed_tx,
            passes,
            task,
        }
    }

    /// One more pass of each named deployment, for an event: what to wait on to know each has observed it.
    /// With leases, a deployment held by another replica gets no pass here and owes nothing (its holder learns
    /// of the change from its own backstops: events received here are not seen there).
    pub fn dispatch(&self, names: &std::collections::BTreeSet<String>) -> Vec<PassWatch> {
        names
            .iter()
            .filter_map(|name| self.workers.get(name).map(|w| (name, w)))
            .filter(|(name, _)| {
                self.shared
                    .leases
                    .as_ref()
                    .is_none_or(|l| l.token(name).is_some())
            })
            .map(|(_, worker)| {
                // Read before the trigger: any pass starting from here on began after the event was received.
                let after = worker.passes.borrow().started;
                worker.trigger.notify_one();
                PassWatch {
                    passes: worker.passes.clone(),
                    after,
                }
            })
            .collect()
    }

    /// One more pass of the named deployment (a new template version); unknown names are ignored.
    pub fn trigger(&self, name: &str) {
        if let Some(worker) = self.workers.get(name) {
            worker.trigger.notify_one();
        }
    }

    /// The deployments reconciled now.
    pub fn deployments(&self) -> Vec<Arc<Deployment>> {
        self.workers
            .values()
            .map(|w| w.deployment.borrow().clone())
            .collect()
    }

    /// Every deployment gets one more pass (SIGHUP with an unchanged file).
    pub fn trigger_all(&self) {
        for worker in self.workers.values() {
            worker.trigger.notify_one();
        }
    }

    /// Wait for every worker to end (after `stop` turned true, they end once their running pass is done).
    pub async fn drain(&mut self) {
        let tasks = self
            .workers
            .values_mut()
            .map(|w| &mut w.task)
            .chain(self.retiring.iter_mut().map(|r| &mut r.task));
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Cancel whatever is still running (the drain timeout passed).
    pub fn abort(&self) {
        for worker in self.workers.values() {
            worker.task.abort();
        }
        for retiring in &self.retiring {
            retiring.task.abort();
        }
    }
}

/// Resolves when the flag turns true (or its sender is gone, which means the same).
async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|v| *v).await;
}

async fn run_worker(
    shared: Arc<Shared>,
    deployment: watch::Receiver<Arc<Deployment>>,
    trigger: Arc<Notify>,
    mut removed: watch::Receiver<bool>,
    passes: watch::Sender<Passes>,
    predecessors: Vec<JoinHandle<()>>,
) {
    for task in predecessors {
        let _ = task.await;
    }
    let stop = shared.stop.clone();
    let name = deployment.borrow().name().to_string();
    let mut delay = Duration::ZERO;
    // Consecutive failed passes, for the error policy: owned here, reset by a successful pass.
    let mut failures: u32 = 0;
    // What the controller keeps between this deployment's passes: owned here too, so it is dropped with the
    // worker when the deployment is removed (a worker re-added under the name starts clean).
    let mut state = DeploymentState::default();
    let mut targets = deployment.borrow().spec.deployment_targets.clone();
    let mut held = shared.leases.as_ref().map(|l| l.subscribe(&name));
    loop {
        tokio::select! {
            // A trigger first: a pending permit is consumed by the pass about to start, which covers it.
            biased;
            () = stop.cancelled() => return,
            _ = raised(&mut removed) => break,
            _ = trigger.notified() => {}
            _ = tokio::time::sleep(delay) => {}
        }
        if let Some(held) = held.as_mut()
            && !*held.borrow()
        {
            // Another replica holds it (or nobody yet): no pass here until this replica takes the lease, then one
            // at once (the previous holder may have left work half done). `wait_for` looks at the current value
            // first, so a lease taken just now is not missed.
            debug!(deployment = %name, "lease held elsewhere: not reconciling here");
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                _ = raised(&mut removed) => break,
                taken = held.wait_for(|h| *h) => if taken.is_err() { return },
            }
        }
        let permit = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = raised(&mut removed) => break,
            permit = shared.permits.acquire() => permit,
        };
        let Ok(_permit) = permit else { return };
        // The pass runs under the lease as held now; a mutating call is refused if it changes hands meanwhile.
        let lease = shared.leases.as_ref().map(|l| l.token(&name));
        if matches!(lease, Some(None)) {
            // Lost while waiting for the permit: back to waiting for it.
            delay = Duration::ZERO;
            continue;
        }
        let current = deployment.borrow().clone();
        // An edit may name an OU created since the last scan: look at the organization afresh.
        let targets_changed = current.spec.deployment_targets != targets;
        targets = current.spec.deployment_targets.clone();
        let acting = super::gate::Acting {
            deployment: name.clone(),
            lease: lease.flatten(),
            desired: Some((current.generation(), deployment.clone())),
        };
        let lost = held.clone();
        passes.send_modify(|p| p.started += 1);
        delay = pass(
            &mut state,
            &shared,
            &current,
            &mut failures,
            targets_changed,
            acting,
            lost,
        )
        .await;
        passes.send_modify(|p| p.ended = p.started);
        if *removed.borrow() {
            // Removed during the pass, which re-created its gauge.
            shared.metrics.forget(&name);
            break;
        }
    }
}

/// One pass with its bookkeeping (metrics, status, logs); returns when to run the next. The pass runs in the
/// deployment's context (its role's, with the session renewed first: a role that cannot be assumed fails the
/// pass like any preflight).
async fn pass(
    state: &mut DeploymentState,
    shared: &Shared,
    deployment: &Deployment,
    failures: &mut u32,
    targets_changed: bool,
    acting: super::gate::Acting,
    held: Option<tokio::sync::watch::Receiver<bool>>,
) -> Duration {
    let name = deployment.name();
    let generation = deployment.generation();
    shared.status.pass_started(name, &generation);
    let result = {
        let _timer = shared.metrics.reconcile.pass_timer(name);
        // The gate asks for this deployment's lease before every mutating call of the pass.
        let run = super::gate::ACTING_FOR.scope(acting, async {
            let ctx = shared.contexts.for_deployment(deployment).await?;
            if targets_changed {
                ctx.invalidate_organization();
            }
            controller::reconcile(deployment, &ctx, state).await
        });
        // A pass whose lease is lost is cancelled where it stands (a call in flight is dropped with it): its
        // decisions belong to the replica that holds the lease now.
        match held {
            Some(mut held) => tokio::select! {
                result = run => result,
                Ok(_) = held.wait_for(|h| !*h) => Err(Error::LeaseLost {
                    deployment: name.to_string(),
                    call: "the pass".into(),
                    reason: "the lease was lost during the pass, which was cancelled".into(),
                }),
            },
            None => run.await,
        }
    };
    let config = &shared.contexts.base().config;
    if let Err(e @ Error::ShuttingDown(_)) = &result {
        info!(deployment = %name, reason = %e, "pass ended by shutdown; the next start reconciles again");
        return controller::error_policy(config, *failures, e);
    }
    if let Err(e @ Error::DesiredChanged { .. }) = &result {
        info!(deployment = %name, reason = %e, "pass ended: the desired state changed; planning again");
        return controller::error_policy(config, *failures, e);
    }
    if let Err(e @ (Error::LeaseLost { .. } | Error::CallAbandoned { .. })) = &result {
        // Not a failure: the replica holding the lease reconciles it now; its status is theirs to report.
        warn!(deployment = %name, reason = %e, "pass ended: the lease is no longer held here");
        return controller::error_policy(config, *failures, e);
    }
    let delay = match &result {
        Ok(outcome) => {
            *failures = 0;
            match &outcome.state {
                State::Acted {
                    action,
                    operation_id,
                    summary,
                } => {
                    info!(deployment = %name, action, operation = ?operation_id, %summary, "acted")
                }
                State::Converged => debug!(deployment = %name, "converged"),
                State::CoverageGap(gap) => {
                    debug!(deployment = %name, why = %gap.why, "coverage gap")
                }
                State::TemplateUnapproved { message } => {
                    warn!(deployment = %name, %message, "the stack set's template is not approved")
                }
                state => debug!(deployment = %name, ?state, "in progress"),
            }
            outcome.requeue_after
        }
        Err(e) => {
            *failures = failures.saturating_add(1);
            let delay = controller::error_policy(config, *failures, e);
            if controller::is_transient(e) {
                warn!(deployment = %name, error = %e, reason = e.metric_label(), retry_in = ?delay, "reconcile failed");
            } else {
                error!(deployment = %name, error = %e, reason = e.metric_label(), retry_in = ?delay, "reconcile failed");
            }
            delay
        }
    };
    shared
        .metrics
        .record_pass(name, &result, &state.take_ended());
    shared
        .status
        .pass_finished(name, &generation, &result, *failures, delay);
    delay
}
