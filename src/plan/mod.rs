//! `plan`: the pure decision of what to change. Given the desired deployment (with its fetched template and the
//! organization root resolved) and what AWS reports, it returns the ordered actions that converge the stack set.
//! No I/O: everything it needs is in its arguments, so it is tested exhaustively below.
//!
//! The controller submits only the first action of a plan, waits for it, observes afresh and plans again
//! (level-triggered), so later actions are a preview, and each action must be valid on its own.
//!
//! Ordering, and why (one function per rule in `ordering.rs`, called in this order):
//! 1. A ManagedExecution change goes alone: AWS refuses it in the same UpdateStackSet as a template or parameter
//!    change.
//! 2. Deletions (dropped OUs, Regions, accounts) before updates and creations: an update would otherwise spend
//!    time on instances about to go, and a named IAM role is global per account, so a Region move must free the
//!    old Region's role before the new Region can create it. Suspended, closed and INOPERABLE instances in a
//!    deletion's scope go first, with RetainStacks (AWS deletes them no other way).
//! 3. With `repairInoperable`, INOPERABLE instances the desired state keeps are removed (RetainStacks) so rule 7
//!    creates them again.
//! 4. UpdateStackSet (template, parameters, description, capabilities, tags, auto-deployment) before creating
//!    instances, so new instances are created once, with the new settings.
//! 5. CreateStackInstances for new OUs, new Regions and newly listed accounts: exact targets, never a whole-OU
//!    redeploy when one account was meant.
//! 6. Retry instances left OUTDATED by a failed operation (AWS: repeating with a new operation id retries them),
//!    unless rule 4 re-applies everything anyway.
//! 7. Coverage repair: accounts left without an instance get the targets submitted again (creates only what is
//!    missing), unless an earlier rule already creates instances.
//! 8. Drift remediation: re-apply the stack set to exactly the DRIFTED instances, unless rule 4 does.
//! 9. The management account's stack (`spec.managementAccount`), after every stack set step: its own rules are in
//!    `management_stack.rs`.
//!
//! `ensure: Absent` is a teardown of its own (instances, then the stack set), and a missing stack set is created
//! with all its instances.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// The tag naming the deployment a stack set belongs to (stacksetd's ownership mark; `controller::ownership`).
pub const OWNER_TAG: &str = "stacksetd.dev/deployment";
/// The tag recording the sha256 of the template version stacksetd applied.
pub const TEMPLATE_TAG: &str = "stacksetd.dev/template-sha256";

use crate::cloud::calls;
use crate::cloud::{InstanceScope, ObservedStackSet, StackInstance, StackSetSettings, Targets};
use crate::desired::{Deployment, Ensure};
use crate::error::Error;
use crate::template::Template;

pub mod management_stack;
mod ordering;
mod steps;
use steps::*;

/// What `plan` needs to know about the desired side.
#[derive(Debug, Clone, Copy)]
pub struct Desired<'a> {
    pub deployment: &'a Deployment,
    pub template: &'a Template,
    /// The organization root id (`r-xxxx`), used to resolve the `ROOT` target.
    pub root_id: Option<&'a str>,
}

/// What `plan` needs to know about AWS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub stack_set: Option<ObservedStackSet>,
    /// Shared with the instance cache (a converged pass copies no instance).
    pub instances: std::sync::Arc<Vec<StackInstance>>,
    /// Accounts that are suspended or closing (from the organization): their instances can only be deleted
    /// with RetainStacks=true.
    pub inactive_accounts: BTreeSet<String>,
    /// Coverage gaps (account, Region) due for a repair: the controller decides when a gap is overdue (it has
    /// the clock); `plan` decides what to submit.
    pub overdue_gaps: BTreeSet<(String, String)>,
    /// The DRIFTED instances of the last drift check were already re-applied (the check predates that): do not
    /// re-apply them again before the next check.
    pub drift_remediated: bool,
    /// The active member accounts the desired targets reach (from the organization; `None` when unknown): a
    /// listed INTERSECTION account outside the targeted OUs gets no instance however often it is submitted.
    pub reachable_accounts: Option<BTreeSet<String>>,
    /// Slots whose INOPERABLE instance `repairInoperable` removed and that are still missing: created again
    /// at once (not after the coverage grace period, and also with `repairCoverage: false`).
    pub recreate: BTreeSet<(String, String)>,
    /// Desired (OU, Region) pairs CloudFormation does not auto-deploy to (ListStackSetAutoDeploymentTargets, on
    /// the organization-scan cadence): registered again with a CreateStackInstances for the OU there.
    pub auto_targets_missing: BTreeSet<(String, String)>,
    /// The management account's stack, when the deployment has `spec.managementAccount`.
    pub management_stack: Option<management_stack::ManagementStackObserved>,
    /// The accounts the desired state keeps (targeted, active or not; from the organization; `None` when
    /// unknown): a deletion never removes their instances.
    pub kept_accounts: Option<BTreeSet<String>>,
    /// Every account below each OU (the root included) that an instance is associated with and the desired
    /// targets no longer name, child OUs included: what a whole-OU deletion would remove, by AWS's documented rule
    /// ("deletes stacks from both the specified target OUs and their child OUs").
    pub accounts_under: Option<BTreeMap<String, BTreeSet<String>>>,
    /// Missing slots of accounts a change of the desired state newly targets: created at once, whatever
    /// `repairCoverage` says (the controller's memory tells them from accounts that joined since).
    pub newly_targeted: BTreeSet<(String, String)>,
}

