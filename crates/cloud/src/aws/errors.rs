//! Turning SDK failures into [`Error::Aws`]: one generic mapping for every operation of every service, so the
//! controller decides retries from [`AwsErrorKind`] alone and metrics get a static label. AccessDenied gets the
//! IAM action the call needed, because AWS's own message does not always name it (Organizations never does).

use std::fmt::Debug;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::CallAs;
use crate::error::{AwsErrorKind, Error};

/// Where the operator finds the IAM policy that grants every action stacksetd calls (management account).
pub const POLICY_FILE: &str = "deploy/iam/stacksetd-policy.json";
/// The same for stacksetd running in a delegated administrator account (`callAs: DELEGATED_ADMIN`).
/// The statement for the event queue (`events.queue_url`): `stacksetd::events::QUEUE_ACTIONS` on the queue.
pub const EVENTS_POLICY_FILE: &str = "deploy/iam/stacksetd-policy-events.json";
pub const DELEGATED_ADMIN_POLICY_FILE: &str = "deploy/iam/stacksetd-policy-delegated-admin.json";
/// The stack set name prefix the shipped policies scope stack set actions to (`stackset/Aimably*`).
pub const POLICY_STACK_SET_PREFIX: &str = "Aimably";
/// The actions the shipped policies grant only on stack sets named with that prefix (the others either name no
/// stack set, such as ListStackSets, or cannot be scoped to one, such as CreateStackSet).
pub const STACK_SET_SCOPED_ACTIONS: &[&str] = &[
    "cloudformation:DescribeStackSet",
    "cloudformation:ListStackInstances",
    "cloudformation:ListStackSetOperations",
    "cloudformation:DescribeStackSetOperation",
    "cloudformation:ListStackSetOperationResults",
    "cloudformation:ListStackSetAutoDeploymentTargets",
    "cloudformation:DetectStackSetDrift",
    "cloudformation:UpdateStackSet",
    "cloudformation:CreateStackInstances",
    "cloudformation:UpdateStackInstances",
    "cloudformation:DeleteStackInstances",
    "cloudformation:DeleteStackSet",
];

/// Service names as they appear in metrics and error messages.
pub const CLOUDFORMATION: &str = "cloudformation";
pub const ORGANIZATIONS: &str = "organizations";
pub const STS: &str = "sts";
pub const S3: &str = "s3";
pub const ACCESS_ANALYZER: &str = "access-analyzer";

/// Every API operation stacksetd calls, with the IAM action it needs. The policy file must grant each of these;
/// keep this table and `POLICY_FILE` in step.
pub const IAM_ACTIONS: &[(&str, &str, &str)] = &[
    (STS, "GetCallerIdentity", "sts:GetCallerIdentity"),
    (
        ORGANIZATIONS,
        "DescribeOrganization",
        "organizations:DescribeOrganization",
    ),
    (ORGANIZATIONS, "ListRoots", "organizations:ListRoots"),
    (
        ORGANIZATIONS,
        "ListOrganizationalUnitsForParent",
        "organizations:ListOrganizationalUnitsForParent",
    ),
    (
        ORGANIZATIONS,
        "ListAccountsForParent",
        "organizations:ListAccountsForParent",
    ),
    (
        ORGANIZATIONS,
        "ListDelegatedAdministrators",
        "organizations:ListDelegatedAdministrators",
    ),
    (
        ORGANIZATIONS,
        "ListAWSServiceAccessForOrganization",
        "organizations:ListAWSServiceAccessForOrganization",
    ),
    (
        CLOUDFORMATION,
        "DescribeOrganizationsAccess",
        "cloudformation:DescribeOrganizationsAccess",
    ),
    (
        CLOUDFORMATION,
        "ActivateOrganizationsAccess",
        "cloudformation:ActivateOrganizationsAccess",
    ),
    (
        CLOUDFORMATION,
        "DescribeStackSet",
        "cloudformation:DescribeStackSet",
    ),
    (
        CLOUDFORMATION,
        "ListStackInstances",
        "cloudformation:ListStackInstances",
    ),
    (
        CLOUDFORMATION,
        "ListStackSetOperations",
        "cloudformation:ListStackSetOperations",
    ),
    (
        CLOUDFORMATION,
        "DescribeStackSetOperation",
        "cloudformation:DescribeStackSetOperation",
    ),
    (
        CLOUDFORMATION,
        "ListStackSetOperationResults",
        "cloudformation:ListStackSetOperationResults",
    ),
    (
        CLOUDFORMATION,
        "ListStackSetAutoDeploymentTargets",
        "cloudformation:ListStackSetAutoDeploymentTargets",
    ),
    (
        CLOUDFORMATION,
        "CreateStackSet",
        "cloudformation:CreateStackSet",
    ),
    (
        CLOUDFORMATION,
        "UpdateStackSet",
        "cloudformation:UpdateStackSet",
    ),
    (
        CLOUDFORMATION,
        "CreateStackInstances",
        "cloudformation:CreateStackInstances",
    ),
    (
        CLOUDFORMATION,
        "UpdateStackInstances",
        "cloudformation:UpdateStackInstances",
    ),
    (
        CLOUDFORMATION,
        "DeleteStackInstances",
        "cloudformation:DeleteStackInstances",
    ),
    (
        CLOUDFORMATION,
        "DeleteStackSet",
        "cloudformation:DeleteStackSet",
    ),
    (
        CLOUDFORMATION,
        "DetectStackSetDrift",
        "cloudformation:DetectStackSetDrift",
    ),
    (STS, "AssumeRole", "sts:AssumeRole"),
    (
        CLOUDFORMATION,
        "ListStackSets",
        "cloudformation:ListStackSets",
    ),
    // Only with spec.template.stagingBucket (templates over 51,200 bytes).
    (S3, "PutObject", "s3:PutObject"),
    // Only with spec.template.accessAnalyzer.
    (
        ACCESS_ANALYZER,
        "CheckNoNewAccess",
        "access-analyzer:CheckNoNewAccess",
    ),
];

