//! Observability against the sim, on the paused clock: resource drift detected on its cadence and remediated,
//! spec drift counted and reverted, coverage gaps repaired, member access failures counted and listed. Every
//! pass is recorded into a real metrics registry, and the assertions read the exposition text, as Prometheus
//! would.

use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::cloud::{
    AutoDeployment, Cloud, OperationPreferences, StackSetSettings, UpdateStackSet,
};
use stacksetd::controller::{self, Context, Outcome, State};
use stacksetd::daemon::access;
use stacksetd::desired::Deployment;
use stacksetd::metrics::{self, FleetMetrics};
use tokio::time::Instant;

use super::helpers::*;

/// A controller and a metrics registry recording every pass, as the daemon's scheduler does.
struct Observed {
    ctx: Context,
    state: tokio::sync::Mutex<DeploymentState>,
    registry: Registry,
    fleet: FleetMetrics,
}

impl Observed {
    fn new(sim: &Sim) -> Observed {
        let registry = Registry::new();
        let fleet = FleetMetrics::register(&registry).unwrap();
        Observed {
            ctx: sim_context(sim),
            state: Default::default(),
            registry,
            fleet,
        }
    }

    async fn pass(&self, deployment: &Deployment) -> Outcome {
        let mut state = self.state.lock().await;
        let result = controller::reconcile(deployment, &self.ctx, &mut state).await;
        let ended = state.take_ended();
        self.fleet.record_pass(deployment.name(), &result, &ended);
        result.unwrap_or_else(|e| panic!("pass failed: {e}"))
    }

    /// Passes (sleeping each requeue) for `duration` of simulated time; returns the states seen.
    async fn run_for(&self, deployment: &Deployment, duration: Duration) -> Vec<State> {
        let end = Instant::now() + duration;
        let mut states = Vec::new();
        while Instant::now() < end {
            let outcome = self.pass(deployment).await;
            states.push(outcome.state.clone());
            tokio::time::sleep(outcome.requeue_after.min(end - Instant::now())).await;
        }
        states
    }

    /// Passes until `metric` has `value`; returns the simulated time it took.
    async fn until_metric(&self, deployment: &Deployment, metric: &str, value: f64) -> Duration {
        let start = Instant::now();
        for _ in 0..500 {
            let outcome = self.pass(deployment).await;
            if self.metric(metric) == Some(value) {
                return start.elapsed();
            }
            tokio::time::sleep(outcome.requeue_after).await;
        }
        panic!(
            "{metric} never became {value}; exposition:\n{}",
            metrics::encode(&self.registry).unwrap()
        );
    }

    /// The value of one series, by its full name with labels in the exposition's (sorted) order.
    fn metric(&self, series: &str) -> Option<f64> {
        let text = metrics::encode(&self.registry).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }
}

fn with_extra(extra: &str) -> Deployment {
    Spec {
        regions: vec![REGION, OTHER_REGION],
        extra: extra.to_string(),
        ..Spec::whole_org()
    }
    .deployment()
}

const DRIFTED: &str = "stacksetd_drifted_stack_instances{deployment=\"aimably\"}";
const STATUS_DRIFTED: &str =
    "stacksetd_stackset_drift_status{deployment=\"aimably\",status=\"DRIFTED\"}";
const STATUS_IN_SYNC: &str =
    "stacksetd_stackset_drift_status{deployment=\"aimably\",status=\"IN_SYNC\"}";

