//! The second stage of a pass, pure: from the [`Observation`] to the plan, the report and the one thing the pass
//! does next. No call, no clock read, no memory write: the same observation always gives the same decision, so
//! every rule here is tested without a cloud.

use std::time::Duration;

use tokio::time::Instant;

use super::drift::{self, Detection};
use super::observe::Observation;
use super::report::RunningOperation;
use super::{Config, PendingDeletion, Progress, Report, SpecDrift, ownership, rfc3339};
use crate::desired::Deployment;
use crate::error::Error;
use crate::plan::{self, Desired, Plan};

/// What a pass decided: the plan, the report of what it saw, and its next move.
pub struct Decision {
    pub plan: Plan,
    pub report: Report,
    pub next: Next,
}

/// The one thing a pass does after deciding. Every move but `Converged` first looks for an operation already
/// holding the stack set's slot and adopts it instead.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Nothing to change; look again after this long.
    Converged { requeue_after: Duration },
    /// Converged, and a drift detection is due: start one (its id derives from the last check).
    DetectDrift,
    /// Instances are still being worked on, but no operation is visible yet (listings lag).
    Settling,
    /// `suspend: true`: the plan is only reported.
    Suspended,
    /// Only deletions are left, and they wait for `deletion_delay` this long.
    DeletionPending { wait: Duration },
    /// Nothing left to submit now, but the desired truth does not hold: targeted accounts without an instance,
    /// instances that are not CURRENT, or instances outside the targets. Never "Converged".
    CoverageGap {
        requeue_after: Duration,
        gap: super::CoverageGap,
    },
    /// Nothing left to submit, but the stack set runs a template stacksetd never approved (changed outside it)
    /// and the version fetched is not the approved one either, so there is nothing to put back: a person must
    /// review it. Never "Converged".
    TemplateUnapproved {
        requeue_after: Duration,
        message: String,
    },
    /// A staged rollout holds the rest of the instances (the canary runs, is verified, bakes, waits for a
    /// promotion, or halted). Never "Converged".
    RollingOut {
        requeue_after: Duration,
        status: Box<super::rollout::Status>,
    },
    /// Submit this step of the plan (the first one not waiting for `deletion_delay`).
    Submit(usize),
}

impl Next {
    /// The state a pass ends in without acting: converged, or nothing to submit while the desired truth does not
    /// hold. `Err(self)` when the pass has something to do (a step, a drift check, a wait).
    pub fn settled(self) -> Result<(super::State, Duration), Next> {
        match self {
            Next::Converged { requeue_after } => Ok((super::State::Converged, requeue_after)),
            Next::CoverageGap { requeue_after, gap } => {
                Ok((super::State::CoverageGap(gap), requeue_after))
            }
            Next::TemplateUnapproved {
                requeue_after,
                message,
            } => Ok((super::State::TemplateUnapproved { message }, requeue_after)),
            Next::RollingOut {
                requeue_after,
                status,
            } => Ok((super::State::RollingOut(*status), requeue_after)),
            other => Err(other),
        }
    }
}

impl Decision {
    /// Converged: nothing to do, no drift check due.
    pub fn converged(&self) -> bool {
        matches!(self.next, Next::Converged { .. })
    }

    /// The next move submits a deletion.
    pub fn deletes(&self) -> bool {
        matches!(self.next, Next::Submit(i) if self.plan.steps[i].action.is_deletion())
    }
}

/// Plan, report and choose the next move. `now` is tokio's clock (deletion delays).
pub fn decide(
    deployment: &Deployment,
    config: &Config,
    observation: &Observation,
    now: Instant,
) -> Result<Decision, Error> {
    let Observation {
        template,
        observed,
        org,
        coverage,
        ownership: _,
        remembered,
        fresh: _,
        operations,
        operations_listed: _,
        events: _,
        dependencies,
        auto_targets,
        rollout,
    } = observation;
    // The plan converges the tags too: the operator's, the owner tag and the approval record; and dependsOn as
    // the ARNs AWS takes.
    let mut tagged = deployment.clone();
    tagged.spec.tags = ownership::desired_tags(deployment, template.record.as_deref());
    tagged.spec.auto_deployment.depends_on = dependencies.clone();
    let mut plan = plan::plan(
        Desired {
            deployment: &tagged,
            template: &template.effective,
            root_id: Some(&org.root_id),
        },
        observed,
    )?;
    // A staged rollout narrows the plan to what may run now (the canary first; the rest once verified).
    let rollout = match rollout {
        Some(facts) => super::rollout::stage(
            deployment,
            observed,
            facts,
            &template.report.sha256,
            &mut plan,
        )?,
        None => None,
    };
    let mut report = Report::new(
        deployment,
        &template.effective,
        observed,
        org,
        coverage,
        &plan,
    );
    report.spec_drift = remembered
        .spec_drift
        .iter()
        .map(|(field, applied, found)| SpecDrift {
            field: (*field).into(),
            applied: applied.clone(),
            found: found.clone(),
        })
        .collect();
    report.spec_drift_new = remembered.spec_drift_new.clone();
    if let Some(change) = &template.unapproved_change
        && !report.spec_drift.iter().any(|d| d.field == "template")
    {
        report.spec_drift.push(SpecDrift {
            field: "template".into(),
            applied: "the approved version".into(),
            found: change.clone(),
        });
    }
    let wait = remembered.deletion_due.saturating_duration_since(now);
    report.pending_deletions = plan
        .steps
        .iter()
        .filter(|s| s.action.is_deletion())
        .map(|s| PendingDeletion {
            action: s.action.name(),
            summary: s.summary.clone(),
            runs_at: rfc3339(remembered.wall_now + wait),
            waiting: !wait.is_zero(),
        })
        .collect();
    report.running_operations = operations
        .iter()
        .filter(|op| op.status.is_active())
        .map(|op| RunningOperation {
            operation_id: op.id.clone(),
            action: op.action.as_str().into(),
            progress: Progress::of_operation(op),
        })
        .collect();
    report.auto_deployment_targets = auto_targets.as_ref().map(|c| c.report());
    report.template_sha256 = Some(template.report.sha256.clone());
    report.rollout = rollout.clone();
    report.template = Some(template.report.clone());
    let next = match rollout {
        // A rollout that holds the rest (or waits for its canary) is never "Converged".
        Some(status) if plan.is_empty() && status.phase != super::rollout::Phase::Promoting => {
            Next::RollingOut {
                requeue_after: status
                    .requeue_after
                    .unwrap_or(config.poll_max)
                    .clamp(config.poll_min, config.resync_interval),
                status: Box::new(status),
            }
        }
        _ => next(deployment, config, observation, &plan, wait),
    };
    Ok(Decision { plan, report, next })
}

