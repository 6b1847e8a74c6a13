//! The semantic IAM diff between the applied template and a candidate.
//!
//! Two views of the same change. The display sets (added/removed actions, resources, principals, managed policy
//! ARNs) answer "what changed" for `plan` and /status. The widening verdict answers "does the candidate grant
//! anything the applied template did not", and is computed on atomic grants - one (holder, action, resource,
//! principal, condition) tuple at a time - because flat sets lose the pairing: moving `s3:GetObject` from one
//! bucket to `*` changes neither the action set nor (if `*` is used elsewhere) the resource set.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::extract::{Effect, Grants, Statement, grants};
use super::pattern::{Item, Kind, Term, item_covers};

/// How many of the patterns a new wildcard swallows are named in its "widened" line; a new `*` can swallow dozens.
const MAX_SWALLOWED_SHOWN: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PolicyDiff {
    pub added_actions: BTreeSet<String>,
    pub removed_actions: BTreeSet<String>,
    pub added_resources: BTreeSet<String>,
    pub removed_resources: BTreeSet<String>,
    pub added_principals: BTreeSet<String>,
    pub removed_principals: BTreeSet<String>,
    pub added_managed_policy_arns: BTreeSet<String>,
    pub removed_managed_policy_arns: BTreeSet<String>,
    /// Human lines for wildcards that now cover more, e.g. "ec2:Describe* -> ec2:*", and for widenings the sets
    /// above cannot show (a removed Deny, a loosened Condition, a grant moved to another holder).
    pub widened: Vec<String>,
    /// The candidate grants at least one thing the applied template did not. An added action that an existing
    /// wildcard already covers does not set this; removals never do.
    pub grants_more: bool,
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
            && !self.grants_more
    }

    pub fn is_widening(&self) -> bool {
        self.grants_more || !self.widened.is_empty()
    }

    /// One line per change: "+ action ec2:StopInstances", "- resource ...", "+ principal ...",
    /// "+ managed policy ...", "~ widened ...".
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let groups = [
            ("action", &self.added_actions, &self.removed_actions),
            ("resource", &self.added_resources, &self.removed_resources),
            (
                "principal",
                &self.added_principals,
                &self.removed_principals,
            ),
            (
                "managed policy",
                &self.added_managed_policy_arns,
                &self.removed_managed_policy_arns,
            ),
        ];
        for (noun, added, removed) in groups {
            out.extend(added.iter().map(|v| format!("+ {noun} {v}")));
            out.extend(removed.iter().map(|v| format!("- {noun} {v}")));
        }
        out.extend(self.widened.iter().map(|w| format!("~ widened {w}")));
        out
    }
}

pub fn diff(applied: &Value, candidate: &Value) -> PolicyDiff {
    let (old, new) = (grants(applied), grants(candidate));
    let mut d = PolicyDiff::default();

    let (old_actions, new_actions) = (allowed(&old, Kind::Action), allowed(&new, Kind::Action));
    let (old_resources, new_resources) =
        (allowed(&old, Kind::Resource), allowed(&new, Kind::Resource));
    let (old_principals, new_principals) = (
        allowed(&old, Kind::Principal),
        allowed(&new, Kind::Principal),
    );
    (d.added_actions, d.removed_actions) = set_diff(Kind::Action, &old_actions, &new_actions);
    (d.added_resources, d.removed_resources) =
        set_diff(Kind::Resource, &old_resources, &new_resources);
    (d.added_principals, d.removed_principals) =
        set_diff(Kind::Principal, &old_principals, &new_principals);
    let (old_arns, new_arns) = (managed(&old), managed(&new));
    (d.added_managed_policy_arns, d.removed_managed_policy_arns) =
        set_diff(Kind::Resource, &old_arns, &new_arns);

    // "ec2:Describe* -> ec2:*": a new pattern that swallows what used to be granted.
    for (kind, old_items, new_items) in [
        (Kind::Action, &old_actions, &new_actions),
        (Kind::Resource, &old_resources, &new_resources),
    ] {
        for (key, item) in new_items {
            if old_items.contains_key(key) || old_items.values().any(|o| item_covers(kind, o, item))
            {
                continue;
            }
            let swallowed: Vec<String> = old_items
                .values()
                .filter(|o| item_covers(kind, item, o))
                .map(|o| o.display(kind))
                .collect();
            if !swallowed.is_empty() {
                let mut shown = swallowed[..swallowed.len().min(MAX_SWALLOWED_SHOWN)].join(", ");
                if swallowed.len() > MAX_SWALLOWED_SHOWN {
                    shown.push_str(&format!(
                        " and {} more",
                        swallowed.len() - MAX_SWALLOWED_SHOWN
                    ));
                }
                d.widened.push(format!("{shown} -> {}", item.display(kind)));
            }
        }
    }

    let old_allow = atoms(&old, Effect::Allow);
    let mut reported_locations = BTreeSet::new();
    for atom in atoms(&new, Effect::Allow) {
        if old_allow.iter().any(|o| o.covers(&atom)) {
            continue;
        }
        d.grants_more = true;
        if let Item::AllExcept(_) = atom.action {
            push_once(
                &mut d.widened,
                format!(
                    "{}: Allow with {} grants every other action",
                    atom.location,
                    atom.action.display(Kind::Action)
                ),
            );
            continue;
        }
        // A grant whose action, resource or principal is itself new is already shown by a "+" line.
        let new_value = |kind: Kind, item: &Item, old_items: &BTreeMap<String, Item>| {
            *item != NO_PRINCIPAL && !old_items.values().any(|o| item_covers(kind, o, item))
        };
        if new_value(Kind::Action, atom.action, &old_actions)
            || (!atom.trust && new_value(Kind::Resource, atom.resource, &old_resources))
            || new_value(Kind::Principal, atom.principal, &old_principals)
        {
            continue;
        }
        if reported_locations.insert(atom.location.to_string()) {
            d.widened.push(format!(
                "{} newly grants {} on {} to {} (each was granted before, but not together, not to this holder, or only under a condition)",
                atom.location,
                atom.action.display(Kind::Action),
                atom.resource.display(Kind::Resource),
                atom.holder
            ));
        }
    }

    // A Deny that no longer applies frees whatever it blocked: every old Deny tuple must still be denied.
    let new_deny = atoms(&new, Effect::Deny);
    let mut lifted = BTreeSet::new();
    for atom in atoms(&old, Effect::Deny) {
        if new_deny.iter().any(|n| n.covers(&atom)) {
            continue;
        }
        d.grants_more = true;
        if lifted.insert(atom.location.to_string()) {
            d.widened.push(format!(
                "Deny of {} on {} for {} ({}) removed or narrowed",
                atom.action.display(Kind::Action),
                atom.resource.display(Kind::Resource),
                atom.holder,
                atom.location
            ));
        }
    }

    for arn in &new.managed_policy_arns {
        let attached_before = old
            .managed_policy_arns
            .iter()
            .any(|o| o.holder == arn.holder && o.arn == arn.arn);
        if attached_before {
            continue;
        }
        d.grants_more = true;
        if !d.added_managed_policy_arns.contains(arn.arn.display()) {
            d.widened.push(format!(
                "managed policy {} newly attached to {}",
                arn.arn.display(),
                arn.holder
            ));
        }
    }

    for fragment in &new.opaque {
        if !old.opaque.iter().any(|o| o.text == fragment.text) {
            d.grants_more = true;
            d.widened.push(format!(
                "{}: policy not interpretable, treated as widening: {}",
                fragment.location, fragment.text
            ));
        }
    }
    d
}

