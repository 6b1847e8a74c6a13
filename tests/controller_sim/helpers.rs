//! Shared scaffolding of the controller tests: desired state built from YAML (as an operator writes it), a
//! controller context with short-but-realistic polls, call-count deltas, and `Lagging`, the sim seen through
//! AWS's eventually consistent listings (the sim's own listings are strongly consistent).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use stacksetd::Error;
/// The tests read `Sim::calls()` through the trait.
pub use stacksetd::cloud::Cloud;
use stacksetd::cloud::sim::{Initiator, Sim, SimOperation};
use stacksetd::cloud::{
    Account, CallAs, CallCounter, CallKey, CreateStackSet, DeleteInstancesRequest, InstanceStatus,
    InstancesRequest, ObservedStackSet, Operation, OperationResult, OrgNode, OrganizationInfo,
    StackInstance, UpdateStackSet,
};
pub use stacksetd::controller::DeploymentState;
use stacksetd::controller::{self, Config, Context, Outcome, State};
use stacksetd::desired::{self, Deployment};

pub const STACK_SET: &str = "AimablyDataOnly";
pub const REGION: &str = "us-west-2";
pub const OTHER_REGION: &str = "eu-west-1";

/// The API calls that change something; a converged pass makes none of them.
pub const MUTATING: &[&str] = &[
    "CreateStackSet",
    "UpdateStackSet",
    "CreateStackInstances",
    "UpdateStackInstances",
    "DeleteStackInstances",
    "DeleteStackSet",
    "CreateStack",
    "UpdateStack",
    "DeleteStack",
];

/// The vendor's advice from the seed: tolerate failures, deploy everywhere at once.
pub const TOLERANT: &str = "{failureTolerancePercentage: 100, maxConcurrentPercentage: 100, \
     regionConcurrencyType: PARALLEL, concurrencyMode: SOFT_FAILURE_TOLERANCE}";
/// AWS's strictest setting: one account at a time, the first failure stops the operation.
pub const STRICT: &str = "{failureToleranceCount: 0, maxConcurrentCount: 1, \
     concurrencyMode: STRICT_FAILURE_TOLERANCE}";

/// Upper bound on passes a helper runs before declaring the controller stuck.
const MAX_PASSES: usize = 500;
/// Simulated time within which `converge` must finish (the slowest test needs minutes).
pub const CONVERGE_DEADLINE: Duration = Duration::from_secs(3600);

/// The knobs the tests turn in the desired-state file.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `ROOT` or OU ids.
    pub ous: Vec<String>,
    pub regions: Vec<&'static str>,
    /// A YAML flow mapping of operationPreferences.
    pub preferences: &'static str,
    pub ensure: &'static str,
    pub description: &'static str,
    pub auto_deployment: bool,
    /// More spec lines, indented two spaces (e.g. "  driftDetection: {interval: 1h}\n").
    pub extra: String,
}

impl Spec {
    pub fn whole_org() -> Spec {
        Spec {
            ous: vec!["ROOT".to_string()],
            regions: vec![REGION],
            preferences: TOLERANT,
            ensure: "Present",
            description: "Aimably access to usage data in every member account",
            auto_deployment: true,
            extra: String::new(),
        }
    }

    /// Parsed and validated as the daemon would; managed execution off, so AWS refuses a second operation
    /// (OperationInProgress) instead of queueing it.
    pub fn deployment(&self) -> Deployment {
        let template = concat!(
            "file://",
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/aimably-data-only.json"
        );
        let yaml = format!(
            r#"apiVersion: stacksetd.dev/v1alpha1
kind: StackSetDeployment
metadata:
  name: aimably
spec:
  stackSetName: {STACK_SET}
  description: "{description}"
  managementAccountId: "123456789012"
  template:
    url: "{template}"
  parameters:
    ManagementAccountId: "123456789012"
  capabilities: [CAPABILITY_NAMED_IAM]
  deploymentTargets:
    organizationalUnitIds: [{ous}]
  regions: [{regions}]
  autoDeployment: {{enabled: {auto_deployment}, retainStacksOnAccountRemoval: false}}
  operationPreferences: {preferences}
  managedExecution: {{active: false}}
  ensure: {ensure}
{extra}"#,
            description = self.description,
            ous = self.ous.join(", "),
            regions = self.regions.join(", "),
            preferences = self.preferences,
            ensure = self.ensure,
            auto_deployment = self.auto_deployment,
            extra = self.extra,
        );
        let mut deployments = desired::parse_str(&yaml, Path::new("t.yaml"))
            .unwrap_or_else(|e| panic!("the test's desired state is invalid:\n{e}\n{yaml}"));
        assert_eq!(deployments.len(), 1, "one document, one deployment");
        deployments.remove(0)
    }
}

