//! Prometheus metrics of the daemon, prefix `stacksetd_`. Each group is a struct that registers itself on a
//! `Registry` (kubert style), so tests build their own registry and nothing is global. Label values are bounded
//! `&'static str`s, except `deployment` (metadata.name, bounded by the desired-state file).
//!
//! The AWS request counter is not incremented on the hot path: the cloud port already counts every call in its
//! `CallCounter`, and `AwsRequests` copies that into the exposition at scrape time.
//!
//! Groups register through a [`Registrar`]: the daemon's `Registry`, or a [`catalog::Catalog`] that only lists
//! them, so [`catalog::families`] (what the alerts, the dashboard and the docs are checked against) is derived
//! from the very code that registers the daemon's metrics, never kept by hand.
//!
//! Size: about 700 lines: every metric group of the daemon with its help text and labels, one struct each; the
//! catalog derived from them is in `catalog.rs`.

pub mod catalog;
pub mod events;
mod leases;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramTimer, HistogramVec, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use crate::cloud::Cloud;
use crate::controller::rollout::Phase;
use crate::controller::{Outcome, State};
use crate::error::Error;

/// Every metric name starts with this (docs/reference.md's metrics table lists them all).
pub const NAMESPACE: &str = "stacksetd";

/// Where metric groups register their collectors.
pub trait Registrar {
    fn add(&self, collector: Box<dyn Collector>) -> Result<(), prometheus::Error>;
}

impl Registrar for Registry {
    fn add(&self, collector: Box<dyn Collector>) -> Result<(), prometheus::Error> {
        self.register(collector)
    }
}

/// The daemon's metrics: the registry and every group on it. The daemon builds one and shares it; a pass records
/// through [`Metrics::record_pass`], a removed deployment is dropped by [`Metrics::forget`], /metrics reads
/// [`Metrics::encode`].
pub struct Metrics {
    registry: Registry,
    pub reconcile: ReconcileMetrics,
    pub templates: TemplateMetrics,
    pub fleet: FleetMetrics,
    pub events: events::EventMetrics,
}

impl Metrics {
    /// A registry with every group the daemon exports (the AWS request counter reads `cloud`'s call counter).
    pub fn new(cloud: Arc<dyn Cloud>) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let (reconcile, templates, fleet, events) = register_all(&registry, cloud)?;
        Ok(Metrics {
            registry,
            reconcile,
            templates,
            fleet,
            events,
        })
    }

    /// After a pass: its result, duration bookkeeping aside (see [`ReconcileMetrics::pass_timer`]), in every
    /// group; `ended` are the operations the pass saw end.
    pub fn record_pass(
        &self,
        deployment: &str,
        result: &Result<Outcome, Error>,
        ended: &[(&'static str, &'static str)],
    ) {
        self.reconcile.record_pass(deployment, result);
        self.templates.record_pass(deployment, result);
        self.fleet.record_pass(deployment, result, ended);
    }

    /// A deployment removed from the desired state: its series go from every group.
    pub fn forget(&self, deployment: &str) {
        self.reconcile.forget(deployment);
        self.templates.forget(deployment);
        self.fleet.forget(deployment);
    }

    /// The registry in Prometheus's text exposition format.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        encode(&self.registry)
    }

    /// The lease group (`leases.table` set): registered only on replicas that share deployments.
    pub fn register_leases(
        &self,
        leases: std::sync::Arc<crate::leases::Leases>,
    ) -> Result<(), prometheus::Error> {
        leases::LeaseMetrics::register(&self.registry, leases)
    }
}

/// Every group the daemon exports, on `registrar` (a registry, or the catalog that lists them).
fn register_all(
    registrar: &impl Registrar,
    cloud: Arc<dyn Cloud>,
) -> Result<
    (
        ReconcileMetrics,
        TemplateMetrics,
        FleetMetrics,
        events::EventMetrics,
    ),
    prometheus::Error,
> {
    let reconcile = ReconcileMetrics::register(registrar)?;
    AwsRequests::register(registrar, cloud)?;
    register_build_info(registrar)?;
    Ok((
        reconcile,
        TemplateMetrics::register(registrar)?,
        FleetMetrics::register(registrar)?,
        events::EventMetrics::register(registrar)?,
    ))
}

