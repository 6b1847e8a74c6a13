//! Per-deployment leases on one table, so several replicas of the daemon can run at once (high availability)
//! while at most one of them acts on any deployment at a time.
//!
//! # The protocol
//!
//! Sessions, as in Chubby: a replica holds leases through a *session*, and a lease is only as good as the
//! session that owns it. The table (partition key `pk`, type S) has two kinds of items:
//!
//! - `replica#<replica id>`: the replica's heartbeat: `session` (a random 64-bit id, new for every session),
//!   `expires_at` and `heartbeat_at` (wall-clock epoch milliseconds). The session is *live* while
//!   `expires_at` is in the future.
//! - `lease#<deployment>`: `owner` (the owning session id; absent when free), `replica` (informational),
//!   `fence` (incremented on every acquisition, never on renewal) and `acquired_at`.
//!
//! Every `duration / 3` each replica [`Leases::tick`]s:
//!
//! 1. **Heartbeat.** It notes `sent` (monotonic) and `now` (wall) *before* sending, then extends its session
//!    to `now + duration` on the condition `session = :mine AND expires_at > :now`. If the condition fails, or
//!    the answer arrives after the previous local deadline, the session is dead: every lease is dropped
//!    locally first, then a new session is started with the condition `attribute_not_exists(pk) OR
//!    expires_at < :now` (or the item still holds our own previous session, which we give up). On success the
//!    *local deadline* is `sent + duration - margin` (`margin = duration / 5`).
//! 2. **Scan** (strongly consistent, every page): the live sessions and every lease.
//! 3. **Reconcile:** a lease we think we hold whose item has another owner or fence is lost.
//! 4. **Assign** the desired deployments over the live replicas ([`assign::assign`], a pure function: every
//!    replica computes the same answer from the same scan).
//! 5. **Release** what is held but no longer ours: locally first, then `REMOVE owner` on `owner = :mine AND
//!    fence = :f`.
//! 6. **Acquire** what is ours and absent (`attribute_not_exists(pk)`), free (`attribute_not_exists(owner) AND
//!    fence = :seen`) or owned by a session that is not live (`owner = :seen_owner AND fence = :seen_fence`),
//!    writing `fence = seen + 1`. A lease owned by a live session of another replica is never taken: that
//!    replica releases it itself when it sees the assignment move.
//! 7. **Wake up** at the next tick, or earlier: just after the expiry of a session whose death would move a
//!    deployment to us (so a dead replica's deployments are taken over when its session expires, not a tick
//!    later), and shortly after a tick that found a deployment of ours still held by its previous owner.
//!
//! A replica *holds* a lease while it is marked held locally and the local deadline has not passed;
//! [`Leases::ensure_held`], called before every mutating AWS call, also reads the lease item (strongly
//! consistent) and checks owner and fence, then checks the deadline again after the read.
//!
//! # Why at most one replica holds a lease
//!
//! - **Writes are conditional on what was read.** Two replicas acquiring the same lease both condition on the
//!   same `(owner, fence)`; DynamoDB applies one, and the other's condition then fails. Fences only grow.
//! - **A session cannot come back.** Renewal requires `expires_at > now` (the renewer's clock), so once a
//!   session has expired it is never renewed; a restarted or resumed process starts a *new* session id, so
//!   leases owned by the old one are free for the taking and never regained by it.
//! - **A holder stops before anyone may take over.** Others take a lease only when its owner's session has
//!   expired: `expires_at = now_at_send + duration`. The holder's local deadline is `sent + duration - margin`
//!   on its monotonic clock, with `sent` noted before `now_at_send`, so it stops holding `margin` before the
//!   earliest takeover, however long the request took. A renewal counts only if its answer arrives before the
//!   previous local deadline: a renewal applied late (after another replica could have judged the session
//!   expired and read the table) is treated as a dead session, never as an extension.
//! - **Losing is local and immediate; gaining waits for the table.** Every path that gives a lease up (release,
//!   a failed heartbeat, a deadline passed, a scan showing another owner) marks it not held before any call;
//!   a lease is marked held only after the conditional write that took it succeeded.
//! - **Doubt fails closed.** A heartbeat or scan that fails leaves the leases held only until the local
//!   deadline; [`Leases::ensure_held`] refuses on any read failure.
//!
//! # Assumptions and limits
//!
//! - Wall clocks of replicas agree within `margin` (6 s at the default 30 s): `expires_at` is compared across
//!   processes. Wall time is the system clock at start plus tokio's monotonic clock since (as
//!   `controller::Context::wall_now`), so a step of the system clock after start is not followed; a clock far
//!   off at start breaks the assumption (start after time synchronisation).
//! - A process must not stall between [`Leases::ensure_held`] and the AWS call it guards for more than
//!   `margin` plus the deadline's remaining time; AWS itself allows one operation per stack set at a time, and
//!   operation ids are derived from the change, so a late duplicate is recognised rather than repeated.
//! - Two processes with the same replica id cannot both hold a session: the second holds nothing (and says so)
//!   until the first's session ends.