/// Polls of a few seconds (the sim's instances take 2 s each), error backoff from 1 s, the organization
/// re-listed every 10 minutes and a converged deployment looked at every 5.
pub fn config() -> Config {
    Config {
        resync_interval: Duration::from_secs(300),
        org_scan_interval: Duration::from_secs(600),
        poll_min: Duration::from_secs(1),
        poll_max: Duration::from_secs(10),
        error_backoff_base: Duration::from_secs(1),
        error_backoff_max: Duration::from_secs(20),
        track_progress: false,
        ..Config::default()
    }
}

/// A fresh controller (as after a daemon restart) on the sim.
pub fn context(cloud: Arc<dyn Cloud>) -> Context {
    Context::new(cloud, config())
}

pub fn sim_context(sim: &Sim) -> Context {
    context(Arc::new(sim.clone()))
}

/// `controller::converge`, also returning the state of every pass. A controller that never settles (say, one
/// that submits a step every pass) fails the test after `CONVERGE_DEADLINE` of simulated time instead of hanging.
pub async fn converge(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
) -> (Result<Outcome, Error>, Vec<State>) {
    let mut states = Vec::new();
    let run = controller::converge(deployment, ctx, state, |o| states.push(o.state.clone()));
    let result = tokio::time::timeout(CONVERGE_DEADLINE, run).await;
    match result {
        Ok(result) => (result, states),
        Err(_) => panic!(
            "not converged within {CONVERGE_DEADLINE:?} of simulated time; last states: {:#?}",
            &states[states.len().saturating_sub(5)..]
        ),
    }
}

/// Converges and insists on success.
pub async fn converge_ok(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
) -> Vec<State> {
    let (result, states) = converge(deployment, ctx, state).await;
    match result {
        Ok(outcome) => assert!(outcome.is_converged(), "{:?}", outcome.state),
        Err(e) => panic!("converge failed: {e}\nstates: {states:#?}"),
    }
    states
}

/// Runs passes, sleeping each requeue delay, until `stop` accepts an outcome; returns that outcome.
pub async fn pass_until(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    stop: impl Fn(&Outcome) -> bool,
) -> Outcome {
    for _ in 0..MAX_PASSES {
        let outcome = controller::reconcile(deployment, ctx, state)
            .await
            .unwrap_or_else(|e| panic!("pass failed: {e}"));
        if stop(&outcome) {
            return outcome;
        }
        tokio::time::sleep(outcome.requeue_after).await;
    }
    panic!("no pass reached the expected state within {MAX_PASSES} passes");
}

/// Whether a pass submitted an asynchronous stack set operation.
pub fn submitted_operation(outcome: &Outcome) -> bool {
    matches!(
        outcome.state,
        State::Acted {
            operation_id: Some(_),
            ..
        }
    )
}

/// Calls per API operation made between two snapshots of the call counter (every outcome counted).
pub fn delta(
    before: &BTreeMap<CallKey, u64>,
    after: &BTreeMap<CallKey, u64>,
) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for (key, n) in after {
        let d = n - before.get(key).copied().unwrap_or(0);
        if d > 0 {
            *out.entry(key.1).or_default() += d;
        }
    }
    out
}

