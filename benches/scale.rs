//! The scale benchmark: stacksetd at organization scale, against moto and against `sim`.
//!
//!     scripts/bench.sh [--sizes 100,1000,5000] [--regions 1,3] [--targets moto,sim]
//!
//! (scripts/bench.sh is the one documented command; it sets up moto and runs `cargo bench --bench scale`, so the
//! stacksetd binary measured is the release build.) For every organization size x Region count:
//!
//! - **moto**: builds the organization on a fresh moto, serves the template from a local HTTP server, starts the
//!   release binary as `stacksetd run` (resync 1 s, template polls 2 s), waits until it has converged, then
//!   measures converged passes from the daemon's own metrics and /proc: API calls by operation, wall time
//!   (`reconcile_duration_seconds`), CPU time of the process (utime + stime per pass, so idle timers and the
//!   harness's scrapes are included), and VmHWM; then a SIGHUP pass (organization re-listed + pass); then edit ->
//!   first mutating call (the daemon's `submitting` log line) and template publication -> UpdateStackSet. The
//!   same observation is then made by benches/boto3_baseline.py (DescribeStackSet + every ListStackInstances
//!   page; separately the organization walk) as the baseline.
//! - **sim**: the daemon binary cannot talk to the in-memory organization, so the controller runs in this process
//!   on a current-thread runtime with a paused clock: calls by operation from `cloud.calls()`, CPU time of the
//!   thread (getrusage RUSAGE_THREAD) over many converged passes, and heap bytes from a counting allocator
//!   (what the controller's context holds after the passes, and the transient peak of one pass). The sim's own
//!   work answering the calls is inside the CPU figure, so it is an upper bound on stacksetd's share.
//! - **sim + event queue**: the same converged passes with a healthy event queue vouching that nothing happened
//!   (`events.queue_url`): one call each.
//! - **events**: the whole daemon in process on `sim` with an in-memory event queue, in real time: event -> pass
//!   latency (benches/scale/events.rs).
//!
//! The table is printed and written to target/bench-report.md after every size (partial runs keep what ran).
//! Selected by environment (scripts/bench.sh sets them): BENCH_SIZES, BENCH_REGIONS, BENCH_TARGETS,
//! BENCH_SIM_PASSES, BENCH_MOTO_PASSES. Not a test: `test = false` in Cargo.toml, but it compiles with
//! `cargo test --all-targets`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/daemon_support/mod.rs"]
mod daemon_support;
/// The event queue's figures (target `events`).
#[path = "scale/events.rs"]
mod events;
#[path = "../tests/templates_support/mod.rs"]
mod templates_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{MotoServer, OrgSpec, OuSpec};
use daemon_support::process::DaemonProcess;
use daemon_support::{Save, eventually, get, metric_by, metric_sum, save};
use stacksetd::cloud::Cloud;
use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::controller::{self, Config, Context, DeploymentState};
use templates_support::TemplateServer;

// ---------------------------------------------------------------------------------------------------------------
// Heap accounting: every allocation of this process counted (live bytes and a resettable peak).

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn reset_peak() -> usize {
    let now = live_bytes();
    PEAK.store(now, Ordering::Relaxed);
    now
}

// ---------------------------------------------------------------------------------------------------------------
// CPU time: getrusage(2) from the C library std already links (no extra crate).

#[repr(C)]
#[derive(Default)]
struct Timeval {
    tv_sec: i64,
    tv_usec: i64,
}

#[repr(C)]
#[derive(Default)]
struct Rusage {
    ru_utime: Timeval,
    ru_stime: Timeval,
    rest: [i64; 14],
}

unsafe extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
}

const RUSAGE_THREAD: i32 = 1;

