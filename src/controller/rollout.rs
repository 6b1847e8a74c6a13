//! Staged rollout (`spec.rollout`): a change of template or parameters reaches the canary accounts first, is
//! verified (every canary instance CURRENT, the access check passed), bakes, and only then reaches the rest.
//!
//! The state lives in AWS, so a restart resumes from what AWS shows:
//! - the canary call is an UpdateStackSet scoped to the canary accounts (DeploymentTargets, every desired Region)
//!   that also tags the stack set `stacksetd.dev/rollout: canary`; AWS marks every other instance OUTDATED and
//!   they keep their running stacks;
//! - its OperationId says `canary` (`stacksetd-canary-...`), and its EndTimestamp starts the bake;
//! - the instances' status says whether the canary holds (CURRENT) or failed (FAILED, OUTDATED, INOPERABLE);
//! - `stacksetd promote NAME` tags the stack set `stacksetd.dev/promote: <version>` with a canary-scoped update
//!   (`promote --retry` re-applies the canary the same way);
//! - the promotion is the plan's own UpdateStackSet for every instance, which also removes both tags.
//!
//! [`stage`] is pure: the plan, the observation and the facts in, the plan to run now and the rollout's status
//! out. [`observe`] gathers the facts (the organization, the operations listed, the canary's access check).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{Context, rfc3339};
use crate::cloud::org::OrgSnapshot;
use crate::cloud::{
    AccountFilterType, InstanceScope, InstanceStatus, Operation, OperationStatus, Targets,
};
use crate::coverage::Coverage;
use crate::desired::{Deployment, Promote, Rollout, Spec};
use crate::error::Error;
use crate::plan::{Action, Observed, Plan, Step, TEMPLATE_TAG};

/// The stack set's tag while a version has reached only the canary.
pub const ROLLOUT_TAG: &str = "stacksetd.dev/rollout";
/// [`ROLLOUT_TAG`]'s value.
pub const ROLLOUT_CANARY: &str = "canary";
/// The stack set's tag naming the version an operator promoted (`stacksetd promote NAME`).
pub const PROMOTE_TAG: &str = "stacksetd.dev/promote";
/// The OperationId word of a canary update (`stacksetd-canary-<digest>-<n>`).
pub const CANARY_OPERATION: &str = "canary";
/// The OperationId word of `stacksetd promote`'s tagging update, which does not restart the bake.
pub const PROMOTE_OPERATION: &str = "promote";
/// The tags that belong to the rollout, never to the desired state (spec drift ignores them).
pub const TAGS: [&str; 2] = [ROLLOUT_TAG, PROMOTE_TAG];

/// What [`observe`] gathers for [`stage`]: reads only.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The canary accounts the deployment targets: the named accounts and the targeted active accounts under the
    /// named OUs (child OUs included).
    pub canary: BTreeSet<String>,
    /// Each canary account's parent (an OU or the root), for the scoped call's DeploymentTargets.
    pub parents: BTreeMap<String, String>,
    /// Named canary accounts or OUs the deployment does not target, with why.
    pub untargeted: Vec<String>,
    /// The newest canary operation listed (`stacksetd-canary-...`).
    pub last_canary: Option<Operation>,
    /// An operation (anyone's: the canary, `stacksetd promote`'s, another tool's) is active on the stack set: the
    /// instances' status is not final, so nothing is judged from it.
    pub busy: bool,
    /// The canary accounts whose access check failed, (account, reason); `None` when it did not run (no
    /// `spec.accessCheck`, or the canary is not all CURRENT yet).
    pub access_failures: Option<Vec<(String, String)>>,
    /// `spec.accessCheck` is set: the canary is verified only once the check answered.
    pub access_configured: bool,
    pub wall_now: SystemTime,
}

impl Facts {
    /// Nothing known yet, at `wall_now`.
    pub fn at(wall_now: SystemTime) -> Facts {
        Facts {
            canary: BTreeSet::new(),
            parents: BTreeMap::new(),
            untargeted: Vec::new(),
            last_canary: None,
            busy: false,
            access_failures: None,
            access_configured: false,
            wall_now,
        }
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The canary update is to be sent, or runs.
    Canary,
    /// The canary is CURRENT; the access check has not answered yet.
    Verifying,
    /// Verified; the rest waits for the bake to end.
    Baking,
    /// Baked; the rest waits for `stacksetd promote NAME` (`promote: Manual`).
    AwaitingPromotion,
    /// The rest is being updated.
    Promoting,
    /// The canary failed: the rest stays on the previous version until the version changes or an operator
    /// retries (`stacksetd promote NAME --retry`).
    Halted,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Canary,
        Phase::Verifying,
        Phase::Baking,
        Phase::AwaitingPromotion,
        Phase::Promoting,
        Phase::Halted,
    ];