/// How soon a pass with a coverage gap looks again (the repair may come due, an instance may be created).
const GAP_RECHECK: Duration = Duration::from_secs(60);

/// What keeps an empty plan from being "Converged": the desired truth is every targeted active account x desired
/// Region with a CURRENT instance, and no instance outside the targets. `None` when it holds (or when the stack set
/// is to be absent, where the plan alone decides).
fn coverage_gap(
    deployment: &Deployment,
    config: &Config,
    observation: &Observation,
) -> Option<super::CoverageGap> {
    let spec = &deployment.spec;
    if spec.ensure != crate::desired::Ensure::Present || observation.observed.stack_set.is_none() {
        return None;
    }
    let coverage = &observation.coverage;
    let not_current = observation
        .observed
        .instances
        .iter()
        .filter(|i| {
            coverage.targeted.contains(&i.account)
                && spec.regions.contains(&i.region)
                && i.status != crate::cloud::InstanceStatus::Current
        })
        .count();
    let (missing, orphaned) = (coverage.missing.len(), coverage.orphaned.len());
    if missing == 0 && orphaned == 0 && not_current == 0 {
        return None;
    }
    let mut why = Vec::new();
    if missing > 0 {
        why.push(if !spec.repair_coverage {
            format!(
                "{missing} targeted account x Region slot(s) without an instance, and repairCoverage is false: nothing \
                 repairs them (set repairCoverage: true, or deploy them by hand)"
            )
        } else if spec.auto_deployment.enabled && !config.coverage_grace.is_zero() {
            format!(
                "{missing} targeted account x Region slot(s) without an instance: auto-deployment has \
                 coverage_grace_period ({}) from when each was first seen, then the coverage repair re-submits the \
                 targets",
                humantime::format_duration(config.coverage_grace)
            )
        } else {
            format!(
                "{missing} targeted account x Region slot(s) without an instance: the coverage repair was submitted \
                 and is tried again after a minute"
            )
        });
    }
    if not_current > 0 {
        why.push(format!(
            "{not_current} instance(s) of targeted accounts not CURRENT (the report names each one's reason; \
             repairInoperable replaces INOPERABLE ones)"
        ));
    }
    if orphaned > 0 {
        why.push(format!(
            "{orphaned} instance(s) outside the targets (deleted by a later step, or made outside stacksetd)"
        ));
    }
    Some(super::CoverageGap {
        missing,
        not_current,
        orphaned,
        why: why.join("; "),
    })
}

/// The next move, in order: converged (perhaps with a drift check due); an instance still in progress settles;
/// suspended reports; otherwise the first step that may run now, or the deletion wait.
fn next(
    deployment: &Deployment,
    config: &Config,
    observation: &Observation,
    plan: &Plan,
    deletion_wait: Duration,
) -> Next {
    let observed = &observation.observed;
    let remembered = &observation.remembered;
    let settled = observed.instances.iter().all(|i| !i.in_progress())
        && !observed.management_stack_busy(deployment.name());
    if plan.is_empty() && settled {
        let requeue_after = match drift::detection(
            deployment,
            observed,
            remembered.last_drift_check,
            remembered.wall_now,
        ) {
            Detection::Due => return Next::DetectDrift,
            Detection::In(due) => due.min(config.resync_interval),
            Detection::Off => config.resync_interval,
        };
        if let Some(change) = &observation.template.unapproved_change {
            return Next::TemplateUnapproved {
                requeue_after: requeue_after.min(GAP_RECHECK),
                message: format!(
                    "{change}, and the version fetched is not the approved one, so there is none to put back: review \
                     the stack set's template (stacksetd template check), then pin the version to run \
                     (spec.template.sha256)"
                ),
            };
        }
        return match coverage_gap(deployment, config, observation) {
            Some(gap) => Next::CoverageGap {
                requeue_after: requeue_after.min(GAP_RECHECK),
                gap,
            },
            None => Next::Converged { requeue_after },
        };
    }
    if !settled {
        return Next::Settling;
    }
    if deployment.spec.suspend {
        return Next::Suspended;
    }
    // Deletions wait for `deletion_delay` of an unchanged desired state; creations and updates do not wait,
    // unless a creation depends on a waiting deletion (`Plan::creations_after_deletions`).
    let first = if deletion_wait.is_zero() {
        (!plan.steps.is_empty()).then_some(0)
    } else {
        plan.first_not_waiting()
    };
    match first {
        Some(i) => Next::Submit(i),
        None => Next::DeletionPending {
            wait: deletion_wait,
        },
    }
}
