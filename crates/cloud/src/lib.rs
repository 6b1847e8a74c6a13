//! The cloud port: everything stacksetd asks of AWS, behind one trait, so the controller runs unchanged against
//! the real SDK (`aws`) and against the in-memory organization (`sim`). Methods mirror single API calls (listings
//! return every page) so fault injection and call budgets apply per call, as they would against AWS.
//!
//! A crate of its own (`stacksetd-cloud`), above `stacksetd-core` only: the compiler refuses an import from here
//! into the controller or anything above it. The main crate re-exports it as `stacksetd::cloud`.

pub mod aws;
pub mod endpoint;
pub mod org;
pub mod queue;
mod setting;
pub mod sim;
pub use setting::Setting;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
// The core's modules at the paths this crate's files name them by (`crate::desired`, `crate::error`).
use stacksetd_core::{desired, error};

pub use crate::desired::model::{AccountFilterType, AutoDeployment, CallAs, OperationPreferences};
use crate::error::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The service principal of CloudFormation StackSets in Organizations: trusted access turns it on, delegated
/// administrators are registered for it.
pub const STACKSETS_SERVICE_PRINCIPAL: &str = "member.org.stacksets.cloudformation.amazonaws.com";

/// The calls a listing of `items` takes in pages of `page_size` (an empty listing is one call): what the
/// simulator counts and what the daemon's read budget charges.
pub fn pages(items: usize, page_size: usize) -> usize {
    items.div_ceil(page_size).max(1)
}

/// CloudFormation's listing page: ListStackInstances, ListStackSetOperations(Results) at their maximum.
pub const CLOUDFORMATION_PAGE: usize = 100;

/// Service-managed deployment targets for one instance operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Targets {
    /// Resolved ids: `r-xxxx` roots or `ou-xxxx-yyyyyyyy` OUs (never the `ROOT` literal).
    pub organizational_unit_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    pub account_filter_type: AccountFilterType,
}

/// A stack set's seven settings, in one shape for everything that carries them: what CreateStackSet sets and
/// UpdateStackSet replaces, what DescribeStackSet reports, the plan's actions and the simulator's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StackSetSettings {
    pub description: Option<String>,
    pub template_body: String,
    pub parameters: BTreeMap<String, String>,
    pub capabilities: BTreeSet<String>,
    /// The whole tag set (an update replaces it, as AWS does).
    pub tags: BTreeMap<String, String>,
    /// In a request, `None` leaves it as it is; from DescribeStackSet, `None` is "not reported".
    pub auto_deployment: Option<AutoDeployment>,
    /// ManagedExecution.Active, with the same meaning of `None`.
    pub managed_execution: Option<bool>,
}

/// The API's mutating calls, by name: the one list the plan's action names, the gate, the IAM table and /status's
/// reader take them from.
pub mod calls {
    pub const CREATE_STACK_SET: &str = "CreateStackSet";
    pub const UPDATE_STACK_SET: &str = "UpdateStackSet";
    pub const CREATE_STACK_INSTANCES: &str = "CreateStackInstances";
    pub const UPDATE_STACK_INSTANCES: &str = "UpdateStackInstances";
    pub const DELETE_STACK_INSTANCES: &str = "DeleteStackInstances";
    pub const DELETE_STACK_SET: &str = "DeleteStackSet";
    pub const DETECT_STACK_SET_DRIFT: &str = "DetectStackSetDrift";
    pub const CREATE_STACK: &str = "CreateStack";
    pub const UPDATE_STACK: &str = "UpdateStack";
    pub const DELETE_STACK: &str = "DeleteStack";
    pub const DETECT_STACK_DRIFT: &str = "DetectStackDrift";

    /// An action's API name. An alias, not `&'static str` written out, so serde does not take the field for one
    /// borrowed from the input (it is read through [`action_name`]).
    pub type ActionName = &'static str;

    /// Reads an action's name back as the `&'static str` stacksetd writes (the names are a fixed set: the API's
    /// mutating calls); a name this release does not know reads as `unknown`, never as an unbounded string.
    pub fn action_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
        let name = <String as serde::Deserialize>::deserialize(d)?;
        Ok(MUTATING
            .iter()
            .find(|n| **n == name)
            .copied()
            .unwrap_or("unknown"))
    }

    /// Every mutating call stacksetd makes.
    pub const MUTATING: &[&str] = &[
        CREATE_STACK_SET,
        UPDATE_STACK_SET,
        CREATE_STACK_INSTANCES,
        UPDATE_STACK_INSTANCES,
        DELETE_STACK_INSTANCES,
        DELETE_STACK_SET,
        DETECT_STACK_SET_DRIFT,
        CREATE_STACK,
        UPDATE_STACK,
        DELETE_STACK,
        DETECT_STACK_DRIFT,
    ];
}

