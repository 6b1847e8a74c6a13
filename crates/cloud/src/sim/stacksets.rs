//! Stack set state and the synchronous half of every CloudFormation call: validation, the one-operation-per-
//! stack-set rule, OperationId reuse, target resolution. Submitted operations are carried out over simulated time
//! by `engine.rs`.
//!
//! Size: over 600 lines: every CloudFormation StackSets call the sim answers, each with AWS's validation.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use tokio::time::Instant;

use super::World;
use super::faults::SimError;
use super::targets::{
    check_call_as, resolve_targets, template_of, validate_name, validate_preferences,
    validate_token,
};
use crate::error::AwsErrorKind;
use crate::{
    AutoDeployment, CallAs, CreateStackSet, DeleteInstancesRequest, DetectDriftRequest,
    DriftDetails, InstancesRequest, ObservedStackSet, OperationAction, OperationPreferences,
    OperationResult, OperationStatus, StackInstance, StackSetSettings, StackSetStatus, Targets,
    UpdateStackSet,
};

/// The Region the simulated stack sets live in (a stack set is regional; it appears in ARNs only).
pub const SIM_HOME_REGION: &str = "us-east-1";

/// Who started an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// Submitted through the `Cloud` trait.
    Api,
    /// Started by CloudFormation itself: auto-deployment when an account joins or leaves a targeted OU.
    AutoDeployment,
    /// Someone else's operation (`Sim::start_external_operation`), e.g. a console user.
    External,
}

/// Everything the sim knows about one operation, for tests and the demo.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOperation {
    pub id: String,
    pub action: OperationAction,
    pub status: OperationStatus,
    pub status_reason: Option<String>,
    pub initiator: Initiator,
    /// `None` for UpdateStackSet (every instance), auto-deployment and external operations.
    pub targets: Option<Targets>,
    /// Requested Regions (UpdateStackSet: the Regions of the instances it updates).
    pub regions: Vec<String>,
    pub preferences: OperationPreferences,
    /// DeleteStackInstances' RetainStacks.
    pub retain_stacks: Option<bool>,
    /// FAILED instances so far (skipped suspended accounts and cancellations do not count).
    pub failed_instances: u32,
    pub submitted_at: Instant,
    pub started_at: Option<Instant>,
    pub ended_at: Option<Instant>,
}

/// What an operation does to instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// Create missing instances (and retry OUTDATED ones) for `pairs`.
    Create,
    /// Re-apply the stack set to existing instances among `pairs`.
    Update,
    /// UpdateStackSet: every instance that is not INOPERABLE, resolved when the operation starts.
    UpdateAll,
    Delete {
        retain_stacks: bool,
    },
    /// DetectStackSetDrift: compares every instance (INOPERABLE excepted) with its resources; changes only the
    /// instances' DriftStatus and, at the end, the stack set's drift details.
    DetectDrift,
    /// Holds the slot for a while and touches nothing (someone else's operation).
    Hold {
        duration: std::time::Duration,
    },
}

/// One account x Region an operation works on, with the targeted OU it was reached through.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pair {
    pub account: String,
    pub region: String,
    pub ou: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct OpRecord {
    pub public: SimOperation,
    pub work: Work,
    /// Accounts x Regions resolved at submission (empty for UpdateAll/Hold).
    pub pairs: Vec<Pair>,
    pub results: BTreeMap<(String, String), OperationResult>,
    pub run: Option<super::engine::Run>,
}

#[derive(Debug, Clone)]
pub(crate) struct StackSetState {
    pub name: String,
    pub arn: String,
    pub client_token: String,
    pub status: StackSetStatus,
    /// As the API left them; auto-deployment and managed execution are always set (off when not given).
    pub settings: StackSetSettings,
    /// OU/root ids targeted and not since removed, in the order first targeted.
    pub ou_ids: Vec<String>,
    pub instances: BTreeMap<(String, String), StackInstance>,
    pub ops: Vec<OpRecord>,
    /// The last completed drift detection.
    pub drift: Option<DriftDetails>,
    /// Operations ever submitted on this stack set, by anyone.
    pub submissions: u64,
    /// The changes the API accepted (the last [`CHANGES_KEPT`]), to recognise one applied twice: the same change
    /// accepted again while the first still runs, or after it succeeded cleanly into a stack set that is still
    /// as the first one left it (its settings, instances, targets and drift) with no change to the organization
    /// since, had nothing to do but was sent anyway (a controller that lost track of its own submission). Other
    /// operations in between do not hide it, unless they changed what the first one left.
    pub changes: VecDeque<ChangeRecord>,
    /// Instances whose resources were changed behind CloudFormation's back (`Sim::drift_resources`): a drift
    /// detection reports them DRIFTED; re-applying the stack set (create/update) puts them back in sync.
    pub resource_drift: BTreeSet<(String, String)>,
}

