//! A YAML template read the way CloudFormation reads it: YAML 1.1 scalars, short-form intrinsic tags, and a
//! refusal, with the line, for every scalar whose reading CloudFormation's parser and stacksetd's could disagree on.
//!
//! Why not serde_norway: it implements YAML 1.2, where unquoted `yes`, `no`, `on` and `off` are text. CloudFormation
//! (like cfn-lint's decoder, the reference the differential test holds this reader to) reads YAML 1.1, where they
//! are booleans. A template whose condition compares a parameter with `yes` would be evaluated one way by the guard
//! and the other by CloudFormation, and the guard would judge the branch that is never deployed.
//!
//! The rules, for a plain (unquoted, untagged) scalar:
//! - read as CloudFormation reads it: `~`, `null`, `Null`, `NULL` and the empty value are null; `true`, `yes`,
//!   `on` (and `false`, `no`, `off`, each in lower, Title and UPPER case) are booleans; decimal integers
//!   (`-?(0|[1-9][0-9]*)`) and decimal fractions (`-?[0-9]+.[0-9]*`, optionally with `e+N`/`e-N`) are numbers; a
//!   calendar date (`2012-10-17`) is the text it is written as, which is what CloudFormation passes on;
//! - refused, with "quote it": the forms YAML 1.1 gives another value than its text suggests (`0755` is octal 493,
//!   `0x1F`, `0b101`, `1_000`, `+12`, `1:30` is 90, `.inf`, `.nan`), every other timestamp, `=`, a number too large
//!   for 64 bits, and a mapping key YAML 1.1 reads as a boolean, a null, a fraction or a date;
//! - everything else is text (`1e3` and `0o755` are text in YAML 1.1, as cfn-lint reads them).
//!
//! Quoted and block scalars are always text. `!Name value` is `{"Fn::Name": value}` (`!Ref` and `!Condition` keep
//! their name) with the value never converted (`!Ref 123` names "123"); `!GetAtt a.b.c` is `["a", "b.c"]`; `!!str`
//! is text; any other `!!` or global tag, a bare `!`, a second document, an alias of nothing, a merge key (`<<`) and
//! a key given twice are refused. Nesting is bounded ([`MAX_NESTING`]), and aliases are counted as they would
//! expand, so an alias bomb is refused before it is built.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Number, Value};

use super::libyaml::{Event, Mark, Parser};

/// The deepest nesting of mappings and sequences a template may have. Real templates nest a dozen levels.
pub const MAX_NESTING: usize = 100;

/// One open collection.
enum Frame {
    Sequence {
        items: Vec<Value>,
        anchor: Option<Vec<u8>>,
        tag: Option<String>,
        start: u64,
    },
    Mapping {
        map: Map<String, Value>,
        /// The key read, waiting for its value.
        key: Option<String>,
        keys: HashSet<String>,
        anchor: Option<Vec<u8>>,
        tag: Option<String>,
        start: u64,
    },
}

