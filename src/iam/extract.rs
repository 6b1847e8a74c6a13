//! Reading a template's IAM grants: every policy statement with where it sits and whom it applies to.
//!
//! Anything that cannot be interpreted (a Statement computed by Fn::If, an Effect that is not a plain string, ...)
//! is kept as an [`Opaque`] entry rather than skipped, so the diff and the allowlist can refuse what they cannot
//! check.

use std::collections::BTreeMap;

use serde_json::Value;

use super::pattern::{Item, Term, canonical_json};

/// A CloudFormation template's IAM grants, extracted from its JSON (templates are parsed to serde_json::Value by
/// crate::template::parse_document; YAML short tags are already long-form there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub statements: Vec<Statement>,
    pub managed_policy_arns: Vec<ManagedArn>,
    pub opaque: Vec<Opaque>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement of a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Path in the template, e.g. `Resources.R.Properties.Policies[0].PolicyDocument.Statement[2]`.
    pub location: String,
    /// Who receives the grant: `role X`, `user X`, `group X` (X a logical id when the template defines it),
    /// `role X (trust)` for a trust policy, `policy X` for a managed policy attached to nobody in the template.
    /// Moving a grant to another holder is a new grant.
    pub holders: Vec<String>,
    /// A role's AssumeRolePolicyDocument: its principals are who may assume the role.
    pub trust: bool,
    pub effect: Effect,
    pub actions: Vec<Item>,
    /// `*` when the statement has no Resource (trust policies).
    pub resources: Vec<Item>,
    /// Empty when the statement names no Principal (identity policies).
    pub principals: Vec<Item>,
    /// The Condition block as canonical JSON.
    pub condition: Option<String>,
}

/// A managed policy attached through ManagedPolicyArns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedArn {
    pub location: String,
    pub holder: String,
    pub arn: Term,
}

/// A policy fragment that could not be interpreted, kept whole so that it is compared and refused rather than
/// silently ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opaque {
    pub location: String,
    pub text: String,
}

pub fn grants(template: &Value) -> Grants {
    let mut out = Grants::default();
    let Some(resources) = template.get("Resources").and_then(Value::as_object) else {
        return out;
    };
    let names = logical_names(resources);
    for (id, resource) in resources {
        let kind = resource.get("Type").and_then(Value::as_str).unwrap_or("");
        let props = resource.get("Properties").unwrap_or(&Value::Null);
        let base = format!("Resources.{id}.Properties");
        let identity = |kind: &str| vec![format!("{kind} {id}")];
        match kind {
            "AWS::IAM::Role" => {
                if let Some(doc) = props.get("AssumeRolePolicyDocument") {
                    let holders = vec![format!("role {id} (trust)")];
                    let loc = format!("{base}.AssumeRolePolicyDocument");
                    out.document(doc, &loc, &holders, true);
                }
                out.inline_policies(props, &base, &identity("role"));
                out.managed_arns(props, &base, &format!("role {id}"));
            }
            "AWS::IAM::User" | "AWS::IAM::Group" => {
                let holders = identity(if kind == "AWS::IAM::User" {
                    "user"
                } else {
                    "group"
                });
                out.inline_policies(props, &base, &holders);
                out.managed_arns(props, &base, &holders[0]);
            }
            "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" => {
                let mut holders = Vec::new();
                for (field, label) in [("Roles", "role"), ("Users", "user"), ("Groups", "group")] {
                    match props.get(field) {
                        None => {}
                        Some(Value::Array(items)) => {
                            holders.extend(items.iter().map(|v| holder(label, v, &names)))
                        }
                        Some(other) => holders.push(holder(label, other, &names)),
                    }
                }
                if holders.is_empty() {
                    holders.push(format!("policy {id}"));
                }
                if let Some(doc) = props.get("PolicyDocument") {
                    out.document(doc, &format!("{base}.PolicyDocument"), &holders, false);
                }
            }
            "AWS::IAM::RolePolicy" | "AWS::IAM::UserPolicy" | "AWS::IAM::GroupPolicy" => {
                let (field, label) = match kind {
                    "AWS::IAM::RolePolicy" => ("RoleName", "role"),
                    "AWS::IAM::UserPolicy" => ("UserName", "user"),
                    _ => ("GroupName", "group"),
                };
                let holders = vec![holder(
                    label,
                    props.get(field).unwrap_or(&Value::Null),
                    &names,
                )];
                if let Some(doc) = props.get("PolicyDocument") {
                    out.document(doc, &format!("{base}.PolicyDocument"), &holders, false);
                }
            }
            _ => {}
        }
    }
    out
}

/// Literal RoleName/UserName/GroupName -> logical id, so that a policy naming a role by its name and one using
/// `Ref` to it are recognised as the same holder.
fn logical_names(resources: &serde_json::Map<String, Value>) -> BTreeMap<(String, String), String> {
    let mut names = BTreeMap::new();
    for (id, resource) in resources {
        let (label, field) = match resource.get("Type").and_then(Value::as_str) {
            Some("AWS::IAM::Role") => ("role", "RoleName"),
            Some("AWS::IAM::User") => ("user", "UserName"),
            Some("AWS::IAM::Group") => ("group", "GroupName"),
            _ => continue,
        };
        if let Some(name) = resource
            .pointer(&format!("/Properties/{field}"))
            .and_then(Value::as_str)
        {
            names.insert((label.to_string(), name.to_string()), id.clone());
        }
    }
    names
}

