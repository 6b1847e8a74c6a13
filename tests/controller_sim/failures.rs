//! Things going wrong on purpose: an account whose deployment fails, revoking access, and an API that throttles.

use stacksetd::Error;
use stacksetd::cloud::OperationAction;
use stacksetd::cloud::sim::{Faults, Sim, SimConfig};
use stacksetd::controller::{self, State};
use stacksetd::desired::Deployment;

use super::helpers::*;

const ROLE_CONFLICT: &str = "AimablyMemberRole already exists and is not managed by this stack";
/// Member accounts of the small organization of the failure test.
const SMALL_ORG_MEMBERS: usize = 3;
/// `converge` calls a caller makes on transient errors before giving up (each already retries several passes).
const CONVERGE_ATTEMPTS: usize = 40;

#[tokio::test(start_paused = true)]
async fn failed_operation_names_the_account_and_its_retry_touches_only_that_instance() {
    let sim = Sim::new(SimConfig::default());
    let members = sim.add_ou(&sim.root_id(), "Members");
    for n in 0..SMALL_ORG_MEMBERS {
        sim.add_account(&members, &format!("member-{n}"));
    }
    // STRICT with concurrency 1 works through the accounts in order and stops at the first failure: the last one
    // fails, so every other account is deployed and none is cancelled.
    let victim = active_members(&sim)
        .into_iter()
        .next_back()
        .expect("members");
    sim.fail_account(&victim, ROLE_CONFLICT);
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = Spec {
        preferences: STRICT,
        ..Spec::whole_org()
    }
    .deployment();

    let (result, _) = converge(&deployment, &ctx, state).await;
    let error = result.expect_err("the operation fails");
    let message = error.to_string();
    let Error::OperationFailed {
        action, failures, ..
    } = error
    else {
        panic!("expected OperationFailed, got {message}");
    };
    assert_eq!(action, "CREATE");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].account, victim);
    assert_eq!(failures[0].region, REGION);
    assert!(
        failures[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains(ROLE_CONFLICT)),
        "{failures:?}"
    );
    assert!(
        message.contains(&victim) && message.contains(ROLE_CONFLICT),
        "{message}"
    );

    sim.heal_account(&victim);
    let before_ops = api_operations(&sim).len();
    converge_ok(&deployment, &ctx, state).await;
    let retries = &api_operations(&sim)[before_ops..];
    assert_eq!(retries.len(), 1, "{retries:#?}");
    assert_eq!(retries[0].action, OperationAction::Update);
    let targets = retries[0]
        .targets
        .as_ref()
        .expect("instance operations have targets");
    assert_eq!(targets.accounts, vec![victim]);
    assert_eq!(retries[0].regions, vec![REGION.to_string()]);
    assert_eq!(current_pairs(&sim), pairs(&active_members(&sim), &[REGION]));
    assert_no_duplicate_submissions(&sim);
}

#[tokio::test(start_paused = true)]
async fn absent_deletes_instances_then_the_stack_set_and_stays_absent() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(&Spec::whole_org().deployment(), &ctx, state).await;
    let suspended: Vec<String> = inactive_members(&sim).into_iter().collect();
    assert!(!suspended.is_empty());
    let before_ops = api_operations(&sim).len();

    let absent = Spec {
        ensure: "Absent",
        ..Spec::whole_org()
    }
    .deployment();
    let states = converge_ok(&absent, &ctx, state).await;
    let acted: Vec<&str> = states
        .iter()
        .filter_map(|s| match s {
            State::Acted { action, .. } => Some(*action),
            _ => None,
        })
        .collect();
    assert_eq!(
        acted,
        [
            "DeleteStackInstances",
            "DeleteStackInstances",
            "DeleteStackSet"
        ]
    );
    let deletes = &api_operations(&sim)[before_ops..];
    assert_eq!(deletes.len(), 2, "{deletes:#?}");
    assert!(
        deletes
            .iter()
            .all(|op| op.action == OperationAction::Delete)
    );
    // Suspended accounts first, keeping their stacks (AWS refuses anything else), then everything else.
    assert_eq!(deletes[0].retain_stacks, Some(true));
    let retained = deletes[0].targets.as_ref().expect("targets");
    assert_eq!(retained.accounts, suspended);
    assert_eq!(deletes[1].retain_stacks, Some(false));
    assert!(deletes[0].ended_at <= Some(deletes[1].submitted_at));
    assert!(sim.stack_set(STACK_SET).is_none());
    assert_eq!(calls_with(&sim, "DeleteStackSet", "ok"), 1);

    let before = sim.calls().snapshot();
    let (result, _) = converge(&absent, &ctx, state).await;
    assert_eq!(result.expect("still absent").state, State::Converged);
    let calls = delta(&before, &sim.calls().snapshot());
    assert!(mutating_calls(&calls).is_empty(), "{calls:?}");
    assert_eq!(api_operations(&sim).len(), before_ops + 2);
}

/// `converge` again on transient errors, as the daemon would on its next requeue.
async fn converge_through_faults(
    deployment: &Deployment,
    ctx: &controller::Context,
    state: &mut DeploymentState,
) {
    for _ in 0..CONVERGE_ATTEMPTS {
        match converge(deployment, ctx, state).await.0 {
            Ok(outcome) => {
                assert!(outcome.is_converged(), "{:?}", outcome.state);
                return;
            }
            Err(e) if controller::is_transient(&e) => continue,
            Err(e) => panic!("a fault that is not transient surfaced: {e}"),
        }
    }
    panic!("not converged after {CONVERGE_ATTEMPTS} converge calls");
}

