//! The fault layer every simulated call passes first: random throttling and 5xx errors from the seeded RNG,
//! one-shot errors for a named API operation, lost responses, and accounts whose stack operations always fail.
//! Errors carry the codes the real services send so the controller's handling is exercised as against AWS.

use std::collections::BTreeMap;

use rand::Rng;
use rand::rngs::StdRng;

use crate::error::{AwsErrorKind, Error};

/// Rates of random failures, each in 0.0..=1.0 per call (per page for listings).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Share of calls answered with throttling (`Throttling` / `TooManyRequestsException`).
    pub throttle_rate: f64,
    /// Share of calls answered with a server error (kind `Transport`).
    pub error_rate: f64,
}

/// An AWS error before it is tagged with the service and operation of the call that raised it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SimError {
    pub kind: AwsErrorKind,
    pub code: String,
    pub message: String,
}

impl SimError {
    pub fn new(kind: AwsErrorKind, code: &str, message: impl Into<String>) -> Self {
        SimError {
            kind,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        SimError::new(AwsErrorKind::Validation, "ValidationError", message)
    }

    pub fn stack_set_not_found(name: &str) -> Self {
        SimError::new(
            AwsErrorKind::NotFound,
            "StackSetNotFoundException",
            format!("StackSet {name} not found"),
        )
    }

    pub fn into_error(self, service: &'static str, operation: &'static str) -> Error {
        Error::Aws {
            service,
            operation,
            kind: self.kind,
            code: self.code,
            message: self.message,
        }
    }
}

/// The error code AWS sends for a kind, for injected errors (`fail_next`).
pub(crate) fn code_for(kind: AwsErrorKind, service: &str) -> &'static str {
    match kind {
        AwsErrorKind::OperationInProgress => "OperationInProgressException",
        AwsErrorKind::OperationIdAlreadyExists => "OperationIdAlreadyExistsException",
        AwsErrorKind::StaleRequest => "StaleRequestException",
        AwsErrorKind::StackSetNotEmpty => "StackSetNotEmptyException",
        AwsErrorKind::NameAlreadyExists => "NameAlreadyExistsException",
        AwsErrorKind::NotFound => "StackSetNotFoundException",
        AwsErrorKind::InvalidOperation => "InvalidOperationException",
        AwsErrorKind::Throttling if service == "organizations" => "TooManyRequestsException",
        AwsErrorKind::Throttling => "Throttling",
        AwsErrorKind::LimitExceeded => "LimitExceededException",
        AwsErrorKind::AccessDenied => "AccessDenied",
        AwsErrorKind::Validation => "ValidationError",
        AwsErrorKind::Transport => "InternalFailure",
        AwsErrorKind::Other => "SimulatedFailure",
    }
}

#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub rates: Faults,
    /// Injected errors still to be returned, per API operation name.
    pub next: BTreeMap<&'static str, Vec<(AwsErrorKind, u32)>>,
    /// Calls of an operation that are applied but whose answer is "lost" (a Transport error), as after a timeout.
    pub lost_responses: BTreeMap<&'static str, u32>,
    /// How many injected lost responses have fired (a test can tell that its lost answers happened).
    pub lost_fired: u64,
    /// The next call of an operation reaches the service only this much later (a call retried through
    /// throttling, or held in a partition): a caller that gives up first (drops the call) sends nothing.
    pub stalls: BTreeMap<&'static str, tokio::time::Duration>,
    /// Accounts where every stack instance operation fails, with the StatusReason.
    pub failing_accounts: BTreeMap<String, String>,
    /// Accounts whose role refuses sts:AssumeRole, with the reason (the access check's failures).
    pub denied_access: BTreeMap<String, String>,
}

impl FaultState {
    /// The error this call gets before it reaches the service, if any: one-shot injections first, then the
    /// random rates.
    pub fn before_call(
        &mut self,
        rng: &mut StdRng,
        service: &str,
        operation: &'static str,
    ) -> Option<SimError> {
        if let Some(queue) = self.next.get_mut(operation)
            && let Some((kind, remaining)) = queue.first_mut()
        {
            let kind = *kind;
            *remaining -= 1;
            if *remaining == 0 {
                queue.remove(0);
            }
            return Some(SimError::new(
                kind,
                code_for(kind, service),
                format!("injected failure for {operation}"),
            ));
        }
        if self.rates.throttle_rate > 0.0 && rng.random::<f64>() < self.rates.throttle_rate {
            return Some(SimError::new(
                AwsErrorKind::Throttling,
                code_for(AwsErrorKind::Throttling, service),
                "Rate exceeded",
            ));
        }
        if self.rates.error_rate > 0.0 && rng.random::<f64>() < self.rates.error_rate {
            return Some(SimError::new(
                AwsErrorKind::Transport,
                code_for(AwsErrorKind::Transport, service),
                "simulated server error (HTTP 503)",
            ));
        }
        None
    }

    /// After a call was applied: whether its response is lost.
    pub fn after_call(&mut self, operation: &'static str) -> Option<SimError> {
        let remaining = self.lost_responses.get_mut(operation)?;
        self.lost_fired += 1;
        *remaining -= 1;
        if *remaining == 0 {
            self.lost_responses.remove(operation);
        }
        Some(SimError::new(
            AwsErrorKind::Transport,
            "RequestTimeout",
            format!(
                "simulated lost response: {operation} was applied but its answer never arrived"
            ),
        ))
    }
}
