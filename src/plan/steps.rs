//! The building blocks of a plan: what exists now, the stack set settings that differ, and the constructors of
//! steps and their from -> to changes. `mod.rs` decides which steps, in which order; this file only builds them.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, Change, Desired, Observed, Purpose, Step, UNSET};
use crate::cloud::{
    AccountFilterType, InstanceStatus, ObservedStackSet, Setting, StackInstance, StackSetSettings,
    Targets,
};
use crate::desired::ROOT;
use crate::error::Error;

/// [`push_retained_delete`] ahead of a deletion of `accounts`: the accounts left for that ordinary deletion (the
/// retained delete removes every in-scope instance of the others).
pub(super) fn retained_then_ordinary(
    steps: &mut Vec<Step>,
    observed: &Observed,
    accounts: &BTreeSet<String>,
    in_scope: impl Fn(&StackInstance) -> bool,
) -> Vec<String> {
    let retained = push_retained_delete(steps, observed, in_scope);
    accounts.difference(&retained).cloned().collect()
}

/// AWS deletes an instance in a suspended or closed account only with RetainStacks=true, and an INOPERABLE
/// instance (a failed delete) is cleared the same way. Before a deletion, those instances in its scope go first,
/// exactly, with RetainStacks=true; the ordinary deletion then removes the rest.
///
/// Returns the accounts whose every in-scope instance this step deletes, so the ordinary deletion can leave them
/// out: its summary then counts only the accounts it removes (it once said 9 where 8 went).
pub(super) fn push_retained_delete(
    steps: &mut Vec<Step>,
    observed: &Observed,
    in_scope: impl Fn(&StackInstance) -> bool,
) -> BTreeSet<String> {
    let needs_retain = |i: &StackInstance| {
        i.skipped_suspended()
            || i.status == InstanceStatus::Inoperable
            || observed.inactive_accounts.contains(&i.account)
    };
    let retained: Vec<&StackInstance> = observed
        .instances
        .iter()
        .filter(|i| in_scope(i))
        .filter(|i| needs_retain(i))
        .collect();
    if retained.is_empty() {
        return BTreeSet::new();
    }
    let wholly_retained: BTreeSet<String> = retained
        .iter()
        .map(|i| i.account.clone())
        .filter(|account| {
            observed
                .instances
                .iter()
                .filter(|i| &i.account == account && in_scope(i))
                .all(needs_retain)
        })
        .collect();
    let units: BTreeSet<String> = retained
        .iter()
        .filter_map(|i| i.organizational_unit_id.clone())
        .collect();
    let accounts: BTreeSet<String> = retained.iter().map(|i| i.account.clone()).collect();
    let regions: BTreeSet<String> = retained.iter().map(|i| i.region.clone()).collect();
    steps.push(Step {
purpose: Purpose::Converge,
        summary: format!(
            "delete {} instance(s) of suspended/closed accounts or INOPERABLE instances, keeping their stacks \
             (AWS requires RetainStacks for them)",
            retained.len()
        ),
        changes: retained
            .iter()
            .map(|i| Change {
                field: format!("instance {}/{}", i.account, i.region),
                from: i.status.as_str().to_string(),
                to: "(absent, stack retained)".into(),
            })
            .collect(),
        action: Action::DeleteStackInstances {
            targets: account_targets(units.into_iter().collect(), accounts.into_iter()),
            regions: regions.into_iter().collect(),
            retain_stacks: true,
        },
    });
    wholly_retained
}

/// The OUs and Regions that currently hold (or were given) instances. DescribeStackSet's own lists win; when the
/// endpoint does not echo them, the instances tell.
pub(super) struct Existing {
    /// The OUs the stack set's instances were created for (each instance's OrganizationalUnitId, what
    /// ListStackInstances reports for service-managed stack sets): what there is to delete.
    pub units: BTreeSet<String>,
    /// `units` and the OUs DescribeStackSet lists as targets (an OU without member accounts has no instances):
    /// a desired OU in here needs no creation. Only a cross-check: AWS documents no rule for when it drops an OU
    /// from that list, so it never decides a deletion.
    pub targeted: BTreeSet<String>,
    pub regions: BTreeSet<String>,
    pub accounts: BTreeSet<String>,
}

