//! The event reader (`events.queue_url`): long-polls the queue EventBridge delivers to, and for each event
//! triggers the passes of the deployments it concerns at once. An event only ever triggers a pass, which observes
//! AWS itself: nothing is decided from an event, so a forged, duplicated or reordered one costs a pass.
//!
//! For each batch, in order: read every body (`events::parse`; malformed, unknown and duplicate messages are
//! counted and deleted at once), note the events in the ledger (`events::Ledger`: a stack set named, so its next
//! pass reads the operations again) and mark the organization changed for an account event (the next pass
//! rescans it), route each event to its deployments (`events::route`, by the organization as last scanned: the
//! account's old parent is there, its new one in the event), trigger their passes, and delete the messages
//! once each pass they triggered has ended. A message whose passes do not end within [`OBSERVE_WAIT`] is left
//! on the queue: SQS delivers it again.
//!
//! A receive that fails is a gap: the ledger stops vouching for anything (passes read the operations as without
//! a queue), /status and `stacksetd_event_queue_up` say the daemon polls, and the reader retries with jittered
//! backoff. The first receive that succeeds again starts a new epoch: every deployment's next pass looks at its
//! operations, whatever was lost meanwhile.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::scheduler::PassWatch;
use crate::cloud::queue::{EventQueue, Message, RECEIVE_WAIT};
use crate::controller::credentials::Contexts;
use crate::desired::Deployment;
use crate::events::ledger::HEALTH_MARGIN;
use crate::events::{Dropped, Envelope, Event, Ledger, parse, route};
use crate::metrics::events::EventMetrics;
use crate::status::{QueueMode, StatusBoard};

/// A message waits at most this long for the passes it triggered; then it is left for SQS to deliver again.
pub const OBSERVE_WAIT: Duration = Duration::from_secs(600);

/// Event ids remembered to recognise a duplicate: EventBridge and SQS deliver at least once, usually within
/// minutes; this many is hours of a busy organization's events.
pub const IDS_REMEMBERED: usize = 10_000;

/// The first retry after a failed receive, doubling up to [`RETRY_MAX`] (with jitter).
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// Deployments a batch's events concern, and where to say which passes will observe them.
pub struct Dispatch {
    pub names: BTreeSet<String>,
    pub reply: oneshot::Sender<Vec<PassWatch>>,
}

/// Everything the reader works with.
pub struct Reader {
    pub queue: Arc<dyn EventQueue>,
    pub contexts: Arc<Contexts>,
    pub deployments: watch::Receiver<Vec<Arc<Deployment>>>,
    pub dispatch: mpsc::Sender<Dispatch>,
    pub metrics: EventMetrics,
    pub status: Arc<StatusBoard>,
}

impl Reader {
    fn ledger(&self) -> &Arc<Ledger> {
        &self.contexts.base().events
    }