pub mod assign;
pub mod dynamo;
pub mod store;
mod tick;

#[cfg(test)]
mod dynamo_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use self::assign::assign;
pub use self::dynamo::DynamoStore;
use self::store::{Acquire, Expect, LeaseRecord, Write};
pub use self::store::{LeaseStore, MemoryStore};
use crate::cloud::CallCounter;
use crate::error::Error;

/// The lease duration unless configured: how long a dead replica's deployments wait for another replica.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(30);
/// The shortest lease accepted: under it, a DynamoDB round trip is a sizeable part of the margin.
pub const MIN_LEASE_DURATION: Duration = Duration::from_secs(3);
/// Ticks (heartbeat, scan, assignment) per lease duration: a tick can fail twice before the lease is lost.
pub const TICK_DIVISOR: u32 = 3;
/// The local safety margin is the duration divided by this: how much earlier than the table's expiry a holder
/// stops holding, covering clock skew between replicas.
pub const MARGIN_DIVISOR: u32 = 5;
/// A mutating call (its every retry included) is abandoned this much before the local deadline (the duration
/// divided by this: 3 s at the default 30 s), so that an attempt sent just before is through the network before
/// the deadline: [`Leases::ensure_held_since`] returns the instant.
pub const CALL_MARGIN_DIVISOR: u32 = 10;
/// A takeover wakes this long after the dead session's expiry, so the expiry has surely passed on the table.
pub const TAKEOVER_SLACK: Duration = Duration::from_millis(100);
/// After a tick that found one of our deployments still held by its previous (live) owner, look again this
/// soon, doubling while it stays so (up to the tick interval): the owner releases it at its own next tick.
pub const HANDOVER_FIRST_RECHECK: Duration = Duration::from_millis(50);

/// Where the leases are and whose they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// The DynamoDB table.
    pub table: String,
    /// How long a session lives without a heartbeat (at least [`MIN_LEASE_DURATION`]).
    pub duration: Duration,
    /// This replica's id, unique among the replicas sharing the table (e.g. the pod name).
    pub replica_id: String,
}

impl LeaseSettings {
    /// The time between ticks.
    pub fn interval(&self) -> Duration {
        self.duration / TICK_DIVISOR
    }

    /// How much earlier than its session's expiry a holder stops holding.
    pub fn margin(&self) -> Duration {
        self.duration / MARGIN_DIVISOR
    }
}

/// One holding of a lease: the session and the fence it was acquired with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseToken {
    pub session: String,
    pub fence: u64,
}

/// What /status shows of the leases.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseSnapshot {
    pub table: String,
    pub replica_id: String,
    pub session: Option<String>,
    pub duration_seconds: f64,
    pub live_replicas: Vec<String>,
    pub held: Vec<HeldLease>,
    pub last_error: Option<String>,
    pub acquired: u64,
    pub lost: u64,
    pub released: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldLease {
    pub deployment: String,
    pub fence: u64,
    /// Until the local deadline, unless a heartbeat extends it.
    pub valid_for_ms: u64,
}

#[derive(Debug)]
struct Session {
    id: String,
    /// `sent + duration - margin` of the last heartbeat that counted.
    deadline: Instant,
}

#[derive(Debug, Default)]
struct State {
    desired: BTreeSet<String>,
    session: Option<Session>,
    /// The last session id we wrote or tried to write: a new session may replace it.
    previous_session: Option<String>,
    /// Deployment -> fence, for leases of the current session.
    held: BTreeMap<String, u64>,
    watchers: BTreeMap<String, watch::Sender<bool>>,
    live_replicas: Vec<String>,
    last_error: Option<String>,
    next_wake: Option<Instant>,
    handover_recheck: Option<Duration>,
    acquired: u64,
    lost: u64,
    released: u64,
}