impl StackSetSettings {
    pub fn auto_deployment_enabled(&self) -> bool {
        self.auto_deployment.as_ref().is_some_and(|a| a.enabled)
    }

    pub fn managed_execution_active(&self) -> bool {
        self.managed_execution.unwrap_or(false)
    }
}

/// The session name of the member access check's AssumeRole (visible in the member accounts' CloudTrail).
pub const ACCESS_CHECK_SESSION: &str = "stacksetd-access-check";

/// A role's ARN in an account; the partition comes from the stack set's ARN (aws, aws-cn, aws-us-gov, ...).
pub fn role_arn(partition: &str, account: &str, role_name: &str) -> String {
    format!("arn:{partition}:iam::{account}:role/{role_name}")
}

/// Everything CreateStackSet takes for a service-managed stack set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateStackSet {
    pub name: String,
    pub call_as: CallAs,
    pub settings: StackSetSettings,
    /// Passed instead of the body when it is over CloudFormation's TemplateBody limit: the staged copy of exactly
    /// these bytes (see [`Cloud::stage_template`]).
    #[serde(default)]
    pub template_url: Option<String>,
    /// Deterministic ClientRequestToken.
    pub client_token: String,
}

/// UpdateStackSet for every instance (no DeploymentTargets, no Regions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateStackSet {
    pub name: String,
    pub call_as: CallAs,
    pub settings: StackSetSettings,
    /// Send UsePreviousTemplate and UsePreviousValue for every parameter instead of the settings' template and
    /// values (AWS refuses a ManagedExecution change alongside a template change).
    pub keep_template: bool,
    /// Passed instead of the body when it is over CloudFormation's TemplateBody limit.
    #[serde(default)]
    pub template_url: Option<String>,
    pub preferences: OperationPreferences,
    pub operation_id: String,
    /// Only the instances of these targets in these Regions are updated (a staged rollout's canary): AWS marks
    /// every other instance OUTDATED when the template or parameters change, and they keep their running stacks
    /// until a later update reaches them. `None`: every instance. Never with auto-deployment settings (AWS refuses
    /// DeploymentTargets alongside AutoDeployment).
    #[serde(default)]
    pub only: Option<InstanceScope>,
}

/// Some of a stack set's instances: these targets in these Regions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceScope {
    pub targets: Targets,
    pub regions: Vec<String>,
}

/// Create/UpdateStackInstances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstancesRequest {
    pub name: String,
    pub call_as: CallAs,
    pub targets: Targets,
    pub regions: Vec<String>,
    pub preferences: OperationPreferences,
    pub operation_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteInstancesRequest {
    pub name: String,
    pub call_as: CallAs,
    pub targets: Targets,
    pub regions: Vec<String>,
    pub retain_stacks: bool,
    pub preferences: OperationPreferences,
    pub operation_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StackSetStatus {
    Active,
    Deleted,
}

/// What DescribeStackSet reports. Optional fields are ones an endpoint may not echo (moto omits several);
/// `None` means "unknown", never "empty".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedStackSet {
    pub name: String,
    pub arn: Option<String>,
    pub status: StackSetStatus,
    pub settings: StackSetSettings,
    pub permission_model: Option<String>,
    pub organizational_unit_ids: Option<Vec<String>>,
    pub regions: Option<Vec<String>>,
    /// StackSetDriftDetectionDetails: the last completed drift detection (`None` when never run or not echoed).
    #[serde(default)]
    pub drift: Option<DriftDetails>,
}

/// DescribeStackSet's StackSetDriftDetectionDetails: what the last completed DetectStackSetDrift found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftDetails {
    /// DRIFTED | IN_SYNC | NOT_CHECKED.
    pub status: String,
    /// COMPLETED | FAILED | PARTIAL_SUCCESS | IN_PROGRESS | STOPPED.
    pub detection_status: Option<String>,
    pub last_check: Option<std::time::SystemTime>,
    pub total_instances: u32,
    pub drifted_instances: u32,
}

/// DetectStackSetDrift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectDriftRequest {
    pub name: String,
    pub call_as: CallAs,
    pub preferences: OperationPreferences,
    pub operation_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceStatus {
    Current,
    Outdated,
    Inoperable,
    Other(String),
}

