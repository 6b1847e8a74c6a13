//! Soak: the whole daemon in process against `sim` on tokio's paused clock, for 30 simulated days at the
//! default intervals (resync, template poll 5m; org scan 10m; drift detection every 6h), while accounts join,
//! move and leave, the template is republished, resources drift and the desired state is edited (a second
//! deployment added and removed, descriptions changed). Asserts that memory and the number of tasks stay flat
//! after a warm-up (a counting global allocator; the figures are printed), that the fleet ends converged, and that
//! no change was ever applied twice (the sim compares every accepted request with the one before it, whatever
//! its id: `Sim::repeated_changes`).
//!
//! Days: STACKSETD_SOAK_DAYS (default 30); the run stops early, after at least 7 days, when it has taken 50 s of
//! real time (a debug build on a busy 2-core machine), and prints how far it got.

mod daemon_support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use stacksetd::cloud::InstanceStatus;
use stacksetd::cloud::sim::{Initiator, Sim, SimConfig};
use stacksetd::controller;
use stacksetd::daemon::{Daemon, Options};
use tokio::sync::oneshot;

// Live heap bytes of the whole test binary.
#[path = "counting_alloc/mod.rs"]
mod counting_alloc;
use counting_alloc::{Counting, live_bytes};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

// ---------------------------------------------------------------------------------------------------------------

const REGION: &str = "us-west-2";
const MAIN: &str = "AimablyMain";
const EXTRA: &str = "AimablyExtra";
const HOUR: Duration = Duration::from_secs(3600);
/// The run stops early (after at least MIN_DAYS) when it has taken this long in real time.
const REAL_BUDGET: Duration = Duration::from_secs(50);
const MIN_DAYS: u64 = 7;

fn deployment(name: &str, stack_set: &str, description: &str, template: &Path) -> String {
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
    url: "file://{template}"
  parameters:
    ManagementAccountId: "123456789012"
  deploymentTargets:
    organizationalUnitIds: [ROOT]
  regions: [{REGION}]
  operationPreferences:
    failureTolerancePercentage: 100
    maxConcurrentPercentage: 100
    concurrencyMode: SOFT_FAILURE_TOLERANCE
  driftDetection:
    interval: 6h
    remediate: true
"#,
        template = template.display()
    )
}

