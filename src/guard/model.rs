//! One template version as the guard sees it, after resolution: every resource classified, and every IAM
//! statement with who holds it (a role's identity, a role's trust, a permissions boundary, ...).
//!
//! Holders are named by what IAM sees: a role by its resolved `RoleName` (the logical id when CloudFormation
//! generates the name), so that renaming a logical id is not a new grant but renaming the role is. Statements keep
//! their lists as they are (never the holders x actions x resources x principals product): the judge compares
//! them field by field.
//!
//! Alternatives left by deploy-time choices (see `resolve`) are flattened as the candidate side of a comparison
//! needs them: a field's alternatives are unioned (what may be granted) and the statement is marked uncertain, so
//! that as the applied side it only vouches for what it grants exactly.
//!
//! Size: over 700 lines: the one table from resource properties to what the guard compares (policies, trusts,
//! boundaries, resource policies), kept in one place so a resource type is classified once.

use std::collections::{BTreeMap, BTreeSet};

use super::budget::{Budget, NODE, TooComplex};
use super::pattern::Item;
use super::resolve::{Presence, Resolved};
use super::resources::{Class, row_for};
use super::value::{Symbols, Val};

/// Properties that are words for people on every resource type: a reworded description grants nothing. (Tags
/// are not among them: they drive ABAC conditions and SCP exemptions.)
const IGNORED_PROPERTIES: &[&str] = &["Description"];

/// Metadata keys only tools read (the console's designer, the CDK's construct path, linters' suppressions):
/// CloudFormation and cfn-init never act on them. Every other Metadata key (`AWS::CloudFormation::Init`,
/// `AWS::CloudFormation::Authentication`, one nobody knows yet) is judged as a whole.
pub const INERT_METADATA: &[&str] = &[
    "AWS::CloudFormation::Designer",
    "aws:cdk:path",
    "cfn-lint",
    "cfn_nag",
    "cdk_nag",
    "checkov",
    "guard",
];

/// The properties of each IAM resource type that the statement model reads: their differences are judged
/// statement by statement (or as the settings of `judge::settings`, or by the holder they name). Every other
/// property of an IAM type (`Path`, `Tags`, one CloudFormation adds later) is compared as a whole: any
/// difference is widening, because the model does not read it.
pub fn model_reads(kind: &str) -> &'static [&'static str] {
    match kind {
        "AWS::IAM::Role" => &[
            "AssumeRolePolicyDocument",
            "Policies",
            "ManagedPolicyArns",
            "PermissionsBoundary",
            "MaxSessionDuration",
            "RoleName",
        ],
        "AWS::IAM::User" => &[
            "Policies",
            "ManagedPolicyArns",
            "PermissionsBoundary",
            "LoginProfile",
            "Groups",
            "UserName",
        ],
        "AWS::IAM::Group" => &["Policies", "ManagedPolicyArns", "GroupName"],
        "AWS::IAM::Policy" => &["PolicyDocument", "PolicyName", "Roles", "Users", "Groups"],
        "AWS::IAM::ManagedPolicy" => &[
            "PolicyDocument",
            "ManagedPolicyName",
            "Roles",
            "Users",
            "Groups",
        ],
        "AWS::IAM::RolePolicy" => &["PolicyDocument", "PolicyName", "RoleName"],
        "AWS::IAM::UserPolicy" => &["PolicyDocument", "PolicyName", "UserName"],
        "AWS::IAM::GroupPolicy" => &["PolicyDocument", "PolicyName", "GroupName"],
        _ => &[],
    }
}

/// Most alternatives one Condition block or Effect is expanded into before it counts as "could be anything".
const MAX_VARIANTS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Effect {
    Allow,
    Deny,
}

/// Where a statement applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// What the identity may do.
    Identity,
    /// Who may assume the role.
    Trust,
    /// The permissions boundary: the most the identity may ever do.
    Boundary,
    /// A resource policy (a bucket policy, a key policy, ...): who may use the resource.
    Resource,
}

/// Who a statement applies to: a scope and an identity key (`role NAME`, `user NAME`, ...; raw text, symbols
/// undecoded).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Holder {
    pub scope: Scope,
    pub identity: String,
}

impl Holder {
    pub fn describe(&self, symbols: &Symbols) -> String {
        let who = symbols.display(&self.identity);
        match self.scope {
            Scope::Identity => who,
            Scope::Trust => format!("trust of {who}"),
            Scope::Boundary => format!("boundary of {who}"),
            Scope::Resource => format!("resource policy of {who}"),
        }
    }
}

