//! The controller: one reconcile pass of one deployment, in the style of kube-runtime. `reconcile` observes AWS,
//! plans, and takes at most one step; it returns when to look again (requeue as a return value). It never blocks
//! on an operation: it remembers the operation id and the next pass asks DescribeStackSetOperation about it.
//!
//! Safety rules (ARCHITECTURE.md, "Safety rules"): one operation per stack set, adopted rather than duplicated; OperationIds derived from
//! what is applied, so a crash or timeout never submits the same change twice; a converged pass costs only
//! DescribeStackSet and one ListStackSetOperations page: the instances come from a cache (`instances.rs`) that
//! is listed again after any operation, every `instance_relist_interval`, and before any deletion (the
//! organization is re-listed on its own cadence).

mod auto_targets;
pub mod credentials;
mod decide;
mod dependencies;
mod deployment_state;
mod drift;
mod instances;
mod management_stack;
mod observe;
mod operation;
pub mod ownership;
pub mod preflight;
mod report;
mod retry;
pub mod rollout;
mod templates;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::info;

use crate::cloud::org::{self, OrgSnapshot};
use crate::cloud::{Cloud, Operation};
use crate::desired::Deployment;
use crate::error::Error;
use crate::plan::{self, Action, Observed, Plan, Purpose};
use crate::template::{self, Fetcher, TemplateSource};
use instances::Look;

pub use auto_targets::AutoTargetsReport;
pub use decide::{Decision, Next, decide};
pub use deployment_state::DeploymentState;
pub use drift::{drift_due, settings_fingerprint};
pub use observe::{Observation, Remembered, observe};
pub use operation::{next_sequence, operation_id_base};
pub use report::{
    DriftReport, InstanceProblem, ManagementStackReport, PendingDeletion, Progress, RegionProgress,
    Report, RunningOperation, SpecDrift, TemplateReport,
};
pub use retry::{
    CONVERGE_TRANSIENT_RETRIES, backoff, converge, converge_until, error_backoff, error_policy,
    is_transient,
};
pub use templates::TemplateView;

/// How many of a stack set's operations a pass reads (every page up to this many) to find a running one to adopt
/// and the sequence numbers already used. ListStackSetOperations is eventually consistent and documents no order,
/// so nothing is inferred from position: a bounded window, read whole.
pub const OPERATION_LOOKBACK: usize = 500;

/// The `instance_relist_interval` setting's default.
pub const DEFAULT_INSTANCE_RELIST_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// The `deletion_delay` setting's default.
pub const DEFAULT_DELETION_DELAY: Duration = Duration::from_secs(60);

/// Why a deletion waits, as every announcement of the wait says it.
pub const DELETION_DELAY_REASON: &str = "deletions run only once the desired state asking for them has stayed unchanged that long, so a half-saved \
     or withdrawn edit never deletes";

/// Tunables of the controller; defaults suit AWS, tests and the demo shorten them.
#[derive(Debug, Clone)]
pub struct Config {
    pub catalog_base_url: String,
    /// Converged deployments are looked at again after this long.
    pub resync_interval: Duration,
    /// The organization tree is re-listed at most this often.
    pub org_scan_interval: Duration,
    /// A stack set's instances are listed in full at least this often (and whenever the cache is in doubt);
    /// between, a pass reads the cached listing, refreshed after every operation seen on the stack set.
    pub instance_relist_interval: Duration,
    /// First poll of a running operation; later polls back off toward `poll_max`.
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// Error backoff: base * 2^failures, capped, with jitter.
    pub error_backoff_base: Duration,
    pub error_backoff_max: Duration,
    /// List the running operation's results while waiting, for done/total per Region (costs
    /// ListStackSetOperationResults pages of that operation per poll; StatusDetails' failed count is always read).
    pub track_progress: bool,
    /// The daemon asks each template URL for a new version this often (a conditional GET), independent of
    /// `resync_interval`.
    pub template_poll_interval: Duration,
    /// A template fetch gives up after this long.
    pub template_fetch_timeout: Duration,
    /// Template fetches may reach private networks by name or redirect (`template_private_networks`).
    pub template_private_networks: bool,
    /// Preflight may turn on trusted access for StackSets itself (the `activate_trusted_access` setting).
    pub activate_trusted_access: bool,
    /// A coverage gap (a targeted account without an instance) is repaired once it has lasted this long:
    /// auto-deployment usually fills it within minutes. With auto-deployment off it is repaired at once; a gap a
    /// repair did not fill waits this long again.
    pub coverage_grace: Duration,
    /// A step that deletes instances or the stack set is submitted only once the desired state asking for it
    /// has been unchanged this long (a half-applied edit, an edit withdrawn, never deletes).
    pub deletion_delay: Duration,
}

