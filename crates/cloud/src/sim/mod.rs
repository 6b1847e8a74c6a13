//! The in-memory simulated AWS Organization and CloudFormation StackSets behind the [`Cloud`] trait. It powers
//! `stacksetd demo`, the controller tests (on tokio's paused clock) and the fault tests, so it follows AWS's real
//! semantics rather than moto's: operations are asynchronous and take simulated time, one operation per stack set
//! (OperationInProgress, or queued under managed execution), instances go OUTDATED/PENDING -> RUNNING ->
//! CURRENT/SUCCEEDED, the management account never gets an instance, suspended accounts are skipped without
//! counting as failures, failure tolerance is counted per Region, auto-deployment follows account moves.
//!
//! Layout: `org` (the organization tree), `targets` (request validation, DeploymentTargets resolution),
//! `stacksets` (stack set state, synchronous checks, submissions), `engine` (simulated time: operations running
//! instance by instance), `autodeploy` (CloudFormation's own runs on account moves), `faults` (injected errors),
//! `api` (the `Cloud` implementation and call accounting).
//!
//! Simplifications, on purpose: managed execution queues every conflicting and non-conflicting operation alike
//! (one runs at a time); an operation's accounts are resolved at submission; listings are strongly consistent.

mod api;
mod autodeploy;
mod dependencies;
mod engine;
mod faults;
mod org;
mod roles;
mod stacks;
mod stacksets;
mod targets;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Duration, Instant};

pub use faults::Faults;
pub use roles::SimRoles;
pub use stacksets::{Initiator, RepeatedChange, SimOperation};

use self::faults::FaultState;
use self::org::Organization;
use self::stacksets::{NewOperation, StackSetState, Work};
use crate::error::AwsErrorKind;
use crate::{
    CallCounter, ObservedStackSet, OperationAction, OperationPreferences, StackInstance,
    StackSetStatus,
};

/// Simulated time one stack instance takes to deploy, update or delete, unless configured.
pub const DEFAULT_INSTANCE_DURATION: Duration = Duration::from_secs(2);
/// Simulated time between an operation taking the slot and its first instance starting, unless configured.
pub const DEFAULT_OPERATION_OVERHEAD: Duration = Duration::from_secs(1);
/// Mixed into the seed for the fault RNG, so turning faults on does not change the ids the sim generates.
const FAULT_SEED_SALT: u64 = 0x5eed_fa17;

#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub management_account_id: String,
    /// The account of the credentials in use (STS GetCallerIdentity); `None` means the management account.
    /// Any other account acts as a delegated administrator (stack sets visible with CallAs DELEGATED_ADMIN).
    pub caller_account_id: Option<String>,
    pub organization_id: String,
    pub root_id: String,
    pub instance_duration: Duration,
    pub operation_overhead: Duration,
    /// Seeds every id and every random fault: the same seed and calls give the same world.
    pub seed: u64,
    /// Where AWS is silent: does a CreateStackInstances that targets a child OU re-associate an instance that
    /// exists through a parent OU (its `OrganizationalUnitId` becomes the child)? AWS documents that deleting an
    /// OU's stacks deletes its child OUs' too, but not this. `false` (the default) keeps the first OU, as moto
    /// does; `true` re-associates, as another emulator does. The controller must be right under both.
    pub reassociate: bool,
    /// IAM names are global per account (documented): a stack that creates a named IAM resource (a RoleName, a
    /// ManagedPolicyName) fails while another stack in the account holds that name. `true` applies it to the
    /// stack set's instances: a new instance fails while the stack set has an instance of the same account in
    /// another Region. Off by default, since most tests deploy the named-role templates to several Regions.
    pub global_names: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            management_account_id: "123456789012".to_string(),
            caller_account_id: None,
            organization_id: "o-a1b2c3d4e5".to_string(),
            root_id: "r-a1b2".to_string(),
            instance_duration: DEFAULT_INSTANCE_DURATION,
            operation_overhead: DEFAULT_OPERATION_OVERHEAD,
            seed: 42,
            reassociate: false,
            global_names: false,
        }
    }
}

impl SimConfig {
    pub fn caller_account_id(&self) -> &str {
        self.caller_account_id
            .as_deref()
            .unwrap_or(&self.management_account_id)
    }
}