/// `stacksetd_build_info{version, commit, build_date} 1`: which build a replica runs (`crate::build`), the
/// Prometheus convention for build facts (join on it, or alert when replicas run different commits).
fn register_build_info(registrar: &impl Registrar) -> Result<(), prometheus::Error> {
    let info = gauge(
        registrar,
        "build_info",
        "1, labelled with the version, the commit and the build date of this binary",
        &["version", "commit", "build_date"],
    )?;
    info.with_label_values(&[
        crate::build::VERSION,
        crate::build::COMMIT,
        crate::build::DATE,
    ])
    .set(1.0);
    Ok(())
}

/// `collector` registered on `registrar`, handed back for recording: the one way groups register.
fn registered<T: Collector + Clone + 'static>(
    registrar: &impl Registrar,
    collector: T,
) -> Result<T, prometheus::Error> {
    registrar.add(Box::new(collector.clone()))?;
    Ok(collector)
}

/// A counter family `stacksetd_<name>` with `labels`, registered.
fn counter(
    registrar: &impl Registrar,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let opts = Opts::new(name, help).namespace(NAMESPACE);
    registered(registrar, IntCounterVec::new(opts, labels)?)
}

/// A gauge family, registered.
fn gauge(
    registrar: &impl Registrar,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<GaugeVec, prometheus::Error> {
    let opts = Opts::new(name, help).namespace(NAMESPACE);
    registered(registrar, GaugeVec::new(opts, labels)?)
}

/// A histogram family with `buckets`, registered.
fn histogram(
    registrar: &impl Registrar,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> Result<HistogramVec, prometheus::Error> {
    let opts = HistogramOpts::new(name, help)
        .namespace(NAMESPACE)
        .buckets(buckets.to_vec());
    registered(registrar, HistogramVec::new(opts, labels)?)
}

/// Pass durations: a converged pass is a few API calls (tens of ms against moto, ~0.1-1 s against AWS); a pass
/// that re-lists a large organization or retries throttled calls takes tens of seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The `result` of a pass in `stacksetd_reconcile_total`.
pub fn outcome_label(result: &Result<Outcome, Error>) -> &'static str {
    match result {
        Ok(outcome) => match outcome.state {
            State::Converged => "converged",
            State::Waiting { .. } => "waiting",
            State::Settling => "settling",
            State::Acted { .. } => "acted",
            State::Suspended { .. } => "suspended",
            State::DeletionPending { .. } => "deletion_pending",
            State::CoverageGap(_) => "coverage_gap",
            State::TemplateUnapproved { .. } => "template_unapproved",
            State::RollingOut(ref rollout) if rollout.phase == Phase::Halted => "rollout_halted",
            State::RollingOut(_) => "rolling_out",
        },
        Err(_) => "error",
    }
}

/// What a (re)load of the desired-state file found: the `result` of `stacksetd_desired_state_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadResult {
    /// Parsed and validated; now the desired state.
    Valid,
    /// Parsed with problems; rejected, the last good state stays.
    Invalid,
    /// Missing or unreadable (e.g. between a delete and a re-create); the last good state stays.
    Unreadable,
}

impl ReloadResult {
    pub fn label(self) -> &'static str {
        match self {
            ReloadResult::Valid => "valid",
            ReloadResult::Invalid => "invalid",
            ReloadResult::Unreadable => "unreadable",
        }
    }
}

/// Reconciliation metrics: passes, their durations and errors, and desired-state reloads.
#[derive(Clone)]
pub struct ReconcileMetrics {
    reconcile_total: IntCounterVec,
    reconcile_duration: HistogramVec,
    reconcile_errors: IntCounterVec,
    last_success: GaugeVec,
    reloads: IntCounterVec,
    desired_valid: GaugeVec,
}

