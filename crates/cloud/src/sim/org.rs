//! The simulated organization tree: one root, nested OUs, member accounts. Ids are generated from the sim's seeded
//! RNG in AWS's shapes (`ou-abcd-12345678`, 12-digit accounts) so logs and the demo read like the real thing and a
//! given seed always builds the same organization.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use rand::rngs::StdRng;

use crate::{Account, OrgNode};

/// Name AWS gives the organization root.
const ROOT_NAME: &str = "Root";
/// Characters of the random part of an OU id (AWS: lowercase letters and digits).
const OU_ID_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Length of the random part of an OU id.
const OU_ID_SUFFIX_LEN: usize = 8;

/// Account states in which CloudFormation does not touch the account (SKIPPED_SUSPENDED_ACCOUNT).
pub(crate) const INACTIVE_STATES: &[&str] = &["SUSPENDED", "PENDING_CLOSURE", "CLOSED"];

#[derive(Debug, Clone)]
pub(crate) struct Unit {
    pub name: String,
    /// `None` for the root.
    pub parent: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub name: String,
    pub state: String,
    pub parent: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Organization {
    pub id: String,
    pub root_id: String,
    pub management_account_id: String,
    /// The root and every OU, by id.
    pub units: BTreeMap<String, Unit>,
    pub accounts: BTreeMap<String, Member>,
    /// ALL or CONSOLIDATED_BILLING.
    pub feature_set: String,
    /// Trusted access for StackSets (the service principal enabled in Organizations).
    pub trusted_access: bool,
    /// Accounts registered as delegated administrators for StackSets.
    pub delegated_admins: std::collections::BTreeSet<String>,
}

impl Organization {
    pub fn new(id: &str, root_id: &str, management_account_id: &str) -> Self {
        let mut units = BTreeMap::new();
        units.insert(
            root_id.to_string(),
            Unit {
                name: ROOT_NAME.to_string(),
                parent: None,
            },
        );
        let mut accounts = BTreeMap::new();
        accounts.insert(
            management_account_id.to_string(),
            Member {
                name: "management".to_string(),
                state: "ACTIVE".to_string(),
                parent: root_id.to_string(),
            },
        );
        Organization {
            id: id.to_string(),
            root_id: root_id.to_string(),
            management_account_id: management_account_id.to_string(),
            units,
            accounts,
            feature_set: "ALL".to_string(),
            trusted_access: true,
            delegated_admins: Default::default(),
        }
    }

    pub fn unit_exists(&self, id: &str) -> bool {
        self.units.contains_key(id)
    }

    /// Adds an OU under `parent`; the id embeds the root's suffix, as AWS's do.
    pub fn add_ou(&mut self, rng: &mut StdRng, parent: &str, name: &str) -> Option<String> {
        if !self.unit_exists(parent) {
            return None;
        }
        let root_suffix = self.root_id.trim_start_matches("r-").to_string();
        let id = loop {
            let suffix: String = (0..OU_ID_SUFFIX_LEN)
                .map(|_| OU_ID_CHARS[rng.random_range(0..OU_ID_CHARS.len())] as char)
                .collect();
            let id = format!("ou-{root_suffix}-{suffix}");
            if !self.units.contains_key(&id) {
                break id;
            }
        };
        self.units.insert(
            id.clone(),
            Unit {
                name: name.to_string(),
                parent: Some(parent.to_string()),
            },
        );
        Some(id)
    }

    /// Adds an ACTIVE account under `parent` with a fresh 12-digit id.
    pub fn add_account(&mut self, rng: &mut StdRng, parent: &str, name: &str) -> Option<String> {
        if !self.unit_exists(parent) {
            return None;
        }
        let id = loop {
            let id = format!(
                "{:012}",
                rng.random_range(100_000_000_000u64..1_000_000_000_000)
            );
            if !self.accounts.contains_key(&id) {
                break id;
            }
        };
        self.accounts.insert(
            id.clone(),
            Member {
                name: name.to_string(),
                state: "ACTIVE".to_string(),
                parent: parent.to_string(),
            },
        );
        Some(id)
    }

