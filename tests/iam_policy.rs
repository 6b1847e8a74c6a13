//! deploy/iam/stacksetd-policy.json grants exactly the AWS actions stacksetd calls: every action the AWS
//! implementation can call (its IAM table, which AccessDenied messages quote) and nothing more.

use std::collections::BTreeSet;

use stacksetd::cloud::aws::errors::{DELEGATED_ADMIN_ACTION, IAM_ACTIONS, POLICY_FILE};

#[test]
fn the_policy_grants_exactly_the_actions_stacksetd_calls() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(POLICY_FILE);
    let text = std::fs::read_to_string(&path).expect("the IAM policy file exists");
    let policy: serde_json::Value = serde_json::from_str(&text).expect("the policy is JSON");
    let granted: BTreeSet<String> = policy["Statement"]
        .as_array()
        .expect("Statement is a list")
        .iter()
        .inspect(|s| assert_eq!(s["Effect"], "Allow"))
        .flat_map(|s| s["Action"].as_array().expect("Action is a list").clone())
        .map(|a| a.as_str().expect("actions are strings").to_string())
        .collect();
    let called: BTreeSet<String> = IAM_ACTIONS
        .iter()
        .map(|(_, _, action)| action.to_string())
        .chain([DELEGATED_ADMIN_ACTION.to_string()])
        .collect();
    assert_eq!(granted, called, "policy and code disagree");
    assert!(
        granted.iter().all(|a| !a.contains('*')),
        "no wildcard actions"
    );
}
