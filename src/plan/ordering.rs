//! The steps of a plan for an existing stack set, one function per rule, called in this order by [`super::plan`]
//! (the order is the rule: see the module header there). Every function reads the same [`Scope`], computed once,
//! and returns its steps; none calls another.
//!
//! Size: just over 600 lines because every ordering rule lives here, each short; splitting them would separate
//! rules whose order is the point.

use std::collections::BTreeSet;

use super::steps::*;
use super::{Action, Change, Desired, Observed, Purpose, Step};
use crate::cloud::{
    AccountFilterType, InstanceStatus, ObservedStackSet, StackInstance, StackSetSettings,
};
use crate::desired::AutoDeployment;
use crate::desired::Spec as DeploymentSpec;
use crate::error::Error;

/// What every step reads: the desired side, the stack set as observed, and the set algebra between them.
pub(super) struct Scope<'a> {
    pub desired: Desired<'a>,
    pub spec: &'a DeploymentSpec,
    pub observed: &'a Observed,
    pub stack_set: &'a ObservedStackSet,
    /// The desired OUs, `ROOT` resolved.
    pub units: BTreeSet<String>,
    pub regions: BTreeSet<String>,
    pub body: String,
    pub capabilities: BTreeSet<String>,
    /// Existing OUs with instances that stay desired (what a deletion in a dropped Region or of dropped
    /// accounts reaches).
    pub kept_units: Vec<String>,
    /// Existing targeted OUs that stay desired (what creations and repairs submit again).
    pub kept_targets: Vec<String>,
    pub kept_regions: Vec<String>,
    pub dropped_regions: Vec<String>,
    pub new_units: Vec<String>,
    pub new_regions: Vec<String>,
    /// Dropped OUs whose whole subtree goes (no kept account below them): deleted whole, which also ends them
    /// as targets.
    pub whole_drops: Vec<String>,
    /// Dropped OUs with a kept account below them (ROOT narrowed to one of its OUs, a child OU replaced by its
    /// parent): AWS deletes a whole OU's subtree, child OUs included, whatever OU an instance was created
    /// through, so only their accounts that are not kept are deleted, by name. They stay targets (what AWS
    /// auto-deploys to) until nothing below them is kept.
    pub partial_drops: Vec<String>,
    /// The accounts below `partial_drops` that have an instance and that the desired state does not keep.
    pub removable_under: BTreeSet<String>,
    /// The accounts the desired account filter no longer reaches.
    pub accounts_to_drop: BTreeSet<String>,
    pub existing: Existing,
    /// The settings that differ (template, parameters, description, capabilities, tags).
    pub settings: Vec<Change>,
    /// ManagedExecution as it is, when it differs from the desired value.
    pub managed_change: Option<bool>,
    /// The ManagedExecution change goes in a step of its own (rule 1).
    pub managed_alone: bool,
    pub auto_deployment_change: bool,
    /// An UpdateStackSet is planned (rule 4): it re-applies every instance, so rules 6 and 8 have nothing to do.
    pub update_settings: bool,
}

