//! The policy documents a second opinion compares: for every role whose identity policy or trust policy differs
//! between the applied version and the candidate, both documents resolved to plain JSON (IAM Access Analyzer's
//! CheckNoNewAccess takes policies, not templates).
//!
//! Deploy-time values become stand-ins that keep the comparison honest: the account, Region and partition get
//! fixed example values (the same on both sides), other fixed symbols a name of their own, and a value that could
//! be anything is `*` in the candidate and a string that matches nothing in the applied version.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::Parameters;
use super::budget::{Budget, TooComplex};
use super::model::{Effect, Model, Scope, Stmt};
use super::pattern::{Item, Kind};
use super::resolve::Env;
use super::value::{Symbols, is_any, is_symbol};
use crate::cloud::PolicyKind;

/// One role's policy of one kind, before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPair {
    /// `role NAME` or `trust of role NAME`.
    pub holder: String,
    pub kind: PolicyKind,
    pub existing: String,
    pub new: String,
}

/// The documents that differ, one pair per holder and kind.
pub fn policy_pairs(
    applied: &Value,
    candidate: &Value,
    parameters: &Parameters,
) -> Result<Vec<PolicyPair>, TooComplex> {
    let mut symbols = Symbols::default();
    let mut budget = Budget::default();
    let (old, new) = super::models(
        applied,
        candidate,
        parameters,
        &Env::new(),
        &mut symbols,
        &mut budget,
    )?;
    let (before, after) = (
        documents(&old, &symbols, false),
        documents(&new, &symbols, true),
    );
    let mut out = Vec::new();
    for ((holder, kind), doc) in &after {
        let existing = before.get(&(holder.clone(), *kind));
        if existing.is_some_and(|e| e == doc) {
            continue;
        }
        let empty = empty_policy(*kind);
        out.push(PolicyPair {
            holder: holder.clone(),
            kind: *kind,
            existing: existing.unwrap_or(&empty).to_string(),
            new: doc.to_string(),
        });
    }
    Ok(out)
}

/// A policy that grants nothing: the "existing" side for a holder the applied version did not have.
fn empty_policy(kind: PolicyKind) -> Value {
    match kind {
        PolicyKind::Identity => json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Action": "*", "Resource": "*"}]}),
        PolicyKind::Trust => json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"}]}),
    }
}

fn documents(
    model: &Model,
    symbols: &Symbols,
    candidate: bool,
) -> BTreeMap<(String, PolicyKind), Value> {
    let mut grouped: BTreeMap<(String, PolicyKind), Vec<Value>> = BTreeMap::new();
    for s in &model.statements {
        for h in &s.holders {
            let kind = match h.scope {
                Scope::Identity => PolicyKind::Identity,
                Scope::Trust => PolicyKind::Trust,
                Scope::Boundary | Scope::Resource => continue,
            };
            let statement = render(s, kind, symbols, candidate);
            let list = grouped
                .entry((symbols.display(&h.identity), kind))
                .or_default();
            if !list.contains(&statement) {
                list.push(statement);
            }
        }
    }
    grouped
        .into_iter()
        .map(|(k, mut statements)| {
            statements.sort_by_key(Value::to_string);
            (k, json!({"Version": "2012-10-17", "Statement": statements}))
        })
        .collect()
}

fn text(raw: &str, symbols: &Symbols, candidate: bool) -> String {
    let mut out = String::new();
    for c in raw.chars() {
        if is_any(c) {
            out.push_str(if candidate {
                "*"
            } else {
                "stacksetd-unknown-value"
            });
        } else if is_symbol(c) {
            match symbols.fixed_name(c).unwrap_or("") {
                "AWS::AccountId" => out.push_str("111111111111"),
                "AWS::Region" => out.push_str("us-east-1"),
                "AWS::Partition" => out.push_str("aws"),
                "AWS::URLSuffix" => out.push_str("amazonaws.com"),
                other => out.push_str(&format!(
                    "stacksetd-{}",
                    other
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric())
                        .collect::<String>()
                )),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn items(items: &[Item], kind: Kind, symbols: &Symbols, candidate: bool) -> (&'static str, Value) {
    match items {
        [Item::AllExcept(terms)] => (
            kind.field(true),
            Value::Array(
                terms
                    .iter()
                    .map(|t| Value::String(text(t, symbols, candidate)))
                    .collect(),
            ),
        ),
        _ => (
            kind.field(false),
            Value::Array(
                items
                    .iter()
                    .map(|i| Value::String(text(&i.text(kind), symbols, candidate)))
                    .collect(),
            ),
        ),
    }
}

fn render(s: &Stmt, kind: PolicyKind, symbols: &Symbols, candidate: bool) -> Value {
    let mut out = Map::new();
    out.insert(
        "Effect".into(),
        json!(if s.effect == Effect::Allow {
            "Allow"
        } else {
            "Deny"
        }),
    );
    let (field, actions) = items(&s.actions, Kind::Action, symbols, candidate);
    out.insert(field.into(), actions);
    if kind == PolicyKind::Identity {
        let (field, resources) = items(&s.resources, Kind::Resource, symbols, candidate);
        out.insert(field.into(), resources);
    } else {
        let mut principals = Map::new();
        let mut anyone = false;
        for p in &s.principals {
            let raw = text(&p.text(Kind::Principal), symbols, candidate);
            match raw.split_once(':') {
                _ if raw == "*" => anyone = true,
                Some((k, v)) => principals
                    .entry(k.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()))
                    .as_array_mut()
                    .expect("an array")
                    .push(Value::String(v.to_string())),
                None => anyone = true,
            }
        }
        out.insert(
            "Principal".into(),
            if anyone {
                json!("*")
            } else {
                Value::Object(principals)
            },
        );
    }
    // The weakest condition alternative: no condition when any alternative has none.
    if let Some(Some(cond)) = s
        .conditions
        .first()
        .filter(|_| s.conditions.iter().all(Option::is_some))
    {
        let mut block = Map::new();
        for ((op, _), clause) in &cond.clauses {
            let entry = block
                .entry(op.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            entry.as_object_mut().expect("an object").insert(
                clause.key.clone(),
                Value::Array(
                    clause
                        .values
                        .iter()
                        .map(|v| Value::String(text(v, symbols, candidate)))
                        .collect(),
                ),
            );
        }
        if !block.is_empty() {
            out.insert("Condition".into(), Value::Object(block));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_documents_are_paired_and_symbols_become_stand_ins() {
        let role = |actions: Value| {
            json!({"Resources": {"R": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "R",
                "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                    "Principal": {"AWS": {"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:root"}}}]},
                "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [
                    {"Effect": "Allow", "Action": actions, "Resource": "*"}]}}]}}}})
        };
        let pairs = policy_pairs(
            &role(json!(["ce:Get*"])),
            &role(json!(["ce:Get*", "s3:GetObject"])),
            &Parameters::new(),
        )
        .unwrap();
        assert_eq!(pairs.len(), 1, "the trust is unchanged: {pairs:?}");
        assert_eq!(pairs[0].kind, PolicyKind::Identity);
        assert!(
            pairs[0].new.contains("s3:GetObject") && !pairs[0].existing.contains("s3:GetObject")
        );
        let trust =
            policy_pairs(&json!({}), &role(json!(["ce:Get*"])), &Parameters::new()).unwrap();
        let t = trust
            .iter()
            .find(|p| p.kind == PolicyKind::Trust)
            .expect("a new trust");
        assert!(
            t.new.contains("arn:aws:iam::111111111111:root"),
            "{}",
            t.new
        );
        assert!(t.existing.contains("Deny"));
    }
}
