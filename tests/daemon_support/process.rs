//! `stacksetd run` as a child process: its JSON log lines collected with arrival times, its HTTP address read
//! from its own log, signals sent with kill(1); and a stand-in for systemd's notification socket.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{eventually, get};

/// Start-up: connecting the SDK and binding; the first pass is not waited for.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Things that take well under a second, with room for a shared machine.
pub const WAIT: Duration = Duration::from_secs(30);
/// The settings default, which the tests rely on.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `stacksetd run`, its stderr (JSON log lines) collected with arrival times.
pub struct DaemonProcess {
    pub child: Child,
    pub addr: String,
    pub logs: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl DaemonProcess {
    /// Start `command` (the stacksetd binary with its AWS environment) as `run` on `desired`, listening on a free
    /// loopback port, logging JSON; returns once the listen address is logged.
    pub fn spawn(mut command: Command, desired: &Path, env: &[(&str, &str)]) -> DaemonProcess {
        // Only edits, SIGHUP and operation polls cause passes during the test, unless the test says otherwise.
        command.env("STACKSETD_RESYNC_INTERVAL", "1h");
        command.envs(env.iter().copied());
        command
            .arg("--desired")
            .arg(desired)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json", "run"])
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
        DaemonProcess { child, addr, logs }
    }

    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name}");
    }

    /// The first log line at or after `t` with this message, and when it arrived.
    pub fn log_after(&self, t: Instant, message: &str) -> Option<(Instant, Value)> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .find(|(at, v)| *at >= t && v["message"] == message)
            .cloned()
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .any(|(_, v)| v.to_string().contains(needle))
    }

    pub async fn metrics(&self) -> String {
        get(&self.addr, "/metrics").await.body
    }

    pub async fn wait_ready(&self, timeout: Duration) {
        eventually(timeout, "/readyz 200", || async {
            (get(&self.addr, "/readyz").await.status == 200).then_some(())
        })
        .await;
    }

    /// Wait until the deployment is converged at its current generation (no pass of an earlier change can then
    /// be mistaken for the reaction to the next edit).
    pub async fn wait_converged(&self, deployment: &str) {
        eventually(WAIT, "converged", || async {
            let s = get(&self.addr, "/status").await.json();
            let d = &s["deployments"][deployment];
            let ready =
                d["conditions"][0]["type"] == "Ready" && d["conditions"][0]["status"] == "True";
            (ready && d["observedGeneration"] == d["generation"]).then_some(())
        })
        .await;
    }

    /// SIGTERM, then wait: returns the exit code and how long it took.
    pub fn terminate(mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        self.signal("TERM");
        let code = self.wait_exit(SHUTDOWN_TIMEOUT + Duration::from_secs(5));
        (code, started.elapsed())
    }

    /// Wait for the process to exit; its exit code (None when killed by a signal). Panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        match wait_child(&mut self.child, timeout) {
            Some(status) => status.code(),
            None => panic!("no exit within {timeout:?}:\n{}", dump(&self.logs)),
        }
    }
}

/// Wait for `child` to exit within `timeout`: its status, or `None` (after killing it) when it did not.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn dump(logs: &Mutex<Vec<(Instant, Value)>>) -> String {
    logs.lock()
        .unwrap()
        .iter()
        .map(|(_, v)| v.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A stand-in for systemd's notification socket: collects every datagram the daemon sends.
pub struct NotifySocket {
    pub path: std::path::PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
}

impl NotifySocket {
    pub fn bind(dir: &Path) -> NotifySocket {
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

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// Datagrams carrying this line.
    pub fn count(&self, line: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }
}
