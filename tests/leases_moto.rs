//! Leases end to end (`leases.table`): three `stacksetd run` processes share 30 deployments through a lease
//! table on moto's DynamoDB. They spread them 10/10/10; one is killed with SIGKILL and the others take its
//! deployments over within the lease duration and converge an edit made meanwhile; one is paused with SIGSTOP
//! past its lease while the desired state changes, and after SIGCONT it submits nothing: every stack set has
//! exactly one operation per edit. The note's figures (DynamoDB calls per replica per minute, failover time)
//! come from the lines this test prints. A holder cut off mid-call (its UpdateStackSet retried past its lease) never
//! lands the older change after the next holder applied a newer one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb as dynamodb;
use serde_json::Value;

use crate::common::*;
use crate::daemon_support::process::DaemonProcess;
use crate::daemon_support::{eventually, metric_sum};

const TABLE: &str = "stacksetd-leases";
const DEPLOYMENTS: usize = 30;
const LEASE: Duration = Duration::from_secs(6);
const CONVERGE: Duration = Duration::from_secs(240);

fn name(i: usize) -> String {
    format!("tenant-{i:02}")
}

fn stack_set(i: usize) -> String {
    format!("AimablyShared{i:02}")
}

fn desired(ou: &str, description: &str) -> String {
    (0..DEPLOYMENTS)
        .map(|i| {
            Desired::new(description, vec![ou.to_string()])
                .yaml()
                .replace(
                    &format!("name: {DEPLOYMENT}"),
                    &format!("name: {}", name(i)),
                )
                .replace(STACK_SET, &stack_set(i))
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

async fn create_table(server: &MotoServer) {
    dynamodb::Client::new(&sdk_config(server).await)
        .create_table()
        .table_name(TABLE)
        .key_schema(
            dynamodb::types::KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            dynamodb::types::AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .billing_mode(dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
}

fn replica(server: &MotoServer, path: &std::path::Path, id: &str) -> DaemonProcess {
    replica_via(stacksetd(server), path, id, &[])
}

fn replica_via(
    command: std::process::Command,
    path: &std::path::Path,
    id: &str,
    more: &[(&str, &str)],
) -> DaemonProcess {
    let lease = format!("{}s", LEASE.as_secs());
    let mut env = vec![
        ("STACKSETD_LEASES__TABLE", TABLE),
        ("STACKSETD_LEASES__DURATION", lease.as_str()),
        ("STACKSETD_LEASES__REPLICA_ID", id),
        ("STACKSETD_DELETION_DELAY", "0s"),
    ];
    env.extend_from_slice(more);
    DaemonProcess::spawn(command, path, &env)
}

/// The deployments a replica holds, from its /status (None when it does not answer).
async fn held(daemon: &DaemonProcess) -> Option<BTreeSet<String>> {
    let response = crate::daemon_support::request(&daemon.addr, "GET", "/status")
        .await
        .ok()?;
    let status: Value = serde_json::from_str(&response.body).ok()?;
    Some(
        status["leases"]["held"]
            .as_array()?
            .iter()
            .filter_map(|h| h["deployment"].as_str().map(str::to_string))
            .collect(),
    )
}

/// Every deployment held by exactly one of `replicas`, and how many each holds.
async fn holdings(replicas: &[&DaemonProcess]) -> Option<Vec<BTreeSet<String>>> {
    let mut all = Vec::new();
    for r in replicas {
        all.push(held(r).await?);
    }
    // Two snapshots read a moment apart may straddle a handover: not settled yet (the safety of the handover
    // itself is what the operation counts at the end check).
    let mut seen = BTreeSet::new();
    for set in &all {
        for d in set {
            if !seen.insert(d.clone()) {
                return None;
            }
        }
    }
    (seen.len() == DEPLOYMENTS).then_some(all)
}

/// Every stack set has `description` and its operations: action -> count.
async fn operations_per_stack_set(
    server: &MotoServer,
) -> BTreeMap<String, BTreeMap<String, usize>> {
    let client = cfn_client(server).await;
    let mut out = BTreeMap::new();
    for i in 0..DEPLOYMENTS {
        let mut counts = BTreeMap::new();
        for op in operations(&client, &stack_set(i)).await {
            let action = op
                .action()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default();
            *counts.entry(action).or_insert(0) += 1;
        }
        out.insert(stack_set(i), counts);
    }
    out
}

async fn all_described(server: &MotoServer, description: &str) -> bool {
    let client = cfn_client(server).await;
    for i in 0..DEPLOYMENTS {
        let Some(set) = describe_stack_set(&client, &stack_set(i)).await else {
            return false;
        };
        if set.description() != Some(description) {
            return false;
        }
    }
    true
}

/// An organization of one OU with two accounts, and the lease table: the OU's id.
async fn workloads_with_table(server: &MotoServer) -> String {
    let org = build_org(
        server,
        &OrgSpec {
            root_accounts: 0,
            ous: vec![OuSpec::new("Workloads", None, 2)],
            trusted_access: true,
        },
    )
    .await;
    create_table(server).await;
    org.ou("Workloads").to_string()
}

async fn table_requests(daemon: &DaemonProcess) -> f64 {
    metric_sum(
        &daemon.metrics().await,
        "stacksetd_lease_table_requests_total",
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_thirty_deployments_and_survive_kill_and_pause() {
    let server = MotoServer::start();
    let ou = workloads_with_table(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_desired(dir.path(), &desired(&ou, "v1"));
    let r1 = replica(&server, &path, "replica-1");
    let r2 = replica(&server, &path, "replica-2");
    let r3 = replica(&server, &path, "replica-3");

    // Spread evenly, and every stack set created once.
    let spread = eventually(CONVERGE, "30 leases spread 10/10/10", || async {
        let all = holdings(&[&r1, &r2, &r3]).await?;
        all.iter()
            .all(|s| s.len() == DEPLOYMENTS / 3)
            .then_some(all)
    })
    .await;
    eventually(CONVERGE, "every stack set created", || async {
        all_described(&server, "v1").await.then_some(())
    })
    .await;
    // Calls per replica per minute once settled.
    let window = Duration::from_secs(20);
    let before = [
        table_requests(&r1).await,
        table_requests(&r2).await,
        table_requests(&r3).await,
    ];
    tokio::time::sleep(window).await;
    let after = [
        table_requests(&r1).await,
        table_requests(&r2).await,
        table_requests(&r3).await,
    ];
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        let per_minute = (a - b) * 60.0 / window.as_secs_f64();
        eprintln!(
            "FIGURE dynamodb requests per minute, replica-{}: {per_minute:.1}",
            i + 1
        );
        assert!(per_minute > 0.0 && per_minute < 200.0, "{per_minute}");
    }

    // SIGKILL replica-1: its deployments are taken over within the lease duration, and an edit made meanwhile
    // converges everywhere.
    let killed = spread[0].clone();
    r1.signal("KILL");
    let t_kill = Instant::now();
    std::fs::write(&path, desired(&ou, "v2")).unwrap();
    eventually(CONVERGE, "replica-1's leases taken over", || async {
        let all = holdings(&[&r2, &r3]).await?;
        Some(all)
    })
    .await;
    let failover = t_kill.elapsed();
    eprintln!(
        "FIGURE failover after SIGKILL: {:.2} s (lease duration {} s)",
        failover.as_secs_f64(),
        LEASE.as_secs()
    );
    assert!(
        failover <= LEASE + Duration::from_millis(1500),
        "takeover took {failover:?}, lease {LEASE:?}"
    );
    eventually(CONVERGE, "the edit converged by the survivors", || async {
        all_described(&server, "v2").await.then_some(())
    })
    .await;
    assert!(!killed.is_empty());

    // SIGSTOP replica-2 past its lease, change the desired state, let replica-3 converge it, then SIGCONT.
    r2.signal("STOP");
    let t_stop = Instant::now();
    std::fs::write(&path, desired(&ou, "v3")).unwrap();
    eventually(CONVERGE, "replica-3 holds everything", || async {
        let only = held(&r3).await?;
        (only.len() == DEPLOYMENTS).then_some(())
    })
    .await;
    eventually(CONVERGE, "the v3 edit converged by replica-3", || async {
        all_described(&server, "v3").await.then_some(())
    })
    .await;
    // Past its lease for certain: replica-3 may take over and converge before a whole lease has gone by (the
    // last heartbeat came up to a third of a lease before the stop), and the pause must outlast the lease.
    let paused = t_stop.elapsed();
    if paused <= LEASE + Duration::from_secs(1) {
        tokio::time::sleep(LEASE + Duration::from_secs(1) - paused).await;
    }
    assert!(t_stop.elapsed() > LEASE);
    let t_resume = Instant::now();
    r2.signal("CONT");
    // replica-2 wakes with a dead session: it starts a new one and gets its share back by handover.
    eventually(CONVERGE, "replica-2 back with its share", || async {
        let all = holdings(&[&r2, &r3]).await?;
        (all[0].len() == DEPLOYMENTS / 2).then_some(())
    })
    .await;
    tokio::time::sleep(LEASE).await;
    assert!(
        r2.log_after(t_resume, "acted").is_none(),
        "the paused replica submitted after waking:\n{}",
        crate::daemon_support::process::dump(&r2.logs)
    );
    // No duplicate: each stack set has exactly one UpdateStackSet per edit (v2, v3), and at most one creation
    // of instances (moto lists UpdateStackSet's operations; whether it lists CreateStackInstances varies).
    for (stack_set, counts) in operations_per_stack_set(&server).await {
        assert_eq!(counts.get("UPDATE"), Some(&2), "{stack_set}: {counts:?}");
        assert!(
            counts.get("CREATE").copied().unwrap_or(0) <= 1,
            "{stack_set}: {counts:?}"
        );
    }
    for r in [r2, r3] {
        let (code, _) = r.terminate();
        assert_eq!(code, Some(0));
    }
}

/// The holder of a lease is cut off mid-call: its heartbeats and its UpdateStackSet are throttled on every attempt
/// (the SDK retrying, `aws.max_attempts: 10`, for well over a minute), its reads and its lease check still pass.
/// Its lease expires, the other replica takes it and applies a newer edit; then the cut-off replica's network
/// heals. Its UpdateStackSet of the older edit never reaches AWS (the gate abandoned it at the lease's call
/// deadline, the pass was cancelled with the lease): the stack set ends at the newer edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_retried_past_its_lease_never_lands_after_the_next_holder_acts() {
    use crate::fault_support::proxy::{Fate, FaultProxy, Rates};
    use crate::fault_support::{moto_addr, stacksetd_via};

    let server = MotoServer::start();
    let ou = workloads_with_table(&server).await;
    let yaml = |description: &str| Desired::new(description, vec![ou.clone()]).yaml();
    let dir = tempfile::tempdir().unwrap();
    let path = write_desired(dir.path(), &yaml("v0"));
    let proxies = [
        FaultProxy::start(moto_addr(&server), 1, Rates::none()),
        FaultProxy::start(moto_addr(&server), 2, Rates::none()),
    ];
    let retries = [("STACKSETD_AWS__MAX_ATTEMPTS", "10")];
    let replicas = [
        replica_via(
            stacksetd_via(&server, &proxies[0].endpoint()),
            &path,
            "replica-a",
            &retries,
        ),
        replica_via(
            stacksetd_via(&server, &proxies[1].endpoint()),
            &path,
            "replica-b",
            &retries,
        ),
    ];
    let client = cfn_client(&server).await;
    let described = |want: &'static str| {
        let client = client.clone();
        async move {
            (describe_stack_set(&client, STACK_SET).await?.description() == Some(want))
                .then_some(())
        }
    };
    eventually(CONVERGE, "the stack set created at v0", || described("v0")).await;
    let holder = eventually(CONVERGE, "one replica holds the deployment", || async {
        let a = held(&replicas[0]).await?.contains(DEPLOYMENT);
        let b = held(&replicas[1]).await?.contains(DEPLOYMENT);
        (a != b).then_some(if a { 0 } else { 1 })
    })
    .await;
    let other = 1 - holder;

    // Cut the holder off, then edit: it plans v1, passes its lease check, and its UpdateStackSet is throttled.
    proxies[holder].throttle_actions(&["UpdateStackSet", "UpdateItem", "PutItem", "Scan"]);
    std::fs::write(&path, yaml("v1")).unwrap();
    eventually(
        CONVERGE,
        "the holder sends UpdateStackSet (throttled)",
        || async {
            let throttled = proxies[holder]
                .counts()
                .iter()
                .any(|((_, action, fate), _)| {
                    action == "UpdateStackSet" && *fate == Fate::Throttled
                });
            throttled.then_some(())
        },
    )
    .await;
    eventually(CONVERGE, "the other replica takes the lease", || async {
        held(&replicas[other])
            .await?
            .contains(DEPLOYMENT)
            .then_some(())
    })
    .await;
    std::fs::write(&path, yaml("v2")).unwrap();
    eventually(CONVERGE, "the new holder applies v2", || described("v2")).await;

    // The network heals; a retry of the old call would land within its next backoff (at most 20 s).
    proxies[holder].throttle_actions(&[]);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let landed: Vec<_> = proxies[holder]
        .mutations()
        .into_iter()
        .filter(|m| m.action == "UpdateStackSet")
        .collect();
    assert!(
        landed.is_empty(),
        "the cut-off replica's UpdateStackSet reached AWS: {:?}",
        landed
            .iter()
            .map(|m| (m.operation_id.clone(), m.fate))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        describe_stack_set(&client, STACK_SET)
            .await
            .and_then(|s| s.description().map(str::to_string))
            .as_deref(),
        Some("v2"),
        "the stack set ends at the newer edit"
    );
    let abandoned = replicas[holder].logs.lock().unwrap().iter().any(|(_, v)| {
        v.to_string().contains("call_abandoned")
            || v.to_string().contains("call abandoned")
            || v.to_string().contains("lease was lost during the pass")
    });
    assert!(
        abandoned,
        "the cut-off replica logged the abandoned call or the cancelled pass"
    );

    // Every DynamoDB call the replicas made is granted by the lease policy's LeaseTable statement, and the
    // protocol's calls were all made (read from the proxies, not from a hand-kept list).
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/iam/stacksetd-policy-leases.json"),
    )
    .unwrap();
    let policy: Value = serde_json::from_str(&text).unwrap();
    let granted: BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Sid"] == "LeaseTable")
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let called: BTreeSet<String> = proxies
        .iter()
        .flat_map(crate::fault_support::called_actions)
        .filter(|a| a.starts_with("dynamodb:"))
        .collect();
    let ungranted: Vec<_> = called.difference(&granted).collect();
    assert!(
        ungranted.is_empty(),
        "called, not granted: {ungranted:?} (granted {granted:?})"
    );
    for action in ["GetItem", "PutItem", "UpdateItem", "Scan"] {
        assert!(
            called.contains(&format!("dynamodb:{action}")),
            "dynamodb:{action} never called: {called:?}"
        );
    }
}