    /// The metric label and the word /status and the page show.
    pub const fn label(self) -> &'static str {
        match self {
            Phase::Canary => "canary",
            Phase::Verifying => "verifying",
            Phase::Baking => "baking",
            Phase::AwaitingPromotion => "awaiting_promotion",
            Phase::Promoting => "promoting",
            Phase::Halted => "halted",
        }
    }
}

/// A rollout's status: the report's `rollout`, /status, the page, `plan` and `stacksetd rollout status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The version rolling out: the first 12 hex digits of its sha256.
    pub version: String,
    pub phase: Phase,
    /// The canary: accounts x Regions.
    pub canary_accounts: Vec<String>,
    pub regions: usize,
    /// The instances the rest of the rollout reaches (the stack set's other instances in desired Regions).
    pub rest: usize,
    /// `spec.rollout.bake`, as written.
    pub bake: String,
    /// When the bake ends (RFC 3339), once the canary is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_ends_at: Option<String>,
    /// Where a halted rollout failed (account/Region, or the operation id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub halted_at: Vec<String>,
    /// One sentence: what happens now and what resumes it.
    pub message: String,
    /// How soon to look again (not serialized).
    #[serde(skip)]
    pub requeue_after: Option<Duration>,
}

impl Status {
    /// The phases as `plan` prints them: `canary: 2 accounts x 1 Region`, `then: 1,180 instances after bake 30m`.
    pub fn phase_lines(&self) -> [String; 2] {
        let then = match self.phase {
            Phase::Halted => "held: halted".to_string(),
            _ => format!("after bake {}", self.bake),
        };
        [
            format!(
                "canary: {} account(s) x {} Region(s) ({})",
                self.canary_accounts.len(),
                self.regions,
                self.phase.label()
            ),
            format!("then: {} instance(s) {then}", self.rest),
        ]
    }
}

