//! The management account's plain stack on the SDK (`cloud/aws/stacks.rs`): what each call sends, how each
//! answer reads, and CloudFormation's particular answers (a missing stack is a ValidationError, an update with
//! nothing to do is one too).

use super::*;
use stacksetd::cloud::aws::errors::MANAGEMENT_STACK_POLICY_FILE;
use stacksetd::cloud::{DeleteStackRequest, StackRequest};

const ARN: &str = "arn:aws:cloudformation:eu-west-1:123456789012:stack/AimablyDataOnly/0b1f";

fn request() -> StackRequest {
    StackRequest {
        name: "AimablyDataOnly".into(),
        region: "eu-west-1".into(),
        template_body: "{\"Resources\": {}}".into(),
        template_url: None,
        parameters: BTreeMap::from([("ExternalId".into(), "abc".into())]),
        capabilities: BTreeSet::from(["CAPABILITY_NAMED_IAM".into()]),
        tags: BTreeMap::from([("stacksetd.dev/deployment".into(), "aimably".into())]),
        role_arn: Some("arn:aws:iam::123456789012:role/StacksetdExecution".into()),
        client_token: "stacksetd-create-stack-0123456789abcdef0123-0".into(),
    }
}

#[tokio::test]
async fn describe_stacks_for_a_missing_stack_is_none() {
    let rule = mock!(aws_sdk_cloudformation::Client::describe_stacks)
        .match_requests(|r| r.stack_name() == Some("AimablyDataOnly"))
        .then_error(|| {
            cfn_op::describe_stacks::DescribeStacksError::generic(meta(
                "ValidationError",
                "Stack with id AimablyDataOnly does not exist",
            ))
        });
    let cloud = cfn_cloud(&[&rule]);
    let found = cloud
        .describe_stack("AimablyDataOnly", "eu-west-1")
        .await
        .expect("absent is not an error");
    assert_eq!(found, None);
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn describe_stacks_other_validation_errors_stay_errors() {
    let rule = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_error(|| {
        cfn_op::describe_stacks::DescribeStacksError::generic(meta(
            "ValidationError",
            "1 validation error detected: Value at 'stackName' failed to satisfy constraint",
        ))
    });
    let err = cfn_cloud(&[&rule])
        .describe_stack("bad name", "eu-west-1")
        .await
        .expect_err("an error");
    assert_eq!(aws_parts(&err).2, AwsErrorKind::Validation);
}

#[tokio::test]
async fn describe_stacks_reads_every_field() {
    let rule = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_output(|| {
        cfn_op::describe_stacks::DescribeStacksOutput::builder()
            .stacks(
                cfn::Stack::builder()
                    .stack_id(ARN)
                    .stack_name("AimablyDataOnly")
                    .stack_status(cfn::StackStatus::UpdateRollbackComplete)
                    .stack_status_reason("Resource creation cancelled")
                    .creation_time(DateTime::from_secs(1_700_000_000))
                    .last_updated_time(DateTime::from_secs(1_700_000_600))
                    .parameters(
                        cfn::Parameter::builder()
                            .parameter_key("ExternalId")
                            .parameter_value("****")
                            .build(),
                    )
                    // A pseudo parameter reported as the stack's (fakecloud 0.51): no template declares it.
                    .parameters(
                        cfn::Parameter::builder()
                            .parameter_key("AWS::Region")
                            .parameter_value("eu-west-1")
                            .build(),
                    )
                    .role_arn("arn:aws:iam::123456789012:role/StacksetdExecution")
                    .capabilities(cfn::Capability::CapabilityNamedIam)
                    .tags(cfn::Tag::builder().key("team").value("platform").build())
                    .drift_information(
                        cfn::StackDriftInformation::builder()
                            .stack_drift_status(cfn::StackDriftStatus::Drifted)
                            .last_check_timestamp(DateTime::from_secs(1_700_001_000))
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let stack = cfn_cloud(&[&rule])
        .describe_stack("AimablyDataOnly", "eu-west-1")
        .await
        .expect("answer")
        .expect("a stack");
    assert_eq!(stack.stack_id, ARN);
    assert_eq!(stack.region, "eu-west-1");
    assert_eq!(stack.status, "UPDATE_ROLLBACK_COMPLETE");
    assert!(stack.usable() && !stack.in_progress() && !stack.dead());
    assert_eq!(
        stack.status_reason.as_deref(),
        Some("Resource creation cancelled")
    );
    assert_eq!(
        stack.parameters.get("ExternalId").map(String::as_str),
        Some("****")
    );
    assert_eq!(
        stack.parameters.len(),
        1,
        "pseudo parameters dropped: {:?}",
        stack.parameters
    );
    assert_eq!(
        stack.role_arn.as_deref(),
        Some("arn:aws:iam::123456789012:role/StacksetdExecution")
    );
    assert!(stack.capabilities.contains("CAPABILITY_NAMED_IAM"));
    assert_eq!(stack.tags.get("team").map(String::as_str), Some("platform"));
    assert_eq!(stack.drift_status.as_deref(), Some("DRIFTED"));
    let secs =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(
        stack.last_changed.map(secs),
        Some(1_700_000_600),
        "LastUpdatedTime first"
    );
    assert_eq!(stack.last_drift_check.map(secs), Some(1_700_001_000));
}

#[tokio::test]
async fn a_deleted_stack_reads_as_none() {
    let rule = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_output(|| {
        cfn_op::describe_stacks::DescribeStacksOutput::builder()
            .stacks(
                cfn::Stack::builder()
                    .stack_id(ARN)
                    .stack_name("AimablyDataOnly")
                    .stack_status(cfn::StackStatus::DeleteComplete)
                    .build(),
            )
            .build()
    });
    let found = cfn_cloud(&[&rule])
        .describe_stack("AimablyDataOnly", "eu-west-1")
        .await
        .expect("answer");
    assert_eq!(found, None);
}

#[tokio::test]
async fn create_stack_sends_template_parameters_capabilities_tags_role_and_token() {
    let rule = mock!(aws_sdk_cloudformation::Client::create_stack)
        .match_requests(|r| {
            let request = request();
            r.stack_name() == Some("AimablyDataOnly")
                && r.template_body() == Some("{\"Resources\": {}}")
                && r.template_url().is_none()
                && r.parameters()
                    == [cfn::Parameter::builder()
                        .parameter_key("ExternalId")
                        .parameter_value("abc")
                        .build()]
                && r.capabilities() == [cfn::Capability::CapabilityNamedIam]
                && r.tags()
                    == [cfn::Tag::builder()
                        .key("stacksetd.dev/deployment")
                        .value("aimably")
                        .build()]
                && r.role_arn() == request.role_arn.as_deref()
                && r.client_request_token() == Some(request.client_token.as_str())
        })
        .then_output(|| {
            cfn_op::create_stack::CreateStackOutput::builder()
                .stack_id(ARN)
                .build()
        });
    let cloud = cfn_cloud(&[&rule]);
    cloud.create_stack(&request()).await.expect("created");
    assert_eq!(rule.num_calls(), 1);
    assert_eq!(
        counted(&cloud),
        vec![(("cloudformation", "CreateStack", "ok"), 1)]
    );
}

#[tokio::test]
async fn create_stack_with_a_taken_name_is_name_already_exists() {
    let rule = mock!(aws_sdk_cloudformation::Client::create_stack).then_error(|| {
        cfn_op::create_stack::CreateStackError::AlreadyExistsException(
            cfn_err::AlreadyExistsException::builder()
                .meta(meta(
                    "AlreadyExistsException",
                    "Stack [AimablyDataOnly] already exists",
                ))
                .build(),
        )
    });
    let err = cfn_cloud(&[&rule])
        .create_stack(&request())
        .await
        .expect_err("taken");
    assert_eq!(aws_parts(&err).2, AwsErrorKind::NameAlreadyExists);
}

#[tokio::test]
async fn access_denied_names_the_action_and_the_management_stack_policy() {
    let rule = mock!(aws_sdk_cloudformation::Client::create_stack).then_error(|| {
        cfn_op::create_stack::CreateStackError::generic(meta(
            "AccessDenied",
            "User: arn:aws:sts::123456789012:assumed-role/stacksetd/x is not authorized",
        ))
    });
    let err = cfn_cloud(&[&rule])
        .create_stack(&request())
        .await
        .expect_err("denied");
    let (_, operation, kind, _, message) = aws_parts(&err);
    assert_eq!(
        (operation, kind),
        ("CreateStack", AwsErrorKind::AccessDenied)
    );
    assert!(message.contains("cloudformation:CreateStack"), "{message}");
    assert!(message.contains(MANAGEMENT_STACK_POLICY_FILE), "{message}");
}

#[tokio::test]
async fn update_stack_with_nothing_to_do_is_false_and_other_refusals_are_errors() {
    let unchanged = mock!(aws_sdk_cloudformation::Client::update_stack).then_error(|| {
        cfn_op::update_stack::UpdateStackError::generic(meta(
            "ValidationError",
            "No updates are to be performed.",
        ))
    });
    assert!(
        !cfn_cloud(&[&unchanged])
            .update_stack(&request())
            .await
            .expect("not an error")
    );

    let updated = mock!(aws_sdk_cloudformation::Client::update_stack)
        .match_requests(|r| {
            r.stack_name() == Some("AimablyDataOnly")
                && r.template_body() == Some("{\"Resources\": {}}")
                && r.use_previous_template().is_none()
                && r.role_arn().is_some()
        })
        .then_output(|| {
            cfn_op::update_stack::UpdateStackOutput::builder()
                .stack_id(ARN)
                .build()
        });
    assert!(
        cfn_cloud(&[&updated])
            .update_stack(&request())
            .await
            .expect("sent")
    );

    let busy = mock!(aws_sdk_cloudformation::Client::update_stack).then_error(|| {
        cfn_op::update_stack::UpdateStackError::generic(meta(
            "ValidationError",
            "Stack:arn is in UPDATE_IN_PROGRESS state and can not be updated.",
        ))
    });
    let err = cfn_cloud(&[&busy])
        .update_stack(&request())
        .await
        .expect_err("refused");
    assert_eq!(aws_parts(&err).2, AwsErrorKind::Validation);
}

#[tokio::test]
async fn delete_stack_names_the_stack_by_its_arn() {
    let rule = mock!(aws_sdk_cloudformation::Client::delete_stack)
        .match_requests(|r| {
            r.stack_name() == Some(ARN)
                && r.client_request_token() == Some("stacksetd-delete-stack-x-0")
                && r.role_arn().is_none()
        })
        .then_output(|| cfn_op::delete_stack::DeleteStackOutput::builder().build());
    cfn_cloud(&[&rule])
        .delete_stack(&DeleteStackRequest {
            stack_id: ARN.into(),
            region: "eu-west-1".into(),
            role_arn: None,
            client_token: "stacksetd-delete-stack-x-0".into(),
        })
        .await
        .expect("deleted");
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn get_template_reads_the_original_and_drift_detection_starts() {
    let template = mock!(aws_sdk_cloudformation::Client::get_template)
        .match_requests(|r| {
            r.stack_name() == Some(ARN) && r.template_stage() == Some(&cfn::TemplateStage::Original)
        })
        .then_output(|| {
            cfn_op::get_template::GetTemplateOutput::builder()
                .template_body("{\"Resources\": {}}")
                .build()
        });
    let drift = mock!(aws_sdk_cloudformation::Client::detect_stack_drift)
        .match_requests(|r| r.stack_name() == Some(ARN))
        .then_output(|| {
            cfn_op::detect_stack_drift::DetectStackDriftOutput::builder()
                .stack_drift_detection_id("d-1")
                .build()
        });
    let cloud = cfn_cloud(&[&template, &drift]);
    assert_eq!(
        cloud
            .get_stack_template(ARN, "eu-west-1")
            .await
            .expect("body"),
        "{\"Resources\": {}}"
    );
    cloud
        .detect_stack_drift(ARN, "eu-west-1")
        .await
        .expect("started");
    assert_eq!((template.num_calls(), drift.num_calls()), (1, 1));
}
