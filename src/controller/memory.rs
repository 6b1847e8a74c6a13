//! What the controller remembers between passes of a deployment. None of it is needed for correctness after a
//! restart (AWS holds the truth: a running operation is found again by listing); it saves calls and makes
//! deliberate retries take a fresh OperationId.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::time::Instant;

/// How many finished operation ids are remembered per deployment (enough to step past eventually-consistent
/// listings; old ones only matter for ids that are reused, which a retry never does).
const FINISHED_REMEMBERED: usize = 64;

#[derive(Debug, Clone)]
pub struct Inflight {
    pub id: String,
    pub since: Instant,
}

#[derive(Debug, Default)]
struct Entry {
    inflight: Option<Inflight>,
    finished: VecDeque<String>,
    failures: u32,
}

#[derive(Debug, Default)]
pub struct Memory {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Memory {
    fn with<T>(&self, deployment: &str, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut entries = self.entries.lock().expect("controller memory poisoned");
        f(entries.entry(deployment.to_string()).or_default())
    }

    pub fn inflight(&self, deployment: &str) -> Option<Inflight> {
        self.with(deployment, |e| e.inflight.clone())
    }

    /// Wait for this operation from now on (ours, or one found running).
    pub fn adopt(&self, deployment: &str, id: &str) {
        self.with(deployment, |e| {
            if e.inflight.as_ref().is_none_or(|i| i.id != id) {
                e.inflight = Some(Inflight {
                    id: id.to_string(),
                    since: Instant::now(),
                });
            }
        })
    }

    /// The operation ended; remember its id so a retry takes the next sequence number.
    pub fn finish(&self, deployment: &str, id: &str) {
        self.with(deployment, |e| {
            if e.inflight.as_ref().is_some_and(|i| i.id == id) {
                e.inflight = None;
            }
            if !e.finished.iter().any(|f| f == id) {
                e.finished.push_back(id.to_string());
                if e.finished.len() > FINISHED_REMEMBERED {
                    e.finished.pop_front();
                }
            }
        })
    }

    pub fn finished(&self, deployment: &str) -> Vec<String> {
        self.with(deployment, |e| e.finished.iter().cloned().collect())
    }

    /// A pass failed: returns the number of consecutive failures (for the backoff).
    pub fn failed(&self, deployment: &str) -> u32 {
        self.with(deployment, |e| {
            e.failures = e.failures.saturating_add(1);
            e.failures
        })
    }

    /// Converged: the error backoff starts over.
    pub fn succeeded(&self, deployment: &str) {
        self.with(deployment, |e| e.failures = 0)
    }

    /// Forget a deployment removed from the desired state.
    pub fn forget(&self, deployment: &str) {
        self.entries
            .lock()
            .expect("controller memory poisoned")
            .remove(deployment);
    }
}
