//! What a pass found, for `status`, the CLI and (later) metrics: instance counts by status, coverage of the
//! organization (the seed's "blocked" accounts), the template version and what is pending.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::cloud::org::OrgSnapshot;
use crate::cloud::{AccountFilterType, StackInstance};
use crate::desired::TemplateSpec;
use crate::desired::{Deployment, Ensure, ROOT};
use crate::iam::Offense;
use crate::plan::{Observed, Plan};
use crate::template::{Decision, SourceState, Template};

/// How many account ids a report lists by name; counts are always complete.
const ACCOUNTS_LISTED: usize = 50;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub template_sha256: Option<String>,
    pub stack_set_exists: bool,
    /// Instances by "STATUS/DETAILED_STATUS".
    pub instances: BTreeMap<String, usize>,
    /// Active member accounts the targets cover (management account excluded).
    pub accounts_targeted: usize,
    /// Targeted active accounts x Regions without an instance.
    pub missing_instances: usize,
    /// Up to 50 of the accounts behind `missing_instances`.
    pub missing_accounts: Vec<String>,
    /// Targeted accounts that are suspended or closing: not failures, not missing.
    pub inactive_accounts: usize,
    /// One line per pending step.
    pub pending: Vec<String>,
    /// The template versions: fetched, applied, and what the update policy decided.
    pub template: Option<TemplateReport>,
}

/// The template side of a pass, for `plan`, /status and the template metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateReport {
    pub url: String,
    /// The policy level (`DataOnly`, `DataAndScheduling`), or `custom` for a URL without one.
    pub policy: &'static str,
    /// The version fetched (the latest known): sha256 of its bytes.
    pub sha256: String,
    /// sha256 of the stack set's template bytes; `None` before the stack set exists.
    pub applied_sha256: Option<String>,
    /// The pin (`spec.template.sha256`), if any.
    pub pinned_sha256: Option<String>,
    /// `up_to_date`, `apply`, `held_manual`, `held_permission_widening`, `refused_allowlist`, `pin_mismatch`,
    /// `too_large`.
    pub decision: &'static str,
    pub message: String,
    /// A version other than the applied one is known and is not being applied (held, refused or not pinned).
    pub update_available: bool,
    /// The IAM diff from the applied template to the fetched version, one line per change.
    pub iam_diff: Vec<String>,
    /// Why the allowlist refused the version.
    pub offenses: Vec<Offense>,
    /// `stacksetd_template_rejected_total`'s reason when the version is refused.
    #[serde(skip)]
    pub rejection: Option<&'static str>,
    /// The last fetches of the URL (the last failure, kept until a fetch succeeds).
    pub source: Option<SourceState>,
}

impl TemplateReport {
    pub fn new(
        spec: &TemplateSpec,
        url: &str,
        candidate: &Template,
        applied_body: Option<&str>,
        decision: &Decision,
        source: Option<SourceState>,
    ) -> TemplateReport {
        let applied_sha256 = applied_body.map(|b| crate::template::sha256_hex(b.as_bytes()));
        let update_available =
            !decision.allows() && applied_body.is_some_and(|b| !candidate.same_as(b));
        TemplateReport {
            url: url.to_string(),
            policy: spec.policy.map_or("custom", |p| p.as_str()),
            sha256: candidate.sha256.clone(),
            applied_sha256,
            pinned_sha256: spec.sha256.clone(),
            decision: decision.label(),
            message: decision.message(&candidate.sha256),
            update_available,
            iam_diff: decision.diff().map(|d| d.lines()).unwrap_or_default(),
            offenses: match decision {
                Decision::Refuse { offenses } => offenses.clone(),
                _ => Vec::new(),
            },
            rejection: decision.rejection(),
            source,
        }
    }
}

impl Report {
    pub fn new(
        deployment: &Deployment,
        template: &Template,
        observed: &Observed,
        org: &OrgSnapshot,
        plan: &Plan,
    ) -> Report {
        let mut instances = BTreeMap::new();
        for i in &observed.instances {
            let key = format!(
                "{}/{}",
                i.status.as_str(),
                i.detailed_status.as_deref().unwrap_or("-")
            );
            *instances.entry(key).or_default() += 1;
        }
        let (accounts_targeted, inactive_accounts, missing) =
            coverage(deployment, org, &observed.instances);
        Report {
            template_sha256: Some(template.sha256.clone()),
            stack_set_exists: observed.stack_set.is_some(),
            instances,
            accounts_targeted,
            missing_instances: missing.len(),
            missing_accounts: missing
                .iter()
                .map(|(account, _)| account.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .take(ACCOUNTS_LISTED)
                .collect(),
            inactive_accounts,
            pending: plan.steps.iter().map(|s| s.summary.clone()).collect(),
            template: None,
        }
    }

    pub fn instance_total(&self) -> usize {
        self.instances.values().sum()
    }
}

/// Active accounts under the targeted OUs (recursively, filter applied, management account excluded) x Regions,
/// against the instances. Returns (active accounts targeted, inactive accounts targeted, missing (account, region)).
fn coverage(
    deployment: &Deployment,
    org: &OrgSnapshot,
    instances: &[StackInstance],
) -> (usize, usize, Vec<(String, String)>) {
    let spec = &deployment.spec;
    if spec.ensure == Ensure::Absent {
        return (0, 0, Vec::new());
    }
    let targets = &spec.deployment_targets;
    let units: Vec<String> = targets
        .organizational_unit_ids
        .iter()
        .map(|u| {
            if u == ROOT {
                org.root_id.clone()
            } else {
                u.clone()
            }
        })
        .collect();
    let listed: BTreeSet<&str> = targets.accounts.iter().map(String::as_str).collect();
    let mut active = Vec::new();
    let mut inactive = 0;
    for candidate in org.accounts_under(&units) {
        let id = candidate.account.id.as_str();
        let included = match targets.account_filter_type {
            AccountFilterType::Intersection => listed.contains(id),
            AccountFilterType::Difference => !listed.contains(id),
            AccountFilterType::None | AccountFilterType::Union => true,
        };
        // CloudFormation never deploys a service-managed instance to the management account.
        if !included || id == org.management_account_id {
            continue;
        }
        if candidate.account.is_active() {
            active.push(id);
        } else {
            inactive += 1;
        }
    }
    let present: BTreeSet<(&str, &str)> = instances
        .iter()
        .map(|i| (i.account.as_str(), i.region.as_str()))
        .collect();
    let mut missing = Vec::new();
    for account in &active {
        for region in &spec.regions {
            if !present.contains(&(*account, region.as_str())) {
                missing.push((account.to_string(), region.clone()));
            }
        }
    }
    (active.len(), inactive, missing)
}

/// How far an operation has come, from the instances' detailed statuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub failed: usize,
}

impl Progress {
    pub fn of(instances: &[StackInstance]) -> Progress {
        let total = instances.len();
        let done = instances.iter().filter(|i| !i.in_progress()).count();
        let failed = instances
            .iter()
            .filter(|i| i.detailed_status.as_deref() == Some("FAILED"))
            .count();
        Progress {
            done,
            total,
            failed,
        }
    }
}
