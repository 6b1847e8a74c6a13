//! Operations: simulated time, instance status progression, the operation slot, ids, failure tolerance.
//!
//! Size: over 600 lines of tests, one per operation rule of the simulator.

use tokio::time::{Duration, advance};

use super::*;
use crate::desired::model::RegionConcurrencyType;
use crate::error::AwsErrorKind;
use crate::{InstanceStatus, OperationAction, OperationStatus, StackSetSettings, UpdateStackSet};

fn update_request(id: &str, template: &str) -> UpdateStackSet {
    UpdateStackSet {
        name: NAME.to_string(),
        call_as: CallAs::SelfAccount,
        settings: StackSetSettings {
            description: Some("v2".to_string()),
            template_body: template.to_string(),
            parameters: BTreeMap::from([("Level".to_string(), "2".to_string())]),
            capabilities: BTreeSet::from(["CAPABILITY_NAMED_IAM".to_string()]),
            tags: BTreeMap::from([("team".to_string(), "finops".to_string())]),
            auto_deployment: None,
            managed_execution: None,
        },
        keep_template: false,
        template_url: None,
        preferences: OperationPreferences::default(),
        only: None,
        operation_id: id.to_string(),
    }
}

#[tokio::test(start_paused = true)]
async fn an_operation_takes_simulated_time_and_instances_progress() {
    let org = org();
    let sim = &org.sim;
    sim.create_stack_set(&create_request(false, false))
        .await
        .unwrap();
    let id = sim
        .create_stack_instances(&instances_request(
            "op-1",
            &[&org.prod],
            &[REGION],
            OperationPreferences::default(),
        ))
        .await
        .unwrap();
    assert_eq!(id, "op-1");
    let op = sim
        .describe_operation(NAME, &id, CallAs::SelfAccount)
        .await
        .unwrap();
    assert_eq!(op.status, OperationStatus::Running);
    let instances = sim.instances(NAME);
    assert_eq!(instances.len(), 2);
    for i in &instances {
        assert_eq!(i.status, InstanceStatus::Outdated);
        assert_eq!(detailed(i), "PENDING");
        assert_eq!(i.last_operation_id.as_deref(), Some("op-1"));
        assert_eq!(i.organizational_unit_id.as_deref(), Some(org.prod.as_str()));
    }
    // After the overhead, one instance at a time (default max concurrency 1), in account order.
    let (first, second) = if org.p1 < org.p2 {
        (&org.p1, &org.p2)
    } else {
        (&org.p2, &org.p1)
    };
    advance(OVERHEAD + Duration::from_millis(1)).await;
    let instances = sim.instances(NAME);
    assert_eq!(detailed(instance(&instances, first, REGION)), "RUNNING");
    assert_eq!(detailed(instance(&instances, second, REGION)), "PENDING");
    advance(INSTANCE).await;
    let instances = sim.instances(NAME);
    assert_eq!(
        instance(&instances, first, REGION).status,
        InstanceStatus::Current
    );
    assert_eq!(detailed(instance(&instances, first, REGION)), "SUCCEEDED");
    assert_eq!(detailed(instance(&instances, second, REGION)), "RUNNING");
    assert_eq!(
        sim.describe_operation(NAME, &id, CallAs::SelfAccount)
            .await
            .unwrap()
            .status,
        OperationStatus::Running
    );
    advance(INSTANCE).await;
    let op = sim
        .describe_operation(NAME, &id, CallAs::SelfAccount)
        .await
        .unwrap();
    assert_eq!(op.status, OperationStatus::Succeeded);
    assert_eq!(op.failed_instances, Some(0));
    assert!(
        sim.instances(NAME)
            .iter()
            .all(|i| i.status == InstanceStatus::Current)
    );
    let recorded = &sim.operations(NAME)[0];
    let took = recorded.ended_at.unwrap() - recorded.started_at.unwrap();
    assert_eq!(took, OVERHEAD + INSTANCE * 2);
    let observed = sim.stack_set(NAME).unwrap();
    assert_eq!(observed.regions, Some(vec![REGION.to_string()]));
    assert_eq!(
        observed.organizational_unit_ids,
        Some(vec![org.prod.clone()])
    );
    assert_eq!(
        observed.permission_model.as_deref(),
        Some("SERVICE_MANAGED")
    );
    assert_eq!(observed.settings.managed_execution, Some(false));
}

