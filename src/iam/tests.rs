//! Hand-written templates for the diff and the allowlist, plus the repo's two vendor templates.

use serde_json::{Value, json};

use super::*;
use crate::desired::PolicyLevel;

const TRUST_MANAGEMENT: &str = "arn:aws:iam::111111111111:root";

/// A template with one role: the given inline statements (one policy) and trust principals.
fn role_with(statements: Value) -> Value {
    role_full(statements, json!({"AWS": TRUST_MANAGEMENT}), json!([]))
}

fn role_full(statements: Value, principal: Value, managed: Value) -> Value {
    json!({
        "Resources": {
            "VendorRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": "VendorRole",
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]
                    },
                    "ManagedPolicyArns": managed,
                    "Policies": [{
                        "PolicyName": "Vendor",
                        "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}
                    }]
                }
            }
        }
    })
}

fn allow(actions: Value, resource: Value) -> Value {
    json!({"Effect": "Allow", "Action": actions, "Resource": resource})
}

fn set(items: &[&str]) -> std::collections::BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn repo_template(name: &str) -> Value {
    let path = format!("{}/config/templates/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    crate::template::parse_document(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

#[test]
fn added_action_is_listed_and_widening() {
    let applied = role_with(json!([allow(json!(["ec2:DescribeInstances"]), json!("*"))]));
    let candidate = role_with(json!([allow(
        json!(["ec2:DescribeInstances", "ec2:StopInstances"]),
        json!("*")
    )]));
    let d = diff(&applied, &candidate);
    assert_eq!(d.added_actions, set(&["ec2:StopInstances"]));
    assert!(d.removed_actions.is_empty());
    assert!(d.is_widening());
    assert!(
        d.lines()
            .contains(&"+ action ec2:StopInstances".to_string()),
        "{:?}",
        d.lines()
    );
}

#[test]
fn widened_action_wildcard() {
    let applied = role_with(json!([allow(json!("ec2:Describe*"), json!("*"))]));
    let candidate = role_with(json!([allow(json!("ec2:*"), json!("*"))]));
    let d = diff(&applied, &candidate);
    assert_eq!(d.added_actions, set(&["ec2:*"]));
    assert_eq!(d.removed_actions, set(&["ec2:Describe*"]));
    assert_eq!(d.widened, vec!["ec2:Describe* -> ec2:*".to_string()]);
    assert!(d.is_widening());
    assert!(
        d.lines()
            .contains(&"~ widened ec2:Describe* -> ec2:*".to_string())
    );
    // The reverse is a narrowing.
    let back = diff(&candidate, &applied);
    assert!(!back.is_widening(), "{back:?}");
    assert!(!back.is_empty());
}

#[test]
fn widened_resource_wildcard() {
    let applied = role_with(json!([allow(
        json!("s3:GetBucketTagging"),
        json!("arn:aws:s3:::bucket/*")
    )]));
    let candidate = role_with(json!([allow(json!("s3:GetBucketTagging"), json!("*"))]));
    let d = diff(&applied, &candidate);
    assert_eq!(d.added_resources, set(&["*"]));
    assert_eq!(d.removed_resources, set(&["arn:aws:s3:::bucket/*"]));
    assert_eq!(d.widened, vec!["arn:aws:s3:::bucket/* -> *".to_string()]);
    assert!(d.is_widening());
}

#[test]
fn grant_moved_to_a_broader_resource_is_widening_even_when_the_sets_do_not_show_it() {
    // "*" is already a resource (of another statement), so the flat resource set gains nothing.
    let applied = role_with(json!([
        allow(json!("s3:GetBucketTagging"), json!("arn:aws:s3:::bucket")),
        allow(json!("ec2:Describe*"), json!("*")),
    ]));
    let candidate = role_with(json!([
        allow(json!("s3:GetBucketTagging"), json!("*")),
        allow(json!("ec2:Describe*"), json!("*")),
    ]));
    let d = diff(&applied, &candidate);
    assert!(
        d.added_resources.is_empty() && d.added_actions.is_empty(),
        "{d:?}"
    );
    assert!(d.is_widening());
    assert_eq!(d.widened.len(), 1, "{:?}", d.widened);
    assert!(d.widened[0].contains("Statement[0]") && d.widened[0].contains("s3:GetBucketTagging"));
}

#[test]
fn new_principal_in_trust_policy() {
    let statements = json!([allow(json!("ec2:Describe*"), json!("*"))]);
    let applied = role_with(statements.clone());
    let candidate = role_full(
        statements,
        json!({"AWS": [TRUST_MANAGEMENT, "arn:aws:iam::999999999999:root"]}),
        json!([]),
    );
    let d = diff(&applied, &candidate);
    assert_eq!(
        d.added_principals,
        set(&["AWS:arn:aws:iam::999999999999:root"])
    );
    assert!(
        d.added_actions.is_empty() && d.added_resources.is_empty(),
        "{d:?}"
    );
    assert!(d.is_widening());
    assert!(
        d.lines()
            .contains(&"+ principal AWS:arn:aws:iam::999999999999:root".to_string())
    );
    // Dropping that principal again is not.
    assert!(!diff(&candidate, &applied).is_widening());
}

#[test]
fn new_managed_policy_arn() {
    let statements = json!([allow(json!("ec2:Describe*"), json!("*"))]);
    let applied = role_with(statements.clone());
    let arn = "arn:aws:iam::aws:policy/ReadOnlyAccess";
    let candidate = role_full(statements, json!({"AWS": TRUST_MANAGEMENT}), json!([arn]));
    let d = diff(&applied, &candidate);
    assert_eq!(d.added_managed_policy_arns, set(&[arn]));
    assert!(d.is_widening());
    assert!(d.lines().contains(&format!("+ managed policy {arn}")));
    let back = diff(&candidate, &applied);
    assert_eq!(back.removed_managed_policy_arns, set(&[arn]));
    assert!(!back.is_widening());
}

#[test]
fn reordered_statements_and_actions_and_case_make_no_diff() {
    let applied = role_with(json!([
        allow(json!(["ec2:DescribeInstances", "rds:DescribeDBInstances"]), json!("*")),
        {"Effect": "Allow", "Action": "ce:GetCostAndUsage", "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ce::${AWS::AccountId}:*"}},
    ]));
    let candidate = role_with(json!([
        {"Resource": {"Fn::Sub": "arn:${AWS::Partition}:ce::${AWS::AccountId}:*"}, "Action": ["CE:getCostAndUsage"], "Effect": "Allow"},
        allow(json!(["rds:DescribeDBInstances", "EC2:describeInstances"]), json!(["*"])),
    ]));
    let d = diff(&applied, &candidate);
    assert!(d.is_empty(), "{d:?}");
    assert!(!d.is_widening());
    assert!(d.lines().is_empty());
}

#[test]
fn intrinsic_values_compare_structurally() {
    let sub =
        |bucket: &str| json!({"Fn::Sub": format!("arn:aws:s3:::{bucket}-${{AWS::AccountId}}")});
    let applied = role_with(json!([allow(json!("s3:GetBucketTagging"), sub("reports"))]));
    let candidate = role_with(json!([allow(
        json!("s3:GetBucketTagging"),
        sub("everything")
    )]));
    let d = diff(&applied, &candidate);
    assert_eq!(d.added_resources.len(), 1, "{d:?}");
    assert!(
        d.added_resources
            .iter()
            .next()
            .is_some_and(|r| r.contains("everything"))
    );
    assert!(d.is_widening());
    // A literal wildcard never swallows an intrinsic except a bare "*".
    let wildcard = role_with(json!([allow(json!("s3:GetBucketTagging"), json!("arn:*"))]));
    assert!(diff(&wildcard, &applied).is_widening());
}

#[test]
fn action_already_covered_by_a_wildcard_is_not_widening() {
    let applied = role_with(json!([allow(json!("ec2:Describe*"), json!("*"))]));
    let candidate = role_with(json!([
        allow(json!("ec2:Describe*"), json!("*")),
        allow(json!("ec2:DescribeInstances"), json!("*")),
    ]));
    let d = diff(&applied, &candidate);
    assert_eq!(d.added_actions, set(&["ec2:DescribeInstances"]));
    assert!(!d.is_widening(), "{d:?}");
    assert!(!d.is_empty());
}

#[test]
fn removed_deny_is_widening() {
    let deny = json!({"Effect": "Deny", "Action": "ec2:TerminateInstances", "Resource": "*"});
    let applied = role_with(json!([allow(json!("ec2:*"), json!("*")), deny]));
    let candidate = role_with(json!([allow(json!("ec2:*"), json!("*"))]));
    let d = diff(&applied, &candidate);
    assert!(
        d.added_actions.is_empty() && d.removed_actions.is_empty(),
        "{d:?}"
    );
    assert!(d.is_widening());
    assert!(
        d.widened
            .iter()
            .any(|w| w.contains("Deny") && w.contains("ec2:TerminateInstances")),
        "{:?}",
        d.widened
    );
    // Adding the Deny back is a narrowing.
    assert!(!diff(&candidate, &applied).is_widening());
}

#[test]
fn removed_or_changed_condition_is_widening_added_condition_is_not() {
    let conditioned = role_with(json!([{
        "Effect": "Allow", "Action": "ec2:StopInstances", "Resource": "*",
        "Condition": {"StringEquals": {"aws:ResourceTag/Schedule": "vendor"}}
    }]));
    let loosened = role_with(json!([{
        "Effect": "Allow", "Action": "ec2:StopInstances", "Resource": "*",
        "Condition": {"StringLike": {"aws:ResourceTag/Schedule": "*"}}
    }]));
    let open = role_with(json!([allow(json!("ec2:StopInstances"), json!("*"))]));
    let removed = diff(&conditioned, &open);
    assert!(removed.is_widening(), "{removed:?}");
    assert!(
        removed.widened.iter().any(|w| w.contains("condition")),
        "{:?}",
        removed.widened
    );
    assert!(diff(&conditioned, &loosened).is_widening());
    assert!(!diff(&open, &conditioned).is_widening());
}

#[test]
fn not_action_with_allow_is_flagged() {
    let applied = role_with(json!([allow(json!("ec2:Describe*"), json!("*"))]));
    let candidate =
        role_with(json!([{"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "*"}]));
    let d = diff(&applied, &candidate);
    assert!(d.is_widening());
    assert_eq!(d.added_actions, set(&["NotAction(iam:*)"]));
    assert!(
        d.widened
            .iter()
            .any(|w| w.contains("NotAction(iam:*)") && w.contains("every other action"))
    );
    // Excluding less than before widens too.
    let fewer =
        role_with(json!([{"Effect": "Allow", "NotAction": ["iam:*", "s3:*"], "Resource": "*"}]));
    assert!(diff(&fewer, &candidate).is_widening());
    assert!(!diff(&candidate, &fewer).is_widening());
}

#[test]
fn grant_moved_to_another_role_is_widening() {
    let policy = |role: &str| {
        json!({"Resources": {
            "A": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "A"}},
            "B": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "B"}},
            "P": {"Type": "AWS::IAM::Policy", "Properties": {
                "PolicyName": "p", "Roles": [role],
                "PolicyDocument": {"Statement": [allow(json!("ec2:StopInstances"), json!("*"))]}
            }}
        }})
    };
    // A role named by its RoleName and by Ref is the same holder.
    assert!(diff(&policy("A"), &json_ref_variant()).is_empty());
    let d = diff(&policy("A"), &policy("B"));
    assert!(d.is_widening(), "{d:?}");
    assert!(
        d.widened.iter().any(|w| w.contains("role B")),
        "{:?}",
        d.widened
    );

    fn json_ref_variant() -> Value {
        json!({"Resources": {
            "A": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "A"}},
            "B": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "B"}},
            "P": {"Type": "AWS::IAM::Policy", "Properties": {
                "PolicyName": "p", "Roles": [{"Ref": "A"}],
                "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "ec2:StopInstances", "Resource": "*"}]}
            }}
        }})
    }
}