pub fn mutating_calls(calls: &BTreeMap<&'static str, u64>) -> Vec<&'static str> {
    calls
        .keys()
        .copied()
        .filter(|op| MUTATING.contains(op))
        .collect()
}

/// How often `operation` answered with `outcome` (a metric label such as "ok" or "operation_in_progress").
pub fn calls_with(sim: &Sim, operation: &str, outcome: &str) -> u64 {
    sim.calls()
        .snapshot()
        .iter()
        .filter(|((_, op, out), _)| *op == operation && *out == outcome)
        .map(|(_, n)| *n)
        .sum()
}

/// Operations submitted through the API (not auto-deployment, not someone else's), oldest first.
pub fn api_operations(sim: &Sim) -> Vec<SimOperation> {
    sim.operations(STACK_SET)
        .into_iter()
        .filter(|op| op.initiator == Initiator::Api)
        .collect()
}

/// Fails when one change was applied twice, judged by what the requests ask for (the sim compares every
/// accepted change with the one before it, whatever the ids; a reused id is refused by the sim before it could
/// count), or when stacksetd named the management account in a request: AWS would skip it, so only what
/// stacksetd sent shows the mistake.
#[track_caller]
pub fn assert_no_duplicate_submissions(sim: &Sim) {
    let repeated = sim.repeated_changes();
    assert!(
        repeated.is_empty(),
        "a change was applied twice: {repeated:#?}"
    );
    assert_never_names_the_management_account(sim);
}

/// No operation stacksetd submitted names the management account among the accounts it deploys to (a
/// DIFFERENCE filter's accounts are the ones left out, so the management account may be there).
#[track_caller]
pub fn assert_never_names_the_management_account(sim: &Sim) {
    let management = sim.management_account_id();
    for op in api_operations(sim) {
        if let Some(targets) = &op.targets
            && targets.account_filter_type
                != stacksetd::desired::model::AccountFilterType::Difference
        {
            assert!(
                !targets.accounts.contains(&management),
                "{} {:?} names the management account: {targets:?}",
                op.id,
                op.action
            );
        }
    }
}

/// Active member accounts (the management account never gets an instance).
pub fn active_members(sim: &Sim) -> BTreeSet<String> {
    let management = sim.management_account_id();
    sim.accounts()
        .into_iter()
        .filter(|(a, _)| a.is_active() && a.id != management)
        .map(|(a, _)| a.id)
        .collect()
}

pub fn inactive_members(sim: &Sim) -> BTreeSet<String> {
    sim.accounts()
        .into_iter()
        .filter(|(a, _)| !a.is_active())
        .map(|(a, _)| a.id)
        .collect()
}

/// (account, Region) of every CURRENT instance.
pub fn current_pairs(sim: &Sim) -> BTreeSet<(String, String)> {
    sim.instances(STACK_SET)
        .into_iter()
        .filter(|i| i.status == InstanceStatus::Current)
        .map(|i| (i.account, i.region))
        .collect()
}

pub fn pairs(accounts: &BTreeSet<String>, regions: &[&str]) -> BTreeSet<(String, String)> {
    accounts
        .iter()
        .flat_map(|a| regions.iter().map(move |r| (a.clone(), r.to_string())))
        .collect()
}

/// What the listings show while they lag behind a change AWS already applied.
#[derive(Debug, Clone, Default)]
struct View {
    /// Operations ListStackSetOperations does not show yet.
    hidden_operations: BTreeSet<String>,
    /// DescribeStackSet and ListStackInstances answers from before the change.
    stale: Option<(Option<ObservedStackSet>, Vec<StackInstance>)>,
    /// ListRoots answers with no root.
    no_roots: bool,
}

/// The sim behind eventually consistent listings, as AWS documents ListStackSetOperations to be. Every call
/// still goes to the sim (and is counted there); only the answers of the three listings can lag.
pub struct Lagging {
    sim: Sim,
    view: Mutex<View>,
}

impl Lagging {
    pub fn new(sim: &Sim) -> Arc<Lagging> {
        Arc::new(Lagging {
            sim: sim.clone(),
            view: Mutex::default(),
        })
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().expect("lagging view poisoned")
    }

    /// ListRoots answers with no root (a transient partial answer) while `on`.
    pub fn hide_roots(&self, on: bool) {
        self.view().no_roots = on;
    }

    /// ListStackSetOperations does not show this operation until `catch_up`.
    pub fn hide_operation(&self, id: &str) {
        self.view().hidden_operations.insert(id.to_string());
    }

    /// DescribeStackSet and ListStackInstances answer what the sim holds now, until `catch_up`.
    pub fn freeze(&self) {
        let snapshot = (self.sim.stack_set(STACK_SET), self.sim.instances(STACK_SET));
        self.view().stale = Some(snapshot);
    }

    pub fn catch_up(&self) {
        *self.view() = View::default();
    }
}

#[async_trait]
impl Cloud for Lagging {
    async fn caller_account(&self) -> stacksetd::cloud::Result<String> {
        self.sim.caller_account().await
    }
    async fn describe_organization(&self) -> stacksetd::cloud::Result<OrganizationInfo> {
        self.sim.describe_organization().await
    }
    async fn list_roots(&self) -> stacksetd::cloud::Result<Vec<OrgNode>> {
        let roots = self.sim.list_roots().await?;
        Ok(if self.view().no_roots {
            Vec::new()
        } else {
            roots
        })
    }
    async fn list_organizational_units(
        &self,
        parent_id: &str,
    ) -> stacksetd::cloud::Result<Vec<OrgNode>> {
        self.sim.list_organizational_units(parent_id).await
    }
    async fn list_accounts(&self, parent_id: &str) -> stacksetd::cloud::Result<Vec<Account>> {
        self.sim.list_accounts(parent_id).await
    }
    async fn describe_stack_set(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> stacksetd::cloud::Result<Option<ObservedStackSet>> {
        let fresh = self.sim.describe_stack_set(name, call_as).await?;
        Ok(match &self.view().stale {
            Some((stack_set, _)) => stack_set.clone(),
            None => fresh,
        })
    }
    async fn list_stack_instances(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> stacksetd::cloud::Result<Vec<StackInstance>> {
        let fresh = self.sim.list_stack_instances(name, call_as).await?;
        Ok(match &self.view().stale {
            Some((_, instances)) => instances.clone(),
            None => fresh,
        })
    }
    async fn list_operations(
        &self,
        name: &str,
        call_as: CallAs,
        limit: usize,
    ) -> stacksetd::cloud::Result<Vec<Operation>> {
        let mut operations = self.sim.list_operations(name, call_as, limit).await?;
        let view = self.view();
        operations.retain(|op| !view.hidden_operations.contains(&op.id));
        Ok(operations)
    }
    async fn describe_operation(
        &self,
        name: &str,
        operation_id: &str,
        call_as: CallAs,
    ) -> stacksetd::cloud::Result<Operation> {
        self.sim
            .describe_operation(name, operation_id, call_as)
            .await
    }
    async fn list_operation_results(
        &self,
        name: &str,
        operation_id: &str,
        call_as: CallAs,
    ) -> stacksetd::cloud::Result<Vec<OperationResult>> {
        self.sim
            .list_operation_results(name, operation_id, call_as)
            .await
    }
    async fn create_stack_set(&self, request: &CreateStackSet) -> stacksetd::cloud::Result<()> {
        self.sim.create_stack_set(request).await
    }
    async fn update_stack_set(&self, request: &UpdateStackSet) -> stacksetd::cloud::Result<String> {
        self.sim.update_stack_set(request).await
    }
    async fn create_stack_instances(
        &self,
        request: &InstancesRequest,
    ) -> stacksetd::cloud::Result<String> {
        self.sim.create_stack_instances(request).await
    }
    async fn update_stack_instances(
        &self,
        request: &InstancesRequest,
    ) -> stacksetd::cloud::Result<String> {
        self.sim.update_stack_instances(request).await
    }
    async fn delete_stack_instances(
        &self,
        request: &DeleteInstancesRequest,
    ) -> stacksetd::cloud::Result<String> {
        self.sim.delete_stack_instances(request).await
    }
    async fn delete_stack_set(&self, name: &str, call_as: CallAs) -> stacksetd::cloud::Result<()> {
        self.sim.delete_stack_set(name, call_as).await
    }
    async fn list_delegated_administrators(
        &self,
        service_principal: &str,
    ) -> stacksetd::cloud::Result<Vec<String>> {
        self.sim
            .list_delegated_administrators(service_principal)
            .await
    }
    async fn list_aws_service_access(&self) -> stacksetd::cloud::Result<Vec<String>> {
        self.sim.list_aws_service_access().await
    }
    async fn describe_organizations_access(
        &self,
        call_as: CallAs,
    ) -> stacksetd::cloud::Result<String> {
        self.sim.describe_organizations_access(call_as).await
    }
    async fn activate_organizations_access(&self) -> stacksetd::cloud::Result<()> {
        self.sim.activate_organizations_access().await
    }
    async fn detect_stack_set_drift(
        &self,
        request: &stacksetd::cloud::DetectDriftRequest,
    ) -> stacksetd::cloud::Result<String> {
        self.sim.detect_stack_set_drift(request).await
    }
    async fn assume_role(
        &self,
        role_arn: &str,
        session_name: &str,
    ) -> stacksetd::cloud::Result<()> {
        self.sim.assume_role(role_arn, session_name).await
    }
    async fn list_stack_sets(
        &self,
        call_as: stacksetd::cloud::CallAs,
    ) -> stacksetd::cloud::Result<Vec<String>> {
        self.sim.list_stack_sets(call_as).await
    }
    async fn stage_template(
        &self,
        bucket: &str,
        key: &str,
        body: &str,
    ) -> stacksetd::cloud::Result<String> {
        self.sim.stage_template(bucket, key, body).await
    }
    async fn check_no_new_access(
        &self,
        existing: &str,
        new: &str,
        kind: stacksetd::cloud::PolicyKind,
    ) -> stacksetd::cloud::Result<stacksetd::cloud::AccessVerdict> {
        self.sim.check_no_new_access(existing, new, kind).await
    }
    fn calls(&self) -> &CallCounter {
        self.sim.calls()
    }
}

/// Someone else's CreateStackInstances (another tool's, the console's) under the root, in `region`: for
/// `accounts` only (INTERSECTION), or every account when empty.
pub async fn someone_creates_instances(sim: &Sim, accounts: &[&str], region: &str, id: &str) {
    let cloud: Arc<dyn Cloud> = Arc::new(sim.clone());
    let account_filter_type = if accounts.is_empty() {
        stacksetd::cloud::AccountFilterType::None
    } else {
        stacksetd::cloud::AccountFilterType::Intersection
    };
    cloud
        .create_stack_instances(&stacksetd::cloud::InstancesRequest {
            name: STACK_SET.into(),
            call_as: Default::default(),
            targets: stacksetd::cloud::Targets {
                organizational_unit_ids: vec![sim.root_id()],
                accounts: accounts.iter().map(|a| a.to_string()).collect(),
                account_filter_type,
            },
            regions: vec![region.to_string()],
            preferences: stacksetd::cloud::OperationPreferences::default(),
            operation_id: id.into(),
        })
        .await
        .expect("someone else's CreateStackInstances");
}

/// A proptest runner with `cases` cases from a fixed seed (`default_seed`, or `STACKSETD_PROPTEST_SEED` to replay
/// a failure; the seed is printed and returned) and no failure files: the properties of this binary are
/// reproducible.
pub fn seeded_runner(cases: u32, default_seed: u64) -> (proptest::test_runner::TestRunner, u64) {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let seed = std::env::var("STACKSETD_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_seed);
    println!("proptest seed {seed} (replay: STACKSETD_PROPTEST_SEED={seed})");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    (runner, seed)
}

/// Let every operation the sim runs finish (instances take seconds each in simulated time).
pub async fn settle() {
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// One pass, with the calls it made by operation.
pub async fn counted_pass(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    sim: &Sim,
) -> (stacksetd::controller::Outcome, BTreeMap<&'static str, u64>) {
    let before = sim.calls().snapshot();
    let outcome = stacksetd::controller::reconcile(deployment, ctx, state)
        .await
        .expect("pass");
    (outcome, delta(&before, &sim.calls().snapshot()))
}