#[tokio::test(start_paused = true)]
async fn concurrency_percentage_and_parallel_regions_shorten_an_operation() {
    let org = org();
    let sim = &org.sim;
    sim.create_stack_set(&create_request(false, false))
        .await
        .unwrap();
    let preferences = OperationPreferences {
        max_concurrent_percentage: Some(100),
        failure_tolerance_percentage: Some(100),
        region_concurrency_type: Some(RegionConcurrencyType::Parallel),
        ..OperationPreferences::default()
    };
    let regions = ["us-east-1", "eu-west-1"];
    let id = sim
        .create_stack_instances(&instances_request(
            "fast",
            &[&org.workloads],
            &regions,
            preferences,
        ))
        .await
        .unwrap();
    wait(sim, &id).await;
    let op = &sim.operations(NAME)[0];
    // Four accounts in each of two Regions, all at once: one instance duration.
    assert_eq!(
        op.ended_at.unwrap() - op.started_at.unwrap(),
        OVERHEAD + INSTANCE
    );
    assert_eq!(sim.instances(NAME).len(), 8);

    // Sequential Regions with concurrency 2 (tolerance 1 keeps STRICT valid): 2 batches per Region, 2 Regions.
    let preferences = OperationPreferences {
        max_concurrent_count: Some(2),
        failure_tolerance_count: Some(1),
        ..OperationPreferences::default()
    };
    let id = sim
        .update_stack_instances(&instances_request(
            "slow",
            &[&org.workloads],
            &regions,
            preferences,
        ))
        .await
        .unwrap();
    wait(sim, &id).await;
    let op = &sim.operations(NAME)[1];
    assert_eq!(op.action, OperationAction::Update);
    assert_eq!(
        op.ended_at.unwrap() - op.started_at.unwrap(),
        OVERHEAD + INSTANCE * 4
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_operation_is_refused_while_one_runs() {
    let org = org();
    let sim = &org.sim;
    sim.create_stack_set(&create_request(false, false))
        .await
        .unwrap();
    let id = sim
        .create_stack_instances(&instances_request(
            "op-1",
            &[&org.prod],
            &[REGION],
            OperationPreferences::default(),
        ))
        .await
        .unwrap();
    let err = sim
        .update_stack_set(&update_request("op-2", "{}"))
        .await
        .unwrap_err();
    assert!(err.is_aws(AwsErrorKind::OperationInProgress), "{err}");
    assert!(
        err.to_string().contains("OperationInProgressException"),
        "{err}"
    );
    let err = sim
        .delete_stack_set(NAME, CallAs::SelfAccount)
        .await
        .unwrap_err();
    assert!(err.is_aws(AwsErrorKind::OperationInProgress), "{err}");
    // The refused update changed nothing.
    assert_eq!(
        sim.stack_set(NAME).unwrap().settings.description.as_deref(),
        Some("vendor access")
    );
    assert_eq!(sim.submitted_operation_ids(NAME), vec!["op-1".to_string()]);
    wait(sim, &id).await;
    sim.update_stack_set(&update_request("op-2", "{}"))
        .await
        .unwrap();
    assert_eq!(
        sim.calls().snapshot()[&("cloudformation", "UpdateStackSet", "operation_in_progress")],
        1
    );
}

#[tokio::test(start_paused = true)]
async fn managed_execution_queues_the_second_operation() {
    let org = org();
    let sim = &org.sim;
    sim.create_stack_set(&create_request(true, false))
        .await
        .unwrap();
    sim.create_stack_instances(&instances_request(
        "op-1",
        &[&org.prod],
        &[REGION],
        OperationPreferences::default(),
    ))
    .await
    .unwrap();
    sim.update_stack_set(&update_request("op-2", "{\"v\":2}"))
        .await
        .unwrap();
    let op2 = sim
        .describe_operation(NAME, "op-2", CallAs::SelfAccount)
        .await
        .unwrap();
    assert_eq!(op2.status, OperationStatus::Queued);
    // UpdateStackSet applies the settings at once, even though its operation waits.
    assert_eq!(
        sim.stack_set(NAME).unwrap().settings.template_body,
        "{\"v\":2}"
    );
    let listed = sim
        .list_operations(NAME, CallAs::SelfAccount, 10)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        ["op-2", "op-1"]
    );
    assert_eq!(
        sim.list_operations(NAME, CallAs::SelfAccount, 1)
            .await
            .unwrap()
            .len(),
        1
    );
    let done = wait(sim, "op-2").await;
    assert_eq!(done.status, OperationStatus::Succeeded);
    let ops = sim.operations(NAME);
    assert_eq!(ops[0].status, OperationStatus::Succeeded);
    assert_eq!(
        ops[1].started_at, ops[0].ended_at,
        "the queued operation starts when the slot frees"
    );
    assert!(
        sim.instances(NAME)
            .iter()
            .all(|i| i.status == InstanceStatus::Current
                && i.last_operation_id.as_deref() == Some("op-2"))
    );
}

#[tokio::test(start_paused = true)]
async fn update_stack_set_marks_instances_outdated_and_keeps_settings_when_it_fails() {
    let org = org();
    let sim = &org.sim;
    deployed(&org, &[&org.prod], &[REGION], false).await;
    sim.fail_account(&org.p1, "Role AimablyRole already exists");
    let id = sim
        .update_stack_set(&update_request("upd", "{\"v\":2}"))
        .await
        .unwrap();
    assert!(
        sim.instances(NAME)
            .iter()
            .all(|i| i.status == InstanceStatus::Outdated)
    );
    let op = wait(sim, &id).await;
    assert_eq!(op.status, OperationStatus::Failed);
    let observed = sim.stack_set(NAME).unwrap();
    assert_eq!(observed.settings.template_body, "{\"v\":2}");
    assert_eq!(
        observed
            .settings
            .parameters
            .get("Level")
            .map(String::as_str),
        Some("2")
    );
    assert_eq!(
        observed.settings.tags.get("team").map(String::as_str),
        Some("finops")
    );
    let instances = sim.instances(NAME);
    let failed = instance(&instances, &org.p1, REGION);
    assert_eq!(failed.status, InstanceStatus::Outdated);
    assert_eq!(detailed(failed), "FAILED");
    assert_eq!(
        failed.status_reason.as_deref(),
        Some("Role AimablyRole already exists")
    );
}

#[tokio::test(start_paused = true)]
async fn a_reused_operation_id_is_refused_even_after_it_finished() {
    let org = org();
    let sim = &org.sim;
    deployed(&org, &[&org.prod], &[REGION], false).await;
    let err = sim
        .create_stack_instances(&instances_request(
            "seed",
            &[&org.dev],
            &[REGION],
            OperationPreferences::default(),
        ))
        .await
        .unwrap_err();
    assert!(err.is_aws(AwsErrorKind::OperationIdAlreadyExists), "{err}");
    let err = sim
        .update_stack_set(&update_request("seed", "{}"))
        .await
        .unwrap_err();
    assert!(err.is_aws(AwsErrorKind::OperationIdAlreadyExists), "{err}");
    let err = sim
        .update_stack_set(&update_request("bad id!", "{}"))
        .await
        .unwrap_err();
    assert!(err.is_aws(AwsErrorKind::Validation), "{err}");
}

#[tokio::test(start_paused = true)]
async fn create_stack_set_is_idempotent_by_token_and_names_are_unique() {
    let org = org();
    let sim = &org.sim;
    sim.create_stack_set(&create_request(false, true))
        .await
        .unwrap();
    sim.create_stack_set(&create_request(false, true))
        .await
        .unwrap();
    let mut other = create_request(false, true);
    other.client_token = "token-2".to_string();
    let err = sim.create_stack_set(&other).await.unwrap_err();
    assert!(err.is_aws(AwsErrorKind::NameAlreadyExists), "{err}");
    assert_eq!(
        sim.describe_stack_set("Missing", CallAs::SelfAccount)
            .await
            .unwrap(),
        None
    );
    let observed = sim
        .describe_stack_set(NAME, CallAs::SelfAccount)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        observed.settings.auto_deployment.map(|a| a.enabled),
        Some(true)
    );
    assert!(observed.arn.unwrap().contains(":stackset/Vendor:"));
}

