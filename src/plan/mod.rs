//! `plan`: the pure decision of what to change. Given the desired deployment (with its fetched template and the
//! organization root resolved) and what AWS reports, it returns the ordered actions that converge the stack set.
//! No I/O: everything it needs is in its arguments, so it is tested exhaustively below.
//!
//! The controller submits only the first action of a plan, waits for it, observes afresh and plans again
//! (level-triggered), so later actions are a preview, and each action must be valid on its own.
//!
//! Ordering, and why:
//! 1. A ManagedExecution change goes alone: AWS refuses it in the same UpdateStackSet as a template or parameter
//!    change.
//! 2. Deletions (dropped OUs, Regions, accounts) before updates and creations: an update would otherwise spend
//!    time on instances about to go, and a named IAM role is global per account, so a Region move must free the
//!    old Region's role before the new Region can create it.
//! 3. UpdateStackSet (template, parameters, description, capabilities, tags, auto-deployment) before creating
//!    instances, so new instances are created once, with the new settings.
//! 4. CreateStackInstances for new OUs, new Regions and newly listed accounts: exact targets, never a whole-OU
//!    redeploy when one account was meant.
//! 5. Retry instances left OUTDATED by a failed operation (AWS: repeating with a new operation id retries them),
//!    unless an UpdateStackSet in this plan re-applies everything anyway.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::cloud::{
    AccountFilterType, AutoDeployment, InstanceStatus, ObservedStackSet, Parameter, StackInstance,
    Targets,
};
use crate::desired::{Deployment, Ensure};
use crate::error::Error;
use crate::template::Template;

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
    pub instances: Vec<StackInstance>,
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
}

/// One step toward the desired state. Serialized (with the stack set name and preferences) it is also what the
/// deterministic OperationId is derived from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action")]
pub enum Action {
    CreateStackSet {
        description: Option<String>,
        template_body: String,
        parameters: BTreeMap<String, String>,
        capabilities: BTreeSet<String>,
        tags: BTreeMap<String, String>,
        auto_deployment: AutoDeployment,
        managed_execution: bool,
    },
    UpdateStackSet {
        description: Option<String>,
        /// `None`: UsePreviousTemplate.
        template_body: Option<String>,
        parameters: Vec<Parameter>,
        capabilities: BTreeSet<String>,
        tags: BTreeMap<String, String>,
        auto_deployment: Option<AutoDeployment>,
        managed_execution: Option<bool>,
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
}

impl Action {
    /// AWS's API name, used in output, logs and the `action` metric label.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateStackSet { .. } => "CreateStackSet",
            Action::UpdateStackSet { .. } => "UpdateStackSet",
            Action::CreateStackInstances { .. } => "CreateStackInstances",
            Action::UpdateStackInstances { .. } => "UpdateStackInstances",
            Action::DeleteStackInstances { .. } => "DeleteStackInstances",
            Action::DeleteStackSet => "DeleteStackSet",
        }
    }

    /// Submitting it starts an asynchronous stack set operation (CreateStackSet and DeleteStackSet do not).
    pub fn is_operation(&self) -> bool {
        !matches!(self, Action::CreateStackSet { .. } | Action::DeleteStackSet)
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
}

