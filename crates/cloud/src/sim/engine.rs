//! Simulated time. The world is advanced lazily: every call first replays, in order, every event between the last
//! call and `tokio::time::Instant::now()` - operations beginning after their overhead, instances finishing after
//! `instance_duration`, queued operations taking the freed slot. Tests on tokio's paused clock therefore move
//! operations forward with `tokio::time::advance`/`sleep`, and the demo runs on the real clock.
//!
//! Size: over 600 lines: the one state machine that carries out operations over simulated time.

use std::collections::{BTreeSet, VecDeque};

use tokio::time::Instant;

use super::faults::FaultState;
use super::org::Organization;
use super::stacksets::{Initiator, OpRecord, Pair, StackSetState, Work};
use super::{SimConfig, World};
use crate::desired::model::{ConcurrencyMode, RegionConcurrencyType};
use crate::{
    DriftDetails, InstanceStatus, OperationAction, OperationPreferences, OperationResult,
    OperationStatus, StackInstance,
};

const CANCELLED_REASON: &str = "Cancelled since failure tolerance has exceeded";

/// The running state of an operation that holds its stack set's slot.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// When instances start being processed (start + operation overhead; for a hold, its end).
    begins_at: Instant,
    begun: bool,
    sequential: bool,
    regions: Vec<RegionRun>,
    /// With `SimConfig::global_names` and a template naming an IAM resource: the pairs this creation gives a
    /// new stack (none existed before it).
    fresh: BTreeSet<(String, String)>,
}

/// One Region of an operation: failure tolerance and concurrency are counted per Region, as in AWS.
#[derive(Debug, Clone)]
struct RegionRun {
    queue: VecDeque<Pair>,
    running: Vec<(Pair, Instant)>,
    tolerance: u32,
    max_concurrent: u32,
    strict: bool,
    failures: u32,
    exceeded: bool,
}

impl RegionRun {
    fn new(pairs: Vec<Pair>, preferences: &OperationPreferences, service_run: bool) -> Self {
        let n = pairs.len() as u32;
        // Auto-deployment runs ignore the operation preferences (AWS applies its own).
        let (tolerance, max_concurrent, strict) = if service_run {
            (0, n.max(1), false)
        } else {
            let tolerance = preferences
                .failure_tolerance_count
                .or(preferences
                    .failure_tolerance_percentage
                    .map(|p| p * n / 100))
                .unwrap_or(0);
            let max_concurrent = preferences
                .max_concurrent_count
                .or(preferences
                    .max_concurrent_percentage
                    .map(|p| (p * n / 100).max(1)))
                .unwrap_or(1);
            let strict =
                preferences.concurrency_mode != Some(ConcurrencyMode::SoftFailureTolerance);
            (tolerance, max_concurrent, strict)
        };
        RegionRun {
            queue: pairs.into(),
            running: Vec::new(),
            tolerance,
            max_concurrent,
            strict,
            failures: 0,
            exceeded: false,
        }
    }

    /// STRICT_FAILURE_TOLERANCE lowers concurrency as failures happen so the tolerance is never overshot.
    fn concurrency(&self) -> usize {
        let limit = if self.strict {
            self.max_concurrent
                .min((self.tolerance + 1).saturating_sub(self.failures))
        } else {
            self.max_concurrent
        };
        limit.max(1) as usize
    }

    fn done(&self) -> bool {
        self.queue.is_empty() && self.running.is_empty()
    }

    fn record_failure(&mut self) {
        self.failures += 1;
        if self.failures > self.tolerance {
            self.exceeded = true;
        }
    }
}

