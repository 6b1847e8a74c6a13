//! Rule 9, the management account's stack: every status, ownership, the move between Regions, deletions.

use std::collections::BTreeMap;

use super::super::tests::{BODY, OU_A, converged_stack_set, deployed, observed, run, with_targets};
use super::*;
use crate::desired::Deployment;

const REGION: &str = "us-east-1";
const OTHER: &str = "eu-west-1";

/// A deployment with `spec.managementAccount` (and the owner tag decide adds).
fn deployment(management: &str, extra: &str) -> Deployment {
    let mut d = with_targets(
        &[OU_A],
        &[REGION, OTHER],
        &format!("  managementAccount: {management}\n{extra}"),
    );
    d.spec
        .tags
        .insert(OWNER_TAG.to_string(), d.name().to_string());
    d
}

fn stack(status: &str, owner: Option<&str>, region: &str) -> ObservedStack {
    ObservedStack {
        name: "Vendor".into(),
        region: region.into(),
        stack_id: format!("arn:aws:cloudformation:{region}:111111111111:stack/Vendor/1"),
        status: status.into(),
        status_reason: None,
        parameters: BTreeMap::from([("ManagementAccountId".into(), "111111111111".into())]),
        capabilities: BTreeSet::new(),
        tags: owner
            .map(|o| BTreeMap::from([(OWNER_TAG.to_string(), o.to_string())]))
            .unwrap_or_default(),
        last_changed: None,
        role_arn: None,
        drift_status: None,
        last_drift_check: None,
    }
}

/// The stack set converged, and the management stack as given.
fn seen(stack: Option<ObservedStack>, elsewhere: Vec<ObservedStack>) -> Observed {
    let mut o = observed(
        converged_stack_set(&[OU_A], &[REGION, OTHER]),
        deployed(&[OU_A], &[REGION, OTHER]),
    );
    o.stack_set.as_mut().unwrap().settings.tags =
        BTreeMap::from([(OWNER_TAG.to_string(), "t".to_string())]);
    o.management_stack = Some(ManagementStackObserved {
        region: REGION.into(),
        template_body: stack.as_ref().map(|_| BODY.to_string()),
        stack,
        elsewhere,
        failed_creation: None,
    });
    o
}

fn names(plan: &crate::plan::Plan) -> Vec<&'static str> {
    plan.steps.iter().map(|s| s.action.name()).collect()
}

#[test]
fn without_the_block_nothing_is_planned_for_it() {
    let d = with_targets(&[OU_A], &[REGION, OTHER], "");
    let mut o = seen(None, vec![]);
    o.management_stack = None;
    let plan = run(&d, BODY, &o);
    assert!(!plan.steps.iter().any(|s| s.action.is_stack()), "{plan:?}");
}

#[test]
fn a_missing_stack_is_created_in_the_first_region_with_the_same_template_parameters_and_tags() {
    let d = deployment("{deploy: true}", "");
    let plan = run(&d, BODY, &seen(None, vec![]));
    assert_eq!(names(&plan), ["CreateStack"]);
    let Action::CreateStack { region, settings } = &plan.steps[0].action else {
        unreachable!()
    };
    assert_eq!(region, REGION);
    assert_eq!(settings.template_body, BODY);
    assert_eq!(settings.parameters, d.spec.parameters);
    assert_eq!(settings.tags, d.spec.tags);
    assert!(settings.capabilities.contains("CAPABILITY_NAMED_IAM"));
}

#[test]
fn stack_set_steps_come_first() {
    let d = deployment("{deploy: true}", "");
    let mut o = seen(None, vec![]);
    o.stack_set.as_mut().unwrap().settings.description = Some("old".into());
    assert_eq!(names(&run(&d, BODY, &o)), ["UpdateStackSet", "CreateStack"]);
    // And with no stack set at all.
    o.stack_set = None;
    o.instances = Default::default();
    assert_eq!(
        names(&run(&d, BODY, &o)),
        ["CreateStackSet", "CreateStackInstances", "CreateStack"]
    );
}

#[test]
fn a_converged_stack_needs_nothing_whatever_its_capabilities_and_masked_parameters() {
    let d = deployment("{deploy: true}", "");
    let mut ours = stack("UPDATE_COMPLETE", Some("t"), REGION);
    ours.tags = d.spec.tags.clone();
    let plan = run(&d, BODY, &seen(Some(ours.clone()), vec![]));
    assert!(plan.is_empty(), "{plan:?}");
    // A NoEcho parameter reads as ****: not a difference.
    ours.parameters
        .insert("ManagementAccountId".into(), MASKED.into());
    assert!(run(&d, BODY, &seen(Some(ours), vec![])).is_empty());
}