/// The calls of `spec.managementAccount: {deploy: true}` (a plain stack in the management account), granted by
/// their own policy file, [`MANAGEMENT_STACK_POLICY_FILE`], not by the main ones: only deployments that keep such
/// a stack need them.
pub const MANAGEMENT_STACK_IAM_ACTIONS: &[(&str, &str, &str)] = &[
    (
        CLOUDFORMATION,
        "DescribeStacks",
        "cloudformation:DescribeStacks",
    ),
    (CLOUDFORMATION, "GetTemplate", "cloudformation:GetTemplate"),
    (CLOUDFORMATION, "CreateStack", "cloudformation:CreateStack"),
    (CLOUDFORMATION, "UpdateStack", "cloudformation:UpdateStack"),
    (CLOUDFORMATION, "DeleteStack", "cloudformation:DeleteStack"),
    (
        CLOUDFORMATION,
        "DetectStackDrift",
        "cloudformation:DetectStackDrift",
    ),
];

/// The statements for [`MANAGEMENT_STACK_IAM_ACTIONS`] (and iam:PassRole on the stack's service role).
pub const MANAGEMENT_STACK_POLICY_FILE: &str = "deploy/iam/stacksetd-policy-management-stack.json";

/// CloudFormation checks this extra action whenever a call is made with CallAs=DELEGATED_ADMIN; a missing grant is a
/// common cause of AccessDenied for delegated administrators.
pub const DELEGATED_ADMIN_ACTION: &str = "organizations:ListDelegatedAdministrators";

/// The IAM action an API operation needs, from [`IAM_ACTIONS`].
pub fn iam_action(service: &str, operation: &str) -> Option<&'static str> {
    IAM_ACTIONS
        .iter()
        .chain(MANAGEMENT_STACK_IAM_ACTIONS)
        .find(|(s, o, _)| *s == service && *o == operation)
        .map(|(_, _, action)| *action)
}

/// One API call as the error mapping and the call counter see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    pub service: &'static str,
    pub operation: &'static str,
    /// The CallAs the request carried (CloudFormation only); decides the delegated-admin hint on AccessDenied.
    pub call_as: Option<CallAs>,
}

impl Call {
    pub fn cloudformation(operation: &'static str, call_as: CallAs) -> Self {
        Call {
            service: CLOUDFORMATION,
            operation,
            call_as: Some(call_as),
        }
    }
    pub fn organizations(operation: &'static str) -> Self {
        Call {
            service: ORGANIZATIONS,
            operation,
            call_as: None,
        }
    }
    pub fn sts(operation: &'static str) -> Self {
        Call {
            service: STS,
            operation,
            call_as: None,
        }
    }
    pub fn service(service: &'static str, operation: &'static str) -> Self {
        Call {
            service,
            operation,
            call_as: None,
        }
    }
}

