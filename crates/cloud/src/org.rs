//! A snapshot of the organization's tree (roots, OUs, accounts) and the walk that builds it from the cloud port's
//! per-parent listings. The walk is shared by every `Cloud` implementation, so `aws` and `sim` list the same way
//! and pay the same calls. It runs on its own slow cadence: a 5,000-account organization is hundreds of pages.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

use super::{Account, Cloud, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgUnit {
    pub id: String,
    pub name: String,
    /// `None` for a root.
    pub parent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgAccount {
    pub account: Account,
    pub parent: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrgSnapshot {
    pub organization_id: String,
    pub management_account_id: String,
    /// ALL or CONSOLIDATED_BILLING (service-managed stack sets need ALL).
    pub feature_set: String,
    pub root_id: String,
    /// Roots and OUs by id.
    pub units: BTreeMap<String, OrgUnit>,
    pub accounts: BTreeMap<String, OrgAccount>,
}

impl OrgSnapshot {
    /// Each unit's child units, by parent id.
    pub fn children(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for unit in self.units.values() {
            if let Some(parent) = &unit.parent {
                children
                    .entry(parent.as_str())
                    .or_default()
                    .push(unit.id.as_str());
            }
        }
        children
    }

    /// The unit and every unit below it (OU targets include child OUs, as in AWS).
    pub fn subtree(&self, unit_id: &str) -> BTreeSet<String> {
        let children = self.children();
        let mut out = BTreeSet::new();
        let mut queue = VecDeque::from([unit_id]);
        while let Some(id) = queue.pop_front() {
            if !self.units.contains_key(id) || !out.insert(id.to_string()) {
                continue;
            }
            queue.extend(children.get(id).into_iter().flatten().copied());
        }
        out
    }

    /// Accounts anywhere below the given units.
    pub fn accounts_under<'a>(&'a self, unit_ids: &[String]) -> Vec<&'a OrgAccount> {
        let units: BTreeSet<String> = unit_ids.iter().flat_map(|id| self.subtree(id)).collect();
        self.accounts
            .values()
            .filter(|a| units.contains(&a.parent))
            .collect()
    }

    pub fn unit_exists(&self, unit_id: &str) -> bool {
        self.units.contains_key(unit_id)
    }
}

/// Walk the organization breadth first from its root.
/// `r-` and 4 to 32 lowercase letters or digits (Organizations' root id pattern).
fn is_root_id(id: &str) -> bool {
    id.strip_prefix("r-").is_some_and(|rest| {
        (4..=32).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// `ou-`, then the root part and the OU part separated by `-` (Organizations' OU id pattern).
fn is_ou_id(id: &str) -> bool {
    id.strip_prefix("ou-").is_some_and(|rest| {
        let mut parts = rest.split('-');
        let ok = |p: Option<&str>, min: usize| {
            p.is_some_and(|p| {
                (min..=32).contains(&p.len())
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
        };
        ok(parts.next(), 4) && ok(parts.next(), 8) && parts.next().is_none()
    })
}

fn partial(what: &str) -> crate::error::Error {
    crate::error::Error::Preflight {
        reason: "organization_listing_incomplete",
        message: format!(
            "the organization listing looks incomplete ({what}); nothing is planned from it, the previous listing \
             stays in use, and the scan is retried"
        ),
    }
}

pub async fn scan(cloud: &dyn Cloud) -> Result<OrgSnapshot> {
    let info = cloud.describe_organization().await?;
    let roots = cloud.list_roots().await?;
    // A listing that looks partial is an error of the scan, never "fewer accounts": the previous snapshot stays
    // in use and plans never see an empty or malformed root (which would drop every target).
    let root_id = match roots.as_slice() {
        [root] if is_root_id(&root.id) => root.id.clone(),
        [] => return Err(partial("ListRoots returned no root")),
        [root] => {
            return Err(partial(&format!(
                "ListRoots returned {:?}, which is not a root id (r-...)",
                root.id
            )));
        }
        many => {
            return Err(partial(&format!(
                "ListRoots returned {} roots; an organization has one",
                many.len()
            )));
        }
    };
    let mut snapshot = OrgSnapshot {
        organization_id: info.id,
        management_account_id: info.management_account_id,
        feature_set: info.feature_set,
        root_id,
        ..OrgSnapshot::default()
    };
    let mut queue: VecDeque<String> = VecDeque::new();
    for root in roots {
        queue.push_back(root.id.clone());
        snapshot.units.insert(
            root.id.clone(),
            OrgUnit {
                id: root.id,
                name: root.name,
                parent: None,
            },
        );
    }
    while let Some(parent) = queue.pop_front() {
        for account in cloud.list_accounts(&parent).await? {
            if account.id.len() != 12 || !account.id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(partial(&format!(
                    "ListAccountsForParent({parent}) returned {:?}, which is not an account id",
                    account.id
                )));
            }
            snapshot.accounts.insert(
                account.id.clone(),
                OrgAccount {
                    account,
                    parent: parent.clone(),
                },
            );
        }
        for unit in cloud.list_organizational_units(&parent).await? {
            if !is_ou_id(&unit.id) {
                return Err(partial(&format!(
                    "ListOrganizationalUnitsForParent({parent}) returned {:?}, which is not an OU id (ou-...)",
                    unit.id
                )));
            }
            queue.push_back(unit.id.clone());
            snapshot.units.insert(
                unit.id.clone(),
                OrgUnit {
                    id: unit.id,
                    name: unit.name,
                    parent: Some(parent.clone()),
                },
            );
        }
    }
    Ok(snapshot)
}
