//! Translation between the port's types and the SDK's: request pieces going out, observations coming back.
//! Fields an endpoint leaves out stay `None` (moto omits several), so the controller can tell "unknown" from
//! "empty". Every SDK enum has an `Unknown` variant, hence the catch-alls.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_cloudformation::types as cfn;
use aws_sdk_organizations::types as orgs;

use crate::desired::model::{ConcurrencyMode, RegionConcurrencyType};
use crate::{
    Account, AccountFilterType, AutoDeployment, CallAs, DriftDetails, InstanceStatus,
    ObservedStackSet, Operation, OperationAction, OperationPreferences, OperationResult,
    OperationStatus, OrgNode, OrganizationInfo, StackInstance, StackSetSettings, StackSetStatus,
    Targets,
};

pub(super) fn call_as(value: CallAs) -> cfn::CallAs {
    match value {
        CallAs::SelfAccount => cfn::CallAs::SelfValue,
        CallAs::DelegatedAdmin => cfn::CallAs::DelegatedAdmin,
    }
}

fn account_filter_type(value: AccountFilterType) -> cfn::AccountFilterType {
    match value {
        AccountFilterType::None => cfn::AccountFilterType::None,
        AccountFilterType::Intersection => cfn::AccountFilterType::Intersection,
        AccountFilterType::Difference => cfn::AccountFilterType::Difference,
        AccountFilterType::Union => cfn::AccountFilterType::Union,
    }
}

/// Counts and percentages are validated small numbers; saturate rather than wrap if one ever is not.
fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn to_u32(value: i32) -> Option<u32> {
    u32::try_from(value).ok()
}

/// StackSetOperationPreferences with only the fields the operator set, so AWS's defaults apply to the rest.
/// `None` when nothing is set: the request then carries no preferences at all.
pub(super) fn preferences(
    prefs: &OperationPreferences,
) -> Option<cfn::StackSetOperationPreferences> {
    if *prefs == OperationPreferences::default() {
        return None;
    }
    let mut builder = cfn::StackSetOperationPreferences::builder()
        .set_failure_tolerance_count(prefs.failure_tolerance_count.map(to_i32))
        .set_failure_tolerance_percentage(prefs.failure_tolerance_percentage.map(to_i32))
        .set_max_concurrent_count(prefs.max_concurrent_count.map(to_i32))
        .set_max_concurrent_percentage(prefs.max_concurrent_percentage.map(to_i32));
    if let Some(kind) = prefs.region_concurrency_type {
        builder = builder.region_concurrency_type(match kind {
            RegionConcurrencyType::Sequential => cfn::RegionConcurrencyType::Sequential,
            RegionConcurrencyType::Parallel => cfn::RegionConcurrencyType::Parallel,
        });
    }
    if !prefs.region_order.is_empty() {
        builder = builder.set_region_order(Some(prefs.region_order.clone()));
    }
    if let Some(mode) = prefs.concurrency_mode {
        builder = builder.concurrency_mode(match mode {
            ConcurrencyMode::StrictFailureTolerance => cfn::ConcurrencyMode::StrictFailureTolerance,
            ConcurrencyMode::SoftFailureTolerance => cfn::ConcurrencyMode::SoftFailureTolerance,
        });
    }
    Some(builder.build())
}

/// The preferences an operation ran with, as AWS reports them. Values this version does not know are dropped.
pub(super) fn preferences_from(prefs: &cfn::StackSetOperationPreferences) -> OperationPreferences {
    OperationPreferences {
        failure_tolerance_count: prefs.failure_tolerance_count.and_then(to_u32),
        failure_tolerance_percentage: prefs.failure_tolerance_percentage.and_then(to_u32),
        max_concurrent_count: prefs.max_concurrent_count.and_then(to_u32),
        max_concurrent_percentage: prefs.max_concurrent_percentage.and_then(to_u32),
        region_concurrency_type: match prefs.region_concurrency_type {
            Some(cfn::RegionConcurrencyType::Sequential) => Some(RegionConcurrencyType::Sequential),
            Some(cfn::RegionConcurrencyType::Parallel) => Some(RegionConcurrencyType::Parallel),
            _ => None,
        },
        region_order: prefs.region_order.clone().unwrap_or_default(),
        concurrency_mode: match prefs.concurrency_mode {
            Some(cfn::ConcurrencyMode::StrictFailureTolerance) => {
                Some(ConcurrencyMode::StrictFailureTolerance)
            }
            Some(cfn::ConcurrencyMode::SoftFailureTolerance) => {
                Some(ConcurrencyMode::SoftFailureTolerance)
            }
            _ => None,
        },
    }
}

pub(super) fn deployment_targets(targets: &Targets) -> cfn::DeploymentTargets {
    let accounts = (!targets.accounts.is_empty()).then(|| targets.accounts.clone());
    cfn::DeploymentTargets::builder()
        .set_organizational_unit_ids(Some(targets.organizational_unit_ids.clone()))
        .set_accounts(accounts)
        .account_filter_type(account_filter_type(targets.account_filter_type))
        .build()
}