impl Config {
    /// The controller's tunables from the daemon's settings (the rest keep their defaults).
    pub fn from_settings(s: &crate::settings::Settings) -> Config {
        Config {
            catalog_base_url: s.catalog.base_url.clone(),
            resync_interval: s.resync_interval.0,
            org_scan_interval: s.org_scan_interval.0,
            instance_relist_interval: s.instance_relist_interval.0,
            template_poll_interval: s.template_poll_interval.0,
            coverage_grace: s.coverage_grace_period.0,
            deletion_delay: s.deletion_delay.0,
            activate_trusted_access: s.activate_trusted_access,
            template_private_networks: s.template_private_networks,
            ..Config::default()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            catalog_base_url: template::DEFAULT_CATALOG_BASE_URL.to_string(),
            resync_interval: Duration::from_secs(300),
            org_scan_interval: Duration::from_secs(600),
            instance_relist_interval: DEFAULT_INSTANCE_RELIST_INTERVAL,
            poll_min: Duration::from_secs(2),
            poll_max: Duration::from_secs(30),
            error_backoff_base: Duration::from_secs(2),
            error_backoff_max: Duration::from_secs(300),
            track_progress: false,
            template_poll_interval: Duration::from_secs(300),
            template_fetch_timeout: template::FETCH_TIMEOUT,
            template_private_networks: false,
            coverage_grace: Duration::from_secs(15 * 60),
            activate_trusted_access: false,
            deletion_delay: DEFAULT_DELETION_DELAY,
        }
    }
}

/// What every deployment's passes share: the cloud, the template fetcher, the organization cache and the update
/// decisions. What one deployment keeps between its passes is its [`DeploymentState`], which its worker owns.
///
/// A context acts as one identity: its `cloud`, the organization cached from it and its preflight results
/// belong to those credentials. Deployments with `spec.credentials` get a context of their own from
/// [`Context::with_cloud`] (see `credentials.rs`), which shares everything else (templates, update
/// decisions, the clock) with the daemon's.
pub struct Context {
    pub cloud: Arc<dyn Cloud>,
    /// The last template version fetched per URL: passes plan with it; the daemon's poller refreshes it.
    pub templates: Arc<TemplateSource>,
    pub config: Config,
    org: tokio::sync::Mutex<Option<(Instant, Arc<OrgSnapshot>)>>,
    /// Set by [`Context::invalidate_organization`]: the cached tree is out of date.
    org_changed: std::sync::atomic::AtomicBool,
    /// Update decisions by their inputs: judging a template is pure, so a pass asks again only when something
    /// it depends on changed.
    pub assessments: Arc<template::Assessments>,
    /// IAM Access Analyzer's reasons per (applied, candidate, parameters): its checks are charged, so each
    /// version is asked about once.
    analyzer_verdicts: Arc<std::sync::Mutex<HashMap<String, Vec<String>>>>,
    /// When the context was made, on tokio's clock and the wall clock: `wall_now` moves with tokio's clock, so
    /// wall-clock decisions (is a drift check older than the interval?) follow simulated time in tests.
    epoch: (Instant, std::time::SystemTime),
    preflight: crate::controller::preflight::PreflightCache,
    /// What the event queue has seen (`events.queue_url`): whether a converged pass may skip the operations
    /// listing. Trusted only in the daemon's own context with a queue; a role's context has its own, untrusted.
    pub events: Arc<crate::events::Ledger>,
}

impl Context {
    pub fn new(cloud: Arc<dyn Cloud>, config: Config) -> Context {
        Context {
            cloud,
            templates: Arc::new(TemplateSource::new(Fetcher::with_networks(
                config.template_fetch_timeout,
                config.template_private_networks,
            ))),
            config,
            org: Default::default(),
            org_changed: Default::default(),
            assessments: Default::default(),
            analyzer_verdicts: Default::default(),
            epoch: (Instant::now(), std::time::SystemTime::now()),
            preflight: Default::default(),
            events: Default::default(),
        }
    }

