//! The lease metrics (`leases.table`), read from the replica's lease state at scrape time: how many leases it
//! holds, how many replicas it sees live, its acquisitions, losses and releases, and its requests to the table.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGauge, Opts};

use super::{NAMESPACE, Registrar, catch_up};
use crate::leases::Leases;

pub struct LeaseMetrics {
    leases: Arc<Leases>,
    held: IntGauge,
    replicas: IntGauge,
    transitions: IntCounterVec,
    requests: IntCounterVec,
    /// Two concurrent scrapes must not both add the same difference.
    sync: Mutex<()>,
}

impl LeaseMetrics {
    pub fn register(
        registry: &impl Registrar,
        leases: Arc<Leases>,
    ) -> Result<(), prometheus::Error> {
        let held = IntGauge::with_opts(
            Opts::new("leases_held", "Deployment leases this replica holds.").namespace(NAMESPACE),
        )?;
        let replicas = IntGauge::with_opts(
            Opts::new(
                "lease_replicas_live",
                "Replicas with a live session in the lease table, as this replica last saw it.",
            )
            .namespace(NAMESPACE),
        )?;
        let transitions = IntCounterVec::new(
            Opts::new(
                "lease_transitions_total",
                "Leases this replica acquired, lost (taken over, or its session ended) and released.",
            )
            .namespace(NAMESPACE),
            &["event"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "lease_table_requests_total",
                "DynamoDB requests to the lease table by operation and outcome.",
            )
            .namespace(NAMESPACE),
            &["operation", "outcome"],
        )?;
        registry.add(Box::new(LeaseMetrics {
            leases,
            held,
            replicas,
            transitions,
            requests,
            sync: Mutex::new(()),
        }))
    }
}

impl Collector for LeaseMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut out = self.held.desc();
        out.extend(self.replicas.desc());
        out.extend(self.transitions.desc());
        out.extend(self.requests.desc());
        out
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _guard = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = self.leases.snapshot();
        self.held.set(snapshot.held.len() as i64);
        self.replicas.set(snapshot.live_replicas.len() as i64);
        for (event, total) in [
            ("acquired", snapshot.acquired),
            ("lost", snapshot.lost),
            ("released", snapshot.released),
        ] {
            catch_up(&self.transitions.with_label_values(&[event]), total);
        }
        for ((_, operation, outcome), total) in self.leases.calls().snapshot() {
            catch_up(
                &self.requests.with_label_values(&[operation, outcome]),
                total,
            );
        }
        let mut out = self.held.collect();
        out.extend(self.replicas.collect());
        out.extend(self.transitions.collect());
        out.extend(self.requests.collect());
        out
    }
}