impl State {
    /// (session, fence, deadline) if `deployment` is held at `now`.
    fn holding(&self, deployment: &str, now: Instant) -> Option<(String, u64, Instant)> {
        let session = self.session.as_ref().filter(|s| now < s.deadline)?;
        let fence = self.held.get(deployment)?;
        Some((session.id.clone(), *fence, session.deadline))
    }

    fn notify(&self, deployment: &str) {
        if let Some(sender) = self.watchers.get(deployment) {
            let held = self.holding(deployment, Instant::now()).is_some();
            sender.send_if_modified(|value| std::mem::replace(value, held) != held);
        }
    }

    fn notify_all(&self) {
        for deployment in self.watchers.keys() {
            self.notify(deployment);
        }
    }

    fn lose(&mut self, deployment: &str, reason: &str) {
        if self.held.remove(deployment).is_some() {
            self.lost += 1;
            tracing::warn!(deployment, reason, "lease lost");
            self.notify(deployment);
        }
    }

    fn lose_all(&mut self, reason: &str) {
        let held: Vec<String> = self.held.keys().cloned().collect();
        for deployment in held {
            self.lose(&deployment, reason);
        }
    }
}

/// This replica's leases: the state machine of the protocol above and its loop.
pub struct Leases {
    store: Arc<dyn LeaseStore>,
    settings: LeaseSettings,
    /// tokio's clock and the wall clock at construction: wall time follows tokio's clock (paused in tests).
    epoch: (Instant, SystemTime),
    state: Mutex<State>,
    /// One tick (or release_all) at a time.
    ticking: tokio::sync::Mutex<()>,
    /// Wakes the loop when the desired deployments change.
    changed: Notify,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// Leases on `store`; a duration under [`MIN_LEASE_DURATION`] is raised to it.
    pub fn new(store: Arc<dyn LeaseStore>, mut settings: LeaseSettings) -> Arc<Leases> {
        if settings.duration < MIN_LEASE_DURATION {
            tracing::warn!(?settings.duration, minimum = ?MIN_LEASE_DURATION, "lease duration raised to the minimum");
            settings.duration = MIN_LEASE_DURATION;
        }
        Arc::new(Leases {
            store,
            settings,
            epoch: (Instant::now(), SystemTime::now()),
            state: Mutex::new(State::default()),
            ticking: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
        })
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// The desired state's deployment names (called on every load); the next tick acquires and releases.
    pub fn set_deployments(&self, names: impl IntoIterator<Item = String>) {
        let names: BTreeSet<String> = names.into_iter().collect();
        let mut state = self.lock();
        if state.desired != names {
            state.desired = names;
            drop(state);
            self.changed.notify_one();
        }
    }

    /// Whether this replica holds `deployment`'s lease now (marked held and the local deadline not passed).
    pub fn held(&self, deployment: &str) -> bool {
        self.lock().holding(deployment, Instant::now()).is_some()
    }

    /// `true` while `deployment` is held; turns false when it is lost, released or the local deadline passes
    /// (the loop flips it at the deadline).
    pub fn subscribe(&self, deployment: &str) -> watch::Receiver<bool> {
        let mut state = self.lock();
        let held = state.holding(deployment, Instant::now()).is_some();
        state
            .watchers
            .entry(deployment.to_string())
            .or_insert_with(|| watch::channel(held).0)
            .subscribe()
    }

    /// Called right before every mutating AWS call of `deployment` (`call` names it): fails closed with
    /// [`Error::LeaseLost`] unless the lease is held locally, the table (strongly consistent read) shows our
    /// session and fence, and the local deadline has still not passed once the read returned. Returns the local
    /// deadline as it then stands.
    pub async fn ensure_held(&self, deployment: &str, call: &str) -> Result<Instant, Error> {
        let lost = |reason: String| Error::LeaseLost {
            deployment: deployment.to_string(),
            call: call.to_string(),
            reason,
        };
        let Some((session, fence, _)) = self.lock().holding(deployment, Instant::now()) else {
            return Err(lost(self.why_not_held(deployment)));
        };
        match self.store.get_lease(deployment).await {
            Ok(Some(item))
                if item.owner.as_deref() == Some(session.as_str()) && item.fence == fence => {}
            Ok(item) => {
                let reason = describe_other(item.as_ref(), &session, fence);
                self.lock().lose(deployment, &reason);
                return Err(lost(reason));
            }
            Err(e) => return Err(lost(format!("the lease could not be confirmed: {e}"))),
        }
        match self.lock().holding(deployment, Instant::now()) {
            Some((now_session, now_fence, deadline)) if now_session == session && now_fence == fence => {
                Ok(deadline)
            }
            _ => Err(lost(
                "the local deadline passed (or the lease was given up) while the lease was being confirmed".into(),
            )),
        }
    }

    /// The lease as held now (session and fence), for a pass to start under: see [`Leases::ensure_held_since`].
    pub fn token(&self, deployment: &str) -> Option<LeaseToken> {
        self.lock()
            .holding(deployment, Instant::now())
            .map(|(session, fence, _)| LeaseToken { session, fence })
    }

    /// [`Leases::ensure_held`], and still the very lease the pass began under. A pass that started before its
    /// lease was lost (a replica paused mid-pass) decided from what it saw then; if the lease was taken again
    /// since, by a new session of this replica, those decisions are stale and must not be sent.
    ///
    /// Returns the *call deadline*: the local deadline less the call margin (`duration / CALL_MARGIN_DIVISOR`).
    /// The guarded call, every retry included, must have ended by then or be abandoned (the gate does it), so
    /// that nothing it sends reaches AWS after another replica may have taken the lease. Too close to the local
    /// deadline already, the call is refused.
    pub async fn ensure_held_since(
        &self,
        deployment: &str,
        call: &str,
        began: &LeaseToken,
    ) -> Result<Instant, Error> {
        let same = || self.token(deployment).as_ref() == Some(began);
        let stale = || Error::LeaseLost {
            deployment: deployment.to_string(),
            call: call.to_string(),
            reason: format!(
                "the pass began under fence {} and the lease changed hands since: its decisions are stale",
                began.fence
            ),
        };
        if !same() {
            return Err(stale());
        }
        let deadline = self.ensure_held(deployment, call).await?;
        if !same() {
            return Err(stale());
        }
        let call_deadline = deadline - self.settings.duration / CALL_MARGIN_DIVISOR;
        if call_deadline <= Instant::now() {
            return Err(Error::LeaseLost {
                deployment: deployment.to_string(),
                call: call.to_string(),
                reason: "too close to the local deadline to send a call before it (the next heartbeat renews it)"
                    .into(),
            });
        }
        Ok(call_deadline)
    }

    fn why_not_held(&self, deployment: &str) -> String {
        let state = self.lock();
        match &state.session {
            None => "this replica has no live session".into(),
            Some(_) if !state.held.contains_key(deployment) => {
                "this replica does not hold it".into()
            }
            Some(_) => "the local deadline passed without a successful heartbeat".into(),
        }
    }

    pub fn snapshot(&self) -> LeaseSnapshot {
        let now = Instant::now();
        let state = self.lock();
        let held = state
            .held
            .keys()
            .filter_map(|d| {
                let (_, fence, deadline) = state.holding(d, now)?;
                Some(HeldLease {
                    deployment: d.clone(),
                    fence,
                    valid_for_ms: millis(deadline.saturating_duration_since(now)),
                })
            })
            .collect();
        LeaseSnapshot {
            table: self.settings.table.clone(),
            replica_id: self.settings.replica_id.clone(),
            session: state.session.as_ref().map(|s| s.id.clone()),
            duration_seconds: self.settings.duration.as_secs_f64(),
            live_replicas: state.live_replicas.clone(),
            held,
            last_error: state.last_error.clone(),
            acquired: state.acquired,
            lost: state.lost,
            released: state.released,
        }
    }

    /// Every call made to the table.
    pub fn calls(&self) -> &CallCounter {
        self.store.calls()
    }

    /// Tick until `stop`, then return without releasing (see [`Leases::release_all`]). Never panics: errors are
    /// logged and kept for /status.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.watch_deadline() => {}
                result = self.tick() => {
                    if let Err(e) = result {
                        tracing::error!(error = %e, "lease tick failed");
                    }
                }
            }
            let wake = self
                .lock()
                .next_wake
                .unwrap_or_else(|| Instant::now() + self.settings.interval());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.watch_deadline() => {}
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.changed.notified() => {}
            }
        }
    }

    /// Never returns: drops every lease when the local deadline passes (flipping the watchers), so a worker
    /// waiting on [`Leases::subscribe`] stops even while a tick is stuck in a call.
    async fn watch_deadline(&self) {
        loop {
            let at = {
                let state = self.lock();
                match &state.session {
                    Some(session) if !state.held.is_empty() => session.deadline,
                    _ => Instant::now() + self.settings.interval(),
                }
            };
            tokio::time::sleep_until(at).await;
            self.expire_overdue();
        }
    }

    /// Drop every lease if the local deadline has passed.
    fn expire_overdue(&self) {
        let mut state = self.lock();
        if state
            .session
            .as_ref()
            .is_some_and(|s| Instant::now() >= s.deadline)
        {
            state.lose_all("the local deadline passed without a successful heartbeat");
        }
    }

    /// Best effort, at shutdown after the passes drained: give every lease up and end the session, so the
    /// other replicas take over at their next tick instead of after a lease duration.
    pub async fn release_all(&self) {
        let _one = self.ticking.lock().await;
        let (session, held) = {
            let mut state = self.lock();
            let held = std::mem::take(&mut state.held);
            state.notify_all();
            let session = state.session.take().map(|s| s.id);
            state.previous_session = session.clone();
            (session, held)
        };
        let Some(session) = session else { return };
        for (deployment, fence) in held {
            if let Err(e) = self
                .release_one(&deployment, &session, fence, " at shutdown")
                .await
            {
                tracing::warn!(deployment, error = %e, "lease not released at shutdown");
            }
        }
        match self
            .store
            .end_session(&self.settings.replica_id, &session)
            .await
        {
            Ok(_) => tracing::info!(replica = %self.settings.replica_id, "lease session ended"),
            Err(e) => tracing::warn!(error = %e, "lease session not ended; it expires by itself"),
        }
    }

    /// Give one lease up (`when` completes the log line); `Ok` too when it is no longer ours (someone else's
    /// already, or gone): nothing of ours to give up then.
    async fn release_one(
        &self,
        deployment: &str,
        session: &str,
        fence: u64,
        when: &str,
    ) -> Result<(), Error> {
        if self.store.release(deployment, session, fence).await? == Write::Applied {
            self.lock().released += 1;
            tracing::info!(deployment, fence, "lease released{when}");
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding this lock; if one did, the state is still the safe side of each step
        // (leases are marked lost before any call, held only after one).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wall-clock epoch milliseconds at `at`, following tokio's clock.
    fn wall_ms(&self, at: Instant) -> u64 {
        let wall = self.epoch.1 + at.saturating_duration_since(self.epoch.0);
        wall.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
    }

    /// The tokio instant of wall-clock epoch milliseconds `ms` (the epoch if earlier).
    fn instant_of_ms(&self, ms: u64) -> Instant {
        let epoch_ms = self.wall_ms(self.epoch.0);
        self.epoch.0 + Duration::from_millis(ms.saturating_sub(epoch_ms))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Why a lease item is not ours, for [`Error::LeaseLost`].
fn describe_other(item: Option<&LeaseRecord>, our_session: &str, our_fence: u64) -> String {
    match item {
        None => "the lease item is gone from the table".into(),
        Some(item) => match (&item.owner, &item.replica) {
            (None, _) => format!("the table shows the lease free (fence {})", item.fence),
            (Some(owner), _) if owner == our_session => format!(
                "the table shows another fence ({}; ours was {our_fence})",
                item.fence
            ),
            (Some(_), replica) => format!(
                "the table shows another owner (replica {}, fence {}; ours was fence {our_fence})",
                replica.as_deref().unwrap_or("unknown"),
                item.fence
            ),
        },
    }
}

/// A new session id: 64 random bits in hex.
fn new_session_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// What to acquire a deployment with, given its item and the live sessions; `None` when a live session of
/// another replica owns it (it releases it itself).
fn expectation(item: Option<&LeaseRecord>, live_sessions: &BTreeSet<&str>) -> Option<Expect> {
    match item {
        None => Some(Expect::Absent),
        Some(item) => match &item.owner {
            None => Some(Expect::Free { fence: item.fence }),
            Some(owner) if !live_sessions.contains(owner.as_str()) => Some(Expect::Owned {
                owner: owner.clone(),
                fence: item.fence,
            }),
            Some(_) => None,
        },
    }
}

impl Acquire {
    fn of(deployment: &str, expect: Expect, session: &str, replica: &str, now_ms: u64) -> Acquire {
        Acquire {
            deployment: deployment.to_string(),
            expect,
            session: session.to_string(),
            replica: replica.to_string(),
            now_ms,
        }
    }
}