impl StackSetState {
    pub fn has_active_operation(&self) -> bool {
        self.ops.iter().any(|op| op.public.status.is_active())
    }

    pub fn regions(&self) -> BTreeSet<String> {
        self.instances.keys().map(|(_, r)| r.clone()).collect()
    }

    pub fn observe(&self) -> ObservedStackSet {
        ObservedStackSet {
            name: self.name.clone(),
            arn: Some(self.arn.clone()),
            status: self.status,
            settings: self.settings.clone(),
            permission_model: Some("SERVICE_MANAGED".to_string()),
            organizational_unit_ids: Some(self.ou_ids.clone()),
            regions: Some(self.regions().into_iter().collect()),
            drift: self.drift.clone(),
        }
    }

    /// The one-operation rule: with managed execution (or for CloudFormation's own runs) a submission queues
    /// behind the active operation, otherwise it is refused.
    fn check_slot(&self, queue_allowed: bool) -> Result<(), SimError> {
        if let Some(active) = self.ops.iter().find(|op| op.public.status.is_active())
            && !queue_allowed
        {
            return Err(SimError::new(
                AwsErrorKind::OperationInProgress,
                "OperationInProgressException",
                format!(
                    "Another Operation on StackSet {} is in progress: {}",
                    self.name, active.public.id
                ),
            ));
        }
        Ok(())
    }

    /// Whether `change` repeats an accepted change that is still running, or that succeeded cleanly into a stack
    /// set still as it left it, with the organization unchanged since: returns the first one's id.
    fn repeats(&self, change: &str, out_of_band: u64) -> Option<String> {
        let now = self.fingerprint();
        let change = digest(change);
        self.changes
            .iter()
            .filter(|c| c.change == change && c.out_of_band == out_of_band)
            .find(|c| {
                let Some(first) = self.ops.iter().find(|op| op.public.id == c.id) else {
                    return false;
                };
                first.public.status.is_active() || c.left == Some(now)
            })
            .map(|c| c.id.clone())
    }

    /// What an operation leaves behind, as one number: the settings, every instance (account, Region, OU,
    /// status), the targets and the resources changed behind CloudFormation's back.
    pub(crate) fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(&self.settings)
            .unwrap_or_default()
            .hash(&mut hasher);
        for instance in self.instances.values() {
            (
                &instance.account,
                &instance.region,
                &instance.organizational_unit_id,
                instance.status.as_str(),
            )
                .hash(&mut hasher);
        }
        self.ou_ids.hash(&mut hasher);
        self.resource_drift.hash(&mut hasher);
        hasher.finish()
    }

    /// Operation `index` has ended: a clean success records what it left (see [`StackSetState::changes`]).
    pub(crate) fn record_left(&mut self, index: usize) {
        let op = &self.ops[index].public;
        let clean = op.status == OperationStatus::Succeeded && op.failed_instances == 0;
        let id = op.id.clone();
        let left = clean.then(|| self.fingerprint());
        if let Some(record) = self.changes.iter_mut().find(|c| c.id == id) {
            record.left = left;
        }
    }

    fn check_operation_id(&self, id: &str) -> Result<(), SimError> {
        validate_token("OperationId", id)?;
        // A resend while the first is still running: AWS is reported to answer OperationInProgress (the slot is
        // held, by that very operation); once it ended, OperationIdAlreadyExists.
        if self
            .ops
            .iter()
            .any(|op| op.public.id == id && op.public.status.is_active())
        {
            return Err(SimError::new(
                AwsErrorKind::OperationInProgress,
                "OperationInProgressException",
                format!("Another Operation on StackSet is in progress: {id}"),
            ));
        }
        if self.ops.iter().any(|op| op.public.id == id) {
            return Err(SimError::new(
                AwsErrorKind::OperationIdAlreadyExists,
                "OperationIdAlreadyExistsException",
                format!("The operation id {id} already exists"),
            ));
        }
        Ok(())
    }
}

