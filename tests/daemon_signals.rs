//! Shutdown of `stacksetd run` as a process while a pass is stuck inside an AWS call: the endpoint is a loopback
//! "black hole" that accepts connections and never answers, so no moto is needed. The first SIGTERM must still
//! exit 0 once `shutdown_timeout` runs out; a second signal must exit at once.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::daemon_support::process::*;
use crate::daemon_support::*;

/// The exit status of a second-signal exit (128 + SIGINT, the shell's convention for "interrupted").
const SECOND_SIGNAL_EXIT: i32 = 130;

/// Accepts connections and holds them open without a byte of response; counts them.
fn black_hole() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (endpoint, accepted)
}

/// A daemon whose first pass hangs on its first AWS call.
async fn stuck_daemon(shutdown_timeout: &str) -> (DaemonProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = stuck_daemon_in(&dir, &[("STACKSETD_SHUTDOWN_TIMEOUT", shutdown_timeout)]).await;
    (daemon, dir)
}

/// As [`stuck_daemon`], its desired state at `dir`/desired.yaml, with extra environment.
async fn stuck_daemon_in(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> DaemonProcess {
    let (endpoint, accepted) = black_hole();
    let path = dir.path().join("desired.yaml");
    std::fs::write(
        &path,
        deployment_yaml("aimably", "Aimably", "v0", "us-east-1"),
    )
    .unwrap();
    let mut command = crate::common::stacksetd_offline();
    command.env("AWS_ENDPOINT_URL", &endpoint);
    let daemon = DaemonProcess::spawn(command, &path, env);
    eventually(WAIT, "the first pass calling AWS", || async {
        (accepted.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let readyz = get(&daemon.addr, "/readyz").await;
    assert_eq!(
        readyz.status,
        503,
        "no pass has completed: {}\n{}",
        readyz.body,
        dump(&daemon.logs)
    );
    assert!(
        readyz.body.contains("first pass of aimably"),
        "{}",
        readyz.body
    );
    daemon
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_at_the_shutdown_timeout_even_with_a_pass_stuck_on_aws() {
    let (daemon, _dir) = stuck_daemon("1s").await;
    let logs = daemon.logs.clone();
    let (code, took) = daemon.terminate();
    assert_eq!(code, Some(0), "{}", dump(&logs));
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "the drain waits for the stuck pass until shortly before shutdown_timeout, then exits: {took:?}"
    );
    println!("SIGTERM with a stuck pass -> exit 0 in {took:?} (shutdown_timeout 1s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let (mut daemon, _dir) = stuck_daemon("60s").await;
    daemon.signal("TERM");
    // The first signal started a drain that would last a minute; /readyz says so meanwhile.
    let readyz = eventually(WAIT, "not ready while shutting down", || async {
        let r = get(&daemon.addr, "/readyz").await;
        r.body.contains("shutting down").then_some(r)
    })
    .await;
    assert_eq!(readyz.status, 503);
    let second = Instant::now();
    daemon.signal("INT");
    let code = daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(SECOND_SIGNAL_EXIT), "{}", dump(&daemon.logs));
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "{:?}",
        second.elapsed()
    );
}

/// The watchdog is pinged by the main loop itself: when the loop hangs (here: the desired-state file replaced by a
/// FIFO nobody writes, so the reload blocks in open(2)), the pings stop and systemd would restart the service.
/// A watchdog task of its own would keep pinging a daemon that no longer follows its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_main_loop_stops_the_watchdog_pings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desired.yaml");
    let notify = NotifySocket::bind(dir.path());
    let daemon = stuck_daemon_in(
        &dir,
        &[
            ("NOTIFY_SOCKET", notify.path.to_str().unwrap()),
            // 200 ms: pings every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    )
    .await;
    eventually(WAIT, "watchdog pings", || async {
        (notify.count("WATCHDOG=1") >= 3).then_some(())
    })
    .await;

    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    std::fs::rename(&fifo, &path).unwrap();
    // The watch sees the rename, debounces (200 ms) and reads: the loop is stuck from then on. Wait for that (no
    // ping for five intervals) rather than for a fixed time, which a slow machine may not keep.
    eventually(WAIT, "the pings stop", || async {
        let seen = notify.count("WATCHDOG=1");
        tokio::time::sleep(Duration::from_millis(500)).await;
        (notify.count("WATCHDOG=1") == seen).then_some(())
    })
    .await;
    let before = notify.count("WATCHDOG=1");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = notify.count("WATCHDOG=1");
    println!(
        "watchdog pings in the 1.5 s after the main loop hung: {}",
        after - before
    );
    assert_eq!(
        after,
        before,
        "pings continued while the main loop was hung:\n{}",
        dump(&daemon.logs)
    );
    assert_eq!(
        get(&daemon.addr, "/healthz").await.status,
        200,
        "HTTP still answers: only the watchdog knows"
    );
}

/// `stacksetd health` (the container's HEALTHCHECK) exits 0 for a live daemon and 1, naming why, without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_command_probes_the_listen_address() {
    let (daemon, _dir) = stuck_daemon("1s").await;
    let out = crate::common::stacksetd_offline()
        .args(["--listen", &daemon.addr, "health"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = crate::common::stacksetd_offline()
        .args(["--listen", &free, "health"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&free) && stderr.to_ascii_lowercase().contains("refused"),
        "{stderr}"
    );
}
