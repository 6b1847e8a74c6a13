//! Intrinsic functions resolved the way CloudFormation would, before anything is judged.
//!
//! Comparing intrinsics as text lets a template change what it grants without changing a single policy line: a
//! new `Mappings` entry moves a trust to another account, a changed parameter `Default` or condition drops an
//! `sts:ExternalId` through `Fn::If` / `AWS::NoValue`. So every value is worked out first:
//!
//! - `Ref`: a parameter's value (the deployment's `spec.parameters` over the template's `Default`), a pseudo
//!   parameter (symbolic unless a case fixes it), a resource (symbolic: its physical id), `AWS::NoValue`.
//! - `Fn::Sub` (both forms), `Fn::Join`, `Fn::Select`, `Fn::Split`, `Fn::FindInMap` (with `DefaultValue`),
//!   `Fn::Base64`: computed; `Fn::GetAtt` and `Fn::ImportValue`: symbolic.
//! - `Fn::If`: the condition is evaluated (`Fn::Equals`, `And`, `Or`, `Not`, `Condition`); when its inputs are
//!   only known at deploy time both branches are kept as a [`Val::OneOf`].
//! - Anything else (a dynamic `{{resolve:...}}` reference, `Fn::Transform`, an unknown function, a `Ref` to
//!   nothing) could be anything: [`Val::Unknown`] with the reason, which fails closed downstream.
//!
//! Deploy-time inputs that decide a condition or a mapping lookup (the Region, the account, a parameter without
//! a value) are recorded with the literals they are compared with, so that the judge can resolve the template
//! once per combination ("case") and compare like with like; see `judge`.
//!
//! Size: about 1,000 lines, one evaluator. Every intrinsic calls back into the same recursive resolution (with
//! its case, its budget and its symbols); split by function, each part would need the whole of the others.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use super::budget::{Budget, NODE, TooComplex};
use super::value::{Symbols, Val, digest, is_reserved, is_symbol};

/// Pseudo parameters whose value depends on where the stack is deployed.
const PSEUDO: &[&str] = &[
    "AWS::AccountId",
    "AWS::Region",
    "AWS::Partition",
    "AWS::URLSuffix",
    "AWS::StackName",
    "AWS::StackId",
];

/// What a pseudo parameter's value is made of.
fn pseudo_alphabet(name: &str) -> Option<u128> {
    use super::value::ascii_set;
    Some(match name {
        "AWS::AccountId" => ascii_set("", false, true),
        "AWS::Region" | "AWS::Partition" => ascii_set("-", true, true),
        "AWS::URLSuffix" => ascii_set(".", true, false),
        "AWS::StackName" => ascii_set("-", true, true),
        "AWS::StackId" => ascii_set(":/-", true, true),
        _ => return None,
    })
}

/// The template sections CloudFormation defines; any other top-level key is reported.
const SECTIONS: &[&str] = &[
    "AWSTemplateFormatVersion",
    "Description",
    "Metadata",
    "Parameters",
    "Rules",
    "Mappings",
    "Conditions",
    "Transform",
    "Resources",
    "Outputs",
];

/// A deploy-time input fixed for one case: a literal, or `None` for "a value equal to none of the literals
/// the template compares it with".
pub type Env = BTreeMap<String, Option<String>>;

/// Whether a resource is created.
#[derive(Debug, Clone, PartialEq)]
pub enum Presence {
    Yes,
    No,
    /// Decided at deploy time by this selector.
    Maybe(String),
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub kind: String,
    pub presence: Presence,
    pub props: Val,
    /// Every other key of the resource entry (`Metadata`, `DeletionPolicy`, `UpdateReplacePolicy`,
    /// `CreationPolicy`, `UpdatePolicy`, `DependsOn`, and any key CloudFormation may add), resolved: the guard
    /// judges the whole entry, not only its properties. An entry that is not an object (a `Fn::ForEach` loop of
    /// `AWS::LanguageExtensions`) is one unknown value under the key `(entry)`, named by its text.
    pub attributes: BTreeMap<String, Val>,
}

/// The keys of a resource entry that are not attributes: read on their own.
const ENTRY_KEYS: &[&str] = &["Type", "Condition", "Properties"];

#[derive(Debug, Default)]
pub struct Resolved {
    pub resources: BTreeMap<String, Resource>,
    /// `Transform` entries, `Fn::Transform` macros and unknown template sections.
    pub transforms: Vec<String>,
    /// Deploy-time inputs that decide a condition or lookup, with the literals they are compared with.
    pub decisions: BTreeMap<String, BTreeSet<String>>,
    /// The deployment fails in this case (a mapping lookup that misses in a resource that is created).
    pub failed: Option<String>,
    /// Exported outputs: `Outputs.NAME` -> (the export's name, the value other stacks import), resolved. Other
    /// stacks of the account act on what they import, so a changed export is judged; an output that is not
    /// exported is only shown to who can already describe the stack.
    pub exports: BTreeMap<String, Val>,
}

/// Tri-state condition value; `Unknown` carries a canonical text that identifies the choice.
#[derive(Debug, Clone, PartialEq)]
enum Tri {
    True,
    False,
    Unknown(String),
}

struct Resolver<'a> {
    params: BTreeMap<String, Val>,
    mappings: Option<&'a serde_json::Map<String, Value>>,
    conditions: Option<&'a serde_json::Map<String, Value>>,
    resource_ids: BTreeSet<&'a str>,
    env: &'a Env,
    /// Names of the deploy-time inputs (pseudo parameters, parameters without a value).
    vars: BTreeSet<String>,
    memo: HashMap<String, Tri>,
    evaluating: BTreeSet<String>,
    symbols: &'a mut Symbols,
    budget: &'a mut Budget,
    decisions: BTreeMap<String, BTreeSet<String>>,
    transforms: Vec<String>,
    /// How deep the evaluation is nested (values inside values, conditions referring to conditions): bounded by
    /// [`MAX_DEPTH`], so no template can exhaust the stack.
    depth: usize,
}