/// One step toward the desired state. Serialized (with the stack set name and preferences) it is also what the
/// deterministic OperationId is derived from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action")]
pub enum Action {
    CreateStackSet {
        #[serde(flatten)]
        settings: StackSetSettings,
    },
    UpdateStackSet {
        #[serde(flatten)]
        settings: StackSetSettings,
        /// UsePreviousTemplate and UsePreviousValue for every parameter (the settings then hold the stack set's
        /// current template and values): a ManagedExecution change goes on its own.
        keep_template: bool,
        /// Only these instances (a staged rollout's canary, `controller/rollout.rs`); `None`: every instance.
        #[serde(skip_serializing_if = "Option::is_none")]
        only: Option<InstanceScope>,
    },
    CreateStackInstances {
        targets: Targets,
        regions: Vec<String>,
    },
    UpdateStackInstances {
        targets: Targets,
        regions: Vec<String>,
    },
    DeleteStackInstances {
        targets: Targets,
        regions: Vec<String>,
        retain_stacks: bool,
    },
    DeleteStackSet,
    /// CreateStack of the management account's stack (`spec.managementAccount`).
    CreateStack {
        region: String,
        #[serde(flatten)]
        settings: management_stack::StackSettings,
    },
    UpdateStack {
        region: String,
        #[serde(flatten)]
        settings: management_stack::StackSettings,
    },
    /// DeleteStack by the stack's ARN: exactly the stack whose owner tag was read.
    DeleteStack {
        region: String,
        stack_id: String,
    },
}

impl Action {
    /// AWS's API name, used in output, logs and the `action` metric label.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateStackSet { .. } => calls::CREATE_STACK_SET,
            Action::UpdateStackSet { .. } => calls::UPDATE_STACK_SET,
            Action::CreateStackInstances { .. } => calls::CREATE_STACK_INSTANCES,
            Action::UpdateStackInstances { .. } => calls::UPDATE_STACK_INSTANCES,
            Action::DeleteStackInstances { .. } => calls::DELETE_STACK_INSTANCES,
            Action::DeleteStackSet => calls::DELETE_STACK_SET,
            Action::CreateStack { .. } => calls::CREATE_STACK,
            Action::UpdateStack { .. } => calls::UPDATE_STACK,
            Action::DeleteStack { .. } => calls::DELETE_STACK,
        }
    }

    /// Submitting it starts an asynchronous stack set operation (CreateStackSet, DeleteStackSet and the plain
    /// stack's calls do not: the stack's own status shows their progress).
    pub fn is_operation(&self) -> bool {
        !matches!(
            self,
            Action::CreateStackSet { .. }
                | Action::DeleteStackSet
                | Action::CreateStack { .. }
                | Action::UpdateStack { .. }
                | Action::DeleteStack { .. }
        )
    }

    /// A call on the management account's plain stack, not on the stack set.
    pub fn is_stack(&self) -> bool {
        matches!(
            self,
            Action::CreateStack { .. } | Action::UpdateStack { .. } | Action::DeleteStack { .. }
        )
    }
}

/// One field's change, for humans: `description: "a" -> "b"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub field: String,
    pub from: String,
    pub to: String,
}