impl InstanceStatus {
    pub fn as_str(&self) -> &str {
        match self {
            InstanceStatus::Current => "CURRENT",
            InstanceStatus::Outdated => "OUTDATED",
            InstanceStatus::Inoperable => "INOPERABLE",
            InstanceStatus::Other(s) => s,
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "CURRENT" => InstanceStatus::Current,
            "OUTDATED" => InstanceStatus::Outdated,
            "INOPERABLE" => InstanceStatus::Inoperable,
            other => InstanceStatus::Other(other.to_string()),
        }
    }
}

/// StackInstanceDetailedStatus. Kept as AWS's string (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED, INOPERABLE,
/// SKIPPED_SUSPENDED_ACCOUNT, FAILED_IMPORT) because new values appear without notice.
pub type DetailedStatus = String;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackInstance {
    pub account: String,
    pub region: String,
    pub organizational_unit_id: Option<String>,
    pub status: InstanceStatus,
    pub detailed_status: Option<DetailedStatus>,
    pub status_reason: Option<String>,
    pub drift_status: Option<String>,
    pub last_operation_id: Option<String>,
}

impl StackInstance {
    /// Still being worked on by an operation (PENDING or RUNNING).
    pub fn in_progress(&self) -> bool {
        matches!(
            self.detailed_status.as_deref(),
            Some("PENDING") | Some("RUNNING")
        )
    }
    /// Skipped because the account is suspended: AWS does not count it as a failure.
    pub fn skipped_suspended(&self) -> bool {
        self.detailed_status.as_deref() == Some("SKIPPED_SUSPENDED_ACCOUNT")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperationAction {
    Create,
    Update,
    Delete,
    DetectDrift,
}

impl OperationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationAction::Create => "CREATE",
            OperationAction::Update => "UPDATE",
            OperationAction::Delete => "DELETE",
            OperationAction::DetectDrift => "DETECT_DRIFT",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperationStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Stopping,
    Stopped,
}

impl OperationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationStatus::Queued => "QUEUED",
            OperationStatus::Running => "RUNNING",
            OperationStatus::Succeeded => "SUCCEEDED",
            OperationStatus::Failed => "FAILED",
            OperationStatus::Stopping => "STOPPING",
            OperationStatus::Stopped => "STOPPED",
        }
    }
    /// QUEUED, RUNNING and STOPPING still hold (or will take) the stack set's operation slot.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            OperationStatus::Queued | OperationStatus::Running | OperationStatus::Stopping
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub action: OperationAction,
    pub status: OperationStatus,
    pub status_reason: Option<String>,
    /// StatusDetails.FailedStackInstancesCount, when the endpoint reports it.
    pub failed_instances: Option<u32>,
    pub preferences: Option<OperationPreferences>,
    /// EndTimestamp: when it ended (`None` while it runs, or when the endpoint does not report it). A staged
    /// rollout's bake counts from its canary operation's end.
    #[serde(default)]
    pub ended: Option<std::time::SystemTime>,
}

/// One row of ListStackSetAutoDeploymentTargets: an OU and the Regions automatic deployment covers for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoDeploymentTarget {
    pub organizational_unit_id: String,
    pub regions: Vec<String>,
}

pub use crate::error::OperationResult;

/// The TemplateURL of a staged object: virtual-hosted style in the bucket's Region, with the versionId when the
/// bucket keeps versions (then the URL names exactly the uploaded bytes, even if the key is overwritten).
pub fn staged_url(bucket: &str, region: &str, key: &str, version: Option<&str>) -> String {
    let host = if region.is_empty() {
        format!("{bucket}.s3.amazonaws.com")
    } else {
        format!("{bucket}.s3.{region}.amazonaws.com")
    };
    let mut url =
        url::Url::parse(&format!("https://{host}/")).expect("a bucket name makes a valid host");
    url.set_path(key);
    if let Some(v) = version.filter(|v| !v.is_empty() && *v != "null") {
        url.query_pairs_mut().append_pair("versionId", v);
    }
    url.to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationInfo {
    pub id: String,
    pub management_account_id: String,
    pub feature_set: String,
}

/// A root or an organizational unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgNode {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    /// ACTIVE | SUSPENDED | PENDING_ACTIVATION | PENDING_CLOSURE | CLOSED (Account.State).
    pub state: String,
}

impl Account {
    pub fn is_active(&self) -> bool {
        self.state == "ACTIVE"
    }
}

