//! The guard on hand-written template pairs: each category of the judgment and of the policy levels, in both
//! the no-level and the DataOnly modes, plus the repository's own vendor templates. Real vendors' histories are
//! in tests/guard_corpus (tests/guard_corpus.rs).
//!
//! Size: about 900 lines of tests, one per guard rule and threat, grouped by what they attack.

use serde_json::{Value, json};

use super::*;
use crate::desired::PolicyLevel;

fn params(pairs: &[(&str, &str)]) -> Parameters {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A template with one role `VendorRole`: trust statements and one inline policy.
fn role(trust: Value, statements: Value) -> Value {
    json!({
        "Resources": {"VendorRole": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": "VendorRole",
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": trust},
            "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": statements}}]
        }}}
    })
}

fn allow(actions: Value, resource: Value) -> Value {
    json!({"Effect": "Allow", "Action": actions, "Resource": resource})
}

const VENDOR: &str = "arn:aws:iam::111122223333:root";

fn trust_external_id() -> Value {
    json!([{"Effect": "Allow", "Principal": {"AWS": VENDOR}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": "abc123"}}}])
}

fn base() -> Value {
    role(
        trust_external_id(),
        json!([allow(json!(["ce:Get*", "ec2:Describe*"]), json!("*"))]),
    )
}

fn judged(old: &Value, new: &Value) -> Judgment {
    judge(old, new, &Parameters::new()).expect("within budget")
}

fn lines(j: &Judgment) -> String {
    j.lines().join("\n")
}

/// Widening, with a finding containing each of `needles`.
fn assert_widening(old: &Value, new: &Value, needles: &[&str]) -> Judgment {
    let j = judged(old, new);
    assert!(j.widening, "expected widening:\n{}", lines(&j));
    for n in needles {
        assert!(
            j.widening_lines().iter().any(|l| l.contains(n)),
            "no widening finding with {n:?}:\n{}",
            lines(&j)
        );
    }
    j
}

fn assert_not_widening(old: &Value, new: &Value) -> Judgment {
    let j = judged(old, new);
    assert!(!j.widening, "expected no widening:\n{}", lines(&j));
    j
}

fn data_only(doc: &Value, p: &Parameters) -> LevelCheck {
    check_level(PolicyLevel::DataOnly, doc, p).expect("within budget")
}

fn offenses(doc: &Value) -> Vec<String> {
    data_only(doc, &Parameters::new())
        .offenses
        .iter()
        .map(|o| o.reason.clone())
        .collect()
}

fn with_resource(mut doc: Value, id: &str, resource: Value) -> Value {
    doc["Resources"][id] = resource;
    doc
}

// ---- 3. the change judgment: permissions ----

#[test]
fn an_added_action_is_widening_and_named_with_its_access_level() {
    let new = role(
        trust_external_id(),
        json!([allow(
            json!([
                "ce:Get*",
                "ec2:Describe*",
                "ce:UpdateCostAllocationTagsStatus"
            ]),
            json!("*")
        )]),
    );
    assert_widening(
        &base(),
        &new,
        &["role VendorRole: + ce:UpdateCostAllocationTagsStatus (Write)"],
    );
    let back = assert_not_widening(&new, &base());
    assert!(
        lines(&back).contains("- ce:UpdateCostAllocationTagsStatus"),
        "{}",
        lines(&back)
    );
}

#[test]
fn a_wider_wildcard_names_the_actions_it_newly_grants() {
    let new = role(
        trust_external_id(),
        json!([allow(json!(["ce:Get*", "ec2:*"]), json!("*"))]),
    );
    let j = assert_widening(
        &base(),
        &new,
        &["+ ec2:*", "Write", "actions not granted before"],
    );
    assert!(
        !lines(&j).contains("ec2:DescribeInstances (List)"),
        "what was granted is not listed:\n{}",
        lines(&j)
    );
}

#[test]
fn an_action_a_wildcard_already_covers_is_not_widening() {
    let new = role(
        trust_external_id(),
        json!([allow(
            json!(["ce:Get*", "ec2:Describe*", "ec2:DescribeInstances"]),
            json!("*")
        )]),
    );
    assert_not_widening(&base(), &new);
}

#[test]
fn a_typo_is_flagged_as_unknown_never_waved_through() {
    let new = role(
        trust_external_id(),
        json!([allow(
            json!(["ce:Get*", "ec2:Describe*", "ce:GetCostAndUsag"]),
            json!("*")
        )]),
    );
    // Covered by ce:Get* already: not widening; but alone it is new and flagged as unknown.
    assert_not_widening(&base(), &new);
    let alone = role(
        trust_external_id(),
        json!([allow(json!(["ce:GetCostAndUsag"]), json!("*"))]),
    );
    let narrow = role(
        trust_external_id(),
        json!([allow(json!(["ce:GetCostAndUsage"]), json!("*"))]),
    );
    assert_widening(
        &narrow,
        &alone,
        &["ce:GetCostAndUsag (not in the action catalog"],
    );
}

#[test]
fn a_grant_moved_to_a_broader_resource_is_widening() {
    let old = role(
        trust_external_id(),
        json!([
            allow(json!("s3:GetObject"), json!("arn:aws:s3:::vendor-bucket/*")),
            allow(json!("s3:ListBucket"), json!("*")),
        ]),
    );
    let new = role(
        trust_external_id(),
        json!([
            allow(json!("s3:GetObject"), json!("*")),
            allow(json!("s3:ListBucket"), json!("*")),
        ]),
    );
    assert_widening(&old, &new, &["role VendorRole"]);
}

#[test]
fn a_grant_moved_to_another_role_is_widening() {
    let mut new = base();
    new["Resources"]["OtherRole"] = new["Resources"]["VendorRole"].clone();
    new["Resources"]["OtherRole"]["Properties"]["RoleName"] = json!("OtherRole");
    assert_widening(&base(), &new, &["role OtherRole"]);
}

#[test]
fn renaming_a_logical_id_alone_is_not_widening() {
    let mut new = json!({"Resources": {}});
    new["Resources"]["RenamedLogicalId"] = base()["Resources"]["VendorRole"].clone();
    assert_not_widening(&base(), &new);
}

#[test]
fn reordering_reformatting_and_case_are_not_widening() {
    let new = role(
        trust_external_id(),
        json!([allow(json!(["EC2:describe*", "ce:Get*"]), json!(["*"]))]),
    );
    assert_not_widening(&base(), &new);
    let yaml = "Resources:\n  VendorRole:\n    Type: AWS::IAM::Role\n    Properties:\n      RoleName: VendorRole\n      \
        Policies:\n        - PolicyName: p\n          PolicyDocument:\n            Statement:\n              - \
        {Effect: Allow, Resource: '*', Action: [ec2:Describe*, ce:Get*]}\n      AssumeRolePolicyDocument:\n        \
        Version: '2012-10-17'\n        Statement:\n          - Effect: Allow\n            Principal: {AWS: \
        'arn:aws:iam::111122223333:root'}\n            Action: sts:AssumeRole\n            Condition: \
        {StringEquals: {sts:ExternalId: abc123}}\n";
    let from_yaml = crate::template::parse_document(yaml).unwrap();
    assert_not_widening(&base(), &from_yaml);
    let j = judged(&base(), &from_yaml);
    assert!(j.findings.is_empty(), "{}", lines(&j));
}

#[test]
fn a_removed_deny_is_widening() {
    let old = role(
        trust_external_id(),
        json!([allow(json!("s3:*"), json!("*")), {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"}]),
    );
    let new = role(
        trust_external_id(),
        json!([allow(json!("s3:*"), json!("*"))]),
    );
    assert_widening(
        &old,
        &new,
        &["Deny of s3:GetObject on * removed or narrowed"],
    );
    assert_not_widening(&new, &old);
}

#[test]
fn not_action_with_allow_is_widening() {
    let new = role(
        trust_external_id(),
        json!([{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]),
    );
    assert_widening(&base(), &new, &["NotAction(iam:*)"]);
    assert!(offenses(&new).iter().any(|o| o.contains("NotAction")));
}

// ---- trust and conditions ----

#[test]
fn a_trust_losing_its_external_id_is_named_as_such() {
    let old = base();
    let new = role(
        json!([{"Effect": "Allow", "Principal": {"AWS": VENDOR}, "Action": "sts:AssumeRole"}]),
        json!([allow(json!(["ce:Get*", "ec2:Describe*"]), json!("*"))]),
    );
    assert_widening(
        &old,
        &new,
        &["trust of role VendorRole: condition sts:ExternalId removed"],
    );
    assert_not_widening(&new, &old);
}

#[test]
fn a_changed_external_id_is_widening() {
    let new = role(
        json!([{"Effect": "Allow", "Principal": {"AWS": VENDOR}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": "other"}}}]),
        json!([allow(json!(["ce:Get*", "ec2:Describe*"]), json!("*"))]),
    );
    assert_widening(
        &base(),
        &new,
        &["condition sts:ExternalId changed from [abc123] to [other]"],
    );
}

#[test]
fn a_new_trusted_principal_is_widening() {
    let new = role(
        json!([{"Effect": "Allow", "Principal": {"AWS": [VENDOR, "999988887777"]}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": "abc123"}}}]),
        json!([allow(json!(["ce:Get*", "ec2:Describe*"]), json!("*"))]),
    );
    assert_widening(
        &base(),
        &new,
        &["trust of role VendorRole: + principal AWS:arn:aws:iam::999988887777:root"],
    );
}

#[test]
fn an_account_id_principal_is_its_root_arn() {
    let new = role(
        json!([{"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": "abc123"}}}]),
        json!([allow(json!(["ce:Get*", "ec2:Describe*"]), json!("*"))]),
    );
    assert_not_widening(&base(), &new);
}

#[test]
fn an_added_condition_narrows() {
    let old = role(
        json!([{"Effect": "Allow", "Principal": {"AWS": VENDOR}, "Action": "sts:AssumeRole"}]),
        json!([allow(json!(["ce:Get*"]), json!("*"))]),
    );
    let new = role(
        trust_external_id(),
        json!([allow(json!(["ce:Get*"]), json!("*"))]),
    );
    assert_not_widening(&old, &new);
}

// ---- 2. intrinsics resolved before judging ----

fn mapped(account: &str) -> Value {
    json!({
        "Mappings": {"Vendor": {"Account": {"Id": account}}},
        "Resources": {"VendorRole": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": "VendorRole",
            "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"AWS": {"Fn::Sub": ["arn:aws:iam::${Id}:root", {"Id": {"Fn::FindInMap": ["Vendor", "Account", "Id"]}}]}},
                "Condition": {"StringEquals": {"sts:ExternalId": "abc123"}}}]},
            "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [allow(json!(["ce:Get*", "ec2:Describe*"]), json!("*"))]}}]
        }}}
    })
}

#[test]
fn a_mapping_change_that_moves_the_trust_is_widening() {
    assert_not_widening(&mapped("111122223333"), &base());
    assert_not_widening(&base(), &mapped("111122223333"));
    assert_widening(
        &mapped("111122223333"),
        &mapped("444455556666"),
        &["+ principal AWS:arn:aws:iam::444455556666:root"],
    );
}

fn conditional_external_id(default: &str) -> Value {
    json!({
        "Parameters": {"RequireExternalId": {"Type": "String", "Default": default, "AllowedValues": ["true", "false"]}},
        "Conditions": {"UseExternalId": {"Fn::Equals": [{"Ref": "RequireExternalId"}, "true"]}},
        "Resources": {"VendorRole": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": "VendorRole",
            "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"AWS": VENDOR},
                "Condition": {"Fn::If": ["UseExternalId", {"StringEquals": {"sts:ExternalId": "abc123"}}, {"Ref": "AWS::NoValue"}]}}]},
            "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [allow(json!(["ce:Get*", "ec2:Describe*"]), json!("*"))]}}]
        }}}
    })
}

#[test]
fn a_parameter_default_that_drops_the_external_id_is_widening() {
    assert_not_widening(&base(), &conditional_external_id("true"));
    assert_widening(
        &conditional_external_id("true"),
        &conditional_external_id("false"),
        &["condition sts:ExternalId removed"],
    );
    // The deployment's own parameter value wins over the Default.
    let keep = params(&[("RequireExternalId", "true")]);
    let j = judge(
        &conditional_external_id("true"),
        &conditional_external_id("false"),
        &keep,
    )
    .unwrap();
    assert!(!j.widening, "{}", lines(&j));
}

#[test]
fn a_condition_entry_that_drops_the_external_id_is_widening() {
    let mut new = conditional_external_id("true");
    new["Conditions"]["UseExternalId"] = json!({"Fn::Equals": ["1", "2"]});
    assert_widening(
        &conditional_external_id("true"),
        &new,
        &["condition sts:ExternalId removed"],
    );
}

/// A vendor's real narrowing built with Fn::If (support:* to support:DescribeTrustedAdvisor*) per partition.
fn partitioned(support: &str) -> Value {
    json!({
        "Conditions": {"IsGovCloud": {"Fn::Equals": [{"Ref": "AWS::Partition"}, "aws-us-gov"]}},
        "Resources": {"VendorRole": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": "VendorRole",
            "AssumeRolePolicyDocument": {"Statement": trust_external_id()},
            "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Resource": "*",
                 "Action": {"Fn::If": ["IsGovCloud", ["ec2:Describe*"], ["ec2:Describe*", support]]}}
            ]}}]
        }}}
    })
}