/// A Condition block: (operator, lowercase key) -> the key as written and its values. `opaque` is set when the
/// block could not be read (its canonical text): then it is trusted only when identical.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cond {
    pub clauses: BTreeMap<(String, String), Clause>,
    pub opaque: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Clause {
    /// The condition key as the template spells it (keys compare case-insensitively).
    pub key: String,
    pub values: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Stmt {
    /// Path in the template, e.g. `Resources.Role.Properties.Policies[0].PolicyDocument.Statement[2]`.
    pub location: String,
    pub holders: Vec<Holder>,
    pub effect: Effect,
    /// No deploy-time choice inside: the statement grants (or denies) exactly its lists.
    pub certain: bool,
    pub actions: Vec<Item>,
    pub resources: Vec<Item>,
    pub principals: Vec<Item>,
    /// The Condition block's alternatives; `None` is "no condition".
    pub conditions: Vec<Option<Cond>>,
    /// Canonical text of the resolved statement (Sid left out): equal text is an equal statement.
    pub raw: String,
    /// What decides whether an uncertain statement is in force: a digest of its resource's resolved entry and of
    /// the choices that attach it. Two uncertain statements with equal text are the same grant only when this is
    /// equal too (a Deny kept word for word but put under a new `Fn::If` is not kept).
    pub context: String,
}

/// A resource as the judge compares it.
#[derive(Debug, Clone)]
pub struct ResourceView {
    pub id: String,
    pub kind: String,
    pub class: Class,
    pub certain: bool,
    /// Canonical text of the resolved properties.
    pub props: String,
    /// What it does, placeholders filled.
    pub does: String,
    /// The entry's attributes (`DeletionPolicy`, `DependsOn`, ...; Metadata one entry per key, `Metadata.KEY`,
    /// tool-only keys left out), resolved.
    pub attributes: BTreeMap<String, Val>,
    /// For IAM types: the properties the statement model does not read (see [`model_reads`]), compared whole.
    pub unjudged: BTreeMap<String, Val>,
}

/// A managed policy ARN from outside the template attached to an identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attachment {
    pub identity: String,
    pub arn: String,
    pub location: String,
}

#[derive(Debug, Default)]
pub struct Model {
    pub resources: BTreeMap<String, ResourceView>,
    pub transforms: Vec<String>,
    pub statements: Vec<Stmt>,
    pub attachments: Vec<Attachment>,
    /// Identity -> its permissions boundary (raw text; `policy ID` for one defined in the template).
    pub boundaries: BTreeMap<String, String>,
    /// Identity -> settings that widen when they grow or appear (MaxSessionDuration, a console password, groups).
    pub settings: BTreeMap<String, BTreeMap<&'static str, String>>,
    /// Identities the template defines, with their logical ids.
    pub identities: BTreeMap<String, String>,
    /// The deployment fails in this case: nothing is created.
    pub failed: Option<String>,
    /// Exported outputs (see `resolve::Resolved::exports`).
    pub exports: BTreeMap<String, Val>,
}

impl Model {
    pub fn build(
        resolved: &Resolved,
        symbols: &mut Symbols,
        budget: &mut Budget,
    ) -> Result<Model, TooComplex> {
        let mut b = Builder {
            model: Model {
                transforms: resolved.transforms.clone(),
                exports: resolved.exports.clone(),
                failed: resolved.failed.clone(),
                ..Model::default()
            },
            symbols,
            budget,
            names: BTreeMap::new(),
            boundary_of: BTreeMap::new(),
            attached_to: BTreeMap::new(),
            template_policies: resolved
                .resources
                .iter()
                .filter(|(_, r)| r.kind == "AWS::IAM::ManagedPolicy")
                .map(|(id, _)| id.clone())
                .collect(),
            chosen_attachments: BTreeMap::new(),
            context: String::new(),
            variables: false,
        };
        if resolved.failed.is_some() {
            return Ok(b.model);
        }
        b.name_identities(resolved);
        for (id, resource) in &resolved.resources {
            b.budget.spend(1)?;
            if resource.props.fails().is_some() {
                // Created only where a deploy-time choice makes it, and the deployment fails there: no grant.
                continue;
            }
            b.resource(
                id,
                resource.kind.as_str(),
                &resource.presence,
                &resource.props,
            )?;
            let attributes = attributes_of(&resource.attributes);
            if let Some(view) = b.model.resources.get_mut(id) {
                view.attributes = attributes;
            }
        }
        Ok(b.model)
    }
}

struct Builder<'a> {
    model: Model,
    symbols: &'a mut Symbols,
    budget: &'a mut Budget,
    /// Logical id -> identity key, for Refs and literal names.
    names: BTreeMap<String, String>,
    /// Template-defined managed policy logical id -> identities it bounds.
    boundary_of: BTreeMap<String, Vec<String>>,
    /// Template-defined managed policy logical id -> identities that attach it through ManagedPolicyArns.
    attached_to: BTreeMap<String, Vec<String>>,
    /// Logical ids of the template's managed policies.
    template_policies: BTreeSet<String>,
    /// Template managed policies attached (or set as a boundary) only in some deploy-time cases, with the
    /// choices that decide it.
    chosen_attachments: BTreeMap<String, Vec<String>>,
    /// The context of the resource being modelled (see [`Stmt::context`]).
    context: String,
    /// The document being read has `Version: 2012-10-17`, under which `${aws:...}` policy variables are
    /// evaluated (under 2008-10-17, the default, they are text).
    variables: bool,
}

