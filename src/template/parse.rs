//! Reading a template exactly as CloudFormation will, or refusing it.
//!
//! The guard is only as good as its reading of the document: if stacksetd and CloudFormation could read
//! different documents from the same bytes, a vendor could show the guard one policy and deploy another. So the
//! reader refuses, with the line, what parsers disagree on: a key given twice in one mapping (JSON or YAML: some
//! parsers keep the first, others the last), and characters stacksetd reserves for its own symbols. YAML is read
//! with YAML 1.1's scalars, as CloudFormation reads it, by `template::yaml` (which refuses, with the line, every
//! scalar whose reading could differ, merge keys and alias bombs).

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
            super::yaml::read(text, MAX_TEMPLATE_YAML_NODES.max(text.len() as u64 / 2))?
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