pub(super) fn auto_deployment(value: &AutoDeployment) -> cfn::AutoDeployment {
    // DependsOn only when there is one: whether an empty list clears it is not documented (the plan never
    // needs to: see plan::ordering's note on dependsOn).
    cfn::AutoDeployment::builder()
        .enabled(value.enabled)
        .retain_stacks_on_account_removal(value.retain_stacks_on_account_removal)
        .set_depends_on((!value.depends_on.is_empty()).then(|| value.depends_on.clone()))
        .build()
}

pub(super) fn managed_execution(active: bool) -> cfn::ManagedExecution {
    cfn::ManagedExecution::builder().active(active).build()
}

pub(super) fn tags(tags: &BTreeMap<String, String>) -> Vec<cfn::Tag> {
    tags.iter()
        .map(|(key, value)| cfn::Tag::builder().key(key).value(value).build())
        .collect()
}

pub(super) fn capabilities(capabilities: &BTreeSet<String>) -> Vec<cfn::Capability> {
    capabilities
        .iter()
        .map(|c| cfn::Capability::from(c.as_str()))
        .collect()
}

/// The parameters with their values, or each with UsePreviousValue (`keep`: the stack set's current values).
pub(super) fn parameters(parameters: &BTreeMap<String, String>, keep: bool) -> Vec<cfn::Parameter> {
    parameters
        .iter()
        .map(|(key, value)| {
            let builder = cfn::Parameter::builder().parameter_key(key);
            if keep {
                builder.use_previous_value(true)
            } else {
                builder.parameter_value(value)
            }
            .build()
        })
        .collect()
}

/// DescribeStackSet's stack set; `None` for a DELETED one (it no longer exists for our purposes).
pub(super) fn observed_stack_set(
    set: cfn::StackSet,
    requested_name: &str,
) -> Option<ObservedStackSet> {
    let status = match set.status {
        Some(cfn::StackSetStatus::Deleted) => return None,
        // ACTIVE, or a status this version does not know: the stack set exists.
        _ => StackSetStatus::Active,
    };
    Some(ObservedStackSet {
        name: set
            .stack_set_name
            .unwrap_or_else(|| requested_name.to_string()),
        arn: set.stack_set_arn,
        status,
        settings: StackSetSettings {
            description: set.description,
            template_body: set.template_body.unwrap_or_default(),
            parameters: set
                .parameters
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| Some((p.parameter_key?, p.parameter_value.unwrap_or_default())))
                .collect(),
            capabilities: set
                .capabilities
                .unwrap_or_default()
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            tags: set
                .tags
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
                .collect(),
            auto_deployment: set.auto_deployment.map(|a| {
                let mut depends_on = a.depends_on.unwrap_or_default();
                depends_on.sort();
                AutoDeployment {
                    enabled: a.enabled.unwrap_or(false),
                    retain_stacks_on_account_removal: a
                        .retain_stacks_on_account_removal
                        .unwrap_or(false),
                    depends_on,
                }
            }),
            managed_execution: set.managed_execution.and_then(|m| m.active),
        },
        permission_model: set.permission_model.map(|m| m.as_str().to_string()),
        organizational_unit_ids: set.organizational_unit_ids,
        regions: set.regions,
        drift: set
            .stack_set_drift_detection_details
            .and_then(drift_details),
    })
}

fn drift_details(details: cfn::StackSetDriftDetectionDetails) -> Option<DriftDetails> {
    Some(DriftDetails {
        status: details.drift_status?.as_str().to_string(),
        detection_status: details
            .drift_detection_status
            .map(|s| s.as_str().to_string()),
        last_check: details
            .last_drift_check_timestamp
            .and_then(|t| std::time::SystemTime::try_from(t).ok()),
        total_instances: to_u32(details.total_stack_instances_count.unwrap_or(0)).unwrap_or(0),
        drifted_instances: to_u32(details.drifted_stack_instances_count.unwrap_or(0)).unwrap_or(0),
    })
}

pub(super) fn stack_instance(summary: cfn::StackInstanceSummary) -> StackInstance {
    StackInstance {
        account: summary.account.unwrap_or_default(),
        region: summary.region.unwrap_or_default(),
        organizational_unit_id: summary.organizational_unit_id,
        status: summary
            .status
            .map(|s| InstanceStatus::parse(s.as_str()))
            .unwrap_or_else(|| InstanceStatus::Other(String::new())),
        detailed_status: summary
            .stack_instance_status
            .and_then(|s| s.detailed_status)
            .map(|d| d.as_str().to_string()),
        status_reason: summary.status_reason,
        drift_status: summary.drift_status.map(|d| d.as_str().to_string()),
        last_operation_id: summary.last_operation_id,
    }
}

fn operation_action(action: Option<&cfn::StackSetOperationAction>) -> Option<OperationAction> {
    match action? {
        cfn::StackSetOperationAction::Create => Some(OperationAction::Create),
        cfn::StackSetOperationAction::Update => Some(OperationAction::Update),
        cfn::StackSetOperationAction::Delete => Some(OperationAction::Delete),
        cfn::StackSetOperationAction::DetectDrift => Some(OperationAction::DetectDrift),
        _ => None,
    }
}

