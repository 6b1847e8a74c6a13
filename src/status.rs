//! What the daemon shows on /status and decides /readyz from: per deployment, kstatus-style conditions (Ready,
//! Reconciling, Stalled), the generation last reconciled, the last error and the last pass's report; and the
//! desired-state file's last load. Workers and the reloader write here; the HTTP handlers only read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::controller::{Outcome, Report, State, TemplateReport, is_transient};
use crate::desired::{Deployment, Problem};
use crate::error::Error;
use crate::metrics::ReloadResult;
use crate::template::SourceState;

pub use crate::cloud::calls::{ActionName, action_name};
pub use crate::error::Label;

/// The last member access check of a deployment (`spec.accessCheck`; run by `daemon::access`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccessReport {
    pub role_name: String,
    /// RFC 3339.
    pub checked_at: String,
    pub checked: usize,
    pub failed: usize,
    /// Up to 200 failing accounts with the reason.
    pub failures: Vec<AccessFailure>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccessFailure {
    pub account: String,
    /// The error's bounded label (access_denied, throttling, ...).
    pub kind: Label,
    pub reason: String,
}

/// The whole /status document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub ready: bool,
    pub shutting_down: bool,
    pub desired_state: DesiredFileStatus,
    pub deployments: BTreeMap<String, DeploymentStatus>,
    /// Stack sets tagged for a deployment the desired state no longer names: reported, never deleted by
    /// themselves (from the last scan, every `org_scan_interval`).
    pub orphaned_stack_sets: Vec<crate::controller::ownership::Orphan>,
    /// With `leases.table`: this replica's session and the leases it holds (read when /status is asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leases: Option<crate::leases::LeaseSnapshot>,
    /// With `events.queue_url`: whether the queue is read, or the daemon polls without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventQueueStatus>,
}

/// The event queue as /status shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventQueueStatus {
    pub queue_url: String,
    pub mode: QueueMode,
    /// Since when (RFC 3339) it is in this mode.
    pub since: String,
    /// Why the queue cannot be read (the last failed call), while polling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Whether converged passes trust the queue for the operations they did not start (one call each): only the
    /// daemon's own identity, and not with leases.
    pub converged_pass_trusts_events: bool,
    pub received: u64,
    pub dropped: u64,
}

/// Whether the event queue is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueMode {
    /// Read: passes follow its events.
    Events,
    /// Not read (not yet, or failing): the daemon polls as without a queue.
    #[default]
    Polling,
}

