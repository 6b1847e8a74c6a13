//! Auto-deployment targets verified: CloudFormation keeps, per stack set, the OU x Region combinations it
//! deploys to when an account joins (ListStackSetAutoDeploymentTargets). An OU dropped from that list keeps its
//! instances but no longer gets new accounts' ones, which coverage only notices account by account, later. On
//! the organization-scan cadence (`org_scan_interval`, and again after stacksetd submits an instance operation)
//! the list is compared with the desired OUs x Regions: a missing pair is reported (`/status`, the condition,
//! `stacksetd_auto_deployment_targets_missing`) and, once two checks in a row find it missing (the list may lag
//! the operations that change it), re-registered by the plan (a CreateStackInstances for that OU and Region,
//! with the deployment's own account filter); a pair beyond the desired ones is only reported. A pass that
//! listed the instances again checks again, so no check outlives the operation it predates.
//! A backend without the call (moto) leaves the check "not verified", never a failure of the pass.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Context, DeploymentState};
use crate::cloud::org::OrgSnapshot;
use crate::cloud::{AutoDeploymentTarget, ObservedStackSet};
use crate::desired::{Deployment, Ensure};

/// (OU id, Region).
pub type Pair = (String, String);

/// One check's result, kept until the next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked {
    pub missing: BTreeSet<Pair>,
    /// The missing pairs the check before also found missing: only these are registered again (the list is
    /// read right after operations end and may lag them; two checks in a row are evidence, one is not).
    pub confirmed: BTreeSet<Pair>,
    pub unexpected: BTreeSet<Pair>,
    /// RFC 3339.
    pub checked_at: String,
    /// Why the list could not be read.
    pub error: Option<String>,
}

/// What /status shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AutoTargetsReport {
    pub checked_at: String,
    /// `ou/region` pairs the desired state auto-deploys to and CloudFormation does not (re-registered by the
    /// plan).
    pub missing: Vec<String>,
    /// `ou/region` pairs CloudFormation auto-deploys to beyond the desired ones (reported only).
    pub unexpected: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Checked {
    pub fn report(&self) -> AutoTargetsReport {
        let slash = |(ou, region): &Pair| format!("{ou}/{region}");
        AutoTargetsReport {
            checked_at: self.checked_at.clone(),
            missing: self.missing.iter().map(slash).collect(),
            unexpected: self.unexpected.iter().map(slash).collect(),
            error: self.error.clone(),
        }
    }
}

/// The desired pairs against the listed ones (pure).
pub fn compare(
    expected: &BTreeSet<Pair>,
    listed: &[AutoDeploymentTarget],
) -> (BTreeSet<Pair>, BTreeSet<Pair>) {
    let actual: BTreeSet<Pair> = listed
        .iter()
        .flat_map(|t| {
            t.regions
                .iter()
                .map(|r| (t.organizational_unit_id.clone(), r.clone()))
        })
        .collect();
    (
        expected.difference(&actual).cloned().collect(),
        actual.difference(expected).cloned().collect(),
    )
}

/// The desired OU x Region pairs (`check` asks only when automatic deployment is on and the deployment Present).
fn expected(deployment: &Deployment, org: &OrgSnapshot) -> BTreeSet<Pair> {
    let spec = &deployment.spec;
    crate::coverage::target_units(deployment, org)
        .into_iter()
        .flat_map(|ou| spec.regions.iter().map(move |r| (ou.clone(), r.clone())))
        .collect()
}

/// The check, from memory while it is younger than `org_scan_interval` and the instances were not listed again
/// by this pass (`listed_now`: whatever changed the instances may have changed the targets), else asked of AWS.
/// `None` when there is nothing to check (no stack set yet, automatic deployment off, `ensure: Absent`).
pub(super) async fn check(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    stack_set: Option<&ObservedStackSet>,
    listed_now: bool,
    org: &OrgSnapshot,
) -> Option<Checked> {
    let spec = &deployment.spec;
    stack_set?;
    if !spec.auto_deployment.enabled || spec.ensure != Ensure::Present {
        return None;
    }
    if !listed_now && let Some(checked) = state.auto_targets(ctx.config.org_scan_interval) {
        return Some(checked);
    }
    let checked_at = super::rfc3339(ctx.wall_now());
    let checked = match ctx
        .cloud
        .list_auto_deployment_targets(&spec.stack_set_name, spec.call_as)
        .await
    {
        Ok(listed) => {
            let (missing, unexpected) = compare(&expected(deployment, org), &listed);
            Checked {
                missing,
                unexpected,
                checked_at,
                ..Checked::default()
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "auto-deployment targets not verified");
            Checked {
                checked_at,
                error: Some(e.to_string()),
                ..Checked::default()
            }
        }
    };
    let mut checked = checked;
    let before = state.store_auto_targets(checked.clone());
    checked.confirmed = checked.missing.intersection(&before).cloned().collect();
    // A first sighting is often a stack set created a moment ago, whose targets AWS registers with its first
    // instances: only a gap two checks agree on is worth a warning (and is what gets registered again).
    if !checked.confirmed.is_empty() {
        tracing::warn!(
            missing = checked.confirmed.len(),
            "auto-deployment targets missing on two checks in a row"
        );
    } else if !checked.missing.is_empty() {
        tracing::debug!(
            missing = checked.missing.len(),
            "auto-deployment targets missing; looked at again next check"
        );
    }
    Some(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_missing_and_beyond_are_told_apart() {
        let expected: BTreeSet<Pair> = [
            ("ou-a".to_string(), "us-east-1".to_string()),
            ("ou-a".to_string(), "eu-west-1".to_string()),
            ("ou-b".to_string(), "us-east-1".to_string()),
        ]
        .into();
        let listed = vec![
            AutoDeploymentTarget {
                organizational_unit_id: "ou-a".into(),
                regions: vec!["us-east-1".into(), "eu-west-1".into()],
            },
            AutoDeploymentTarget {
                organizational_unit_id: "ou-c".into(),
                regions: vec!["us-east-1".into()],
            },
        ];
        let (missing, unexpected) = compare(&expected, &listed);
        assert_eq!(
            missing,
            [("ou-b".to_string(), "us-east-1".to_string())].into()
        );
        assert_eq!(
            unexpected,
            [("ou-c".to_string(), "us-east-1".to_string())].into()
        );
        assert_eq!(compare(&expected, &[]).0, expected);
    }
}
