//! `stacksetd run` as a process against moto: every way of replacing the desired-state file is picked up and
//! reaches AWS (checked through the SDK), an invalid edit leaves the daemon serving the last good state with the
//! error in /status, the logs and the reload metric, SIGHUP reloads, /readyz follows the first valid load and the
//! first pass, and SIGTERM exits 0 within the shutdown timeout. The latency from an edit to the first mutating
//! call is measured from the daemon's own "submitting" log line and printed (not asserted tightly).

mod common;
mod daemon_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{MotoServer, OrgSpec, OuSpec, REGION, build_org, cfn_client, describe_stack_set};
use daemon_support::*;
use serde_json::Value;

const STACK_SET: &str = "AimablyDataOnly";
const DEPLOYMENT: &str = "aimably";
/// Start-up includes connecting the SDK and the first pass against moto on a shared machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(30);
/// The settings default, which the test relies on.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `stacksetd run`, its stderr (JSON log lines) collected with arrival times.
struct Daemon {
    child: Child,
    addr: String,
    logs: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Daemon {
    fn spawn(server: &MotoServer, desired: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut command = common::stacksetd(server);
        command.envs(env.iter().copied());
        command
            .arg("--desired")
            .arg(desired)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json", "run"])
            // Only edits, SIGHUP and operation polls cause passes during the test.
            .env("STACKSETD_RESYNC_INTERVAL", "1h")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn stacksetd run");
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().unwrap().push((Instant::now(), value));
            }
        });
        let started = Instant::now();
        let addr = loop {
            let found = logs.lock().unwrap().iter().find_map(|(_, v)| {
                v["message"]
                    .as_str()
                    .filter(|m| m.starts_with("serving /healthz"))
                    .and_then(|_| v["address"].as_str().map(str::to_string))
            });
            if let Some(addr) = found {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("stacksetd exited early ({status}):\n{}", dump(&logs));
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "no listen address logged:\n{}",
                dump(&logs)
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Daemon { child, addr, logs }
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name}");
    }

    /// The first log line at or after `t` with this message, and when it arrived.
    fn log_after(&self, t: Instant, message: &str) -> Option<(Instant, Value)> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .find(|(at, v)| *at >= t && v["message"] == message)
            .cloned()
    }

    fn logged(&self, needle: &str) -> bool {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .any(|(_, v)| v.to_string().contains(needle))
    }

    async fn metrics(&self) -> String {
        get(&self.addr, "/metrics").await.body
    }

    async fn wait_ready(&self, timeout: Duration) {
        eventually(timeout, "/readyz 200", || async {
            (get(&self.addr, "/readyz").await.status == 200).then_some(())
        })
        .await;
    }

    /// Wait until the deployment is converged at its current generation (no pass of an earlier change can then
    /// be mistaken for the reaction to the next edit).
    async fn wait_converged(&self) {
        eventually(WAIT, "converged", || async {
            let s = get(&self.addr, "/status").await.json();
            let d = &s["deployments"][DEPLOYMENT];
            let ready =
                d["conditions"][0]["type"] == "Ready" && d["conditions"][0]["status"] == "True";
            (ready && d["observedGeneration"] == d["generation"]).then_some(())
        })
        .await;
    }

    /// SIGTERM, then wait: returns the exit code and how long it took.
    fn terminate(mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        self.signal("TERM");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for stacksetd") {
                return (status.code(), started.elapsed());
            }
            if started.elapsed() > SHUTDOWN_TIMEOUT + Duration::from_secs(5) {
                let _ = self.child.kill();
                panic!("no exit after SIGTERM:\n{}", dump(&self.logs));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dump(logs: &Mutex<Vec<(Instant, Value)>>) -> String {
    logs.lock()
        .unwrap()
        .iter()
        .map(|(_, v)| v.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

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
    daemon: &Daemon,
    client: &aws_sdk_cloudformation::Client,
    what: &str,
    description: &str,
    apply: impl FnOnce(),
) {
    daemon.wait_converged().await;
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
        stacksetd::watch::DEBOUNCE
    );
    assert!(
        submitting - edited < Duration::from_secs(5),
        "{what}: far beyond the 1 s budget"
    );
    wait_description(client, description).await;
    daemon.wait_converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_follows_edits_rejects_invalid_ones_reloads_on_sighup_and_stops_on_sigterm() {
    let server = MotoServer::start();
    build_org(&server, &small_org()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desired.yaml");
    std::fs::write(&path, desired("v0")).unwrap();

    let daemon = Daemon::spawn(&server, &path, &[]);
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
    let daemon = Daemon::spawn(
        &server,
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

/// A stand-in for systemd's notification socket: collects every datagram the daemon sends.
struct NotifySocket {
    path: std::path::PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind the notify socket");
        let messages: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = messages.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buffer) {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buffer[..n]).to_string());
            }
        });
        NotifySocket { path, messages }
    }

    fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// Datagrams carrying this line.
    fn count(&self, line: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }
}
