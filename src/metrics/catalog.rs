//! The list of metric families the daemon exports, derived from its registration code ([`super::register_all`]
//! on a [`Catalog`] instead of a `Registry`). The monitoring tests hold the alerts, the dashboard and the
//! reference docs to it, and the end-to-end tests hold a live scrape to it, so a metric renamed or added in the
//! code cannot leave them silently behind a hand-kept list.

use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::proto::MetricType;

use super::Registrar;
use crate::cloud::Cloud;
use crate::cloud::sim::{Sim, SimConfig};

/// One exported metric family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// The full name, e.g. `stacksetd_reconcile_total`.
    pub name: String,
    pub kind: Kind,
    /// The label names every series carries.
    pub labels: Vec<String>,
    pub help: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A [`Registrar`] that keeps what is registered, to describe it.
#[derive(Default)]
pub struct Catalog {
    collectors: Mutex<Vec<Box<dyn Collector>>>,
}

impl Registrar for Catalog {
    fn add(&self, collector: Box<dyn Collector>) -> Result<(), prometheus::Error> {
        self.collectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(collector);
        Ok(())
    }
}

impl Catalog {
    /// Each registered collector's families: name, help and labels from its descriptions, the type from what it
    /// collects (a vector collects its family, typed, even before it has a series).
    pub fn families(&self) -> Vec<Family> {
        let collectors = self.collectors.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for collector in collectors.iter() {
            let kinds: Vec<(String, MetricType)> = collector
                .collect()
                .iter()
                .map(|f| (f.name().to_string(), f.get_field_type()))
                .collect();
            for desc in collector.desc() {
                let kind = kinds
                    .iter()
                    .find(|(name, _)| *name == desc.fq_name)
                    .map(|(_, kind)| *kind);
                let kind = match kind {
                    Some(MetricType::COUNTER) => Kind::Counter,
                    Some(MetricType::HISTOGRAM) => Kind::Histogram,
                    // Gauges, and nothing else is registered (a new type would show up here as a gauge and fail
                    // the monitoring tests' type checks).
                    _ => Kind::Gauge,
                };
                out.push(Family {
                    name: desc.fq_name.clone(),
                    kind,
                    labels: desc.variable_labels.clone(),
                    help: desc.help.clone(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Every metric family the daemon exports, sorted by name.
pub fn families() -> Vec<Family> {
    let catalog = Catalog::default();
    let cloud: Arc<dyn Cloud> = Arc::new(Sim::new(SimConfig::default()));
    super::register_all(&catalog, cloud).expect("the daemon's metrics register on a catalog");
    // The lease group, which replicas with `leases.table` add.
    let leases = crate::leases::Leases::new(
        Arc::new(crate::leases::MemoryStore::new("catalog")),
        crate::leases::LeaseSettings {
            table: "catalog".into(),
            duration: crate::leases::DEFAULT_LEASE_DURATION,
            replica_id: "catalog".into(),
        },
    );
    super::leases::LeaseMetrics::register(&catalog, leases)
        .expect("the lease metrics register on a catalog");
    catalog.families()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_is_what_the_daemon_registers() {
        let families = families();
        let cloud: Arc<dyn Cloud> = Arc::new(Sim::new(SimConfig::default()));
        let metrics = super::super::Metrics::new(cloud).unwrap();
        // Give every family a series, so the registry's own exposition lists them all.
        metrics
            .reconcile
            .record_reload(super::super::ReloadResult::Valid);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("# TYPE stacksetd_desired_state_reloads_total counter"),
            "{text}"
        );
        let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        assert!(names.contains(&"stacksetd_desired_state_reloads_total"));
        assert!(names.contains(&"stacksetd_aws_requests_total"));
        assert!(
            names.iter().all(|n| n.starts_with("stacksetd_")),
            "{names:?}"
        );
        let duration = families
            .iter()
            .find(|f| f.name == "stacksetd_reconcile_duration_seconds")
            .unwrap();
        assert_eq!(duration.kind, Kind::Histogram);
        assert_eq!(duration.labels, vec!["deployment".to_string()]);
        let reloads = families
            .iter()
            .find(|f| f.name == "stacksetd_desired_state_reloads_total")
            .unwrap();
        assert_eq!(reloads.kind, Kind::Counter);
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "no family twice");
    }
}