impl Builder<'_> {
    /// Identity keys of the roles, users and groups the template defines, and the boundaries that point at
    /// template-defined managed policies (their statements are the boundary).
    fn name_identities(&mut self, resolved: &Resolved) {
        for (id, resource) in &resolved.resources {
            let (label, field) = match resource.kind.as_str() {
                "AWS::IAM::Role" => ("role", "RoleName"),
                "AWS::IAM::User" => ("user", "UserName"),
                "AWS::IAM::Group" => ("group", "GroupName"),
                _ => continue,
            };
            let key = match resource.props.get(field) {
                Some(Val::Str(name)) => format!("{label} {name}"),
                _ => format!("{label} {id}"),
            };
            self.names.insert(id.clone(), key.clone());
            self.model.identities.insert(key, id.clone());
        }
        for (id, resource) in &resolved.resources {
            let Some(identity) = self.names.get(id).cloned() else {
                continue;
            };
            if let Some(Val::Str(boundary)) = resource.props.get("PermissionsBoundary")
                && let Some(policy) = self.template_policy(boundary)
            {
                self.boundary_of
                    .entry(policy)
                    .or_default()
                    .push(identity.clone());
            }
            if let Some(arns) = resource.props.get("ManagedPolicyArns") {
                let mut texts = Vec::new();
                arns.strings(self.symbols, &mut texts);
                for arn in texts {
                    if let Some(policy) = self.template_policy(&arn) {
                        if arns.has_choice() {
                            self.chosen_attachments
                                .entry(policy.clone())
                                .or_default()
                                .push(format!("{id}.ManagedPolicyArns={}", arns.canonical()));
                        }
                        self.attached_to
                            .entry(policy)
                            .or_default()
                            .push(identity.clone());
                    }
                }
            }
        }
    }

    /// The logical id of a template-defined managed policy that `text` refers to (`Ref` or `GetAtt .PolicyArn`).
    fn template_policy(&self, text: &str) -> Option<String> {
        let mut chars = text.chars();
        let c = chars.next()?;
        if chars.next().is_some() {
            return None;
        }
        let name = self.symbols.fixed_name(c)?;
        let id = name.strip_suffix(".PolicyArn").unwrap_or(name);
        self.template_policies.contains(id).then(|| id.to_string())
    }

    /// The identity a Roles/Users/Groups entry or a RoleName/UserName/GroupName property names.
    fn identity(&self, label: &str, value: &Val) -> String {
        match value {
            Val::Str(s) => {
                let mut chars = s.chars();
                if let (Some(c), None) = (chars.next(), chars.next())
                    && let Some(name) = self.symbols.fixed_name(c)
                    && let Some(key) = self.names.get(name)
                {
                    return key.clone();
                }
                let key = format!("{label} {s}");
                if self.model.identities.contains_key(&key) {
                    key
                } else {
                    format!("{label} {s} (not created by this template)")
                }
            }
            other => format!("{label} {}", other.canonical()),
        }
    }

    fn resource(
        &mut self,
        id: &str,
        kind: &str,
        presence: &Presence,
        props: &Val,
    ) -> Result<(), TooComplex> {
        let row = row_for(kind);
        let class = row.map_or(Class::Unclassified, |r| r.class);
        let certain = *presence == Presence::Yes && !props.has_choice();
        let chosen = self.chosen_attachments.get(id).cloned().unwrap_or_default();
        self.context = super::value::digest(&[
            &format!("{presence:?}"),
            &props.canonical(),
            &chosen.join("\n"),
        ]);
        // Who holds a policy's statements can be a deploy-time choice too (`Roles: !If [...]`, a role attaching it
        // through `ManagedPolicyArns: !If [...]`): then they are not certain either.
        let holders_chosen = !chosen.is_empty()
            || ["Roles", "Users", "Groups"]
                .iter()
                .any(|f| props.get(f).is_some_and(Val::has_choice));
        let presence = &if holders_chosen && *presence == Presence::Yes {
            Presence::Maybe(format!("who holds {id}"))
        } else {
            presence.clone()
        };
        let does = match row {
            Some(r) => self.fill(r.does, props),
            None => format!(
                "{kind} is not in stacksetd's table of resource types: treated as able to do anything"
            ),
        };
        // A resource policy is judged by its statements (a narrowing goes through); the rest of the resource as a
        // whole.
        let mut compared = props.clone();
        if let Val::Map(map) = &mut compared {
            // Words for people and labels: a reworded description or a new tag grants nothing.
            for field in IGNORED_PROPERTIES {
                map.remove(*field);
            }
        }
        if let Some(field) = row.and_then(|r| r.policy)
            && let Val::Map(map) = &mut compared
            && let Some(doc) = map.remove(field)
        {
            let holder = Holder {
                scope: Scope::Resource,
                identity: format!("{id} ({kind})"),
            };
            let certain_presence = *presence == Presence::Yes;
            self.document(
                &doc,
                &format!("Resources.{id}.Properties.{field}"),
                &[holder],
                certain_presence,
            )?;
        }
        let mut unjudged = BTreeMap::new();
        if class.is_iam()
            && let Val::Map(map) = props
        {
            let reads = model_reads(kind);
            for (key, value) in map {
                if !reads.contains(&key.as_str()) && !IGNORED_PROPERTIES.contains(&key.as_str()) {
                    unjudged.insert(key.clone(), value.clone());
                }
            }
        } else if class.is_iam() {
            unjudged.insert("Properties".to_string(), props.clone());
        }
        self.model.resources.insert(
            id.to_string(),
            ResourceView {
                id: id.to_string(),
                kind: kind.to_string(),
                class,
                certain,
                props: compared.canonical(),
                does,
                attributes: BTreeMap::new(),
                unjudged,
            },
        );
        let base = format!("Resources.{id}.Properties");
        let certain_presence = *presence == Presence::Yes;
        match kind {
            "AWS::IAM::Role" | "AWS::IAM::User" | "AWS::IAM::Group" => {
                self.identity_resource(id, kind, props, &base, certain_presence)
            }
            "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" => {
                self.policy_resource(id, props, &base, certain_presence)
            }
            "AWS::IAM::RolePolicy" | "AWS::IAM::UserPolicy" | "AWS::IAM::GroupPolicy" => {
                self.inline_policy_resource(kind, props, &base, certain_presence)
            }
            _ => Ok(()),
        }
    }

    /// A role, user or group: its trust policy, inline and managed policies, boundary and session settings.
    fn identity_resource(
        &mut self,
        id: &str,
        kind: &str,
        props: &Val,
        base: &str,
        certain_presence: bool,
    ) -> Result<(), TooComplex> {
        let identity = self
            .names
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("? {id}"));
        if kind == "AWS::IAM::Role"
            && let Some(doc) = props.get("AssumeRolePolicyDocument")
        {
            let holder = Holder {
                scope: Scope::Trust,
                identity: identity.clone(),
            };
            self.document(
                doc,
                &format!("{base}.AssumeRolePolicyDocument"),
                &[holder],
                certain_presence,
            )?;
        }
        let holder = Holder {
            scope: Scope::Identity,
            identity: identity.clone(),
        };
        self.inline_policies(props, base, &holder, certain_presence)?;
        self.managed_arns(props, base, &identity)?;
        if let Some(boundary) = props.get("PermissionsBoundary") {
            let text = match boundary {
                Val::Str(s) => match self.template_policy(s) {
                    Some(policy) => format!("policy {policy} of this template"),
                    None => s.clone(),
                },
                other => other.canonical(),
            };
            self.model.boundaries.insert(identity.clone(), text);
        }
        let settings = self.model.settings.entry(identity.clone()).or_default();
        if let Some(v) = props.get("MaxSessionDuration") {
            settings.insert("MaxSessionDuration", v.canonical());
        }
        if let Some(v) = props.get("LoginProfile") {
            settings.insert("LoginProfile (console password)", v.canonical());
        }
        if let Some(v) = props.get("Groups") {
            settings.insert("Groups", v.canonical());
        }
        Ok(())
    }

    /// A policy (inline or managed) with its holders: the roles, users and groups it names, the identities that
    /// attach it, and those it bounds.
    fn policy_resource(
        &mut self,
        id: &str,
        props: &Val,
        base: &str,
        certain_presence: bool,
    ) -> Result<(), TooComplex> {
        let mut holders = Vec::new();
        for (field, label) in [("Roles", "role"), ("Users", "user"), ("Groups", "group")] {
            let mut values = Vec::new();
            match props.get(field) {
                None => {}
                Some(Val::List(items)) => values.extend(items.iter().cloned()),
                Some(other) => values.push(other.clone()),
            }
            for v in values {
                let mut texts = Vec::new();
                v.strings(self.symbols, &mut texts);
                for t in texts {
                    holders.push(Holder {
                        scope: Scope::Identity,
                        identity: self.identity(label, &Val::Str(t)),
                    });
                }
            }
        }
        if let Some(identities) = self.attached_to.get(id) {
            for identity in identities {
                let h = Holder {
                    scope: Scope::Identity,
                    identity: identity.clone(),
                };
                if !holders.contains(&h) {
                    holders.push(h);
                }
            }
        }
        if let Some(bounded) = self.boundary_of.get(id) {
            holders.extend(bounded.iter().map(|identity| Holder {
                scope: Scope::Boundary,
                identity: identity.clone(),
            }));
        }
        if let Some(doc) = props.get("PolicyDocument") {
            self.document(
                doc,
                &format!("{base}.PolicyDocument"),
                &holders,
                certain_presence,
            )?;
        }
        Ok(())
    }

    /// A RolePolicy, UserPolicy or GroupPolicy: one document held by the identity it names.
    fn inline_policy_resource(
        &mut self,
        kind: &str,
        props: &Val,
        base: &str,
        certain_presence: bool,
    ) -> Result<(), TooComplex> {
        let (field, label) = match kind {
            "AWS::IAM::RolePolicy" => ("RoleName", "role"),
            "AWS::IAM::UserPolicy" => ("UserName", "user"),
            _ => ("GroupName", "group"),
        };
        let identity = self.identity(label, props.get(field).unwrap_or(&Val::Null));
        let holder = Holder {
            scope: Scope::Identity,
            identity,
        };
        if let Some(doc) = props.get("PolicyDocument") {
            self.document(
                doc,
                &format!("{base}.PolicyDocument"),
                &[holder],
                certain_presence,
            )?;
        }
        Ok(())
    }

    /// `does` with `{Property}` placeholders filled from the resolved properties (empty when absent).
    fn fill(&self, template: &str, props: &Val) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let name = &after[..end];
            if let Some(v) = props.get(name) {
                let text = match v {
                    Val::Str(s) => self.symbols.display(s),
                    other => self.symbols.display(&other.canonical()),
                };
                let short: String = text.chars().take(160).collect();
                out.push_str(&short);
                if short.len() < text.len() {
                    out.push_str("...");
                }
            } else if !matches!(name, "Roles" | "Users" | "Groups") {
                out.push_str("(not given)");
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn inline_policies(
        &mut self,
        props: &Val,
        base: &str,
        holder: &Holder,
        certain: bool,
    ) -> Result<(), TooComplex> {
        let Some(policies) = props.get("Policies") else {
            return Ok(());
        };
        let items: Vec<(Val, bool)> = match policies {
            Val::List(items) => items.iter().map(|i| (i.clone(), certain)).collect(),
            other => flatten(other).into_iter().map(|v| (v, false)).collect(),
        };
        for (i, (policy, certain)) in items.into_iter().enumerate() {
            let loc = format!("{base}.Policies[{i}]");
            for (alt, alt_certain) in alternatives(&policy, certain) {
                if let Val::Map(keys) = &alt
                    && let Some(key) = keys
                        .keys()
                        .find(|k| !["PolicyName", "PolicyDocument"].contains(&k.as_str()))
                {
                    let why = format!(
                        "an inline policy with the key {key:?}, which CloudFormation's schema does not have"
                    );
                    self.anything(&loc, std::slice::from_ref(holder), &why, &alt, alt_certain);
                    continue;
                }
                match alt.get("PolicyDocument") {
                    Some(doc) => self.document(
                        doc,
                        &format!("{loc}.PolicyDocument"),
                        std::slice::from_ref(holder),
                        alt_certain,
                    )?,
                    None => self.anything(
                        &loc,
                        std::slice::from_ref(holder),
                        "an inline policy without a readable PolicyDocument",
                        &alt,
                        alt_certain,
                    ),
                }
            }
        }
        Ok(())
    }

    fn managed_arns(&mut self, props: &Val, base: &str, identity: &str) -> Result<(), TooComplex> {
        let Some(arns) = props.get("ManagedPolicyArns") else {
            return Ok(());
        };
        let mut texts = Vec::new();
        arns.strings(self.symbols, &mut texts);
        for (i, arn) in texts.into_iter().enumerate() {
            // A policy the template defines is judged by its statements, attached to this identity (see
            // `name_identities`); every other ARN is an opaque grant.
            if self.template_policy(&arn).is_some() {
                continue;
            }
            self.budget.spend(1)?;
            self.model.attachments.push(Attachment {
                identity: identity.to_string(),
                arn,
                location: format!("{base}.ManagedPolicyArns[{i}]"),
            });
        }
        Ok(())
    }

    /// A statement that could grant anything, for a policy stacksetd cannot read (`source`: what it could not
    /// read, so that only the very same unreadable value compares equal to it).
    fn anything(
        &mut self,
        location: &str,
        holders: &[Holder],
        why: &str,
        source: &Val,
        certain: bool,
    ) {
        let why = &format!(
            "{why} [source {}]",
            super::value::digest(&[&source.canonical()])
        );
        let any = self.symbols.any(why).to_string();
        self.model.statements.push(Stmt {
            location: location.to_string(),
            holders: holders.to_vec(),
            effect: Effect::Allow,
            // Certain when it is in force whatever the deploy-time choices: the very same unreadable value (same
            // source) is then the same grant in both versions; it still covers nothing (see `pattern`).
            certain,
            actions: vec![Item::One(any.clone())],
            resources: vec![Item::One(any.clone())],
            principals: vec![Item::One(any)],
            conditions: vec![None],
            raw: format!("anything({why})"),
            context: self.context.clone(),
        });
    }

    fn document(
        &mut self,
        doc: &Val,
        loc: &str,
        holders: &[Holder],
        certain: bool,
    ) -> Result<(), TooComplex> {
        let mut holders = holders.to_vec();
        if holders.is_empty() {
            holders.push(Holder {
                scope: Scope::Identity,
                identity: format!(
                    "policy {} (attached to nothing)",
                    loc.split('.').nth(1).unwrap_or("?")
                ),
            });
        }
        for (doc, certain) in alternatives(doc, certain) {
            // A policy written as a JSON string (CloudFormation accepts one for every policy property, and some
            // types require it, e.g. AWS::Logs::ResourcePolicy) is read as the document it is.
            let doc = match &doc {
                Val::Str(text) => {
                    self.budget.spend(text.len() as u64 * 2 + NODE)?;
                    json_document(text).unwrap_or(doc)
                }
                _ => doc,
            };
            if let Val::Map(keys) = &doc
                && let Some(key) = keys.keys().find(|k| !DOCUMENT_KEYS.contains(&k.as_str()))
            {
                self.anything(
                    loc,
                    &holders,
                    &format!("a policy document with the key {key:?}, which IAM's policy grammar does not have"),
                    &doc,
                    certain,
                );
                continue;
            }
            self.variables = matches!(doc.get("Version"), Some(Val::Str(v)) if v == "2012-10-17");
            let statements: Vec<(Val, bool)> = match doc.get("Statement") {
                Some(Val::List(items)) => items.iter().map(|s| (s.clone(), certain)).collect(),
                Some(single @ Val::Map(_)) => vec![(single.clone(), certain)],
                Some(other @ Val::OneOf { .. }) => flatten(other)
                    .into_iter()
                    .flat_map(|v| match v {
                        Val::List(items) => items,
                        single => vec![single],
                    })
                    .map(|v| (v, false))
                    .collect(),
                _ => {
                    self.anything(
                        loc,
                        &holders,
                        "a policy document without a readable Statement",
                        &doc,
                        certain,
                    );
                    continue;
                }
            };
            for (j, (statement, certain)) in statements.into_iter().enumerate() {
                let location = format!("{loc}.Statement[{j}]");
                for (alt, alt_certain) in alternatives(&statement, certain) {
                    self.budget.spend(1)?;
                    match &alt {
                        Val::Map(map) => match map.keys().find(|k| !STATEMENT_KEYS.contains(&k.as_str())) {
                            None => self.statement(map, &location, &holders, alt_certain)?,
                            Some(key) => self.anything(
                                &location,
                                &holders,
                                &format!(
                                    "a statement with the key {key:?}, which IAM's policy grammar does not have                                      (keys are case-sensitive)"
                                ),
                                &alt,
                                alt_certain,
                            ),
                        },
                        Val::Unknown(reason) => {
                            let reason = reason.clone();
                            self.anything(&location, &holders, &reason, &alt, alt_certain)
                        }
                        _ => self.anything(
                            &location,
                            &holders,
                            "a statement that is not an object",
                            &alt,
                            alt_certain,
                        ),
                    }
                }
            }
        }
        Ok(())
    }

    fn statement(
        &mut self,
        map: &BTreeMap<String, Val>,
        location: &str,
        holders: &[Holder],
        mut certain: bool,
    ) -> Result<(), TooComplex> {
        let mut without_sid = map.clone();
        without_sid.remove("Sid");
        let mut raw = Val::Map(without_sid).canonical();
        if raw.contains("${") {
            // Policy variables mean something only under Version 2012-10-17: the version is part of the grant.
            raw.push_str(if self.variables {
                " (2012-10-17)"
            } else {
                " (2008-10-17)"
            });
        }
        self.budget.spend(raw.len() as u64 * 2 + NODE)?;
        let effects: Vec<Effect> = match map.get("Effect") {
            Some(Val::Str(e)) if e == "Allow" => vec![Effect::Allow],
            Some(Val::Str(e)) if e == "Deny" => vec![Effect::Deny],
            Some(other) => {
                certain = false;
                let mut texts = Vec::new();
                other.strings(self.symbols, &mut texts);
                let mut effects = vec![Effect::Allow];
                if texts.iter().any(|t| t == "Deny") {
                    effects.push(Effect::Deny);
                }
                effects
            }
            None => {
                certain = false;
                vec![Effect::Allow]
            }
        };
        let (actions, c1) = self.items(map, "Action", "NotAction", false);
        let (resources, c2) = self.items(map, "Resource", "NotResource", true);
        let (principals, c3) = self.principals(map);
        let (conditions, c4) = self.conditions(map.get("Condition"))?;
        certain &= c1 && c2 && c3 && c4;
        for effect in effects {
            self.model.statements.push(Stmt {
                location: location.to_string(),
                holders: holders.to_vec(),
                effect,
                certain,
                actions: actions.clone(),
                resources: resources.clone(),
                principals: principals.clone(),
                conditions: conditions.clone(),
                raw: raw.clone(),
                context: self.context.clone(),
            });
        }
        Ok(())
    }

    /// Policy variables (`${aws:username}`) in a statement's values, under Version 2012-10-17: each a fixed
    /// symbol, since it is the same value for the same request in both versions (and `*` covers it), never the
    /// text it is spelled with.
    fn policy_variables(&mut self, texts: &mut [String]) {
        if !self.variables {
            return;
        }
        for t in texts.iter_mut().filter(|t| t.contains("${")) {
            let mut out = String::with_capacity(t.len());
            let mut rest = t.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    out.push_str(&rest[start..]);
                    rest = "";
                    break;
                };
                out.push(
                    self.symbols
                        .fixed(&format!("policy variable {}", &after[..end])),
                );
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *t = out;
        }
    }

    /// An Action/Resource list (or its Not- form); the bool is false when a deploy-time choice is inside.
    fn items(
        &mut self,
        map: &BTreeMap<String, Val>,
        positive: &str,
        negative: &str,
        default_star: bool,
    ) -> (Vec<Item>, bool) {
        if let Some(v) = map.get(positive) {
            let mut texts = Vec::new();
            v.strings(self.symbols, &mut texts);
            self.policy_variables(&mut texts);
            return (texts.into_iter().map(Item::One).collect(), !v.has_choice());
        }
        if let Some(v) = map.get(negative) {
            let mut texts = Vec::new();
            v.strings(self.symbols, &mut texts);
            self.policy_variables(&mut texts);
            // An exclusion list with an unknown member excludes an unknown set: it proves nothing.
            return (vec![Item::AllExcept(texts)], !v.has_choice());
        }
        if default_star {
            (vec![Item::One("*".to_string())], true)
        } else {
            (Vec::new(), true)
        }
    }

    /// `"*"`, or `{"AWS": ..., "Service": ..., "Federated": ..., "CanonicalUser": ...}`; each principal becomes
    /// `Type:value`, an AWS account id becomes its root ARN, and `{"AWS": "*"}` is anyone (`*`).
    fn principals(&mut self, map: &BTreeMap<String, Val>) -> (Vec<Item>, bool) {
        let (value, negated) = match (map.get("Principal"), map.get("NotPrincipal")) {
            (Some(v), _) => (v, false),
            (None, Some(v)) => (v, true),
            (None, None) => return (Vec::new(), true),
        };
        let mut out = Vec::new();
        let certain = !value.has_choice();
        for alt in flatten(value) {
            match alt {
                Val::Map(kinds) => {
                    for (kind, values) in kinds {
                        let mut texts = Vec::new();
                        values.strings(self.symbols, &mut texts);
                        self.policy_variables(&mut texts);
                        for t in texts {
                            out.push(normalize_principal(&kind, &t, self.symbols));
                        }
                    }
                }
                other => {
                    let mut texts = Vec::new();
                    other.strings(self.symbols, &mut texts);
                    self.policy_variables(&mut texts);
                    for t in texts {
                        out.push(if t == "*" { t } else { format!("AWS:{t}") });
                    }
                }
            }
        }
        if negated {
            (vec![Item::AllExcept(out)], certain)
        } else {
            (out.into_iter().map(Item::One).collect(), certain)
        }
    }

    fn conditions(&mut self, value: Option<&Val>) -> Result<(Vec<Option<Cond>>, bool), TooComplex> {
        let Some(value) = value else {
            return Ok((vec![None], true));
        };
        let certain = !value.has_choice();
        let Some(variants) = value.variants(MAX_VARIANTS, self.budget)? else {
            // Too many shapes to tell apart: as the candidate, the weakest (no condition at all).
            return Ok((vec![None], false));
        };
        let mut out = Vec::new();
        for v in variants {
            let cond = match v {
                Val::Absent => None,
                Val::Map(ops) if !ops.is_empty() => Some(self.cond(&ops)),
                Val::Map(_) => None,
                other => Some(Cond {
                    clauses: BTreeMap::new(),
                    opaque: Some(other.canonical()),
                }),
            };
            if !out.contains(&cond) {
                out.push(cond);
            }
        }
        Ok((out, certain))
    }

    fn cond(&mut self, ops: &BTreeMap<String, Val>) -> Cond {
        let mut cond = Cond::default();
        for (op, keys) in ops {
            let Val::Map(keys) = keys else {
                cond.opaque = Some(Val::Map(ops.clone()).canonical());
                continue;
            };
            for (key, values) in keys {
                let mut texts = Vec::new();
                values.strings(self.symbols, &mut texts);
                self.policy_variables(&mut texts);
                let clause = cond
                    .clauses
                    .entry((op.clone(), key.to_lowercase()))
                    .or_default();
                clause.key = key.clone();
                clause.values.extend(texts);
            }
        }
        cond
    }
}