#[test]
fn a_narrowing_built_with_fn_if_goes_through() {
    let j = assert_not_widening(
        &partitioned("support:*"),
        &partitioned("support:DescribeTrustedAdvisor*"),
    );
    assert!(j.cases >= 2, "compared case by case: {j:?}");
    let back = assert_widening(
        &partitioned("support:DescribeTrustedAdvisor*"),
        &partitioned("support:*"),
        &["+ support:*"],
    );
    assert!(
        lines(&back).contains("when AWS::Partition is"),
        "the case is named:\n{}",
        lines(&back)
    );
}

#[test]
fn unresolvable_values_fail_closed_and_say_why() {
    let new = role(
        trust_external_id(),
        json!([allow(
            json!([
                "ce:Get*",
                "ec2:Describe*",
                "{{resolve:ssm:/vendor/extra-action}}"
            ]),
            json!("*")
        )]),
    );
    assert_widening(
        &base(),
        &new,
        &["could be anything: dynamic reference {{resolve:ssm:/vendor/extra-action}}"],
    );
    let unknown_fn = role(
        trust_external_id(),
        json!([allow(json!({"Fn::Frobnicate": "x"}), json!("*"))]),
    );
    assert_widening(
        &base(),
        &unknown_fn,
        &["Fn::Frobnicate, which stacksetd does not evaluate"],
    );
    assert!(!offenses(&unknown_fn).is_empty());
}

