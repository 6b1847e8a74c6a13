//! What the event reader has seen, as the passes need it: may a converged pass trust that nothing happened to
//! its stack set since it last looked, and skip the ListStackSetOperations page?
//!
//! Only while the queue is healthy and was healthy since the pass looked: every gap (a failed receive, a
//! recovery, the reader falling silent, a restart) starts a new `epoch`, and every event naming a stack set bumps
//! its `seq`. A pass reads a [`Stamp`] *before* it lists the operations and, once it finds the deployment
//! converged, keeps it; the next pass skips the listing only if the stamp is still the same. So an event that
//! arrives during a pass, a lost stretch of the queue or a reader that hangs all cost a listing, never a missed
//! change; and an event that is lost by EventBridge itself is caught by the backstops (the periodic relist,
//! `instance_relist_interval`, and the organization rescan).
//!
//! A ledger trusts nothing until told to ([`Ledger::trust`]): the daemon does so for its own identity with
//! `events.queue_url` and without leases (a replica does not see the events another one receives).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A receive renews the queue's health for this long beyond its own wait: a reader that has not answered by
/// then is hung or gone, and the passes stop trusting it.
pub const HEALTH_MARGIN: Duration = Duration::from_secs(10);

/// Where the ledger stood when a pass looked: the epoch (no gap since) and the stack set's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    epoch: u64,
    seq: u64,
}

#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    trusted: bool,
    epoch: u64,
    /// Healthy until then (renewed by each successful receive); None: not healthy.
    healthy_until: Option<Instant>,
    seqs: HashMap<String, u64>,
}

