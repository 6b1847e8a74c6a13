//! The first stage of a pass: every read. What this deployment already sent (a submission whose answer was
//! lost, an operation still running), then the stack set, its instances, the organization, the template version
//! to plan with, and what the controller remembers between passes (coverage gaps, drift checks, the settings
//! baseline, when the desired state was first seen), all into one [`Observation`] that the pure `decide` reads.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;
use tracing::info;

use super::{
    Context, DeploymentState, Outcome, Progress, Report, TemplateView, drift, instances, ownership,
    templates,
};
use crate::cloud::org::OrgSnapshot;
use crate::cloud::{Operation, OperationStatus};
use crate::coverage::Coverage;
use crate::desired::{Deployment, Ensure};
use crate::error::{AwsErrorKind, Error};
use crate::plan::Observed;
use instances::Look;

/// What a pass sees: the template version to plan with (and the decision about the version fetched), the stack
/// set and its instances, the (cached) organization, and what the controller remembers.
pub struct Observation {
    pub template: TemplateView,
    pub observed: Observed,
    pub org: Arc<OrgSnapshot>,
    /// The targets against the instances, computed once a pass (the repairs and the report both read it).
    pub coverage: Coverage,
    /// Whose the stack set is (a pass only gets here when stacksetd may manage it).
    pub ownership: ownership::Ownership,
    pub remembered: Remembered,
    /// The instances were listed by this pass (not read from the cache).
    pub fresh: bool,
    /// The page of ListStackSetOperations the instance cache was checked against (empty without a stack set).
    pub operations: Vec<crate::cloud::Operation>,
    /// False when the page was skipped on the event queue's word (`instances::Look::Trusting`): such an
    /// observation only ever concludes "converged" (`controller::reconcile` looks again otherwise).
    pub operations_listed: bool,
    /// The event ledger's stamp read before the page, with the generation: what a converged pass keeps.
    pub events: Option<instances::Quiet>,
    /// `autoDeployment.dependsOn` as ARNs, sorted (`controller/dependencies.rs`).
    pub dependencies: Vec<String>,
    /// The last auto-deployment target check (`controller/auto_targets.rs`), when there is one to make.
    pub auto_targets: Option<super::auto_targets::Checked>,
    /// With `spec.rollout`: the canary resolved, its operation and its access check (`controller/rollout.rs`).
    pub rollout: Option<super::rollout::Facts>,
}

