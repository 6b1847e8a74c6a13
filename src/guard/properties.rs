//! Properties of the judgment on generated templates (proptest, a fixed case count and seed; the seed is printed
//! so a failure replays with `STACKSETD_PROPTEST_SEED=<seed>`):
//!
//! - adding a statement, a principal, a resource or a non-inert resource that grants something new is never
//!   judged "not widening";
//! - reformatting (pretty or compact JSON, reordered keys, YAML) is never widening and finds nothing.

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};

use super::{Parameters, judge};

const CASES: u32 = 96;
const DEFAULT_SEED: u64 = 0x5eed_5ac5;

fn runner() -> TestRunner {
    crate::fixtures::proptest_runner(CASES, DEFAULT_SEED)
}

/// Actions, resources and principals of generated templates: never `*` alone, so an addition from the fresh
/// pools below is genuinely new.
fn action() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ec2:Describe*".to_string()),
        Just("ce:GetCostAndUsage".to_string()),
        Just("s3:GetBucketLocation".to_string()),
        Just("cloudwatch:GetMetricData".to_string()),
        Just("rds:Describe*".to_string()),
        Just("tag:GetResources".to_string()),
        (0u8..5).prop_map(|i| format!("lambda:ListThing{i}")),
    ]
}

fn resource() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("*")),
        (0u8..4).prop_map(|i| json!(format!("arn:aws:s3:::bucket-{i}/*"))),
        Just(json!({"Fn::Sub": "arn:aws:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"})),
    ]
}

fn principal() -> impl Strategy<Value = String> {
    (0u8..3).prop_map(|i| format!("arn:aws:iam::11112222333{i}:root"))
}

fn statement() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(action(), 1..4),
        proptest::collection::vec(resource(), 1..3),
        any::<bool>(),
    )
        .prop_map(|(actions, resources, conditioned)| {
            let mut s = json!({"Effect": "Allow", "Action": actions, "Resource": resources});
            if conditioned {
                s["Condition"] = json!({"Bool": {"aws:SecureTransport": "true"}});
            }
            s
        })
}

fn role() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(statement(), 1..4),
        proptest::collection::vec(principal(), 1..3),
        any::<bool>(),
    )
        .prop_map(|(statements, principals, external_id)| {
            let mut trust = json!({"Effect": "Allow", "Principal": {"AWS": principals}, "Action": "sts:AssumeRole"});
            if external_id {
                trust["Condition"] = json!({"StringEquals": {"sts:ExternalId": "x"}});
            }
            json!({"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [trust]},
                "Policies": [{"PolicyName": "p", "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}}]
            }})
        })
}

fn template() -> impl Strategy<Value = Value> {
    proptest::collection::vec(role(), 1..4).prop_map(|roles| {
        let mut resources = Map::new();
        for (i, r) in roles.into_iter().enumerate() {
            resources.insert(format!("Role{i}"), r);
        }
        json!({"AWSTemplateFormatVersion": "2010-09-09", "Description": "generated", "Resources": resources})
    })
}

/// Something the template does not grant yet.
#[derive(Debug, Clone)]
enum Addition {
    /// A statement with an action from a service no generated template uses.
    Statement(u8),
    /// A principal from an account no generated template trusts.
    Principal(u8),
    /// A resource outside every generated ARN, on an action the role already has.
    Resource(u8),
    /// A resource that is not inert.
    NonInert(u8),
}

fn addition() -> impl Strategy<Value = Addition> {
    prop_oneof![
        (0u8..50).prop_map(Addition::Statement),
        (0u8..50).prop_map(Addition::Principal),
        (0u8..50).prop_map(Addition::Resource),
        (0u8..4).prop_map(Addition::NonInert),
    ]
}

fn add(mut doc: Value, addition: &Addition, role: usize) -> Value {
    let count = doc["Resources"].as_object().map_or(1, |m| m.len());
    let role = &mut doc["Resources"][format!("Role{}", role % count)]["Properties"];
    match addition {
        Addition::Statement(i) => role["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array_mut()
            .expect("statements")
            .push(
                json!({"Effect": "Allow", "Action": format!("fresh{i}:GetThing"), "Resource": "*"}),
            ),
        Addition::Principal(i) => {
            role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"]
                .as_array_mut()
                .expect("principals")
                .push(json!(format!("arn:aws:iam::9999000000{i:02}:root")))
        }
        Addition::Resource(i) => {
            let statement = &mut role["Policies"][0]["PolicyDocument"]["Statement"][0];
            let resources = statement["Resource"].as_array_mut().expect("resources");
            resources.push(json!(format!(
                "arn:aws:dynamodb:us-east-1:999900000000:table/fresh-{i}"
            )));
        }
        Addition::NonInert(kind) => {
            let resource = match kind {
                0 => {
                    json!({"Type": "Custom::Register", "Properties": {"ServiceToken": "arn:aws:sns:us-east-1:999900000000:t"}})
                }
                1 => {
                    json!({"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": "https://vendor.example/t.yaml"}})
                }
                2 => {
                    json!({"Type": "AWS::Lambda::Function", "Properties": {"Code": {"ZipFile": "x"}}})
                }
                _ => json!({"Type": "AWS::IAM::AccessKey", "Properties": {"UserName": "u"}}),
            };
            doc["Resources"]["Added"] = resource;
        }
    }
    doc
}

/// The document with every object's keys in reverse order (serde_json keeps insertion order only with
/// preserve_order; the text is built by hand so the order really changes).
fn reversed_json(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .rev()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), reversed_json(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(reversed_json)
                .collect::<Vec<_>>()
                .join(",\n ")
        ),
        other => other.to_string(),
    }
}

#[test]
fn adding_something_new_is_always_widening() {
    runner()
        .run(
            &(template(), addition(), 0usize..4),
            |(doc, addition, role)| {
                if let Addition::Resource(_) = addition {
                    // A new ARN on an action the role holds on `*` grants nothing new: not this property's case.
                    let count = doc["Resources"].as_object().map_or(1, |m| m.len());
                    let statement = &doc["Resources"][format!("Role{}", role % count)]["Properties"]
                        ["Policies"][0]["PolicyDocument"]["Statement"][0];
                    prop_assume!(
                        !statement["Resource"]
                            .as_array()
                            .is_some_and(|r| r.contains(&json!("*")))
                    );
                }
                let wider = add(doc.clone(), &addition, role);
                let j = judge(&doc, &wider, &Parameters::new()).expect("within budget");
                prop_assert!(
                    j.widening,
                    "{addition:?} not widening:\n{}",
                    j.lines().join("\n")
                );
                Ok(())
            },
        )
        .expect("the property holds");
}

#[test]
fn reformatting_is_never_widening() {
    runner()
        .run(&(template(), 0u8..4), |(doc, form)| {
            let text = match form {
                0 => serde_json::to_string_pretty(&doc).expect("json"),
                1 => serde_json::to_string(&doc).expect("json"),
                2 => reversed_json(&doc),
                _ => serde_norway::to_string(&doc).expect("yaml"),
            };
            let again = crate::template::parse_document(&text).map_err(TestCaseError::fail)?;
            let j = judge(&doc, &again, &Parameters::new()).expect("within budget");
            prop_assert!(
                !j.widening && j.findings.is_empty(),
                "form {form}:\n{}",
                j.lines().join("\n")
            );
            Ok(())
        })
        .expect("the property holds");
}
