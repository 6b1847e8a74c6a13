//! The event queue (settings `events.queue_url`): the SQS calls the daemon's event reader makes, behind a trait
//! so the reader runs unchanged against SQS ([`crate::aws::SqsQueue`]) and in memory ([`MemoryQueue`]: tests,
//! with SQS's at-least-once delivery and visibility timeout made explicit).
//!
//! A message is an EventBridge envelope delivered unchanged (no input transformer); reading it is the main
//! crate's `events::parse`. Nothing here knows what a body says.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::Result;
use crate::error::{AwsErrorKind, Error};

/// One long poll waits this long for a message (SQS's maximum: fewest empty receives).
pub const RECEIVE_WAIT: Duration = Duration::from_secs(20);

/// Messages one receive asks for (SQS's maximum).
pub const RECEIVE_BATCH: usize = 10;

/// The service name calls are counted under.
pub const SERVICE: &str = "sqs";

/// The IAM action an SQS call of this module needs (DeleteMessageBatch is authorised as sqs:DeleteMessage).
pub fn iam_action(service: &str, operation: &str) -> Option<&'static str> {
    match (service, operation) {
        (SERVICE, "ReceiveMessage") => Some("sqs:ReceiveMessage"),
        (SERVICE, "DeleteMessageBatch") => Some("sqs:DeleteMessage"),
        (SERVICE, "GetQueueAttributes") => Some("sqs:GetQueueAttributes"),
        _ => None,
    }
}

/// One received message: what deletes it and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The receipt handle of this delivery (a redelivery has another one).
    pub receipt: String,
    pub body: String,
}

#[async_trait]
pub trait EventQueue: Send + Sync + 'static {
    /// The queue's URL, as configured (for /status and the log).
    fn url(&self) -> &str;

    /// Is the queue there and readable? (GetQueueAttributes: one call, at start.)
    async fn check(&self) -> Result<()>;

    /// One long poll: up to [`RECEIVE_BATCH`] messages, waiting up to `wait` (at most [`RECEIVE_WAIT`]) for the
    /// first. A zero wait answers at once (the reader's first receive after a failure: is the queue back?).
    async fn receive(&self, wait: Duration) -> Result<Vec<Message>>;

    /// Delete these deliveries (DeleteMessageBatch, in batches of [`RECEIVE_BATCH`]).
    async fn delete(&self, receipts: &[String]) -> Result<()>;
}

/// Where a queue URL points: `https://sqs.<region>.amazonaws.com/<account>/<name>` (or the legacy
/// `https://<region>.queue.amazonaws.com/...`); an emulator's URL names no Region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrl {
    pub region: Option<String>,
    pub account: String,
    pub name: String,
}

/// Read a queue URL, or say what is wrong with it.
pub fn parse_queue_url(text: &str) -> std::result::Result<QueueUrl, String> {
    let url = url::Url::parse(text).map_err(|e| {
        format!("not a URL ({e}): give the queue's URL, e.g. https://sqs.us-east-1.amazonaws.com/111122223333/stacksetd-events")
    })?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!(
            "a queue URL is https://sqs.<region>.amazonaws.com/<account>/<name>, not a {} URL (an ARN is not a URL: \
             the CloudFormation stack in deploy/events/ outputs QueueUrl)",
            url.scheme()
        ));
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let [account, name] = segments[..] else {
        return Err(
            "a queue URL's path is /<account id>/<queue name>, e.g. https://sqs.us-east-1.amazonaws.com/111122223333/stacksetd-events".into(),
        );
    };
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the queue URL's first path part is the 12-digit account id, not {account:?}"
        ));
    }
    let region = host
        .strip_prefix("sqs.")
        .and_then(|rest| rest.split('.').next())
        .or_else(|| {
            host.strip_suffix(".queue.amazonaws.com")
                .filter(|r| !r.contains('.'))
        })
        .map(str::to_string);
    let on_aws = ["amazonaws.com", "amazonaws.com.cn"]
        .iter()
        .any(|domain| host == *domain || host.ends_with(&format!(".{domain}")));
    if on_aws && region.is_none() {
        return Err(format!(
            "cannot tell the queue's Region from {host}: an SQS URL is https://sqs.<region>.amazonaws.com/..."
        ));
    }
    Ok(QueueUrl {
        region,
        account: account.to_string(),
        name: name.to_string(),
    })
}

/// A queue in memory, for tests: messages wait in `ready`; a receive moves them `in flight` until deleted; a
/// redelivery (what SQS does when the visibility timeout passes) moves them back under a new receipt.
#[derive(Default)]
pub struct MemoryQueue {
    state: Mutex<Memory>,
    arrived: tokio::sync::Notify,
}

#[derive(Default)]
struct Memory {
    ready: VecDeque<String>,
    in_flight: BTreeMap<String, String>,
    next_receipt: u64,
    /// How many of the next receives fail (an outage).
    failing: u32,
    receives: u64,
    deleted: u64,
}

impl MemoryQueue {
    pub const URL: &'static str =
        "https://sqs.us-east-1.amazonaws.com/111111111111/stacksetd-events";

    pub fn new() -> MemoryQueue {
        MemoryQueue::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.state.lock().expect("the memory queue's lock")
    }

