//! Resolved template values: JSON with the parts CloudFormation only knows at deploy time kept symbolic.
//!
//! A deploy-time value (`${AWS::AccountId}`, `!GetAtt Role.Arn`, a parameter nobody gave a value) is *fixed but
//! unknown*: it is the same in both versions of a template deployed to the same account, so it compares equal to
//! itself and to nothing else. A value stacksetd cannot work out at all (a dynamic `{{resolve:...}}` reference, a
//! macro's output, a malformed intrinsic) *could be anything*: in a candidate it is covered only by `*`, in the
//! applied version it covers nothing. Inside strings both kinds are single characters from Unicode's
//! supplementary private-use planes (which templates may not contain), so the wildcard matcher of `pattern` works
//! on them unchanged: plane 15 for fixed symbols, plane 16 for "could be anything".

use std::collections::{BTreeMap, HashMap};

use super::budget::{Budget, NODE, TooComplex};

/// First code point of the fixed-symbol range (plane 15, U+F0000..U+FFFFD).
const SYM_BASE: u32 = 0xF0000;
const SYM_LAST: u32 = 0xFFFFD;
/// First code point of the could-be-anything range (plane 16, U+100000..U+10FFFD).
const ANY_BASE: u32 = 0x10_0000;
const ANY_LAST: u32 = 0x10_FFFD;

/// Is `c` a character stacksetd uses for a symbol (and a template may therefore not contain)?
pub fn is_reserved(c: char) -> bool {
    (SYM_BASE..=ANY_LAST).contains(&(c as u32))
}

/// A fixed symbol: matches itself, and `*` in an outer pattern.
pub fn is_symbol(c: char) -> bool {
    (SYM_BASE..=SYM_LAST).contains(&(c as u32))
}

/// A could-be-anything marker.
pub fn is_any(c: char) -> bool {
    (ANY_BASE..=ANY_LAST).contains(&(c as u32))
}

/// The names behind the symbol characters of one judgment (both versions share one table, so the same
/// deploy-time value is the same character in each).
#[derive(Debug, Default)]
pub struct Symbols {
    fixed: Vec<String>,
    fixed_ids: HashMap<String, char>,
    /// The characters a fixed symbol's value is known to be made of (ASCII bitset), when known: an account id is
    /// digits, a Region letters, digits and hyphens. Splitting text on a character none of its symbols can
    /// contain is exact.
    alphabets: HashMap<char, u128>,
    any: Vec<String>,
    any_ids: HashMap<String, char>,
}

impl Symbols {
    /// The character for a fixed deploy-time value, e.g. `AWS::AccountId` or `Role.Arn`.
    pub fn fixed(&mut self, name: &str) -> char {
        if let Some(c) = self.fixed_ids.get(name) {
            return *c;
        }
        let code = SYM_BASE + self.fixed.len() as u32;
        if code > SYM_LAST {
            // Out of symbols: the value is no longer provably equal to itself.
            return self.any(&format!(
                "{name} (too many distinct deploy-time values to track)"
            ));
        }
        let c = char::from_u32(code).expect("plane 15 is valid");
        self.fixed.push(name.to_string());
        self.fixed_ids.insert(name.to_string(), c);
        c
    }

    /// The character for a value that could be anything, with why.
    pub fn any(&mut self, reason: &str) -> char {
        if let Some(c) = self.any_ids.get(reason) {
            return *c;
        }
        let code = ANY_BASE + (self.any.len() as u32).min(ANY_LAST - ANY_BASE);
        let c = char::from_u32(code).expect("plane 16 is valid");
        if self.any.len() as u32 <= ANY_LAST - ANY_BASE {
            self.any.push(reason.to_string());
            self.any_ids.insert(reason.to_string(), c);
        }
        c
    }

    /// Record what `c`'s value can be made of.
    pub fn set_alphabet(&mut self, c: char, alphabet: u128) {
        self.alphabets.insert(c, alphabet);
    }

    /// The ASCII characters `c`'s value can contain, when known (`None`: anything).
    pub fn alphabet(&self, c: char) -> Option<u128> {
        self.alphabets.get(&c).copied()
    }

    /// The fixed symbol's name, when `c` is one.
    pub fn fixed_name(&self, c: char) -> Option<&str> {
        is_symbol(c)
            .then(|| self.fixed.get((c as u32 - SYM_BASE) as usize))
            .flatten()
            .map(String::as_str)
    }

