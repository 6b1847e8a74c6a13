//! The desired state: one YAML file holding one or more `StackSetDeployment` documents. `load` reads, parses and
//! validates it; every problem found is reported at once, each with file, line, column, field and the fix, so an
//! operator corrects a file in one round trip.

pub mod credentials;
pub mod depends_on;
pub(crate) use crate::input::locate;
pub mod management_account;
pub mod model;
mod parse;
mod regions;
pub mod rollout;
mod rules;
pub(crate) mod schema;
mod validate;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use model::*;

pub use crate::input::{Invalid, Problem};

/// A loaded, valid desired-state file.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredState {
    pub path: PathBuf,
    pub deployments: Vec<Deployment>,
}

/// The largest desired-state file accepted; far above any real one, low enough that a runaway file is refused
/// before it is parsed.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Read, parse and validate a desired-state file (one read: the offline `validate`, `plan` and `reconcile --once`;
/// the daemon reads twice, see `file_watch::Loader`).
pub fn load(path: &Path) -> Result<DesiredState, crate::error::Error> {
    let snapshot = read(path)?;
    let deployments = parse_str(&snapshot.text, path)?;
    Ok(DesiredState {
        path: path.to_path_buf(),
        deployments,
    })
}

/// One read of the desired-state file: its text and what identifies those bytes. Two reads that agree on all of
/// it, some time apart, are a file nobody is writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub text: String,
    pub size: u64,
    pub modified: Option<std::time::SystemTime>,
    pub sha256: String,
}

impl Snapshot {
    /// The same bytes, by size, modification time and digest.
    pub fn same_as(&self, other: &Snapshot) -> bool {
        self.size == other.size && self.modified == other.modified && self.sha256 == other.sha256
    }
}

/// The one reader of desired-state files (the daemon and every command): at most `MAX_FILE_BYTES`, UTF-8, every
/// problem with the file's name, line and column.
pub fn read(path: &Path) -> Result<Snapshot, crate::error::Error> {
    use std::io::Read;
    let io = |source| crate::error::Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let too_large = |size: u64| -> crate::error::Error {
        Invalid {
            problems: vec![Problem {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("the file is {size} bytes; a desired-state file may be at most {MAX_FILE_BYTES} bytes"),
            }],
        }
        .into()
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large(metadata.len()));
    }
    // The size can change between the metadata and the read: read at most one byte past the limit.
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    let sha256 = crate::input::sha256_hex(&bytes);
    let size = bytes.len() as u64;
    let text = String::from_utf8(bytes).map_err(|err| -> crate::error::Error {
        let bytes = err.as_bytes();
        let at = err.utf8_error().valid_up_to();
        let pos = position_of(&bytes[..at]);
        Invalid {
            problems: vec![Problem {
                file: path.to_path_buf(),
                line: pos.line,
                column: pos.column,
                field: String::new(),
                message: format!(
                    "the file is not UTF-8: byte 0x{:02x} cannot start a character here; save the file as UTF-8",
                    bytes[at]
                ),
            }],
        }
        .into()
    })?;
    Ok(Snapshot {
        text,
        size,
        modified: metadata.modified().ok(),
        sha256,
    })
}

/// The 1-based line and column (in characters) just after `text`.
fn position_of(text: &[u8]) -> locate::Pos {
    let text = String::from_utf8_lossy(text);
    let line = text.matches('\n').count() + 1;
    let column = text.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    locate::Pos { line, column }
}