impl<'a> Scope<'a> {
    pub fn new(
        desired: Desired<'a>,
        observed: &'a Observed,
        stack_set: &'a ObservedStackSet,
    ) -> Result<Self, Error> {
        let spec = &desired.deployment.spec;
        let units = resolve_units(desired)?;
        let regions: BTreeSet<String> = spec.regions.iter().cloned().collect();
        let existing = Existing::of(Some(stack_set), &observed.instances);
        // DescribeStackSet's Regions are where instances exist. With no instance anywhere (the targeted OUs hold
        // no member account) they say nothing about what was requested, and a "new Region" step would submit an
        // operation that creates nothing, every pass, forever.
        let new_regions = if existing.regions.is_empty() {
            Vec::new()
        } else {
            regions.difference(&existing.regions).cloned().collect()
        };
        let targets = &spec.deployment_targets;
        let listed: BTreeSet<&str> = targets.accounts.iter().map(String::as_str).collect();
        let accounts_to_drop = existing
            .accounts
            .iter()
            .filter(|a| match targets.account_filter_type {
                AccountFilterType::Intersection => !listed.contains(a.as_str()),
                AccountFilterType::Difference => listed.contains(a.as_str()),
                AccountFilterType::None | AccountFilterType::Union => false,
            })
            .cloned()
            .collect();
        let dropped_units: Vec<String> = existing.units.difference(&units).cloned().collect();
        let (mut whole_drops, mut partial_drops) = (Vec::new(), Vec::new());
        let mut removable_under = BTreeSet::new();
        for unit in &dropped_units {
            let below = observed.accounts_under.as_ref().and_then(|m| m.get(unit));
            match (below, &observed.kept_accounts) {
                (Some(below), Some(kept)) if below.iter().any(|a| kept.contains(a)) => {
                    partial_drops.push(unit.clone());
                    removable_under.extend(
                        below
                            .iter()
                            .filter(|a| !kept.contains(*a) && existing.accounts.contains(*a))
                            .cloned(),
                    );
                }
                _ => whole_drops.push(unit.clone()),
            }
        }
        let settings = settings_changes(desired, &stack_set.settings);
        let managed_change = stack_set
            .settings
            .managed_execution
            .filter(|active| *active != spec.managed_execution.active);
        let template_or_parameters = settings
            .iter()
            .any(|c| c.field == "template" || c.field.starts_with("parameters"));
        let managed_alone = managed_change.is_some() && template_or_parameters;
        let auto_deployment_change = stack_set
            .settings
            .auto_deployment
            .as_ref()
            .is_some_and(|a| !same_auto_deployment(a, &spec.auto_deployment));
        let update_settings = !settings.is_empty()
            || auto_deployment_change
            || (managed_change.is_some() && !managed_alone);
        Ok(Scope {
            desired,
            spec,
            observed,
            stack_set,
            body: desired.template.body_for_api()?.to_string(),
            capabilities: spec.capability_names(),
            kept_units: existing.units.intersection(&units).cloned().collect(),
            kept_targets: existing.targeted.intersection(&units).cloned().collect(),
            kept_regions: existing.regions.intersection(&regions).cloned().collect(),
            whole_drops,
            partial_drops,
            removable_under,
            dropped_regions: existing.regions.difference(&regions).cloned().collect(),
            new_units: units.difference(&existing.targeted).cloned().collect(),
            new_regions,
            accounts_to_drop,
            existing,
            settings,
            managed_change,
            managed_alone,
            auto_deployment_change,
            update_settings,
            units,
            regions,
        })
    }

    /// Some deletion of this plan removes an instance of an account the desired state keeps (in a dropped Region;
    /// every account counts as kept while the organization is unknown): the plan's creations wait for it
    /// (`Plan::creations_after_deletions`).
    pub fn kept_accounts_deleted(&self) -> bool {
        self.observed.instances.iter().any(|i| {
            self.dropped_regions.contains(&i.region)
                && self
                    .observed
                    .kept_accounts
                    .as_ref()
                    .is_none_or(|kept| kept.contains(&i.account))
        })
    }

    /// Instances the desired state keeps: in a desired Region, of an account it targets (when the organization
    /// is known; else under a desired OU, or none reported). By account, not by the OU an instance was created
    /// through: an instance created through ROOT stays kept when the targets narrow to the OU it is in.
    fn kept(&self, i: &StackInstance) -> bool {
        self.regions.contains(&i.region)
            && match &self.observed.kept_accounts {
                Some(kept) => {
                    kept.contains(&i.account) && !self.accounts_to_drop.contains(&i.account)
                }
                None => i
                    .organizational_unit_id
                    .as_ref()
                    .is_none_or(|u| self.units.contains(u)),
            }
    }
}

/// Rule 1. A ManagedExecution change goes alone when the template or parameters change too: AWS refuses both in
/// one UpdateStackSet. Everything else is sent as it is (previous template, previous parameter values).
pub(super) fn managed_execution_alone(s: &Scope<'_>) -> Vec<Step> {
    let (true, Some(current)) = (s.managed_alone, s.managed_change) else {
        return Vec::new();
    };
    let stack_set = s.stack_set;
    vec![Step {
        purpose: Purpose::Converge,
        summary: "change managed execution on its own (AWS refuses it alongside a template change)"
            .into(),
        changes: vec![bool_change(
            "managedExecution.active",
            current,
            s.spec.managed_execution.active,
        )],
        action: Action::UpdateStackSet {
            settings: StackSetSettings {
                auto_deployment: None,
                managed_execution: Some(s.spec.managed_execution.active),
                ..stack_set.settings.clone()
            },
            keep_template: true,
            only: None,
        },
    }]
}