/// Why a step is in the plan: converging to the desired state, or one of the two repairs (which the controller
/// books differently: a repair resets the gap clock, a remediation marks the drift check as handled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Purpose {
    #[default]
    Converge,
    /// `repairCoverage`: re-submit the targets for accounts left without an instance.
    RepairCoverage,
    /// `driftDetection.remediate`: re-apply the stack set to DRIFTED instances.
    RemediateDrift,
    /// `repairInoperable`: remove INOPERABLE instances (RetainStacks) so they can be created again.
    RepairInoperable,
}

impl Purpose {
    pub fn is_converge(&self) -> bool {
        *self == Purpose::Converge
    }
}

/// An action with why it is needed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    #[serde(skip_serializing_if = "Purpose::is_converge")]
    pub purpose: Purpose,
    pub action: Action,
    /// One line, e.g. "create instances for 2 new OU(s) in 1 Region(s)".
    pub summary: String,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// What the plan does not change although the desired state and the stack set differ, and why (a field the
    /// API cannot clear).
    pub notes: Vec<String>,
    /// Its creations depend on its deletions: a deletion removes instances of accounts the desired state keeps
    /// (a Region move), and the same accounts get instances elsewhere. IAM names are global per account, so a
    /// template's named role exists once per account: created in the new Region before the old Region's stack
    /// is deleted, it fails ("already exists"). A creation therefore never runs ahead of such a deletion while
    /// the deletion waits for `deletion_delay` (`controller::decide`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub creations_after_deletions: bool,
}

impl Action {
    /// Deletes instances or the stack set: submitted only after `deletion_delay` of an unchanged desired state.
    pub fn is_deletion(&self) -> bool {
        matches!(
            self,
            Action::DeleteStackInstances { .. }
                | Action::DeleteStackSet
                | Action::DeleteStack { .. }
        )
    }
}

impl Plan {
    /// The index of the first step that may be submitted while the plan's deletions wait for `deletion_delay`:
    /// not a deletion, and not a creation that depends on one (`creations_after_deletions`).
    pub fn first_not_waiting(&self) -> Option<usize> {
        self.steps.iter().position(|s| {
            let held = s.action.is_deletion()
                || (self.creations_after_deletions
                    && matches!(s.action, Action::CreateStackInstances { .. }));
            !held
        })
    }
}

impl Observed {
    /// CloudFormation is working on the management account's stack of deployment `owner`.
    pub fn management_stack_busy(&self, owner: &str) -> bool {
        self.management_stack
            .as_ref()
            .is_some_and(|m| m.busy(owner))
    }
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
    pub fn first(&self) -> Option<&Step> {
        self.steps.first()
    }
}

/// How an absent value (no description, no tag, no capability) prints in a change.
pub(crate) const UNSET: &str = "(unset)";

/// Decide the ordered actions that bring `observed` to `desired`: teardown for `ensure: Absent`, creation from
/// nothing, or the eight rules of the module header, in their order, for an existing stack set.
pub fn plan(desired: Desired<'_>, observed: &Observed) -> Result<Plan, Error> {
    let spec = &desired.deployment.spec;
    let (stack_steps, stack_notes) = management_stack::steps(desired, observed)?;
    if spec.ensure == Ensure::Absent {
        // The plain stack goes first: it depends on nothing the stack set's teardown takes away.
        let mut steps = stack_steps;
        steps.extend(teardown(desired, observed));
        return Ok(Plan {
            steps,
            notes: stack_notes,
            creations_after_deletions: false,
        });
    }
    let Some(stack_set) = observed.stack_set.as_ref() else {
        let mut steps = create_from_nothing(desired)?;
        steps.extend(stack_steps);
        return Ok(Plan {
            steps,
            notes: stack_notes,
            creations_after_deletions: false,
        });
    };
    if let Some(model) = &stack_set.permission_model
        && model != "SERVICE_MANAGED"
    {
        return Err(Error::Conflict(format!(
            "stack set {} uses the {model} permission model; stacksetd manages SERVICE_MANAGED stack sets and AWS \
             cannot change the model while instances exist: choose another stackSetName, or delete that stack set",
            spec.stack_set_name
        )));
    }
    let scope = ordering::Scope::new(desired, observed, stack_set)?;
    let mut steps = ordering::managed_execution_alone(&scope);
    steps.extend(ordering::deletions(&scope));
    steps.extend(ordering::inoperable_removals(&scope));
    steps.extend(ordering::settings_update(&scope));
    steps.extend(ordering::creations(&scope));
    let reregistered = ordering::auto_deployment_targets(&scope, &steps);
    steps.extend(reregistered);
    steps.extend(ordering::outdated_retries(&scope));
    let repair = ordering::coverage_repair(&scope, &steps);
    steps.extend(repair);
    steps.extend(ordering::drift_remediation(&scope));
    steps.extend(stack_steps);
    let mut notes = notes(desired, observed);
    notes.extend(stack_notes);
    Ok(Plan {
        steps,
        notes,
        creations_after_deletions: scope.kept_accounts_deleted(),
    })
}