/// YAML allows no control characters but tab and line breaks; its parsers stop at a NUL as if the file ended
/// there, which would misplace the problem.
fn control_character(text: &str) -> Option<(locate::Pos, char)> {
    let at = text.find(|c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{85}'))?;
    let c = text[at..].chars().next()?;
    Some((position_of(&text.as_bytes()[..at]), c))
}

/// Parse and validate the text of a desired-state file; `file` is only used in messages.
pub fn parse_str(text: &str, file: &Path) -> Result<Vec<Deployment>, Invalid> {
    // A byte order mark may start a YAML stream (editors on Windows write one); it is not part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some((pos, c)) = control_character(text) {
        return Err(Invalid {
            problems: vec![Problem {
                file: file.to_path_buf(),
                line: pos.line,
                column: pos.column,
                field: String::new(),
                message: format!(
                    "the file contains the control character U+{:04X}; YAML allows only tab and line breaks, \
                     remove it (write it as an escape such as \"\\u{:04X}\" inside a double-quoted string if it is \
                     really wanted)",
                    c as u32, c as u32
                ),
            }],
        });
    }
    if let Some(problem) = swapped_with_settings(text, file) {
        return Err(Invalid {
            problems: vec![problem],
        });
    }
    let parsed = parse::documents(text);
    let mut findings = parsed.findings;
    findings.extend(validate::validate(&parsed.documents));
    if findings.is_empty() {
        let stack_sets = depends_on::stack_sets_named(&parsed.documents);
        return Ok(parsed
            .documents
            .into_iter()
            .map(|d| {
                let mut deployment = d.deployment;
                deployment.spec.dependency_stack_sets = deployment
                    .spec
                    .auto_deployment
                    .depends_on
                    .iter()
                    .filter_map(|e| Some((e.clone(), stack_sets.get(e)?.clone())))
                    .collect();
                deployment
            })
            .collect());
    }
    // By position; a problem without one (line 0) comes first, as it concerns the whole file.
    findings.sort_by(|a, b| (a.pos, &a.field, &a.message).cmp(&(b.pos, &b.field, &b.message)));
    findings.dedup();
    Err(Invalid {
        problems: findings
            .into_iter()
            .map(|f| Problem {
                file: file.to_path_buf(),
                line: f.pos.line,
                column: f.pos.column,
                field: f.field,
                message: f.message,
            })
            .collect(),
    })
}

/// Top-level keys of the daemon's settings file (a test in `settings` keeps this list inside its keys): the
/// desired state sits below the settings, so it names them rather than asking.
pub const SETTINGS_FILE_KEYS: &[&str] = &[
    "desired_state",
    "listen",
    "resync_interval",
    "template_poll_interval",
    "org_scan_interval",
    "concurrency",
    "log",
    "aws",
    "leases",
    "catalog",
];

/// Whether a document's top-level keys are most likely the daemon's settings: two or more of theirs and none of
/// a desired state's.
fn looks_like_settings(keys: &[String]) -> bool {
    let known = keys
        .iter()
        .filter(|k| SETTINGS_FILE_KEYS.contains(&k.as_str()))
        .count();
    known >= 2
        && !keys
            .iter()
            .any(|k| ["apiVersion", "kind", "metadata", "spec"].contains(&k.as_str()))
}

/// The daemon's settings file given as the desired state (the two files sit side by side in /etc/stacksetd): one
/// problem that says so, instead of an "unknown field" for each of its keys.
fn swapped_with_settings(text: &str, file: &Path) -> Option<Problem> {
    let layout = locate::layout(text);
    let keys = layout.docs.first()?.keys.get("")?;
    looks_like_settings(keys).then(|| Problem {
        file: file.to_path_buf(),
        line: 1,
        column: 1,
        field: String::new(),
        message: format!(
            "this is stacksetd's settings file ({}), not a desired state: give it with --config {} (or as \
             /etc/stacksetd/stacksetd.yaml); --desired takes StackSetDeployment documents (apiVersion, kind, \
             metadata, spec)",
            keys.iter().take(4).cloned().collect::<Vec<_>>().join(", "),
            file.display()
        ),
    })
}

impl Deployment {
    /// A short digest of the spec: the "generation" shown in /status and used to tell edits apart.
    pub fn generation(&self) -> String {
        let json = serde_json::to_vec(&self.spec).expect("a spec always serializes");
        hex::encode(&Sha256::digest(&json)[..6])
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }
}