/// Read a YAML template into JSON as CloudFormation would, or refuse it naming the line. `limit` is the most nodes
/// it may expand to, aliases followed.
pub fn read(text: &str, limit: u64) -> Result<Value, String> {
    let mut parser = Parser::new(text);
    let mut frames: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<Vec<u8>, (Value, u64)> = HashMap::new();
    let mut expanded: u64 = 0;
    let mut documents = 0usize;
    let mut root: Option<Value> = None;
    loop {
        let (event, mark) = parser.next()?;
        let at = |what: String| refuse(mark, what);
        // A node completed by this event: its value, its anchor and its weight in expanded nodes.
        let done: Option<(Value, Option<Vec<u8>>, u64)> = match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(at(
                        "a second YAML document (---): CloudFormation reads one; remove the rest"
                            .into(),
                    ));
                }
                None
            }
            Event::Alias(ref anchor) => {
                let Some((value, weight)) = anchors.get(anchor) else {
                    return Err(at("an alias of an anchor that is not defined".into()));
                };
                if expecting_key(&frames) {
                    return Err(at(
                        "an alias used as a mapping key; write the key out".into()
                    ));
                }
                expanded = expanded.saturating_add(*weight);
                if expanded > limit {
                    return Err(bomb(mark, limit));
                }
                Some((value.clone(), None, 0))
            }
            Event::Scalar {
                value,
                plain,
                anchor,
                tag,
            } => {
                expanded = expanded.saturating_add(1);
                let is_key = expecting_key(&frames);
                let v = scalar(value, plain, tag.as_deref(), is_key)
                    .map_err(|what| refuse(mark, what))?;
                Some((v, anchor, 1))
            }
            Event::SequenceStart {
                ref anchor,
                ref tag,
            }
            | Event::MappingStart {
                ref anchor,
                ref tag,
            } => {
                if expecting_key(&frames) {
                    return Err(at("a collection used as a mapping key".into()));
                }
                if frames.len() >= MAX_NESTING {
                    return Err(at(format!(
                        "nested more than {MAX_NESTING} levels deep: no template needs that; flatten it"
                    )));
                }
                let tag = collection_tag(tag.as_deref()).map_err(|what| refuse(mark, what))?;
                let sequence = matches!(event, Event::SequenceStart { .. });
                let anchor = anchor.clone();
                let start = expanded;
                expanded = expanded.saturating_add(1);
                frames.push(if sequence {
                    Frame::Sequence {
                        items: Vec::new(),
                        anchor,
                        tag,
                        start,
                    }
                } else {
                    Frame::Mapping {
                        map: Map::new(),
                        key: None,
                        keys: HashSet::new(),
                        anchor,
                        tag,
                        start,
                    }
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor, tag, start) = match frames.pop() {
                    Some(Frame::Sequence {
                        items,
                        anchor,
                        tag,
                        start,
                    }) => (Value::Array(items), anchor, tag, start),
                    Some(Frame::Mapping {
                        map,
                        anchor,
                        tag,
                        start,
                        ..
                    }) => (Value::Object(map), anchor, tag, start),
                    None => return Err(at("unbalanced YAML".into())),
                };
                let value = match tag {
                    Some(name) => short_form(&name, value),
                    None => value,
                };
                Some((value, anchor, expanded.saturating_sub(start)))
            }
            _ => None,
        };
        if expanded > limit {
            return Err(bomb(mark, limit));
        }
        let Some((value, anchor, weight)) = done else {
            continue;
        };
        if let Some(anchor) = anchor {
            anchors.insert(anchor, (value.clone(), weight.max(1)));
        }
        match frames.last_mut() {
            None => root = Some(value),
            Some(Frame::Sequence { items, .. }) => items.push(value),
            Some(Frame::Mapping { map, key, keys, .. }) => match key.take() {
                None => {
                    let Value::String(name) = value else {
                        return Err(at("a mapping key that is not text".into()));
                    };
                    if name == "<<" {
                        return Err(at(
                            "a YAML merge key (<<): readers disagree on merging; write the keys out".into(),
                        ));
                    }
                    if !keys.insert(name.clone()) {
                        return Err(at(format!(
                            "duplicate key {name:?} (CloudFormation and other readers may keep different values); \
                             remove one"
                        )));
                    }
                    *key = Some(name);
                }
                Some(name) => {
                    map.insert(name, value);
                }
            },
        }
    }
    Ok(root.unwrap_or(Value::Null))
}

fn refuse(mark: Mark, what: String) -> String {
    format!(
        "not a usable template: line {}, column {}: {what}",
        mark.line, mark.column
    )
}

fn bomb(mark: Mark, limit: u64) -> String {
    refuse(
        mark,
        format!(
            "its YAML aliases expand to more than {limit} nodes; an alias bomb? write the values out"
        ),
    )
}

/// The next scalar of the innermost mapping is a key.
fn expecting_key(frames: &[Frame]) -> bool {
    matches!(frames.last(), Some(Frame::Mapping { key: None, .. }))
}

/// The intrinsic a short-form tag names (`Ref`, `Condition`, `Fn::Sub`, ...), or a refusal for tags CloudFormation
/// reads otherwise than stacksetd would.
fn intrinsic_name(tag: &str) -> Result<Option<String>, String> {
    if let Some(name) = tag.strip_prefix('!')
        && !name.is_empty()
        && !name.starts_with('!')
    {
        return Ok(Some(match name {
            "Ref" | "Condition" => name.to_string(),
            other => format!("Fn::{other}"),
        }));
    }
    if matches!(
        tag,
        "tag:yaml.org,2002:str" | "tag:yaml.org,2002:seq" | "tag:yaml.org,2002:map"
    ) {
        return Ok(None);
    }
    Err(format!(
        "the YAML tag {tag}: CloudFormation's reading of it is not stacksetd's; write the value without it"
    ))
}