impl World {
    fn visible(&mut self, name: &str, call_as: CallAs) -> Result<&mut StackSetState, SimError> {
        if !check_call_as(self, call_as)? {
            return Err(SimError::stack_set_not_found(name));
        }
        self.stack_sets
            .get_mut(name)
            .filter(|s| s.status == StackSetStatus::Active)
            .ok_or_else(|| SimError::stack_set_not_found(name))
    }

    pub(crate) fn stack_set_ref(
        &mut self,
        name: &str,
        call_as: CallAs,
    ) -> Result<&StackSetState, SimError> {
        self.visible(name, call_as).map(|s| &*s)
    }

    pub(crate) fn create_stack_set(&mut self, request: &CreateStackSet) -> Result<(), SimError> {
        if !check_call_as(self, request.call_as)? {
            return Err(SimError::validation(
                "A SERVICE_MANAGED stack set must be created from the management account or with CallAs DELEGATED_ADMIN",
            ));
        }
        validate_name(&request.name)?;
        let template_body = template_of(
            &self.staged,
            Some(request.settings.template_body.as_str()),
            request.template_url.as_deref(),
        )?
        .unwrap_or_default()
        .to_string();
        validate_token("ClientRequestToken", &request.client_token)?;
        if !self.org.trusted_access {
            return Err(SimError::validation(
                "You must enable organizations access to operate a service managed stack set",
            ));
        }
        let auto_deployment = request
            .settings
            .auto_deployment
            .clone()
            .unwrap_or(AutoDeployment {
                enabled: false,
                retain_stacks_on_account_removal: false,
                depends_on: Vec::new(),
            });
        if auto_deployment.retain_stacks_on_account_removal && !auto_deployment.enabled {
            return Err(SimError::validation(
                "RetainStacksOnAccountRemoval requires AutoDeployment Enabled",
            ));
        }
        super::dependencies::check(
            &self.stack_sets,
            &request.name,
            None,
            &auto_deployment.depends_on,
        )?;
        if let Some(existing) = self.stack_sets.get(&request.name)
            && existing.status == StackSetStatus::Active
        {
            if existing.client_token == request.client_token {
                return Ok(());
            }
            return Err(SimError::new(
                AwsErrorKind::NameAlreadyExists,
                "NameAlreadyExistsException",
                format!("StackSet {} already exists", request.name),
            ));
        }
        let uuid = self.new_uuid();
        let arn = format!(
            "arn:aws:cloudformation:{SIM_HOME_REGION}:{}:stackset/{}:{uuid}",
            self.org.management_account_id, request.name,
        );
        self.stack_sets.insert(
            request.name.clone(),
            StackSetState {
                name: request.name.clone(),
                arn,
                client_token: request.client_token.clone(),
                status: StackSetStatus::Active,
                settings: StackSetSettings {
                    template_body,
                    auto_deployment: Some(auto_deployment),
                    managed_execution: Some(request.settings.managed_execution_active()),
                    ..request.settings.clone()
                },
                ou_ids: Vec::new(),
                instances: BTreeMap::new(),
                ops: Vec::new(),
                drift: None,
                resource_drift: BTreeSet::new(),
                submissions: 0,
                changes: VecDeque::new(),
            },
        );
        Ok(())
    }