fn operation_status(status: Option<&cfn::StackSetOperationStatus>) -> Option<OperationStatus> {
    match status? {
        cfn::StackSetOperationStatus::Queued => Some(OperationStatus::Queued),
        cfn::StackSetOperationStatus::Running => Some(OperationStatus::Running),
        cfn::StackSetOperationStatus::Succeeded => Some(OperationStatus::Succeeded),
        cfn::StackSetOperationStatus::Failed => Some(OperationStatus::Failed),
        cfn::StackSetOperationStatus::Stopping => Some(OperationStatus::Stopping),
        cfn::StackSetOperationStatus::Stopped => Some(OperationStatus::Stopped),
        _ => None,
    }
}

/// Why an operation could not be converted: the caller decides whether that is fatal.
#[derive(Debug)]
pub(super) struct Unrecognised(pub String);

/// The fields shared by StackSetOperation and StackSetOperationSummary.
struct OperationParts<'a> {
    id: Option<String>,
    action: Option<&'a cfn::StackSetOperationAction>,
    status: Option<&'a cfn::StackSetOperationStatus>,
    status_reason: Option<String>,
    details: Option<&'a cfn::StackSetOperationStatusDetails>,
    preferences: Option<&'a cfn::StackSetOperationPreferences>,
    ended: Option<&'a aws_smithy_types::DateTime>,
}

fn operation_from(parts: OperationParts<'_>) -> Result<Operation, Unrecognised> {
    let id = parts
        .id
        .ok_or_else(|| Unrecognised("an operation without OperationId".to_string()))?;
    let action = operation_action(parts.action).ok_or_else(|| {
        Unrecognised(format!(
            "operation {id} has an unrecognised Action {:?}",
            parts.action.map(|a| a.as_str())
        ))
    })?;
    let status = operation_status(parts.status).ok_or_else(|| {
        Unrecognised(format!(
            "operation {id} has an unrecognised Status {:?}",
            parts.status.map(|s| s.as_str())
        ))
    })?;
    Ok(Operation {
        id,
        action,
        status,
        status_reason: parts.status_reason,
        failed_instances: parts
            .details
            .and_then(|d| d.failed_stack_instances_count)
            .and_then(to_u32),
        preferences: parts.preferences.map(preferences_from),
        ended: parts
            .ended
            .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
    })
}

pub(super) fn operation(op: cfn::StackSetOperation) -> Result<Operation, Unrecognised> {
    operation_from(OperationParts {
        id: op.operation_id,
        action: op.action.as_ref(),
        status: op.status.as_ref(),
        status_reason: op.status_reason,
        details: op.status_details.as_ref(),
        preferences: op.operation_preferences.as_ref(),
        ended: op.end_timestamp.as_ref(),
    })
}

pub(super) fn operation_summary(
    op: cfn::StackSetOperationSummary,
) -> Result<Operation, Unrecognised> {
    operation_from(OperationParts {
        id: op.operation_id,
        action: op.action.as_ref(),
        status: op.status.as_ref(),
        status_reason: op.status_reason,
        details: op.status_details.as_ref(),
        preferences: op.operation_preferences.as_ref(),
        ended: op.end_timestamp.as_ref(),
    })
}

pub(super) fn operation_result(row: cfn::StackSetOperationResultSummary) -> OperationResult {
    OperationResult {
        account: row.account.unwrap_or_default(),
        region: row.region.unwrap_or_default(),
        status: row
            .status
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        reason: row.status_reason,
    }
}

pub(super) fn organization(org: orgs::Organization) -> OrganizationInfo {
    OrganizationInfo {
        id: org.id.unwrap_or_default(),
        management_account_id: org.master_account_id.unwrap_or_default(),
        feature_set: org
            .feature_set
            .map(|f| f.as_str().to_string())
            .unwrap_or_default(),
    }
}

pub(super) fn root(root: orgs::Root) -> OrgNode {
    OrgNode {
        id: root.id.unwrap_or_default(),
        name: root.name.unwrap_or_default(),
    }
}

pub(super) fn organizational_unit(ou: orgs::OrganizationalUnit) -> OrgNode {
    OrgNode {
        id: ou.id.unwrap_or_default(),
        name: ou.name.unwrap_or_default(),
    }
}

/// Account.State, not the retired Account.Status. An endpoint that sends no State yields an empty string, which
/// no check treats as ACTIVE.
/// Account.State (PENDING_ACTIVATION, ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED); an endpoint that still
/// answers only with the retired Account.Status (ACTIVE, SUSPENDED, PENDING_CLOSURE) is read through it, so an
/// active account is never taken for an inactive one because a field moved (found on fakecloud 0.51).
#[allow(deprecated)]
pub(super) fn account(account: orgs::Account) -> Account {
    let state = account
        .state
        .map(|s| s.as_str().to_string())
        .or_else(|| account.status.map(|s| s.as_str().to_string()))
        .unwrap_or_default();
    Account {
        id: account.id.unwrap_or_default(),
        name: account.name.unwrap_or_default(),
        state,
    }
}