/// What the controller remembers between passes, as this pass reads it (the reads record what they see: a gap
/// first seen, a spec drift counted, a desired state first seen).
pub struct Remembered {
    /// When the desired state asking for this pass's deletions may have them submitted.
    pub deletion_due: Instant,
    /// The last drift check: the completed one, or when stacksetd last started one.
    pub last_drift_check: Option<SystemTime>,
    /// Settings changed outside stacksetd since it last converged: (field, applied, found).
    pub spec_drift: Vec<(&'static str, String, String)>,
    /// The stack set's settings as spec drift compares them (`drift::settings_fingerprint`); what a converged
    /// pass records as the new baseline. `None` before the stack set exists.
    pub settings: Option<std::collections::BTreeMap<&'static str, String>>,
    /// Of those, the fields this pass saw first (counted once).
    pub spec_drift_new: Vec<&'static str>,
    /// The wall clock of this pass (tokio's clock in tests).
    pub wall_now: SystemTime,
}

/// What this deployment sent before: a submission whose answer was lost is looked up first (it may have
/// happened), then an operation it is waiting for (one strongly consistent call). `Some` when the pass ends
/// here: the operation still runs.
pub(super) async fn follow_up(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
) -> Result<Option<Outcome>, Error> {
    let spec = &deployment.spec;
    let stack_set = spec.stack_set_name.as_str();
    if let Some(id) = state.take_unconfirmed() {
        match ctx
            .cloud
            .describe_operation(stack_set, &id, spec.call_as)
            .await
        {
            Ok(_) => {
                info!(operation = %id, "the lost submission did happen: adopting it");
                state.adopt(&id);
            }
            Err(e) if e.is_aws(AwsErrorKind::NotFound) => {
                info!(operation = %id, "the lost submission never reached AWS");
            }
            Err(e) => {
                state.sent_unconfirmed(&id);
                return Err(e);
            }
        }
    }
    let Some(inflight) = state.inflight() else {
        return Ok(None);
    };
    let operation = ctx
        .cloud
        .describe_operation(stack_set, &inflight.id, spec.call_as)
        .await?;
    if operation.status.is_active() {
        // Never an instance listing while waiting: StatusDetails on every poll; the operation's own results
        // (its account/Region pairs, not the stack set's) only for a person watching a terminal.
        let progress = if ctx.config.track_progress {
            Progress::of_results(
                &ctx.cloud
                    .list_operation_results(stack_set, &operation.id, spec.call_as)
                    .await?,
            )
        } else {
            Progress::of_operation(&operation)
        };
        return Ok(Some(super::waiting(
            ctx,
            &operation,
            inflight.since,
            Some(progress),
            Report::default(),
        )));
    }
    state.finish(&inflight.id);
    state.record_ended(operation.action.as_str(), operation.status.as_str());
    info!(operation = %operation.id, status = operation.status.as_str(), "operation finished");
    check_operation(ctx, deployment, &operation).await?;
    Ok(None)
}

/// A finished operation that failed, or succeeded with failed instances, is an error carrying the per-account
/// reasons from ListStackSetOperationResults.
pub(super) async fn check_operation(
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
    tracing::warn!(operation = %op.id, status = op.status.as_str(), failed = failures.len(), "operation did not fully succeed");
    Err(Error::OperationFailed {
        operation_id: op.id.clone(),
        action: op.action.as_str().to_string(),
        status: op.status.as_str().to_string(),
        failures,
    })
}

/// Read the stack set and its instances, the (cached) organization, the template version held for the
/// deployment's URL (fetched only the first time) with the decision whether it may be applied, and what the
/// controller remembers.
pub async fn observe(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
) -> Result<Observation, Error> {
    observe_with(deployment, ctx, state, Look::Trusting).await
}

/// [`observe`], reusing no more of the instances than `look` allows.
pub(super) async fn observe_with(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    look: Look,
) -> Result<Observation, Error> {
    let spec = &deployment.spec;
    let name = deployment.name();
    let url = ctx.template_url(deployment)?;
    // Revocation needs nothing from the vendor: its template is not even fetched.
    let candidate = if spec.ensure == Ensure::Absent {
        None
    } else {
        Some(ctx.templates.latest(&url, name).await?)
    };
    let mut org = ctx.organization().await?;
    if spec.ensure == Ensure::Present && super::preflight::check_targets(deployment, &org).is_err()
    {
        // Perhaps an OU created since the last scan: look again before calling it missing.
        ctx.invalidate_organization();
        org = ctx.organization().await?;
        super::preflight::check_targets(deployment, &org)?;
    }
    let stack_set = ctx
        .cloud
        .describe_stack_set(&spec.stack_set_name, spec.call_as)
        .await?;
    let ownership = ownership::check(deployment, ctx, stack_set.as_ref()).await?;
    let listing = match &stack_set {
        Some(stack_set) => instances::read(deployment, ctx, state, stack_set, look).await?,
        None => {
            state.drop_instances();
            instances::Listing {
                instances: Default::default(),
                fresh: true,
                operations: Vec::new(),
                operations_listed: true,
                events: None,
            }
        }
    };
    let instances::Listing {
        instances,
        fresh,
        operations,
        operations_listed,
        events,
    } = listing;
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
    observed.management_stack = super::management_stack::observe(deployment, ctx, state).await?;
    let coverage = crate::coverage::coverage(deployment, &org, &observed.instances);
    observed.reachable_accounts = Some(coverage.targeted.clone());
    observed.kept_accounts = Some(
        coverage
            .targeted
            .union(&coverage.inactive)
            .cloned()
            .collect(),
    );
    observed.accounts_under = Some(accounts_under(deployment, &org, &observed));
    if observed.stack_set.is_some() && spec.ensure == Ensure::Present {
        observed.newly_targeted = state.newly_targeted(
            &deployment.generation(),
            &coverage.targeted,
            &coverage.missing,
        );
        observed.overdue_gaps = state.overdue_gaps(
            &coverage.missing,
            ctx.config.coverage_grace,
            spec.auto_deployment.enabled,
        );
        observed.drift_remediated = drift::remediated(state, &observed);
        observed.recreate = state
            .to_recreate()
            .intersection(&coverage.missing)
            .cloned()
            .collect();
    }
    let auto_targets = super::auto_targets::check(
        deployment,
        ctx,
        state,
        observed.stack_set.as_ref(),
        fresh,
        &org,
    )
    .await;
    if let Some(checked) = &auto_targets {
        observed.auto_targets_missing = checked.confirmed.clone();
    }
    let template = match candidate {
        Some(candidate) => {
            templates::template_view(deployment, ctx, state, &url, candidate, &observed).await?
        }
        None => templates::revocation_view(deployment, &url, &observed),
    };
    let dependencies = if spec.ensure == Ensure::Present {
        super::dependencies::resolve(deployment, ctx, state).await?
    } else {
        Vec::new()
    };
    let desired_since = state.desired_since(&deployment.generation());
    let rollout =
        super::rollout::observe(deployment, ctx, &observed, &org, &coverage, &operations).await;
    let settings = observed.stack_set.as_ref().map(drift::settings_fingerprint);
    let (spec_drift, spec_drift_new) = drift::spec_drift(state, settings.as_ref());
    let remembered = Remembered {
        deletion_due: desired_since + ctx.config.deletion_delay,
        last_drift_check: drift::last_check(state, &observed),
        spec_drift,
        settings,
        spec_drift_new,
        wall_now: ctx.wall_now(),
    };
    Ok(Observation {
        template,
        observed,
        org,
        coverage,
        ownership,
        remembered,
        fresh,
        operations,
        operations_listed,
        events,
        dependencies,
        auto_targets,
        rollout,
    })
}

/// The accounts below each OU that an instance was created through and that the desired targets no longer name
/// (the root included; child OUs included): what a whole-OU deletion of it would remove. Only those OUs: a pass
/// that drops no OU (every converged pass) walks nothing.
fn accounts_under(
    deployment: &crate::desired::Deployment,
    org: &crate::cloud::org::OrgSnapshot,
    observed: &crate::plan::Observed,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let desired: std::collections::BTreeSet<String> =
        crate::coverage::target_units(deployment, org)
            .into_iter()
            .collect();
    let dropped: std::collections::BTreeSet<String> = observed
        .instances
        .iter()
        .filter_map(|i| i.organizational_unit_id.clone())
        .filter(|unit| !desired.contains(unit))
        .collect();
    dropped
        .into_iter()
        .map(|unit| {
            let accounts = org
                .accounts_under(std::slice::from_ref(&unit))
                .into_iter()
                .map(|a| a.account.id.clone())
                .collect();
            (unit, accounts)
        })
        .collect()
}