impl EventQueueStatus {
    /// Why the queue cannot be read, while it cannot (what `stacksetd status` and the page's banner say).
    pub fn unreadable(&self) -> Option<&str> {
        self.last_error
            .as_deref()
            .filter(|_| self.mode == QueueMode::Polling)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredFileStatus {
    pub path: PathBuf,
    /// The content being reconciled (the last valid load); None until one succeeds.
    pub applied_sha256: Option<String>,
    pub last_load: Option<LoadRecord>,
}

/// One load of the desired-state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadRecord {
    pub result: ReloadResult,
    pub at: String,
    pub sha256: Option<String>,
    /// The whole message (every problem, one per line, as FILE:LINE:COLUMN: field: message).
    pub error: Option<String>,
    pub problems: Vec<Problem>,
}

impl LoadRecord {
    /// For a rejected load, one line a person acts on: when, and the first problem as FILE:LINE:COLUMN with its
    /// fix (or the error); `None` for a valid load.
    pub fn rejected(&self) -> Option<String> {
        if matches!(self.result, ReloadResult::Valid) {
            return None;
        }
        let first = match self.problems.first() {
            Some(p) => format!(
                "{}:{}:{}: {}{}",
                p.file.display(),
                p.line,
                p.column,
                if p.field.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", p.field)
                },
                p.message
            ),
            None => self
                .error
                .as_deref()
                .and_then(|e| e.lines().next())
                .unwrap_or("unreadable")
                .to_string(),
        };
        let more = self.problems.len().saturating_sub(1);
        Some(format!(
            "the desired-state file on disk was rejected at {}: {first}{}; the last valid state is still reconciled",
            self.at,
            if more > 0 {
                format!(" (and {more} more problem(s))")
            } else {
                String::new()
            }
        ))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeploymentStatus {
    pub stack_set_name: String,
    /// The generation (spec digest) in the desired state now.
    pub generation: String,
    /// The generation the last completed pass reconciled.
    pub observed_generation: Option<String>,
    pub conditions: Vec<Condition>,
    pub passes: u64,
    pub consecutive_failures: u32,
    pub last_pass_at: Option<String>,
    pub last_success_at: Option<String>,
    /// Seconds from the last pass to the next scheduled one (the requeue the pass returned).
    pub requeue_after_seconds: Option<f64>,
    pub last_error: Option<ErrorRecord>,
    /// The last successful pass's state and report.
    pub last_outcome: Option<Outcome>,
    /// The template versions (fetched, applied, pinned), the update decision and the IAM diff, from the last
    /// successful pass.
    pub template: Option<TemplateReport>,
    /// The template URL's last fetches, updated by every poll (a failed poll shows here at once, while the
    /// version held stays in use).
    pub template_fetch: Option<SourceState>,
    /// The last pass that observed the stack set: instances, coverage, drift (a pass that only polled a running
    /// operation does not replace it).
    pub observed: Option<Report>,
    /// The last member access check (`spec.accessCheck`).
    pub access: Option<AccessReport>,
    /// Why the access check could not run at all (`stacksetd status` observing AWS itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ErrorRecord {
    pub reason: Label,
    pub message: String,
    pub at: String,
}

/// A kstatus condition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: Label,
    /// "True", "False" or "Unknown".
    pub status: Label,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

/// Shared, internally locked; every lock is held only to copy or update a few fields.
pub struct StatusBoard {
    inner: Mutex<Status>,
    ready: watch::Sender<bool>,
    leases: std::sync::OnceLock<std::sync::Arc<crate::leases::Leases>>,
}

impl StatusBoard {
    pub fn new(path: PathBuf) -> StatusBoard {
        StatusBoard {
            inner: Mutex::new(Status {
                ready: false,
                shutting_down: false,
                desired_state: DesiredFileStatus {
                    path,
                    applied_sha256: None,
                    last_load: None,
                },
                deployments: BTreeMap::new(),
                orphaned_stack_sets: Vec::new(),
                leases: None,
                events: None,
            }),
            ready: watch::channel(false).0,
            leases: Default::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Status) -> T) -> T {
        let mut status = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut status)
    }

    pub fn set_orphans(&self, orphans: Vec<crate::controller::ownership::Orphan>) {
        self.with(|s| s.orphaned_stack_sets = orphans);
    }

    /// Show or update the event queue's state.
    pub fn event_queue(&self, update: impl FnOnce(&mut EventQueueStatus)) {
        self.with(|s| update(s.events.get_or_insert_with(Default::default)));
    }

    pub fn snapshot(&self) -> Status {
        let mut status = self.with(|s| s.clone());
        status.leases = self.leases.get().map(|l| l.snapshot());
        status
    }

    /// Show this replica's leases on /status.
    pub fn show_leases(&self, leases: std::sync::Arc<crate::leases::Leases>) {
        let _ = self.leases.set(leases);
    }

    /// /readyz: ready once the desired state loaded and every deployment finished a pass; not while shutting
    /// down. Once ready it stays ready: a later invalid edit keeps the last good state running, and a deployment
    /// added later does not take the whole daemon out of service.
    pub fn is_ready(&self) -> bool {
        self.with(|s| s.ready && !s.shutting_down)
    }

    /// Resolves to true when the daemon first becomes ready (for sd-notify READY=1).
    pub fn subscribe_ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    pub fn set_shutting_down(&self) {
        self.with(|s| s.shutting_down = true);
    }

    /// A valid load: its deployments become the ones shown (new ones pending, removed ones gone), atomically with
    /// the load record, so readiness never sees a valid load without its deployments.
    pub fn record_valid_load(&self, sha256: &str, deployments: &[Deployment]) {
        self.with(|s| {
            s.deployments
                .retain(|name, _| deployments.iter().any(|d| d.name() == name));
            for deployment in deployments {
                let entry = s
                    .deployments
                    .entry(deployment.name().to_string())
                    .or_insert_with(new_deployment_status);
                entry.stack_set_name = deployment.spec.stack_set_name.clone();
                entry.generation = deployment.generation();
            }
            s.desired_state.applied_sha256 = Some(sha256.to_string());
            s.desired_state.last_load = Some(LoadRecord {
                result: ReloadResult::Valid,
                at: now(),
                sha256: Some(sha256.to_string()),
                error: None,
                problems: Vec::new(),
            });
        });
        self.update_ready();
    }

