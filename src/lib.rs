//! stacksetd: keeps an AWS Organization's vendor-access CloudFormation StackSet converged to a declarative
//! desired state. See DESIGN.md for the architecture; `controller::reconcile` is the entry point of a pass.

pub mod access;
pub mod cloud;
pub mod controller;
pub mod coverage;
pub mod daemon;
pub mod demo;
pub mod desired;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod guard;
pub mod metrics;
pub mod output;
pub mod plan;
pub mod preflight;
pub mod redact;
pub mod review_cmd;
pub mod settings;
pub mod status;
pub mod status_view;
pub mod telemetry;
pub mod template;
pub mod watch;

pub use error::Error;
