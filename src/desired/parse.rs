//! Placeholder parser (replaced by the full implementation): multi-document YAML into typed deployments.

use std::path::Path;

use super::{Deployment, Invalid, Problem};

/// A parsed document plus where its fields are in the file.
pub(crate) struct Document {
    pub deployment: Deployment,
}

pub(crate) fn documents(text: &str, file: &Path) -> Result<Vec<Document>, Invalid> {
    let mut out = Vec::new();
    for de in serde_norway::Deserializer::from_str(text) {
        let deployment: Deployment = serde::Deserialize::deserialize(de).map_err(|e| Invalid {
            problems: vec![Problem {
                file: file.to_path_buf(),
                line: e.location().map(|l| l.line()).unwrap_or(0),
                column: e.location().map(|l| l.column()).unwrap_or(0),
                field: String::new(),
                message: e.to_string(),
            }],
        })?;
        out.push(Document { deployment });
    }
    Ok(out)
}
