//! Crash safety: `stacksetd run` against moto is killed with SIGKILL at random points of its reconcile passes, 24
//! times, and started again; between kills the desired state is edited (a new description most times, an OU added
//! twice), sometimes while the daemon runs. moto finishes operations synchronously, so the daemon talks to it
//! through the fault proxy (tests/fault_support/proxy.rs): half the answers are held back up to 1.2 s, 10% are
//! throttled, 3% are 500/503, and 20% of mutating calls are applied by moto with their answer dropped. Kills thus
//! land while requests are in flight, between a submission and its answer, and between passes.
//!
//! Checked directly against moto through the SDK (never through the proxy): after every kill no instance has
//! disappeared; at the end a daemon left running converges to the last edit, every desired instance exists, and
//! ListStackSetOperations shows no change applied twice (two operations in a row asking for the same thing, by
//! the requests' contents, whatever their ids) and no delete. The test fails unless at least one kill landed
//! after moto applied a change and before its answer arrived, and at least one applied change lost its answer. The seed ($FAULT_SEED replays another) and every kill point are printed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::daemon_support::process::DaemonProcess;
use crate::daemon_support::{Save, eventually, get, save};
use crate::fault_support::proxy::{FaultProxy, Rates};
use crate::fault_support::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DEFAULT_SEED: u64 = 0xc4a5_4007;
/// SIGKILLs before the daemon is left to converge.
const KILLS: usize = 24;
/// The longest a daemon runs before it is killed (a pass through the slow proxy takes a few seconds).
const MAX_RUN: Duration = Duration::from_millis(5000);
/// Generous: the last daemon may start in the middle of its error backoff.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(150);

fn faults() -> Rates {
    Rates {
        drop_before: 0.01,
        throttle: 0.05,
        server_error: 0.02,
        drop_after: 0.01,
        drop_after_mutating: 0.25,
        slow: 0.1,
        slow_max: Duration::from_millis(300),
        slow_mutating: 0.8,
        slow_mutating_max: Duration::from_millis(2500),
    }
}

/// Engineering (12) > Platform (8) and Finance (10) targeted at first; Sales and Support added by edits.
fn org_spec() -> OrgSpec {
    let mut spec = OrgSpec::standard();
    spec.ous.push(OuSpec::new("Sales", None, 3));
    spec.ous.push(OuSpec::new("Support", None, 3));
    spec
}

