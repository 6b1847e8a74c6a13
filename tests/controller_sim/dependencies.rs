//! `autoDeployment.dependsOn` (AWS's AutoDeployment.DependsOn): a deployment named in it is resolved to its stack
//! set's ARN (one DescribeStackSet, then remembered, so the converged pass keeps its budget), nothing is sent
//! while a dependency does not exist yet, and the API's refusal of a cycle made behind stacksetd's back is an
//! error that names it.

use std::path::Path;

use stacksetd::cloud::Cloud;
use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::controller::{self, State};
use stacksetd::desired::{self, Deployment};

use super::helpers::*;

const NETWORK: &str = "AimablyNetworkBaseline";

/// Two documents: `network` (its own stack set) and `aimably`, whose automatic deployments wait for network's.
fn two_deployments() -> (Deployment, Deployment) {
    let template = concat!(
        "file://",
        env!("CARGO_MANIFEST_DIR"),
        "/config/templates/aimably-data-only.json"
    );
    let doc = |name: &str, stack_set: &str, depends_on: &str| {
        format!(
            "apiVersion: stacksetd.dev/v1alpha1\nkind: StackSetDeployment\nmetadata: {{name: {name}}}\nspec:\n  \
             stackSetName: {stack_set}\n  managementAccountId: \"123456789012\"\n  template: {{url: \"{template}\"}}\n  \
             parameters: {{ManagementAccountId: \"123456789012\"}}\n  capabilities: [CAPABILITY_NAMED_IAM]\n  \
             deploymentTargets: {{organizationalUnitIds: [ROOT]}}\n  regions: [{REGION}]\n  \
             autoDeployment: {{enabled: true, dependsOn: {depends_on}}}\n  operationPreferences: {TOLERANT}\n"
        )
    };
    let text = [
        doc("network", NETWORK, "[]"),
        doc("aimably", STACK_SET, "[network]"),
    ]
    .join("---\n");
    let mut deployments = desired::parse_str(&text, Path::new("t.yaml")).unwrap();
    let app = deployments.remove(1);
    (deployments.remove(0), app)
}

#[tokio::test(start_paused = true)]
async fn a_dependency_by_name_becomes_its_stack_sets_arn_and_waits_for_it_to_exist() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let (network, app) = two_deployments();

    // The dependency's stack set does not exist yet: nothing is created, the error names it.
    let before = sim.calls().snapshot();
    let err = controller::reconcile(&app, &ctx, state)
        .await
        .expect_err("waits");
    assert_eq!(err.metric_label(), "dependency_missing", "{err}");
    assert!(err.to_string().contains(NETWORK), "{err}");
    assert!(mutating_calls(&delta(&before, &sim.calls().snapshot())).is_empty());

    converge_ok(&network, &ctx, state).await;
    converge_ok(&app, &ctx, state).await;
    let network_arn = sim
        .stack_set(NETWORK)
        .expect("network")
        .arn
        .expect("an ARN");
    let applied = sim.stack_set(STACK_SET).expect("app");
    assert_eq!(
        applied
            .settings
            .auto_deployment
            .as_ref()
            .map(|a| a.depends_on.clone()),
        Some(vec![network_arn.clone()]),
        "sent as the ARN"
    );

    // Converged: the ARN is remembered, the pass keeps its budget.
    let before = sim.calls().snapshot();
    let outcome = controller::reconcile(&app, &ctx, state)
        .await
        .expect("pass");
    assert_eq!(outcome.state, State::Converged);
    let calls = delta(&before, &sim.calls().snapshot());
    assert_eq!(calls.get("DescribeStackSet"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("ListStackSetOperations"), Some(&1), "{calls:?}");
    assert_eq!(calls.len(), 2, "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn the_api_refuses_a_cycle_and_the_error_names_it() {
    let sim = Sim::realistic(SimConfig::default());
    let ctx = sim_context(&sim);
    let state = &mut DeploymentState::default();
    let (network, app) = two_deployments();
    converge_ok(&network, &ctx, state).await;
    converge_ok(&app, &ctx, state).await;
    let app_arn = sim.stack_set(STACK_SET).unwrap().arn.expect("an ARN");
    // network made to depend on aimably by ARN (a file that names the other by ARN cannot be checked for cycles
    // offline when that stack set is not in the file): the API's refusal stops the pass.
    let mut network_depending = network.clone();
    network_depending.spec.auto_deployment.depends_on = vec![app_arn];
    let err = controller::reconcile(&network_depending, &ctx, state)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("Circular dependency"), "{err}");
    assert_eq!(err.metric_label(), "validation", "{err}");
}