    /// Put a message on the queue (what EventBridge does).
    pub fn send(&self, body: impl Into<String>) {
        self.lock().ready.push_back(body.into());
        self.arrived.notify_waiters();
    }

    /// The next `times` receives fail as an unreachable queue would.
    pub fn fail_receives(&self, times: u32) {
        self.lock().failing = times;
        self.arrived.notify_waiters();
    }

    /// Messages received and not deleted go back to the queue (their visibility timeout passed).
    pub fn redeliver(&self) {
        let mut state = self.lock();
        let bodies: Vec<String> = std::mem::take(&mut state.in_flight).into_values().collect();
        state.ready.extend(bodies);
        drop(state);
        self.arrived.notify_waiters();
    }

    /// (waiting, received and not deleted)
    pub fn depth(&self) -> (usize, usize) {
        let state = self.lock();
        (state.ready.len(), state.in_flight.len())
    }

    /// (receive calls, messages deleted)
    pub fn counts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.receives, state.deleted)
    }

    fn take(&self) -> Option<Result<Vec<Message>>> {
        let mut state = self.lock();
        if state.failing > 0 {
            state.failing -= 1;
            state.receives += 1;
            return Some(Err(Error::Aws {
                service: SERVICE,
                operation: "ReceiveMessage",
                kind: AwsErrorKind::Transport,
                code: "NoResponse".into(),
                message: "the memory queue is failing on purpose".into(),
            }));
        }
        if state.ready.is_empty() {
            return None;
        }
        state.receives += 1;
        let mut batch = Vec::new();
        while batch.len() < RECEIVE_BATCH {
            let Some(body) = state.ready.pop_front() else {
                break;
            };
            state.next_receipt += 1;
            let receipt = format!("receipt-{}", state.next_receipt);
            state.in_flight.insert(receipt.clone(), body.clone());
            batch.push(Message { receipt, body });
        }
        Some(Ok(batch))
    }
}

#[async_trait]
impl EventQueue for MemoryQueue {
    fn url(&self) -> &str {
        Self::URL
    }

    async fn check(&self) -> Result<()> {
        Ok(())
    }

    async fn receive(&self, wait: Duration) -> Result<Vec<Message>> {
        let deadline = tokio::time::Instant::now() + wait.min(RECEIVE_WAIT);
        loop {
            // Registered before looking, so a send between the look and the wait is not missed.
            let arrived = self.arrived.notified();
            if let Some(answer) = self.take() {
                return answer;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                self.lock().receives += 1;
                return Ok(Vec::new());
            }
        }
    }

    async fn delete(&self, receipts: &[String]) -> Result<()> {
        let mut state = self.lock();
        for receipt in receipts {
            // A stale receipt (the message was redelivered meanwhile) deletes nothing, as on SQS.
            if state.in_flight.remove(receipt).is_some() {
                state.deleted += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_url_names_its_region_account_and_name() {
        let url =
            parse_queue_url("https://sqs.eu-west-1.amazonaws.com/111122223333/stacksetd-events")
                .unwrap();
        assert_eq!(url.region.as_deref(), Some("eu-west-1"));
        assert_eq!(url.account, "111122223333");
        assert_eq!(url.name, "stacksetd-events");
        let legacy =
            parse_queue_url("https://ap-south-1.queue.amazonaws.com/111122223333/q").unwrap();
        assert_eq!(legacy.region.as_deref(), Some("ap-south-1"));
        // An emulator names no Region: the SDK's Region is used.
        let local = parse_queue_url("http://127.0.0.1:5000/123456789012/q").unwrap();
        assert_eq!(local.region, None);
        for bad in [
            "arn:aws:sqs:us-east-1:111122223333:q",
            "https://sqs.us-east-1.amazonaws.com/q",
            "https://sqs.us-east-1.amazonaws.com/1111/q",
            "https://amazonaws.com/111122223333/q",
            "sqs.us-east-1.amazonaws.com/111122223333/q",
        ] {
            assert!(parse_queue_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_memory_queue_delivers_at_least_once() {
        let queue = MemoryQueue::new();
        // Nothing there: the long poll waits its whole time and answers empty.
        let started = tokio::time::Instant::now();
        assert!(queue.receive(RECEIVE_WAIT).await.unwrap().is_empty());
        assert_eq!(started.elapsed(), RECEIVE_WAIT);
        for i in 0..12 {
            queue.send(format!("m{i}"));
        }
        let first = queue.receive(RECEIVE_WAIT).await.unwrap();
        assert_eq!(first.len(), RECEIVE_BATCH);
        queue.delete(&[first[0].receipt.clone()]).await.unwrap();
        assert_eq!(queue.depth(), (2, 9));
        queue.redeliver();
        assert_eq!(queue.depth(), (11, 0));
        // The old receipt is stale now.
        queue.delete(&[first[1].receipt.clone()]).await.unwrap();
        assert_eq!(queue.depth(), (11, 0));
        queue.fail_receives(1);
        assert!(queue.receive(RECEIVE_WAIT).await.is_err());
        assert_eq!(
            queue.receive(RECEIVE_WAIT).await.unwrap().len(),
            RECEIVE_BATCH
        );
    }
}
