//! What a pass found, for `status`, the CLI and (later) metrics: instance counts by status, coverage of the
//! organization (the vendor guide's "blocked" accounts), the template version and what is pending.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Label;

use crate::cloud::org::OrgSnapshot;
use crate::cloud::{InstanceStatus, Operation, OperationResult};
use crate::coverage::{self, Coverage};
use crate::desired::{Deployment, TemplateSpec};
use crate::guard::{Finding, Offense};
use crate::plan::{Observed, Plan};
use crate::template::{Assessment, Decision, SourceState, Template};

/// How many account ids a report lists by name; counts are always complete.
const ACCOUNTS_LISTED: usize = 50;

/// Keys are camelCase, like the rest of /status and `plan --output json`; the snake_case keys of earlier
/// releases are still read (`stacksetd status` against an older daemon) until the next release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Report {
    /// This pass observed the stack set (false for a pass that only polled a running operation: its counts
    /// are not a fresh observation and must not overwrite the last one).
    #[serde(skip)]
    pub observed: bool,
    #[serde(alias = "template_sha256")]
    pub template_sha256: Option<String>,
    #[serde(alias = "stack_set_exists")]
    pub stack_set_exists: bool,
    /// Instances by "STATUS/DETAILED_STATUS".
    pub instances: BTreeMap<String, usize>,
    /// Active member accounts the targets cover (management account excluded).
    #[serde(alias = "accounts_targeted")]
    pub accounts_targeted: usize,
    /// Targeted active accounts x Regions without an instance.
    #[serde(alias = "missing_instances")]
    pub missing_instances: usize,
    /// Up to 50 of the accounts behind `missing_instances`.
    #[serde(alias = "missing_accounts")]
    pub missing_accounts: Vec<String>,
    /// Targeted accounts that are suspended or closing: not failures, not missing.
    #[serde(alias = "inactive_accounts")]
    pub inactive_accounts: usize,
    /// Accounts with at least one targeted Region lacking an instance (the vendor guide's "blocked" accounts).
    #[serde(alias = "accounts_missing_instance")]
    pub accounts_missing_instance: usize,
    /// Instances outside the targets (account or Region no longer targeted).
    #[serde(alias = "orphaned_instances")]
    pub orphaned_instances: usize,
    pub orphaned: Vec<String>,
    #[serde(alias = "outdated_instances")]
    pub outdated_instances: usize,
    #[serde(alias = "inoperable_instances")]
    pub inoperable_instances: usize,
    /// Up to 50 INOPERABLE instances with their reasons.
    pub inoperable: Vec<InstanceProblem>,
    /// Instances an operation skipped because the account is suspended.
    #[serde(alias = "skipped_suspended_instances")]
    pub skipped_suspended_instances: usize,
    /// Targets that cover no active member account (an empty OU, or one whose accounts all moved away or are
    /// suspended): not an error, but nothing is deployed there.
    #[serde(alias = "target_warnings")]
    pub target_warnings: Vec<String>,
    /// Resource drift; `None` before the stack set exists.
    pub drift: Option<DriftReport>,
    /// Stack set settings changed outside stacksetd since it last converged (being reverted unless suspended).
    #[serde(alias = "spec_drift")]
    pub spec_drift: Vec<SpecDrift>,
    /// Fields whose drift this pass saw first (the spec_drift_total counter counts each once).
    #[serde(skip)]
    pub spec_drift_new: Vec<&'static str>,
    /// One line per pending step.
    pub pending: Vec<String>,
    /// Steps that delete, and when they run (`deletion_delay` after the desired state asking for them).
    #[serde(alias = "pending_deletions")]
    pub pending_deletions: Vec<PendingDeletion>,
    /// The template versions: fetched, applied, and what the update policy decided. Not serialized here: the
    /// documents carry it once, beside the report (`template` in /status and in `plan --output json`).
    #[serde(skip)]
    pub template: Option<TemplateReport>,
    /// Operations running on the stack set when the pass looked (anyone's), with their failures so far: from
    /// the page of ListStackSetOperations the pass reads anyway.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub running_operations: Vec<RunningOperation>,
    /// Every account of the organization in its tree, with its state for this deployment (what `GET /` and
    /// `stacksetd status --tree` show; the access check's failures overlaid by the daemon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<crate::accounts::OrganizationView>,
    /// The last check of ListStackSetAutoDeploymentTargets against the desired OUs x Regions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_deployment_targets: Option<super::AutoTargetsReport>,
    /// The management account's stack (`spec.managementAccount`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub management_stack: Option<ManagementStackReport>,
    /// A staged rollout in progress (`spec.rollout`): its version, phase, canary and bake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<super::rollout::Status>,
}