fn thread_cpu() -> Duration {
    let mut usage = Rusage::default();
    let rc = unsafe { getrusage(RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let t = |tv: &Timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(&usage.ru_utime) + t(&usage.ru_stime)
}

/// utime + stime of a process (all threads), from /proc/<pid>/stat, in clock ticks of 10 ms.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the ')' (state is field 3 -> index 0).
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .trim_start_matches(':')
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Selection and results.

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];
const OUS: usize = 10;
const STACK_SET: &str = "AimablyBench";

/// One row of the report.
#[derive(Debug, Default, Clone)]
struct Row {
    target: String,
    accounts: usize,
    regions: usize,
    instances: usize,
    setup: String,
    /// Calls of one converged pass by operation.
    calls: BTreeMap<String, f64>,
    wall: Option<Duration>,
    cpu: Option<Duration>,
    memory: String,
    edit_to_mutation: Option<Duration>,
    publication_to_update: Option<Duration>,
    notes: Vec<String>,
}

fn ms(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) if d < Duration::from_millis(10) => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        Some(d) if d < Duration::from_secs(10) => format!("{:.0} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.1} s", d.as_secs_f64()),
    }
}

fn calls_text(calls: &BTreeMap<String, f64>) -> String {
    if calls.is_empty() {
        return "-".into();
    }
    let total: f64 = calls.values().sum();
    let parts: Vec<String> = calls
        .iter()
        .map(|(op, n)| {
            if n.fract().abs() < 1e-9 {
                format!("{op} {n:.0}")
            } else {
                format!("{op} {n:.2}")
            }
        })
        .collect();
    let total = if total.fract().abs() < 1e-9 {
        format!("{total:.0}")
    } else {
        format!("{total:.2}")
    };
    format!("{total} = {}", parts.join(" + "))
}

fn report(rows: &[Row], header: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{header}\n");
    let _ = writeln!(
        out,
        "| target | accounts x Regions (instances) | setup | converged pass: API calls | wall | CPU | memory | edit -> first mutating call | publication -> UpdateStackSet |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} x {} ({}) | {} | {} | {} | {} | {} | {} | {} |",
            r.target,
            r.accounts,
            r.regions,
            r.instances,
            r.setup,
            calls_text(&r.calls),
            ms(r.wall),
            ms(r.cpu),
            r.memory,
            ms(r.edit_to_mutation),
            ms(r.publication_to_update)
        );
    }
    let notes: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.notes
                .iter()
                .map(move |n| format!("- {} {} x {}: {n}", r.target, r.accounts, r.regions))
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "\n{}", notes.join("\n"));
    }
    out
}

fn report_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-report.md")
}

