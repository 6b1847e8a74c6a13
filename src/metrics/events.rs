//! The event queue's metrics (`events.queue_url`): events received by kind, dropped by reason, the time from an
//! event to the end of the first pass that observed it, and whether the queue is read (0 means the daemon is
//! back to polling: `StacksetdEventQueueDown`).

use prometheus::{GaugeVec, HistogramVec, IntCounterVec};

use super::{Registrar, counter, gauge, histogram};
use crate::events::{Dropped, KINDS};

/// Seconds from an event's time (EventBridge's, one-second precision) to the end of the pass that observed it:
/// a second or two is normal, a minute means passes queue behind `concurrency`.
const LATENCY_BUCKETS: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];

#[derive(Clone)]
pub struct EventMetrics {
    received: IntCounterVec,
    dropped: IntCounterVec,
    latency: HistogramVec,
    up: GaugeVec,
}

impl EventMetrics {
    pub fn register(registry: &impl Registrar) -> Result<EventMetrics, prometheus::Error> {
        let metrics = EventMetrics {
            received: counter(
                registry,
                "events_received_total",
                "Events read from the event queue, by kind (stack_set_status, stack_set_operation, \
                 stack_instance, account).",
                &["kind"],
            )?,
            dropped: counter(
                registry,
                "events_dropped_total",
                "Messages of the event queue dropped without a pass, by reason (malformed, unknown_type, \
                 duplicate).",
                &["reason"],
            )?,
            latency: histogram(
                registry,
                "event_latency_seconds",
                "Seconds from an event's time to the end of the first pass of each deployment it concerned.",
                &[],
                LATENCY_BUCKETS,
            )?,
            up: gauge(
                registry,
                "event_queue_up",
                "1 while the event queue is read; 0 while it cannot be, and the daemon polls instead (only with \
                 events.queue_url).",
                &[],
            )?,
        };
        Ok(metrics)
    }

    /// Every series at zero, so a rate is defined from the first scrape (with a queue only).
    pub fn start(&self) {
        for kind in KINDS {
            self.received.with_label_values(&[kind]);
        }
        for reason in Dropped::ALL {
            self.dropped.with_label_values(&[reason.label()]);
        }
        self.up.with_label_values::<&str>(&[]).set(0.0);
    }

    pub fn received(&self, kind: &'static str) {
        self.received.with_label_values(&[kind]).inc();
    }

    pub fn dropped(&self, reason: Dropped) {
        self.dropped.with_label_values(&[reason.label()]).inc();
    }

    pub fn observed_after(&self, seconds: f64) {
        self.latency
            .with_label_values::<&str>(&[])
            .observe(seconds.max(0.0));
    }

    pub fn set_up(&self, up: bool) {
        self.up
            .with_label_values::<&str>(&[])
            .set(if up { 1.0 } else { 0.0 });
    }
}