/// Everything the sim holds; advanced lazily to the current time on every access.
pub(crate) struct World {
    pub config: SimConfig,
    /// The simulated time the world has been advanced to.
    pub now: Instant,
    /// Generates ids (OUs, accounts, ARNs, service operations).
    pub rng: StdRng,
    /// Decides random faults (separate so faults do not shift ids).
    pub fault_rng: StdRng,
    pub org: Organization,
    pub stack_sets: BTreeMap<String, StackSetState>,
    pub faults: FaultState,
    /// Objects uploaded to staging buckets, by the TemplateURL they were given.
    pub staged: BTreeMap<String, String>,
    /// When the world was made, on both clocks: simulated instants map to wall-clock timestamps from here.
    pub epoch: (Instant, std::time::SystemTime),
    /// Changes made to the world outside the API (a test moving an account, failing one, drifting a stack): the
    /// same request after one of them is a new change, not a repeat.
    pub out_of_band: u64,
    /// Every change the API accepted twice in a row (`Sim::repeated_changes`).
    pub repeated_changes: Vec<stacksets::RepeatedChange>,
    /// Plain stacks in the caller's account (`spec.managementAccount`).
    pub stacks: stacks::Stacks,
}

impl World {
    /// The wall-clock time of a simulated instant (for timestamps AWS reports, such as LastDriftCheckTimestamp).
    pub fn wall_clock(&self, at: Instant) -> std::time::SystemTime {
        self.epoch.1 + at.saturating_duration_since(self.epoch.0)
    }

    pub fn new_uuid(&mut self) -> String {
        let bytes: [u8; 16] = self.rng.random();
        let hex = hex::encode(bytes);
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

/// The simulated cloud. Cloning is cheap and clones share one world, so a test can keep a handle to inspect and
/// steer the organization while the controller owns another.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

struct Inner {
    world: Mutex<World>,
    calls: CallCounter,
}

impl Sim {
    /// An organization with only its root and the management account.
    pub fn new(config: SimConfig) -> Sim {
        let mut org = Organization::new(
            &config.organization_id,
            &config.root_id,
            &config.management_account_id,
        );
        // A caller other than the management account is a registered delegated administrator unless a test
        // says otherwise (`Sim::deregister_delegated_admin`).
        if config.caller_account_id() != config.management_account_id {
            org.delegated_admins
                .insert(config.caller_account_id().to_string());
        }
        let world = World {
            rng: StdRng::seed_from_u64(config.seed),
            fault_rng: StdRng::seed_from_u64(config.seed ^ FAULT_SEED_SALT),
            now: Instant::now(),
            org,
            stack_sets: BTreeMap::new(),
            faults: FaultState::default(),
            staged: BTreeMap::new(),
            epoch: (Instant::now(), std::time::SystemTime::now()),
            out_of_band: 0,
            repeated_changes: Vec::new(),
            stacks: Default::default(),
            config,
        };
        Sim {
            inner: Arc::new(Inner {
                world: Mutex::new(world),
                calls: CallCounter::default(),
            }),
        }
    }

    /// The demo organization: the management account in the root; OUs Security, Infrastructure, Workloads (with
    /// Prod and Dev) and Sandbox; 40 member accounts, one of them SUSPENDED.
    pub fn realistic(config: SimConfig) -> Sim {
        let sim = Sim::new(config);
        let mut ou_ids: BTreeMap<&str, String> = BTreeMap::new();
        for (name, parent, accounts) in org::REALISTIC_LAYOUT {
            let parent_id = match parent {
                Some(p) => ou_ids
                    .get(p)
                    .cloned()
                    .expect("REALISTIC_LAYOUT lists parents before children"),
                None => sim.root_id(),
            };
            let ou = sim.add_ou(&parent_id, name);
            for account in *accounts {
                let id = sim.add_account(&ou, account);
                if *account == org::REALISTIC_SUSPENDED {
                    sim.set_account_state(&id, "SUSPENDED");
                }
            }
            ou_ids.insert(name, ou);
        }
        sim
    }

    /// The world, advanced to now. Every entry point goes through here so lazily simulated time is never stale.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock would be a sim bug; keep serving so the failing test reports it.
        let mut world = self
            .inner
            .world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        world.advance_to(Instant::now());
        world.settle_stacks();
        world
    }

    /// The world, for a change made outside the API (a test or demo steering the organization).
    fn world_changed(&self) -> MutexGuard<'_, World> {
        let mut world = self.world();
        world.out_of_band += 1;
        world
    }