/// `ensure: Absent`: the RetainStacks deletions AWS requires, every instance, then the stack set.
fn teardown(desired: Desired<'_>, observed: &Observed) -> Vec<Step> {
    let spec = &desired.deployment.spec;
    let mut steps = Vec::new();
    if observed.stack_set.is_none() {
        return steps;
    }
    if !observed.instances.is_empty() {
        let existing = Existing::of(observed.stack_set.as_ref(), &observed.instances);
        push_retained_delete(&mut steps, observed, |_| true);
        steps.push(Step {
            purpose: Purpose::Converge,
            summary: format!(
                "delete all {} instance(s) ({} OU(s) x {} Region(s)) before the stack set",
                observed.instances.len(),
                existing.units.len(),
                existing.regions.len()
            ),
            changes: vec![Change {
                field: "instances".into(),
                from: observed.instances.len().to_string(),
                to: "0".into(),
            }],
            action: Action::DeleteStackInstances {
                targets: ou_targets(existing.targeted.iter().cloned()),
                regions: existing.regions.iter().cloned().collect(),
                retain_stacks: false,
            },
        });
    }
    steps.push(Step {
        purpose: Purpose::Converge,
        action: Action::DeleteStackSet,
        summary: format!("delete stack set {}", spec.stack_set_name),
        changes: vec![Change {
            field: "stackSet".into(),
            from: spec.stack_set_name.clone(),
            to: "(absent)".into(),
        }],
    });
    steps
}

/// No stack set yet: create it with every setting, then its instances for every desired OU and Region.
fn create_from_nothing(desired: Desired<'_>) -> Result<Vec<Step>, Error> {
    let spec = &desired.deployment.spec;
    let units = resolve_units(desired)?;
    let body = desired.template.body_for_api()?.to_string();
    Ok(vec![
        Step {
            purpose: Purpose::Converge,
            summary: format!(
                "create stack set {} (template {})",
                spec.stack_set_name,
                desired.template.short_digest()
            ),
            changes: vec![Change {
                field: "stackSet".into(),
                from: "(absent)".into(),
                to: spec.stack_set_name.clone(),
            }],
            action: Action::CreateStackSet {
                settings: StackSetSettings {
                    description: spec.description.clone(),
                    template_body: body,
                    parameters: spec.parameters.clone(),
                    capabilities: spec.capability_names(),
                    tags: spec.tags.clone(),
                    auto_deployment: Some(spec.auto_deployment.clone()),
                    managed_execution: Some(spec.managed_execution.active),
                },
            },
        },
        // Sorted, as everywhere: the step's serialized form is what its OperationId is derived from.
        create_step(
            desired,
            units.into_iter().collect(),
            spec.regions
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            "target OU",
        ),
    ])
}

/// Differences the API cannot converge, said instead of planned.
fn notes(desired: Desired<'_>, observed: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(stack_set) = &observed.stack_set
        && desired.deployment.spec.description.is_none()
        && stack_set
            .settings
            .description
            .as_deref()
            .is_some_and(|d| !d.is_empty())
    {
        out.push(format!(
            "description: not managed once removed (UpdateStackSet keeps it); set a new one, or it stays {:?}",
            stack_set.settings.description.as_deref().unwrap_or_default()
        ));
    }
    if let Some(auto) = observed
        .stack_set
        .as_ref()
        .and_then(|s| s.settings.auto_deployment.as_ref())
        && !auto.depends_on.is_empty()
        && desired
            .deployment
            .spec
            .auto_deployment
            .depends_on
            .is_empty()
    {
        out.push(format!(
            "autoDeployment.dependsOn: not managed once removed (the API documents no way to remove the last              dependency); the stack set still depends on {}",
            auto.depends_on.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod repair_tests;
#[cfg(test)]
mod tests;