/// The last log message of the killed daemon, with its action or operation when it has one.
fn last_message(daemon: &DaemonProcess) -> String {
    let logs = daemon.logs.lock().unwrap();
    logs.iter()
        .rev()
        .find_map(|(_, v)| {
            let message = v["message"].as_str()?;
            let detail = v["action"]
                .as_str()
                .or(v["operation"].as_str())
                .or(v["error"].as_str())
                .unwrap_or("");
            Some(format!("{message} {detail}").trim().to_string())
        })
        .unwrap_or_else(|| "<nothing logged>".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_then_restart_converges_with_no_duplicate_and_nothing_lost() {
    let started = Instant::now();
    let server = MotoServer::start();
    let seed = seed(DEFAULT_SEED);
    server.seed_ids(seed);
    let org = build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let proxy = FaultProxy::start(moto_addr(&server), seed, faults());
    println!(
        "seed {seed} (set {SEED_ENV} to replay another); {KILLS} kills; faults {:?}",
        faults()
    );

    let dir = tempfile::tempdir().unwrap();
    let mut targeted = vec!["Engineering", "Finance"];
    let desired_for = |description: &str, targeted: &[&str]| {
        Desired::new(
            description,
            targeted.iter().map(|n| org.ou(n).to_string()).collect(),
        )
    };
    let mut description = "rev-0".to_string();
    let path = write_desired(dir.path(), &desired_for(&description, &targeted).yaml());

    let mut high_water: BTreeSet<(String, String)> = BTreeSet::new();
    let mut mid_request_kills = 0;
    let mut mid_mutation_kills = 0;
    for kill in 1..=KILLS {
        // The edit of this round: a new description most times, Sales and Support added on the way.
        let mut edit = None;
        if kill == 8 {
            targeted.push("Sales");
        }
        if kill == 16 {
            targeted.push("Support");
        }
        if kill == 8 || kill == 16 || rng.random_bool(0.6) {
            description = format!("rev-{kill}");
            edit = Some(desired_for(&description, &targeted).yaml());
        }
        let edit_while_running = edit.is_some() && rng.random_bool(0.5);
        if let (Some(text), false) = (&edit, edit_while_running) {
            save(&path, text, Save::AtomicRename);
        }

        let daemon = DaemonProcess::spawn(stacksetd_via(&server, &proxy.endpoint()), &path, &[]);
        let up = Instant::now();
        let mut when = String::new();
        if let (Some(text), true) = (&edit, edit_while_running) {
            let before_edit = Duration::from_millis(rng.random_range(0..=1500));
            tokio::time::sleep(before_edit).await;
            save(&path, text, Save::AtomicRename);
            when = format!(", edited at {} ms", before_edit.as_millis());
        }
        let run_for = Duration::from_millis(rng.random_range(50..=MAX_RUN.as_millis() as u64));
        tokio::time::sleep(run_for.saturating_sub(up.elapsed())).await;
        let (in_flight, mutating) = (proxy.in_flight(), proxy.applied_unanswered());
        let mut daemon = daemon;
        daemon.child.kill().expect("SIGKILL");
        let at = up.elapsed();
        daemon.wait_exit(Duration::from_secs(10));
        mid_request_kills += usize::from(in_flight > 0);
        mid_mutation_kills += usize::from(mutating > 0);
        println!(
            "kill {kill:>2}: SIGKILL {} ms after start{when}; {in_flight} requests in flight ({mutating} applied, unanswered); last log: {}; \
             desired {description} {targeted:?}",
            at.as_millis(),
            last_message(&daemon)
        );

        let now = instances_if_any(&client).await;
        let gone = lost(&high_water, &now);
        assert!(
            gone.is_empty(),
            "kill {kill}: instances disappeared: {gone:?}"
        );
        high_water = now;
    }

    // Left running: converges to the last edit.
    let daemon = DaemonProcess::spawn(stacksetd_via(&server, &proxy.endpoint()), &path, &[]);
    let restarted = Instant::now();
    eventually(CONVERGE_TIMEOUT, "the last daemon converges", || async {
        let s = get(&daemon.addr, "/status").await.json();
        let d = &s["deployments"][DEPLOYMENT];
        let ready = d["conditions"][0]["type"] == "Ready" && d["conditions"][0]["status"] == "True";
        (ready && d["observedGeneration"] == d["generation"]).then_some(())
    })
    .await;
    println!(
        "after {KILLS} kills ({mid_request_kills} with a request in flight, {mid_mutation_kills} of them with a \
         mutating call applied or being applied and its answer not delivered): converged {:?} after the last start",
        restarted.elapsed()
    );
    let set = describe_stack_set(&client, STACK_SET)
        .await
        .expect("the stack set exists");
    assert_eq!(
        set.description(),
        Some(description.as_str()),
        "the last edit applied"
    );
    let last = instances(&client, STACK_SET).await;
    assert!(lost(&high_water, &last).is_empty());
    assert_eq!(
        last,
        expected_instances(&org, &targeted),
        "every desired instance, nothing else"
    );
    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0));

    let audit = audit_operations(&client, &proxy).await;
    audit.print_and_assert_safe(&proxy.report());
    // The test proves something only if the dangerous moments happened: a daemon killed after moto applied one
    // of its changes but before the answer arrived, and answers to applied changes lost outright.
    assert!(
        mid_mutation_kills > 0,
        "no kill landed between a change applied and its answer (seed {seed}): the test proved nothing about it"
    );
    let lost_answers = proxy
        .mutations()
        .iter()
        .filter(|m| m.fate == crate::fault_support::proxy::Fate::DroppedAfter)
        .count();
    assert!(
        lost_answers > 0,
        "no applied change lost its answer (seed {seed})"
    );
    println!("whole test: {:?}", started.elapsed());
}