#[test]
fn a_parameter_without_a_value_is_the_same_value_in_both_versions() {
    let with_param = |extra: &[&str]| {
        let mut actions = vec!["ce:Get*"];
        actions.extend(extra);
        json!({
            "Parameters": {"VendorAccount": {"Type": "String"}},
            "Resources": {"VendorRole": {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": "VendorRole",
                "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                    "Principal": {"AWS": {"Fn::Sub": "arn:aws:iam::${VendorAccount}:root"}}}]},
                "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [allow(json!(actions), json!("*"))]}}]
            }}}
        })
    };
    assert_not_widening(&with_param(&[]), &with_param(&[]));
    assert_widening(
        &with_param(&[]),
        &with_param(&["s3:GetObject"]),
        &["+ s3:GetObject (Read"],
    );
    // Under a level, the trust must resolve to a fixed account: give the parameter.
    let level = data_only(&with_param(&[]), &Parameters::new());
    assert!(
        level
            .offenses
            .iter()
            .any(|o| o.reason.contains("VendorAccount")),
        "{level:?}"
    );
    let given = data_only(
        &with_param(&[]),
        &params(&[("VendorAccount", "111122223333")]),
    );
    assert!(given.offenses.is_empty(), "{given:?}");
}

// ---- 1. the template model: non-IAM resources ----

