//! The instance cache (controller/instances.rs): every way instances change outside stacksetd reaches the cache,
//! the coverage and the report within one pass after its operation is listed; an operation the listing hides is
//! caught by the relist; a deletion is never decided from the cache.

use std::sync::Arc;
use std::time::Duration;

use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::cloud::{Cloud, DetectDriftRequest, InstanceStatus, OperationPreferences};
use stacksetd::controller::{self, Context, Outcome, State};

use super::helpers::*;

fn instances_of(outcome: &Outcome) -> usize {
    outcome.report.instances.values().sum()
}

#[tokio::test(start_paused = true)]
async fn auto_deployment_to_a_new_account_is_in_the_next_pass() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = Spec::whole_org().deployment();
    converge_ok(&deployment, &ctx, state).await;
    let (converged, calls) = counted_pass(&deployment, &ctx, state, &sim).await;
    assert!(
        !calls.contains_key("ListStackInstances"),
        "cached: {calls:?}"
    );
    let before = instances_of(&converged);

    let prod = sim.ou_named("Prod").expect("Prod");
    let joined = sim.add_account(&prod, "joined-later");
    settle().await;
    ctx.invalidate_organization();
    let (outcome, calls) = counted_pass(&deployment, &ctx, state, &sim).await;
    assert_eq!(calls.get("ListStackInstances"), Some(&1), "{calls:?}");
    assert_eq!(instances_of(&outcome), before + 1, "{:?}", outcome.report);
    assert_eq!(outcome.report.missing_instances, 0, "{:?}", outcome.report);
    assert!(
        sim.instances(STACK_SET).iter().any(|i| i.account == joined),
        "CloudFormation deployed it"
    );
    assert_eq!(outcome.state, State::Converged);
}

#[tokio::test(start_paused = true)]
async fn an_account_leaving_the_organization_is_gone_from_the_next_pass() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = Spec::whole_org().deployment();
    converge_ok(&deployment, &ctx, state).await;
    let (converged, _) = counted_pass(&deployment, &ctx, state, &sim).await;
    let leaving = active_members(&sim).into_iter().next().expect("a member");
    sim.remove_account(&leaving);
    settle().await;
    ctx.invalidate_organization();
    let (outcome, calls) = counted_pass(&deployment, &ctx, state, &sim).await;
    assert_eq!(calls.get("ListStackInstances"), Some(&1), "{calls:?}");
    assert_eq!(instances_of(&outcome), instances_of(&converged) - 1);
    assert_eq!(outcome.report.orphaned_instances, 0, "{:?}", outcome.report);
}

#[tokio::test(start_paused = true)]
async fn another_tools_operation_and_one_that_fails_part_way_are_in_the_next_pass() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    // Targets only Prod: another tool adds an instance outside it, in an account that fails.
    let prod = sim.ou_named("Prod").expect("Prod");
    let deployment = Spec {
        ous: vec![prod.clone()],
        ..Spec::whole_org()
    }
    .deployment();
    converge_ok(&deployment, &ctx, state).await;
    let _ = counted_pass(&deployment, &ctx, state, &sim).await;
    let outsider = active_members(&sim)
        .into_iter()
        .find(|a| !sim.instances(STACK_SET).iter().any(|i| &i.account == a))
        .expect("an account outside Prod");
    sim.fail_account(&outsider, "a role of that name already exists");
    someone_creates_instances(&sim, &[outsider.as_str()], REGION, "other-tool-1").await;
    settle().await;
    let (outcome, calls) = counted_pass(&deployment, &ctx, state, &sim).await;
    assert_eq!(calls.get("ListStackInstances"), Some(&1), "{calls:?}");
    let listed = sim
        .instances(STACK_SET)
        .into_iter()
        .find(|i| i.account == outsider)
        .expect("the other tool's instance");
    assert_ne!(listed.status, InstanceStatus::Current);
    assert_eq!(
        outcome.report.orphaned_instances, 1,
        "the instance outside the targets is seen: {:?}",
        outcome.report
    );
}

#[tokio::test(start_paused = true)]
async fn a_drift_detection_by_anyone_is_in_the_next_pass() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = Spec::whole_org().deployment();
    converge_ok(&deployment, &ctx, state).await;
    let _ = counted_pass(&deployment, &ctx, state, &sim).await;
    let instance = sim.instances(STACK_SET).remove(0);
    assert!(sim.drift_resources(STACK_SET, &instance.account, &instance.region));
    let cloud: Arc<dyn Cloud> = Arc::new(sim.clone());
    cloud
        .detect_stack_set_drift(&DetectDriftRequest {
            name: STACK_SET.into(),
            call_as: Default::default(),
            preferences: OperationPreferences::default(),
            operation_id: "console-drift-check".into(),
        })
        .await
        .expect("drift detection");
    settle().await;
    let (outcome, calls) = counted_pass(&deployment, &ctx, state, &sim).await;
    assert_eq!(calls.get("ListStackInstances"), Some(&1), "{calls:?}");
    let drift = outcome.report.drift.expect("drift reported");
    assert_eq!(drift.drifted_instances, 1, "{drift:?}");
}

