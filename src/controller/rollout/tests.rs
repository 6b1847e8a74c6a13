//! The verdict of a rollout in progress, from AWS's record alone: every (canary instances, operation, access
//! check, clock, promotion) case that decides it.

use super::*;
use crate::cloud::{ObservedStackSet, OperationAction, StackSetSettings, StackSetStatus};
use crate::fixtures::instance;
use crate::plan::Purpose;
use stacksetd_core::fixtures::DeploymentYaml;

const CANARY: &str = "222222222222";
const OTHER: &str = "333333333333";
const REGION: &str = "us-east-1";
const VERSION: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";

fn deployment(promote: &str) -> Deployment {
    DeploymentYaml::new()
        .targets(&["ROOT"], &[REGION])
        .spec(&format!(
            "  rollout: {{canary: {{accounts: [\"{CANARY}\"]}}, bake: 30m, promote: {promote}}}\n"
        ))
        .build()
}

fn observed(canary: InstanceStatus, detailed: &str, tags: &[(&str, &str)]) -> Observed {
    let mut settings = StackSetSettings::default();
    settings
        .tags
        .insert(ROLLOUT_TAG.into(), ROLLOUT_CANARY.into());
    settings.tags.insert(TEMPLATE_TAG.into(), VERSION.into());
    for (k, v) in tags {
        settings.tags.insert((*k).into(), (*v).into());
    }
    Observed {
        stack_set: Some(ObservedStackSet {
            name: "Vendor".into(),
            arn: None,
            status: StackSetStatus::Active,
            settings,
            permission_model: None,
            organizational_unit_ids: None,
            regions: None,
            drift: None,
        }),
        instances: std::sync::Arc::new(vec![
            instance(CANARY, REGION, canary, detailed),
            instance(OTHER, REGION, InstanceStatus::Outdated, "SUCCEEDED"),
        ]),
        ..Observed::default()
    }
}

fn canary_op(status: OperationStatus, ended: Option<SystemTime>) -> Operation {
    Operation {
        id: "stacksetd-canary-0123456789abcdef0123-0".into(),
        action: OperationAction::Update,
        status,
        status_reason: None,
        failed_instances: None,
        preferences: None,
        ended,
    }
}

/// The plan a pass in a rollout sees: the promotion (tags) and an OUTDATED retry.
fn plan() -> Plan {
    let step = |action| Step {
        purpose: Purpose::default(),
        action,
        summary: String::new(),
        changes: Vec::new(),
    };
    Plan {
        steps: vec![
            step(Action::UpdateStackSet {
                settings: StackSetSettings::default(),
                keep_template: false,
                only: None,
            }),
            step(Action::UpdateStackInstances {
                targets: Targets {
                    organizational_unit_ids: vec!["r-1".into()],
                    accounts: Vec::new(),
                    account_filter_type: AccountFilterType::None,
                },
                regions: vec![REGION.into()],
            }),
        ],
        ..Plan::default()
    }
}

fn judge(d: &Deployment, o: &Observed, facts: &Facts) -> (Option<Phase>, usize) {
    let mut plan = plan();
    let status = stage(d, o, facts, VERSION, &mut plan).expect("staged");
    (status.map(|s| s.phase), plan.steps.len())
}