    /// Read the queue until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let ids = Arc::new(Mutex::new(Seen::default()));
        let trusted = self.ledger().trusted();
        self.status.event_queue(|q| {
            q.queue_url = self.queue.url().to_string();
            q.mode = QueueMode::Polling;
            q.since = now();
            q.converged_pass_trusts_events = trusted;
        });
        self.metrics.start();
        let mut failures: u32 = 0;
        // The queue is there and readable: healthy from now (the first long poll may wait its whole time).
        match self.queue.check().await {
            Ok(()) => self.answered(),
            Err(e) => {
                failures = 1;
                self.failed(&e);
            }
        }
        loop {
            let received = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                // After a failure, a receive that answers at once: is the queue back? One that does not answer
                // within its wait and the ledger's margin is a failure too: the passes stopped trusting it then,
                // and /status says so at the same moment.
                received = tokio::time::timeout(
                    RECEIVE_WAIT + HEALTH_MARGIN,
                    self.queue.receive(if failures > 0 { Duration::ZERO } else { RECEIVE_WAIT }),
                ) => received.unwrap_or_else(|_| Err(silent())),
            };
            let messages = match received {
                Ok(messages) => messages,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.failed(&e);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(retry_delay(failures)) => {}
                    }
                    continue;
                }
            };
            failures = 0;
            self.answered();
            self.handle(messages, &ids, &stop).await;
        }
    }

    /// The queue answered: healthy for another long poll; after a gap, a new epoch, said once.
    fn answered(&self) {
        if self.ledger().received(RECEIVE_WAIT) {
            info!(
                queue = self.queue.url(),
                "reading the event queue: passes follow its events"
            );
            self.metrics.set_up(true);
            self.status.event_queue(|q| {
                q.mode = QueueMode::Events;
                q.since = now();
                q.last_error = None;
            });
        }
    }

    /// The queue did not answer: a gap; polling until it answers again, said once per outage.
    fn failed(&self, error: &crate::error::Error) {
        self.ledger().failed();
        self.metrics.set_up(false);
        let mut first = false;
        self.status.event_queue(|q| {
            first = q.last_error.is_none();
            if q.mode != QueueMode::Polling {
                q.mode = QueueMode::Polling;
                q.since = now();
            }
            q.last_error = Some(error.to_string());
        });
        if first {
            warn!(queue = self.queue.url(), %error,
                "the event queue cannot be read: polling as without it until it can");
        }
    }

    /// One batch: read, note, route, trigger; delete now what concerns nobody, the rest once observed.
    async fn handle(
        &self,
        messages: Vec<Message>,
        ids: &Arc<Mutex<Seen>>,
        stop: &CancellationToken,
    ) {
        let deployments = self.deployments.borrow().clone();
        // The organization as last scanned, read before it is marked changed: the account's old parent is there.
        let org = self.contexts.base().cached_organization();
        let mut done_now = Vec::new();
        let mut owed: Vec<(Message, Envelope)> = Vec::new();
        let mut names = BTreeSet::new();
        let mut dropped = 0;
        for message in messages {
            let read = parse(&message.body).and_then(|envelope| {
                if lock(ids).insert(&envelope.id) {
                    Ok(envelope)
                } else {
                    Err(Dropped::Duplicate)
                }
            });
            let envelope = match read {
                Ok(envelope) => envelope,
                Err(reason) => {
                    debug!(reason = reason.label(), "event dropped");
                    self.metrics.dropped(reason);
                    dropped += 1;
                    done_now.push(message.receipt);
                    continue;
                }
            };
            self.metrics.received(envelope.kind);
            match &envelope.event {
                Event::StackSet { name, .. } => self.ledger().saw(name),
                // Only the daemon's own organization: a role's deployments are in organizations whose events
                // are not on this queue.
                Event::Account { .. } => self.contexts.base().invalidate_organization(),
            }
            let concerned = route(&envelope.event, &deployments, org.as_deref());
            debug!(id = %envelope.id, kind = envelope.kind, deployments = ?concerned, "event");
            if concerned.is_empty() {
                done_now.push(message.receipt);
            } else {
                names.extend(concerned);
                owed.push((message, envelope));
            }
        }
        let received = owed.len() as u64;
        self.status.event_queue(|q| {
            q.received += received;
            q.dropped += dropped;
        });
        self.delete(&done_now).await;
        if owed.is_empty() {
            return;
        }
        let (reply, watches) = oneshot::channel();
        if self.dispatch.send(Dispatch { names, reply }).await.is_err() {
            // The main loop is gone: shutting down. The messages come back to the next start.
            return;
        }
        let watches = watches.await.unwrap_or_default();
        let queue = self.queue.clone();
        let metrics = self.metrics.clone();
        let ids = ids.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let observed = futures::future::join_all(watches.into_iter().map(PassWatch::observed));
            let in_time = tokio::select! {
                () = stop.cancelled() => false,
                in_time = tokio::time::timeout(OBSERVE_WAIT, observed) => in_time.is_ok(),
            };
            if !in_time {
                // Left on the queue: SQS delivers it again, and it is not a duplicate then.
                let mut seen = lock(&ids);
                for (_, envelope) in &owed {
                    seen.forget(&envelope.id);
                }
                return;
            }
            let at = SystemTime::now();
            for (_, envelope) in &owed {
                if let Some(time) = envelope.time {
                    metrics
                        .observed_after(at.duration_since(time).unwrap_or_default().as_secs_f64());
                }
            }
            let receipts: Vec<String> = owed.into_iter().map(|(m, _)| m.receipt).collect();
            if let Err(e) = queue.delete(&receipts).await {
                warn!(error = %e, "deleting observed events failed: SQS delivers them again and they are dropped as duplicates");
            }
        });
    }

    async fn delete(&self, receipts: &[String]) {
        if receipts.is_empty() {
            return;
        }
        if let Err(e) = self.queue.delete(receipts).await {
            warn!(error = %e, "deleting dropped events failed: SQS delivers them again");
        }
    }
}