/// The management account's plain stack as the pass saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ManagementStackReport {
    pub name: String,
    pub region: String,
    /// StackStatus, or `ABSENT`.
    pub status: String,
    pub status_reason: Option<String>,
    /// Tagged for this deployment (one that is not is never touched).
    pub managed: bool,
    /// The approval record on the stack (`stacksetd.dev/template-sha256`).
    pub template_sha256: Option<String>,
    /// DRIFTED | IN_SYNC | NOT_CHECKED | UNKNOWN, from the last DetectStackDrift.
    pub drift: Option<String>,
    /// RFC 3339.
    pub last_drift_check: Option<String>,
    /// One of [`ManagementStackReport::STATES`], for the metrics.
    #[serde(skip)]
    pub state: &'static str,
}

impl ManagementStackReport {
    /// The states `stacksetd_management_stack_state` has a series for.
    pub const STATES: [&'static str; 5] =
        ["absent", "complete", "in_progress", "failed", "not_managed"];

    fn of(
        deployment: &Deployment,
        observed: &crate::plan::management_stack::ManagementStackObserved,
        plan: &Plan,
    ) -> ManagementStackReport {
        let name = deployment.spec.stack_set_name.clone();
        let Some(stack) = &observed.stack else {
            // A creation that failed and is not being tried again is a failure, not an absence.
            let held = observed.failed_creation.as_ref().filter(|_| {
                deployment.spec.wants_management_stack()
                    && !plan
                        .steps
                        .iter()
                        .any(|s| matches!(s.action, crate::plan::Action::CreateStack { .. }))
            });
            return ManagementStackReport {
                name,
                region: observed.region.clone(),
                status: "ABSENT".into(),
                status_reason: held.map(|f| f.reason.clone()),
                state: if held.is_some() { "failed" } else { "absent" },
                ..ManagementStackReport::default()
            };
        };
        let managed = crate::plan::management_stack::owned(stack, deployment.name());
        let state = if !managed {
            "not_managed"
        } else if stack.in_progress() {
            "in_progress"
        } else if stack.usable() {
            "complete"
        } else {
            "failed"
        };
        ManagementStackReport {
            state,
            name,
            region: stack.region.clone(),
            status: stack.status.clone(),
            status_reason: stack.status_reason.clone(),
            managed,
            template_sha256: stack
                .tags
                .get(crate::controller::ownership::TEMPLATE_TAG)
                .cloned(),
            drift: stack.drift_status.clone(),
            last_drift_check: stack.last_drift_check.map(super::rfc3339),
        }
    }

    /// The stack is stacksetd's, complete and its last drift check found it changed.
    pub fn drifted(&self) -> bool {
        self.managed && self.drift.as_deref() == Some("DRIFTED")
    }
}

/// An operation running on the stack set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunningOperation {
    pub operation_id: String,
    pub action: Label,
    pub progress: Progress,
}

/// A deletion step and when it will be submitted if the desired state stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PendingDeletion {
    #[serde(deserialize_with = "crate::cloud::calls::action_name")]
    pub action: crate::cloud::calls::ActionName,
    pub summary: String,
    /// RFC 3339, UTC.
    pub runs_at: String,
    /// Still waiting (false: due now).
    pub waiting: bool,
}