#[tokio::test(start_paused = true)]
async fn an_operation_the_listing_hides_is_caught_by_the_relist() {
    let sim = Sim::realistic(SimConfig::default());
    let lagging = Lagging::new(&sim);
    let ctx = context(lagging.clone());
    let state = &mut DeploymentState::default();
    let deployment = Spec::whole_org().deployment();
    converge_ok(&deployment, &ctx, state).await;
    let (converged, _) = counted_pass(&deployment, &ctx, state, &sim).await;
    let prod = sim.ou_named("Prod").expect("Prod");
    sim.add_account(&prod, "joined-unseen");
    settle().await;
    // ListStackSetOperations does not show CloudFormation's auto-deployment yet.
    let hidden = sim
        .operations(STACK_SET)
        .last()
        .expect("auto-deployment")
        .id
        .clone();
    lagging.hide_operation(&hidden);
    let (stale, calls) = counted_pass(&deployment, &ctx, state, &sim).await;
    assert!(!calls.contains_key("ListStackInstances"), "{calls:?}");
    assert_eq!(
        instances_of(&stale),
        instances_of(&converged),
        "not seen yet"
    );
    // Still hidden, but the relist comes due: the level-triggered listing wins.
    tokio::time::sleep(config().instance_relist_interval).await;
    let (outcome, calls) = counted_pass(&deployment, &ctx, state, &sim).await;
    assert!(calls.contains_key("ListStackInstances"), "{calls:?}");
    assert_eq!(instances_of(&outcome), instances_of(&converged) + 1);
}

