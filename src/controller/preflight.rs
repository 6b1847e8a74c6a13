//! Preflight: before the first mutating call of a pass, make sure stacksetd may act at all, and explain when it
//! may not (other tools fail here with raw AWS errors, or half-way through a pipeline):
//!
//! - the credentials' account (STS GetCallerIdentity) is `managementAccountId`, or, with `callAs:
//!   DELEGATED_ADMIN`, a delegated administrator registered for StackSets in that organization;
//! - `managementAccountId` is the organization's management account;
//! - the organization has ALL features;
//! - trusted access for StackSets is on (DescribeOrganizationsAccess, and from the management account also the
//!   service principal in ListAWSServiceAccessForOrganization); when it is off, stacksetd activates it itself with
//!   the `activate_trusted_access` setting, otherwise it stops with the exact fix.
//!
//! A success is cached per (deployment identity) for the organization scan interval, so a converged daemon pays
//! for it rarely and a pass that changes nothing never does. The checks' decisions are pure (`check_identity`),
//! tested on their own.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use crate::cloud::STACKSETS_SERVICE_PRINCIPAL;
use crate::cloud::org::OrgSnapshot;
use crate::desired::{CallAs, Deployment};
use crate::error::Error;

use crate::controller::Context;

/// Successful preflights, by what they depend on.
#[derive(Debug, Default)]
pub struct PreflightCache {
    passed: std::sync::Mutex<HashMap<Key, Instant>>,
}

/// What a preflight's result depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    management_account_id: String,
    call_as: CallAs,
}

impl PreflightCache {
    fn fresh(&self, key: &Key, ttl: Duration) -> bool {
        self.passed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .is_some_and(|at| at.elapsed() < ttl)
    }

    fn record(&self, key: Key) {
        self.passed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Instant::now());
    }
}

/// The identity rules, decided from what AWS said. `delegated_admins` is only consulted for DELEGATED_ADMIN.
pub fn check_identity(
    deployment: &Deployment,
    caller: &str,
    org: &OrgSnapshot,
    delegated_admins: Option<&[String]>,
) -> Result<(), Error> {
    let spec = &deployment.spec;
    let expected = spec.management_account_id.as_str();
    let fail = |reason, message: String| Err(Error::Preflight { reason, message });
    if org.management_account_id != expected {
        return fail(
            "wrong_organization",
            format!(
                "spec.managementAccountId is {expected}, but the organization {} these credentials (account \
                 {caller}) belong to is managed by account {}: fix managementAccountId, or use credentials from \
                 {expected}'s organization",
                org.organization_id, org.management_account_id
            ),
        );
    }
    match spec.call_as {
        CallAs::SelfAccount if caller == expected => Ok(()),
        CallAs::SelfAccount => fail(
            "wrong_account",
            format!(
                "running as account {caller}, but spec.managementAccountId is {expected}: use credentials of the \
                 management account {expected}, or, if {caller} is a delegated administrator for StackSets, set \
                 spec.callAs: DELEGATED_ADMIN"
            ),
        ),
        CallAs::DelegatedAdmin if caller == expected => fail(
            "wrong_account",
            format!(
                "running as the management account {caller} with spec.callAs: DELEGATED_ADMIN: the management \
                 account calls as SELF; set spec.callAs: SELF"
            ),
        ),
        CallAs::DelegatedAdmin => {
            let registered = delegated_admins
                .unwrap_or_default()
                .iter()
                .any(|a| a == caller);
            if registered {
                Ok(())
            } else {
                fail(
                    "not_delegated_admin",
                    format!(
                        "running as account {caller} with spec.callAs: DELEGATED_ADMIN, but {caller} is not a \
                         delegated administrator for StackSets in organization {} (managed by {expected}): register \
                         it from the management account: aws organizations register-delegated-administrator \
                         --service-principal {STACKSETS_SERVICE_PRINCIPAL} --account-id {caller}",
                        org.organization_id
                    ),
                )
            }
        }
    }
}

/// Every target OU must exist in the organization (a deleted OU, or one from another organization, is a clear
/// error, not a silent no-op).
pub fn check_targets(deployment: &Deployment, org: &OrgSnapshot) -> Result<(), Error> {
    let missing: Vec<&str> = deployment
        .spec
        .deployment_targets
        .organizational_unit_ids
        .iter()
        .map(String::as_str)
        .filter(|u| *u != crate::desired::ROOT && !org.units.contains_key(*u))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Preflight {
        reason: "target_ou_not_found",
        message: format!(
            "spec.deploymentTargets.organizationalUnitIds: {} not found in organization {} (deleted, or from \
             another organization): remove it or correct the id; nothing is deployed until then",
            missing.join(", "),
            org.organization_id
        ),
    })
}

/// Run the checks (or reuse a recent success) before a mutating call.
pub async fn ensure(deployment: &Deployment, ctx: &Context) -> Result<(), Error> {
    check(deployment, ctx, true).await
}

/// The same checks for `plan` and `status`, which write nothing: trusted access is never activated here; when
/// the setting would activate it, its absence is not an error (the next `reconcile` turns it on).
pub async fn check_read_only(deployment: &Deployment, ctx: &Context) -> Result<(), Error> {
    match check(deployment, ctx, false).await {
        Err(Error::Preflight {
            reason: "trusted_access_disabled",
            ..
        }) if ctx.config.activate_trusted_access => Ok(()),
        other => other,
    }
}