    /// A context acting through `cloud` (another identity): its own organization cache and preflight results,
    /// everything else shared with this one.
    pub fn with_cloud(&self, cloud: Arc<dyn Cloud>) -> Context {
        Context {
            cloud,
            templates: self.templates.clone(),
            config: self.config.clone(),
            org: Default::default(),
            org_changed: Default::default(),
            assessments: self.assessments.clone(),
            analyzer_verdicts: self.analyzer_verdicts.clone(),
            epoch: self.epoch,
            preflight: Default::default(),
            // The queue carries the events of the daemon's own account: another identity's stack sets are not
            // known to be in it.
            events: Default::default(),
        }
    }

    /// Successful preflights (see `preflight::ensure`).
    pub fn preflight_cache(&self) -> &crate::controller::preflight::PreflightCache {
        &self.preflight
    }

    /// The wall-clock time now, advancing with tokio's clock (equal to the system clock in a real run, up to
    /// clock adjustments since start; simulated in tests on a paused clock).
    pub fn wall_now(&self) -> std::time::SystemTime {
        self.epoch.1 + self.epoch.0.elapsed()
    }

    /// The URL a deployment's template comes from.
    pub fn template_url(&self, deployment: &Deployment) -> Result<String, Error> {
        template::source_url(&deployment.spec.template, &self.config.catalog_base_url).ok_or_else(
            || {
                Error::Conflict(
                    "spec.template needs a policy or a url (stacksetd validate explains)".into(),
                )
            },
        )
    }

    /// The organization tree, re-listed when older than the scan interval.
    pub async fn organization(&self) -> Result<Arc<OrgSnapshot>, Error> {
        let mut cached = self.org.lock().await;
        // Taken before the scan: a change signalled during it is still there for the next pass.
        let changed = self
            .org_changed
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        if let Some((at, snapshot)) = cached.as_ref()
            && at.elapsed() < self.config.org_scan_interval
            && !changed
        {
            return Ok(snapshot.clone());
        }
        let snapshot = match org::scan(self.cloud.as_ref()).await {
            Ok(snapshot) => Arc::new(snapshot),
            Err(e) => {
                if changed {
                    // Still out of date: the next pass scans again.
                    self.invalidate_organization();
                }
                return Err(e);
            }
        };
        *cached = Some((Instant::now(), snapshot.clone()));
        Ok(snapshot)
    }

    /// The organization tree as last scanned, without scanning or waiting for a scan under way (the event reader
    /// routes with it; None then routes to every deployment).
    pub fn cached_organization(&self) -> Option<Arc<OrgSnapshot>> {
        self.org.try_lock().ok()?.as_ref().map(|(_, s)| s.clone())
    }

    /// The cached organization tree is out of date (an account event, an edit that targets a new OU, SIGHUP): the
    /// next pass that asks scans it again, even if a scan is under way now (it may have read the tree before the
    /// change). Never waits.
    pub fn invalidate_organization(&self) {
        self.org_changed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Where a deployment stands after a pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all_fields = "camelCase")]
pub enum State {
    /// The stack set and every instance match the desired state: every targeted active account x desired Region
    /// has a CURRENT instance, and no other account or Region has one.
    Converged,
    /// Nothing to submit now, but the desired truth does not hold (see [`CoverageGap`]): the vendor's "blocked"
    /// accounts. Never reported as Converged.
    CoverageGap(CoverageGap),
    /// Nothing to submit, but the stack set runs a template stacksetd never approved (changed outside
    /// stacksetd) and there is no approved version to put back (the one fetched is another): a person must
    /// review it and pin the version to run. Never reported as Converged.
    TemplateUnapproved { message: String },
    /// A staged rollout (`spec.rollout`) holds the rest of the instances: its canary runs, is verified, bakes,
    /// waits for `stacksetd promote`, or halted. Never reported as Converged.
    RollingOut(rollout::Status),
    /// An operation (ours or someone else's) holds the stack set; we wait for it.
    Waiting {
        operation_id: String,
        action: String,
        progress: Option<Progress>,
    },
    /// Instances are still being worked on, but no active operation is visible yet (listings lag).
    Settling,
    /// This pass submitted a step.
    Acted {
        #[serde(deserialize_with = "crate::cloud::calls::action_name")]
        action: crate::cloud::calls::ActionName,
        operation_id: Option<String>,
        summary: String,
    },
    /// `suspend: true`: changes are pending but stacksetd only reports them.
    Suspended { pending: usize },
    /// Only deletions are left (with the creations that depend on them, `Plan::creations_after_deletions`), and
    /// they wait until the desired state asking for them has been unchanged for `deletion_delay`.
    DeletionPending {
        #[serde(deserialize_with = "crate::cloud::calls::action_name")]
        action: crate::cloud::calls::ActionName,
        summary: String,
        /// When it will be submitted (RFC 3339, UTC), if the desired state stays as it is.
        runs_at: String,
    },
}