#[tokio::test(start_paused = true)]
async fn injected_drift_shows_within_one_interval_and_remediation_clears_it() {
    let sim = Sim::realistic(SimConfig::default());
    let deployment = with_extra("  driftDetection: {interval: 1h, remediate: true}\n");
    let o = Observed::new(&sim);
    converge_ok(&deployment, &o.ctx, &mut *o.state.lock().await).await;
    // The first converged pass runs the first check at once: everything in sync.
    o.until_metric(&deployment, STATUS_IN_SYNC, 1.0).await;
    assert_eq!(o.metric(DRIFTED), Some(0.0));
    let checks = || {
        api_operations(&sim)
            .iter()
            .filter(|op| op.action == stacksetd::cloud::OperationAction::DetectDrift)
            .count()
    };
    assert_eq!(checks(), 1);

    // Someone edits the role in one member account.
    let victim = sim.instances(STACK_SET)[3].clone();
    assert!(sim.drift_resources(STACK_SET, &victim.account, &victim.region));
    let took = o.until_metric(&deployment, STATUS_DRIFTED, 1.0).await;
    assert!(
        took <= Duration::from_secs(3600 + 120),
        "drift must show within one interval (plus the check's own run): took {took:?}"
    );
    assert_eq!(o.metric(DRIFTED), Some(1.0));

    // Remediation re-applies exactly that instance, then a new check confirms it.
    o.until_metric(&deployment, STATUS_IN_SYNC, 1.0).await;
    assert_eq!(o.metric(DRIFTED), Some(0.0));
    let remediations: Vec<_> = api_operations(&sim)
        .into_iter()
        .filter(|op| op.action == stacksetd::cloud::OperationAction::Update)
        .collect();
    assert_eq!(remediations.len(), 1, "{remediations:#?}");
    let targets = remediations[0].targets.clone().expect("targets");
    assert_eq!(targets.accounts, std::slice::from_ref(&victim.account));
    assert_eq!(
        remediations[0].regions,
        std::slice::from_ref(&victim.region)
    );
    assert_eq!(
        checks(),
        3,
        "first check, the one that found the drift, the confirmation"
    );
    assert!(
        o.metric("stacksetd_stackset_operations_total{action=\"DETECT_DRIFT\",deployment=\"aimably\",status=\"SUCCEEDED\"}")
            >= Some(3.0)
    );

    // Quiet afterwards: one check per interval, no more operations.
    let before = api_operations(&sim).len();
    o.run_for(&deployment, Duration::from_secs(2 * 3600 + 60))
        .await;
    let after: Vec<_> = api_operations(&sim).into_iter().skip(before).collect();
    assert!(
        after
            .iter()
            .all(|op| op.action == stacksetd::cloud::OperationAction::DetectDrift),
        "{after:#?}"
    );
    assert_eq!(after.len(), 2, "one check an hour");
    assert_no_duplicate_submissions(&sim);
}

#[tokio::test(start_paused = true)]
async fn drift_is_reported_not_remediated_without_remediate() {
    let sim = Sim::realistic(SimConfig::default());
    let deployment = with_extra("  driftDetection: {interval: 1h}\n");
    let o = Observed::new(&sim);
    converge_ok(&deployment, &o.ctx, &mut *o.state.lock().await).await;
    o.until_metric(&deployment, STATUS_IN_SYNC, 1.0).await;
    let victim = sim.instances(STACK_SET)[0].clone();
    sim.drift_resources(STACK_SET, &victim.account, &victim.region);
    o.until_metric(&deployment, STATUS_DRIFTED, 1.0).await;
    let outcome = o.pass(&deployment).await;
    let drift = outcome.report.drift.expect("drift report");
    assert_eq!(
        drift.drifted,
        [format!("{}/{}", victim.account, victim.region)]
    );
    o.run_for(&deployment, Duration::from_secs(2 * 3600)).await;
    assert_eq!(
        o.metric(DRIFTED),
        Some(1.0),
        "still drifted: nobody fixed it"
    );
    assert!(
        api_operations(&sim)
            .iter()
            .all(|op| op.action != stacksetd::cloud::OperationAction::Update),
        "no remediation without remediate: true"
    );
}

#[tokio::test(start_paused = true)]
async fn a_setting_changed_behind_stacksetds_back_is_counted_once_and_reverted() {
    let sim = Sim::realistic(SimConfig::default());
    let deployment = with_extra("");
    let o = Observed::new(&sim);
    converge_ok(&deployment, &o.ctx, &mut *o.state.lock().await).await;
    o.pass(&deployment).await;
    let applied = sim.stack_set(STACK_SET).unwrap();

    // A console user turns auto-deployment off and rewrites the description.
    let cloud: Arc<dyn Cloud> = Arc::new(sim.clone());
    cloud
        .update_stack_set(&UpdateStackSet {
            name: STACK_SET.to_string(),
            call_as: deployment.spec.call_as,
            settings: StackSetSettings {
                description: Some("temporary: disabled by ops".to_string()),
                auto_deployment: Some(AutoDeployment {
                    enabled: false,
                    retain_stacks_on_account_removal: false,
                    depends_on: Vec::new(),
                }),
                managed_execution: None,
                ..applied.settings.clone()
            },
            keep_template: true,
            template_url: None,
            preferences: OperationPreferences::default(),
            only: None,
            operation_id: "console-edit-1".to_string(),
        })
        .await
        .expect("console update");

    let counted = |field: &str| {
        o.metric(&format!(
            "stacksetd_spec_drift_total{{deployment=\"aimably\",field=\"{field}\"}}"
        ))
    };
    let outcome = o.pass(&deployment).await;
    let mut fields: Vec<&str> = outcome
        .report
        .spec_drift
        .iter()
        .map(|d| d.field.as_ref())
        .collect();
    fields.sort();
    assert_eq!(fields, ["autoDeployment", "description"]);
    assert_eq!(counted("description"), Some(1.0));
    assert_eq!(counted("autoDeployment"), Some(1.0));
    assert_eq!(
        o.metric("stacksetd_spec_drift{deployment=\"aimably\",field=\"description\"}"),
        Some(1.0)
    );

    // Reverted by the ordinary plan, counted once however many passes saw it.
    converge_ok(&deployment, &o.ctx, &mut *o.state.lock().await).await;
    o.pass(&deployment).await;
    let now = sim.stack_set(STACK_SET).unwrap();
    assert_eq!(now.settings.description, applied.settings.description);
    assert_eq!(
        now.settings.auto_deployment,
        applied.settings.auto_deployment
    );
    assert_eq!(counted("description"), Some(1.0));
    assert_eq!(counted("autoDeployment"), Some(1.0));
    assert_eq!(
        o.metric("stacksetd_spec_drift{deployment=\"aimably\",field=\"description\"}"),
        Some(0.0)
    );
    assert_eq!(counted("template"), None, "only what changed is counted");
}