fn collection_tag(tag: Option<&str>) -> Result<Option<String>, String> {
    match tag {
        None => Ok(None),
        Some(tag) => intrinsic_name(tag),
    }
}

/// `{"Fn::Name": value}`, the long form of a short-form tag.
fn short_form(name: &str, value: Value) -> Value {
    let value = match (name, value) {
        // `!GetAtt Resource.Attribute.Path` is ["Resource", "Attribute.Path"].
        ("Fn::GetAtt", Value::String(s)) => match s.split_once('.') {
            Some((resource, attribute)) => Value::Array(vec![resource.into(), attribute.into()]),
            None => Value::Array(vec![Value::String(s)]),
        },
        (_, value) => value,
    };
    let mut map = Map::new();
    map.insert(name.to_string(), value);
    Value::Object(map)
}

/// One scalar as CloudFormation reads it; `Err` says why it is refused (without the position).
fn scalar(text: String, plain: bool, tag: Option<&str>, is_key: bool) -> Result<Value, String> {
    if let Some(tag) = tag {
        if is_key {
            return Err("a tagged mapping key; write the key out".into());
        }
        return Ok(match intrinsic_name(tag)? {
            // A tagged scalar is never converted: `!Ref 123` names "123".
            Some(name) => short_form(&name, Value::String(text)),
            None => Value::String(text),
        });
    }
    if !plain {
        return Ok(Value::String(text));
    }
    let quote = |reads: &str| {
        format!(
            "the unquoted {}{text:?} reads as {reads} in YAML 1.1 (CloudFormation's reading), which is not what it \
             looks like; quote it",
            if is_key { "key " } else { "" }
        )
    };
    match resolve_plain(&text) {
        Plain::Null if is_key => Err(quote("null")),
        Plain::Null => Ok(Value::Null),
        Plain::Bool(_) if is_key => Err(quote("a boolean")),
        Plain::Bool(b) => Ok(Value::Bool(b)),
        Plain::Int(n) if is_key => Ok(Value::String(n.to_string())),
        Plain::Int(n) => Ok(Value::Number(n.into())),
        Plain::Float(_) if is_key => Err(quote("a fraction")),
        Plain::Float(f) => Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| quote("a number out of range")),
        // CloudFormation hands a date back as the text it was written as: `Version: 2012-10-17` in every IAM
        // policy and `AWSTemplateFormatVersion: 2010-09-09` are read unquoted by every real template.
        Plain::Date if is_key => Err(quote("a date")),
        Plain::Date => Ok(Value::String(text)),
        Plain::Refused(reads) => Err(quote(reads)),
        Plain::Text => Ok(Value::String(text)),
    }
}

