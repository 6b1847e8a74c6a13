//! Default-deny for everything the statement model does not read: a resource entry's attributes (`Metadata`,
//! `DeletionPolicy`, `UpdateReplacePolicy`, `CreationPolicy`, `UpdatePolicy`, `DependsOn`, keys CloudFormation
//! may add), the properties of IAM types that hold no statement (`Path`, `Tags`, ...), a changed resource type,
//! and entries that are not resources at all (an `AWS::LanguageExtensions` `Fn::ForEach` loop).
//!
//! Every difference here is widening, with the path it is at, unless one of these rules proves it harmless:
//! - the resource's type is inert (no property of its schema can carry a policy, a principal, code, a URL, a
//!   command or a destination: `resources::class_of`), so nothing about it grants;
//! - a Metadata key, a `CreationPolicy` or an `UpdatePolicy` is removed (nothing acts on what is not there);
//! - a `DeletionPolicy` or `UpdateReplacePolicy` becomes `Delete` or is removed (CloudFormation then deletes what
//!   it removes, which is what the judge assumed).
//!
//! Exported outputs are judged here too: an export added or changed (its name or its value) is widening, since
//! other stacks of the account act on what they import; one removed is harmless (an import of it fails).
//!
//! The rest of the template is judged elsewhere or through its effect: parameters, mappings and conditions through
//! the resolved values (`resolve`), statements, boundaries, attachments and settings by `judge`, transforms and
//! unknown sections by `judge_case`; outputs that are not exported and descriptions grant nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::judge::Finding;
use super::model::{Model, ResourceView};
use super::resources::Class;
use super::value::{Symbols, Val};

/// The values of `DeletionPolicy` / `UpdateReplacePolicy` under which CloudFormation removes what it removes.
fn deletes(value: Option<&Val>) -> bool {
    match value {
        None => true,
        Some(Val::Str(s)) => s == "Delete",
        Some(_) => false,
    }
}

/// Keys whose removal is harmless: what is not there does nothing.
fn removal_is_harmless(key: &str) -> bool {
    key.starts_with("Metadata.") || key == "CreationPolicy" || key == "UpdatePolicy"
}

/// The differences of the resource entries the model does not read.
pub fn entries(old: &Model, new: &Model, symbols: &Symbols, out: &mut Vec<Finding>) {
    let empty = ResourceView {
        id: String::new(),
        kind: String::new(),
        class: Class::Inert,
        certain: true,
        props: String::new(),
        does: String::new(),
        attributes: BTreeMap::new(),
        unjudged: BTreeMap::new(),
    };
    for (id, r) in &new.resources {
        let o = old.resources.get(id);
        if r.class == Class::Inert && o.is_none_or(|o| o.class == Class::Inert) {
            continue;
        }
        let subject = format!("resource {id} ({})", r.kind);
        if let Some(o) = o
            && o.kind != r.kind
        {
            out.push(widening(
                &subject,
                &format!("Resources.{id}.Type"),
                format!("Resources.{id}.Type changed from {} to {}", o.kind, r.kind),
            ));
        }
        let before = o.unwrap_or(&empty);
        attributes(id, &subject, before, r, symbols, out);
        unjudged(id, &subject, before, r, symbols, out);
    }
    for (path, before, after) in differences(&old.exports, &new.exports) {
        if after.is_some() {
            out.push(widening(
                "template",
                path,
                format!(
                    "{} (stacks that import it act on the new name or value)",
                    change(&format!("{path}.Export"), before, after, symbols)
                ),
            ));
        }
    }
    for (id, o) in &old.resources {
        if !new.resources.contains_key(id)
            && (!deletes(o.attributes.get("DeletionPolicy")))
            && o.class != Class::Inert
        {
            out.push(
                super::judge::info(
                    format!("resource {id} ({})", o.kind),
                    format!(
                        "removed from the template, but its DeletionPolicy {} keeps it, and any access it grants, \
                         in every account",
                        text(o.attributes.get("DeletionPolicy"), symbols)
                    ),
                )
                .at(format!("Resources.{id}.DeletionPolicy")),
            );
        }
    }
}

fn widening(subject: &str, path: &str, text: String) -> Finding {
    super::judge::widening(subject, text).at(path)
}