fn holder(label: &str, value: &Value, names: &BTreeMap<(String, String), String>) -> String {
    match value {
        Value::Object(map) if map.len() == 1 && map.get("Ref").is_some_and(Value::is_string) => {
            format!("{label} {}", map["Ref"].as_str().unwrap_or_default())
        }
        Value::String(name) => match names.get(&(label.to_string(), name.clone())) {
            Some(id) => format!("{label} {id}"),
            None => format!("{label} named {name}"),
        },
        other => format!("{label} {}", canonical_json(other)),
    }
}

impl Grants {
    fn opaque(&mut self, location: String, value: &Value) {
        self.opaque.push(Opaque {
            location,
            text: canonical_json(value),
        });
    }

    fn inline_policies(&mut self, props: &Value, base: &str, holders: &[String]) {
        match props.get("Policies") {
            None => {}
            Some(Value::Array(policies)) => {
                for (i, policy) in policies.iter().enumerate() {
                    let loc = format!("{base}.Policies[{i}]");
                    match policy.get("PolicyDocument") {
                        Some(doc) => {
                            self.document(doc, &format!("{loc}.PolicyDocument"), holders, false)
                        }
                        None => self.opaque(loc, policy),
                    }
                }
            }
            Some(other) => self.opaque(format!("{base}.Policies"), other),
        }
    }

    fn managed_arns(&mut self, props: &Value, base: &str, holder: &str) {
        match props.get("ManagedPolicyArns") {
            None => {}
            Some(Value::Array(arns)) => {
                for (i, arn) in arns.iter().enumerate() {
                    self.managed_policy_arns.push(ManagedArn {
                        location: format!("{base}.ManagedPolicyArns[{i}]"),
                        holder: holder.to_string(),
                        arn: Term::from_json(arn),
                    });
                }
            }
            Some(other) => self.opaque(format!("{base}.ManagedPolicyArns"), other),
        }
    }

    fn document(&mut self, doc: &Value, loc: &str, holders: &[String], trust: bool) {
        let statements = match doc.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
            Some(single @ Value::Object(map)) if !is_intrinsic(map) => vec![single],
            _ => return self.opaque(loc.to_string(), doc),
        };
        for (j, statement) in statements.into_iter().enumerate() {
            let location = format!("{loc}.Statement[{j}]");
            match parse_statement(statement, &location, holders, trust) {
                Some(parsed) => self.statements.push(parsed),
                None => self.opaque(location, statement),
            }
        }
    }
}

/// A single-key object whose key is `Ref` or `Fn::...`: a value computed at deploy time.
fn is_intrinsic(map: &serde_json::Map<String, Value>) -> bool {
    map.len() == 1 && map.keys().all(|k| k == "Ref" || k.starts_with("Fn::"))
}

fn parse_statement(
    statement: &Value,
    location: &str,
    holders: &[String],
    trust: bool,
) -> Option<Statement> {
    let map = statement.as_object().filter(|m| !is_intrinsic(m))?;
    let effect = match map.get("Effect")?.as_str()? {
        "Allow" => Effect::Allow,
        "Deny" => Effect::Deny,
        _ => return None,
    };
    let actions = either(map, "Action", "NotAction", terms)?;
    let resources = either(map, "Resource", "NotResource", terms)
        .unwrap_or_else(|| vec![Item::One(Term::Literal("*".to_string()))]);
    let principals = either(map, "Principal", "NotPrincipal", principal_terms).unwrap_or_default();
    Some(Statement {
        location: location.to_string(),
        holders: holders.to_vec(),
        trust,
        effect,
        actions,
        resources,
        principals,
        condition: map.get("Condition").map(canonical_json),
    })
}

/// Reads `Action` as a list of single items, or `NotAction` as one exclusion item; None when neither is present.
fn either(
    map: &serde_json::Map<String, Value>,
    positive: &str,
    negative: &str,
    read: fn(&Value) -> Vec<Term>,
) -> Option<Vec<Item>> {
    if let Some(value) = map.get(positive) {
        return Some(read(value).into_iter().map(Item::One).collect());
    }
    map.get(negative)
        .map(|value| vec![Item::AllExcept(read(value))])
}

/// A string, a list of strings, or an intrinsic producing either.
fn terms(value: &Value) -> Vec<Term> {
    match value {
        Value::Array(items) => items.iter().map(Term::from_json).collect(),
        other => vec![Term::from_json(other)],
    }
}

/// `"*"`, or `{"AWS": ..., "Service": ..., "Federated": ..., "CanonicalUser": ...}` with string or list values.
/// Each principal becomes `Type:value`; `{"AWS": "*"}` means anyone, like `"*"`.
fn principal_terms(value: &Value) -> Vec<Term> {
    let Value::Object(map) = value else {
        return terms(value);
    };
    if is_intrinsic(map) {
        return vec![Term::from_json(value)];
    }
    let mut out = Vec::new();
    for (kind, values) in map {
        for term in terms(values) {
            out.push(match term {
                Term::Literal(s) if s == "*" && kind == "AWS" => Term::Literal(s),
                Term::Literal(s) => Term::Literal(format!("{kind}:{s}")),
                Term::Intrinsic(s) => Term::Intrinsic(format!("{kind}:{s}")),
            });
        }
    }
    out
}
