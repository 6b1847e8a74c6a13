//! Shared by the fault and crash tests against moto (tests/faults_moto.rs, tests/crash_moto.rs): the fault proxy,
//! the seed, the desired-state file they edit, and the two safety checks read directly from moto through the SDK
//! (never through the proxy): no change applied twice (judged by what the requests the proxy forwarded ask for,
//! not by their ids), no instance deleted that the desired state keeps.

#![allow(dead_code)]

pub mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use aws_sdk_cloudformation as cfn;

use crate::common::{self, MotoServer, REGION};
use proxy::FaultProxy;

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

use crate::common::STACK_SET;

/// (account, Region) for every member account under the named OUs (recursively), in the test Region.
pub fn expected_instances(org: &common::Org, ou_names: &[&str]) -> BTreeSet<(String, String)> {
    ou_names
        .iter()
        .flat_map(|name| org.accounts_under(name))
        .map(|account| (account, REGION.to_string()))
        .collect()
}

/// Every operation moto recorded for the stack set, each with the change the proxy saw its id carry.
#[derive(Debug)]
pub struct OperationAudit {
    /// (id, action, status, change) in moto's (creation) order; `change` is `None` for an id the proxy never
    /// forwarded (not stacksetd's).
    pub operations: Vec<(String, String, String, Option<String>)>,
    /// Ids the proxy saw carry two different changes (an id must name one change).
    pub reused_ids: Vec<String>,
}

impl OperationAudit {
    /// A change applied twice: two accepted operations in a row that ask for the same thing, the first of which
    /// had succeeded. Found by what the requests ask for, not by their ids, so a second id for one change (or a
    /// new sequence number) is caught as surely as a resent one. (Nothing else changes the organization in these
    /// tests, and moto has no auto-deployment, so a success leaves nothing to do again.)
    pub fn duplicates(&self) -> Vec<(&str, &str)> {
        self.operations
            .windows(2)
            .filter_map(|pair| {
                let [(first, action, status, change), (second, _, _, next)] = pair else {
                    return None;
                };
                (action != "DETECT_DRIFT"
                    && status == "SUCCEEDED"
                    && change.is_some()
                    && change == next)
                    .then_some((first.as_str(), second.as_str()))
            })
            .collect()
    }

    pub fn deletes(&self) -> Vec<&str> {
        self.operations
            .iter()
            .filter(|(_, action, _, _)| action == "DELETE")
            .map(|(id, ..)| id.as_str())
            .collect()
    }

    /// Ids moto has that stacksetd never sent through the proxy.
    pub fn foreign(&self) -> Vec<&str> {
        self.operations
            .iter()
            .filter(|(.., change)| change.is_none())
            .map(|(id, ..)| id.as_str())
            .collect()
    }

    /// Print the audit with the proxy's report and every operation, then check it.
    #[track_caller]
    pub fn print_and_assert_safe(&self, proxy_report: &str) {
        println!("{}\n{proxy_report}", self.summary());
        for (id, action, status, _) in &self.operations {
            println!("  {action:<6} {status:<9} {id}");
        }
        self.assert_safe();
    }

    /// Asserts no change applied twice, no id naming two changes, no foreign id, no failed operation, no delete.
    #[track_caller]
    pub fn assert_safe(&self) {
        assert!(
            self.duplicates().is_empty(),
            "a change was submitted twice: {:?}\n{self:#?}",
            self.duplicates()
        );
        assert!(
            self.reused_ids.is_empty(),
            "an id carried two changes: {self:#?}"
        );
        assert!(
            self.foreign().is_empty(),
            "ids not from stacksetd: {self:#?}"
        );
        assert!(
            self.deletes().is_empty(),
            "the desired state only grew, yet something was deleted: {self:#?}"
        );
        assert!(
            self.operations.iter().all(|(_, _, s, _)| s == "SUCCEEDED"),
            "{self:#?}"
        );
    }

