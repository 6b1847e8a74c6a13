//! Shared by the template tests: a real HTTP/1.1 server on 127.0.0.1:0 that publishes template versions with
//! ETag / Last-Modified, answers conditional requests with 304, can fail in every way a vendor's server can, and
//! counts requests and bytes on the wire; template builders; a small organization on `sim`.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stacksetd::cloud::Cloud;
use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::controller::{Config, Context};
use stacksetd::desired::{self, Deployment};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const STACK_SET: &str = "AimablyDataOnly";
pub const PATH: &str = "/t.json";

/// How the server answers the next requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Serve the published version (304 when the client's validators match).
    Normal,
    /// Answer every request with this status and a short body.
    Status(u16),
    /// Accept the request and answer nothing for this long (a fetch timeout).
    Hang(Duration),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub not_modified: u64,
    pub full: u64,
    /// Bytes of requests received (headers; GETs have no body).
    pub bytes_in: u64,
    /// Bytes of responses sent (status line, headers, body).
    pub bytes_out: u64,
}

struct State {
    /// path -> (body, etag, last-modified); a missing path is a 404.
    files: std::collections::BTreeMap<String, (Vec<u8>, String, String)>,
    mode: Mode,
    counts: Counts,
    versions: u64,
}

#[derive(Clone)]
pub struct TemplateServer {
    pub addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
}

impl TemplateServer {
    pub async fn start() -> TemplateServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            files: Default::default(),
            mode: Mode::Normal,
            counts: Counts::default(),
            versions: 0,
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve_connection(stream, shared.clone()));
            }
        });
        TemplateServer { addr, state }
    }

    pub fn url(&self) -> String {
        self.url_of(PATH)
    }

    pub fn url_of(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Publish a new version at `PATH` (a new ETag and Last-Modified).
    pub fn publish(&self, body: &str) {
        self.publish_at(PATH, body.as_bytes());
    }

    pub fn publish_at(&self, path: &str, body: &[u8]) {
        let mut s = self.state.lock().unwrap();
        s.versions += 1;
        let n = s.versions;
        let etag = format!("\"v{n}-{}\"", &stacksetd::template::sha256_hex(body)[..8]);
        let last_modified = format!("Sat, 28 Nov 2026 20:{:02}:{:02} GMT", n / 60, n % 60);
        s.files
            .insert(path.to_string(), (body.to_vec(), etag, last_modified));
    }

    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().files.remove(path);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn counts(&self) -> Counts {
        self.state.lock().unwrap().counts
    }
}

async fn serve_connection(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buffer = Vec::new();
    loop {
        // Read one request head (GETs carry no body).
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head: Vec<u8> = buffer.drain(..head_end).collect();
        let head = String::from_utf8_lossy(&head).to_string();
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let (if_none_match, if_modified_since) =
            (header("if-none-match"), header("if-modified-since"));
        let (mode, file) = {
            let mut s = state.lock().unwrap();
            s.counts.requests += 1;
            s.counts.bytes_in += head.len() as u64;
            (s.mode.clone(), s.files.get(&path).cloned())
        };
        let response: Vec<u8> = match (mode, file) {
            (Mode::Hang(d), _) => {
                tokio::time::sleep(d).await;
                return;
            }
            (Mode::Status(code), _) => plain(code, "Server Error"),
            (Mode::Normal, None) => plain(404, "Not Found"),
            (Mode::Normal, Some((body, etag, last_modified))) => {
                let fresh = match (&if_none_match, &if_modified_since) {
                    (Some(inm), _) => *inm == etag,
                    (None, Some(ims)) => *ims == last_modified,
                    (None, None) => false,
                };
                if fresh {
                    state.lock().unwrap().counts.not_modified += 1;
                    format!(
                        "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nLast-Modified: {last_modified}\r\n\r\n"
                    )
                    .into_bytes()
                } else {
                    state.lock().unwrap().counts.full += 1;
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nETag: {etag}\r\nLast-Modified: {last_modified}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                }
            }
        };
        state.lock().unwrap().counts.bytes_out += response.len() as u64;
        if stream.write_all(&response).await.is_err() {
            return;
        }
    }
}