impl Existing {
    pub(super) fn of(
        stack_set: Option<&ObservedStackSet>,
        instances: &[StackInstance],
    ) -> Existing {
        let units: BTreeSet<String> = instances
            .iter()
            .filter_map(|i| i.organizational_unit_id.clone())
            .collect();
        let mut targeted = units.clone();
        if let Some(listed) = stack_set.and_then(|s| s.organizational_unit_ids.as_ref()) {
            targeted.extend(listed.iter().cloned());
        }
        let mut regions: BTreeSet<String> = instances.iter().map(|i| i.region.clone()).collect();
        if let Some(listed) = stack_set.and_then(|s| s.regions.as_ref()) {
            regions.extend(listed.iter().cloned());
        }
        let accounts = instances.iter().map(|i| i.account.clone()).collect();
        Existing {
            units,
            targeted,
            regions,
            accounts,
        }
    }
}

pub(super) fn resolve_units(desired: Desired<'_>) -> Result<BTreeSet<String>, Error> {
    let spec = &desired.deployment.spec;
    spec.deployment_targets
        .organizational_unit_ids
        .iter()
        .map(|unit| match (unit.as_str(), desired.root_id) {
            (ROOT, Some(root)) => Ok(root.to_string()),
            (ROOT, None) => Err(Error::Conflict(
                "deploymentTargets names ROOT but the organization's root id is unknown (ListRoots has not answered)"
                    .into(),
            )),
            (other, _) => Ok(other.to_string()),
        })
        .collect()
}

/// Differences in the stack set's own settings (everything UpdateStackSet carries except auto-deployment and
/// managed execution, which have their own rules), setting by setting.
pub(super) fn settings_changes(desired: Desired<'_>, observed: &StackSetSettings) -> Vec<Change> {
    let spec = &desired.deployment.spec;
    let mut changes = Vec::new();
    for setting in Setting::ALL {
        match setting {
            Setting::Description => {
                let description = |d: &Option<String>| d.clone().filter(|s| !s.is_empty());
                // UpdateStackSet keeps a description it is not given and cannot clear one: an absent description
                // is not managed (see `notes`), never a change that would be planned again on every pass.
                if spec.description.is_some()
                    && description(&spec.description) != description(&observed.description)
                {
                    changes.push(Change {
                        field: setting.name().into(),
                        from: quoted(observed.description.as_deref()),
                        to: quoted(spec.description.as_deref()),
                    });
                }
            }
            Setting::Template => {
                if !desired.template.same_as(&observed.template_body) {
                    changes.push(Change {
                        field: setting.name().into(),
                        from: format!(
                            "sha256:{}",
                            &crate::template::sha256_hex(observed.template_body.as_bytes())[..12]
                        ),
                        to: format!("sha256:{}", desired.template.short_digest()),
                    });
                }
            }
            Setting::Parameters => diff_parameters(desired, observed, &mut changes),
            Setting::Capabilities => {
                let capabilities = spec.capability_names();
                if capabilities != observed.capabilities {
                    changes.push(Change {
                        field: setting.name().into(),
                        from: join(&observed.capabilities),
                        to: join(&capabilities),
                    });
                }
            }
            Setting::Tags => diff_maps(setting.name(), &observed.tags, &spec.tags, &mut changes),
            // Their own steps and ordering rules (ordering.rs): an auto-deployment change carries no targets, a
            // ManagedExecution change goes alone.
            Setting::AutoDeployment | Setting::ManagedExecution => {}
        }
    }
    changes
}

/// Parameters as CloudFormation resolves them: one the spec leaves out takes the template's Default, and a stack
/// set that reports that value (or none) for it already has what is wanted, so leaving a parameter out is never a
/// difference planned again on every pass.
fn diff_parameters(desired: Desired<'_>, observed: &StackSetSettings, out: &mut Vec<Change>) {
    let spec = &desired.deployment.spec.parameters;
    let declared = desired
        .template
        .document
        .get("Parameters")
        .and_then(|p| p.as_object());
    let default_of = |key: &str| -> Option<String> {
        let default = declared?.get(key)?.get("Default")?;
        Some(match default {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        })
    };
    let keys: BTreeSet<&String> = observed.parameters.keys().chain(spec.keys()).collect();
    for key in keys {
        let have = observed.parameters.get(key);
        match spec.get(key) {
            Some(want) if have != Some(want) => out.push(Change {
                field: format!("parameters.{key}"),
                from: quoted(have.map(String::as_str)),
                to: quoted(Some(want)),
            }),
            Some(_) => {}
            None => {
                let default = default_of(key);
                if have.is_some() && have != default.as_ref() {
                    out.push(Change {
                        field: format!("parameters.{key}"),
                        from: quoted(have.map(String::as_str)),
                        to: default.map_or_else(
                            || "(unset)".to_string(),
                            |d| format!("{d:?} (template default)"),
                        ),
                    });
                }
            }
        }
    }
}