#[test]
fn a_custom_resource_says_where_it_sends_data() {
    let new = with_resource(
        base(),
        "Hook",
        json!({"Type": "Custom::Register", "Properties": {
            "ServiceToken": "arn:aws:sns:us-east-1:111122223333:register", "RoleArn": {"Fn::GetAtt": ["VendorRole", "Arn"]}}}),
    );
    assert_widening(
        &base(),
        &new,
        &[
            "new resource Hook (Custom::Register): sends data to arn:aws:sns:us-east-1:111122223333:register",
        ],
    );
    assert!(
        offenses(&new)
            .iter()
            .any(|o| o.contains("Custom::Register"))
    );
    // Changing its properties is widening too; removing it is not.
    let mut changed = new.clone();
    changed["Resources"]["Hook"]["Properties"]["ServiceToken"] =
        json!("arn:aws:sns:us-east-1:999988887777:register");
    assert_widening(
        &new,
        &changed,
        &["resource Hook (Custom::Register) changed"],
    );
    assert_not_widening(&new, &base());
}

#[test]
fn every_non_iam_category_is_widening_when_added_and_refused_by_a_level() {
    let cases = [
        (
            "Nested",
            json!({"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": "https://vendor.example/nested.yaml"}}),
            "installs the template at https://vendor.example/nested.yaml",
        ),
        (
            "Fn",
            json!({"Type": "AWS::Lambda::Function", "Properties": {"Code": {"S3Bucket": "vendor", "S3Key": "f.zip"}, "Role": {"Fn::GetAtt": ["VendorRole", "Arn"]}}}),
            "runs code from",
        ),
        (
            "Layer",
            json!({"Type": "AWS::Lambda::LayerVersion", "Properties": {"Content": {"S3Bucket": "vendor", "S3Key": "l.zip"}}}),
            "publishes code",
        ),
        (
            "Key",
            json!({"Type": "AWS::IAM::AccessKey", "Properties": {"UserName": "vendor"}}),
            "long-lived access key",
        ),
        (
            "Membership",
            json!({"Type": "AWS::IAM::UserToGroupAddition", "Properties": {"GroupName": "Admins", "Users": ["vendor"]}}),
            "adds users",
        ),
        (
            "BucketPolicy",
            json!({"Type": "AWS::S3::BucketPolicy", "Properties": {"Bucket": "b", "PolicyDocument": {"Statement": [{"Effect": "Allow", "Principal": {"AWS": VENDOR}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]}}}),
            "bucket policy",
        ),
        (
            "KmsKey",
            json!({"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {"Statement": []}}}),
            "key policy",
        ),
        (
            "TopicPolicy",
            json!({"Type": "AWS::SNS::TopicPolicy", "Properties": {"Topics": ["t"], "PolicyDocument": {}}}),
            "topic policy",
        ),
        (
            "QueuePolicy",
            json!({"Type": "AWS::SQS::QueuePolicy", "Properties": {"Queues": ["q"], "PolicyDocument": {}}}),
            "queue policy",
        ),
        (
            "Invoke",
            json!({"Type": "AWS::Lambda::Permission", "Properties": {"Principal": "111122223333", "Action": "lambda:InvokeFunction", "FunctionName": "f"}}),
            "lets 111122223333 call",
        ),
        (
            "Doc",
            json!({"Type": "AWS::SSM::Document", "Properties": {"Content": {}}}),
            "Systems Manager document",
        ),
        (
            "Macro",
            json!({"Type": "AWS::CloudFormation::Macro", "Properties": {"Name": "M", "FunctionName": "f"}}),
            "registers macro M",
        ),
        (
            "Vpc",
            json!({"Type": "AWS::EC2::VPC", "Properties": {}}),
            "treated as able to do anything",
        ),
    ];
    for (id, resource, says) in cases {
        let new = with_resource(base(), id, resource.clone());
        assert_widening(&base(), &new, &[&format!("new resource {id}"), says]);
        assert!(
            offenses(&new)
                .iter()
                .any(|o| o.contains(&format!("resource {id}"))),
            "{id} is refused by DataOnly: {:?}",
            offenses(&new)
        );
    }
}

#[test]
fn an_inert_resource_is_not_widening_but_a_level_still_refuses_it() {
    let new = with_resource(
        base(),
        "Handle",
        json!({"Type": "AWS::CloudFormation::WaitConditionHandle"}),
    );
    assert_not_widening(&base(), &new);
    assert!(!offenses(&new).is_empty());
}

#[test]
fn transforms_are_widening_when_added_and_refused_by_a_level() {
    let mut new = base();
    new["Transform"] = json!("AWS::Include");
    assert_widening(&base(), &new, &["template: adds Transform AWS::Include"]);
    assert!(offenses(&new).iter().any(|o| o.contains("Transform")));
    let mut snippet = base();
    snippet["Resources"]["VendorRole"]["Properties"]["Policies"][0]["PolicyDocument"] = json!({"Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": "s3://vendor/policy.yaml"}}});
    assert_widening(&base(), &snippet, &["Fn::Transform AWS::Include"]);
    assert!(
        offenses(&snippet)
            .iter()
            .any(|o| o.contains("Fn::Transform"))
    );
}