fn push_once(lines: &mut Vec<String>, line: String) {
    if !lines.contains(&line) {
        lines.push(line);
    }
}

/// The values granted by Allow statements, keyed for comparison. Resources of trust policies (implicitly the role
/// itself) and the absent principal of identity policies are left out: they are not something a template adds.
fn allowed(g: &Grants, kind: Kind) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    for s in g.statements.iter().filter(|s| s.effect == Effect::Allow) {
        let items: &[Item] = match kind {
            Kind::Action => &s.actions,
            Kind::Resource if s.trust => &[],
            Kind::Resource => &s.resources,
            Kind::Principal => &s.principals,
        };
        for item in items {
            out.entry(item.key(kind)).or_insert_with(|| item.clone());
        }
    }
    out
}

fn managed(g: &Grants) -> BTreeMap<String, Item> {
    g.managed_policy_arns
        .iter()
        .map(|m| (m.arn.display().to_string(), Item::One(m.arn.clone())))
        .collect()
}

/// Added and removed display values, comparing by key.
fn set_diff(
    kind: Kind,
    old: &BTreeMap<String, Item>,
    new: &BTreeMap<String, Item>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let added = new
        .iter()
        .filter(|(k, _)| !old.contains_key(*k))
        .map(|(_, v)| v.display(kind))
        .collect();
    let removed = old
        .iter()
        .filter(|(k, _)| !new.contains_key(*k))
        .map(|(_, v)| v.display(kind))
        .collect();
    (added, removed)
}

/// One atomic grant (or denial).
struct Atom<'a> {
    location: &'a str,
    holder: &'a str,
    trust: bool,
    action: &'a Item,
    resource: &'a Item,
    principal: &'a Item,
    condition: Option<&'a str>,
}

static NO_PRINCIPAL: Item = Item::One(Term::Literal(String::new()));

fn atoms(g: &Grants, effect: Effect) -> Vec<Atom<'_>> {
    let mut out = Vec::new();
    for s in g.statements.iter().filter(|s| s.effect == effect) {
        push_atoms(s, &mut out);
    }
    out
}

fn push_atoms<'a>(s: &'a Statement, out: &mut Vec<Atom<'a>>) {
    let principals: &[Item] = if s.principals.is_empty() {
        std::slice::from_ref(&NO_PRINCIPAL)
    } else {
        &s.principals
    };
    for holder in &s.holders {
        for action in &s.actions {
            for resource in &s.resources {
                for principal in principals {
                    out.push(Atom {
                        location: &s.location,
                        holder,
                        trust: s.trust,
                        action,
                        resource,
                        principal,
                        condition: s.condition.as_deref(),
                    });
                }
            }
        }
    }
}

impl Atom<'_> {
    fn same_scope(&self, other: &Atom) -> bool {
        self.holder == other.holder && self.trust == other.trust
    }

    /// Is `other` inside this one? For grants: does this grant allow all that `other` allows. For denials: does
    /// this Deny block all that `other` blocked. Either way a condition narrows the statement, so an
    /// unconditional one covers a conditional one; two conditions are only trusted when identical (any other
    /// change may loosen).
    fn covers(&self, other: &Atom) -> bool {
        self.same_scope(other)
            && item_covers(Kind::Action, self.action, other.action)
            && item_covers(Kind::Resource, self.resource, other.resource)
            && item_covers(Kind::Principal, self.principal, other.principal)
            && (self.condition.is_none() || self.condition == other.condition)
    }
}
