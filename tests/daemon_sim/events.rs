//! The event reader in a running daemon, on the simulator and an in-memory queue (real time: the daemon's file
//! watch needs it): an account moved into a targeted OU is covered within two seconds of its event and not
//! without it; messages are deleted once observed; malformed, unknown and duplicate messages change nothing; a
//! queue that cannot be read falls back to polling, says so, and recovers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use stacksetd::cloud::Cloud;
use stacksetd::cloud::queue::MemoryQueue;
use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::controller;
use stacksetd::daemon::{Daemon, Options};
use stacksetd::events::envelopes;
use tokio::sync::oneshot;

use crate::daemon_support::*;

const REGION: &str = "us-east-1";
const MANAGEMENT: &str = "111111111111";
/// What the issue asks of an event: its pass within two seconds of the message.
const REACTION: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(15);

fn mutations(sim: &Sim) -> u64 {
    sim.calls()
        .snapshot()
        .into_iter()
        .filter(|((_, op, _), _)| {
            ["Create", "Update", "Delete"]
                .iter()
                .any(|p| op.starts_with(p))
        })
        .map(|(_, n)| n)
        .sum()
}

fn has_instance(sim: &Sim, account: &str) -> bool {
    sim.instances("Aimably")
        .iter()
        .any(|i| i.account == account)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_move_the_daemon_within_seconds_and_nothing_else_does() {
    let sim = Sim::new(SimConfig {
        instance_duration: Duration::from_millis(20),
        operation_overhead: Duration::from_millis(10),
        ..SimConfig::default()
    });
    let workloads = sim.add_ou(&sim.root_id(), "Workloads");
    let staging = sim.add_ou(&sim.root_id(), "Staging");
    for i in 0..3 {
        sim.add_account(&workloads, &format!("member-{i}"));
    }
    let movers: Vec<String> = (0..2)
        .map(|i| sim.add_account(&staging, &format!("mover-{i}")))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desired.yaml");
    let yaml = deployment_yaml("aimably", "Aimably", "events", REGION)
        .replace("[ROOT]", &format!("[{workloads}]"))
        + "  autoDeployment:\n    enabled: false\n";
    std::fs::write(&path, yaml).unwrap();
    // Nothing but an event can explain a reaction within minutes.
    let config = controller::Config {
        resync_interval: Duration::from_secs(600),
        org_scan_interval: Duration::from_secs(3600),
        instance_relist_interval: Duration::from_secs(3600),
        poll_min: Duration::from_millis(20),
        poll_max: Duration::from_millis(200),
        deletion_delay: Duration::ZERO,
        ..controller::Config::default()
    };
    let options = Options::local(path);
    let queue = Arc::new(MemoryQueue::new());
    let daemon = Daemon::bind(Arc::new(sim.clone()), config, options)
        .await
        .unwrap()
        .with_events(queue.clone());
    let addr = daemon.local_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run(async move {
        let _ = stopped.await;
    }));
    let status = || async { get(&addr, "/status").await.json() };
    let metrics = || async { get(&addr, "/metrics").await.body };
    eventually(
        WAIT,
        "converged on the three Workloads accounts",
        || async {
            let s: Value = status().await;
            (sim.instances("Aimably").len() == 3 && s["events"]["mode"] == "events").then_some(())
        },
    )
    .await;
    let s = status().await;
    assert_eq!(s["events"]["queueUrl"], MemoryQueue::URL);
    assert_eq!(s["events"]["convergedPassTrustsEvents"], true);

    // Without its event, a move is not seen for minutes (resync 10 min, organization scan 1 h) ...
    sim.move_account(&movers[0], &workloads);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !has_instance(&sim, &movers[0]),
        "nothing but the event could have told it"
    );
    // ... with it, within two seconds.
    queue.send(envelopes::move_account(
        "e-1", MANAGEMENT, &movers[0], &staging, &workloads,
    ));
    let sent = Instant::now();
    eventually(
        REACTION,
        "the moved account's instance, within 2 s of its event",
        || async { has_instance(&sim, &movers[0]).then_some(()) },
    )
    .await;
    let reacted = sent.elapsed();
    eventually(
        WAIT,
        "the message deleted once its pass observed it",
        || async { (queue.depth() == (0, 0)).then_some(()) },
    )
    .await;
    println!("event -> instance created: {reacted:?}");

    // An event that names neither parent nor a known account concerns every deployment: the same.
    sim.move_account(&movers[1], &workloads);
    let unknown = envelopes::envelope(
        "e-2",
        "aws.organizations",
        "AWS Service Event via CloudTrail",
        MANAGEMENT,
        serde_json::json!({"eventName": "AccountJoinedOrganization"}),
    );
    queue.send(unknown);
    eventually(
        REACTION,
        "the second account's instance, within 2 s of its event",
        || async { has_instance(&sim, &movers[1]).then_some(()) },
    )
    .await;

    // Malformed, unknown and duplicate messages: counted, deleted, and nothing sent to AWS.
    eventually_or(
        WAIT,
        "settled",
        || async {
            (queue.depth() == (0, 0)
                && status().await["deployments"]["aimably"]["lastOutcome"]["state"]["state"]
                    == "Converged")
                .then_some(())
        },
        || format!("queue {:?}", queue.depth()),
    )
    .await;
    let before = mutations(&sim);
    queue.send("this is not JSON");
    queue.send(envelopes::envelope(
        "e-3",
        "aws.ec2",
        "EC2 Instance State-change Notification",
        MANAGEMENT,
        serde_json::json!({}),
    ));
    queue.send(envelopes::move_account(
        "e-1", MANAGEMENT, &movers[0], &staging, &workloads,
    ));
    eventually(WAIT, "the three dropped", || async {
        let text = metrics().await;
        let dropped = |reason| {
            metric(
                &text,
                "stacksetd_events_dropped_total",
                &[("reason", reason)],
            )
        };
        (dropped("malformed") == Some(1.0)
            && dropped("unknown_type") == Some(1.0)
            && dropped("duplicate") == Some(1.0)
            && queue.depth() == (0, 0))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mutations(&sim), before, "a dropped message sent nothing");
    let text = metrics().await;
    assert_eq!(
        metric(
            &text,
            "stacksetd_events_received_total",
            &[("kind", "account")]
        ),
        Some(2.0)
    );
    assert!(
        metric(&text, "stacksetd_event_latency_seconds_count", &[]).unwrap_or(0.0) >= 2.0,
        "{text}"
    );

    // An outage: polling, said on /status and in the metrics; then back.
    queue.fail_receives(3);
    let s = eventually(WAIT, "polling while the queue cannot be read", || async {
        let s: Value = status().await;
        (s["events"]["mode"] == "polling").then_some(s)
    })
    .await;
    assert!(
        s["events"]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("ReceiveMessage")),
        "{s:#}"
    );
    assert_eq!(
        metric(&metrics().await, "stacksetd_event_queue_up", &[]),
        Some(0.0)
    );
    eventually(WAIT, "reading the queue again", || async {
        let s: Value = status().await;
        (s["events"]["mode"] == "events" && s["events"]["lastError"].is_null()).then_some(())
    })
    .await;
    assert_eq!(
        metric(&metrics().await, "stacksetd_event_queue_up", &[]),
        Some(1.0)
    );

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
