//! Every account's state for one deployment, in the organization's tree: what `GET /` colours and
//! `stacksetd status --tree` prints. Per-account state cannot be a Prometheus label (unbounded), so it lives in
//! /status (`observed.organization`), computed by the pass from what it already holds: the organization scan,
//! the instances and the coverage (pure; no call).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::cloud::org::OrgSnapshot;
use crate::cloud::{InstanceStatus, StackInstance};
use crate::coverage::Coverage;
use crate::desired::Deployment;

/// One account's state, worst first: an account with a failed instance in one Region and a missing one in
/// another is `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountState {
    /// An instance FAILED or INOPERABLE in a desired Region.
    Failed,
    /// Targeted, active, and without an instance in at least one desired Region (the vendor's "blocked").
    Missing,
    /// The member access check could not assume the vendor's role (overlaid from the access check).
    AccessFailed,
    /// An instance OUTDATED, or being worked on by an operation.
    Outdated,
    /// Every desired Region has a CURRENT instance.
    Current,
    /// Suspended, pending closure or closed: not a failure, not missing.
    Inactive,
    /// Under a targeted OU but left out by the account filter.
    Excluded,
    /// The management account: a service-managed stack set never deploys there.
    Management,
    /// Not under any targeted OU.
    Outside,
}

impl AccountState {
    pub const ALL: [AccountState; 9] = [
        AccountState::Failed,
        AccountState::Missing,
        AccountState::AccessFailed,
        AccountState::Outdated,
        AccountState::Current,
        AccountState::Inactive,
        AccountState::Excluded,
        AccountState::Management,
        AccountState::Outside,
    ];