    /// Walks up from `unit` (inclusive) and returns the first unit that satisfies `pick`: the targeted OU through
    /// which an account is reached is the closest targeted ancestor, as AWS reports in StackInstance.OrganizationalUnitId.
    pub fn nearest_of(&self, unit: &str, pick: impl Fn(&str) -> bool) -> Option<String> {
        let mut current = Some(unit.to_string());
        // The tree is acyclic by construction (move_account never moves units), so this terminates.
        while let Some(id) = current {
            if pick(&id) {
                return Some(id);
            }
            current = self.units.get(&id).and_then(|u| u.parent.clone());
        }
        None
    }

    /// The closest of `targets` that contains the account, if any.
    pub fn targeted_via(&self, account: &str, targets: &[String]) -> Option<String> {
        let parent = &self.accounts.get(account)?.parent;
        self.nearest_of(parent, |id| targets.iter().any(|t| t == id))
    }

    /// Every account below any of `targets` (child OUs included), with the targeted OU it is reached through.
    pub fn accounts_under(&self, targets: &[String]) -> BTreeMap<String, String> {
        self.accounts
            .keys()
            .filter_map(|id| Some((id.clone(), self.targeted_via(id, targets)?)))
            .collect()
    }

    pub fn is_inactive(&self, account: &str) -> bool {
        self.accounts
            .get(account)
            .is_some_and(|a| INACTIVE_STATES.contains(&a.state.as_str()))
    }

    pub fn child_units(&self, parent: &str) -> Vec<OrgNode> {
        self.units
            .iter()
            .filter(|(_, u)| u.parent.as_deref() == Some(parent))
            .map(|(id, u)| OrgNode {
                id: id.clone(),
                name: u.name.clone(),
            })
            .collect()
    }

    pub fn child_accounts(&self, parent: &str) -> Vec<Account> {
        self.accounts
            .iter()
            .filter(|(_, a)| a.parent == parent)
            .map(|(id, a)| Account {
                id: id.clone(),
                name: a.name.clone(),
                state: a.state.clone(),
            })
            .collect()
    }

    pub fn unit_ids(&self) -> BTreeSet<String> {
        self.units.keys().cloned().collect()
    }
}

/// The demo organization's layout: (OU name, parent OU name or None for the root, member account names).
pub(crate) const REALISTIC_LAYOUT: &[(&str, Option<&str>, &[&str])] = &[
    (
        "Security",
        None,
        &["security-audit", "log-archive", "security-tooling"],
    ),
    (
        "Infrastructure",
        None,
        &[
            "network-hub",
            "shared-services",
            "backup-vault",
            "identity",
            "dns",
            "logging",
        ],
    ),
    ("Workloads", None, &["workloads-shared"]),
    (
        "Prod",
        Some("Workloads"),
        &[
            "prod-payments",
            "prod-checkout",
            "prod-catalog",
            "prod-search",
            "prod-analytics",
            "prod-data-lake",
            "prod-api-gateway",
            "prod-notifications",
            "prod-identity",
            "prod-reporting",
            "prod-billing",
            "prod-ml",
        ],
    ),
    (
        "Dev",
        Some("Workloads"),
        &[
            "dev-payments",
            "dev-checkout",
            "dev-catalog",
            "dev-search",
            "dev-analytics",
            "dev-data-lake",
            "dev-api-gateway",
            "dev-ml",
            "staging",
        ],
    ),
    (
        "Sandbox",
        None,
        &[
            "sandbox-alice",
            "sandbox-bob",
            "sandbox-carol",
            "sandbox-dave",
            "sandbox-erin",
            "sandbox-frank",
            "sandbox-grace",
            "sandbox-heidi",
            "sandbox-ivan",
        ],
    ),
];

/// The demo account that is SUSPENDED (a closed sandbox, the usual case).
pub(crate) const REALISTIC_SUSPENDED: &str = "sandbox-frank";