/// Rewrite `plan` for a staged rollout; returns the rollout's status (`None` without `spec.rollout`, or when no
/// version is rolling out). Pure.
///
/// - A step that changes the template or parameters becomes the canary update; what the plan held after it waits.
/// - While the stack set carries [`ROLLOUT_TAG`], only deletions and the canary's own missing instances run until
///   the canary holds, the access check passed, the bake ended and (with `promote: Manual`) an operator promoted
///   the version; then the plan runs as it is (its UpdateStackSet for every instance removes the tag).
pub fn stage(
    deployment: &Deployment,
    observed: &Observed,
    facts: &Facts,
    version: &str,
    plan: &mut Plan,
) -> Result<Option<Status>, Error> {
    let spec = &deployment.spec;
    let Some(rollout) = &spec.rollout else {
        return Ok(None);
    };
    if spec.ensure != crate::desired::Ensure::Present || spec.suspend {
        return Ok(None);
    }
    if !facts.untargeted.is_empty() {
        return Err(Error::Conflict(format!(
            "spec.rollout.canary: {}; a canary must be an account the deployment targets (fix the canary or the \
             targets)",
            facts.untargeted.join("; ")
        )));
    }
    if facts.canary.is_empty() {
        return Err(Error::Conflict(
            "spec.rollout.canary names no active account the deployment targets; name one that is"
                .into(),
        ));
    }
    let status = |phase, message: String| Status {
        version: version.chars().take(12).collect(),
        phase,
        canary_accounts: facts.canary.iter().cloned().collect(),
        regions: spec.regions.len(),
        rest: rest_count(spec, observed, facts),
        bake: humantime::format_duration(rollout.bake.0).to_string(),
        bake_ends_at: None,
        halted_at: Vec::new(),
        message,
        requeue_after: None,
    };
    let Some(stack_set) = &observed.stack_set else {
        // The first deployment: the stack set is created tagged, and its first instances are the canary's.
        for step in &mut plan.steps {
            if let Action::CreateStackSet { settings } = &mut step.action {
                settings
                    .tags
                    .insert(ROLLOUT_TAG.into(), ROLLOUT_CANARY.into());
            }
        }
        return Ok(Some(status(
            Phase::Canary,
            "the stack set is created, then the canary's instances; the rest after the bake".into(),
        )));
    };
    // A new version (or parameters): the canary update replaces the step, and what follows it waits.
    if let Some(at) = plan.steps.iter().position(|s| changes_stacks(s, observed)) {
        let mut step = plan.steps[at].clone();
        let Some(scope) = canary_scope(facts, spec, observed) else {
            plan.steps.truncate(at);
            let mut s = status(
                Phase::Halted,
                "no canary account has an instance yet, so the canary cannot be verified: the new version waits \
                 (create the canary's instances, or name canary accounts that have one)"
                    .into(),
            );
            s.halted_at = facts.canary.iter().cloned().collect();
            return Ok(Some(s));
        };
        if let Action::UpdateStackSet { settings, only, .. } = &mut step.action {
            settings
                .tags
                .insert(ROLLOUT_TAG.into(), ROLLOUT_CANARY.into());
            settings.tags.remove(PROMOTE_TAG);
            // AWS refuses DeploymentTargets alongside AutoDeployment; ManagedExecution changes go alone anyway.
            settings.auto_deployment = None;
            settings.managed_execution = None;
            *only = Some(scope);
        }
        step.summary = format!("canary: {}", step.summary);
        plan.steps.truncate(at);
        plan.steps.push(step);
        return Ok(Some(status(
            Phase::Canary,
            "the canary gets the new version first; the rest after it is verified and baked".into(),
        )));
    }
    if stack_set.settings.tags.get(ROLLOUT_TAG).map(String::as_str) != Some(ROLLOUT_CANARY) {
        return Ok(None);
    }
    // A version is rolling out: how far has it got?
    let version = stack_set
        .settings
        .tags
        .get(TEMPLATE_TAG)
        .cloned()
        .unwrap_or_else(|| version.to_string());
    let status = |phase, message| Status {
        version: version.chars().take(12).collect(),
        ..status(phase, message)
    };
    let (phase, mut report) = match verdict(spec, rollout, stack_set, observed, facts, &version) {
        Verdict::Halted { at, why } => {
            let mut s = status(
                Phase::Halted,
                format!(
                    "halted: {why}; the rest stays on the previous version until the version changes or \
                     `stacksetd promote {} --retry`",
                    deployment.name()
                ),
            );
            s.halted_at = at;
            (Phase::Halted, s)
        }
        Verdict::Canary => (
            Phase::Canary,
            status(Phase::Canary, "the canary is being updated".into()),
        ),
        Verdict::Verifying => (
            Phase::Verifying,
            status(
                Phase::Verifying,
                "the canary is CURRENT; its access check has not answered yet".into(),
            ),
        ),
        Verdict::Baking { until } => {
            let mut s = status(
                Phase::Baking,
                format!(
                    "the canary is verified; the rest follows when the bake ends ({})",
                    rfc3339(until)
                ),
            );
            s.bake_ends_at = Some(rfc3339(until));
            s.requeue_after = Some(until.duration_since(facts.wall_now).unwrap_or_default());
            (Phase::Baking, s)
        }
        Verdict::AwaitingPromotion => (
            Phase::AwaitingPromotion,
            status(
                Phase::AwaitingPromotion,
                format!(
                    "baked; promote: Manual waits for `stacksetd promote {}` (or pin the version's digest)",
                    deployment.name()
                ),
            ),
        ),
        Verdict::Promote => {
            return Ok(Some(status(
                Phase::Promoting,
                "verified and baked: the rest gets the new version".into(),
            )));
        }
    };
    if report.requeue_after.is_none() && phase != Phase::Canary {
        report.requeue_after = Some(Duration::from_secs(60));
    }
    hold_the_rest(plan, facts, spec, observed, phase);
    Ok(Some(report))
}

/// How a rollout in progress stands, from AWS's own record of it.
enum Verdict {
    Canary,
    Halted { at: Vec<String>, why: String },
    Verifying,
    Baking { until: SystemTime },
    AwaitingPromotion,
    Promote,
}

