//! Shared by the fault and crash tests against moto (tests/faults_moto.rs, tests/crash_moto.rs): the fault proxy,
//! the seed, the desired-state file they edit, and the two safety checks read directly from moto through the SDK
//! (never through the proxy): no stack set operation submitted twice, no instance deleted that the desired state
//! keeps.

#![allow(dead_code)]

pub mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use aws_sdk_cloudformation as cfn;

use crate::common::{self, MANAGEMENT_ACCOUNT_ID, MotoServer, REGION};

pub const DEPLOYMENT: &str = "aimably";
pub const STACK_SET: &str = "AimablyDataOnly";

/// The environment variable that replaces a test's default seed (the seed is printed by every run).
pub const SEED_ENV: &str = "FAULT_SEED";

/// `$FAULT_SEED` when set, else the test's default (fixed, so a plain run is reproducible).
pub fn seed(default: u64) -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{SEED_ENV}={text:?} is not a u64: {e}")),
        _ => default,
    }
}

/// moto's address, for the proxy's upstream.
pub fn moto_addr(server: &MotoServer) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port()))
}

/// The stacksetd binary aimed at the proxy instead of moto (credentials and the rest as `common::stacksetd`).
pub fn stacksetd_via(server: &MotoServer, endpoint: &str) -> std::process::Command {
    let mut command = common::stacksetd(server);
    command.env("AWS_ENDPOINT_URL", endpoint);
    command
}

/// The knobs the tests turn; the rest follows the seed's wizard settings.
#[derive(Debug, Clone)]
pub struct Desired {
    pub description: String,
    /// OU ids.
    pub ous: Vec<String>,
}

impl Desired {
    pub fn yaml(&self) -> String {
        let ous = self
            .ous
            .iter()
            .map(|o| format!("\"{o}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            r#"apiVersion: stacksetd.dev/v1alpha1
kind: StackSetDeployment
metadata:
  name: {DEPLOYMENT}
spec:
  stackSetName: {STACK_SET}
  description: "{description}"
  managementAccountId: "{MANAGEMENT_ACCOUNT_ID}"
  template:
    url: "{url}"
  parameters:
    ManagementAccountId: "{MANAGEMENT_ACCOUNT_ID}"
  deploymentTargets:
    organizationalUnitIds: [{ous}]
  regions: [{REGION}]
  autoDeployment: {{enabled: true, retainStacksOnAccountRemoval: false}}
  operationPreferences:
    failureTolerancePercentage: 100
    maxConcurrentPercentage: 100
    concurrencyMode: SOFT_FAILURE_TOLERANCE
"#,
            description = self.description,
            url = common::template_url("aimably-data-only"),
        )
    }
}

/// (account, Region) for every member account under the named OUs (recursively), in the test Region.
pub fn expected_instances(org: &common::Org, ou_names: &[&str]) -> BTreeSet<(String, String)> {
    ou_names
        .iter()
        .flat_map(|name| org.accounts_under(name))
        .map(|account| (account, REGION.to_string()))
        .collect()
}

/// Every operation moto recorded for the stack set, grouped by the change it applies.
#[derive(Debug)]
pub struct OperationAudit {
    /// (id, action, status) in moto's (creation) order.
    pub operations: Vec<(String, String, String)>,
    /// `stacksetd-<action>-<digest>` -> the sequence numbers submitted for it.
    pub by_change: BTreeMap<String, Vec<u64>>,
    /// Ids that are not stacksetd's (`stacksetd-<action>-<digest>-<n>`).
    pub foreign: Vec<String>,
}

impl OperationAudit {
    /// Changes submitted under more than one id: the same base with two sequence numbers.
    pub fn duplicates(&self) -> Vec<(&String, &Vec<u64>)> {
        self.by_change.iter().filter(|(_, n)| n.len() > 1).collect()
    }

    pub fn deletes(&self) -> Vec<&(String, String, String)> {
        self.operations
            .iter()
            .filter(|(_, action, _)| action == "DELETE")
            .collect()
    }

    /// Asserts no duplicate, no foreign id, no failed operation and no delete.
    #[track_caller]
    /// Print the audit with the proxy's report and every operation, then check it.
    pub fn print_and_assert_safe(&self, proxy_report: &str) {
        println!("{}\n{proxy_report}", self.summary());
        for (id, action, status) in &self.operations {
            println!("  {action:<6} {status:<9} {id}");
        }
        self.assert_safe();
    }

    pub fn assert_safe(&self) {
        assert!(
            self.duplicates().is_empty(),
            "a change was submitted twice: {:?}\n{self:#?}",
            self.duplicates()
        );
        assert!(self.foreign.is_empty(), "ids not from stacksetd: {self:#?}");
        assert!(
            self.deletes().is_empty(),
            "the desired state only grew, yet something was deleted: {self:#?}"
        );
        assert!(
            self.operations.iter().all(|(_, _, s)| s == "SUCCEEDED"),
            "{self:#?}"
        );
    }

    pub fn summary(&self) -> String {
        let mut per_action: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, action, _) in &self.operations {
            *per_action.entry(action).or_insert(0) += 1;
        }
        format!(
            "{} operations in moto {per_action:?}, {} distinct changes, duplicates found = {}",
            self.operations.len(),
            self.by_change.len(),
            self.duplicates().len()
        )
    }
}

/// ListStackSetOperations straight from moto (through the SDK, not the proxy), grouped by change.
pub async fn audit_operations(client: &cfn::Client) -> OperationAudit {
    let summaries = common::operations(client, STACK_SET).await;
    let mut audit = OperationAudit {
        operations: Vec::new(),
        by_change: BTreeMap::new(),
        foreign: Vec::new(),
    };
    for op in summaries {
        let id = op.operation_id().unwrap_or("<no id>").to_string();
        let action = op
            .action()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let status = op
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        match id.rsplit_once('-') {
            Some((base, n)) if base.starts_with("stacksetd-") && n.parse::<u64>().is_ok() => {
                audit
                    .by_change
                    .entry(base.to_string())
                    .or_default()
                    .push(n.parse().unwrap());
            }
            _ => audit.foreign.push(id.clone()),
        }
        audit.operations.push((id, action, status));
    }
    audit
}

/// Instances that were there before and are gone now (must be empty while the desired state only grows).
pub fn lost(
    before: &BTreeSet<(String, String)>,
    after: &BTreeSet<(String, String)>,
) -> BTreeSet<(String, String)> {
    before.difference(after).cloned().collect()
}

/// The stack set's instances, or none while the stack set does not exist yet.
pub async fn instances_if_any(client: &cfn::Client) -> BTreeSet<(String, String)> {
    match common::describe_stack_set(client, STACK_SET).await {
        Some(_) => common::instances(client, STACK_SET).await,
        None => BTreeSet::new(),
    }
}
