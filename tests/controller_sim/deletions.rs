//! Never destructive by surprise: deletions wait for `deletion_delay` of an unchanged desired state (an edit
//! withdrawn in time deletes nothing; one kept runs once), while creations and updates do not wait, unless a
//! creation depends on the deletion (a Region move: IAM names are global per account).

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
    sim.calls()
        .by_operation()
        .get(operation)
        .copied()
        .unwrap_or(0)
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
    let state = &mut DeploymentState::default();
    converge_ok(&two_regions().deployment(), &ctx, state).await;
    let one_region = Spec::whole_org().deployment();

    let started = tokio::time::Instant::now();
    let first = controller::reconcile(&one_region, &ctx, state)
        .await
        .expect("a pass");
    let State::DeletionPending {
        action, runs_at, ..
    } = &first.state
    else {
        panic!("the deletion waits: {:?}", first.state);
    };
    assert_eq!(*action, "DeleteStackInstances");
    assert!(!runs_at.is_empty());
    assert!(
        first.requeue_after <= DELAY && first.requeue_after > DELAY / 2,
        "{:?}",
        first.requeue_after
    );
    assert!(
        first
            .report
            .pending_deletions
            .iter()
            .any(|d| d.waiting && d.action == "DeleteStackInstances")
    );
    assert_eq!(calls(&sim, "DeleteStackInstances"), 0);

    // reconcile --once waits for it: one deletion, after the delay.
    converge_ok(&one_region, &ctx, state).await;
    // Active and suspended accounts' instances go in separate steps (the latter with RetainStacks): each once.
    let deletions = calls(&sim, "DeleteStackInstances");
    assert!((1..=2).contains(&deletions), "{deletions}");
    assert_no_duplicate_submissions(&sim);
    assert!(
        started.elapsed() >= DELAY,
        "ran after {:?}",
        started.elapsed()
    );
    assert!(current_pairs(&sim).iter().all(|(_, r)| r == REGION));
    // --no-wait stops at the pending step instead (nothing left to delete now: converged).
    let outcome = controller::converge_until(&one_region, &ctx, state, false, |_| {})
        .await
        .unwrap();
    assert!(outcome.is_converged());
}

#[tokio::test(start_paused = true)]
async fn a_deletion_withdrawn_within_the_delay_never_runs() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = delayed(&sim);
    let state = &mut DeploymentState::default();
    let both = two_regions().deployment();
    converge_ok(&both, &ctx, state).await;
    let before = current_pairs(&sim);

    // An edit drops a Region (a half-written file, a mistake); it is put back 30 s later.
    let one_region = Spec::whole_org().deployment();
    let outcome = controller::converge_until(&one_region, &ctx, state, false, |_| {})
        .await
        .unwrap();
    assert!(
        matches!(outcome.state, State::DeletionPending { .. }),
        "{:?}",
        outcome.state
    );
    tokio::time::sleep(DELAY / 2).await;
    converge_ok(&both, &ctx, state).await;
    // Long after: still nothing deleted.
    tokio::time::sleep(DELAY * 3).await;
    converge_ok(&both, &ctx, state).await;
    assert_eq!(calls(&sim, "DeleteStackInstances"), 0);
    assert_eq!(current_pairs(&sim), before);

    // Asked for again, the delay starts over: a desired state must stay unchanged for the whole delay.
    let outcome = controller::reconcile(&one_region, &ctx, state)
        .await
        .unwrap();
    assert!(
        matches!(outcome.state, State::DeletionPending { .. }),
        "{:?}",
        outcome.state
    );
    assert!(outcome.requeue_after > DELAY / 2);
}

/// IAM names are global per account: a second stack of the template's named role in the same account fails.
fn global_names() -> Sim {
    Sim::realistic(SimConfig {
        global_names: true,
        ..SimConfig::default()
    })
}

#[tokio::test(start_paused = true)]
async fn the_simulator_fails_a_second_stack_holding_the_same_iam_name() {
    // What makes the next test able to fail: with global names, the template's role cannot exist in two Regions
    // of one account, so a creation in a new Region before the old Region's deletion fails.
    let sim = global_names();
    let ctx = delayed(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(&Spec::whole_org().deployment(), &ctx, state).await;
    let both = two_regions().deployment();
    for _ in 0..20 {
        match controller::reconcile(&both, &ctx, state).await {
            Ok(outcome) => {
                assert!(!outcome.is_converged(), "{:?}", outcome.state);
                tokio::time::sleep(outcome.requeue_after).await;
            }
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("in eu-west-1: FAILED") && e.contains("global per account"),
                    "{e}"
                );
                return;
            }
        }
    }
    panic!("the creation in the second Region never failed");
}