/// The gap between the instances and the desired truth when nothing is left to submit now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageGap {
    /// Targeted active account x desired Region slots without an instance.
    pub missing: usize,
    /// Instances of targeted accounts in desired Regions that are not CURRENT.
    pub not_current: usize,
    /// Instances outside the targets.
    pub orphaned: usize,
    /// Why, and when (or whether) a repair comes.
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub state: State,
    #[serde(skip)]
    pub requeue_after: Duration,
    pub report: Report,
}

impl Outcome {
    pub fn is_converged(&self) -> bool {
        self.state == State::Converged
    }

    /// What a converged pass could not bring about and a person must see (`reconcile --once` exits 1 with it):
    /// the management account's stack failed and is not being tried again.
    pub fn held_back(&self) -> Option<String> {
        let stack = self.report.management_stack.as_ref()?;
        (stack.state == "failed").then(|| {
            format!(
                "the management account's stack {} in {} failed ({}): {}",
                stack.name,
                stack.region,
                stack.status,
                stack.status_reason.as_deref().unwrap_or("no reason given")
            )
        })
    }
}

/// One pass, in three stages: observe (every read, what the controller remembers included), decide (pure: the
/// plan and the next move), act (at most one submission, and the record of it). The next pass observes its
/// effect.
#[tracing::instrument(skip_all, fields(deployment = %deployment.name()))]
pub async fn reconcile(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
) -> Result<Outcome, Error> {
    // Observe. What this deployment sent before comes first: while its operation runs, that is the whole pass.
    if let Some(outcome) = observe::follow_up(deployment, ctx, state).await? {
        return Ok(outcome);
    }
    let mut observation = observe(deployment, ctx, state).await?;
    // Decide.
    let mut decision = decide(deployment, &ctx.config, &observation, Instant::now())?;
    // A page of operations skipped on the event queue's word only ever concludes "converged": anything else
    // (an account joined, a version published) reads the page and decides again.
    if !observation.operations_listed && !decision.converged() {
        observation = observe::observe_with(deployment, ctx, state, Look::Operations).await?;
        decision = decide(deployment, &ctx.config, &observation, Instant::now())?;
    }
    // The cached listing never decides a deletion: list afresh and decide again.
    if !observation.fresh && decision.deletes() {
        observation = observe::observe_with(deployment, ctx, state, Look::Afresh).await?;
        decision = decide(deployment, &ctx.config, &observation, Instant::now())?;
    }
    // What the pass saw first is counted once it decided (the report carries it to the metrics).
    drift::count_spec_drift(deployment, state, &observation.remembered);
    // Act.
    act(deployment, ctx, state, &observation, decision).await
}

/// Plan without acting (the `plan` and `status` commands). The preflight checks run too (read-only), so wrong
/// credentials or trusted access being off show here rather than as a misleading "create everything" plan.
pub async fn dry_run(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
) -> Result<(Plan, Report), Error> {
    dry_run_verdict(deployment, ctx, state)
        .await
        .map(|(plan, report, _)| (plan, report))
}

/// [`dry_run`], with the state a pass would end in without acting (`Next::settled`: Converged, CoverageGap,
/// TemplateUnapproved), so a read-only view gives the controller's own verdict; `None` when a pass would act.
pub async fn dry_run_verdict(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
) -> Result<(Plan, Report, Option<State>), Error> {
    crate::controller::preflight::check_read_only(deployment, ctx).await?;
    let observation = observe(deployment, ctx, state).await?;
    let Decision { plan, report, next } =
        decide(deployment, &ctx.config, &observation, Instant::now())?;
    let verdict = next.settled().ok().map(|(state, _)| state);
    Ok((plan, report, verdict))
}

