//! Values of a policy statement (actions, resources, principals) and the "covers" relation between them.
//!
//! The whole guard rests on one question: does everything the candidate grants fall inside what the applied
//! version already granted? It is asked here, one value at a time, and every answer errs on the side of "not
//! covered": a false "widening" costs an operator a look, a false "covered" lets a broader grant through.
//!
//! Values are resolved text (see `value`): a fixed deploy-time symbol is one character that only `*` or the
//! same symbol covers; a could-be-anything marker in an inner value behaves like `*` (only `*` covers it) and in
//! an outer value covers nothing.

use super::value::{is_any, is_symbol};

/// One element of an Action, Resource or Principal list after NotAction (NotResource, NotPrincipal) is taken
/// into account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Item {
    One(String),
    /// `NotAction: [a, b]` with Allow grants every action except a and b: a near-total grant, never narrower than
    /// an explicit list unless the exclusions prove it.
    AllExcept(Vec<String>),
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
    /// The comparison key of a value: lowercase for actions, unchanged otherwise.
    pub fn key(self, s: &str) -> String {
        match self {
            Kind::Action => s.to_lowercase(),
            _ => s.to_string(),
        }
    }

    pub fn field(self, negated: bool) -> &'static str {
        match (self, negated) {
            (Kind::Action, false) => "Action",
            (Kind::Action, true) => "NotAction",
            (Kind::Resource, false) => "Resource",
            (Kind::Resource, true) => "NotResource",
            (Kind::Principal, false) => "Principal",
            (Kind::Principal, true) => "NotPrincipal",
        }
    }
}