#[test]
fn the_verdict_follows_aws_record_of_the_canary() {
    let ended = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let facts = |op: Option<Operation>, busy: bool, minutes_after: u64| {
        let mut f = Facts::at(ended + Duration::from_secs(60 * minutes_after));
        f.canary.insert(CANARY.into());
        f.parents.insert(CANARY.into(), "r-1".into());
        f.last_canary = op;
        f.busy = busy;
        f
    };
    let auto = deployment("Auto");
    let done = Some(canary_op(OperationStatus::Succeeded, Some(ended)));
    let current = observed(InstanceStatus::Current, "SUCCEEDED", &[]);
    // Verified, baking: nothing else runs; after the bake the plan runs whole (the promotion).
    assert_eq!(
        judge(&auto, &current, &facts(done.clone(), false, 10)),
        (Some(Phase::Baking), 0)
    );
    assert_eq!(
        judge(&auto, &current, &facts(done.clone(), false, 31)),
        (Some(Phase::Promoting), 2)
    );
    // A canary that failed halts; the same status while an operation runs (a queued update marked it
    // OUTDATED) is not a failure yet.
    let failed = observed(InstanceStatus::Outdated, "FAILED", &[]);
    assert_eq!(
        judge(&auto, &failed, &facts(done.clone(), false, 31)),
        (Some(Phase::Halted), 0)
    );
    assert_eq!(
        judge(&auto, &failed, &facts(done.clone(), true, 31)),
        (Some(Phase::Canary), 0)
    );
    let inoperable = observed(InstanceStatus::Inoperable, "INOPERABLE", &[]);
    assert_eq!(
        judge(&auto, &inoperable, &facts(done.clone(), false, 31)).0,
        Some(Phase::Halted)
    );
    // The canary operation failed: halted, whatever the instances say.
    let failed_op = Some(canary_op(OperationStatus::Failed, Some(ended)));
    assert_eq!(
        judge(&auto, &current, &facts(failed_op, false, 31)).0,
        Some(Phase::Halted)
    );
    // The access check: failed halts; configured and not answered yet verifies.
    let mut denied = facts(done.clone(), false, 31);
    denied.access_configured = true;
    denied.access_failures = Some(vec![(CANARY.into(), "AccessDenied".into())]);
    assert_eq!(judge(&auto, &current, &denied).0, Some(Phase::Halted));
    denied.access_failures = None;
    assert_eq!(judge(&auto, &current, &denied).0, Some(Phase::Verifying));
    denied.access_failures = Some(Vec::new());
    assert_eq!(judge(&auto, &current, &denied).0, Some(Phase::Promoting));
    // No canary operation listed any more: the bake counts from now (longer, never shorter).
    assert_eq!(
        judge(&auto, &current, &facts(None, false, 600)).0,
        Some(Phase::Baking)
    );
    // Manual: the promotion tag for this version, or the digest pinned.
    let manual = deployment("Manual");
    assert_eq!(
        judge(&manual, &current, &facts(done.clone(), false, 31)).0,
        Some(Phase::AwaitingPromotion)
    );
    let promoted = observed(
        InstanceStatus::Current,
        "SUCCEEDED",
        &[(PROMOTE_TAG, VERSION)],
    );
    assert_eq!(
        judge(&manual, &promoted, &facts(done.clone(), false, 31)).0,
        Some(Phase::Promoting)
    );
    let other = observed(
        InstanceStatus::Current,
        "SUCCEEDED",
        &[(PROMOTE_TAG, "cd34")],
    );
    assert_eq!(
        judge(&manual, &other, &facts(done.clone(), false, 31)).0,
        Some(Phase::AwaitingPromotion),
        "a promotion of another version promotes nothing"
    );
    let mut pinned = manual.clone();
    pinned.spec.template.sha256 = Some(VERSION.into());
    assert_eq!(
        judge(&pinned, &current, &facts(done.clone(), false, 31)).0,
        Some(Phase::Promoting)
    );
    // Without the rollout tag there is no rollout in progress.
    let mut untagged = current.clone();
    if let Some(s) = untagged.stack_set.as_mut() {
        s.settings.tags.remove(ROLLOUT_TAG);
    }
    assert_eq!(judge(&auto, &untagged, &facts(done, false, 31)), (None, 2));
}

#[test]
fn a_canary_that_is_not_targeted_is_a_conflict_not_a_guess() {
    let mut facts = Facts::at(SystemTime::UNIX_EPOCH);
    facts
        .untargeted
        .push("account 444444444444 is not targeted".into());
    let err = stage(
        &deployment("Auto"),
        &observed(InstanceStatus::Current, "SUCCEEDED", &[]),
        &facts,
        VERSION,
        &mut plan(),
    )
    .expect_err("refused");
    assert!(err.to_string().contains("444444444444"), "{err}");
    let empty = Facts::at(SystemTime::UNIX_EPOCH);
    assert!(
        stage(
            &deployment("Auto"),
            &Observed::default(),
            &empty,
            VERSION,
            &mut plan()
        )
        .is_err()
    );
}
