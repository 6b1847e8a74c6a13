//! A mutation property test over the real vendor corpus (tests/guard_corpus): random edits anywhere a template
//! can grant, and the guard's verdict on each. Oracle: an edit that does more than remove Allow entries or change
//! description text is never judged "not widening" (it may be refused as too complex: that holds it too).
//!
//! The edits, each at a random place of a random template where it applies: an action added to an Allow
//! statement; a principal added to a trust; a condition clause removed, its operator loosened or its value
//! changed; a Deny removed, put under a condition, or its `Effect` key misspelled; a statement key lower-cased; a
//! tag, a `Path`, `DeletionPolicy: Retain` or `AWS::CloudFormation::Init` metadata added; a string of a non-IAM,
//! non-inert resource changed; a referenced parameter's default changed; a new custom resource. And the
//! harmless ones (an action or an Allow statement removed, a description reworded), which only must not crash.
//!
//! `STACKSETD_MUTATION_CASES` (default 300) and `STACKSETD_PROPTEST_SEED` replay or lengthen a run.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use stacksetd::guard::{self, Parameters, resources::Class};
use stacksetd::template::parse_document;

fn corpus() -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guard_corpus");
    let mut files: Vec<PathBuf> = Vec::new();
    for vendor in std::fs::read_dir(&root).expect("corpus") {
        let dir = vendor.expect("entry").path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).expect("vendor dir") {
                files.push(f.expect("entry").path());
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("utf-8");
            let doc = parse_document(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                doc,
            )
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    AddAction,
    AddTrustPrincipal,
    RemoveCondition,
    LoosenOperator,
    ChangeConditionValue,
    RemoveDeny,
    ConditionalDeny,
    MisspellDenyEffectKey,
    LowercaseActionKey,
    AddTag,
    AddPath,
    Retain,
    InitMetadata,
    ChangeResourceString,
    ChangeReferencedDefault,
    AddCustomResource,
    // Harmless.
    RemoveAction,
    RemoveAllow,
    RewordDescription,
}

const EDITS: &[Edit] = &[
    Edit::AddAction,
    Edit::AddTrustPrincipal,
    Edit::RemoveCondition,
    Edit::LoosenOperator,
    Edit::ChangeConditionValue,
    Edit::RemoveDeny,
    Edit::ConditionalDeny,
    Edit::MisspellDenyEffectKey,
    Edit::LowercaseActionKey,
    Edit::AddTag,
    Edit::AddPath,
    Edit::Retain,
    Edit::InitMetadata,
    Edit::ChangeResourceString,
    Edit::ChangeReferencedDefault,
    Edit::AddCustomResource,
    Edit::RemoveAction,
    Edit::RemoveAllow,
    Edit::RewordDescription,
];

impl Edit {
    fn harmless(self) -> bool {
        matches!(
            self,
            Edit::RemoveAction | Edit::RemoveAllow | Edit::RewordDescription
        )
    }
}

/// JSON pointers (as key paths) of every object under `Resources` that satisfies `pred`, not inside an
/// intrinsic's arguments unless `through_intrinsics`.
fn find(doc: &Value, pred: &dyn Fn(&[String], &Value) -> bool) -> Vec<Vec<String>> {
    fn walk(
        v: &Value,
        path: &mut Vec<String>,
        pred: &dyn Fn(&[String], &Value) -> bool,
        out: &mut Vec<Vec<String>>,
    ) {
        if pred(path, v) {
            out.push(path.clone());
        }
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    path.push(k.clone());
                    walk(child, path, pred, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(i.to_string());
                    walk(child, path, pred, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(resources) = doc.get("Resources") {
        walk(
            resources,
            &mut vec!["Resources".to_string()],
            pred,
            &mut out,
        );
    }
    // Only places CloudFormation deploys whatever the parameters: an edit in a resource created under a
    // `Condition`, or in a branch of an `Fn::If`, may be in a case the template's defaults never reach, and then
    // "not widening" is the truth.
    out.retain(|path| {
        path.len() >= 2
            && doc["Resources"][path[1].as_str()]
                .get("Condition")
                .is_none()
            && !path.iter().any(|k| k == "Fn::If")
    });
    out
}

fn at<'a>(doc: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(doc, |v, k| match v {
        Value::Array(items) => &mut items[k.parse::<usize>().expect("index")],
        other => &mut other[k.as_str()],
    })
}