    pub(crate) fn update_stack_set(
        &mut self,
        request: &UpdateStackSet,
    ) -> Result<String, SimError> {
        let new_body = template_of(
            &self.staged,
            (!request.keep_template).then_some(request.settings.template_body.as_str()),
            request.template_url.as_deref(),
        )?
        .map(str::to_string);
        if let Some(auto) = &request.settings.auto_deployment
            && !auto.depends_on.is_empty()
        {
            let own_arn = self.stack_sets.get(&request.name).map(|s| s.arn.clone());
            super::dependencies::check(
                &self.stack_sets,
                &request.name,
                own_arn.as_deref(),
                &auto.depends_on,
            )?;
        }
        let stack_set = self.visible(&request.name, request.call_as)?;
        stack_set.check_operation_id(&request.operation_id)?;
        validate_preferences(&request.preferences)?;
        stack_set.check_slot(stack_set.settings.managed_execution_active())?;
        let mut parameters = BTreeMap::new();
        for (key, value) in &request.settings.parameters {
            let value = if request.keep_template {
                // UsePreviousValue.
                stack_set
                    .settings
                    .parameters
                    .get(key)
                    .cloned()
                    .ok_or_else(|| {
                        SimError::validation(format!(
                            "Parameter {key} has no previous value to use"
                        ))
                    })?
            } else {
                value.clone()
            };
            parameters.insert(key.clone(), value);
        }
        if let Some(managed) = request.settings.managed_execution
            && managed != stack_set.settings.managed_execution_active()
        {
            if stack_set.has_active_operation() {
                return Err(SimError::validation(
                    "ManagedExecution cannot be changed while operations are running or queued",
                ));
            }
            let template_changes = new_body
                .as_ref()
                .is_some_and(|b| *b != stack_set.settings.template_body);
            if template_changes || parameters != stack_set.settings.parameters {
                return Err(SimError::validation(
                    "ManagedExecution cannot be changed in the same UpdateStackSet as the template or parameters",
                ));
            }
        }
        // A scoped update (a staged rollout's canary): AWS refuses DeploymentTargets alongside AutoDeployment; the
        // pairs are resolved before anything changes.
        let scoped = match &request.only {
            Some(only) => {
                if request.settings.auto_deployment.is_some() {
                    return Err(SimError::validation(
                        "AutoDeployment cannot be specified with DeploymentTargets or Regions",
                    ));
                }
                let pairs = resolve_targets(&self.org, &only.targets, &only.regions, false)?;
                Some((only.clone(), pairs))
            }
            None => None,
        };
        let stack_set = self.visible(&request.name, request.call_as)?;
        if let Some(auto) = &request.settings.auto_deployment
            && auto.retain_stacks_on_account_removal
            && !auto.enabled
        {
            return Err(SimError::validation(
                "RetainStacksOnAccountRemoval requires AutoDeployment Enabled",
            ));
        }
        // The stack set keeps the new settings even if the operation fails, as in AWS.
        let settings = &mut stack_set.settings;
        if request.settings.description.is_some() {
            settings.description = request.settings.description.clone();
        }
        if let Some(body) = new_body {
            settings.template_body = body;
        }
        settings.parameters = parameters;
        settings.capabilities = request.settings.capabilities.clone();
        settings.tags = request.settings.tags.clone();
        if let Some(auto) = &request.settings.auto_deployment {
            // A request without DependsOn keeps the stack set's (stacksetd never sends an empty list).
            let kept = settings
                .auto_deployment
                .as_ref()
                .map(|a| a.depends_on.clone())
                .unwrap_or_default();
            let mut auto = auto.clone();
            if auto.depends_on.is_empty() {
                auto.depends_on = kept;
            }
            auto.depends_on.sort();
            settings.auto_deployment = Some(auto);
        }
        if let Some(managed) = request.settings.managed_execution {
            settings.managed_execution = Some(managed);
        }
        for instance in stack_set.instances.values_mut() {
            if instance.status != crate::InstanceStatus::Inoperable {
                instance.status = crate::InstanceStatus::Outdated;
            }
        }
        let regions = stack_set.regions().into_iter().collect();
        // Every instance is OUTDATED until an operation reaches it; a scoped update reaches only its pairs.
        let (work, targets, regions, pairs) = match scoped {
            Some((only, pairs)) => (Work::Update, Some(only.targets), only.regions, pairs),
            None => (Work::UpdateAll, None, regions, Vec::new()),
        };
        self.submit(
            &request.name,
            NewOperation {
                id: request.operation_id.clone(),
                action: OperationAction::Update,
                initiator: Initiator::Api,
                work,
                targets,
                regions,
                preferences: request.preferences.clone(),
                pairs,
                change: Some(change_of_update(request)),
            },
        );
        Ok(request.operation_id.clone())
    }