/// Which kind of policy document an Access Analyzer check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PolicyKind {
    /// An identity policy (what a role may do): policy type IDENTITY_POLICY.
    Identity,
    /// A role's trust policy: RESOURCE_POLICY of resource type AWS::IAM::AssumeRolePolicyDocument.
    Trust,
}

/// Access Analyzer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessVerdict {
    pub pass: bool,
    /// Why it failed (Access Analyzer's reasons).
    pub reasons: Vec<String>,
}

/// A plain CloudFormation stack, as DescribeStacks reports it: the copy `spec.managementAccount` keeps in the
/// management account, which a service-managed stack set never deploys to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedStack {
    pub name: String,
    pub region: String,
    /// The stack's ARN: deletions name it, so only the stack whose tags were read is ever deleted.
    pub stack_id: String,
    /// StackStatus (CREATE_COMPLETE, UPDATE_IN_PROGRESS, ROLLBACK_COMPLETE, ...).
    pub status: String,
    pub status_reason: Option<String>,
    /// As reported: a NoEcho parameter's value is `****`.
    pub parameters: BTreeMap<String, String>,
    pub capabilities: BTreeSet<String>,
    pub tags: BTreeMap<String, String>,
    /// LastUpdatedTime, else CreationTime: the template is read again (GetTemplate) only when it moves.
    pub last_changed: Option<std::time::SystemTime>,
    /// RoleARN: the service role CloudFormation acts as for this stack (kept for every later operation that
    /// names none).
    pub role_arn: Option<String>,
    /// DriftInformation.StackDriftStatus (DRIFTED, IN_SYNC, NOT_CHECKED, UNKNOWN).
    pub drift_status: Option<String>,
    pub last_drift_check: Option<std::time::SystemTime>,
}

impl ObservedStack {
    /// CloudFormation is working on it (a creation, update, rollback or deletion); REVIEW_IN_PROGRESS is not
    /// work: it waits for a person's change set.
    pub fn in_progress(&self) -> bool {
        self.status.ends_with("_IN_PROGRESS") && self.status != "REVIEW_IN_PROGRESS"
    }
    /// It exists with resources an update can change.
    pub fn usable(&self) -> bool {
        matches!(
            self.status.as_str(),
            "CREATE_COMPLETE"
                | "UPDATE_COMPLETE"
                | "UPDATE_ROLLBACK_COMPLETE"
                | "IMPORT_COMPLETE"
                | "IMPORT_ROLLBACK_COMPLETE"
        )
    }
    /// A creation that failed, or a deletion that did: CloudFormation's only way on is DeleteStack.
    pub fn dead(&self) -> bool {
        matches!(
            self.status.as_str(),
            "CREATE_FAILED" | "ROLLBACK_COMPLETE" | "ROLLBACK_FAILED" | "DELETE_FAILED"
        )
    }
}

/// CreateStack or UpdateStack: everything a plain stack takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackRequest {
    pub name: String,
    pub region: String,
    pub template_body: String,
    /// Passed instead of the body when it is over CloudFormation's TemplateBody limit.
    #[serde(default)]
    pub template_url: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub capabilities: BTreeSet<String>,
    /// The whole tag set.
    pub tags: BTreeMap<String, String>,
    /// RoleARN: the service role CloudFormation acts as (else the caller's own credentials).
    pub role_arn: Option<String>,
    /// Deterministic ClientRequestToken.
    pub client_token: String,
}

/// DeleteStack, by the stack's ARN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteStackRequest {
    pub stack_id: String,
    pub region: String,
    pub role_arn: Option<String>,
    pub client_token: String,
}

/// The answer of a backend that does not have a call.
fn not_implemented(operation: &'static str) -> Error {
    Error::Aws {
        service: "cloudformation",
        operation,
        kind: crate::error::AwsErrorKind::Other,
        code: "NotImplemented".into(),
        message: format!("this backend does not implement {operation}"),
    }
}

