//! The change judgment: does a new version grant anything the applied version did not?
//!
//! A version is widening when, after resolution, it grants a holder an action, resource or principal (with
//! wildcard semantics) the applied version did not grant that holder together; removes or loosens a condition
//! (above all `sts:ExternalId`); removes a Deny or a permissions boundary; attaches a managed policy from
//! outside the template; or adds or changes a resource that is not inert, or a Transform. Narrowing,
//! reordering, reformatting (JSON <-> YAML) and rewording descriptions are not.
//!
//! Statements are compared as lists, never as the product of their holders, actions, resources and principals:
//! a candidate statement is first looked for whole in the applied version (the common case: unchanged), then
//! covered by one applied statement, and only then action by action. Holders that share the same applied
//! statements share one comparison. All of it pays into the budget.
//!
//! Size: over 700 lines, one comparison. The statement-level, action-level and trust comparisons share the
//! holders, the cases and the budget; the findings' wording lives next to the rule that makes each.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::budget::{Budget, TooComplex};
use super::catalog::{Catalog, Level};
use super::model::{Cond, Effect, Holder, Model, Scope, Stmt};
use super::pattern::{Item, Kind, glob_covers, item_covers};
use super::resources::Class;
use super::value::Symbols;

/// Holders named in one finding before "and N more".
const HOLDERS_SHOWN: usize = 3;
/// Newly granted catalog actions named for one wildcard before "and N more".
const ACTIONS_SHOWN: usize = 8;

/// One line an operator reads: `subject: text`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Finding {
    /// Grants something the applied version did not (or cannot be proven not to).
    pub widening: bool,
    /// What it is about: `trust of role ScanRole`, `new resource Hook (Custom::Register)`, `template`.
    pub subject: String,
    pub text: String,
    /// Where in the template it is (`Resources.Role.Properties.Policies[0].PolicyDocument.Statement[2]`,
    /// `Resources.Role.DeletionPolicy`, `Transform`); empty when it is about the template as a whole.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
}

impl Finding {
    pub fn line(&self) -> String {
        format!("{}: {}", self.subject, self.text)
    }

    /// The same finding, at `path`.
    pub fn at(mut self, path: impl Into<String>) -> Finding {
        self.path = path.into();
        self
    }
}

pub(super) fn widening(subject: impl Into<String>, text: impl Into<String>) -> Finding {
    Finding {
        widening: true,
        subject: subject.into(),
        text: text.into(),
        path: String::new(),
    }
}

pub(super) fn info(subject: impl Into<String>, text: impl Into<String>) -> Finding {
    Finding {
        widening: false,
        subject: subject.into(),
        text: text.into(),
        path: String::new(),
    }
}

/// Compare one case of the applied version with the same case of the candidate.
pub fn judge_case(
    old: &Model,
    new: &Model,
    symbols: &Symbols,
    budget: &mut Budget,
) -> Result<Vec<Finding>, TooComplex> {
    let mut out = Vec::new();
    if new.failed.is_some() {
        // CloudFormation creates nothing where the candidate fails to deploy.
        return Ok(out);
    }
    let empty = Model::default();
    let old = if old.failed.is_some() { &empty } else { old };
    for t in &new.transforms {
        if !old.transforms.contains(t) {
            out.push(widening(
                "template",
                format!("adds {t}: CloudFormation rewrites the template at deploy time, so what it installs is not what stacksetd judged"),
            ).at("Transform"));
        }
    }
    resources(old, new, &mut out);
    super::entries::entries(old, new, symbols, &mut out);
    statements(old, new, symbols, budget, &mut out)?;
    attachments(old, new, symbols, &mut out);
    boundaries(old, new, symbols, &mut out);
    settings(old, new, symbols, &mut out);
    Ok(out)
}

