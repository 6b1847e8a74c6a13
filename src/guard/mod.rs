//! The template guard: what a CloudFormation template can do, whether a new version grants more than the
//! applied one, and whether a version stays inside its policy level. Pure: no I/O, bounded work.
//!
//! Why it exists: stacksetd follows a vendor's template publications without a person in the loop, and each
//! version is installed in every account of an organization. The guard judges a version as a whole, the way
//! CloudFormation will deploy it, and fails closed:
//!
//! 1. `resolve`: intrinsic functions are worked out against the deployment's parameters; deploy-time values stay
//!    symbolic; what cannot be worked out counts as "could be anything".
//! 2. `model`: every resource is classified from `resources::TABLE`; IAM statements are read with their holders.
//! 3. `judge`: the candidate against the applied version, case by case when a condition or mapping depends on
//!    where the stack is deployed (`AWS::Region`, the account, a parameter without a value): each combination of
//!    the values the template compares them with is resolved and compared on its own, so a narrowing built with
//!    `Fn::If` is seen as a narrowing. Too many combinations, and both branches of every choice are compared at
//!    once instead (sound, more conservative).
//! 4. `level`: the `DataOnly` / `DataAndScheduling` limits, on every alternative.
//!
//! Everything pays into one [`Budget`]; a template that exhausts it is refused as too complex to verify.

mod analyzer;
mod budget;
pub mod catalog;
mod entries;
mod judge;
mod level;
mod model;
mod pattern;
mod resolve;
pub mod resources;
mod review;
mod value;

#[cfg(test)]
mod attacks;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

pub use analyzer::{PolicyPair, policy_pairs};
pub use budget::{Budget, TooComplex, WORK_BUDGET};
pub use judge::Finding;
pub use level::{LevelCheck, Offense, SCHEDULING};
pub use review::{Review, review};
pub use value::is_reserved as is_reserved_char;

use crate::desired::PolicyLevel;
use model::Model;
use resolve::{Env, resolve};
use value::Symbols;

/// Most cases (combinations of deploy-time values) a judgment resolves one by one.
const MAX_CASES: usize = 64;

/// Deployment parameters: `spec.parameters` (or `template check --parameters`).
pub type Parameters = BTreeMap<String, String>;

/// The judgment of a candidate version against the applied one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Judgment {
    /// Widening findings first, then informational ones (narrowings, removals).
    pub findings: Vec<Finding>,
    pub widening: bool,
    /// How many deploy-time cases were compared one by one (1 when nothing depends on where it is deployed, 0
    /// when both branches of every choice were compared at once).
    pub cases: usize,
}

impl Judgment {
    pub fn is_widening(&self) -> bool {
        self.widening
    }

    /// One line per finding, for `plan`, /status and the logs.
    pub fn lines(&self) -> Vec<String> {
        self.findings.iter().map(Finding::line).collect()
    }

    pub fn widening_lines(&self) -> Vec<String> {
        self.findings
            .iter()
            .filter(|f| f.widening)
            .map(Finding::line)
            .collect()
    }
}

/// Judge `candidate` against `applied` (both parsed templates) with the deployment's parameters.
pub fn judge(
    applied: &Value,
    candidate: &Value,
    parameters: &Parameters,
) -> Result<Judgment, TooComplex> {
    let mut symbols = Symbols::default();
    let mut budget = Budget::default();
    let none = Env::new();
    let old = resolve(applied, parameters, &none, &mut symbols, &mut budget)?;
    let new = resolve(candidate, parameters, &none, &mut symbols, &mut budget)?;
    let mut decisions: BTreeMap<String, BTreeSet<String>> = old.decisions.clone();
    for (var, literals) in &new.decisions {
        decisions
            .entry(var.clone())
            .or_default()
            .extend(literals.iter().cloned());
    }
    let pass_cost = budget.spent().max(1);
    let cases: usize = decisions
        .values()
        .map(|l| l.len() + 1)
        .try_fold(1usize, |acc, n| acc.checked_mul(n))
        .unwrap_or(usize::MAX);
    let mut per_case: Vec<(String, Vec<Finding>)> = Vec::new();
    let enumerate = !decisions.is_empty()
        && cases <= MAX_CASES
        && (cases as u64).saturating_mul(pass_cost * 3) < budget.left();
    if enumerate {
        for env in assignments(&decisions) {
            let label = case_label(&env);
            let (old, new) = models(
                applied,
                candidate,
                parameters,
                &env,
                &mut symbols,
                &mut budget,
            )?;
            per_case.push((label, judge::judge_case(&old, &new, &symbols, &mut budget)?));
        }
    } else {
        let old = Model::build(&old, &mut symbols, &mut budget)?;
        let new = Model::build(&new, &mut symbols, &mut budget)?;
        per_case.push((
            String::new(),
            judge::judge_case(&old, &new, &symbols, &mut budget)?,
        ));
    }
    let compared = if decisions.is_empty() {
        1
    } else if enumerate {
        per_case.len()
    } else {
        0
    };
    let mut judgment = merge(per_case, compared);
    let redact = Redactor::new(parameters);
    for f in &mut judgment.findings {
        f.subject = redact.text(&f.subject);
        f.text = redact.text(&f.text);
    }
    Ok(judgment)
}

