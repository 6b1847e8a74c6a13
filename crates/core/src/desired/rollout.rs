//! The offline rules of `spec.rollout` (staged rollout): what can be known from the file alone. Whether a canary
//! account is in a targeted OU needs the organization, so the pass checks that (`controller/rollout.rs`).

use std::time::Duration;

use super::model::{AccountFilterType, Spec};
use super::regions::{is_account_id, is_ou_id};

/// The longest bake: a version held longer than a week is a decision for an operator (`promote: Manual`).
pub const MAX_BAKE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Every finding on `spec.rollout`, as (field, message).
pub fn check(spec: &Spec, mut report: impl FnMut(&str, String)) {
    let Some(rollout) = &spec.rollout else {
        return;
    };
    let canary = &rollout.canary;
    if canary.accounts.is_empty() && canary.organizational_unit_ids.is_empty() {
        report(
            "spec.rollout.canary",
            "the canary names no account: list `accounts` (12-digit ids) or `organizationalUnitIds` (ou-...), or \
             both; they get a new version first"
                .into(),
        );
    }
    let targets = &spec.deployment_targets;
    for (i, account) in canary.accounts.iter().enumerate() {
        let field = format!("spec.rollout.canary.accounts[{i}]");
        if !is_account_id(account) {
            report(
                &field,
                format!("`{account}` is not an account id: write exactly 12 digits, quoted"),
            );
        } else if *account == spec.management_account_id {
            report(
                &field,
                format!(
                    "`{account}` is the management account: a service-managed stack set never deploys there, so \
                     it cannot be a canary; name a member account"
                ),
            );
        } else if canary.accounts[..i].contains(account) {
            report(
                &field,
                format!("`{account}` is listed twice; remove the repeat"),
            );
        }
        let listed = targets.accounts.contains(account);
        match targets.account_filter_type {
            AccountFilterType::Intersection if !listed => report(
                &field,
                format!(
                    "`{account}` is not targeted: spec.deploymentTargets deploys only to its listed accounts \
                     (INTERSECTION); add it there or pick a targeted account"
                ),
            ),
            AccountFilterType::Difference if listed => report(
                &field,
                format!(
                    "`{account}` is excluded by spec.deploymentTargets (DIFFERENCE); a canary must be targeted"
                ),
            ),
            _ => {}
        }
    }
    for (i, ou) in canary.organizational_unit_ids.iter().enumerate() {
        let field = format!("spec.rollout.canary.organizationalUnitIds[{i}]");
        if !is_ou_id(ou) {
            report(
                &field,
                format!(
                    "`{ou}` is not an OU id (ou-xxxx-yyyyyyyy); the root would make every account a canary, which \
                     stages nothing"
                ),
            );
        } else if canary.organizational_unit_ids[..i].contains(ou) {
            report(&field, format!("`{ou}` is listed twice; remove the repeat"));
        }
    }
    if rollout.bake.0 > MAX_BAKE {
        report(
            "spec.rollout.bake",
            format!(
                "bake {} is over the maximum of 7 days; write at most 7d, or `promote: Manual` to hold a version \
                 until an operator promotes it",
                humantime::format_duration(rollout.bake.0)
            ),
        );
    }
}
