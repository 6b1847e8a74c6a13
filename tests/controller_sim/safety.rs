//! One operation at a time, never submitted twice: adopting someone else's operation, riding out
//! OperationInProgress, a daemon restarted mid-operation, and a submission whose response was lost.

use std::sync::Arc;
use std::time::Duration;

use stacksetd::cloud::OperationAction;
use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::controller::{self, Outcome, State};
use stacksetd::error::AwsErrorKind;

use super::helpers::*;

/// How long someone else's operation holds the stack set.
const EXTERNAL_HOLD: Duration = Duration::from_secs(90);

/// What one controller alone submits for `spec` on a fresh realistic organization (same seed, same ids).
async fn baseline_submissions(spec: &Spec) -> Vec<String> {
    let sim = Sim::realistic(SimConfig::default());
    converge_ok(
        &spec.deployment(),
        &sim_context(&sim),
        &mut Default::default(),
    )
    .await;
    sim.submitted_operation_ids(STACK_SET)
}

fn waiting_on(outcome: &Outcome) -> Option<&str> {
    match &outcome.state {
        State::Waiting { operation_id, .. } => Some(operation_id),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn restarted_daemon_adopts_the_operation_its_predecessor_submitted() {
    let spec = Spec::whole_org();
    let deployment = spec.deployment();
    let sim = Sim::realistic(SimConfig::default());
    let first = sim_context(&sim);
    let first_state = &mut DeploymentState::default();
    let acted = pass_until(&deployment, &first, first_state, submitted_operation).await;
    let State::Acted {
        operation_id: Some(id),
        ..
    } = acted.state
    else {
        unreachable!("pass_until stops on a submission")
    };
    drop(first);

    let restarted = sim_context(&sim);
    let restarted_state = &mut DeploymentState::default();
    let mut passes = 0;
    loop {
        let before = sim.calls().snapshot();
        let outcome = controller::reconcile(&deployment, &restarted, restarted_state)
            .await
            .expect("pass");
        let calls = delta(&before, &sim.calls().snapshot());
        let Some(waiting) = waiting_on(&outcome) else {
            break;
        };
        assert_eq!(waiting, id, "adopts the running operation");
        assert!(
            mutating_calls(&calls).is_empty(),
            "submits nothing while waiting: {calls:?}"
        );
        passes += 1;
        tokio::time::sleep(outcome.requeue_after).await;
    }
    assert!(
        passes > 0,
        "the restarted controller found the operation running"
    );
    converge_ok(&deployment, &restarted, restarted_state).await;
    assert_eq!(
        sim.submitted_operation_ids(STACK_SET),
        baseline_submissions(&spec).await
    );
}

#[tokio::test(start_paused = true)]
async fn someone_elses_operation_is_waited_for_not_raced() {
    let sim = Sim::realistic(SimConfig::default());
    let spec = Spec::whole_org();
    converge_ok(
        &spec.deployment(),
        &sim_context(&sim),
        &mut Default::default(),
    )
    .await;
    let before_ops = api_operations(&sim).len();
    let external = sim
        .start_external_operation(STACK_SET, OperationAction::Update, EXTERNAL_HOLD)
        .expect("the stack set exists");

    let deployment = Spec {
        regions: vec![REGION, OTHER_REGION],
        ..spec
    }
    .deployment();
    let restarted = sim_context(&sim);
    let restarted_state = &mut DeploymentState::default();
    let outcome = controller::reconcile(&deployment, &restarted, restarted_state)
        .await
        .expect("pass");
    assert_eq!(
        waiting_on(&outcome),
        Some(external.as_str()),
        "{:?}",
        outcome.state
    );
    let (result, states) = converge(&deployment, &restarted, restarted_state).await;
    result.expect("converges once the other operation ends");

    let ops = sim.operations(STACK_SET);
    let ended = ops
        .iter()
        .find(|op| op.id == external)
        .and_then(|op| op.ended_at)
        .expect("the external operation ended");
    let new_ops = &api_operations(&sim)[before_ops..];
    assert_eq!(new_ops.len(), 1, "{new_ops:#?}");
    assert_eq!(new_ops[0].action, OperationAction::Create);
    assert!(
        new_ops[0].submitted_at >= ended,
        "submitted only after the other operation ended"
    );
    assert_eq!(
        calls_with(&sim, "CreateStackInstances", "operation_in_progress"),
        0
    );
    assert!(
        states.iter().any(|s| matches!(s, State::Waiting { .. })),
        "{states:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn operation_in_progress_on_submit_is_waited_out() {
    const REFUSALS: u32 = 3;
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(&Spec::whole_org().deployment(), &ctx, state).await;
    let before_ops = api_operations(&sim).len();

    // An operation the listings do not show yet holds the slot for the next few submissions.
    sim.fail_next(
        "CreateStackInstances",
        AwsErrorKind::OperationInProgress,
        REFUSALS,
    );
    let deployment = Spec {
        regions: vec![REGION, OTHER_REGION],
        ..Spec::whole_org()
    }
    .deployment();
    let states = converge_ok(&deployment, &ctx, state).await;

    let settling = states.iter().filter(|s| **s == State::Settling).count();
    assert!(settling >= REFUSALS as usize, "{states:?}");
    assert_eq!(
        calls_with(&sim, "CreateStackInstances", "operation_in_progress"),
        u64::from(REFUSALS)
    );
    let new_ops = &api_operations(&sim)[before_ops..];
    assert_eq!(new_ops.len(), 1, "{new_ops:#?}");
    assert_eq!(
        current_pairs(&sim),
        pairs(&active_members(&sim), &[REGION, OTHER_REGION])
    );
}

#[tokio::test(start_paused = true)]
async fn unlisted_external_operation_is_ridden_out() {
    let sim = Sim::realistic(SimConfig::default());
    let lagging = Lagging::new(&sim);
    let ctx = context(lagging.clone());
    let state = &mut DeploymentState::default();
    converge_ok(&Spec::whole_org().deployment(), &ctx, state).await;
    let before_ops = api_operations(&sim).len();
    let external = sim
        .start_external_operation(STACK_SET, OperationAction::Update, EXTERNAL_HOLD)
        .expect("the stack set exists");
    lagging.hide_operation(&external);

    let deployment = Spec {
        regions: vec![REGION, OTHER_REGION],
        ..Spec::whole_org()
    }
    .deployment();
    let states = converge_ok(&deployment, &ctx, state).await;

    assert!(calls_with(&sim, "CreateStackInstances", "operation_in_progress") > 0);
    assert!(states.contains(&State::Settling), "{states:?}");
    let new_ops = &api_operations(&sim)[before_ops..];
    assert_eq!(new_ops.len(), 1, "{new_ops:#?}");
    let ended = sim
        .operations(STACK_SET)
        .iter()
        .find(|op| op.id == external)
        .and_then(|op| op.ended_at)
        .expect("the external operation ended");
    assert!(new_ops[0].submitted_at >= ended);
}

#[tokio::test(start_paused = true)]
async fn converge_aborted_after_a_submit_and_restarted_submits_nothing_twice() {
    let spec = Spec::whole_org();
    let baseline = baseline_submissions(&spec).await;
    // Abort after the first submission (CreateStackSet) and after the second (CreateStackInstances, whose pass
    // requeues after a poll, so the task is certainly asleep when it is aborted; after CreateStackSet the task may
    // already be in its next pass).
    for abort_after in 1..=2 {
        let sim = Sim::realistic(SimConfig::default());
        let deployment = spec.deployment();
        let ctx = Arc::new(sim_context(&sim));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = {
            let (deployment, ctx) = (deployment.clone(), ctx.clone());
            tokio::spawn(async move {
                let mut state = DeploymentState::default();
                controller::converge(&deployment, &ctx, &mut state, |o| {
                    if let State::Acted { operation_id, .. } = &o.state {
                        let _ = tx.send(operation_id.clone());
                    }
                })
                .await
            })
        };
        let mut seen = Vec::new();
        for _ in 0..abort_after {
            let id = rx.recv().await.expect("converge submits before it ends");
            seen.extend(id);
        }
        task.abort();
        assert!(task.await.expect_err("aborted").is_cancelled());
        let submitted = sim.submitted_operation_ids(STACK_SET);
        if abort_after == 2 {
            assert_eq!(
                submitted, seen,
                "aborted right after the CreateStackInstances submission"
            );
        }

        let restarted = sim_context(&sim);
        let restarted_state = &mut DeploymentState::default();
        converge_ok(&deployment, &restarted, restarted_state).await;
        assert_no_duplicate_submissions(&sim);
        assert_eq!(sim.submitted_operation_ids(STACK_SET), baseline);
        assert_eq!(current_pairs(&sim), pairs(&active_members(&sim), &[REGION]));
    }
}

/// The first pass of a deployment: creates the stack set.
async fn create_stack_set(
    deployment: &stacksetd::desired::Deployment,
    ctx: &controller::Context,
    state: &mut DeploymentState,
) {
    let created = controller::reconcile(deployment, ctx, state)
        .await
        .expect("first pass");
    assert!(
        matches!(
            created.state,
            State::Acted {
                action: "CreateStackSet",
                ..
            }
        ),
        "{:?}",
        created.state
    );
}

/// The next pass submits CreateStackInstances and its response is lost; returns the id the lost submission was
/// applied under.
async fn lose_the_create_instances_response(
    sim: &Sim,
    deployment: &stacksetd::desired::Deployment,
    ctx: &controller::Context,
    state: &mut DeploymentState,
) -> String {
    sim.lose_next_response("CreateStackInstances", 1);
    let error = controller::reconcile(deployment, ctx, state)
        .await
        .expect_err("the response was lost");
    assert!(controller::is_transient(&error), "{error}");
    let ids = sim.submitted_operation_ids(STACK_SET);
    assert_eq!(ids.len(), 1, "the lost request was applied");
    ids[0].clone()
}

/// A restart right after a lost answer (the memory of the id is gone), while the first submission still runs and
/// the listings do not show it yet: the resend of the same derived id is answered OperationInProgress, and the
/// controller asks for that id and adopts it instead of waiting on "someone else's" operation.
#[tokio::test(start_paused = true)]
async fn a_resend_while_the_first_still_runs_is_adopted() {
    let sim = Sim::realistic(SimConfig::default());
    let lagging = Lagging::new(&sim);
    let ctx = context(lagging.clone());
    let state = &mut DeploymentState::default();
    let deployment = Spec::whole_org().deployment();
    create_stack_set(&deployment, &ctx, state).await;
    lagging.freeze();
    let lost = lose_the_create_instances_response(&sim, &deployment, &ctx, state).await;
    lagging.hide_operation(&lost);

    let restarted = context(lagging.clone());
    let restarted_state = &mut DeploymentState::default();
    let retry = controller::reconcile(&deployment, &restarted, restarted_state)
        .await
        .expect("retry");
    assert_eq!(waiting_on(&retry), Some(lost.as_str()), "{:?}", retry.state);
    assert_eq!(
        calls_with(&sim, "CreateStackInstances", "operation_in_progress"),
        1,
        "the resend was answered OperationInProgress"
    );
    lagging.catch_up();
    converge_ok(&deployment, &restarted, restarted_state).await;
    assert_eq!(sim.submitted_operation_ids(STACK_SET), vec![lost]);
}

#[tokio::test(start_paused = true)]
async fn lost_response_is_confirmed_by_its_id_and_adopted() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = Spec::whole_org().deployment();
    create_stack_set(&deployment, &ctx, state).await;
    let lost = lose_the_create_instances_response(&sim, &deployment, &ctx, state).await;

    let retry = controller::reconcile(&deployment, &ctx, state)
        .await
        .expect("retry");
    assert_eq!(waiting_on(&retry), Some(lost.as_str()), "{:?}", retry.state);
    converge_ok(&deployment, &ctx, state).await;
    assert_eq!(sim.submitted_operation_ids(STACK_SET), vec![lost]);
    let creates = api_operations(&sim)
        .iter()
        .filter(|op| op.action == OperationAction::Create)
        .count();
    assert_eq!(creates, 1);
}

#[tokio::test(start_paused = true)]
async fn lost_response_retried_under_lagging_listings_adopts_the_same_operation_id() {
    let sim = Sim::realistic(SimConfig::default());
    let lagging = Lagging::new(&sim);
    let ctx = context(lagging.clone());
    let state = &mut DeploymentState::default();
    let deployment = Spec::whole_org().deployment();
    create_stack_set(&deployment, &ctx, state).await;
    // The listings keep showing the world from before the lost submission, so the retry plans it again.
    lagging.freeze();
    let lost = lose_the_create_instances_response(&sim, &deployment, &ctx, state).await;
    lagging.hide_operation(&lost);

    let creates_before = sim
        .calls()
        .by_operation()
        .get("CreateStackInstances")
        .copied();
    let retry = controller::reconcile(&deployment, &ctx, state)
        .await
        .expect("retry");
    assert_eq!(waiting_on(&retry), Some(lost.as_str()), "{:?}", retry.state);
    // Asked DescribeStackSetOperation (strongly consistent) for the id it sent, and sent nothing again.
    assert_eq!(
        sim.calls()
            .by_operation()
            .get("CreateStackInstances")
            .copied(),
        creates_before,
        "no resend"
    );
    assert!(calls_with(&sim, "DescribeStackSetOperation", "ok") >= 1);

    lagging.catch_up();
    converge_ok(&deployment, &ctx, state).await;
    assert_eq!(sim.submitted_operation_ids(STACK_SET), vec![lost]);
    assert_eq!(current_pairs(&sim), pairs(&active_members(&sim), &[REGION]));
}
