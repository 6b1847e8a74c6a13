//! Policy levels: what a version may contain at all, whatever was applied before (the first version included).
//!
//! `DataOnly` may read (the catalog's List and Read levels); `DataAndScheduling` may also start and stop
//! (exact action names only: `ec2:Stop*` is refused rather than guessed at). Both refuse resource types other
//! than IAM roles and their policies, any Transform, managed policies from outside the template (their content
//! cannot be checked), trust principals that do not resolve to fixed accounts, and reads that return secrets or
//! customer data when the template names them or writes a pattern aimed at them (a `?`, a name spelled past its
//! read verb like `s3:GetObjec*`, or a pattern most of whose matches are such reads). A read like that which only
//! a broad wildcard covers (`ec2:Describe*`, as every FinOps vendor writes) is a warning, with the exact actions;
//! so is a trust without `sts:ExternalId`.

use super::catalog::{Catalog, Level};
use super::model::{Effect, Model, Scope, Stmt};
use super::pattern::{Item, Kind};
use super::value::{Symbols, is_any};
use crate::desired::PolicyLevel;

/// Start/stop style actions a scheduler needs, on top of the reads.
pub const SCHEDULING: &[&str] = &[
    "ec2:StartInstances",
    "ec2:StopInstances",
    "rds:StartDBInstance",
    "rds:StopDBInstance",
    "rds:StartDBCluster",
    "rds:StopDBCluster",
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:SetDesiredCapacity",
    "autoscaling:SuspendProcesses",
    "autoscaling:ResumeProcesses",
    "ecs:UpdateService",
];

/// What a trust policy may let its principals do: assume the role, with session tags and source identity.
const TRUST_ACTIONS: &[&str] = &["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"];

/// The resource types a policy level allows.
const LEVEL_TYPES: &[&str] = &[
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::RolePolicy",
];

/// Offending actions named in one line before "and N more".
const SHOWN: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Offense {
    /// e.g. `Resources.AimablyMemberRole.Properties.Policies[0].PolicyDocument.Statement[2]`
    pub location: String,
    /// The offending value: an action, a principal, a resource type, a Transform.
    pub action: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LevelCheck {
    pub offenses: Vec<Offense>,
    pub warnings: Vec<String>,
}

fn allowed(level: PolicyLevel, action: &str, catalog_level: Level) -> bool {
    catalog_level.is_read()
        || (level == PolicyLevel::DataAndScheduling
            && SCHEDULING.iter().any(|s| s.eq_ignore_ascii_case(action)))
}

/// Check one version (its symbolic model: every alternative counted) against a level.
pub fn check(level: PolicyLevel, model: &Model, symbols: &Symbols) -> LevelCheck {
    let mut checker = Checker {
        level,
        name: level.as_str(),
        symbols,
        catalog: Catalog::get(),
        offenses: Vec::new(),
        warnings: Vec::new(),
    };
    checker.transforms_and_resources(model);
    for s in model
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow)
    {
        checker.statement(model, s);
    }
    checker.attachments(model);
    let Checker {
        offenses,
        mut warnings,
        ..
    } = checker;
    warnings.dedup();
    LevelCheck { offenses, warnings }
}

/// One level check as it goes: the offenses (refusals) and warnings found so far, in the model's order.
struct Checker<'a> {
    level: PolicyLevel,
    name: &'static str,
    symbols: &'a Symbols,
    catalog: &'static Catalog,
    offenses: Vec<Offense>,
    warnings: Vec<String>,
}