    /// A rejected load (invalid or unreadable): recorded; the deployments stay as they are.
    pub fn record_rejected_load(&self, result: ReloadResult, sha256: Option<&str>, error: &Error) {
        let problems = match error {
            Error::Invalid(invalid) => invalid.problems.clone(),
            _ => Vec::new(),
        };
        self.with(|s| {
            s.desired_state.last_load = Some(LoadRecord {
                result,
                at: now(),
                sha256: sha256.map(str::to_string),
                error: Some(error.to_string()),
                problems,
            });
        });
    }

    /// A pass of `generation` is starting.
    pub fn pass_started(&self, name: &str, generation: &str) {
        self.with(|s| {
            if let Some(d) = s.deployments.get_mut(name) {
                let behind = d.observed_generation.as_deref() != Some(generation);
                if behind {
                    set_condition(
                        &mut d.conditions,
                        "Reconciling",
                        "True",
                        "NewGeneration",
                        format!("reconciling generation {generation}"),
                    );
                }
            }
        });
    }

    /// A pass of `generation` ended with `result`; `requeue_after` is when the next one runs.
    pub fn pass_finished(
        &self,
        name: &str,
        generation: &str,
        result: &Result<Outcome, Error>,
        consecutive_failures: u32,
        requeue_after: Duration,
    ) {
        self.with(|s| {
            let Some(d) = s.deployments.get_mut(name) else {
                return;
            };
            let at = now();
            d.passes += 1;
            d.observed_generation = Some(generation.to_string());
            d.consecutive_failures = consecutive_failures;
            d.last_pass_at = Some(at.clone());
            d.requeue_after_seconds = Some(requeue_after.as_secs_f64());
            match result {
                Ok(outcome) => {
                    d.last_success_at = Some(at);
                    d.last_error = None;
                    // The account tree is copied once, into `observed` (the last outcome goes without it).
                    let mut last = outcome.clone();
                    let organization = last.report.organization.take();
                    if outcome.report.observed {
                        d.observed = Some(Report {
                            organization,
                            ..last.report.clone()
                        });
                        d.overlay_access();
                        apply_auto_targets(&mut d.conditions, &outcome.report);
                    }
                    d.last_outcome = Some(last);
                    if let Some(template) = &outcome.report.template {
                        d.template_fetch = template.source.clone();
                        d.template = Some(template.clone());
                    }
                    apply_outcome(&mut d.conditions, &outcome.state);
                }
                Err(error) => {
                    d.last_error = Some(ErrorRecord {
                        reason: error.metric_label().into(),
                        message: error.to_string(),
                        at,
                    });
                    apply_error(&mut d.conditions, error, requeue_after);
                }
            }
        });
        self.update_ready();
    }

    /// A poll of the template URL these deployments use.
    pub fn record_template_fetch(&self, names: &[&str], state: Option<SourceState>) {
        self.with(|s| {
            for name in names {
                if let Some(d) = s.deployments.get_mut(*name) {
                    d.template_fetch = state.clone();
                }
            }
        });
    }

    /// A member access check finished.
    pub fn record_access(&self, name: &str, report: AccessReport) {
        self.with(|s| {
            if let Some(d) = s.deployments.get_mut(name) {
                d.access = Some(report);
                d.overlay_access();
            }
        });
    }