/// What a plain scalar is in YAML 1.1.
#[derive(Debug, PartialEq)]
enum Plain {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A form whose YAML 1.1 value differs from its text, with what it reads as.
    Refused(&'static str),
    Text,
}

const TRUE: &[&str] = &[
    "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON",
];
const FALSE: &[&str] = &[
    "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF",
];

fn resolve_plain(s: &str) -> Plain {
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        return Plain::Null;
    }
    if TRUE.contains(&s) {
        return Plain::Bool(true);
    }
    if FALSE.contains(&s) {
        return Plain::Bool(false);
    }
    if s == "=" {
        return Plain::Refused("YAML's value key");
    }
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    // Decimal integers: 0, or no leading zero.
    if digits(unsigned) && (unsigned == "0" || !unsigned.starts_with('0')) {
        return match s.parse::<i64>() {
            Ok(n) => Plain::Int(n),
            Err(_) => Plain::Refused("a number too large for 64 bits"),
        };
    }
    // Decimal fractions: digits '.' digits, an exponent only with its sign (YAML 1.1 reads `1e3` as text).
    if let Some((whole, rest)) = unsigned.split_once('.') {
        let (fraction, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let fraction_ok = fraction.is_empty() || digits(fraction);
        let exponent_ok =
            exponent.is_none_or(|e| (e.starts_with('+') || e.starts_with('-')) && digits(&e[1..]));
        let signed = s.starts_with('-');
        let whole_ok = digits(whole) || (whole.is_empty() && !signed && !fraction.is_empty());
        if whole_ok && fraction_ok && exponent_ok {
            return match s.parse::<f64>() {
                Ok(f) if f.is_finite() => Plain::Float(f),
                _ => Plain::Refused("a number out of range"),
            };
        }
    }
    if is_date(s) {
        return Plain::Date;
    }
    if let Some(reads) = yaml11_other_value(s) {
        return Plain::Refused(reads);
    }
    Plain::Text
}

/// `YYYY-MM-DD`.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// The YAML 1.1 forms that are not their text (octal, binary, hexadecimal, underscores, sexagesimal, signed
/// numbers, infinities and not-a-number, timestamps with a time): what each reads as.
fn yaml11_other_value(s: &str) -> Option<&'static str> {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let signed = body.len() != s.len();
    let numeric = |t: &str, extra: &[char]| {
        !t.is_empty()
            && t.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            && t.chars().all(|c| c.is_ascii_digit() || extra.contains(&c))
    };
    if let Some(bits) = body.strip_prefix("0b") {
        return (!bits.is_empty() && bits.chars().all(|c| matches!(c, '0' | '1' | '_')))
            .then_some("a binary number");
    }
    if let Some(hex) = body.strip_prefix("0x") {
        return (!hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit() || c == '_'))
            .then_some("a hexadecimal number");
    }
    if matches!(body, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN") {
        return Some("an infinity or not-a-number");
    }
    if body.starts_with('0') && body.len() > 1 && numeric(body, &['_']) {
        return Some(
            if body.chars().all(|c| ('0'..='7').contains(&c) || c == '_') {
                "an octal number"
            } else {
                "a number whose leading zero YAML 1.1 readers treat differently"
            },
        );
    }
    if numeric(body, &['_', ':', '.', 'e', 'E', '-', '+'])
        && (body.contains('_') || body.contains(':') || signed)
        && body
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
    {
        // 1_000, 1:30 (base 60), +12, -.5: numbers in YAML 1.1 with a value unlike their text, or text in some
        // readers and numbers in others.
        return Some("a number (YAML 1.1 reads underscores, colons and signs in numbers)");
    }
    let b = s.as_bytes();
    // `get`: the text may have a multi-byte character anywhere (found by the fuzz run).
    if s.get(..10).is_some_and(is_date) && matches!(b.get(10), Some(b'T' | b't' | b' ' | b'\t')) {
        return Some("a timestamp");
    }
    // Dates with one-digit months or days are timestamps too.
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() == 3
        && parts[0].len() == 4
        && parts[1].len() <= 2
        && parts[2].len() <= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
    {
        return Some("a date");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_ok(text: &str) -> Value {
        read(text, 100_000).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn yaml_1_1_booleans_and_nulls_are_read_as_cloudformation_reads_them() {
        let v = read_ok("A: yes\nB: Off\nC: 'yes'\nD: \"on\"\nE: y\nF: ~\nG:\nH: NULL\nI: True\n");
        assert_eq!(v["A"], Value::Bool(true));
        assert_eq!(v["B"], Value::Bool(false));
        assert_eq!(v["C"], Value::String("yes".into()));
        assert_eq!(v["D"], Value::String("on".into()));
        assert_eq!(v["E"], Value::String("y".into()));
        assert_eq!(v["F"], Value::Null);
        assert_eq!(v["G"], Value::Null);
        assert_eq!(v["H"], Value::Null);
        assert_eq!(v["I"], Value::Bool(true));
    }

    #[test]
    fn numbers_keep_their_decimal_reading_and_1_1_only_text_stays_text() {
        let v = read_ok(
            "A: 3600\nB: -0\nC: 1.5\nD: 1e3\nE: 0o755\nF: 1.0e+3\nG: 0X1F\nH: 123456789012\n",
        );
        assert_eq!(v["A"], serde_json::json!(3600));
        assert_eq!(v["B"], serde_json::json!(0));
        assert_eq!(v["C"], serde_json::json!(1.5));
        assert_eq!(v["D"], Value::String("1e3".into()));
        assert_eq!(v["E"], Value::String("0o755".into()));
        assert_eq!(v["F"], serde_json::json!(1000.0));
        assert_eq!(v["G"], Value::String("0X1F".into()));
        assert_eq!(v["H"], serde_json::json!(123456789012u64));
    }

    #[test]
    fn forms_whose_1_1_value_is_not_their_text_are_refused_with_the_line() {
        for (text, reads) in [
            ("0755", "octal"),
            ("0x1F", "hexadecimal"),
            ("0b101", "binary"),
            ("1_000", "number"),
            ("1:30", "number"),
            ("+12", "number"),
            (".inf", "infinity"),
            ("2001-12-14t21:59:43.10-05:00", "timestamp"),
            ("2024-1-01", "date"),
            ("=", "value key"),
            ("99999999999999999999", "too large"),
        ] {
            let doc = format!("Resources:\n  R:\n    Value: {text}\n");
            let err = read(&doc, 100_000).unwrap_err();
            assert!(
                err.contains("line 3") && err.contains(reads) && err.contains("quote it"),
                "{text}: {err}"
            );
        }
        assert!(
            read_ok("AWSTemplateFormatVersion: 2010-09-09\n")["AWSTemplateFormatVersion"]
                == "2010-09-09"
        );
        assert!(read_ok("Version: 2012-10-17\n")["Version"] == "2012-10-17");
    }

    #[test]
    fn text_with_multi_byte_characters_never_panics() {
        for text in [
            "Resource🦀s",
            "2010-09-0🦀",
            "🦀",
            "0🦀",
            "-🦀",
            "1.🦀",
            "0b🦀",
            "2010-09-09🦀x",
        ] {
            let _ = read(&format!("A: {text}\n{text}: x\n"), 100_000);
        }
    }

    #[test]
    fn keys_that_1_1_reads_as_other_values_are_refused_and_decimal_keys_are_text() {
        for key in ["yes", "on", "null", "1.5", "~", "0755", "2010-09-09"] {
            let err = read(&format!("M:\n  {key}: x\n"), 100_000).unwrap_err();
            assert!(
                err.contains("line 2") && err.contains("quote it"),
                "{key}: {err}"
            );
        }
        assert_eq!(read_ok("M:\n  123456789012: x\n")["M"]["123456789012"], "x");
    }

    #[test]
    fn short_forms_become_intrinsics_without_converting_their_value() {
        let v = read_ok(
            "A: !Ref 123\nB: !GetAtt Role.Arn.Path\nC: !If [c, yes, !Ref AWS::NoValue]\nD: !Foo {a: 1}\nE: !!str yes\n",
        );
        assert_eq!(v["A"], serde_json::json!({"Ref": "123"}));
        assert_eq!(
            v["B"],
            serde_json::json!({"Fn::GetAtt": ["Role", "Arn.Path"]})
        );
        assert_eq!(
            v["C"],
            serde_json::json!({"Fn::If": ["c", true, {"Ref": "AWS::NoValue"}]})
        );
        assert_eq!(v["D"], serde_json::json!({"Fn::Foo": {"a": 1}}));
        assert_eq!(v["E"], "yes");
        for bad in ["A: !!int 3\n", "A: ! 3\n", "A: !<tag:x> 3\n"] {
            assert!(read(bad, 100_000).is_err(), "{bad}");
        }
    }

    #[test]
    fn second_documents_deep_nesting_and_alias_bombs_are_refused() {
        assert!(
            read("A: 1\n---\nB: 2\n", 100_000)
                .unwrap_err()
                .contains("second YAML document")
        );
        let deep = format!(
            "A: {}1{}\n",
            "[".repeat(MAX_NESTING + 5),
            "]".repeat(MAX_NESTING + 5)
        );
        assert!(
            read(&deep, 100_000)
                .unwrap_err()
                .contains("nested more than")
        );
        let deep = "[".repeat(200_000);
        assert!(read(&deep, 100_000).is_err());
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            bomb.push_str(&format!(
                "{}: &{} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
                (b'a' + i) as char,
                (b'a' + i) as char,
                p = (b'a' + i - 1) as char
            ));
        }
        assert!(read(&bomb, 100_000).unwrap_err().contains("alias"));
        let anchored = read_ok("a: &x {k: v}\nb: *x\n");
        assert_eq!(anchored["b"]["k"], "v");
    }
}
