//! Messy organizations on the sim: the wrong credentials, a delegated administrator (registered or not), trusted
//! access off (reported with the fix, or activated with the setting), a feature set without ALL, target OUs that
//! do not exist or are empty, suspended and closing accounts, INOPERABLE instances and their repair.

use std::sync::Arc;

use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::cloud::{Cloud, InstanceStatus};
use stacksetd::controller::{self, Context};
use stacksetd::desired::{CallAs, Deployment};
use stacksetd::error::Error;

use super::helpers::*;

const MUTATIONS: &[&str] = &[
    "CreateStackSet",
    "CreateStackInstances",
    "UpdateStackSet",
    "UpdateStackInstances",
    "DeleteStackInstances",
    "DeleteStackSet",
];

fn mutations(sim: &Sim) -> u64 {
    let calls = sim.calls().by_operation();
    MUTATIONS.iter().filter_map(|op| calls.get(op)).sum()
}

/// The first pass's error (of a controller that has not run before), after checking that nothing was changed.
async fn refused(deployment: &Deployment, ctx: &Context, sim: &Sim) -> Error {
    let err = controller::reconcile(deployment, ctx, &mut DeploymentState::default())
        .await
        .expect_err("the pass must refuse to act");
    assert!(
        !controller::is_transient(&err),
        "{err}: stalls, not retried as transient"
    );
    assert_eq!(mutations(sim), 0, "nothing may be changed: {err}");
    assert!(sim.stack_set(STACK_SET).is_none());
    err
}

/// A controller allowed to turn trusted access on (the `activate_trusted_access` setting).
fn activating_context(sim: &Sim) -> Context {
    Context::new(
        Arc::new(sim.clone()) as Arc<dyn Cloud>,
        controller::Config {
            activate_trusted_access: true,
            ..config()
        },
    )
}

fn delegated(sim_caller: &str) -> (Sim, Deployment) {
    let sim = Sim::realistic(SimConfig {
        caller_account_id: Some(sim_caller.to_string()),
        ..SimConfig::default()
    });
    let mut deployment = Spec::whole_org().deployment();
    deployment.spec.call_as = CallAs::DelegatedAdmin;
    (sim, deployment)
}