#[test]
fn a_template_parameter_or_tag_difference_is_one_update() {
    let d = deployment("{deploy: true}", "");
    let mut ours = stack("CREATE_COMPLETE", Some("t"), REGION);
    ours.tags = d.spec.tags.clone();
    let mut o = seen(Some(ours.clone()), vec![]);
    o.management_stack.as_mut().unwrap().template_body =
        Some(r#"{"Resources": {"Other": {"Type": "AWS::IAM::Role"}}}"#.into());
    let plan = run(&d, BODY, &o);
    assert_eq!(names(&plan), ["UpdateStack"]);
    assert_eq!(plan.steps[0].changes[0].field, "template");
    let Action::UpdateStack { settings, .. } = &plan.steps[0].action else {
        unreachable!()
    };
    assert_eq!(settings.template_body, BODY);

    let mut changed = ours.clone();
    changed
        .parameters
        .insert("ManagementAccountId".into(), "999999999999".into());
    let plan = run(&d, BODY, &seen(Some(changed), vec![]));
    assert_eq!(names(&plan), ["UpdateStack"]);
    assert_eq!(
        plan.steps[0].changes[0].field,
        "parameters.ManagementAccountId"
    );

    let mut retagged = ours;
    retagged.tags.insert("team".into(), "x".into());
    let plan = run(&d, BODY, &seen(Some(retagged), vec![]));
    assert_eq!(plan.steps[0].changes[0].field, "tags.team");
}

#[test]
fn a_stack_that_is_not_ours_is_never_touched_whatever_the_desired_state() {
    for management in ["{deploy: true}", "{deploy: false}"] {
        for owner in [None, Some("someone-else")] {
            let d = deployment(management, "");
            let plan = run(
                &d,
                BODY,
                &seen(Some(stack("CREATE_COMPLETE", owner, REGION)), vec![]),
            );
            assert!(plan.is_empty(), "{management} {owner:?}: {plan:?}");
            assert!(
                plan.notes.iter().any(|n| n.contains("left as it is")),
                "{plan:?}"
            );
        }
    }
    let d = deployment("{deploy: true}", "  ensure: Absent\n");
    let plan = run(
        &d,
        BODY,
        &seen(Some(stack("CREATE_COMPLETE", None, REGION)), vec![]),
    );
    assert!(!plan.steps.iter().any(|s| s.action.is_stack()), "{plan:?}");
}

#[test]
fn deploy_false_and_ensure_absent_delete_our_stack_by_its_arn() {
    let ours = stack("CREATE_COMPLETE", Some("t"), REGION);
    let d = deployment("{deploy: false}", "");
    let plan = run(&d, BODY, &seen(Some(ours.clone()), vec![]));
    assert_eq!(names(&plan), ["DeleteStack"]);
    assert!(plan.steps[0].action.is_deletion());
    assert_eq!(
        plan.steps[0].action,
        Action::DeleteStack {
            region: REGION.into(),
            stack_id: ours.stack_id.clone()
        }
    );
    let d = deployment("{deploy: true}", "  ensure: Absent\n");
    let plan = run(&d, BODY, &seen(Some(ours), vec![]));
    assert_eq!(
        names(&plan),
        ["DeleteStack", "DeleteStackInstances", "DeleteStackSet"]
    );
    // Nothing there: nothing to delete.
    let d = deployment("{deploy: false}", "");
    assert!(run(&d, BODY, &seen(None, vec![])).is_empty());
}

#[test]
fn a_stack_being_worked_on_gets_no_step_and_the_pass_settles() {
    for status in [
        "CREATE_IN_PROGRESS",
        "UPDATE_IN_PROGRESS",
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        "ROLLBACK_IN_PROGRESS",
        "DELETE_IN_PROGRESS",
    ] {
        for management in ["{deploy: true}", "{deploy: false}"] {
            let d = deployment(management, "");
            let o = seen(Some(stack(status, Some("t"), REGION)), vec![]);
            assert!(run(&d, BODY, &o).is_empty(), "{status} {management}");
            assert!(o.management_stack_busy("t"), "{status}");
            assert!(!o.management_stack_busy("other"), "{status}");
        }
    }
}

#[test]
fn a_failed_creation_is_deleted_so_it_can_be_created_again() {
    for status in [
        "ROLLBACK_COMPLETE",
        "ROLLBACK_FAILED",
        "CREATE_FAILED",
        "DELETE_FAILED",
    ] {
        let d = deployment("{deploy: true}", "");
        let mut failed = stack(status, Some("t"), REGION);
        failed.status_reason = Some("Role already exists".into());
        let plan = run(&d, BODY, &seen(Some(failed), vec![]));
        assert_eq!(names(&plan), ["DeleteStack"], "{status}");
        assert!(
            plan.steps[0].summary.contains("Role already exists"),
            "{}",
            plan.steps[0].summary
        );
    }
}

#[test]
fn a_stuck_stack_is_left_for_a_person() {
    for status in ["UPDATE_ROLLBACK_FAILED", "REVIEW_IN_PROGRESS"] {
        let d = deployment("{deploy: true}", "");
        let o = seen(Some(stack(status, Some("t"), REGION)), vec![]);
        let plan = run(&d, BODY, &o);
        assert!(plan.is_empty(), "{status}: {plan:?}");
        assert!(
            plan.notes.iter().any(|n| n.contains("a person must")),
            "{plan:?}"
        );
        assert!(
            !o.management_stack_busy("t"),
            "{status} is not work in progress"
        );
    }
}

#[test]
fn a_stack_left_in_the_old_first_region_is_deleted_before_one_is_created_in_the_new() {
    let d = deployment("{deploy: true}", "");
    let old = stack("CREATE_COMPLETE", Some("t"), OTHER);
    let plan = run(&d, BODY, &seen(None, vec![old.clone()]));
    assert_eq!(names(&plan), ["DeleteStack"]);
    assert_eq!(
        plan.steps[0].action,
        Action::DeleteStack {
            region: OTHER.into(),
            stack_id: old.stack_id.clone()
        }
    );
    // Someone else's stack elsewhere is not ours to delete, and does not block the creation.
    let theirs = stack("CREATE_COMPLETE", None, OTHER);
    assert_eq!(
        names(&run(&d, BODY, &seen(None, vec![theirs]))),
        ["CreateStack"]
    );
    // While the old one is being deleted, nothing: the creation follows.
    let going = stack("DELETE_IN_PROGRESS", Some("t"), OTHER);
    assert!(run(&d, BODY, &seen(None, vec![going])).is_empty());
}

#[test]
fn a_failed_creation_is_not_sent_again_with_the_same_version_and_parameters() {
    let mut d = deployment("{deploy: true}", "");
    d.spec.tags.insert(TEMPLATE_TAG.into(), "aaa".into());
    let mut failed = stack("ROLLBACK_COMPLETE", Some("t"), REGION);
    failed.tags = d.spec.tags.clone();
    failed.status_reason = Some("AimablyMemberRole already exists".into());
    let record = FailedCreation::of(&failed).expect("a failed creation");
    let mut o = seen(None, vec![]);
    o.stack_set.as_mut().unwrap().settings.tags = d.spec.tags.clone();
    o.management_stack.as_mut().unwrap().failed_creation = Some(record);
    let plan = run(&d, BODY, &o);
    assert!(plan.is_empty(), "{plan:?}");
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("AimablyMemberRole already exists")),
        "{plan:?}"
    );
    // A new version, or new parameters, are tried.
    let mut newer = d.clone();
    newer.spec.tags.insert(TEMPLATE_TAG.into(), "bbb".into());
    assert_eq!(names(&run(&newer, BODY, &o)).last(), Some(&"CreateStack"));
    let mut other = d.clone();
    other
        .spec
        .parameters
        .insert("ManagementAccountId".into(), "222222222222".into());
    assert_eq!(names(&run(&other, BODY, &o)).last(), Some(&"CreateStack"));
    // A failed update is not a failed creation.
    assert!(FailedCreation::of(&stack("UPDATE_ROLLBACK_COMPLETE", Some("t"), REGION)).is_none());
}