/// Map any SDK failure to [`Error::Aws`]. Service errors keep AWS's code and message; failures before a response
/// (dispatch, timeout) and responses that could not be read become [`AwsErrorKind::Transport`].
pub(crate) fn map_sdk_error<E>(call: Call, err: &SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(service_err) => {
            let meta = service_err.err();
            match meta.code() {
                Some(code) => {
                    let kind = AwsErrorKind::from_code(code);
                    let aws_message = meta.message().unwrap_or("no message given");
                    let message = if kind == AwsErrorKind::AccessDenied {
                        access_denied_message(call, aws_message)
                    } else {
                        aws_message.to_string()
                    };
                    aws_error(call, kind, code.to_string(), message)
                }
                // No error code: typically a proxy or load balancer answered (an HTML 502/503), not the service.
                None => {
                    let status = service_err.raw().status().as_u16();
                    let kind = if status >= 500 {
                        AwsErrorKind::Transport
                    } else {
                        AwsErrorKind::Other
                    };
                    aws_error(
                        call,
                        kind,
                        format!("HTTP{status}"),
                        format!(
                            "HTTP {status} without an AWS error code (a proxy or load balancer answered, not the \
                             service): {}",
                            one_line(err)
                        ),
                    )
                }
            }
        }
        SdkError::ConstructionFailure(_) => aws_error(
            call,
            AwsErrorKind::Validation,
            "ConstructionFailure".to_string(),
            one_line(err),
        ),
        SdkError::TimeoutError(_) => transport(call, "Timeout", err),
        SdkError::DispatchFailure(_) => transport(call, "NoResponse", err),
        SdkError::ResponseError(_) => transport(call, "UnreadableResponse", err),
        _ => transport(call, "Unknown", err),
    }
}

/// A response that parsed but lacks a field stacksetd cannot do without.
pub(crate) fn malformed(call: Call, what: &str) -> Error {
    aws_error(
        call,
        AwsErrorKind::Transport,
        "MalformedResponse".to_string(),
        format!("the response has no {what}"),
    )
}

fn transport<E>(call: Call, code: &str, err: &SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    aws_error(
        call,
        AwsErrorKind::Transport,
        code.to_string(),
        explain_transport(err),
    )
}

/// A failure before any answer from AWS, in one line: what happened and what to check. The SDK's own text nests
/// each cause in the next and ends with their Debug form (`DispatchFailure(ConnectorError { .. })`,
/// `ProviderChainError { attempts: [..] }`): a person needs the innermost cause and the fix.
fn explain_transport(err: &(dyn std::error::Error + 'static)) -> String {
    let cause = one_line(err);
    let lower = cause.to_ascii_lowercase();
    let fix = if lower.contains("no credentials") || lower.contains("credential provider") {
        Some(
            "no AWS credentials: give the management account's credentials through the standard chain \
             (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE with ~/.aws/credentials, a web identity \
             token (IRSA), the ECS task role or the EC2 instance profile)",
        )
    } else if lower.contains("connection refused") {
        Some(
            "nothing listens at the endpoint: check AWS_ENDPOINT_URL (or aws.endpoint_url) and that it is running",
        )
    } else if lower.contains("dns error")
        || lower.contains("failed to lookup")
        || lower.contains("name or service")
    {
        Some(
            "the endpoint's host name does not resolve: check AWS_REGION (or aws.region), the network and the proxy",
        )
    } else if lower.contains("certificate") || lower.contains("tls") {
        Some("the TLS handshake failed: check the endpoint and any proxy that intercepts TLS")
    } else if lower.contains("timed out") || lower.contains("timeout") {
        Some("no answer in time: check the network and the proxy (stacksetd retries with backoff)")
    } else {
        None
    };
    // The credential chain's own text lists every source it tried, each with its reason: the fix names them.
    let cause = cause.split(" Attempted:").next().unwrap_or(&cause);
    match fix {
        Some(fix) => format!("{fix} ({cause})"),
        None => cause.to_string(),
    }
}

/// An error and its causes in one line, without Debug output: each cause's text once (`error::chain`'s rule),
/// line breaks folded.
pub(crate) fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let folded = crate::error::cause_texts(err)
        .into_iter()
        .map(|text| text.split_whitespace().collect::<Vec<_>>().join(" "));
    let parts = crate::error::distinct_causes(folded);
    // The outermost texts are generic ("dispatch failure", "io error", "other"): keep the most specific last
    // three.
    let start = parts.len().saturating_sub(3);
    parts[start..].join(": ")
}

fn aws_error(call: Call, kind: AwsErrorKind, code: String, message: String) -> Error {
    Error::Aws {
        service: call.service,
        operation: call.operation,
        kind,
        code,
        message,
    }
}

