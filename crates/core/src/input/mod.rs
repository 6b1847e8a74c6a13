//! What the operator's two YAML files (the desired state and the daemon's settings) share, below both readers:
//! where every field is (`locate`, so problems name FILE:LINE:COLUMN), the known word nearest a typo
//! (`closest`), durations as operators write them (`HumanDuration`), and a file's problems (`Invalid`).

pub mod locate;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the way operators write them (`30s`, `5m`, `24h`), parsed with humantime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HumanDuration(pub Duration);

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{text}` is not a duration ({e}); write e.g. 30s, 5m, 24h"
                ))
            })
    }
}

/// The candidate nearest to `word` when it is near enough to be a likely typo: a case-insensitive edit distance of
/// at most a third of the word (at least 2), or one being a prefix of the other (`maxConcurrentPercent`).
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| {
            let cl = c.to_ascii_lowercase();
            let prefix = lower.len() >= 4 && (cl.starts_with(&lower) || lower.starts_with(&cl));
            let d = if prefix {
                1
            } else {
                edit_distance(&lower, &cl)
            };
            (d, *c)
        })
        .filter(|(d, _)| *d <= (word.chars().count() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars; inputs are short field names, so the quadratic cost is nothing. Inputs longer
/// than `MAX_COMPARED` are not typos of a field name and are cut, which keeps hostile keys cheap.
pub fn edit_distance(a: &str, b: &str) -> usize {
    const MAX_COMPARED: usize = 256;
    let a: Vec<char> = a.chars().take(MAX_COMPARED).collect();
    let b: Vec<char> = b.chars().take(MAX_COMPARED).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// One thing wrong with an input file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; 0 when the position is unknown.
    pub line: usize,
    /// 1-based; 0 when the position is unknown.
    pub column: usize,
    /// Dotted path of the field, e.g. `spec.operationPreferences.maxConcurrentCount`; may be empty.
    pub field: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    pub problems: Vec<Problem>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// The lowercase hex SHA-256 of `bytes`: how files and templates are named in logs, /status and tags.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
