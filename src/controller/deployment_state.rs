//! What the controller remembers between passes of a deployment. None of it is needed for correctness after a
//! restart (AWS holds the truth: a running operation is found again by listing); it saves calls and makes
//! deliberate retries take a fresh OperationId.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// How many finished operation ids are remembered per deployment (enough to step past eventually-consistent
/// listings; old ones only matter for ids that are reused, which a retry never does).
const FINISHED_REMEMBERED: usize = 64;

#[derive(Debug, Clone)]
pub struct Inflight {
    pub id: String,
    pub since: Instant,
}

/// Everything the controller keeps about one deployment between its passes. The deployment's worker owns it (next
/// to the failure count it already owns) and lends it to each pass: nothing else reads or writes it, and removing
/// the deployment drops it with everything kept under the name.
#[derive(Debug, Default)]
pub struct DeploymentState {
    inflight: Option<Inflight>,
    finished: VecDeque<String>,
    /// The stack set's settings (field -> value) as last seen converged; a later difference that stacksetd did
    /// not make is spec drift. Cleared when stacksetd itself updates the stack set.
    baseline: Option<BTreeMap<&'static str, String>>,
    /// Spec drift already counted: (field, value seen).
    drift_counted: BTreeSet<(&'static str, String)>,
    /// Coverage gaps (account, Region) and when each was first seen / last repaired.
    gaps: BTreeMap<(String, String), Gap>,
    /// The drift check (LastDriftCheckTimestamp) whose DRIFTED instances were last re-applied; `Some(None)` when
    /// the endpoint reported no timestamp.
    remediated_check: Option<Option<SystemTime>>,
    /// When stacksetd last submitted a drift detection (for endpoints that never report a timestamp).
    drift_submitted: Option<SystemTime>,
    /// Operations seen ending, (action, status), not yet counted in the metrics.
    ended: Vec<(&'static str, &'static str)>,
    /// Slots whose INOPERABLE instance was removed to be created again.
    recreate: BTreeSet<(String, String)>,
    /// The deployment's generation (a digest of its spec) and when this process first saw it: deletions wait for
    /// `deletion_delay` of it unchanged.
    desired_since: Option<(String, Instant)>,
    /// An operation id sent whose answer was lost or ambiguous: the next pass asks DescribeStackSetOperation
    /// about it (strongly consistent) before anything else.
    unconfirmed: Option<String>,
    /// The stack set's last full listing of instances (`controller/instances.rs`).
    instances: Option<super::instances::InstanceCache>,
    /// The event ledger's stamp and the generation when a pass last found the deployment converged: while both
    /// hold, nothing happened to the stack set since (`instances::Look::Trusting`).
    quiet: Option<super::instances::Quiet>,
    /// The ARNs of the stack sets named in `autoDeployment.dependsOn`, and when each was read.
    dependency_arns: BTreeMap<String, (String, Instant)>,
    /// The last auto-deployment target check and when it ran (`controller/auto_targets.rs`).
    auto_targets: Option<(Instant, super::auto_targets::Checked)>,
    /// The pairs the last check found missing (kept when the check itself is forgotten): a pair is repaired
    /// only when two checks in a row find it missing.
    auto_targets_missing_before: BTreeSet<(String, String)>,
    /// The management account stack's template: (stack id, its LastUpdatedTime, the body GetTemplate gave).
    stack_template: Option<(String, Option<SystemTime>, String)>,
    /// The management account stack's last failed creation.
    failed_stack_creation: Option<crate::plan::management_stack::FailedCreation>,
    /// The accounts the desired state targeted at the last pass, under which generation, and those a change of
    /// generation newly targeted that still miss an instance (see `newly_targeted`).
    targeted: Option<(String, BTreeSet<String>, BTreeSet<String>)>,
    /// What the log last said of the deployment's template: its decision and its warnings are logged when they
    /// change, not every pass.
    pub(super) template_log: super::templates::Logged,
}

#[derive(Debug, Clone, Copy)]
struct Gap {
    first_seen: Instant,
    repaired: Option<Instant>,
}

/// `newly_targeted`'s rule (pure): the accounts a change of generation newly targeted, kept while they miss an
/// instance; under the same generation the set only shrinks, and nothing is new without a previous generation.
fn newly_targeted_accounts(
    previous: Option<(String, BTreeSet<String>, BTreeSet<String>)>,
    generation: &str,
    targeted: &BTreeSet<String>,
    missing: &BTreeSet<(String, String)>,
) -> BTreeSet<String> {
    let mut new = match previous {
        Some((g, _, new)) if g == generation => new,
        Some((_, before, _)) => targeted.difference(&before).cloned().collect(),
        None => BTreeSet::new(),
    };
    new.retain(|a| missing.iter().any(|(account, _)| account == a));
    new
}

/// The least time between two repairs of one gap: a one-shot command has no grace, and must not resubmit a repair
/// in a loop.
const REPAIR_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// Whether a coverage gap is due for a repair at `now` (pure; the rule `overdue_gaps` applies to every gap):
/// - never repaired: at once when nothing else will fill it (auto-deployment off), else once seen for `grace`
///   (auto-deployment had its chance);
/// - repaired and still there: again after `grace`, and never sooner than [`REPAIR_AGAIN_AFTER`].
fn gap_due(gap: &Gap, now: Instant, grace: Duration, auto_deployment: bool) -> bool {
    match gap.repaired {
        Some(at) => now.duration_since(at) >= grace.max(REPAIR_AGAIN_AFTER),
        None => !auto_deployment || now.duration_since(gap.first_seen) >= grace,
    }
}

impl DeploymentState {
    /// Since when the desired state has been `generation` (first seen by this process; a restart starts over,
    /// which only makes a deletion wait longer).
    pub fn desired_since(&mut self, generation: &str) -> Instant {
        match &self.desired_since {
            Some((g, since)) if g == generation => *since,
            _ => {
                let now = Instant::now();
                self.desired_since = Some((generation.to_string(), now));
                now
            }
        }
    }

