//! The shipped IAM policies (deploy/iam/) grant exactly the AWS actions stacksetd calls, and each as narrowly
//! as IAM allows: `Resource: "*"` only for actions the Service Authorization Reference says cannot be scoped (the
//! guard's action catalog knows which), stack set actions only on stack sets named with the documented prefix,
//! AssumeRole only on the access-check role inside the caller's own organization, and the calls an operator may
//! not want (deleting, activating trusted access, staging templates, Access Analyzer) in named opt-in statements.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use stacksetd::cloud::aws::errors::{
    DELEGATED_ADMIN_ACTION, DELEGATED_ADMIN_POLICY_FILE, IAM_ACTIONS, POLICY_FILE,
    POLICY_STACK_SET_PREFIX, STACK_SET_SCOPED_ACTIONS,
};
use stacksetd::guard::catalog::Catalog;

const ACTIVATE: &str = "cloudformation:ActivateOrganizationsAccess";

/// The opt-in statements every variant carries (Sid -> actions); docs/operations.md's IAM section names each.
fn opt_ins(delegated: bool) -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut map = BTreeMap::from([
        (
            "OptInDeleteManagedStackSets",
            BTreeSet::from([
                "cloudformation:DeleteStackInstances",
                "cloudformation:DeleteStackSet",
            ]),
        ),
        ("OptInStageLargeTemplates", BTreeSet::from(["s3:PutObject"])),
        (
            "OptInAccessAnalyzer",
            BTreeSet::from(["access-analyzer:CheckNoNewAccess"]),
        ),
    ]);
    if !delegated {
        map.insert("OptInActivateTrustedAccess", BTreeSet::from([ACTIVATE]));
    }
    map
}

struct Statement {
    sid: String,
    actions: Vec<String>,
    resources: Vec<String>,
    condition: Value,
}

fn statements(file: &str) -> Vec<Statement> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let policy: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
    assert_eq!(policy["Version"], "2012-10-17", "{file}");
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().expect("strings").to_string())
                .collect(),
            other => panic!("{file}: not a string or list: {other}"),
        }
    };
    policy["Statement"]
        .as_array()
        .expect("Statement is a list")
        .iter()
        .map(|s| {
            assert_eq!(s["Effect"], "Allow", "{file}: {s}");
            assert!(
                s.get("NotAction").is_none() && s.get("NotResource").is_none(),
                "{file}: {s}"
            );
            Statement {
                sid: s["Sid"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: every statement is named: {s}"))
                    .into(),
                actions: strings(&s["Action"]),
                resources: strings(&s["Resource"]),
                condition: s.get("Condition").cloned().unwrap_or(Value::Null),
            }
        })
        .collect()
}

fn called(delegated: bool) -> BTreeSet<String> {
    IAM_ACTIONS
        .iter()
        .map(|(_, _, action)| action.to_string())
        .filter(|a| {
            if delegated {
                a != ACTIVATE
            } else {
                a != DELEGATED_ADMIN_ACTION
            }
        })
        .collect()
}

fn check(file: &str, delegated: bool) {
    let statements = statements(file);
    let granted: BTreeSet<String> = statements.iter().flat_map(|s| s.actions.clone()).collect();
    assert_eq!(
        granted,
        called(delegated),
        "{file}: the policy and the code disagree"
    );
    assert!(
        granted.iter().all(|a| !a.contains('*') && !a.contains('?')),
        "{file}: no wildcard actions"
    );
    let sids: BTreeSet<&str> = statements.iter().map(|s| s.sid.as_str()).collect();
    assert_eq!(sids.len(), statements.len(), "{file}: Sids are unique");

    let catalog = Catalog::get();
    for s in &statements {
        for action in &s.actions {
            let entry = catalog
                .action(action)
                .unwrap_or_else(|| panic!("{file}: {action} is not in the catalog"));
            // `*` only where the SAR lists no resource type: anything scopable is scoped.
            if s.resources.iter().any(|r| r == "*") {
                assert!(
                    !entry.resource_scoped,
                    "{file} {}: {action} supports resource-level permissions but is granted on *",
                    s.sid
                );
            }
            if STACK_SET_SCOPED_ACTIONS.contains(&action.as_str()) {
                let stack_sets: Vec<&String> = s
                    .resources
                    .iter()
                    .filter(|r| r.contains(":stackset/"))
                    .collect();
                assert!(
                    !stack_sets.is_empty(),
                    "{file} {}: {action} names the stack sets it may touch",
                    s.sid
                );
                for r in s
                    .resources
                    .iter()
                    .filter(|r| r.contains(":stackset/") || r.contains(":stackset-target/"))
                {
                    let name = r.rsplit_once(['/']).map(|(_, n)| n).unwrap_or_default();
                    assert!(
                        name.starts_with(POLICY_STACK_SET_PREFIX),
                        "{file} {}: {r} reaches stack sets not named {POLICY_STACK_SET_PREFIX}*",
                        s.sid
                    );
                }
            }
        }
        if s.actions
            .iter()
            .any(|a| a == "cloudformation:CreateStackSet")
        {
            assert_eq!(
                s.condition["Null"]["aws:RequestTag/stacksetd.dev/deployment"], "false",
                "{file}: CreateStackSet (no resource type) only for stack sets stacksetd tags as its own"
            );
        }
        if s.actions.iter().any(|a| a == "sts:AssumeRole") {
            assert_eq!(
                s.actions,
                ["sts:AssumeRole"],
                "{file}: AssumeRole alone in its statement"
            );
            for r in &s.resources {
                let role = r
                    .strip_prefix("arn:aws:iam::*:role/")
                    .unwrap_or_else(|| panic!("{file}: {r}"));
                assert!(
                    !role.is_empty() && !role.contains('*'),
                    "{file}: AssumeRole on one role name, not {r}"
                );
            }
            assert_eq!(
                s.condition["StringEquals"]["aws:ResourceOrgID"], "${aws:PrincipalOrgID}",
                "{file}: AssumeRole only into roles of the caller's own organization"
            );
        }
    }
    // The calls an operator may not want are each in their own named statement, and nowhere else.
    for (sid, actions) in opt_ins(delegated) {
        let s = statements
            .iter()
            .find(|s| s.sid == sid)
            .unwrap_or_else(|| panic!("{file}: no {sid}"));
        let listed: BTreeSet<&str> = s.actions.iter().map(String::as_str).collect();
        assert_eq!(listed, actions, "{file} {sid}");
        for other in statements.iter().filter(|o| o.sid != sid) {
            assert!(
                other.actions.iter().all(|a| !actions.contains(a.as_str())),
                "{file}: {} also grants an action of {sid}",
                other.sid
            );
        }
    }
}