/// The third stage: carry out the decision. Converged records the settings as the baseline for spec drift;
/// every other move first adopts an operation already holding the stack set's slot (ours from before a
/// restart, or anyone's), then submits at most one step.
async fn act(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    observation: &Observation,
    decision: Decision,
) -> Result<Outcome, Error> {
    let spec = &deployment.spec;
    let observed = &observation.observed;
    let Decision { plan, report, next } = decision;
    // Kept only by a converged pass (before anything is sent) that saw no operation running (its end is not in
    // the instances yet; an end whose event is lost must not wait for the relist): the next pass may trust the
    // event queue from it.
    let running = observation
        .operations
        .iter()
        .any(|op| op.status.is_active());
    state.set_quiet(match (&next, &observation.events) {
        (Next::Converged { .. }, Some(quiet)) if !running => Some(quiet.clone()),
        _ => None,
    });
    if matches!(next, Next::Converged { .. } | Next::DetectDrift)
        && let Some(settings) = &observation.remembered.settings
    {
        state.set_baseline(settings.clone());
    }
    let next = match next.settled() {
        Ok((state, requeue_after)) => {
            return Ok(Outcome {
                state,
                requeue_after,
                report,
            });
        }
        Err(next) => next,
    };
    // The page observe read is the whole list when it is not full; otherwise read the window.
    let recent = if observed.stack_set.is_none() {
        Vec::new()
    } else if observation.operations.len() < instances::OPERATIONS_PAGE {
        observation.operations.clone()
    } else {
        ctx.cloud
            .list_operations(&spec.stack_set_name, spec.call_as, OPERATION_LOOKBACK)
            .await?
    };
    if let Some(outcome) = operation::adopt_running(ctx, state, &recent, &report) {
        return Ok(outcome);
    }
    let outcome = |state, requeue_after| Outcome {
        state,
        requeue_after,
        report: report.clone(),
    };
    match next {
        Next::Converged { .. }
        | Next::CoverageGap { .. }
        | Next::TemplateUnapproved { .. }
        | Next::RollingOut { .. } => {
            unreachable!("settled above")
        }
        Next::DetectDrift => {
            let last = observation.remembered.last_drift_check;
            drift::start_detection(deployment, ctx, state, observed, last, &recent, report).await
        }
        Next::Settling => Ok(outcome(State::Settling, ctx.config.poll_min)),
        Next::Suspended => Ok(outcome(
            State::Suspended {
                pending: plan.steps.len(),
            },
            ctx.config.resync_interval,
        )),
        Next::DeletionPending { wait } => {
            let step = plan.first().expect("a deletion is pending");
            info!(action = step.action.name(), summary = %step.summary, in_seconds = wait.as_secs(), "deletion waits for deletion_delay");
            let held = plan
                .steps
                .iter()
                .filter(|s| matches!(s.action, Action::CreateStackInstances { .. }))
                .count();
            let summary = if held > 0 {
                format!(
                    "{}; then {held} creation(s) that depend on it (the same accounts' instances in another Region: \
                     IAM names are global per account)",
                    step.summary
                )
            } else {
                step.summary.clone()
            };
            Ok(outcome(
                State::DeletionPending {
                    action: step.action.name(),
                    summary,
                    runs_at: rfc3339(observation.remembered.wall_now + wait),
                },
                wait.max(ctx.config.poll_min.min(Duration::from_millis(50))),
            ))
        }
        Next::Submit(i) => {
            let step = &plan.steps[i];
            if let ownership::Ownership::Adopting { earlier_release } = &observation.ownership {
                info!(
                    earlier_release,
                    first_step = step.action.name(),
                    "adopting the stack set: its tags are added by the next update"
                );
            }
            submit(deployment, ctx, state, step, &recent, observed, report).await
        }
    }
}

/// RFC 3339 in UTC, second precision.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn waiting(
    ctx: &Context,
    op: &Operation,
    since: Instant,
    progress: Option<Progress>,
    report: Report,
) -> Outcome {
    Outcome {
        state: State::Waiting {
            operation_id: op.id.clone(),
            action: op.action.as_str().to_string(),
            progress,
        },
        requeue_after: poll_delay(&ctx.config, since.elapsed()),
        report,
    }
}

/// Poll quickly at first, then back off: a quarter of the time already waited, within [poll_min, poll_max].
pub fn poll_delay(config: &Config, waited: Duration) -> Duration {
    (waited / 4).clamp(config.poll_min, config.poll_max)
}

