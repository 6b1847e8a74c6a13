//! Reading a template exactly as CloudFormation will, or refusing it.
//!
//! The guard is only as good as its reading of the document: if stacksetd and CloudFormation could read
//! different documents from the same bytes, a vendor could show the guard one policy and deploy another. So the
//! reader refuses, with the line, what parsers disagree on: a key given twice in one mapping (JSON or YAML: some
//! parsers keep the first, others the last), YAML merge keys (`<<`, a YAML 1.1 feature that some parsers apply
//! and others read as a plain key), and characters stacksetd reserves for its own symbols. YAML aliases are
//! counted as they would expand, so an alias bomb is refused before it is built.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The floor of the YAML node limit: a template may expand (aliases followed) to at most this many nodes, or
/// half its length in bytes if that is more (a document without aliases has fewer nodes than that: each needs
/// at least two bytes). A real template has a few thousand; an alias bomb ("billion laughs") has billions, and
/// serde_norway would spend seconds and gigabytes on it before its own limit stops it.
pub const MAX_TEMPLATE_YAML_NODES: u64 = 100_000;

/// Parse a CloudFormation template written in JSON or YAML into one comparable JSON value. YAML short-form
/// intrinsics (`!Ref x`, `!GetAtt a.b`, `!Sub ...`) become their long form, so both spellings compare equal.
pub fn parse_document(text: &str) -> Result<Value, String> {
    let value = match strict_json(text) {
        Ok(value) => value,
        Err(JsonError::Duplicate(message)) => return Err(message),
        Err(JsonError::NotJson) => {
            yaml_guard(text)?;
            let yaml: serde_norway::Value =
                serde_norway::from_str(text).map_err(|e| format!("not JSON or YAML: {e}"))?;
            yaml_to_json(yaml)?
        }
    };
    reserved_check(&value)?;
    Ok(value)
}

enum JsonError {
    /// Valid JSON but for a repeated key: refused, never re-read as YAML.
    Duplicate(String),
    NotJson,
}

/// A JSON value whose objects refuse a repeated key.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key {key:?} in one object (CloudFormation and other readers may keep different \
                     values); remove one"
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

fn strict_json(text: &str) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    match serde::Deserialize::deserialize(&mut de) {
        Ok(Strict(value)) => {
            de.end().map_err(|_| JsonError::NotJson)?;
            Ok(value)
        }
        Err(e) if e.to_string().contains("duplicate key") => {
            Err(JsonError::Duplicate(format!("not a usable template: {e}")))
        }
        Err(_) => Err(JsonError::NotJson),
    }
}

