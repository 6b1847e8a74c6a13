//! stacksetd's bottom layers, a crate of their own so that nothing here can import the layers above it (the
//! compiler refuses what `tests/layers.rs` checks for the modules of the main crate):
//!
//! - [`desired`]: the desired-state file: its contract, strict parsing and every rule, with FILE:LINE:COLUMN.
//! - [`error`]: the one error type, each variant with a static metric label.
//! - [`input`]: what the desired state's and the settings' readers share: field locations, typo suggestions,
//!   durations, a file's problems, digests.
//! - `fixtures` (tests, and other crates' tests through the `test-support` feature): the deployment builder and
//!   the seeded proptest runner.

pub mod desired;
pub mod error;
#[cfg(any(test, feature = "test-support"))]
pub mod fixtures;
pub mod input;

pub use error::Error;