async fn submit(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    step: &plan::Step,
    recent: &[Operation],
    observed: &Observed,
    report: Report,
) -> Result<Outcome, Error> {
    let spec = &deployment.spec;
    let base = match step.purpose {
        Purpose::Converge => operation::operation_id_base(
            &spec.stack_set_name,
            &step.action,
            &spec.operation_preferences,
        ),
        // A repair re-submits the same targets as the original creation: its id also covers the gaps it is for,
        // so it is a new change, not a resend of the first one.
        Purpose::RepairCoverage | Purpose::RemediateDrift | Purpose::RepairInoperable => {
            let material =
                serde_json::json!({ "step": step, "preferences": &spec.operation_preferences });
            let short = match step.purpose {
                Purpose::RepairCoverage => "repair",
                Purpose::RepairInoperable => "repair-inop",
                _ => "remediate",
            };
            operation::id_base(short, &format!("{}{material}", spec.stack_set_name))
        }
    };
    // A lost answer to a stack set call may hide an operation: the next pass asks for its id. CreateStackSet's
    // name is its own proof, and a plain stack's status shows what happened to it.
    let may_have_happened =
        !matches!(step.action, Action::CreateStackSet { .. }) && !step.action.is_stack();
    let submission = operation::Submission {
        base: &base,
        recent,
        may_have_happened,
    };
    let sent = operation::submit(
        deployment,
        ctx,
        state,
        submission,
        &report,
        |id| async move {
            info!(action = step.action.name(), operation = %id, summary = %step.summary, "submitting");
            operation::send(deployment, ctx, &step.action, &id).await
        },
    )
    .await?;
    match sent {
        operation::Sent::NothingToDo => {
            // The plan saw a difference CloudFormation does not act on: say so, and look again at the resync
            // interval rather than sending it every pass.
            tracing::warn!(action = step.action.name(), summary = %step.summary,
                "CloudFormation found nothing to update; looking again after the resync interval");
            Ok(Outcome {
                state: State::Converged,
                requeue_after: ctx.config.resync_interval,
                report,
            })
        }
        operation::Sent::Decided(outcome) => Ok(*outcome),
        operation::Sent::Accepted(id) => {
            match step.purpose {
                Purpose::RepairCoverage => {
                    state.repaired(&observed.overdue_gaps);
                    state.recreated(&observed.recreate);
                }
                Purpose::RepairInoperable => {
                    state.recreate(inoperable_slots(&step.action, observed));
                }
                Purpose::RemediateDrift => drift::record_remediation(state, observed),
                Purpose::Converge => {}
            }
            if step.action.is_stack() {
                // No operation to find by id later: the same step sent again (a creation after a failed one was
                // deleted) takes the next ClientRequestToken; and the template is read again once it is done.
                state.finish(&id);
                state.forget_stack_template();
            }
            if matches!(step.action, Action::UpdateStackSet { .. }) {
                // stacksetd's own change: what the stack set looks like next is not drift.
                state.clear_baseline();
            }
            if matches!(
                step.action,
                Action::CreateStackInstances { .. } | Action::DeleteStackInstances { .. }
            ) {
                // The auto-deployment targets may have changed: the next observation checks them again.
                state.forget_auto_targets();
            }
            let operation_id = step.action.is_operation().then(|| id.clone());
            if let Some(id) = &operation_id {
                state.adopt(id);
            }
            let requeue_after = if operation_id.is_some() {
                ctx.config.poll_min
            } else {
                Duration::ZERO
            };
            Ok(Outcome {
                state: State::Acted {
                    action: step.action.name(),
                    operation_id,
                    summary: step.summary.clone(),
                },
                requeue_after,
                report,
            })
        }
    }
}

/// The INOPERABLE instances a repair step removes, as (account, Region).
fn inoperable_slots(
    action: &Action,
    observed: &Observed,
) -> std::collections::BTreeSet<(String, String)> {
    let Action::DeleteStackInstances {
        targets, regions, ..
    } = action
    else {
        return Default::default();
    };
    observed
        .instances
        .iter()
        .filter(|i| i.status == crate::cloud::InstanceStatus::Inoperable)
        .filter(|i| targets.accounts.contains(&i.account) && regions.contains(&i.region))
        .map(|i| (i.account.clone(), i.region.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
