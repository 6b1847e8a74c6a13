//! The controller: one reconcile pass of one deployment, in the style of kube-runtime. `reconcile` observes AWS,
//! plans, and takes at most one step; it returns when to look again (requeue as a return value). It never blocks
//! on an operation: it remembers the operation id and the next pass asks DescribeStackSetOperation about it.
//!
//! Safety rules (ARCHITECTURE.md, "Safety rules"): one operation per stack set, adopted rather than duplicated; OperationIds derived from
//! what is applied, so a crash or timeout never submits the same change twice; a converged pass costs only
//! DescribeStackSet and ListStackInstances pages (the organization is re-listed on its own cadence).

mod drift;
mod memory;
mod operation;
pub mod ownership;
pub mod preflight;
mod report;
mod retry;
mod templates;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cloud::org::{self, OrgSnapshot};
use crate::cloud::{Cloud, Operation, OperationStatus};
use crate::desired::Deployment;
use crate::error::{AwsErrorKind, Error};
use crate::plan::{self, Action, Desired, Observed, Plan, Purpose};
use crate::template::{self, Fetcher, TemplateSource};

pub use drift::{drift_due, settings_fingerprint};
pub use memory::Memory;
pub use operation::{next_sequence, operation_id_base};
pub use report::{
    DriftReport, InstanceProblem, PendingDeletion, Progress, Report, SpecDrift, TemplateReport,
};
pub use retry::{
    CONVERGE_TRANSIENT_RETRIES, converge, converge_until, error_backoff, error_policy, is_transient,
};
pub use templates::TemplateView;

/// How many of a stack set's operations a pass reads (every page up to this many) to find a running one to adopt
/// and the sequence numbers already used. ListStackSetOperations is eventually consistent and documents no order,
/// so nothing is inferred from position: a bounded window, read whole.
pub const OPERATION_LOOKBACK: usize = 500;

/// The `deletion_delay` setting's default.
pub const DEFAULT_DELETION_DELAY: Duration = Duration::from_secs(60);

/// Tunables of the controller; defaults suit AWS, tests and the demo shorten them.
#[derive(Debug, Clone)]
pub struct Config {
    pub catalog_base_url: String,
    /// Converged deployments are looked at again after this long.
    pub resync_interval: Duration,
    /// The organization tree is re-listed at most this often.
    pub org_scan_interval: Duration,
    /// First poll of a running operation; later polls back off toward `poll_max`.
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// Error backoff: base * 2^failures, capped, with jitter.
    pub error_backoff_base: Duration,
    pub error_backoff_max: Duration,
    /// List instances while waiting, to report progress (costs ListStackInstances pages per poll).
    pub track_progress: bool,
    /// The daemon asks each template URL for a new version this often (a conditional GET), independent of
    /// `resync_interval`.
    pub template_poll_interval: Duration,
    /// A template fetch gives up after this long.
    pub template_fetch_timeout: Duration,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            catalog_base_url: template::DEFAULT_CATALOG_BASE_URL.to_string(),
            resync_interval: Duration::from_secs(300),
            org_scan_interval: Duration::from_secs(600),
            poll_min: Duration::from_secs(2),
            poll_max: Duration::from_secs(30),
            error_backoff_base: Duration::from_secs(2),
            error_backoff_max: Duration::from_secs(300),
            track_progress: false,
            template_poll_interval: Duration::from_secs(300),
            template_fetch_timeout: template::FETCH_TIMEOUT,
            coverage_grace: Duration::from_secs(15 * 60),
            activate_trusted_access: false,
            deletion_delay: DEFAULT_DELETION_DELAY,
        }
    }
}