#[test]
fn a_removed_permissions_boundary_is_widening() {
    let mut old = base();
    old["Resources"]["VendorRole"]["Properties"]["PermissionsBoundary"] =
        json!("arn:aws:iam::aws:policy/ReadOnlyAccess");
    assert_widening(
        &old,
        &base(),
        &["role VendorRole: permissions boundary removed"],
    );
    assert_not_widening(&base(), &old);
    let mut changed = old.clone();
    changed["Resources"]["VendorRole"]["Properties"]["PermissionsBoundary"] =
        json!("arn:aws:iam::aws:policy/PowerUserAccess");
    assert_widening(&old, &changed, &["permissions boundary changed"]);
}

#[test]
fn a_boundary_defined_in_the_template_is_judged_by_its_statements() {
    let with_boundary = |actions: Value| {
        let mut doc = base();
        doc["Resources"]["VendorRole"]["Properties"]["PermissionsBoundary"] =
            json!({"Ref": "Boundary"});
        doc["Resources"]["Boundary"] = json!({"Type": "AWS::IAM::ManagedPolicy", "Properties": {
            "PolicyDocument": {"Statement": [allow(actions, json!("*"))]}}});
        doc
    };
    let narrow = with_boundary(json!(["ce:Get*"]));
    let wide = with_boundary(json!(["ce:Get*", "ec2:*"]));
    assert_widening(&narrow, &wide, &["boundary of role VendorRole: + ec2:*"]);
    assert_not_widening(&wide, &narrow);
}