fn write_report(rows: &[Row], header: &str) {
    let text = report(rows, header);
    let path = report_path();
    if let Err(e) = std::fs::write(&path, &text) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

fn main() {
    if !common::bench_start() {
        return;
    }
    let sizes: Vec<usize> = env_list("BENCH_SIZES", "100,1000,5000")
        .iter()
        .map(|s| s.replace('_', "").parse().expect("BENCH_SIZES: numbers"))
        .collect();
    let regions: Vec<usize> = env_list("BENCH_REGIONS", "1,3")
        .iter()
        .map(|s| {
            let n: usize = s.parse().expect("BENCH_REGIONS: 1 to 3");
            assert!((1..=3).contains(&n), "BENCH_REGIONS: 1 to 3");
            n
        })
        .collect();
    let targets = env_list("BENCH_TARGETS", "sim,moto");
    let header = format!(
        "stacksetd benchmark (sizes {sizes:?}, Regions {regions:?}, targets {targets:?}); {} OUs of equal size under the root, \
         one deployment targeting the root",
        OUS
    );
    println!("{header}");
    let mut rows: Vec<Row> = Vec::new();
    for target in &targets {
        for &accounts in &sizes {
            for &r in &regions {
                let started = Instant::now();
                let new_rows = match target.as_str() {
                    "sim" => bench_sim(accounts, r),
                    "events" => vec![events::bench_events(accounts, r)],
                    "moto" => tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .expect("tokio runtime")
                        .block_on(bench_moto(accounts, r)),
                    other => panic!("BENCH_TARGETS: unknown target {other} (moto, sim, events)"),
                };
                eprintln!(
                    "[bench] {target} {accounts} x {r} done in {:.1?}",
                    started.elapsed()
                );
                for row in &new_rows {
                    println!(
                        "{} {} x {}: calls {}; wall {}; CPU {}; {}; edit -> mutation {}; publication -> update {}",
                        row.target,
                        row.accounts,
                        row.regions,
                        calls_text(&row.calls),
                        ms(row.wall),
                        ms(row.cpu),
                        row.memory,
                        ms(row.edit_to_mutation),
                        ms(row.publication_to_update)
                    );
                }
                rows.extend(new_rows);
                write_report(&rows, &header);
            }
        }
    }
    print!("\n{}", report(&rows, &header));
    println!("\nreport written to {}", report_path().display());
}

// ---------------------------------------------------------------------------------------------------------------
// sim: the controller in process.

fn sim_yaml(management: &str, regions: usize) -> String {
    format!(
        "apiVersion: stacksetd.dev/v1alpha1\nkind: StackSetDeployment\nmetadata: {{name: bench}}\nspec:\n  \
         stackSetName: {STACK_SET}\n  managementAccountId: \"{management}\"\n  template: {{url: \"{}\"}}\n  \
         parameters: {{ManagementAccountId: \"{management}\"}}\n  deploymentTargets: {{organizationalUnitIds: [ROOT]}}\n  \
         regions: [{}]\n  operationPreferences: {{failureTolerancePercentage: 100, maxConcurrentPercentage: 100, \
         concurrencyMode: SOFT_FAILURE_TOLERANCE, regionConcurrencyType: PARALLEL}}\n",
        common::template_url("aimably-data-only"),
        REGIONS[..regions].join(", ")
    )
}

/// A simulated organization of `accounts` member accounts in [`OUS`] OUs (the rest under the root).
fn sim_org(accounts: usize, config: SimConfig) -> Sim {
    let sim = Sim::new(config);
    let root = sim.root_id();
    let ous: Vec<String> = (0..OUS)
        .map(|i| sim.add_ou(&root, &format!("OU{i}")))
        .collect();
    for i in 0..accounts {
        let parent = if i < accounts % OUS {
            &root
        } else {
            &ous[i % OUS]
        };
        sim.add_account(parent, &format!("member-{i:05}"));
    }
    sim
}

fn bench_sim(accounts: usize, regions: usize) -> Vec<Row> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let built = Instant::now();
        let sim = sim_org(
            accounts,
            SimConfig {
                instance_duration: Duration::from_millis(10),
                operation_overhead: Duration::from_millis(10),
                ..SimConfig::default()
            },
        );
        let build_time = built.elapsed();
        let yaml = sim_yaml(&sim.management_account_id(), regions);
        let deployment = stacksetd::desired::parse_str(&yaml, Path::new("bench.yaml"))
            .expect("valid desired state")
            .remove(0);
        let baseline_live = live_bytes();
        let ctx = Context::new(
            Arc::new(sim.clone()) as Arc<dyn Cloud>,
            Config {
                org_scan_interval: Duration::from_secs(24 * 3600),
                poll_min: Duration::from_millis(50),
                poll_max: Duration::from_millis(500),
                ..Config::default()
            },
        );
        // What the controller keeps of the deployment between passes (the daemon's worker owns it).
        let mut deployment_state = DeploymentState::default();
        let state = &mut deployment_state;
        let converging = Instant::now();
        let outcome = controller::converge(&deployment, &ctx, state, |_| {})
            .await
            .expect("converges on sim");
        let converge_wall = converging.elapsed();
        let instances = outcome.report.instance_total();
        // Warm-up pass, then measured passes.
        controller::reconcile(&deployment, &ctx, state).await.expect("pass");
        let passes = env_number(
            "BENCH_SIM_PASSES",
            (200_000 / (accounts * regions).max(1)).clamp(5, 200),
        );
        // Beside it, the same deployment in a context whose event queue is healthy and vouches that nothing
        // happened (events.queue_url; the ledger is what the daemon's reader keeps, a receive before every pass
        // keeps it healthy). The two kinds of pass alternate, so drift over the run (the allocator, the sim's
        // state) falls on both alike.
        let queue_ctx = Context::new(Arc::new(sim.clone()) as Arc<dyn Cloud>, ctx.config.clone());
        queue_ctx.events.trust();
        queue_ctx.events.received(stacksetd::cloud::queue::RECEIVE_WAIT);
        let mut queue_state = DeploymentState::default();
        for _ in 0..2 {
            controller::reconcile(&deployment, &queue_ctx, &mut queue_state)
                .await
                .expect("pass");
        }
        let mut calls = BTreeMap::new();
        let mut queue_calls = BTreeMap::new();
        let (mut cpu, mut wall, mut queue_cpu, mut queue_wall) = Default::default();
        let live_before = live_bytes();
        let mut peak_transient = 0usize;
        for _ in 0..passes {
            let before = sim.calls().by_operation();
            let start_live = reset_peak();
            let (cpu_before, wall_before) = (thread_cpu(), Instant::now());
            let outcome = controller::reconcile(&deployment, &ctx, state)
                .await
                .expect("pass");
            (cpu, wall) = (cpu + (thread_cpu() - cpu_before), wall + wall_before.elapsed());
            peak_transient = peak_transient.max(PEAK.load(Ordering::Relaxed) - start_live);
            assert!(outcome.is_converged(), "{:?}", outcome.state);
            let between = sim.calls().by_operation();
            add_calls(&mut calls, &before, &between);

            queue_ctx.events.received(stacksetd::cloud::queue::RECEIVE_WAIT);
            let (cpu_before, wall_before) = (thread_cpu(), Instant::now());
            let outcome = controller::reconcile(&deployment, &queue_ctx, &mut queue_state)
                .await
                .expect("pass");
            (queue_cpu, queue_wall) = (
                queue_cpu + (thread_cpu() - cpu_before),
                queue_wall + wall_before.elapsed(),
            );
            assert!(outcome.is_converged(), "{:?}", outcome.state);
            add_calls(&mut queue_calls, &between, &sim.calls().by_operation());
        }
        let none = BTreeMap::new();
        let (calls, queue_calls) = (
            per_pass(&none, &calls, passes),
            per_pass(&none, &queue_calls, passes),
        );
        let per = |total: Duration| total / passes as u32;
        let (cpu, wall, queue_cpu, queue_wall) = (per(cpu), per(wall), per(queue_cpu), per(queue_wall));
        let live_after = live_bytes();
        drop(queue_ctx);
        drop(queue_state);
        // What the controller holds: live bytes with its context and the deployment's state minus without them
        // (the sim stays).
        let with_ctx = live_bytes();
        drop(ctx);
        drop(deployment_state);
        let held = with_ctx.saturating_sub(live_bytes());
        let mut row = Row {
            target: "sim (in process)".into(),
            accounts,
            regions,
            instances,
            setup: format!(
                "org {}, converge {} (paused clock)",
                ms(Some(build_time)),
                ms(Some(converge_wall))
            ),
            calls,
            wall: Some(wall),
            cpu: Some(cpu),
            memory: format!(
                "controller holds {:.1} MB; a pass peaks {:.1} MB above that",
                held as f64 / 1e6,
                peak_transient as f64 / 1e6
            ),
            ..Row::default()
        };
        row.notes.push(format!(
            "{passes} passes on a current-thread runtime; CPU = getrusage(RUSAGE_THREAD), the sim's answers included; \
             live heap drift over the passes {:+.1} kB; heap before the context {:.1} MB",
            (live_after as f64 - live_before as f64) / 1e3,
            baseline_live as f64 / 1e6
        ));
        let queue_row = Row {
            target: "sim + event queue (in process)".into(),
            setup: "the same deployment, a healthy queue vouching nothing happened".into(),
            calls: queue_calls,
            wall: Some(queue_wall),
            cpu: Some(queue_cpu),
            memory: "-".into(),
            notes: vec![format!(
                "{passes} passes, alternating with the row above's; the converged pass of events.queue_url: \
                 DescribeStackSet only (the operations page is skipped while the queue is healthy and no event named \
                 the stack set)"
            )],
            ..row.clone()
        };
        vec![row, queue_row]
    })
}

