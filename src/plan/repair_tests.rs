//! `plan`'s two repairs: coverage gaps (`repairCoverage`) and drift remediation (`driftDetection.remediate`).

use std::collections::BTreeSet;

use super::tests::*;
use super::*;
use crate::cloud::{AccountFilterType, InstanceStatus};

fn gap(account: &str, region: &str) -> (String, String) {
    (account.to_string(), region.to_string())
}

fn converged(instances: Vec<StackInstance>) -> Observed {
    observed(
        converged_stack_set(&[OU_A], &["us-west-2", "eu-west-1"]),
        instances,
    )
}

fn drifted(account: &str, region: &str) -> StackInstance {
    let mut i = instance(account, region, OU_A);
    i.drift_status = Some("DRIFTED".into());
    i
}

#[test]
fn overdue_gaps_resubmit_the_targets_in_their_regions_only() {
    let d = with_targets(&[OU_A], &["us-west-2", "eu-west-1"], "");
    let mut o = converged(vec![instance("222222222222", "us-west-2", OU_A)]);
    o.overdue_gaps = BTreeSet::from([gap("333333333333", "eu-west-1")]);
    let plan = run(&d, BODY, &o);
    assert_eq!(names(&plan), ["CreateStackInstances"]);
    assert_eq!(plan.steps[0].purpose, Purpose::RepairCoverage);
    match &plan.steps[0].action {
        Action::CreateStackInstances { targets, regions } => {
            assert_eq!(targets.organizational_unit_ids, [OU_A]);
            assert_eq!(targets.account_filter_type, AccountFilterType::None);
            assert_eq!(regions, &strings(&["eu-west-1"]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        plan.steps[0].changes[0].field,
        "instance 333333333333/eu-west-1"
    );
}

#[test]
fn repair_is_off_with_repair_coverage_false_and_for_regions_no_longer_desired() {
    let d = with_targets(
        &[OU_A],
        &["us-west-2", "eu-west-1"],
        "  repairCoverage: false\n",
    );
    let mut o = converged(vec![]);
    o.overdue_gaps = BTreeSet::from([gap("333333333333", "eu-west-1")]);
    assert!(run(&d, BODY, &o).is_empty());
    let d = with_targets(&[OU_A], &["us-west-2", "eu-west-1"], "");
    o.overdue_gaps = BTreeSet::from([gap("333333333333", "ap-south-1")]);
    assert!(run(&d, BODY, &o).is_empty());
}

#[test]
fn repair_keeps_the_account_filter_of_the_targets() {
    let d = with_targets(
        &[OU_A],
        &["us-west-2", "eu-west-1"],
        "  repairCoverage: true\n",
    );
    let mut d = d;
    d.spec.deployment_targets.accounts = vec!["444444444444".into()];
    d.spec.deployment_targets.account_filter_type = AccountFilterType::Difference;
    let mut o = converged(vec![]);
    o.overdue_gaps = BTreeSet::from([gap("333333333333", "us-west-2")]);
    let plan = run(&d, BODY, &o);
    match &plan.steps[0].action {
        Action::CreateStackInstances { targets, .. } => {
            assert_eq!(targets.accounts, ["444444444444"]);
            assert_eq!(targets.account_filter_type, AccountFilterType::Difference);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_plan_that_already_creates_instances_does_not_repair_too() {
    // A new Region creates instances for the kept OUs: that fills the gap as well.
    let d = with_targets(&[OU_A], &["us-west-2", "eu-west-1", "ap-south-1"], "");
    let mut o = converged(vec![instance("222222222222", "us-west-2", OU_A)]);
    o.overdue_gaps = BTreeSet::from([gap("333333333333", "us-west-2")]);
    let plan = run(&d, BODY, &o);
    assert_eq!(names(&plan), ["CreateStackInstances"]);
    assert_eq!(plan.steps[0].purpose, Purpose::Converge);
}

#[test]
fn drifted_instances_are_reapplied_exactly_when_remediation_is_on() {
    let d = with_targets(
        &[OU_A],
        &["us-west-2", "eu-west-1"],
        "  driftDetection: {interval: 1h, remediate: true}\n",
    );
    let o = converged(vec![
        instance("222222222222", "us-west-2", OU_A),
        drifted("333333333333", "eu-west-1"),
    ]);
    let plan = run(&d, BODY, &o);
    assert_eq!(names(&plan), ["UpdateStackInstances"]);
    assert_eq!(plan.steps[0].purpose, Purpose::RemediateDrift);
    match &plan.steps[0].action {
        Action::UpdateStackInstances { targets, regions } => {
            assert_eq!(targets.accounts, ["333333333333"]);
            assert_eq!(targets.account_filter_type, AccountFilterType::Intersection);
            assert_eq!(targets.organizational_unit_ids, [OU_A]);
            assert_eq!(regions, &strings(&["eu-west-1"]));
        }
        other => panic!("{other:?}"),
    }
    // Already re-applied for this drift check: wait for the next check.
    let mut done = o.clone();
    done.drift_remediated = true;
    assert!(run(&d, BODY, &done).is_empty());
    // Reported, not remediated, without `remediate: true`.
    let report_only = with_targets(
        &[OU_A],
        &["us-west-2", "eu-west-1"],
        "  driftDetection: {interval: 1h}\n",
    );
    assert!(run(&report_only, BODY, &o).is_empty());
    // A template change re-applies every instance: no separate remediation.
    let plan = run(&d, r#"{"Resources": {}}"#, &o);
    assert_eq!(names(&plan), ["UpdateStackSet"]);
}

fn inoperable(account: &str, region: &str) -> StackInstance {
    let mut i = instance(account, region, OU_A);
    i.status = InstanceStatus::Inoperable;
    i.detailed_status = Some("INOPERABLE".into());
    i.status_reason = Some("DeleteConflict".into());
    i
}

#[test]
fn inoperable_instances_are_removed_with_retain_stacks_only_with_repair_inoperable() {
    let o = converged(vec![
        instance("222222222222", "us-west-2", OU_A),
        inoperable("333333333333", "eu-west-1"),
    ]);
    let off = with_targets(&[OU_A], &["us-west-2", "eu-west-1"], "");
    assert!(
        run(&off, BODY, &o).is_empty(),
        "reported, left alone by default"
    );
    let on = with_targets(
        &[OU_A],
        &["us-west-2", "eu-west-1"],
        "  repairInoperable: true\n",
    );
    let plan = run(&on, BODY, &o);
    assert_eq!(names(&plan), ["DeleteStackInstances"]);
    assert_eq!(plan.steps[0].purpose, Purpose::RepairInoperable);
    match &plan.steps[0].action {
        Action::DeleteStackInstances {
            targets,
            regions,
            retain_stacks,
        } => {
            assert!(
                *retain_stacks,
                "only a retained delete succeeds on an INOPERABLE instance"
            );
            assert_eq!(targets.accounts, ["333333333333"]);
            assert_eq!(targets.account_filter_type, AccountFilterType::Intersection);
            assert_eq!(regions, &strings(&["eu-west-1"]));
        }
        other => panic!("{other:?}"),
    }
    assert!(plan.steps[0].changes[0].from.contains("DeleteConflict"));
}

#[test]
fn removed_inoperable_slots_are_created_again_even_without_repair_coverage() {
    let d = with_targets(
        &[OU_A],
        &["us-west-2", "eu-west-1"],
        "  repairInoperable: true\n  repairCoverage: false\n",
    );
    let mut o = converged(vec![instance("222222222222", "us-west-2", OU_A)]);
    o.recreate = BTreeSet::from([gap("333333333333", "eu-west-1")]);
    let plan = run(&d, BODY, &o);
    assert_eq!(names(&plan), ["CreateStackInstances"]);
    assert_eq!(plan.steps[0].purpose, Purpose::RepairCoverage);
    match &plan.steps[0].action {
        Action::CreateStackInstances { regions, .. } => {
            assert_eq!(regions, &strings(&["eu-west-1"]))
        }
        other => panic!("{other:?}"),
    }
}
