//! Exhaustive tests of `plan`: every action, every ordering and combination rule.
//! Size: over 700 lines of tests, grouped by the rule they exercise (rules 3, 7 and 8, the repairs, are in
//! repair_tests.rs), sharing the fixture builders at the top.

use std::collections::BTreeMap;

use super::*;
use crate::cloud::{
    AccountFilterType, AutoDeployment, InstanceStatus, ObservedStackSet, StackSetSettings,
    StackSetStatus,
};
use crate::desired::Deployment;
use crate::fixtures::DeploymentYaml;

pub(super) const ROOT_ID: &str = "r-ab12";
pub(super) const OU_A: &str = "ou-ab12-aaaaaaaa";
pub(super) const OU_B: &str = "ou-ab12-bbbbbbbb";
const OU_C: &str = "ou-ab12-cccccccc";
pub(super) const BODY: &str = r#"{"Resources": {"Role": {"Type": "AWS::IAM::Role"}}}"#;

pub(super) fn deployment(extra: &str) -> Deployment {
    DeploymentYaml::new()
        .spec("  description: vendor access\n")
        .spec("  parameters: {ManagementAccountId: \"111111111111\"}\n")
        .spec(extra)
        .build()
}

/// A deployment with the given targets and regions (plus any extra spec lines).
pub(super) fn with_targets(units: &[&str], regions: &[&str], extra: &str) -> Deployment {
    deployment(&format!(
        "  deploymentTargets: {{organizationalUnitIds: [{}]}}\n  regions: [{}]\n{extra}",
        units.join(", "),
        regions.join(", ")
    ))
}

pub(super) fn template(body: &str) -> Template {
    Template::from_body("file:///t.json", body.to_string()).unwrap()
}

/// The stack set exactly as the default deployment wants it.
pub(super) fn converged_stack_set(units: &[&str], regions: &[&str]) -> ObservedStackSet {
    ObservedStackSet {
        name: "Vendor".into(),
        arn: None,
        status: StackSetStatus::Active,
        settings: StackSetSettings {
            description: Some("vendor access".into()),
            template_body: BODY.into(),
            parameters: [(
                "ManagementAccountId".to_string(),
                "111111111111".to_string(),
            )]
            .into(),
            capabilities: ["CAPABILITY_NAMED_IAM".to_string()].into(),
            tags: BTreeMap::new(),
            auto_deployment: Some(AutoDeployment {
                enabled: true,
                retain_stacks_on_account_removal: false,
                depends_on: Vec::new(),
            }),
            managed_execution: Some(false),
        },
        permission_model: Some("SERVICE_MANAGED".into()),
        organizational_unit_ids: Some(units.iter().map(|s| s.to_string()).collect()),
        regions: Some(regions.iter().map(|s| s.to_string()).collect()),
        drift: None,
    }
}

pub(super) fn instance(account: &str, region: &str, unit: &str) -> StackInstance {
    StackInstance {
        account: account.into(),
        region: region.into(),
        organizational_unit_id: Some(unit.into()),
        status: InstanceStatus::Current,
        detailed_status: Some("SUCCEEDED".into()),
        status_reason: None,
        drift_status: None,
        last_operation_id: None,
    }
}

/// One CURRENT instance per OU x Region (the OU's first account), as ListStackInstances reports a deployed stack set.
pub(super) fn deployed(units: &[&str], regions: &[&str]) -> Vec<StackInstance> {
    let mut out = Vec::new();
    for (i, unit) in units.iter().enumerate() {
        for region in regions {
            out.push(instance(
                &format!("{:012}", 900_000_000_000u64 + i as u64),
                region,
                unit,
            ));
        }
    }
    out
}

pub(super) fn observed(stack_set: ObservedStackSet, instances: Vec<StackInstance>) -> Observed {
    Observed {
        stack_set: Some(stack_set),
        instances: instances.into(),
        inactive_accounts: BTreeSet::new(),
        ..Observed::default()
    }
}

pub(super) fn run(d: &Deployment, body: &str, observed: &Observed) -> Plan {
    let t = template(body);
    plan(
        Desired {
            deployment: d,
            template: &t,
            root_id: Some(ROOT_ID),
        },
        observed,
    )
    .unwrap()
}