/// Gives the slot to operation `index`: resolves what it will touch, marks those instances PENDING and schedules
/// its first instances after the overhead. With `reassociate` (`SimConfig::reassociate`), a creation first moves
/// every instance it targets to the OU it reaches it through.
pub(crate) fn start_operation(
    stack_set: &mut StackSetState,
    index: usize,
    now: Instant,
    config: &SimConfig,
) {
    let names_iam = config.global_names && names_an_iam_resource(&stack_set.settings.template_body);
    let StackSetState { ops, instances, .. } = stack_set;
    let op = &mut ops[index];
    if config.reassociate && op.work == Work::Create {
        for pair in &op.pairs {
            if let (Some(ou), Some(instance)) = (
                &pair.ou,
                instances.get_mut(&(pair.account.clone(), pair.region.clone())),
            ) {
                instance.organizational_unit_id = Some(ou.clone());
            }
        }
    }
    op.public.status = OperationStatus::Running;
    op.public.started_at = Some(now);
    let existing = |pair: &Pair| instances.get(&(pair.account.clone(), pair.region.clone()));
    let pairs: Vec<Pair> = match op.work {
        // Idempotent: CURRENT and INOPERABLE instances are left alone; OUTDATED ones are retried.
        Work::Create => op
            .pairs
            .iter()
            .filter(|p| existing(p).is_none_or(|i| i.status == InstanceStatus::Outdated))
            .cloned()
            .collect(),
        Work::Update => op
            .pairs
            .iter()
            .filter(|p| existing(p).is_some_and(|i| i.status != InstanceStatus::Inoperable))
            .cloned()
            .collect(),
        Work::Delete { .. } => op
            .pairs
            .iter()
            .filter(|p| existing(p).is_some())
            .cloned()
            .collect(),
        Work::UpdateAll | Work::DetectDrift => instances
            .values()
            .filter(|i| i.status != InstanceStatus::Inoperable)
            .map(|i| Pair {
                account: i.account.clone(),
                region: i.region.clone(),
                ou: i.organizational_unit_id.clone(),
            })
            .collect(),
        Work::Hold { .. } => Vec::new(),
    };
    let fresh = pairs
        .iter()
        .map(|p| (p.account.clone(), p.region.clone()))
        .filter(|key| names_iam && op.work == Work::Create && !instances.contains_key(key))
        .collect();
    for pair in &pairs {
        let key = (pair.account.clone(), pair.region.clone());
        op.results.insert(
            key.clone(),
            OperationResult {
                account: pair.account.clone(),
                region: pair.region.clone(),
                status: "PENDING".to_string(),
                reason: None,
            },
        );
        if op.work == Work::DetectDrift {
            // Drift detection reads the stacks; the instances' own status is untouched.
            continue;
        }
        let instance = instances
            .entry(key.clone())
            .or_insert_with(|| StackInstance {
                account: pair.account.clone(),
                region: pair.region.clone(),
                organizational_unit_id: pair.ou.clone(),
                status: InstanceStatus::Outdated,
                detailed_status: None,
                status_reason: None,
                drift_status: Some("NOT_CHECKED".to_string()),
                last_operation_id: None,
            });
        if !matches!(op.work, Work::Delete { .. }) {
            instance.status = InstanceStatus::Outdated;
        }
        instance.detailed_status = Some("PENDING".to_string());
        instance.status_reason = None;
        instance.last_operation_id = Some(op.public.id.clone());
    }
    let service_run = op.public.initiator == Initiator::AutoDeployment;
    let order = region_order(&op.public.preferences, &op.public.regions, &pairs);
    let regions = order
        .iter()
        .map(|region| {
            let in_region = pairs
                .iter()
                .filter(|p| &p.region == region)
                .cloned()
                .collect();
            RegionRun::new(in_region, &op.public.preferences, service_run)
        })
        .collect();
    let begins_at = match op.work {
        Work::Hold { duration } => now + duration,
        _ => now + config.operation_overhead,
    };
    op.run = Some(Run {
        begins_at,
        begun: false,
        sequential: !service_run
            && op.public.preferences.region_concurrency_type
                != Some(RegionConcurrencyType::Parallel),
        regions,
        fresh,
    });
}

/// The template gives an IAM resource a name of its own (a role, managed policy or instance profile name): with
/// `SimConfig::global_names`, its stack exists once per account. A textual check, as `check_capabilities`'s.
fn names_an_iam_resource(body: &str) -> bool {
    ["RoleName", "ManagedPolicyName", "InstanceProfileName"]
        .iter()
        .any(|key| body.contains(&format!("\"{key}\"")) || body.contains(&format!("{key}:")))
}

/// RegionOrder first, then the requested Regions, then any other Region an instance is in.
fn region_order(
    preferences: &OperationPreferences,
    requested: &[String],
    pairs: &[Pair],
) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let candidates = preferences
        .region_order
        .iter()
        .chain(requested)
        .chain(pairs.iter().map(|p| &p.region));
    for region in candidates {
        if !order.contains(region) && pairs.iter().any(|p| &p.region == region) {
            order.push(region.clone());
        }
    }
    order
}

