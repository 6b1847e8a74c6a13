//! The protocol on the in-memory store with a paused clock: an even spread, takeover of a killed replica within
//! the lease duration, a paused replica that never holds what another holds, ensure_held failing closed,
//! release at shutdown, and a duplicate replica id.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::store::{LeaseRecord, LeaseStore, MemoryStore};
use super::{LeaseSettings, Leases, MIN_LEASE_DURATION};
use crate::error::Error;

const DURATION: Duration = MIN_LEASE_DURATION;
const INTERVAL: Duration = Duration::from_secs(1);
const DEPLOYMENTS: usize = 30;
/// Steps of the clock while watching a takeover.
const STEP: Duration = Duration::from_millis(10);

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("deployment-{i:02}")).collect()
}

fn replica(store: &Arc<MemoryStore>, id: &str, deployments: &[String]) -> Arc<Leases> {
    let store: Arc<dyn LeaseStore> = store.clone();
    let leases = Leases::new(
        store,
        LeaseSettings {
            table: "leases".into(),
            duration: DURATION,
            replica_id: id.into(),
        },
    );
    leases.set_deployments(deployments.iter().cloned());
    leases
}

fn fleet(store: &Arc<MemoryStore>, ids: &[&str], deployments: &[String]) -> Vec<Arc<Leases>> {
    ids.iter()
        .map(|id| replica(store, id, deployments))
        .collect()
}

async fn tick_all(fleet: &[Arc<Leases>]) {
    for leases in fleet {
        // Errors are part of some scenarios; the assertions look at what is held.
        let _ = leases.tick().await;
    }
}

fn held_count(leases: &Leases, deployments: &[String]) -> usize {
    deployments.iter().filter(|d| leases.held(d)).count()
}

/// The safety property: per deployment, at most one replica says it holds it.
fn assert_at_most_one_holder(fleet: &[Arc<Leases>], deployments: &[String]) {
    for d in deployments {
        let holders: Vec<&str> = fleet
            .iter()
            .filter(|l| l.held(d))
            .map(|l| l.settings().replica_id.as_str())
            .collect();
        assert!(holders.len() <= 1, "{d} held by {holders:?}");
    }
}

fn loads(fleet: &[Arc<Leases>], deployments: &[String]) -> Vec<usize> {
    fleet.iter().map(|l| held_count(l, deployments)).collect()
}

