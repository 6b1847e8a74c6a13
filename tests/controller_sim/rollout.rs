//! Staged rollout (`spec.rollout`) on the simulated organization, on tokio's paused clock: the canary gets a new
//! version first (the calls say so), the rest only after every canary instance is CURRENT, the access check
//! passed and the bake ended; a failed canary halts it; a restart resumes from what AWS shows.

use std::time::Duration;

use stacksetd::cloud::InstanceStatus;
use stacksetd::cloud::OperationAction;
use stacksetd::cloud::sim::{Initiator, Sim, SimConfig};
use stacksetd::controller::rollout::{self, PROMOTE_TAG, Phase, ROLLOUT_TAG};
use stacksetd::controller::{self, Context, Outcome, State};
use stacksetd::desired::Deployment;

use super::helpers::*;

const BAKE: Duration = Duration::from_secs(30 * 60);

/// The two versions of the template: the vendor's, and the same with a new description (nothing widened).
struct Versions {
    _dir: tempfile::TempDir,
    v1: String,
    v2: String,
    v3: String,
}

fn versions() -> Versions {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/templates/aimably-data-only.json"
    ))
    .unwrap();
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        format!("file://{}", path.display())
    };
    let v1 = write("v1.json", &original);
    let v2 = write(
        "v2.json",
        &original.replacen(
            "Aimably: usage data only.",
            "Aimably: usage data only (v2).",
            1,
        ),
    );
    let v3 = write(
        "v3.json",
        &original.replacen(
            "Aimably: usage data only.",
            "Aimably: usage data only (v3).",
            1,
        ),
    );
    Versions {
        _dir: dir,
        v1,
        v2,
        v3,
    }
}

/// A member account the sim's organization keeps active: the canary.
fn canary(sim: &Sim) -> String {
    active_members(sim).into_iter().next().unwrap()
}

fn staged(sim: &Sim, url: &str, extra: &str) -> Deployment {
    let mut spec = Spec::whole_org();
    spec.extra = format!(
        "  rollout:\n    canary:\n      accounts: [\"{}\"]\n{extra}",
        canary(sim)
    );
    with_url(spec.deployment(), url)
}

fn with_url(mut deployment: Deployment, url: &str) -> Deployment {
    deployment.spec.template.url = Some(url.to_string());
    deployment
}

fn phase(outcome: &Outcome) -> Option<Phase> {
    match &outcome.state {
        State::RollingOut(status) => Some(status.phase),
        _ => None,
    }
}

fn is(phase_wanted: Phase) -> impl Fn(&Outcome) -> bool {
    move |o| phase(o) == Some(phase_wanted)
}

