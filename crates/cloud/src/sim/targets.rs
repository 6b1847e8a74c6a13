//! Request validation and target resolution shared by the CloudFormation calls: names and tokens, operation
//! preferences, CallAs visibility, and DeploymentTargets -> accounts x Regions (child OUs included, account filter
//! applied, the management account never included).

use std::collections::BTreeSet;

use super::World;
use super::faults::SimError;
use super::org::Organization;
use super::stacksets::Pair;
use crate::desired::model::ConcurrencyMode;
use crate::{AccountFilterType, CallAs, OperationPreferences, Targets};

/// TemplateBody limit (bytes) of CreateStackSet/UpdateStackSet.
const MAX_TEMPLATE_BODY: usize = 51_200;
/// Longest stack set name and OperationId.
const MAX_NAME_LEN: usize = 128;

pub(crate) fn validate_token(what: &str, value: &str) -> Result<(), SimError> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || value.len() > MAX_NAME_LEN
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(SimError::validation(format!(
            "{what} '{value}' must match [a-zA-Z0-9][-a-zA-Z0-9]* and be at most {MAX_NAME_LEN} characters"
        )));
    }
    Ok(())
}

pub(crate) fn validate_name(name: &str) -> Result<(), SimError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok
        || name.len() > MAX_NAME_LEN
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(SimError::validation(format!(
            "StackSetName '{name}' must start with a letter, contain only letters, digits and hyphens, and be at most {MAX_NAME_LEN} characters"
        )));
    }
    Ok(())
}

/// CloudFormation reads a template up to 1 MB from a TemplateURL.
pub(crate) const MAX_TEMPLATE_URL_BODY: usize = 1024 * 1024;

/// The body CloudFormation would use: the TemplateURL's object when one is given (it must exist), else the
/// TemplateBody.
pub(crate) fn template_of<'a>(
    staged: &'a std::collections::BTreeMap<String, String>,
    body: Option<&'a str>,
    url: Option<&str>,
) -> Result<Option<&'a str>, SimError> {
    match url {
        Some(url) => {
            let body = staged.get(url).ok_or_else(|| {
                SimError::validation(format!(
                    "TemplateURL must reference a valid S3 object to which you have access: {url}"
                ))
            })?;
            if body.is_empty() || body.len() > MAX_TEMPLATE_URL_BODY {
                return Err(SimError::validation(
                    "A template at a TemplateURL must be 1 byte to 1 MB",
                ));
            }
            Ok(Some(body))
        }
        None => {
            if let Some(body) = body {
                validate_template(body)?;
            }
            Ok(body)
        }
    }
}

pub(crate) fn validate_template(body: &str) -> Result<(), SimError> {
    if body.is_empty() || body.len() > MAX_TEMPLATE_BODY {
        return Err(SimError::validation(format!(
            "TemplateBody must be 1 to {MAX_TEMPLATE_BODY} bytes, got {}",
            body.len()
        )));
    }
    Ok(())
}

/// AWS's StackSetOperationPreferences rules, with its messages' substance.
pub(crate) fn validate_preferences(p: &OperationPreferences) -> Result<(), SimError> {
    if p.failure_tolerance_count.is_some() && p.failure_tolerance_percentage.is_some() {
        return Err(SimError::validation(
            "FailureToleranceCount and FailureTolerancePercentage are mutually exclusive",
        ));
    }
    if p.max_concurrent_count.is_some() && p.max_concurrent_percentage.is_some() {
        return Err(SimError::validation(
            "MaxConcurrentCount and MaxConcurrentPercentage are mutually exclusive",
        ));
    }
    if p.failure_tolerance_percentage.is_some_and(|v| v > 100) {
        return Err(SimError::validation(
            "FailureTolerancePercentage must be between 0 and 100",
        ));
    }
    if p.max_concurrent_percentage
        .is_some_and(|v| !(1..=100).contains(&v))
    {
        return Err(SimError::validation(
            "MaxConcurrentPercentage must be between 1 and 100",
        ));
    }
    if p.max_concurrent_count == Some(0) {
        return Err(SimError::validation(
            "MaxConcurrentCount must be at least 1",
        ));
    }
    let strict = p.concurrency_mode != Some(ConcurrencyMode::SoftFailureTolerance);
    if strict
        && p.failure_tolerance_percentage.is_none()
        && let Some(max) = p.max_concurrent_count
    {
        let tolerance = p.failure_tolerance_count.unwrap_or(0);
        if max > tolerance + 1 {
            return Err(SimError::validation(format!(
                "MaxConcurrentCount {max} must be at most FailureToleranceCount + 1 ({}) under STRICT_FAILURE_TOLERANCE",
                tolerance + 1
            )));
        }
    }
    Ok(())
}