/// The deepest nesting of values and condition references the resolver follows. A real template nests a few
/// levels; past this, the template is refused as too complex (never a stack overflow).
pub const MAX_DEPTH: usize = 128;

/// Resolve a template's resources. `parameters` are the deployment's values; `env` fixes deploy-time inputs
/// for one case (empty: all symbolic).
pub fn resolve(
    doc: &Value,
    parameters: &BTreeMap<String, String>,
    env: &Env,
    symbols: &mut Symbols,
    budget: &mut Budget,
) -> Result<Resolved, TooComplex> {
    let empty = serde_json::Map::new();
    let top = doc.as_object().unwrap_or(&empty);
    let mut transforms = Vec::new();
    match top.get("Transform") {
        None => {}
        Some(Value::String(name)) => transforms.push(format!("Transform {name}")),
        Some(Value::Array(items)) => {
            transforms.extend(items.iter().map(|i| format!("Transform {}", plain(i))))
        }
        Some(other) => transforms.push(format!("Transform {}", plain(other))),
    }
    for key in top.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            transforms.push(format!(
                "template section {key}, which CloudFormation may act on"
            ));
        }
    }
    find_fn_transforms(doc, &mut transforms, budget)?;
    let resources = top
        .get("Resources")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut r = Resolver {
        params: BTreeMap::new(),
        mappings: top.get("Mappings").and_then(Value::as_object),
        conditions: top.get("Conditions").and_then(Value::as_object),
        resource_ids: resources.keys().map(String::as_str).collect(),
        env,
        vars: PSEUDO.iter().map(|p| p.to_string()).collect(),
        memo: HashMap::new(),
        evaluating: BTreeSet::new(),
        symbols,
        budget,
        decisions: BTreeMap::new(),
        transforms,
        depth: 0,
    };
    r.load_parameters(top.get("Parameters"), parameters);
    let mut out = Resolved::default();
    for (id, resource) in resources {
        r.budget.spend(1)?;
        let kind = match resource.get("Type") {
            Some(Value::String(t)) => t.clone(),
            Some(other) => format!("(a Type that is not text: {})", plain(other)),
            None => "(no Type)".to_string(),
        };
        let presence = match resource.get("Condition") {
            None => Presence::Yes,
            Some(Value::String(name)) => match r.named_condition(name)? {
                Tri::True => Presence::Yes,
                Tri::False => Presence::No,
                Tri::Unknown(selector) => Presence::Maybe(selector),
            },
            Some(_) => Presence::Maybe("a Condition that is not a name".into()),
        };
        if presence == Presence::No {
            continue;
        }
        let props = match resource.get("Properties") {
            Some(p) => r.val(p)?,
            None => Val::Map(BTreeMap::new()),
        };
        let mut attributes = BTreeMap::new();
        match resource.as_object() {
            Some(entry) => {
                for (key, value) in entry {
                    if !ENTRY_KEYS.contains(&key.as_str()) {
                        attributes.insert(key.clone(), r.val(value)?);
                    }
                }
            }
            None => {
                let unknown =
                    Val::Unknown(format!("a resource entry that is not an object ({id})"));
                attributes.insert("(entry)".to_string(), r.sourced(unknown, resource)?);
            }
        }
        if presence == Presence::Yes
            && out.failed.is_none()
            && let Some(reason) = props.fails()
        {
            out.failed = Some(format!("resource {id}: {reason}"));
        }
        out.resources.insert(
            id.clone(),
            Resource {
                kind,
                presence,
                props,
                attributes,
            },
        );
    }
    if let Some(outputs) = top.get("Outputs").and_then(Value::as_object) {
        for (name, output) in outputs {
            let Some(export) = output.get("Export") else {
                continue;
            };
            let present = match output.get("Condition") {
                Some(Value::String(c)) => r.named_condition(c)? != Tri::False,
                _ => true,
            };
            if present {
                let pair = Val::List(vec![
                    r.val(export)?,
                    r.val(output.get("Value").unwrap_or(&Value::Null))?,
                ]);
                out.exports.insert(format!("Outputs.{name}"), pair);
            }
        }
    }
    out.transforms = std::mem::take(&mut r.transforms);
    out.decisions = std::mem::take(&mut r.decisions);
    Ok(out)
}

/// The units a value's copy costs, counted up to `cap` (so counting never costs more than the budget left).
fn weight(v: &Val, cap: u64) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        total += NODE;
        if total > cap {
            return total;
        }
        match v {
            Val::Str(s) | Val::Num(s) | Val::Unknown(s) | Val::Fail(s) => total += s.len() as u64,
            Val::List(items) => stack.extend(items),
            Val::Map(m) => {
                for (k, child) in m {
                    total += k.len() as u64;
                    stack.push(child);
                }
            }
            Val::OneOf { selector, alts } => {
                total += selector.len() as u64;
                for (label, alt) in alts {
                    total += label.len() as u64;
                    stack.push(alt);
                }
            }
            Val::Null | Val::Bool(_) | Val::Absent => {}
        }
    }
    total
}

/// Short text of a JSON value for messages.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => {
            let text = other.to_string();
            if text.len() > 120 {
                // The last char boundary at or before byte 117 (`floor_char_boundary` needs Rust 1.91; the
                // MSRV is 1.85).
                let end = (0..=117)
                    .rev()
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                format!("{}... [{}]", &text[..end], digest(&[&text]))
            } else {
                text
            }
        }
    }
}

