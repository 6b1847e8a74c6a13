//! What a template can do, resource by resource: the report of `stacksetd template check`, read by an operator
//! before pinning a vendor's new version.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Parameters;
use super::budget::{Budget, TooComplex};
use super::catalog::{Catalog, Level};
use super::level::{self, LevelCheck};
use super::model::{Effect, Scope, Stmt};
use super::pattern::{Item, Kind};
use super::resolve::Env;
use super::value::Symbols;
use crate::desired::PolicyLevel;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResourceLine {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub class: &'static str,
    pub does: String,
    /// Created only in some deploy-time cases.
    pub conditional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdentityLines {
    pub identity: String,
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Review {
    pub resources: Vec<ResourceLine>,
    pub identities: Vec<IdentityLines>,
    pub transforms: Vec<String>,
    pub managed_policies: Vec<String>,
    /// The policy level checked, and its result.
    pub level: Option<&'static str>,
    pub check: LevelCheck,
    /// Where the deployment fails to deploy, if it always does.
    pub fails: Option<String>,
}

impl Review {
    pub fn refused(&self) -> bool {
        self.level.is_some() && !self.check.offenses.is_empty()
    }
}

/// Review `template` with `parameters`; `level` adds the policy level's check (without one, its warnings still
/// apply: leaky reads behind wildcards, a trust without `sts:ExternalId`).
pub fn review(
    template: &Value,
    parameters: &Parameters,
    level: Option<PolicyLevel>,
) -> Result<Review, TooComplex> {
    let mut symbols = Symbols::default();
    let mut budget = Budget::default();
    let model = super::model_of(template, parameters, &Env::new(), &mut symbols, &mut budget)?;
    let mut check = level::check(level.unwrap_or(PolicyLevel::DataOnly), &model, &symbols);
    if level.is_none() {
        check.offenses.clear();
    }
    let resources = model
        .resources
        .values()
        .map(|r| ResourceLine {
            id: r.id.clone(),
            kind: r.kind.clone(),
            class: r.class.label(),
            does: r.does.clone(),
            conditional: !r.certain,
        })
        .collect();
    let mut per: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &model.statements {
        for h in &s.holders {
            let line = statement_line(s, h.scope, &symbols);
            let lines = per.entry(symbols.display(&h.identity)).or_default();
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    for (identity, boundary) in &model.boundaries {
        per.entry(symbols.display(identity))
            .or_default()
            .push(format!(
                "permissions boundary {}",
                symbols.display(boundary)
            ));
    }
    for a in &model.attachments {
        per.entry(symbols.display(&a.identity))
            .or_default()
            .push(format!(
                "managed policy {} (content not in the template)",
                symbols.display(&a.arn)
            ));
    }
    let redact = super::Redactor::new(parameters);
    redact.check(&mut check);
    let resources: Vec<ResourceLine> = resources;
    Ok(Review {
        resources: resources
            .into_iter()
            .map(|r| ResourceLine {
                does: redact.text(&r.does),
                ..r
            })
            .collect(),
        identities: per
            .into_iter()
            .map(|(identity, lines)| IdentityLines {
                identity: redact.text(&identity),
                lines: lines.iter().map(|l| redact.text(l)).collect(),
            })
            .collect(),
        transforms: model.transforms.clone(),
        managed_policies: model
            .attachments
            .iter()
            .map(|a| symbols.display(&a.arn))
            .collect(),
        level: level.map(PolicyLevel::as_str),
        check,
        fails: model.failed.clone(),
    })
}

fn statement_line(s: &Stmt, scope: Scope, symbols: &Symbols) -> String {
    let effect = match s.effect {
        Effect::Allow => "Allow",
        Effect::Deny => "Deny",
    };
    let scope = match scope {
        Scope::Identity => "",
        Scope::Trust => "trust: ",
        Scope::Boundary => "boundary: ",
        Scope::Resource => "resource policy: ",
    };
    let actions: Vec<String> = s.actions.iter().map(|a| action_text(a, symbols)).collect();
    let mut line = format!("{scope}{effect} {}", actions.join(", "));
    if !s.principals.is_empty() {
        let p: Vec<String> = s
            .principals
            .iter()
            .map(|p| symbols.display(&p.text(Kind::Principal)))
            .collect();
        line.push_str(&format!(" to {}", p.join(", ")));
    } else {
        let r: Vec<String> = s
            .resources
            .iter()
            .map(|r| symbols.display(&r.text(Kind::Resource)))
            .collect();
        line.push_str(&format!(" on {}", r.join(", ")));
    }
    let conditions: Vec<String> = s
        .conditions
        .iter()
        .flatten()
        .map(|c| {
            if let Some(o) = &c.opaque {
                return symbols.display(o);
            }
            c.clauses
                .iter()
                .map(|((op, _), clause)| {
                    let values: Vec<String> =
                        clause.values.iter().map(|v| symbols.display(v)).collect();
                    format!("{op} {} [{}]", clause.key, values.join(", "))
                })
                .collect::<Vec<_>>()
                .join(" and ")
        })
        .collect();
    if !conditions.is_empty() {
        line.push_str(&format!(" when {}", conditions.join(" | or | ")));
    }
    if !s.certain {
        line.push_str(" (depends on a deploy-time choice)");
    }
    line.push_str(&format!("  [{}]", s.location));
    line
}

/// `ec2:StopInstances (Write)`, `ec2:Describe* (182 actions: 180 Read, 2 List)`.
fn action_text(a: &Item, symbols: &Symbols) -> String {
    let text = symbols.display(&a.text(Kind::Action));
    let Item::One(pattern) = a else {
        return text;
    };
    let catalog = Catalog::get();
    if !pattern.contains(['*', '?']) {
        return match catalog.action(pattern) {
            Some(e) => format!("{text} ({})", e.level.label()),
            None => format!("{text} (not in the catalog)"),
        };
    }
    let mut steps = 0;
    let expansion = catalog.expand(pattern, &mut steps);
    let mut counts: BTreeMap<Level, usize> = BTreeMap::new();
    for e in &expansion.actions {
        *counts.entry(e.level).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(l, n)| format!("{n} {}", l.label()))
        .collect();
    format!(
        "{text} ({} actions: {})",
        expansion.actions.len(),
        parts.join(", ")
    )
}