/// Rule 2. Deletions (dropped OUs, then dropped Regions, then accounts the filter no longer reaches) before
/// updates and creations: an update would spend time on instances about to go, and a named IAM role is global
/// per account, so a Region move must free the old Region's role first. Each deletion is preceded by the
/// RetainStacks deletion of the suspended, closed or INOPERABLE instances in its scope.
pub(super) fn deletions(s: &Scope<'_>) -> Vec<Step> {
    let mut steps = Vec::new();
    let observed = s.observed;
    if !s.whole_drops.is_empty() && !s.existing.regions.is_empty() {
        push_retained_delete(&mut steps, observed, |i| {
            i.organizational_unit_id
                .as_ref()
                .is_some_and(|u| s.whole_drops.contains(u))
        });
        steps.push(Step {
            purpose: Purpose::Converge,
            summary: format!("delete instances of {} dropped OU(s)", s.whole_drops.len()),
            changes: s
                .whole_drops
                .iter()
                .map(|u| removed("deploymentTargets.organizationalUnitIds", u))
                .collect(),
            action: Action::DeleteStackInstances {
                targets: ou_targets(s.whole_drops.iter().cloned()),
                regions: s.existing.regions.iter().cloned().collect(),
                retain_stacks: false,
            },
        });
    }
    if !s.removable_under.is_empty() && !s.existing.regions.is_empty() {
        let ordinary = retained_then_ordinary(&mut steps, observed, &s.removable_under, |i| {
            s.removable_under.contains(&i.account)
        });
        if !ordinary.is_empty() {
            steps.push(Step {
                purpose: Purpose::Converge,
                summary: format!(
                    "delete instances of {} account(s) below dropped OU(s) {} that the targets no longer reach \
                     (the accounts below them that stay targeted keep theirs)",
                    ordinary.len(),
                    s.partial_drops.join(", ")
                ),
                changes: s
                    .partial_drops
                    .iter()
                    .map(|u| removed("deploymentTargets.organizationalUnitIds", u))
                    .chain(ordinary.iter().map(|a| removed("instances of account", a)))
                    .collect(),
                action: Action::DeleteStackInstances {
                    targets: account_targets(s.partial_drops.clone(), ordinary.into_iter()),
                    regions: s.existing.regions.iter().cloned().collect(),
                    retain_stacks: false,
                },
            });
        }
    }
    // The OUs the instances to delete were created through, with the kept ones: a deletion names an OU the
    // instance is below, whichever it was created through.
    let through = |pick: &dyn Fn(&StackInstance) -> bool| -> Vec<String> {
        let mut units: BTreeSet<String> = s.kept_units.iter().cloned().collect();
        units.extend(
            observed
                .instances
                .iter()
                .filter(|i| pick(i))
                .filter_map(|i| i.organizational_unit_id.clone()),
        );
        units.into_iter().collect()
    };
    let in_dropped_region = |i: &StackInstance| s.dropped_regions.contains(&i.region);
    let dropped_region_units = through(&in_dropped_region);
    if !s.dropped_regions.is_empty() && !dropped_region_units.is_empty() {
        push_retained_delete(&mut steps, observed, in_dropped_region);
        steps.push(Step {
            purpose: Purpose::Converge,
            summary: format!(
                "delete instances in {} dropped Region(s)",
                s.dropped_regions.len()
            ),
            changes: s
                .dropped_regions
                .iter()
                .map(|r| removed("regions", r))
                .collect(),
            action: Action::DeleteStackInstances {
                targets: ou_targets(dropped_region_units.into_iter()),
                regions: s.dropped_regions.clone(),
                retain_stacks: false,
            },
        });
    }
    let of_dropped_account = |i: &StackInstance| {
        s.accounts_to_drop.contains(&i.account) && s.kept_regions.contains(&i.region)
    };
    let dropped_account_units = through(&of_dropped_account);
    if !s.accounts_to_drop.is_empty()
        && !dropped_account_units.is_empty()
        && !s.kept_regions.is_empty()
    {
        let ordinary = retained_then_ordinary(
            &mut steps,
            observed,
            &s.accounts_to_drop,
            of_dropped_account,
        );
        if !ordinary.is_empty() {
            steps.push(Step {
                purpose: Purpose::Converge,
                summary: format!(
                    "delete instances of {} account(s) no longer targeted",
                    ordinary.len()
                ),
                changes: ordinary
                    .iter()
                    .map(|a| removed("deploymentTargets.accounts", a))
                    .collect(),
                action: Action::DeleteStackInstances {
                    targets: account_targets(dropped_account_units, ordinary.into_iter()),
                    regions: s.kept_regions.clone(),
                    retain_stacks: false,
                },
            });
        }
    }
    steps
}