/// Parameter values never leave the guard: every finding, offense and warning names a parameter where its value
/// would be (the customer's ExternalId must not reach /status, the page or the logs). Values shorter than
/// [`REDACTED_MIN`] characters (flags like `true`, Region codes) are left: replacing them would garble the text,
/// and they are not secrets.
pub struct Redactor {
    values: Vec<(String, String)>,
}

/// The shortest parameter value replaced by its name in the guard's words.
pub const REDACTED_MIN: usize = 4;

impl Redactor {
    /// A level check's offenses and warnings, redacted.
    pub fn check(&self, check: &mut LevelCheck) {
        for o in &mut check.offenses {
            o.location = self.text(&o.location);
            o.action = self.text(&o.action);
            o.reason = self.text(&o.reason);
        }
        for w in &mut check.warnings {
            *w = self.text(w);
        }
    }

    pub fn new(parameters: &Parameters) -> Redactor {
        let mut values: Vec<(String, String)> = parameters
            .iter()
            .filter(|(_, v)| v.chars().count() >= REDACTED_MIN)
            .map(|(k, v)| (v.clone(), format!("${{{k}}}")))
            .collect();
        // Longest first, so a value containing another is replaced whole.
        values.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        Redactor { values }
    }

    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (value, name) in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), name);
            }
        }
        out
    }
}

/// Check one version against a policy level (every alternative of every deploy-time choice counts).
pub fn check_level(
    level: PolicyLevel,
    candidate: &Value,
    parameters: &Parameters,
) -> Result<LevelCheck, TooComplex> {
    let mut symbols = Symbols::default();
    let mut budget = Budget::default();
    let model = model_of(
        candidate,
        parameters,
        &Env::new(),
        &mut symbols,
        &mut budget,
    )?;
    let mut check = level::check(level, &model, &symbols);
    Redactor::new(parameters).check(&mut check);
    Ok(check)
}

/// A template resolved under `env` and modelled: what every check reads.
fn model_of(
    template: &Value,
    parameters: &Parameters,
    env: &Env,
    symbols: &mut Symbols,
    budget: &mut Budget,
) -> Result<Model, TooComplex> {
    let resolved = resolve(template, parameters, env, symbols, budget)?;
    Model::build(&resolved, symbols, budget)
}

/// Both versions modelled under `env`: resolved applied-then-candidate, then built in the same order (the
/// order their symbols are interned in, which the findings' wording follows).
fn models(
    applied: &Value,
    candidate: &Value,
    parameters: &Parameters,
    env: &Env,
    symbols: &mut Symbols,
    budget: &mut Budget,
) -> Result<(Model, Model), TooComplex> {
    let old = resolve(applied, parameters, env, symbols, budget)?;
    let new = resolve(candidate, parameters, env, symbols, budget)?;
    Ok((
        Model::build(&old, symbols, budget)?,
        Model::build(&new, symbols, budget)?,
    ))
}

/// Every combination of the deploy-time values (each literal the templates compare it with, or "another").
fn assignments(decisions: &BTreeMap<String, BTreeSet<String>>) -> Vec<Env> {
    let mut out = vec![Env::new()];
    for (var, literals) in decisions {
        let mut next = Vec::with_capacity(out.len() * (literals.len() + 1));
        for env in &out {
            for literal in literals.iter().map(Some).chain([None]) {
                let mut e = env.clone();
                e.insert(var.clone(), literal.cloned());
                next.push(e);
            }
        }
        out = next;
    }
    out
}

fn case_label(env: &Env) -> String {
    env.iter()
        .map(|(var, value)| match value {
            Some(v) => format!("{var} is {v:?}"),
            None => format!("{var} is another value"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One list of findings from the cases: a finding seen in every case is stated once; one seen in some cases says
/// which.
fn merge(per_case: Vec<(String, Vec<Finding>)>, compared: usize) -> Judgment {
    let total = per_case.len();
    let mut seen: Vec<(Finding, Vec<String>)> = Vec::new();
    for (label, findings) in per_case {
        for f in findings {
            match seen.iter_mut().find(|(g, _)| *g == f) {
                Some((_, labels)) => {
                    if !labels.contains(&label) {
                        labels.push(label.clone())
                    }
                }
                None => seen.push((f, vec![label.clone()])),
            }
        }
    }
    let mut findings: Vec<Finding> = seen
        .into_iter()
        .map(|(mut f, labels)| {
            if labels.len() < total && !labels[0].is_empty() {
                let more = if labels.len() > 1 {
                    format!(" and {} other case(s)", labels.len() - 1)
                } else {
                    String::new()
                };
                f.text = format!("{} (when {}{more})", f.text, labels[0]);
            }
            f
        })
        .collect();
    findings.sort_by_key(|f| !f.widening);
    let widening = findings.iter().any(|f| f.widening);
    Judgment {
        findings,
        widening,
        cases: compared,
    }
}