    /// Latch readiness: a valid load happened and every deployment completed a pass. With leases, every
    /// deployment this replica holds, once it has a session (the others are another replica's to pass).
    pub fn update_ready(&self) {
        let leases = self.leases.get();
        if leases.is_some_and(|l| l.snapshot().session.is_none()) {
            return;
        }
        let became_ready = self.with(|s| {
            if s.ready || s.desired_state.applied_sha256.is_none() {
                return false;
            }
            if s.deployments
                .iter()
                .filter(|(name, _)| leases.is_none_or(|l| l.held(name)))
                .all(|(_, d)| d.passes > 0)
            {
                s.ready = true;
                return true;
            }
            false
        });
        if became_ready {
            self.ready.send_replace(true);
        }
    }
}

impl DeploymentStatus {
    /// Show the member access check's failures on the accounts' states (the pass does not know them): the
    /// daemon's board after each pass and check, and `stacksetd status` observing AWS itself.
    pub fn overlay_access(&mut self) {
        let (Some(observed), Some(access)) = (&mut self.observed, &self.access) else {
            return;
        };
        if let Some(organization) = &mut observed.organization {
            let failures = access
                .failures
                .iter()
                .map(|f| (f.account.clone(), format!("access check: {}", f.kind)))
                .collect();
            organization.overlay_access_failures(&failures);
        }
    }
}

fn new_deployment_status() -> DeploymentStatus {
    DeploymentStatus {
        conditions: initial_conditions(),
        ..DeploymentStatus::default()
    }
}

fn initial_conditions() -> Vec<Condition> {
    let at = now();
    let condition =
        |kind: &'static str, status: &'static str, reason: &str, message: &str| Condition {
            kind: kind.into(),
            status: status.into(),
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: at.clone(),
        };
    vec![
        condition("Ready", "Unknown", "Pending", "no pass has completed yet"),
        condition("Reconciling", "True", "Pending", "the first pass is queued"),
        condition("Stalled", "False", "Pending", ""),
        condition(
            "AutoDeploymentTargets",
            "Unknown",
            "NotChecked",
            "ListStackSetAutoDeploymentTargets not compared yet",
        ),
    ]
}

fn apply_outcome(conditions: &mut [Condition], state: &State) {
    let (ready, reconciling, reason, message) = match state {
        State::Converged => (
            "True",
            "False",
            "Converged",
            "the stack set and every instance match the desired state: every targeted account has its CURRENT \
             instance in every Region, and nothing else has one"
                .to_string(),
        ),
        State::CoverageGap(gap) => ("False", "False", "CoverageGap", gap.why.clone()),
        State::TemplateUnapproved { message } => {
            ("False", "False", "TemplateUnapproved", message.clone())
        }
        State::RollingOut(rollout) => {
            let (reason, message) = rollout.condition();
            // A halted rollout waits for a person; one in progress is still being reconciled.
            let reconciling = if reason == "RolloutHalted" { "False" } else { "True" };
            ("False", reconciling, reason, message)
        }
        State::Waiting {
            operation_id,
            action,
            ..
        } => (
            "False",
            "True",
            "OperationRunning",
            format!("waiting for {action} operation {operation_id}"),
        ),
        State::Settling => (
            "False",
            "True",
            "Settling",
            "instances are still being worked on".to_string(),
        ),
        State::Acted {
            action, summary, ..
        } => (
            "False",
            "True",
            "StepSubmitted",
            format!("{action}: {summary}"),
        ),
        State::Suspended { pending } => (
            "False",
            "False",
            "Suspended",
            format!("suspend: true; {pending} change(s) pending, nothing applied"),
        ),
        State::DeletionPending {
            action,
            summary,
            runs_at,
        } => (
            "False",
            "True",
            "DeletionPending",
            format!("{action} ({summary}) waits for deletion_delay; runs at {runs_at}"),
        ),
    };
    set_condition(conditions, "Ready", ready, reason, message.clone());
    set_condition(conditions, "Reconciling", reconciling, reason, message);
    set_condition(conditions, "Stalled", "False", reason, String::new());
}

/// A transient error (throttling, a held slot) is still progress; any other error stalls the deployment until
/// something changes (the backoff keeps retrying it).
fn apply_error(conditions: &mut [Condition], error: &Error, retry_in: Duration) {
    let reason = error.metric_label();
    let message = format!(
        "{error} (retrying in {})",
        humantime::format_duration(Duration::from_secs(retry_in.as_secs()))
    );
    set_condition(conditions, "Ready", "False", reason, message.clone());
    if is_transient(error) {
        set_condition(conditions, "Reconciling", "True", reason, message);
        set_condition(conditions, "Stalled", "False", reason, String::new());
    } else {
        set_condition(conditions, "Reconciling", "False", reason, String::new());
        set_condition(conditions, "Stalled", "True", reason, message);
    }
}

/// Update a condition; its transition time moves only when its status changes.
/// `AutoDeploymentTargets`: True when CloudFormation auto-deploys to every desired OU x Region, False with the
/// missing pairs, Unknown when the check did not run or the endpoint could not answer.
fn apply_auto_targets(conditions: &mut [Condition], report: &Report) {
    const KIND: &str = "AutoDeploymentTargets";
    match &report.auto_deployment_targets {
        None => set_condition(
            conditions,
            KIND,
            "Unknown",
            "NotChecked",
            "no stack set yet, or automatic deployment off".to_string(),
        ),
        Some(check) if check.error.is_some() => set_condition(
            conditions,
            KIND,
            "Unknown",
            "CheckFailed",
            check.error.clone().unwrap_or_default(),
        ),
        Some(check) if !check.missing.is_empty() => set_condition(
            conditions,
            KIND,
            "False",
            "Missing",
            format!(
                "CloudFormation does not auto-deploy to {} (registered again by the plan)",
                check.missing.join(", ")
            ),
        ),
        Some(check) => set_condition(
            conditions,
            KIND,
            "True",
            "Verified",
            format!("checked at {}", check.checked_at),
        ),
    }
}

fn set_condition(
    conditions: &mut [Condition],
    kind: &'static str,
    status: &'static str,
    reason: &str,
    message: String,
) {
    if let Some(c) = conditions.iter_mut().find(|c| c.kind == kind) {
        if c.status != status {
            c.status = status.into();
            c.last_transition_time = now();
        }
        c.reason = reason.to_string();
        c.message = message;
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::DeploymentYaml;

    fn deployment(name: &str) -> Deployment {
        DeploymentYaml::new()
            .name(name)
            .stack_set(&format!("S{name}"))
            .management_account("123456789012")
            .spec("  template: {policy: DataOnly}\n")
            .targets(&["ROOT"], &["us-east-1"])
            .build()
    }

    fn condition<'a>(s: &'a Status, name: &str, kind: &str) -> &'a Condition {
        s.deployments[name]
            .conditions
            .iter()
            .find(|c| c.kind == kind)
            .unwrap()
    }

