//! `spec.managementAccount: {deploy: true}`: a service-managed stack set never deploys to the management account,
//! so stacksetd keeps a plain stack there (the stack set's name, the deployment's first Region) with the stack
//! set's checked template, parameters and tags, under the same ownership, deletion and drift rules.

use std::collections::BTreeMap;
use std::time::Duration;

use stacksetd::cloud::Cloud;
use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::controller::ownership::{OWNER_TAG, TEMPLATE_TAG};
use stacksetd::controller::{self, State};

use super::helpers::*;
use crate::templates_support::calls;

fn with_stack(deploy: bool, regions: Vec<&'static str>, extra: &str) -> Spec {
    Spec {
        regions,
        extra: format!("  managementAccount: {{deploy: {deploy}}}\n{extra}"),
        ..Spec::whole_org()
    }
}

#[tokio::test(start_paused = true)]
async fn the_management_account_gets_the_stack_sets_checked_template_parameters_and_tags() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = with_stack(true, vec![REGION, OTHER_REGION], "").deployment();
    let states = converge_ok(&deployment, &ctx, state).await;
    assert!(
        states.iter().any(|s| matches!(
            s,
            State::Acted {
                action: "CreateStack",
                operation_id: None,
                ..
            }
        )),
        "{states:#?}"
    );
    let stack = sim
        .stack(REGION, STACK_SET)
        .expect("the stack, in the first Region");
    assert!(
        sim.stack(OTHER_REGION, STACK_SET).is_none(),
        "only the first Region"
    );
    assert_eq!(stack.status, "CREATE_COMPLETE");
    let set = sim.stack_set(STACK_SET).expect("stack set");
    assert_eq!(
        sim.stack_template_body(REGION, STACK_SET).as_deref(),
        Some(set.settings.template_body.as_str()),
        "the template the stack set has"
    );
    assert_eq!(stack.parameters, set.settings.parameters);
    assert_eq!(
        stack.tags, set.settings.tags,
        "owner tag and approval record included"
    );
    assert_eq!(
        stack.tags.get(OWNER_TAG).map(String::as_str),
        Some("aimably")
    );
    assert!(stack.tags.contains_key(TEMPLATE_TAG));
    // The stack set itself still never names the management account.
    assert_never_names_the_management_account(&sim);
    assert!(
        sim.instances(STACK_SET)
            .iter()
            .all(|i| i.account != sim.management_account_id())
    );

    // A converged pass: one DescribeStacks more, the template read from memory, nothing sent.
    let before = sim.calls().snapshot();
    let outcome = controller::reconcile(&deployment, &ctx, state)
        .await
        .expect("pass");
    assert_eq!(outcome.state, State::Converged);
    let calls = delta(&before, &sim.calls().snapshot());
    assert_eq!(calls.get("DescribeStacks"), Some(&1), "{calls:?}");
    assert!(!calls.contains_key("GetTemplate"), "{calls:?}");
    assert!(mutating_calls(&calls).is_empty(), "{calls:?}");
    assert_eq!(outcome.held_back(), None);
    let report = outcome.report.management_stack.expect("reported");
    assert_eq!(
        (report.status.as_str(), report.managed, report.state),
        ("CREATE_COMPLETE", true, "complete")
    );
    assert_eq!(report.region, REGION);

    // Without the block, not one call about it.
    let plain = Spec {
        regions: vec![REGION, OTHER_REGION],
        ..Spec::whole_org()
    }
    .deployment();
    let before = sim.calls().snapshot();
    let outcome = controller::reconcile(&plain, &ctx, state)
        .await
        .expect("pass");
    let calls = delta(&before, &sim.calls().snapshot());
    assert!(!calls.contains_key("DescribeStacks"), "{calls:?}");
    assert!(outcome.report.management_stack.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_change_made_outside_stacksetd_is_put_back_to_the_approved_template() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = with_stack(true, vec![REGION], "").deployment();
    converge_ok(&deployment, &ctx, state).await;
    let approved = sim.stack_template_body(REGION, STACK_SET).unwrap();
    // Someone widens the role in the console; the tags (and so the approval record) stay.
    let wider = approved.replace("\"ce:Get*\"", "\"*\"");
    assert!(sim.edit_stack_template(REGION, STACK_SET, &wider));
    let before = sim.calls().snapshot();
    let states = converge_ok(&deployment, &ctx, state).await;
    let calls = delta(&before, &sim.calls().snapshot());
    assert_eq!(
        calls.get("GetTemplate"),
        Some(&2),
        "read again when the stack changed, and after the update: {calls:?}"
    );
    assert_eq!(calls.get("UpdateStack"), Some(&1), "{calls:?}");
    assert!(states.iter().any(|s| matches!(
        s,
        State::Acted {
            action: "UpdateStack",
            ..
        }
    )));
    assert_eq!(
        sim.stack_template_body(REGION, STACK_SET).as_deref(),
        Some(approved.as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn a_stack_stacksetd_did_not_make_is_never_touched() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    sim.put_stack_outside(
        REGION,
        STACK_SET,
        "{\"Resources\": {}}",
        BTreeMap::from([("team".to_string(), "platform".to_string())]),
    );
    for deploy in [true, false] {
        let deployment = with_stack(deploy, vec![REGION], "").deployment();
        let outcome = controller::converge(&deployment, &ctx, state, |_| {})
            .await
            .expect("converges around it");
        let report = outcome.report.management_stack.expect("reported");
        assert_eq!((report.managed, report.state), (false, "not_managed"));
        let (plan, _) = controller::dry_run(&deployment, &ctx, state)
            .await
            .expect("plan");
        assert!(
            plan.notes.iter().any(|n| n.contains("left as it is")),
            "{:?}",
            plan.notes
        );
    }
    for op in ["CreateStack", "UpdateStack", "DeleteStack"] {
        assert_eq!(calls(&sim, op), 0, "{op}");
    }
    assert_eq!(
        sim.stack_template_body(REGION, STACK_SET).as_deref(),
        Some("{\"Resources\": {}}")
    );
}

#[tokio::test(start_paused = true)]
async fn deploy_false_deletes_our_stack_only_after_the_deletion_delay() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(
        &with_stack(true, vec![REGION], "").deployment(),
        &ctx,
        state,
    )
    .await;
    let off = with_stack(false, vec![REGION], "").deployment();
    let edited = tokio::time::Instant::now();
    let outcome = controller::reconcile(&off, &ctx, state)
        .await
        .expect("pass");
    assert!(
        matches!(
            &outcome.state,
            State::DeletionPending {
                action: "DeleteStack",
                ..
            }
        ),
        "{:?}",
        outcome.state
    );
    assert!(sim.stack(REGION, STACK_SET).is_some(), "not yet");
    // Timed: the DeleteStack goes out once the delay has passed since the edit, not before, and not long after.
    let mut outcome = outcome;
    while calls(&sim, "DeleteStack") == 0 {
        assert!(
            sim.stack(REGION, STACK_SET).is_some(),
            "deleted without a DeleteStack?"
        );
        tokio::time::sleep(
            outcome
                .requeue_after
                .max(std::time::Duration::from_millis(50)),
        )
        .await;
        outcome = controller::reconcile(&off, &ctx, state)
            .await
            .expect("pass");
    }
    let waited = edited.elapsed();
    let delay = config().deletion_delay;
    assert!(
        waited >= delay && waited < delay + std::time::Duration::from_secs(5),
        "DeleteStack {waited:?} after the edit, deletion_delay {delay:?}"
    );
    converge_ok(&off, &ctx, state).await;
    assert!(sim.stack(REGION, STACK_SET).is_none());
    assert_eq!(calls(&sim, "DeleteStack"), 1);
    assert!(sim.stack_set(STACK_SET).is_some(), "the stack set stays");
}

#[tokio::test(start_paused = true)]
async fn ensure_absent_takes_the_stack_away_with_the_stack_set() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(
        &with_stack(true, vec![REGION], "").deployment(),
        &ctx,
        state,
    )
    .await;
    let absent = Spec {
        ensure: "Absent",
        ..with_stack(true, vec![REGION], "")
    }
    .deployment();
    converge_ok(&absent, &ctx, state).await;
    assert!(sim.stack(REGION, STACK_SET).is_none());
    assert!(sim.stack_set(STACK_SET).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_failed_creation_is_cleaned_up_and_not_retried_until_something_changes() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    sim.fail_stack_creations(Some(
        "AimablyMemberRole already exists in stack arn:...:stack/manual",
    ));
    let deployment = with_stack(true, vec![REGION], "").deployment();
    let outcome = controller::converge(&deployment, &ctx, state, |_| {})
        .await
        .expect("converges as far as it can");
    assert_eq!(calls(&sim, "CreateStack"), 1);
    assert_eq!(
        calls(&sim, "DeleteStack"),
        1,
        "the rolled-back stack is deleted"
    );
    assert!(sim.stack(REGION, STACK_SET).is_none());
    let problem = outcome
        .held_back()
        .expect("reconcile --once exits 1 with it");
    assert!(problem.contains("already exists"), "{problem}");
    let report = outcome.report.management_stack.expect("reported");
    assert_eq!(report.state, "failed");
    assert!(
        report
            .status_reason
            .as_deref()
            .unwrap_or("")
            .contains("already exists"),
        "{report:?}"
    );
    // Passes go on, and the same version is not sent again.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    controller::converge(&deployment, &ctx, state, |_| {})
        .await
        .expect("pass");
    assert_eq!(calls(&sim, "CreateStack"), 1);
    // A fresh process (a restart) tries once more; with the cause fixed it succeeds.
    sim.fail_stack_creations(None);
    converge_ok(&deployment, &sim_context(&sim), &mut Default::default()).await;
    assert_eq!(calls(&sim, "CreateStack"), 2);
    assert_eq!(
        sim.stack(REGION, STACK_SET).unwrap().status,
        "CREATE_COMPLETE"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_to_create_stack_creates_one_stack() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = with_stack(true, vec![REGION], "").deployment();
    sim.lose_next_response("CreateStack", 1);
    let (result, _) = converge(&deployment, &ctx, state).await;
    result.expect("converged after the lost answer");
    assert_eq!(calls(&sim, "CreateStack"), 1, "never sent twice");
    assert_eq!(
        calls_with(&sim, "CreateStack", "ok"),
        0,
        "its one answer was the lost one"
    );
    assert_eq!(
        sim.stack(REGION, STACK_SET).unwrap().status,
        "CREATE_COMPLETE"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_first_region_moves_the_stack_deleting_the_old_one_first() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(
        &with_stack(true, vec![REGION, OTHER_REGION], "").deployment(),
        &ctx,
        state,
    )
    .await;
    let moved = with_stack(true, vec![OTHER_REGION, REGION], "").deployment();
    let mut order = Vec::new();
    let (result, states) = converge(&moved, &ctx, state).await;
    result.expect("converged");
    for state in &states {
        if let State::Acted { action, .. } = state {
            order.push(*action);
        }
    }
    assert_eq!(order, ["DeleteStack", "CreateStack"], "{states:#?}");
    assert!(sim.stack(REGION, STACK_SET).is_none());
    assert_eq!(
        sim.stack(OTHER_REGION, STACK_SET).unwrap().status,
        "CREATE_COMPLETE"
    );
}

#[tokio::test(start_paused = true)]
async fn drift_on_the_stack_is_detected_with_the_stack_sets() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment =
        with_stack(true, vec![REGION], "  driftDetection: {interval: 1h}\n").deployment();
    converge_ok(&deployment, &ctx, state).await;
    assert!(sim.drift_stack(REGION, STACK_SET));
    tokio::time::sleep(Duration::from_secs(3601)).await;
    let outcome = pass_until(&deployment, &ctx, state, |o| {
        o.report
            .management_stack
            .as_ref()
            .is_some_and(|m| m.drift.as_deref() == Some("DRIFTED"))
    })
    .await;
    assert!(outcome.report.management_stack.unwrap().drifted());
    assert_eq!(
        calls(&sim, "DetectStackDrift"),
        2,
        "with the stack set's first check (never checked) and the one an interval later"
    );
    assert_eq!(
        calls(&sim, "UpdateStack"),
        0,
        "reported, not re-applied (CloudFormation cannot)"
    );
}

#[tokio::test(start_paused = true)]
async fn an_orphaned_deployment_reports_the_stack_it_left_in_the_management_account() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(
        &with_stack(true, vec![REGION], "").deployment(),
        &ctx,
        state,
    )
    .await;
    // Its document is removed; another deployment of the same identity keeps a stack there too, so the identity
    // may read stacks: the stack set is an orphan, and so is the stack beside it.
    let mut other = with_stack(true, vec![REGION], "").deployment();
    other.spec.stack_set_name = "AimablyOther".into();
    let orphans = controller::ownership::orphans(&ctx, &[&other])
        .await
        .expect("scan");
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert_eq!(orphans[0].management_stack.as_deref(), Some(REGION));
    assert!(
        orphans[0]
            .advice
            .contains("managementAccount: {deploy: false}"),
        "{}",
        orphans[0].advice
    );
    // Reported, never deleted.
    assert!(sim.stack(REGION, STACK_SET).is_some());
    assert_eq!(calls(&sim, "DeleteStack"), 0);
    // An identity whose deployments keep no such stack is never asked for one (nor granted DescribeStacks).
    let mut plain = Spec::whole_org().deployment();
    plain.spec.stack_set_name = "AimablyOther".into();
    let before = calls(&sim, "DescribeStacks");
    let orphans = controller::ownership::orphans(&ctx, &[&plain])
        .await
        .expect("scan");
    assert_eq!(orphans[0].management_stack, None);
    assert_eq!(calls(&sim, "DescribeStacks"), before);
}