pub(super) fn diff_maps(
    field: &str,
    from: &BTreeMap<String, String>,
    to: &BTreeMap<String, String>,
    out: &mut Vec<Change>,
) {
    let keys: BTreeSet<&String> = from.keys().chain(to.keys()).collect();
    for key in keys {
        let (a, b) = (from.get(key), to.get(key));
        if a != b {
            out.push(Change {
                field: format!("{field}.{key}"),
                from: quoted(a.map(String::as_str)),
                to: quoted(b.map(String::as_str)),
            });
        }
    }
}

pub(super) fn create_step(
    desired: Desired<'_>,
    units: Vec<String>,
    regions: Vec<String>,
    what: &str,
) -> Step {
    let mut changes: Vec<Change> = units
        .iter()
        .map(|u| added("deploymentTargets.organizationalUnitIds", u))
        .collect();
    if what == "new Region" {
        changes = regions.iter().map(|r| added("regions", r)).collect();
    }
    Step {
        purpose: Purpose::Converge,
        summary: format!(
            "create instances for {} {what}(s): {} OU(s) x {} Region(s)",
            changes.len(),
            units.len(),
            regions.len()
        ),
        changes,
        action: Action::CreateStackInstances {
            targets: filtered_targets(desired, units),
            regions,
        },
    }
}

/// These OUs, with the deployment's own account filter: what every creation for whole OUs sends.
pub(super) fn filtered_targets(desired: Desired<'_>, units: Vec<String>) -> Targets {
    let targets = &desired.deployment.spec.deployment_targets;
    Targets {
        organizational_unit_ids: units,
        accounts: targets.accounts.clone(),
        account_filter_type: targets.account_filter_type,
    }
}

pub(super) fn ou_targets(units: impl Iterator<Item = String>) -> Targets {
    Targets {
        organizational_unit_ids: units.collect(),
        accounts: Vec::new(),
        account_filter_type: AccountFilterType::None,
    }
}

/// Exactly these instances: their accounts (INTERSECTION) inside their OUs (every targeted OU when the endpoint
/// does not say which), and their Regions.
pub(super) fn exact_targets(
    instances: &[&StackInstance],
    units: &BTreeSet<String>,
) -> (Targets, Vec<String>) {
    let accounts: BTreeSet<String> = instances.iter().map(|i| i.account.clone()).collect();
    let regions: BTreeSet<String> = instances.iter().map(|i| i.region.clone()).collect();
    let mut own_units: BTreeSet<String> = instances
        .iter()
        .filter_map(|i| i.organizational_unit_id.clone())
        .collect();
    if own_units.is_empty() {
        own_units = units.clone();
    }
    (
        account_targets(own_units.into_iter().collect(), accounts.into_iter()),
        regions.into_iter().collect(),
    )
}

/// Exactly these accounts inside these OUs.
pub(super) fn account_targets(
    units: Vec<String>,
    accounts: impl Iterator<Item = String>,
) -> Targets {
    Targets {
        organizational_unit_ids: units,
        accounts: accounts.collect(),
        account_filter_type: AccountFilterType::Intersection,
    }
}

pub(super) fn added(field: &str, value: &str) -> Change {
    Change {
        field: field.into(),
        from: "(absent)".into(),
        to: value.into(),
    }
}

pub(super) fn removed(field: &str, value: &str) -> Change {
    Change {
        field: field.into(),
        from: value.into(),
        to: "(absent)".into(),
    }
}

pub(super) fn bool_change(field: &str, from: bool, to: bool) -> Change {
    Change {
        field: field.into(),
        from: from.to_string(),
        to: to.to_string(),
    }
}

pub(super) fn quoted(value: Option<&str>) -> String {
    value
        .map(|v| format!("{v:?}"))
        .unwrap_or_else(|| UNSET.into())
}

pub(super) fn join(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        UNSET.into()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(",")
    }
}