fn plain(code: u16, text: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {text}\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------------------------------
// Templates.

/// A read-only role (what the DataOnly catalog template looks like), with `actions` in its inline policy.
pub fn role_template(description: &str, actions: &[&str]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": description,
        "Resources": {"AimablyMemberRole": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": "AimablyMemberRole",
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "Read", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": actions, "Resource": "*"}]}}]
        }}}
    }))
    .unwrap()
}

pub const V1_ACTIONS: &[&str] = &[
    "ce:GetCostAndUsage",
    "ec2:DescribeInstances",
    "s3:ListAllMyBuckets",
];
/// v2 narrows v1 (drops an action): under Auto it is applied without approval.
pub const V2_ACTIONS: &[&str] = &["ce:GetCostAndUsage", "ec2:DescribeInstances"];
/// Adds a read action: a widening.
pub const WIDER_ACTIONS: &[&str] = &[
    "ce:GetCostAndUsage",
    "ec2:DescribeInstances",
    "s3:ListAllMyBuckets",
    "cloudwatch:GetMetricData",
];
/// Adds write actions: refused for DataOnly.
pub const WRITE_ACTIONS: &[&str] = &[
    "ce:GetCostAndUsage",
    "ec2:DescribeInstances",
    "s3:ListAllMyBuckets",
    "ec2:StopInstances",
];

pub fn v1() -> String {
    role_template("Aimably v1", V1_ACTIONS)
}
pub fn v2() -> String {
    role_template("Aimably v2", V2_ACTIONS)
}

pub fn sha(body: &str) -> String {
    stacksetd::template::sha256_hex(body.as_bytes())
}

// ---------------------------------------------------------------------------------------------------------------
// Desired state, organization, controller.

/// The `template:` mapping's extra lines (updates, sha256, allowPermissionWidening), YAML flow-style entries.
pub fn deployment(template: &str) -> Deployment {
    let yaml = deployment_yaml("aimably", template);
    let mut deployments = desired::parse_str(&yaml, Path::new("t.yaml"))
        .unwrap_or_else(|e| panic!("the test's desired state is invalid:\n{e}\n{yaml}"));
    deployments.remove(0)
}

/// A deployment document whose `spec.template` is the flow mapping `template`, e.g.
/// `{policy: DataOnly, url: "http://...", updates: Manual}`.
pub fn deployment_yaml(name: &str, template: &str) -> String {
    format!(
        r#"apiVersion: stacksetd.dev/v1alpha1
kind: StackSetDeployment
metadata:
  name: {name}
spec:
  stackSetName: {STACK_SET}
  managementAccountId: "123456789012"
  template: {template}
  capabilities: [CAPABILITY_NAMED_IAM]
  deploymentTargets:
    organizationalUnitIds: [ROOT]
  regions: [us-east-1]
  operationPreferences: {{failureTolerancePercentage: 100, maxConcurrentPercentage: 100, concurrencyMode: SOFT_FAILURE_TOLERANCE}}
"#
    )
}

/// Three member accounts in one OU; operations take tens of milliseconds (real time: real HTTP).
pub fn sim() -> Sim {
    let sim = Sim::new(SimConfig {
        instance_duration: Duration::from_millis(5),
        operation_overhead: Duration::from_millis(10),
        ..SimConfig::default()
    });
    let ou = sim.add_ou(&sim.root_id(), "Workloads");
    for name in ["a", "b", "c"] {
        sim.add_account(&ou, name);
    }
    sim
}

pub fn config() -> Config {
    Config {
        poll_min: Duration::from_millis(20),
        poll_max: Duration::from_millis(100),
        error_backoff_base: Duration::from_millis(20),
        error_backoff_max: Duration::from_millis(100),
        template_fetch_timeout: Duration::from_millis(500),
        ..Config::default()
    }
}

pub fn context(sim: &Sim) -> Context {
    Context::new(Arc::new(sim.clone()), config())
}

/// How many times `operation` was called (any outcome).
pub fn calls(sim: &Sim, operation: &str) -> u64 {
    sim.calls()
        .snapshot()
        .iter()
        .filter(|((_, op, _), _)| *op == operation)
        .map(|(_, n)| n)
        .sum()
}

/// The template bytes the stack set has.
pub fn applied(sim: &Sim) -> Option<String> {
    sim.stack_set(STACK_SET).map(|s| s.settings.template_body)
}