impl ReconcileMetrics {
    pub fn register(registry: &impl Registrar) -> Result<ReconcileMetrics, prometheus::Error> {
        let reconcile_total = counter(
            registry,
            "reconcile_total",
            "Reconcile passes by result (converged, waiting, settling, acted, suspended, error).",
            &["deployment", "result"],
        )?;
        let reconcile_duration = histogram(
            registry,
            "reconcile_duration_seconds",
            "Duration of a reconcile pass.",
            &["deployment"],
            DURATION_BUCKETS,
        )?;
        let reconcile_errors = counter(
            registry,
            "reconcile_errors_total",
            "Failed reconcile passes by reason (a bounded error label).",
            &["deployment", "reason"],
        )?;
        let last_success = gauge(
            registry,
            "last_successful_reconcile_timestamp_seconds",
            "Unix time of the last reconcile pass that completed without error.",
            &["deployment"],
        )?;
        let reloads = counter(
            registry,
            "desired_state_reloads_total",
            "Loads of the desired-state file by result (valid, invalid, unreadable).",
            &["result"],
        )?;
        let desired_valid = gauge(
            registry,
            "desired_state_valid",
            "1 when the last load of the desired-state file was valid; 0 while the file on disk is rejected (the \
             daemon keeps reconciling the last valid state).",
            &[],
        )?;
        Ok(ReconcileMetrics {
            reconcile_total,
            reconcile_duration,
            reconcile_errors,
            last_success,
            reloads,
            desired_valid,
        })
    }

    /// A drop guard observing the pass's duration, also when the pass is cancelled (the drain timeout).
    pub fn pass_timer(&self, deployment: &str) -> HistogramTimer {
        self.reconcile_duration
            .with_label_values(&[deployment])
            .start_timer()
    }

    pub fn record_pass(&self, deployment: &str, result: &Result<Outcome, Error>) {
        self.reconcile_total
            .with_label_values(&[deployment, outcome_label(result)])
            .inc();
        match result {
            Ok(_) => self
                .last_success
                .with_label_values(&[deployment])
                .set(unix_now()),
            Err(e) => self
                .reconcile_errors
                .with_label_values(&[deployment, e.metric_label()])
                .inc(),
        }
    }

    pub fn record_reload(&self, result: ReloadResult) {
        self.reloads.with_label_values(&[result.label()]).inc();
        let valid = matches!(result, ReloadResult::Valid);
        self.desired_valid
            .with_label_values::<&str>(&[])
            .set(if valid { 1.0 } else { 0.0 });
    }

    /// A deployment left the desired state: drop its gauge, so no stale "last success" lingers. Its counters
    /// stay (they only ever grow; dropping them would look like a reset).
    pub fn forget(&self, deployment: &str) {
        let _ = self.last_success.remove_label_values(&[deployment]);
    }
}

/// Template versions: which digest is applied, whether a new one waits, fetches and refusals.
#[derive(Clone)]
pub struct TemplateMetrics {
    info: GaugeVec,
    update_available: GaugeVec,
    /// `spec.rollout`: 1 for the phase a staged rollout is in (the series exist only while one is in progress).
    rollout_phase: GaugeVec,
    fetches: IntCounterVec,
    rejected: IntCounterVec,
    /// Per deployment: the (policy, sha256) labels of its `template_info` series, to drop it when it changes.
    info_labels: Arc<Mutex<HashMap<String, (String, String)>>>,
    /// Per deployment: the (digest or message, reason) last counted as rejected, so a refused version counts once,
    /// not once per pass.
    last_rejected: Arc<Mutex<HashMap<String, (String, &'static str)>>>,
}

impl TemplateMetrics {
    pub fn register(registry: &impl Registrar) -> Result<TemplateMetrics, prometheus::Error> {
        let info = gauge(
            registry,
            "template_info",
            "1 for the template digest the stack set has applied.",
            &["deployment", "policy", "sha256"],
        )?;
        let rollout_phase = gauge(
            registry,
            "rollout_phase",
            "1 for the phase of the deployment's staged rollout (spec.rollout) while a version has reached only \
             its canary: canary, verifying, baking, awaiting_promotion, promoting or halted.",
            &["deployment", "phase"],
        )?;
        let update_available = gauge(
            registry,
            "template_update_available",
            "1 while a template version other than the applied one is known and not applied (held, refused or not pinned).",
            &["deployment"],
        )?;
        let fetches = counter(
            registry,
            "template_fetches_total",
            "Template fetches by result (ok, not_modified, or the error label).",
            &["deployment", "result"],
        )?;
        let rejected = counter(
            registry,
            "template_rejected_total",
            "Template versions refused, by reason (allowlist, pin_mismatch, too_large), each version counted once.",
            &["deployment", "reason"],
        )?;
        Ok(TemplateMetrics {
            info,
            rollout_phase,
            update_available,
            fetches,
            rejected,
            info_labels: Arc::default(),
            last_rejected: Arc::default(),
        })
    }