/// Every `Fn::Transform` in the document (CloudFormation runs the macro on that snippet at every deploy).
fn find_fn_transforms(
    v: &Value,
    out: &mut Vec<String>,
    budget: &mut Budget,
) -> Result<(), TooComplex> {
    budget.spend(1)?;
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "Fn::Transform" {
                    let name = child.get("Name").map(plain).unwrap_or_else(|| plain(child));
                    out.push(format!("Fn::Transform {name}"));
                }
                find_fn_transforms(child, out, budget)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                find_fn_transforms(item, out, budget)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A single-key object whose key names an intrinsic function.
pub fn intrinsic(map: &serde_json::Map<String, Value>) -> Option<(&str, &Value)> {
    if map.len() != 1 {
        return None;
    }
    let (k, v) = map.iter().next()?;
    (k == "Ref" || k.starts_with("Fn::")).then_some((k.as_str(), v))
}

impl Resolver<'_> {
    fn load_parameters(&mut self, section: Option<&Value>, given: &BTreeMap<String, String>) {
        let Some(section) = section.and_then(Value::as_object) else {
            return;
        };
        for (name, decl) in section {
            let kind = decl.get("Type").and_then(Value::as_str).unwrap_or("String");
            let value = given
                .get(name)
                .cloned()
                .or_else(|| match decl.get("Default") {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    Some(Value::Bool(b)) => Some(b.to_string()),
                    Some(Value::Array(items)) => {
                        Some(items.iter().map(plain).collect::<Vec<_>>().join(","))
                    }
                    _ => None,
                });
            let is_list = kind.starts_with("List<") || kind == "CommaDelimitedList";
            let val = if kind.starts_with("AWS::SSM::Parameter::Value") {
                Val::Unknown(format!(
                    "parameter {name} is read from Systems Manager Parameter Store at deploy time [source {}]",
                    digest(&[&format!("{value:?}")])
                ))
            } else {
                match (value, is_list) {
                    (Some(v), false) => Val::Str(self.literal(&v)),
                    (Some(v), true) => Val::List(
                        v.split(',')
                            .map(|s| Val::Str(self.literal(s.trim())))
                            .collect(),
                    ),
                    (None, false) => {
                        self.vars.insert(name.clone());
                        if let Some(Value::Array(allowed)) = decl.get("AllowedValues") {
                            let literals = allowed.iter().map(plain).collect();
                            self.decisions.insert(name.clone(), literals);
                        }
                        match self.env.get(name) {
                            Some(Some(literal)) => Val::Str(literal.clone()),
                            _ => Val::Str(self.symbols.fixed(name).to_string()),
                        }
                    }
                    (None, true) => Val::Unknown(format!(
                        "parameter {name} (a list) has no value; give it in spec.parameters"
                    )),
                }
            };
            self.params.insert(name.clone(), val);
        }
    }

    /// A literal string from the template; dynamic references (`{{resolve:...}}`) become could-be-anything.
    fn literal(&mut self, s: &str) -> String {
        if !s.contains("{{resolve:") {
            return s.to_string();
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("{{resolve:") {
            out.push_str(&rest[..start]);
            let tail = &rest[start..];
            let end = tail.find("}}").map_or(tail.len(), |e| e + 2);
            let reason = format!(
                "dynamic reference {}, read at deploy time",
                &tail[..end.min(tail.len())]
            );
            out.push(self.symbols.any(&reason));
            rest = &tail[end..];
        }
        out.push_str(rest);
        out
    }

    /// One level deeper; refused past [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<(), TooComplex> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(TooComplex);
        }
        Ok(())
    }

    fn val(&mut self, v: &Value) -> Result<Val, TooComplex> {
        self.enter()?;
        let out = self.val_inner(v);
        self.depth -= 1;
        out
    }

    /// An unknown value named by its source: the expression's text and the current value of everything it refers
    /// to (parameters, mappings, conditions, the case's pseudo parameters). Two unknown values are equal only when
    /// they come from the same expression with the same inputs, never because their reasons read alike (one opaque
    /// policy replaced by another that grants `*` must not compare equal).
    fn sourced(&mut self, v: Val, source: &Value) -> Result<Val, TooComplex> {
        Ok(match v {
            Val::Unknown(reason) if !reason.contains(" [source ") => {
                let mut inputs = Vec::new();
                self.inputs_of(source, &mut inputs)?;
                inputs.sort();
                inputs.dedup();
                let id = digest(&[&source.to_string(), &inputs.join("\n")]);
                Val::Unknown(format!("{reason} [source {id}]"))
            }
            other => other,
        })
    }

    /// What an expression refers to, with its current value.
    fn inputs_of(&mut self, v: &Value, out: &mut Vec<String>) -> Result<(), TooComplex> {
        self.enter()?;
        self.budget.spend(NODE)?;
        match v {
            Value::Object(map) => {
                for (key, arg) in map {
                    match (key.as_str(), arg) {
                        ("Ref", Value::String(name)) => out.push(self.input(name)),
                        ("Condition", Value::String(name)) => {
                            let t = self.named_condition(name)?;
                            out.push(format!("condition {name}={t:?}"));
                        }
                        ("Fn::If", Value::Array(items)) => {
                            if let Some(Value::String(name)) = items.first() {
                                let t = self.named_condition(name)?;
                                out.push(format!("condition {name}={t:?}"));
                            }
                        }
                        ("Fn::FindInMap", Value::Array(items)) => {
                            if let Some(Value::String(name)) = items.first() {
                                let map = self.mappings.and_then(|m| m.get(name));
                                out.push(format!(
                                    "mapping {name}={}",
                                    map.map(Value::to_string).unwrap_or_default()
                                ));
                            }
                        }
                        ("Fn::Sub", _) => {
                            let template = match arg {
                                Value::String(t) => Some(t.as_str()),
                                Value::Array(parts) => parts.first().and_then(Value::as_str),
                                _ => None,
                            };
                            let mut rest = template.unwrap_or("");
                            while let Some(start) = rest.find("${") {
                                let after = &rest[start + 2..];
                                let end = after.find('}').unwrap_or(after.len());
                                out.push(self.input(&after[..end]));
                                rest = &after[end.min(after.len())..];
                            }
                        }
                        _ => {}
                    }
                    self.inputs_of(arg, out)?;
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.inputs_of(item, out)?;
                }
            }
            _ => {}
        }
        self.depth -= 1;
        Ok(())
    }

    fn input(&self, name: &str) -> String {
        match self.params.get(name) {
            Some(v) => format!("parameter {name}={}", v.canonical()),
            None => format!("{name}={:?}", self.env.get(name)),
        }
    }

    fn val_inner(&mut self, v: &Value) -> Result<Val, TooComplex> {
        self.budget.spend(NODE)?;
        Ok(match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::Num(n.to_string()),
            Value::String(s) => {
                self.budget.spend(s.len() as u64)?;
                Val::Str(self.literal(s))
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match self.val(item)? {
                        Val::Absent => {}
                        other => out.push(other),
                    }
                }
                Val::List(out)
            }
            Value::Object(map) => {
                if let Some((name, arg)) = intrinsic(map) {
                    let value = self.call(name, arg)?;
                    return self.sourced(value, v);
                }
                let mut out = BTreeMap::new();
                for (k, child) in map {
                    match self.val(child)? {
                        Val::Absent => {}
                        other => {
                            out.insert(k.clone(), other);
                        }
                    }
                }
                Val::Map(out)
            }
        })
    }

    fn call(&mut self, name: &str, arg: &Value) -> Result<Val, TooComplex> {
        Ok(match name {
            "Ref" => match arg {
                Value::String(target) => self.reference(target),
                other => Val::Unknown(format!("Ref to {}, which is not a name", plain(other))),
            },
            "Fn::Sub" => self.sub(arg)?,
            "Fn::Join" => self.join(arg)?,
            "Fn::Select" => self.select(arg)?,
            "Fn::Split" => self.split(arg)?,
            "Fn::FindInMap" => self.find_in_map(arg)?,
            "Fn::If" => self.fn_if(arg)?,
            "Fn::GetAtt" => self.get_att(arg),
            "Fn::ImportValue" => match self.val(arg)? {
                Val::Str(s) if !s.chars().any(is_reserved) => {
                    Val::Str(self.symbols.fixed(&format!("ImportValue {s}")).to_string())
                }
                _ => Val::Unknown("Fn::ImportValue of a computed export name".into()),
            },
            "Fn::Base64" => self.val(arg)?,
            "Fn::GetAZs" => Val::Unknown("Fn::GetAZs (the Region's Availability Zones)".into()),
            "Fn::Cidr" => Val::Unknown("Fn::Cidr (address blocks computed at deploy time)".into()),
            "Fn::Transform" => {
                let macro_name = arg.get("Name").map(plain).unwrap_or_else(|| plain(arg));
                Val::Unknown(format!("Fn::Transform: the output of macro {macro_name}"))
            }
            "Fn::Length" | "Fn::ToJsonString" => Val::Unknown(format!(
                "{name} (AWS::LanguageExtensions), computed by a transform at deploy time"
            )),
            other => Val::Unknown(format!("{other}, which stacksetd does not evaluate")),
        })
    }

    fn reference(&mut self, target: &str) -> Val {
        if target == "AWS::NoValue" {
            return Val::Absent;
        }
        if let Some(v) = self.params.get(target) {
            return v.clone();
        }
        if PSEUDO.contains(&target) {
            return match self.env.get(target) {
                Some(Some(literal)) => Val::Str(literal.clone()),
                _ => {
                    let c = self.symbols.fixed(target);
                    if let Some(alphabet) = pseudo_alphabet(target) {
                        self.symbols.set_alphabet(c, alphabet);
                    }
                    Val::Str(c.to_string())
                }
            };
        }
        if target == "AWS::NotificationARNs" {
            return Val::Unknown("AWS::NotificationARNs (the stack's notification topics)".into());
        }
        if self.resource_ids.contains(target) {
            return Val::Str(self.symbols.fixed(target).to_string());
        }
        Val::Unknown(format!(
            "Ref to {target}, which the template does not define"
        ))
    }

    fn get_att(&mut self, arg: &Value) -> Val {
        let (resource, attribute) = match arg {
            Value::Array(parts) if parts.len() == 2 => match (&parts[0], &parts[1]) {
                (Value::String(r), Value::String(a)) => (r.clone(), a.clone()),
                _ => return Val::Unknown("Fn::GetAtt with a computed attribute name".into()),
            },
            Value::String(s) => match s.split_once('.') {
                Some((r, a)) => (r.to_string(), a.to_string()),
                None => return Val::Unknown(format!("Fn::GetAtt {s} names no attribute")),
            },
            other => return Val::Unknown(format!("Fn::GetAtt {}", plain(other))),
        };
        if !self.resource_ids.contains(resource.as_str()) {
            return Val::Unknown(format!(
                "Fn::GetAtt {resource}.{attribute}: the template defines no {resource}"
            ));
        }
        Val::Str(
            self.symbols
                .fixed(&format!("{resource}.{attribute}"))
                .to_string(),
        )
    }

    /// A value used as text: text, a number, or an alternative of those; anything else could be anything.
    fn text_piece(&mut self, v: Val, what: &str) -> Val {
        match v {
            Val::Str(_) | Val::OneOf { .. } | Val::Fail(_) => v,
            Val::Num(n) => Val::Str(n),
            Val::Bool(b) => Val::Str(b.to_string()),
            Val::Absent => Val::Str(String::new()),
            Val::Unknown(reason) => Val::Str(self.symbols.any(&reason).to_string()),
            Val::Null | Val::List(_) | Val::Map(_) => {
                Val::Str(self.symbols.any(&format!("{what} is not text")).to_string())
            }
        }
    }

    /// Text concatenation, distributing over alternatives.
    fn concat(&mut self, a: Val, b: Val) -> Result<Val, TooComplex> {
        self.budget.spend(NODE)?;
        Ok(match (a, b) {
            (f @ Val::Fail(_), _) | (_, f @ Val::Fail(_)) => f,
            (Val::OneOf { selector, alts }, b) => {
                let mut out = Vec::with_capacity(alts.len());
                for (label, alt) in alts {
                    // Every alternative gets its own copy of what follows: paid for before it is made.
                    self.budget.spend(weight(&b, self.budget.left()))?;
                    out.push((label, self.concat(alt, b.clone())?));
                }
                Val::OneOf {
                    selector,
                    alts: out,
                }
            }
            (a, Val::OneOf { selector, alts }) => {
                let mut out = Vec::with_capacity(alts.len());
                for (label, alt) in alts {
                    self.budget.spend(weight(&a, self.budget.left()))?;
                    out.push((label, self.concat(a.clone(), alt)?));
                }
                Val::OneOf {
                    selector,
                    alts: out,
                }
            }
            (Val::Str(mut x), Val::Str(y)) => {
                self.budget.spend(y.len() as u64)?;
                x.push_str(&y);
                Val::Str(x)
            }
            (x, y) => {
                let x = self.text_piece(x, "a joined value");
                let y = self.text_piece(y, "a joined value");
                if matches!((&x, &y), (Val::Str(_), Val::Str(_))) {
                    return self.concat(x, y);
                }
                Val::Unknown("text joined from values that are not text".into())
            }
        })
    }

    fn sub(&mut self, arg: &Value) -> Result<Val, TooComplex> {
        let (template, vars) = match arg {
            Value::String(s) => (s.as_str(), None),
            Value::Array(parts) if parts.len() == 2 => match (&parts[0], parts[1].as_object()) {
                (Value::String(s), Some(vars)) => (s.as_str(), Some(vars)),
                _ => {
                    return Ok(Val::Unknown(
                        "Fn::Sub with a computed template string".into(),
                    ));
                }
            },
            other => return Ok(Val::Unknown(format!("Fn::Sub {}", plain(other)))),
        };
        let mut out = Val::Str(String::new());
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            let literal = self.literal(&rest[..start]);
            out = self.concat(out, Val::Str(literal))?;
            let after = &rest[start + 2..];
            if let Some(escaped) = after.strip_prefix('!') {
                out = self.concat(out, Val::Str("${".into()))?;
                rest = escaped;
                continue;
            }
            let Some(end) = after.find('}') else {
                out = self.concat(out, Val::Str(rest[start..].to_string()))?;
                rest = "";
                break;
            };
            let name = &after[..end];
            let value = match vars.and_then(|v| v.get(name)) {
                Some(v) => self.val(v)?,
                None if name.contains('.') && !name.starts_with("AWS::") => {
                    let (r, a) = name.split_once('.').unwrap_or((name, ""));
                    self.get_att(&Value::Array(vec![r.into(), a.into()]))
                }
                None => self.reference(name),
            };
            let value = self.text_piece(value, &format!("Fn::Sub variable {name}"));
            out = self.concat(out, value)?;
            rest = &after[end + 1..];
        }
        let literal = self.literal(rest);
        self.concat(out, Val::Str(literal))
    }

    fn join(&mut self, arg: &Value) -> Result<Val, TooComplex> {
        let Some([delimiter, list]) = arg
            .as_array()
            .and_then(|s| <&[Value; 2]>::try_from(s.as_slice()).ok())
        else {
            return Ok(Val::Unknown("Fn::Join needs [delimiter, list]".into()));
        };
        let delimiter = match self.val(delimiter)? {
            Val::Str(d) => d,
            _ => return Ok(Val::Unknown("Fn::Join with a computed delimiter".into())),
        };
        let list = self.val(list)?;
        self.join_val(&delimiter, list)
    }

    fn join_val(&mut self, delimiter: &str, list: Val) -> Result<Val, TooComplex> {
        Ok(match list {
            Val::List(items) => {
                let mut out = Val::Str(String::new());
                for (i, item) in items.into_iter().enumerate() {
                    if i > 0 {
                        out = self.concat(out, Val::Str(delimiter.to_string()))?;
                    }
                    let piece = self.text_piece(item, "a Fn::Join element");
                    out = self.concat(out, piece)?;
                }
                out
            }
            Val::OneOf { selector, alts } => {
                let mut out = Vec::with_capacity(alts.len());
                for (label, alt) in alts {
                    out.push((label, self.join_val(delimiter, alt)?));
                }
                Val::OneOf {
                    selector,
                    alts: out,
                }
            }
            f @ Val::Fail(_) => f,
            Val::Unknown(reason) => Val::Unknown(reason),
            _ => Val::Unknown("Fn::Join of something that is not a list".into()),
        })
    }

    fn select(&mut self, arg: &Value) -> Result<Val, TooComplex> {
        let Some([index, list]) = arg
            .as_array()
            .and_then(|s| <&[Value; 2]>::try_from(s.as_slice()).ok())
        else {
            return Ok(Val::Unknown("Fn::Select needs [index, list]".into()));
        };
        let index = match self.val(index)? {
            Val::Str(s) | Val::Num(s) => match s.parse::<usize>() {
                Ok(i) => i,
                Err(_) => return Ok(Val::Unknown(format!("Fn::Select index {s}"))),
            },
            _ => return Ok(Val::Unknown("Fn::Select with a computed index".into())),
        };
        let list = self.val(list)?;
        Ok(select_val(index, list, self.symbols))
    }

    fn split(&mut self, arg: &Value) -> Result<Val, TooComplex> {
        let Some([delimiter, source]) = arg
            .as_array()
            .and_then(|s| <&[Value; 2]>::try_from(s.as_slice()).ok())
        else {
            return Ok(Val::Unknown("Fn::Split needs [delimiter, text]".into()));
        };
        let delimiter = match self.val(delimiter)? {
            Val::Str(d) if !d.is_empty() && !d.chars().any(is_reserved) => d,
            _ => return Ok(Val::Unknown("Fn::Split with a computed delimiter".into())),
        };
        let source = self.val(source)?;
        Ok(split_val(&delimiter, source, self.symbols))
    }

    fn find_in_map(&mut self, arg: &Value) -> Result<Val, TooComplex> {
        let Some(parts) = arg.as_array().filter(|p| p.len() == 3 || p.len() == 4) else {
            return Ok(Val::Unknown("Fn::FindInMap needs [map, key, key]".into()));
        };
        let map_name = match self.val(&parts[0])? {
            Val::Str(s) if !s.chars().any(is_reserved) => s,
            _ => {
                return Ok(Val::Unknown(
                    "Fn::FindInMap with a computed map name".into(),
                ));
            }
        };
        let default = parts.get(3).and_then(|d| d.get("DefaultValue")).cloned();
        let Some(map) = self
            .mappings
            .and_then(|m| m.get(&map_name))
            .and_then(Value::as_object)
        else {
            return Ok(match default {
                Some(d) => self.val(&d)?,
                None => Val::Fail(format!("Fn::FindInMap: no mapping {map_name}")),
            });
        };
        let first = self.val(&parts[1])?;
        let second = self.val(&parts[2])?;
        self.lookup(map, &map_name, first, second, default.as_ref())
    }

    /// A FindInMap key as text; otherwise what the lookup gives instead (a failure stays one, a key that is
    /// not text is unknown). A key that could be anything is the marker of its reason.
    fn map_key(&mut self, key: Val) -> Result<String, Val> {
        match key {
            Val::Str(s) | Val::Num(s) => Ok(s),
            f @ Val::Fail(_) => Err(f),
            Val::Unknown(reason) => Ok(format!("{}", self.symbols.any(&reason))),
            _ => Err(Val::Unknown(
                "Fn::FindInMap with a key that is not text".into(),
            )),
        }
    }

    fn lookup(
        &mut self,
        map: &serde_json::Map<String, Value>,
        map_name: &str,
        first: Val,
        second: Val,
        default: Option<&Value>,
    ) -> Result<Val, TooComplex> {
        self.budget.spend(NODE)?;
        // A key only known at deploy time: any entry (the union of the map's level).
        if let Val::OneOf { selector, alts } = first {
            let mut out = Vec::with_capacity(alts.len());
            for (label, alt) in alts {
                self.budget.spend(weight(&second, self.budget.left()))?;
                out.push((
                    label,
                    self.lookup(map, map_name, alt, second.clone(), default)?,
                ));
            }
            return Ok(Val::OneOf {
                selector,
                alts: out,
            });
        }
        let key = match self.map_key(first) {
            Ok(key) => key,
            Err(instead) => return Ok(instead),
        };
        if key.chars().any(is_reserved) {
            let var = self.var_of(&key);
            if let Some(var) = &var {
                self.decisions
                    .entry(var.clone())
                    .or_default()
                    .extend(map.keys().cloned());
                if self.env.get(var) == Some(&None) {
                    // Fixed by the case to a value that is none of the keys.
                    return self.miss(map_name, &key, default);
                }
            }
            let selector = format!("FindInMap({map_name},{key})");
            let mut alts = Vec::with_capacity(map.len() + 1);
            for (entry_key, entry) in map {
                let inner = entry.as_object();
                let v = match inner {
                    Some(inner) => {
                        self.second_level(inner, map_name, entry_key, second.clone(), default)?
                    }
                    None => Val::Fail(format!(
                        "Fn::FindInMap: {map_name}.{entry_key} is not a map"
                    )),
                };
                alts.push((entry_key.clone(), v));
            }
            if let Some(d) = default {
                alts.push(("(default)".into(), self.val(d)?));
            }
            return Ok(Val::OneOf { selector, alts });
        }
        match map.get(&key).and_then(Value::as_object) {
            Some(inner) => self.second_level(inner, map_name, &key, second, default),
            None => self.miss(map_name, &key, default),
        }
    }

    fn second_level(
        &mut self,
        inner: &serde_json::Map<String, Value>,
        map_name: &str,
        first_key: &str,
        second: Val,
        default: Option<&Value>,
    ) -> Result<Val, TooComplex> {
        if let Val::OneOf { selector, alts } = second {
            let mut out = Vec::with_capacity(alts.len());
            for (label, alt) in alts {
                out.push((
                    label,
                    self.second_level(inner, map_name, first_key, alt, default)?,
                ));
            }
            return Ok(Val::OneOf {
                selector,
                alts: out,
            });
        }
        let key = match self.map_key(second) {
            Ok(key) => key,
            Err(instead) => return Ok(instead),
        };
        if key.chars().any(is_reserved) {
            if let Some(var) = self.var_of(&key) {
                self.decisions
                    .entry(var.clone())
                    .or_default()
                    .extend(inner.keys().cloned());
                if self.env.get(&var) == Some(&None) {
                    return self.miss(map_name, &key, default);
                }
            }
            let selector = format!("FindInMap({map_name},{first_key},{key})");
            let mut alts = Vec::with_capacity(inner.len());
            for (k, v) in inner {
                alts.push((k.clone(), self.val(v)?));
            }
            if let Some(d) = default {
                alts.push(("(default)".into(), self.val(d)?));
            }
            return Ok(Val::OneOf { selector, alts });
        }
        match inner.get(&key) {
            Some(v) => self.val(v),
            None => self.miss(map_name, &key, default),
        }
    }

    fn miss(
        &mut self,
        map_name: &str,
        key: &str,
        default: Option<&Value>,
    ) -> Result<Val, TooComplex> {
        match default {
            Some(d) => self.val(d),
            None => Ok(Val::Fail(format!(
                "Fn::FindInMap: no entry {} in mapping {map_name}",
                self.symbols.display(key)
            ))),
        }
    }

    /// The deploy-time input a text stands for, when it is exactly one.
    fn var_of(&self, text: &str) -> Option<String> {
        let mut chars = text.chars();
        let c = chars.next()?;
        if chars.next().is_some() || !is_symbol(c) {
            return None;
        }
        let name = self.symbols.fixed_name(c)?;
        self.vars.contains(name).then(|| name.to_string())
    }

    fn fn_if(&mut self, arg: &Value) -> Result<Val, TooComplex> {
        let Some([cond, yes, no]) = arg
            .as_array()
            .and_then(|s| <&[Value; 3]>::try_from(s.as_slice()).ok())
        else {
            return Ok(Val::Unknown(
                "Fn::If needs [condition, value, value]".into(),
            ));
        };
        let Value::String(name) = cond else {
            return Ok(Val::Unknown(
                "Fn::If with a condition that is not a name".into(),
            ));
        };
        Ok(match self.named_condition(name.as_str())? {
            Tri::True => self.val(yes)?,
            Tri::False => self.val(no)?,
            Tri::Unknown(selector) => {
                let (a, b) = (self.val(yes)?, self.val(no)?);
                if a == b {
                    a
                } else {
                    Val::OneOf {
                        selector,
                        alts: vec![("true".into(), a), ("false".into(), b)],
                    }
                }
            }
        })
    }

    fn named_condition(&mut self, name: &str) -> Result<Tri, TooComplex> {
        if let Some(t) = self.memo.get(name) {
            return Ok(t.clone());
        }
        let Some(expr) = self.conditions.and_then(|c| c.get(name)) else {
            return Ok(Tri::Unknown(format!("undefined condition {name}")));
        };
        if !self.evaluating.insert(name.to_string()) {
            return Ok(Tri::Unknown(format!("circular condition {name}")));
        }
        let t = self.condition(expr)?;
        self.evaluating.remove(name);
        self.memo.insert(name.to_string(), t.clone());
        Ok(t)
    }

    fn condition(&mut self, expr: &Value) -> Result<Tri, TooComplex> {
        self.enter()?;
        let out = self.condition_inner(expr);
        self.depth -= 1;
        out
    }

    fn condition_inner(&mut self, expr: &Value) -> Result<Tri, TooComplex> {
        self.budget.spend(1)?;
        let Some(map) = expr.as_object().filter(|m| m.len() == 1) else {
            return Ok(Tri::Unknown(format!("condition {}", plain(expr))));
        };
        let (op, arg) = map.iter().next().expect("one entry");
        let args = arg.as_array();
        Ok(match (op.as_str(), args) {
            ("Condition", _) => match arg {
                Value::String(name) => self.named_condition(name)?,
                _ => Tri::Unknown("Condition that is not a name".into()),
            },
            ("Fn::Equals", Some(pair)) if pair.len() == 2 => {
                let (a, b) = (self.val(&pair[0])?, self.val(&pair[1])?);
                self.equals(&a, &b)
            }
            ("Fn::Not", Some(one)) if one.len() == 1 => match self.condition(&one[0])? {
                Tri::True => Tri::False,
                Tri::False => Tri::True,
                Tri::Unknown(s) => Tri::Unknown(format!("Not({s})")),
            },
            ("Fn::And", Some(items)) | ("Fn::Or", Some(items)) => {
                let and = op == "Fn::And";
                let mut unknown = Vec::new();
                for item in items {
                    match self.condition(item)? {
                        Tri::True if !and => return Ok(Tri::True),
                        Tri::False if and => return Ok(Tri::False),
                        Tri::Unknown(s) => unknown.push(s),
                        _ => {}
                    }
                }
                match unknown.len() {
                    0 => {
                        if and {
                            Tri::True
                        } else {
                            Tri::False
                        }
                    }
                    1 => Tri::Unknown(unknown.pop().expect("one")),
                    _ => Tri::Unknown(format!(
                        "{}({})",
                        if and { "And" } else { "Or" },
                        unknown.join(",")
                    )),
                }
            }
            _ => Tri::Unknown(format!("condition {}", plain(expr))),
        })
    }

    fn equals(&mut self, a: &Val, b: &Val) -> Tri {
        match (a, b) {
            (Val::OneOf { alts, .. }, other) | (other, Val::OneOf { alts, .. }) => {
                let results: Vec<Tri> = alts
                    .iter()
                    .map(|(_, alt)| alt.clone())
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|alt| self.equals(alt, other))
                    .collect();
                if results.iter().all(|r| *r == Tri::True) {
                    Tri::True
                } else if results.iter().all(|r| *r == Tri::False) {
                    Tri::False
                } else {
                    Tri::Unknown(format!("Equals({},{})", a.canonical(), b.canonical()))
                }
            }
            _ => {
                let (x, y) = (scalar_text(a), scalar_text(b));
                match (x, y) {
                    (Some(x), Some(y)) => {
                        let (rx, ry) = (x.chars().any(is_reserved), y.chars().any(is_reserved));
                        if x == y && !x.chars().any(super::value::is_any) {
                            return Tri::True;
                        }
                        if !rx && !ry {
                            return Tri::False;
                        }
                        for (var_text, literal) in [(&x, &y), (&y, &x)] {
                            if let Some(var) = self.var_of(var_text)
                                && !literal.chars().any(is_reserved)
                            {
                                self.decisions
                                    .entry(var.clone())
                                    .or_default()
                                    .insert(literal.to_string());
                                // The case fixed it to a value equal to none of the literals it is compared with.
                                if self.env.get(&var) == Some(&None) {
                                    return Tri::False;
                                }
                            }
                        }
                        Tri::Unknown(format!(
                            "Equals({},{})",
                            self.symbols.display(&x),
                            self.symbols.display(&y)
                        ))
                    }
                    _ => {
                        if a.is_concrete() && b.is_concrete() {
                            if a.canonical() == b.canonical() {
                                Tri::True
                            } else {
                                Tri::False
                            }
                        } else {
                            Tri::Unknown(format!("Equals({},{})", a.canonical(), b.canonical()))
                        }
                    }
                }
            }
        }
    }
}