#[tokio::test(start_paused = true)]
async fn a_deletion_is_decided_from_a_fresh_listing_never_the_cache() {
    let sim = Sim::realistic(SimConfig::default());
    // ListStackSetOperations lags (as AWS documents it may): an operation it does not show yet leaves the cache
    // believing what it listed last.
    let lagging = Lagging::new(&sim);
    let ctx = context(lagging.clone());
    let state = &mut DeploymentState::default();
    let spec = Spec {
        regions: vec![REGION, OTHER_REGION],
        ..Spec::whole_org()
    };
    converge_ok(&spec.deployment(), &ctx, state).await;
    let _ = counted_pass(&spec.deployment(), &ctx, state, &sim).await;
    // Someone else deletes every instance in the other Region; the operations listing does not show it yet, so
    // the cache still holds them.
    let cloud: Arc<dyn Cloud> = Arc::new(sim.clone());
    cloud
        .delete_stack_instances(&stacksetd::cloud::DeleteInstancesRequest {
            name: STACK_SET.into(),
            call_as: Default::default(),
            targets: stacksetd::cloud::Targets {
                organizational_unit_ids: vec![sim.root_id()],
                accounts: Vec::new(),
                account_filter_type: stacksetd::cloud::AccountFilterType::None,
            },
            regions: vec![OTHER_REGION.to_string()],
            retain_stacks: true,
            preferences: stacksetd::cloud::OperationPreferences::default(),
            operation_id: "someone-else-deletes".into(),
        })
        .await
        .expect("someone else's DeleteStackInstances");
    lagging.hide_operation("someone-else-deletes");
    settle().await;
    assert!(sim.instances(STACK_SET).iter().all(|i| i.region == REGION));
    let deletes_before = sim
        .calls()
        .by_operation()
        .get("DeleteStackInstances")
        .copied();
    // Dropping the Region: from the cache, a deletion is planned (and waits for deletion_delay without listing).
    let narrower = Spec {
        regions: vec![REGION],
        ..spec
    }
    .deployment();
    let (waiting, calls) = counted_pass(&narrower, &ctx, state, &sim).await;
    assert!(
        matches!(waiting.state, State::DeletionPending { .. }),
        "the cache still holds the other Region's instances: {:?}",
        waiting.state
    );
    assert!(!calls.contains_key("ListStackInstances"), "{calls:?}");
    tokio::time::sleep(config().deletion_delay).await;
    // The pass that would submit it lists afresh, finds nothing to delete, and deletes nothing.
    let (outcome, calls) = counted_pass(&narrower, &ctx, state, &sim).await;
    assert!(calls.contains_key("ListStackInstances"), "{calls:?}");
    assert!(outcome.is_converged(), "{:?}", outcome.state);
    assert_eq!(
        sim.calls()
            .by_operation()
            .get("DeleteStackInstances")
            .copied(),
        deletes_before,
        "no DeleteStackInstances from a stale cache"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stack_set_level_edit_is_submitted_without_listing_the_instances() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let spec = Spec::whole_org();
    converge_ok(&spec.deployment(), &ctx, state).await;
    let _ = counted_pass(&spec.deployment(), &ctx, state, &sim).await;
    let edited = Spec {
        description: "Aimably access, reviewed",
        ..spec
    }
    .deployment();
    let (outcome, calls) = counted_pass(&edited, &ctx, state, &sim).await;
    assert!(
        matches!(
            &outcome.state,
            State::Acted {
                action: "UpdateStackSet",
                ..
            }
        ),
        "{:?}",
        outcome.state
    );
    assert!(!calls.contains_key("ListStackInstances"), "{calls:?}");
    assert_eq!(calls.get("DescribeStackSet"), Some(&1), "{calls:?}");
    // The page read to check the cache also serves the adoption check and the id's sequence.
    assert_eq!(calls.get("ListStackSetOperations"), Some(&1), "{calls:?}");
}

/// While an operation runs, a pass polls DescribeStackSetOperation only: the failures so far come from its
/// StatusDetails. `track_progress` (a person at a terminal) lists that operation's results, never the instances.
#[tokio::test(start_paused = true)]
async fn waiting_reads_progress_from_the_operation_not_from_a_listing() {
    let sim = Sim::realistic(SimConfig {
        instance_duration: Duration::from_secs(30),
        ..SimConfig::default()
    });
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let spec = Spec {
        preferences: "{failureTolerancePercentage: 100, maxConcurrentCount: 1, regionConcurrencyType: SEQUENTIAL}",
        ..Spec::whole_org()
    };
    converge_ok(&spec.deployment(), &ctx, state).await;
    let failing = active_members(&sim).into_iter().next().expect("a member");
    sim.fail_account(&failing, "the execution role is gone");
    let edited = Spec {
        description: "Aimably access, reviewed",
        ..spec
    }
    .deployment();
    let (acted, _) = counted_pass(&edited, &ctx, state, &sim).await;
    assert!(
        matches!(acted.state, State::Acted { .. }),
        "{:?}",
        acted.state
    );

    let mut failed_seen = 0;
    let mut polls = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(20)).await;
        let before = sim.calls().snapshot();
        // The pass that sees the operation end reports its failure as an error.
        let Ok(outcome) = controller::reconcile(&edited, &ctx, state).await else {
            break;
        };
        let calls = delta(&before, &sim.calls().snapshot());
        let State::Waiting { progress, .. } = &outcome.state else {
            break;
        };
        polls += 1;
        assert!(!calls.contains_key("ListStackInstances"), "{calls:?}");
        assert!(
            !calls.contains_key("ListStackSetOperationResults"),
            "{calls:?}"
        );
        assert_eq!(
            calls.get("DescribeStackSetOperation"),
            Some(&1),
            "{calls:?}"
        );
        let progress = progress.as_ref().expect("progress from StatusDetails");
        assert_eq!(progress.done, None, "not known without the results");
        failed_seen = failed_seen.max(progress.failed);
    }
    assert!(polls >= 3, "the operation ran for several polls: {polls}");
    assert_eq!(failed_seen, 1, "the failure was reported while it ran");

    // A person watching: the operation's own results give done/total per Region.
    let watching = Context::new(
        Arc::new(sim.clone()),
        controller::Config {
            track_progress: true,
            ..config()
        },
    );
    let watching_state = &mut DeploymentState::default();
    sim.heal_account(&failing);
    converge_ok(&edited, &watching, watching_state).await;
    let again = Spec {
        description: "Aimably access, reviewed twice",
        preferences: "{failureTolerancePercentage: 100, maxConcurrentCount: 1, regionConcurrencyType: SEQUENTIAL}",
        ..Spec::whole_org()
    }
    .deployment();
    let (acted, _) = counted_pass(&again, &watching, watching_state, &sim).await;
    assert!(
        matches!(acted.state, State::Acted { .. }),
        "{:?}",
        acted.state
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (outcome, calls) = counted_pass(&again, &watching, watching_state, &sim).await;
    let State::Waiting { progress, .. } = &outcome.state else {
        panic!("still running: {:?}", outcome.state);
    };
    assert!(!calls.contains_key("ListStackInstances"), "{calls:?}");
    assert_eq!(
        calls.get("ListStackSetOperationResults"),
        Some(&1),
        "{calls:?}"
    );
    let progress = progress.as_ref().expect("progress");
    let total = progress.total.expect("total from the results");
    assert_eq!(
        total,
        sim.instances(STACK_SET).len(),
        "one result per instance: {progress:?}"
    );
    assert!(progress.done.expect("done") < total, "{progress:?}");
    assert_eq!(progress.regions.len(), 1, "{progress:?}");
    assert_eq!(progress.regions[0].region, REGION);
}
