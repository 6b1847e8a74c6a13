//! Values of a policy statement (actions, resources, principals) and the "covers" relation between them.
//!
//! The whole guard rests on one question: does everything the candidate grants fall inside what the applied
//! template already granted? That question is asked here, one value at a time. Every answer errs on the side of
//! "not covered": a false "widening" only costs an operator a look, a false "covered" lets a broader grant
//! through unreviewed.

use serde_json::Value;

/// One element of an Action, Resource, Principal or ManagedPolicyArns list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Term {
    /// A plain string, possibly with IAM wildcards (`*`, `?`).
    Literal(String),
    /// A CloudFormation intrinsic (Ref, Fn::Sub, Fn::Join, Fn::If, ...) rendered as canonical JSON text. Its value
    /// is only known at deploy time, so it is compared structurally: equal text, or covered by a bare `*`.
    Intrinsic(String),
}

impl Term {
    /// Reads one list element: strings stay literal, anything else is an intrinsic compared by its JSON text.
    pub fn from_json(value: &Value) -> Term {
        match value {
            Value::String(s) => Term::Literal(s.clone()),
            other => Term::Intrinsic(canonical_json(other)),
        }
    }

    /// The text shown to operators (the original spelling, not the normalized one).
    pub fn display(&self) -> &str {
        match self {
            Term::Literal(s) | Term::Intrinsic(s) => s,
        }
    }

    pub fn is_wildcard(&self) -> bool {
        matches!(self, Term::Literal(s) if s.contains(['*', '?']))
    }
}

/// How values of a given field compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// IAM action names are case-insensitive (`EC2:describeInstances` is `ec2:DescribeInstances`).
    Action,
    /// ARNs are case-sensitive; wildcards apply.
    Resource,
    /// Principals allow no partial wildcards: a principal is covered only by itself or by `*`.
    Principal,
}

impl Kind {
    /// The comparison key of a term: lowercase for actions, unchanged otherwise.
    pub fn key(self, term: &Term) -> String {
        match (self, term) {
            (Kind::Action, Term::Literal(s)) => s.to_lowercase(),
            (_, t) => t.display().to_string(),
        }
    }
}

/// One element of a statement's Action (or Resource, Principal) after NotAction (NotResource, NotPrincipal) is
/// taken into account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    One(Term),
    /// `NotAction: [a, b]` with Allow grants every action except a and b: a near-total grant, never narrower
    /// than an explicit list unless the exclusions prove it.
    AllExcept(Vec<Term>),
}

impl Item {
    /// Display text; an exclusion list reads `NotAction(a, b)` (or NotResource, NotPrincipal).
    pub fn display(&self, kind: Kind) -> String {
        match self {
            Item::One(t) => t.display().to_string(),
            Item::AllExcept(terms) => {
                let mut names: Vec<&str> = terms.iter().map(Term::display).collect();
                names.sort_unstable();
                let field = match kind {
                    Kind::Action => "NotAction",
                    Kind::Resource => "NotResource",
                    Kind::Principal => "NotPrincipal",
                };
                format!("{field}({})", names.join(", "))
            }
        }
    }

    /// Comparison key, so that case and order differences alone never count as a change.
    pub fn key(&self, kind: Kind) -> String {
        match self {
            Item::One(t) => kind.key(t),
            Item::AllExcept(terms) => {
                let mut keys: Vec<String> = terms.iter().map(|t| kind.key(t)).collect();
                keys.sort_unstable();
                keys.dedup();
                format!("not({})", keys.join(","))
            }
        }
    }
}

/// Does `outer` grant everything `inner` grants?
pub fn item_covers(kind: Kind, outer: &Item, inner: &Item) -> bool {
    match (outer, inner) {
        (Item::One(p), Item::One(q)) => term_covers(kind, p, q),
        (Item::One(p), Item::AllExcept(_)) => is_star(p),
        // "everything except E" covers q only when q provably matches nothing in E.
        (Item::AllExcept(excluded), Item::One(q)) => excluded.iter().all(|e| disjoint(kind, e, q)),
        // The inner grant must exclude at least what the outer one excluded.
        (Item::AllExcept(outer_ex), Item::AllExcept(inner_ex)) => outer_ex
            .iter()
            .all(|e| inner_ex.iter().any(|f| term_covers(kind, f, e))),
    }
}

fn is_star(term: &Term) -> bool {
    matches!(term, Term::Literal(s) if s == "*")
}