/// Passes until the rollout halts; the pass that sees the canary operation end with a failed instance fails
/// itself (it reports the instance's reason), as every pass does that waited for a failing operation.
async fn until_halted(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
) -> Outcome {
    for _ in 0..100 {
        match controller::reconcile(deployment, ctx, state).await {
            Ok(outcome) if phase(&outcome) == Some(Phase::Halted) => return outcome,
            Ok(outcome) => tokio::time::sleep(outcome.requeue_after).await,
            Err(e) => {
                assert!(e.to_string().contains("FAILED"), "{e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    panic!("the rollout never halted");
}

/// The UpdateStackSet operations stacksetd sent, oldest first.
fn updates(sim: &Sim) -> Vec<stacksetd::cloud::sim::SimOperation> {
    sim.operations(STACK_SET)
        .into_iter()
        .filter(|op| op.action == OperationAction::Update && op.initiator == Initiator::Api)
        .collect()
}

/// The active accounts' instances (a suspended account's instance is skipped by every operation).
fn statuses(sim: &Sim) -> Vec<(String, InstanceStatus)> {
    let active = active_members(sim);
    sim.instances(STACK_SET)
        .into_iter()
        .filter(|i| active.contains(&i.account))
        .map(|i| (i.account, i.status))
        .collect()
}

/// A simulated organization, a controller and the template versions.
struct World {
    sim: Sim,
    ctx: Context,
    state: DeploymentState,
    v: Versions,
}

/// [`on_v1`] in a new organization.
async fn converged_on_v1() -> World {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let mut state = DeploymentState::default();
    let v = versions();
    on_v1(&sim, &ctx, &mut state, &v).await;
    World { sim, ctx, state, v }
}

/// Converged on v1 with a bake of 0s (the first deployment is staged too: canary first).
async fn on_v1(sim: &Sim, ctx: &Context, state: &mut DeploymentState, v: &Versions) {
    let first = staged(sim, &v.v1, "    bake: 0s\n");
    let outcome = pass_until(&first, ctx, state, |o| o.is_converged()).await;
    assert!(outcome.is_converged(), "{:?}", outcome.state);
    let instances = sim.instances(STACK_SET);
    assert!(
        active_members(sim)
            .iter()
            .all(|a| instances.iter().any(|i| &i.account == a)),
        "every account has its instance"
    );
    // The first instances created were the canary's alone.
    let creates: Vec<_> = sim
        .operations(STACK_SET)
        .into_iter()
        .filter(|op| op.action == OperationAction::Create && op.initiator == Initiator::Api)
        .collect();
    let first_targets = creates[0].targets.as_ref().expect("targets");
    assert_eq!(first_targets.accounts, vec![canary(sim)], "{creates:?}");
    assert!(
        !sim.stack_set(STACK_SET)
            .unwrap()
            .settings
            .tags
            .contains_key(ROLLOUT_TAG),
        "the promotion removed the rollout tag"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_version_reaches_the_canary_first_and_the_rest_only_after_the_bake() {
    let World {
        sim,
        ctx,
        mut state,
        v,
    } = converged_on_v1().await;
    let state = &mut state;
    let before = updates(&sim).len();
    let v2 = staged(&sim, &v.v2, "    bake: 30m\n");
    let baking = pass_until(&v2, &ctx, state, is(Phase::Baking)).await;
    // The first update of v2 was the canary's: DeploymentTargets are exactly the canary account.
    let sent = &updates(&sim)[before..];
    assert_eq!(sent.len(), 1, "{sent:?}");
    let targets = sent[0].targets.as_ref().expect("a scoped update");
    assert_eq!(targets.accounts, vec![canary(&sim)]);
    assert!(
        sent[0].id.starts_with("stacksetd-canary-"),
        "{}",
        sent[0].id
    );
    // The canary runs v2; everyone else keeps running v1 (OUTDATED: not yet updated).
    for (account, status) in statuses(&sim) {
        let want = if account == canary(&sim) {
            InstanceStatus::Current
        } else {
            InstanceStatus::Outdated
        };
        assert_eq!(status, want, "{account}");
    }
    let status = match &baking.state {
        State::RollingOut(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert!(status.bake_ends_at.is_some());
    assert_eq!(status.canary_accounts, vec![canary(&sim)]);
    assert!(!baking.is_converged());
    // Through the bake nothing else is sent, however many passes look.
    let mut waited = Duration::ZERO;
    while waited < BAKE - Duration::from_secs(120) {
        let outcome = controller::reconcile(&v2, &ctx, state).await.unwrap();
        assert_eq!(phase(&outcome), Some(Phase::Baking), "{:?}", outcome.state);
        let step = outcome.requeue_after.min(Duration::from_secs(300));
        tokio::time::sleep(step).await;
        waited += step;
    }
    assert_eq!(
        updates(&sim).len(),
        before + 1,
        "nothing but the canary during the bake"
    );
    // Then the rest, and converged.
    let done = pass_until(&v2, &ctx, state, |o| o.is_converged()).await;
    assert!(done.is_converged());
    assert!(
        statuses(&sim)
            .iter()
            .all(|(_, s)| *s == InstanceStatus::Current)
    );
    let promotion = updates(&sim).last().unwrap().clone();
    assert!(
        promotion.targets.is_none(),
        "the promotion updates every instance"
    );
    let tags = sim.stack_set(STACK_SET).unwrap().settings.tags;
    assert!(!tags.contains_key(ROLLOUT_TAG) && !tags.contains_key(PROMOTE_TAG));
    assert_no_duplicate_submissions(&sim);
}

#[tokio::test(start_paused = true)]
async fn a_failed_canary_halts_and_nothing_is_retried_until_the_version_changes() {
    let World {
        sim,
        ctx,
        mut state,
        v,
    } = converged_on_v1().await;
    let state = &mut state;
    sim.fail_account(&canary(&sim), "the role AimablyMemberRole already exists");
    let v2 = staged(&sim, &v.v2, "    bake: 5m\n");
    let halted = until_halted(&v2, &ctx, state).await;
    let status = match &halted.state {
        State::RollingOut(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert!(status.message.contains("--retry"), "{}", status.message);
    assert!(!status.halted_at.is_empty());
    let sent = updates(&sim).len();
    // Hours later: still halted, nothing sent, the others still on v1.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(600)).await;
        let outcome = controller::reconcile(&v2, &ctx, state).await.unwrap();
        assert_eq!(phase(&outcome), Some(Phase::Halted), "{:?}", outcome.state);
    }
    assert_eq!(updates(&sim).len(), sent, "a halted version is not retried");
    assert!(
        statuses(&sim)
            .iter()
            .filter(|(a, _)| *a != canary(&sim))
            .all(|(_, s)| *s == InstanceStatus::Outdated)
    );
    // A newer version starts a new rollout (the canary first again).
    sim.heal_account(&canary(&sim));
    let v3 = staged(&sim, &v.v3, "    bake: 5m\n");
    pass_until(&v3, &ctx, state, is(Phase::Baking)).await;
    let canary_update = updates(&sim)[sent].clone();
    assert_eq!(
        canary_update.targets.as_ref().map(|t| t.accounts.clone()),
        Some(vec![canary(&sim)])
    );
    let done = pass_until(&v3, &ctx, state, |o| o.is_converged()).await;
    assert!(done.is_converged());
}

#[tokio::test(start_paused = true)]
async fn a_failed_access_check_in_the_canary_halts_the_rollout() {
    let World {
        sim,
        ctx,
        mut state,
        v,
    } = converged_on_v1().await;
    let state = &mut state;
    sim.deny_access(
        &canary(&sim),
        "AccessDenied: the trust policy names another account",
    );
    let mut v2 = staged(&sim, &v.v2, "    bake: 5m\n");
    v2.spec.access_check = Some(stacksetd::desired::AccessCheck {
        role_name: "AimablyMemberRole".into(),
    });
    let halted = until_halted(&v2, &ctx, state).await;
    let State::RollingOut(status) = &halted.state else {
        unreachable!()
    };
    assert!(
        status.message.contains("access check"),
        "{}",
        status.message
    );
    assert_eq!(status.halted_at, vec![canary(&sim)]);
    // Once the access works, the rollout goes on (bake, then the rest).
    sim.allow_access(&canary(&sim));
    let done = pass_until(&v2, &ctx, state, |o| o.is_converged()).await;
    assert!(done.is_converged());
}

/// A restart (a new context, a fresh state) in the bake resumes from AWS: the same bake end (the canary
/// operation's EndTimestamp), no second canary.
#[tokio::test(start_paused = true)]
async fn a_restart_mid_bake_resumes_from_what_aws_shows() {
    let World {
        sim,
        ctx,
        mut state,
        v,
    } = converged_on_v1().await;
    let state = &mut state;
    let v2 = staged(&sim, &v.v2, "    bake: 30m\n");
    let first = pass_until(&v2, &ctx, state, is(Phase::Baking)).await;
    let ends = |o: &Outcome| match &o.state {
        State::RollingOut(s) => s.bake_ends_at.clone(),
        _ => None,
    };
    tokio::time::sleep(Duration::from_secs(600)).await;
    let sent = updates(&sim).len();
    let restarted = sim_context(&sim);
    let fresh = &mut DeploymentState::default();
    let resumed = pass_until(&v2, &restarted, fresh, is(Phase::Baking)).await;
    assert_eq!(ends(&resumed), ends(&first));
    assert_eq!(
        updates(&sim).len(),
        sent,
        "no second canary after a restart"
    );
    let done = pass_until(&v2, &restarted, fresh, |o| o.is_converged()).await;
    assert!(done.is_converged());
}

/// `promote: Manual`: after the bake the rest waits for `stacksetd promote`; a halted version is only retried
/// with `--retry`.
#[tokio::test(start_paused = true)]
async fn manual_promotion_waits_for_the_operator() {
    let World {
        sim,
        ctx,
        mut state,
        v,
    } = converged_on_v1().await;
    let state = &mut state;
    let v2 = staged(&sim, &v.v2, "    bake: 5m\n    promote: Manual\n");
    pass_until(&v2, &ctx, state, is(Phase::AwaitingPromotion)).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let still = controller::reconcile(&v2, &ctx, state).await.unwrap();
    assert_eq!(phase(&still), Some(Phase::AwaitingPromotion));
    let retry = rollout::promote(&v2, &ctx, true).await;
    assert!(retry.is_err(), "nothing to retry: {retry:?}");
    let id = rollout::promote(&v2, &ctx, false).await.expect("promoted");
    assert!(id.starts_with("stacksetd-promote-"), "{id}");
    let done = pass_until(&v2, &ctx, state, |o| o.is_converged()).await;
    assert!(done.is_converged());
    assert!(
        statuses(&sim)
            .iter()
            .all(|(_, s)| *s == InstanceStatus::Current)
    );
}

/// An account that joins mid-rollout gets the stack set's current template from auto-deployment (documented);
/// the rollout still waits for the bake, and converges with the new account.
#[tokio::test(start_paused = true)]
async fn an_account_joining_mid_rollout_is_deployed_and_the_rollout_goes_on() {
    let World {
        sim,
        ctx,
        mut state,
        v,
    } = converged_on_v1().await;
    let state = &mut state;
    let v2 = staged(&sim, &v.v2, "    bake: 30m\n");
    pass_until(&v2, &ctx, state, is(Phase::Baking)).await;
    let joined = sim.add_account(&sim.root_id(), "joined-mid-rollout");
    ctx.invalidate_organization();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let outcome = controller::reconcile(&v2, &ctx, state).await.unwrap();
    assert_eq!(phase(&outcome), Some(Phase::Baking), "{:?}", outcome.state);
    let done = pass_until(&v2, &ctx, state, |o| o.is_converged()).await;
    assert!(done.is_converged(), "{:?}", done.state);
    assert!(sim.instances(STACK_SET).iter().any(|i| i.account == joined));
}

/// The sha256 of a version's bytes (what `spec.template.sha256` pins).
fn digest(url: &str) -> String {
    let path = url.trim_start_matches("file://");
    stacksetd::input::sha256_hex(&std::fs::read(path).unwrap())
}

/// `promote: Manual` is also satisfied by pinning the version's digest; a halted version stays halted when its
/// digest is pinned (a pin is no retry), and `promote --retry` applies it to the canary again.
#[tokio::test(start_paused = true)]
async fn pinning_the_digest_promotes_but_does_not_retry_a_halted_version() {
    let World {
        sim,
        ctx,
        mut state,
        v,
    } = converged_on_v1().await;
    let state = &mut state;
    let manual = staged(&sim, &v.v2, "    bake: 5m\n    promote: Manual\n");
    pass_until(&manual, &ctx, state, is(Phase::AwaitingPromotion)).await;
    let mut pinned = manual.clone();
    pinned.spec.template.sha256 = Some(digest(&v.v2));
    let done = pass_until(&pinned, &ctx, state, |o| o.is_converged()).await;
    assert!(done.is_converged(), "{:?}", done.state);

    sim.fail_account(&canary(&sim), "the role AimablyMemberRole already exists");
    let v3 = staged(&sim, &v.v3, "    bake: 5m\n");
    until_halted(&v3, &ctx, state).await;
    let canaries = |sim: &Sim| {
        updates(sim)
            .iter()
            .filter(|op| op.id.starts_with("stacksetd-canary-"))
            .count()
    };
    let before = canaries(&sim);
    let mut pinned3 = v3.clone();
    pinned3.spec.template.sha256 = Some(digest(&v.v3));
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(600)).await;
        let outcome = controller::reconcile(&pinned3, &ctx, state).await.unwrap();
        assert_eq!(phase(&outcome), Some(Phase::Halted), "{:?}", outcome.state);
    }
    assert_eq!(canaries(&sim), before, "a pin is no retry");
    // Healed and retried by the operator: the canary again, then the rest.
    sim.heal_account(&canary(&sim));
    let id = rollout::promote(&pinned3, &ctx, true)
        .await
        .expect("retried");
    assert!(id.starts_with("stacksetd-canary-"), "{id}");
    let done = pass_until(&pinned3, &ctx, state, |o| o.is_converged()).await;
    assert!(done.is_converged(), "{:?}", done.state);
    assert_eq!(canaries(&sim), before + 1);
}

/// The first deployment bakes from the end of its canary's creation (not from each pass: the bake's end stays
/// put), then reaches every account.
#[tokio::test(start_paused = true)]
async fn the_first_deployment_bakes_from_its_canarys_creation() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let v = versions();
    let first = staged(&sim, &v.v1, "    bake: 30m\n");
    let ends = |o: &Outcome| match &o.state {
        State::RollingOut(s) => (s.bake_ends_at.clone(), s.rest),
        _ => (None, 0),
    };
    let baking = pass_until(&first, &ctx, state, is(Phase::Baking)).await;
    let (end, rest) = ends(&baking);
    assert!(end.is_some());
    assert_eq!(
        rest,
        active_members(&sim).len() - 1,
        "every other account waits"
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    let later = controller::reconcile(&first, &ctx, state).await.unwrap();
    assert_eq!(ends(&later).0, end, "the bake's end does not move");
    let instances = sim.instances(STACK_SET);
    assert!(
        instances.iter().all(|i| i.account == canary(&sim)),
        "only the canary so far"
    );
    let done = pass_until(&first, &ctx, state, |o| o.is_converged()).await;
    assert!(done.is_converged());
}
