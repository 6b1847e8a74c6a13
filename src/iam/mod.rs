//! The permission guard's pure core: what a CloudFormation template grants through IAM, how two versions differ
//! in what they grant, and whether a version stays inside its policy level.
//!
//! Why it exists: an unattended template update pushes a third-party IAM policy into every account of an
//! organization. Before a new vendor version is applied, [`diff`] says whether it grants anything the applied
//! version did not (Auto updates hold such a version for approval), and [`check_allowlist`] refuses outright a
//! version that exceeds its level (a DataOnly role that could stop instances or write to S3).
//!
//! Layout: `pattern` (values and the "covers" relation, wildcards), `extract` (template -> statements),
//! `diff` (applied vs candidate), `allowlist` (per-level limits). Nothing here does I/O.

mod allowlist;
mod diff;
mod extract;
mod pattern;

#[cfg(test)]
mod tests;

pub use allowlist::{Offense, check_allowlist};
pub use diff::{PolicyDiff, diff};
pub use extract::{Effect, Grants, ManagedArn, Opaque, Statement, grants};
pub use pattern::{Item, Term};