    pub fn record_fetch(&self, deployment: &str, result: &'static str) {
        self.fetches.with_label_values(&[deployment, result]).inc();
    }

    /// After a pass: the applied digest, update availability and (once per version) a refusal.
    pub fn record_pass(&self, deployment: &str, result: &Result<Outcome, Error>) {
        let report = match result {
            Ok(outcome) => outcome.report.template.as_ref(),
            Err(e) => {
                // A refused first version is an error (nothing to fall back to): count it once per message.
                let reason = match e.metric_label() {
                    "template_refused_allowlist" => "allowlist",
                    "template_pin_mismatch" => "pin_mismatch",
                    "template_too_large" => "too_large",
                    _ => return,
                };
                self.count_rejection(deployment, e.to_string(), reason);
                return;
            }
        };
        if let Ok(outcome) = result
            && outcome.report.observed
        {
            self.record_rollout(deployment, outcome.report.rollout.as_ref().map(|r| r.phase));
        }
        let Some(report) = report else { return };
        self.update_available
            .with_label_values(&[deployment])
            .set(if report.update_available { 1.0 } else { 0.0 });
        if let Some(applied) = &report.applied_sha256 {
            let labels = (report.policy.to_string(), applied.clone());
            let mut known = self.info_labels.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = known.get(deployment)
                && *old != labels
            {
                let _ = self.info.remove_label_values(&[deployment, &old.0, &old.1]);
            }
            self.info
                .with_label_values(&[deployment, &labels.0, &labels.1])
                .set(1.0);
            known.insert(deployment.to_string(), labels);
        }
        if let Some(reason) = report.rejection {
            self.count_rejection(deployment, report.sha256.clone(), reason);
        }
    }

    /// The rollout's phase as six series while one is in progress; none otherwise.
    fn record_rollout(&self, deployment: &str, phase: Option<Phase>) {
        for p in Phase::ALL {
            match phase {
                Some(now) => self
                    .rollout_phase
                    .with_label_values(&[deployment, p.label()])
                    .set(if p == now { 1.0 } else { 0.0 }),
                None => {
                    let _ = self
                        .rollout_phase
                        .remove_label_values(&[deployment, p.label()]);
                }
            }
        }
    }

    fn count_rejection(&self, deployment: &str, what: String, reason: &'static str) {
        let key = (what, reason);
        let mut last = self.last_rejected.lock().unwrap_or_else(|e| e.into_inner());
        if last.get(deployment) != Some(&key) {
            self.rejected.with_label_values(&[deployment, reason]).inc();
            last.insert(deployment.to_string(), key);
        }
    }