    /// A mutating call with this OperationId was sent and its answer lost (or ambiguous).
    pub fn sent_unconfirmed(&mut self, id: &str) {
        self.unconfirmed = Some(id.to_string())
    }

    pub fn take_unconfirmed(&mut self) -> Option<String> {
        self.unconfirmed.take()
    }

    pub fn inflight(&self) -> Option<Inflight> {
        self.inflight.clone()
    }

    /// Wait for this operation from now on (ours, or one found running).
    pub fn adopt(&mut self, id: &str) {
        if self.inflight.as_ref().is_none_or(|i| i.id != id) {
            self.inflight = Some(Inflight {
                id: id.to_string(),
                since: Instant::now(),
            });
        }
    }

    /// The operation ended; remember its id so a retry takes the next sequence number.
    pub fn finish(&mut self, id: &str) {
        if self.inflight.as_ref().is_some_and(|i| i.id == id) {
            self.inflight = None;
        }
        if !self.finished.iter().any(|f| f == id) {
            self.finished.push_back(id.to_string());
            if self.finished.len() > FINISHED_REMEMBERED {
                self.finished.pop_front();
            }
        }
    }

    pub fn finished(&self) -> Vec<String> {
        self.finished.iter().cloned().collect()
    }

    /// Spec drift: compare the stack set's settings with the baseline. Returns every field that differs
    /// (field, baseline value, value now) and, of those, the ones not counted before ([`Self::count_spec_drift`]
    /// counts them). Reads only: a pass that observes twice sees the same first sightings both times.
    #[allow(clippy::type_complexity)]
    pub fn spec_drift(
        &self,
        now: &BTreeMap<&'static str, String>,
    ) -> (Vec<(&'static str, String, String)>, Vec<&'static str>) {
        let Some(baseline) = &self.baseline else {
            return (Vec::new(), Vec::new());
        };
        let drifted: Vec<(&'static str, String, String)> = now
            .iter()
            .filter_map(|(field, value)| {
                let before = baseline.get(field)?;
                (before != value).then(|| (*field, before.clone(), value.clone()))
            })
            .collect();
        let new = drifted
            .iter()
            .filter(|(field, _, now)| !self.drift_counted.contains(&(*field, now.clone())))
            .map(|(field, _, _)| *field)
            .collect();
        (drifted, new)
    }

    /// The spec drift a pass reported has been counted (each (field, value) once until the next baseline).
    pub fn count_spec_drift(&mut self, drifted: &[(&'static str, String, String)]) {
        for (field, _, now) in drifted {
            self.drift_counted.insert((*field, now.clone()));
        }
    }

    /// Converged: these settings are what stacksetd applied.
    pub fn set_baseline(&mut self, settings: BTreeMap<&'static str, String>) {
        self.baseline = Some(settings);
        self.drift_counted.clear();
    }

    /// stacksetd is updating the stack set itself: what changes next is not drift.
    pub fn clear_baseline(&mut self) {
        self.baseline = None
    }

    /// Record the gaps seen now (forgetting filled ones) and return those that are due for a repair: seen for
    /// `grace` (auto-deployment had its chance), or at once when nothing else will fill them (auto-deployment
    /// off); a gap a repair did not fill waits `grace` again.
    pub fn overdue_gaps(
        &mut self,
        missing: &BTreeSet<(String, String)>,
        grace: Duration,
        auto_deployment: bool,
    ) -> BTreeSet<(String, String)> {
        let now = Instant::now();
        self.gaps.retain(|slot, _| missing.contains(slot));
        for slot in missing {
            self.gaps.entry(slot.clone()).or_insert(Gap {
                first_seen: now,
                repaired: None,
            });
        }
        self.gaps
            .iter()
            .filter(|(_, gap)| gap_due(gap, now, grace, auto_deployment))
            .map(|(slot, _)| slot.clone())
            .collect()
    }

    /// The missing slots of accounts that a change of the desired state newly targets (a DIFFERENCE list that
    /// shrank, a filter type changed, an OU list that grew around them): the plan creates them at once, since
    /// auto-deployment only ever acts on accounts joining or moving. An account stays "newly targeted" until it
    /// misses nothing; accounts that join later wait for auto-deployment as before. After a restart nothing is
    /// known to be new (the first generation seen is the baseline), and such gaps fall back to coverage repair.
    pub fn newly_targeted(
        &mut self,
        generation: &str,
        targeted: &BTreeSet<String>,
        missing: &BTreeSet<(String, String)>,
    ) -> BTreeSet<(String, String)> {
        let new = newly_targeted_accounts(self.targeted.take(), generation, targeted, missing);
        let slots = missing
            .iter()
            .filter(|(a, _)| new.contains(a))
            .cloned()
            .collect();
        self.targeted = Some((generation.to_string(), targeted.clone(), new));
        slots
    }

    /// A repair was submitted for these gaps.
    pub fn repaired(&mut self, slots: &BTreeSet<(String, String)>) {
        let now = Instant::now();
        for slot in slots {
            if let Some(gap) = self.gaps.get_mut(slot) {
                gap.repaired = Some(now);
            }
        }
    }

    /// Whether the DRIFTED instances of this drift check were already re-applied.
    pub fn drift_remediated(&self, check: Option<SystemTime>) -> bool {
        self.remediated_check == Some(check)
    }

    pub fn remediated(&mut self, check: Option<SystemTime>) {
        self.remediated_check = Some(check)
    }

    pub fn drift_submitted(&self) -> Option<SystemTime> {
        self.drift_submitted
    }

    /// The management account stack's template, when it was read for this stack as last changed.
    pub fn stack_template(&self, stack_id: &str, changed: Option<SystemTime>) -> Option<String> {
        match &self.stack_template {
            Some((id, at, body)) if id == stack_id && *at == changed && changed.is_some() => {
                Some(body.clone())
            }
            _ => None,
        }
    }

    /// The last failed creation of the management account's stack; `seen` replaces it when given.
    pub fn failed_stack_creation(
        &mut self,
        seen: Option<crate::plan::management_stack::FailedCreation>,
    ) -> Option<crate::plan::management_stack::FailedCreation> {
        if seen.is_some() {
            self.failed_stack_creation = seen;
        }
        self.failed_stack_creation.clone()
    }

    /// stacksetd changed the stack: its template is read again.
    pub fn forget_stack_template(&mut self) {
        self.stack_template = None;
    }

    pub fn remember_stack_template(
        &mut self,
        stack_id: &str,
        changed: Option<SystemTime>,
        body: &str,
    ) {
        self.stack_template = Some((stack_id.to_string(), changed, body.to_string()));
    }

    /// A drift detection was started: it also confirms (or not) the last remediation, so the next one may
    /// follow its result.
    pub fn submitted_drift_detection(&mut self, at: SystemTime) {
        self.drift_submitted = Some(at);
        self.remediated_check = None;
    }

    /// INOPERABLE instances were removed (RetainStacks): create these slots again as soon as they are gone.
    pub fn recreate(&mut self, slots: BTreeSet<(String, String)>) {
        self.recreate.extend(slots)
    }

    pub fn to_recreate(&self) -> BTreeSet<(String, String)> {
        self.recreate.clone()
    }

    /// A creation was submitted for these slots.
    pub fn recreated(&mut self, slots: &BTreeSet<(String, String)>) {
        self.recreate.retain(|s| !slots.contains(s))
    }

    /// An operation stacksetd waited for ended.
    pub fn record_ended(&mut self, action: &'static str, status: &'static str) {
        self.ended.push((action, status))
    }

    /// The operations seen ending since the last call (for the stackset_operations_total counter).
    pub fn take_ended(&mut self) -> Vec<(&'static str, &'static str)> {
        std::mem::take(&mut self.ended)
    }

    /// What the last pass kept when it found the deployment converged.
    pub(super) fn quiet(&self) -> Option<&super::instances::Quiet> {
        self.quiet.as_ref()
    }

    /// What this pass found: converged, keeping this (`Some`), or anything else.
    pub(super) fn set_quiet(&mut self, quiet: Option<super::instances::Quiet>) {
        self.quiet = quiet;
    }

    /// The last full listing of the deployment's instances, if any.
    pub(super) fn cached_instances(&self) -> Option<super::instances::InstanceCache> {
        self.instances.clone()
    }

    pub(super) fn store_instances(&mut self, cache: super::instances::InstanceCache) {
        self.instances = Some(cache)
    }

    /// The ARN of `stack_set` read no longer than `fresh_for` ago.
    pub(super) fn dependency_arn(&self, stack_set: &str, fresh_for: Duration) -> Option<String> {
        let (arn, at) = self.dependency_arns.get(stack_set)?;
        (at.elapsed() < fresh_for).then(|| arn.clone())
    }

    pub(super) fn remember_dependency_arn(&mut self, stack_set: &str, arn: &str) {
        self.dependency_arns
            .insert(stack_set.to_string(), (arn.to_string(), Instant::now()));
    }

    /// The last auto-deployment target check, if it is younger than `fresh_for`.
    pub(super) fn auto_targets(&self, fresh_for: Duration) -> Option<super::auto_targets::Checked> {
        let (at, checked) = self.auto_targets.as_ref()?;
        (at.elapsed() < fresh_for).then(|| checked.clone())
    }

    /// Store a check; returns the pairs the check before it also found missing.
    pub(super) fn store_auto_targets(
        &mut self,
        checked: super::auto_targets::Checked,
    ) -> BTreeSet<(String, String)> {
        let before = std::mem::replace(
            &mut self.auto_targets_missing_before,
            checked.missing.clone(),
        );
        self.auto_targets = Some((Instant::now(), checked));
        before
    }

    /// stacksetd itself just created or deleted instances: check the targets again at the next observation,
    /// and the misses seen before no longer count toward a repair.
    pub(super) fn forget_auto_targets(&mut self) {
        self.auto_targets = None;
        self.auto_targets_missing_before.clear();
    }

    /// The stack set is gone: nothing listed is current.
    pub(super) fn drop_instances(&mut self) {
        self.instances = None
    }
}

#[cfg(test)]
mod timing_tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    /// Every case of the gap rule, by (auto-deployment, repaired, age against the grace period), without a
    /// simulator or a clock: the instants are built from one base.
    #[test]
    fn a_gap_is_due_exactly_when_the_rule_says() {
        let base = Instant::now();
        let at = |minutes: u64| base + MINUTE * minutes as u32;
        let grace = MINUTE * 15;
        let fresh = Gap {
            first_seen: base,
            repaired: None,
        };
        // Auto-deployment off: nothing else fills it, so at once.
        assert!(gap_due(&fresh, at(0), grace, false));
        // On: only once it lasted the grace period.
        assert!(!gap_due(&fresh, at(14), grace, true));
        assert!(gap_due(&fresh, at(15), grace, true));
        // Repaired and still there: again after the grace period, whether auto-deployment is on or off...
        let repaired = Gap {
            first_seen: base,
            repaired: Some(at(20)),
        };
        for auto in [false, true] {
            assert!(!gap_due(&repaired, at(34), grace, auto));
            assert!(gap_due(&repaired, at(35), grace, auto));
        }
        // ...and never sooner than a minute, even without a grace period (a one-shot command).
        assert!(!gap_due(
            &repaired,
            at(20) + Duration::from_secs(59),
            Duration::ZERO,
            false
        ));
        assert!(gap_due(&repaired, at(21), Duration::ZERO, false));
    }

    #[test]
    fn newly_targeted_accounts_follow_generations() {
        let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let missing = |items: &[&str]| {
            items
                .iter()
                .map(|a| (a.to_string(), "us-east-1".to_string()))
                .collect::<BTreeSet<_>>()
        };
        // The first generation seen is the baseline: nothing is new (after a restart too).
        assert!(
            newly_targeted_accounts(None, "g1", &set(&["a", "b"]), &missing(&["a"])).is_empty()
        );
        // A new generation: what it targets beyond the last one, and only while it misses an instance.
        let before = Some(("g1".to_string(), set(&["a"]), set(&[])));
        assert_eq!(
            newly_targeted_accounts(before, "g2", &set(&["a", "b", "c"]), &missing(&["a", "b"])),
            set(&["b"])
        );
        // The same generation: the set only shrinks as instances appear; an account joining later is not new.
        let kept = Some(("g2".to_string(), set(&["a", "b", "c"]), set(&["b", "c"])));
        assert_eq!(
            newly_targeted_accounts(
                kept,
                "g2",
                &set(&["a", "b", "c", "d"]),
                &missing(&["c", "d"])
            ),
            set(&["c"])
        );
    }
}
