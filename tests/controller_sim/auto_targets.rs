//! Auto-deployment targets verified (controller/auto_targets.rs): on the organization-scan cadence the pass
//! compares ListStackSetAutoDeploymentTargets with the desired OUs x Regions; an OU CloudFormation stopped
//! auto-deploying to is reported and registered again by the plan, and the check costs nothing in between.

use std::time::Duration;

use stacksetd::cloud::Cloud;
use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::controller::{self, State};

use super::helpers::*;

#[tokio::test(start_paused = true)]
async fn an_ou_cloudformation_stopped_auto_deploying_to_is_found_and_registered_again() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let prod = sim.ou_named("Prod").expect("Prod");
    let spec = Spec {
        ous: vec![prod.clone()],
        ..Spec::whole_org()
    };
    let deployment = spec.deployment();
    converge_ok(&deployment, &ctx, state).await;
    let outcome = controller::reconcile(&deployment, &ctx, state)
        .await
        .expect("pass");
    let check = outcome
        .report
        .auto_deployment_targets
        .clone()
        .expect("checked");
    assert!(
        check.missing.is_empty() && check.error.is_none(),
        "{check:?}"
    );

    // CloudFormation forgets the OU; its instances stay. Within the scan interval nothing is asked again.
    assert!(sim.drop_auto_deployment_target(STACK_SET, &prod));
    let before = sim.calls().snapshot();
    let outcome = controller::reconcile(&deployment, &ctx, state)
        .await
        .expect("pass");
    assert_eq!(
        outcome.state,
        State::Converged,
        "not seen before the next check"
    );
    let calls = delta(&before, &sim.calls().snapshot());
    assert!(
        !calls.contains_key("ListStackSetAutoDeploymentTargets"),
        "{calls:?}"
    );

    // The next organization scan's pass checks and reports it; the list may lag an operation that just ended,
    // so one check is not enough to act on.
    tokio::time::sleep(config().org_scan_interval).await;
    let before = sim.calls().snapshot();
    let outcome = controller::reconcile(&deployment, &ctx, state)
        .await
        .expect("pass");
    let calls = delta(&before, &sim.calls().snapshot());
    assert_eq!(
        calls.get("ListStackSetAutoDeploymentTargets"),
        Some(&1),
        "{calls:?}"
    );
    let check = outcome
        .report
        .auto_deployment_targets
        .clone()
        .expect("checked");
    assert_eq!(check.missing, vec![format!("{prod}/{REGION}")], "{check:?}");
    assert_eq!(
        outcome.state,
        State::Converged,
        "reported, not yet acted on"
    );
    assert!(mutating_calls(&calls).is_empty(), "{calls:?}");

    // `plan` says so.
    let planned = controller::dry_run(&deployment, &ctx, state).await;
    let text = stacksetd::cli::output::plan_text(&[stacksetd::cli::output::Planned {
        deployment: &deployment,
        result: planned,
    }]);
    assert!(
        text.contains(&format!(
            "auto-deployment targets: CloudFormation does not auto-deploy to {prod}/{REGION}"
        )),
        "{text}"
    );

    // The scan after finds it missing again: registered again.
    tokio::time::sleep(config().org_scan_interval).await;
    let outcome = controller::reconcile(&deployment, &ctx, state)
        .await
        .expect("pass");
    let State::Acted {
        action, summary, ..
    } = &outcome.state
    else {
        panic!("registered again: {:?}", outcome.state);
    };
    assert_eq!(*action, "CreateStackInstances");
    assert!(summary.contains("auto-deployment targets"), "{summary}");

    tokio::time::sleep(Duration::from_secs(600)).await;
    converge_ok(&deployment, &ctx, state).await;
    let outcome = controller::reconcile(&deployment, &ctx, state)
        .await
        .expect("pass");
    let check = outcome.report.auto_deployment_targets.expect("checked");
    assert!(check.missing.is_empty(), "{check:?}");
    let listed = sim
        .list_auto_deployment_targets(STACK_SET, Default::default())
        .await
        .unwrap();
    assert!(
        listed.iter().any(|t| t.organizational_unit_id == prod),
        "{listed:?}"
    );
    assert_no_duplicate_submissions(&sim);
}

/// A check taken before stacksetd's own creation (the stack set had no targets yet) never outlives it, even when
/// the creation's answer was lost: no second CreateStackInstances over two scan intervals.
#[tokio::test(start_paused = true)]
async fn a_check_before_the_first_creation_does_not_create_twice() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = Spec::whole_org().deployment();
    sim.lose_next_response("CreateStackInstances", 1);
    converge_ok(&deployment, &ctx, state).await;
    for _ in 0..3 {
        tokio::time::sleep(config().org_scan_interval).await;
        let outcome = controller::reconcile(&deployment, &ctx, state)
            .await
            .expect("pass");
        assert_eq!(
            outcome.state,
            State::Converged,
            "{:?}",
            outcome.report.auto_deployment_targets
        );
        let check = outcome.report.auto_deployment_targets.expect("checked");
        assert!(check.missing.is_empty(), "{check:?}");
    }
    let creations = sim
        .operations(STACK_SET)
        .iter()
        .filter(|op| op.action.as_str() == "CREATE")
        .count();
    assert_eq!(creations, 1, "{:?}", sim.operations(STACK_SET));
    assert_no_duplicate_submissions(&sim);
}
