//! Many deployments in one daemon: the whole daemon in process against `sim` on tokio's
//! paused clock, with BENCH_DEPLOYMENTS stack sets (default 1,000) of BENCH_ACCOUNTS member accounts each
//! (default 100, one Region) at the default settings (concurrency 4, resync 5m, `aws.max_read_rate` 5/s). It
//! converges every deployment, then runs BENCH_HOURS simulated hours (default 1) and reports:
//! - the CloudFormation read rate: the highest count in any 60 s window (sampled each simulated second) and the
//!   mean, against the budget (5/s, bursts of 10);
//! - calls per converged pass (reads over passes), by operation;
//! - passes per deployment, fewest and most (a deployment starved by the scheduler would have none), and the
//!   longest gap between two passes of one deployment;
//! - memory: the process's VmHWM and VmRSS, the live heap (a counting allocator), the simulated organization's
//!   own state included (it holds every instance too), and the daemon's share of it (what stopping it freed).
//!
//! Run with `scripts/bench.sh --targets fleet` (it writes target/bench-fleet.md). Under `cargo test` it runs a
//! small fleet (20 x 5) through the same code and checks the read budget and that no deployment starved.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use stacksetd::cloud::Cloud;
use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::controller;
use stacksetd::daemon::read_budget::{DEFAULT_MAX_READ_RATE, READ_BURST};
use stacksetd::daemon::{Daemon, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../tests/counting_alloc/mod.rs"]
mod counting_alloc;
use counting_alloc::{Counting, live_bytes};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const REGION: &str = "us-west-2";
/// CloudFormation reads: what the read budget counts.
const READS: &[&str] = &[
    "DescribeStackSet",
    "ListStackInstances",
    "ListStackSetOperations",
    "DescribeStackSetOperation",
    "ListStackSetOperationResults",
    "ListStackSets",
    "DescribeOrganizationsAccess",
];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn reads(sim: &Sim) -> u64 {
    sim.calls()
        .by_operation()
        .iter()
        .filter(|(op, _)| READS.contains(op))
        .map(|(_, n)| n)
        .sum()
}

/// One compact document per deployment (the file's 1 MiB limit holds 1,000 of them).
fn desired(deployments: usize, template: &std::path::Path, management: &str) -> String {
    (0..deployments)
        .map(|i| {
            format!(
                "apiVersion: stacksetd.dev/v1alpha1\nkind: StackSetDeployment\nmetadata: {{name: d{i:04}}}\n\
                 spec: {{stackSetName: Fleet{i:04}, managementAccountId: \"{management}\", \
                 template: {{url: \"file://{}\"}}, parameters: {{ManagementAccountId: \"{management}\"}}, \
                 deploymentTargets: {{organizationalUnitIds: [ROOT]}}, regions: [{REGION}], \
                 operationPreferences: {{failureTolerancePercentage: 100, maxConcurrentPercentage: 100}}}}\n",
                template.display()
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// GET a path of the daemon's HTTP server (plain HTTP/1.0: the bench needs no client beyond tokio).
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).await.expect("response");
    body.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Passes per deployment, from `stacksetd_reconcile_total`.
fn passes(metrics: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("stacksetd_reconcile_total{"))
    {
        let Some(name) = line
            .split("deployment=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(name.to_string()).or_default() += value as u64;
    }
    out
}

fn main() {
    // Under `cargo test --all-targets` (no --bench): a small run of the same code, so the benchmark cannot rot,
    // with the read budget and starvation checked; the figures come from `cargo bench` only.
    let bench = std::env::args().any(|a| a == "--bench");
    let (deployments, accounts) = if bench {
        (
            env_number("BENCH_DEPLOYMENTS", 1000),
            env_number("BENCH_ACCOUNTS", 100),
        )
    } else {
        (20, 5)
    };
    let hours = env_number("BENCH_HOURS", 1) as u64;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let real = std::time::Instant::now();
    let report = runtime.block_on(run(deployments, accounts, hours));
    let report = format!(
        "{report}\nreal time: {:.1} s\n",
        real.elapsed().as_secs_f64()
    );
    print!("{report}");
    if !bench {
        return;
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-fleet.md");
    let _ = std::fs::write(&path, &report);
    eprintln!("written to {}", path.display());
}

async fn run(deployments: usize, accounts: usize, hours: u64) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let template = dir.path().join("template.json");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/aimably-data-only.json"
        ),
        &template,
    )
    .expect("template");
    let sim = Sim::new(SimConfig::default());
    let ou = sim.add_ou(&sim.root_id(), "Workloads");
    for i in 0..accounts {
        sim.add_account(&ou, &format!("member-{i}"));
    }
    let path = dir.path().join("desired.yaml");
    std::fs::write(
        &path,
        desired(deployments, &template, &sim.management_account_id()),
    )
    .expect("desired state");
    let config = controller::Config::default();
    let resync = config.resync_interval;
    let options = Options {
        max_read_rate: DEFAULT_MAX_READ_RATE,
        ..Options::local(path)
    };
    let daemon = Daemon::bind(Arc::new(sim.clone()), config, options)
        .await
        .expect("bind");
    let addr = daemon.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run(async move {
        let _ = stopped.await;
    }));

    // Converge: every stack set has an instance in every member account, none in progress.
    let started = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let done = (0..deployments)
            .filter(|i| {
                let instances = sim.instances(&format!("Fleet{i:04}"));
                instances.len() == accounts
                    && instances
                        .iter()
                        .all(|i| i.detailed_status.as_deref() == Some("SUCCEEDED"))
            })
            .count();
        if done == deployments {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(48 * 3600),
            "{done}/{deployments} converged after two simulated days"
        );
        sim.forget_finished_operations(20);
    }
    let converged_after = started.elapsed();
    // One full resync round for the passes that were mid-way, so the window measured is steady.
    tokio::time::sleep(resync * 2).await;

    // The steady state: sample the read count each simulated second.
    let passes_before = passes(&get(addr, "/metrics").await);
    let calls_before = sim.calls().by_operation();
    let mut samples = vec![reads(&sim)];
    let mut last_pass: BTreeMap<String, (tokio::time::Instant, Duration)> = BTreeMap::new();
    let t0 = tokio::time::Instant::now();
    let mut seen = passes_before.clone();
    for second in 1..=hours * 3600 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(reads(&sim));
        if second % 30 == 0 {
            // Gaps between passes at 30 s resolution.
            let now = passes(&get(addr, "/metrics").await);
            let at = tokio::time::Instant::now();
            for (name, n) in &now {
                if seen.get(name) != Some(n) {
                    let entry = last_pass
                        .entry(name.clone())
                        .or_insert((t0, Duration::ZERO));
                    entry.1 = entry.1.max(at - entry.0);
                    entry.0 = at;
                }
            }
            seen = now;
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let metrics = get(addr, "/metrics").await;
    let passes_after = passes(&metrics);
    let calls_after = sim.calls().by_operation();
    let window_max = samples.windows(61).map(|w| w[60] - w[0]).max().unwrap_or(0);
    let total_reads = samples.last().unwrap() - samples[0];
    let per_deployment: Vec<u64> = (0..deployments)
        .map(|i| {
            let name = format!("d{i:04}");
            passes_after.get(&name).copied().unwrap_or(0)
                - passes_before.get(&name).copied().unwrap_or(0)
        })
        .collect();
    let total_passes: u64 = per_deployment.iter().sum();
    assert!(
        window_max as f64 <= f64::from(DEFAULT_MAX_READ_RATE) * 60.0 + READ_BURST,
        "the read budget held: {window_max} reads in 60 s"
    );
    assert!(
        per_deployment.iter().all(|n| *n > 0),
        "no deployment starved: {per_deployment:?}"
    );
    let longest_gap = last_pass
        .values()
        .map(|(_, gap)| *gap)
        .max()
        .unwrap_or_default();
    let mut by_op = String::new();
    for (op, after) in &calls_after {
        let n = after - calls_before.get(op).copied().unwrap_or(0);
        if n > 0 {
            by_op.push_str(&format!(
                "{op} {:.2}, ",
                n as f64 / total_passes.max(1) as f64
            ));
        }
    }
    let report = format!(
        "# fleet: {deployments} deployments x {accounts} accounts x 1 Region (sim, paused clock, defaults: \
         concurrency 4, resync {resync:?}, max_read_rate {DEFAULT_MAX_READ_RATE}/s, burst {READ_BURST})\n\n\
         | measure | value |\n|---|---|\n\
         | converged from nothing (simulated) | {:.0} min |\n\
         | steady window (simulated) | {:.0} min |\n\
         | CloudFormation reads, mean | {:.2}/s |\n\
         | CloudFormation reads, most in any 60 s | {window_max} ({:.2}/s; budget {} in 60 s with the burst) |\n\
         | passes per deployment in the window, fewest / most | {} / {} |\n\
         | longest gap between two passes of one deployment | {:.0} s (resync {:.0} s) |\n\
         | calls per pass, by operation | {} |\n\
         | VmHWM / VmRSS | {:.1} MB / {:.1} MB |\n\
         | live heap (daemon and simulated organization) | {:.1} MB |\n",
        converged_after.as_secs_f64() / 60.0,
        elapsed / 60.0,
        total_reads as f64 / elapsed,
        window_max as f64 / 60.0,
        f64::from(DEFAULT_MAX_READ_RATE) * 60.0 + READ_BURST,
        per_deployment.iter().min().unwrap_or(&0),
        per_deployment.iter().max().unwrap_or(&0),
        longest_gap.as_secs_f64(),
        resync.as_secs_f64(),
        by_op.trim_end_matches(", "),
        proc_status_kib("VmHWM:") as f64 / 1024.0,
        proc_status_kib("VmRSS:") as f64 / 1024.0,
        live_bytes() as f64 / 1e6,
    );
    let live_running = live_bytes();
    let _ = stop.send(());
    let _ = task.await;
    // What the daemon held: the live heap it gave back when it stopped (the simulated organization stays).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let daemon_share = live_running - live_bytes();
    format!(
        "{report}| live heap held by the daemon (freed when it stopped; the rest is the simulated organization) | {:.1} MB |\n",
        daemon_share as f64 / 1e6
    )
}
