//! The event queue's backstop rules (events::Ledger, instances::Look::Trusting) on a paused clock: a converged
//! pass costs one call only while a trusted, healthy queue vouches nothing happened to the stack set since the
//! last converged pass; an event, a gap in the queue, a reader falling silent, an organization change or the
//! relist interval each make a pass look again; and what the queue vouches for never decides anything but
//! "converged".

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use stacksetd::cloud::queue::RECEIVE_WAIT;
use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::controller::{self, Context, State};
use stacksetd::events::ledger::HEALTH_MARGIN;

use super::helpers::*;

fn total(calls: &BTreeMap<&'static str, u64>) -> u64 {
    calls.values().sum()
}

/// A context whose ledger the daemon would trust (its own identity, a queue, no leases), the queue read just now.
fn trusting_context(sim: &Sim, config: controller::Config) -> Context {
    let ctx = Context::new(Arc::new(sim.clone()), config);
    ctx.events.trust();
    ctx.events.received(RECEIVE_WAIT);
    ctx
}

/// Converged, then one more converged pass that kept the stamp: the next pass may trust the queue.
async fn quiet(
    sim: &Sim,
    ctx: &Context,
    deployment: &stacksetd::desired::Deployment,
) -> DeploymentState {
    let mut state = DeploymentState::default();
    converge_ok(deployment, ctx, &mut state).await;
    // The queue answered all along (a receive every 20 s).
    ctx.events.received(RECEIVE_WAIT);
    let (outcome, _) = counted_pass(deployment, ctx, &mut state, sim).await;
    assert_eq!(outcome.state, State::Converged);
    state
}

