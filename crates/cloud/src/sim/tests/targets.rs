//! Target resolution: the management account, nested OUs, account filters, suspended accounts.

use super::*;
use crate::error::AwsErrorKind;
use crate::{InstanceStatus, OperationStatus};

#[tokio::test(start_paused = true)]
async fn the_management_account_never_gets_an_instance() {
    let org = org();
    let sim = &org.sim;
    let root = sim.root_id();
    deployed(&org, &[&root], &[REGION], false).await;
    let instances = sim
        .list_stack_instances(NAME, CallAs::SelfAccount)
        .await
        .unwrap();
    let accounts = accounts_of(&instances);
    assert!(!accounts.contains(&sim.management_account_id()));
    let expected: BTreeSet<String> = [&org.w1, &org.p1, &org.p2, &org.d1, &org.s1]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(accounts, expected);
    assert!(
        instances
            .iter()
            .all(|i| i.organizational_unit_id.as_deref() == Some(root.as_str()))
    );
}

#[tokio::test(start_paused = true)]
async fn an_ou_target_includes_its_child_ous() {
    let org = org();
    let sim = &org.sim;
    deployed(&org, &[&org.workloads], &[REGION], false).await;
    let accounts = accounts_of(&sim.instances(NAME));
    let expected: BTreeSet<String> = [&org.w1, &org.p1, &org.p2, &org.d1]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(accounts, expected);
    assert!(!accounts.contains(&org.s1));
}

#[tokio::test(start_paused = true)]
async fn account_filters_and_unknown_ous() {
    let org = org();
    let sim = &org.sim;
    sim.create_stack_set(&create_request(false, false))
        .await
        .unwrap();
    let mut request = instances_request(
        "i",
        &[&org.workloads],
        &[REGION],
        OperationPreferences::default(),
    );
    request.targets.accounts = vec![org.p1.clone(), org.s1.clone()];
    request.targets.account_filter_type = AccountFilterType::Intersection;
    let id = sim.create_stack_instances(&request).await.unwrap();
    wait(sim, &id).await;
    assert_eq!(
        accounts_of(&sim.instances(NAME)),
        BTreeSet::from([org.p1.clone()])
    );

    request.operation_id = "u".to_string();
    request.targets.account_filter_type = AccountFilterType::Union;
    let err = sim.create_stack_instances(&request).await.unwrap_err();
    assert!(err.is_aws(AwsErrorKind::Validation), "{err}");

    let request = instances_request(
        "x",
        &["ou-a1b2-nothere1"],
        &[REGION],
        OperationPreferences::default(),
    );
    let err = sim.create_stack_instances(&request).await.unwrap_err();
    assert!(err.is_aws(AwsErrorKind::Validation), "{err}");
    assert!(err.to_string().contains("ou-a1b2-nothere1"), "{err}");
    let request = instances_request("y", &[&org.sandbox], &[], OperationPreferences::default());
    assert!(
        sim.create_stack_instances(&request)
            .await
            .unwrap_err()
            .is_aws(AwsErrorKind::Validation)
    );
}