impl Checker<'_> {
    fn offend(&mut self, location: &str, action: String, reason: String) {
        self.offenses.push(Offense {
            location: location.to_string(),
            action,
            reason,
        });
    }

    /// Transforms, and resources that are not IAM roles and their policies or that outlive their removal.
    fn transforms_and_resources(&mut self, model: &Model) {
        let (name, symbols) = (self.name, self.symbols);
        for t in &model.transforms {
            self.offend(
                "Transform",
                t.clone(),
                format!("{t}: the {name} level allows no transforms"),
            );
        }
        for r in model.resources.values() {
            for attribute in ["DeletionPolicy", "UpdateReplacePolicy"] {
                match r.attributes.get(attribute) {
                    None => {}
                    Some(super::value::Val::Str(v)) if v == "Delete" => {}
                    Some(value) => self.offend(
                        &format!("Resources.{}.{attribute}", r.id),
                        symbols.display(&value.canonical()),
                        format!(
                            "resource {} keeps itself with {attribute} {}: revoking access (ensure: Absent, or a version \
                             without it) would leave it, and what it grants, in every account; the {name} level allows \
                             only Delete",
                            r.id,
                            symbols.display(&value.canonical())
                        ),
                    ),
                }
            }
            if !LEVEL_TYPES.contains(&r.kind.as_str()) {
                self.offend(
                    &format!("Resources.{}", r.id),
                    r.kind.clone(),
                    format!(
                        "resource {} ({}): the {name} level allows only IAM roles and their policies; it {}",
                        r.id, r.kind, r.does
                    ),
                );
            }
        }
    }

    /// One Allow statement: who it grants to, then its trust or its actions.
    fn statement(&mut self, model: &Model, s: &Stmt) {
        let symbols = self.symbols;
        let name = self.name;
        if s.holders.iter().all(|h| h.scope == Scope::Resource) {
            // Refused with its resource type above.
            return;
        }
        for h in &s.holders {
            if !model.identities.contains_key(&h.identity) {
                self.offend(
                    &s.location,
                    symbols.display(&h.identity),
                    format!(
                        "grants to {}, which this template does not create: the {name} level only grants to its own roles",
                        symbols.display(&h.identity)
                    ),
                );
            }
        }
        let trust = s.holders.iter().any(|h| h.scope == Scope::Trust);
        let boundary = s.holders.iter().all(|h| h.scope == Scope::Boundary);
        if boundary {
            return;
        }
        if trust {
            self.trust(s);
        } else {
            self.actions(s);
        }
    }

    /// A trust policy: only assuming the role, only fixed accounts, and a warning without sts:ExternalId.
    fn trust(&mut self, s: &Stmt) {
        let symbols = self.symbols;
        for a in &s.actions {
            let ok = matches!(a, Item::One(t) if TRUST_ACTIONS.iter().any(|x| x.eq_ignore_ascii_case(t)));
            if !ok {
                self.offend(
                    &s.location,
                    symbols.display(&a.text(Kind::Action)),
                    format!(
                        "a trust policy may only allow {}, not {}",
                        TRUST_ACTIONS.join(", "),
                        symbols.display(&a.text(Kind::Action))
                    ),
                );
            }
        }
        for p in &s.principals {
            if let Err(why) = fixed_account(p, symbols) {
                self.offend(&s.location, symbols.display(&p.text(Kind::Principal)), why);
            }
        }
        let external_id = s.conditions.iter().all(|c| {
            c.as_ref().is_some_and(|c| {
                c.clauses
                    .iter()
                    .any(|((op, key), _)| key == "sts:externalid" && op.starts_with("String"))
            })
        });
        if !external_id && !s.principals.is_empty() {
            let role = s
                .holders
                .iter()
                .find(|h| h.scope == Scope::Trust)
                .map(|h| h.describe(symbols))
                .unwrap_or_default();
            self.warnings.push(format!(
                "{role}: no sts:ExternalId condition, so {} can use the role on anyone's behalf (a confused-deputy risk); ask the vendor for an ExternalId",
                s.principals
                    .iter()
                    .map(|p| symbols.display(&p.text(Kind::Principal)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }

    /// The actions of a permission statement, each against the level and the catalog.
    fn actions(&mut self, s: &Stmt) {
        let (level, name, symbols, catalog) = (self.level, self.name, self.symbols, self.catalog);
        for a in &s.actions {
            let text = symbols.display(&a.text(Kind::Action));
            let Item::One(pattern) = a else {
                self.offend(
                    &s.location,
                    text,
                    "Allow with NotAction grants every action not listed".into(),
                );
                continue;
            };
            if pattern.chars().any(is_any) || pattern.chars().any(super::value::is_symbol) {
                self.offend(
                    &s.location,
                    text.clone(),
                    format!("the action {text} is computed at deploy time and cannot be checked"),
                );
                continue;
            }
            if !pattern.contains(['*', '?']) {
                match catalog.action(pattern) {
                    Some(entry) if !allowed(level, pattern, entry.level) => self.offend(
                        &s.location,
                        text.clone(),
                        format!(
                            "{} is {} access, not in the {name} level",
                            entry.name,
                            entry.level.label()
                        ),
                    ),
                    Some(_) => {
                        if let Some(what) = catalog.leaks(pattern) {
                            self.offend(
                                &s.location,
                                text.clone(),
                                format!(
                                    "{text} returns {what}: the {name} level does not allow it by name"
                                ),
                            );
                        }
                    }
                    None => {
                        let guessed = Level::guess(pattern);
                        if allowed(level, pattern, guessed) {
                            self.warnings.push(format!(
                                "{text} is not in the action catalog ({}): a typo, or newer than the catalog; judged by its name as {}",
                                catalog.source,
                                guessed.label()
                            ));
                        } else {
                            self.offend(
                                &s.location,
                                text.clone(),
                                format!(
                                    "{text} is not in the action catalog and its name is not a read: not in the {name} level"
                                ),
                            );
                        }
                    }
                }
                continue;
            }
            let mut steps = 0;
            let expansion = catalog.expand(pattern, &mut steps);
            if expansion.actions.is_empty() {
                let guessed = Level::guess(pattern);
                if expansion.unknown_service || !allowed(level, pattern, guessed) {
                    self.offend(
                        &s.location,
                        text.clone(),
                        format!("{text} matches no action in the catalog: not in the {name} level"),
                    );
                } else {
                    self.warnings
                        .push(format!("{text} matches no action in the catalog today"));
                }
                continue;
            }
            let bad: Vec<String> = expansion
                .actions
                .iter()
                .filter(|e| !allowed(level, &e.name, e.level))
                .map(|e| format!("{} ({})", e.name, e.level.label()))
                .collect();
            if !bad.is_empty() {
                self.offend(
                    &s.location,
                    text.clone(),
                    format!("{text} includes {}: not in the {name} level", shown(&bad)),
                );
                continue;
            }
            let leaks: Vec<String> = expansion
                .actions
                .iter()
                .filter_map(|e| catalog.leaks(&e.name).map(|w| format!("{} ({w})", e.name)))
                .collect();
            if !leaks.is_empty() && aimed_at_leaks(pattern, leaks.len(), expansion.actions.len()) {
                self.offend(
                    &s.location,
                    text.clone(),
                    format!(
                        "{text} is written to reach reads that return secrets or customer data ({}): the {name} level \
                         does not allow them, by name or by a pattern aimed at them",
                        shown(&leaks)
                    ),
                );
                continue;
            }
            if !leaks.is_empty() {
                self.warnings.push(format!(
                    "{text} includes reads that return secrets or customer data: {}",
                    leaks.join(", ")
                ));
            }
        }
    }

    /// Managed policies from outside the template: their content cannot be checked.
    fn attachments(&mut self, model: &Model) {
        let (name, symbols) = (self.name, self.symbols);
        for a in &model.attachments {
            self.offend(
                &a.location,
                symbols.display(&a.arn),
                format!(
                    "managed policy {} cannot be checked against the {name} level (its content is not in the template)",
                    symbols.display(&a.arn)
                ),
            );
        }
    }
}

/// Read verbs a broad, service-wide pattern stops at (`ec2:Describe*`, `s3:Get*`): what real vendors write.
const BROAD_VERBS: &[&str] = &[
    "get", "list", "describe", "batchget", "view", "search", "lookup", "query", "scan",
];

/// Is a wildcard pattern that matches secret-bearing reads aimed at them, rather than a broad read every vendor
/// writes? Aimed: it has a `?` (a name spelled out but for a letter), its literal part goes past a bare read verb
/// (`secretsmanager:GetSecret*`, `s3:GetObjec*`), or most of what it matches are such reads.
fn aimed_at_leaks(pattern: &str, leaks: usize, matches: usize) -> bool {
    let name = pattern.split_once(':').map_or(pattern, |(_, n)| n);
    let literal = &name[..name.find(['*', '?']).unwrap_or(name.len())];
    let broad = literal.is_empty() || BROAD_VERBS.contains(&literal.to_ascii_lowercase().as_str());
    pattern.contains('?') || !broad || leaks * 2 >= matches
}

fn shown(items: &[String]) -> String {
    let mut text = items[..items.len().min(SHOWN)].join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}

/// A trust principal the level accepts: an AWS principal in a fixed account (a 12-digit id, or the account the
/// stack is deployed to).
fn fixed_account(p: &Item, symbols: &Symbols) -> Result<(), String> {
    let text = symbols.display(&p.text(Kind::Principal));
    let Item::One(value) = p else {
        return Err(format!("{text}: NotPrincipal trusts everyone not listed"));
    };
    if value == "*" {
        return Err("the trust policy lets anyone (*) assume the role".into());
    }
    if value.chars().any(is_any) {
        return Err(format!(
            "trust principal {text} could be anything, so the role could be handed to anyone"
        ));
    }
    let Some(arn) = value.strip_prefix("AWS:") else {
        return Err(format!(
            "trust principal {text} is not an AWS account principal: the level trusts fixed accounts only"
        ));
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let account = match parts.as_slice() {
        ["arn", _partition, "iam", "", account, rest]
            if *rest == "root" || rest.starts_with("role/") || rest.starts_with("user/") =>
        {
            *account
        }
        _ => {
            return Err(format!(
                "trust principal {text} is not an account, role or user ARN: the level trusts fixed accounts only"
            ));
        }
    };
    let digits = account.len() == 12 && account.chars().all(|c| c.is_ascii_digit());
    let mut chars = account.chars();
    let this_account = matches!((chars.next(), chars.next()), (Some(c), None)
        if symbols.fixed_name(c) == Some("AWS::AccountId"));
    if digits || this_account {
        Ok(())
    } else {
        let names: Vec<&str> = account
            .chars()
            .filter_map(|c| symbols.fixed_name(c))
            .collect();
        Err(if names.is_empty() {
            format!("trust principal {text} does not name a fixed account")
        } else {
            format!(
                "trust principal {text} depends on {}, which has no value: give it in spec.parameters (or --parameters) so the trusted account is fixed",
                names.join(", ")
            )
        })
    }
}
