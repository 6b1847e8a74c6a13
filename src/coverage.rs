//! Coverage of the organization: which member accounts the deployment targets, against the instances the stack
//! set has. Pure (organization snapshot + desired targets + instances in, counts and lists out), so `status`,
//! the metrics and the coverage repair all read the same numbers.
//!
//! "Missing" is what the vendor guide calls a "blocked" account: an active member account under a targeted OU (recursively, account
//! filter applied, management account excluded, since CloudFormation never deploys a service-managed instance
//! there) that has no instance in a desired Region. Suspended and closing accounts are neither missing nor
//! failures: they are counted on their own.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::cloud::org::OrgSnapshot;
use crate::cloud::{AccountFilterType, InstanceStatus, StackInstance};
use crate::desired::{Deployment, Ensure, ROOT};

/// An account and a Region.
pub type Slot = (String, String);

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    /// Active member accounts the targets cover.
    pub targeted: BTreeSet<String>,
    /// Targeted accounts that are suspended, pending closure or closed.
    pub inactive: BTreeSet<String>,
    /// Accounts under the targeted OUs that the account filter leaves out (active or not).
    pub excluded: BTreeSet<String>,
    /// Targeted active accounts x desired Regions without an instance.
    pub missing: BTreeSet<Slot>,
    /// Instances outside the targets: an account no longer targeted (or no longer in the organization), or a
    /// Region no longer desired. Usually a deletion still to come, or instances made by someone else.
    pub orphaned: BTreeSet<Slot>,
    /// Instances by status, among all the stack set's instances.
    pub outdated: usize,
    pub inoperable: usize,
    /// Instances whose last operation skipped them because the account is suspended (AWS counts no failure).
    pub skipped_suspended: usize,
}

impl Coverage {
    /// Accounts with at least one missing instance (the `accounts_missing_instance` metric).
    pub fn accounts_missing(&self) -> BTreeSet<&str> {
        self.missing.iter().map(|(a, _)| a.as_str()).collect()
    }
}

/// Compare the targets with the instances. An `ensure: Absent` deployment targets nothing: every instance it
/// still has is orphaned (about to be deleted).
pub fn coverage(
    deployment: &Deployment,
    org: &OrgSnapshot,
    instances: &[StackInstance],
) -> Coverage {
    let spec = &deployment.spec;
    let mut out = Coverage::default();
    for instance in instances {
        match instance.status {
            InstanceStatus::Outdated => out.outdated += 1,
            InstanceStatus::Inoperable => out.inoperable += 1,
            _ => {}
        }
        if instance.skipped_suspended() {
            out.skipped_suspended += 1;
        }
    }
    if spec.ensure == Ensure::Present {
        let targets = &spec.deployment_targets;
        let units = target_units(deployment, org);
        let listed: BTreeSet<&str> = targets.accounts.iter().map(String::as_str).collect();
        for candidate in org.accounts_under(&units) {
            let id = candidate.account.id.as_str();
            let included = match targets.account_filter_type {
                AccountFilterType::Intersection => listed.contains(id),
                AccountFilterType::Difference => !listed.contains(id),
                AccountFilterType::None | AccountFilterType::Union => true,
            };
            if id == org.management_account_id {
                continue;
            }
            if !included {
                out.excluded.insert(id.to_string());
                continue;
            }
            if candidate.account.is_active() {
                out.targeted.insert(id.to_string());
            } else {
                out.inactive.insert(id.to_string());
            }
        }
    }
    let present: BTreeSet<(&str, &str)> = instances
        .iter()
        .map(|i| (i.account.as_str(), i.region.as_str()))
        .collect();
    let regions: BTreeSet<&str> = match spec.ensure {
        Ensure::Present => spec.regions.iter().map(String::as_str).collect(),
        Ensure::Absent => BTreeSet::new(),
    };
    for account in &out.targeted {
        for region in &regions {
            if !present.contains(&(account.as_str(), region)) {
                out.missing.insert((account.clone(), region.to_string()));
            }
        }
    }
    for instance in instances {
        let account_targeted =
            out.targeted.contains(&instance.account) || out.inactive.contains(&instance.account);
        if !account_targeted || !regions.contains(instance.region.as_str()) {
            out.orphaned
                .insert((instance.account.clone(), instance.region.clone()));
        }
    }
    out
}

/// The target OU ids with `ROOT` resolved to the organization's root id.
pub fn target_units(deployment: &Deployment, org: &OrgSnapshot) -> Vec<String> {
    deployment
        .spec
        .deployment_targets
        .organizational_unit_ids
        .iter()
        .map(|u| {
            if u == ROOT {
                org.root_id.clone()
            } else {
                u.clone()
            }
        })
        .collect()
}

/// Targets that lie inside another target (an OU moved under a targeted OU, or listed with its parent): their
/// accounts are already covered. (target id, the enclosing target id).
pub fn nested_targets(deployment: &Deployment, org: &OrgSnapshot) -> Vec<(String, String)> {
    let units = target_units(deployment, org);
    let mut out = Vec::new();
    for outer in &units {
        for inner in org.subtree(outer) {
            if &inner != outer && units.contains(&inner) {
                out.push((inner, outer.clone()));
            }
        }
    }
    out
}