/// Does pattern `outer` match every value that `inner` can stand for?
pub fn term_covers(kind: Kind, outer: &Term, inner: &Term) -> bool {
    if is_star(outer) {
        return true;
    }
    match (outer, inner) {
        (Term::Literal(p), Term::Literal(q)) => match kind {
            Kind::Action => glob_covers(&p.to_lowercase(), &q.to_lowercase()),
            Kind::Resource => glob_covers(p, q),
            Kind::Principal => p == q,
        },
        (Term::Intrinsic(p), Term::Intrinsic(q)) => p == q,
        _ => false,
    }
}

/// Language inclusion for IAM wildcard patterns: true when every string matched by `inner` is matched by
/// `outer`. `outer`'s `*` may absorb any run of `inner`'s characters, wildcards included; its `?` absorbs one
/// character or `?`; a literal matches only itself. Sound (never claims coverage that does not hold), and exact
/// for the patterns policies actually use.
pub fn glob_covers(outer: &str, inner: &str) -> bool {
    // Most terms have no wildcard: equality, without the quadratic table (a template's long literals compared
    // with themselves would otherwise cost length squared).
    if outer == inner {
        return true;
    }
    if !outer.contains(['*', '?']) {
        return false;
    }
    let p: Vec<char> = outer.chars().collect();
    let q: Vec<char> = inner.chars().collect();
    // reach[j]: outer's first i tokens can absorb inner's first j tokens.
    let mut reach = vec![false; q.len() + 1];
    reach[0] = true;
    for &pc in &p {
        let mut next = vec![false; q.len() + 1];
        for j in 0..=q.len() {
            next[j] = match pc {
                '*' => reach[j] || (j > 0 && next[j - 1]),
                '?' => j > 0 && reach[j - 1] && q[j - 1] != '*',
                c => j > 0 && reach[j - 1] && q[j - 1] == c,
            };
        }
        reach = next;
    }
    reach[q.len()]
}

/// Can no value match both patterns? Proven only when their literal prefixes (before the first wildcard) diverge;
/// anything else is treated as overlapping.
fn disjoint(kind: Kind, a: &Term, b: &Term) -> bool {
    let (Term::Literal(a), Term::Literal(b)) = (a, b) else {
        return false;
    };
    let norm = |s: &str| match kind {
        Kind::Action => s.to_lowercase(),
        _ => s.to_string(),
    };
    let (a, b) = (norm(a), norm(b));
    let prefix = |s: &str| s.split(['*', '?']).next().unwrap_or("").to_string();
    let (pa, pb) = (prefix(&a), prefix(&b));
    let a_exact = !a.contains(['*', '?']);
    let b_exact = !b.contains(['*', '?']);
    match (a_exact, b_exact) {
        (true, true) => a != b,
        (true, false) => !a.starts_with(&pb),
        (false, true) => !b.starts_with(&pa),
        (false, false) => !pa.starts_with(&pb) && !pb.starts_with(&pa),
    }
}

/// JSON text with object keys sorted at every level, so two structurally equal values render identically
/// whatever their key order in the source.
pub fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let body: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical_json(v)))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => {
            let body: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", body.join(","))
        }
        scalar => scalar.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_inclusion() {
        assert!(glob_covers("ec2:describe*", "ec2:describeinstances"));
        assert!(glob_covers("ec2:*", "ec2:describe*"));
        assert!(!glob_covers("ec2:describe*", "ec2:*"));
        assert!(glob_covers("*", "anything*"));
        assert!(!glob_covers("arn:aws:s3:::bucket/*", "*"));
        assert!(glob_covers("a?c", "abc"));
        assert!(!glob_covers("a?c", "a*c"));
        assert!(glob_covers(
            "support:describetrustedadvisor*",
            "support:describetrustedadvisorcheck*"
        ));
        assert!(!glob_covers("s3:get*", "s3:put*"));
    }

    #[test]
    fn exclusions() {
        let lit = |s: &str| Term::Literal(s.to_string());
        let all_but_iam = Item::AllExcept(vec![lit("iam:*")]);
        assert!(item_covers(
            Kind::Action,
            &all_but_iam,
            &Item::One(lit("ec2:StopInstances"))
        ));
        assert!(!item_covers(
            Kind::Action,
            &all_but_iam,
            &Item::One(lit("IAM:PassRole"))
        ));
        assert!(!item_covers(
            Kind::Action,
            &all_but_iam,
            &Item::One(lit("*"))
        ));
        let all_but_two = Item::AllExcept(vec![lit("iam:*"), lit("s3:*")]);
        assert!(item_covers(Kind::Action, &all_but_iam, &all_but_two));
        assert!(!item_covers(Kind::Action, &all_but_two, &all_but_iam));
    }

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: Value = serde_json::json!({"Fn::Sub": ["${A}", {"A": 1, "B": 2}]});
        let b: Value = serde_json::from_str(r#"{"Fn::Sub": ["${A}", {"B": 2, "A": 1}]}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }
}
