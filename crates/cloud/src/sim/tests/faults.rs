//! The fault layer and call accounting.

use super::*;
use crate::error::AwsErrorKind;
use crate::sim::Faults;

#[tokio::test(start_paused = true)]
async fn fail_next_injects_errors_for_one_operation_then_stops() {
    let org = org();
    let sim = &org.sim;
    sim.create_stack_set(&create_request(false, false))
        .await
        .unwrap();
    sim.fail_next("CreateStackInstances", AwsErrorKind::Throttling, 2);
    let request = instances_request(
        "c",
        &[&org.prod],
        &[REGION],
        OperationPreferences::default(),
    );
    for _ in 0..2 {
        let err = sim.create_stack_instances(&request).await.unwrap_err();
        assert!(err.is_aws(AwsErrorKind::Throttling), "{err}");
        assert!(
            sim.operations(NAME).is_empty(),
            "an injected error applies nothing"
        );
    }
    // Other operations are unaffected meanwhile.
    sim.describe_stack_set(NAME, CallAs::SelfAccount)
        .await
        .unwrap();
    sim.create_stack_instances(&request).await.unwrap();
    let calls = sim.calls().snapshot();
    assert_eq!(
        calls[&("cloudformation", "CreateStackInstances", "throttling")],
        2
    );
    assert_eq!(calls[&("cloudformation", "CreateStackInstances", "ok")], 1);
    assert_eq!(calls[&("cloudformation", "CreateStackSet", "ok")], 1);
    assert_eq!(calls[&("cloudformation", "DescribeStackSet", "ok")], 1);
}

#[tokio::test(start_paused = true)]
async fn throttling_and_server_errors_use_aws_codes() {
    let org = org();
    let sim = &org.sim;
    sim.set_faults(Faults {
        throttle_rate: 1.0,
        error_rate: 0.0,
    });
    let err = sim
        .describe_stack_set(NAME, CallAs::SelfAccount)
        .await
        .unwrap_err();
    assert!(err.is_aws(AwsErrorKind::Throttling));
    assert!(err.to_string().contains("(Throttling)"), "{err}");
    let err = sim.list_roots().await.unwrap_err();
    assert!(
        err.to_string().contains("TooManyRequestsException"),
        "{err}"
    );
    sim.set_faults(Faults {
        throttle_rate: 0.0,
        error_rate: 1.0,
    });
    let err = sim.caller_account().await.unwrap_err();
    assert!(err.is_aws(AwsErrorKind::Transport), "{err}");
    let calls = sim.calls().snapshot();
    assert_eq!(calls[&("sts", "GetCallerIdentity", "transport")], 1);
    assert_eq!(calls[&("organizations", "ListRoots", "throttling")], 1);
}

#[tokio::test(start_paused = true)]
async fn random_faults_are_deterministic_for_a_seed() {
    async fn outcomes(seed: u64) -> Vec<bool> {
        let sim = Sim::new(SimConfig { seed, ..config() });
        sim.set_faults(Faults {
            throttle_rate: 0.3,
            error_rate: 0.2,
        });
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(sim.list_roots().await.is_ok());
        }
        out
    }
    let first = outcomes(7).await;
    assert_eq!(first, outcomes(7).await);
    let ok = first.iter().filter(|ok| **ok).count();
    assert!(
        (10..=35).contains(&ok),
        "about half the calls fail: {ok}/40 ok"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_response_leaves_the_operation_submitted() {
    let org = org();
    let sim = &org.sim;
    sim.create_stack_set(&create_request(false, false))
        .await
        .unwrap();
    sim.lose_next_response("CreateStackInstances", 1);
    let request = instances_request(
        "derived-id",
        &[&org.prod],
        &[REGION],
        OperationPreferences::default(),
    );
    let err = sim.create_stack_instances(&request).await.unwrap_err();
    assert!(err.is_aws(AwsErrorKind::Transport), "{err}");
    // The two answers a resend can get: while the first still runs, OperationInProgress (the slot is its own);
    // once it ended, OperationIdAlreadyExists.
    let err = sim.create_stack_instances(&request).await.unwrap_err();
    assert!(err.is_aws(AwsErrorKind::OperationInProgress), "{err}");
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    let err = sim.create_stack_instances(&request).await.unwrap_err();
    assert!(err.is_aws(AwsErrorKind::OperationIdAlreadyExists), "{err}");
    assert_eq!(
        sim.submitted_operation_ids(NAME),
        vec!["derived-id".to_string()]
    );
}

#[tokio::test(start_paused = true)]
async fn listings_are_counted_per_page() {
    let sim = Sim::new(config());
    let root = sim.root_id();
    let big = sim.add_ou(&root, "Big");
    for n in 0..45 {
        sim.add_account(&big, &format!("a{n}"));
    }
    assert_eq!(sim.list_accounts(&big).await.unwrap().len(), 45);
    assert_eq!(sim.list_organizational_units(&root).await.unwrap().len(), 1);
    let calls = sim.calls().snapshot();
    assert_eq!(
        calls[&("organizations", "ListAccountsForParent", "ok")],
        3,
        "20 a page"
    );
    assert_eq!(
        calls[&("organizations", "ListOrganizationalUnitsForParent", "ok")],
        1
    );
    let err = sim.list_accounts("ou-a1b2-missing1").await.unwrap_err();
    assert!(err.is_aws(AwsErrorKind::NotFound), "{err}");
    assert_eq!(sim.calls().by_operation()["ListAccountsForParent"], 4);
    assert_eq!(sim.calls().total(), 5);
}
