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
    /// The health lapsed (the reader fell silent): that is a gap too.
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
}