#[test]
fn removals_only_are_not_widening() {
    let applied = role_full(
        json!([
            allow(json!(["ec2:Describe*", "rds:Describe*"]), json!("*")),
            allow(json!("s3:GetBucketTagging"), json!("arn:aws:s3:::reports")),
        ]),
        json!({"AWS": [TRUST_MANAGEMENT, "arn:aws:iam::222222222222:root"]}),
        json!(["arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"]),
    );
    let candidate = role_with(json!([allow(json!("ec2:Describe*"), json!("*"))]));
    let d = diff(&applied, &candidate);
    assert_eq!(
        d.removed_actions,
        set(&["rds:Describe*", "s3:GetBucketTagging"])
    );
    assert_eq!(d.removed_resources, set(&["arn:aws:s3:::reports"]));
    assert_eq!(
        d.removed_principals,
        set(&["AWS:arn:aws:iam::222222222222:root"])
    );
    assert_eq!(d.removed_managed_policy_arns.len(), 1);
    assert!(
        d.added_actions.is_empty() && d.added_resources.is_empty() && d.added_principals.is_empty()
    );
    assert!(!d.is_widening(), "{d:?}");
    assert!(
        d.lines().iter().all(|l| l.starts_with("- ")),
        "{:?}",
        d.lines()
    );
}