#[tokio::test(start_paused = true)]
async fn delete_stack_set_requires_no_instances() {
    let org = org();
    let sim = &org.sim;
    deployed(&org, &[&org.prod], &[REGION, "eu-west-1"], false).await;
    let err = sim
        .delete_stack_set(NAME, CallAs::SelfAccount)
        .await
        .unwrap_err();
    assert!(err.is_aws(AwsErrorKind::StackSetNotEmpty), "{err}");
    // Deleting one Region keeps the OU target; deleting the last one forgets it.
    let id = sim
        .delete_stack_instances(&delete_request(
            "del-1",
            &[&org.prod],
            &["eu-west-1"],
            false,
        ))
        .await
        .unwrap();
    assert_eq!(wait(sim, &id).await.status, OperationStatus::Succeeded);
    let observed = sim.stack_set(NAME).unwrap();
    assert_eq!(observed.regions, Some(vec![REGION.to_string()]));
    assert_eq!(
        observed.organizational_unit_ids,
        Some(vec![org.prod.clone()])
    );
    let id = sim
        .delete_stack_instances(&delete_request("del-2", &[&org.prod], &[REGION], false))
        .await
        .unwrap();
    wait(sim, &id).await;
    let observed = sim.stack_set(NAME).unwrap();
    assert_eq!(observed.organizational_unit_ids, Some(vec![]));
    assert_eq!(observed.regions, Some(vec![]));
    sim.delete_stack_set(NAME, CallAs::SelfAccount)
        .await
        .unwrap();
    assert_eq!(
        sim.describe_stack_set(NAME, CallAs::SelfAccount)
            .await
            .unwrap(),
        None
    );
    let err = sim
        .list_stack_instances(NAME, CallAs::SelfAccount)
        .await
        .unwrap_err();
    assert!(err.is_aws(AwsErrorKind::NotFound), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_external_operation_holds_the_slot() {
    let org = org();
    let sim = &org.sim;
    sim.create_stack_set(&create_request(false, false))
        .await
        .unwrap();
    let external = sim
        .start_external_operation(NAME, OperationAction::Update, Duration::from_secs(30))
        .unwrap();
    let err = sim
        .create_stack_instances(&instances_request(
            "mine",
            &[&org.prod],
            &[REGION],
            OperationPreferences::default(),
        ))
        .await
        .unwrap_err();
    assert!(err.is_aws(AwsErrorKind::OperationInProgress), "{err}");
    assert!(err.to_string().contains(&external), "{err}");
    advance(Duration::from_secs(30)).await;
    let listed = sim
        .list_operations(NAME, CallAs::SelfAccount, 5)
        .await
        .unwrap();
    assert_eq!(listed[0].status, OperationStatus::Succeeded);
    sim.create_stack_instances(&instances_request(
        "mine",
        &[&org.prod],
        &[REGION],
        OperationPreferences::default(),
    ))
    .await
    .unwrap();
    assert_eq!(sim.submitted_operation_ids(NAME), vec!["mine".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn create_is_idempotent_for_existing_instances_and_retries_outdated_ones() {
    let org = org();
    let sim = &org.sim;
    sim.create_stack_set(&create_request(false, false))
        .await
        .unwrap();
    sim.fail_account(&org.p1, "boom");
    let preferences = OperationPreferences {
        failure_tolerance_count: Some(5),
        ..OperationPreferences::default()
    };
    let id = sim
        .create_stack_instances(&instances_request(
            "first",
            &[&org.prod],
            &[REGION],
            preferences.clone(),
        ))
        .await
        .unwrap();
    wait(sim, &id).await;
    sim.heal_account(&org.p1);
    let id = sim
        .create_stack_instances(&instances_request(
            "again",
            &[&org.prod],
            &[REGION],
            preferences,
        ))
        .await
        .unwrap();
    assert_eq!(wait(sim, &id).await.status, OperationStatus::Succeeded);
    let results = sim
        .list_operation_results(NAME, &id, CallAs::SelfAccount)
        .await
        .unwrap();
    assert_eq!(
        results.len(),
        1,
        "only the OUTDATED instance is retried: {results:?}"
    );
    assert_eq!(results[0].account, org.p1);
    let instances = sim.instances(NAME);
    assert_eq!(
        instance(&instances, &org.p2, REGION)
            .last_operation_id
            .as_deref(),
        Some("first")
    );
    assert_eq!(
        instance(&instances, &org.p1, REGION).status,
        InstanceStatus::Current
    );
}

/// The audit the controller tests rely on (`Sim::repeated_changes`) catches one change submitted twice under two
/// ids, and only that: a retry after a failure, a different change, or a change after the organization moved are
/// not repeats.
#[tokio::test(start_paused = true)]
async fn a_change_accepted_twice_is_recorded_whatever_its_ids() {
    let org = org();
    let sim = &org.sim;
    deployed(&org, &[&org.prod], &[REGION], false).await;
    let prefs = OperationPreferences::default();
    let first = sim
        .update_stack_instances(&instances_request(
            "u1",
            &[&org.prod],
            &[REGION],
            prefs.clone(),
        ))
        .await
        .unwrap();
    // While the first runs or after it succeeded: the same change under a new id is applied twice.
    let mut queued = prefs.clone();
    queued.max_concurrent_percentage = Some(100);
    wait(sim, &first).await;
    let second = sim
        .update_stack_instances(&instances_request("u2", &[&org.prod], &[REGION], queued))
        .await
        .unwrap();
    wait(sim, &second).await;
    let repeated = sim.repeated_changes();
    assert_eq!(repeated.len(), 1, "{repeated:?}");
    assert_eq!(
        (repeated[0].first.as_str(), repeated[0].second.as_str()),
        ("u1", "u2")
    );

    // A different change in between, then the first again: not a repeat.
    let other = sim
        .update_stack_set(&update_request("s1", "{\"Resources\": {}}"))
        .await
        .unwrap();
    wait(sim, &other).await;
    let again = sim
        .update_stack_instances(&instances_request(
            "u3",
            &[&org.prod],
            &[REGION],
            prefs.clone(),
        ))
        .await
        .unwrap();
    wait(sim, &again).await;
    // After the organization changed outside the API: not a repeat either.
    sim.set_account_state(&org.p1, "ACTIVE");
    let after_move = sim
        .update_stack_instances(&instances_request(
            "u4",
            &[&org.prod],
            &[REGION],
            prefs.clone(),
        ))
        .await
        .unwrap();
    wait(sim, &after_move).await;
    // After a failed instance: a retry, not a repeat.
    sim.fail_account(&org.p1, "boom");
    let failing = sim
        .update_stack_instances(&instances_request(
            "u5",
            &[&org.prod],
            &[REGION],
            prefs.clone(),
        ))
        .await
        .unwrap();
    wait(sim, &failing).await;
    let retry = sim
        .update_stack_instances(&instances_request("u6", &[&org.prod], &[REGION], prefs))
        .await
        .unwrap();
    wait(sim, &retry).await;
    assert_eq!(
        sim.repeated_changes().len(),
        1,
        "{:?}",
        sim.repeated_changes()
    );
}

/// A repeat is found whatever ran in between, as long as the stack set is still as the first one left it: an
/// operation in between that changed nothing (a creation for instances that all exist) does not hide it. A
/// change undone in between and asked for again (create, delete, create) is no repeat.
#[tokio::test(start_paused = true)]
async fn a_repeat_is_found_across_operations_that_changed_nothing() {
    const OTHER: &str = "eu-west-1";
    let org = org();
    let sim = &org.sim;
    deployed(&org, &[&org.prod], &[REGION], false).await;
    let prefs = OperationPreferences::default();
    let first = sim
        .update_stack_instances(&instances_request(
            "r1",
            &[&org.prod],
            &[REGION],
            prefs.clone(),
        ))
        .await
        .unwrap();
    wait(sim, &first).await;
    // Something else in between, which changes nothing: every instance it asks for exists.
    let noop = sim
        .create_stack_instances(&instances_request(
            "noop",
            &[&org.prod],
            &[REGION],
            prefs.clone(),
        ))
        .await
        .unwrap();
    wait(sim, &noop).await;
    let again = sim
        .update_stack_instances(&instances_request(
            "r2",
            &[&org.prod],
            &[REGION],
            prefs.clone(),
        ))
        .await
        .unwrap();
    wait(sim, &again).await;
    let repeated = sim.repeated_changes();
    assert!(
        repeated
            .iter()
            .any(|r| (r.first.as_str(), r.second.as_str()) == ("r1", "r2")),
        "{repeated:?}"
    );
    let before = repeated.len();

    // Created, deleted, created again: each time there was something to do.
    for (id, delete) in [("c1", false), ("d1", true), ("c2", false)] {
        let op = if delete {
            sim.delete_stack_instances(&delete_request(id, &[&org.prod], &[OTHER], false))
                .await
                .unwrap()
        } else {
            sim.create_stack_instances(&instances_request(
                id,
                &[&org.prod],
                &[OTHER],
                prefs.clone(),
            ))
            .await
            .unwrap()
        };
        wait(sim, &op).await;
    }
    assert_eq!(
        sim.repeated_changes().len(),
        before,
        "{:?}",
        sim.repeated_changes()
    );
}

/// UpdateStackSet with DeploymentTargets (a staged rollout's canary): every instance is marked OUTDATED, only the
/// scoped ones are updated (CURRENT when the operation ends), the others keep OUTDATED; auto-deployment settings
/// are refused alongside targets, as AWS does.
#[tokio::test(start_paused = true)]
async fn a_scoped_update_reaches_only_its_targets_and_leaves_the_rest_outdated() {
    let org = org();
    let sim = &org.sim;
    deployed(&org, &[&org.prod], &[REGION], false).await;
    let mut request = update_request("canary-1", "{\"Resources\": {}}");
    request.settings.description = None;
    request.only = Some(crate::InstanceScope {
        targets: crate::Targets {
            organizational_unit_ids: vec![org.prod.clone()],
            accounts: vec![org.p1.clone()],
            account_filter_type: crate::AccountFilterType::Intersection,
        },
        regions: vec![REGION.to_string()],
    });
    let mut with_auto = request.clone();
    with_auto.operation_id = "canary-0".into();
    with_auto.settings.auto_deployment = Some(crate::AutoDeployment::default());
    assert!(sim.update_stack_set(&with_auto).await.is_err());
    sim.update_stack_set(&request).await.unwrap();
    for i in sim.instances(NAME) {
        assert_eq!(i.status, InstanceStatus::Outdated, "{i:?}");
    }
    advance(OVERHEAD + INSTANCE * 4).await;
    let op = sim
        .describe_operation(NAME, "canary-1", CallAs::SelfAccount)
        .await
        .unwrap();
    assert_eq!(op.status, OperationStatus::Succeeded);
    let instances = sim.instances(NAME);
    assert_eq!(
        instance(&instances, &org.p1, REGION).status,
        InstanceStatus::Current
    );
    assert_eq!(
        instance(&instances, &org.p2, REGION).status,
        InstanceStatus::Outdated
    );
    assert_eq!(
        sim.stack_set(NAME).unwrap().settings.template_body,
        "{\"Resources\": {}}"
    );
}