impl Action {
    /// Deletes instances or the stack set: submitted only after `deletion_delay` of an unchanged desired state.
    pub fn is_deletion(&self) -> bool {
        matches!(self, Action::DeleteStackInstances { .. } | Action::DeleteStackSet)
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

/// Decide the ordered actions that bring `observed` to `desired`.
pub fn plan(desired: Desired<'_>, observed: &Observed) -> Result<Plan, Error> {
    let spec = &desired.deployment.spec;
    let mut steps = Vec::new();
    let stack_set = observed.stack_set.as_ref();
    let existing = Existing::of(stack_set, &observed.instances);

    if spec.ensure == Ensure::Absent {
        if stack_set.is_none() {
            return Ok(Plan::default());
        }
        if !observed.instances.is_empty() {
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
        return Ok(Plan { steps, notes: Vec::new() });
    }

    let units = resolve_units(desired)?;
    let regions: BTreeSet<String> = spec.regions.iter().cloned().collect();
    let body = desired.template.body_for_api()?.to_string();
    let capabilities: BTreeSet<String> = spec
        .capabilities
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();

    let Some(stack_set) = stack_set else {
        steps.push(Step {
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
                description: spec.description.clone(),
                template_body: body,
                parameters: spec.parameters.clone(),
                capabilities,
                tags: spec.tags.clone(),
                auto_deployment: spec.auto_deployment.clone(),
                managed_execution: spec.managed_execution.active,
            },
        });
        steps.push(create_step(
            desired,
            units.iter().cloned().collect(),
            regions.iter().cloned().collect(),
            "target OU",
        ));
        return Ok(Plan { steps, notes: Vec::new() });
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

    // 1. ManagedExecution, alone when the template or parameters change too.
    let settings = settings_changes(desired, stack_set);
    let managed_change = stack_set
        .managed_execution
        .filter(|active| *active != spec.managed_execution.active);
    let template_or_parameters = settings
        .iter()
        .any(|c| c.field == "template" || c.field.starts_with("parameters"));
    let mut managed_alone = false;
    if let Some(current) = managed_change
        && template_or_parameters
    {
        managed_alone = true;
        steps.push(Step {
            purpose: Purpose::Converge,
            summary:
                "change managed execution on its own (AWS refuses it alongside a template change)"
                    .into(),
            changes: vec![bool_change(
                "managedExecution.active",
                current,
                spec.managed_execution.active,
            )],
            action: Action::UpdateStackSet {
                description: stack_set.description.clone(),
                template_body: None,
                parameters: stack_set
                    .parameters
                    .keys()
                    .map(|key| Parameter {
                        key: key.clone(),
                        value: None,
                    })
                    .collect(),
                capabilities: stack_set.capabilities.clone(),
                tags: stack_set.tags.clone(),
                auto_deployment: None,
                managed_execution: Some(spec.managed_execution.active),
            },
        });
    }

    // 2. Deletions.
    let dropped_units: Vec<String> = existing.units.difference(&units).cloned().collect();
    // Kept OUs with instances (what a deletion in a dropped Region or of dropped accounts reaches), and kept OUs
    // targeted at all (what creations and repairs submit again).
    let kept_units: Vec<String> = existing.units.intersection(&units).cloned().collect();
    let kept_targets: Vec<String> = existing.targeted.intersection(&units).cloned().collect();
    let dropped_regions: Vec<String> = existing.regions.difference(&regions).cloned().collect();
    // DescribeStackSet's Regions are where instances exist. With no instance anywhere (the targeted OUs hold no
    // member account) they say nothing about what was requested, and a "new Region" step would submit an
    // operation that creates nothing, every pass, forever.
    let new_regions: Vec<String> = if existing.regions.is_empty() {
        Vec::new()
    } else {
        regions.difference(&existing.regions).cloned().collect()
    };
    let new_units: Vec<String> = units.difference(&existing.targeted).cloned().collect();
    if !dropped_units.is_empty() && !existing.regions.is_empty() {
        push_retained_delete(&mut steps, observed, |i| {
            i.organizational_unit_id
                .as_ref()
                .is_some_and(|u| dropped_units.contains(u))
        });
        steps.push(Step {
            purpose: Purpose::Converge,
            summary: format!("delete instances of {} dropped OU(s)", dropped_units.len()),
            changes: dropped_units
                .iter()
                .map(|u| removed("deploymentTargets.organizationalUnitIds", u))
                .collect(),
            action: Action::DeleteStackInstances {
                targets: ou_targets(dropped_units.iter().cloned()),
                regions: existing.regions.iter().cloned().collect(),
                retain_stacks: false,
            },
        });
    }
    if !dropped_regions.is_empty() && !kept_units.is_empty() {
        push_retained_delete(&mut steps, observed, |i| {
            dropped_regions.contains(&i.region)
        });
        steps.push(Step {
            purpose: Purpose::Converge,
            summary: format!(
                "delete instances in {} dropped Region(s)",
                dropped_regions.len()
            ),
            changes: dropped_regions
                .iter()
                .map(|r| removed("regions", r))
                .collect(),
            action: Action::DeleteStackInstances {
                targets: ou_targets(kept_units.iter().cloned()),
                regions: dropped_regions.clone(),
                retain_stacks: false,
            },
        });
    }
    let targets = &spec.deployment_targets;
    let listed: BTreeSet<&str> = targets.accounts.iter().map(String::as_str).collect();
    let kept_regions: Vec<String> = existing.regions.intersection(&regions).cloned().collect();
    let accounts_to_drop: BTreeSet<&str> = existing
        .accounts
        .iter()
        .map(String::as_str)
        .filter(|a| match targets.account_filter_type {
            AccountFilterType::Intersection => !listed.contains(a),
            AccountFilterType::Difference => listed.contains(a),
            AccountFilterType::None | AccountFilterType::Union => false,
        })
        .collect();
    if !accounts_to_drop.is_empty() && !kept_units.is_empty() && !kept_regions.is_empty() {
        push_retained_delete(&mut steps, observed, |i| {
            accounts_to_drop.contains(i.account.as_str()) && kept_regions.contains(&i.region)
        });
        steps.push(Step {
            purpose: Purpose::Converge,
            summary: format!(
                "delete instances of {} account(s) no longer targeted",
                accounts_to_drop.len()
            ),
            changes: accounts_to_drop
                .iter()
                .map(|a| removed("deploymentTargets.accounts", a))
                .collect(),
            action: Action::DeleteStackInstances {
                targets: account_targets(
                    kept_units.clone(),
                    accounts_to_drop.iter().map(|a| a.to_string()),
                ),
                regions: kept_regions.clone(),
                retain_stacks: false,
            },
        });
    }

    // 2b. INOPERABLE instances the desired state keeps: with `repairInoperable`, remove them (RetainStacks: a
    //     failed delete left them, and only a retained delete succeeds) so step 6 creates them again.
    if spec.repair_inoperable {
        let broken: Vec<&StackInstance> = observed
            .instances
            .iter()
            .filter(|i| i.status == InstanceStatus::Inoperable && !i.in_progress())
            .filter(|i| regions.contains(&i.region))
            .filter(|i| {
                i.organizational_unit_id
                    .as_ref()
                    .is_none_or(|u| units.contains(u))
            })
            .filter(|i| !accounts_to_drop.contains(i.account.as_str()))
            .collect();
        if !broken.is_empty() {
            let (targets, broken_regions) = exact_targets(&broken, &units);
            steps.push(Step {
                purpose: Purpose::RepairInoperable,
                summary: format!(
                    "remove {} INOPERABLE instance(s) (RetainStacks) to create them again",
                    broken.len()
                ),
                changes: broken
                    .iter()
                    .map(|i| Change {
                        field: format!("instance {}/{}", i.account, i.region),
                        from: format!(
                            "INOPERABLE ({})",
                            i.status_reason.as_deref().unwrap_or("no reason given")
                        ),
                        to: "re-created".into(),
                    })
                    .collect(),
                action: Action::DeleteStackInstances {
                    targets,
                    regions: broken_regions,
                    retain_stacks: true,
                },
            });
        }
    }

    // 3. The stack set's own settings.
    let auto_deployment_change = stack_set
        .auto_deployment
        .as_ref()
        .is_some_and(|a| *a != spec.auto_deployment);
    let update_settings = !settings.is_empty()
        || auto_deployment_change
        || (managed_change.is_some() && !managed_alone);
    if update_settings {
        let mut changes = settings;
        if let (true, Some(current)) = (auto_deployment_change, &stack_set.auto_deployment) {
            changes.push(bool_change(
                "autoDeployment.enabled",
                current.enabled,
                spec.auto_deployment.enabled,
            ));
            changes.push(bool_change(
                "autoDeployment.retainStacksOnAccountRemoval",
                current.retain_stacks_on_account_removal,
                spec.auto_deployment.retain_stacks_on_account_removal,
            ));
            changes.retain(|c| c.from != c.to);
        }
        if let (false, Some(current)) = (managed_alone, managed_change) {
            changes.push(bool_change(
                "managedExecution.active",
                current,
                spec.managed_execution.active,
            ));
        }
        steps.push(Step {
            purpose: Purpose::Converge,
            summary: format!(
                "update stack set settings ({}) on all {} instance(s)",
                changes
                    .iter()
                    .map(|c| c.field.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                observed.instances.len()
            ),
            changes,
            action: Action::UpdateStackSet {
                description: spec.description.clone(),
                template_body: Some(body),
                parameters: spec
                    .parameters
                    .iter()
                    .map(|(key, value)| Parameter {
                        key: key.clone(),
                        value: Some(value.clone()),
                    })
                    .collect(),
                capabilities,
                tags: spec.tags.clone(),
                auto_deployment: auto_deployment_change.then(|| spec.auto_deployment.clone()),
                managed_execution: (managed_change.is_some() && !managed_alone)
                    .then_some(spec.managed_execution.active),
            },
        });
    }

    // 4. Creations.
    if !new_units.is_empty() {
        steps.push(create_step(
            desired,
            new_units,
            regions.iter().cloned().collect(),
            "new OU",
        ));
    }
    if !new_regions.is_empty() && !kept_targets.is_empty() {
        steps.push(create_step(
            desired,
            kept_targets.clone(),
            new_regions.clone(),
            "new Region",
        ));
    }
    if targets.account_filter_type == AccountFilterType::Intersection && !kept_targets.is_empty() {
        let present: BTreeSet<&str> = existing.accounts.iter().map(String::as_str).collect();
        let missing: Vec<String> = listed
            .difference(&present)
            .filter(|a| observed.reachable_accounts.as_ref().is_none_or(|r| r.contains(**a)))
            .map(|a| a.to_string())
            .collect();
        if !missing.is_empty() && !kept_regions.is_empty() {
            steps.push(Step {
                purpose: Purpose::Converge,
                summary: format!(
                    "create instances for {} newly listed account(s)",
                    missing.len()
                ),
                changes: missing
                    .iter()
                    .map(|a| added("deploymentTargets.accounts", a))
                    .collect(),
                action: Action::CreateStackInstances {
                    targets: account_targets(kept_targets.clone(), missing.iter().cloned()),
                    regions: kept_regions.clone(),
                },
            });
        }
    }

    // 5. Retry what a failed operation left OUTDATED.
    if !update_settings {
        let dropped: BTreeSet<&str> = accounts_to_drop.iter().copied().collect();
        let failed: Vec<&StackInstance> = observed
            .instances
            .iter()
            .filter(|i| {
                i.status == InstanceStatus::Outdated && !i.in_progress() && !i.skipped_suspended()
            })
            .filter(|i| regions.contains(&i.region) && !dropped.contains(i.account.as_str()))
            .filter(|i| {
                i.organizational_unit_id
                    .as_ref()
                    .is_none_or(|u| units.contains(u))
            })
            .collect();
        if !failed.is_empty() {
            let (targets, failed_regions) = exact_targets(&failed, &units);
            steps.push(Step {
                purpose: Purpose::Converge,
                summary: format!(
                    "retry {} OUTDATED instance(s) left by a failed operation",
                    failed.len()
                ),
                changes: failed
                    .iter()
                    .map(|i| Change {
                        field: format!("instance {}/{}", i.account, i.region),
                        from: format!(
                            "OUTDATED ({})",
                            i.status_reason.as_deref().unwrap_or("no reason given")
                        ),
                        to: "CURRENT".into(),
                    })
                    .collect(),
                action: Action::UpdateStackInstances {
                    targets,
                    regions: failed_regions,
                },
            });
        }
    }
    // 6. Accounts left without an instance (auto-deployment failed, or is off): re-submit the targets, which
    //    creates only the missing instances. Not when this plan already creates instances.
    let creating = steps
        .iter()
        .any(|s| matches!(s.action, Action::CreateStackInstances { .. }));
    let mut gaps: BTreeSet<&(String, String)> = if spec.repair_coverage {
        observed.overdue_gaps.iter().collect()
    } else {
        BTreeSet::new()
    };
    gaps.extend(observed.recreate.iter());
    gaps.retain(|(_, region)| regions.contains(region));
    if !creating && !gaps.is_empty() && !kept_targets.is_empty() {
        let gap_regions: BTreeSet<String> = gaps.iter().map(|(_, r)| r.clone()).collect();
        let mut step = create_step(
            desired,
            kept_targets.clone(),
            gap_regions.into_iter().collect(),
            "repair",
        );
        step.purpose = Purpose::RepairCoverage;
        step.summary = format!(
            "repair coverage: {} account(s) x Region(s) without an instance; re-submit the targets (creates only \
             what is missing)",
            gaps.len()
        );
        step.changes = gaps
            .iter()
            .map(|(account, region)| Change {
                field: format!("instance {account}/{region}"),
                from: "(missing)".into(),
                to: "CURRENT".into(),
            })
            .collect();
        steps.push(step);
    }

    // 7. Drift remediation: re-apply the stack set to exactly the DRIFTED instances. An UpdateStackSet in this
    //    plan re-applies everything anyway.
    let remediate = spec.drift_detection.as_ref().is_some_and(|d| d.remediate);
    if remediate && !update_settings && !observed.drift_remediated {
        let drifted: Vec<&StackInstance> = observed
            .instances
            .iter()
            .filter(|i| i.drift_status.as_deref() == Some("DRIFTED") && !i.in_progress())
            .filter(|i| regions.contains(&i.region))
            .filter(|i| {
                i.organizational_unit_id
                    .as_ref()
                    .is_none_or(|u| units.contains(u))
            })
            .collect();
        if !drifted.is_empty() {
            let (targets, drifted_regions) = exact_targets(&drifted, &units);
            steps.push(Step {
                purpose: Purpose::RemediateDrift,
                summary: format!(
                    "re-apply the stack set to {} DRIFTED instance(s)",
                    drifted.len()
                ),
                changes: drifted
                    .iter()
                    .map(|i| Change {
                        field: format!("instance {}/{}", i.account, i.region),
                        from: "DRIFTED".into(),
                        to: "re-applied".into(),
                    })
                    .collect(),
                action: Action::UpdateStackInstances {
                    targets,
                    regions: drifted_regions,
                },
            });
        }
    }
    let notes = notes(desired, observed);
    Ok(Plan { steps, notes })
}

/// Differences the API cannot converge, said instead of planned.
fn notes(desired: Desired<'_>, observed: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(stack_set) = &observed.stack_set
        && desired.deployment.spec.description.is_none()
        && stack_set.description.as_deref().is_some_and(|d| !d.is_empty())
    {
        out.push(format!(
            "description: not managed once removed (UpdateStackSet keeps it); set a new one, or it stays {:?}",
            stack_set.description.as_deref().unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod repair_tests;
#[cfg(test)]
mod tests;