#[test]
fn uninterpretable_statement_is_widening_and_offends() {
    let applied = role_with(json!([allow(json!("ec2:Describe*"), json!("*"))]));
    let candidate = role_with(
        json!({"Fn::If": ["Wide", allow(json!("*"), json!("*")), {"Ref": "AWS::NoValue"}]}),
    );
    let d = diff(&applied, &candidate);
    assert!(d.is_widening());
    assert!(
        d.widened.iter().any(|w| w.contains("not interpretable")),
        "{:?}",
        d.widened
    );
    let offenses = check_allowlist(PolicyLevel::DataOnly, &candidate);
    assert_eq!(offenses.len(), 1, "{offenses:?}");
    assert!(
        offenses[0].location.ends_with("Policies[0].PolicyDocument"),
        "{offenses:?}"
    );
}

#[test]
fn data_only_refuses_write_actions_with_their_statement() {
    let template = role_with(json!([
        allow(json!(["ec2:Describe*", "ce:GetCostAndUsage"]), json!("*")),
        allow(json!("ec2:StopInstances"), json!("*")),
        allow(json!(["iam:PassRole"]), json!("*")),
        allow(json!("s3:PutObject"), json!("arn:aws:s3:::bucket/*")),
        allow(json!("*"), json!("*")),
    ]));
    let offenses = check_allowlist(PolicyLevel::DataOnly, &template);
    let found: Vec<(String, String)> = offenses
        .iter()
        .map(|o| (o.location.clone(), o.action.clone()))
        .collect();
    let at = |i: usize| {
        format!("Resources.VendorRole.Properties.Policies[0].PolicyDocument.Statement[{i}]")
    };
    assert_eq!(
        found,
        vec![
            (at(1), "ec2:StopInstances".to_string()),
            (at(2), "iam:PassRole".to_string()),
            (at(3), "s3:PutObject".to_string()),
            (at(4), "*".to_string()),
        ]
    );
    assert!(
        offenses.iter().all(|o| o.reason.contains("DataOnly")),
        "{offenses:?}"
    );
}

