//! The plain-stack calls of `spec.managementAccount` (DescribeStacks, GetTemplate, CreateStack, UpdateStack,
//! DeleteStack, DetectStackDrift), in the Region the stack lives in: the deployment's first Region, which need not
//! be the Region of the daemon's own clients.

use std::time::SystemTime;

use aws_config::Region;
use aws_sdk_cloudformation::types as cfn;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::errors::{CLOUDFORMATION, Call, malformed};
use super::{AwsCloud, convert};
use crate::{DeleteStackRequest, ObservedStack, Result, StackRequest};

/// CloudFormation's answer to DescribeStacks for a name with no stack (a ValidationError, not a NotFound).
const NO_SUCH_STACK: &str = "does not exist";
/// CloudFormation's answer to an UpdateStack that changes nothing.
const NO_UPDATES: &str = "No updates are to be performed";

fn call(operation: &'static str) -> Call {
    Call::service(CLOUDFORMATION, operation)
}

/// Whether an SDK failure is a ValidationError whose message contains `text`.
fn validation_says<E: ProvideErrorMetadata, R>(
    result: &std::result::Result<R, SdkError<E, HttpResponse>>,
    text: &str,
) -> bool {
    matches!(result, Err(err) if err.as_service_error().is_some_and(|e| {
        e.code() == Some("ValidationError") && e.message().is_some_and(|m| m.contains(text))
    }))
}

/// Everything CreateStack and UpdateStack carry, on either builder (distinct SDK types with the same setters).
macro_rules! stack_fields {
    ($builder:expr, $request:expr) => {{
        let builder = $builder
            .stack_name(&$request.name)
            .set_parameters(Some(convert::parameters(&$request.parameters, false)))
            .set_capabilities(Some(convert::capabilities(&$request.capabilities)))
            .set_tags(Some(convert::tags(&$request.tags)))
            .set_role_arn($request.role_arn.clone())
            .client_request_token(&$request.client_token);
        match &$request.template_url {
            Some(url) => builder.template_url(url),
            None => builder.template_body(&$request.template_body),
        }
    }};
}

impl AwsCloud {
    /// A CloudFormation client for `region`: the daemon's own when it is that Region, else the same
    /// configuration (credentials, endpoint, retry) pointed at it.
    fn cfn_in(&self, region: &str) -> aws_sdk_cloudformation::Client {
        if region == self.region {
            return self.cfn.clone();
        }
        let config = self
            .cfn
            .config()
            .to_builder()
            .region(Region::new(region.to_string()))
            .build();
        aws_sdk_cloudformation::Client::from_conf(config)
    }

    pub(super) async fn stack(&self, name: &str, region: &str) -> Result<Option<ObservedStack>> {
        let call = call("DescribeStacks");
        let result = self
            .cfn_in(region)
            .describe_stacks()
            .stack_name(name)
            .send()
            .await;
        let absent = validation_says(&result, NO_SUCH_STACK);
        let out = match self.settle(call, result) {
            Ok(out) => out,
            Err(_) if absent => return Ok(None),
            Err(err) => return Err(err),
        };
        let Some(stack) = out.stacks.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        if stack.stack_status == Some(cfn::StackStatus::DeleteComplete) {
            return Ok(None);
        }
        observed_stack(stack, region)
            .map(Some)
            .ok_or_else(|| malformed(call, "StackName, StackId or StackStatus"))
    }

    pub(super) async fn stack_template(&self, stack_id: &str, region: &str) -> Result<String> {
        let call = call("GetTemplate");
        let out = self.settle(
            call,
            self.cfn_in(region)
                .get_template()
                .stack_name(stack_id)
                .template_stage(cfn::TemplateStage::Original)
                .send()
                .await,
        )?;
        out.template_body
            .ok_or_else(|| malformed(call, "TemplateBody"))
    }

    /// CreateStack (`create`) or UpdateStack; `Ok(false)` when the update had nothing to do.
    pub(super) async fn put_stack(&self, request: &StackRequest, create: bool) -> Result<bool> {
        let client = self.cfn_in(&request.region);
        if create {
            let builder = stack_fields!(client.create_stack(), request);
            self.settle(call("CreateStack"), builder.send().await)
                .map(|_| true)
        } else {
            let result = stack_fields!(client.update_stack(), request).send().await;
            let unchanged = validation_says(&result, NO_UPDATES);
            match self.settle(call("UpdateStack"), result) {
                Err(_) if unchanged => Ok(false),
                other => other.map(|_| true),
            }
        }
    }

    pub(super) async fn remove_stack(&self, request: &DeleteStackRequest) -> Result<()> {
        self.settle(
            call("DeleteStack"),
            self.cfn_in(&request.region)
                .delete_stack()
                .stack_name(&request.stack_id)
                .set_role_arn(request.role_arn.clone())
                .client_request_token(&request.client_token)
                .send()
                .await,
        )
        .map(drop)
    }

    pub(super) async fn stack_drift(&self, stack_id: &str, region: &str) -> Result<()> {
        self.settle(
            call("DetectStackDrift"),
            self.cfn_in(region)
                .detect_stack_drift()
                .stack_name(stack_id)
                .send()
                .await,
        )
        .map(drop)
    }
}

fn time(t: Option<&aws_smithy_types::DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

fn observed_stack(stack: cfn::Stack, region: &str) -> Option<ObservedStack> {
    let drift = stack.drift_information.as_ref();
    Some(ObservedStack {
        name: stack.stack_name.clone()?,
        region: region.to_string(),
        stack_id: stack.stack_id.clone()?,
        status: stack.stack_status.as_ref()?.as_str().to_string(),
        status_reason: stack.stack_status_reason.clone(),
        // Only what a template can declare (a parameter's logical id is alphanumeric): an endpoint that also
        // reports pseudo parameters (`AWS::Region`, ...) as the stack's (fakecloud 0.51 does) would otherwise show
        // a difference no UpdateStack can remove, planned again on every pass.
        parameters: stack
            .parameters()
            .iter()
            .filter_map(|p| {
                Some((
                    p.parameter_key.clone()?,
                    p.parameter_value.clone().unwrap_or_default(),
                ))
            })
            .filter(|(key, _)| key.bytes().all(|b| b.is_ascii_alphanumeric()))
            .collect(),
        capabilities: stack
            .capabilities()
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        tags: stack
            .tags()
            .iter()
            .filter_map(|t| Some((t.key.clone()?, t.value.clone()?)))
            .collect(),
        last_changed: time(stack.last_updated_time.as_ref()).or(time(stack.creation_time.as_ref())),
        role_arn: stack.role_arn.clone(),
        drift_status: drift
            .and_then(|d| d.stack_drift_status.as_ref())
            .map(|s| s.as_str().to_string()),
        last_drift_check: time(drift.and_then(|d| d.last_check_timestamp.as_ref())),
    })
}