/// Everything stacksetd asks of AWS. Implementations map every failure to [`Error`] with a static label,
/// and page through listings completely.
#[async_trait]
pub trait Cloud: Send + Sync + 'static {
    /// STS GetCallerIdentity: the account of the credentials in use.
    async fn caller_account(&self) -> Result<String>;
    /// Organizations DescribeOrganization.
    async fn describe_organization(&self) -> Result<OrganizationInfo>;
    /// Organizations ListRoots.
    async fn list_roots(&self) -> Result<Vec<OrgNode>>;
    /// Organizations ListOrganizationalUnitsForParent (direct children only).
    async fn list_organizational_units(&self, parent_id: &str) -> Result<Vec<OrgNode>>;
    /// Organizations ListAccountsForParent (direct children only).
    async fn list_accounts(&self, parent_id: &str) -> Result<Vec<Account>>;
    /// Organizations ListDelegatedAdministrators for a service principal: the registered account ids.
    async fn list_delegated_administrators(&self, service_principal: &str) -> Result<Vec<String>>;
    /// Organizations ListAWSServiceAccessForOrganization: the service principals with trusted access.
    async fn list_aws_service_access(&self) -> Result<Vec<String>>;
    /// CloudFormation DescribeOrganizationsAccess: ENABLED, DISABLED or DISABLED_PERMANENTLY.
    async fn describe_organizations_access(&self, call_as: CallAs) -> Result<String>;
    /// CloudFormation ActivateOrganizationsAccess (the StackSets console's "Enable trusted access").
    async fn activate_organizations_access(&self) -> Result<()>;

    /// ListStackSets: the ACTIVE service-managed stack sets' names, every page.
    async fn list_stack_sets(&self, call_as: CallAs) -> Result<Vec<String>>;
    /// DescribeStackSet; `Ok(None)` for StackSetNotFoundException.
    async fn describe_stack_set(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> Result<Option<ObservedStackSet>>;
    /// ListStackInstances, every page (100 a page).
    async fn list_stack_instances(&self, name: &str, call_as: CallAs)
    -> Result<Vec<StackInstance>>;
    /// ListStackInstances filtered by StackInstanceRegion, every page. Only instances of `region` are returned,
    /// whatever the endpoint does with the filter. The default lists everything and keeps `region`'s (correct,
    /// not cheaper); backends that can filter do.
    async fn list_stack_instances_in(
        &self,
        name: &str,
        call_as: CallAs,
        region: &str,
    ) -> Result<Vec<StackInstance>> {
        let mut instances = self.list_stack_instances(name, call_as).await?;
        instances.retain(|i| i.region == region);
        Ok(instances)
    }
    /// ListStackSetOperations, every page up to `limit` entries (eventually consistent; AWS documents no order, so
    /// callers look at all of them; sorted newest first by creation time only for stable output).
    async fn list_operations(
        &self,
        name: &str,
        call_as: CallAs,
        limit: usize,
    ) -> Result<Vec<Operation>>;
    /// DescribeStackSetOperation (strongly consistent).
    async fn describe_operation(
        &self,
        name: &str,
        operation_id: &str,
        call_as: CallAs,
    ) -> Result<Operation>;
    /// ListStackSetAutoDeploymentTargets, every page: the OU x Regions that auto-deploy. The default answers
    /// that the backend does not have the call (the check is then reported as not verified, never a failure).
    async fn list_auto_deployment_targets(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> Result<Vec<AutoDeploymentTarget>> {
        let _ = (name, call_as);
        Err(not_implemented("ListStackSetAutoDeploymentTargets"))
    }
    /// ListStackSetOperationResults, every page.
    async fn list_operation_results(
        &self,
        name: &str,
        operation_id: &str,
        call_as: CallAs,
    ) -> Result<Vec<OperationResult>>;

    async fn create_stack_set(&self, request: &CreateStackSet) -> Result<()>;
    /// Returns the OperationId.
    async fn update_stack_set(&self, request: &UpdateStackSet) -> Result<String>;
    async fn create_stack_instances(&self, request: &InstancesRequest) -> Result<String>;
    async fn update_stack_instances(&self, request: &InstancesRequest) -> Result<String>;
    async fn delete_stack_instances(&self, request: &DeleteInstancesRequest) -> Result<String>;
    async fn delete_stack_set(&self, name: &str, call_as: CallAs) -> Result<()>;
    /// DetectStackSetDrift: an operation (it takes the stack set's slot). Returns the OperationId.
    async fn detect_stack_set_drift(&self, request: &DetectDriftRequest) -> Result<String>;

    /// DescribeStacks of one stack by name in `region` (the caller's own account); `Ok(None)` when there is none.
    async fn describe_stack(&self, name: &str, region: &str) -> Result<Option<ObservedStack>> {
        let _ = (name, region);
        Err(not_implemented("DescribeStacks"))
    }
    /// GetTemplate (TemplateStage Original): the body the stack was last created or updated with.
    async fn get_stack_template(&self, stack_id: &str, region: &str) -> Result<String> {
        let _ = (stack_id, region);
        Err(not_implemented("GetTemplate"))
    }
    async fn create_stack(&self, request: &StackRequest) -> Result<()> {
        let _ = request;
        Err(not_implemented("CreateStack"))
    }
    /// UpdateStack. `Ok(false)` is CloudFormation's "No updates are to be performed": the stack already is as
    /// asked, in what CloudFormation compares.
    async fn update_stack(&self, request: &StackRequest) -> Result<bool> {
        let _ = request;
        Err(not_implemented("UpdateStack"))
    }
    async fn delete_stack(&self, request: &DeleteStackRequest) -> Result<()> {
        let _ = request;
        Err(not_implemented("DeleteStack"))
    }
    /// DetectStackDrift: its result shows in DescribeStacks' DriftInformation once it completes.
    async fn detect_stack_drift(&self, stack_id: &str, region: &str) -> Result<()> {
        let _ = (stack_id, region);
        Err(not_implemented("DetectStackDrift"))
    }

    /// S3 PutObject of a template's exact bytes into the operator's staging bucket; returns the TemplateURL to
    /// pass CloudFormation (with the object's versionId when the bucket is versioned, so the URL names exactly
    /// these bytes).
    async fn stage_template(&self, bucket: &str, key: &str, body: &str) -> Result<String>;

    /// IAM Access Analyzer CheckNoNewAccess: does `new` grant access `existing` did not?
    async fn check_no_new_access(
        &self,
        existing: &str,
        new: &str,
        kind: PolicyKind,
    ) -> Result<AccessVerdict>;

    /// STS AssumeRole into `role_arn` from the credentials in use, to prove the role can be reached (the access
    /// check). The credentials returned are dropped at once.
    async fn assume_role(&self, role_arn: &str, session_name: &str) -> Result<()>;

    /// Every call this implementation made, for metrics and call budgets.
    fn calls(&self) -> &CallCounter;

    /// A cloud acting as an assumed role (`spec.credentials`) assumes it again when its session is about to
    /// end, and says why it cannot; the daemon's own identity has nothing to do. Called before every pass, so a
    /// role that can no longer be assumed stalls the deployment with that reason rather than failing each call.
    async fn refresh_credentials(&self) -> Result<()> {
        Ok(())
    }
}

/// The role a deployment's calls run as (`spec.credentials`, defaults applied).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleToAssume {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
    pub duration: std::time::Duration,
}

