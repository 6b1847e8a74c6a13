//! Failure tolerance and concurrency per Region: FAILED vs SUCCEEDED-with-failures, cancellation, STRICT vs SOFT.

use tokio::time::Duration;

use super::*;
use crate::desired::model::{ConcurrencyMode, RegionConcurrencyType};
use crate::error::AwsErrorKind;
use crate::{InstanceStatus, OperationStatus};

/// Three accounts, concurrency 1, the first one failing.
async fn run_with_failure(tolerance: u32) -> (Org, Operation, Vec<crate::OperationResult>) {
    let org = org();
    let sim = &org.sim;
    sim.create_stack_set(&create_request(false, false))
        .await
        .unwrap();
    let mut accounts = [org.w1.clone(), org.p1.clone(), org.p2.clone()];
    accounts.sort();
    sim.fail_account(&accounts[0], "AccessDenied: iam:CreateRole");
    let preferences = OperationPreferences {
        failure_tolerance_count: Some(tolerance),
        concurrency_mode: Some(ConcurrencyMode::SoftFailureTolerance),
        region_concurrency_type: Some(RegionConcurrencyType::Sequential),
        region_order: vec!["eu-west-1".to_string()],
        ..OperationPreferences::default()
    };
    let ous = [org.workloads.as_str()];
    let mut request = instances_request("tol", &ous, &["us-east-1", "eu-west-1"], preferences);
    request.targets.accounts = vec![org.d1.clone()];
    request.targets.account_filter_type = AccountFilterType::Difference;
    let id = sim.create_stack_instances(&request).await.unwrap();
    let op = wait(sim, &id).await;
    let results = sim
        .list_operation_results(NAME, &id, CallAs::SelfAccount)
        .await
        .unwrap();
    (org, op, results)
}

#[tokio::test(start_paused = true)]
async fn exceeding_failure_tolerance_fails_the_operation_and_cancels_the_rest() {
    let (org, op, results) = run_with_failure(0).await;
    assert_eq!(op.status, OperationStatus::Failed);
    assert_eq!(op.failed_instances, Some(1));
    // eu-west-1 ran first (RegionOrder): its failure stops it and us-east-1 is never attempted.
    let eu: Vec<_> = results.iter().filter(|r| r.region == "eu-west-1").collect();
    assert_eq!(eu.iter().filter(|r| r.status == "FAILED").count(), 1);
    assert_eq!(eu.iter().filter(|r| r.status == "CANCELLED").count(), 2);
    let failed = eu.iter().find(|r| r.status == "FAILED").unwrap();
    assert_eq!(
        failed.reason.as_deref(),
        Some("AccessDenied: iam:CreateRole")
    );
    let us: Vec<_> = results.iter().filter(|r| r.region == "us-east-1").collect();
    assert_eq!(us.len(), 3);
    assert!(us.iter().all(|r| r.status == "CANCELLED"), "{us:?}");
    assert!(
        !results.iter().any(|r| r.account == org.d1),
        "DIFFERENCE excludes d1"
    );
    let instances = org.sim.instances(NAME);
    assert!(
        instances
            .iter()
            .all(|i| i.status == InstanceStatus::Outdated)
    );
    assert!(instances.iter().any(|i| detailed(i) == "CANCELLED"));
}

#[tokio::test(start_paused = true)]
async fn failures_within_tolerance_succeed_with_a_count() {
    let (org, op, results) = run_with_failure(1).await;
    assert_eq!(op.status, OperationStatus::Succeeded);
    assert_eq!(op.failed_instances, Some(2), "one failure in each Region");
    assert_eq!(results.len(), 6);
    assert_eq!(
        results.iter().filter(|r| r.status == "SUCCEEDED").count(),
        4
    );
    let preferences = op.preferences.unwrap();
    assert_eq!(preferences.failure_tolerance_count, Some(1));
    let instances = org.sim.instances(NAME);
    assert_eq!(
        instances.iter().filter(|i| detailed(i) == "FAILED").count(),
        2
    );
    assert_eq!(
        instances
            .iter()
            .filter(|i| i.status == InstanceStatus::Current)
            .count(),
        4
    );
}

#[tokio::test(start_paused = true)]
async fn strict_mode_rejects_concurrency_above_tolerance() {
    let org = org();
    let sim = &org.sim;
    sim.create_stack_set(&create_request(false, false))
        .await
        .unwrap();
    let preferences = OperationPreferences {
        max_concurrent_count: Some(3),
        failure_tolerance_count: Some(1),
        ..OperationPreferences::default()
    };
    let err = sim
        .create_stack_instances(&instances_request(
            "x",
            &[&org.prod],
            &[REGION],
            preferences,
        ))
        .await
        .unwrap_err();
    assert!(err.is_aws(AwsErrorKind::Validation), "{err}");
    assert!(
        err.to_string().contains("FailureToleranceCount + 1"),
        "{err}"
    );
}

/// Four accounts, max concurrency 2, tolerance 1, the first account failing: STRICT drops to one at a time
/// after the failure, SOFT keeps two.
async fn duration_with_mode(mode: ConcurrencyMode) -> Duration {
    let org = org();
    let sim = &org.sim;
    sim.create_stack_set(&create_request(false, false))
        .await
        .unwrap();
    let mut accounts = [&org.w1, &org.p1, &org.p2, &org.d1];
    accounts.sort();
    sim.fail_account(accounts[0], "boom");
    let preferences = OperationPreferences {
        max_concurrent_count: Some(2),
        failure_tolerance_count: Some(1),
        concurrency_mode: Some(mode),
        ..OperationPreferences::default()
    };
    let id = sim
        .create_stack_instances(&instances_request(
            "m",
            &[&org.workloads],
            &[REGION],
            preferences,
        ))
        .await
        .unwrap();
    let op = wait(sim, &id).await;
    assert_eq!(op.status, OperationStatus::Succeeded);
    assert_eq!(op.failed_instances, Some(1));
    let recorded = &sim.operations(NAME)[0];
    recorded.ended_at.unwrap() - recorded.started_at.unwrap()
}

#[tokio::test(start_paused = true)]
async fn strict_failure_tolerance_lowers_concurrency_after_a_failure() {
    assert_eq!(
        duration_with_mode(ConcurrencyMode::SoftFailureTolerance).await,
        OVERHEAD + INSTANCE * 2
    );
    assert_eq!(
        duration_with_mode(ConcurrencyMode::StrictFailureTolerance).await,
        OVERHEAD + INSTANCE * 3
    );
}