impl Inner {
    /// The health lapsed (the reader fell silent): that is a gap too. (The recovery after it starts another
    /// epoch as well; either alone would do, and the model-based test below fails only without both.)
    fn lapse(&mut self, now: Instant) {
        if self.healthy_until.is_some_and(|until| now >= until) {
            self.healthy_until = None;
            self.epoch += 1;
        }
    }
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("the event ledger's lock")
    }

    /// Let passes skip the operations listing on this ledger's word (the daemon's own context, with a queue).
    pub fn trust(&self) {
        self.lock().trusted = true;
    }

    /// Whether passes may ever skip on this ledger's word.
    pub fn trusted(&self) -> bool {
        self.lock().trusted
    }

    /// A receive succeeded: healthy for `wait` (the long poll) plus [`HEALTH_MARGIN`]. Returns true when this
    /// ends a gap (the first receive, or one after a failure): a new epoch begins.
    pub fn received(&self, wait: Duration) -> bool {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.lapse(now);
        let recovered = inner.healthy_until.is_none();
        if recovered {
            inner.epoch += 1;
        }
        inner.healthy_until = Some(now + wait + HEALTH_MARGIN);
        recovered
    }

    /// A receive failed: a gap. Returns true when the queue was healthy until now.
    pub fn failed(&self) -> bool {
        let mut inner = self.lock();
        inner.lapse(Instant::now());
        let was_healthy = inner.healthy_until.take().is_some();
        inner.epoch += 1;
        was_healthy
    }

    /// An event named this stack set.
    pub fn saw(&self, stack_set: &str) {
        *self.lock().seqs.entry(stack_set.to_string()).or_default() += 1;
    }

    /// The stamp a pass keeps, or None when the ledger cannot be trusted now (not trusted, or not healthy).
    pub fn stamp(&self, stack_set: &str) -> Option<Stamp> {
        let mut inner = self.lock();
        inner.lapse(Instant::now());
        (inner.trusted && inner.healthy_until.is_some()).then(|| Stamp {
            epoch: inner.epoch,
            seq: inner.seqs.get(stack_set).copied().unwrap_or(0),
        })
    }

    /// Is the queue healthy now (for /status and the metrics)?
    pub fn healthy(&self) -> bool {
        let mut inner = self.lock();
        inner.lapse(Instant::now());
        inner.healthy_until.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::queue::RECEIVE_WAIT;

    const SET: &str = "Vendor";

    #[tokio::test(start_paused = true)]
    async fn a_stamp_holds_only_while_nothing_happened_and_the_queue_stayed_healthy() {
        let ledger = Ledger::default();
        ledger.received(RECEIVE_WAIT);
        // Not trusted: never a stamp (role contexts, replicas with leases, no queue).
        assert_eq!(ledger.stamp(SET), None);
        ledger.trust();
        let first = ledger.stamp(SET).expect("healthy and trusted");
        assert_eq!(ledger.stamp(SET), Some(first));
        // Another stack set's event changes nothing here.
        ledger.saw("Other");
        assert_eq!(ledger.stamp(SET), Some(first));
        ledger.saw(SET);
        let second = ledger.stamp(SET).unwrap();
        assert_ne!(second, first);
        // A failed receive: no stamp while it lasts, and the recovery is a new epoch (what happened meanwhile
        // may be lost).
        assert!(ledger.failed());
        assert_eq!(ledger.stamp(SET), None);
        assert!(!ledger.failed());
        assert!(ledger.received(RECEIVE_WAIT));
        let third = ledger.stamp(SET).unwrap();
        assert_ne!(third, second);
        assert!(!ledger.received(RECEIVE_WAIT));
        assert_eq!(ledger.stamp(SET), Some(third));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_falls_silent_is_a_gap() {
        let ledger = Ledger::default();
        ledger.trust();
        assert_eq!(ledger.stamp(SET), None, "healthy only after a receive");
        ledger.received(RECEIVE_WAIT);
        let before = ledger.stamp(SET).unwrap();
        tokio::time::advance(RECEIVE_WAIT + HEALTH_MARGIN - Duration::from_millis(1)).await;
        assert_eq!(ledger.stamp(SET), Some(before));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(ledger.stamp(SET), None);
        assert!(!ledger.healthy());
        // When it answers again, the old stamp is worthless.
        assert!(ledger.received(RECEIVE_WAIT));
        assert_ne!(ledger.stamp(SET), Some(before));
    }

    /// What a caller of the ledger may do, and the model's account of it.
    #[derive(Debug, Clone)]
    enum Step {
        Received,
        Failed,
        Saw(usize),
        Advance(u64),
        /// A pass of stack set i: reads a stamp and keeps it.
        Pass(usize),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            3 => Just(Step::Received),
            1 => Just(Step::Failed),
            2 => (0..3usize).prop_map(Step::Saw),
            2 => (0..45u64).prop_map(Step::Advance),
            4 => (0..3usize).prop_map(Step::Pass),
        ]
    }

    /// Model-based: over any sequence of receives, failures, events, silences and passes, a pass's stamp equals
    /// the one its stack set's last pass kept exactly when, since then, the queue stayed healthy (no failure, no
    /// silence past its health, no recovery) and no event named that stack set. The "equal" side is what lets a
    /// pass skip its page; the "exactly" side is that it never does so wrongly.
    #[test]
    fn a_stamp_is_unchanged_exactly_when_nothing_happened_since() {
        use proptest::prelude::*;
        let mut runner = crate::fixtures::proptest_runner(256, 0x1ed9e5);
        runner
            .run(&prop::collection::vec(step(), 1..60), |steps| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .start_paused(true)
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let ledger = Ledger::default();
                    ledger.trust();
                    let sets = ["a", "b", "c"];
                    // The model: healthy until; per stack set, the kept stamp and whether anything happened since.
                    let mut healthy_until: Option<Instant> = None;
                    let mut kept: [Option<Stamp>; 3] = [None; 3];
                    let mut happened = [true; 3];
                    let gap = |happened: &mut [bool; 3]| *happened = [true; 3];
                    for step in &steps {
                        let now = Instant::now();
                        if healthy_until.is_some_and(|u| now >= u) {
                            // Silent past its health: a gap.
                            healthy_until = None;
                            gap(&mut happened);
                        }
                        match *step {
                            Step::Received => {
                                if healthy_until.is_none() {
                                    gap(&mut happened);
                                }
                                healthy_until = Some(now + RECEIVE_WAIT + HEALTH_MARGIN);
                                ledger.received(RECEIVE_WAIT);
                            }
                            Step::Failed => {
                                healthy_until = None;
                                gap(&mut happened);
                                ledger.failed();
                            }
                            Step::Saw(i) => {
                                happened[i] = true;
                                ledger.saw(sets[i]);
                            }
                            Step::Advance(secs) => {
                                tokio::time::advance(Duration::from_secs(secs)).await;
                            }
                            Step::Pass(i) => {
                                let stamp = ledger.stamp(sets[i]);
                                let healthy = healthy_until.is_some();
                                prop_assert_eq!(
                                    stamp.is_some(),
                                    healthy,
                                    "a stamp only while healthy"
                                );
                                let may_skip = healthy && kept[i].is_some() && !happened[i];
                                prop_assert_eq!(
                                    stamp.is_some() && stamp == kept[i],
                                    may_skip,
                                    "set {} after {:?}",
                                    i,
                                    steps
                                );
                                kept[i] = stamp;
                                happened[i] = false;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .unwrap();
    }
}