/// Shared by every pass: the cloud, the template fetcher, and what the controller remembers between passes
/// (only optimisations: a restart loses nothing that AWS does not also know).
pub struct Context {
    pub cloud: Arc<dyn Cloud>,
    /// The last template version fetched per URL: passes plan with it; the daemon's poller refreshes it.
    pub templates: TemplateSource,
    pub config: Config,
    memory: Memory,
    org: tokio::sync::Mutex<Option<(Instant, Arc<OrgSnapshot>)>>,
    /// Update decisions by their inputs: judging a template is pure, so a pass asks again only when something
    /// it depends on changed.
    pub assessments: template::Assessments,
    /// IAM Access Analyzer's reasons per (applied, candidate, parameters): its checks are charged, so each
    /// version is asked about once.
    analyzer_verdicts: std::sync::Mutex<HashMap<String, Vec<String>>>,
    /// The last template decision logged per deployment (candidate digest, decision): logged when it changes,
    /// not every pass.
    template_log: std::sync::Mutex<HashMap<String, (String, &'static str)>>,
    /// When the context was made, on tokio's clock and the wall clock: `wall_now` moves with tokio's clock, so
    /// wall-clock decisions (is a drift check older than the interval?) follow simulated time in tests.
    epoch: (Instant, std::time::SystemTime),
    preflight: crate::controller::preflight::PreflightCache,
}

impl Context {
    pub fn new(cloud: Arc<dyn Cloud>, config: Config) -> Context {
        Context {
            cloud,
            templates: TemplateSource::new(Fetcher::with_timeout(config.template_fetch_timeout)),
            config,
            memory: Memory::default(),
            org: Default::default(),
            assessments: Default::default(),
            analyzer_verdicts: Default::default(),
            template_log: Default::default(),
            epoch: (Instant::now(), std::time::SystemTime::now()),
            preflight: Default::default(),
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
        if let Some((at, snapshot)) = cached.as_ref()
            && at.elapsed() < self.config.org_scan_interval
        {
            return Ok(snapshot.clone());
        }
        let snapshot = Arc::new(org::scan(self.cloud.as_ref()).await?);
        *cached = Some((Instant::now(), snapshot.clone()));
        Ok(snapshot)
    }

    /// Forget the cached organization tree (e.g. after an edit that targets a new OU).
    pub async fn invalidate_organization(&self) {
        *self.org.lock().await = None;
    }

    pub fn memory(&self) -> &Memory {
        &self.memory
    }
}

/// Where a deployment stands after a pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state")]
pub enum State {
    /// The stack set and every instance match the desired state.
    Converged,
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
        action: &'static str,
        operation_id: Option<String>,
        summary: String,
    },
    /// `suspend: true`: changes are pending but stacksetd only reports them.
    Suspended { pending: usize },
    /// Only deletions are left, and they wait until the desired state asking for them has been unchanged for
    /// `deletion_delay`.
    DeletionPending {
        action: &'static str,
        summary: String,
        /// When it will be submitted (RFC 3339, UTC), if the desired state stays as it is.
        runs_at: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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
}

/// Observe, plan, and take at most one step.
#[tracing::instrument(skip_all, fields(deployment = %deployment.name()))]
pub async fn reconcile(deployment: &Deployment, ctx: &Context) -> Result<Outcome, Error> {
    let name = deployment.name();
    let spec = &deployment.spec;
    let stack_set = spec.stack_set_name.as_str();

    // 0. A submission whose answer was lost: DescribeStackSetOperation (strongly consistent) says whether it
    //    happened, before anything is planned (and perhaps sent) again.
    if let Some(id) = ctx.memory.take_unconfirmed(name) {
        match ctx
            .cloud
            .describe_operation(stack_set, &id, spec.call_as)
            .await
        {
            Ok(_) => {
                info!(operation = %id, "the lost submission did happen: adopting it");
                ctx.memory.adopt(name, &id);
            }
            Err(e) if e.is_aws(AwsErrorKind::NotFound) => {
                info!(operation = %id, "the lost submission never reached AWS");
            }
            Err(e) => {
                ctx.memory.sent_unconfirmed(name, &id);
                return Err(e);
            }
        }
    }

    // 1. An operation we are waiting for: one strongly consistent call.
    if let Some(inflight) = ctx.memory.inflight(name) {
        let operation = ctx
            .cloud
            .describe_operation(stack_set, &inflight.id, spec.call_as)
            .await?;
        if operation.status.is_active() {
            let progress = if ctx.config.track_progress {
                Some(Progress::of(
                    &ctx.cloud
                        .list_stack_instances(stack_set, spec.call_as)
                        .await?,
                ))
            } else {
                None
            };
            return Ok(waiting(
                ctx,
                &operation,
                inflight.since,
                progress,
                Report::default(),
            ));
        }
        ctx.memory.finish(name, &inflight.id);
        ctx.memory
            .record_ended(name, operation.action.as_str(), operation.status.as_str());
        info!(operation = %operation.id, status = operation.status.as_str(), "operation finished");
        check_operation(ctx, deployment, &operation).await?;
    }

    // 2. Observe.
    let (plan, report, observed) = observe_and_plan(deployment, ctx).await?;
    let settled = observed.instances.iter().all(|i| !i.in_progress());
    if plan.is_empty() && settled {
        if let Some(stack_set) = &observed.stack_set {
            ctx.memory
                .set_baseline(name, drift::settings_fingerprint(stack_set));
        }
        if let Some(outcome) = drift::detect_if_due(deployment, ctx, &observed, &report).await? {
            return Ok(outcome);
        }
        let next_drift_check = drift::due_in(deployment, ctx, &observed);
        return Ok(Outcome {
            state: State::Converged,
            requeue_after: next_drift_check.map_or(ctx.config.resync_interval, |d| {
                d.min(ctx.config.resync_interval)
            }),
            report,
        });
    }

    // 3. Adopt an operation already holding the slot (ours from before a restart, or anyone's).
    let recent = if observed.stack_set.is_some() {
        ctx.cloud
            .list_operations(stack_set, spec.call_as, OPERATION_LOOKBACK)
            .await?
    } else {
        Vec::new()
    };
    if let Some(outcome) = operation::adopt_running(ctx, name, &recent, &report) {
        return Ok(outcome);
    }
    if !settled {
        return Ok(Outcome {
            state: State::Settling,
            requeue_after: ctx.config.poll_min,
            report,
        });
    }
    if spec.suspend {
        return Ok(Outcome {
            state: State::Suspended {
                pending: plan.steps.len(),
            },
            requeue_after: ctx.config.resync_interval,
            report,
        });
    }

    // 4. Act: the first step only; the next pass observes its effect. Deletions wait for `deletion_delay` of an
    //    unchanged desired state; creations and updates do not wait for them.
    let due = deletion_due(deployment, ctx);
    let now = Instant::now();
    let Some(step) = plan
        .steps
        .iter()
        .find(|s| !s.action.is_deletion() || now >= due)
    else {
        let step = plan.first().expect("the plan is not empty");
        let wait = due.saturating_duration_since(now);
        info!(action = step.action.name(), summary = %step.summary, in_seconds = wait.as_secs(), "deletion waits for deletion_delay");
        return Ok(Outcome {
            state: State::DeletionPending {
                action: step.action.name(),
                summary: step.summary.clone(),
                runs_at: rfc3339(ctx.wall_now() + wait),
            },
            requeue_after: wait.max(ctx.config.poll_min.min(Duration::from_millis(50))),
            report,
        });
    };
    submit(deployment, ctx, step, &recent, &observed, report).await
}

/// When this deployment's deletions may be submitted: `deletion_delay` after its desired state was first seen as
/// it is now.
fn deletion_due(deployment: &Deployment, ctx: &Context) -> Instant {
    ctx.memory
        .desired_since(deployment.name(), &deployment.generation())
        + ctx.config.deletion_delay
}

/// RFC 3339 in UTC, second precision.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// What a pass sees: the template version to plan with (and the decision about the version fetched), the stack
/// set and its instances, and the (cached) organization.
pub struct Observation {
    pub template: TemplateView,
    pub observed: Observed,
    pub org: Arc<OrgSnapshot>,
    /// The targets against the instances, computed once a pass (the repairs and the report both read it).
    pub coverage: crate::coverage::Coverage,
    /// Whose the stack set is (a pass only gets here when stacksetd may manage it).
    pub ownership: ownership::Ownership,
}

/// Read the stack set and its instances, the (cached) organization, and the template version held for the
/// deployment's URL (fetched only the first time), then decide whether that version may be applied.
pub async fn observe(deployment: &Deployment, ctx: &Context) -> Result<Observation, Error> {
    let spec = &deployment.spec;
    let url = ctx.template_url(deployment)?;
    let revoking = spec.ensure == crate::desired::Ensure::Absent;
    // Revocation needs nothing from the vendor: its template is not even fetched.
    let candidate = if revoking {
        None
    } else {
        Some(ctx.templates.latest(&url, deployment.name()).await?)
    };
    let mut org = ctx.organization().await?;
    if spec.ensure == crate::desired::Ensure::Present
        && crate::controller::preflight::check_targets(deployment, &org).is_err()
    {
        // Perhaps an OU created since the last scan: look again before calling it missing.
        ctx.invalidate_organization().await;
        org = ctx.organization().await?;
        crate::controller::preflight::check_targets(deployment, &org)?;
    }
    let stack_set = ctx
        .cloud
        .describe_stack_set(&spec.stack_set_name, spec.call_as)
        .await?;
    let ownership = ownership::check(deployment, ctx, stack_set.as_ref()).await?;
    let instances = match &stack_set {
        Some(_) => {
            ctx.cloud
                .list_stack_instances(&spec.stack_set_name, spec.call_as)
                .await?
        }
        None => Vec::new(),
    };
    let inactive_accounts = org
        .accounts
        .values()
        .filter(|a| !a.account.is_active())
        .map(|a| a.account.id.clone())
        .collect();
    let mut observed = Observed {
        stack_set,
        instances,
        inactive_accounts,
        ..Observed::default()
    };
    let coverage = crate::coverage::coverage(deployment, &org, &observed.instances);
    observed.reachable_accounts = Some(coverage.targeted.clone());
    if observed.stack_set.is_some() && spec.ensure == crate::desired::Ensure::Present {
        observed.overdue_gaps = ctx.memory.overdue_gaps(
            deployment.name(),
            &coverage.missing,
            ctx.config.coverage_grace,
            spec.auto_deployment.enabled,
        );
        observed.drift_remediated = drift::remediated(deployment, ctx, &observed);
        observed.recreate = ctx
            .memory
            .to_recreate(deployment.name())
            .intersection(&coverage.missing)
            .cloned()
            .collect();
    }
    let template = match candidate {
        Some(candidate) => {
            templates::template_view(deployment, ctx, &url, candidate, &observed).await?
        }
        None => templates::revocation_view(deployment, &url, &observed),
    };
    Ok(Observation {
        template,
        observed,
        org,
        coverage,
        ownership,
    })
}

/// Observe and plan: what a pass and `plan` share.
async fn observe_and_plan(
    deployment: &Deployment,
    ctx: &Context,
) -> Result<(Plan, Report, Observed), Error> {
    let Observation {
        template,
        observed,
        org,
        coverage,
        ownership,
    } = observe(deployment, ctx).await?;
    // The plan converges the tags too: the operator's, the owner tag and the approval record.
    let mut tagged = deployment.clone();
    tagged.spec.tags = ownership::desired_tags(deployment, template.record.as_deref());
    let plan = plan::plan(
        Desired {
            deployment: &tagged,
            template: &template.effective,
            root_id: Some(&org.root_id),
        },
        &observed,
    )?;
    if let ownership::Ownership::Adopting { earlier_release } = ownership
        && let Some(step) = plan.first()
    {
        info!(
            earlier_release,
            first_step = step.action.name(),
            "adopting the stack set: its tags are added by the next update"
        );
    }
    let mut report = Report::new(
        deployment,
        &template.effective,
        &observed,
        &org,
        &coverage,
        &plan,
    );
    drift::spec_drift(deployment, ctx, &observed, &mut report);
    if let Some(change) = &template.unapproved_change
        && !report.spec_drift.iter().any(|d| d.field == "template")
    {
        report.spec_drift.push(SpecDrift {
            field: "template",
            applied: "the approved version".into(),
            found: change.clone(),
        });
    }
    let due = deletion_due(deployment, ctx);
    let wait = due.saturating_duration_since(Instant::now());
    report.pending_deletions = plan
        .steps
        .iter()
        .filter(|s| s.action.is_deletion())
        .map(|s| PendingDeletion {
            action: s.action.name(),
            summary: s.summary.clone(),
            runs_at: rfc3339(ctx.wall_now() + wait),
            waiting: !wait.is_zero(),
        })
        .collect();
    report.template_sha256 = Some(template.report.sha256.clone());
    report.template = Some(template.report);
    Ok((plan, report, observed))
}

/// Plan without acting (the `plan` and `status` commands). The preflight checks run too (read-only), so wrong
/// credentials or trusted access being off show here rather than as a misleading "create everything" plan.
pub async fn dry_run(deployment: &Deployment, ctx: &Context) -> Result<(Plan, Report), Error> {
    crate::controller::preflight::check_read_only(deployment, ctx).await?;
    let (plan, report, _) = observe_and_plan(deployment, ctx).await?;
    Ok((plan, report))
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

/// A finished operation that failed, or succeeded with failed instances, is an error carrying the per-account
/// reasons from ListStackSetOperationResults.
async fn check_operation(
    ctx: &Context,
    deployment: &Deployment,
    op: &Operation,
) -> Result<(), Error> {
    let failed_instances = op.failed_instances.unwrap_or(0);
    if op.status == OperationStatus::Succeeded && failed_instances == 0 {
        return Ok(());
    }
    let spec = &deployment.spec;
    let results = ctx
        .cloud
        .list_operation_results(&spec.stack_set_name, &op.id, spec.call_as)
        .await?;
    let failures: Vec<_> = results
        .into_iter()
        .filter(|r| r.status == "FAILED")
        .collect();
    warn!(operation = %op.id, status = op.status.as_str(), failed = failures.len(), "operation did not fully succeed");
    Err(Error::OperationFailed {
        operation_id: op.id.clone(),
        action: op.action.as_str().to_string(),
        status: op.status.as_str().to_string(),
        failures,
    })
}

async fn submit(
    deployment: &Deployment,
    ctx: &Context,
    step: &plan::Step,
    recent: &[Operation],
    observed: &Observed,
    report: Report,
) -> Result<Outcome, Error> {
    let name = deployment.name();
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
    let id = operation::next_id(ctx, name, &base, recent);
    crate::controller::preflight::ensure(deployment, ctx).await?;
    info!(action = step.action.name(), operation = %id, summary = %step.summary, "submitting");
    let answer = operation::send(deployment, ctx, &step.action, &id).await;
    let may_have_happened = !matches!(step.action, Action::CreateStackSet { .. });
    match operation::triage(deployment, ctx, &id, answer, may_have_happened, &report).await? {
        operation::Answer::Decided(outcome) => Ok(outcome),
        operation::Answer::Accepted => {
            match step.purpose {
                Purpose::RepairCoverage => {
                    ctx.memory.repaired(name, &observed.overdue_gaps);
                    ctx.memory.recreated(name, &observed.recreate);
                }
                Purpose::RepairInoperable => {
                    ctx.memory
                        .recreate(name, inoperable_slots(&step.action, observed));
                }
                Purpose::RemediateDrift => drift::record_remediation(deployment, ctx, observed),
                Purpose::Converge => {}
            }
            if matches!(step.action, Action::UpdateStackSet { .. }) {
                // stacksetd's own change: what the stack set looks like next is not drift.
                ctx.memory.clear_baseline(name);
            }
            let operation_id = step.action.is_operation().then(|| id.clone());
            if let Some(id) = &operation_id {
                ctx.memory.adopt(name, id);
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