fn text(v: Option<&Val>, symbols: &Symbols) -> String {
    match v {
        None => "(none)".into(),
        Some(Val::Str(s)) => symbols.display(s),
        Some(other) => {
            let t = symbols.display(&other.canonical());
            if t.chars().count() > 200 {
                format!("{}...", t.chars().take(200).collect::<String>())
            } else {
                t
            }
        }
    }
}

/// The keys whose values differ between two maps of an entry, with both sides.
fn differences<'a>(
    old: &'a BTreeMap<String, Val>,
    new: &'a BTreeMap<String, Val>,
) -> impl Iterator<Item = (&'a String, Option<&'a Val>, Option<&'a Val>)> {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter().filter_map(move |key| {
        let (before, after) = (old.get(key), new.get(key));
        (before != after).then_some((key, before, after))
    })
}

/// `PATH added: ...`, `PATH removed (was ...)`, `PATH changed from ... to ...`.
fn change(path: &str, before: Option<&Val>, after: Option<&Val>, symbols: &Symbols) -> String {
    match (before, after) {
        (None, _) => format!("{path} added: {}", text(after, symbols)),
        (_, None) => format!("{path} removed (was {})", text(before, symbols)),
        _ => format!(
            "{path} changed from {} to {}",
            text(before, symbols),
            text(after, symbols)
        ),
    }
}

fn attributes(
    id: &str,
    subject: &str,
    old: &ResourceView,
    new: &ResourceView,
    symbols: &Symbols,
    out: &mut Vec<Finding>,
) {
    for (key, before, after) in differences(&old.attributes, &new.attributes) {
        let path = format!("Resources.{id}.{key}");
        let retains = matches!(key.as_str(), "DeletionPolicy" | "UpdateReplacePolicy");
        if (retains && deletes(after)) || (after.is_none() && removal_is_harmless(key)) {
            continue;
        }
        let mut words = change(&path, before, after, symbols);
        if retains {
            words.push_str(
                ": CloudFormation keeps the resource, and any access it grants, when it is removed from the template, \
                 replaced, or its stack is deleted (ensure: Absent)",
            );
        }
        out.push(widening(subject, &path, words));
    }
}

/// The properties of an IAM type the statement model does not read: any difference is widening. Tags are named
/// tag by tag (they drive ABAC conditions and SCP exemptions).
fn unjudged(
    id: &str,
    subject: &str,
    old: &ResourceView,
    new: &ResourceView,
    symbols: &Symbols,
    out: &mut Vec<Finding>,
) {
    for (key, before, after) in differences(&old.unjudged, &new.unjudged) {
        let path = format!("Resources.{id}.Properties.{key}");
        if key == "Tags"
            && let Some(lines) = tag_changes(before, after, symbols)
        {
            for line in lines {
                out.push(widening(subject, &path, format!("{path}: {line}")));
            }
            continue;
        }
        out.push(widening(
            subject,
            &path,
            format!(
                "{} (the guard does not model it, so any change counts)",
                change(&path, before, after, symbols)
            ),
        ));
    }
}

/// `tag security-exempt added`, `tag team changed`, ... (values never shown: they may be the customer's); `None`
/// when either side is not a plain tag list.
fn tag_changes(
    before: Option<&Val>,
    after: Option<&Val>,
    symbols: &Symbols,
) -> Option<Vec<String>> {
    let tags = |v: Option<&Val>| -> Option<BTreeMap<String, String>> {
        let mut map = BTreeMap::new();
        let Some(v) = v else {
            return Some(map);
        };
        let Val::List(items) = v else {
            return None;
        };
        for item in items {
            let (Some(Val::Str(k)), Some(value)) = (item.get("Key"), item.get("Value")) else {
                return None;
            };
            map.insert(symbols.display(k), value.canonical());
        }
        Some(map)
    };
    let (b, a) = (tags(before)?, tags(after)?);
    let mut lines = Vec::new();
    for (k, v) in &a {
        match b.get(k) {
            None => lines.push(format!("tag {k} added")),
            Some(w) if w != v => lines.push(format!("tag {k} changed")),
            Some(_) => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        lines.push(format!("tag {k} removed"));
    }
    // Empty: the same tags in another order, which is harmless.
    Some(lines)
}