#[tokio::test(start_paused = true)]
async fn credentials_of_another_account_change_nothing_and_name_both_accounts() {
    let sim = Sim::realistic(SimConfig {
        caller_account_id: Some("999999999999".to_string()),
        ..SimConfig::default()
    });
    // Not registered as a delegated administrator, and calling as SELF.
    sim.deregister_delegated_admin("999999999999");
    let err = refused(&Spec::whole_org().deployment(), &sim_context(&sim), &sim).await;
    assert_eq!(err.metric_label(), "wrong_account");
    let message = err.to_string();
    assert!(
        message.contains("999999999999") && message.contains("123456789012"),
        "{message}"
    );
    assert!(
        message.contains("DELEGATED_ADMIN"),
        "the message offers the other fix: {message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_management_account_id_from_another_organization_is_refused() {
    let sim = Sim::realistic(SimConfig::default());
    let mut deployment = Spec::whole_org().deployment();
    deployment.spec.management_account_id = "555555555555".to_string();
    let err = refused(&deployment, &sim_context(&sim), &sim).await;
    assert_eq!(err.metric_label(), "wrong_organization");
    assert!(err.to_string().contains("555555555555") && err.to_string().contains("123456789012"));
}

#[tokio::test(start_paused = true)]
async fn a_registered_delegated_administrator_converges_with_call_as_delegated_admin() {
    let (sim, deployment) = delegated("210987654321");
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(&deployment, &ctx, state).await;
    assert_eq!(current_pairs(&sim), pairs(&active_members(&sim), &[REGION]));
    let calls = sim.calls().by_operation();
    assert_eq!(
        calls.get("ListDelegatedAdministrators"),
        Some(&1),
        "checked once, then cached"
    );
    assert!(
        !calls.contains_key("ListAWSServiceAccessForOrganization"),
        "a delegated administrator relies on DescribeOrganizationsAccess"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unregistered_delegated_administrator_is_told_how_to_register() {
    let (sim, deployment) = delegated("210987654321");
    sim.deregister_delegated_admin("210987654321");
    let err = refused(&deployment, &sim_context(&sim), &sim).await;
    // DescribeStackSet itself refuses an unregistered account's DELEGATED_ADMIN call, so the pass stops there or
    // at preflight; either way nothing is changed and the error says why.
    let message = err.to_string();
    assert!(message.contains("delegated administrator"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn trusted_access_off_stalls_with_the_fix() {
    let sim = Sim::realistic(SimConfig::default());
    sim.set_trusted_access(false);
    let err = refused(&Spec::whole_org().deployment(), &sim_context(&sim), &sim).await;
    assert_eq!(err.metric_label(), "trusted_access_disabled");
    let message = err.to_string();
    assert!(
        message.contains("activate-organizations-access"),
        "{message}"
    );
    assert!(
        message.contains("activate_trusted_access: true"),
        "{message}"
    );
    assert!(!sim.trusted_access());
}

#[tokio::test(start_paused = true)]
async fn trusted_access_is_activated_with_the_setting_then_everything_deploys() {
    let sim = Sim::realistic(SimConfig::default());
    sim.set_trusted_access(false);
    let ctx = activating_context(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(&Spec::whole_org().deployment(), &ctx, state).await;
    assert!(sim.trusted_access());
    assert_eq!(calls_with(&sim, "ActivateOrganizationsAccess", "ok"), 1);
    assert_eq!(current_pairs(&sim), pairs(&active_members(&sim), &[REGION]));
}

#[tokio::test(start_paused = true)]
async fn a_delegated_administrator_cannot_activate_trusted_access() {
    let (sim, deployment) = delegated("210987654321");
    sim.set_trusted_access(false);
    let ctx = activating_context(&sim);
    let err = refused(&deployment, &ctx, &sim).await;
    assert_eq!(err.metric_label(), "trusted_access_disabled");
    assert!(
        err.to_string().contains("management account must run"),
        "{err}"
    );
    assert_eq!(calls_with(&sim, "ActivateOrganizationsAccess", "ok"), 0);
}

#[tokio::test(start_paused = true)]
async fn an_organization_without_all_features_is_refused() {
    let sim = Sim::realistic(SimConfig::default());
    sim.set_feature_set("CONSOLIDATED_BILLING");
    let err = refused(&Spec::whole_org().deployment(), &sim_context(&sim), &sim).await;
    assert_eq!(err.metric_label(), "feature_set");
    assert!(err.to_string().contains("enable all features"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_target_ou_that_does_not_exist_is_named_and_a_new_one_is_found() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let gone = Spec {
        ous: vec!["ou-a1b2-doesnotx".to_string()],
        ..Spec::whole_org()
    }
    .deployment();
    let err = refused(&gone, &ctx, &sim).await;
    assert_eq!(err.metric_label(), "target_ou_not_found");
    assert!(err.to_string().contains("ou-a1b2-doesnotx"), "{err}");

    // An OU created after the organization was scanned is found by a fresh scan, not reported missing.
    let ou = sim.add_ou(&sim.root_id(), "Created later");
    let member = sim.add_account(&ou, "late member");
    let later = Spec {
        ous: vec![ou.clone()],
        ..Spec::whole_org()
    }
    .deployment();
    converge_ok(&later, &ctx, state).await;
    assert_eq!(
        current_pairs(&sim),
        pairs(&[member].into_iter().collect(), &[REGION])
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_target_ou_is_a_warning_not_an_error() {
    let sim = Sim::realistic(SimConfig::default());
    let empty = sim.add_ou(&sim.root_id(), "Empty");
    let deployment = Spec {
        ous: vec![empty.clone()],
        ..Spec::whole_org()
    }
    .deployment();
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(&deployment, &ctx, state).await;
    let outcome = controller::reconcile(&deployment, &ctx, state)
        .await
        .unwrap();
    assert!(outcome.is_converged());
    assert_eq!(outcome.report.target_warnings.len(), 1);
    assert!(outcome.report.target_warnings[0].contains(&empty));
    assert!(sim.instances(STACK_SET).is_empty());
}

#[tokio::test(start_paused = true)]
async fn suspended_and_closing_accounts_are_neither_failures_nor_missing() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = Spec::whole_org().deployment();
    converge_ok(&deployment, &ctx, state).await;
    let members: Vec<String> = active_members(&sim).into_iter().take(2).collect();
    sim.set_account_state(&members[0], "PENDING_CLOSURE");
    sim.set_account_state(&members[1], "CLOSED");
    ctx.invalidate_organization();
    // A template update reaches every instance: those in closing accounts are skipped, not failed.
    let mut changed = deployment.clone();
    changed.spec.description = Some("changed".to_string());
    converge_ok(&changed, &ctx, state).await;
    let outcome = controller::reconcile(&changed, &ctx, state).await.unwrap();
    let report = &outcome.report;
    assert_eq!(report.missing_instances, 0);
    assert_eq!(
        report.inactive_accounts, 3,
        "the realistic org's suspended account and these two"
    );
    assert_eq!(
        report.skipped_suspended_instances, 3,
        "skipped, not failed: the two closing accounts and the suspended one (skipped since the first deployment)"
    );
    assert!(
        report.instances.keys().all(|k| !k.ends_with("/FAILED")),
        "{:?}",
        report.instances
    );
}

#[tokio::test(start_paused = true)]
async fn inoperable_instances_are_reported_and_repaired_with_repair_inoperable() {
    for repair in [false, true] {
        let sim = Sim::realistic(SimConfig::default());
        let ctx = sim_context(&sim);
        let state = &mut DeploymentState::default();
        let mut deployment = Spec::whole_org().deployment();
        deployment.spec.repair_inoperable = repair;
        converge_ok(&deployment, &ctx, state).await;
        // Excluding an account whose stacks cannot be deleted leaves its instance INOPERABLE.
        let victim = active_members(&sim).into_iter().next().unwrap();
        sim.fail_account(
            &victim,
            "Role AimablyMemberRole cannot be deleted: DeleteConflict",
        );
        let mut excluded = deployment.clone();
        excluded.spec.deployment_targets.accounts = vec![victim.clone()];
        excluded.spec.deployment_targets.account_filter_type =
            stacksetd::cloud::AccountFilterType::Difference;
        let (result, _) = converge(&excluded, &ctx, state).await;
        assert!(result.is_err(), "the delete fails for {victim}");
        let broken: Vec<_> = sim
            .instances(STACK_SET)
            .into_iter()
            .filter(|i| i.status == InstanceStatus::Inoperable)
            .collect();
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].account, victim);

        // The account is wanted again and healthy; the INOPERABLE instance stays in the way.
        sim.heal_account(&victim);
        let outcome = controller::reconcile(&deployment, &ctx, state)
            .await
            .unwrap();
        assert_eq!(outcome.report.inoperable_instances, 1);
        assert!(
            outcome.report.inoperable[0]
                .reason
                .as_deref()
                .unwrap_or_default()
                .contains("DeleteConflict"),
            "{:?}",
            outcome.report.inoperable
        );
        let _ = converge(&deployment, &ctx, state).await;
        let state = sim
            .instances(STACK_SET)
            .into_iter()
            .find(|i| i.account == victim)
            .map(|i| i.status);
        if repair {
            assert_eq!(
                state,
                Some(InstanceStatus::Current),
                "removed and created again"
            );
            let deletes: Vec<_> = api_operations(&sim)
                .into_iter()
                .filter(|op| op.retain_stacks == Some(true))
                .collect();
            assert_eq!(deletes.len(), 1, "one retained delete");
            assert_no_duplicate_submissions(&sim);
        } else {
            assert_eq!(
                state,
                Some(InstanceStatus::Inoperable),
                "reported, left alone"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn plan_runs_the_checks_read_only() {
    let sim = Sim::realistic(SimConfig::default());
    sim.set_trusted_access(false);
    let deployment = Spec::whole_org().deployment();
    let err = controller::dry_run(&deployment, &sim_context(&sim), &mut Default::default())
        .await
        .expect_err("plan says why nothing could be applied");
    assert_eq!(err.metric_label(), "trusted_access_disabled");
    // With the setting, the next reconcile would activate it: plan shows the changes and activates nothing.
    let (plan, _) = controller::dry_run(
        &deployment,
        &activating_context(&sim),
        &mut Default::default(),
    )
    .await
    .expect("plan");
    assert!(!plan.is_empty());
    assert!(!sim.trusted_access(), "plan never writes");
    assert_eq!(mutations(&sim), 0);
}