/// The template side of a pass, for `plan`, /status and the template metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TemplateReport {
    pub url: String,
    /// The policy level (`DataOnly`, `DataAndScheduling`), or `custom` for a URL without one.
    pub policy: Label,
    /// The version fetched (the latest known): sha256 of its bytes.
    pub sha256: String,
    /// sha256 of the stack set's template bytes; `None` before the stack set exists.
    pub applied_sha256: Option<String>,
    /// The pin (`spec.template.sha256`), if any.
    pub pinned_sha256: Option<String>,
    /// `up_to_date`, `apply`, `held_manual`, `held_permission_widening`, `refused_allowlist`, `pin_mismatch`,
    /// `too_large`.
    pub decision: Label,
    pub message: String,
    /// A version other than the applied one is known and is not being applied (held, refused or not pinned).
    pub update_available: bool,
    /// The guard's findings from the applied template to the fetched version, one line each (widening first).
    pub iam_diff: Vec<String>,
    /// The same findings, structured.
    pub findings: Vec<Finding>,
    /// Why the policy level refused the version.
    pub offenses: Vec<Offense>,
    /// What a reviewer should read even when the version is applied: reads behind wildcards that return secrets
    /// or customer data, a trust without sts:ExternalId, actions the catalog does not know.
    pub warnings: Vec<String>,
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
        assessment: &Assessment,
        source: Option<SourceState>,
    ) -> TemplateReport {
        let decision = &assessment.decision;
        let applied_sha256 = applied_body.map(|b| crate::template::sha256_hex(b.as_bytes()));
        let update_available =
            !decision.allows() && applied_body.is_some_and(|b| !candidate.same_as(b));
        TemplateReport {
            url: url.to_string(),
            policy: spec.policy.map_or("custom", |p| p.as_str()).into(),
            sha256: candidate.sha256.clone(),
            applied_sha256,
            pinned_sha256: spec.sha256.clone(),
            decision: decision.label().into(),
            message: decision.message(&candidate.sha256),
            update_available,
            iam_diff: decision.judgment().map(|d| d.lines()).unwrap_or_default(),
            findings: decision
                .judgment()
                .map(|d| d.findings.clone())
                .unwrap_or_default(),
            warnings: assessment.warnings.clone(),
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
        coverage: &Coverage,
        plan: &Plan,
    ) -> Report {
        let mut instances = BTreeMap::new();
        for i in observed.instances.iter() {
            let key = format!(
                "{}/{}",
                i.status.as_str(),
                i.detailed_status.as_deref().unwrap_or("-")
            );
            *instances.entry(key).or_default() += 1;
        }
        let slot = |(account, region): &(String, String)| format!("{account}/{region}");
        let inoperable = observed
            .instances
            .iter()
            .filter(|i| i.status == InstanceStatus::Inoperable)
            .take(ACCOUNTS_LISTED)
            .map(|i| InstanceProblem {
                instance: format!("{}/{}", i.account, i.region),
                reason: i.status_reason.clone(),
            })
            .collect();
        Report {
            observed: true,
            template_sha256: Some(template.sha256.clone()),
            stack_set_exists: observed.stack_set.is_some(),
            instances,
            accounts_targeted: coverage.targeted.len(),
            accounts_missing_instance: coverage.accounts_missing().len(),
            missing_instances: coverage.missing.len(),
            missing_accounts: coverage
                .accounts_missing()
                .into_iter()
                .take(ACCOUNTS_LISTED)
                .map(str::to_string)
                .collect(),
            inactive_accounts: coverage.inactive.len(),
            orphaned_instances: coverage.orphaned.len(),
            orphaned: coverage
                .orphaned
                .iter()
                .take(ACCOUNTS_LISTED)
                .map(slot)
                .collect(),
            outdated_instances: coverage.outdated,
            inoperable_instances: coverage.inoperable,
            inoperable,
            skipped_suspended_instances: coverage.skipped_suspended,
            organization: Some(crate::accounts::view(
                deployment,
                org,
                &observed.instances,
                coverage,
            )),
            drift: DriftReport::of(observed),
            target_warnings: coverage::empty_targets(deployment, org)
                .into_iter()
                .map(|(unit, name)| {
                    format!(
                        "target {unit} ({name}) holds no active member account: nothing is deployed there until one \
                         joins (the management account never gets an instance)"
                    )
                })
                .chain(
                    coverage::nested_targets(deployment, org)
                        .into_iter()
                        .map(|(inner, outer)| {
                            format!(
                                "target {inner} lies inside target {outer} (moved under it, or listed with its \
                                 parent): its accounts are already covered; list only {outer}"
                            )
                        }),
                )
                .collect(),
            pending: plan.steps.iter().map(|s| s.summary.clone()).collect(),
            management_stack: observed
                .management_stack
                .as_ref()
                .map(|m| ManagementStackReport::of(deployment, m, plan)),
            ..Report::default()
        }
    }

    pub fn instance_total(&self) -> usize {
        self.instances.values().sum()
    }
}