#[tokio::test(start_paused = true)]
async fn updates_do_not_wait_but_a_region_move_waits_for_the_deletion_it_depends_on() {
    let sim = global_names();
    let ctx = delayed(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(&Spec::whole_org().deployment(), &ctx, state).await;
    let creations_before = calls(&sim, "CreateStackInstances");
    // One edit: another Region instead of the first, and a new description.
    let moved = Spec {
        regions: vec![OTHER_REGION],
        description: "moved to another Region",
        ..Spec::whole_org()
    }
    .deployment();
    let started = tokio::time::Instant::now();
    let outcome = pass_until(&moved, &ctx, state, |o| {
        matches!(o.state, State::DeletionPending { .. })
    })
    .await;
    assert!(started.elapsed() < DELAY, "the update went first");
    let State::DeletionPending { summary, .. } = &outcome.state else {
        panic!("{:?}", outcome.state);
    };
    assert!(
        summary.contains("1 creation(s) that depend on it"),
        "{summary}"
    );
    assert_eq!(calls(&sim, "UpdateStackSet"), 1);
    assert_eq!(
        calls(&sim, "CreateStackInstances"),
        creations_before,
        "the new Region's creation waits with the old Region's deletion: the accounts' named role exists there"
    );
    assert_eq!(calls(&sim, "DeleteStackInstances"), 0);
    converge_ok(&moved, &ctx, state).await;
    assert!(started.elapsed() >= DELAY);
    assert!(calls(&sim, "DeleteStackInstances") >= 1);
    assert_no_duplicate_submissions(&sim);
    assert!(
        api_operations(&sim)
            .iter()
            .all(|op| op.failed_instances == 0),
        "no instance failed: {:?}",
        api_operations(&sim)
    );
    assert_eq!(
        current_pairs(&sim),
        pairs(&active_members(&sim), &[OTHER_REGION])
    );
}

#[tokio::test(start_paused = true)]
async fn a_creation_that_depends_on_no_deletion_does_not_wait() {
    // An OU replaced by another: the dropped OU's accounts are not kept, so the new OU's creation does not
    // depend on their deletion and goes at once.
    let sim = global_names();
    let ctx = delayed(&sim);
    let state = &mut DeploymentState::default();
    let units = sim.unit_ids();
    let (first, second) = (units[0].clone(), units[1].clone());
    let on = |ou: &str| {
        Spec {
            ous: vec![ou.to_string()],
            ..Spec::whole_org()
        }
        .deployment()
    };
    converge_ok(&on(&first), &ctx, state).await;
    let creations_before = calls(&sim, "CreateStackInstances");
    let started = tokio::time::Instant::now();
    pass_until(&on(&second), &ctx, state, |o| {
        matches!(o.state, State::DeletionPending { .. })
    })
    .await;
    assert!(started.elapsed() < DELAY);
    assert_eq!(calls(&sim, "CreateStackInstances"), creations_before + 1);
    assert_eq!(calls(&sim, "DeleteStackInstances"), 0);
    converge_ok(&on(&second), &ctx, state).await;
    assert!(
        api_operations(&sim)
            .iter()
            .all(|op| op.failed_instances == 0)
    );
}

#[tokio::test(start_paused = true)]
async fn revoking_waits_for_the_delay_too() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = delayed(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(&Spec::whole_org().deployment(), &ctx, state).await;
    let absent = Spec {
        ensure: "Absent",
        ..Spec::whole_org()
    }
    .deployment();
    let outcome = controller::reconcile(&absent, &ctx, state).await.unwrap();
    assert!(
        matches!(outcome.state, State::DeletionPending { .. }),
        "{:?}",
        outcome.state
    );
    assert_eq!(calls(&sim, "DeleteStackInstances"), 0);
    converge_ok(&absent, &ctx, state).await;
    assert!(
        sim.stack_set(STACK_SET)
            .is_none_or(|s| s.status != stacksetd::cloud::StackSetStatus::Active)
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Ownership: stack sets stacksetd did not create are left alone until adopted.

use std::sync::Arc;

use stacksetd::cloud::{
    AutoDeployment, Cloud, CreateStackSet, OperationPreferences, StackSetSettings, UpdateStackSet,
};
use stacksetd::controller::ownership::{OWNER_TAG, TEMPLATE_TAG};

const TEMPLATE_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/templates/aimably-data-only.json"
);

/// Someone else's stack set of the configured name (the console wizard's), with instances.
async fn console_stack_set(sim: &Sim, tags: &[(&str, &str)]) {
    let cloud: Arc<dyn Cloud> = Arc::new(sim.clone());
    cloud
        .create_stack_set(&CreateStackSet {
            name: STACK_SET.into(),
            call_as: Default::default(),
            settings: StackSetSettings {
                description: Some("made in the console".into()),
                template_body: std::fs::read_to_string(TEMPLATE_FILE).unwrap(),
                parameters: [(
                    "ManagementAccountId".to_string(),
                    "123456789012".to_string(),
                )]
                .into(),
                capabilities: ["CAPABILITY_NAMED_IAM".to_string()].into(),
                tags: tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                auto_deployment: Some(AutoDeployment {
                    enabled: true,
                    retain_stacks_on_account_removal: false,
                    depends_on: Vec::new(),
                }),
                managed_execution: Some(false),
            },
            template_url: None,
            client_token: "console-create".into(),
        })
        .await
        .expect("created");
    someone_creates_instances(sim, &[], REGION, "console-instances").await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

/// Every mutating call so far, counted one by one (a repeat of an operation already called counts).
fn mutations(sim: &Sim) -> u64 {
    sim.calls()
        .by_operation()
        .iter()
        .filter(|(op, _)| MUTATING.contains(op))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(start_paused = true)]
async fn an_untagged_stack_set_is_left_alone_until_adopted() {
    let sim = Sim::realistic(SimConfig::default());
    console_stack_set(&sim, &[]).await;
    let before = mutations(&sim);
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = Spec::whole_org().deployment();
    let (result, _) = converge(&deployment, &ctx, state).await;
    let err = result.expect_err("not managed");
    assert_eq!(err.metric_label(), "stack_set_not_managed");
    assert!(
        err.to_string()
            .contains("set spec.adopt: true to take it over"),
        "{err}"
    );
    assert_eq!(mutations(&sim), before, "nothing updated or deleted");
    // Not even a revocation touches it.
    let absent = Spec {
        ensure: "Absent",
        ..Spec::whole_org()
    }
    .deployment();
    assert!(converge(&absent, &ctx, state).await.0.is_err());
    assert!(sim.stack_set(STACK_SET).is_some());

    let adopted = Spec {
        extra: "  adopt: true\n".into(),
        ..Spec::whole_org()
    }
    .deployment();
    converge_ok(&adopted, &ctx, state).await;
    let tags = sim.stack_set(STACK_SET).unwrap().settings.tags;
    assert_eq!(tags.get(OWNER_TAG).map(String::as_str), Some("aimably"));
    assert!(
        tags.contains_key(TEMPLATE_TAG),
        "the approval record: {tags:?}"
    );
    // Once tagged it is the deployment's, with or without adopt.
    converge_ok(&deployment, &ctx, state).await;
}

#[tokio::test(start_paused = true)]
async fn a_stack_set_tagged_for_another_deployment_is_never_touched() {
    let sim = Sim::realistic(SimConfig::default());
    console_stack_set(&sim, &[(OWNER_TAG, "someone-else")]).await;
    let before = mutations(&sim);
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    for extra in ["", "  adopt: true\n"] {
        let d = Spec {
            extra: extra.into(),
            ..Spec::whole_org()
        }
        .deployment();
        let err = converge(&d, &ctx, state)
            .await
            .0
            .expect_err("owned elsewhere");
        assert_eq!(err.metric_label(), "stack_set_owned_elsewhere");
        assert!(err.to_string().contains("someone-else"), "{err}");
    }
    assert_eq!(mutations(&sim), before);
}

#[tokio::test(start_paused = true)]
async fn a_stack_set_made_by_an_earlier_release_is_recognised_and_tagged() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let deployment = Spec::whole_org().deployment();
    converge_ok(&deployment, &ctx, state).await;
    // An earlier release tagged nothing: remove the tags as it would have left them.
    let current = sim.stack_set(STACK_SET).unwrap();
    let cloud: Arc<dyn Cloud> = Arc::new(sim.clone());
    cloud
        .update_stack_set(&UpdateStackSet {
            name: STACK_SET.into(),
            call_as: Default::default(),
            settings: StackSetSettings {
                tags: Default::default(),
                auto_deployment: None,
                managed_execution: None,
                ..current.settings.clone()
            },
            keep_template: true,
            template_url: None,
            preferences: OperationPreferences::default(),
            only: None,
            operation_id: "untag".into(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    converge_ok(&deployment, &sim_context(&sim), &mut Default::default()).await;
    assert_eq!(
        sim.stack_set(STACK_SET)
            .unwrap()
            .settings
            .tags
            .get(OWNER_TAG)
            .map(String::as_str),
        Some("aimably")
    );
}

// ---------------------------------------------------------------------------------------------------------------
// The approval record: a console edit is spec drift, reverted, and never becomes the baseline.

#[tokio::test(start_paused = true)]
async fn a_console_edited_template_is_reverted_and_a_later_widening_publication_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vendor.json");
    let v1 = std::fs::read_to_string(TEMPLATE_FILE).unwrap();
    std::fs::write(&file, &v1).unwrap();
    let mut widened: serde_json::Value = serde_json::from_str(&v1).unwrap();
    widened["Resources"]["AimablyMemberRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Action"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!("cloudtrail:LookupEvents"));
    let widened = serde_json::to_string_pretty(&widened).unwrap();
    let url = url::Url::from_file_path(&file).unwrap().to_string();
    let spec = Spec {
        extra: String::new(),
        ..Spec::whole_org()
    };
    let yaml_deployment = || {
        let mut d = spec.deployment();
        d.spec.template.url = Some(url.clone());
        d
    };
    let deployment = yaml_deployment();
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    converge_ok(&deployment, &ctx, state).await;
    assert_eq!(
        sim.stack_set(STACK_SET)
            .unwrap()
            .settings
            .tags
            .get(TEMPLATE_TAG),
        Some(&stacksetd::template::sha256_hex(v1.as_bytes()))
    );

    // Someone with UpdateStackSet puts the widened template on by hand (tags untouched).
    let console_edit = |body: String, id: &'static str| {
        let sim = sim.clone();
        async move {
            let current = sim.stack_set(STACK_SET).unwrap();
            let cloud: Arc<dyn Cloud> = Arc::new(sim.clone());
            cloud
                .update_stack_set(&UpdateStackSet {
                    name: STACK_SET.into(),
                    call_as: Default::default(),
                    settings: StackSetSettings {
                        template_body: body,
                        auto_deployment: None,
                        managed_execution: None,
                        ..current.settings.clone()
                    },
                    keep_template: false,
                    template_url: None,
                    preferences: OperationPreferences::default(),
                    only: None,
                    operation_id: id.into(),
                })
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    };
    console_edit(widened.clone(), "console-1").await;
    // A fresh controller (a restart: nothing remembered) sees it as spec drift and reverts it.
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let outcome = controller::reconcile(&deployment, &ctx, state)
        .await
        .unwrap();
    assert!(
        outcome
            .report
            .spec_drift
            .iter()
            .any(|d| d.field == "template"),
        "{:?}",
        outcome.report.spec_drift
    );
    converge_ok(&deployment, &ctx, state).await;
    assert_eq!(
        sim.stack_set(STACK_SET).unwrap().settings.template_body,
        v1,
        "reverted to the approved version"
    );

    // Edited again, and now the vendor publishes that same widening: judged against the approved v1, held.
    console_edit(widened.clone(), "console-2").await;
    std::fs::write(&file, &widened).unwrap();
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let outcome = controller::converge(&deployment, &ctx, state, |_| {})
        .await
        .unwrap();
    let t = outcome.report.template.as_ref().unwrap();
    assert_eq!(t.decision, "held_no_baseline", "{t:?}");
    assert!(t.message.contains("spec.template.sha256"), "{}", t.message);
    assert_eq!(
        sim.stack_set(STACK_SET)
            .unwrap()
            .settings
            .tags
            .get(TEMPLATE_TAG),
        Some(&stacksetd::template::sha256_hex(v1.as_bytes())),
        "the console's version never becomes the approval"
    );
    // Pinned, it is applied and recorded.
    let mut pinned = deployment.clone();
    pinned.spec.template.sha256 = Some(stacksetd::template::sha256_hex(widened.as_bytes()));
    converge_ok(&pinned, &ctx, state).await;
    assert_eq!(
        sim.stack_set(STACK_SET)
            .unwrap()
            .settings
            .tags
            .get(TEMPLATE_TAG),
        Some(&stacksetd::template::sha256_hex(widened.as_bytes()))
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Revocation needs nothing from the vendor.

#[tokio::test(start_paused = true)]
async fn revocation_works_with_the_template_gone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vendor.json");
    std::fs::write(&file, std::fs::read_to_string(TEMPLATE_FILE).unwrap()).unwrap();
    let url = url::Url::from_file_path(&file).unwrap().to_string();
    let sim = Sim::realistic(SimConfig::default());
    let mut present = Spec::whole_org().deployment();
    present.spec.template.url = Some(url.clone());
    converge_ok(&present, &sim_context(&sim), &mut Default::default()).await;
    std::fs::remove_file(&file).unwrap();
    let mut absent = Spec {
        ensure: "Absent",
        ..Spec::whole_org()
    }
    .deployment();
    absent.spec.template.url = Some(url);
    // A fresh controller: nothing cached, the URL answers "not found".
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let outcome = controller::converge(&absent, &ctx, state, |_| {})
        .await
        .expect("revoked without the template");
    assert!(outcome.is_converged());
    assert!(
        sim.stack_set(STACK_SET)
            .is_none_or(|s| s.status != stacksetd::cloud::StackSetStatus::Active)
    );
    assert_eq!(
        outcome
            .report
            .template
            .as_ref()
            .map(|t| t.decision.as_ref()),
        Some("revoking")
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Orphans and partial listings.

#[tokio::test(start_paused = true)]
async fn a_renamed_stack_sets_old_one_is_reported_as_orphaned_and_left_in_place() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let old = Spec::whole_org().deployment();
    converge_ok(&old, &ctx, state).await;
    // The vendor's new policy comes as a new stack set: the operator changes stackSetName.
    let mut renamed = old.clone();
    renamed.spec.stack_set_name = "AimablyDataAndScheduling".into();
    converge_ok(&renamed, &ctx, state).await;
    let orphans = stacksetd::controller::ownership::orphans(&ctx, &[&renamed])
        .await
        .unwrap();
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert_eq!(orphans[0].stack_set, STACK_SET);
    assert_eq!(orphans[0].deployment, "aimably");
    assert!(
        orphans[0]
            .advice
            .contains("remove its stacksetd.dev/deployment tag"),
        "{}",
        orphans[0].advice
    );
    assert!(
        sim.stack_set(STACK_SET)
            .is_some_and(|s| s.status == stacksetd::cloud::StackSetStatus::Active)
    );
    assert!(!current_pairs(&sim).is_empty());
    // Its document removed altogether: the same, with how to revoke it.
    let orphans = stacksetd::controller::ownership::orphans(&ctx, &[])
        .await
        .unwrap();
    assert_eq!(orphans.len(), 2);
    assert!(orphans.iter().all(|o| o.advice.contains("ensure: Absent")));
}

/// ListRoots answering nothing (a transient partial answer): an error of the scan, never "no targets".
#[tokio::test(start_paused = true)]
async fn an_empty_root_listing_deletes_nothing() {
    let sim = Sim::realistic(SimConfig::default());
    converge_ok(
        &Spec::whole_org().deployment(),
        &sim_context(&sim),
        &mut Default::default(),
    )
    .await;
    let before = current_pairs(&sim);
    let lagging = Lagging::new(&sim);
    lagging.hide_roots(true);
    let ctx = Context::new(
        lagging.clone(),
        Config {
            deletion_delay: Duration::ZERO,
            ..config()
        },
    );
    let state = &mut DeploymentState::default();
    let err = controller::reconcile(&Spec::whole_org().deployment(), &ctx, state)
        .await
        .unwrap_err();
    assert_eq!(
        err.metric_label(),
        "organization_listing_incomplete",
        "{err}"
    );
    assert_eq!(current_pairs(&sim), before);
    assert_eq!(calls(&sim, "DeleteStackInstances"), 0);
    // The answer comes back whole: a normal pass, still nothing deleted.
    lagging.hide_roots(false);
    converge_ok(&Spec::whole_org().deployment(), &ctx, state).await;
    assert_eq!(calls(&sim, "DeleteStackInstances"), 0);
}
