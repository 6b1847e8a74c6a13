//! PLACEHOLDER - replaced at merge by the real IAM diff and allowlist (written on another branch).
//!
//! Only the signatures are the contract. This minimal version diffs the set of IAM actions found anywhere in a
//! template (every `Action` value) and, for DataOnly, refuses any action that does not start with a read prefix.
//! Resources, principals, managed policy ARNs and wildcard widening are NOT analysed here.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::desired::PolicyLevel;

/// Read-only action verbs a DataOnly template may grant (placeholder rule).
const READ_PREFIXES: &[&str] = &[
    "Get",
    "List",
    "Describe",
    "View",
    "Read",
    "Lookup",
    "Search",
    "sts:AssumeRole",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyDiff {
    pub added_actions: BTreeSet<String>,
    pub removed_actions: BTreeSet<String>,
    pub added_resources: BTreeSet<String>,
    pub removed_resources: BTreeSet<String>,
    pub added_principals: BTreeSet<String>,
    pub removed_principals: BTreeSet<String>,
    pub added_managed_policy_arns: BTreeSet<String>,
    pub removed_managed_policy_arns: BTreeSet<String>,
    pub widened: Vec<String>,
}

impl PolicyDiff {
    pub fn is_empty(&self) -> bool {
        self.added_actions.is_empty()
            && self.removed_actions.is_empty()
            && self.added_resources.is_empty()
            && self.removed_resources.is_empty()
            && self.added_principals.is_empty()
            && self.removed_principals.is_empty()
            && self.added_managed_policy_arns.is_empty()
            && self.removed_managed_policy_arns.is_empty()
            && self.widened.is_empty()
    }

    pub fn is_widening(&self) -> bool {
        !self.added_actions.is_empty()
            || !self.added_resources.is_empty()
            || !self.added_principals.is_empty()
            || !self.added_managed_policy_arns.is_empty()
            || !self.widened.is_empty()
    }

    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut push = |sign: &str, what: &str, set: &BTreeSet<String>| {
            out.extend(set.iter().map(|v| format!("{sign} {what} {v}")));
        };
        push("+", "action", &self.added_actions);
        push("-", "action", &self.removed_actions);
        push("+", "resource", &self.added_resources);
        push("-", "resource", &self.removed_resources);
        push("+", "principal", &self.added_principals);
        push("-", "principal", &self.removed_principals);
        push("+", "managed policy", &self.added_managed_policy_arns);
        push("-", "managed policy", &self.removed_managed_policy_arns);
        out.extend(self.widened.iter().map(|w| format!("! widened {w}")));
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offense {
    pub location: String,
    pub action: String,
    pub reason: String,
}

pub fn diff(applied: &serde_json::Value, candidate: &serde_json::Value) -> PolicyDiff {
    let names = |doc| -> BTreeSet<String> { actions(doc).into_iter().map(|(a, _)| a).collect() };
    let (before, after) = (names(applied), names(candidate));
    PolicyDiff {
        added_actions: after.difference(&before).cloned().collect(),
        removed_actions: before.difference(&after).cloned().collect(),
        ..PolicyDiff::default()
    }
}

pub fn check_allowlist(level: PolicyLevel, template: &serde_json::Value) -> Vec<Offense> {
    if level != PolicyLevel::DataOnly {
        return Vec::new();
    }
    actions(template)
        .into_iter()
        .filter(|(action, _)| {
            let verb = action.split_once(':').map_or(action.as_str(), |(_, v)| v);
            !READ_PREFIXES
                .iter()
                .any(|p| verb.starts_with(p) || action.as_str() == *p)
        })
        .map(|(action, location)| Offense {
            location,
            reason: "DataOnly allows read actions only".into(),
            action,
        })
        .collect()
}

/// (action, JSON path) for every string under an `Action` key.
fn actions(value: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    walk(value, "", &mut out);
    out
}

fn walk(value: &serde_json::Value, path: &str, out: &mut BTreeSet<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{path}/{k}");
                if k == "Action" {
                    match v {
                        serde_json::Value::String(s) => {
                            out.insert((s.clone(), path.to_string()));
                        }
                        serde_json::Value::Array(items) => {
                            for s in items.iter().filter_map(|i| i.as_str()) {
                                out.insert((s.to_string(), path.to_string()));
                            }
                        }
                        _ => {}
                    }
                } else {
                    walk(v, &here, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}