    pub fn root_id(&self) -> String {
        self.world().org.root_id.clone()
    }

    pub fn management_account_id(&self) -> String {
        self.world().org.management_account_id.clone()
    }

    /// Adds an OU and returns its id.
    ///
    /// # Panics
    /// If `parent_id` is not a root or OU of the organization (a bug in the test or demo script).
    pub fn add_ou(&self, parent_id: &str, name: &str) -> String {
        let mut world = self.world_changed();
        let World { org, rng, .. } = &mut *world;
        org.add_ou(rng, parent_id, name)
            .unwrap_or_else(|| panic!("add_ou: no root or OU {parent_id}"))
    }

    /// Adds an ACTIVE member account and returns its id; auto-deployment reacts as AWS's does.
    ///
    /// # Panics
    /// If `parent_id` is not a root or OU of the organization.
    pub fn add_account(&self, parent_id: &str, name: &str) -> String {
        let mut world = self.world_changed();
        let World { org, rng, .. } = &mut *world;
        let id = org
            .add_account(rng, parent_id, name)
            .unwrap_or_else(|| panic!("add_account: no root or OU {parent_id}"));
        world.account_moved(&id, None, Some(parent_id));
        id
    }

    /// Sets Account.State (ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED, ...). Instances are left as they are.
    ///
    /// # Panics
    /// If the account is not in the organization.
    pub fn set_account_state(&self, account_id: &str, state: &str) {
        let mut world = self.world_changed();
        let member = world
            .org
            .accounts
            .get_mut(account_id)
            .unwrap_or_else(|| panic!("set_account_state: no account {account_id}"));
        member.state = state.to_string();
    }

    /// Moves an account to another root or OU; auto-deployment creates or deletes its instances.
    ///
    /// # Panics
    /// If the account or the new parent does not exist.
    pub fn move_account(&self, account_id: &str, new_parent_id: &str) {
        let mut world = self.world_changed();
        assert!(
            world.org.unit_exists(new_parent_id),
            "move_account: no root or OU {new_parent_id}"
        );
        let member = world
            .org
            .accounts
            .get_mut(account_id)
            .unwrap_or_else(|| panic!("move_account: no account {account_id}"));
        let old_parent = std::mem::replace(&mut member.parent, new_parent_id.to_string());
        world.account_moved(account_id, Some(&old_parent), Some(new_parent_id));
    }

    /// Removes an account from the organization; auto-deployment deletes (or retains) its instances.
    ///
    /// # Panics
    /// If the account is not in the organization.
    pub fn remove_account(&self, account_id: &str) {
        let mut world = self.world_changed();
        let member = world
            .org
            .accounts
            .remove(account_id)
            .unwrap_or_else(|| panic!("remove_account: no account {account_id}"));
        world.account_moved(account_id, Some(&member.parent), None);
    }