/// A stack carrying the owner tag is acted on only when it is bound to the deployment's service role (or to none
/// when none is configured): anyone who can create a stack there can forge the tag, and updating their stack with
/// the service role would bind the role to it for good.
#[test]
fn a_forged_owner_tag_without_the_service_role_is_left_alone() {
    const ROLE: &str = "arn:aws:iam::111111111111:role/StackSetdStacks";
    let with_role = deployment(&format!("{{deploy: true, serviceRoleArn: \"{ROLE}\"}}"), "");
    // Someone made a stack of that name, tagged as ours, without the role (or with another one).
    for forged_role in [None, Some("arn:aws:iam::111111111111:role/Other")] {
        let mut forged = stack("CREATE_COMPLETE", Some(with_role.name()), REGION);
        forged.role_arn = forged_role.map(str::to_string);
        let plan = run(&with_role, BODY, &seen(Some(forged), vec![]));
        assert!(!plan.steps.iter().any(|s| s.action.is_stack()), "{plan:?}");
        assert!(
            plan.notes
                .iter()
                .any(|n| n.contains("service role") && n.contains("left as it is")),
            "{:?}",
            plan.notes
        );
    }
    // A stack made with a role when the deployment names none is not ours either.
    let without_role = deployment("{deploy: false}", "");
    let mut other = stack("CREATE_COMPLETE", Some(without_role.name()), REGION);
    other.role_arn = Some(ROLE.into());
    let plan = run(&without_role, BODY, &seen(Some(other), vec![]));
    assert!(
        !plan.steps.iter().any(|s| s.action.is_stack()),
        "no DeleteStack: {plan:?}"
    );
    // Bound to the deployment's role: ours (deploy: false deletes it).
    let mut ours = stack("CREATE_COMPLETE", Some(with_role.name()), REGION);
    ours.role_arn = Some(ROLE.into());
    let off = deployment(
        &format!("{{deploy: false, serviceRoleArn: \"{ROLE}\"}}"),
        "",
    );
    let plan = run(&off, BODY, &seen(Some(ours), vec![]));
    assert_eq!(names(&plan), ["DeleteStack"], "{plan:?}");
}
