//! From nothing to converged, what a converged pass costs, and edits that change exactly what they name.

use std::time::Duration;

use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::cloud::{InstanceStatus, OperationAction};
use stacksetd::controller::{self, State};

use super::helpers::*;

/// Accounts added to the realistic organization so ListStackInstances needs several pages.
const EXTRA_ACCOUNTS: usize = 80;

#[tokio::test(start_paused = true)]
async fn empty_organization_converges_to_a_stack_set_without_instances() {
    let sim = Sim::new(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = Spec::whole_org().deployment();

    let (result, states) = converge(&deployment, &ctx, state).await;
    let outcome = result.expect("an empty organization converges");
    assert_eq!(outcome.state, State::Converged);
    assert!(
        states.iter().any(|s| matches!(
            s,
            State::Acted {
                action: "CreateStackSet",
                ..
            }
        )),
        "{states:?}"
    );
    assert!(sim.stack_set(STACK_SET).is_some(), "stack set created");
    assert!(
        sim.instances(STACK_SET).is_empty(),
        "the management account never gets an instance"
    );
    assert_eq!(outcome.report.accounts_targeted, 0);
    assert_eq!(outcome.report.missing_instances, 0);
    assert_eq!(outcome.requeue_after, config().resync_interval);

    tokio::time::sleep(config().resync_interval).await;
    let before = sim.calls().snapshot();
    let again = controller::reconcile(&deployment, &ctx, state)
        .await
        .expect("pass");
    let calls = delta(&before, &sim.calls().snapshot());
    assert_eq!(again.state, State::Converged);
    assert_eq!(mutating_calls(&calls), Vec::<&str>::new(), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn realistic_organization_gets_one_instance_per_active_member_and_region() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let spec = Spec {
        regions: vec![REGION, OTHER_REGION],
        ..Spec::whole_org()
    };
    let deployment = spec.deployment();
    let active = active_members(&sim);
    let inactive = inactive_members(&sim);
    let management = sim.management_account_id();
    assert!(
        !inactive.is_empty(),
        "the realistic organization has a suspended account"
    );

    let first = controller::reconcile(&deployment, &ctx, state)
        .await
        .expect("first pass");
    assert_eq!(
        first.report.accounts_targeted,
        active.len(),
        "management account excluded"
    );
    assert_eq!(first.report.missing_instances, active.len() * 2);

    converge_ok(&deployment, &ctx, state).await;
    let outcome = controller::reconcile(&deployment, &ctx, state)
        .await
        .expect("pass");
    assert_eq!(outcome.state, State::Converged);
    assert_eq!(current_pairs(&sim), pairs(&active, &spec.regions));
    let instances = sim.instances(STACK_SET);
    assert!(instances.iter().all(|i| i.account != management));
    // The suspended account's instances exist only as skipped ones, which AWS does not count as failures.
    for instance in instances.iter().filter(|i| inactive.contains(&i.account)) {
        assert!(instance.skipped_suspended(), "{instance:?}");
    }
    let report = &outcome.report;
    assert_eq!(report.accounts_targeted, active.len());
    assert!(!report.missing_accounts.contains(&management));
    assert_eq!(report.missing_instances, 0, "{:?}", report.missing_accounts);
    assert_eq!(report.inactive_accounts, inactive.len());
    assert_no_duplicate_submissions(&sim);
}

#[tokio::test(start_paused = true)]
async fn converged_pass_costs_one_describe_and_one_operations_page() {
    let sim = Sim::realistic(SimConfig::default());
    let prod = sim
        .ou_named("Prod")
        .expect("the realistic organization has a Prod OU");
    for n in 0..EXTRA_ACCOUNTS {
        sim.add_account(&prod, &format!("prod-extra-{n}"));
    }
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = Spec {
        regions: vec![REGION, OTHER_REGION],
        ..Spec::whole_org()
    }
    .deployment();
    converge_ok(&deployment, &ctx, state).await;
    let instances = sim.instances(STACK_SET);
    // A full listing asks Region by Region (in parallel): each Region's own pages.
    let pages: u64 = [REGION, OTHER_REGION]
        .iter()
        .map(|r| {
            instances
                .iter()
                .filter(|i| i.region == *r)
                .count()
                .div_ceil(100)
                .max(1) as u64
        })
        .sum();
    assert!(pages >= 3, "enough instances to page: {pages}");
    assert!(
        pages <= instances.len().div_ceil(100) as u64 + 2,
        "the budget: ceil(instances/100) + Regions"
    );
    // Whatever the organization's size: the instances come from the cache, which one page of operations shows
    // to be current.
    let budget = [("DescribeStackSet", 1), ("ListStackSetOperations", 1)]
        .into_iter()
        .collect();

    // Right after converging, and again a resync later (still within the organization's scan interval).
    for wait in [Duration::ZERO, config().resync_interval] {
        tokio::time::sleep(wait).await;
        let before = sim.calls().snapshot();
        let outcome = controller::reconcile(&deployment, &ctx, state)
            .await
            .expect("pass");
        assert_eq!(outcome.state, State::Converged);
        assert_eq!(delta(&before, &sim.calls().snapshot()), budget);
    }

    // Past `instance_relist_interval` the instances are listed in full again (a relist always wins).
    tokio::time::sleep(config().instance_relist_interval).await;
    let before = sim.calls().snapshot();
    controller::reconcile(&deployment, &ctx, state)
        .await
        .expect("pass");
    let calls = delta(&before, &sim.calls().snapshot());
    assert_eq!(calls.get("ListStackInstances"), Some(&pages), "{calls:?}");
    assert_eq!(calls.get("ListStackSetOperations"), Some(&1), "{calls:?}");
    assert!(mutating_calls(&calls).is_empty(), "{calls:?}");

    // Past the scan interval the organization is listed again, on its own cadence.
    tokio::time::sleep(config().org_scan_interval).await;
    let before = sim.calls().snapshot();
    controller::reconcile(&deployment, &ctx, state)
        .await
        .expect("pass");
    let calls = delta(&before, &sim.calls().snapshot());
    assert_eq!(calls.get("ListRoots"), Some(&1), "{calls:?}");
    assert!(mutating_calls(&calls).is_empty(), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn adding_a_region_creates_exactly_the_new_regions_instances() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let spec = Spec::whole_org();
    converge_ok(&spec.deployment(), &ctx, state).await;
    let before_ops = api_operations(&sim).len();
    let before = sim.instances(STACK_SET);

    let wider = Spec {
        regions: vec![REGION, OTHER_REGION],
        ..spec
    };
    converge_ok(&wider.deployment(), &ctx, state).await;

    let new_ops = &api_operations(&sim)[before_ops..];
    assert_eq!(new_ops.len(), 1, "{new_ops:#?}");
    assert_eq!(new_ops[0].action, OperationAction::Create);
    assert_eq!(new_ops[0].regions, vec![OTHER_REGION.to_string()]);
    let after = sim.instances(STACK_SET);
    let old_region: Vec<_> = after
        .iter()
        .filter(|i| i.region == REGION)
        .cloned()
        .collect();
    assert_eq!(
        old_region, before,
        "the existing Region's instances are untouched"
    );
    assert_eq!(
        current_pairs(&sim),
        pairs(&active_members(&sim), &wider.regions)
    );
    assert_no_duplicate_submissions(&sim);
}

#[tokio::test(start_paused = true)]
async fn dropping_an_ou_deletes_exactly_that_ous_instances() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let ou = |name: &str| sim.ou_named(name).expect("realistic OU");
    let (security, infrastructure, workloads, sandbox) = (
        ou("Security"),
        ou("Infrastructure"),
        ou("Workloads"),
        ou("Sandbox"),
    );
    let all = Spec {
        ous: vec![
            security.clone(),
            infrastructure.clone(),
            workloads.clone(),
            sandbox.clone(),
        ],
        ..Spec::whole_org()
    };
    converge_ok(&all.deployment(), &ctx, state).await;
    let before_ops = api_operations(&sim).len();
    let before = sim.instances(STACK_SET);
    assert!(
        before
            .iter()
            .any(|i| i.organizational_unit_id.as_ref() == Some(&sandbox))
    );

    let fewer = Spec {
        ous: vec![security, infrastructure, workloads],
        ..all
    };
    converge_ok(&fewer.deployment(), &ctx, state).await;

    let new_ops = &api_operations(&sim)[before_ops..];
    assert!(!new_ops.is_empty());
    for op in new_ops {
        assert_eq!(op.action, OperationAction::Delete, "{op:#?}");
        let targets = op
            .targets
            .as_ref()
            .expect("instance operations have targets");
        assert_eq!(
            targets.organizational_unit_ids,
            vec![sandbox.clone()],
            "{op:#?}"
        );
    }
    let kept: Vec<_> = before
        .iter()
        .filter(|i| i.organizational_unit_id.as_ref() != Some(&sandbox))
        .cloned()
        .collect();
    assert_eq!(
        sim.instances(STACK_SET),
        kept,
        "every other instance untouched"
    );
    assert!(kept.iter().all(|i| i.status == InstanceStatus::Current));
    assert_no_duplicate_submissions(&sim);
}

/// "Converged" only when it is true: a targeted account without an instance, with nothing left to submit
/// (`repairCoverage: false`, auto-deployment off), is a `CoverageGap` that says why, and `converge_until` (what
/// `reconcile --once` runs) stops there not converged; with the repair on, the account gets its instance and only
/// then is the deployment Converged.
#[tokio::test(start_paused = true)]
async fn a_targeted_account_without_an_instance_is_a_coverage_gap_never_converged() {
    let sim = Sim::realistic(SimConfig::default());
    let mut deployment = Spec::whole_org().deployment();
    deployment.spec.repair_coverage = false;
    deployment.spec.auto_deployment.enabled = false;
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(&deployment, &ctx, state).await;
    let late = sim.add_account(&sim.ou_named("Sandbox").unwrap(), "late-joiner");
    ctx.invalidate_organization();
    let outcome = stacksetd::controller::reconcile(&deployment, &ctx, state)
        .await
        .unwrap();
    let State::CoverageGap(gap) = &outcome.state else {
        panic!("expected a coverage gap, got {:?}", outcome.state);
    };
    assert_eq!(gap.missing, deployment.spec.regions.len(), "{gap:?}");
    assert!(gap.why.contains("repairCoverage is false"), "{}", gap.why);
    assert!(!outcome.is_converged());
    let out = stacksetd::controller::converge_until(&deployment, &ctx, state, true, |_| {})
        .await
        .unwrap();
    assert!(
        matches!(out.state, State::CoverageGap(_)),
        "{:?}",
        out.state
    );
    assert!(!sim.instances(STACK_SET).iter().any(|i| i.account == late));

    deployment.spec.repair_coverage = true;
    converge_ok(&deployment, &ctx, state).await;
    assert!(
        sim.instances(STACK_SET)
            .iter()
            .any(|i| i.account == late && i.status == stacksetd::cloud::InstanceStatus::Current)
    );
}