#[test]
fn the_management_account_policy_grants_what_stacksetd_calls_and_no_more() {
    check(POLICY_FILE, false);
}

#[test]
fn the_delegated_administrator_policy_grants_what_stacksetd_calls_there_and_no_more() {
    check(DELEGATED_ADMIN_POLICY_FILE, true);
    let granted: BTreeSet<String> = statements(DELEGATED_ADMIN_POLICY_FILE)
        .iter()
        .flat_map(|s| s.actions.clone())
        .collect();
    assert!(
        !granted.contains(ACTIVATE),
        "a delegated administrator cannot activate trusted access"
    );
    assert!(granted.contains(DELEGATED_ADMIN_ACTION));
}

#[test]
fn the_operations_guide_names_every_statement_and_the_prefix() {
    let section = iam_section();
    for file in [POLICY_FILE, DELEGATED_ADMIN_POLICY_FILE] {
        assert!(section.contains(file), "the IAM section links {file}");
        for s in statements(file) {
            assert!(
                section.contains(&format!("`{}`", s.sid)),
                "the IAM section explains statement {}",
                s.sid
            );
        }
    }
    assert!(
        section.contains(&format!("{POLICY_STACK_SET_PREFIX}*")),
        "the IAM section documents the prefix"
    );
}

/// deploy/iam/stacksetd-policy-leases.json, beside the main policy for replicas sharing a lease table and for
/// `spec.credentials` roles: exactly the DynamoDB operations the lease store makes, on one table, and
/// sts:AssumeRole on named roles only (never `*`); docs/operations.md shows both statements.
#[test]
fn the_lease_and_deployment_role_policy_grants_what_the_lease_store_calls_on_named_resources() {
    const FILE: &str = "deploy/iam/stacksetd-policy-leases.json";
    let statements = statements(FILE);
    let lease = statements
        .iter()
        .find(|s| s.sid == "LeaseTable")
        .expect("a LeaseTable statement");
    let granted: BTreeSet<String> = lease.actions.iter().cloned().collect();
    let called: BTreeSet<String> = stacksetd::leases::store::OPERATIONS
        .iter()
        .map(|o| format!("dynamodb:{o}"))
        .collect();
    assert_eq!(
        granted, called,
        "{FILE}: the lease table statement and the lease store disagree"
    );
    assert!(
        lease
            .resources
            .iter()
            .all(|r| r.starts_with("arn:aws:dynamodb:") && r.contains(":table/")),
        "{FILE}: one table, not *: {:?}",
        lease.resources
    );
    let roles = statements
        .iter()
        .find(|s| s.sid == "AssumeDeploymentRoles")
        .expect("an AssumeDeploymentRoles statement");
    assert_eq!(roles.actions, vec!["sts:AssumeRole".to_string()]);
    assert!(
        roles
            .resources
            .iter()
            .all(|r| stacksetd::desired::credentials::role_account(r).is_some()),
        "{FILE}: named roles only: {:?}",
        roles.resources
    );
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"),
    )
    .expect("docs/operations.md");
    assert!(guide.contains(FILE), "docs/operations.md links {FILE}");
}