#[test]
fn a_longer_session_or_a_console_password_is_widening() {
    let mut longer = base();
    longer["Resources"]["VendorRole"]["Properties"]["MaxSessionDuration"] = json!(43200);
    assert_widening(&base(), &longer, &["MaxSessionDuration set to 43200"]);
    let mut shorter = base();
    shorter["Resources"]["VendorRole"]["Properties"]["MaxSessionDuration"] = json!(900);
    assert_not_widening(&base(), &shorter);
}

#[test]
fn a_new_managed_policy_arn_is_widening_and_refused_by_a_level() {
    let mut new = base();
    new["Resources"]["VendorRole"]["Properties"]["ManagedPolicyArns"] =
        json!(["arn:aws:iam::aws:policy/SecurityAudit"]);
    assert_widening(
        &base(),
        &new,
        &["+ managed policy arn:aws:iam::aws:policy/SecurityAudit"],
    );
    assert!(offenses(&new).iter().any(|o| o.contains("SecurityAudit")));
}

#[test]
fn a_template_managed_policy_attached_by_ref_is_judged_by_its_statements() {
    let with_policy = |actions: Value| {
        let mut doc = role(trust_external_id(), json!([]));
        doc["Resources"]["VendorRole"]["Properties"]["ManagedPolicyArns"] =
            json!([{"Ref": "ReadPolicy"}]);
        doc["Resources"]["ReadPolicy"] = json!({"Type": "AWS::IAM::ManagedPolicy", "Properties": {
            "PolicyDocument": {"Statement": [allow(actions, json!("*"))]}}});
        doc
    };
    assert_widening(
        &with_policy(json!(["ce:Get*"])),
        &with_policy(json!(["ce:Get*", "s3:GetObject"])),
        &["role VendorRole: + s3:GetObject"],
    );
    assert!(
        data_only(&with_policy(json!(["ce:Get*"])), &Parameters::new())
            .offenses
            .is_empty()
    );
}