/// AWS's message (it names the denied action when AWS gives it) plus the action this call needed and where the
/// policy that grants it lives.
fn access_denied_message(call: Call, aws_message: &str) -> String {
    let fallback;
    let action = match iam_action(call.service, call.operation)
        .or_else(|| crate::queue::iam_action(call.service, call.operation))
    {
        Some(action) => action,
        None => {
            fallback = format!("{}:{}", call.service, call.operation);
            &fallback
        }
    };
    let file = match call.call_as {
        _ if call.service == crate::queue::SERVICE => EVENTS_POLICY_FILE,
        _ if MANAGEMENT_STACK_IAM_ACTIONS
            .iter()
            .any(|(_, _, a)| *a == action) =>
        {
            MANAGEMENT_STACK_POLICY_FILE
        }
        Some(CallAs::DelegatedAdmin) => DELEGATED_ADMIN_POLICY_FILE,
        _ => POLICY_FILE,
    };
    let mut text = format!(
        "{aws_message} - stacksetd needs IAM action {action} for this call: grant it to the credentials stacksetd \
         runs with ({file} grants it)"
    );
    if STACK_SET_SCOPED_ACTIONS.contains(&action) {
        text.push_str(&format!(
            "; that policy scopes stack set actions to names starting with {POLICY_STACK_SET_PREFIX}: \
             change the prefix in its Resource lines if your stack set is named otherwise"
        ));
    }
    if call.call_as == Some(CallAs::DelegatedAdmin) {
        text.push_str(&format!(
            "; calling as DELEGATED_ADMIN also needs {DELEGATED_ADMIN_ACTION}"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure before any answer is one line: the fix first, then the innermost causes, never the SDK's Debug
    /// output; the credential chain's list of attempts is left out.
    #[test]
    fn a_failure_before_any_answer_is_one_line_with_the_fix() {
        #[derive(Debug)]
        struct Chain(&'static str, Option<Box<Chain>>);
        impl std::fmt::Display for Chain {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Chain {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|c| c as _)
            }
        }
        let chain = |texts: &[&'static str]| {
            texts
                .iter()
                .rev()
                .fold(None, |inner, text| Some(Box::new(Chain(text, inner))))
                .unwrap()
        };
        let refused = chain(&[
            "dispatch failure",
            "io error",
            "client error (Connect)",
            "tcp connect error",
            "Connection refused (os error 111)",
        ]);
        let text = explain_transport(refused.as_ref());
        assert_eq!(
            text,
            "nothing listens at the endpoint: check AWS_ENDPOINT_URL (or aws.endpoint_url) and that it is running \
             (client error (Connect): tcp connect error: Connection refused (os error 111))"
        );
        let no_credentials = chain(&[
            "dispatch failure",
            "other",
            "the credential provider was not enabled",
            "no credentials found in chain. Attempted:\n  Environment: not set\n  Profile: not enabled",
        ]);
        let text = explain_transport(no_credentials.as_ref());
        assert!(
            text.starts_with("no AWS credentials: give the management account's credentials"),
            "{text}"
        );
        assert!(
            !text.contains("Attempted") && !text.contains('\n') && !text.contains("Profile:"),
            "{text}"
        );
        let other = chain(&["response error", "unexpected EOF"]);
        assert_eq!(
            explain_transport(other.as_ref()),
            "response error: unexpected EOF"
        );
    }

    /// The IAM table names the action of every mutating call (the AccessDenied advice and the shipped policy's
    /// check both read it).
    #[test]
    fn every_mutating_call_has_its_iam_action() {
        for call in crate::calls::MUTATING {
            assert_eq!(
                iam_action(CLOUDFORMATION, call),
                Some(format!("cloudformation:{call}").as_str()),
                "{call}"
            );
        }
    }

    #[test]
    fn every_listed_action_is_service_colon_operation() {
        for (service, operation, action) in IAM_ACTIONS {
            assert_eq!(*action, format!("{service}:{operation}"));
        }
    }

    #[test]
    fn access_denied_names_action_and_policy() {
        let call = Call::cloudformation("DescribeStackSet", CallAs::DelegatedAdmin);
        let text = access_denied_message(call, "User: x is not authorized");
        assert!(text.starts_with("User: x is not authorized"));
        assert!(text.contains("cloudformation:DescribeStackSet"));
        assert!(text.contains(DELEGATED_ADMIN_POLICY_FILE));
        assert!(text.contains(DELEGATED_ADMIN_ACTION));
        assert!(
            text.contains(POLICY_STACK_SET_PREFIX),
            "a scoped stack set action names the prefix: {text}"
        );

        let text = access_denied_message(Call::organizations("ListRoots"), "denied");
        assert!(text.contains("organizations:ListRoots"));
        assert!(text.contains(POLICY_FILE));
        assert!(!text.contains(DELEGATED_ADMIN_ACTION));
        assert!(!text.contains(POLICY_STACK_SET_PREFIX));

        // The event queue's calls name the action IAM checks (a batch delete is sqs:DeleteMessage) and the
        // events policy file.
        for (operation, action) in [
            ("ReceiveMessage", "sqs:ReceiveMessage"),
            ("DeleteMessageBatch", "sqs:DeleteMessage"),
            ("GetQueueAttributes", "sqs:GetQueueAttributes"),
        ] {
            let text =
                access_denied_message(Call::service(crate::queue::SERVICE, operation), "denied");
            assert!(
                text.contains(&format!("IAM action {action} "))
                    && text.contains(EVENTS_POLICY_FILE),
                "{text}"
            );
        }
    }
}
