//! Validation of the parsed documents: the rules of each document (`rules`) and those across documents.

use std::collections::HashMap;

use super::locate::Finding;
use super::parse::Document;
use super::rules;

/// Every rule finding of every document, plus the cross-document ones.
pub(crate) fn validate(documents: &[Document]) -> Vec<Finding> {
    let mut out: Vec<Finding> = documents
        .iter()
        .flat_map(|d| rules::check(&d.deployment, &d.layout))
        .collect();
    unique(
        documents,
        "metadata.name",
        |d| d.deployment.metadata.name.as_str(),
        "names must be unique: each deployment is one metric label and one line in /status; rename one",
        &mut out,
    );
    unique(
        documents,
        "spec.stackSetName",
        |d| d.deployment.spec.stack_set_name.as_str(),
        "two deployments of one stack set would undo each other's changes; merge them or rename one",
        &mut out,
    );
    out.extend(super::depends_on::check_all(documents));
    out
}

/// Report each document that repeats a value of an earlier one, naming the line of the first use.
fn unique<'d>(
    documents: &'d [Document],
    field: &str,
    value: impl Fn(&'d Document) -> &'d str,
    why: &str,
    out: &mut Vec<Finding>,
) {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for d in documents {
        let v = value(d);
        let line = d.layout.value_pos_of(field).line;
        match first.get(v) {
            Some(first_line) => out.push(Finding {
                pos: d.layout.value_pos_of(field),
                field: field.to_string(),
                message: format!(
                    "`{v}` is already used by the document at line {first_line}; {why}"
                ),
            }),
            None => {
                first.insert(v, line);
            }
        }
    }
}