pub(super) fn names(plan: &Plan) -> Vec<&'static str> {
    plan.steps.iter().map(|s| s.action.name()).collect()
}

pub(super) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ----------------------------------------------------------------------------------------------------
// Creation from nothing, teardown, and what is refused before any step

#[test]
fn nothing_yet_creates_the_stack_set_then_instances_for_the_root() {
    let d = with_targets(&["ROOT"], &["us-west-2", "eu-west-1"], "");
    let plan = run(&d, BODY, &Observed::default());
    assert_eq!(names(&plan), ["CreateStackSet", "CreateStackInstances"]);
    match &plan.steps[0].action {
        Action::CreateStackSet { settings } => {
            assert_eq!(settings.template_body, BODY);
            assert!(settings.capabilities.contains("CAPABILITY_NAMED_IAM"));
            let auto = settings.auto_deployment.as_ref().expect("sent");
            assert!(auto.enabled && !auto.retain_stacks_on_account_removal);
            assert_eq!(settings.managed_execution, Some(false));
        }
        other => panic!("{other:?}"),
    }
    match &plan.steps[1].action {
        Action::CreateStackInstances { targets, regions } => {
            assert_eq!(targets.organizational_unit_ids, [ROOT_ID]);
            assert_eq!(targets.account_filter_type, AccountFilterType::None);
            assert_eq!(regions, &strings(&["eu-west-1", "us-west-2"]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn root_target_needs_the_root_id() {
    let d = with_targets(&["ROOT"], &["us-west-2"], "");
    let t = template(BODY);
    let err = plan(
        Desired {
            deployment: &d,
            template: &t,
            root_id: None,
        },
        &Observed::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("root id is unknown"), "{err}");
}

#[test]
fn absent_deletes_instances_first_then_the_stack_set() {
    let d = with_targets(&[OU_A], &["us-west-2"], "  ensure: Absent\n");
    let o = observed(
        converged_stack_set(&[OU_A, OU_B], &["us-west-2"]),
        vec![
            instance("222222222222", "us-west-2", OU_A),
            instance("333333333333", "us-west-2", OU_B),
        ],
    );
    let plan = run(&d, BODY, &o);
    assert_eq!(names(&plan), ["DeleteStackInstances", "DeleteStackSet"]);
    match &plan.steps[0].action {
        Action::DeleteStackInstances {
            targets,
            regions,
            retain_stacks,
        } => {
            assert_eq!(
                targets.organizational_unit_ids,
                [OU_A, OU_B],
                "every OU that holds instances, not only desired"
            );
            assert_eq!(regions, &strings(&["us-west-2"]));
            assert!(!retain_stacks);
        }
        other => panic!("{other:?}"),
    }
    let empty = observed(converged_stack_set(&[], &[]), vec![]);
    assert_eq!(names(&run(&d, BODY, &empty)), ["DeleteStackSet"]);
    assert!(
        run(&d, BODY, &Observed::default()).is_empty(),
        "absent and gone: nothing to do"
    );
}

#[test]
fn a_self_managed_stack_set_of_the_same_name_is_a_conflict() {
    let d = with_targets(&[OU_A], &["us-west-2"], "");
    let mut s = converged_stack_set(&[OU_A], &["us-west-2"]);
    s.permission_model = Some("SELF_MANAGED".into());
    let t = template(BODY);
    let err = plan(
        Desired {
            deployment: &d,
            template: &t,
            root_id: None,
        },
        &observed(s, vec![]),
    )
    .unwrap_err();
    assert_eq!(err.metric_label(), "conflict");
    assert!(err.to_string().contains("SELF_MANAGED"));
}

#[test]
fn a_template_over_a_templateurl_limit_is_refused_before_any_action() {
    let d = with_targets(&[OU_A], &["us-west-2"], "");
    let big = format!(r#"{{"Description": "{}"}}"#, "x".repeat(1_100_000));
    let t = template(&big);
    let err = plan(
        Desired {
            deployment: &d,
            template: &t,
            root_id: Some(ROOT_ID),
        },
        &Observed::default(),
    )
    .unwrap_err();
    assert_eq!(err.metric_label(), "template_too_large");
}

// ----------------------------------------------------------------------------------------------------
// Nothing to do: converged, reformatted, unknown or unechoed values

#[test]
fn converged_state_plans_nothing() {
    let d = with_targets(&[OU_A], &["us-west-2"], "");
    let o = observed(
        converged_stack_set(&[OU_A], &["us-west-2"]),
        vec![instance("222222222222", "us-west-2", OU_A)],
    );
    assert!(run(&d, BODY, &o).is_empty());
}

#[test]
fn reformatted_template_is_not_a_change() {
    let d = with_targets(&[OU_A], &["us-west-2"], "");
    let o = observed(converged_stack_set(&[OU_A], &["us-west-2"]), vec![]);
    let reformatted =
        "{\n  \"Resources\": {\n    \"Role\": {\"Type\": \"AWS::IAM::Role\"}\n  }\n}\n";
    assert!(run(&d, reformatted, &o).is_empty());
    let yaml = "Resources:\n  Role:\n    Type: AWS::IAM::Role\n";
    assert!(run(&d, yaml, &o).is_empty());
}

#[test]
fn unknown_managed_execution_and_auto_deployment_are_not_diffs() {
    let d = with_targets(
        &[OU_A],
        &["us-west-2"],
        "  managedExecution: {active: true}\n",
    );
    let mut s = converged_stack_set(&[OU_A], &["us-west-2"]);
    s.settings.managed_execution = None;
    s.settings.auto_deployment = None;
    assert!(run(&d, BODY, &observed(s, vec![])).is_empty());
}

#[test]
fn endpoints_that_do_not_echo_targets_are_read_from_the_instances() {
    let d = with_targets(&[OU_A], &["us-west-2"], "");
    let mut s = converged_stack_set(&[], &[]);
    s.organizational_unit_ids = None;
    s.regions = None;
    let o = observed(
        s,
        vec![
            instance("222222222222", "us-west-2", OU_A),
            instance("333333333333", "us-west-2", OU_B),
        ],
    );
    let plan = run(&d, BODY, &o);
    assert_eq!(names(&plan), ["DeleteStackInstances"]);
    assert!(
        matches!(&plan.steps[0].action, Action::DeleteStackInstances { targets, .. } if targets.organizational_unit_ids == [OU_B])
    );
}

#[test]
fn targets_without_member_accounts_are_converged_once_targeted() {
    // AWS echoes Regions only where instances exist: an OU without member accounts never shows one.
    let d = with_targets(&[OU_A], &["us-west-2"], "");
    let o = observed(converged_stack_set(&[OU_A], &[]), vec![]);
    assert!(run(&d, BODY, &o).is_empty());
}

// ----------------------------------------------------------------------------------------------------
// Rule 1: ManagedExecution alone

#[test]
fn managed_execution_goes_alone_when_the_template_changes_too() {
    let d = with_targets(
        &[OU_A],
        &["us-west-2"],
        "  managedExecution: {active: true}\n",
    );
    let o = observed(converged_stack_set(&[OU_A], &["us-west-2"]), vec![]);
    let plan = run(&d, r#"{"Resources": {}}"#, &o);
    assert_eq!(names(&plan), ["UpdateStackSet", "UpdateStackSet"]);
    match &plan.steps[0].action {
        Action::UpdateStackSet {
            settings,
            keep_template,
            ..
        } => {
            assert!(*keep_template, "UsePreviousTemplate and UsePreviousValue");
            assert_eq!(settings.managed_execution, Some(true));
            assert_eq!(settings.auto_deployment, None);
        }
        other => panic!("{other:?}"),
    }
    match &plan.steps[1].action {
        Action::UpdateStackSet {
            settings,
            keep_template,
            ..
        } => {
            assert!(!keep_template);
            assert_eq!(settings.template_body, r#"{"Resources": {}}"#);
            assert_eq!(settings.managed_execution, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn managed_execution_alone_is_one_update() {
    let d = with_targets(
        &[OU_A],
        &["us-west-2"],
        "  managedExecution: {active: true}\n",
    );
    let plan = run(
        &d,
        BODY,
        &observed(
            converged_stack_set(&[OU_A], &["us-west-2"]),
            deployed(&[OU_A], &["us-west-2"]),
        ),
    );
    assert_eq!(names(&plan), ["UpdateStackSet"]);
    assert!(matches!(
        &plan.steps[0].action,
        Action::UpdateStackSet { settings, .. } if settings.managed_execution == Some(true)
    ));
    assert_eq!(plan.steps[0].changes[0].field, "managedExecution.active");
}

// ----------------------------------------------------------------------------------------------------
// Rule 2: deletions (RetainStacks first where AWS requires it)

#[test]
fn dropped_ou_deletes_its_instances_in_every_region() {
    let d = with_targets(&[OU_A], &["us-west-2"], "");
    let s = converged_stack_set(&[OU_A, OU_B], &["us-west-2"]);
    let plan = run(
        &d,
        BODY,
        &observed(s, deployed(&[OU_A, OU_B], &["us-west-2"])),
    );
    assert_eq!(names(&plan), ["DeleteStackInstances"]);
    match &plan.steps[0].action {
        Action::DeleteStackInstances {
            targets,
            regions,
            retain_stacks,
        } => {
            assert_eq!(targets.organizational_unit_ids, [OU_B]);
            assert_eq!(regions, &strings(&["us-west-2"]));
            assert!(!retain_stacks);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dropped_region_deletes_instances_of_kept_ous_there() {
    let d = with_targets(&[OU_A], &["us-west-2"], "");
    let plan = run(
        &d,
        BODY,
        &observed(
            converged_stack_set(&[OU_A], &["us-west-2", "eu-west-1"]),
            deployed(&[OU_A], &["us-west-2", "eu-west-1"]),
        ),
    );
    assert_eq!(names(&plan), ["DeleteStackInstances"]);
    match &plan.steps[0].action {
        Action::DeleteStackInstances {
            targets, regions, ..
        } => {
            assert_eq!(targets.organizational_unit_ids, [OU_A]);
            assert_eq!(regions, &strings(&["eu-west-1"]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn difference_deletes_newly_excluded_accounts() {
    let d = deployment(
        "  deploymentTargets: {organizationalUnitIds: [ou-ab12-aaaaaaaa], accounts: [\"333333333333\"], accountFilterType: DIFFERENCE}\n  regions: [us-west-2]\n",
    );
    let o = observed(
        converged_stack_set(&[OU_A], &["us-west-2"]),
        vec![
            instance("222222222222", "us-west-2", OU_A),
            instance("333333333333", "us-west-2", OU_A),
        ],
    );
    let plan = run(&d, BODY, &o);
    assert_eq!(names(&plan), ["DeleteStackInstances"]);
    assert!(
        matches!(&plan.steps[0].action, Action::DeleteStackInstances { targets, .. } if targets.accounts == ["333333333333"])
    );
}

/// A plan's summary counts what its step deletes: an excluded account whose instance only a retained delete can
/// remove (suspended) goes in that step alone, and the ordinary deletion neither names nor counts it.
#[test]
fn an_excluded_suspended_account_is_counted_once_in_the_retained_delete() {
    let d = deployment(
        "  deploymentTargets: {organizationalUnitIds: [ou-ab12-aaaaaaaa], accounts: [\"333333333333\", \"444444444444\"], accountFilterType: DIFFERENCE}\n  regions: [us-west-2]\n",
    );
    let mut suspended = instance("444444444444", "us-west-2", OU_A);
    suspended.status = InstanceStatus::Outdated;
    suspended.detailed_status = Some("SKIPPED_SUSPENDED_ACCOUNT".into());
    let instances = vec![
        instance("222222222222", "us-west-2", OU_A),
        instance("333333333333", "us-west-2", OU_A),
        suspended,
    ];
    let plan = run(
        &d,
        BODY,
        &observed(
            converged_stack_set(&[OU_A], &["us-west-2"]),
            instances.clone(),
        ),
    );
    assert_eq!(
        names(&plan),
        ["DeleteStackInstances", "DeleteStackInstances"]
    );
    assert!(
        matches!(&plan.steps[0].action, Action::DeleteStackInstances { targets, retain_stacks: true, .. } if targets.accounts == ["444444444444"])
    );
    assert!(
        matches!(&plan.steps[1].action, Action::DeleteStackInstances { targets, retain_stacks: false, .. } if targets.accounts == ["333333333333"])
    );
    assert!(
        plan.steps[1].summary.contains("of 1 account(s)"),
        "{}",
        plan.steps[1].summary
    );
    assert_eq!(plan.steps[1].changes.len(), 1);

    // Every excluded account suspended: the retained delete is the only step (never an ordinary deletion that
    // names no account, which an INTERSECTION would read as none and a DIFFERENCE as all).
    let rest = instances
        .into_iter()
        .filter(|i| i.account != "333333333333")
        .collect();
    let o = observed(converged_stack_set(&[OU_A], &["us-west-2"]), rest);
    let d = deployment(
        "  deploymentTargets: {organizationalUnitIds: [ou-ab12-aaaaaaaa], accounts: [\"444444444444\"], accountFilterType: DIFFERENCE}\n  regions: [us-west-2]\n",
    );
    let plan = run(&d, BODY, &o);
    assert_eq!(names(&plan), ["DeleteStackInstances"]);
    assert!(matches!(
        &plan.steps[0].action,
        Action::DeleteStackInstances {
            retain_stacks: true,
            ..
        }
    ));
}

#[test]
fn suspended_and_inoperable_instances_are_deleted_first_with_retain_stacks() {
    let d = with_targets(&[OU_A], &["us-west-2"], "  ensure: Absent\n");
    let mut skipped = instance("333333333333", "us-west-2", OU_A);
    skipped.status = InstanceStatus::Outdated;
    skipped.detailed_status = Some("SKIPPED_SUSPENDED_ACCOUNT".into());
    let mut inoperable = instance("444444444444", "us-west-2", OU_A);
    inoperable.status = InstanceStatus::Inoperable;
    let closed = instance("555555555555", "us-west-2", OU_A);
    let mut o = observed(
        converged_stack_set(&[OU_A], &["us-west-2"]),
        vec![
            instance("222222222222", "us-west-2", OU_A),
            skipped,
            inoperable,
            closed,
        ],
    );
    o.inactive_accounts.insert("555555555555".into());
    let plan = run(&d, BODY, &o);
    assert_eq!(
        names(&plan),
        [
            "DeleteStackInstances",
            "DeleteStackInstances",
            "DeleteStackSet"
        ]
    );
    match &plan.steps[0].action {
        Action::DeleteStackInstances {
            targets,
            retain_stacks,
            ..
        } => {
            assert!(retain_stacks);
            assert_eq!(
                targets.accounts,
                ["333333333333", "444444444444", "555555555555"]
            );
            assert_eq!(targets.account_filter_type, AccountFilterType::Intersection);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plan.steps[1].action,
        Action::DeleteStackInstances {
            retain_stacks: false,
            ..
        }
    ));

    // Dropping an OU: only that OU's retained instances go first.
    let d = with_targets(&[OU_A], &["us-west-2"], "");
    let mut suspended_b = instance("666666666666", "us-west-2", OU_B);
    suspended_b.detailed_status = Some("SKIPPED_SUSPENDED_ACCOUNT".into());
    suspended_b.status = InstanceStatus::Outdated;
    let o = observed(
        converged_stack_set(&[OU_A, OU_B], &["us-west-2"]),
        vec![
            instance("222222222222", "us-west-2", OU_A),
            suspended_b,
            instance("777777777777", "us-west-2", OU_B),
        ],
    );
    let plan = run(&d, BODY, &o);
    assert_eq!(
        names(&plan),
        ["DeleteStackInstances", "DeleteStackInstances"]
    );
    assert!(
        matches!(&plan.steps[0].action, Action::DeleteStackInstances { targets, retain_stacks: true, .. } if targets.accounts == ["666666666666"])
    );
}

// ----------------------------------------------------------------------------------------------------
// Rule 4: the stack set's settings

#[test]
fn changed_template_updates_the_stack_set_with_the_new_body() {
    let d = with_targets(&[OU_A], &["us-west-2"], "");
    let o = observed(
        converged_stack_set(&[OU_A], &["us-west-2"]),
        vec![instance("222222222222", "us-west-2", OU_A)],
    );
    let new_body =
        r#"{"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {"Path": "/v2/"}}}}"#;
    let plan = run(&d, new_body, &o);
    assert_eq!(names(&plan), ["UpdateStackSet"]);
    assert_eq!(plan.steps[0].changes.len(), 1);
    assert_eq!(plan.steps[0].changes[0].field, "template");
    match &plan.steps[0].action {
        Action::UpdateStackSet {
            settings,
            keep_template,
            ..
        } => {
            assert!(!keep_template);
            assert_eq!(settings.template_body, new_body);
            assert_eq!(
                settings.auto_deployment, None,
                "auto-deployment unchanged is not sent"
            );
            assert_eq!(settings.managed_execution, None);
            assert_eq!(
                settings.parameters,
                BTreeMap::from([("ManagementAccountId".into(), "111111111111".into())])
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn description_parameter_capability_and_tag_changes_are_listed_from_to() {
    let d = with_targets(
        &[OU_A],
        &["us-west-2"],
        "  tags: {team: finops}\n  capabilities: [CAPABILITY_IAM, CAPABILITY_NAMED_IAM]\n",
    );
    let mut s = converged_stack_set(&[OU_A], &["us-west-2"]);
    s.settings.description = Some("old".into());
    s.settings
        .parameters
        .insert("ManagementAccountId".into(), "999999999999".into());
    s.settings.tags.insert("owner".into(), "me".into());
    let plan = run(&d, BODY, &observed(s, vec![]));
    assert_eq!(names(&plan), ["UpdateStackSet"]);
    let changes: Vec<(&str, &str, &str)> = plan.steps[0]
        .changes
        .iter()
        .map(|c| (c.field.as_str(), c.from.as_str(), c.to.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            ("description", "\"old\"", "\"vendor access\""),
            (
                "parameters.ManagementAccountId",
                "\"999999999999\"",
                "\"111111111111\""
            ),
            (
                "capabilities",
                "CAPABILITY_NAMED_IAM",
                "CAPABILITY_IAM,CAPABILITY_NAMED_IAM"
            ),
            ("tags.owner", "\"me\"", "(unset)"),
            ("tags.team", "(unset)", "\"finops\""),
        ]
    );
}

#[test]
fn auto_deployment_change_is_an_update_without_targets() {
    let d = with_targets(
        &[OU_A],
        &["us-west-2"],
        "  autoDeployment: {enabled: true, retainStacksOnAccountRemoval: true}\n",
    );
    let plan = run(
        &d,
        BODY,
        &observed(
            converged_stack_set(&[OU_A], &["us-west-2"]),
            deployed(&[OU_A], &["us-west-2"]),
        ),
    );
    assert_eq!(names(&plan), ["UpdateStackSet"]);
    match &plan.steps[0].action {
        Action::UpdateStackSet { settings, .. } => {
            assert!(
                settings
                    .auto_deployment
                    .as_ref()
                    .expect("sent")
                    .retain_stacks_on_account_removal
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        plan.steps[0].changes.len(),
        1,
        "only the field that changed: {:?}",
        plan.steps[0].changes
    );
}

// ----------------------------------------------------------------------------------------------------
// Rule 5: creations

#[test]
fn new_ou_creates_instances_for_that_ou_only_in_every_region() {
    let d = with_targets(&[OU_A, OU_B], &["us-west-2", "eu-west-1"], "");
    let s = converged_stack_set(&[OU_A], &["us-west-2", "eu-west-1"]);
    let plan = run(&d, BODY, &observed(s, vec![]));
    assert_eq!(names(&plan), ["CreateStackInstances"]);
    match &plan.steps[0].action {
        Action::CreateStackInstances { targets, regions } => {
            assert_eq!(targets.organizational_unit_ids, [OU_B]);
            assert_eq!(regions, &strings(&["eu-west-1", "us-west-2"]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn new_region_creates_instances_for_existing_ous_in_that_region_only() {
    let d = with_targets(&[OU_A], &["us-west-2", "eu-west-1"], "");
    let plan = run(
        &d,
        BODY,
        &observed(
            converged_stack_set(&[OU_A], &["us-west-2"]),
            deployed(&[OU_A], &["us-west-2"]),
        ),
    );
    assert_eq!(names(&plan), ["CreateStackInstances"]);
    match &plan.steps[0].action {
        Action::CreateStackInstances { targets, regions } => {
            assert_eq!(targets.organizational_unit_ids, [OU_A]);
            assert_eq!(regions, &strings(&["eu-west-1"]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn intersection_accounts_are_added_and_removed_exactly() {
    let d = deployment(
        "  deploymentTargets: {organizationalUnitIds: [ou-ab12-aaaaaaaa], accounts: [\"222222222222\", \"444444444444\"], accountFilterType: INTERSECTION}\n  regions: [us-west-2]\n",
    );
    let o = observed(
        converged_stack_set(&[OU_A], &["us-west-2"]),
        vec![
            instance("222222222222", "us-west-2", OU_A),
            instance("333333333333", "us-west-2", OU_A),
        ],
    );
    let plan = run(&d, BODY, &o);
    assert_eq!(
        names(&plan),
        ["DeleteStackInstances", "CreateStackInstances"]
    );
    match (&plan.steps[0].action, &plan.steps[1].action) {
        (
            Action::DeleteStackInstances { targets: del, .. },
            Action::CreateStackInstances { targets: add, .. },
        ) => {
            assert_eq!(del.accounts, ["333333333333"]);
            assert_eq!(del.account_filter_type, AccountFilterType::Intersection);
            assert_eq!(add.accounts, ["444444444444"]);
            assert_eq!(add.account_filter_type, AccountFilterType::Intersection);
        }
        other => panic!("{other:?}"),
    }
}

// ----------------------------------------------------------------------------------------------------
// Rule 6: OUTDATED retries

#[test]
fn outdated_instances_left_by_a_failure_are_retried_exactly() {
    let d = with_targets(&[OU_A], &["us-west-2"], "");
    let mut failed = instance("333333333333", "us-west-2", OU_A);
    failed.status = InstanceStatus::Outdated;
    failed.detailed_status = Some("FAILED".into());
    failed.status_reason = Some("Role already exists".into());
    let mut running = instance("444444444444", "us-west-2", OU_A);
    running.status = InstanceStatus::Outdated;
    running.detailed_status = Some("RUNNING".into());
    let mut suspended = instance("555555555555", "us-west-2", OU_A);
    suspended.status = InstanceStatus::Outdated;
    suspended.detailed_status = Some("SKIPPED_SUSPENDED_ACCOUNT".into());
    let o = observed(
        converged_stack_set(&[OU_A], &["us-west-2"]),
        vec![
            instance("222222222222", "us-west-2", OU_A),
            failed,
            running,
            suspended,
        ],
    );
    let plan = run(&d, BODY, &o);
    assert_eq!(names(&plan), ["UpdateStackInstances"]);
    match &plan.steps[0].action {
        Action::UpdateStackInstances { targets, regions } => {
            assert_eq!(targets.accounts, ["333333333333"]);
            assert_eq!(targets.account_filter_type, AccountFilterType::Intersection);
            assert_eq!(targets.organizational_unit_ids, [OU_A]);
            assert_eq!(regions, &strings(&["us-west-2"]));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        plan.steps[0].changes[0]
            .from
            .contains("Role already exists")
    );
    // A stack set update re-applies every instance anyway: no separate retry.
    let plan = run(&d, r#"{"Resources": {}}"#, &o);
    assert_eq!(names(&plan), ["UpdateStackSet"]);
}

// ----------------------------------------------------------------------------------------------------
// The order across rules

#[test]
fn every_kind_of_change_is_ordered_managed_deletes_update_creates() {
    let d = with_targets(
        &[OU_A, OU_C],
        &["us-west-2", "us-east-1"],
        "  managedExecution: {active: true}\n",
    );
    let s = converged_stack_set(&[OU_A, OU_B], &["us-west-2", "eu-west-1"]);
    let plan = run(
        &d,
        r#"{"Resources": {}}"#,
        &observed(s, deployed(&[OU_A, OU_B], &["us-west-2", "eu-west-1"])),
    );
    assert_eq!(
        names(&plan),
        [
            "UpdateStackSet",       // managed execution alone
            "DeleteStackInstances", // OU_B
            "DeleteStackInstances", // eu-west-1
            "UpdateStackSet",       // template
            "CreateStackInstances", // OU_C
            "CreateStackInstances", // us-east-1 for OU_A
        ]
    );
}
