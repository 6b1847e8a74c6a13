//! The desired-state contract (docs/reference.md, "Desired state"): the typed shape of one `StackSetDeployment`
//! document. Field names follow AWS's API names in camelCase so an operator can map them to the console and docs.
//! Parsing and validation live in `parse.rs` and `validate.rs`; this file is only the shape and its defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "stacksetd.dev/v1alpha1";
pub const KIND: &str = "StackSetDeployment";

/// One deployment: one stack set kept converged. `metadata.name` is the metric label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployment {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub stack_set_name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub management_account_id: String,
    #[serde(default)]
    pub call_as: CallAs,
    pub template: TemplateSpec,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    #[serde(default = "default_capabilities")]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub deployment_targets: DeploymentTargets,
    pub regions: Vec<String>,
    #[serde(default)]
    pub auto_deployment: AutoDeployment,
    #[serde(default)]
    pub operation_preferences: OperationPreferences,
    #[serde(default)]
    pub managed_execution: ManagedExecution,
    #[serde(default)]
    pub drift_detection: Option<DriftDetection>,
    #[serde(default = "yes")]
    pub repair_coverage: bool,
    #[serde(default)]
    pub repair_inoperable: bool,
    #[serde(default)]
    pub access_check: Option<AccessCheck>,
    /// Staged rollout: a new template version or parameter change reaches the canary accounts first, is
    /// verified and baked, then the rest (`controller/rollout.rs`).
    #[serde(default)]
    pub rollout: Option<Rollout>,
    /// Run every call of this deployment as this role (another organization's management account, or a role
    /// narrower than the daemon's own). Without it the daemon's own credentials are used.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Also keep a plain stack of the same template in the management account (a service-managed stack set
    /// never deploys there).
    #[serde(default)]
    pub management_account: Option<ManagementAccount>,
    #[serde(default)]
    pub suspend: bool,
    #[serde(default)]
    pub ensure: Ensure,
    /// Take over an existing stack set of this name that stacksetd did not create (it gets the
    /// `stacksetd.dev/deployment` tag). Without it such a stack set is reported and left alone.
    #[serde(default)]
    pub adopt: bool,
    /// Filled by the loader, not read from the file: the stack set of each deployment named in
    /// `autoDeployment.dependsOn` (metadata.name -> stackSetName), for the pass to resolve to an ARN.
    #[serde(skip)]
    pub dependency_stack_sets: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// A service-managed stack set that creates named IAM roles needs CAPABILITY_NAMED_IAM; that is the vendor's case.
fn default_capabilities() -> Vec<Capability> {
    vec![Capability::CapabilityNamedIam]
}

#[derive(Debug, Clone, Copy, PartialEq, Hash, Eq, Default, Serialize, Deserialize)]
pub enum CallAs {
    #[default]
    #[serde(rename = "SELF")]
    SelfAccount,
    #[serde(rename = "DELEGATED_ADMIN")]
    DelegatedAdmin,
}