async fn check(deployment: &Deployment, ctx: &Context, may_activate: bool) -> Result<(), Error> {
    let spec = &deployment.spec;
    let key = Key {
        management_account_id: spec.management_account_id.clone(),
        call_as: spec.call_as,
    };
    if ctx
        .preflight_cache()
        .fresh(&key, ctx.config.org_scan_interval)
    {
        return Ok(());
    }
    let caller = ctx.cloud.caller_account().await?;
    let org = ctx.organization().await?;
    let admins = match spec.call_as {
        CallAs::DelegatedAdmin if caller != org.management_account_id => Some(
            ctx.cloud
                .list_delegated_administrators(STACKSETS_SERVICE_PRINCIPAL)
                .await?,
        ),
        _ => None,
    };
    check_identity(deployment, &caller, &org, admins.as_deref())?;
    if org.feature_set != "ALL" {
        return Err(Error::Preflight {
            reason: "feature_set",
            message: format!(
                "organization {} has the {} feature set; service-managed StackSets need ALL features: enable all \
                 features in AWS Organizations (Settings > Enable all features)",
                org.organization_id, org.feature_set
            ),
        });
    }
    trusted_access(deployment, ctx, &org, may_activate).await?;
    ctx.preflight_cache().record(key);
    Ok(())
}

/// Trusted access for StackSets: on, or turned on (with the setting), or a stop with the fix.
async fn trusted_access(
    deployment: &Deployment,
    ctx: &Context,
    org: &OrgSnapshot,
    may_activate: bool,
) -> Result<(), Error> {
    let call_as = deployment.spec.call_as;
    if enabled(ctx, call_as).await? {
        return Ok(());
    }
    if may_activate && ctx.config.activate_trusted_access && call_as == CallAs::SelfAccount {
        warn!(organization = %org.organization_id,
            "trusted access for StackSets is off: activating it (activate_trusted_access: true)");
        ctx.cloud.activate_organizations_access().await?;
        if enabled(ctx, call_as).await? {
            info!(organization = %org.organization_id, "trusted access for StackSets activated");
            return Ok(());
        }
    }
    let how = if call_as == CallAs::SelfAccount {
        "set activate_trusted_access: true in the daemon settings to let stacksetd do it, or run `aws \
         cloudformation activate-organizations-access` as the management account (the StackSets console's \
         \"Enable trusted access\")"
    } else {
        "the management account must run `aws cloudformation activate-organizations-access` (the StackSets \
         console's \"Enable trusted access\"); a delegated administrator cannot"
    };
    Err(Error::Preflight {
        reason: "trusted_access_disabled",
        message: format!(
            "trusted access for StackSets is not enabled in organization {}: {how}",
            org.organization_id
        ),
    })
}

/// DescribeOrganizationsAccess says ENABLED and, where the caller may ask (the management account), the service
/// principal is listed in Organizations too.
async fn enabled(ctx: &Context, call_as: CallAs) -> Result<bool, Error> {
    if ctx.cloud.describe_organizations_access(call_as).await? != "ENABLED" {
        return Ok(false);
    }
    if call_as == CallAs::DelegatedAdmin {
        return Ok(true);
    }
    let principals = ctx.cloud.list_aws_service_access().await?;
    Ok(principals.iter().any(|p| p == STACKSETS_SERVICE_PRINCIPAL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{DeploymentYaml, OrgTree};

    fn deployment(call_as: &str) -> Deployment {
        DeploymentYaml::new()
            .spec(&format!("  callAs: {call_as}\n"))
            .targets(&["ROOT", "ou-ab12-aaaaaaaa"], &["us-east-1"])
            .build()
    }

    fn org(management: &str) -> OrgSnapshot {
        OrgTree::new("o-abc", management, "r-ab12")
            .unit("ou-ab12-aaaaaaaa", "r-ab12")
            .build()
    }

    fn reason(result: Result<(), Error>) -> &'static str {
        match result {
            Ok(()) => "ok",
            Err(e) => e.metric_label(),
        }
    }

    #[test]
    fn identity_rules() {
        let me = "111111111111";
        let other = "222222222222";
        let self_ = deployment("SELF");
        let admin = deployment("DELEGATED_ADMIN");
        assert_eq!(reason(check_identity(&self_, me, &org(me), None)), "ok");
        assert_eq!(
            reason(check_identity(&self_, other, &org(me), None)),
            "wrong_account"
        );
        assert_eq!(
            reason(check_identity(&self_, other, &org(other), None)),
            "wrong_organization"
        );
        let registered = [other.to_string()];
        assert_eq!(
            reason(check_identity(&admin, other, &org(me), Some(&registered))),
            "ok"
        );
        assert_eq!(
            reason(check_identity(&admin, other, &org(me), Some(&[]))),
            "not_delegated_admin"
        );
        assert_eq!(
            reason(check_identity(&admin, me, &org(me), None)),
            "wrong_account"
        );
    }

    #[test]
    fn messages_name_both_accounts_and_the_fix() {
        let e = check_identity(
            &deployment("SELF"),
            "222222222222",
            &org("111111111111"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("running as account 222222222222") && e.contains("111111111111"),
            "{e}"
        );
        let e = check_identity(
            &deployment("DELEGATED_ADMIN"),
            "222222222222",
            &org("111111111111"),
            Some(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("register-delegated-administrator"), "{e}");
        assert!(e.contains(STACKSETS_SERVICE_PRINCIPAL), "{e}");
    }

    #[test]
    fn unknown_target_ous_are_named() {
        let d = deployment("SELF");
        assert!(check_targets(&d, &org("111111111111")).is_ok());
        let mut gone = org("111111111111");
        gone.units.remove("ou-ab12-aaaaaaaa");
        let e = check_targets(&d, &gone).unwrap_err();
        assert_eq!(e.metric_label(), "target_ou_not_found");
        assert!(e.to_string().contains("ou-ab12-aaaaaaaa"), "{e}");
    }
}