    /// A deployment left the desired state: drop its gauges.
    pub fn forget(&self, deployment: &str) {
        let _ = self.update_available.remove_label_values(&[deployment]);
        self.record_rollout(deployment, None);
        let known = self
            .info_labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(deployment);
        if let Some((policy, sha)) = known {
            let _ = self.info.remove_label_values(&[deployment, &policy, &sha]);
        }
    }
}

/// The fleet as the last pass observed it: instances by status, coverage of the organization, both kinds of
/// drift, operations, and member access. Gauges are set from each pass that observed the stack set (a pass that
/// only polled a running operation leaves them as they were).
#[derive(Clone)]
pub struct FleetMetrics {
    instances: GaugeVec,
    accounts_targeted: GaugeVec,
    accounts_missing: GaugeVec,
    accounts_inactive: GaugeVec,
    coverage: GaugeVec,
    operations: IntCounterVec,
    drift_status: GaugeVec,
    drifted_instances: GaugeVec,
    spec_drift: GaugeVec,
    spec_drift_total: IntCounterVec,
    access_failures: GaugeVec,
    access_checked: GaugeVec,
    operation_failed: GaugeVec,
    auto_targets_missing: GaugeVec,
    management_stack_state: GaugeVec,
    management_stack_drifted: GaugeVec,
    /// Per deployment: the (status, detailed_status) series set by the last pass, to drop the ones that vanish.
    instance_labels: Arc<Mutex<HashMap<String, Vec<InstanceLabels>>>>,
}

/// The (status, detailed_status) labels of one `stack_instances` series.
type InstanceLabels = (String, String);

/// The drift statuses `stackset_drift_status` has a series for (1 for the current one, 0 for the others).
const DRIFT_STATUSES: [&str; 3] = ["DRIFTED", "IN_SYNC", "NOT_CHECKED"];
/// The coverage states of `coverage_instances`.
const COVERAGE_STATES: [&str; 5] = [
    "missing",
    "orphaned",
    "outdated",
    "inoperable",
    "skipped_suspended",
];

impl FleetMetrics {
    pub fn register(registry: &impl Registrar) -> Result<FleetMetrics, prometheus::Error> {
        let gauge = |name: &str, help: &str, labels: &[&str]| gauge(registry, name, help, labels);
        let counter =
            |name: &str, help: &str, labels: &[&str]| counter(registry, name, help, labels);
        Ok(FleetMetrics {
            instances: gauge(
                "stack_instances",
                "Stack instances by status and detailed status, as ListStackInstances reports them.",
                &["deployment", "status", "detailed_status"],
            )?,
            accounts_targeted: gauge(
                "accounts_targeted",
                "Active member accounts the deployment targets (OUs recursively, account filter applied, management account excluded).",
                &["deployment"],
            )?,
            accounts_missing: gauge(
                "accounts_missing_instance",
                "Targeted active accounts without an instance in at least one desired Region (the vendor's blocked accounts).",
                &["deployment"],
            )?,
            accounts_inactive: gauge(
                "accounts_inactive",
                "Targeted accounts that are suspended, pending closure or closed (not failures, not missing).",
                &["deployment"],
            )?,
            coverage: gauge(
                "coverage_instances",
                "Account x Region slots by coverage state: missing, orphaned (outside the targets), outdated, inoperable, skipped_suspended.",
                &["deployment", "state"],
            )?,
            operations: counter(
                "stackset_operations_total",
                "Stack set operations stacksetd waited for, by action and final status.",
                &["deployment", "action", "status"],
            )?,
            drift_status: gauge(
                "stackset_drift_status",
                "1 for the stack set's drift status from the last completed drift detection (DRIFTED, IN_SYNC, NOT_CHECKED), 0 for the others.",
                &["deployment", "status"],
            )?,
            drifted_instances: gauge(
                "drifted_stack_instances",
                "Stack instances whose drift status is DRIFTED.",
                &["deployment"],
            )?,
            spec_drift: gauge(
                "spec_drift",
                "1 while a stack set setting differs from what stacksetd applied (changed outside stacksetd), by field.",
                &["deployment", "field"],
            )?,
            spec_drift_total: counter(
                "spec_drift_total",
                "Stack set settings found changed outside stacksetd, by field (each change counted once).",
                &["deployment", "field"],
            )?,
            access_failures: gauge(
                "member_access_failures",
                "Targeted member accounts whose role could not be assumed at the last access check.",
                &["deployment"],
            )?,
            access_checked: gauge(
                "member_access_checked_accounts",
                "Member accounts tried at the last access check.",
                &["deployment"],
            )?,
            operation_failed: gauge(
                "operation_failed_instances",
                "Stack instances failed so far in the stack set operation stacksetd waits on (DescribeStackSetOperation's StatusDetails, no listing); 0 when none runs.",
                &["deployment"],
            )?,
            auto_targets_missing: gauge(
                "auto_deployment_targets_missing",
                "Desired OU x Region pairs CloudFormation does not auto-deploy to (ListStackSetAutoDeploymentTargets, checked every org_scan_interval); re-registered by the plan.",
                &["deployment"],
            )?,
            management_stack_state: gauge(
                "management_stack_state",
                "With spec.managementAccount: 1 for the state of the management account's stack (absent, complete, in_progress, failed, not_managed), 0 for the others.",
                &["deployment", "state"],
            )?,
            management_stack_drifted: gauge(
                "management_stack_drifted",
                "With spec.managementAccount: 1 when the last DetectStackDrift found the management account's stack DRIFTED.",
                &["deployment"],
            )?,
            instance_labels: Arc::default(),
        })
    }

