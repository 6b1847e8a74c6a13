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

use super::rfc3339;
use crate::cloud::{
    AccountFilterType, InstanceScope, InstanceStatus, Operation, OperationStatus, Targets,
};
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
/// The OperationId prefix of a creation of instances: during a rollout, only the canary's are created.
pub const CANARY_CREATION: &str = "stacksetd-create-inst-";
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
    /// The account x Region slots the rest of the rollout reaches (targeted active accounts outside the canary).
    pub rest: usize,
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
            rest: 0,
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
    /// The account x Region slots the rest of the rollout reaches (targeted active accounts outside the canary).
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
    /// The `Ready` condition's reason and message while it holds the rest (/status, `stacksetd status`, the page).
    pub fn condition(&self) -> (&'static str, String) {
        let reason = match self.phase {
            Phase::Halted => "RolloutHalted",
            _ => "RollingOut",
        };
        (
            reason,
            format!(
                "version {} {}: {}",
                self.version,
                self.phase.label(),
                self.message
            ),
        )
    }

    /// The phases as `plan` prints them: `canary: 2 accounts x 1 Region`, `then: 1,180 instances after bake 30m`.
    pub fn phase_lines(&self) -> [String; 2] {
        let then = match self.phase {
            Phase::Halted => "held: halted".to_string(),
            Phase::Promoting => "now".to_string(),
            Phase::AwaitingPromotion => "after `stacksetd promote`".to_string(),
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
        rest: facts.rest,
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
        step.summary = format!(
            "canary: the new version to {} canary account(s) x {} Region(s) first; the rest waits",
            facts.canary.len(),
            spec.regions.len()
        );
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
    let rolling = Rolling {
        rollout,
        stack_set,
        fetched: version,
    };
    Ok(Some(in_progress(
        deployment, &rolling, observed, facts, plan, status,
    )))
}

/// What [`in_progress`] judges: the rollout asked for, the stack set it runs on, the version fetched.
struct Rolling<'a> {
    rollout: &'a Rollout,
    stack_set: &'a crate::cloud::ObservedStackSet,
    fetched: &'a str,
}

/// A version has reached the canary (the stack set carries [`ROLLOUT_TAG`]): how far has it got, and what may run.
/// `status` makes the report of a phase.
fn in_progress(
    deployment: &Deployment,
    rolling: &Rolling<'_>,
    observed: &Observed,
    facts: &Facts,
    plan: &mut Plan,
    status: impl Fn(Phase, String) -> Status,
) -> Status {
    let spec = &deployment.spec;
    let Rolling {
        rollout,
        stack_set,
        fetched,
    } = *rolling;
    // The version the stack set runs (its approval record), else the one fetched.
    let version = stack_set
        .settings
        .tags
        .get(TEMPLATE_TAG)
        .cloned()
        .unwrap_or_else(|| fetched.to_string());
    let status = |phase, message| Status {
        version: version.chars().take(12).collect(),
        ..status(phase, message)
    };
    let (phase, mut report) = match verdict(spec, rollout, stack_set, observed, facts, &version) {
        Verdict::Halted { at, why } => {
            let mut s = status(
                Phase::Halted,
                format!(
                    "{why}; the rest stays on the previous version until the version changes or \
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
            return status(
                Phase::Promoting,
                "verified and baked: the rest gets the new version".into(),
            );
        }
    };
    if report.requeue_after.is_none() && phase != Phase::Canary {
        report.requeue_after = Some(Duration::from_secs(60));
    }
    hold_the_rest(plan, facts, spec, observed, phase);
    report
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

mod observe;
mod promote;
pub use observe::observe;
pub use promote::promote;

#[cfg(test)]
mod tests;
