//! Helpers for the daemon tests (tests/daemon_sim.rs in process, tests/daemon_process.rs as a process against
//! moto): a minimal HTTP/1.1 client for the daemon's endpoints, desired-state files, the ways editors and
//! Kubernetes replace a file, and metric lookups in the Prometheus text format.

#![allow(dead_code)]

pub mod process;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The example template shipped with the project, as a file:// URL.
pub fn template_url() -> String {
    format!(
        "file://{}/config/templates/aimably-data-only.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// One deployment document targeting the whole organization in one Region.
pub fn deployment_yaml(name: &str, stack_set: &str, description: &str, region: &str) -> String {
    format!(
        r#"apiVersion: stacksetd.dev/v1alpha1
kind: StackSetDeployment
metadata:
  name: {name}
spec:
  stackSetName: {stack_set}
  description: "{description}"
  managementAccountId: "123456789012"
  template:
    url: "{url}"
  parameters:
    ManagementAccountId: "123456789012"
  deploymentTargets:
    organizationalUnitIds: [ROOT]
  regions: [{region}]
  operationPreferences:
    failureTolerancePercentage: 100
    maxConcurrentPercentage: 100
    concurrencyMode: SOFT_FAILURE_TOLERANCE
"#,
        url = template_url()
    )
}

/// A file that parses but breaks a rule, on a known line: `maxConcurrentCount: 0` on line 18.
pub fn invalid_yaml(name: &str, stack_set: &str, region: &str) -> String {
    deployment_yaml(name, stack_set, "broken", region).replace(
        "    maxConcurrentPercentage: 100\n",
        "    maxConcurrentCount: 0\n",
    )
}

/// How a file gets replaced.
#[derive(Debug, Clone, Copy)]
pub enum Save {
    /// Write a temporary file next to it, rename it over (vim, most editors).
    AtomicRename,
    /// Open with O_TRUNC and write (nano, `>` in a shell).
    TruncateWrite,
    /// Remove, then create anew.
    DeleteRecreate,
}

pub fn save(path: &Path, text: &str, how: Save) {
    match how {
        Save::AtomicRename => {
            let tmp = path.with_extension("yaml.tmp~");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        Save::TruncateWrite => {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)
                .unwrap();
            file.write_all(text.as_bytes()).unwrap();
        }
        Save::DeleteRecreate => {
            std::fs::remove_file(path).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }
}

/// A Kubernetes ConfigMap volume: `dir/desired.yaml -> ..data/desired.yaml`, `..data -> ..<version>/`, updated by
/// writing a new version directory and renaming a new `..data` symlink over the old one (what the kubelet does).
pub struct ConfigMapDir {
    pub dir: PathBuf,
    version: u32,
}

impl ConfigMapDir {
    pub fn new(dir: &Path, text: &str) -> ConfigMapDir {
        let mut cm = ConfigMapDir {
            dir: dir.to_path_buf(),
            version: 0,
        };
        let version = cm.write_version(text);
        std::os::unix::fs::symlink(&version, dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/desired.yaml", dir.join("desired.yaml")).unwrap();
        cm
    }

    /// The path the daemon is given.
    pub fn path(&self) -> PathBuf {
        self.dir.join("desired.yaml")
    }

    fn write_version(&mut self, text: &str) -> String {
        self.version += 1;
        let name = format!(
            "..2026_11_28_20_00_{:02}.{}",
            self.version,
            1000 + self.version
        );
        std::fs::create_dir(self.dir.join(&name)).unwrap();
        std::fs::write(self.dir.join(&name).join("desired.yaml"), text).unwrap();
        name
    }

    pub fn update(&mut self, text: &str) {
        let old = std::fs::read_link(self.dir.join("..data")).unwrap();
        let new = self.write_version(text);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&new, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        std::fs::remove_dir_all(self.dir.join(old)).unwrap();
    }
}

/// An HTTP response: status code and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request with `Connection: close`; enough for the daemon's four read-only endpoints.
pub async fn request(addr: &str, method: &str, path: &str) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr).await?;
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("no response within 10 s"))??;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {headers:?}")))?;
    Ok(Response {
        status,
        headers: headers.to_string(),
        body: body.to_string(),
    })
}

pub async fn get(addr: &str, path: &str) -> Response {
    request(addr, "GET", path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The value of one sample, e.g. `metric(text, "stacksetd_reconcile_total", &[("deployment", "a"), ...])`;
/// labels match in any order. None when the series is absent.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            (metric == name).then_some((rest.trim_end_matches('}'), value))
        })
        .find(|(rest, _)| {
            labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, value)| value.parse().ok())
}

/// Sum of every sample of `name` whose labels include `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            let rest = rest.trim_end_matches('}');
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Every sample of `name` summed by the values of the labels `by`, joined with `:` (e.g.
/// `stacksetd_aws_requests_total` by service and operation: `{"cloudformation:DescribeStackSet": 3.0, ...}`).
pub fn metric_by(text: &str, name: &str, by: &[&str]) -> std::collections::BTreeMap<String, f64> {
    let mut sums = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        let (true, Ok(value)) = (metric == name, value.parse::<f64>()) else {
            continue;
        };
        let labels = rest.trim_end_matches('}');
        let key: Vec<&str> = by
            .iter()
            .map(|k| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                    .map_or("", |v| v.trim_end_matches('"'))
            })
            .collect();
        *sums.entry(key.join(":")).or_default() += value;
    }
    sums
}

/// Poll `check` every 20 ms until it returns Some, or panic with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_or(timeout, what, check, String::new).await
}

/// As [`eventually`], adding `context()` (the daemon's logs, its /status) to the panic message.
pub async fn eventually_or<T, F, Fut>(
    timeout: Duration,
    what: &str,
    mut check: F,
    context: impl FnOnce() -> String,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The keys of a JSON document that are snake_case (`a_b`), with their paths. Keys that are data rather than
/// field names (instance statuses, deployment names, tags, parameters) are not field names and are skipped.
pub fn snake_case_keys(doc: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, path: &str, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                let data = ["deployments", "instances", "tags", "parameters"]
                    .iter()
                    .any(|k| path.ends_with(&format!(".{k}")));
                for (key, value) in map {
                    if !data && key.contains('_') {
                        found.push(format!("{path}.{key}"));
                    }
                    walk(value, &format!("{path}.{key}"), found);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}[{i}]"), found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(doc, "", &mut found);
    found
}