/// The event ids seen lately, oldest first out.
#[derive(Default)]
struct Seen {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl Seen {
    /// False when the id was seen already.
    fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > IDS_REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }

    fn forget(&mut self, id: &str) {
        self.ids.remove(id);
        self.order.retain(|o| o != id);
    }
}

/// A receive that did not answer in time.
fn silent() -> crate::error::Error {
    crate::error::Error::Aws {
        service: crate::cloud::queue::SERVICE,
        operation: "ReceiveMessage",
        kind: crate::error::AwsErrorKind::Transport,
        code: "Timeout".into(),
        message: format!(
            "no answer within {:?} (a long poll and the ledger's margin)",
            RECEIVE_WAIT + HEALTH_MARGIN
        ),
    }
}

fn lock(ids: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    ids.lock().unwrap_or_else(|e| e.into_inner())
}

fn now() -> String {
    crate::controller::rfc3339(SystemTime::now())
}

/// The wait before receive number `failures + 1`: doubling from [`RETRY_FIRST`] to [`RETRY_MAX`], each with up
/// to a quarter of jitter so replicas do not retry in step.
fn retry_delay(failures: u32) -> Duration {
    crate::controller::backoff(
        RETRY_FIRST,
        RETRY_MAX,
        failures.saturating_sub(1),
        0.75..1.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue whose receive never answers (a network that swallows the request).
    struct Hung;

    #[async_trait::async_trait]
    impl EventQueue for Hung {
        fn url(&self) -> &str {
            "https://sqs.us-east-1.amazonaws.com/111111111111/hung"
        }
        async fn check(&self) -> crate::cloud::Result<()> {
            Ok(())
        }
        async fn receive(&self, _wait: Duration) -> crate::cloud::Result<Vec<Message>> {
            std::future::pending().await
        }
        async fn delete(&self, _receipts: &[String]) -> crate::cloud::Result<()> {
            Ok(())
        }
    }

    /// A reader stuck in a receive stops vouching (the ledger's health lapses) and /status says "polling" by the
    /// same moment, not only once the SDK gives up.
    #[tokio::test(start_paused = true)]
    async fn a_receive_that_never_answers_is_an_outage_on_status_too() {
        let cloud: Arc<dyn crate::cloud::Cloud> =
            Arc::new(crate::cloud::sim::Sim::new(Default::default()));
        let ctx = Arc::new(crate::controller::Context::new(
            cloud,
            crate::controller::Config::default(),
        ));
        ctx.events.trust();
        let status = Arc::new(StatusBoard::new("desired.yaml".into()));
        let (dispatch, _keep) = mpsc::channel(1);
        let reader = Reader {
            queue: Arc::new(Hung),
            contexts: Arc::new(Contexts::new(ctx.clone(), None)),
            deployments: watch::channel(Vec::new()).1,
            dispatch,
            metrics: EventMetrics::register(&prometheus::Registry::new()).unwrap(),
            status: status.clone(),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(reader.run(stop.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            ctx.events.stamp("Vendor").is_some(),
            "healthy after the check"
        );
        assert_eq!(status.snapshot().events.unwrap().mode, QueueMode::Events);
        tokio::time::sleep(RECEIVE_WAIT + HEALTH_MARGIN).await;
        assert_eq!(ctx.events.stamp("Vendor"), None, "no longer vouching");
        let events = status.snapshot().events.unwrap();
        assert_eq!(events.mode, QueueMode::Polling, "{events:?}");
        assert!(
            events.unreadable().is_some_and(|e| e.contains("no answer")),
            "{events:?}"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn the_reader_retries_from_a_second_doubling_to_a_minute_never_more() {
        for _ in 0..200 {
            let first = retry_delay(1);
            assert!(
                first >= RETRY_FIRST.mul_f64(0.75) && first <= RETRY_FIRST,
                "{first:?}"
            );
            let third = retry_delay(3);
            assert!(
                third >= RETRY_FIRST * 3 && third <= RETRY_FIRST * 4,
                "{third:?}"
            );
            let late = retry_delay(40);
            assert!(
                late >= RETRY_MAX.mul_f64(0.75) && late <= RETRY_MAX,
                "{late:?}"
            );
        }
    }
}
