//! The lease table behind a trait: the conditional writes the protocol needs (see the module docs of
//! [`crate::leases`]), on DynamoDB ([`super::dynamo::DynamoStore`]) and in memory ([`MemoryStore`], for tests,
//! with the same conditions evaluated the same way).
//!
//! Every write is conditional; a condition that does not hold is [`Write::ConditionFailed`], not an error: it
//! means another replica (or our own past) got there first, which the protocol expects.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::cloud::CallCounter;
use crate::error::Error;

/// The service name calls are counted under.
pub const SERVICE: &str = "dynamodb";

/// The partition key of a replica's heartbeat item is this prefix and the replica id.
pub const REPLICA_PREFIX: &str = "replica#";
/// The partition key of a deployment's lease item is this prefix and the deployment name.
pub const LEASE_PREFIX: &str = "lease#";

/// The answer to a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Applied,
    /// The condition did not hold: nothing was written.
    ConditionFailed,
}

/// A replica's heartbeat item (`replica#<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub replica: String,
    pub session: String,
    /// Wall-clock epoch milliseconds; the session is live while this is in the future.
    pub expires_at_ms: u64,
    pub heartbeat_at_ms: u64,
}

/// A deployment's lease item (`lease#<deployment>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub deployment: String,
    /// The owning session; `None` when free.
    pub owner: Option<String>,
    /// The owner's replica id (informational: the session decides).
    pub replica: Option<String>,
    /// Incremented on every acquisition, never on renewal.
    pub fence: u64,
    pub acquired_at_ms: Option<u64>,
}

/// The whole table, read consistently.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableScan {
    pub sessions: Vec<SessionRecord>,
    pub leases: Vec<LeaseRecord>,
}

/// What an acquisition expects to find, as seen in the last scan: the write's condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No item: `attribute_not_exists(pk)`; the new fence is 1.
    Absent,
    /// An item without owner: `attribute_not_exists(owner) AND fence = :seen`.
    Free { fence: u64 },
    /// An item owned by a session that is not live: `owner = :seen_owner AND fence = :seen_fence`.
    Owned { owner: String, fence: u64 },
}

impl Expect {
    /// The fence an acquisition under this expectation writes.
    pub fn next_fence(&self) -> u64 {
        match self {
            Expect::Absent => 1,
            Expect::Free { fence } | Expect::Owned { fence, .. } => fence.saturating_add(1),
        }
    }
}

/// An acquisition: take `deployment` for `session` of `replica` if the item is as `expect`ed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquire {
    pub deployment: String,
    pub expect: Expect,
    pub session: String,
    pub replica: String,
    pub now_ms: u64,
}

/// The lease table.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// The table's name, for messages and /status.
    fn table(&self) -> &str;

    /// Extend our session: set `expires_at`, `heartbeat_at` if `session = :mine AND expires_at > :now_ms`.
    async fn renew_session(
        &self,
        replica: &str,
        session: &str,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Write, Error>;

    /// Start a session: write the heartbeat item if `attribute_not_exists(pk) OR expires_at < :now_ms`, or, with
    /// `replaces`, also if the item's session is that one (our own previous session, which we give up).
    async fn start_session(
        &self,
        replica: &str,
        session: &str,
        replaces: Option<&str>,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Write, Error>;

    /// Delete our heartbeat item if `session = :mine` (shutdown).
    async fn end_session(&self, replica: &str, session: &str) -> Result<Write, Error>;

    /// Every item, strongly consistent, every page.
    async fn scan(&self) -> Result<TableScan, Error>;

    /// One lease item, strongly consistent.
    async fn get_lease(&self, deployment: &str) -> Result<Option<LeaseRecord>, Error>;

    /// Take a lease (owner, replica, fence = expected + 1, acquired_at) if it is as expected.
    async fn acquire(&self, acquire: &Acquire) -> Result<Write, Error>;

    /// Give a lease up: `REMOVE owner, replica` if `owner = :mine AND fence = :f`.
    async fn release(&self, deployment: &str, session: &str, fence: u64) -> Result<Write, Error>;

    /// Every call made to the table.
    fn calls(&self) -> &CallCounter;
}

/// The operations a [`MemoryStore`] can be told to fail, named as the DynamoDB actions they stand for.
pub const OPERATIONS: &[&str] = &["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Scan"];

#[derive(Debug, Default)]
struct Tables {
    sessions: BTreeMap<String, SessionRecord>,
    leases: BTreeMap<String, LeaseRecord>,
    /// Operation -> how many of its next calls fail.
    failures: BTreeMap<&'static str, u32>,
}

/// The lease table in memory, with DynamoDB's conditional semantics, call counting and injectable failures.
#[derive(Debug)]
pub struct MemoryStore {
    table: String,
    tables: Mutex<Tables>,
    calls: CallCounter,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new("stacksetd-leases")
    }
}