    /// Create/UpdateStackInstances.
    pub(crate) fn instances_operation(
        &mut self,
        request: &InstancesRequest,
        action: OperationAction,
    ) -> Result<String, SimError> {
        let creating = action == OperationAction::Create;
        let pairs = self.check_instances_request(
            &request.name,
            request.call_as,
            &request.operation_id,
            &request.targets,
            &request.regions,
            &request.preferences,
            creating,
        )?;
        let stack_set = self.visible(&request.name, request.call_as)?;
        // The OU becomes a target of the stack set (DescribeStackSet's OrganizationalUnitIds, and what
        // auto-deployment follows), whatever the account filter: AWS's user guide says auto-deployment ignores
        // account filters, so an INTERSECTION or DIFFERENCE create targets the whole OU from then on.
        if creating {
            for ou in &request.targets.organizational_unit_ids {
                if !stack_set.ou_ids.contains(ou) {
                    stack_set.ou_ids.push(ou.clone());
                }
            }
        }
        self.submit(
            &request.name,
            NewOperation {
                id: request.operation_id.clone(),
                action,
                initiator: Initiator::Api,
                work: if creating { Work::Create } else { Work::Update },
                targets: Some(request.targets.clone()),
                regions: request.regions.clone(),
                preferences: request.preferences.clone(),
                pairs,
                change: Some(change_of_instances(
                    action,
                    &request.targets,
                    &request.regions,
                    None,
                )),
            },
        );
        Ok(request.operation_id.clone())
    }

    pub(crate) fn delete_instances(
        &mut self,
        request: &DeleteInstancesRequest,
    ) -> Result<String, SimError> {
        let pairs = self.check_instances_request(
            &request.name,
            request.call_as,
            &request.operation_id,
            &request.targets,
            &request.regions,
            &request.preferences,
            false,
        )?;
        self.submit(
            &request.name,
            NewOperation {
                id: request.operation_id.clone(),
                action: OperationAction::Delete,
                initiator: Initiator::Api,
                work: Work::Delete {
                    retain_stacks: request.retain_stacks,
                },
                targets: Some(request.targets.clone()),
                regions: request.regions.clone(),
                preferences: request.preferences.clone(),
                pairs,
                change: Some(change_of_instances(
                    OperationAction::Delete,
                    &request.targets,
                    &request.regions,
                    Some(request.retain_stacks),
                )),
            },
        );
        Ok(request.operation_id.clone())
    }

    /// DetectStackSetDrift: an operation like any other (it takes the slot, or queues under managed execution).
    pub(crate) fn detect_drift(
        &mut self,
        request: &DetectDriftRequest,
    ) -> Result<String, SimError> {
        let stack_set = self.visible(&request.name, request.call_as)?;
        stack_set.check_operation_id(&request.operation_id)?;
        validate_preferences(&request.preferences)?;
        let managed = stack_set.settings.managed_execution_active();
        stack_set.check_slot(managed)?;
        self.submit(
            &request.name,
            NewOperation {
                id: request.operation_id.clone(),
                action: OperationAction::DetectDrift,
                initiator: Initiator::Api,
                work: Work::DetectDrift,
                targets: None,
                regions: Vec::new(),
                preferences: request.preferences.clone(),
                pairs: Vec::new(),
                change: None,
            },
        );
        Ok(request.operation_id.clone())
    }

    /// The checks every instance operation shares, in AWS's order; returns the resolved pairs.
    #[allow(clippy::too_many_arguments)]
    fn check_instances_request(
        &mut self,
        name: &str,
        call_as: CallAs,
        operation_id: &str,
        targets: &Targets,
        regions: &[String],
        preferences: &OperationPreferences,
        creating: bool,
    ) -> Result<Vec<Pair>, SimError> {
        let stack_set = self.visible(name, call_as)?;
        stack_set.check_operation_id(operation_id)?;
        validate_preferences(preferences)?;
        let managed = stack_set.settings.managed_execution_active();
        let pairs = resolve_targets(&self.org, targets, regions, creating)?;
        self.visible(name, call_as)?.check_slot(managed)?;
        Ok(pairs)
    }