fn statement(effect: &'static str) -> impl Fn(&[String], &Value) -> bool {
    move |_, v| {
        v.get("Effect") == Some(&json!(effect))
            && v.as_object()
                .is_some_and(|m| m.contains_key("Action") || m.contains_key("NotAction"))
    }
}

fn in_trust(path: &[String]) -> bool {
    path.iter().any(|k| k == "AssumeRolePolicyDocument")
}

fn class(doc: &Value, path: &[String]) -> Class {
    let kind = doc["Resources"][path[1].as_str()]["Type"]
        .as_str()
        .unwrap_or("");
    guard::resources::class_of(kind)
}

/// Anything in the template that grants to everyone already (`*` actions or principals): the grant-adding edits
/// cannot widen it, so they are not tried there.
fn grants_everything(doc: &Value) -> bool {
    let text = doc.to_string();
    text.contains("\"Action\":\"*\"")
        || text.contains("\"Action\":[\"*\"]")
        || text.contains("NotAction")
        || text.contains("\"Principal\":\"*\"")
}

/// Apply `edit` at the `pick`-th place it applies; `None` when it applies nowhere in this template.
fn apply(doc: &Value, edit: Edit, pick: usize) -> Option<Value> {
    let mut new = doc.clone();
    let choose = |places: Vec<Vec<String>>| -> Option<Vec<String>> {
        (!places.is_empty()).then(|| places[pick % places.len()].clone())
    };
    match edit {
        Edit::AddAction => {
            if grants_everything(doc) {
                return None;
            }
            let path = choose(find(doc, &|p, v| {
                statement("Allow")(p, v) && v.get("Action").is_some()
            }))?;
            let action = &mut at(&mut new, &path)["Action"];
            let added = json!("stacksetdmutation:GrantMore");
            *action = match action.take() {
                Value::Array(mut items) => {
                    items.push(added);
                    Value::Array(items)
                }
                other => json!([other, added]),
            };
        }
        Edit::AddTrustPrincipal => {
            if grants_everything(doc) {
                return None;
            }
            let path = choose(find(doc, &|p, v| {
                in_trust(p)
                    && statement("Allow")(p, v)
                    && v.get("Principal").is_some_and(|pr| pr.get("AWS").is_some())
            }))?;
            let aws = &mut at(&mut new, &path)["Principal"]["AWS"];
            let added = json!("arn:aws:iam::999988887777:root");
            *aws = match aws.take() {
                Value::Array(mut items) => {
                    items.push(added);
                    Value::Array(items)
                }
                other => json!([other, added]),
            };
        }
        Edit::RemoveCondition | Edit::LoosenOperator | Edit::ChangeConditionValue => {
            let path = choose(find(doc, &|p, v| {
                statement("Allow")(p, v)
                    && v.get("Condition")
                        .is_some_and(|c| c.as_object().is_some_and(|m| !m.is_empty()))
            }))?;
            let s = at(&mut new, &path);
            match edit {
                Edit::RemoveCondition => {
                    s.as_object_mut()?.remove("Condition");
                }
                Edit::LoosenOperator => {
                    let cond = s["Condition"].as_object_mut()?;
                    let op = cond.keys().next()?.clone();
                    let clauses = cond.remove(&op)?;
                    // Any operator other than the one written is not provably as strict.
                    let looser = if op == "StringLike" {
                        "StringNotEquals"
                    } else {
                        "StringLike"
                    };
                    cond.insert(looser.into(), clauses);
                }
                _ => {
                    let cond = s["Condition"].as_object_mut()?;
                    let clauses = cond.values_mut().next()?.as_object_mut()?;
                    let value = clauses.values_mut().next()?;
                    *value = json!("stacksetd-mutated-*");
                }
            }
        }
        Edit::RemoveDeny | Edit::ConditionalDeny | Edit::MisspellDenyEffectKey => {
            let path = choose(find(doc, &statement("Deny")))?;
            let (parent, index) = path.split_at(path.len() - 1);
            match edit {
                Edit::RemoveDeny => match at(&mut new, parent) {
                    Value::Array(items) => {
                        items.remove(index[0].parse::<usize>().ok()?);
                    }
                    _ => return None,
                },
                Edit::ConditionalDeny => {
                    new["Conditions"]["StacksetdMutation"] =
                        json!({"Fn::Equals": [{"Ref": "AWS::Region"}, "xx-mutation-1"]});
                    let s = at(&mut new, &path);
                    let deny = s.take();
                    *s = json!({"Fn::If": ["StacksetdMutation", {"Ref": "AWS::NoValue"}, deny]});
                }
                _ => {
                    let s = at(&mut new, &path).as_object_mut()?;
                    let effect = s.remove("Effect")?;
                    s.insert("effect".into(), effect);
                }
            }
        }
        Edit::LowercaseActionKey => {
            let path = choose(find(doc, &|p, v| {
                statement("Allow")(p, v) && v.get("Action").is_some()
            }))?;
            let s = at(&mut new, &path).as_object_mut()?;
            let action = s.remove("Action")?;
            s.insert("action".into(), action);
        }
        Edit::AddTag | Edit::AddPath => {
            let path = choose(find(doc, &|p, v| {
                p.len() == 2
                    && matches!(
                        v.get("Type").and_then(Value::as_str),
                        Some("AWS::IAM::Role" | "AWS::IAM::User")
                    )
            }))?;
            let props = &mut at(&mut new, &path)["Properties"];
            if edit == Edit::AddTag {
                let tag = json!({"Key": "stacksetd-mutation-exempt", "Value": "true"});
                match props.get_mut("Tags") {
                    Some(Value::Array(tags)) => tags.push(tag),
                    _ => props["Tags"] = json!([tag]),
                }
            } else {
                let old = props
                    .get("Path")
                    .and_then(Value::as_str)
                    .unwrap_or("/")
                    .to_string();
                props["Path"] = json!(format!("{old}stacksetd-mutation/"));
            }
        }
        Edit::Retain | Edit::InitMetadata => {
            let path = choose(find(doc, &|p, v| {
                p.len() == 2
                    && v.get("Type").is_some()
                    && v.get("DeletionPolicy") != Some(&json!("Retain"))
            }))?;
            if class(doc, &path) == Class::Inert {
                return None;
            }
            let r = at(&mut new, &path);
            if edit == Edit::Retain {
                r["DeletionPolicy"] = json!("Retain");
            } else {
                r["Metadata"]["AWS::CloudFormation::Init"] =
                    json!({"config": {"commands": {"m": {"command": "stacksetd-mutation"}}}});
            }
        }
        Edit::ChangeResourceString => {
            let resources: Vec<Vec<String>> =
                find(doc, &|p, v| p.len() == 2 && v.get("Type").is_some());
            let path = choose(
                resources
                    .into_iter()
                    .filter(|p| {
                        !matches!(
                            class(doc, p),
                            Class::Inert | Class::Identity | Class::IdentityPolicy
                        )
                    })
                    .collect(),
            )?;
            let kind = doc["Resources"][path[1].as_str()]["Type"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let policy = guard::resources::row_for(&kind).and_then(|r| r.policy);
            // String leaves of the properties, outside intrinsics, descriptions and the resource policy (which is
            // judged statement by statement).
            let props = &doc["Resources"][path[1].as_str()]["Properties"];
            let leaves = find(&json!({"Resources": props}), &|p, v| {
                v.is_string()
                    && !p.iter().any(|k| {
                        k.starts_with("Fn::")
                            || k == "Ref"
                            || k == "Condition"
                            || k == "Description"
                    })
                    && policy.is_none_or(|field| p.get(1).is_none_or(|k| k != field))
            });
            let leaf = choose(leaves)?;
            let mut full = path.clone();
            full.push("Properties".into());
            full.extend(leaf.into_iter().skip(1));
            let s = at(&mut new, &full);
            *s = json!(format!("{}-stacksetd-mutation", s.as_str().unwrap_or("")));
        }
        Edit::ChangeReferencedDefault => {
            // A parameter (with a default) that an Allow statement's principal, resource or condition names.
            let params: Vec<String> = doc
                .get("Parameters")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter(|(_, d)| {
                            d.get("Default").is_some_and(Value::is_string)
                                && d.get("AllowedValues").is_none()
                        })
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            let used: Vec<String> = params
                .into_iter()
                .filter(|p| {
                    !find(doc, &|path, v| {
                        v == &json!({"Ref": p})
                            && path
                                .iter()
                                .any(|k| k == "Principal" || k == "Resource" || k == "Condition")
                    })
                    .is_empty()
                })
                .collect();
            if used.is_empty() {
                return None;
            }
            let name = &used[pick % used.len()];
            let default = &mut new["Parameters"][name.as_str()]["Default"];
            *default = json!(format!(
                "{}-stacksetd-mutation",
                default.as_str().unwrap_or("")
            ));
        }
        Edit::AddCustomResource => {
            new["Resources"]["StacksetdMutation"] = json!({"Type": "Custom::StacksetdMutation", "Properties": {"ServiceToken": "arn:aws:sns:us-east-1:999988887777:t"}});
        }
        Edit::RemoveAction => {
            let path = choose(find(doc, &|p, v| {
                statement("Allow")(p, v)
                    && v.get("Action")
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.len() >= 2)
            }))?;
            let actions = at(&mut new, &path)["Action"].as_array_mut()?;
            actions.remove(pick % actions.len());
        }
        Edit::RemoveAllow => {
            let path = choose(find(doc, &statement("Allow")))?;
            let (parent, index) = path.split_at(path.len() - 1);
            match at(&mut new, parent) {
                Value::Array(items) if items.len() >= 2 => {
                    items.remove(index[0].parse::<usize>().ok()?);
                }
                _ => return None,
            }
        }
        Edit::RewordDescription => {
            let path = choose(find(doc, &|p, v| {
                p.last().is_some_and(|k| k == "Description") && v.is_string()
            }))?;
            *at(&mut new, &path) = json!("reworded by stacksetd's mutation test");
        }
    }
    (new != *doc).then_some(new)
}

