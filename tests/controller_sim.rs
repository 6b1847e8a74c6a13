//! Black-box tests of the controller (`reconcile`, `converge`) against the simulated organization on tokio's
//! paused clock: simulated operations take simulated seconds, and the tests run in milliseconds. Assertions are on
//! what the sim holds (operations, instances, API calls) and on the outcomes the controller returns.
//!
//! Layout: `helpers` (desired state from YAML, contexts, call deltas, a lagging view of the listings),
//! `convergence` (from nothing, call budget, edits), `safety` (adoption, OperationInProgress, restarts, lost
//! responses), `failures` (failed operations, revoke, throttling), `observability` (drift, spec drift, coverage repair,
//! access checks, read through the metrics), `preflight` (identity, delegated admin, trusted access, feature set,
//! target OUs, suspended/closing accounts, INOPERABLE repair), `deletions` (deletion_delay, ownership, the
//! approval record, revocation without the vendor).

#[path = "controller_sim/auto_targets.rs"]
mod auto_targets;
#[path = "controller_sim/convergence.rs"]
mod convergence;
#[path = "controller_sim/coverage_model.rs"]
mod coverage_model;
#[path = "controller_sim/deletions.rs"]
mod deletions;
#[path = "controller_sim/dependencies.rs"]
mod dependencies;
#[path = "controller_sim/events.rs"]
mod events;
#[path = "controller_sim/failures.rs"]
mod failures;
#[path = "controller_sim/helpers.rs"]
pub(crate) mod helpers;
#[path = "controller_sim/idempotence.rs"]
mod idempotence;
#[path = "controller_sim/instance_cache.rs"]
mod instance_cache;
#[path = "controller_sim/management_stack.rs"]
mod management_stack;
#[path = "controller_sim/observability.rs"]
mod observability;
#[path = "controller_sim/preflight.rs"]
mod preflight;
#[path = "controller_sim/rollout.rs"]
mod rollout;
#[path = "controller_sim/safety.rs"]
mod safety;
