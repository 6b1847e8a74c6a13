//! Both kinds of drift.
//!
//! Spec drift: the stack set's own settings changed by someone else (a console edit of the description, the
//! auto-deployment switch, the template). The controller remembers the settings it saw when the deployment last
//! converged; a later difference it did not make is counted per field, logged, and then reverted by the ordinary
//! plan (an UpdateStackSet), unless the deployment is suspended. Nothing survives a restart: the first
//! convergence after a start sets the baseline again.
//!
//! Resource drift: the stacks' resources changed in member accounts. With `driftDetection.interval`, a converged
//! pass starts DetectStackSetDrift when the last completed check (DescribeStackSet's LastDriftCheckTimestamp) is
//! older than the interval; it is an operation, so it only starts when the stack set's one slot is free, and a
//! running operation is adopted instead. After a remediation (plan step 7) a new check runs at once, so the
//! metrics show the drift cleared rather than the stale result of the check before.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{Context, DeploymentState, Outcome, State, operation};
use crate::cloud::{DetectDriftRequest, ObservedStackSet, Operation, Setting, StackSetSettings};
use crate::controller::Report;
use crate::desired::Deployment;
use crate::error::Error;
use crate::plan::Observed;

/// The stack set settings spec drift is tracked for, with the value as a short readable string.
/// A staged rollout's own tags are stacksetd's record of the rollout (and `stacksetd promote`'s), never drift.
pub fn settings_fingerprint(stack_set: &ObservedStackSet) -> BTreeMap<&'static str, String> {
    let settings = &stack_set.settings;
    let rollout_tagged = settings
        .tags
        .keys()
        .any(|key| super::rollout::TAGS.contains(&key.as_str()));
    // Only the tags are copied, and only when a rollout tag is there: a pass must not copy the template body.
    let untagged = rollout_tagged.then(|| StackSetSettings {
        tags: settings
            .tags
            .iter()
            .filter(|(key, _)| !super::rollout::TAGS.contains(&key.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..StackSetSettings::default()
    });
    Setting::ALL
        .into_iter()
        .filter_map(|setting| {
            let source = match (&untagged, setting) {
                (Some(untagged), Setting::Tags) => untagged,
                _ => settings,
            };
            Some((setting.name(), setting.fingerprint(source)?))
        })
        .collect()
}

/// Spec drift, as the deployment's state records it: the observed settings against the last converged ones,
/// every field that differs as (field, applied, found), and the fields not counted before. Reads only; the pass
/// counts them once it has decided ([`count_spec_drift`]).
#[allow(clippy::type_complexity)]
pub(super) fn spec_drift(
    state: &DeploymentState,
    settings: Option<&BTreeMap<&'static str, String>>,
) -> (Vec<(&'static str, String, String)>, Vec<&'static str>) {
    settings.map_or((Vec::new(), Vec::new()), |settings| {
        state.spec_drift(settings)
    })
}

/// Count (and log) the spec drift a pass saw first: once per (field, value) until the next baseline.
pub(super) fn count_spec_drift(
    deployment: &Deployment,
    state: &mut DeploymentState,
    remembered: &super::observe::Remembered,
) {
    for field in &remembered.spec_drift_new {
        if let Some((_, applied, found)) = remembered.spec_drift.iter().find(|(f, _, _)| f == field)
        {
            warn!(field, applied = %applied, found = %found, suspended = deployment.spec.suspend,
                "stack set changed outside stacksetd (spec drift); reverting to the desired state unless suspended");
        }
    }
    state.count_spec_drift(&remembered.spec_drift);
}

/// DescribeStackSet's LastDriftCheckTimestamp: the last completed drift detection, the one a remediation is for.
fn completed_check(observed: &Observed) -> Option<SystemTime> {
    observed
        .stack_set
        .as_ref()
        .and_then(|s| s.drift.as_ref())
        .and_then(|d| d.last_check)
}

/// The last drift check: the completed one, or when stacksetd last started one (an endpoint that never reports
/// the timestamp must not get a detection every pass).
pub(super) fn last_check(state: &DeploymentState, observed: &Observed) -> Option<SystemTime> {
    let submitted = state.drift_submitted();
    completed_check(observed).max(submitted)
}

/// Whether a drift detection is due: never checked, checked longer than `interval` ago, or instances were
/// re-applied after the last check (confirm the remediation).
pub fn drift_due(
    interval: Duration,
    last_check: Option<SystemTime>,
    now: SystemTime,
    remediated_after_check: bool,
) -> bool {
    remediated_after_check
        || last_check.is_none_or(|at| now.duration_since(at).unwrap_or_default() >= interval)
}

/// What a converged pass does about drift detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Detection {
    /// Start DetectStackSetDrift now.
    Due,
    /// Look again after this long (a converged deployment wakes for its next check, not only at the resync).
    In(Duration),
    /// No drift detection configured, no stack set yet, or never checked while it may not start.
    Off,
}

/// Whether a converged pass starts a drift detection, and otherwise when the next one is due. Pure.
pub(super) fn detection(
    deployment: &Deployment,
    observed: &Observed,
    last_check: Option<SystemTime>,
    now: SystemTime,
) -> Detection {
    let (Some(settings), Some(_)) = (&deployment.spec.drift_detection, &observed.stack_set) else {
        return Detection::Off;
    };
    // Instances re-applied after the completed check: confirm the remediation with a new one.
    if !deployment.spec.suspend
        && !observed.instances.is_empty()
        && drift_due(
            settings.interval.0,
            last_check,
            now,
            observed.drift_remediated,
        )
    {
        return Detection::Due;
    }
    match last_check {
        // A little past the due time, so the pass that wakes finds it due.
        Some(last) => Detection::In(
            settings
                .interval
                .0
                .saturating_sub(now.duration_since(last).unwrap_or_default())
                + Duration::from_secs(1),
        ),
        None => Detection::Off,
    }
}

/// The DRIFTED instances of the last check were re-applied already (plan must not do it again).
pub(super) fn remediated(state: &DeploymentState, observed: &Observed) -> bool {
    state.drift_remediated(completed_check(observed))
}

/// Record that this plan step re-applied the DRIFTED instances of the current check.
pub(super) fn record_remediation(state: &mut DeploymentState, observed: &Observed) {
    state.remediated(completed_check(observed));
}

/// Start DetectStackSetDrift (the slot is free: the caller adopted whatever held it). Its id is derived from
/// the check it follows, so a resend after a crash maps to the same operation.
pub(super) async fn start_detection(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    observed: &Observed,
    last: Option<SystemTime>,
    recent: &[Operation],
    report: Report,
) -> Result<Outcome, Error> {
    let spec = &deployment.spec;
    let material = format!(
        "{}|{:?}",
        spec.stack_set_name,
        last.map(|t| t
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs())
    );
    let base = operation::id_base("detect-drift", &material);
    let submission = operation::Submission {
        base: &base,
        recent,
        may_have_happened: true,
    };
    let sent = operation::submit(deployment, ctx, state, submission, &report, |id| async move {
        info!(operation = %id, instances = observed.instances.len(), "detecting stack set drift");
        let request = DetectDriftRequest {
            name: spec.stack_set_name.clone(),
            call_as: spec.call_as,
            preferences: spec.operation_preferences.clone(),
            operation_id: id,
        };
        ctx.cloud.detect_stack_set_drift(&request).await.map(|_| true)
    })
    .await?;
    let id = match sent {
        operation::Sent::Accepted(id) => id,
        operation::Sent::Decided(outcome) => return Ok(*outcome),
        operation::Sent::NothingToDo => {
            unreachable!("a drift detection always starts an operation")
        }
    };
    state.submitted_drift_detection(ctx.wall_now());
    state.adopt(&id);
    super::management_stack::detect_drift(deployment, ctx, observed).await;
    Ok(Outcome {
        state: State::Acted {
            action: "DetectStackSetDrift",
            operation_id: Some(id),
            summary: format!("detect drift on {} instance(s)", observed.instances.len()),
        },
        requeue_after: ctx.config.poll_min,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn drift_detection_is_due_when_never_run_stale_or_after_a_remediation() {
        let now = SystemTime::now();
        assert!(drift_due(HOUR, None, now, false));
        assert!(!drift_due(HOUR, Some(now - HOUR / 2), now, false));
        assert!(drift_due(HOUR, Some(now - HOUR), now, false));
        assert!(drift_due(HOUR, Some(now - HOUR / 2), now, true));
        // A clock that went backwards is "just checked", not an error.
        assert!(!drift_due(HOUR, Some(now + HOUR), now, false));
    }
}
