//! Target `events`: the whole daemon in process on `sim` with an in-memory event queue, in real time. Once it has
//! converged, events naming the stack set are put on the queue one at a time; each is measured from the message
//! sent to the message deleted, which the reader does only once the pass it triggered has ended: event -> pass
//! observed, the reader, the scheduler and the pass included (EventBridge's own delivery is not: seconds at most,
//! by AWS's account). The calls are those of the passes the events triggered (each reads the operations page,
//! since the event named the stack set).

use super::*;
use stacksetd::cloud::queue::MemoryQueue;
use stacksetd::daemon::{Daemon, Options};
use stacksetd::events::envelopes;

/// Events measured, one at a time.
const EVENTS: usize = 30;

pub fn bench_events(accounts: usize, regions: usize) -> Row {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let sim = sim_org(
            accounts,
            SimConfig {
                instance_duration: Duration::from_millis(1),
                operation_overhead: Duration::from_millis(5),
                ..SimConfig::default()
            },
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("desired.yaml");
        std::fs::write(&path, sim_yaml(&sim.management_account_id(), regions)).expect("write");
        let config = Config {
            resync_interval: Duration::from_secs(600),
            org_scan_interval: Duration::from_secs(3600),
            poll_min: Duration::from_millis(20),
            poll_max: Duration::from_millis(200),
            ..Config::default()
        };
        let options = Options::local(path);
        let queue = Arc::new(MemoryQueue::new());
        let daemon = Daemon::bind(Arc::new(sim.clone()), config, options)
            .await
            .expect("bind")
            .with_events(queue.clone());
        let addr = daemon.local_addr().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(daemon.run(async move {
            let _ = stopped.await;
        }));
        let converging = Instant::now();
        eventually(Duration::from_secs(600), "converged", || async {
            let status = get(&addr, "/status").await.json();
            (status["deployments"]["bench"]["lastOutcome"]["state"]["state"] == "Converged"
                && status["events"]["mode"] == "events")
                .then_some(())
        })
        .await;
        let converge = converging.elapsed();
        let instances = sim.instances(STACK_SET).len();
        let arn = format!(
            "arn:aws:cloudformation:us-east-1:{}:stackset/{STACK_SET}:bench",
            sim.management_account_id()
        );
        let before = sim.calls().by_operation();
        let mut latencies = Vec::new();
        for i in 0..EVENTS {
            tokio::time::sleep(Duration::from_millis(100)).await;
            queue.send(envelopes::stack_set_operation(
                &format!("bench-{i}"),
                &arn,
                &format!("outside-{i}"),
                "SUCCEEDED",
            ));
            let sent = Instant::now();
            while queue.depth() != (0, 0) {
                assert!(sent.elapsed() < Duration::from_secs(60), "event {i} not observed in 60 s");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            latencies.push(sent.elapsed());
        }
        let calls = per_pass(&before, &sim.calls().by_operation(), EVENTS);
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        stop.send(()).expect("stop");
        let _ = task.await;
        Row {
            target: "sim daemon + event queue (real time)".into(),
            accounts,
            regions,
            instances,
            setup: format!("converge {} (real time)", ms(Some(converge))),
            calls,
            wall: Some(at(0.5)),
            memory: "-".into(),
            notes: vec![format!(
                "event -> pass observed (message sent to message deleted), {EVENTS} events naming the stack set: \
                 p50 {}, p90 {}, max {}; wall is the p50; calls are those of one event-triggered pass",
                ms(Some(at(0.5))),
                ms(Some(at(0.9))),
                ms(latencies.last().copied())
            )],
            ..Row::default()
        }
    })
}