// ---- 4 and 6: policy levels ----

#[test]
fn data_only_refuses_writes_named_leaks_and_loose_trusts() {
    let doc = role(
        json!([{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"},
               {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]),
        json!([
            allow(json!(["ec2:Describe*", "ec2:StopInstances", "secretsmanager:GetSecretValue", "s3:Get*", "sts:AssumeRole"]), json!("*")),
            {"Effect": "Deny", "Action": "*", "Resource": "*"},
        ]),
    );
    let found = offenses(&doc).join("\n");
    for needle in [
        "anyone (*)",
        "Service:lambda.amazonaws.com",
        "ec2:StopInstances is Write",
        "secretsmanager:GetSecretValue returns",
        "sts:AssumeRole is Write",
    ] {
        assert!(found.contains(needle), "{needle}:\n{found}");
    }
    let warnings = data_only(&doc, &Parameters::new()).warnings.join("\n");
    assert!(
        warnings.contains("ec2:DescribeInstanceAttribute"),
        "wildcard leaks are warned about:\n{warnings}"
    );
    assert!(warnings.contains("s3:GetObject"), "{warnings}");
    assert!(warnings.contains("no sts:ExternalId"), "{warnings}");
}

#[test]
fn data_and_scheduling_allows_start_and_stop_but_not_terminate() {
    let doc = role(
        trust_external_id(),
        json!([
            allow(
                json!(["ec2:Describe*", "ec2:StopInstances", "ec2:StartInstances"]),
                json!("*")
            ),
            allow(json!("ec2:TerminateInstances"), json!("*"))
        ]),
    );
    let check = check_level(PolicyLevel::DataAndScheduling, &doc, &Parameters::new()).unwrap();
    assert_eq!(check.offenses.len(), 1, "{check:?}");
    assert_eq!(check.offenses[0].action, "ec2:TerminateInstances");
    assert!(check.offenses[0].location.ends_with("Statement[1]"));
    assert_eq!(offenses(&doc).len(), 3);
}

#[test]
fn a_level_refuses_policies_on_roles_the_template_does_not_create() {
    let doc = with_resource(
        base(),
        "Extend",
        json!({"Type": "AWS::IAM::Policy", "Properties": {"PolicyName": "x", "Roles": ["OrganizationAccountAccessRole"],
            "PolicyDocument": {"Statement": [allow(json!("ce:Get*"), json!("*"))]}}}),
    );
    assert!(
        offenses(&doc)
            .iter()
            .any(|o| o.contains("OrganizationAccountAccessRole")),
        "{:?}",
        offenses(&doc)
    );
    assert_widening(
        &base(),
        &doc,
        &["role OrganizationAccountAccessRole (not created by this template)"],
    );
}

fn repo_template(name: &str) -> Value {
    let path = format!("{}/config/templates/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    crate::template::parse_document(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

#[test]
fn the_repository_templates_pass_their_own_level_and_differ_by_the_scheduling_actions() {
    let management = params(&[("ManagementAccountId", "123456789012")]);
    let data_only_doc = repo_template("aimably-data-only.json");
    let scheduling = repo_template("aimably-data-and-scheduling.json");
    let check = |level, doc: &Value| check_level(level, doc, &management).unwrap();
    assert_eq!(
        check(PolicyLevel::DataOnly, &data_only_doc).offenses,
        vec![]
    );
    assert_eq!(
        check(PolicyLevel::DataAndScheduling, &scheduling).offenses,
        vec![]
    );
    let refused = check(PolicyLevel::DataOnly, &scheduling).offenses;
    assert_eq!(refused.len(), 9, "{refused:?}");
    let warnings = check(PolicyLevel::DataOnly, &data_only_doc)
        .warnings
        .join("\n");
    assert!(warnings.contains("lambda:ListFunctions"), "{warnings}");
    let j = judge(&data_only_doc, &scheduling, &management).unwrap();
    assert!(j.widening);
    assert!(
        j.widening_lines()
            .iter()
            .any(|l| l.contains("+ ec2:StopInstances (Write)")),
        "{}",
        lines(&j)
    );
    let back = judge(&scheduling, &data_only_doc, &management).unwrap();
    assert!(!back.widening, "{}", lines(&back));
    assert!(
        judge(&data_only_doc, &data_only_doc, &management)
            .unwrap()
            .findings
            .is_empty()
    );
}

// ---- 7: bounded ----

#[test]
fn a_combinatorial_policy_is_judged_without_its_product() {
    let roles: Vec<Value> = (0..300)
        .map(|i| json!({"Ref": format!("Role{i}")}))
        .collect();
    let actions: Vec<String> = (0..300).map(|i| format!("ec2:DescribeThing{i}")).collect();
    let resources: Vec<String> = (0..300)
        .map(|i| format!("arn:aws:ec2:*:*:thing/{i}"))
        .collect();
    let mut doc = json!({"Resources": {"P": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
        "Roles": roles, "PolicyDocument": {"Statement": [allow(json!(actions), json!(resources))]}}}}});
    for i in 0..300 {
        doc["Resources"][format!("Role{i}")] = json!({"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Statement": trust_external_id()}}});
    }
    let mut wider = doc.clone();
    wider["Resources"]["P"]["Properties"]["PolicyDocument"]["Statement"][0]["Action"]
        .as_array_mut()
        .unwrap()
        .push(json!("ec2:StopInstances"));
    let started = std::time::Instant::now();
    let j = judged(&doc, &wider);
    assert!(j.widening);
    assert!(
        j.findings.len() < 20,
        "holders share one finding: {}",
        lines(&j)
    );
    assert!(lines(&j).contains("and 297 more"), "{}", lines(&j));
    assert!(!judged(&wider, &doc).widening);
    println!("300 x 300 x 300 judged in {:?}", started.elapsed());
}

#[test]
fn exhausting_the_budget_is_too_complex_never_a_crash() {
    // Nested Fn::If over one condition each doubles the alternatives.
    let mut conditions = serde_json::Map::new();
    let mut value = json!("ec2:DescribeInstances");
    for i in 0..40 {
        conditions.insert(
            format!("C{i}"),
            json!({"Fn::Equals": [{"Ref": "AWS::Region"}, format!("r{i}")]}),
        );
        value = json!({"Fn::Join": ["", [{"Fn::If": [format!("C{i}"), "a", "b"]}, value]]});
    }
    let doc = json!({"Conditions": conditions, "Resources": {"VendorRole": {"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": {"Statement": trust_external_id()},
        "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [allow(value, json!("*"))]}}]}}}});
    let started = std::time::Instant::now();
    assert_eq!(judge(&base(), &doc, &Parameters::new()), Err(TooComplex));
    assert_eq!(
        check_level(PolicyLevel::DataOnly, &doc, &Parameters::new()),
        Err(TooComplex)
    );
    println!("refused in {:?}", started.elapsed());
}
