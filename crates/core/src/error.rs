//! The one error type of the library. Every variant has a static `metric_label()` so errors can be counted in
//! `stacksetd_reconcile_errors_total{reason}` without unbounded label values.

use std::path::PathBuf;

use crate::input::Invalid;

/// What kind of AWS failure happened; decides retry behaviour in the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AwsErrorKind {
    /// Another operation holds the stack set's slot: wait and retry (the SDK does not retry it).
    OperationInProgress,
    /// That OperationId was already submitted: adopt it.
    OperationIdAlreadyExists,
    /// Another operation ran since the request was prepared.
    StaleRequest,
    /// DeleteStackSet while instances remain.
    StackSetNotEmpty,
    /// CreateStackSet with a taken name.
    NameAlreadyExists,
    /// StackSetNotFound / OperationNotFound / StackInstanceNotFound.
    NotFound,
    /// The request is invalid now (e.g. trusted access off, wrong permission model).
    InvalidOperation,
    /// Rate exceeded / TooManyRequests after the SDK's own retries.
    Throttling,
    /// A quota (LimitExceededException).
    LimitExceeded,
    /// AccessDenied / not authorized for an action.
    AccessDenied,
    /// The request failed AWS's validation.
    Validation,
    /// Transport: timeouts, connection errors, unparsable responses.
    Transport,
    Other,
}

impl AwsErrorKind {
    pub fn label(self) -> &'static str {
        match self {
            AwsErrorKind::OperationInProgress => "operation_in_progress",
            AwsErrorKind::OperationIdAlreadyExists => "operation_id_exists",
            AwsErrorKind::StaleRequest => "stale_request",
            AwsErrorKind::StackSetNotEmpty => "stack_set_not_empty",
            AwsErrorKind::NameAlreadyExists => "name_exists",
            AwsErrorKind::NotFound => "not_found",
            AwsErrorKind::InvalidOperation => "invalid_operation",
            AwsErrorKind::Throttling => "throttling",
            AwsErrorKind::LimitExceeded => "limit_exceeded",
            AwsErrorKind::AccessDenied => "access_denied",
            AwsErrorKind::Validation => "validation",
            AwsErrorKind::Transport => "transport",
            AwsErrorKind::Other => "aws_other",
        }
    }

    /// Map an AWS error code (ErrorMetadata::code) to a kind.
    pub fn from_code(code: &str) -> Self {
        match code {
            "OperationInProgressException" => AwsErrorKind::OperationInProgress,
            "OperationIdAlreadyExistsException" => AwsErrorKind::OperationIdAlreadyExists,
            "StaleRequestException" => AwsErrorKind::StaleRequest,
            "StackSetNotEmptyException" => AwsErrorKind::StackSetNotEmpty,
            // CreateStackSet's, CreateStack's, and a ClientRequestToken already used: sent before.
            "NameAlreadyExistsException"
            | "AlreadyExistsException"
            | "TokenAlreadyExistsException" => AwsErrorKind::NameAlreadyExists,
            "StackSetNotFoundException"
            | "OperationNotFoundException"
            | "StackInstanceNotFoundException"
            | "AWSOrganizationsNotInUseException"
            | "ParentNotFoundException" => AwsErrorKind::NotFound,
            "InvalidOperationException" => AwsErrorKind::InvalidOperation,
            "Throttling"
            | "ThrottlingException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded" => AwsErrorKind::Throttling,
            "LimitExceededException" => AwsErrorKind::LimitExceeded,
            "AccessDenied"
            | "AccessDeniedException"
            | "AccessDeniedForDependencyException"
            | "UnauthorizedOperation" => AwsErrorKind::AccessDenied,
            "ValidationError" | "ValidationException" | "InvalidInputException" => {
                AwsErrorKind::Validation
            }
            _ => AwsErrorKind::Other,
        }
    }
}

/// An error with its whole cause chain, each cause once: `a: b: c`. A cause whose text the message already
/// carries (thiserror messages often quote their source) is not repeated.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    join_causes(cause_texts(error))
}

/// The texts of an error and of each of its causes, outermost first.
pub fn cause_texts(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut messages = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        messages.push(cause.to_string());
        source = cause.source();
    }
    messages
}

/// Join messages outermost first, leaving out any already contained in what came before.
pub fn join_causes(messages: impl IntoIterator<Item = String>) -> String {
    distinct_causes(messages).join(": ")
}

