//! Parsing: multi-document YAML into typed deployments, with every problem placed at a line and column.
//!
//! Two passes. `locate` reads the event stream (positions, syntax, limits); then serde_norway deserializes each
//! document that passed. serde stops at the first error of a document, so the unknown-key check (`schema`) runs on
//! the event pass instead and reports every unknown key; serde's errors are then mapped to a field path.
//!
//! serde_norway's error locations are relative to the whole stream, not to the document (its one libyaml parser
//! reads the stream end to end); a test pins this, because the opposite would silently misplace every problem of
//! a second document.

use super::Deployment;
use super::locate::{self, DocLayout, Finding, Pos, child_path};
use super::schema;

/// A deserialized document plus where its fields are in the file.
pub(crate) struct Document {
    pub deployment: Deployment,
    pub layout: DocLayout,
}

/// Every document that deserialized, and the problems of those that did not (or of the file as a whole).
pub(crate) struct Parsed {
    pub documents: Vec<Document>,
    pub findings: Vec<Finding>,
}

pub(crate) fn documents(text: &str) -> Parsed {
    let layout = locate::layout(text);
    let mut findings: Vec<Finding> = layout.findings.into_iter().map(|(_, f)| f).collect();
    let mut documents = Vec::new();

    // serde_norway yields one document per YAML document, like the event pass, except that a stream without any
    // document still yields one (empty) document: zipping the two stops at the shorter, which skips that one.
    // After a syntax error serde_norway repeats the error forever; the zip bounds the iteration.
    let mut serde_docs = serde_norway::Deserializer::from_str(text);
    for doc in layout.docs {
        if doc.broken {
            // The event pass reported why; nothing after a broken document can be read reliably, and serde must
            // not be given the input the limits refused.
            break;
        }
        let Some(de) = serde_docs.next() else { break };
        if doc.empty {
            continue;
        }
        let unknown = schema::unknown_fields(&doc);
        let had_unknown = !unknown.is_empty();
        let had_duplicate = doc.duplicates > 0;
        findings.extend(unknown);
        findings.extend(quoting(&doc));
        match <Deployment as serde::Deserialize>::deserialize(de) {
            Ok(deployment) if !had_unknown => documents.push(Document {
                deployment,
                layout: doc,
            }),
            Ok(_) => {}
            Err(err) => {
                let syntax = is_syntax_error(&err);
                let finding = serde_finding(&err, &doc);
                // The event pass already reported serde's first unknown key (with a suggestion) or duplicate key.
                let reported = (had_unknown && finding.message.starts_with("unknown field"))
                    || (had_duplicate && finding.message.starts_with("duplicate field"));
                if !reported {
                    findings.push(finding);
                }
                if syntax {
                    break;
                }
            }
        }
    }

    if documents.is_empty() && findings.is_empty() {
        findings.push(Finding {
            pos: Pos { line: 1, column: 1 },
            field: String::new(),
            message: format!(
                "no StackSetDeployment documents; the file needs at least one document starting with \
                 `apiVersion: {}` and `kind: {}`",
                super::API_VERSION,
                super::KIND
            ),
        });
    }
    Parsed {
        documents,
        findings,
    }
}

/// Account ids written as YAML numbers: serde_norway would accept the digits as text, but any other YAML tool
/// (and a reader) sees a number, which loses leading zeros. Quoting makes the id unambiguous.
fn quoting(doc: &DocLayout) -> Vec<Finding> {
    let mut ids: Vec<(&String, &locate::Spot)> = doc
        .spots
        .iter()
        .filter(|(path, spot)| {
            spot.numeric
                && (*path == "spec.managementAccountId"
                    || path.starts_with("spec.deploymentTargets.accounts["))
        })
        .collect();
    ids.sort_by_key(|(path, _)| path.as_str());
    ids.into_iter()
        .map(|(path, spot)| Finding {
            pos: spot.value,
            field: path.clone(),
            message: "an account id must be quoted, e.g. \"012345678901\": unquoted, YAML reads a number and \
                      leading zeros are lost"
                .to_string(),
        })
        .collect()
}