    /// After a pass: the gauges from its report, the operations that ended, first-seen spec drift.
    pub fn record_pass(
        &self,
        deployment: &str,
        result: &Result<Outcome, Error>,
        operations_ended: &[(&'static str, &'static str)],
    ) {
        for (action, status) in operations_ended {
            self.operations
                .with_label_values(&[deployment, action, status])
                .inc();
        }
        let Ok(outcome) = result else { return };
        let failed_so_far = match &outcome.state {
            State::Waiting {
                progress: Some(progress),
                ..
            } => progress.failed,
            _ => 0,
        };
        self.operation_failed
            .with_label_values(&[deployment])
            .set(failed_so_far as f64);
        let report = &outcome.report;
        if !report.observed {
            return;
        }
        self.set_instances(deployment, &report.instances);
        let set = |gauge: &GaugeVec, value: usize| {
            gauge.with_label_values(&[deployment]).set(value as f64);
        };
        set(&self.accounts_targeted, report.accounts_targeted);
        set(&self.accounts_missing, report.accounts_missing_instance);
        set(&self.accounts_inactive, report.inactive_accounts);
        for (state, value) in COVERAGE_STATES.iter().zip([
            report.missing_instances,
            report.orphaned_instances,
            report.outdated_instances,
            report.inoperable_instances,
            report.skipped_suspended_instances,
        ]) {
            self.coverage
                .with_label_values(&[deployment, state])
                .set(value as f64);
        }
        if let Some(drift) = &report.drift {
            for status in DRIFT_STATUSES {
                let current = drift.status == status;
                self.drift_status
                    .with_label_values(&[deployment, status])
                    .set(if current { 1.0 } else { 0.0 });
            }
            set(&self.drifted_instances, drift.drifted_instances);
        }
        for field in crate::cloud::Setting::ALL.map(crate::cloud::Setting::name) {
            let drifted = report.spec_drift.iter().any(|d| d.field == field);
            self.spec_drift
                .with_label_values(&[deployment, field])
                .set(if drifted { 1.0 } else { 0.0 });
        }
        if let Some(check) = report
            .auto_deployment_targets
            .as_ref()
            .filter(|c| c.error.is_none())
        {
            set(&self.auto_targets_missing, check.missing.len());
        }
        if let Some(stack) = &report.management_stack {
            for state in crate::controller::ManagementStackReport::STATES {
                self.management_stack_state
                    .with_label_values(&[deployment, state])
                    .set(if stack.state == state { 1.0 } else { 0.0 });
            }
            set(&self.management_stack_drifted, usize::from(stack.drifted()));
        }
        for field in &report.spec_drift_new {
            self.spec_drift_total
                .with_label_values(&[deployment, field])
                .inc();
        }
    }

    /// One series per (status, detailed status) the pass saw; series that vanished are dropped, so a sum over
    /// the deployment always equals the instance count.
    fn set_instances(&self, deployment: &str, counts: &std::collections::BTreeMap<String, usize>) {
        let now: Vec<(String, String)> = counts
            .keys()
            .map(|key| {
                let (status, detailed) = key.split_once('/').unwrap_or((key.as_str(), "-"));
                (status.to_string(), detailed.to_string())
            })
            .collect();
        let mut known = self
            .instance_labels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(before) = known.get(deployment) {
            for (status, detailed) in before.iter().filter(|l| !now.contains(l)) {
                let _ = self
                    .instances
                    .remove_label_values(&[deployment, status, detailed]);
            }
        }
        for ((status, detailed), count) in now.iter().zip(counts.values()) {
            self.instances
                .with_label_values(&[deployment, status, detailed])
                .set(*count as f64);
        }
        known.insert(deployment.to_string(), now);
    }

    /// After an access check.
    pub fn record_access(&self, deployment: &str, checked: usize, failures: usize) {
        self.access_checked
            .with_label_values(&[deployment])
            .set(checked as f64);
        self.access_failures
            .with_label_values(&[deployment])
            .set(failures as f64);
    }