impl World {
    /// Replays every event up to `target` (never moves backwards).
    pub(crate) fn advance_to(&mut self, target: Instant) {
        while let Some(next) = self.next_event() {
            if next > target {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let wall = self.wall_clock(now);
            let World {
                stack_sets,
                org,
                faults,
                config,
                ..
            } = self;
            for stack_set in stack_sets.values_mut() {
                process(stack_set, org, faults, (now, wall), config);
            }
        }
        self.now = self.now.max(target);
    }

    fn next_event(&self) -> Option<Instant> {
        self.stack_sets
            .values()
            .flat_map(|s| s.ops.iter())
            .filter_map(|op| op.run.as_ref())
            .filter_map(|run| {
                if run.begun {
                    run.regions
                        .iter()
                        .flat_map(|r| r.running.iter().map(|(_, end)| *end))
                        .min()
                } else {
                    Some(run.begins_at)
                }
            })
            .min()
    }
}

/// Handles every event of one stack set due at `now`, handing the slot on as operations finish.
fn process(
    stack_set: &mut StackSetState,
    org: &Organization,
    faults: &FaultState,
    (now, wall): (Instant, std::time::SystemTime),
    config: &SimConfig,
) {
    loop {
        let running = stack_set
            .ops
            .iter()
            .position(|op| op.public.status == OperationStatus::Running);
        let Some(index) = running else {
            match stack_set
                .ops
                .iter()
                .position(|op| op.public.status == OperationStatus::Queued)
            {
                Some(queued) => {
                    start_operation(stack_set, queued, now, config);
                    continue;
                }
                None => return,
            }
        };
        let StackSetState {
            ops,
            instances,
            resource_drift,
            ..
        } = stack_set;
        let OpRecord {
            public,
            work,
            results,
            run,
            ..
        } = &mut ops[index];
        let Some(run) = run.as_mut() else {
            return;
        };
        if !run.begun {
            if run.begins_at > now {
                return;
            }
            run.begun = true;
        }
        let mut ctx = Ctx {
            work: *work,
            instances,
            results,
            resource_drift,
            org,
            faults,
            fresh: &run.fresh,
        };
        for region in &mut run.regions {
            let (finished, still): (Vec<_>, Vec<_>) =
                region.running.drain(..).partition(|(_, end)| *end <= now);
            region.running = still;
            for (pair, _) in finished {
                let failure = match ctx.work {
                    // Retaining stacks only disassociates them: nothing in the account can fail.
                    Work::Delete {
                        retain_stacks: true,
                    } => None,
                    _ => ctx.faults.failing_accounts.get(&pair.account).cloned(),
                };
                if ctx.finish(&pair, failure) {
                    region.record_failure();
                }
            }
        }
        pump(
            &mut run.regions,
            run.sequential,
            &mut ctx,
            now + config.instance_duration,
        );
        // StatusDetails counts the failures while the operation runs, not only at its end.
        let failed: u32 = run.regions.iter().map(|r| r.failures).sum();
        public.failed_instances = failed;
        if !run.regions.iter().all(RegionRun::done) {
            return;
        }
        let exceeded = run.regions.iter().any(|r| r.exceeded);
        public.ended_at = Some(now);
        public.status = if exceeded {
            public.status_reason = Some(format!(
                "Failure tolerance exceeded: {failed} stack instance(s) failed"
            ));
            OperationStatus::Failed
        } else {
            OperationStatus::Succeeded
        };
        ops[index].run = None;
        forget_emptied_targets(stack_set, index);
        stack_set.record_left(index);
        if stack_set.ops[index].work == Work::DetectDrift {
            record_drift(stack_set, index, wall);
        }
    }
}

/// The stack set's drift details after a drift detection ends (DescribeStackSet's StackSetDriftDetectionDetails).
fn record_drift(stack_set: &mut StackSetState, index: usize, wall: std::time::SystemTime) {
    let op = &stack_set.ops[index];
    let checked: Vec<&StackInstance> = op
        .results
        .iter()
        .filter(|(_, r)| r.status == "SUCCEEDED")
        .filter_map(|(key, _)| stack_set.instances.get(key))
        .collect();
    let drifted = checked
        .iter()
        .filter(|i| i.drift_status.as_deref() == Some("DRIFTED"))
        .count();
    let detection_status = match (op.public.status, op.public.failed_instances) {
        (OperationStatus::Failed, _) => "FAILED",
        (_, 0) => "COMPLETED",
        _ => "PARTIAL_SUCCESS",
    };
    stack_set.drift = Some(DriftDetails {
        status: if drifted > 0 { "DRIFTED" } else { "IN_SYNC" }.to_string(),
        detection_status: Some(detection_status.to_string()),
        last_check: Some(wall),
        total_instances: u32::try_from(op.results.len()).unwrap_or(u32::MAX),
        drifted_instances: u32::try_from(drifted).unwrap_or(u32::MAX),
    });
}

/// After a DeleteStackInstances run, an OU whose instances are all gone is no longer a target of the stack set.
fn forget_emptied_targets(stack_set: &mut StackSetState, index: usize) {
    let op = &stack_set.ops[index].public;
    if op.action != OperationAction::Delete {
        return;
    }
    let Some(targets) = &op.targets else { return };
    if targets.account_filter_type != crate::AccountFilterType::None {
        return;
    }
    let removed: Vec<String> = targets
        .organizational_unit_ids
        .iter()
        .filter(|ou| {
            !stack_set
                .instances
                .values()
                .any(|i| i.organizational_unit_id.as_deref() == Some(ou.as_str()))
        })
        .cloned()
        .collect();
    stack_set.ou_ids.retain(|ou| !removed.contains(ou));
}

/// Starts as many instances as concurrency allows, Region by Region (sequential) or all at once (parallel);
/// cancels what a Region (and, sequentially, every later Region) will no longer attempt.
fn pump(regions: &mut [RegionRun], sequential: bool, ctx: &mut Ctx<'_>, ends_at: Instant) {
    let mut cancel_rest = false;
    for region in regions {
        if cancel_rest {
            for pair in region.queue.drain(..) {
                ctx.cancel(&pair);
            }
            continue;
        }
        while !region.exceeded && region.running.len() < region.concurrency() {
            let Some(pair) = region.queue.pop_front() else {
                break;
            };
            match ctx.precheck(&pair) {
                Precheck::Start => {
                    ctx.set_detailed(&pair, "RUNNING");
                    region.running.push((pair, ends_at));
                }
                Precheck::Skip(reason) => ctx.skip(&pair, reason),
                Precheck::Fail(reason) => {
                    ctx.finish(&pair, Some(reason));
                    region.record_failure();
                }
            }
        }
        if region.exceeded {
            for pair in region.queue.drain(..) {
                ctx.cancel(&pair);
            }
        }
        if sequential && !region.done() {
            break;
        }
        if sequential && region.exceeded {
            cancel_rest = true;
        }
    }
}

enum Precheck {
    Start,
    Skip(String),
    Fail(String),
}

/// What instance bookkeeping needs while an operation runs.
struct Ctx<'a> {
    work: Work,
    instances: &'a mut std::collections::BTreeMap<(String, String), StackInstance>,
    results: &'a mut std::collections::BTreeMap<(String, String), OperationResult>,
    resource_drift: &'a mut std::collections::BTreeSet<(String, String)>,
    org: &'a Organization,
    faults: &'a FaultState,
    /// `Run::fresh`: the pairs this creation gives a new stack, whose named IAM resource may already exist.
    fresh: &'a BTreeSet<(String, String)>,
}