/// Add the calls between two snapshots to `into`.
fn add_calls(
    into: &mut BTreeMap<&'static str, u64>,
    before: &BTreeMap<&'static str, u64>,
    after: &BTreeMap<&'static str, u64>,
) {
    for (op, n) in after {
        *into.entry(op).or_default() += n - before.get(op).copied().unwrap_or(0);
    }
}

/// Calls per pass by operation between two snapshots.
fn per_pass(
    before: &BTreeMap<&'static str, u64>,
    after: &BTreeMap<&'static str, u64>,
    passes: usize,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(op, n)| {
            let d = n - before.get(op).copied().unwrap_or(0);
            (d > 0).then(|| (op.to_string(), d as f64 / passes as f64))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// moto: the release binary as `stacksetd run`.

fn moto_yaml(management: &str, template_url: &str, regions: usize, description: &str) -> String {
    format!(
        "apiVersion: stacksetd.dev/v1alpha1\nkind: StackSetDeployment\nmetadata: {{name: bench}}\nspec:\n  \
         stackSetName: {STACK_SET}\n  description: \"{description}\"\n  managementAccountId: \"{management}\"\n  \
         template: {{policy: DataOnly, url: \"{template_url}\"}}\n  capabilities: [CAPABILITY_NAMED_IAM]\n  \
         deploymentTargets: {{organizationalUnitIds: [ROOT]}}\n  regions: [{}]\n  \
         operationPreferences: {{failureTolerancePercentage: 100, maxConcurrentPercentage: 100, \
         concurrencyMode: SOFT_FAILURE_TOLERANCE, regionConcurrencyType: PARALLEL}}\n",
        REGIONS[..regions].join(", ")
    )
}

/// Counters from a /metrics scrape: converged passes, pass-duration sum and count, AWS calls by operation.
#[derive(Debug, Default, Clone)]
struct Scrape {
    converged: f64,
    passes: f64,
    duration_sum: f64,
    calls: BTreeMap<String, f64>,
}

fn scrape_of(text: &str) -> Scrape {
    let calls = metric_by(text, "stacksetd_aws_requests_total", &["operation"]);
    Scrape {
        converged: metric_sum(
            text,
            "stacksetd_reconcile_total",
            &[("deployment", "bench"), ("result", "converged")],
        ),
        passes: metric_sum(
            text,
            "stacksetd_reconcile_duration_seconds_count",
            &[("deployment", "bench")],
        ),
        duration_sum: metric_sum(
            text,
            "stacksetd_reconcile_duration_seconds_sum",
            &[("deployment", "bench")],
        ),
        calls,
    }
}

fn delta_calls(before: &Scrape, after: &Scrape, per: f64) -> BTreeMap<String, f64> {
    after
        .calls
        .iter()
        .filter_map(|(op, n)| {
            let d = n - before.calls.get(op).copied().unwrap_or(0.0);
            (d > 0.0).then(|| (op.clone(), d / per))
        })
        .collect()
}

async fn wait_converged(daemon: &DaemonProcess, timeout: Duration) {
    eventually(timeout, "the deployment converged", || async {
        let s = get(&daemon.addr, "/status").await.json();
        let d = &s["deployments"]["bench"];
        let ready = d["conditions"][0]["type"] == "Ready" && d["conditions"][0]["status"] == "True";
        (ready && d["observedGeneration"] == d["generation"]).then_some(())
    })
    .await;
}

/// Returns just after a pass has ended (the pass-duration count moved), polling every 20 ms.
async fn pass_just_ended(daemon: &DaemonProcess, timeout: Duration) {
    let before = scrape_of(&daemon.metrics().await).passes;
    eventually(timeout, "a pass to end", || async {
        (scrape_of(&daemon.metrics().await).passes > before).then_some(())
    })
    .await;
}

/// Scrape, wait for `n` more converged passes, scrape again: per-pass calls, wall and process CPU.
async fn measure_passes(
    daemon: &DaemonProcess,
    n: usize,
    timeout: Duration,
) -> (BTreeMap<String, f64>, Duration, Duration, usize) {
    let pid = daemon.child.id();
    let before = scrape_of(&daemon.metrics().await);
    let cpu0 = process_cpu(pid);
    // Scraped every 500 ms (not eventually's 20 ms): the scrapes cost the daemon CPU too.
    let started = Instant::now();
    let after = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = scrape_of(&daemon.metrics().await);
        if s.converged >= before.converged + n as f64 {
            break s;
        }
        assert!(
            started.elapsed() < timeout,
            "no {n} converged passes within {timeout:?}"
        );
    };
    let cpu = process_cpu(pid) - cpu0;
    let passes = (after.passes - before.passes).max(1.0);
    let wall = Duration::from_secs_f64((after.duration_sum - before.duration_sum) / passes);
    (
        delta_calls(&before, &after, passes),
        wall,
        cpu.div_f64(passes),
        passes as usize,
    )
}

fn boto3(endpoint: &str, part: &str) -> Option<serde_json::Value> {
    let python = std::env::var_os("STACKSETD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/boto3_baseline.py");
    let started = Instant::now();
    let output = std::process::Command::new(python)
        .arg(script)
        .args([
            "--endpoint",
            endpoint,
            "--part",
            part,
            "--stack-set",
            STACK_SET,
        ])
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "boto3 baseline ({part}) failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    let mut value: serde_json::Value = serde_json::from_slice(output.stdout.trim_ascii()).ok()?;
    value["process_wall_s"] = serde_json::json!(started.elapsed().as_secs_f64());
    Some(value)
}

fn boto3_row(v: &serde_json::Value, accounts: usize, regions: usize, instances: usize) -> Row {
    let calls = v["calls"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| (k.clone(), n.as_f64().unwrap_or(0.0)))
                .collect()
        })
        .unwrap_or_default();
    let part = v["part"].as_str().unwrap_or("?");
    Row {
        target: format!(
            "boto3 baseline: {}",
            if part == "org" {
                "organization walk"
            } else {
                "stack set observation"
            }
        ),
        accounts,
        regions,
        instances,
        setup: format!(
            "process {:.1} s (interpreter, boto3 import)",
            v["process_wall_s"].as_f64().unwrap_or(0.0)
        ),
        calls,
        wall: v["wall_s"].as_f64().map(Duration::from_secs_f64),
        cpu: v["cpu_s"].as_f64().map(Duration::from_secs_f64),
        memory: format!(
            "peak RSS {:.1} MB",
            v["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0
        ),
        notes: vec![format!("saw {}", v["seen"])],
        ..Row::default()
    }
}