#[tokio::test(start_paused = true)]
async fn throttling_and_server_errors_delay_but_never_duplicate_or_delete() {
    let sim = Sim::realistic(SimConfig::default());
    sim.set_faults(Faults {
        throttle_rate: 0.1,
        error_rate: 0.05,
    });
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    converge_through_faults(&Spec::whole_org().deployment(), &ctx, state).await;
    assert_eq!(current_pairs(&sim), pairs(&active_members(&sim), &[REGION]));
    let throttled: u64 = sim
        .calls()
        .snapshot()
        .iter()
        .filter(|((_, _, outcome), _)| *outcome == "throttling")
        .map(|(_, n)| n)
        .sum();
    assert!(throttled > 0, "the faults were exercised");

    let before = sim.instances(STACK_SET);
    let wider = Spec {
        regions: vec![REGION, OTHER_REGION],
        ..Spec::whole_org()
    };
    converge_through_faults(&wider.deployment(), &ctx, state).await;
    assert_eq!(
        current_pairs(&sim),
        pairs(&active_members(&sim), &wider.regions)
    );
    let after = sim.instances(STACK_SET);
    assert!(
        before.iter().all(|i| after.contains(i)),
        "no instance deleted or changed"
    );
    assert!(
        sim.operations(STACK_SET)
            .iter()
            .all(|op| op.action != OperationAction::Delete)
    );
    assert_no_duplicate_submissions(&sim);
}

/// The sim counterpart of tests/crash_moto.rs and tests/faults_moto.rs: 10% throttling and 5% server errors,
/// the answer of the first call of every mutating kind lost after it was applied (re-armed for every change), and
/// a restart (a fresh controller context: nothing remembered but what AWS holds) before a third of the passes,
/// chosen by a seeded RNG, while the desired state grows by a Region and then changes its description. (The sim
/// has no SDK retry layer: every fault reaches the pass, so a restart before every pass, which re-lists the whole
/// organization, would almost never get through; at 20% throttling even a third of the passes made convergence a
/// matter of the seed's luck: a fresh context's first pass makes some twenty unretried calls.)
#[tokio::test(start_paused = true)]
async fn random_faults_lost_answers_and_restarts_between_passes_never_duplicate_or_delete() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let sim = Sim::realistic(SimConfig::default());
    sim.set_faults(Faults {
        throttle_rate: 0.1,
        error_rate: 0.05,
    });
    let wider = Spec {
        regions: vec![REGION, OTHER_REGION],
        ..Spec::whole_org()
    };
    let described = Spec {
        description: "Aimably access, described anew",
        ..wider.clone()
    };
    let mut kept = std::collections::BTreeSet::new();
    let mut passes = 0;
    let mut restarts = 0;
    // Restarts right after a pass whose mutating call was applied and its answer lost: the new process knows
    // nothing of the submission and must find it in AWS.
    let mut restarts_after_lost = 0;
    let mut lost_before = 0;
    let mut ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    for spec in [Spec::whole_org(), wider, described] {
        for operation in super::helpers::MUTATING {
            sim.lose_next_response(operation, 1);
        }
        let deployment = spec.deployment();
        let mut converged = false;
        for _ in 0..CONVERGE_ATTEMPTS * 10 {
            passes += 1;
            let lost_now = sim.lost_responses_fired();
            let after_lost = lost_now > lost_before;
            lost_before = lost_now;
            if rng.random_bool(if after_lost { 0.5 } else { 0.33 }) {
                restarts += 1;
                restarts_after_lost += u32::from(after_lost);
                ctx = sim_context(&sim);
            }
            match controller::reconcile(&deployment, &ctx, state).await {
                Ok(outcome) if outcome.is_converged() => {
                    converged = true;
                    break;
                }
                Ok(outcome) => tokio::time::sleep(outcome.requeue_after).await,
                Err(e) if controller::is_transient(&e) => {
                    tokio::time::sleep(std::time::Duration::from_secs(4)).await
                }
                Err(e) => panic!("a fault that is not transient surfaced: {e}"),
            }
        }
        assert!(converged, "not converged after {passes} passes");
        let now = current_pairs(&sim);
        assert!(
            kept.is_subset(&now),
            "an instance the desired state keeps was deleted"
        );
        assert_eq!(
            now,
            pairs(&active_members(&sim), &spec.regions),
            "every desired instance"
        );
        kept = now;
    }
    assert!(
        sim.operations(STACK_SET)
            .iter()
            .all(|op| op.action != OperationAction::Delete)
    );
    assert_no_duplicate_submissions(&sim);
    assert!(
        restarts >= 3,
        "restarts between passes happened: {restarts}"
    );
    let lost = sim.lost_responses_fired();
    assert!(lost >= 3, "lost answers fired: {lost}");
    assert!(
        restarts_after_lost >= 1,
        "a restart followed a lost answer: {restarts_after_lost} of {restarts} restarts"
    );
    println!(
        "{passes} passes, {restarts} restarts ({restarts_after_lost} right after a lost answer), {lost} lost answers; \
         {} operations submitted",
        sim.submitted_operation_ids(STACK_SET).len()
    );
}