fn is_syntax_error(err: &serde_norway::Error) -> bool {
    // serde_norway does not expose its error kinds; libyaml's own messages are the ones that mention the
    // structure being parsed ("while parsing a block mapping", "did not find expected key", ...).
    let msg = err.to_string();
    msg.contains("while parsing")
        || msg.contains("while scanning")
        || msg.contains("did not find expected")
}

/// Turn a serde_norway error into a finding with a field path and a position.
fn serde_finding(err: &serde_norway::Error, doc: &DocLayout) -> Finding {
    let pos = err
        .location()
        .map(|l| Pos {
            line: l.line(),
            column: l.column(),
        })
        .unwrap_or_default();
    let full = err.to_string();
    let (path, message) = split_message(&full);
    // serde names the innermost field it knows; a custom error of a field's own deserializer (a bad duration)
    // carries its parent's path but the field's position, which names the field exactly.
    // ("missing field" is placed at the mapping's first key, which is not the field.)
    let missing = message.starts_with("missing field ");
    let at = doc.path_at(pos).filter(|_| !missing).map(str::to_string);
    let (path, pos) = match (path, at) {
        (Some(p), Some(a)) if a.len() > p.len() && a.starts_with(&p) => {
            let value = doc.value_pos_of(&a);
            (a, value)
        }
        (Some(p), _) => (p, pos),
        (None, a) => (a.unwrap_or_default(), pos),
    };

    // "missing field `x`": name the missing field and point at the mapping that lacks it.
    if let Some(name) = backticked(message.strip_prefix("missing field ").unwrap_or("")) {
        let field = child_path(&path, name);
        return Finding {
            pos: doc.pos_of(&path),
            message: format!(
                "missing field `{name}`; add it{}",
                if path.is_empty() {
                    " at the top level".to_string()
                } else {
                    format!(" under `{path}`")
                }
            ),
            field,
        };
    }
    // "unknown variant `X`, expected one of `A`, `B`": add the likely intended value.
    let mut message = message.to_string();
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        if let Some(given) = backticked(rest) {
            let expected: Vec<&str> = rest
                .split("expected ")
                .nth(1)
                .unwrap_or("")
                .split(['`', ',', ' '])
                .filter(|s| !s.is_empty() && *s != "one" && *s != "of" && *s != "or")
                .collect();
            if let Some(best) = schema::closest(given, &expected) {
                message.push_str(&format!("; did you mean `{best}`?"));
            }
        }
    }
    // serde names Rust's integer types; an operator wrote a YAML number.
    for (rust, plain) in [
        ("u32", "a whole number from 0 to 4294967295"),
        ("u128", "number"),
    ] {
        message = message.replace(&format!("expected {rust}"), &format!("expected {plain}"));
    }
    // serde names Rust's structs; an operator wrote a YAML value where a mapping of fields belongs.
    if let Some(i) = message.find("expected struct ") {
        let what = if path.is_empty() {
            format!(
                "expected a mapping: a document starts with `apiVersion: {}` and `kind: {}`, then `metadata` \
                 and `spec`",
                super::API_VERSION,
                super::KIND
            )
        } else {
            format!("expected a mapping of fields under `{path}`")
        };
        message = format!("{}{what}", &message[..i]);
    }
    Finding {
        pos: if pos == Pos::default() {
            doc.pos_of(&path)
        } else {
            pos
        },
        field: path,
        message,
    }
}

/// serde_norway's Display is "PATH: MESSAGE at line L column C" (path and position optional): take it apart.
fn split_message(full: &str) -> (Option<String>, &str) {
    let mut msg = full;
    if let Some(i) = msg.rfind(" at line ") {
        if msg[i + 9..]
            .split(" column ")
            .all(|n| n.parse::<usize>().is_ok())
        {
            msg = &msg[..i];
        }
    }
    // A path has no spaces ("spec.regions[1]"); a message's own "invalid type: ..." does.
    if let Some((head, tail)) = msg.split_once(": ") {
        if !head.contains(' ') && !head.is_empty() {
            return (Some(head.to_string()), tail);
        }
    }
    (None, msg)
}

/// The first `backticked` word of a message.
fn backticked(s: &str) -> Option<&str> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(&s[start..start + len])
}

#[cfg(test)]
pub(crate) mod tests;
