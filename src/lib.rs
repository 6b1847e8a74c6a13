//! stacksetd: keeps an AWS Organization's vendor-access CloudFormation StackSet converged to a declarative
//! desired state. ARCHITECTURE.md is the map (glossary, layers, the path from a file edit to an AWS call);
//! `controller::reconcile` is the entry point of a pass.
//!
//! # Layout
//!
//! - [`desired`]: the desired-state file: its contract, strict parsing and every rule, with FILE:LINE:COLUMN;
//!   [`input`]: what it shares with the settings' reader (field locations, typo suggestions, durations).
//! - [`settings`]: the daemon's settings (defaults < file < `STACKSETD_*` < flags), every value bounded.
//! - [`file_watch`]: following the file through every way editors and Kubernetes replace it.
//! - [`controller`]: one pass of one deployment: observe, decide, act; requeue as a return value; its
//!   `preflight` (may stacksetd act at all) and `ownership` (which stack sets are its own).
//! - [`plan`]: the pure decision of what to change, one function per ordering rule.
//! - [`coverage`]: which accounts the targets reach, against the instances; [`accounts`]: every account's
//!   state in the organization's tree (the page and `status --tree`).
//! - [`template`]: fetching templates, reading them as CloudFormation does, the update decision.
//! - [`guard`]: what a template can do, and whether a new version grants more.
//! - [`cloud`]: everything asked of AWS behind the `Cloud` trait: the SDK (`cloud::aws`) and the simulator
//!   (`cloud::sim`).
//! - [`daemon`]: `stacksetd run`: the main loop, one worker per deployment, the pollers (templates, the member
//!   access check), shutdown, systemd.
//! - [`http`], [`status`], [`page`], [`metrics`], [`telemetry`], [`redact`]: what the daemon shows (the page
//!   is `GET /`), and what it never shows.
//! - [`cli`], [`demo`]: the command line's output and commands (`src/main.rs` parses the flags); [`build`]: what
//!   this binary is (version, commit, build date).
//! - [`events`]: AWS's events (EventBridge through SQS): what one says, which deployments it concerns, and the
//!   ledger that lets a converged pass trust the queue (the reader is `daemon::events`).
//! - [`leases`]: per-deployment leases on a DynamoDB table, so replicas share deployments (one holder each).
//! - [`error`]: the one error type, each variant with a static metric label.
//! - `fixtures` (unit tests only): the deployment and organization builders the unit tests share.

pub mod accounts;
pub mod build;
pub mod cli;
pub mod controller;
pub mod coverage;
pub mod daemon;
pub mod demo;
pub mod events;
pub mod file_watch;
#[cfg(test)]
mod fixtures;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod http;
pub mod leases;
pub mod metrics;
pub mod page;
pub mod plan;
pub mod redact;
pub mod settings;
pub mod status;
pub mod telemetry;
pub mod template;

pub use stacksetd_cloud as cloud;
pub use stacksetd_core::{Error, desired, error, input};