impl Item {
    /// Raw text (symbols undecoded); an exclusion list reads `NotAction(a, b)`.
    pub fn text(&self, kind: Kind) -> String {
        match self {
            Item::One(t) => t.clone(),
            Item::AllExcept(terms) => {
                let mut names: Vec<&str> = terms.iter().map(String::as_str).collect();
                names.sort_unstable();
                format!("{}({})", kind.field(true), names.join(", "))
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

/// Does `outer` grant everything `inner` grants? `steps` counts the comparison work (for the budget).
pub fn item_covers(kind: Kind, outer: &Item, inner: &Item, steps: &mut u64) -> bool {
    match (outer, inner) {
        (Item::One(p), Item::One(q)) => term_covers(kind, p, q, steps),
        (Item::One(p), Item::AllExcept(_)) => p == "*",
        // "everything except E" covers q only when q provably matches nothing in E.
        (Item::AllExcept(excluded), Item::One(q)) => excluded.iter().all(|e| disjoint(kind, e, q)),
        // The inner grant must exclude at least what the outer one excluded.
        (Item::AllExcept(outer_ex), Item::AllExcept(inner_ex)) => outer_ex
            .iter()
            .all(|e| inner_ex.iter().any(|f| term_covers(kind, f, e, steps))),
    }
}

/// Does pattern `outer` match every value that `inner` can stand for?
pub fn term_covers(kind: Kind, outer: &str, inner: &str, steps: &mut u64) -> bool {
    if outer == "*" {
        return true;
    }
    match kind {
        Kind::Action => {
            if outer.eq_ignore_ascii_case(inner) && !inner.chars().any(is_any) {
                return true;
            }
            glob_covers(&outer.to_lowercase(), &inner.to_lowercase(), steps)
        }
        Kind::Resource => glob_covers(outer, inner, steps),
        // A principal allows no partial wildcards; an unknown value is covered only by `*` (above).
        Kind::Principal => outer == inner && !inner.chars().any(is_any),
    }
}

/// Language inclusion for IAM wildcard patterns: true when every string matched by `inner` is matched by
/// `outer`. `outer`'s `*` may absorb any run of `inner`'s characters, wildcards included; its `?` absorbs one
/// plain character or `?`; a literal matches only itself. In `inner`, a could-be-anything marker is a `*`; a
/// fixed symbol is matched by itself or absorbed by `*`. Sound (never claims coverage that does not hold), and
/// exact for the patterns policies actually use.
pub fn glob_covers(outer: &str, inner: &str, steps: &mut u64) -> bool {
    let inner_has_any = inner.chars().any(is_any);
    // Most values have no wildcard: equality, without the quadratic table.
    if outer == inner && !inner_has_any {
        return true;
    }
    if !outer.contains(['*', '?']) {
        return false;
    }
    // Necessary conditions, cheap: outer's literal prefix and suffix appear literally in inner (a literal
    // character of outer absorbs only the same plain character).
    let first = outer.find(['*', '?']).unwrap_or(outer.len());
    let last = outer.rfind(['*', '?']).map_or(0, |i| i + 1);
    if !inner.starts_with(&outer[..first]) || !inner.ends_with(&outer[last..]) {
        return false;
    }
    let p: Vec<char> = outer.chars().collect();
    let q: Vec<char> = inner.chars().collect();
    // A table cell is a few instructions: four to a work unit.
    *steps += (p.len() as u64 + 1) * (q.len() as u64 + 1) / 4;
    let star_like = |c: char| c == '*' || is_any(c);
    // reach[j]: outer's first i tokens can absorb inner's first j tokens.
    let mut reach = vec![false; q.len() + 1];
    let mut next = vec![false; q.len() + 1];
    reach[0] = true;
    for &pc in &p {
        for j in 0..=q.len() {
            next[j] = match pc {
                '*' => reach[j] || (j > 0 && next[j - 1]),
                '?' => j > 0 && reach[j - 1] && !star_like(q[j - 1]) && !is_symbol(q[j - 1]),
                c => j > 0 && reach[j - 1] && q[j - 1] == c && !is_any(c),
            };
        }
        std::mem::swap(&mut reach, &mut next);
    }
    reach[q.len()]
}

/// Can no value match both patterns? Proven only when their literal prefixes (before the first wildcard or
/// symbol) diverge; anything else is treated as overlapping.
fn disjoint(kind: Kind, a: &str, b: &str) -> bool {
    let norm = |s: &str| kind.key(s);
    let (a, b) = (norm(a), norm(b));
    let special = |c: char| c == '*' || c == '?' || is_any(c) || is_symbol(c);
    let prefix = |s: &str| s.split(special).next().unwrap_or("").to_string();
    let (pa, pb) = (prefix(&a), prefix(&b));
    let a_exact = !a.contains(special);
    let b_exact = !b.contains(special);
    match (a_exact, b_exact) {
        (true, true) => a != b,
        (true, false) => !a.starts_with(&pb),
        (false, true) => !b.starts_with(&pa),
        (false, false) => !pa.starts_with(&pb) && !pb.starts_with(&pa),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::value::Symbols;

    fn covers(outer: &str, inner: &str) -> bool {
        glob_covers(outer, inner, &mut 0)
    }

    #[test]
    fn glob_inclusion() {
        assert!(covers("ec2:describe*", "ec2:describeinstances"));
        assert!(covers("ec2:*", "ec2:describe*"));
        assert!(!covers("ec2:describe*", "ec2:*"));
        assert!(covers("*", "anything*"));
        assert!(!covers("arn:aws:s3:::bucket/*", "*"));
        assert!(covers("a?c", "abc"));
        assert!(!covers("a?c", "a*c"));
        assert!(covers(
            "support:describetrustedadvisor*",
            "support:describetrustedadvisorcheck*"
        ));
        assert!(!covers("s3:get*", "s3:put*"));
    }

    #[test]
    fn symbols_and_unknowns() {
        let mut s = Symbols::default();
        let account = s.fixed("AWS::AccountId");
        let other = s.fixed("Other.Arn");
        let any = s.any("dynamic reference");
        let arn = format!("arn:aws:iam::{account}:root");
        assert!(covers(&arn, &arn), "a symbol covers itself");
        assert!(covers("arn:aws:iam::*:root", &arn));
        assert!(
            !covers("arn:aws:iam::?:root", &arn),
            "? is one character; a symbol is a value"
        );
        assert!(!covers(&arn, &format!("arn:aws:iam::{other}:root")));
        let unknown = format!("arn:aws:iam::{any}:root");
        assert!(
            !covers(&unknown, &unknown),
            "could-be-anything covers nothing, itself included"
        );
        assert!(covers("arn:aws:iam::*:root", &unknown));
        assert!(!covers("arn:aws:iam::1*:root", &unknown));
        assert!(term_covers(Kind::Principal, "*", &unknown, &mut 0));
        assert!(!term_covers(Kind::Principal, &unknown, &unknown, &mut 0));
    }

    #[test]
    fn exclusions() {
        let one = |s: &str| Item::One(s.to_string());
        let all_but_iam = Item::AllExcept(vec!["iam:*".into()]);
        let mut n = 0;
        assert!(item_covers(
            Kind::Action,
            &all_but_iam,
            &one("ec2:StopInstances"),
            &mut n
        ));
        assert!(!item_covers(
            Kind::Action,
            &all_but_iam,
            &one("IAM:PassRole"),
            &mut n
        ));
        assert!(!item_covers(Kind::Action, &all_but_iam, &one("*"), &mut n));
        let all_but_two = Item::AllExcept(vec!["iam:*".into(), "s3:*".into()]);
        assert!(item_covers(
            Kind::Action,
            &all_but_iam,
            &all_but_two,
            &mut n
        ));
        assert!(!item_covers(
            Kind::Action,
            &all_but_two,
            &all_but_iam,
            &mut n
        ));
    }
}