#[tokio::test(start_paused = true)]
async fn suspended_deployments_count_spec_drift_but_do_not_revert_it() {
    let sim = Sim::realistic(SimConfig::default());
    let o = Observed::new(&sim);
    converge_ok(&with_extra(""), &o.ctx, &mut *o.state.lock().await).await;
    o.pass(&with_extra("")).await;
    let suspended = with_extra("  suspend: true\n");
    let applied = sim.stack_set(STACK_SET).unwrap();
    let cloud: Arc<dyn Cloud> = Arc::new(sim.clone());
    cloud
        .update_stack_set(&UpdateStackSet {
            name: STACK_SET.to_string(),
            call_as: suspended.spec.call_as,
            settings: StackSetSettings {
                description: Some("changed".to_string()),
                parameters: Default::default(),
                auto_deployment: None,
                managed_execution: None,
                ..applied.settings.clone()
            },
            keep_template: true,
            template_url: None,
            preferences: OperationPreferences::default(),
            only: None,
            operation_id: "console-edit-2".to_string(),
        })
        .await
        .unwrap();
    o.run_for(&suspended, Duration::from_secs(600)).await;
    assert_eq!(
        o.metric("stacksetd_spec_drift{deployment=\"aimably\",field=\"description\"}"),
        Some(1.0)
    );
    assert_eq!(
        sim.stack_set(STACK_SET)
            .unwrap()
            .settings
            .description
            .as_deref(),
        Some("changed")
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_account_without_auto_deployment_is_missing_then_repaired() {
    let sim = Sim::realistic(SimConfig::default());
    let deployment = Spec {
        auto_deployment: false,
        ..Spec::whole_org()
    }
    .deployment();
    let o = Observed::new(&sim);
    converge_ok(&deployment, &o.ctx, &mut *o.state.lock().await).await;
    o.pass(&deployment).await;
    let missing = "stacksetd_accounts_missing_instance{deployment=\"aimably\"}";
    assert_eq!(o.metric(missing), Some(0.0));
    let targeted = o
        .metric("stacksetd_accounts_targeted{deployment=\"aimably\"}")
        .unwrap();

    let ou = sim.ou_named("Sandbox").unwrap();
    let newcomer = sim.add_account(&ou, "newcomer");
    // Seen at the next organization scan (every 10 minutes here), repaired at once: nothing else would fill it.
    let took = o.until_metric(&deployment, missing, 1.0).await;
    assert!(took <= Duration::from_secs(600 + 300), "{took:?}");
    assert_eq!(
        o.metric("stacksetd_accounts_targeted{deployment=\"aimably\"}"),
        Some(targeted + 1.0)
    );
    o.until_metric(&deployment, missing, 0.0).await;
    let instances = sim.instances(STACK_SET);
    assert!(
        instances
            .iter()
            .any(|i| i.account == newcomer && i.status == stacksetd::cloud::InstanceStatus::Current)
    );
    let creates: Vec<_> = api_operations(&sim)
        .into_iter()
        .filter(|op| op.action == stacksetd::cloud::OperationAction::Create)
        .collect();
    assert_eq!(creates.len(), 2, "the first deployment and one repair");
    assert_no_duplicate_submissions(&sim);
}

/// An account a DIFFERENCE list stops excluding is one the desired state newly targets: auto-deployment never acts
/// on it (it neither joined nor moved), so the plan creates it at once, with `repairCoverage` on or off, instead of
/// leaving it to the coverage repair's grace period (or to nothing at all with the repair off).
#[tokio::test(start_paused = true)]
async fn an_unexcluded_account_is_created_by_the_plan_at_once_with_repair_on_or_off() {
    for repair in [true, false] {
        let sim = Sim::realistic(SimConfig::default());
        let excluded = active_members(&sim).into_iter().next().unwrap();
        // deploymentTargets is already in the base document: build the exclusion on the parsed deployment.
        let mut before = Spec::whole_org().deployment();
        before.spec.deployment_targets.accounts = vec![excluded.clone()];
        before.spec.deployment_targets.account_filter_type =
            stacksetd::cloud::AccountFilterType::Difference;
        before.spec.repair_coverage = repair;
        let o = Observed::new(&sim);
        converge_ok(&before, &o.ctx, &mut *o.state.lock().await).await;
        let mut after = before.clone();
        after.spec.deployment_targets.accounts = vec!["000000000000".to_string()];
        let missing = "stacksetd_coverage_instances{deployment=\"aimably\",state=\"missing\"}";
        // Well within the grace period (15 minutes) auto-deployment would be given.
        o.run_for(&after, Duration::from_secs(2 * 60)).await;
        assert_eq!(o.metric(missing), Some(0.0), "repair={repair}");
        assert!(
            sim.instances("AimablyDataOnly")
                .iter()
                .any(|i| i.account == excluded
                    && i.status == stacksetd::cloud::InstanceStatus::Current),
            "repair={repair}: the re-included account has its instance"
        );
        assert_no_duplicate_submissions(&sim);
    }
}

#[tokio::test(start_paused = true)]
async fn member_access_failures_are_counted_and_listed_with_reasons() {
    let sim = Sim::realistic(SimConfig::default());
    let deployment = with_extra("  accessCheck: {roleName: AimablyMemberRole}\n");
    let o = Observed::new(&sim);
    converge_ok(&deployment, &o.ctx, &mut *o.state.lock().await).await;
    let active = active_members(&sim);
    let report = access::check_deployment(&deployment, &o.ctx, 4)
        .await
        .unwrap()
        .expect("accessCheck is set");
    assert_eq!((report.checked, report.failed), (active.len(), 0));

    let mut broken: Vec<String> = active.iter().take(2).cloned().collect();
    sim.deny_access(&broken[0], "an SCP denies sts:AssumeRole");
    // An account whose instance is gone has no role either.
    let newcomer = sim.add_account(&sim.ou_named("Sandbox").unwrap(), "no-role-yet");
    o.ctx.invalidate_organization();
    broken.truncate(1);
    broken.push(newcomer.clone());
    broken.sort();

    let calls_before = sim.calls().by_operation();
    let report = access::check_deployment(&deployment, &o.ctx, 4)
        .await
        .unwrap()
        .unwrap();
    o.fleet
        .record_access(deployment.name(), report.checked, report.failed);
    assert_eq!(report.checked, active.len() + 1);
    assert_eq!(report.failed, 2);
    let listed: Vec<&str> = report.failures.iter().map(|f| f.account.as_str()).collect();
    assert_eq!(
        listed,
        broken.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(report.failures.iter().all(|f| f.kind == "access_denied"));
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.reason.contains("an SCP denies sts:AssumeRole"))
    );
    assert!(report.failures[0].reason.contains("role/AimablyMemberRole"));
    assert_eq!(
        o.metric("stacksetd_member_access_failures{deployment=\"aimably\"}"),
        Some(2.0)
    );
    // One AssumeRole per account, nothing per account in CloudFormation.
    let calls = delta_by_operation(&calls_before, &sim.calls().by_operation());
    assert_eq!(calls.get("AssumeRole"), Some(&(active.len() as u64 + 1)));
    assert!(!calls.contains_key("ListStackInstances"));
}

fn delta_by_operation(
    before: &std::collections::BTreeMap<&'static str, u64>,
    after: &std::collections::BTreeMap<&'static str, u64>,
) -> std::collections::BTreeMap<&'static str, u64> {
    after
        .iter()
        .filter_map(|(op, n)| {
            let d = n - before.get(op).copied().unwrap_or(0);
            (d > 0).then_some((*op, d))
        })
        .collect()
}
