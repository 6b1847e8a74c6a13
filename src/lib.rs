//! stacksetd: keeps an AWS Organization's vendor-access CloudFormation StackSet converged to a declarative
//! desired state. See DESIGN.md for the architecture; `controller::reconcile` is the entry point of a pass.

pub mod cloud;
pub mod controller;
pub mod desired;
pub mod error;
pub mod plan;
pub mod template;

pub use error::Error;