/// Rule 3. With `repairInoperable`, INOPERABLE instances the desired state keeps are removed with RetainStacks (a
/// failed delete left them, and only a retained delete succeeds), so that rule 7 creates them again.
pub(super) fn inoperable_removals(s: &Scope<'_>) -> Vec<Step> {
    if !s.spec.repair_inoperable {
        return Vec::new();
    }
    let broken: Vec<&StackInstance> = s
        .observed
        .instances
        .iter()
        .filter(|i| i.status == InstanceStatus::Inoperable && !i.in_progress())
        .filter(|i| s.kept(i) && !s.accounts_to_drop.contains(&i.account))
        .collect();
    if broken.is_empty() {
        return Vec::new();
    }
    vec![per_instance_step(
        s,
        &broken,
        Purpose::RepairInoperable,
        format!(
            "remove {} INOPERABLE instance(s) (RetainStacks) to create them again",
            broken.len()
        ),
        |i| {
            format!(
                "INOPERABLE ({})",
                i.status_reason.as_deref().unwrap_or("no reason given")
            )
        },
        "re-created",
        |targets, regions| Action::DeleteStackInstances {
            targets,
            regions,
            retain_stacks: true,
        },
    )]
}

/// Whether the stack set's auto-deployment is the desired one. dependsOn is a set (AWS documents no order), and
/// a desired state without one leaves the stack set's as it is (see `plan::notes`).
fn same_auto_deployment(observed: &AutoDeployment, desired: &AutoDeployment) -> bool {
    observed.enabled == desired.enabled
        && observed.retain_stacks_on_account_removal == desired.retain_stacks_on_account_removal
        && (desired.depends_on.is_empty()
            || sorted(&observed.depends_on) == sorted(&desired.depends_on))
}

fn sorted(items: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = items.iter().map(String::as_str).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Rule 4. The stack set's own settings (template, parameters, description, capabilities, tags, auto-deployment,
/// and ManagedExecution unless rule 1 sent it alone) in one UpdateStackSet, before any creation, so new instances
/// are created once, with the new settings.
pub(super) fn settings_update(s: &Scope<'_>) -> Vec<Step> {
    if !s.update_settings {
        return Vec::new();
    }
    let spec = s.spec;
    let mut changes = s.settings.clone();
    if let (true, Some(current)) = (
        s.auto_deployment_change,
        &s.stack_set.settings.auto_deployment,
    ) {
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
        if !spec.auto_deployment.depends_on.is_empty() {
            changes.push(Change {
                field: "autoDeployment.dependsOn".into(),
                from: format!("[{}]", sorted(&current.depends_on).join(", ")),
                to: format!("[{}]", sorted(&spec.auto_deployment.depends_on).join(", ")),
            });
        }
        changes.retain(|c| c.from != c.to);
    }
    let managed_here = s.managed_change.filter(|_| !s.managed_alone);
    if let Some(current) = managed_here {
        changes.push(bool_change(
            "managedExecution.active",
            current,
            spec.managed_execution.active,
        ));
    }
    vec![Step {
        purpose: Purpose::Converge,
        summary: format!(
            "update stack set settings ({}) on all {} instance(s)",
            changes
                .iter()
                .map(|c| c.field.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            s.observed.instances.len()
        ),
        changes,
        action: Action::UpdateStackSet {
            settings: StackSetSettings {
                description: spec.description.clone(),
                template_body: s.body.clone(),
                parameters: spec.parameters.clone(),
                capabilities: s.capabilities.clone(),
                tags: spec.tags.clone(),
                auto_deployment: s
                    .auto_deployment_change
                    .then(|| spec.auto_deployment.clone()),
                managed_execution: managed_here.map(|_| spec.managed_execution.active),
            },
            keep_template: false,
            only: None,
        },
    }]
}

/// Rule 5. Creations for new OUs (every desired Region), new Regions (the kept OUs) and, under INTERSECTION,
/// newly listed accounts the targets reach: exact targets, never a whole-OU redeploy when one account was meant.
pub(super) fn creations(s: &Scope<'_>) -> Vec<Step> {
    let mut steps = Vec::new();
    let all_regions: Vec<String> = s.regions.iter().cloned().collect();
    if !s.new_units.is_empty() {
        steps.push(create_step(
            s.desired,
            s.new_units.clone(),
            all_regions,
            "new OU",
        ));
    }
    if !s.new_regions.is_empty() && !s.kept_targets.is_empty() {
        steps.push(create_step(
            s.desired,
            s.kept_targets.clone(),
            s.new_regions.clone(),
            "new Region",
        ));
    }
    let targets = &s.spec.deployment_targets;
    if targets.account_filter_type == AccountFilterType::Intersection && !s.kept_targets.is_empty()
    {
        let missing: Vec<String> = targets
            .accounts
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|a| !s.existing.accounts.contains(*a))
            .filter(|a| {
                s.observed
                    .reachable_accounts
                    .as_ref()
                    .is_none_or(|r| r.contains(*a))
            })
            .cloned()
            .collect();
        if !missing.is_empty() && !s.kept_regions.is_empty() {
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
                    targets: account_targets(s.kept_targets.clone(), missing.iter().cloned()),
                    regions: s.kept_regions.clone(),
                },
            });
        }
    }
    // Accounts a change of the desired state newly targets under every filter (a DIFFERENCE list that shrank, a
    // filter type changed): auto-deployment only acts on accounts joining or moving, so they are created now, by
    // name, under the desired OUs, whatever `repairCoverage` says. Not alongside another creation: the next
    // pass looks again.
    let newly: Vec<&(String, String)> = s
        .observed
        .newly_targeted
        .iter()
        .filter(|(_, region)| s.regions.contains(region))
        .collect();
    if steps.is_empty() && !newly.is_empty() {
        let accounts: BTreeSet<String> = newly.iter().map(|(a, _)| a.clone()).collect();
        let regions: BTreeSet<String> = newly.iter().map(|(_, r)| r.clone()).collect();
        steps.push(Step {
            purpose: Purpose::Converge,
            summary: format!(
                "create instances for {} account(s) the desired state newly targets",
                accounts.len()
            ),
            changes: newly
                .iter()
                .map(|(account, region)| Change {
                    field: format!("instance {account}/{region}"),
                    from: "(not targeted)".into(),
                    to: "CURRENT".into(),
                })
                .collect(),
            action: Action::CreateStackInstances {
                targets: account_targets(s.units.iter().cloned().collect(), accounts.into_iter()),
                regions: regions.into_iter().collect(),
            },
        });
    }
    steps
}