    /// `text` for people: symbols as `${name}`, unknowns as `<could be anything: reason>`.
    pub fn display(&self, text: &str) -> String {
        if !text.chars().any(is_reserved) {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            if is_symbol(c) {
                out.push_str("${");
                out.push_str(self.fixed_name(c).unwrap_or("?"));
                out.push('}');
            } else if is_any(c) {
                let reason = self
                    .any
                    .get((c as u32 - ANY_BASE) as usize)
                    .map_or("?", String::as_str);
                out.push_str("<could be anything: ");
                out.push_str(reason);
                out.push('>');
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// A short digest of `parts`, to identify a value stacksetd cannot work out by where it comes from.
pub fn digest(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..6])
}

/// An ASCII bitset of the characters in `chars`, plus ASCII letters (`letters`), digits (`digits`).
pub fn ascii_set(chars: &str, letters: bool, digits: bool) -> u128 {
    let mut set = 0u128;
    for c in chars.chars().filter(char::is_ascii) {
        set |= 1 << (c as u32);
    }
    for c in 0u8..128 {
        let c = c as char;
        if (letters && c.is_ascii_alphabetic()) || (digits && c.is_ascii_digit()) {
            set |= 1 << (c as u32);
        }
    }
    set
}

/// A template value after intrinsic functions were resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    /// Numbers keep their text: CloudFormation passes them on as written.
    Num(String),
    /// Text, possibly with symbol characters.
    Str(String),
    List(Vec<Val>),
    Map(BTreeMap<String, Val>),
    /// One of several values, chosen at deploy time by `selector` (a condition that depends on the Region, a
    /// mapping keyed by the account, ...). Two OneOfs with the same selector choose the same alternative.
    OneOf {
        selector: String,
        alts: Vec<(String, Val)>,
    },
    /// `AWS::NoValue`: the property or list element is left out.
    Absent,
    /// Could be anything (a whole value, not a piece of text), with why.
    Unknown(String),
    /// CloudFormation fails the deployment here (a mapping lookup that misses): nothing is created.
    Fail(String),
}

impl Val {
    pub fn get(&self, key: &str) -> Option<&Val> {
        match self {
            Val::Map(m) => m.get(key),
            _ => None,
        }
    }

    /// No symbol, no alternative, nothing unknown: a plain JSON value.
    pub fn is_concrete(&self) -> bool {
        match self {
            Val::Null | Val::Bool(_) | Val::Num(_) => true,
            Val::Str(s) => !s.chars().any(is_reserved),
            Val::List(items) => items.iter().all(Val::is_concrete),
            Val::Map(m) => m.values().all(Val::is_concrete),
            Val::OneOf { .. } | Val::Absent | Val::Unknown(_) | Val::Fail(_) => false,
        }
    }

    /// Canonical text: equal values (whatever their source spelling or key order) give equal text.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        self.write_canonical(&mut out);
        out
    }

    fn write_canonical(&self, out: &mut String) {
        match self {
            Val::Null => out.push_str("null"),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Val::Num(n) => out.push_str(n),
            Val::Str(s) => {
                out.push_str(&serde_json::Value::String(s.clone()).to_string());
            }
            Val::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_canonical(out);
                }
                out.push(']');
            }
            Val::Map(m) => {
                out.push('{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    v.write_canonical(out);
                }
                out.push('}');
            }
            Val::OneOf { selector, alts } => {
                out.push_str("oneof(");
                out.push_str(selector);
                for (label, v) in alts {
                    out.push('|');
                    out.push_str(label);
                    out.push('=');
                    v.write_canonical(out);
                }
                out.push(')');
            }
            Val::Absent => out.push_str("novalue"),
            Val::Unknown(reason) => {
                out.push_str("unknown(");
                out.push_str(reason);
                out.push(')');
            }
            Val::Fail(reason) => {
                out.push_str("fail(");
                out.push_str(reason);
                out.push(')');
            }
        }
    }

    /// Every concrete shape this value can take (alternatives expanded, `Absent` kept as an alternative at the
    /// top), at most `limit` of them; `None` when there would be more. Used where one concrete value is needed
    /// per alternative (an Effect, a Condition block).
    pub fn variants(
        &self,
        limit: usize,
        budget: &mut Budget,
    ) -> Result<Option<Vec<Val>>, TooComplex> {
        budget.spend(NODE)?;
        let out = match self {
            Val::OneOf { alts, .. } => {
                let mut out = Vec::new();
                for (_, alt) in alts {
                    let Some(vs) = alt.variants(limit, budget)? else {
                        return Ok(None);
                    };
                    out.extend(vs);
                    if out.len() > limit {
                        return Ok(None);
                    }
                }
                out
            }
            Val::List(items) => {
                let parts = items.iter().map(|item| ((), item));
                let Some(all) = product(parts, limit, budget, Vec::len, |p, (), v| p.push(v))?
                else {
                    return Ok(None);
                };
                all.into_iter().map(Val::List).collect()
            }
            Val::Map(m) => {
                let parts = m.iter().map(|(k, item)| (k.clone(), item));
                let Some(all) = product(parts, limit, budget, BTreeMap::len, |p, k, v| {
                    p.insert(k, v);
                })?
                else {
                    return Ok(None);
                };
                all.into_iter().map(Val::Map).collect()
            }
            other => vec![other.clone()],
        };
        Ok(Some(out))
    }

    /// The plain strings a value can stand for, alternatives flattened (for Action, Resource and Principal
    /// lists, where the union of alternatives is what may be granted). Anything that is not text becomes a
    /// could-be-anything marker.
    pub fn strings(&self, symbols: &mut Symbols, out: &mut Vec<String>) {
        match self {
            Val::Str(s) | Val::Num(s) => out.push(s.clone()),
            Val::Bool(b) => out.push(b.to_string()),
            Val::List(items) => {
                for item in items {
                    item.strings(symbols, out);
                }
            }
            Val::OneOf { alts, .. } => {
                for (_, alt) in alts {
                    alt.strings(symbols, out);
                }
            }
            Val::Absent | Val::Fail(_) => {}
            Val::Unknown(reason) => out.push(symbols.any(reason).to_string()),
            Val::Null => out.push(symbols.any("null where text was expected").to_string()),
            Val::Map(_) => {
                let why = format!(
                    "an object where text was expected [source {}]",
                    digest(&[&self.canonical()])
                );
                out.push(symbols.any(&why).to_string())
            }
        }
    }

    /// Does a deploy-time choice remain anywhere inside?
    pub fn has_choice(&self) -> bool {
        match self {
            Val::OneOf { .. } => true,
            Val::List(items) => items.iter().any(Val::has_choice),
            Val::Map(m) => m.values().any(Val::has_choice),
            _ => false,
        }
    }

    /// Does the deployment fail somewhere inside this value?
    pub fn fails(&self) -> Option<&str> {
        match self {
            Val::Fail(reason) => Some(reason),
            Val::List(items) => items.iter().find_map(Val::fails),
            Val::Map(m) => m.values().find_map(Val::fails),
            _ => None,
        }
    }
}