/// Target OUs (or the root) under which no active member account is: (id, name).
pub fn empty_targets(deployment: &Deployment, org: &OrgSnapshot) -> Vec<(String, String)> {
    if deployment.spec.ensure == Ensure::Absent {
        return Vec::new();
    }
    target_units(deployment, org)
        .into_iter()
        .filter(|unit| {
            !org.accounts_under(std::slice::from_ref(unit))
                .iter()
                .any(|a| a.account.is_active() && a.account.id != org.management_account_id)
        })
        .map(|unit| {
            let name = org
                .units
                .get(&unit)
                .map_or_else(|| "unknown".to_string(), |u| u.name.clone());
            (unit, name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{DeploymentYaml, OrgTree};

    fn deployment(extra: &str) -> Deployment {
        DeploymentYaml::new()
            .name("vendor")
            .management_account("100000000000")
            .targets(&["ROOT"], &["us-east-1", "eu-west-1"])
            .spec(extra)
            .build()
    }

    /// Root r-1 holds the management account and OU ou-a, which holds OU ou-b; one suspended account.
    fn org() -> OrgSnapshot {
        OrgTree::new("o-1", "100000000000", "r-1")
            .unit("ou-a", "r-1")
            .unit("ou-b", "ou-a")
            .account("100000000000", "r-1", "ACTIVE")
            .account("200000000000", "ou-a", "ACTIVE")
            .account("300000000000", "ou-b", "ACTIVE")
            .account("400000000000", "ou-b", "SUSPENDED")
            .build()
    }

    use crate::fixtures::instance;

    #[test]
    fn nested_accounts_count_and_the_management_account_is_never_targeted() {
        let c = coverage(&deployment(""), &org(), &[]);
        assert_eq!(
            c.targeted.iter().map(String::as_str).collect::<Vec<_>>(),
            ["200000000000", "300000000000"]
        );
        assert_eq!(
            c.inactive.iter().map(String::as_str).collect::<Vec<_>>(),
            ["400000000000"]
        );
        assert_eq!(c.missing.len(), 4, "2 active accounts x 2 Regions");
        assert_eq!(c.accounts_missing().len(), 2);
    }

    #[test]
    fn statuses_orphans_and_suspended_are_counted_apart() {
        let instances = [
            instance(
                "200000000000",
                "us-east-1",
                InstanceStatus::Current,
                "SUCCEEDED",
            ),
            instance(
                "200000000000",
                "eu-west-1",
                InstanceStatus::Outdated,
                "FAILED",
            ),
            instance(
                "300000000000",
                "us-east-1",
                InstanceStatus::Inoperable,
                "INOPERABLE",
            ),
            // A Region no longer desired, and the management account (moto deploys there): orphans.
            instance(
                "300000000000",
                "ap-south-1",
                InstanceStatus::Current,
                "SUCCEEDED",
            ),
            instance(
                "100000000000",
                "us-east-1",
                InstanceStatus::Current,
                "SUCCEEDED",
            ),
            instance(
                "400000000000",
                "us-east-1",
                InstanceStatus::Outdated,
                "SKIPPED_SUSPENDED_ACCOUNT",
            ),
        ];
        let c = coverage(&deployment(""), &org(), &instances);
        assert_eq!(
            c.missing,
            BTreeSet::from([("300000000000".to_string(), "eu-west-1".to_string())])
        );
        assert_eq!(
            c.orphaned,
            BTreeSet::from([
                ("100000000000".to_string(), "us-east-1".to_string()),
                ("300000000000".to_string(), "ap-south-1".to_string()),
            ])
        );
        assert_eq!((c.outdated, c.inoperable, c.skipped_suspended), (2, 1, 1));
    }

    #[test]
    fn account_filters_narrow_the_targets() {
        let mut d = deployment("");
        d.spec.deployment_targets.accounts = vec!["300000000000".into()];
        d.spec.deployment_targets.account_filter_type = AccountFilterType::Difference;
        let c = coverage(&d, &org(), &[]);
        assert_eq!(c.targeted, BTreeSet::from(["200000000000".to_string()]));
        assert!(c.excluded.contains("300000000000"), "{:?}", c.excluded);
        assert!(!c.excluded.contains("200000000000"));
        d.spec.deployment_targets.account_filter_type = AccountFilterType::Intersection;
        let c = coverage(&d, &org(), &[]);
        assert_eq!(c.targeted, BTreeSet::from(["300000000000".to_string()]));
        assert!(c.excluded.contains("200000000000"), "{:?}", c.excluded);
    }

    #[test]
    fn targets_without_an_active_member_are_named() {
        let mut d = deployment("");
        d.spec.deployment_targets.organizational_unit_ids = vec!["ou-a".into(), "ou-b".into()];
        assert!(empty_targets(&d, &org()).is_empty());
        let mut o = org();
        o.accounts.remove("300000000000");
        // ou-b now only holds the suspended account.
        assert_eq!(
            empty_targets(&d, &o),
            [("ou-b".to_string(), "ou-b".to_string())]
        );
    }

    #[test]
    fn a_target_inside_another_target_is_named() {
        let mut d = deployment("");
        d.spec.deployment_targets.organizational_unit_ids = vec!["ou-a".into(), "ou-b".into()];
        assert_eq!(
            nested_targets(&d, &org()),
            [("ou-b".to_string(), "ou-a".to_string())]
        );
        d.spec.deployment_targets.organizational_unit_ids = vec!["ou-b".into()];
        assert!(nested_targets(&d, &org()).is_empty());
    }

    #[test]
    fn an_absent_deployment_targets_nothing_and_orphans_everything() {
        let mut d = deployment("");
        d.spec.ensure = Ensure::Absent;
        let instances = [instance(
            "200000000000",
            "us-east-1",
            InstanceStatus::Current,
            "SUCCEEDED",
        )];
        let c = coverage(&d, &org(), &instances);
        assert!(c.targeted.is_empty() && c.missing.is_empty());
        assert_eq!(c.orphaned.len(), 1);
    }
}