    /// Random throttling and server errors from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.world().faults.rates = faults;
    }

    /// The next `times` calls of `operation` (an AWS API name such as "UpdateStackSet") fail with `kind`.
    pub fn fail_next(&self, operation: &'static str, kind: AwsErrorKind, times: u32) {
        if times > 0 {
            self.world()
                .faults
                .next
                .entry(operation)
                .or_default()
                .push((kind, times));
        }
    }

    /// The next call of `operation` (a mutating stack set call) reaches the service only `delay` later, as a call
    /// the SDK keeps retrying through throttling, or one held in a partition: dropped by its caller meanwhile, it
    /// never reaches it.
    pub fn stall_next(&self, operation: &'static str, delay: Duration) {
        self.world().faults.stalls.insert(operation, delay);
    }

    /// The stall queued for `operation`'s next call (`stall_next`), waited out before the call reaches the world.
    pub(crate) async fn stall(&self, operation: &'static str) {
        let delay = self.world().faults.stalls.remove(operation);
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }

    /// How many answers `lose_next_response` made lost so far.
    pub fn lost_responses_fired(&self) -> u64 {
        self.world().faults.lost_fired
    }

    /// The next `times` calls of `operation` are applied but answered with a Transport error, as when a
    /// response times out: the caller cannot tell whether its request took effect.
    pub fn lose_next_response(&self, operation: &'static str, times: u32) {
        if times > 0 {
            *self
                .world()
                .faults
                .lost_responses
                .entry(operation)
                .or_default() += times;
        }
    }

    /// Every stack instance operation in the account fails with `reason` from now on (RetainStacks deletes
    /// excepted: they only disassociate the stack).
    pub fn fail_account(&self, account_id: &str, reason: &str) {
        self.world_changed()
            .faults
            .failing_accounts
            .insert(account_id.to_string(), reason.to_string());
    }

    /// Undoes [`Sim::fail_account`].
    pub fn heal_account(&self, account_id: &str) {
        self.world_changed()
            .faults
            .failing_accounts
            .remove(account_id);
    }

    /// Someone else's operation (a console user, another tool) that holds the stack set's slot for `duration`
    /// (queued behind an active one), touches no instance, and then SUCCEEDS. Returns its id.
    pub fn start_external_operation(
        &self,
        stack_set: &str,
        action: OperationAction,
        duration: Duration,
    ) -> Result<String, crate::Error> {
        let mut world = self.world();
        if !world
            .stack_sets
            .get(stack_set)
            .is_some_and(|s| s.status == StackSetStatus::Active)
        {
            return Err(faults::SimError::stack_set_not_found(stack_set)
                .into_error("cloudformation", "ExternalOperation"));
        }
        let id = world.new_uuid();
        world.submit(
            stack_set,
            NewOperation {
                id: id.clone(),
                action,
                initiator: Initiator::External,
                work: Work::Hold { duration },
                targets: None,
                regions: Vec::new(),
                preferences: OperationPreferences::default(),
                pairs: Vec::new(),
                change: None,
            },
        );
        Ok(id)
    }

    /// CloudFormation stops auto-deploying to `ou` for the stack set (ListStackSetAutoDeploymentTargets and
    /// DescribeStackSet no longer list it) while its instances stay: the drift the auto-deployment target check
    /// exists to find. Returns whether it was a target.
    pub fn drop_auto_deployment_target(&self, stack_set: &str, ou: &str) -> bool {
        let mut world = self.world_changed();
        let Some(state) = world.stack_sets.get_mut(stack_set) else {
            return false;
        };
        let before = state.ou_ids.len();
        state.ou_ids.retain(|o| o != ou);
        state.ou_ids.len() != before
    }

    /// Sets an instance's DriftStatus (DRIFTED, IN_SYNC, UNKNOWN, NOT_CHECKED), as a drift detection run would;
    /// returns whether the instance exists.
    pub fn set_instance_drift(
        &self,
        stack_set: &str,
        account: &str,
        region: &str,
        drift: &str,
    ) -> bool {
        let mut world = self.world_changed();
        let instance = world.stack_sets.get_mut(stack_set).and_then(|s| {
            s.instances
                .get_mut(&(account.to_string(), region.to_string()))
        });
        match instance {
            Some(instance) => {
                instance.drift_status = Some(drift.to_string());
                true
            }
            None => false,
        }
    }

    /// Changes an instance's resources behind CloudFormation's back (someone edits the role in the member
    /// account): the next drift detection reports the instance DRIFTED; re-applying it puts it back in sync.
    /// Returns whether the instance exists.
    pub fn drift_resources(&self, stack_set: &str, account: &str, region: &str) -> bool {
        let mut world = self.world_changed();
        let Some(state) = world.stack_sets.get_mut(stack_set) else {
            return false;
        };
        let key = (account.to_string(), region.to_string());
        if !state.instances.contains_key(&key) {
            return false;
        }
        state.resource_drift.insert(key);
        true
    }

    /// sts:AssumeRole into the account is refused from now on, with `reason` (a broken trust policy, an SCP).
    pub fn deny_access(&self, account_id: &str, reason: &str) {
        self.world_changed()
            .faults
            .denied_access
            .insert(account_id.to_string(), reason.to_string());
    }

    /// Undoes [`Sim::deny_access`].
    pub fn allow_access(&self, account_id: &str) {
        self.world_changed().faults.denied_access.remove(account_id);
    }

    /// Turns trusted access for StackSets off (never enabled) or on, as the StackSets console's switch would.
    pub fn set_trusted_access(&self, enabled: bool) {
        self.world_changed().org.trusted_access = enabled;
    }

    pub fn trusted_access(&self) -> bool {
        self.world().org.trusted_access
    }

    /// ALL or CONSOLIDATED_BILLING.
    pub fn set_feature_set(&self, feature_set: &str) {
        self.world_changed().org.feature_set = feature_set.to_string();
    }

    /// The account is no longer a delegated administrator for StackSets.
    pub fn deregister_delegated_admin(&self, account_id: &str) {
        self.world_changed().org.delegated_admins.remove(account_id);
    }

    /// Every operation ever submitted on the stack set (also after it was deleted), oldest first.
    pub fn operations(&self, stack_set: &str) -> Vec<SimOperation> {
        self.world()
            .stack_sets
            .get(stack_set)
            .map(|s| s.ops.iter().map(|op| op.public.clone()).collect())
            .unwrap_or_default()
    }

    /// Ids of the operations submitted through the `Cloud` trait, oldest first.
    pub fn submitted_operation_ids(&self, stack_set: &str) -> Vec<String> {
        self.operations(stack_set)
            .into_iter()
            .filter(|op| op.initiator == Initiator::Api)
            .map(|op| op.id)
            .collect()
    }

    /// Every change the API accepted twice in a row on one stack set, whatever the ids: the same request (its
    /// id, CallAs and preferences aside) with no other operation and no outside change to the world in between,
    /// while the first still ran or after it succeeded without a failed instance. A controller that lost track
    /// of its own submission shows up here; the sim's refusal of a reused id cannot hide it.
    pub fn repeated_changes(&self) -> Vec<RepeatedChange> {
        self.world().repeated_changes.clone()
    }

    /// Forget every stack set's finished operations but the newest `keep`, as AWS's own retention does, and
    /// return the ids forgotten, oldest first: a long simulation (tests/soak_sim.rs) keeps the sim's memory flat.
    pub fn forget_finished_operations(&self, keep: usize) -> Vec<String> {
        let mut world = self.world();
        let mut forgotten = Vec::new();
        for state in world.stack_sets.values_mut() {
            let finished = state
                .ops
                .iter()
                .filter(|op| !op.public.status.is_active())
                .count();
            let mut excess = finished.saturating_sub(keep);
            state.ops.retain(|op| {
                if excess > 0 && !op.public.status.is_active() {
                    excess -= 1;
                    forgotten.push(op.public.id.clone());
                    false
                } else {
                    true
                }
            });
        }
        forgotten
    }

    /// The stack set's instances, by account then Region.
    pub fn instances(&self, stack_set: &str) -> Vec<StackInstance> {
        self.world()
            .stack_sets
            .get(stack_set)
            .filter(|s| s.status == StackSetStatus::Active)
            .map(|s| s.instances.values().cloned().collect())
            .unwrap_or_default()
    }

    /// What DescribeStackSet would answer, without counting a call.
    pub fn stack_set(&self, name: &str) -> Option<ObservedStackSet> {
        self.world()
            .stack_sets
            .get(name)
            .filter(|s| s.status == StackSetStatus::Active)
            .map(StackSetState::observe)
    }

    /// The simulated organization as the org walk would see it, without counting calls.
    pub fn accounts(&self) -> Vec<(crate::Account, String)> {
        let world = self.world();
        world
            .org
            .accounts
            .iter()
            .map(|(id, m)| {
                (
                    crate::Account {
                        id: id.clone(),
                        name: m.name.clone(),
                        state: m.state.clone(),
                    },
                    m.parent.clone(),
                )
            })
            .collect()
    }

    /// Every OU id (and the root), for building targets in tests.
    pub fn unit_ids(&self) -> Vec<String> {
        self.world().org.unit_ids().into_iter().collect()
    }

    /// The id of the OU with that name, if exactly one has it.
    pub fn ou_named(&self, name: &str) -> Option<String> {
        let world = self.world();
        let mut matches = world.org.units.iter().filter(|(_, u)| u.name == name);
        let (id, _) = matches.next()?;
        matches.next().is_none().then(|| id.clone())
    }
}