/// The combinations of the parts' variants (a list's items, a map's entries), each built onto a clone of its
/// prefix by `add`; a part that is `Absent` is left out of its combinations. `None` past `limit`; every node
/// built is charged to `budget`.
fn product<'a, C: Clone + Default, K: Clone>(
    parts: impl Iterator<Item = (K, &'a Val)>,
    limit: usize,
    budget: &mut Budget,
    len: impl Fn(&C) -> usize,
    add: impl Fn(&mut C, K, Val),
) -> Result<Option<Vec<C>>, TooComplex> {
    let mut acc: Vec<C> = vec![C::default()];
    for (key, item) in parts {
        let Some(vs) = item.variants(limit, budget)? else {
            return Ok(None);
        };
        if acc.len() * vs.len() > limit {
            return Ok(None);
        }
        let mut next = Vec::with_capacity(acc.len() * vs.len());
        for prefix in &acc {
            for v in &vs {
                budget.spend((len(prefix) as u64 + 1) * NODE)?;
                let mut p = prefix.clone();
                if *v != Val::Absent {
                    add(&mut p, key.clone(), v.clone());
                }
                next.push(p);
            }
        }
        acc = next;
    }
    Ok(Some(acc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_stable_and_displayed_by_name() {
        let mut s = Symbols::default();
        let a = s.fixed("AWS::AccountId");
        assert_eq!(s.fixed("AWS::AccountId"), a);
        let b = s.fixed("Role.Arn");
        assert_ne!(a, b);
        let x = s.any("dynamic reference {{resolve:ssm:p}}");
        let text = format!("arn:aws:iam::{a}:role/{b}{x}");
        assert_eq!(
            s.display(&text),
            "arn:aws:iam::${AWS::AccountId}:role/${Role.Arn}<could be anything: dynamic reference {{resolve:ssm:p}}>"
        );
        assert!(is_symbol(a) && !is_any(a) && is_any(x));
    }

    #[test]
    fn variants_expand_choices_and_drop_absent_members() {
        let mut budget = Budget::new(10_000);
        let v = Val::Map(BTreeMap::from([
            ("A".to_string(), Val::Str("x".into())),
            (
                "B".to_string(),
                Val::OneOf {
                    selector: "c".into(),
                    alts: vec![
                        ("true".into(), Val::Str("y".into())),
                        ("false".into(), Val::Absent),
                    ],
                },
            ),
        ]));
        let vs = v.variants(8, &mut budget).unwrap().unwrap();
        assert_eq!(vs.len(), 2);
        assert_eq!(vs[1].canonical(), r#"{"A":"x"}"#);
        assert!(v.variants(1, &mut budget).unwrap().is_none());
    }
}