/// The messages outermost first, leaving out empty ones and any already contained in what came before (as
/// [`join_causes`] joins them).
pub fn distinct_causes(messages: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    let mut joined = String::new();
    for message in messages {
        let message = message.trim();
        if message.is_empty() || joined.contains(message) {
            continue;
        }
        if !joined.is_empty() {
            joined.push_str(": ");
        }
        joined.push_str(message);
        kept.push(message.to_string());
    }
    kept
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The desired-state file is invalid; carries every problem with file, line and column.
    #[error("{0}")]
    Invalid(#[from] Invalid),

    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The template could not be fetched, parsed or used.
    #[error("template {url}: {reason}")]
    Template {
        url: String,
        reason: String,
        label: &'static str,
    },

    /// An AWS call failed after the SDK's own retries.
    #[error("{service}:{operation} failed ({code}): {message}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        kind: AwsErrorKind,
        code: String,
        message: String,
    },

    /// A stack set operation ended FAILED/STOPPED, or SUCCEEDED with failed instances.
    #[error("{}", describe_failed_operation(.operation_id, .action, .status, .failures))]
    OperationFailed {
        operation_id: String,
        action: String,
        status: String,
        failures: Vec<OperationResult>,
    },

    /// The observed stack set cannot be brought to the desired state without a destructive step stacksetd will
    /// not take by itself (e.g. a SELF_MANAGED stack set of the same name).
    #[error("{0}")]
    Conflict(String),

    /// Daemon settings are invalid.
    #[error("settings: {0}")]
    Settings(String),

    /// stacksetd is shutting down: a mutating call was refused before it reached AWS (the shutdown gate). Not a
    /// failure of the pass: the next start plans the step again.
    #[error("stacksetd is shutting down: {0} not sent; the next start plans it again")]
    ShuttingDown(String),

    /// This replica does not hold the deployment's lease (leases.table): a mutating call was refused before it
    /// reached AWS. Not a failure of the pass: the replica holding the lease reconciles it.
    #[error("the lease on {deployment} is not held by this replica: {call} not sent ({reason})")]
    LeaseLost {
        deployment: String,
        call: String,
        reason: String,
    },

    /// A mutating call ran into its lease's call deadline (`leases::Leases::ensure_held_since`: the local
    /// deadline less a margin for the network) and was abandoned, its retries with it, so that it cannot reach
    /// AWS once another replica may hold the lease. It may still have been applied: its OperationId is looked up
    /// before anything else is sent. Not a failure of the pass.
    #[error(
        "the lease on {deployment} reached its call deadline: {call} abandoned (it may have been applied; its \
         OperationId is looked up before anything else is sent)"
    )]
    CallAbandoned { deployment: String, call: String },

    /// The deployment's desired state changed while a pass was under way (an edit, or a replica that was paused
    /// reading the edit made meanwhile): a mutating call planned from the old one was refused before it reached
    /// AWS. Not a failure: the next pass plans from the new state at once.
    #[error(
        "the desired state of {deployment} changed since the pass began: {call} not sent; the next pass uses the new one"
    )]
    DesiredChanged { deployment: String, call: String },

    /// The lease table could not be read or written (DynamoDB), or is not fit for leases.
    #[error("lease table {table}: {message}")]
    Leases { table: String, message: String },

    /// The organization or the credentials are not fit for stacksetd to act (wrong account, not a delegated
    /// administrator, trusted access off, a target OU that does not exist, ...): nothing is changed, and the
    /// message says what to fix. Retrying alone does not help.
    #[error("{message}")]
    Preflight {
        reason: &'static str,
        message: String,
    },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid_desired_state",
            Error::Io { .. } => "io",
            Error::Template { label, .. } => label,
            Error::Aws { kind, .. } => kind.label(),
            Error::OperationFailed { .. } => "operation_failed",
            Error::Conflict(_) => "conflict",
            Error::Settings(_) => "settings",
            Error::ShuttingDown(_) => "shutting_down",
            Error::LeaseLost { .. } => "lease_lost",
            Error::CallAbandoned { .. } => "call_abandoned",
            Error::DesiredChanged { .. } => "desired_changed",
            Error::Leases { .. } => "lease_table",
            Error::Preflight { reason, .. } => reason,
        }
    }

    pub fn aws_kind(&self) -> Option<AwsErrorKind> {
        match self {
            Error::Aws { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub fn is_aws(&self, kind: AwsErrorKind) -> bool {
        self.aws_kind() == Some(kind)
    }
}

/// How many failing instances an error message lists before it summarises the rest.
const FAILURES_SHOWN: usize = 10;

fn describe_failed_operation(
    id: &str,
    action: &str,
    status: &str,
    failures: &[OperationResult],
) -> String {
    let mut text = format!("operation {id} ({action}) ended {status}");
    if failures.is_empty() {
        return text;
    }
    text.push_str(&format!(" with {} failed instance(s):", failures.len()));
    for failure in failures.iter().take(FAILURES_SHOWN) {
        text.push_str(&format!(
            "\n  account {} in {}: {} - {}",
            failure.account,
            failure.region,
            failure.status,
            failure.reason.as_deref().unwrap_or("no reason given")
        ));
    }
    if failures.len() > FAILURES_SHOWN {
        text.push_str(&format!(
            "\n  ... and {} more",
            failures.len() - FAILURES_SHOWN
        ));
    }
    text
}

/// One row of ListStackSetOperationResults: why an account/Region failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OperationResult {
    pub account: String,
    pub region: String,
    pub status: String,
    pub reason: Option<String>,
}

/// A bounded label (a reason, a kind, an action name): `&'static str` where stacksetd writes it, owned where
/// `stacksetd status` reads a document back.
pub type Label = std::borrow::Cow<'static, str>;