fn verdict(
    spec: &Spec,
    rollout: &Rollout,
    stack_set: &crate::cloud::ObservedStackSet,
    observed: &Observed,
    facts: &Facts,
    version: &str,
) -> Verdict {
    if let Some(op) = &facts.last_canary
        && matches!(
            op.status,
            OperationStatus::Failed | OperationStatus::Stopped
        )
    {
        return Verdict::Halted {
            at: vec![op.id.clone()],
            why: format!(
                "the canary operation {} {}{}",
                op.id,
                op.status.as_str(),
                op.status_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        };
    }
    let canary: Vec<_> = observed
        .instances
        .iter()
        .filter(|i| facts.canary.contains(&i.account))
        .collect();
    let failed: Vec<String> = canary
        .iter()
        .filter(|i| {
            i.status == InstanceStatus::Inoperable
                || (i.status == InstanceStatus::Outdated
                    && !i.in_progress()
                    && !i.skipped_suspended())
        })
        .map(|i| {
            format!(
                "{}/{} {} ({})",
                i.account,
                i.region,
                i.status.as_str(),
                i.status_reason.as_deref().unwrap_or("no reason given")
            )
        })
        .collect();
    // Nothing is judged while an operation runs: an instance a queued update marked OUTDATED has not failed.
    if facts.busy || canary.iter().any(|i| i.in_progress()) {
        return Verdict::Canary;
    }
    if !failed.is_empty() {
        return Verdict::Halted {
            why: format!(
                "{} canary instance(s) not CURRENT: {}",
                failed.len(),
                failed.join(", ")
            ),
            at: failed,
        };
    }
    // A canary account x Region without its instance is created first (`hold_the_rest`), then verified.
    let complete = facts.canary.iter().all(|a| {
        spec.regions
            .iter()
            .all(|r| canary.iter().any(|i| &i.account == a && &i.region == r))
    });
    if !complete {
        return Verdict::Canary;
    }
    match &facts.access_failures {
        Some(failures) if !failures.is_empty() => {
            return Verdict::Halted {
                at: failures.iter().map(|(a, _)| a.clone()).collect(),
                why: format!(
                    "the access check failed in {}",
                    failures
                        .iter()
                        .map(|(a, r)| format!("{a} ({r})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
        }
        None if facts.access_configured => return Verdict::Verifying,
        _ => {}
    }
    // The bake counts from the canary operation's end; a canary no longer listed counts as ending now, which
    // only makes the bake longer.
    let start = facts
        .last_canary
        .as_ref()
        .and_then(|op| op.ended)
        .unwrap_or(facts.wall_now);
    let until = start + rollout.bake.0;
    if facts.wall_now < until {
        return Verdict::Baking { until };
    }
    if rollout.promote == Promote::Manual
        && stack_set.settings.tags.get(PROMOTE_TAG).map(String::as_str) != Some(version)
        && !pinned(spec, version)
    {
        return Verdict::AwaitingPromotion;
    }
    Verdict::Promote
}

/// While the canary is not yet trusted, only deletions and the canary's own missing instances run: no update of
/// another instance (an UpdateStackSet, an OUTDATED retry, a drift remediation), no new instance elsewhere (it
/// would get the new version), no management account stack.
fn hold_the_rest(plan: &mut Plan, facts: &Facts, spec: &Spec, observed: &Observed, phase: Phase) {
    let missing: BTreeSet<String> = facts
        .canary
        .iter()
        .filter(|account| {
            spec.regions.iter().any(|region| {
                !observed
                    .instances
                    .iter()
                    .any(|i| &i.account == *account && &i.region == region)
            })
        })
        .cloned()
        .collect();
    let mut kept: Vec<Step> = plan
        .steps
        .iter()
        .filter(|s| s.action.is_deletion())
        .cloned()
        .collect();
    let creates_canary = phase == Phase::Canary
        && !missing.is_empty()
        && plan
            .steps
            .iter()
            .any(|s| matches!(s.action, Action::CreateStackInstances { .. }));
    if creates_canary {
        kept.push(Step {
            purpose: Default::default(),
            action: Action::CreateStackInstances {
                targets: scope_targets(&missing, facts),
                regions: spec.regions.clone(),
            },
            summary: format!(
                "canary: create instances for {} canary account(s)",
                missing.len()
            ),
            changes: Vec::new(),
        });
    }
    plan.steps = kept;
}

/// `spec.template.sha256` pins this version: with `promote: Manual`, as good as `stacksetd promote`. (A halted
/// version is retried only by `promote --retry`: a pin is in the desired state for good, and whether it was written
/// before or after the halt is not something AWS records.)
fn pinned(spec: &Spec, version: &str) -> bool {
    spec.template
        .sha256
        .as_deref()
        .is_some_and(|pin| pin.eq_ignore_ascii_case(version))
}

/// An UpdateStackSet of the canary alone that keeps the stack set's template and values: a retry of the version
/// on the canary, or with `promoted` the tag that promotes it. Auto-deployment and ManagedExecution are not sent
/// (AWS refuses DeploymentTargets alongside AutoDeployment).
fn canary_update(
    stack_set: &crate::cloud::ObservedStackSet,
    scope: InstanceScope,
    promoted: Option<&str>,
) -> Action {
    let mut settings = stack_set.settings.clone();
    settings.auto_deployment = None;
    settings.managed_execution = None;
    if let Some(version) = promoted {
        settings.tags.insert(PROMOTE_TAG.into(), version.into());
    }
    Action::UpdateStackSet {
        settings,
        keep_template: true,
        only: Some(scope),
    }
}

/// A step that changes what the stacks run: an UpdateStackSet of the template or parameters for every instance.
fn changes_stacks(step: &Step, observed: &Observed) -> bool {
    let Action::UpdateStackSet {
        settings,
        keep_template: false,
        only: None,
    } = &step.action
    else {
        return false;
    };
    let Some(stack_set) = &observed.stack_set else {
        return false;
    };
    settings.template_body != stack_set.settings.template_body
        || settings.parameters != stack_set.settings.parameters
}

/// The canary accounts that have an instance, as DeploymentTargets (their parents, INTERSECTION) in every desired
/// Region; `None` when none has one.
fn canary_scope(facts: &Facts, spec: &Spec, observed: &Observed) -> Option<InstanceScope> {
    let with_instance: BTreeSet<String> = facts
        .canary
        .iter()
        .filter(|a| observed.instances.iter().any(|i| &i.account == *a))
        .cloned()
        .collect();
    (!with_instance.is_empty()).then(|| InstanceScope {
        targets: scope_targets(&with_instance, facts),
        regions: spec.regions.clone(),
    })
}

fn scope_targets(accounts: &BTreeSet<String>, facts: &Facts) -> Targets {
    let parents: BTreeSet<String> = accounts
        .iter()
        .filter_map(|a| facts.parents.get(a).cloned())
        .collect();
    Targets {
        organizational_unit_ids: parents.into_iter().collect(),
        accounts: accounts.iter().cloned().collect(),
        account_filter_type: AccountFilterType::Intersection,
    }
}

/// The instances outside the canary in desired Regions (what the rest of the rollout reaches).
fn rest_count(spec: &Spec, observed: &Observed, facts: &Facts) -> usize {
    observed
        .instances
        .iter()
        .filter(|i| !facts.canary.contains(&i.account) && spec.regions.contains(&i.region))
        .count()
}

/// Gather the facts: the canary accounts resolved against the organization and the targets, the newest canary
/// operation, and, once every canary instance is CURRENT, the access check of each canary account
/// (`spec.accessCheck`: sts:AssumeRole into its role, a handful of calls). `None` without `spec.rollout`.
pub async fn observe(
    deployment: &Deployment,
    ctx: &Context,
    observed: &Observed,
    org: &OrgSnapshot,
    coverage: &Coverage,
    operations: &[Operation],
) -> Option<Facts> {
    let spec = &deployment.spec;
    let rollout = spec.rollout.as_ref()?;
    let mut facts = Facts::at(ctx.wall_now());
    for account in &rollout.canary.accounts {
        if coverage.targeted.contains(account) {
            facts.canary.insert(account.clone());
        } else if !coverage.inactive.contains(account) {
            facts
                .untargeted
                .push(format!("account {account} is not targeted"));
        }
    }
    for unit in &rollout.canary.organizational_unit_ids {
        if !org.unit_exists(unit) {
            facts
                .untargeted
                .push(format!("OU {unit} is not in the organization"));
            continue;
        }
        let under: Vec<String> = org
            .accounts_under(std::slice::from_ref(unit))
            .into_iter()
            .map(|a| a.account.id.clone())
            .filter(|a| coverage.targeted.contains(a))
            .collect();
        if under.is_empty() {
            facts
                .untargeted
                .push(format!("OU {unit} has no targeted active account"));
        }
        facts.canary.extend(under);
    }
    for account in &facts.canary {
        if let Some(a) = org.accounts.get(account) {
            facts.parents.insert(account.clone(), a.parent.clone());
        }
    }
    // The newest: a running one, else the last to end (canary updates of one stack set never overlap: they
    // update the same instances). Not the listing's position: AWS documents no order.
    facts.last_canary = operations
        .iter()
        .filter(|op| op.id.starts_with(&format!("stacksetd-{CANARY_OPERATION}-")))
        .max_by_key(|op| (op.status.is_active(), op.ended))
        .cloned();
    facts.busy = operations.iter().any(|op| op.status.is_active());
    let Some(stack_set) = observed.stack_set.as_ref() else {
        return Some(facts);
    };
    let canary_current = facts.canary.iter().all(|a| {
        spec.regions.iter().all(|r| {
            observed.instances.iter().any(|i| {
                &i.account == a
                    && &i.region == r
                    && i.status == InstanceStatus::Current
                    && !i.in_progress()
            })
        })
    });
    facts.access_configured = spec.access_check.is_some();
    if let (Some(access), true) = (&spec.access_check, canary_current)
        && stack_set.settings.tags.contains_key(ROLLOUT_TAG)
    {
        let partition = stack_set
            .arn
            .as_deref()
            .and_then(|arn| arn.split(':').nth(1))
            .unwrap_or("aws");
        let mut failures = Vec::new();
        for account in &facts.canary {
            let arn = crate::cloud::role_arn(partition, account, &access.role_name);
            if let Err(e) = ctx
                .cloud
                .assume_role(&arn, crate::cloud::ACCESS_CHECK_SESSION)
                .await
            {
                failures.push((account.clone(), e.to_string()));
            }
        }
        facts.access_failures = Some(failures);
    }
    Some(facts)
}

/// `stacksetd promote NAME [--retry]`: let a baked version reach the rest (`promote: Manual`), or re-apply a halted
/// version to the canary. Both are an UpdateStackSet scoped to the canary that keeps the template: a promotion
/// also tags the stack set [`PROMOTE_TAG`] with the version (the daemon then promotes once the bake has ended);
/// a retry re-applies the version to the canary, whose verification and bake start again. Returns the
/// OperationId.
pub async fn promote(deployment: &Deployment, ctx: &Context, retry: bool) -> Result<String, Error> {
    let name = deployment.name();
    let mut state = super::DeploymentState::default();
    let observation = super::observe(deployment, ctx, &mut state).await?;
    let decision = super::decide::decide(
        deployment,
        &ctx.config,
        &observation,
        tokio::time::Instant::now(),
    )?;
    let (Some(status), Some(stack_set), Some(facts)) = (
        &decision.report.rollout,
        &observation.observed.stack_set,
        &observation.rollout,
    ) else {
        return Err(Error::Conflict(format!(
            "{name}: no staged rollout is in progress (spec.rollout, and a version that reached only the canary)"
        )));
    };
    match (retry, status.phase) {
        (true, Phase::Halted)
        | (false, Phase::Baking | Phase::AwaitingPromotion | Phase::Verifying) => {}
        (true, phase) => {
            return Err(Error::Conflict(format!(
                "{name}: version {} is {}, not halted: there is nothing to retry",
                status.version,
                phase.label()
            )));
        }
        (false, phase) => {
            return Err(Error::Conflict(format!(
                "{name}: version {} is {}: only a verified canary is promoted{}",
                status.version,
                phase.label(),
                if phase == Phase::Halted {
                    " (a halted one is retried: --retry)"
                } else {
                    ""
                }
            )));
        }
    }
    let scope = canary_scope(facts, &deployment.spec, &observation.observed)
        .ok_or_else(|| Error::Conflict(format!("{name}: no canary account has an instance")))?;
    let promoted = if retry {
        None
    } else {
        Some(
            stack_set
                .settings
                .tags
                .get(TEMPLATE_TAG)
                .cloned()
                .ok_or_else(|| {
                    Error::Conflict(format!("{name}: the stack set has no {TEMPLATE_TAG} tag"))
                })?,
        )
    };
    let action = canary_update(stack_set, scope, promoted.as_deref());
    let spec = &deployment.spec;
    let base = super::operation::operation_id_base(
        &spec.stack_set_name,
        &action,
        &spec.operation_preferences,
    );
    let submission = super::operation::Submission {
        base: &base,
        recent: &observation.operations,
        may_have_happened: true,
    };
    let sent = super::operation::submit(
        deployment,
        ctx,
        &mut state,
        submission,
        &decision.report,
        |id| async move { super::operation::send(deployment, ctx, &action, &id).await },
    )
    .await?;
    match sent {
        super::operation::Sent::Accepted(id) => Ok(id),
        super::operation::Sent::NothingToDo => Err(Error::Conflict(format!(
            "{name}: CloudFormation found nothing to update"
        ))),
        super::operation::Sent::Decided(outcome) => Err(Error::Conflict(format!(
            "{name}: not sent: {:?}",
            outcome.state
        ))),
    }
}

#[cfg(test)]
mod tests {
    //! The verdict of a rollout in progress, from AWS's record alone: every (canary instances, operation, access
    //! check, clock, promotion) case that decides it.

    use super::*;
    use crate::cloud::{ObservedStackSet, OperationAction, StackSetSettings, StackSetStatus};
    use crate::fixtures::instance;
    use crate::plan::Purpose;
    use stacksetd_core::fixtures::DeploymentYaml;

    const CANARY: &str = "222222222222";
    const OTHER: &str = "333333333333";
    const REGION: &str = "us-east-1";
    const VERSION: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";
    const BAKE: Duration = Duration::from_secs(1800);

    fn deployment(promote: &str) -> Deployment {
        DeploymentYaml::new()
            .targets(&["ROOT"], &[REGION])
            .spec(&format!(
                "  rollout: {{canary: {{accounts: [\"{CANARY}\"]}}, bake: 30m, promote: {promote}}}\n"
            ))
            .build()
    }

    fn observed(canary: InstanceStatus, detailed: &str, tags: &[(&str, &str)]) -> Observed {
        let mut settings = StackSetSettings::default();
        settings
            .tags
            .insert(ROLLOUT_TAG.into(), ROLLOUT_CANARY.into());
        settings.tags.insert(TEMPLATE_TAG.into(), VERSION.into());
        for (k, v) in tags {
            settings.tags.insert((*k).into(), (*v).into());
        }
        Observed {
            stack_set: Some(ObservedStackSet {
                name: "Vendor".into(),
                arn: None,
                status: StackSetStatus::Active,
                settings,
                permission_model: None,
                organizational_unit_ids: None,
                regions: None,
                drift: None,
            }),
            instances: std::sync::Arc::new(vec![
                instance(CANARY, REGION, canary, detailed),
                instance(OTHER, REGION, InstanceStatus::Outdated, "SUCCEEDED"),
            ]),
            ..Observed::default()
        }
    }

    fn canary_op(status: OperationStatus, ended: Option<SystemTime>) -> Operation {
        Operation {
            id: "stacksetd-canary-0123456789abcdef0123-0".into(),
            action: OperationAction::Update,
            status,
            status_reason: None,
            failed_instances: None,
            preferences: None,
            ended,
        }
    }

    /// The plan a pass in a rollout sees: the promotion (tags) and an OUTDATED retry.
    fn plan() -> Plan {
        let step = |action| Step {
            purpose: Purpose::default(),
            action,
            summary: String::new(),
            changes: Vec::new(),
        };
        Plan {
            steps: vec![
                step(Action::UpdateStackSet {
                    settings: StackSetSettings::default(),
                    keep_template: false,
                    only: None,
                }),
                step(Action::UpdateStackInstances {
                    targets: Targets {
                        organizational_unit_ids: vec!["r-1".into()],
                        accounts: Vec::new(),
                        account_filter_type: AccountFilterType::None,
                    },
                    regions: vec![REGION.into()],
                }),
            ],
            ..Plan::default()
        }
    }

    fn judge(d: &Deployment, o: &Observed, facts: &Facts) -> (Option<Phase>, usize) {
        let mut plan = plan();
        let status = stage(d, o, facts, VERSION, &mut plan).expect("staged");
        (status.map(|s| s.phase), plan.steps.len())
    }

    #[test]
    fn the_verdict_follows_aws_record_of_the_canary() {
        let ended = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let facts = |op: Option<Operation>, busy: bool, minutes_after: u64| {
            let mut f = Facts::at(ended + Duration::from_secs(60 * minutes_after));
            f.canary.insert(CANARY.into());
            f.parents.insert(CANARY.into(), "r-1".into());
            f.last_canary = op;
            f.busy = busy;
            f
        };
        let auto = deployment("Auto");
        let done = Some(canary_op(OperationStatus::Succeeded, Some(ended)));
        let current = observed(InstanceStatus::Current, "SUCCEEDED", &[]);
        // Verified, baking: nothing else runs; after the bake the plan runs whole (the promotion).
        assert_eq!(
            judge(&auto, &current, &facts(done.clone(), false, 10)),
            (Some(Phase::Baking), 0)
        );
        assert_eq!(
            judge(&auto, &current, &facts(done.clone(), false, 31)),
            (Some(Phase::Promoting), 2)
        );
        // A canary that failed halts; the same status while an operation runs (a queued update marked it
        // OUTDATED) is not a failure yet.
        let failed = observed(InstanceStatus::Outdated, "FAILED", &[]);
        assert_eq!(
            judge(&auto, &failed, &facts(done.clone(), false, 31)),
            (Some(Phase::Halted), 0)
        );
        assert_eq!(
            judge(&auto, &failed, &facts(done.clone(), true, 31)),
            (Some(Phase::Canary), 0)
        );
        let inoperable = observed(InstanceStatus::Inoperable, "INOPERABLE", &[]);
        assert_eq!(
            judge(&auto, &inoperable, &facts(done.clone(), false, 31)).0,
            Some(Phase::Halted)
        );
        // The canary operation failed: halted, whatever the instances say.
        let failed_op = Some(canary_op(OperationStatus::Failed, Some(ended)));
        assert_eq!(
            judge(&auto, &current, &facts(failed_op, false, 31)).0,
            Some(Phase::Halted)
        );
        // The access check: failed halts; configured and not answered yet verifies.
        let mut denied = facts(done.clone(), false, 31);
        denied.access_configured = true;
        denied.access_failures = Some(vec![(CANARY.into(), "AccessDenied".into())]);
        assert_eq!(judge(&auto, &current, &denied).0, Some(Phase::Halted));
        denied.access_failures = None;
        assert_eq!(judge(&auto, &current, &denied).0, Some(Phase::Verifying));
        denied.access_failures = Some(Vec::new());
        assert_eq!(judge(&auto, &current, &denied).0, Some(Phase::Promoting));
        // No canary operation listed any more: the bake counts from now (longer, never shorter).
        assert_eq!(
            judge(&auto, &current, &facts(None, false, 600)).0,
            Some(Phase::Baking)
        );
        // Manual: the promotion tag for this version, or the digest pinned.
        let manual = deployment("Manual");
        assert_eq!(
            judge(&manual, &current, &facts(done.clone(), false, 31)).0,
            Some(Phase::AwaitingPromotion)
        );
        let promoted = observed(
            InstanceStatus::Current,
            "SUCCEEDED",
            &[(PROMOTE_TAG, VERSION)],
        );
        assert_eq!(
            judge(&manual, &promoted, &facts(done.clone(), false, 31)).0,
            Some(Phase::Promoting)
        );
        let other = observed(
            InstanceStatus::Current,
            "SUCCEEDED",
            &[(PROMOTE_TAG, "cd34")],
        );
        assert_eq!(
            judge(&manual, &other, &facts(done.clone(), false, 31)).0,
            Some(Phase::AwaitingPromotion),
            "a promotion of another version promotes nothing"
        );
        let mut pinned = manual.clone();
        pinned.spec.template.sha256 = Some(VERSION.into());
        assert_eq!(
            judge(&pinned, &current, &facts(done.clone(), false, 31)).0,
            Some(Phase::Promoting)
        );
        // Without the rollout tag there is no rollout in progress.
        let mut untagged = current.clone();
        if let Some(s) = untagged.stack_set.as_mut() {
            s.settings.tags.remove(ROLLOUT_TAG);
        }
        assert_eq!(judge(&auto, &untagged, &facts(done, false, 31)), (None, 2));
    }

    #[test]
    fn a_canary_that_is_not_targeted_is_a_conflict_not_a_guess() {
        let mut facts = Facts::at(SystemTime::UNIX_EPOCH);
        facts
            .untargeted
            .push("account 444444444444 is not targeted".into());
        let err = stage(
            &deployment("Auto"),
            &observed(InstanceStatus::Current, "SUCCEEDED", &[]),
            &facts,
            VERSION,
            &mut plan(),
        )
        .expect_err("refused");
        assert!(err.to_string().contains("444444444444"), "{err}");
        let empty = Facts::at(SystemTime::UNIX_EPOCH);
        assert!(
            stage(
                &deployment("Auto"),
                &Observed::default(),
                &empty,
                VERSION,
                &mut plan()
            )
            .is_err()
        );
    }
}