/// Accounts x Regions a request targets: OUs with their child OUs, the account filter, never the management
/// account (CloudFormation silently skips it).
pub(crate) fn resolve_targets(
    org: &Organization,
    targets: &Targets,
    regions: &[String],
    creating: bool,
) -> Result<Vec<Pair>, SimError> {
    if regions.is_empty() {
        return Err(SimError::validation("Regions must not be empty"));
    }
    if targets.organizational_unit_ids.is_empty() {
        return Err(SimError::validation(
            "DeploymentTargets.OrganizationalUnitIds is required for a SERVICE_MANAGED stack set",
        ));
    }
    if let Some(unknown) = targets
        .organizational_unit_ids
        .iter()
        .find(|id| !org.unit_exists(id))
    {
        return Err(SimError::validation(format!(
            "OrganizationalUnitId {unknown} does not exist in organization {}",
            org.id
        )));
    }
    if creating && targets.account_filter_type == AccountFilterType::Union {
        return Err(SimError::validation(
            "AccountFilterType UNION is not supported by CreateStackInstances",
        ));
    }
    let listed: BTreeSet<&str> = targets.accounts.iter().map(String::as_str).collect();
    let mut accounts = org.accounts_under(&targets.organizational_unit_ids);
    match targets.account_filter_type {
        AccountFilterType::None => {}
        AccountFilterType::Intersection => accounts.retain(|a, _| listed.contains(a.as_str())),
        AccountFilterType::Difference => accounts.retain(|a, _| !listed.contains(a.as_str())),
        AccountFilterType::Union => {
            for account in &listed {
                if let Some(member) = org.accounts.get(*account) {
                    accounts
                        .entry(account.to_string())
                        .or_insert_with(|| member.parent.clone());
                }
            }
        }
    }
    accounts.remove(&org.management_account_id);
    let mut pairs = Vec::new();
    for region in regions.iter().collect::<BTreeSet<_>>() {
        for (account, ou) in &accounts {
            pairs.push(Pair {
                account: account.clone(),
                region: region.clone(),
                ou: Some(ou.clone()),
            });
        }
    }
    Ok(pairs)
}

/// Stack sets visible to a call: service-managed stack sets live in the management account, so a delegated
/// admin sees them only with CallAs DELEGATED_ADMIN, and the management account only with SELF.
pub(crate) fn check_call_as(world: &World, call_as: CallAs) -> Result<bool, SimError> {
    let caller = world.config.caller_account_id();
    let is_management = caller == world.org.management_account_id;
    match (is_management, call_as) {
        (true, CallAs::SelfAccount) => Ok(true),
        (false, CallAs::DelegatedAdmin) if world.org.delegated_admins.contains(caller) => Ok(true),
        (false, CallAs::DelegatedAdmin) => Err(SimError::validation(format!(
            "Account used is not a delegated administrator: {caller} is not registered for {}",
            crate::STACKSETS_SERVICE_PRINCIPAL
        ))),
        (true, CallAs::DelegatedAdmin) => Err(SimError::validation(format!(
            "Account {} is not registered as a delegated administrator; call with CallAs SELF",
            world.org.management_account_id
        ))),
        (false, CallAs::SelfAccount) => Ok(false),
    }
}