/// The characters stacksetd uses for deploy-time symbols (Unicode's supplementary private-use planes) may not
/// appear in a template: a string containing one could pose as a symbol.
fn reserved_check(value: &Value) -> Result<(), String> {
    let bad = |s: &str| s.chars().any(crate::guard::is_reserved_char);
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if bad(s) => {
                return Err(
                    "not a usable template: it contains characters from Unicode's supplementary private-use planes \
                     (U+F0000 and above), which no template needs"
                        .into(),
                );
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                for (k, child) in map {
                    if bad(k) {
                        return Err(
                            "not a usable template: a key contains private-use characters".into(),
                        );
                    }
                    stack.push(child);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One open collection while scanning YAML events.
enum Frame {
    Sequence,
    Mapping {
        /// The next node is a key (else a value).
        expecting_key: bool,
        keys: HashSet<String>,
    },
}

/// One pass over the YAML events: count the nodes with their aliases expanded (saturating, so the count never
/// costs the expansion) and refuse a template above the node limit; refuse a key repeated in one mapping and
/// merge keys, naming the line.
fn yaml_guard(text: &str) -> Result<(), String> {
    use std::collections::HashMap;
    use yaml_rust2::parser::{Event, Parser};

    let limit = MAX_TEMPLATE_YAML_NODES.max(text.len() as u64 / 2);
    let mut parser = Parser::new_from_str(text);
    let mut expanded: u64 = 0;
    // Open collections: (expanded count at their start, anchor id).
    let mut open: Vec<(u64, usize)> = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut weights: HashMap<usize, u64> = HashMap::new();
    loop {
        // A syntax error is serde_norway's to report, with its own message.
        let Ok((event, mark)) = parser.next_token() else {
            return Ok(());
        };
        // Whether this node is a mapping key, and the parent's state moves on.
        let mut is_key = false;
        let node = matches!(
            event,
            Event::Scalar(..)
                | Event::Alias(_)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
        );
        if node && let Some(Frame::Mapping { expecting_key, .. }) = frames.last_mut() {
            is_key = *expecting_key;
            *expecting_key = !*expecting_key;
        }
        match event {
            Event::StreamEnd => return Ok(()),
            Event::Scalar(value, _, anchor, _) => {
                expanded = expanded.saturating_add(1);
                if anchor != 0 {
                    weights.insert(anchor, 1);
                }
                if is_key && let Some(Frame::Mapping { keys, .. }) = frames.last_mut() {
                    if value == "<<" {
                        return Err(format!(
                            "not a usable template: a YAML merge key (<<) at line {}: readers disagree on merging; \
                             write the keys out",
                            mark.line()
                        ));
                    }
                    if !keys.insert(value.clone()) {
                        return Err(format!(
                            "not a usable template: duplicate key {value:?} at line {} (CloudFormation and other \
                             readers may keep different values); remove one",
                            mark.line()
                        ));
                    }
                }
            }
            Event::Alias(anchor) => {
                expanded = expanded.saturating_add(weights.get(&anchor).copied().unwrap_or(1));
                if is_key {
                    return Err(format!(
                        "not a usable template: an alias used as a mapping key at line {}; write the key out",
                        mark.line()
                    ));
                }
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if is_key {
                    return Err(format!(
                        "not a usable template: a collection used as a mapping key at line {}",
                        mark.line()
                    ));
                }
                open.push((expanded, anchor));
                expanded = expanded.saturating_add(1);
                frames.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Sequence
                } else {
                    Frame::Mapping {
                        expecting_key: true,
                        keys: HashSet::new(),
                    }
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                frames.pop();
                if let Some((start, anchor)) = open.pop()
                    && anchor != 0
                {
                    weights.insert(anchor, expanded.saturating_sub(start));
                }
            }
            _ => {}
        }
        if expanded > limit {
            return Err(format!(
                "not a usable template: its YAML aliases expand to more than {limit} nodes (line {}); an alias \
                 bomb? write the values out",
                mark.line()
            ));
        }
    }
}

fn yaml_to_json(value: serde_norway::Value) -> Result<Value, String> {
    use serde_norway::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).map_err(|e| e.to_string())?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let key = match key {
                    Y::String(s) => s,
                    other => serde_norway::to_string(&other)
                        .map_err(|e| e.to_string())?
                        .trim()
                        .to_string(),
                };
                if out.contains_key(&key) {
                    // `1` and `"1"`, `true` and `"true"`: distinct YAML keys, one JSON key.
                    return Err(format!(
                        "not a usable template: the key {key:?} appears twice in one mapping (once quoted, once \
                         not?); remove one"
                    ));
                }
                out.insert(key, yaml_to_json(value)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = yaml_to_json(tagged.value)?;
            let (key, inner) = match name {
                "Ref" | "Condition" => (name.to_string(), inner),
                // `!GetAtt Resource.Attribute` is the short form of ["Resource", "Attribute"].
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (resource, attribute) = s.split_once('.').unwrap_or((s.as_str(), ""));
                        (
                            "Fn::GetAtt".to_string(),
                            serde_json::json!([resource, attribute]),
                        )
                    }
                    other => ("Fn::GetAtt".to_string(), other),
                },
                other => (format!("Fn::{other}"), inner),
            };
            serde_json::json!({ key: inner })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_with_their_line() {
        let json = "{\"Resources\": {\n \"R\": {\"Type\": \"AWS::IAM::Role\"},\n \"R\": {\"Type\": \"Custom::X\"}}}";
        let err = parse_document(json).unwrap_err();
        assert!(
            err.contains("duplicate key \"R\"") && err.contains("line 3"),
            "{err}"
        );
        let yaml = "Resources:\n  R:\n    Type: AWS::IAM::Role\n  R:\n    Type: Custom::X\n";
        let err = parse_document(yaml).unwrap_err();
        assert!(
            err.contains("duplicate key \"R\"") && err.contains("line 4"),
            "{err}"
        );
        // The same key in different mappings is fine.
        assert!(parse_document("A: {x: 1}\nB: {x: 1}\n").is_ok());
        assert!(parse_document("- {x: 1}\n- {x: 2}\n").is_ok());
    }

    #[test]
    fn merge_keys_are_refused_with_their_line() {
        let yaml = "Base: &b\n  Effect: Allow\nResources:\n  R:\n    Properties:\n      <<: *b\n";
        let err = parse_document(yaml).unwrap_err();
        assert!(err.contains("merge key") && err.contains("line 6"), "{err}");
    }

    #[test]
    fn keys_that_collide_once_converted_are_refused() {
        let err = parse_document("A:\n  1: x\n  \"1\": y\n").unwrap_err();
        assert!(
            err.contains("twice") || err.contains("duplicate key"),
            "{err}"
        );
    }

    #[test]
    fn reserved_characters_are_refused() {
        let err = parse_document("{\"A\": \"\\udb80\\udc00\"}").unwrap_err();
        assert!(err.contains("private-use"), "{err}");
    }
}