#[tokio::test(start_paused = true)]
async fn a_suspended_account_is_skipped_not_failed() {
    let org = org();
    let sim = &org.sim;
    sim.set_account_state(&org.p2, "SUSPENDED");
    sim.create_stack_set(&create_request(false, false))
        .await
        .unwrap();
    let id = sim
        .create_stack_instances(&instances_request(
            "c",
            &[&org.prod],
            &[REGION],
            OperationPreferences::default(),
        ))
        .await
        .unwrap();
    let op = wait(sim, &id).await;
    assert_eq!(op.status, OperationStatus::Succeeded);
    assert_eq!(op.failed_instances, Some(0));
    let instances = sim.instances(NAME);
    let skipped = instance(&instances, &org.p2, REGION);
    assert_eq!(skipped.status, InstanceStatus::Outdated);
    assert!(skipped.skipped_suspended());
    assert_eq!(
        instance(&instances, &org.p1, REGION).status,
        InstanceStatus::Current
    );
    let results = sim
        .list_operation_results(NAME, &id, CallAs::SelfAccount)
        .await
        .unwrap();
    let row = results.iter().find(|r| r.account == org.p2).unwrap();
    assert_eq!(row.status, "SKIPPED");
    assert!(row.reason.as_deref().unwrap().contains("SUSPENDED"));

    // Since June 2023 a delete without RetainStacks skips the suspended account (no failure, the instance stays,
    // the reason says why); only RetainStacks removes it.
    let id = sim
        .delete_stack_instances(&delete_request("d1", &[&org.prod], &[REGION], false))
        .await
        .unwrap();
    let op = wait(sim, &id).await;
    assert_eq!(op.status, OperationStatus::Succeeded);
    assert_eq!(op.failed_instances, Some(0));
    let instances = sim.instances(NAME);
    assert_eq!(accounts_of(&instances), BTreeSet::from([org.p2.clone()]));
    assert!(instances[0].skipped_suspended(), "{:?}", instances[0]);
    assert!(
        instances[0]
            .status_reason
            .as_deref()
            .unwrap()
            .contains("RetainStacks")
    );
    let id = sim
        .delete_stack_instances(&delete_request("d2", &[&org.prod], &[REGION], true))
        .await
        .unwrap();
    assert_eq!(wait(sim, &id).await.status, OperationStatus::Succeeded);
    assert!(sim.instances(NAME).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_delegated_admin_sees_stack_sets_only_as_delegated_admin() {
    let mut config = config();
    config.caller_account_id = Some("222222222222".to_string());
    let org = org_with(config);
    let sim = &org.sim;
    assert_eq!(sim.caller_account().await.unwrap(), "222222222222");
    let mut request = create_request(false, false);
    request.call_as = CallAs::DelegatedAdmin;
    sim.create_stack_set(&request).await.unwrap();
    assert!(
        sim.describe_stack_set(NAME, CallAs::DelegatedAdmin)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        sim.describe_stack_set(NAME, CallAs::SelfAccount)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn the_org_walk_sees_the_realistic_organization() {
    let sim = Sim::realistic(config());
    let snapshot = crate::org::scan(&sim).await.unwrap();
    assert_eq!(snapshot.management_account_id, sim.management_account_id());
    assert_eq!(snapshot.units.len(), 7, "root + 6 OUs");
    assert_eq!(snapshot.accounts.len(), 41, "management + 40 members");
    let suspended: Vec<_> = snapshot
        .accounts
        .values()
        .filter(|a| !a.account.is_active())
        .collect();
    assert_eq!(suspended.len(), 1);
    let management = &snapshot.accounts[&snapshot.management_account_id];
    assert_eq!(management.parent, snapshot.root_id);
    let workloads = sim.ou_named("Workloads").unwrap();
    let prod = sim.ou_named("Prod").unwrap();
    assert_eq!(
        snapshot.units[&prod].parent.as_deref(),
        Some(workloads.as_str())
    );
    // Same seed, same organization.
    let again = crate::org::scan(&Sim::realistic(config())).await.unwrap();
    assert_eq!(
        again.accounts.keys().collect::<Vec<_>>(),
        snapshot.accounts.keys().collect::<Vec<_>>()
    );
    assert!(
        prod.starts_with("ou-a1b2-") && prod.len() == "ou-a1b2-12345678".len(),
        "{prod}"
    );
}

/// Where AWS is silent (`SimConfig::reassociate`): an instance created through ROOT, then targeted again through
/// a child OU, keeps ROOT as its OU in the strict world and moves to the child in the lenient one. Either way a
/// later deletion of ROOT removes it (documented: deleting an OU's stacks deletes its child OUs' too), which is
/// why the plan must never send a whole-OU deletion of a parent whose subtree holds a kept account.
#[tokio::test(start_paused = true)]
async fn a_child_ou_target_reassociates_an_existing_instance_only_when_the_switch_says_so() {
    for reassociate in [false, true] {
        let org = org_with(SimConfig {
            reassociate,
            ..config()
        });
        let sim = &org.sim;
        let root = sim.root_id();
        deployed(&org, &[&root], &[REGION], false).await;
        let all = OperationPreferences {
            max_concurrent_percentage: Some(100),
            failure_tolerance_percentage: Some(100),
            ..OperationPreferences::default()
        };
        let id = sim
            .create_stack_instances(&instances_request(
                "again",
                &[&org.workloads],
                &[REGION],
                all.clone(),
            ))
            .await
            .unwrap();
        wait(sim, &id).await;
        let instances = sim.instances(NAME);
        let p1 = instances
            .iter()
            .find(|i| i.account == org.p1)
            .expect("p1's instance");
        let expected = if reassociate { &org.workloads } else { &root };
        assert_eq!(
            p1.organizational_unit_id.as_ref(),
            Some(expected),
            "reassociate={reassociate}"
        );
        let mut delete = delete_request("drop-root", &[&root], &[REGION], false);
        delete.preferences = all;
        let id = sim.delete_stack_instances(&delete).await.unwrap();
        wait(sim, &id).await;
        assert!(
            sim.instances(NAME).is_empty(),
            "reassociate={reassociate}: ROOT's deletion removes its subtree"
        );
    }
}