    #[test]
    fn ready_needs_a_valid_load_and_a_pass_of_every_deployment_then_latches() {
        let board = StatusBoard::new("d.yaml".into());
        let (a, b) = (deployment("a"), deployment("b"));
        assert!(!board.is_ready());
        board.record_valid_load("abc", &[a.clone(), b.clone()]);
        assert!(!board.is_ready(), "no pass yet");
        let err = Err(Error::Conflict("SELF_MANAGED stack set".into()));
        board.pass_finished("a", &a.generation(), &err, 1, Duration::from_secs(4));
        assert!(!board.is_ready(), "b has not run");
        board.pass_finished("b", &b.generation(), &err, 1, Duration::from_secs(4));
        assert!(board.is_ready());
        assert!(*board.subscribe_ready().borrow());
        board.record_rejected_load(
            ReloadResult::Invalid,
            Some("def"),
            &Error::Conflict("x".into()),
        );
        assert!(
            board.is_ready(),
            "an invalid edit keeps the last good state"
        );
        let s = board.snapshot();
        assert_eq!(s.desired_state.applied_sha256.as_deref(), Some("abc"));
        assert_eq!(condition(&s, "a", "Stalled").status, "True");
        assert_eq!(condition(&s, "a", "Stalled").reason, "conflict");
        assert_eq!(condition(&s, "a", "Ready").status, "False");
        assert_eq!(s.deployments["a"].observed_generation, Some(a.generation()));
        board.record_valid_load("ghi", std::slice::from_ref(&a));
        assert_eq!(
            board.snapshot().deployments.keys().collect::<Vec<_>>(),
            ["a"],
            "b removed"
        );
        board.set_shutting_down();
        assert!(!board.is_ready());
    }

    #[test]
    fn a_valid_load_without_deployments_is_ready_at_once() {
        let board = StatusBoard::new("d.yaml".into());
        board.record_valid_load("abc", &[]);
        assert!(board.is_ready());
    }

    #[test]
    fn an_invalid_file_at_start_is_never_ready() {
        let board = StatusBoard::new("d.yaml".into());
        board.record_rejected_load(
            ReloadResult::Invalid,
            Some("abc"),
            &Error::Conflict("x".into()),
        );
        assert!(!board.is_ready());
    }
}
