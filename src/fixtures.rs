//! Builders the unit tests share: a deployment from a few spec lines, and an organization tree. Tests say what
//! differs from the defaults and nothing else, so a new required field is added here once, not in every module.

pub use stacksetd_core::fixtures::{DeploymentYaml, proptest_runner};

use crate::cloud::Account;
use crate::cloud::org::{OrgAccount, OrgSnapshot, OrgUnit};

/// An organization tree: its root, OUs under their parents and accounts with their states.
pub struct OrgTree(OrgSnapshot);

impl OrgTree {
    /// An organization with all features and only its root.
    pub fn new(organization: &str, management: &str, root: &str) -> OrgTree {
        let mut org = OrgSnapshot {
            organization_id: organization.into(),
            management_account_id: management.into(),
            feature_set: "ALL".into(),
            root_id: root.into(),
            ..OrgSnapshot::default()
        };
        org.units.insert(
            root.into(),
            OrgUnit {
                id: root.into(),
                name: root.into(),
                parent: None,
            },
        );
        OrgTree(org)
    }

    /// An OU (named as its id) under `parent`.
    pub fn unit(mut self, id: &str, parent: &str) -> Self {
        self.0.units.insert(
            id.into(),
            OrgUnit {
                id: id.into(),
                name: id.into(),
                parent: Some(parent.into()),
            },
        );
        self
    }

    /// An account (named as its id) under `parent`, in `state` (ACTIVE, SUSPENDED, ...).
    pub fn account(mut self, id: &str, parent: &str, state: &str) -> Self {
        self.0.accounts.insert(
            id.into(),
            OrgAccount {
                account: Account {
                    id: id.into(),
                    name: id.into(),
                    state: state.into(),
                },
                parent: parent.into(),
            },
        );
        self
    }

    pub fn build(self) -> OrgSnapshot {
        self.0
    }
}

/// A stack instance in `region` with its status and detailed status (in OU `r-1`; a FAILED one says why).
pub fn instance(
    account: &str,
    region: &str,
    status: crate::cloud::InstanceStatus,
    detailed: &str,
) -> crate::cloud::StackInstance {
    crate::cloud::StackInstance {
        account: account.into(),
        region: region.into(),
        organizational_unit_id: Some("r-1".into()),
        status,
        detailed_status: Some(detailed.into()),
        status_reason: (detailed == "FAILED").then(|| "Role already exists".to_string()),
        drift_status: None,
        last_operation_id: None,
    }
}