#[test]
fn no_edit_that_grants_more_is_judged_not_widening() {
    let corpus = corpus();
    let cases: u32 = std::env::var("STACKSETD_MUTATION_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let applied = std::cell::Cell::new(0u32);
    let harmless_held = std::cell::Cell::new(0u32);
    let harmless = std::cell::Cell::new(0u32);
    let (mut runner, _seed) =
        crate::controller_sim::helpers::seeded_runner(cases, 0x6d75_7461_7465);
    runner
        .run(
            &(0..corpus.len(), 0..EDITS.len(), any::<u16>()),
            |(t, e, pick)| {
                let (name, doc) = &corpus[t];
                let edit = EDITS[e];
                let Some(new) = apply(doc, edit, pick as usize) else {
                    return Ok(());
                };
                applied.set(applied.get() + 1);
                let verdict = guard::judge(doc, &new, &Parameters::new());
                if edit.harmless() {
                    harmless.set(harmless.get() + 1);
                    if verdict.as_ref().map_or(true, |j| j.widening) {
                        harmless_held.set(harmless_held.get() + 1);
                    }
                    return Ok(());
                }
                match verdict {
                    Err(_too_complex) => Ok(()),
                    Ok(j) if j.widening => Ok(()),
                    Ok(j) => Err(TestCaseError::fail(format!(
                        "{name}: {edit:?} at place {pick} judged not widening:\n{}",
                        j.lines().join("\n")
                    ))),
                }
            },
        )
        .expect("no edit that grants more passes the guard");
    println!(
        "FIGURE mutations: {cases} cases, {} edits applied, {} harmless edits of which {} held (a false hold)",
        applied.get(),
        harmless.get(),
        harmless_held.get()
    );
    assert!(
        applied.get() * 2 >= cases,
        "most cases apply an edit ({} of {cases})",
        applied.get()
    );
}