    /// A deployment left the desired state: drop its gauges (counters stay).
    pub fn forget(&self, deployment: &str) {
        for gauge in [
            &self.accounts_targeted,
            &self.accounts_missing,
            &self.accounts_inactive,
            &self.drifted_instances,
            &self.access_failures,
            &self.access_checked,
            &self.operation_failed,
            &self.auto_targets_missing,
            &self.management_stack_drifted,
        ] {
            let _ = gauge.remove_label_values(&[deployment]);
        }
        for state in crate::controller::ManagementStackReport::STATES {
            let _ = self
                .management_stack_state
                .remove_label_values(&[deployment, state]);
        }
        for state in COVERAGE_STATES {
            let _ = self.coverage.remove_label_values(&[deployment, state]);
        }
        for status in DRIFT_STATUSES {
            let _ = self.drift_status.remove_label_values(&[deployment, status]);
        }
        for field in crate::cloud::Setting::ALL.map(crate::cloud::Setting::name) {
            let _ = self.spec_drift.remove_label_values(&[deployment, field]);
        }
        let known = self
            .instance_labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(deployment);
        for (status, detailed) in known.into_iter().flatten() {
            let _ = self
                .instances
                .remove_label_values(&[deployment, &status, &detailed]);
        }
    }
}

/// `stacksetd_aws_requests_total{service,operation,outcome}`, copied from the cloud port's `CallCounter` at
/// scrape time.
pub struct AwsRequests {
    cloud: Arc<dyn Cloud>,
    counter: IntCounterVec,
    /// Two concurrent scrapes must not both add the same difference.
    sync: Mutex<()>,
}

impl AwsRequests {
    pub fn register(
        registry: &impl Registrar,
        cloud: Arc<dyn Cloud>,
    ) -> Result<(), prometheus::Error> {
        let counter = IntCounterVec::new(
            Opts::new(
                "aws_requests_total",
                "AWS API calls by service, operation and outcome.",
            )
            .namespace(NAMESPACE),
            &["service", "operation", "outcome"],
        )?;
        registry.add(Box::new(AwsRequests {
            cloud,
            counter,
            sync: Mutex::new(()),
        }))
    }
}

impl Collector for AwsRequests {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _guard = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        for ((service, operation, outcome), total) in self.cloud.calls().snapshot() {
            catch_up(
                &self
                    .counter
                    .with_label_values(&[service, operation, outcome]),
                total,
            );
        }
        self.counter.collect()
    }
}

/// Raise `counter` to `total`, a count kept elsewhere and copied in at scrape time (counters only go up).
fn catch_up(counter: &prometheus::IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

/// The registry in Prometheus's text exposition format.
pub fn encode(registry: &Registry) -> Result<String, prometheus::Error> {
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buffer)?;
    String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// The content type of `encode`'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::sim::{Sim, SimConfig};
    use crate::error::AwsErrorKind;

    #[test]
    fn passes_errors_and_reloads_are_exported_with_bounded_labels() {
        let registry = Registry::new();
        let metrics = ReconcileMetrics::register(&registry).unwrap();
        {
            let _timer = metrics.pass_timer("aimably");
        }
        metrics.record_pass(
            "aimably",
            &Err(Error::Aws {
                service: "cloudformation",
                operation: "DescribeStackSet",
                kind: AwsErrorKind::Throttling,
                code: "Throttling".into(),
                message: "Rate exceeded".into(),
            }),
        );
        metrics.record_reload(ReloadResult::Invalid);
        metrics.record_reload(ReloadResult::Valid);
        metrics.record_reload(ReloadResult::Valid);
        let text = encode(&registry).unwrap();
        for line in [
            "stacksetd_reconcile_total{deployment=\"aimably\",result=\"error\"} 1",
            "stacksetd_reconcile_errors_total{deployment=\"aimably\",reason=\"throttling\"} 1",
            "stacksetd_reconcile_duration_seconds_count{deployment=\"aimably\"} 1",
            "stacksetd_desired_state_reloads_total{result=\"invalid\"} 1",
            "stacksetd_desired_state_reloads_total{result=\"valid\"} 2",
            "# TYPE stacksetd_reconcile_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(
            !text.contains("stacksetd_last_successful_reconcile_timestamp_seconds{"),
            "no success yet:\n{text}"
        );
    }

    #[tokio::test]
    async fn aws_requests_follow_the_call_counter_at_scrape_time() {
        let sim = Sim::new(SimConfig::default());
        let cloud: Arc<dyn Cloud> = Arc::new(sim.clone());
        let registry = Registry::new();
        AwsRequests::register(&registry, cloud.clone()).unwrap();
        cloud.list_roots().await.unwrap();
        let text = encode(&registry).unwrap();
        let line = "stacksetd_aws_requests_total{operation=\"ListRoots\",outcome=\"ok\",service=\"organizations\"} 1";
        assert!(text.contains(line), "{text}");
        cloud.list_roots().await.unwrap();
        let text = encode(&registry).unwrap();
        assert!(text.contains(&line.replace("} 1", "} 2")), "{text}");
    }
}