#[test]
fn data_only_refuses_broad_reads_assume_role_and_managed_policies() {
    let template = role_full(
        json!([
            allow(json!(["s3:Get*", "ec2:GetPasswordData", "sts:AssumeRole", "EC2:describeRegions"]), json!("*")),
            {"Effect": "Deny", "Action": "*", "Resource": "*"},
        ]),
        json!("*"),
        json!(["arn:aws:iam::aws:policy/ReadOnlyAccess"]),
    );
    let offenses = check_allowlist(PolicyLevel::DataOnly, &template);
    let actions: Vec<&str> = offenses.iter().map(|o| o.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "sts:AssumeRole", // the trust policy's principal "*": anyone may assume the role
            "s3:Get*",
            "ec2:GetPasswordData",
            "sts:AssumeRole",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
        ],
        "{offenses:?}"
    );
    assert!(offenses[0].location.contains("AssumeRolePolicyDocument"));
    assert!(offenses[0].reason.contains("anyone"));
    assert!(offenses[4].location.ends_with("ManagedPolicyArns[0]"));
}

#[test]
fn data_and_scheduling_allows_stop_but_not_terminate() {
    let template = role_with(json!([
        allow(
            json!(["ec2:Describe*", "ec2:StopInstances", "ec2:StartInstances"]),
            json!("*")
        ),
        allow(json!("ec2:TerminateInstances"), json!("*")),
    ]));
    let offenses = check_allowlist(PolicyLevel::DataAndScheduling, &template);
    assert_eq!(offenses.len(), 1, "{offenses:?}");
    assert_eq!(offenses[0].action, "ec2:TerminateInstances");
    assert!(offenses[0].location.ends_with("Statement[1]"));
    assert!(offenses[0].reason.contains("DataAndScheduling"));
    // The same role is refused under DataOnly for its start/stop actions too.
    assert_eq!(check_allowlist(PolicyLevel::DataOnly, &template).len(), 3);
}