    /// The name in /status, the page's CSS class (`state-<name>`) and `--state`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Failed => "failed",
            AccountState::Missing => "missing",
            AccountState::AccessFailed => "access-failed",
            AccountState::Outdated => "outdated",
            AccountState::Current => "current",
            AccountState::Inactive => "inactive",
            AccountState::Excluded => "excluded",
            AccountState::Management => "management",
            AccountState::Outside => "outside",
        }
    }

    /// What it means, for the legend.
    pub fn meaning(self) -> &'static str {
        match self {
            AccountState::Failed => {
                "an instance FAILED or INOPERABLE (hover for CloudFormation's reason)"
            }
            AccountState::Missing => "no instance in a desired Region: the vendor cannot read it",
            AccountState::AccessFailed => "the access check could not assume the vendor's role",
            AccountState::Outdated => "an instance OUTDATED or being updated",
            AccountState::Current => "every desired Region has a CURRENT instance",
            AccountState::Inactive => "suspended or closed",
            AccountState::Excluded => "left out by the account filter",
            AccountState::Management => {
                "the management account: a service-managed stack set never deploys there"
            }
            AccountState::Outside => "not under a targeted OU",
        }
    }

    pub fn parse(text: &str) -> Option<AccountState> {
        AccountState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// The organization as one deployment sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OrganizationView {
    pub root: UnitView,
    /// Accounts per state (every state present, zeros included, in `AccountState::ALL` order).
    pub counts: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UnitView {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<UnitView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub id: String,
    pub name: String,
    pub state: AccountState,
    /// Why: CloudFormation's status reason, the Regions missing, the access check's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Every account of the organization with its state for `deployment` (pure).
pub fn view(
    deployment: &Deployment,
    org: &OrgSnapshot,
    instances: &[StackInstance],
    coverage: &Coverage,
) -> OrganizationView {
    // Under the targeted OUs: what the coverage already sorted into targeted, inactive and excluded.
    let in_scope = |id: &str| {
        coverage.targeted.contains(id)
            || coverage.inactive.contains(id)
            || coverage.excluded.contains(id)
    };
    let regions: BTreeSet<&str> = deployment.spec.regions.iter().map(String::as_str).collect();
    let mut by_account: BTreeMap<&str, Vec<&StackInstance>> = BTreeMap::new();
    for instance in instances
        .iter()
        .filter(|i| regions.contains(i.region.as_str()))
    {
        by_account
            .entry(instance.account.as_str())
            .or_default()
            .push(instance);
    }
    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (account, region) in &coverage.missing {
        missing
            .entry(account.as_str())
            .or_default()
            .push(region.as_str());
    }
    let state_of = |id: &str, active: bool| -> (AccountState, Option<String>) {
        if id == org.management_account_id {
            return (AccountState::Management, None);
        }
        if !in_scope(id) {
            return (AccountState::Outside, None);
        }
        if !active {
            return (AccountState::Inactive, None);
        }
        if !coverage.targeted.contains(id) {
            return (AccountState::Excluded, None);
        }
        let mine = by_account.get(id).map(Vec::as_slice).unwrap_or_default();
        if let Some(bad) = mine.iter().find(|i| {
            i.status == InstanceStatus::Inoperable || i.detailed_status.as_deref() == Some("FAILED")
        }) {
            let reason = bad
                .status_reason
                .clone()
                .unwrap_or_else(|| format!("{} in {}", bad.status.as_str(), bad.region));
            return (AccountState::Failed, Some(reason));
        }
        if let Some(regions) = missing.get(id) {
            return (
                AccountState::Missing,
                Some(format!("no instance in {}", regions.join(", "))),
            );
        }
        if mine
            .iter()
            .any(|i| i.status == InstanceStatus::Outdated || i.in_progress())
        {
            return (AccountState::Outdated, None);
        }
        (AccountState::Current, None)
    };
    let mut accounts_in: BTreeMap<&str, Vec<AccountView>> = BTreeMap::new();
    for placed in org.accounts.values() {
        let (state, reason) = state_of(&placed.account.id, placed.account.is_active());
        accounts_in
            .entry(placed.parent.as_str())
            .or_default()
            .push(AccountView {
                id: placed.account.id.clone(),
                name: placed.account.name.clone(),
                state,
                reason,
            });
    }
    let root = build_unit(org, &org.root_id, &org.children(), &mut accounts_in, 0);
    let mut out = OrganizationView {
        root,
        counts: BTreeMap::new(),
    };
    out.recount();
    out
}

/// Deeper than Organizations allows (5 levels of OUs): a cycle in a malformed snapshot stops here.
const MAX_DEPTH: usize = 16;

fn build_unit(
    org: &OrgSnapshot,
    id: &str,
    children: &BTreeMap<&str, Vec<&str>>,
    accounts_in: &mut BTreeMap<&str, Vec<AccountView>>,
    depth: usize,
) -> UnitView {
    let name = org
        .units
        .get(id)
        .map(|u| u.name.clone())
        .unwrap_or_default();
    let mut units: Vec<UnitView> = if depth < MAX_DEPTH {
        children
            .get(id)
            .into_iter()
            .flatten()
            .map(|child| build_unit(org, child, children, accounts_in, depth + 1))
            .collect()
    } else {
        Vec::new()
    };
    units.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let mut accounts = accounts_in.remove(id).unwrap_or_default();
    accounts.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    UnitView {
        id: id.to_string(),
        name,
        units,
        accounts,
    }
}

/// The states the vendor's diagram shows as "blocked" (the vendor cannot read the account): counted in the
/// headline of the page and of `status --tree`.
pub const BLOCKED: [AccountState; 3] = [
    AccountState::Missing,
    AccountState::AccessFailed,
    AccountState::Failed,
];

impl OrganizationView {
    /// How many accounts are blocked (`BLOCKED`).
    pub fn blocked(&self) -> usize {
        BLOCKED
            .iter()
            .map(|s| self.counts.get(s.as_str()).copied().unwrap_or(0))
            .sum()
    }

    /// Mark the accounts whose role the access check could not assume (only where the stack set itself is
    /// fine: a failed or missing instance explains a failed access already).
    pub fn overlay_access_failures(&mut self, failures: &BTreeMap<String, String>) {
        if failures.is_empty() {
            return;
        }
        self.root.each_account(&mut |a| {
            if let Some(reason) = failures.get(&a.id)
                && matches!(a.state, AccountState::Current | AccountState::Outdated)
            {
                a.state = AccountState::AccessFailed;
                a.reason = Some(reason.clone());
            }
        });
        self.recount();
    }

    fn recount(&mut self) {
        let mut counts: BTreeMap<String, usize> = AccountState::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        self.root.each_account(&mut |a| {
            *counts.entry(a.state.as_str().to_string()).or_default() += 1;
        });
        self.counts = counts;
    }

    /// Every account, depth first.
    pub fn accounts(&self) -> Vec<&AccountView> {
        let mut out = Vec::new();
        self.root.collect(&mut out);
        out
    }
}

impl UnitView {
    fn each_account(&mut self, f: &mut impl FnMut(&mut AccountView)) {
        self.accounts.iter_mut().for_each(&mut *f);
        for unit in &mut self.units {
            unit.each_account(f);
        }
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a AccountView>) {
        out.extend(self.accounts.iter());
        for unit in &self.units {
            unit.collect(out);
        }
    }

    /// Whether any account at or below this unit is in one of `states`.
    pub fn has_any(&self, states: &[AccountState]) -> bool {
        self.accounts.iter().any(|a| states.contains(&a.state))
            || self.units.iter().any(|u| u.has_any(states))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{DeploymentYaml, OrgTree};

    use crate::fixtures::instance;

    #[test]
    fn every_account_gets_exactly_one_state_and_the_tree_keeps_the_organization() {
        let org = OrgTree::new("o-1", "111111111111", "r-root")
            .unit("ou-abcd-prod0001", "r-root")
            .unit("ou-abcd-deep0001", "ou-abcd-prod0001")
            .unit("ou-abcd-sand0001", "r-root")
            .account("111111111111", "r-root", "ACTIVE")
            .account("200000000001", "ou-abcd-prod0001", "ACTIVE")
            .account("200000000002", "ou-abcd-prod0001", "ACTIVE")
            .account("200000000003", "ou-abcd-deep0001", "ACTIVE")
            .account("200000000004", "ou-abcd-deep0001", "ACTIVE")
            .account("200000000005", "ou-abcd-prod0001", "SUSPENDED")
            .account("200000000006", "ou-abcd-prod0001", "ACTIVE")
            .account("200000000007", "ou-abcd-prod0001", "ACTIVE")
            .account("300000000001", "ou-abcd-sand0001", "ACTIVE")
            .build();
        let deployment = DeploymentYaml::new()
            .spec(
                "  deploymentTargets:\n    organizationalUnitIds: [ou-abcd-prod0001]\n    accountFilterType: DIFFERENCE\n    accounts: [\"200000000007\"]\n  regions: [us-east-1]\n",
            )
            .build();
        let region = deployment.spec.regions[0].clone();
        let instances = vec![
            instance(
                "200000000001",
                &region,
                InstanceStatus::Current,
                "SUCCEEDED",
            ),
            instance("200000000002", &region, InstanceStatus::Outdated, "FAILED"),
            instance("200000000003", &region, InstanceStatus::Outdated, "RUNNING"),
            instance(
                "200000000006",
                &region,
                InstanceStatus::Current,
                "SUCCEEDED",
            ),
        ];
        let cov = crate::coverage::coverage(&deployment, &org, &instances);
        let mut view = view(&deployment, &org, &instances, &cov);
        let state = |v: &OrganizationView, id: &str| {
            v.accounts()
                .into_iter()
                .find(|a| a.id == id)
                .map(|a| a.state)
                .unwrap()
        };
        assert_eq!(state(&view, "111111111111"), AccountState::Management);
        assert_eq!(state(&view, "200000000001"), AccountState::Current);
        assert_eq!(state(&view, "200000000002"), AccountState::Failed);
        assert_eq!(state(&view, "200000000003"), AccountState::Outdated);
        assert_eq!(state(&view, "200000000004"), AccountState::Missing);
        assert_eq!(state(&view, "200000000005"), AccountState::Inactive);
        assert_eq!(state(&view, "200000000007"), AccountState::Excluded);
        assert_eq!(state(&view, "300000000001"), AccountState::Outside);
        let failed = view
            .accounts()
            .into_iter()
            .find(|a| a.id == "200000000002")
            .unwrap();
        assert_eq!(failed.reason.as_deref(), Some("Role already exists"));
        assert_eq!(view.accounts().len(), 9, "every account once");
        assert_eq!(view.counts.values().sum::<usize>(), 9);
        // The tree: root -> prod -> deep, sandbox; accounts where they are.
        assert_eq!(view.root.id, "r-root");
        let prod = view
            .root
            .units
            .iter()
            .find(|u| u.id == "ou-abcd-prod0001")
            .unwrap();
        assert_eq!(prod.units[0].id, "ou-abcd-deep0001");
        assert_eq!(prod.units[0].accounts.len(), 2);
        assert!(view.root.has_any(&[AccountState::Failed]));

        let failures = BTreeMap::from([
            ("200000000006".to_string(), "access_denied".to_string()),
            ("200000000004".to_string(), "access_denied".to_string()),
        ]);
        view.overlay_access_failures(&failures);
        assert_eq!(state(&view, "200000000006"), AccountState::AccessFailed);
        assert_eq!(
            state(&view, "200000000004"),
            AccountState::Missing,
            "missing explains it"
        );
        assert_eq!(view.counts["access-failed"], 1);
        assert_eq!(view.counts["current"], 1);
    }

    #[test]
    fn state_names_round_trip() {
        for state in AccountState::ALL {
            assert_eq!(AccountState::parse(state.as_str()), Some(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
    }
}

/// The account view on generated organizations (proptest, fixed seed): every account exactly once, under its
/// own unit; counts that add up; and each state backed by what it claims.
#[cfg(test)]
mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::fixtures::{DeploymentYaml, OrgTree, instance};

    const CASES: u32 = 96;
    const SEED: u64 = 0xacc0_0017;
    const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

    fn ou(i: usize) -> String {
        format!("ou-abcd-{i:08}")
    }

    fn account(i: usize) -> String {
        format!("{:012}", 200_000_000_000u64 + i as u64)
    }

    #[test]
    fn every_account_once_under_its_unit_with_a_state_it_can_back() {
        let mut runner = crate::fixtures::proptest_runner(CASES, SEED);
        // Units: each one's parent is the root or an earlier unit. Accounts: a unit (or the root), active or
        // not. Instances: per account and Region, none, CURRENT, OUTDATED or FAILED.
        let case = (1usize..6).prop_flat_map(|units| {
            (
                proptest::collection::vec(0..units, units),
                proptest::collection::vec((0..=units, any::<bool>()), 1..12),
                proptest::collection::vec(0u8..4, 24),
                proptest::collection::btree_set(0..units, 1..=units),
                0u8..3,
            )
        });
        runner
            .run(&case, |(parents, accounts, instance_kinds, targets, filter)| {
                let mut tree = OrgTree::new("o-1", "111111111111", "r-root")
                    .account("111111111111", "r-root", "ACTIVE");
                for (i, parent) in parents.iter().enumerate() {
                    let parent = if *parent < i { ou(*parent) } else { "r-root".to_string() };
                    tree = tree.unit(&ou(i), &parent);
                }
                let mut placed = BTreeMap::new();
                for (i, (unit, active)) in accounts.iter().enumerate() {
                    let unit = if *unit < parents.len() { ou(*unit) } else { "r-root".into() };
                    tree = tree.account(&account(i), &unit, if *active { "ACTIVE" } else { "SUSPENDED" });
                    placed.insert(account(i), unit);
                }
                placed.insert("111111111111".into(), "r-root".into());
                let org = tree.build();
                let filter_line = match filter {
                    0 => String::new(),
                    kind => format!(
                        "\n    accountFilterType: {}\n    accounts: [\"{}\"]",
                        if kind == 1 { "DIFFERENCE" } else { "INTERSECTION" },
                        account(0)
                    ),
                };
                let units: Vec<String> = targets.iter().map(|t| ou(*t)).collect();
                let deployment = DeploymentYaml::new()
                    .spec(&format!(
                        "  deploymentTargets:\n    organizationalUnitIds: [{}]{filter_line}\n  regions: [{}]\n",
                        units.join(", "),
                        REGIONS.join(", ")
                    ))
                    .build();
                let mut instances = Vec::new();
                for (i, _) in accounts.iter().enumerate() {
                    for (r, region) in REGIONS.iter().enumerate() {
                        match instance_kinds[(i * 2 + r) % instance_kinds.len()] {
                            1 => instances.push(instance(&account(i), region, InstanceStatus::Current, "SUCCEEDED")),
                            2 => instances.push(instance(&account(i), region, InstanceStatus::Outdated, "RUNNING")),
                            3 => instances.push(instance(&account(i), region, InstanceStatus::Outdated, "FAILED")),
                            _ => {}
                        }
                    }
                }
                let coverage = crate::coverage::coverage(&deployment, &org, &instances);
                let view = view(&deployment, &org, &instances, &coverage);

                // Every account exactly once, under its own unit.
                let mut seen = BTreeMap::new();
                fn walk<'a>(u: &'a UnitView, out: &mut BTreeMap<String, (&'a str, AccountState)>) {
                    for a in &u.accounts {
                        assert!(out.insert(a.id.clone(), (u.id.as_str(), a.state)).is_none(), "{} twice", a.id);
                    }
                    for child in &u.units {
                        walk(child, out);
                    }
                }
                walk(&view.root, &mut seen);
                prop_assert_eq!(seen.len(), placed.len());
                for (id, unit) in &placed {
                    prop_assert_eq!(seen[id].0, unit.as_str(), "{} under its unit", id);
                }
                prop_assert_eq!(view.counts.values().sum::<usize>(), placed.len());

                // Each state backed by the inputs.
                let mine = |id: &str| instances.iter().filter(|i| i.account == id).collect::<Vec<_>>();
                for (id, (_, state)) in &seen {
                    match state {
                        AccountState::Management => prop_assert_eq!(id.as_str(), "111111111111"),
                        AccountState::Current => {
                            prop_assert!(coverage.targeted.contains(id));
                            prop_assert!(REGIONS.iter().all(|r| mine(id).iter().any(|i| i.region == *r
                                && i.status == InstanceStatus::Current)));
                        }
                        AccountState::Missing => {
                            prop_assert!(coverage.missing.iter().any(|(a, _)| a == id));
                        }
                        AccountState::Failed => {
                            prop_assert!(mine(id).iter().any(|i| i.detailed_status.as_deref() == Some("FAILED")));
                        }
                        AccountState::Outdated => {
                            prop_assert!(mine(id).iter().any(|i| i.status == InstanceStatus::Outdated));
                        }
                        AccountState::Inactive => {
                            prop_assert!(org.accounts.get(id).is_some_and(|a| !a.account.is_active()));
                        }
                        AccountState::Excluded => {
                            prop_assert!(filter != 0 && !coverage.targeted.contains(id));
                        }
                        AccountState::Outside => {
                            prop_assert!(!coverage.targeted.contains(id) && !coverage.inactive.contains(id));
                        }
                        AccountState::AccessFailed => prop_assert!(false, "no access check here"),
                    }
                    // A targeted active account is never shown as outside, excluded or inactive.
                    if coverage.targeted.contains(id) {
                        prop_assert!(matches!(
                            state,
                            AccountState::Current | AccountState::Missing | AccountState::Failed | AccountState::Outdated
                        ), "{} targeted but {:?}", id, state);
                    }
                }
                Ok(())
            })
            .unwrap();
    }
}