/// Rule 5b. Desired OU x Region pairs CloudFormation no longer auto-deploys to (the controller's check of
/// ListStackSetAutoDeploymentTargets): a CreateStackInstances for the OU in those Regions registers it again
/// (with the deployment's account filter, like any creation), unless a creation of this plan already covers it.
pub(super) fn auto_deployment_targets(s: &Scope<'_>, planned: &[Step]) -> Vec<Step> {
    let covered = |ou: &str, region: &str| {
        planned.iter().any(|step| match &step.action {
            Action::CreateStackInstances { targets, regions } => {
                targets.organizational_unit_ids.iter().any(|u| u == ou)
                    && regions.iter().any(|r| r == region)
            }
            _ => false,
        })
    };
    let mut by_ou: std::collections::BTreeMap<&str, BTreeSet<String>> = Default::default();
    for (ou, region) in &s.observed.auto_targets_missing {
        if s.units.contains(ou) && s.regions.contains(region) && !covered(ou, region) {
            by_ou.entry(ou.as_str()).or_default().insert(region.clone());
        }
    }
    // OUs missing the same Regions go in one step.
    let mut by_regions: std::collections::BTreeMap<BTreeSet<String>, Vec<String>> =
        Default::default();
    for (ou, regions) in by_ou {
        by_regions.entry(regions).or_default().push(ou.to_string());
    }
    by_regions
        .into_iter()
        .map(|(regions, units)| Step {
            purpose: Purpose::Converge,
            summary: format!(
                "register {} OU(s) again as auto-deployment targets in {} Region(s) (CloudFormation stopped \
                 auto-deploying there)",
                units.len(),
                regions.len()
            ),
            changes: units
                .iter()
                .flat_map(|u| {
                    regions
                        .iter()
                        .map(move |r| added("autoDeploymentTargets", &format!("{u}/{r}")))
                })
                .collect(),
            action: Action::CreateStackInstances {
                targets: filtered_targets(s.desired, units),
                regions: regions.into_iter().collect(),
            },
        })
        .collect()
}

