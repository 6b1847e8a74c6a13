//! Never destructive by surprise: deletions wait for `deletion_delay` of an unchanged desired state (an edit
//! withdrawn in time deletes nothing; one kept runs once), while creations and updates do not wait.

use std::time::Duration;

use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::controller::{self, Config, Context, State};

use super::helpers::*;

const DELAY: Duration = Duration::from_secs(60);

fn delayed(sim: &Sim) -> Context {
    Context::new(
        std::sync::Arc::new(sim.clone()),
        Config {
            deletion_delay: DELAY,
            ..config()
        },
    )
}

fn calls(sim: &Sim, operation: &str) -> u64 {
    sim.calls().by_operation().get(operation).copied().unwrap_or(0)
}

fn two_regions() -> Spec {
    Spec {
        regions: vec![REGION, OTHER_REGION],
        ..Spec::whole_org()
    }
}

#[tokio::test(start_paused = true)]
async fn a_deletion_waits_for_the_delay_then_runs_once() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = delayed(&sim);
    converge_ok(&two_regions().deployment(), &ctx).await;
    let one_region = Spec::whole_org().deployment();

    let started = tokio::time::Instant::now();
    let first = controller::reconcile(&one_region, &ctx).await.expect("a pass");
    let State::DeletionPending { action, runs_at, .. } = &first.state else {
        panic!("the deletion waits: {:?}", first.state);
    };
    assert_eq!(*action, "DeleteStackInstances");
    assert!(!runs_at.is_empty());
    assert!(first.requeue_after <= DELAY && first.requeue_after > DELAY / 2, "{:?}", first.requeue_after);
    assert!(first.report.pending_deletions.iter().any(|d| d.waiting && d.action == "DeleteStackInstances"));
    assert_eq!(calls(&sim, "DeleteStackInstances"), 0);

    // reconcile --once waits for it: one deletion, after the delay.
    converge_ok(&one_region, &ctx).await;
    // Active and suspended accounts' instances go in separate steps (the latter with RetainStacks): each once.
    let deletions = calls(&sim, "DeleteStackInstances");
    assert!((1..=2).contains(&deletions), "{deletions}");
    assert_no_duplicate_submissions(&sim);
    assert!(started.elapsed() >= DELAY, "ran after {:?}", started.elapsed());
    assert!(current_pairs(&sim).iter().all(|(_, r)| r == REGION));
    // --no-wait stops at the pending step instead (nothing left to delete now: converged).
    let outcome = controller::converge_until(&one_region, &ctx, false, |_| {}).await.unwrap();
    assert!(outcome.is_converged());
}

#[tokio::test(start_paused = true)]
async fn a_deletion_withdrawn_within_the_delay_never_runs() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = delayed(&sim);
    let both = two_regions().deployment();
    converge_ok(&both, &ctx).await;
    let before = current_pairs(&sim);

    // An edit drops a Region (a half-written file, a mistake); it is put back 30 s later.
    let one_region = Spec::whole_org().deployment();
    let outcome = controller::converge_until(&one_region, &ctx, false, |_| {}).await.unwrap();
    assert!(matches!(outcome.state, State::DeletionPending { .. }), "{:?}", outcome.state);
    tokio::time::sleep(DELAY / 2).await;
    converge_ok(&both, &ctx).await;
    // Long after: still nothing deleted.
    tokio::time::sleep(DELAY * 3).await;
    converge_ok(&both, &ctx).await;
    assert_eq!(calls(&sim, "DeleteStackInstances"), 0);
    assert_eq!(current_pairs(&sim), before);

    // Asked for again, the delay starts over: a desired state must stay unchanged for the whole delay.
    let outcome = controller::reconcile(&one_region, &ctx).await.unwrap();
    assert!(matches!(outcome.state, State::DeletionPending { .. }), "{:?}", outcome.state);
    assert!(outcome.requeue_after > DELAY / 2);
}

#[tokio::test(start_paused = true)]
async fn creations_and_updates_do_not_wait_for_a_pending_deletion() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = delayed(&sim);
    converge_ok(&Spec::whole_org().deployment(), &ctx).await;
    // One edit: another Region instead of the first, and a new description.
    let moved = Spec {
        regions: vec![OTHER_REGION],
        description: "moved to another Region",
        ..Spec::whole_org()
    }
    .deployment();
    let started = tokio::time::Instant::now();
    let outcome = pass_until(&moved, &ctx, |o| matches!(o.state, State::DeletionPending { .. })).await;
    assert!(started.elapsed() < DELAY, "the update and the creation went first");
    assert!(matches!(outcome.state, State::DeletionPending { .. }));
    assert_eq!(calls(&sim, "UpdateStackSet"), 1);
    assert_eq!(calls(&sim, "CreateStackInstances"), 2, "the first deployment's and the new Region's");
    assert_eq!(calls(&sim, "DeleteStackInstances"), 0);
    converge_ok(&moved, &ctx).await;
    assert!(calls(&sim, "DeleteStackInstances") >= 1);
    assert_no_duplicate_submissions(&sim);
    assert!(current_pairs(&sim).iter().all(|(_, r)| r == OTHER_REGION));
}

#[tokio::test(start_paused = true)]
async fn revoking_waits_for_the_delay_too() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = delayed(&sim);
    converge_ok(&Spec::whole_org().deployment(), &ctx).await;
    let absent = Spec {
        ensure: "Absent",
        ..Spec::whole_org()
    }
    .deployment();
    let outcome = controller::reconcile(&absent, &ctx).await.unwrap();
    assert!(matches!(outcome.state, State::DeletionPending { .. }), "{:?}", outcome.state);
    assert_eq!(calls(&sim, "DeleteStackInstances"), 0);
    converge_ok(&absent, &ctx).await;
    assert!(sim.stack_set(STACK_SET).is_none_or(|s| s.status != stacksetd::cloud::StackSetStatus::Active));
}