/// deploy/iam/stacksetd-policy-management-stack.json, for `spec.managementAccount: {deploy: true}`: exactly the
/// plain-stack calls stacksetd makes, on stacks named with the documented prefix in the management account (never
/// `*`), and iam:PassRole only on a named service role, only to CloudFormation.
#[test]
fn the_management_stack_policy_grants_the_stack_calls_on_named_stacks_and_passes_one_role() {
    use stacksetd::cloud::aws::errors::{
        MANAGEMENT_STACK_IAM_ACTIONS, MANAGEMENT_STACK_POLICY_FILE,
    };
    let statements = statements(MANAGEMENT_STACK_POLICY_FILE);
    let stack = statements
        .iter()
        .find(|s| s.sid == "ManagementAccountStack")
        .expect("a ManagementAccountStack statement");
    let granted: BTreeSet<&str> = stack.actions.iter().map(String::as_str).collect();
    let called: BTreeSet<&str> = MANAGEMENT_STACK_IAM_ACTIONS
        .iter()
        .map(|(_, _, a)| *a)
        .collect();
    assert_eq!(
        granted, called,
        "{MANAGEMENT_STACK_POLICY_FILE} and the calls disagree"
    );
    for resource in &stack.resources {
        assert!(
            resource.starts_with("arn:aws:cloudformation:")
                && resource.contains(&format!(":stack/{POLICY_STACK_SET_PREFIX}")),
            "{MANAGEMENT_STACK_POLICY_FILE}: stacks named {POLICY_STACK_SET_PREFIX}* only: {resource}"
        );
    }
    let pass = statements
        .iter()
        .find(|s| s.sid == "PassStackServiceRole")
        .expect("a PassStackServiceRole statement");
    assert_eq!(pass.actions, vec!["iam:PassRole".to_string()]);
    assert!(
        pass.resources
            .iter()
            .all(|r| stacksetd::desired::credentials::role_account(r).is_some()),
        "named roles only: {:?}",
        pass.resources
    );
    assert_eq!(
        pass.condition["StringEquals"]["iam:PassedToService"], "cloudformation.amazonaws.com",
        "passed to CloudFormation only"
    );
    assert_eq!(statements.len(), 2, "nothing else");
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"),
    )
    .expect("docs/operations.md");
    assert!(
        guide.contains(MANAGEMENT_STACK_POLICY_FILE),
        "docs/operations.md links it"
    );
}

/// deploy/iam/stacksetd-policy-events.json, for `events.queue_url` (deploy/events/ makes the queue): one statement,
/// `EventQueue`, granting exactly the SQS actions the queue reader calls (`stacksetd::events::QUEUE_ACTIONS`), each
/// one the catalog says can be scoped, on SQS queue ARNs only (never `*`); docs/operations.md's IAM section names the
/// file and the statement.
#[test]
fn the_event_queue_policy_grants_the_queue_readers_actions_on_one_queue() {
    const FILE: &str = "deploy/iam/stacksetd-policy-events.json";
    let statements = statements(FILE);
    assert_eq!(statements.len(), 1, "{FILE}: one statement, nothing else");
    let queue = &statements[0];
    assert_eq!(queue.sid, "EventQueue", "{FILE}");
    let granted: BTreeSet<&str> = queue.actions.iter().map(String::as_str).collect();
    let called: BTreeSet<&str> = stacksetd::events::QUEUE_ACTIONS.iter().copied().collect();
    assert_eq!(
        granted, called,
        "{FILE}: the policy and the queue reader disagree"
    );
    assert_eq!(
        granted.len(),
        queue.actions.len(),
        "{FILE}: an action listed twice"
    );
    let catalog = Catalog::get();
    for action in &queue.actions {
        let entry = catalog
            .action(action)
            .unwrap_or_else(|| panic!("{FILE}: {action} is not in the catalog"));
        assert!(
            entry.resource_scoped,
            "{FILE}: the catalog says {action} cannot be scoped to a queue"
        );
    }
    assert!(!queue.resources.is_empty(), "{FILE}: a Resource");
    for resource in &queue.resources {
        let parts: Vec<&str> = resource.split(':').collect();
        assert!(
            parts.len() == 6
                && parts[0] == "arn"
                && parts[2] == "sqs"
                && parts[3..]
                    .iter()
                    .all(|p| !p.is_empty() && !p.contains(['*', '?'])),
            "{FILE}: named SQS queues only, not {resource}"
        );
    }
    assert!(queue.condition.is_null(), "{FILE}: no condition needed");
    let section = iam_section();
    assert!(section.contains(FILE), "the IAM section links {FILE}");
    assert!(
        section.contains("`EventQueue`"),
        "the IAM section explains statement EventQueue"
    );
}

/// docs/operations.md's IAM permissions section.
fn iam_section() -> String {
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"),
    )
    .expect("docs/operations.md");
    let section = guide
        .split("## IAM permissions")
        .nth(1)
        .expect("an IAM permissions section");
    section
        .split("\n## ")
        .next()
        .unwrap_or_default()
        .to_string()
}