/// Rule 6. Instances a failed operation left OUTDATED are retried (AWS: repeating with a new operation id retries
/// them), unless rule 4 re-applies everything anyway.
pub(super) fn outdated_retries(s: &Scope<'_>) -> Vec<Step> {
    if s.update_settings {
        return Vec::new();
    }
    let failed: Vec<&StackInstance> = s
        .observed
        .instances
        .iter()
        .filter(|i| {
            i.status == InstanceStatus::Outdated && !i.in_progress() && !i.skipped_suspended()
        })
        .filter(|i| s.kept(i) && !s.accounts_to_drop.contains(&i.account))
        .collect();
    if failed.is_empty() {
        return Vec::new();
    }
    vec![per_instance_step(
        s,
        &failed,
        Purpose::Converge,
        format!(
            "retry {} OUTDATED instance(s) left by a failed operation",
            failed.len()
        ),
        |i| {
            format!(
                "OUTDATED ({})",
                i.status_reason.as_deref().unwrap_or("no reason given")
            )
        },
        "CURRENT",
        |targets, regions| Action::UpdateStackInstances { targets, regions },
    )]
}

/// Rule 7. Accounts left without an instance (auto-deployment failed, or is off; or rule 3 removed an INOPERABLE
/// one): the targets are submitted again, which creates only the missing instances. Overdue gaps count only with
/// `repairCoverage`; not when an earlier rule already creates instances.
pub(super) fn coverage_repair(s: &Scope<'_>, planned: &[Step]) -> Vec<Step> {
    let creating = planned
        .iter()
        .any(|step| matches!(step.action, Action::CreateStackInstances { .. }));
    let mut gaps: BTreeSet<&(String, String)> = if s.spec.repair_coverage {
        s.observed.overdue_gaps.iter().collect()
    } else {
        BTreeSet::new()
    };
    gaps.extend(s.observed.recreate.iter());
    gaps.retain(|(_, region)| s.regions.contains(region));
    if creating || gaps.is_empty() || s.kept_targets.is_empty() {
        return Vec::new();
    }
    let gap_regions: BTreeSet<String> = gaps.iter().map(|(_, r)| r.clone()).collect();
    let mut step = create_step(
        s.desired,
        s.kept_targets.clone(),
        gap_regions.into_iter().collect(),
        "repair",
    );
    step.purpose = Purpose::RepairCoverage;
    step.summary = format!(
        "repair coverage: {} account(s) x Region(s) without an instance; re-submit the targets (creates only what \
         is missing)",
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
    vec![step]
}

/// Rule 8. Drift remediation (`driftDetection.remediate`): re-apply the stack set to exactly the DRIFTED
/// instances, once per drift check; not when rule 4 re-applies everything anyway.
pub(super) fn drift_remediation(s: &Scope<'_>) -> Vec<Step> {
    let remediate = s.spec.drift_detection.as_ref().is_some_and(|d| d.remediate);
    if !remediate || s.update_settings || s.observed.drift_remediated {
        return Vec::new();
    }
    let drifted: Vec<&StackInstance> = s
        .observed
        .instances
        .iter()
        .filter(|i| i.drift_status.as_deref() == Some("DRIFTED") && !i.in_progress())
        .filter(|i| s.kept(i))
        .collect();
    if drifted.is_empty() {
        return Vec::new();
    }
    vec![per_instance_step(
        s,
        &drifted,
        Purpose::RemediateDrift,
        format!(
            "re-apply the stack set to {} DRIFTED instance(s)",
            drifted.len()
        ),
        |_| "DRIFTED".into(),
        "re-applied",
        |targets, regions| Action::UpdateStackInstances { targets, regions },
    )]
}

/// A step on exactly these instances (rules 3, 6 and 8): their exact targets and Regions, one change per instance.
fn per_instance_step(
    s: &Scope<'_>,
    instances: &[&StackInstance],
    purpose: Purpose,
    summary: String,
    from: impl Fn(&StackInstance) -> String,
    to: &str,
    action: impl FnOnce(crate::cloud::Targets, Vec<String>) -> Action,
) -> Step {
    let (targets, regions) = exact_targets(instances, &s.units);
    Step {
        purpose,
        summary,
        changes: instances
            .iter()
            .map(|i| Change {
                field: format!("instance {}/{}", i.account, i.region),
                from: from(i),
                to: to.into(),
            })
            .collect(),
        action: action(targets, regions),
    }
}