/// An instance that needs attention, with CloudFormation's reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InstanceProblem {
    /// `account/region`.
    pub instance: String,
    pub reason: Option<String>,
}

/// Resource drift: what the last DetectStackSetDrift found (DescribeStackSet) and which instances
/// ListStackInstances reports DRIFTED now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DriftReport {
    /// DRIFTED | IN_SYNC | NOT_CHECKED (NOT_CHECKED until a drift detection has completed).
    pub status: String,
    pub detection_status: Option<String>,
    /// RFC 3339.
    pub last_check: Option<String>,
    /// Instances whose DriftStatus is DRIFTED.
    pub drifted_instances: usize,
    /// Up to 50 of them, `account/region`.
    pub drifted: Vec<String>,
}

impl DriftReport {
    fn of(observed: &Observed) -> Option<DriftReport> {
        let stack_set = observed.stack_set.as_ref()?;
        let drifted: Vec<String> = observed
            .instances
            .iter()
            .filter(|i| i.drift_status.as_deref() == Some("DRIFTED"))
            .map(|i| format!("{}/{}", i.account, i.region))
            .collect();
        Some(DriftReport {
            status: stack_set
                .drift
                .as_ref()
                .map_or_else(|| "NOT_CHECKED".to_string(), |d| d.status.clone()),
            detection_status: stack_set
                .drift
                .as_ref()
                .and_then(|d| d.detection_status.clone()),
            last_check: stack_set
                .drift
                .as_ref()
                .and_then(|d| d.last_check)
                .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            drifted_instances: drifted.len(),
            drifted: drifted.into_iter().take(ACCOUNTS_LISTED).collect(),
        })
    }
}

/// A stack set setting changed outside stacksetd (spec drift), from what stacksetd applied to what it is now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SpecDrift {
    pub field: Label,
    pub applied: String,
    pub found: String,
}

/// How far a running operation has come, read without listing the stack set's instances: the failures so far
/// from DescribeStackSetOperation's StatusDetails (every poll, one call), and, when the operation's results are
/// listed (`reconcile --once` in a terminal: ListStackSetOperationResults, pages of this operation's own
/// account/Region pairs only), how many are done out of how many, Region by Region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Progress {
    /// Instances that failed so far (StatusDetails.FailedStackInstancesCount, or the results' count).
    pub failed: usize,
    /// Instances the operation has finished with (succeeded, failed or cancelled): from the results only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<usize>,
    /// Instances the operation works on: from the results only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
    /// The same per Region (from the results), in Region order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionProgress>,
}

/// One Region's part of an operation's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegionProgress {
    pub region: String,
    pub done: usize,
    pub total: usize,
    pub failed: usize,
}

impl Progress {
    /// From DescribeStackSetOperation alone.
    pub fn of_operation(op: &Operation) -> Progress {
        Progress {
            failed: op.failed_instances.map_or(0, |n| n as usize),
            ..Progress::default()
        }
    }

    /// From the operation's results (ListStackSetOperationResults): PENDING and RUNNING are not done yet.
    pub fn of_results(results: &[OperationResult]) -> Progress {
        let mut regions: BTreeMap<&str, RegionProgress> = BTreeMap::new();
        for result in results {
            let region = regions
                .entry(result.region.as_str())
                .or_insert_with(|| RegionProgress {
                    region: result.region.clone(),
                    ..RegionProgress::default()
                });
            region.total += 1;
            if !matches!(result.status.as_str(), "PENDING" | "RUNNING") {
                region.done += 1;
            }
            if result.status == "FAILED" {
                region.failed += 1;
            }
        }
        let regions: Vec<RegionProgress> = regions.into_values().collect();
        Progress {
            failed: regions.iter().map(|r| r.failed).sum(),
            done: Some(regions.iter().map(|r| r.done).sum()),
            total: Some(regions.iter().map(|r| r.total).sum()),
            regions,
        }
    }

    /// One line: "12/30 instance(s) done, 1 failed" or, without the results, "1 instance(s) failed so far".
    pub fn line(&self) -> String {
        match (self.done, self.total) {
            (Some(done), Some(total)) => {
                format!("{done}/{total} instance(s) done, {} failed", self.failed)
            }
            _ => format!("{} instance(s) failed so far", self.failed),
        }
    }
}