fn scalar_text(v: &Val) -> Option<String> {
    match v {
        Val::Str(s) | Val::Num(s) => Some(s.clone()),
        Val::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The delimiter of a `Fn::Split("d",...)` symbol name, when it is one character.
fn split_delimiter(name: &str) -> Option<String> {
    let rest = name.strip_prefix(SPLIT_SYMBOL)?.strip_prefix('(')?;
    let quoted = rest.split(',').next()?;
    let d: String = serde_json::from_str(quoted).ok()?;
    (d.chars().count() == 1).then_some(d)
}

/// The ASCII characters `text` can contain once its symbols are replaced, when every symbol's alphabet is known.
fn text_alphabet(text: &str, symbols: &Symbols) -> Option<u128> {
    let mut set = 0u128;
    for c in text.chars() {
        if is_reserved(c) {
            set |= symbols.alphabet(c)?;
        } else if c.is_ascii() {
            set |= 1 << (c as u32);
        } else {
            return None;
        }
    }
    Some(set)
}

/// Splitting `text` on `delimiter` is exact: no symbol in it can contain the delimiter.
fn splits_exactly(text: &str, delimiter: &str, symbols: &Symbols) -> bool {
    let d = super::value::ascii_set(delimiter, false, false);
    delimiter.chars().count() == 1
        && delimiter.is_ascii()
        && text
            .chars()
            .filter(|c| is_reserved(*c))
            .all(|c| symbols.alphabet(c).is_some_and(|a| a & d == 0))
}

fn select_val(index: usize, list: Val, symbols: &mut Symbols) -> Val {
    match list {
        Val::Str(s)
            if s.chars().count() == 1
                && symbols
                    .fixed_name(s.chars().next().unwrap_or(' '))
                    .is_some_and(|n| n.starts_with(SPLIT_SYMBOL)) =>
        {
            let list = s.chars().next().unwrap_or(' ');
            let name = format!("Fn::Select({index},{})", symbols.display(&s));
            let c = symbols.fixed(&name);
            // A piece of a split contains neither the delimiter nor anything the whole could not.
            if let Some(alphabet) = symbols.alphabet(list) {
                let delimiter = split_delimiter(symbols.fixed_name(list).unwrap_or(""));
                let without = delimiter.map_or(alphabet, |d| {
                    alphabet & !super::value::ascii_set(&d, false, false)
                });
                symbols.set_alphabet(c, without);
            }
            Val::Str(c.to_string())
        }
        Val::List(items) => match items.into_iter().nth(index) {
            Some(v) => v,
            None => Val::Fail(format!(
                "Fn::Select index {index} is past the end of the list"
            )),
        },
        Val::OneOf { selector, alts } => Val::OneOf {
            selector,
            alts: alts
                .into_iter()
                .map(|(l, a)| (l, select_val(index, a, symbols)))
                .collect(),
        },
        f @ Val::Fail(_) => f,
        Val::Unknown(reason) => Val::Unknown(reason),
        _ => Val::Unknown("Fn::Select from something that is not a list".into()),
    }
}

/// Prefix of the symbol that stands for a list split from deploy-time text.
const SPLIT_SYMBOL: &str = "Fn::Split";

fn split_val(delimiter: &str, source: Val, symbols: &mut Symbols) -> Val {
    match source {
        Val::Str(s) if !s.chars().any(is_reserved) => Val::List(
            s.split(delimiter)
                .map(|p| Val::Str(p.to_string()))
                .collect(),
        ),
        // Deploy-time values that cannot contain the delimiter (an account id split on ','): split exactly, each
        // piece keeping its symbols.
        Val::Str(s) if splits_exactly(&s, delimiter, symbols) => Val::List(
            s.split(delimiter)
                .map(|p| Val::Str(p.to_string()))
                .collect(),
        ),
        // Other deploy-time text (a parameter, a GetAtt): a fixed list nobody knows, the same in both versions as
        // long as the text is the same; `Fn::Select` takes fixed elements of it.
        Val::Str(s) if !s.chars().any(super::value::is_any) => {
            let name = format!("{SPLIT_SYMBOL}({delimiter:?},{})", symbols.display(&s));
            let c = symbols.fixed(&name);
            if let Some(alphabet) = text_alphabet(&s, symbols) {
                symbols.set_alphabet(c, alphabet);
            }
            Val::Str(c.to_string())
        }
        Val::Str(_) => Val::Unknown("Fn::Split of text that could be anything".into()),
        Val::OneOf { selector, alts } => Val::OneOf {
            selector,
            alts: alts
                .into_iter()
                .map(|(l, a)| (l, split_val(delimiter, a, symbols)))
                .collect(),
        },
        f @ Val::Fail(_) => f,
        Val::Unknown(reason) => Val::Unknown(reason),
        _ => Val::Unknown("Fn::Split of something that is not text".into()),
    }
}