#[test]
fn repo_templates_pass_their_own_level() {
    let data_only = repo_template("aimably-data-only.json");
    let scheduling = repo_template("aimably-data-and-scheduling.json");
    assert_eq!(check_allowlist(PolicyLevel::DataOnly, &data_only), vec![]);
    assert_eq!(
        check_allowlist(PolicyLevel::DataAndScheduling, &data_only),
        vec![]
    );
    assert_eq!(
        check_allowlist(PolicyLevel::DataAndScheduling, &scheduling),
        vec![]
    );
    let refused = check_allowlist(PolicyLevel::DataOnly, &scheduling);
    assert_eq!(refused.len(), 9, "{refused:?}");
    assert!(refused.iter().all(|o| o.location
        == "Resources.AimablyMemberRole.Properties.Policies[1].PolicyDocument.Statement[0]"));
}

#[test]
fn repo_templates_differ_by_exactly_the_scheduling_actions() {
    let data_only = repo_template("aimably-data-only.json");
    let scheduling = repo_template("aimably-data-and-scheduling.json");
    let d = diff(&data_only, &scheduling);
    let expected = set(&[
        "ec2:StartInstances",
        "ec2:StopInstances",
        "rds:StartDBInstance",
        "rds:StopDBInstance",
        "rds:StartDBCluster",
        "rds:StopDBCluster",
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:SuspendProcesses",
        "autoscaling:ResumeProcesses",
    ]);
    assert_eq!(
        d,
        PolicyDiff {
            added_actions: expected.clone(),
            grants_more: true,
            ..PolicyDiff::default()
        }
    );
    assert!(d.is_widening());
    let back = diff(&scheduling, &data_only);
    assert_eq!(back.removed_actions, expected);
    assert!(!back.is_widening());
    assert!(diff(&data_only, &data_only).is_empty());
}

#[test]
fn yaml_short_tags_equal_their_json_long_form() {
    let yaml = r#"
Resources:
  AimablyMemberRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal:
              AWS: !Sub "arn:aws:iam::${ManagementAccountId}:root"
            Action: sts:AssumeRole
      Policies:
        - PolicyName: P
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [ec2:Describe*]
                Resource: "*"
"#;
    let json_text = r#"{"Resources": {"AimablyMemberRole": {"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"AWS": {"Fn::Sub": "arn:aws:iam::${ManagementAccountId}:root"}}}]},
        "Policies": [{"PolicyName": "P", "PolicyDocument": {"Statement": [
            {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}]}}]}}}}"#;
    let a = crate::template::parse_document(yaml).expect("test YAML parses");
    let b = crate::template::parse_document(json_text).expect("test JSON parses");
    assert!(diff(&a, &b).is_empty(), "{:?}", diff(&a, &b));
    let g = grants(&a);
    assert_eq!(g.statements.len(), 2);
    assert!(g.statements.iter().any(|s| s.trust));
}