impl CallAs {
    pub fn as_str(self) -> &'static str {
        match self {
            CallAs::SelfAccount => "SELF",
            CallAs::DelegatedAdmin => "DELEGATED_ADMIN",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateSpec {
    /// The vendor catalog's policy level; resolves to the catalog URL unless `url` is given.
    #[serde(default)]
    pub policy: Option<PolicyLevel>,
    /// Any template URL: https, http only to loopback, or file://.
    #[serde(default)]
    pub url: Option<String>,
    /// Pin: only a template whose bytes hash to this digest is ever applied.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub updates: UpdatePolicy,
    #[serde(default)]
    pub allow_permission_widening: bool,
    /// An S3 bucket of the operator's, in the management account: templates over CloudFormation's 51,200-byte
    /// TemplateBody limit are uploaded there under `stacksetd/<sha256>.<ext>` and passed as TemplateURL.
    #[serde(default)]
    pub staging_bucket: Option<String>,
    /// Also ask IAM Access Analyzer (CheckNoNewAccess) about every changed policy document; a FAIL holds the
    /// version. Each check is a charged API call.
    #[serde(default)]
    pub access_analyzer: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PolicyLevel {
    DataOnly,
    DataAndScheduling,
}

impl PolicyLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyLevel::DataOnly => "DataOnly",
            PolicyLevel::DataAndScheduling => "DataAndScheduling",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum UpdatePolicy {
    #[default]
    Auto,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Capability {
    CapabilityIam,
    CapabilityNamedIam,
    CapabilityAutoExpand,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::CapabilityIam => "CAPABILITY_IAM",
            Capability::CapabilityNamedIam => "CAPABILITY_NAMED_IAM",
            Capability::CapabilityAutoExpand => "CAPABILITY_AUTO_EXPAND",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentTargets {
    /// `ROOT` (the organization root) or `ou-xxxx-yyyyyyyy` / `r-xxxx` ids.
    pub organizational_unit_ids: Vec<String>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub account_filter_type: AccountFilterType,
}

/// The literal an operator writes for "the whole organization"; resolved to the root id (r-xxxx) at run time.
pub const ROOT: &str = "ROOT";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountFilterType {
    #[default]
    None,
    Intersection,
    Difference,
    Union,
}

impl AccountFilterType {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountFilterType::None => "NONE",
            AccountFilterType::Intersection => "INTERSECTION",
            AccountFilterType::Difference => "DIFFERENCE",
            AccountFilterType::Union => "UNION",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoDeployment {
    pub enabled: bool,
    #[serde(default)]
    pub retain_stacks_on_account_removal: bool,
    /// Stack sets whose automatic deployments finish first (AWS's DependsOn). In the desired state: other
    /// deployments' names or stack set ARNs (`desired::depends_on`); in AWS's requests and answers: ARNs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// The vendor guide's console wizard settings: automatic deployment on, account removal deletes stacks.
impl Default for AutoDeployment {
    fn default() -> Self {
        AutoDeployment {
            enabled: true,
            retain_stacks_on_account_removal: false,
            depends_on: Vec::new(),
        }
    }
}

/// AWS's StackSetOperationPreferences. Absent fields are not sent, so AWS's own defaults apply
/// (failure tolerance 0, max concurrency 1, STRICT_FAILURE_TOLERANCE).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationPreferences {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_tolerance_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_tolerance_percentage: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_percentage: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_concurrency_type: Option<RegionConcurrencyType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub region_order: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_mode: Option<ConcurrencyMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RegionConcurrencyType {
    Sequential,
    Parallel,
}

impl RegionConcurrencyType {
    pub fn as_str(self) -> &'static str {
        match self {
            RegionConcurrencyType::Sequential => "SEQUENTIAL",
            RegionConcurrencyType::Parallel => "PARALLEL",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConcurrencyMode {
    StrictFailureTolerance,
    SoftFailureTolerance,
}

impl ConcurrencyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyMode::StrictFailureTolerance => "STRICT_FAILURE_TOLERANCE",
            ConcurrencyMode::SoftFailureTolerance => "SOFT_FAILURE_TOLERANCE",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedExecution {
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriftDetection {
    pub interval: HumanDuration,
    #[serde(default)]
    pub remediate: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessCheck {
    pub role_name: String,
}

/// `spec.rollout`: which accounts see a new version first, how long it bakes there, and who promotes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    pub canary: Canary,
    /// How long the canary instances run the new version (every one CURRENT, the access check passed) before the
    /// rest get it; 0s to 7 days.
    #[serde(default)]
    pub bake: HumanDuration,
    #[serde(default)]
    pub promote: Promote,
}

/// The canary accounts: these accounts and every targeted account under these OUs (one or both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Canary {
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub organizational_unit_ids: Vec<String>,
}

/// Who lets a baked version reach the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Promote {
    /// stacksetd, once the bake has passed.
    #[default]
    Auto,
    /// An operator: `stacksetd promote NAME` (or pinning the version's digest) after the bake.
    Manual,
}

/// `spec.credentials`: the role every call of the deployment runs as, assumed (sts:AssumeRole) from the
/// daemon's own credentials and refreshed before it expires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    pub role_arn: String,
    /// The role's trust policy condition `sts:ExternalId` (never logged nor shown on /status).
    #[serde(default)]
    pub external_id: Option<String>,
    /// The session name in the role's CloudTrail entries (default `stacksetd-<deployment>`).
    #[serde(default)]
    pub session_name: Option<String>,
    /// How long each assumed session lasts (900 to 43,200; default 3,600). stacksetd assumes the role again
    /// before it ends.
    #[serde(default)]
    pub duration_seconds: Option<u32>,
}

/// `spec.managementAccount`: the plain stack stacksetd keeps in the management account (named like the stack
/// set, in the deployment's first Region, with the same checked template, parameters and tags).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagementAccount {
    /// `true`: keep the stack. `false`: delete the stack stacksetd made there (after `deletion_delay`).
    pub deploy: bool,
    /// The CloudFormation service role (RoleARN) the stack's changes run as, in the management account: with
    /// it, stacksetd's own identity needs iam:PassRole on that role instead of the IAM permissions the template's
    /// resources take.
    #[serde(default)]
    pub service_role_arn: Option<String>,
}

impl Spec {
    /// The capabilities as the API spells them, in one set (what the plan compares and sends).
    pub fn capability_names(&self) -> std::collections::BTreeSet<String> {
        self.capabilities
            .iter()
            .map(|c| c.as_str().to_string())
            .collect()
    }

    /// The management-account stack is wanted: `managementAccount.deploy: true` and `ensure: Present`.
    pub fn wants_management_stack(&self) -> bool {
        self.ensure == Ensure::Present && self.management_account.as_ref().is_some_and(|m| m.deploy)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Ensure {
    #[default]
    Present,
    Absent,
}

pub use crate::input::HumanDuration;