    pub(crate) fn delete_stack_set(&mut self, name: &str, call_as: CallAs) -> Result<(), SimError> {
        let stack_set = self.visible(name, call_as)?;
        stack_set.check_slot(false)?;
        if !stack_set.instances.is_empty() {
            return Err(SimError::new(
                AwsErrorKind::StackSetNotEmpty,
                "StackSetNotEmptyException",
                format!(
                    "StackSet {name} cannot be deleted while it still has {} stack instance(s)",
                    stack_set.instances.len()
                ),
            ));
        }
        stack_set.status = StackSetStatus::Deleted;
        Ok(())
    }

    /// Records a new operation: it takes the free slot at once, or queues behind the active one (callers have
    /// already applied the one-operation rule).
    pub(crate) fn submit(&mut self, name: &str, new: NewOperation) {
        let (now, out_of_band) = (self.now, self.out_of_band);
        let Some(stack_set) = self.stack_sets.get_mut(name) else {
            return;
        };
        stack_set.submissions += 1;
        if let Some(change) = &new.change {
            if let Some(first) = stack_set.repeats(change, out_of_band) {
                self.repeated_changes.push(RepeatedChange {
                    stack_set: name.to_string(),
                    first,
                    second: new.id.clone(),
                    change: change.clone(),
                });
            }
            if stack_set.changes.len() == CHANGES_KEPT {
                stack_set.changes.pop_front();
            }
            stack_set.changes.push_back(ChangeRecord {
                id: new.id.clone(),
                change: digest(change),
                out_of_band,
                left: None,
            });
        }
        let busy = stack_set.has_active_operation();
        stack_set.ops.push(OpRecord {
            public: SimOperation {
                id: new.id,
                action: new.action,
                status: OperationStatus::Queued,
                status_reason: None,
                initiator: new.initiator,
                targets: new.targets,
                regions: new.regions,
                preferences: new.preferences,
                retain_stacks: match new.work {
                    Work::Delete { retain_stacks } => Some(retain_stacks),
                    _ => None,
                },
                failed_instances: 0,
                submitted_at: now,
                started_at: None,
                ended_at: None,
            },
            work: new.work,
            pairs: new.pairs,
            results: BTreeMap::new(),
            run: None,
        });
        if !busy {
            let index = stack_set.ops.len() - 1;
            super::engine::start_operation(stack_set, index, now, &self.config);
        }
    }
}

/// The submission-time description of an operation.
pub(crate) struct NewOperation {
    pub id: String,
    pub action: OperationAction,
    pub initiator: Initiator,
    pub work: Work,
    pub targets: Option<Targets>,
    pub regions: Vec<String>,
    pub preferences: OperationPreferences,
    pub pairs: Vec<Pair>,
    /// What a change submitted through the API asks for (its request without id, CallAs and preferences), to
    /// catch one change applied twice; `None` for drift detection and for operations the API did not submit.
    pub change: Option<String>,
}

/// The change an UpdateStackSet asks for: everything but its id, CallAs and operation preferences.
pub(crate) fn change_of_update(request: &UpdateStackSet) -> String {
    let mut request = request.clone();
    request.operation_id.clear();
    request.preferences = OperationPreferences::default();
    request.call_as = CallAs::SelfAccount;
    format!(
        "UPDATE_SET {}",
        serde_json::to_string(&request).unwrap_or_default()
    )
}

/// The change an instance operation asks for: its action, targets, Regions and RetainStacks.
fn change_of_instances(
    action: OperationAction,
    targets: &Targets,
    regions: &[String],
    retain: Option<bool>,
) -> String {
    format!(
        "{action:?} {} {regions:?} {retain:?}",
        serde_json::to_string(targets).unwrap_or_default()
    )
}

/// One change the API accepted twice (see [`StackSetState::changes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatedChange {
    pub stack_set: String,
    pub first: String,
    pub second: String,
    pub change: String,
}

fn digest(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// How many accepted changes a stack set remembers to compare new ones with.
pub(crate) const CHANGES_KEPT: usize = 64;

/// A change accepted through the API on a stack set, to compare later ones with.
#[derive(Debug, Clone)]
pub(crate) struct ChangeRecord {
    pub id: String,
    /// The change's digest (a change can carry a whole template).
    pub change: u64,
    /// `World::out_of_band` when it was accepted.
    pub out_of_band: u64,
    /// `StackSetState::fingerprint` when it ended cleanly (`None` while it runs, or when it failed).
    pub left: Option<u64>,
}