/// The shipped template with its Description changed: a new publication that grants nothing new.
fn publish(path: &Path, version: usize) {
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/templates/aimably-data-only.json"
    ))
    .unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    doc["Description"] = serde_json::Value::String(format!("Aimably data only, version {version}"));
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn write_desired(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn members(sim: &Sim) -> BTreeSet<String> {
    let management = sim.management_account_id();
    sim.accounts()
        .into_iter()
        .filter(|(a, _)| a.state == "ACTIVE" && a.id != management)
        .map(|(a, _)| a.id)
        .collect()
}

/// Every active member has a CURRENT instance and there are no others.
fn check_converged(sim: &Sim, stack_set: &str) -> Result<(), String> {
    let instances = sim.instances(stack_set);
    let have: BTreeSet<String> = instances.iter().map(|i| i.account.clone()).collect();
    let want = members(sim);
    if have != want {
        return Err(format!(
            "{stack_set}: instances in {have:?}, members {want:?}"
        ));
    }
    if let Some(i) = instances
        .iter()
        .find(|i| i.status != InstanceStatus::Current)
    {
        return Err(format!("{stack_set}: {} is {:?}", i.account, i.status));
    }
    Ok(())
}

/// Every operation submitted through the API over the whole run, counted by action, and checked every hour for
/// a change applied twice. The sim forgets finished operations (as AWS's retention does, and so that its memory
/// stays flat), so they are read every hour; the set is allocated before the warm-up, so its growth is a few
/// strings.
struct Audit {
    /// (stack set, id, submitted at) of every record seen.
    records: HashSet<(&'static str, String, tokio::time::Instant)>,
    submitted: [usize; 2],
    /// Operations of MAIN by action (CREATE, UPDATE, DELETE, DETECT_DRIFT).
    actions: BTreeMap<&'static str, usize>,
}

impl Audit {
    fn new() -> Audit {
        Audit {
            records: HashSet::with_capacity(8192),
            submitted: [0; 2],
            actions: BTreeMap::new(),
        }
    }

    fn observe(&mut self, sim: &Sim) {
        for (i, stack_set) in [MAIN, EXTRA].into_iter().enumerate() {
            for op in sim.operations(stack_set) {
                if op.initiator != Initiator::Api
                    || !self
                        .records
                        .insert((stack_set, op.id.clone(), op.submitted_at))
                {
                    continue;
                }
                self.submitted[i] += 1;
                if i == 0 {
                    *self.actions.entry(op.action.as_str()).or_default() += 1;
                }
            }
        }
        let repeated = sim.repeated_changes();
        assert!(
            repeated.is_empty(),
            "a change was applied twice: {repeated:#?}"
        );
        sim.forget_finished_operations(KEEP_OPERATIONS);
    }
}

/// Finished operations the sim keeps per stack set (AWS keeps them for months; enough for the controller's
/// listings).
const KEEP_OPERATIONS: usize = 20;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn thirty_simulated_days() {
    let days: u64 = std::env::var("STACKSETD_SOAK_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(30);
    let real = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template.json");
    publish(&template, 0);
    let desired = dir.path().join("desired.yaml");
    write_desired(&desired, &deployment("main", MAIN, "soak", &template));

    let sim = Sim::new(SimConfig::default());
    let ou = sim.add_ou(&sim.root_id(), "Workloads");
    let other_ou = sim.add_ou(&sim.root_id(), "Sandbox");
    let mut joined: Vec<String> = (0..5)
        .map(|i| sim.add_account(&ou, &format!("member-{i}")))
        .collect();
    let config = controller::Config {
        resync_interval: Duration::from_secs(300),
        template_poll_interval: Duration::from_secs(300),
        org_scan_interval: Duration::from_secs(600),
        ..controller::Config::default()
    };
    let options = Options {
        max_read_rate: stacksetd::daemon::read_budget::DEFAULT_MAX_READ_RATE,
        access_check_interval: HOUR,
        ..Options::local(desired.clone())
    };
    let daemon = Daemon::bind(Arc::new(sim.clone()), config, options)
        .await
        .unwrap();
    let reloader = daemon.reloader();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run(async move {
        let _ = stopped.await;
    }));

    let mut audit = Audit::new();
    let mut version = 0;
    let mut counter = 5;
    let mut extra = false;
    let mut warm: Option<(isize, usize)> = None;
    let mut peak = (0isize, 0usize);
    let warm_up_hours = 48;
    let mut simulated = 0;
    for hour in 1..=days * 24 {
        // The real-time budget: the full 30 days on a quiet machine, never less than a week.
        if hour > MIN_DAYS * 24 && real.elapsed() > REAL_BUDGET {
            println!("real-time budget spent after {} simulated hours", hour - 1);
            break;
        }
        simulated = hour;
        // An account joins every 3 hours and the oldest leaves every 3 (an hour later), so the organization
        // keeps its size and memory can be compared; one moves between OUs every 11 hours.
        if hour % 3 == 0 {
            joined.push(sim.add_account(&ou, &format!("member-{counter}")));
            counter += 1;
        }
        if hour % 3 == 1 && joined.len() > 5 {
            sim.remove_account(&joined.remove(0));
        }
        if hour % 11 == 0 && !joined.is_empty() {
            let which = &joined[(hour as usize / 11) % joined.len()];
            let to = if (hour / 11) % 2 == 0 { &other_ou } else { &ou };
            sim.move_account(which, to);
        }
        // Someone edits a role in a member account.
        if hour % 7 == 0 {
            if let Some(account) = joined.first() {
                sim.drift_resources(MAIN, account, REGION);
            }
        }
        // The vendor publishes a new version daily.
        if hour % 24 == 12 {
            version += 1;
            publish(&template, version);
        }
        // The desired state is edited twice a day: a second deployment comes and goes, descriptions change.
        if hour % 12 == 6 {
            extra = !extra;
            let mut text = deployment("main", MAIN, &format!("soak, edit {hour}"), &template);
            if extra {
                text.push_str("---\n");
                text.push_str(&deployment("extra", EXTRA, "extra", &template));
            }
            write_desired(&desired, &text);
            reloader.reload();
        }
        tokio::time::sleep(HOUR).await;
        audit.observe(&sim);

        let now = (live_bytes(), alive_tasks());
        peak = (peak.0.max(now.0), peak.1.max(now.1));
        if hour == warm_up_hours {
            println!(
                "after warm-up ({warm_up_hours}h): {} live bytes, {} tasks",
                now.0, now.1
            );
            warm = Some(now);
        }
        if hour % (24 * 5) == 0 {
            println!(
                "day {}: {} live bytes, {} tasks, {} accounts, {} operations, {:?} real",
                hour / 24,
                now.0,
                now.1,
                members(&sim).len(),
                audit.submitted[0],
                real.elapsed()
            );
        }
    }

    let days = simulated as f64 / 24.0;
    // Quiet: the last edits, publications and drift settle.
    for _ in 0..8 {
        tokio::time::sleep(HOUR).await;
        audit.observe(&sim);
    }
    let end = (live_bytes(), alive_tasks());
    check_converged(&sim, MAIN).unwrap();
    let (main_ops, extra_ops) = (audit.submitted[0], audit.submitted[1]);
    println!("operations on {MAIN} by action: {:?}", audit.actions);
    // Drift was detected on its cadence; publications, edits and remediations were applied (accounts that join
    // and leave are auto-deployment's, which the sim runs itself).
    for action in ["CREATE", "UPDATE", "DETECT_DRIFT"] {
        assert!(
            audit.actions.get(action).is_some_and(|n| *n > 0),
            "no {action} operation: {:?}",
            audit.actions
        );
    }
    let description = sim.stack_set(MAIN).unwrap().settings.description;
    assert!(
        description
            .as_deref()
            .is_some_and(|d| d.starts_with("soak, edit")),
        "the last desired-state edit is applied: {description:?}"
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the daemon stops")
        .unwrap()
        .unwrap();

    // Where the memory is: the daemon's share goes with it, the sim's with the sim.
    let after_daemon = live_bytes();
    drop(reloader);
    let sim_ops = sim.operations(MAIN).len() + sim.operations(EXTRA).len();
    let accounts = members(&sim).len();
    drop(sim);
    let after_sim = live_bytes();
    println!(
        "at the end: {} live bytes with the daemon running, {after_daemon} after it stopped, {after_sim} after \
         the sim ({sim_ops} operations) was dropped",
        end.0
    );

    let (warm_bytes, warm_tasks) = warm.expect("the run outlasts the warm-up");
    let growth = end.0 - warm_bytes;
    println!(
        "soak: {days:.1} simulated days in {:?} real; live bytes {warm_bytes} after warm-up, {} at the end \
         ({growth:+}), peak {}; tasks {warm_tasks} after warm-up, {} at the end, peak {}; operations submitted: \
         {main_ops} on {MAIN}, {extra_ops} on {EXTRA}; {} template versions; {} accounts at the end",
        real.elapsed(),
        end.0,
        peak.0,
        end.1,
        peak.1,
        version,
        accounts
    );
    // Allow for the audit's strings (about 100 bytes per operation) and noise.
    let allowance = 256 * 1024;
    assert!(
        growth < allowance,
        "live memory grew by {growth} bytes after the warm-up (allowed {allowance})"
    );
    assert!(
        end.1 <= warm_tasks + 2,
        "tasks grew from {warm_tasks} to {}",
        end.1
    );
}