impl RoleToAssume {
    pub fn of(deployment: &crate::desired::Deployment) -> Option<RoleToAssume> {
        use crate::desired::credentials::{DEFAULT_DURATION_SECONDS, default_session_name};
        let c = deployment.spec.credentials.as_ref()?;
        Some(RoleToAssume {
            role_arn: c.role_arn.clone(),
            external_id: c.external_id.clone(),
            session_name: c
                .session_name
                .clone()
                .unwrap_or_else(|| default_session_name(deployment.name())),
            duration: std::time::Duration::from_secs(u64::from(
                c.duration_seconds.unwrap_or(DEFAULT_DURATION_SECONDS),
            )),
        })
    }
}

/// Makes clouds that act as other identities, from the daemon's own credentials.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// A cloud acting as `role`. The role is assumed here, so a failure names it now rather than on the first
    /// call; the cloud assumes it again before each session ends.
    async fn assume(&self, role: &RoleToAssume) -> Result<Arc<dyn Cloud>>;
}

/// Counts API calls by (service, operation, outcome). Both implementations record every call here; the metrics
/// module exports it as `stacksetd_aws_requests_total` and benchmarks read it to check the call budget.
#[derive(Debug, Default)]
pub struct CallCounter {
    counts: std::sync::Mutex<BTreeMap<CallKey, u64>>,
}

/// (service, operation, outcome), e.g. ("cloudformation", "DescribeStackSet", "ok").
pub type CallKey = (&'static str, &'static str, &'static str);

impl CallCounter {
    pub fn record(&self, service: &'static str, operation: &'static str, outcome: &'static str) {
        *self
            .counts
            .lock()
            .expect("call counter poisoned")
            .entry((service, operation, outcome))
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<CallKey, u64> {
        self.counts.lock().expect("call counter poisoned").clone()
    }

    /// Calls per operation, all services and outcomes summed.
    pub fn by_operation(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for ((_, operation, _), n) in self.snapshot() {
            *out.entry(operation).or_default() += n;
        }
        out
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}