    pub fn summary(&self) -> String {
        let mut per_action: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, action, _, _) in &self.operations {
            *per_action.entry(action).or_insert(0) += 1;
        }
        let changes: BTreeSet<&Option<String>> = self.operations.iter().map(|(.., c)| c).collect();
        format!(
            "{} operations in moto {per_action:?}, {} distinct changes, changes applied twice = {}",
            self.operations.len(),
            changes.len(),
            self.duplicates().len()
        )
    }
}

/// ListStackSetOperations straight from moto (through the SDK, not the proxy), each operation joined with the
/// change its id carried through the proxy.
pub async fn audit_operations(client: &cfn::Client, proxy: &FaultProxy) -> OperationAudit {
    let mut changes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for mutation in proxy.mutations() {
        if let Some(id) = mutation.operation_id {
            changes.entry(id).or_default().insert(mutation.change);
        }
    }
    let operations = common::operations(client, STACK_SET)
        .await
        .into_iter()
        .map(|op| {
            let id = op.operation_id().unwrap_or("<no id>").to_string();
            let action = op
                .action()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default();
            let status = op
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            let change = changes.get(&id).and_then(|c| c.first().cloned());
            (id, action, status, change)
        })
        .collect();
    OperationAudit {
        operations,
        reused_ids: changes
            .into_iter()
            .filter(|(_, c)| c.len() > 1)
            .map(|(id, _)| id)
            .collect(),
    }
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
        Some(_) => common::instances_any_status(client, STACK_SET).await,
        None => BTreeSet::new(),
    }
}

/// The actions deploy/iam/stacksetd-policy.json grants.
pub fn policy_actions() -> BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(stacksetd::cloud::aws::errors::POLICY_FILE);
    let text = std::fs::read_to_string(&path).expect("the IAM policy file exists");
    let policy: serde_json::Value = serde_json::from_str(&text).expect("the policy is JSON");
    policy["Statement"]
        .as_array()
        .expect("Statement is a list")
        .iter()
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

/// The IAM action of every request the proxy saw (`service:Action`, the service from the SigV4 scope), whatever
/// became of it.
pub fn called_actions(proxy: &FaultProxy) -> BTreeSet<String> {
    proxy
        .counts()
        .keys()
        .map(|(service, action, _)| format!("{service}:{action}"))
        .collect()
}

/// Every call stacksetd made through the proxy is granted by the shipped IAM policy and named in stacksetd's IAM
/// table (the one its AccessDenied messages quote), and the calls include `expected` (so a run that made none
/// cannot pass). Returns the policy's actions this run did not exercise, for the test to print.
#[track_caller]
pub fn assert_calls_granted(proxy: &FaultProxy, expected: &[&str]) -> BTreeSet<String> {
    let called = called_actions(proxy);
    let granted = policy_actions();
    let table: BTreeSet<&str> = stacksetd::cloud::aws::errors::IAM_ACTIONS
        .iter()
        .map(|(_, _, action)| *action)
        .collect();
    let ungranted: Vec<&String> = called.iter().filter(|a| !granted.contains(*a)).collect();
    assert!(
        ungranted.is_empty(),
        "stacksetd called {ungranted:?}, which deploy/iam/stacksetd-policy.json does not grant (it grants {granted:?})"
    );
    let untabled: Vec<&String> = called
        .iter()
        .filter(|a| !table.contains(a.as_str()))
        .collect();
    assert!(
        untabled.is_empty(),
        "stacksetd called {untabled:?}, missing from its IAM table (crates/cloud/src/aws/errors.rs)"
    );
    for action in expected {
        assert!(
            called.contains(*action),
            "{action} was never called: {called:?}"
        );
    }
    // The resources too: the shipped policy grants stack set writes only on the documented name prefix.
    let prefix = format!(
        "StackSetName={}",
        stacksetd::cloud::aws::errors::POLICY_STACK_SET_PREFIX
    );
    for m in proxy.mutations() {
        let action = format!("cloudformation:{}", m.action);
        if stacksetd::cloud::aws::errors::STACK_SET_SCOPED_ACTIONS.contains(&action.as_str()) {
            assert!(
                m.change.contains(&prefix),
                "{action} on a stack set outside the policy's Resource ({prefix}*): {}",
                m.change
            );
        }
    }
    granted.difference(&called).cloned().collect()
}