#[tokio::test(start_paused = true)]
async fn three_replicas_split_thirty_evenly() {
    let store = Arc::new(MemoryStore::default());
    let deployments = names(DEPLOYMENTS);
    let fleet = fleet(
        &store,
        &["replica-a", "replica-b", "replica-c"],
        &deployments,
    );
    for _ in 0..2 {
        tick_all(&fleet).await;
        assert_at_most_one_holder(&fleet, &deployments);
    }
    assert_eq!(loads(&fleet, &deployments), vec![10, 10, 10]);
    // Stable: more ticks move nothing.
    tokio::time::advance(INTERVAL).await;
    tick_all(&fleet).await;
    assert_eq!(loads(&fleet, &deployments), vec![10, 10, 10]);
    let snapshot = fleet[0].snapshot();
    assert_eq!(
        snapshot.live_replicas,
        vec!["replica-a", "replica-b", "replica-c"]
    );
    assert_eq!(snapshot.held.len(), 10);
    // The first replica to start took everything, then handed 20 over.
    assert_eq!(
        (snapshot.acquired, snapshot.released, snapshot.lost),
        (30, 20, 0)
    );
    let json = serde_json::to_value(&snapshot).expect("serializable");
    for key in [
        "replicaId",
        "durationSeconds",
        "liveReplicas",
        "lastError",
        "acquired",
        "lost",
        "released",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    assert!(json["held"][0].get("validForMs").is_some());
    assert!(fleet[0].calls().total() > 0);
}

#[tokio::test(start_paused = true)]
async fn a_killed_replica_is_taken_over_within_the_lease_duration() {
    let store = Arc::new(MemoryStore::default());
    let deployments = names(DEPLOYMENTS);
    let fleet = fleet(
        &store,
        &["replica-a", "replica-b", "replica-c"],
        &deployments,
    );
    let stops: Vec<CancellationToken> = fleet.iter().map(|_| CancellationToken::new()).collect();
    let tasks: Vec<_> = fleet
        .iter()
        .zip(&stops)
        .map(|(l, stop)| tokio::spawn(l.clone().run(stop.clone())))
        .collect();
    tokio::time::sleep(DURATION * 2).await;
    assert_eq!(loads(&fleet, &deployments), vec![10, 10, 10]);

    // Kill C at an arbitrary point between its heartbeats: it neither ticks nor releases again.
    tokio::time::sleep(INTERVAL / 2).await;
    stops[2].cancel();
    let mut tasks = tasks.into_iter();
    let c = tasks.nth(2).expect("three tasks");
    c.await.expect("run returns");
    let killed = Instant::now();
    let survivors = &fleet[..2];
    loop {
        assert_at_most_one_holder(&fleet, &deployments);
        if loads(survivors, &deployments).iter().sum::<usize>() == DEPLOYMENTS {
            break;
        }
        assert!(
            killed.elapsed() < DURATION * 2,
            "no takeover after {:?}",
            killed.elapsed()
        );
        tokio::time::sleep(STEP).await;
    }
    let takeover = killed.elapsed();
    assert!(
        takeover <= DURATION + Duration::from_millis(200),
        "takeover took {takeover:?}"
    );
    assert_eq!(loads(survivors, &deployments), vec![15, 15]);
    for stop in &stops {
        stop.cancel();
    }
}

#[tokio::test(start_paused = true)]
async fn a_paused_replica_stops_holding_and_does_not_regain_what_it_lost() {
    let store = Arc::new(MemoryStore::default());
    let deployments = names(DEPLOYMENTS);
    let fleet = fleet(
        &store,
        &["replica-a", "replica-b", "replica-c"],
        &deployments,
    );
    tick_all(&fleet).await;
    tick_all(&fleet).await;
    let c = &fleet[2];
    let c_had: Vec<String> = deployments.iter().filter(|d| c.held(d)).cloned().collect();
    assert_eq!(c_had.len(), 10);
    let old_fences: Vec<u64> = c_had
        .iter()
        .map(|d| store.lease(d).expect("item").fence)
        .collect();
    let old_session = c.snapshot().session.expect("a session");

    // C is paused: A and B keep ticking every interval; C does not.
    let mut c_stopped_at = None;
    let steps_per_tick = (INTERVAL.as_millis() / STEP.as_millis()) as usize;
    for step in 1..=(DURATION.as_millis() / STEP.as_millis() * 2) as usize {
        tokio::time::advance(STEP).await;
        if step % steps_per_tick == 0 {
            tick_all(&fleet[..2]).await;
        }
        assert_at_most_one_holder(&fleet, &deployments);
        if c_stopped_at.is_none() && held_count(c, &deployments) == 0 {
            c_stopped_at = Some(Instant::now());
            let err = c
                .ensure_held(&c_had[0], "UpdateStackSet")
                .await
                .expect_err("not held");
            assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
        }
    }
    assert!(c_stopped_at.is_some(), "C still holds after its deadline");
    assert_eq!(
        loads(&fleet[..2], &deployments).iter().sum::<usize>(),
        DEPLOYMENTS
    );

    // C resumes: a new session, and nothing it held comes back on this tick.
    let _ = c.tick().await;
    assert_at_most_one_holder(&fleet, &deployments);
    assert_ne!(c.snapshot().session.as_deref(), Some(old_session.as_str()));
    assert_eq!(held_count(c, &deployments), 0);
    for (d, old) in c_had.iter().zip(&old_fences) {
        let item = store.lease(d).expect("item");
        assert!(
            item.fence > *old,
            "{d}: fence {} not above {old}",
            item.fence
        );
        assert_ne!(item.replica.as_deref(), Some("replica-c"));
    }
    assert!(c.snapshot().lost >= 10);
    // The fleet rebalances (A and B hand over, C acquires) without two holders at any step.
    for _ in 0..4 {
        tokio::time::advance(INTERVAL).await;
        for l in &fleet {
            let _ = l.tick().await;
            assert_at_most_one_holder(&fleet, &deployments);
        }
    }
    assert_eq!(loads(&fleet, &deployments), vec![10, 10, 10]);
}

#[tokio::test(start_paused = true)]
async fn the_watch_turns_false_at_the_local_deadline() {
    let store = Arc::new(MemoryStore::default());
    let deployments = names(1);
    let leases = replica(&store, "replica-a", &deployments);
    let stop = CancellationToken::new();
    let task = tokio::spawn(leases.clone().run(stop.clone()));
    tokio::time::sleep(INTERVAL / 2).await;
    let mut watch = leases.subscribe(&deployments[0]);
    assert!(*watch.borrow());
    // Every heartbeat fails from now on.
    store.fail("UpdateItem", u32::MAX);
    store.fail("PutItem", u32::MAX);
    let failing_since = Instant::now();
    tokio::time::timeout(DURATION, watch.wait_for(|held| !*held))
        .await
        .expect("flipped within a lease duration")
        .expect("sender alive");
    // The last heartbeat that counted was sent at most half an interval before; the deadline is 4/5 of the
    // duration after it.
    assert!(failing_since.elapsed() <= DURATION * 4 / 5);
    assert!(!leases.held(&deployments[0]));
    assert!(leases.snapshot().last_error.is_some());
    stop.cancel();
    task.await.expect("run returns");
}

#[tokio::test(start_paused = true)]
async fn ensure_held_fails_closed() {
    let store = Arc::new(MemoryStore::default());
    let deployments = names(3);
    let leases = replica(&store, "replica-a", &deployments);
    leases.tick().await.expect("tick");
    let [d0, d1, d2] = [&deployments[0], &deployments[1], &deployments[2]];
    leases
        .ensure_held(d0, "UpdateStackSet")
        .await
        .expect("held");

    // Another owner in the table.
    let mut item = store.lease(d0).expect("item");
    store.set_lease(
        d0,
        Some(LeaseRecord {
            owner: Some("someone-else".into()),
            replica: Some("replica-b".into()),
            fence: item.fence + 1,
            ..item.clone()
        }),
    );
    let err = leases
        .ensure_held(d0, "UpdateStackSet")
        .await
        .expect_err("another owner");
    assert!(
        matches!(&err, Error::LeaseLost { reason, .. } if reason.contains("another owner")),
        "{err}"
    );
    assert!(!leases.held(d0), "lost locally too");

    // Our session, but another fence.
    item = store.lease(d1).expect("item");
    store.set_lease(
        d1,
        Some(LeaseRecord {
            fence: item.fence + 1,
            ..item
        }),
    );
    let err = leases
        .ensure_held(d1, "CreateStackInstances")
        .await
        .expect_err("another fence");
    assert!(
        matches!(&err, Error::LeaseLost { reason, .. } if reason.contains("another fence")),
        "{err}"
    );

    // The read fails: refused, but not dropped (doubt is no evidence of loss).
    store.fail("GetItem", 1);
    let err = leases
        .ensure_held(d2, "DeleteStackInstances")
        .await
        .expect_err("read failed");
    assert!(
        matches!(&err, Error::LeaseLost { reason, call, .. }
            if reason.contains("could not be confirmed") && call == "DeleteStackInstances"),
        "{err}"
    );
    assert!(leases.held(d2));
    leases
        .ensure_held(d2, "DeleteStackInstances")
        .await
        .expect("held again");

    // Past the local deadline without a heartbeat.
    tokio::time::advance(DURATION).await;
    let err = leases
        .ensure_held(d2, "UpdateStackSet")
        .await
        .expect_err("deadline");
    assert!(
        matches!(&err, Error::LeaseLost { reason, .. } if reason.contains("deadline")),
        "{err}"
    );
    // Not a deployment of ours at all.
    assert!(
        leases
            .ensure_held("unknown", "UpdateStackSet")
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn release_all_lets_the_others_take_over_at_their_next_tick() {
    let store = Arc::new(MemoryStore::default());
    let deployments = names(DEPLOYMENTS);
    let fleet = fleet(&store, &["replica-a", "replica-b"], &deployments);
    tick_all(&fleet).await;
    tick_all(&fleet).await;
    assert_eq!(loads(&fleet, &deployments), vec![15, 15]);
    let released_before = fleet[0].snapshot().released;
    fleet[0].release_all().await;
    assert_eq!(held_count(&fleet[0], &deployments), 0);
    assert_eq!(store.session("replica-a"), None, "heartbeat item deleted");
    assert_eq!(fleet[0].snapshot().released, released_before + 15);
    // No time passes: B's next tick takes everything.
    fleet[1].tick().await.expect("tick");
    assert_eq!(held_count(&fleet[1], &deployments), DEPLOYMENTS);
}

#[tokio::test(start_paused = true)]
async fn a_second_process_with_the_same_replica_id_holds_nothing() {
    let store = Arc::new(MemoryStore::default());
    let deployments = names(4);
    let first = replica(&store, "replica-a", &deployments);
    let second = replica(&store, "replica-a", &deployments);
    first.tick().await.expect("tick");
    for _ in 0..6 {
        let err = second.tick().await.expect_err("replica id in use");
        assert!(
            matches!(&err, Error::Leases { message, .. } if message.contains("replica-a")),
            "{err}"
        );
        assert_eq!(held_count(&second, &deployments), 0);
        assert!(second.snapshot().last_error.is_some());
        tokio::time::advance(INTERVAL).await;
        first.tick().await.expect("tick");
        assert_eq!(held_count(&first, &deployments), 4);
    }
    // The first stops (no release): the second takes over once its session expired.
    tokio::time::advance(DURATION + INTERVAL).await;
    second.tick().await.expect("tick");
    assert_eq!(held_count(&second, &deployments), 4);
    assert_eq!(held_count(&first, &deployments), 0);
    assert_eq!(second.snapshot().last_error, None);
}

#[tokio::test(start_paused = true)]
async fn a_deployment_leaving_the_desired_state_is_released() {
    let store = Arc::new(MemoryStore::default());
    let deployments = names(2);
    let leases = replica(&store, "replica-a", &deployments);
    leases.tick().await.expect("tick");
    leases.set_deployments([deployments[0].clone()]);
    leases.tick().await.expect("tick");
    assert!(leases.held(&deployments[0]));
    assert!(!leases.held(&deployments[1]));
    assert_eq!(store.lease(&deployments[1]).and_then(|l| l.owner), None);
    assert_eq!(leases.snapshot().released, 1);
}

#[tokio::test(start_paused = true)]
async fn an_acquisition_whose_answer_was_lost_is_adopted() {
    let store = Arc::new(MemoryStore::default());
    let deployments = names(1);
    let leases = replica(&store, "replica-a", &deployments);
    leases.tick().await.expect("tick");
    let item = store.lease(&deployments[0]).expect("item");
    // Forget it locally (as if the acquisition's answer had been lost), keep it in the table.
    leases.lock().held.clear();
    leases.tick().await.expect("tick");
    assert!(leases.held(&deployments[0]));
    assert_eq!(
        store.lease(&deployments[0]),
        Some(item),
        "no new acquisition"
    );
}

/// `ensure_held_since`: a pass that began under one lease sends nothing once the lease changed hands, even to a
/// new session of the same replica (a process paused past its session); under the lease as held now it gets the
/// call deadline, `duration / CALL_MARGIN_DIVISOR` before the local deadline; too close to the deadline it is
/// refused.
#[tokio::test(start_paused = true)]
async fn ensure_held_since_refuses_a_pass_begun_under_another_lease_and_bounds_the_call() {
    let store = Arc::new(MemoryStore::default());
    let deployments = names(1);
    let d = &deployments[0];
    let leases = replica(&store, "replica-a", &deployments);
    leases.tick().await.expect("tick");
    let began = leases.token(d).expect("held");
    let deadline = leases
        .ensure_held_since(d, "UpdateStackSet", &began)
        .await
        .expect("held since the pass began");
    let until = deadline - Instant::now();
    assert!(
        until
            <= DURATION - DURATION / super::MARGIN_DIVISOR - DURATION / super::CALL_MARGIN_DIVISOR
            && until > DURATION / 2,
        "{until:?}"
    );

    // Paused past its session: the next tick starts a new session and takes the lease again (fence + 1).
    tokio::time::advance(DURATION * 2).await;
    leases.tick().await.expect("tick");
    let now = leases.token(d).expect("held again");
    assert!(now.fence > began.fence && now.session != began.session);
    let err = leases
        .ensure_held_since(d, "UpdateStackSet", &began)
        .await
        .expect_err("stale");
    assert!(
        matches!(&err, Error::LeaseLost { reason, .. } if reason.contains("changed hands")),
        "{err}"
    );
    leases
        .ensure_held_since(d, "UpdateStackSet", &now)
        .await
        .expect("the pass that began under the new lease");

    // Within the call margin of the local deadline, no heartbeat since: refused before the call.
    tokio::time::advance(DURATION - DURATION / super::MARGIN_DIVISOR - DURATION / 20).await;
    let err = leases
        .ensure_held_since(d, "UpdateStackSet", &now)
        .await
        .expect_err("too close");
    assert!(
        matches!(&err, Error::LeaseLost { reason, .. } if reason.contains("too close")),
        "{err}"
    );
}