/// A resource entry's attributes as the judge compares them: Metadata split by key (tool-only keys left out),
/// `DependsOn` as a sorted set of names (a list and a single name, or another order, are the same dependencies).
fn attributes_of(attributes: &BTreeMap<String, Val>) -> BTreeMap<String, Val> {
    let mut out = BTreeMap::new();
    for (key, value) in attributes {
        match (key.as_str(), value) {
            ("Metadata", Val::Map(entries)) => {
                for (k, v) in entries {
                    if !INERT_METADATA.contains(&k.as_str()) {
                        out.insert(format!("Metadata.{k}"), v.clone());
                    }
                }
            }
            ("DependsOn", Val::Str(name)) => {
                out.insert(key.clone(), Val::List(vec![Val::Str(name.clone())]));
            }
            ("DependsOn", Val::List(names)) if names.iter().all(|n| matches!(n, Val::Str(_))) => {
                let mut names = names.clone();
                names.sort_by_key(Val::canonical);
                names.dedup();
                out.insert(key.clone(), Val::List(names));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

/// The keys of IAM's policy grammar: a document, and a statement. Any other key (a lower-case `action`, a key
/// IAM may add) is not read as "nothing": the document or statement could grant anything.
const DOCUMENT_KEYS: &[&str] = &["Version", "Id", "Statement"];
const STATEMENT_KEYS: &[&str] = &[
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Principal",
    "NotPrincipal",
    "Condition",
];

/// A policy document written as a JSON string, read as plain JSON (CloudFormation evaluates no intrinsic
/// inside a string). `None` when it is not a JSON object, or when its escapes spell characters stacksetd reserves
/// for its symbols (they would pose as deploy-time values).
fn json_document(text: &str) -> Option<Val> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    if !value.is_object() {
        return None;
    }
    let reserved_in_text: BTreeSet<char> = text
        .chars()
        .filter(|c| super::value::is_reserved(*c))
        .collect();
    let mut ok = true;
    let val = plain_val(&value, &mut |s: &str| {
        ok &= s
            .chars()
            .filter(|c| super::value::is_reserved(*c))
            .all(|c| reserved_in_text.contains(&c));
    });
    ok.then_some(val)
}

fn plain_val(v: &serde_json::Value, check: &mut dyn FnMut(&str)) -> Val {
    use serde_json::Value as J;
    match v {
        J::Null => Val::Null,
        J::Bool(b) => Val::Bool(*b),
        J::Number(n) => Val::Num(n.to_string()),
        J::String(s) => {
            check(s);
            Val::Str(s.clone())
        }
        J::Array(items) => Val::List(items.iter().map(|i| plain_val(i, check)).collect()),
        J::Object(map) => Val::Map(
            map.iter()
                .map(|(k, v)| {
                    check(k);
                    (k.clone(), plain_val(v, check))
                })
                .collect(),
        ),
    }
}

/// A value's alternatives with whether each is certain (alternatives of a OneOf are not; `Absent` and failing
/// alternatives are dropped: they grant nothing).
fn alternatives(v: &Val, certain: bool) -> Vec<(Val, bool)> {
    match v {
        Val::OneOf { .. } => flatten(v).into_iter().map(|a| (a, false)).collect(),
        Val::Absent | Val::Fail(_) => Vec::new(),
        other => vec![(other.clone(), certain)],
    }
}

/// The alternatives of a (possibly nested) OneOf, flattened.
fn flatten(v: &Val) -> Vec<Val> {
    match v {
        Val::OneOf { alts, .. } => alts.iter().flat_map(|(_, a)| flatten(a)).collect(),
        Val::Absent | Val::Fail(_) => Vec::new(),
        other => vec![other.clone()],
    }
}

/// `AWS:123456789012` and `AWS:arn:aws:iam::123456789012:root` are the same principal (and so is
/// `Ref AWS::AccountId`, the account itself).
fn normalize_principal(kind: &str, value: &str, symbols: &Symbols) -> String {
    if kind == "AWS" && value == "*" {
        return "*".to_string();
    }
    let account_id = value.len() == 12 && value.chars().all(|c| c.is_ascii_digit());
    let mut chars = value.chars();
    let this_account = matches!((chars.next(), chars.next()), (Some(c), None)
        if symbols.fixed_name(c) == Some("AWS::AccountId"));
    if kind == "AWS" && (account_id || this_account) {
        return format!("AWS:arn:aws:iam::{value}:root");
    }
    format!("{kind}:{value}")
}