impl MemoryStore {
    pub fn new(table: &str) -> MemoryStore {
        MemoryStore {
            table: table.to_string(),
            tables: Mutex::new(Tables::default()),
            calls: CallCounter::default(),
        }
    }

    /// The next `times` calls of `operation` (one of [`OPERATIONS`]) fail with [`Error::Leases`].
    pub fn fail(&self, operation: &'static str, times: u32) {
        self.lock().failures.insert(operation, times);
    }

    /// The lease item of `deployment` as it is now.
    pub fn lease(&self, deployment: &str) -> Option<LeaseRecord> {
        self.lock().leases.get(deployment).cloned()
    }

    /// Overwrite (or with `None`, delete) a lease item, unconditionally: tests stand in for another writer.
    pub fn set_lease(&self, deployment: &str, record: Option<LeaseRecord>) {
        let mut tables = self.lock();
        match record {
            Some(record) => tables.leases.insert(deployment.to_string(), record),
            None => tables.leases.remove(deployment),
        };
    }

    /// The heartbeat item of `replica` as it is now.
    pub fn session(&self, replica: &str) -> Option<SessionRecord> {
        self.lock().sessions.get(replica).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding this lock is a test failing elsewhere; the data is still consistent.
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Take the lock for `operation`, or fail it if a failure was injected.
    fn begin(&self, operation: &'static str) -> Result<std::sync::MutexGuard<'_, Tables>, Error> {
        let mut tables = self.lock();
        if let Some(left) = tables.failures.get_mut(operation).filter(|n| **n > 0) {
            *left -= 1;
            drop(tables);
            self.calls.record(SERVICE, operation, "error");
            return Err(Error::Leases {
                table: self.table.clone(),
                message: format!("DynamoDB {operation} failed: injected failure"),
            });
        }
        Ok(tables)
    }

    fn written(&self, operation: &'static str, write: Write) -> Result<Write, Error> {
        let outcome = match write {
            Write::Applied => "ok",
            Write::ConditionFailed => "condition_failed",
        };
        self.calls.record(SERVICE, operation, outcome);
        Ok(write)
    }
}

fn applied_if(condition: bool) -> Write {
    if condition {
        Write::Applied
    } else {
        Write::ConditionFailed
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    fn table(&self) -> &str {
        &self.table
    }

    async fn renew_session(
        &self,
        replica: &str,
        session: &str,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Write, Error> {
        let mut tables = self.begin("UpdateItem")?;
        let write = match tables.sessions.get_mut(replica) {
            Some(item) if item.session == session && item.expires_at_ms > now_ms => {
                item.expires_at_ms = expires_at_ms;
                item.heartbeat_at_ms = now_ms;
                Write::Applied
            }
            _ => Write::ConditionFailed,
        };
        drop(tables);
        self.written("UpdateItem", write)
    }

    async fn start_session(
        &self,
        replica: &str,
        session: &str,
        replaces: Option<&str>,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Write, Error> {
        let mut tables = self.begin("PutItem")?;
        let ok = match tables.sessions.get(replica) {
            None => true,
            Some(item) => item.expires_at_ms < now_ms || replaces == Some(item.session.as_str()),
        };
        if ok {
            tables.sessions.insert(
                replica.to_string(),
                SessionRecord {
                    replica: replica.to_string(),
                    session: session.to_string(),
                    expires_at_ms,
                    heartbeat_at_ms: now_ms,
                },
            );
        }
        drop(tables);
        self.written("PutItem", applied_if(ok))
    }

    async fn end_session(&self, replica: &str, session: &str) -> Result<Write, Error> {
        let mut tables = self.begin("DeleteItem")?;
        let ok = tables
            .sessions
            .get(replica)
            .is_some_and(|s| s.session == session);
        if ok {
            tables.sessions.remove(replica);
        }
        drop(tables);
        self.written("DeleteItem", applied_if(ok))
    }

    async fn scan(&self) -> Result<TableScan, Error> {
        let tables = self.begin("Scan")?;
        let scan = TableScan {
            sessions: tables.sessions.values().cloned().collect(),
            leases: tables.leases.values().cloned().collect(),
        };
        drop(tables);
        self.calls.record(SERVICE, "Scan", "ok");
        Ok(scan)
    }

    async fn get_lease(&self, deployment: &str) -> Result<Option<LeaseRecord>, Error> {
        let tables = self.begin("GetItem")?;
        let lease = tables.leases.get(deployment).cloned();
        drop(tables);
        self.calls.record(SERVICE, "GetItem", "ok");
        Ok(lease)
    }

    async fn acquire(&self, acquire: &Acquire) -> Result<Write, Error> {
        let operation = match acquire.expect {
            Expect::Absent => "PutItem",
            _ => "UpdateItem",
        };
        let mut tables = self.begin(operation)?;
        let item = tables.leases.get(&acquire.deployment);
        let ok = match (&acquire.expect, item) {
            (Expect::Absent, None) => true,
            (Expect::Free { fence }, Some(item)) => item.owner.is_none() && item.fence == *fence,
            (Expect::Owned { owner, fence }, Some(item)) => {
                item.owner.as_deref() == Some(owner.as_str()) && item.fence == *fence
            }
            _ => false,
        };
        if ok {
            tables.leases.insert(
                acquire.deployment.clone(),
                LeaseRecord {
                    deployment: acquire.deployment.clone(),
                    owner: Some(acquire.session.clone()),
                    replica: Some(acquire.replica.clone()),
                    fence: acquire.expect.next_fence(),
                    acquired_at_ms: Some(acquire.now_ms),
                },
            );
        }
        drop(tables);
        self.written(operation, applied_if(ok))
    }

    async fn release(&self, deployment: &str, session: &str, fence: u64) -> Result<Write, Error> {
        let mut tables = self.begin("UpdateItem")?;
        let write = match tables.leases.get_mut(deployment) {
            Some(item) if item.owner.as_deref() == Some(session) && item.fence == fence => {
                item.owner = None;
                item.replica = None;
                Write::Applied
            }
            _ => Write::ConditionFailed,
        };
        drop(tables);
        self.written("UpdateItem", write)
    }

    fn calls(&self) -> &CallCounter {
        &self.calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(expect: Expect, session: &str) -> Acquire {
        Acquire {
            deployment: "d".into(),
            expect,
            session: session.into(),
            replica: "r".into(),
            now_ms: 5,
        }
    }

    #[tokio::test]
    async fn memory_store_conditions() {
        let store = MemoryStore::default();
        assert_eq!(
            store.start_session("r", "s1", None, 10, 100).await.ok(),
            Some(Write::Applied)
        );
        // A second process with the same replica id cannot start while the first is live.
        assert_eq!(
            store.start_session("r", "s2", None, 50, 150).await.ok(),
            Some(Write::ConditionFailed)
        );
        assert_eq!(
            store.renew_session("r", "s2", 50, 150).await.ok(),
            Some(Write::ConditionFailed)
        );
        assert_eq!(
            store.renew_session("r", "s1", 50, 150).await.ok(),
            Some(Write::Applied)
        );
        // Expired: neither renewed, and another may start.
        assert_eq!(
            store.renew_session("r", "s1", 151, 250).await.ok(),
            Some(Write::ConditionFailed)
        );
        assert_eq!(
            store.start_session("r", "s2", None, 151, 251).await.ok(),
            Some(Write::Applied)
        );
        // Our own live session can be replaced by naming it.
        assert_eq!(
            store
                .start_session("r", "s3", Some("s2"), 160, 260)
                .await
                .ok(),
            Some(Write::Applied)
        );

        assert_eq!(
            store
                .acquire(&take(Expect::Free { fence: 0 }, "s3"))
                .await
                .ok(),
            Some(Write::ConditionFailed)
        );
        assert_eq!(
            store.acquire(&take(Expect::Absent, "s3")).await.ok(),
            Some(Write::Applied)
        );
        assert_eq!(
            store.acquire(&take(Expect::Absent, "s4")).await.ok(),
            Some(Write::ConditionFailed)
        );
        let seen = Expect::Owned {
            owner: "s3".into(),
            fence: 1,
        };
        assert_eq!(
            store.acquire(&take(seen.clone(), "s4")).await.ok(),
            Some(Write::Applied)
        );
        assert_eq!(store.lease("d").map(|l| l.fence), Some(2));
        // The stale expectation no longer holds.
        assert_eq!(
            store.acquire(&take(seen, "s5")).await.ok(),
            Some(Write::ConditionFailed)
        );
        assert_eq!(
            store.release("d", "s3", 1).await.ok(),
            Some(Write::ConditionFailed)
        );
        assert_eq!(store.release("d", "s4", 2).await.ok(), Some(Write::Applied));
        assert_eq!(
            store
                .acquire(&take(Expect::Free { fence: 2 }, "s5"))
                .await
                .ok(),
            Some(Write::Applied)
        );
        assert_eq!(
            store.end_session("r", "s1").await.ok(),
            Some(Write::ConditionFailed)
        );
        assert_eq!(
            store.end_session("r", "s3").await.ok(),
            Some(Write::Applied)
        );
        assert_eq!(store.session("r"), None);

        store.fail("GetItem", 1);
        assert!(matches!(
            store.get_lease("d").await,
            Err(Error::Leases { .. })
        ));
        assert!(store.get_lease("d").await.is_ok());
        assert_eq!(
            store.calls().snapshot().get(&(SERVICE, "GetItem", "error")),
            Some(&1)
        );
    }
}
