//! The AWS implementation of the cloud port against aws-smithy-mocks clients: request shapes (what is sent and what
//! is deliberately not), response conversion, pagination, call counting and error mapping. No network.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_cloudformation::operation as cfn_op;
use aws_sdk_cloudformation::types as cfn;
use aws_sdk_cloudformation::types::error as cfn_err;
use aws_sdk_organizations::operation as orgs_op;
use aws_sdk_organizations::types as orgs;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::retry::RetryConfig;

use stacksetd::cloud::aws::AwsCloud;
use stacksetd::cloud::aws::errors::POLICY_FILE;
use stacksetd::cloud::{
    AccountFilterType, AutoDeployment, CallAs, Cloud, CreateStackSet, DeleteInstancesRequest,
    DetectDriftRequest, DriftDetails, InstanceStatus, InstancesRequest, ObservedStackSet,
    OperationAction, OperationPreferences, OperationStatus, StackSetSettings, StackSetStatus,
    Targets, UpdateStackSet,
};
use stacksetd::desired::model::{ConcurrencyMode, RegionConcurrencyType};
use stacksetd::error::{AwsErrorKind, Error};

/// Attempts the mocked clients make per call; small so exhausted-retry tests stay quick.
const MAX_ATTEMPTS: u32 = 3;

fn fast_retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(2))
}

fn cfn_client(rules: &[&Rule]) -> aws_sdk_cloudformation::Client {
    mock_client!(aws_sdk_cloudformation, RuleMode::Sequential, rules, |c| c
        .retry_config(fast_retries()))
}

fn orgs_client(rules: &[&Rule]) -> aws_sdk_organizations::Client {
    mock_client!(aws_sdk_organizations, RuleMode::Sequential, rules, |c| c
        .retry_config(fast_retries()))
}

fn sts_client(rules: &[&Rule]) -> aws_sdk_sts::Client {
    mock_client!(aws_sdk_sts, RuleMode::Sequential, rules, |c| c
        .retry_config(fast_retries()))
}

/// A cloud whose CloudFormation client answers with `rules`; the other clients have none.
fn cfn_cloud(rules: &[&Rule]) -> AwsCloud {
    AwsCloud::from_clients(cfn_client(rules), orgs_client(&[]), sts_client(&[]))
}

fn orgs_cloud(rules: &[&Rule]) -> AwsCloud {
    AwsCloud::from_clients(cfn_client(&[]), orgs_client(rules), sts_client(&[]))
}

