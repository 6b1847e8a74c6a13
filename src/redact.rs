//! What stacksetd shows others (GET /status, `stacksetd status`) never carries a secret it was given: parameter
//! values are replaced, and every URL loses its userinfo (`user:password@`), its query string (pre-signed S3
//! URLs carry their signature there) and its fragment. Applied to the whole JSON document at the edge, so a new
//! field cannot leak by forgetting to call it.

use serde_json::Value;

/// What a parameter value is shown as.
pub const REDACTED: &str = "(redacted)";

/// Redact a /status document in place.
pub fn status_document(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let is_parameter_change = map
                .get("field")
                .and_then(Value::as_str)
                .is_some_and(|f| f == "parameters" || f.starts_with("parameters."));
            for (key, child) in map.iter_mut() {
                if key == "parameters" {
                    parameters(child);
                } else if is_parameter_change && (key == "from" || key == "to") {
                    *child = Value::String(REDACTED.into());
                } else {
                    status_document(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(status_document),
        Value::String(text) if text.contains("://") => *text = urls_in(text),
        _ => {}
    }
}

/// A `parameters` value: a map of key -> value, or a list of `{key, value}` entries.
fn parameters(value: &mut Value) {
    match value {
        Value::Object(map) => map.values_mut().for_each(|v| {
            if !v.is_null() {
                *v = Value::String(REDACTED.into())
            }
        }),
        Value::Array(items) => {
            for item in items {
                if let Value::Object(entry) = item {
                    for (key, v) in entry.iter_mut() {
                        let lower = key.to_ascii_lowercase();
                        if (lower == "value" || lower == "parametervalue") && !v.is_null() {
                            *v = Value::String(REDACTED.into());
                        }
                    }
                }
            }
        }
        Value::Null => {}
        other => *other = Value::String(REDACTED.into()),
    }
}

/// Every URL in `text` (anything `scheme://...` up to whitespace or a quote) without userinfo, query or fragment.
pub fn urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: the letters right before "://".
        let scheme_start = rest[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(at, |(i, _)| i);
        out.push_str(&rest[..scheme_start]);
        let after = &rest[at + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        out.push_str(&rest[scheme_start..at + 3]);
        out.push_str(&url_tail(&after[..end]));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `host/path?query#fragment` with userinfo -> `host/path` (a removed query is marked so a reader knows).
fn url_tail(tail: &str) -> String {
    let authority_end = tail.find(['/', '?', '#']).unwrap_or(tail.len());
    let (authority, path) = tail.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let cut = path.find(['?', '#']);
    let mut out = String::from(host);
    match cut {
        Some(i) => {
            out.push_str(&path[..i]);
            if path[i..].starts_with('?') {
                out.push_str("?(query redacted)");
            }
        }
        None => out.push_str(path),
    }
    out
}

/// Text from a template or from AWS, safe to print: control characters, and the invisible characters that
/// reorder or hide text (bidirectional overrides, zero-width spaces), are written as `\u{..}` escapes, so a
/// vendor cannot make the findings an operator reviews say something else on screen.
pub fn safe(text: &str) -> std::borrow::Cow<'_, str> {
    safe_keeping(text, &[])
}

/// As [`safe`], leaving the characters in `keep` as they are (the text log keeps the formatter's own colour
/// escapes on a terminal).
pub fn safe_keeping<'a>(text: &'a str, keep: &[char]) -> std::borrow::Cow<'a, str> {
    let hidden = |c: char| {
        !keep.contains(&c)
            && (c.is_control()
                || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'))
    };
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_lose_userinfo_query_and_fragment_wherever_they_are() {
        assert_eq!(
            urls_in("GET https://user:pw@vendor.example/t.json?X-Amz-Signature=abc#x failed: 403"),
            "GET https://vendor.example/t.json?(query redacted) failed: 403"
        );
        assert_eq!(
            urls_in("see \"http://a@b.test\" and s3://bucket/key"),
            "see \"http://b.test\" and s3://bucket/key"
        );
        assert_eq!(urls_in("no url here"), "no url here");
        assert_eq!(urls_in("://odd"), "://odd");
        assert_eq!(urls_in("file:///etc/t.json"), "file:///etc/t.json");
    }

    #[test]
    fn parameter_values_are_redacted_in_maps_lists_and_changes() {
        let mut doc = json!({
            "deployments": {"a": {
                "parameters": {"ExternalId": "secret-1", "Empty": null},
                "steps": [{"action": {"parameters": [{"key": "ExternalId", "value": "secret-2"}, {"key": "Kept", "value": null}]},
                           "changes": [{"field": "parameters.ExternalId", "from": "secret-3", "to": "secret-4"},
                                       {"field": "description", "from": "old", "to": "new"}]}],
                "message": "fetching https://u:p@x.test/t?sig=secret-5"
            }}
        });
        status_document(&mut doc);
        let text = doc.to_string();
        for secret in [
            "secret-1", "secret-2", "secret-3", "secret-4", "secret-5", "u:p@",
        ] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert!(
            text.contains("ExternalId") && text.contains("\"old\"") && text.contains("\"new\""),
            "{text}"
        );
        assert!(text.contains("\"Empty\":null"), "{text}");
    }
}