#[tokio::test(start_paused = true)]
async fn a_converged_pass_with_a_healthy_queue_costs_one_call_and_without_it_two() {
    let sim = Sim::realistic(SimConfig::default());
    let deployment = Spec::whole_org().deployment();
    let ctx = trusting_context(&sim, config());
    let mut state = quiet(&sim, &ctx, &deployment).await;
    for _ in 0..3 {
        ctx.events.received(RECEIVE_WAIT);
        let (outcome, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
        assert_eq!(outcome.state, State::Converged);
        assert_eq!(
            calls,
            BTreeMap::from([("DescribeStackSet", 1)]),
            "one call with a healthy queue"
        );
    }
    // An event naming the stack set (whatever it says): the next pass reads the page, the one after trusts again.
    ctx.events.saw(STACK_SET);
    let (_, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert_eq!(calls.get("ListStackSetOperations"), Some(&1), "{calls:?}");
    let (_, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert_eq!(total(&calls), 1, "{calls:?}");
    // Another stack set's event changes nothing here.
    ctx.events.saw("SomeoneElsesStackSet");
    let (_, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert_eq!(total(&calls), 1, "{calls:?}");
    // The same without trust (no queue, a role's context, replicas with leases): the page every pass.
    let polling = sim_context(&sim);
    polling.events.received(RECEIVE_WAIT);
    let mut state = quiet(&sim, &polling, &deployment).await;
    let (_, calls) = counted_pass(&deployment, &polling, &mut state, &sim).await;
    assert_eq!(
        calls,
        BTreeMap::from([("DescribeStackSet", 1), ("ListStackSetOperations", 1)])
    );
    // A role's context never inherits the daemon's trust.
    let role = ctx.with_cloud(Arc::new(sim.clone()));
    role.events.received(RECEIVE_WAIT);
    assert_eq!(role.events.stamp("anything"), None);
}

#[tokio::test(start_paused = true)]
async fn an_event_naming_the_stack_set_makes_the_next_pass_look_and_a_lost_one_waits_for_the_relist()
 {
    let sim = Sim::realistic(SimConfig::default());
    let prod = sim.ou_named("Prod").expect("Prod");
    let deployment = Spec {
        ous: vec![prod],
        ..Spec::whole_org()
    }
    .deployment();
    let relist = Duration::from_secs(600);
    let ctx = trusting_context(
        &sim,
        controller::Config {
            instance_relist_interval: relist,
            ..config()
        },
    );
    let mut state = quiet(&sim, &ctx, &deployment).await;
    let outsider = active_members(&sim)
        .into_iter()
        .find(|a| !sim.instances(STACK_SET).iter().any(|i| &i.account == a))
        .expect("an account outside Prod");
    someone_creates_instances(&sim, &[outsider.as_str()], REGION, "other-tool-1").await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    ctx.events.received(RECEIVE_WAIT);
    // Its event is lost: the pass trusts the queue and does not see it yet.
    let (outcome, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert_eq!(total(&calls), 1, "{calls:?}");
    assert_eq!(outcome.report.orphaned_instances, 0);
    // The relist interval is the backstop, even with the queue healthy all along.
    let mut waited = Duration::ZERO;
    while waited < relist {
        tokio::time::sleep(RECEIVE_WAIT).await;
        ctx.events.received(RECEIVE_WAIT);
        waited += RECEIVE_WAIT;
    }
    let (outcome, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert_eq!(calls.get("ListStackInstances"), Some(&1), "{calls:?}");
    assert_eq!(outcome.report.orphaned_instances, 1, "{:?}", outcome.report);

    // With its event delivered, another tool's operation is seen by the very next pass.
    settle().await;
    // The queue's health lapsed during the wait: its first receive starts a new epoch.
    ctx.events.received(RECEIVE_WAIT);
    converge_ok(&deployment, &ctx, &mut state).await;
    ctx.events.received(RECEIVE_WAIT);
    let (_, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert_eq!(total(&calls), 1, "quiet again: {calls:?}");
    someone_creates_instances(&sim, &[outsider.as_str()], "eu-west-1", "other-tool-2").await;
    ctx.events.saw(STACK_SET);
    let (outcome, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert!(calls.contains_key("ListStackSetOperations"), "{calls:?}");
    assert!(
        matches!(outcome.state, State::Waiting { ref operation_id, .. } if operation_id == "other-tool-2"),
        "the running operation is adopted: {:?}",
        outcome.state
    );
}

#[tokio::test(start_paused = true)]
async fn while_someone_elses_operation_runs_every_pass_looks_even_if_its_end_event_is_lost() {
    let sim = Sim::realistic(SimConfig::default());
    let deployment = Spec::whole_org().deployment();
    let ctx = trusting_context(&sim, config());
    let mut state = quiet(&sim, &ctx, &deployment).await;
    // Another tool updates an instance that is already there: nothing for stacksetd to do, but it runs a while.
    let member = active_members(&sim).into_iter().next().expect("a member");
    someone_creates_instances(&sim, &[member.as_str()], REGION, "other-tool-1").await;
    ctx.events.saw(STACK_SET);
    let (outcome, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert!(calls.contains_key("ListStackSetOperations"), "{calls:?}");
    assert!(
        outcome
            .report
            .running_operations
            .iter()
            .any(|op| op.operation_id == "other-tool-1"),
        "{:?}",
        outcome.report
    );
    // Its end's event is lost: the next passes still read the page, and fold the end in once it is there.
    let (_, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert!(calls.contains_key("ListStackSetOperations"), "{calls:?}");
    settle().await;
    ctx.events.received(RECEIVE_WAIT);
    let (outcome, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert!(calls.contains_key("ListStackSetOperations"), "{calls:?}");
    assert!(
        outcome.report.running_operations.is_empty(),
        "{:?}",
        outcome.report
    );
}

#[tokio::test(start_paused = true)]
async fn a_gap_in_the_queue_or_a_silent_reader_makes_the_next_pass_look() {
    let sim = Sim::realistic(SimConfig::default());
    let deployment = Spec::whole_org().deployment();
    let ctx = trusting_context(&sim, config());
    let mut state = quiet(&sim, &ctx, &deployment).await;
    let looks =
        |calls: &BTreeMap<&'static str, u64>| calls.get("ListStackSetOperations") == Some(&1);

    // A failed receive: polling while it lasts.
    ctx.events.failed();
    let (_, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert!(looks(&calls), "{calls:?}");
    // Recovered: a new epoch, so the first pass looks again (events may have been lost meanwhile) ...
    ctx.events.received(RECEIVE_WAIT);
    let (_, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert!(looks(&calls), "{calls:?}");
    // ... and the next trusts it.
    let (_, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert_eq!(total(&calls), 1, "{calls:?}");

    // The reader falls silent (hung, or gone) for longer than a receive and its margin.
    tokio::time::sleep(RECEIVE_WAIT + HEALTH_MARGIN).await;
    let (_, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert!(looks(&calls), "{calls:?}");
    // A restart: a new state remembers no stamp.
    ctx.events.received(RECEIVE_WAIT);
    let mut restarted = DeploymentState::default();
    let (_, calls) = counted_pass(&deployment, &ctx, &mut restarted, &sim).await;
    assert!(looks(&calls), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn what_the_queue_vouches_for_never_decides_anything_but_converged() {
    let sim = Sim::realistic(SimConfig::default());
    let prod = sim.ou_named("Prod").expect("Prod");
    let deployment = Spec {
        ous: vec![prod.clone()],
        auto_deployment: false,
        ..Spec::whole_org()
    }
    .deployment();
    let ctx = trusting_context(&sim, config());
    let mut state = quiet(&sim, &ctx, &deployment).await;
    let outsider = active_members(&sim)
        .into_iter()
        .find(|a| !sim.instances(STACK_SET).iter().any(|i| &i.account == a))
        .expect("an account outside Prod");
    // The account moves into the target; its event names no stack set, only the organization.
    sim.move_account(&outsider, &prod);
    ctx.invalidate_organization();
    let (outcome, calls) = counted_pass(&deployment, &ctx, &mut state, &sim).await;
    assert!(
        calls.contains_key("ListStackSetOperations"),
        "a pass that would act reads the operations first: {calls:?}"
    );
    assert!(
        matches!(outcome.state, State::Acted { .. }),
        "the moved account gets its instance: {:?}",
        outcome.state
    );
    settle().await;
    ctx.events.received(RECEIVE_WAIT);
    converge_ok(&deployment, &ctx, &mut state).await;
    assert!(
        sim.instances(STACK_SET)
            .iter()
            .any(|i| i.account == outsider),
        "deployed to the moved account"
    );
}