fn resources(old: &Model, new: &Model, out: &mut Vec<Finding>) {
    for (id, r) in &new.resources {
        if r.class.is_iam() || r.class == Class::Inert {
            if !old.resources.contains_key(id) {
                out.push(
                    info(format!("new resource {id} ({})", r.kind), r.does.clone())
                        .at(format!("Resources.{id}")),
                );
            }
            continue;
        }
        let path = format!("Resources.{id}");
        match old.resources.get(id) {
            None => out
                .push(widening(format!("new resource {id} ({})", r.kind), r.does.clone()).at(path)),
            Some(o) if o.kind != r.kind || o.props != r.props || (o.certain && !r.certain) => out
                .push(
                    widening(
                        format!("resource {id} ({}) changed", r.kind),
                        if o.kind != r.kind {
                            format!("was {}; now {}", o.kind, r.does)
                        } else {
                            r.does.clone()
                        },
                    )
                    .at(path),
                ),
            Some(_) => {}
        }
    }
    for (id, o) in &old.resources {
        if !new.resources.contains_key(id) {
            out.push(
                info(format!("resource {id} ({})", o.kind), "removed")
                    .at(format!("Resources.{id}")),
            );
        }
    }
}

/// Applied statements by holder and effect.
fn by_holder(model: &Model, effect: Effect) -> HashMap<&Holder, Vec<usize>> {
    let mut map: HashMap<&Holder, Vec<usize>> = HashMap::new();
    for (i, s) in model.statements.iter().enumerate() {
        if s.effect == effect {
            for h in &s.holders {
                let list = map.entry(h).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
    }
    map
}

fn statements(
    old: &Model,
    new: &Model,
    symbols: &Symbols,
    budget: &mut Budget,
    out: &mut Vec<Finding>,
) -> Result<(), TooComplex> {
    let old_allow = by_holder(old, Effect::Allow);
    let none: Vec<usize> = Vec::new();
    for s in new.statements.iter().filter(|s| s.effect == Effect::Allow) {
        // Holders that share the applied statements share one comparison and one finding.
        let mut groups: BTreeMap<&Vec<usize>, Vec<&Holder>> = BTreeMap::new();
        for h in &s.holders {
            groups
                .entry(old_allow.get(h).unwrap_or(&none))
                .or_default()
                .push(h);
        }
        for (olds, holders) in groups {
            budget.spend(1 + olds.len() as u64)?;
            let olds: Vec<&Stmt> = olds.iter().map(|&i| &old.statements[i]).collect();
            // The same text is the same grant only where the applied one was certain, or in force in exactly the
            // same cases (a formerly conditional grant is not "already granted").
            if olds
                .iter()
                .any(|o| o.raw == s.raw && (o.certain || o.context == s.context))
            {
                continue;
            }
            if covered(s, &olds, true, budget)? {
                continue;
            }
            let subject = holder_list(&holders, symbols);
            let start = out.len();
            explain(s, &olds, &subject, symbols, budget, out)?;
            for f in &mut out[start..] {
                f.path = s.location.clone();
            }
        }
    }
    // Every applied Deny must still deny at least as much.
    let new_deny = by_holder(new, Effect::Deny);
    for d in old.statements.iter().filter(|s| s.effect == Effect::Deny) {
        let mut lifted = Vec::new();
        for h in &d.holders {
            let ns: Vec<&Stmt> = new_deny
                .get(h)
                .map(|l| l.iter().map(|&i| &new.statements[i]).collect())
                .unwrap_or_default();
            budget.spend(1 + ns.len() as u64)?;
            // Kept word for word counts only where the new Deny is certain or decided exactly as before: a Deny
            // put under an `Fn::If`, or detached through a conditional attachment, is not kept.
            let kept = ns
                .iter()
                .any(|n| n.raw == d.raw && (n.certain || n.context == d.context))
                || ns.iter().any(|n| deny_covers(n, d, budget));
            if !kept {
                lifted.push(h);
            }
        }
        if !lifted.is_empty() {
            out.push(
                widening(
                    holder_list(&lifted, symbols),
                    format!(
                        "Deny of {} on {} removed or narrowed ({})",
                        items_text(&d.actions, Kind::Action, symbols),
                        items_text(&d.resources, Kind::Resource, symbols),
                        d.location
                    ),
                )
                .at(d.location.clone()),
            );
        }
    }
    removed_actions(old, new, symbols, budget, out)
}

/// Is every grant of `s` inside some applied statement (conditions at least as strict)?
fn covered(
    s: &Stmt,
    olds: &[&Stmt],
    check_conditions: bool,
    budget: &mut Budget,
) -> Result<bool, TooComplex> {
    let usable: Vec<&Stmt> = olds
        .iter()
        .copied()
        .filter(|o| {
            o.certain
                && (!check_conditions || s.conditions.iter().all(|c| stricter(c, &o.conditions[0])))
        })
        .collect();
    if usable.is_empty() {
        return Ok(false);
    }
    let mut steps = 0u64;
    let all = |inner: &[Item], outer: &[Item], kind: Kind, steps: &mut u64| {
        inner
            .iter()
            .all(|i| outer.iter().any(|o| item_covers(kind, o, i, steps)))
    };
    // One applied statement covering all of it.
    for o in &usable {
        let whole = all(&s.actions, &o.actions, Kind::Action, &mut steps)
            && all(&s.resources, &o.resources, Kind::Resource, &mut steps)
            && principals_covered(&s.principals, &o.principals, &mut steps);
        budget.spend(steps)?;
        steps = 0;
        if whole {
            return Ok(true);
        }
    }
    // Necessary, and cheap: each value is granted by some applied statement.
    let no_principal = [Item::One(String::new())];
    let principals: &[Item] = if s.principals.is_empty() {
        &no_principal
    } else {
        &s.principals
    };
    let principal_ok = |o: &Stmt, p: &Item, steps: &mut u64| {
        (p.key(Kind::Principal).is_empty() && o.principals.is_empty())
            || o.principals
                .iter()
                .any(|op| item_covers(Kind::Principal, op, p, steps))
    };
    for (items, kind) in [(&s.actions, Kind::Action), (&s.resources, Kind::Resource)] {
        for i in items.iter() {
            let ok = usable.iter().any(|o| {
                let values = if kind == Kind::Action {
                    &o.actions
                } else {
                    &o.resources
                };
                values.iter().any(|oi| item_covers(kind, oi, i, &mut steps))
            });
            budget.spend(steps + usable.len() as u64)?;
            steps = 0;
            if !ok {
                return Ok(false);
            }
        }
    }
    for p in principals {
        let ok = usable.iter().any(|o| principal_ok(o, p, &mut steps));
        budget.spend(steps + usable.len() as u64)?;
        steps = 0;
        if !ok {
            return Ok(false);
        }
    }
    // Which applied statements cover all of s's resources and principals: an action inside one of them is done.
    let mut rest = Vec::with_capacity(usable.len());
    for o in &usable {
        let covers_rest = all(&s.resources, &o.resources, Kind::Resource, &mut steps)
            && principals.iter().all(|p| principal_ok(o, p, &mut steps));
        rest.push(covers_rest);
        budget.spend(steps + 1)?;
        steps = 0;
    }
    // Action by action: each (action, resource, principal) of s inside one applied statement.
    for a in &s.actions {
        let holding: Vec<usize> = (0..usable.len())
            .filter(|&k| {
                usable[k]
                    .actions
                    .iter()
                    .any(|oa| item_covers(Kind::Action, oa, a, &mut steps))
            })
            .collect();
        budget.spend(steps + usable.len() as u64)?;
        steps = 0;
        if holding.is_empty() {
            return Ok(false);
        }
        if holding.iter().any(|&k| rest[k]) {
            continue;
        }
        for r in &s.resources {
            for p in principals {
                let ok = holding.iter().any(|&k| {
                    let o = usable[k];
                    o.resources
                        .iter()
                        .any(|or| item_covers(Kind::Resource, or, r, &mut steps))
                        && principal_ok(o, p, &mut steps)
                });
                budget.spend(steps + holding.len() as u64)?;
                steps = 0;
                if !ok {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

fn principals_covered(inner: &[Item], outer: &[Item], steps: &mut u64) -> bool {
    if inner.is_empty() {
        return outer.is_empty();
    }
    inner.iter().all(|i| {
        outer
            .iter()
            .any(|o| item_covers(Kind::Principal, o, i, steps))
    })
}

/// Does the candidate Deny `n` deny everything the applied Deny `d` denied, whenever `d` applied?
fn deny_covers(n: &Stmt, d: &Stmt, budget: &mut Budget) -> bool {
    if !n.certain {
        return false;
    }
    let mut steps = 0;
    let ok = d
        .actions
        .iter()
        .all(|a| n.actions.iter().any(|na| item_covers(Kind::Action, na, a, &mut steps)))
        && d
            .resources
            .iter()
            .all(|r| n.resources.iter().any(|nr| item_covers(Kind::Resource, nr, r, &mut steps)))
        && (d.principals.is_empty() && n.principals.is_empty()
            || d.principals
                .iter()
                .all(|p| n.principals.iter().any(|np| item_covers(Kind::Principal, np, p, &mut steps))))
        // The new Deny's condition must hold wherever the old one did: the old is at least as strict.
        && d.conditions.iter().all(|dc| stricter(dc, &n.conditions[0]));
    budget.spend(steps).is_ok() && ok
}

/// A condition operator without its set qualifier (`ForAnyValue:`, `ForAllValues:`) and `IfExists`.
fn base_operator(op: &str) -> &str {
    op.trim_start_matches("ForAnyValue:")
        .trim_start_matches("ForAllValues:")
        .trim_end_matches("IfExists")
}

/// Positive operators: fewer values is stricter.
fn positive(op: &str) -> bool {
    matches!(
        base_operator(op),
        "StringEquals"
            | "StringEqualsIgnoreCase"
            | "StringLike"
            | "ArnEquals"
            | "ArnLike"
            | "IpAddress"
            | "NumericEquals"
            | "DateEquals"
            | "Bool"
            | "BinaryEquals"
    )
}

/// Negated operators: more values is stricter.
fn negative(op: &str) -> bool {
    matches!(
        base_operator(op),
        "StringNotEquals"
            | "StringNotEqualsIgnoreCase"
            | "StringNotLike"
            | "ArnNotEquals"
            | "ArnNotLike"
            | "NotIpAddress"
            | "NumericNotEquals"
            | "DateNotEquals"
    )
}

/// Is condition `new` at least as strict as `old` (does it allow only requests `old` allowed)?
pub fn stricter(new: &Option<Cond>, old: &Option<Cond>) -> bool {
    let Some(old) = old else {
        return true;
    };
    let Some(new) = new else {
        return false;
    };
    if old.opaque.is_some() || new.opaque.is_some() {
        return new == old;
    }
    old.clauses.iter().all(|((op, key), old_clause)| {
        let Some(new_clause) = new.clauses.get(&(op.clone(), key.clone())) else {
            return false;
        };
        let (old_values, new_values) = (&old_clause.values, &new_clause.values);
        let like = op.contains("Like");
        let within = |v: &String, set: &BTreeSet<String>| {
            set.contains(v) || (like && set.iter().any(|o| glob_covers(o, v, &mut 0)))
        };
        if positive(op) {
            new_values.iter().all(|v| within(v, old_values))
        } else if negative(op) {
            old_values.iter().all(|v| within(v, new_values))
        } else {
            new_values == old_values
        }
    })
}

/// What a condition change did, in words: clauses removed, values changed, operators changed.
fn condition_change(new: &Option<Cond>, old: &Option<Cond>, symbols: &Symbols) -> String {
    let Some(old) = old else {
        return "condition changed".into();
    };
    let Some(new) = new else {
        let keys: BTreeSet<&str> = old.clauses.values().map(|c| c.key.as_str()).collect();
        return format!(
            "condition {} removed",
            keys.into_iter().collect::<Vec<_>>().join(", ")
        );
    };
    if old.opaque.is_some() || new.opaque.is_some() {
        return "condition block changed (it could not be read clause by clause)".into();
    }
    let mut parts = Vec::new();
    for ((op, key), old_clause) in &old.clauses {
        let name = &old_clause.key;
        match new.clauses.get(&(op.clone(), key.clone())) {
            None => match new.clauses.keys().find(|(_, k)| k == key) {
                Some((new_op, _)) => {
                    parts.push(format!("condition {name} loosened from {op} to {new_op}"))
                }
                None => parts.push(format!("condition {name} removed")),
            },
            Some(new_clause) if new_clause.values != old_clause.values => parts.push(format!(
                "condition {name} changed from {} to {}",
                values_text(&old_clause.values, symbols),
                values_text(&new_clause.values, symbols)
            )),
            Some(_) => {}
        }
    }
    if parts.is_empty() {
        "condition changed".into()
    } else {
        parts.join("; ")
    }
}

fn values_text(values: &BTreeSet<String>, symbols: &Symbols) -> String {
    let shown: Vec<String> = values.iter().map(|v| symbols.display(v)).collect();
    format!("[{}]", shown.join(", "))
}

/// The findings for a candidate statement that is not covered: which actions, principals or resources are new
/// to the holder, else which condition was loosened, else that the combination is new.
fn explain(
    s: &Stmt,
    olds: &[&Stmt],
    subject: &str,
    symbols: &Symbols,
    budget: &mut Budget,
    out: &mut Vec<Finding>,
) -> Result<(), TooComplex> {
    let certain: Vec<&Stmt> = olds.iter().copied().filter(|o| o.certain).collect();
    let mut steps = 0u64;
    let union = |pick: fn(&Stmt) -> &Vec<Item>| -> Vec<&Item> {
        certain.iter().flat_map(|o| pick(o).iter()).collect()
    };
    let old_actions = union(|o| &o.actions);
    let old_resources = union(|o| &o.resources);
    let old_principals = union(|o| &o.principals);
    let before = out.len();
    if certain.is_empty() && olds.is_empty() {
        out.push(info(
            subject.to_string(),
            "new holder: everything below is granted for the first time",
        ));
    }
    for a in &s.actions {
        if !old_actions
            .iter()
            .any(|o| item_covers(Kind::Action, o, a, &mut steps))
        {
            out.push(widening(
                subject.to_string(),
                action_line(a, &old_actions, symbols, &mut steps),
            ));
        }
    }
    for p in &s.principals {
        if !old_principals
            .iter()
            .any(|o| item_covers(Kind::Principal, o, p, &mut steps))
        {
            out.push(widening(
                subject.to_string(),
                format!("+ principal {}", symbols.display(&p.text(Kind::Principal))),
            ));
        }
    }
    let trust = s.holders.iter().all(|h| h.scope == Scope::Trust);
    if !trust {
        for r in &s.resources {
            if !old_resources
                .iter()
                .any(|o| item_covers(Kind::Resource, o, r, &mut steps))
            {
                out.push(widening(
                    subject.to_string(),
                    format!(
                        "+ resource {} (for {})",
                        symbols.display(&r.text(Kind::Resource)),
                        items_text(&s.actions, Kind::Action, symbols)
                    ),
                ));
            }
        }
    }
    budget.spend(steps)?;
    if out.len() > before + usize::from(certain.is_empty() && olds.is_empty()) {
        return Ok(());
    }
    // Every value is granted somewhere: a condition was loosened, or the combination is new.
    let same_grant: Vec<&Stmt> = certain
        .iter()
        .copied()
        .filter(|o| {
            let one = [*o];
            covered(
                &Stmt {
                    conditions: vec![None],
                    ..s.clone()
                },
                &one,
                false,
                &mut Budget::new(budget.left()),
            )
            .unwrap_or(false)
        })
        .collect();
    if let Some(o) = same_grant.first() {
        let loosened = s
            .conditions
            .iter()
            .find(|c| !stricter(c, &o.conditions[0]))
            .unwrap_or(&None);
        out.push(widening(
            subject.to_string(),
            condition_change(loosened, &o.conditions[0], symbols),
        ));
        return Ok(());
    }
    out.push(widening(
        subject.to_string(),
        format!(
            "{}: newly allows {} on {}{} together (each was granted before, but not together or not under this condition)",
            s.location,
            items_text(&s.actions, Kind::Action, symbols),
            items_text(&s.resources, Kind::Resource, symbols),
            if s.principals.is_empty() {
                String::new()
            } else {
                format!(" to {}", items_text(&s.principals, Kind::Principal, symbols))
            }
        ),
    ));
    Ok(())
}

/// `+ ce:UpdateCostAllocationTagsStatus (Write)`; for a wildcard, the catalog actions it newly grants.
fn action_line(a: &Item, old_actions: &[&Item], symbols: &Symbols, steps: &mut u64) -> String {
    let catalog = Catalog::get();
    let text = symbols.display(&a.text(Kind::Action));
    let Item::One(pattern) = a else {
        return format!("+ {text}: Allow with NotAction grants every other action");
    };
    if !pattern.contains(['*', '?']) {
        return match catalog.action(pattern) {
            Some(entry) => {
                let leak = catalog
                    .leaks(pattern)
                    .map(|w| format!("; returns {w}"))
                    .unwrap_or_default();
                format!("+ {} ({}{leak})", entry.name, entry.level.label())
            }
            None if pattern.chars().any(super::value::is_reserved) => format!("+ {text}"),
            None => format!(
                "+ {text} (not in the action catalog: a typo, or newer than the catalog; judged by its name as {})",
                Level::guess(pattern).label()
            ),
        };
    }
    let expansion = catalog.expand(pattern, steps);
    let mut fresh: Vec<_> = expansion
        .actions
        .iter()
        .filter(|entry| {
            let item = Item::One(entry.name.clone());
            !old_actions
                .iter()
                .any(|o| item_covers(Kind::Action, o, &item, steps))
        })
        .collect();
    // The weightiest first: permissions management, writes and tagging before reads.
    fresh.sort_by_key(|e| {
        (
            e.level.is_read(),
            e.level != Level::PermissionsManagement,
            e.name.as_str(),
        )
    });
    let mut by_level: BTreeMap<Level, usize> = BTreeMap::new();
    for e in &fresh {
        *by_level.entry(e.level).or_default() += 1;
    }
    let levels: Vec<String> = by_level
        .iter()
        .map(|(l, n)| format!("{n} {}", l.label()))
        .collect();
    let fresh: Vec<String> = fresh
        .iter()
        .map(|entry| format!("{} ({})", entry.name, entry.level.label()))
        .collect();
    if fresh.is_empty() {
        return format!(
            "+ {text} (it also matches actions AWS adds later, which the applied version did not grant)"
        );
    }
    let mut shown = fresh[..fresh.len().min(ACTIONS_SHOWN)].join(", ");
    if fresh.len() > ACTIONS_SHOWN {
        shown.push_str(&format!(" and {} more", fresh.len() - ACTIONS_SHOWN));
    }
    format!(
        "+ {text} ({} actions not granted before: {}; {shown})",
        fresh.len(),
        levels.join(", ")
    )
}

fn items_text(items: &[Item], kind: Kind, symbols: &Symbols) -> String {
    let mut texts: Vec<String> = items
        .iter()
        .map(|i| symbols.display(&i.text(kind)))
        .collect();
    texts.sort();
    texts.dedup();
    if texts.len() > 6 {
        let more = texts.len() - 6;
        texts.truncate(6);
        texts.push(format!("and {more} more"));
    }
    texts.join(", ")
}

fn holder_list(holders: &[&Holder], symbols: &Symbols) -> String {
    let mut names: Vec<String> = holders.iter().map(|h| h.describe(symbols)).collect();
    names.sort();
    names.dedup();
    if names.len() > HOLDERS_SHOWN {
        let more = names.len() - HOLDERS_SHOWN;
        names.truncate(HOLDERS_SHOWN);
        return format!("{} and {more} more", names.join(", "));
    }
    names.join(", ")
}

/// Informational `- action` lines: what each holder no longer gets. Holders in the same statements (before and
/// after) share one comparison.
fn removed_actions(
    old: &Model,
    new: &Model,
    symbols: &Symbols,
    budget: &mut Budget,
    out: &mut Vec<Finding>,
) -> Result<(), TooComplex> {
    let (old_allow, new_allow) = (by_holder(old, Effect::Allow), by_holder(new, Effect::Allow));
    let none: Vec<usize> = Vec::new();
    let mut groups: BTreeMap<(&Vec<usize>, &Vec<usize>), Vec<&Holder>> = BTreeMap::new();
    for (h, olds) in &old_allow {
        groups
            .entry((olds, new_allow.get(h).unwrap_or(&none)))
            .or_default()
            .push(h);
    }
    let actions = |m: &'_ Model, idx: &[usize]| -> BTreeMap<String, Item> {
        let mut map = BTreeMap::new();
        for &i in idx {
            for a in &m.statements[i].actions {
                map.entry(a.key(Kind::Action)).or_insert_with(|| a.clone());
            }
        }
        map
    };
    let mut lines: BTreeMap<Vec<String>, Vec<&Holder>> = BTreeMap::new();
    for ((olds, news), holders) in groups {
        let (before, after) = (actions(old, olds), actions(new, news));
        let mut steps = 0;
        let gone: Vec<String> = before
            .iter()
            .filter(|(k, _)| !after.contains_key(*k))
            .filter(|(_, a)| {
                !after
                    .values()
                    .any(|n| item_covers(Kind::Action, n, a, &mut steps))
            })
            .map(|(_, a)| symbols.display(&a.text(Kind::Action)))
            .collect();
        budget.spend(steps + before.len() as u64)?;
        if !gone.is_empty() {
            lines.entry(gone).or_default().extend(holders);
        }
    }
    for (gone, holders) in lines {
        let subject = holder_list(&holders, symbols);
        let mut shown = gone[..gone.len().min(ACTIONS_SHOWN * 2)].join(", ");
        if gone.len() > ACTIONS_SHOWN * 2 {
            shown.push_str(&format!(" and {} more", gone.len() - ACTIONS_SHOWN * 2));
        }
        // Where the (first) holder is defined, when the template defines it.
        let path = holders
            .iter()
            .find_map(|h| old.identities.get(&h.identity))
            .map(|id| format!("Resources.{id}"))
            .unwrap_or_default();
        out.push(info(subject, format!("- {shown}")).at(path));
    }
    Ok(())
}

fn attachments(old: &Model, new: &Model, symbols: &Symbols, out: &mut Vec<Finding>) {
    // The attachments of `a` that `b` lacks.
    let only_in = |a: &Model, b: &Model| {
        a.attachments
            .iter()
            .filter(|x| {
                !b.attachments
                    .iter()
                    .any(|y| y.identity == x.identity && y.arn == x.arn)
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    for a in only_in(new, old) {
        out.push(widening(
            symbols.display(&a.identity),
            format!(
                "+ managed policy {} (its permissions are not in the template, so stacksetd cannot see them)",
                symbols.display(&a.arn)
            ),
        ).at(a.location.clone()));
    }
    for a in only_in(old, new) {
        out.push(
            info(
                symbols.display(&a.identity),
                format!("- managed policy {}", symbols.display(&a.arn)),
            )
            .at(a.location.clone()),
        );
    }
}

/// `Resources.ID.Properties.NAME` of an identity's property, when the template defines the identity.
fn property_path(model: &Model, identity: &str, name: &str) -> String {
    model
        .identities
        .get(identity)
        .map(|id| format!("Resources.{id}.Properties.{name}"))
        .unwrap_or_default()
}

fn boundaries(old: &Model, new: &Model, symbols: &Symbols, out: &mut Vec<Finding>) {
    let at = |identity: &str| property_path(new, identity, "PermissionsBoundary");
    for (identity, before) in &old.boundaries {
        if !new.identities.contains_key(identity) {
            continue;
        }
        match new.boundaries.get(identity) {
            None => out.push(
                widening(symbols.display(identity), "permissions boundary removed")
                    .at(at(identity)),
            ),
            Some(after) if after != before => out.push(
                widening(
                    symbols.display(identity),
                    format!(
                        "permissions boundary changed from {} to {}",
                        symbols.display(before),
                        symbols.display(after)
                    ),
                )
                .at(at(identity)),
            ),
            Some(_) => {}
        }
    }
    for (identity, b) in &new.boundaries {
        if !old.boundaries.contains_key(identity) {
            out.push(
                info(
                    symbols.display(identity),
                    format!("permissions boundary {} added", symbols.display(b)),
                )
                .at(at(identity)),
            );
        }
    }
}

/// CloudFormation's default session length for a role.
const DEFAULT_SESSION_SECONDS: u64 = 3600;

fn settings(old: &Model, new: &Model, symbols: &Symbols, out: &mut Vec<Finding>) {
    let empty = BTreeMap::new();
    for (identity, set) in &new.settings {
        let before = old.settings.get(identity).unwrap_or(&empty);
        for (name, value) in set {
            let old_value = before.get(name);
            let grows = match *name {
                "MaxSessionDuration" => {
                    let parse = |v: &str| v.trim_matches('"').parse::<u64>().ok();
                    let was = old_value.map_or(Some(DEFAULT_SESSION_SECONDS), |v| parse(v));
                    match (was, parse(value)) {
                        (Some(w), Some(n)) => n > w,
                        _ => old_value != Some(value),
                    }
                }
                _ => old_value != Some(value),
            };
            if grows {
                out.push(
                    widening(
                        symbols.display(identity),
                        match old_value {
                            Some(w) => format!(
                                "{name} changed from {} to {}",
                                symbols.display(w),
                                symbols.display(value)
                            ),
                            None => format!("{name} set to {}", symbols.display(value)),
                        },
                    )
                    .at(property_path(
                        new,
                        identity,
                        name.split(' ').next().unwrap_or(name),
                    )),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(pairs: &[(&str, &str, &[&str])]) -> Option<Cond> {
        let mut c = Cond::default();
        for (op, key, values) in pairs {
            c.clauses.insert(
                (op.to_string(), key.to_lowercase()),
                super::super::model::Clause {
                    key: key.to_string(),
                    values: values.iter().map(|v| v.to_string()).collect(),
                },
            );
        }
        Some(c)
    }

    #[test]
    fn condition_strictness() {
        let ext = cond(&[("StringEquals", "sts:ExternalId", &["abc"])]);
        assert!(stricter(&ext, &ext));
        assert!(stricter(&ext, &None), "adding a condition narrows");
        assert!(!stricter(&None, &ext), "removing one loosens");
        assert!(
            !stricter(&cond(&[("StringEquals", "sts:ExternalId", &["xyz"])]), &ext),
            "another value"
        );
        assert!(
            !stricter(
                &cond(&[("StringEquals", "sts:ExternalId", &["abc", "xyz"])]),
                &ext
            ),
            "a second value"
        );
        assert!(
            !stricter(&cond(&[("StringLike", "sts:ExternalId", &["*"])]), &ext),
            "another operator"
        );
        let two = cond(&[
            ("StringEquals", "sts:ExternalId", &["abc"]),
            ("Bool", "aws:SecureTransport", &["true"]),
        ]);
        assert!(stricter(&two, &ext));
        let not_in = cond(&[("StringNotEquals", "aws:PrincipalAccount", &["1"])]);
        assert!(stricter(
            &cond(&[("StringNotEquals", "aws:PrincipalAccount", &["1", "2"])]),
            &not_in
        ));
        assert!(!stricter(
            &cond(&[("StringNotEquals", "aws:PrincipalAccount", &["2"])]),
            &not_in
        ));
        let like = cond(&[("StringLike", "aws:PrincipalArn", &["arn:aws:iam::1:role/*"])]);
        assert!(stricter(
            &cond(&[("StringLike", "aws:PrincipalArn", &["arn:aws:iam::1:role/x"])]),
            &like
        ));
        assert_eq!(
            condition_change(&None, &ext, &Symbols::default()),
            "condition sts:ExternalId removed"
        );
    }
}