/// The template without its RoleName: moto creates each instance's stack, and a named IAM role (global to an
/// account) collides across Regions, as in AWS; CloudFormation names the role itself instead.
fn unnamed_role(template: &str) -> String {
    let mut value: serde_json::Value = serde_json::from_str(template).expect("template JSON");
    if let Some(properties) = value["Resources"]["AimablyMemberRole"]["Properties"].as_object_mut()
    {
        properties.remove("RoleName");
    }
    serde_json::to_string_pretty(&value).expect("template JSON")
}

async fn bench_moto(accounts: usize, regions: usize) -> Vec<Row> {
    let server = MotoServer::start();
    let spec = OrgSpec {
        root_accounts: accounts % OUS,
        ous: (0..OUS)
            .map(|i| OuSpec::new(&format!("OU{i}"), None, accounts / OUS))
            .collect(),
        trusted_access: true,
    };
    let started = Instant::now();
    let org = common::build_org(&server, &spec).await;
    let build_time = started.elapsed();
    eprintln!("[bench] moto: {accounts} accounts built in {build_time:.1?}");

    let templates = TemplateServer::start().await;
    templates.publish(&unnamed_role(&templates_support::v1()));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("desired.yaml");
    let yaml = |description: &str| {
        moto_yaml(
            &org.management_account_id,
            &templates.url(),
            regions,
            description,
        )
    };
    std::fs::write(&path, yaml("v0")).expect("write desired");

    let mut command = common::stacksetd(&server);
    command.env("STACKSETD_LOG__LEVEL", "info");
    let daemon = DaemonProcess::spawn(
        command,
        &path,
        &[
            ("STACKSETD_RESYNC_INTERVAL", "1s"),
            ("STACKSETD_ORG_SCAN_INTERVAL", "24h"),
            ("STACKSETD_TEMPLATE_POLL_INTERVAL", "2s"),
            ("STACKSETD_ACCESS_CHECK_INTERVAL", "24h"),
            ("STACKSETD_COVERAGE_GRACE_PERIOD", "24h"),
        ],
    );
    let pid = daemon.child.id();
    let converging = Instant::now();
    let big = Duration::from_secs(1800);
    wait_converged(&daemon, big).await;
    let converge_time = converging.elapsed();
    eprintln!("[bench] moto: converged from nothing in {converge_time:.1?}");

    // A pass or two to settle, then the measured converged passes.
    let (_, first_wall, _, _) = measure_passes(&daemon, 1, big).await;
    let n = env_number(
        "BENCH_MOTO_PASSES",
        if first_wall > Duration::from_secs(3) {
            3
        } else {
            5
        },
    );
    let (calls, wall, cpu, passes) = measure_passes(&daemon, n, big).await;
    let hwm_converged = proc_status_kib(pid, "VmHWM");
    let rss_now = proc_status_kib(pid, "VmRSS");

    // SIGHUP: the organization is re-listed and a pass runs.
    let before = scrape_of(&daemon.metrics().await);
    let cpu0 = process_cpu(pid);
    daemon.signal("HUP");
    // Scraped every 500 ms, like the converged passes: scrapes cost the daemon CPU too.
    let hup_started = Instant::now();
    let after = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = scrape_of(&daemon.metrics().await);
        let org_listed = s.calls.get("ListRoots").copied().unwrap_or(0.0)
            > before.calls.get("ListRoots").copied().unwrap_or(0.0);
        if org_listed && s.converged > before.converged {
            break s;
        }
        assert!(hup_started.elapsed() < big, "no SIGHUP pass within {big:?}");
    };
    let hup_cpu = process_cpu(pid) - cpu0;
    let hup_calls = delta_calls(&before, &after, 1.0);

    // Edit -> first mutating call. The edit is saved just after a resync pass ends, as it would almost always be
    // with the default 5 min resync (with the harness's 1 s resync an edit would otherwise often land inside a
    // pass and wait for it): the latency is the debounce plus one observation (DescribeStackSet + every page).
    pass_just_ended(&daemon, big).await;
    let edited = Instant::now();
    save(&path, &yaml("v1"), Save::AtomicRename);
    let edit_latency = eventually(big, "a submitting line after the edit", || async {
        daemon
            .log_after(edited, "submitting")
            .map(|(at, _)| at - edited)
    })
    .await;
    wait_converged(&daemon, big).await;

    // Publication -> UpdateStackSet (a narrowing version: applied under Auto). The template poll runs on its own
    // 2 s timer, so the latency is (publication -> the poll that sees it, up to 2 s) + one observation.
    pass_just_ended(&daemon, big).await;
    let published = Instant::now();
    let published_at = std::time::SystemTime::now();
    templates.publish(&unnamed_role(&templates_support::v2()));
    let publication_latency =
        eventually(big, "a submitting line after the publication", || async {
            daemon
                .log_after(published, "submitting")
                .map(|(at, _)| at - published)
        })
        .await;
    let status = get(&daemon.addr, "/status").await.json();
    let to_poll = status["deployments"]["bench"]["templateFetch"]["lastChangedAt"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| t.duration_since(published_at).ok());
    wait_converged(&daemon, big).await;
    let hwm_end = proc_status_kib(pid, "VmHWM");

    let instances = accounts * regions;
    let mut row = Row {
        target: "moto: stacksetd run (release)".into(),
        accounts,
        regions,
        instances,
        setup: format!(
            "org {:.1} s, converge {:.1} s",
            build_time.as_secs_f64(),
            converge_time.as_secs_f64()
        ),
        calls,
        wall: Some(wall),
        cpu: Some(cpu),
        memory: format!(
            "VmHWM {:.1} MB (VmRSS {:.1} MB)",
            hwm_converged.unwrap_or(0) as f64 / 1024.0,
            rss_now.unwrap_or(0) as f64 / 1024.0
        ),
        edit_to_mutation: Some(edit_latency),
        publication_to_update: Some(publication_latency),
        ..Row::default()
    };
    row.notes.push(format!(
        "{passes} converged passes (resync 1 s); wall = reconcile_duration_seconds, CPU = the process's utime+stime \
         per pass (10 ms ticks; idle timers, template polls and a /metrics scrape every 500 ms included); VmHWM after the edit and the \
         publication too: {:.1} MB; SIGHUP pass (organization re-listed + pass): {} calls = {}, CPU {}; \
         edit saved just after a pass ended; publication latency with a 2 s template poll interval \
         (publication -> the poll that saw it: {})",
        hwm_end.unwrap_or(0) as f64 / 1024.0,
        hup_calls.values().sum::<f64>(),
        calls_text(&hup_calls),
        ms(Some(hup_cpu)),
        ms(to_poll)
    ));
    drop(daemon);

    let mut rows = vec![row];
    for part in ["stackset", "org"] {
        if let Some(v) = boto3(&server.endpoint(), part) {
            rows.push(boto3_row(&v, accounts, regions, instances));
        }
    }
    rows
}