impl Ctx<'_> {
    fn key(pair: &Pair) -> (String, String) {
        (pair.account.clone(), pair.region.clone())
    }

    /// Account checks when an instance's turn comes: suspended/closed accounts are skipped (not a failure),
    /// and only a delete with RetainStacks removes their instances.
    fn precheck(&self, pair: &Pair) -> Precheck {
        let deleting = matches!(self.work, Work::Delete { .. });
        if self.work == Work::DetectDrift {
            return Precheck::Start;
        }
        let Some(member) = self.org.accounts.get(&pair.account) else {
            return if deleting {
                Precheck::Start
            } else {
                Precheck::Fail(format!(
                    "Account {} is not a member of organization {}",
                    pair.account, self.org.id
                ))
            };
        };
        if !self.org.is_inactive(&pair.account) {
            return match self.name_taken(pair) {
                Some(region) => Precheck::Fail(format!(
                    "a named IAM resource of this template already exists in account {} (the stack set's stack in \
                     {region}): IAM names are global per account",
                    pair.account
                )),
                None => Precheck::Start,
            };
        }
        // Since June 2023 every operation skips a suspended account instead of failing on it; only a delete
        // with RetainStacks=true removes its instance (from the stack set; the stack itself is left).
        match self.work {
            Work::Delete {
                retain_stacks: true,
            } => Precheck::Start,
            _ => Precheck::Skip(format!(
                "Skipped because account {} is {}: its stack instances can only be deleted with RetainStacks=true",
                pair.account, member.state
            )),
        }
    }

    /// The Region of another stack of the stack set in this account that already holds the template's named IAM
    /// resource, when this creation gives the pair a new stack (`Run::fresh`): one created earlier, or by this
    /// operation in a Region that finished first.
    fn name_taken(&self, pair: &Pair) -> Option<String> {
        let key = Self::key(pair);
        if !self.fresh.contains(&key) {
            return None;
        }
        self.instances
            .iter()
            .find(|((account, region), instance)| {
                *account == pair.account
                    && *region != pair.region
                    && (!self.fresh.contains(&(account.clone(), region.clone()))
                        || instance.status == InstanceStatus::Current)
            })
            .map(|((_, region), _)| region.clone())
    }

    fn set_detailed(&mut self, pair: &Pair, detailed: &str) {
        if self.work != Work::DetectDrift
            && let Some(instance) = self.instances.get_mut(&Self::key(pair))
        {
            instance.detailed_status = Some(detailed.to_string());
        }
        if let Some(result) = self.results.get_mut(&Self::key(pair)) {
            result.status = detailed.to_string();
        }
    }

    fn set_result(&mut self, pair: &Pair, status: &str, reason: Option<String>) {
        if let Some(result) = self.results.get_mut(&Self::key(pair)) {
            result.status = status.to_string();
            result.reason = reason;
        }
    }

    /// Applies an instance's outcome; returns whether it failed.
    fn finish(&mut self, pair: &Pair, failure: Option<String>) -> bool {
        let key = Self::key(pair);
        if self.work == Work::DetectDrift {
            return self.finish_drift_check(pair, failure);
        }
        let deleting = matches!(self.work, Work::Delete { .. });
        if failure.is_none() {
            // Deleted, or re-applied from the stack set: whatever had drifted is gone.
            self.resource_drift.remove(&key);
        }
        match (&failure, deleting) {
            (None, true) => {
                self.instances.remove(&key);
            }
            (None, false) => {
                if let Some(instance) = self.instances.get_mut(&key) {
                    instance.status = InstanceStatus::Current;
                    instance.detailed_status = Some("SUCCEEDED".to_string());
                    instance.status_reason = None;
                    instance.drift_status = Some("NOT_CHECKED".to_string());
                }
            }
            (Some(reason), _) => {
                if let Some(instance) = self.instances.get_mut(&key) {
                    // A failed delete leaves the instance INOPERABLE, as in AWS.
                    let (status, detailed) = if deleting {
                        (InstanceStatus::Inoperable, "INOPERABLE")
                    } else {
                        (InstanceStatus::Outdated, "FAILED")
                    };
                    instance.status = status;
                    instance.detailed_status = Some(detailed.to_string());
                    instance.status_reason = Some(reason.clone());
                }
            }
        }
        let failed = failure.is_some();
        let status = if failed { "FAILED" } else { "SUCCEEDED" };
        self.set_result(pair, status, failure);
        failed
    }

    /// A drift check of one instance: DRIFTED or IN_SYNC, or UNKNOWN when the account cannot be read.
    fn finish_drift_check(&mut self, pair: &Pair, failure: Option<String>) -> bool {
        let key = Self::key(pair);
        let drift = match &failure {
            Some(_) => "UNKNOWN",
            None if self.resource_drift.contains(&key) => "DRIFTED",
            None => "IN_SYNC",
        };
        if let Some(instance) = self.instances.get_mut(&key) {
            instance.drift_status = Some(drift.to_string());
        }
        let failed = failure.is_some();
        self.set_result(pair, if failed { "FAILED" } else { "SUCCEEDED" }, failure);
        failed
    }

    fn skip(&mut self, pair: &Pair, reason: String) {
        if let Some(instance) = self.instances.get_mut(&Self::key(pair)) {
            instance.status = InstanceStatus::Outdated;
            instance.detailed_status = Some("SKIPPED_SUSPENDED_ACCOUNT".to_string());
            instance.status_reason = Some(reason.clone());
        }
        self.set_result(pair, "SKIPPED", Some(reason));
    }

    fn cancel(&mut self, pair: &Pair) {
        if let Some(instance) = self.instances.get_mut(&Self::key(pair)) {
            instance.detailed_status = Some("CANCELLED".to_string());
            instance.status_reason = Some(CANCELLED_REASON.to_string());
        }
        self.set_result(pair, "CANCELLED", Some(CANCELLED_REASON.to_string()));
    }
}
