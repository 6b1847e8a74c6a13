//! One tick of the protocol, in the order of the module docs of [`crate::leases`]: heartbeat, scan, reconcile,
//! assign, release, acquire, and when to wake up. The decisions (steps 3 to 7) are made under the state lock
//! with no call in between; the writes follow, each conditional.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::store::{Acquire, Expect, LeaseRecord, SessionRecord, TableScan, Write};
use super::{
    HANDOVER_FIRST_RECHECK, Leases, Session, TAKEOVER_SLACK, assign, expectation, millis,
    new_session_id,
};
use crate::error::Error;

/// What a tick decided from its scan, before any write.
struct Plan {
    deadline: Instant,
    /// (deployment, fence) to give up; already marked not held.
    release: Vec<(String, u64)>,
    acquire: Vec<(String, Expect)>,
}

impl Leases {
    /// One round of the protocol. An error leaves held leases held only until the local deadline.
    pub async fn tick(&self) -> Result<(), Error> {
        let _one = self.ticking.lock().await;
        // A tick that fails before deciding leaves no wake-up: the loop waits a whole interval, never spins.
        self.lock().next_wake = None;
        let result = self.tick_once().await;
        self.lock().last_error = result.as_ref().err().map(|e| e.to_string());
        result
    }

    async fn tick_once(&self) -> Result<(), Error> {
        self.expire_overdue();
        let Some(session) = self.heartbeat().await? else {
            return Err(self.replica_in_use());
        };
        let scan = self.store.scan().await?;
        let Some(plan) = self.plan(&session, &scan) else {
            return Ok(());
        };
        let me = self.settings.replica_id.as_str();
        let mut first_error = None;
        for (deployment, fence) in plan.release {
            // Still owned by our live session in the table after an error: the next tick finds it and releases it
            // again.
            if let Err(e) = self.release_one(&deployment, &session, fence, "").await {
                tracing::warn!(deployment, error = %e, "lease not released; retried next tick");
                first_error.get_or_insert(e);
            }
        }
        for (deployment, expect) in plan.acquire {
            // What we took now could not be held anyway: leave it for the next tick.
            if Instant::now() >= plan.deadline {
                break;
            }
            let fence = expect.next_fence();
            let now_ms = self.wall_ms(Instant::now());
            let request = Acquire::of(&deployment, expect, &session, me, now_ms);
            match self.store.acquire(&request).await {
                Ok(Write::Applied) => {
                    let mut state = self.lock();
                    let same_session = state.session.as_ref().is_some_and(|s| s.id == session);
                    // If the deployment left the desired state meanwhile, it is not marked held: the next
                    // tick finds it owned by our session and releases it.
                    if same_session && state.desired.contains(&deployment) {
                        state.held.insert(deployment.clone(), fence);
                        state.acquired += 1;
                        state.notify(&deployment);
                        tracing::info!(deployment, fence, "lease acquired");
                    }
                }
                Ok(Write::ConditionFailed) => {
                    tracing::debug!(deployment, "lease taken by another replica first");
                }
                Err(e) => {
                    tracing::warn!(deployment, error = %e, "lease not acquired; retried next tick");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Step 1: extend our session, or start a new one. `None`: another live process has our replica id.
    async fn heartbeat(&self) -> Result<Option<String>, Error> {
        let sent = Instant::now();
        let now_ms = self.wall_ms(sent);
        let expires_at_ms = now_ms.saturating_add(millis(self.settings.duration));
        let current = self
            .lock()
            .session
            .as_ref()
            .map(|s| (s.id.clone(), s.deadline));
        let (replaces, reason) = match current {
            Some((id, deadline)) if sent < deadline => {
                let write = self
                    .store
                    .renew_session(&self.settings.replica_id, &id, now_ms, expires_at_ms)
                    .await?;
                let answered = Instant::now();
                let reason = match write {
                    Write::Applied if answered < deadline => {
                        if let Some(session) = self.lock().session.as_mut().filter(|s| s.id == id) {
                            session.deadline = self.deadline_after(sent);
                        }
                        return Ok(Some(id));
                    }
                    // It may have been applied after another replica judged the session expired: never an
                    // extension then.
                    Write::Applied => "the heartbeat was answered after the local deadline",
                    Write::ConditionFailed => {
                        "the session expired, or another process took the replica id"
                    }
                };
                (Some(id), reason)
            }
            Some((id, _)) => (Some(id), "the local deadline passed before the heartbeat"),
            None => (self.lock().previous_session.clone(), ""),
        };
        if !reason.is_empty() {
            // Before anything else: nothing of the old session is held any more.
            let mut state = self.lock();
            state.lose_all(reason);
            state.session = None;
            tracing::warn!(replica = %self.settings.replica_id, reason, "lease session ended; starting a new one");
        }
        self.start_session(replaces).await
    }

    /// A new session, replacing `replaces` (our own previous one) if the item still holds it.
    async fn start_session(&self, replaces: Option<String>) -> Result<Option<String>, Error> {
        let id = new_session_id();
        let sent = Instant::now();
        let now_ms = self.wall_ms(sent);
        let expires_at_ms = now_ms.saturating_add(millis(self.settings.duration));
        self.lock().previous_session = Some(id.clone());
        let write = self
            .store
            .start_session(
                &self.settings.replica_id,
                &id,
                replaces.as_deref(),
                now_ms,
                expires_at_ms,
            )
            .await?;
        match write {
            Write::Applied => {
                self.lock().session = Some(Session {
                    id: id.clone(),
                    deadline: self.deadline_after(sent),
                });
                tracing::info!(replica = %self.settings.replica_id, session = %id, "lease session started");
                Ok(Some(id))
            }
            Write::ConditionFailed => {
                tracing::error!(
                    replica = %self.settings.replica_id,
                    "another live process uses this replica id: holding no lease until its session ends"
                );
                Ok(None)
            }
        }
    }

    fn deadline_after(&self, sent: Instant) -> Instant {
        sent + self.settings.duration - self.settings.margin()
    }

    fn replica_in_use(&self) -> Error {
        Error::Leases {
            table: self.settings.table.clone(),
            message: format!(
                "replica id {} is in use by another live process (its heartbeat item holds a session that is \
                 not ours and has not expired): this process holds no lease and retries every tick; give each \
                 replica its own id",
                self.settings.replica_id
            ),
        }
    }

    /// Steps 3 to 7 from the scan, under the state lock. `None` when the scan shows our session is not ours.
    fn plan(&self, session: &str, scan: &TableScan) -> Option<Plan> {
        let now = Instant::now();
        let now_ms = self.wall_ms(now);
        let me = self.settings.replica_id.as_str();
        let live: Vec<&SessionRecord> = scan
            .sessions
            .iter()
            .filter(|s| s.expires_at_ms > now_ms)
            .collect();
        let mut state = self.lock();
        let deadline = state.session.as_ref().filter(|s| s.id == session)?.deadline;
        // Our heartbeat item holds another live session: ours is dead whatever we believed (possible only if
        // clocks disagree by more than the margin). Drop everything; the next tick starts over.
        if live.iter().any(|s| s.replica == me && s.session != session) {
            state.lose_all("the table shows another session for this replica id");
            state.session = None;
            return None;
        }
        let mut live_sessions: BTreeSet<&str> = live.iter().map(|s| s.session.as_str()).collect();
        live_sessions.insert(session);
        let mut live_replicas: BTreeSet<String> = live.iter().map(|s| s.replica.clone()).collect();
        live_replicas.insert(me.to_string());
        let leases: BTreeMap<&str, &LeaseRecord> = scan
            .leases
            .iter()
            .map(|l| (l.deployment.as_str(), l))
            .collect();
        let ours = |l: &LeaseRecord| l.owner.as_deref() == Some(session);

        // 3. Reconcile.
        let held: Vec<(String, u64)> = state.held.iter().map(|(d, f)| (d.clone(), *f)).collect();
        for (deployment, fence) in &held {
            if !leases
                .get(deployment.as_str())
                .is_some_and(|l| ours(l) && l.fence == *fence)
            {
                state.lose(deployment, "the table shows another owner or fence");
            }
        }

        // 4. Assign.
        let assignment = assign(&state.desired, &live_replicas);
        let mine: BTreeSet<&str> = assignment
            .iter()
            .filter(|(_, owner)| *owner == me)
            .map(|(d, _)| d.as_str())
            .collect();

        // Items our session owns that we do not hold (an acquisition whose answer was lost, a release that
        // failed): ours to keep if assigned, else to release.
        let mut release = Vec::new();
        let orphans: Vec<&LeaseRecord> = scan
            .leases
            .iter()
            .filter(|l| ours(l) && !state.held.contains_key(&l.deployment))
            .collect();
        for lease in orphans {
            if mine.contains(lease.deployment.as_str()) && now < deadline {
                state.held.insert(lease.deployment.clone(), lease.fence);
                state.acquired += 1;
                state.notify(&lease.deployment);
                tracing::info!(deployment = %lease.deployment, fence = lease.fence, "lease adopted");
            } else {
                release.push((lease.deployment.clone(), lease.fence));
            }
        }

        // 5. Release: not held from here on, before the write.
        let held: Vec<(String, u64)> = state.held.iter().map(|(d, f)| (d.clone(), *f)).collect();
        for (deployment, fence) in held {
            if !mine.contains(deployment.as_str()) {
                state.held.remove(&deployment);
                state.notify(&deployment);
                release.push((deployment, fence));
            }
        }

        // 6. Acquire what is ours and takeable; count what its previous owner still holds.
        let mut acquire = Vec::new();
        let mut handovers = 0usize;
        for deployment in &mine {
            if state.held.contains_key(*deployment) {
                continue;
            }
            match expectation(leases.get(deployment).copied(), &live_sessions) {
                Some(expect) => acquire.push((deployment.to_string(), expect)),
                None => handovers += 1,
            }
        }

        // 7. Wake up: at the next tick; just after the expiry of a live session whose death moves a deployment
        // to us; soon again while a previous owner has yet to hand over.
        let interval = self.settings.interval();
        let mut wake = now + interval;
        for other in live.iter().filter(|s| s.replica != me) {
            let mut without = live_replicas.clone();
            without.remove(&other.replica);
            let moves_to_us = assign(&state.desired, &without)
                .iter()
                .any(|(d, owner)| owner == me && !mine.contains(d.as_str()));
            if moves_to_us {
                wake = wake.min(self.instant_of_ms(other.expires_at_ms) + TAKEOVER_SLACK);
            }
        }
        state.handover_recheck = if handovers > 0 {
            let recheck = state
                .handover_recheck
                .map_or(HANDOVER_FIRST_RECHECK, |d| (d * 2).min(interval));
            wake = wake.min(now + recheck);
            Some(recheck)
        } else {
            None
        };
        state.next_wake = Some(wake);
        state.live_replicas = live_replicas.into_iter().collect();
        Some(Plan {
            deadline,
            release,
            acquire,
        })
    }
}