fn meta(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

/// Everything the call counter holds, as ((service, operation, outcome), count) pairs in key order.
fn counted(cloud: &AwsCloud) -> Vec<((&'static str, &'static str, &'static str), u64)> {
    cloud.calls().snapshot().into_iter().collect()
}

fn aws_parts(err: &Error) -> (&'static str, &'static str, AwsErrorKind, &str, &str) {
    match err {
        Error::Aws {
            service,
            operation,
            kind,
            code,
            message,
        } => (service, operation, *kind, code.as_str(), message.as_str()),
        other => panic!("expected Error::Aws, got {other:?}"),
    }
}

fn targets() -> Targets {
    Targets {
        organizational_unit_ids: vec!["ou-ab12-cdef3456".to_string()],
        accounts: vec![],
        account_filter_type: AccountFilterType::None,
    }
}

fn preferences() -> OperationPreferences {
    OperationPreferences {
        failure_tolerance_count: Some(2),
        max_concurrent_count: Some(3),
        region_concurrency_type: Some(RegionConcurrencyType::Parallel),
        concurrency_mode: Some(ConcurrencyMode::StrictFailureTolerance),
        ..OperationPreferences::default()
    }
}

/// The wire shape of `preferences()`: only the fields that were set.
fn expected_preferences() -> cfn::StackSetOperationPreferences {
    cfn::StackSetOperationPreferences::builder()
        .failure_tolerance_count(2)
        .max_concurrent_count(3)
        .region_concurrency_type(cfn::RegionConcurrencyType::Parallel)
        .concurrency_mode(cfn::ConcurrencyMode::StrictFailureTolerance)
        .build()
}

// ---------------------------------------------------------------------------------------------------------------
// DescribeStackSet

#[tokio::test]
async fn describe_stack_set_not_found_is_none() {
    let rule = mock!(aws_sdk_cloudformation::Client::describe_stack_set)
        .match_requests(|req| {
            req.stack_set_name() == Some("vendor-access")
                && req.call_as() == Some(&cfn::CallAs::SelfValue)
        })
        .then_error(|| {
            cfn_op::describe_stack_set::DescribeStackSetError::StackSetNotFoundException(
                cfn_err::StackSetNotFoundException::builder()
                    .meta(meta(
                        "StackSetNotFoundException",
                        "StackSet vendor-access not found",
                    ))
                    .build(),
            )
        });
    let cloud = cfn_cloud(&[&rule]);
    let observed = cloud
        .describe_stack_set("vendor-access", CallAs::SelfAccount)
        .await
        .expect("not found is not an error");
    assert_eq!(observed, None);
    assert_eq!(rule.num_calls(), 1);
    assert_eq!(
        counted(&cloud),
        vec![(("cloudformation", "DescribeStackSet", "not_found"), 1)]
    );
}

#[tokio::test]
async fn describe_stack_set_deleted_is_none() {
    let rule = mock!(aws_sdk_cloudformation::Client::describe_stack_set).then_output(|| {
        cfn_op::describe_stack_set::DescribeStackSetOutput::builder()
            .stack_set(
                cfn::StackSet::builder()
                    .stack_set_name("vendor-access")
                    .status(cfn::StackSetStatus::Deleted)
                    .build(),
            )
            .build()
    });
    let cloud = cfn_cloud(&[&rule]);
    let observed = cloud
        .describe_stack_set("vendor-access", CallAs::SelfAccount)
        .await
        .expect("describe");
    assert_eq!(observed, None);
    assert_eq!(
        counted(&cloud),
        vec![(("cloudformation", "DescribeStackSet", "ok"), 1)]
    );
}

#[tokio::test]
async fn describe_stack_set_converts_every_field() {
    let arn = "arn:aws:cloudformation:us-east-1:111111111111:stackset/vendor-access:1";
    let rule = mock!(aws_sdk_cloudformation::Client::describe_stack_set)
        .match_requests(|req| req.call_as() == Some(&cfn::CallAs::DelegatedAdmin))
        .then_output(move || {
            cfn_op::describe_stack_set::DescribeStackSetOutput::builder()
                .stack_set(
                    cfn::StackSet::builder()
                        .stack_set_name("vendor-access")
                        .stack_set_arn(arn)
                        .status(cfn::StackSetStatus::Active)
                        .description("Vendor read access")
                        .template_body("Resources: {}")
                        .parameters(
                            cfn::Parameter::builder()
                                .parameter_key("ExternalId")
                                .parameter_value("abc")
                                .build(),
                        )
                        .parameters(
                            cfn::Parameter::builder()
                                .parameter_key("RoleName")
                                .parameter_value("VendorRole")
                                .build(),
                        )
                        .capabilities(cfn::Capability::CapabilityNamedIam)
                        .tags(cfn::Tag::builder().key("owner").value("finops").build())
                        .permission_model(cfn::PermissionModels::ServiceManaged)
                        .auto_deployment(
                            cfn::AutoDeployment::builder()
                                .enabled(true)
                                .retain_stacks_on_account_removal(false)
                                .build(),
                        )
                        .managed_execution(cfn::ManagedExecution::builder().active(true).build())
                        .organizational_unit_ids("r-ab12")
                        .regions("us-east-1")
                        .regions("eu-west-1")
                        .stack_set_drift_detection_details(
                            cfn::StackSetDriftDetectionDetails::builder()
                                .drift_status(cfn::StackSetDriftStatus::Drifted)
                                .drift_detection_status(
                                    cfn::StackSetDriftDetectionStatus::Completed,
                                )
                                .last_drift_check_timestamp(aws_smithy_types::DateTime::from_secs(
                                    1_790_000_000,
                                ))
                                .total_stack_instances_count(4)
                                .drifted_stack_instances_count(1)
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
    let cloud = cfn_cloud(&[&rule]);
    let observed = cloud
        .describe_stack_set("vendor-access", CallAs::DelegatedAdmin)
        .await
        .expect("describe")
        .expect("exists");
    let expected = ObservedStackSet {
        name: "vendor-access".to_string(),
        arn: Some(arn.to_string()),
        status: StackSetStatus::Active,
        settings: StackSetSettings {
            description: Some("Vendor read access".to_string()),
            template_body: "Resources: {}".to_string(),
            parameters: BTreeMap::from([
                ("ExternalId".to_string(), "abc".to_string()),
                ("RoleName".to_string(), "VendorRole".to_string()),
            ]),
            capabilities: BTreeSet::from(["CAPABILITY_NAMED_IAM".to_string()]),
            tags: BTreeMap::from([("owner".to_string(), "finops".to_string())]),
            auto_deployment: Some(AutoDeployment {
                enabled: true,
                retain_stacks_on_account_removal: false,
                depends_on: Vec::new(),
            }),
            managed_execution: Some(true),
        },
        permission_model: Some("SERVICE_MANAGED".to_string()),
        organizational_unit_ids: Some(vec!["r-ab12".to_string()]),
        regions: Some(vec!["us-east-1".to_string(), "eu-west-1".to_string()]),
        drift: Some(DriftDetails {
            status: "DRIFTED".to_string(),
            detection_status: Some("COMPLETED".to_string()),
            last_check: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000)),
            total_instances: 4,
            drifted_instances: 1,
        }),
    };
    assert_eq!(observed, expected);
}

/// moto does not echo AutoDeployment, OrganizationalUnitIds or Regions: those must read as unknown, not empty.
#[tokio::test]
async fn describe_stack_set_leaves_unreturned_fields_unknown() {
    let rule = mock!(aws_sdk_cloudformation::Client::describe_stack_set).then_output(|| {
        cfn_op::describe_stack_set::DescribeStackSetOutput::builder()
            .stack_set(
                cfn::StackSet::builder()
                    .stack_set_name("vendor-access")
                    .status(cfn::StackSetStatus::Active)
                    .template_body("Resources: {}")
                    .build(),
            )
            .build()
    });
    let cloud = cfn_cloud(&[&rule]);
    let observed = cloud
        .describe_stack_set("vendor-access", CallAs::SelfAccount)
        .await
        .expect("describe")
        .expect("exists");
    assert_eq!(observed.settings.auto_deployment, None);
    assert_eq!(observed.organizational_unit_ids, None);
    assert_eq!(observed.regions, None);
    assert_eq!(observed.settings.managed_execution, None);
    assert_eq!(observed.permission_model, None);
    assert!(observed.settings.parameters.is_empty());
}

// ---------------------------------------------------------------------------------------------------------------
// Listings

fn instance_page(
    start: usize,
    count: usize,
    next: Option<&str>,
) -> cfn_op::list_stack_instances::ListStackInstancesOutput {
    let summaries = (start..start + count)
        .map(|i| {
            let even = i % 2 == 0;
            cfn::StackInstanceSummary::builder()
                .account(format!("{}", 100_000_000_000u64 + i as u64))
                .region("us-east-1")
                .organizational_unit_id("ou-ab12-cdef3456")
                .status(if even {
                    cfn::StackInstanceStatus::Current
                } else {
                    cfn::StackInstanceStatus::Outdated
                })
                .stack_instance_status(
                    cfn::StackInstanceComprehensiveStatus::builder()
                        .detailed_status(if even {
                            cfn::StackInstanceDetailedStatus::Succeeded
                        } else {
                            cfn::StackInstanceDetailedStatus::Running
                        })
                        .build(),
                )
                .status_reason("reason")
                .drift_status(cfn::StackDriftStatus::NotChecked)
                .last_operation_id("op-1")
                .build()
        })
        .collect();
    cfn_op::list_stack_instances::ListStackInstancesOutput::builder()
        .set_summaries(Some(summaries))
        .set_next_token(next.map(str::to_string))
        .build()
}

#[tokio::test]
async fn list_stack_instances_follows_every_page_and_counts_each() {
    let page = |token: Option<&'static str>| {
        mock!(aws_sdk_cloudformation::Client::list_stack_instances).match_requests(move |req| {
            req.next_token() == token
                && req.max_results() == Some(100)
                && req.call_as() == Some(&cfn::CallAs::DelegatedAdmin)
                && req.stack_set_name() == Some("vendor-access")
        })
    };
    let first = page(None).then_output(|| instance_page(0, 100, Some("t1")));
    let second = page(Some("t1")).then_output(|| instance_page(100, 100, Some("t2")));
    let third = page(Some("t2")).then_output(|| instance_page(200, 50, None));
    let cloud = cfn_cloud(&[&first, &second, &third]);

    let instances = cloud
        .list_stack_instances("vendor-access", CallAs::DelegatedAdmin)
        .await
        .expect("list");
    assert_eq!(instances.len(), 250);
    let accounts: BTreeSet<_> = instances.iter().map(|i| i.account.clone()).collect();
    assert_eq!(accounts.len(), 250, "every page's instances, none twice");
    assert_eq!(instances[0].status, InstanceStatus::Current);
    assert_eq!(instances[0].detailed_status.as_deref(), Some("SUCCEEDED"));
    assert_eq!(instances[1].status, InstanceStatus::Outdated);
    assert!(instances[1].in_progress());
    assert_eq!(instances[249].drift_status.as_deref(), Some("NOT_CHECKED"));
    assert_eq!(
        instances[249].organizational_unit_id.as_deref(),
        Some("ou-ab12-cdef3456")
    );
    assert_eq!(instances[249].status_reason.as_deref(), Some("reason"));
    assert_eq!(instances[249].last_operation_id.as_deref(), Some("op-1"));
    assert_eq!(
        counted(&cloud),
        vec![(("cloudformation", "ListStackInstances", "ok"), 3)]
    );
}

#[tokio::test]
async fn list_stack_instances_stops_at_a_failing_page() {
    let first = mock!(aws_sdk_cloudformation::Client::list_stack_instances)
        .then_output(|| instance_page(0, 100, Some("t1")));
    let second = mock!(aws_sdk_cloudformation::Client::list_stack_instances).then_error(|| {
        cfn_op::list_stack_instances::ListStackInstancesError::generic(meta(
            "AccessDenied",
            "not authorized",
        ))
    });
    let cloud = cfn_cloud(&[&first, &second]);
    let err = cloud
        .list_stack_instances("vendor-access", CallAs::SelfAccount)
        .await
        .expect_err("second page fails");
    assert_eq!(err.aws_kind(), Some(AwsErrorKind::AccessDenied));
    assert_eq!(
        counted(&cloud),
        vec![
            (("cloudformation", "ListStackInstances", "access_denied"), 1),
            (("cloudformation", "ListStackInstances", "ok"), 1),
        ]
    );
}

fn operation_summary(
    id: &str,
    seconds: i64,
    status: cfn::StackSetOperationStatus,
) -> cfn::StackSetOperationSummary {
    cfn::StackSetOperationSummary::builder()
        .operation_id(id)
        .action(cfn::StackSetOperationAction::Update)
        .status(status)
        .creation_timestamp(DateTime::from_secs(seconds))
        .build()
}

/// An endpoint that lists oldest first in one page (moto) still yields the newest `limit` operations, newest first.
#[tokio::test]
async fn list_operations_returns_newest_first_up_to_limit() {
    let rule = mock!(aws_sdk_cloudformation::Client::list_stack_set_operations)
        .match_requests(|req| {
            req.max_results() == Some(2) && req.call_as() == Some(&cfn::CallAs::SelfValue)
        })
        .then_output(|| {
            cfn_op::list_stack_set_operations::ListStackSetOperationsOutput::builder()
                .summaries(operation_summary(
                    "op-a",
                    100,
                    cfn::StackSetOperationStatus::Succeeded,
                ))
                .summaries(operation_summary(
                    "op-b",
                    200,
                    cfn::StackSetOperationStatus::Failed,
                ))
                .summaries(operation_summary(
                    "op-c",
                    300,
                    cfn::StackSetOperationStatus::Running,
                ))
                .build()
        });
    let cloud = cfn_cloud(&[&rule]);
    let ops = cloud
        .list_operations("vendor-access", CallAs::SelfAccount, 2)
        .await
        .expect("list");
    let ids: Vec<_> = ops.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["op-c", "op-b"]);
    assert_eq!(ops[0].status, OperationStatus::Running);
    assert_eq!(ops[1].status, OperationStatus::Failed);
    assert_eq!(ops[0].action, OperationAction::Update);
}

/// Once `limit` operations are in hand, no further page is requested.
#[tokio::test]
async fn list_operations_stops_paging_at_limit() {
    let rule = mock!(aws_sdk_cloudformation::Client::list_stack_set_operations).then_output(|| {
        cfn_op::list_stack_set_operations::ListStackSetOperationsOutput::builder()
            .summaries(operation_summary(
                "op-new",
                300,
                cfn::StackSetOperationStatus::Running,
            ))
            .next_token("more")
            .build()
    });
    let cloud = cfn_cloud(&[&rule]);
    let ops = cloud
        .list_operations("vendor-access", CallAs::SelfAccount, 1)
        .await
        .expect("list");
    assert_eq!(ops.len(), 1);
    assert_eq!(rule.num_calls(), 1);
    assert_eq!(
        counted(&cloud),
        vec![(("cloudformation", "ListStackSetOperations", "ok"), 1)]
    );
}

#[tokio::test]
async fn describe_operation_converts_status_details_and_preferences() {
    let rule = mock!(aws_sdk_cloudformation::Client::describe_stack_set_operation)
        .match_requests(|req| {
            req.operation_id() == Some("op-1")
                && req.call_as() == Some(&cfn::CallAs::DelegatedAdmin)
        })
        .then_output(|| {
            cfn_op::describe_stack_set_operation::DescribeStackSetOperationOutput::builder()
                .stack_set_operation(
                    cfn::StackSetOperation::builder()
                        .operation_id("op-1")
                        .action(cfn::StackSetOperationAction::Create)
                        .status(cfn::StackSetOperationStatus::Succeeded)
                        .status_reason("done")
                        .status_details(
                            cfn::StackSetOperationStatusDetails::builder()
                                .failed_stack_instances_count(2)
                                .build(),
                        )
                        .operation_preferences(expected_preferences())
                        .build(),
                )
                .build()
        });
    let cloud = cfn_cloud(&[&rule]);
    let op = cloud
        .describe_operation("vendor-access", "op-1", CallAs::DelegatedAdmin)
        .await
        .expect("describe");
    assert_eq!(op.id, "op-1");
    assert_eq!(op.action, OperationAction::Create);
    assert_eq!(op.status, OperationStatus::Succeeded);
    assert_eq!(op.status_reason.as_deref(), Some("done"));
    assert_eq!(op.failed_instances, Some(2));
    assert_eq!(op.preferences, Some(preferences()));
}

#[tokio::test]
async fn list_operation_results_follows_every_page() {
    fn row(account: &str) -> cfn::StackSetOperationResultSummary {
        cfn::StackSetOperationResultSummary::builder()
            .account(account)
            .region("us-east-1")
            .status(cfn::StackSetOperationResultStatus::Failed)
            .status_reason("Role already exists")
            .build()
    }
    let first = mock!(aws_sdk_cloudformation::Client::list_stack_set_operation_results)
        .match_requests(|req| req.next_token().is_none() && req.operation_id() == Some("op-1"))
        .then_output(|| {
            cfn_op::list_stack_set_operation_results::ListStackSetOperationResultsOutput::builder()
                .summaries(row("111111111111"))
                .next_token("n")
                .build()
        });
    let second = mock!(aws_sdk_cloudformation::Client::list_stack_set_operation_results)
        .match_requests(|req| req.next_token() == Some("n"))
        .then_output(|| {
            cfn_op::list_stack_set_operation_results::ListStackSetOperationResultsOutput::builder()
                .summaries(row("222222222222"))
                .build()
        });
    let cloud = cfn_cloud(&[&first, &second]);
    let results = cloud
        .list_operation_results("vendor-access", "op-1", CallAs::SelfAccount)
        .await
        .expect("list");
    let accounts: Vec<_> = results.iter().map(|r| r.account.as_str()).collect();
    assert_eq!(accounts, ["111111111111", "222222222222"]);
    assert_eq!(results[0].status, "FAILED");
    assert_eq!(results[0].reason.as_deref(), Some("Role already exists"));
    assert_eq!(
        counted(&cloud),
        vec![(("cloudformation", "ListStackSetOperationResults", "ok"), 2)]
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Mutations: request shapes

fn update_request() -> UpdateStackSet {
    UpdateStackSet {
        name: "vendor-access".to_string(),
        call_as: CallAs::DelegatedAdmin,
        settings: StackSetSettings {
            description: None,
            template_body: "Resources: {}".to_string(),
            parameters: BTreeMap::from([
                ("ExternalId".to_string(), "abc".to_string()),
                ("RoleName".to_string(), "VendorRole".to_string()),
            ]),
            capabilities: BTreeSet::from(["CAPABILITY_NAMED_IAM".to_string()]),
            tags: BTreeMap::new(),
            auto_deployment: None,
            managed_execution: None,
        },
        keep_template: true,
        template_url: None,
        preferences: preferences(),
        only: None,
        operation_id: "stacksetd-update-1".to_string(),
    }
}

#[tokio::test]
async fn update_stack_set_keeps_template_and_targets_every_instance() {
    let rule = mock!(aws_sdk_cloudformation::Client::update_stack_set)
        .match_requests(|req| {
            let params = req.parameters();
            req.stack_set_name() == Some("vendor-access")
                && req.use_previous_template() == Some(true)
                && req.template_body().is_none()
                && req.deployment_targets.is_none()
                && req.regions.is_none()
                && req.accounts.is_none()
                && req.operation_id() == Some("stacksetd-update-1")
                && req.call_as() == Some(&cfn::CallAs::DelegatedAdmin)
                && req.operation_preferences() == Some(&expected_preferences())
                && params.len() == 2
                && params[0].parameter_key() == Some("ExternalId")
                && params[0].use_previous_value() == Some(true)
                && params[0].parameter_value().is_none()
                && params[1].parameter_key() == Some("RoleName")
                && params[1].use_previous_value() == Some(true)
                && params[1].parameter_value().is_none()
                && req.capabilities() == [cfn::Capability::CapabilityNamedIam]
                // An empty tag set is sent (as an empty list) so AWS clears the tags.
                && req.tags.as_deref() == Some(&[][..])
                && req.auto_deployment.is_none()
                && req.managed_execution.is_none()
                && req.description.is_none()
        })
        .then_output(|| {
            cfn_op::update_stack_set::UpdateStackSetOutput::builder()
                .operation_id("stacksetd-update-1")
                .build()
        });
    let cloud = cfn_cloud(&[&rule]);
    let id = cloud
        .update_stack_set(&update_request())
        .await
        .expect("update");
    assert_eq!(id, "stacksetd-update-1");
    assert_eq!(rule.num_calls(), 1);
    assert_eq!(
        counted(&cloud),
        vec![(("cloudformation", "UpdateStackSet", "ok"), 1)]
    );
}

#[tokio::test]
async fn update_stack_set_sends_template_and_optional_settings_when_given() {
    let rule = mock!(aws_sdk_cloudformation::Client::update_stack_set)
        .match_requests(|req| {
            req.template_body() == Some("Resources: {}")
                && req.use_previous_template().is_none()
                && req
                    .parameters()
                    .iter()
                    .all(|p| p.use_previous_value().is_none())
                && req.parameters()[1].parameter_value() == Some("VendorRole")
                && req.managed_execution()
                    == Some(&cfn::ManagedExecution::builder().active(false).build())
                && req.auto_deployment()
                    == Some(
                        &cfn::AutoDeployment::builder()
                            .enabled(true)
                            .retain_stacks_on_account_removal(true)
                            .build(),
                    )
                && req.tags() == [cfn::Tag::builder().key("owner").value("finops").build()]
                && req.description() == Some("Vendor read access")
                && req.operation_preferences.is_none()
                && req.deployment_targets.is_none()
                && req.regions.is_none()
        })
        .then_output(|| cfn_op::update_stack_set::UpdateStackSetOutput::builder().build());
    let cloud = cfn_cloud(&[&rule]);
    let base = update_request();
    let request = UpdateStackSet {
        settings: StackSetSettings {
            description: Some("Vendor read access".to_string()),
            managed_execution: Some(false),
            auto_deployment: Some(AutoDeployment {
                enabled: true,
                retain_stacks_on_account_removal: true,
                depends_on: Vec::new(),
            }),
            tags: BTreeMap::from([("owner".to_string(), "finops".to_string())]),
            ..base.settings.clone()
        },
        keep_template: false,
        template_url: None,
        preferences: OperationPreferences::default(),
        ..base
    };
    // The endpoint echoes no OperationId: the one we chose is the operation's id.
    assert_eq!(
        cloud.update_stack_set(&request).await.expect("update"),
        "stacksetd-update-1"
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn create_stack_set_is_service_managed_with_token_and_auto_deployment() {
    let rule = mock!(aws_sdk_cloudformation::Client::create_stack_set)
        .match_requests(|req| {
            req.stack_set_name() == Some("vendor-access")
                && req.call_as() == Some(&cfn::CallAs::SelfValue)
                && req.permission_model() == Some(&cfn::PermissionModels::ServiceManaged)
                && req.client_request_token() == Some("stacksetd-create-abc")
                && req.template_body() == Some("Resources: {}")
                && req.auto_deployment()
                    == Some(
                        &cfn::AutoDeployment::builder()
                            .enabled(true)
                            .retain_stacks_on_account_removal(false)
                            .build(),
                    )
                && req.managed_execution()
                    == Some(&cfn::ManagedExecution::builder().active(true).build())
                && req.parameters()
                    == [cfn::Parameter::builder()
                        .parameter_key("ExternalId")
                        .parameter_value("abc")
                        .build()]
                && req.capabilities() == [cfn::Capability::CapabilityNamedIam]
                && req.tags() == [cfn::Tag::builder().key("owner").value("finops").build()]
                && req.description() == Some("Vendor read access")
        })
        .then_output(|| {
            cfn_op::create_stack_set::CreateStackSetOutput::builder()
                .stack_set_id("vendor-access:1")
                .build()
        });
    let cloud = cfn_cloud(&[&rule]);
    let request = CreateStackSet {
        name: "vendor-access".to_string(),
        call_as: CallAs::SelfAccount,
        settings: StackSetSettings {
            description: Some("Vendor read access".to_string()),
            template_body: "Resources: {}".to_string(),
            parameters: BTreeMap::from([("ExternalId".to_string(), "abc".to_string())]),
            capabilities: BTreeSet::from(["CAPABILITY_NAMED_IAM".to_string()]),
            tags: BTreeMap::from([("owner".to_string(), "finops".to_string())]),
            auto_deployment: Some(AutoDeployment::default()),
            managed_execution: Some(true),
        },
        template_url: None,
        client_token: "stacksetd-create-abc".to_string(),
    };
    cloud.create_stack_set(&request).await.expect("create");
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn create_stack_instances_sends_targets_regions_preferences_and_id() {
    let rule = mock!(aws_sdk_cloudformation::Client::create_stack_instances)
        .match_requests(|req| {
            let Some(targets) = req.deployment_targets() else {
                return false;
            };
            targets.organizational_unit_ids() == ["ou-ab12-cdef3456"]
                && targets.accounts.is_none()
                && targets.account_filter_type() == Some(&cfn::AccountFilterType::None)
                && req.regions() == ["us-east-1", "eu-west-1"]
                && req.operation_id() == Some("stacksetd-create-1")
                && req.operation_preferences() == Some(&expected_preferences())
                && req.call_as() == Some(&cfn::CallAs::DelegatedAdmin)
        })
        .then_output(|| {
            cfn_op::create_stack_instances::CreateStackInstancesOutput::builder()
                .operation_id("stacksetd-create-1")
                .build()
        });
    let cloud = cfn_cloud(&[&rule]);
    let request = InstancesRequest {
        name: "vendor-access".to_string(),
        call_as: CallAs::DelegatedAdmin,
        targets: targets(),
        regions: vec!["us-east-1".to_string(), "eu-west-1".to_string()],
        preferences: preferences(),
        operation_id: "stacksetd-create-1".to_string(),
    };
    assert_eq!(
        cloud
            .create_stack_instances(&request)
            .await
            .expect("create"),
        "stacksetd-create-1"
    );
}

#[tokio::test]
async fn update_stack_instances_sends_targets_regions_and_id() {
    let rule = mock!(aws_sdk_cloudformation::Client::update_stack_instances)
        .match_requests(|req| {
            req.deployment_targets()
                .is_some_and(|t| t.organizational_unit_ids() == ["ou-ab12-cdef3456"])
                && req.regions() == ["eu-west-1"]
                && req.operation_id() == Some("stacksetd-repair-1")
                && req.call_as() == Some(&cfn::CallAs::SelfValue)
                && req.operation_preferences.is_none()
        })
        .then_output(|| {
            cfn_op::update_stack_instances::UpdateStackInstancesOutput::builder()
                .operation_id("stacksetd-repair-1")
                .build()
        });
    let cloud = cfn_cloud(&[&rule]);
    let request = InstancesRequest {
        name: "vendor-access".to_string(),
        call_as: CallAs::SelfAccount,
        targets: targets(),
        regions: vec!["eu-west-1".to_string()],
        preferences: OperationPreferences::default(),
        operation_id: "stacksetd-repair-1".to_string(),
    };
    assert_eq!(
        cloud
            .update_stack_instances(&request)
            .await
            .expect("update"),
        "stacksetd-repair-1"
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn delete_stack_instances_carries_retain_stacks() {
    let rule = mock!(aws_sdk_cloudformation::Client::delete_stack_instances)
        .match_requests(|req| {
            let Some(targets) = req.deployment_targets() else {
                return false;
            };
            req.retain_stacks() == Some(true)
                && targets.organizational_unit_ids() == ["ou-ab12-cdef3456"]
                && targets.accounts() == ["222222222222"]
                && targets.account_filter_type() == Some(&cfn::AccountFilterType::Intersection)
                && req.regions() == ["us-east-1"]
                && req.operation_id() == Some("stacksetd-delete-1")
                && req.call_as() == Some(&cfn::CallAs::SelfValue)
                && req.operation_preferences.is_none()
        })
        .then_output(|| {
            cfn_op::delete_stack_instances::DeleteStackInstancesOutput::builder()
                .operation_id("stacksetd-delete-1")
                .build()
        });
    let cloud = cfn_cloud(&[&rule]);
    let request = DeleteInstancesRequest {
        name: "vendor-access".to_string(),
        call_as: CallAs::SelfAccount,
        targets: Targets {
            accounts: vec!["222222222222".to_string()],
            account_filter_type: AccountFilterType::Intersection,
            ..targets()
        },
        regions: vec!["us-east-1".to_string()],
        retain_stacks: true,
        preferences: OperationPreferences::default(),
        operation_id: "stacksetd-delete-1".to_string(),
    };
    assert_eq!(
        cloud
            .delete_stack_instances(&request)
            .await
            .expect("delete"),
        "stacksetd-delete-1"
    );
    assert_eq!(rule.num_calls(), 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Error mapping

#[tokio::test]
async fn operation_in_progress_maps_and_is_not_retried() {
    let rule = mock!(aws_sdk_cloudformation::Client::update_stack_set).then_error(|| {
        cfn_op::update_stack_set::UpdateStackSetError::OperationInProgressException(
            cfn_err::OperationInProgressException::builder()
                .meta(meta(
                    "OperationInProgressException",
                    "Another Operation on StackSet is in progress",
                ))
                .build(),
        )
    });
    let cloud = cfn_cloud(&[&rule]);
    let err = cloud
        .update_stack_set(&update_request())
        .await
        .expect_err("in progress");
    let (service, operation, kind, code, message) = aws_parts(&err);
    assert_eq!(
        (service, operation, kind, code),
        (
            "cloudformation",
            "UpdateStackSet",
            AwsErrorKind::OperationInProgress,
            "OperationInProgressException"
        )
    );
    assert_eq!(message, "Another Operation on StackSet is in progress");
    assert_eq!(err.metric_label(), "operation_in_progress");
    assert_eq!(rule.num_calls(), 1, "the SDK does not retry it");
    assert_eq!(
        counted(&cloud),
        vec![(
            ("cloudformation", "UpdateStackSet", "operation_in_progress"),
            1
        )]
    );
}

#[tokio::test]
async fn operation_id_already_exists_maps() {
    let rule = mock!(aws_sdk_cloudformation::Client::create_stack_instances).then_error(|| {
        cfn_op::create_stack_instances::CreateStackInstancesError::OperationIdAlreadyExistsException(
            cfn_err::OperationIdAlreadyExistsException::builder()
                .meta(meta(
                    "OperationIdAlreadyExistsException",
                    "The operation id already exists",
                ))
                .build(),
        )
    });
    let cloud = cfn_cloud(&[&rule]);
    let request = InstancesRequest {
        name: "vendor-access".to_string(),
        call_as: CallAs::SelfAccount,
        targets: targets(),
        regions: vec!["us-east-1".to_string()],
        preferences: OperationPreferences::default(),
        operation_id: "stacksetd-create-1".to_string(),
    };
    let err = cloud
        .create_stack_instances(&request)
        .await
        .expect_err("exists");
    assert!(err.is_aws(AwsErrorKind::OperationIdAlreadyExists));
    assert_eq!(err.metric_label(), "operation_id_exists");
    assert_eq!(
        counted(&cloud),
        vec![(
            (
                "cloudformation",
                "CreateStackInstances",
                "operation_id_exists"
            ),
            1
        )]
    );
}

#[tokio::test]
async fn stack_set_not_empty_maps() {
    let rule = mock!(aws_sdk_cloudformation::Client::delete_stack_set)
        .match_requests(|req| req.call_as() == Some(&cfn::CallAs::DelegatedAdmin))
        .then_error(|| {
            cfn_op::delete_stack_set::DeleteStackSetError::StackSetNotEmptyException(
                cfn_err::StackSetNotEmptyException::builder()
                    .meta(meta("StackSetNotEmptyException", "StackSet is not empty"))
                    .build(),
            )
        });
    let cloud = cfn_cloud(&[&rule]);
    let err = cloud
        .delete_stack_set("vendor-access", CallAs::DelegatedAdmin)
        .await
        .expect_err("not empty");
    assert!(err.is_aws(AwsErrorKind::StackSetNotEmpty));
    assert_eq!(err.metric_label(), "stack_set_not_empty");
    assert_eq!(
        counted(&cloud),
        vec![(
            ("cloudformation", "DeleteStackSet", "stack_set_not_empty"),
            1
        )]
    );
}

fn create_request() -> CreateStackSet {
    CreateStackSet {
        name: "vendor-access".to_string(),
        call_as: CallAs::SelfAccount,
        settings: StackSetSettings {
            template_body: "Resources: {}".to_string(),
            auto_deployment: Some(AutoDeployment::default()),
            managed_execution: Some(false),
            ..StackSetSettings::default()
        },
        template_url: None,
        client_token: "stacksetd-create-abc".to_string(),
    }
}

#[tokio::test]
async fn name_already_exists_maps() {
    let rule = mock!(aws_sdk_cloudformation::Client::create_stack_set).then_error(|| {
        cfn_op::create_stack_set::CreateStackSetError::NameAlreadyExistsException(
            cfn_err::NameAlreadyExistsException::builder()
                .meta(meta(
                    "NameAlreadyExistsException",
                    "StackSet vendor-access already exists",
                ))
                .build(),
        )
    });
    let cloud = cfn_cloud(&[&rule]);
    let err = cloud
        .create_stack_set(&create_request())
        .await
        .expect_err("exists");
    assert!(err.is_aws(AwsErrorKind::NameAlreadyExists));
    assert_eq!(err.metric_label(), "name_exists");
    assert_eq!(
        counted(&cloud),
        vec![(("cloudformation", "CreateStackSet", "name_exists"), 1)]
    );
}

#[tokio::test]
async fn access_denied_keeps_aws_message_and_names_the_iam_action() {
    let aws_message = "User: arn:aws:sts::111111111111:assumed-role/stacksetd/x is not authorized to \
                       perform: cloudformation:DescribeStackSet on resource: vendor-access";
    let rule = mock!(aws_sdk_cloudformation::Client::describe_stack_set).then_error(move || {
        cfn_op::describe_stack_set::DescribeStackSetError::generic(meta(
            "AccessDenied",
            aws_message,
        ))
    });
    let cloud = cfn_cloud(&[&rule]);
    let err = cloud
        .describe_stack_set("vendor-access", CallAs::SelfAccount)
        .await
        .expect_err("denied");
    let (_, operation, kind, code, message) = aws_parts(&err);
    assert_eq!(
        (operation, kind, code),
        (
            "DescribeStackSet",
            AwsErrorKind::AccessDenied,
            "AccessDenied"
        )
    );
    assert!(message.starts_with(aws_message), "{message}");
    assert!(
        message.contains("needs IAM action cloudformation:DescribeStackSet"),
        "{message}"
    );
    assert!(message.contains("grant"), "{message}");
    assert!(message.contains(POLICY_FILE), "{message}");
    assert_eq!(err.metric_label(), "access_denied");
    assert_eq!(
        counted(&cloud),
        vec![(("cloudformation", "DescribeStackSet", "access_denied"), 1)]
    );
}

#[tokio::test]
async fn organizations_access_denied_names_the_organizations_action() {
    let rule = mock!(aws_sdk_organizations::Client::list_accounts_for_parent).then_error(|| {
        orgs_op::list_accounts_for_parent::ListAccountsForParentError::generic(meta(
            "AccessDeniedException",
            "You don't have permissions to access this resource.",
        ))
    });
    let cloud = orgs_cloud(&[&rule]);
    let err = cloud.list_accounts("r-ab12").await.expect_err("denied");
    let (service, _, kind, _, message) = aws_parts(&err);
    assert_eq!(
        (service, kind),
        ("organizations", AwsErrorKind::AccessDenied)
    );
    assert!(
        message.contains("organizations:ListAccountsForParent"),
        "{message}"
    );
    assert!(message.contains("You don't have permissions"), "{message}");
}

fn throttled() -> cfn_op::describe_stack_set::DescribeStackSetError {
    cfn_op::describe_stack_set::DescribeStackSetError::generic(meta("Throttling", "Rate exceeded"))
}

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_then_succeeds() {
    let rule = mock!(aws_sdk_cloudformation::Client::describe_stack_set)
        .sequence()
        .error(throttled)
        .times(2)
        .output(|| {
            cfn_op::describe_stack_set::DescribeStackSetOutput::builder()
                .stack_set(
                    cfn::StackSet::builder()
                        .stack_set_name("vendor-access")
                        .status(cfn::StackSetStatus::Active)
                        .build(),
                )
                .build()
        })
        .build();
    let cloud = cfn_cloud(&[&rule]);
    let observed = cloud
        .describe_stack_set("vendor-access", CallAs::SelfAccount)
        .await
        .expect("succeeds after retries");
    assert!(observed.is_some());
    assert_eq!(rule.num_calls(), 3);
    // The SDK's retries are one call to us.
    assert_eq!(
        counted(&cloud),
        vec![(("cloudformation", "DescribeStackSet", "ok"), 1)]
    );
}

#[tokio::test(start_paused = true)]
async fn throttling_exhausted_maps_to_throttling() {
    let rule = mock!(aws_sdk_cloudformation::Client::describe_stack_set)
        .sequence()
        .error(throttled)
        .repeatedly()
        .build();
    let cloud = cfn_cloud(&[&rule]);
    let err = cloud
        .describe_stack_set("vendor-access", CallAs::SelfAccount)
        .await
        .expect_err("exhausted");
    assert!(err.is_aws(AwsErrorKind::Throttling), "{err:?}");
    assert_eq!(err.metric_label(), "throttling");
    assert_eq!(rule.num_calls(), MAX_ATTEMPTS as usize);
    assert_eq!(
        counted(&cloud),
        vec![(("cloudformation", "DescribeStackSet", "throttling"), 1)]
    );
}

/// The SDK retries LimitExceededException like throttling; once retries run out it is a quota, not throttling.
#[tokio::test(start_paused = true)]
async fn limit_exceeded_maps_to_limit_exceeded_after_retries() {
    let rule = mock!(aws_sdk_cloudformation::Client::create_stack_set)
        .sequence()
        .error(|| {
            cfn_op::create_stack_set::CreateStackSetError::LimitExceededException(
                cfn_err::LimitExceededException::builder()
                    .meta(meta(
                        "LimitExceededException",
                        "Limit on stack sets exceeded",
                    ))
                    .build(),
            )
        })
        .repeatedly()
        .build();
    let cloud = cfn_cloud(&[&rule]);
    let err = cloud
        .create_stack_set(&create_request())
        .await
        .expect_err("quota");
    assert!(err.is_aws(AwsErrorKind::LimitExceeded), "{err:?}");
    assert_eq!(err.metric_label(), "limit_exceeded");
    assert_eq!(
        counted(&cloud),
        vec![(("cloudformation", "CreateStackSet", "limit_exceeded"), 1)]
    );
}

#[tokio::test(start_paused = true)]
async fn server_errors_without_a_code_are_transport() {
    let rule = mock!(aws_sdk_cloudformation::Client::describe_stack_set)
        .sequence()
        .http_status(503, None)
        .repeatedly()
        .build();
    let cloud = cfn_cloud(&[&rule]);
    let err = cloud
        .describe_stack_set("vendor-access", CallAs::SelfAccount)
        .await
        .expect_err("503");
    assert!(err.is_aws(AwsErrorKind::Transport), "{err:?}");
    assert_eq!(err.metric_label(), "transport");
    assert_eq!(rule.num_calls(), MAX_ATTEMPTS as usize, "5xx is retried");
}

// ---------------------------------------------------------------------------------------------------------------
// Organizations and STS

fn account(id: &str, state: orgs::AccountState) -> orgs::Account {
    orgs::Account::builder()
        .id(id)
        .name(format!("acct-{id}"))
        .state(state)
        // The retired Status disagrees on purpose: State must win.
        .status(orgs::AccountStatus::Active)
        .build()
}

#[tokio::test]
async fn organizations_listing_follows_token_after_an_empty_page() {
    let page = |token: Option<&'static str>| {
        mock!(aws_sdk_organizations::Client::list_accounts_for_parent).match_requests(move |req| {
            req.next_token() == token
                && req.max_results() == Some(20)
                && req.parent_id() == Some("ou-ab12-cdef3456")
        })
    };
    let empty = page(None).then_output(|| {
        orgs_op::list_accounts_for_parent::ListAccountsForParentOutput::builder()
            .set_accounts(Some(vec![]))
            .next_token("a")
            .build()
    });
    let second = page(Some("a")).then_output(|| {
        orgs_op::list_accounts_for_parent::ListAccountsForParentOutput::builder()
            .accounts(account("111111111111", orgs::AccountState::Active))
            .accounts(account("222222222222", orgs::AccountState::Suspended))
            .next_token("b")
            .build()
    });
    let last = page(Some("b")).then_output(|| {
        orgs_op::list_accounts_for_parent::ListAccountsForParentOutput::builder()
            .accounts(account("333333333333", orgs::AccountState::PendingClosure))
            .build()
    });
    let cloud = orgs_cloud(&[&empty, &second, &last]);
    let accounts = cloud.list_accounts("ou-ab12-cdef3456").await.expect("list");
    let seen: Vec<_> = accounts
        .iter()
        .map(|a| (a.id.as_str(), a.state.as_str(), a.is_active()))
        .collect();
    assert_eq!(
        seen,
        [
            ("111111111111", "ACTIVE", true),
            ("222222222222", "SUSPENDED", false),
            ("333333333333", "PENDING_CLOSURE", false),
        ]
    );
    assert_eq!(accounts[0].name, "acct-111111111111");
    assert_eq!(
        counted(&cloud),
        vec![(("organizations", "ListAccountsForParent", "ok"), 3)]
    );
}

#[tokio::test]
async fn organizations_roots_units_and_description() {
    let describe = mock!(aws_sdk_organizations::Client::describe_organization).then_output(|| {
        orgs_op::describe_organization::DescribeOrganizationOutput::builder()
            .organization(
                orgs::Organization::builder()
                    .id("o-abc")
                    .master_account_id("111111111111")
                    .feature_set(orgs::OrganizationFeatureSet::All)
                    .build(),
            )
            .build()
    });
    let roots = mock!(aws_sdk_organizations::Client::list_roots)
        .match_requests(|req| req.max_results() == Some(20))
        .then_output(|| {
            orgs_op::list_roots::ListRootsOutput::builder()
                .roots(orgs::Root::builder().id("r-ab12").name("Root").build())
                .build()
        });
    let units = mock!(aws_sdk_organizations::Client::list_organizational_units_for_parent)
        .match_requests(|req| req.parent_id() == Some("r-ab12") && req.max_results() == Some(20))
        .then_output(|| {
            orgs_op::list_organizational_units_for_parent::ListOrganizationalUnitsForParentOutput::builder()
                .organizational_units(
                    orgs::OrganizationalUnit::builder()
                        .id("ou-ab12-cdef3456")
                        .name("Workloads")
                        .build(),
                )
                .build()
        });
    let cloud = orgs_cloud(&[&describe, &roots, &units]);
    let org = cloud.describe_organization().await.expect("describe");
    assert_eq!(
        (
            org.id.as_str(),
            org.management_account_id.as_str(),
            org.feature_set.as_str()
        ),
        ("o-abc", "111111111111", "ALL")
    );
    let roots = cloud.list_roots().await.expect("roots");
    assert_eq!(
        (roots[0].id.as_str(), roots[0].name.as_str()),
        ("r-ab12", "Root")
    );
    let units = cloud
        .list_organizational_units("r-ab12")
        .await
        .expect("units");
    assert_eq!(
        (units[0].id.as_str(), units[0].name.as_str()),
        ("ou-ab12-cdef3456", "Workloads")
    );
    assert_eq!(cloud.calls().total(), 3);
}

#[tokio::test]
async fn caller_account_comes_from_sts() {
    let rule = mock!(aws_sdk_sts::Client::get_caller_identity).then_output(|| {
        aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput::builder()
            .account("111111111111")
            .arn("arn:aws:sts::111111111111:assumed-role/stacksetd/x")
            .build()
    });
    let cloud = AwsCloud::from_clients(cfn_client(&[]), orgs_client(&[]), sts_client(&[&rule]));
    assert_eq!(
        cloud.caller_account().await.expect("identity"),
        "111111111111"
    );
    assert_eq!(
        counted(&cloud),
        vec![(("sts", "GetCallerIdentity", "ok"), 1)]
    );
}

#[tokio::test]
async fn detect_stack_set_drift_sends_call_as_preferences_and_id() {
    let rule = mock!(aws_sdk_cloudformation::Client::detect_stack_set_drift)
        .match_requests(|req| {
            req.stack_set_name() == Some("vendor-access")
                && req.operation_id() == Some("stacksetd-detect-drift-1")
                && req.call_as() == Some(&cfn::CallAs::DelegatedAdmin)
                && req.operation_preferences() == Some(&expected_preferences())
        })
        .then_output(|| {
            cfn_op::detect_stack_set_drift::DetectStackSetDriftOutput::builder()
                .operation_id("stacksetd-detect-drift-1")
                .build()
        });
    let cloud = cfn_cloud(&[&rule]);
    let request = DetectDriftRequest {
        name: "vendor-access".to_string(),
        call_as: CallAs::DelegatedAdmin,
        preferences: preferences(),
        operation_id: "stacksetd-detect-drift-1".to_string(),
    };
    assert_eq!(
        cloud
            .detect_stack_set_drift(&request)
            .await
            .expect("detect"),
        "stacksetd-detect-drift-1"
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn assume_role_access_denied_names_the_action_and_is_counted() {
    let role = "arn:aws:iam::222222222222:role/AimablyMemberRole";
    let rule = mock!(aws_sdk_sts::Client::assume_role)
        .match_requests(move |req| {
            req.role_arn() == Some(role)
                && req.role_session_name() == Some("stacksetd-access-check")
                && req.duration_seconds() == Some(900)
        })
        .then_error(|| {
            aws_sdk_sts::operation::assume_role::AssumeRoleError::generic(meta(
                "AccessDenied",
                "User: arn:aws:iam::111111111111:user/ops is not authorized to perform: sts:AssumeRole",
            ))
        });
    let cloud = AwsCloud::from_clients(cfn_client(&[]), orgs_client(&[]), sts_client(&[&rule]));
    let err = cloud
        .assume_role(role, "stacksetd-access-check")
        .await
        .expect_err("denied");
    assert!(err.is_aws(AwsErrorKind::AccessDenied), "{err:?}");
    assert!(err.to_string().contains("sts:AssumeRole"), "{err}");
    assert_eq!(
        counted(&cloud),
        vec![(("sts", "AssumeRole", "access_denied"), 1)]
    );
}

#[tokio::test]
async fn describe_organizations_access_sends_call_as_and_reads_the_status() {
    let rule = mock!(aws_sdk_cloudformation::Client::describe_organizations_access)
        .match_requests(|req| req.call_as() == Some(&cfn::CallAs::DelegatedAdmin))
        .then_output(|| {
            cfn_op::describe_organizations_access::DescribeOrganizationsAccessOutput::builder()
                .status(cfn::OrganizationStatus::Disabled)
                .build()
        });
    let cloud = cfn_cloud(&[&rule]);
    assert_eq!(
        cloud
            .describe_organizations_access(CallAs::DelegatedAdmin)
            .await
            .expect("describe"),
        "DISABLED"
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn activate_organizations_access_is_one_call() {
    let rule =
        mock!(aws_sdk_cloudformation::Client::activate_organizations_access).then_output(|| {
            cfn_op::activate_organizations_access::ActivateOrganizationsAccessOutput::builder()
                .build()
        });
    let cloud = cfn_cloud(&[&rule]);
    cloud
        .activate_organizations_access()
        .await
        .expect("activate");
    assert_eq!(rule.num_calls(), 1);
    assert_eq!(
        counted(&cloud),
        vec![(("cloudformation", "ActivateOrganizationsAccess", "ok"), 1)]
    );
}

#[tokio::test]
async fn organizations_access_denied_names_the_action_and_the_policy_file() {
    let rule = mock!(aws_sdk_cloudformation::Client::activate_organizations_access).then_error(|| {
        cfn_op::activate_organizations_access::ActivateOrganizationsAccessError::generic(meta(
            "AccessDenied",
            "User: arn:aws:iam::123456789012:role/ops is not authorized to perform: cloudformation:ActivateOrganizationsAccess",
        ))
    });
    let cloud = cfn_cloud(&[&rule]);
    let err = cloud
        .activate_organizations_access()
        .await
        .expect_err("denied");
    assert!(err.is_aws(AwsErrorKind::AccessDenied));
    let message = err.to_string();
    assert!(
        message.contains("cloudformation:ActivateOrganizationsAccess"),
        "{message}"
    );
    assert!(message.contains(POLICY_FILE), "{message}");
}

#[tokio::test]
async fn delegated_administrators_and_service_access_follow_every_page() {
    let admins = mock!(aws_sdk_organizations::Client::list_delegated_administrators)
        .match_requests(|req| {
            req.service_principal() == Some("member.org.stacksets.cloudformation.amazonaws.com")
                && req.next_token().is_none()
        })
        .then_output(|| {
            orgs_op::list_delegated_administrators::ListDelegatedAdministratorsOutput::builder()
                .delegated_administrators(
                    orgs::DelegatedAdministrator::builder()
                        .id("210987654321")
                        .build(),
                )
                .next_token("page-2")
                .build()
        });
    let admins_2 = mock!(aws_sdk_organizations::Client::list_delegated_administrators)
        .match_requests(|req| req.next_token() == Some("page-2"))
        .then_output(|| {
            orgs_op::list_delegated_administrators::ListDelegatedAdministratorsOutput::builder()
                .delegated_administrators(
                    orgs::DelegatedAdministrator::builder()
                        .id("310987654321")
                        .build(),
                )
                .build()
        });
    let access = mock!(aws_sdk_organizations::Client::list_aws_service_access_for_organization)
        .then_output(|| {
            orgs_op::list_aws_service_access_for_organization::ListAwsServiceAccessForOrganizationOutput::builder()
                .enabled_service_principals(
                    orgs::EnabledServicePrincipal::builder()
                        .service_principal("member.org.stacksets.cloudformation.amazonaws.com")
                        .build(),
                )
                .build()
        });
    let cloud = orgs_cloud(&[&admins, &admins_2, &access]);
    assert_eq!(
        cloud
            .list_delegated_administrators("member.org.stacksets.cloudformation.amazonaws.com")
            .await
            .expect("admins"),
        ["210987654321", "310987654321"]
    );
    assert_eq!(
        cloud.list_aws_service_access().await.expect("access"),
        ["member.org.stacksets.cloudformation.amazonaws.com"]
    );
}

// ---------------------------------------------------------------------------------------------------------------
// IAM Access Analyzer (spec.template.accessAnalyzer) and the staging bucket (spec.template.stagingBucket).

fn analyzer_client(rules: &[&Rule]) -> aws_sdk_accessanalyzer::Client {
    mock_client!(aws_sdk_accessanalyzer, RuleMode::Sequential, rules, |c| c
        .retry_config(fast_retries()))
}

#[tokio::test]
async fn check_no_new_access_sends_both_documents_and_reads_pass_and_fail() {
    use aws_sdk_accessanalyzer::types::{
        AccessCheckPolicyType, CheckNoNewAccessResult, ReasonSummary,
    };
    use stacksetd::cloud::PolicyKind;
    let fail = mock!(aws_sdk_accessanalyzer::Client::check_no_new_access)
        .match_requests(|r| {
            r.existing_policy_document() == Some("{\"old\":1}")
                && r.new_policy_document() == Some("{\"new\":1}")
                && r.policy_type() == Some(&AccessCheckPolicyType::ResourcePolicy)
        })
        .then_output(|| {
            aws_sdk_accessanalyzer::operation::check_no_new_access::CheckNoNewAccessOutput::builder(
            )
            .result(CheckNoNewAccessResult::Fail)
            .message("New access in the statement")
            .reasons(
                ReasonSummary::builder()
                    .description("New access: principal 999988887777")
                    .build(),
            )
            .build()
        });
    let pass = mock!(aws_sdk_accessanalyzer::Client::check_no_new_access)
        .match_requests(|r| r.policy_type() == Some(&AccessCheckPolicyType::IdentityPolicy))
        .then_output(|| {
            aws_sdk_accessanalyzer::operation::check_no_new_access::CheckNoNewAccessOutput::builder(
            )
            .result(CheckNoNewAccessResult::Pass)
            .build()
        });
    let cloud = AwsCloud::from_clients(cfn_client(&[]), orgs_client(&[]), sts_client(&[]))
        .with_access_analyzer(analyzer_client(&[&fail, &pass]));
    let verdict = cloud
        .check_no_new_access("{\"old\":1}", "{\"new\":1}", PolicyKind::Trust)
        .await
        .expect("answered");
    assert!(!verdict.pass);
    assert_eq!(
        verdict.reasons,
        vec!["New access: principal 999988887777".to_string()]
    );
    let verdict = cloud
        .check_no_new_access("{}", "{}", PolicyKind::Identity)
        .await
        .expect("answered");
    assert!(verdict.pass && verdict.reasons.is_empty());
    assert_eq!(
        counted(&cloud),
        vec![(("access-analyzer", "CheckNoNewAccess", "ok"), 2)]
    );
}

#[tokio::test]
async fn check_no_new_access_denied_names_the_action() {
    let denied = mock!(aws_sdk_accessanalyzer::Client::check_no_new_access).then_error(|| {
        aws_sdk_accessanalyzer::operation::check_no_new_access::CheckNoNewAccessError::generic(
            meta("AccessDeniedException", "not authorized"),
        )
    });
    let cloud = AwsCloud::from_clients(cfn_client(&[]), orgs_client(&[]), sts_client(&[]))
        .with_access_analyzer(analyzer_client(&[&denied]));
    let err = cloud
        .check_no_new_access("{}", "{}", stacksetd::cloud::PolicyKind::Identity)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("access-analyzer:CheckNoNewAccess"),
        "{err}"
    );
}

#[tokio::test]
async fn a_staged_template_is_put_with_its_checksum_and_named_by_version() {
    let put = mock!(aws_sdk_s3::Client::put_object)
        .match_requests(|r| {
            r.bucket() == Some("operator-templates")
                && r.key() == Some("stacksetd/abc.json")
                && r.content_type() == Some("application/json")
        })
        .then_output(|| {
            aws_sdk_s3::operation::put_object::PutObjectOutput::builder()
                .version_id("v1 2")
                .build()
        });
    let s3 = mock_client!(aws_sdk_s3, RuleMode::Sequential, &[&put], |c| c
        .retry_config(fast_retries()));
    let cloud = AwsCloud::from_clients(cfn_client(&[]), orgs_client(&[]), sts_client(&[]))
        .with_s3(s3, "us-west-2");
    let url = cloud
        .stage_template(
            "operator-templates",
            "stacksetd/abc.json",
            "{\"Resources\": {}}",
        )
        .await
        .expect("staged");
    assert_eq!(
        url,
        "https://operator-templates.s3.us-west-2.amazonaws.com/stacksetd/abc.json?versionId=v1+2"
    );
    assert_eq!(counted(&cloud), vec![(("s3", "PutObject", "ok"), 1)]);
}

/// A bucket without versioning answers PutObject with no VersionId: the URL would not pin the bytes, so the
/// staged template is refused with the fix named.
#[tokio::test]
async fn an_unversioned_staging_bucket_is_refused() {
    let put = mock!(aws_sdk_s3::Client::put_object)
        .then_output(|| aws_sdk_s3::operation::put_object::PutObjectOutput::builder().build());
    let s3 = mock_client!(aws_sdk_s3, RuleMode::Sequential, &[&put], |c| c
        .retry_config(fast_retries()));
    let cloud = AwsCloud::from_clients(cfn_client(&[]), orgs_client(&[]), sts_client(&[]))
        .with_s3(s3, "us-west-2");
    let err = cloud
        .stage_template(
            "operator-templates",
            "stacksetd/abc.json",
            "{\"Resources\": {}}",
        )
        .await
        .unwrap_err();
    assert_eq!(err.metric_label(), "staging_bucket_unversioned");
    assert!(
        err.to_string()
            .contains("put-bucket-versioning --bucket operator-templates"),
        "{err}"
    );
}

/// An endpoint that answers ListAccountsForParent with the retired Account.Status only (fakecloud 0.51 does) still
/// yields the account's state: an active account is never taken for a suspended one.
#[tokio::test]
#[allow(deprecated)]
async fn an_account_with_only_the_retired_status_field_keeps_its_state() {
    let rule = mock!(aws_sdk_organizations::Client::list_accounts_for_parent).then_output(|| {
        orgs_op::list_accounts_for_parent::ListAccountsForParentOutput::builder()
            .accounts(
                orgs::Account::builder()
                    .id("111111111111")
                    .name("a")
                    .status(orgs::AccountStatus::Active)
                    .build(),
            )
            .build()
    });
    let cloud = orgs_cloud(&[&rule]);
    let accounts = cloud.list_accounts("r-abcd").await.unwrap();
    assert_eq!(accounts[0].state, "ACTIVE");
    assert!(accounts[0].is_active());
}

// AutoDeployment.DependsOn and ListStackSetAutoDeploymentTargets

const BASELINE_ARN: &str = "arn:aws:cloudformation:us-east-1:111111111111:stackset/Baseline:1a2b";

#[tokio::test]
async fn depends_on_is_sent_as_arns_and_a_cycle_is_the_apis_validation_error() {
    let sent = mock!(aws_sdk_cloudformation::Client::update_stack_set)
        .match_requests(|req| {
            req.auto_deployment().map(|a| a.depends_on().to_vec())
                == Some(vec![BASELINE_ARN.to_string()])
        })
        .then_output(|| cfn_op::update_stack_set::UpdateStackSetOutput::builder().build());
    let cycle = mock!(aws_sdk_cloudformation::Client::update_stack_set).then_error(|| {
        cfn_op::update_stack_set::UpdateStackSetError::generic(meta(
            "ValidationError",
            "Circular dependency detected between StackSets",
        ))
    });
    let cloud = cfn_cloud(&[&sent, &cycle]);
    let base = update_request();
    let request = UpdateStackSet {
        settings: StackSetSettings {
            auto_deployment: Some(AutoDeployment {
                enabled: true,
                retain_stacks_on_account_removal: false,
                depends_on: vec![BASELINE_ARN.to_string()],
            }),
            ..base.settings.clone()
        },
        ..base
    };
    cloud.update_stack_set(&request).await.expect("sent");
    assert_eq!(sent.num_calls(), 1, "DependsOn carried the ARN");
    let err = cloud.update_stack_set(&request).await.expect_err("a cycle");
    assert_eq!(err.aws_kind(), Some(AwsErrorKind::Validation), "{err}");
    assert!(err.to_string().contains("Circular dependency"), "{err}");
}

#[tokio::test]
async fn auto_deployment_targets_follow_every_page() {
    let page = |token: Option<&'static str>| {
        mock!(aws_sdk_cloudformation::Client::list_stack_set_auto_deployment_targets)
            .match_requests(move |req| {
                req.next_token() == token
                    && req.stack_set_name() == Some("vendor-access")
                    && req.call_as() == Some(&cfn::CallAs::SelfValue)
            })
    };
    let summary = |ou: &str, regions: &[&str]| {
        cfn::StackSetAutoDeploymentTargetSummary::builder()
            .organizational_unit_id(ou)
            .set_regions(Some(regions.iter().map(|r| r.to_string()).collect()))
            .build()
    };
    let first = page(None).then_output(move || {
        cfn_op::list_stack_set_auto_deployment_targets::ListStackSetAutoDeploymentTargetsOutput::builder()
            .summaries(summary("ou-ab12-prod0001", &["us-east-1", "eu-west-1"]))
            .next_token("t1")
            .build()
    });
    let second = page(Some("t1")).then_output(move || {
        cfn_op::list_stack_set_auto_deployment_targets::ListStackSetAutoDeploymentTargetsOutput::builder()
            .summaries(summary("ou-ab12-dev00001", &["us-east-1"]))
            .build()
    });
    let cloud = cfn_cloud(&[&first, &second]);
    let targets = cloud
        .list_auto_deployment_targets("vendor-access", CallAs::SelfAccount)
        .await
        .expect("listed");
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0].organizational_unit_id, "ou-ab12-prod0001");
    assert_eq!(targets[0].regions, ["us-east-1", "eu-west-1"]);
    assert_eq!(targets[1].regions, ["us-east-1"]);
    assert_eq!(
        counted(&cloud),
        vec![(
            ("cloudformation", "ListStackSetAutoDeploymentTargets", "ok"),
            2
        )]
    );
}

mod stacks;
