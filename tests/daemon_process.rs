//! `stacksetd run` as a process against moto: every way of replacing the desired-state file is picked up and
//! reaches AWS (checked through the SDK), an invalid edit leaves the daemon serving the last good state with the
//! error in /status, the logs and the reload metric, SIGHUP reloads, /readyz follows the first valid load and the
//! first pass, and SIGTERM exits 0 within the shutdown timeout. The latency from an edit to the first mutating
//! call is measured from the daemon's own "submitting" log line and printed (not asserted tightly).

use std::time::{Duration, Instant};

use crate::common::{
    MotoServer, OrgSpec, OuSpec, REGION, build_org, cfn_client, describe_stack_set,
};
use crate::daemon_support::process::*;
use crate::daemon_support::*;

const STACK_SET: &str = "AimablyDataOnly";
const DEPLOYMENT: &str = "aimably";

fn small_org() -> OrgSpec {
    OrgSpec {
        root_accounts: 0,
        ous: vec![OuSpec::new("Workloads", None, 3)],
        trusted_access: true,
    }
}

fn desired(description: &str) -> String {
    deployment_yaml(DEPLOYMENT, STACK_SET, description, REGION)
}

/// Wait until moto's stack set has this description.
async fn wait_description(client: &aws_sdk_cloudformation::Client, description: &str) {
    eventually(
        WAIT,
        &format!("description {description:?} in moto"),
        || async {
            let set = describe_stack_set(client, STACK_SET).await?;
            (set.description() == Some(description)).then_some(())
        },
    )
    .await;
}

/// Save an edit and measure edit -> the daemon's "submitting" line (logged just before the mutating call is
/// sent) and -> "acted" (the call returned); then check the change reached moto.
async fn edit_and_measure(
    daemon: &DaemonProcess,
    client: &aws_sdk_cloudformation::Client,
    what: &str,
    description: &str,
    apply: impl FnOnce(),
) {
    daemon.wait_converged(DEPLOYMENT).await;
    let edited = Instant::now();
    apply();
    let (submitting, line) = eventually(WAIT, "a submitting log line", || async {
        daemon.log_after(edited, "submitting")
    })
    .await;
    let acted = eventually(WAIT, "an acted log line", || async {
        daemon.log_after(edited, "acted")
    })
    .await
    .0;
    println!(
        "{what}: edit -> first mutating call ({}) {:?}, call returned after {:?} (debounce {:?})",
        line["action"],
        submitting - edited,
        acted - edited,
        stacksetd::file_watch::DEBOUNCE
    );
    assert!(
        submitting - edited < Duration::from_secs(5),
        "{what}: far beyond the 1 s budget"
    );
    wait_description(client, description).await;
    daemon.wait_converged(DEPLOYMENT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_follows_edits_rejects_invalid_ones_reloads_on_sighup_and_stops_on_sigterm() {
    let server = MotoServer::start();
    build_org(&server, &small_org()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desired.yaml");
    std::fs::write(&path, desired("v0")).unwrap();

    let daemon = DaemonProcess::spawn(crate::common::stacksetd(&server), &path, &[]);
    daemon.wait_ready(START_TIMEOUT).await;
    wait_description(&client, "v0").await;

    for (i, how) in [
        Save::AtomicRename,
        Save::TruncateWrite,
        Save::DeleteRecreate,
    ]
    .into_iter()
    .enumerate()
    {
        let description = format!("v{}", i + 1);
        let text = desired(&description);
        edit_and_measure(&daemon, &client, &format!("{how:?}"), &description, || {
            save(&path, &text, how)
        })
        .await;
    }

    // An invalid edit: rejected, reported, and the last good state (v3) keeps being reconciled.
    save(
        &path,
        &invalid_yaml(DEPLOYMENT, STACK_SET, REGION),
        Save::AtomicRename,
    );
    let status = eventually(WAIT, "the invalid edit in /status", || async {
        let s = get(&daemon.addr, "/status").await.json();
        (s["desiredState"]["lastLoad"]["result"] == "invalid").then_some(s)
    })
    .await;
    let error = status["desiredState"]["lastLoad"]["error"]
        .as_str()
        .unwrap();
    assert!(
        error.contains("desired.yaml:18:") && error.contains("maxConcurrentCount"),
        "{error}"
    );
    assert!(
        daemon.logged("desired.yaml:18:"),
        "logged with file:line:column"
    );
    assert_eq!(get(&daemon.addr, "/healthz").await.status, 200);
    assert_eq!(get(&daemon.addr, "/readyz").await.status, 200);
    let metrics = daemon.metrics().await;
    let reloads = |m: &str, result| {
        metric(
            m,
            "stacksetd_desired_state_reloads_total",
            &[("result", result)],
        )
    };
    assert_eq!(reloads(&metrics, "invalid"), Some(1.0), "{metrics}");
    assert_eq!(
        reloads(&metrics, "valid"),
        Some(4.0),
        "start and three edits"
    );

    // SIGHUP: the file is re-read (still invalid: counted again) and the last good state gets a pass.
    let passes = |m: &str| {
        metric_sum(
            m,
            "stacksetd_reconcile_total",
            &[("deployment", DEPLOYMENT)],
        )
    };
    let before = passes(&metrics);
    daemon.signal("HUP");
    eventually(WAIT, "SIGHUP: a reload and a pass", || async {
        let m = daemon.metrics().await;
        (reloads(&m, "invalid") == Some(2.0) && passes(&m) > before).then_some(())
    })
    .await;
    let status = get(&daemon.addr, "/status").await.json();
    assert_eq!(
        status["deployments"][DEPLOYMENT]["conditions"][0]["status"], "True",
        "the last good state is still converged: {status:#}"
    );
    let set = describe_stack_set(&client, STACK_SET).await.unwrap();
    assert_eq!(
        set.description(),
        Some("v3"),
        "the invalid edit never reached AWS"
    );

    // Fixed: applied at once. Then SIGHUP on a valid, unchanged file: reloaded and reconciled.
    let text = desired("v4");
    edit_and_measure(&daemon, &client, "fix after invalid", "v4", || {
        save(&path, &text, Save::AtomicRename)
    })
    .await;
    let metrics = daemon.metrics().await;
    let (valid_before, passes_before) = (reloads(&metrics, "valid"), passes(&metrics));
    daemon.signal("HUP");
    eventually(WAIT, "SIGHUP on a valid file", || async {
        let m = daemon.metrics().await;
        (reloads(&m, "valid") > valid_before && passes(&m) > passes_before).then_some(())
    })
    .await;

    let logs = daemon.logs.clone();
    let (code, took) = daemon.terminate();
    assert_eq!(code, Some(0), "clean exit:\n{}", dump(&logs));
    assert!(took < SHUTDOWN_TIMEOUT, "{took:?}");
    println!("SIGTERM -> exit in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_volume_starting_invalid_becomes_ready_once_fixed_and_follows_swaps() {
    let server = MotoServer::start();
    build_org(&server, &small_org()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cm = ConfigMapDir::new(dir.path(), &invalid_yaml(DEPLOYMENT, STACK_SET, REGION));

    let notify = NotifySocket::bind(dir.path());
    let daemon = DaemonProcess::spawn(
        crate::common::stacksetd(&server),
        &cm.path(),
        &[
            ("NOTIFY_SOCKET", notify.path.to_str().unwrap()),
            // 200 ms: pings every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let readyz = eventually(WAIT, "the invalid start reported", || async {
        let r = get(&daemon.addr, "/readyz").await;
        r.body.contains("desired.yaml:18:").then_some(r)
    })
    .await;
    assert_eq!(readyz.status, 503, "not ready while invalid at start");
    assert_eq!(get(&daemon.addr, "/healthz").await.status, 200, "but live");
    assert!(describe_stack_set(&client, STACK_SET).await.is_none());

    eventually(WAIT, "watchdog pings", || async {
        (notify.count("WATCHDOG=1") >= 2).then_some(())
    })
    .await;
    assert_eq!(notify.count("READY=1"), 0, "no READY=1 while invalid");

    cm.update(&desired("v1"));
    daemon.wait_ready(WAIT).await;
    eventually(WAIT, "READY=1", || async {
        (notify.count("READY=1") == 1).then_some(())
    })
    .await;
    wait_description(&client, "v1").await;

    let text = desired("v2");
    edit_and_measure(&daemon, &client, "ConfigMap symlink swap", "v2", || {
        cm.update(&text)
    })
    .await;
    let (code, took) = daemon.terminate();
    assert_eq!(code, Some(0));
    assert!(took < SHUTDOWN_TIMEOUT, "{took:?}");
    assert_eq!(notify.count("STOPPING=1"), 1, "{:?}", notify.messages());
}
