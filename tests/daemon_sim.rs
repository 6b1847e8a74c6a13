//! The daemon in process against `sim` (real time: the file watch needs it): edits, invalid files, removed and
//! changed deployments, trigger de-duplication, the concurrency cap, shutdown, and the HTTP endpoints. The same
//! behaviour as a process against moto is in tests/daemon_process.rs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::daemon_support::*;
use async_trait::async_trait;
use serde_json::Value;
use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::cloud::*;
use stacksetd::controller;
use stacksetd::daemon::{Daemon, Options, Reloader};
use stacksetd::error::Error;
use tokio::sync::oneshot;

const REGION: &str = "us-east-1";
/// Generous bounds for things that take milliseconds: the machine is shared.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------------------------
// A probing Cloud: delays DescribeStackSet on demand, tracks passes in flight, timestamps mutating calls.

struct Probe {
    inner: Sim,
    describe_delay_ms: AtomicU64,
    in_flight: Mutex<InFlight>,
    mutations: Mutex<Vec<(Instant, &'static str)>>,
}

#[derive(Default)]
struct InFlight {
    total: usize,
    max_total: usize,
    per_stack_set: BTreeMap<String, usize>,
    max_per_stack_set: usize,
}

impl Probe {
    fn new(inner: Sim) -> Arc<Probe> {
        Arc::new(Probe {
            inner,
            describe_delay_ms: AtomicU64::new(0),
            in_flight: Mutex::default(),
            mutations: Mutex::default(),
        })
    }

    fn set_delay(&self, delay: Duration) {
        self.describe_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    fn mutated(&self, what: &'static str) {
        self.mutations.lock().unwrap().push((Instant::now(), what));
    }

    fn first_mutation_after(&self, t: Instant) -> Option<(Instant, &'static str)> {
        self.mutations
            .lock()
            .unwrap()
            .iter()
            .find(|(at, _)| *at >= t)
            .copied()
    }

    fn mutation_count(&self) -> usize {
        self.mutations.lock().unwrap().len()
    }

    fn in_flight_now(&self) -> usize {
        self.in_flight.lock().unwrap().total
    }

    fn max_in_flight(&self) -> (usize, usize) {
        let f = self.in_flight.lock().unwrap();
        (f.max_total, f.max_per_stack_set)
    }
}

#[async_trait]
impl Cloud for Probe {
    async fn caller_account(&self) -> Result<String, Error> {
        self.inner.caller_account().await
    }
    async fn describe_organization(&self) -> Result<OrganizationInfo, Error> {
        self.inner.describe_organization().await
    }
    async fn list_roots(&self) -> Result<Vec<OrgNode>, Error> {
        self.inner.list_roots().await
    }
    async fn list_organizational_units(&self, parent: &str) -> Result<Vec<OrgNode>, Error> {
        self.inner.list_organizational_units(parent).await
    }
    async fn list_accounts(&self, parent: &str) -> Result<Vec<Account>, Error> {
        self.inner.list_accounts(parent).await
    }
    /// Every pass calls this once (after the template and the organization): the pass's "in flight" window.
    async fn describe_stack_set(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> Result<Option<ObservedStackSet>, Error> {
        {
            let mut f = self.in_flight.lock().unwrap();
            f.total += 1;
            f.max_total = f.max_total.max(f.total);
            let n = f.per_stack_set.entry(name.to_string()).or_default();
            *n += 1;
            let n = *n;
            f.max_per_stack_set = f.max_per_stack_set.max(n);
        }
        let delay = self.describe_delay_ms.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let result = self.inner.describe_stack_set(name, call_as).await;
        let mut f = self.in_flight.lock().unwrap();
        f.total -= 1;
        *f.per_stack_set.get_mut(name).expect("entered above") -= 1;
        result
    }
    async fn list_stack_instances(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> Result<Vec<StackInstance>, Error> {
        self.inner.list_stack_instances(name, call_as).await
    }
    async fn list_operations(
        &self,
        name: &str,
        call_as: CallAs,
        limit: usize,
    ) -> Result<Vec<Operation>, Error> {
        self.inner.list_operations(name, call_as, limit).await
    }
    async fn describe_operation(
        &self,
        name: &str,
        id: &str,
        call_as: CallAs,
    ) -> Result<Operation, Error> {
        self.inner.describe_operation(name, id, call_as).await
    }
    async fn list_operation_results(
        &self,
        name: &str,
        id: &str,
        call_as: CallAs,
    ) -> Result<Vec<OperationResult>, Error> {
        self.inner.list_operation_results(name, id, call_as).await
    }
    async fn create_stack_set(&self, r: &CreateStackSet) -> Result<(), Error> {
        self.mutated("CreateStackSet");
        self.inner.create_stack_set(r).await
    }
    async fn update_stack_set(&self, r: &UpdateStackSet) -> Result<String, Error> {
        self.mutated("UpdateStackSet");
        self.inner.update_stack_set(r).await
    }
    async fn create_stack_instances(&self, r: &InstancesRequest) -> Result<String, Error> {
        self.mutated("CreateStackInstances");
        self.inner.create_stack_instances(r).await
    }
    async fn update_stack_instances(&self, r: &InstancesRequest) -> Result<String, Error> {
        self.mutated("UpdateStackInstances");
        self.inner.update_stack_instances(r).await
    }
    async fn delete_stack_instances(&self, r: &DeleteInstancesRequest) -> Result<String, Error> {
        self.mutated("DeleteStackInstances");
        self.inner.delete_stack_instances(r).await
    }
    async fn delete_stack_set(&self, name: &str, call_as: CallAs) -> Result<(), Error> {
        self.mutated("DeleteStackSet");
        self.inner.delete_stack_set(name, call_as).await
    }
    async fn list_delegated_administrators(
        &self,
        service_principal: &str,
    ) -> Result<Vec<String>, Error> {
        self.inner
            .list_delegated_administrators(service_principal)
            .await
    }
    async fn list_aws_service_access(&self) -> Result<Vec<String>, Error> {
        self.inner.list_aws_service_access().await
    }
    async fn describe_organizations_access(&self, call_as: CallAs) -> Result<String, Error> {
        self.inner.describe_organizations_access(call_as).await
    }
    async fn activate_organizations_access(&self) -> Result<(), Error> {
        self.inner.activate_organizations_access().await
    }
    async fn detect_stack_set_drift(
        &self,
        request: &stacksetd::cloud::DetectDriftRequest,
    ) -> Result<String, Error> {
        self.mutated("DetectStackSetDrift");
        self.inner.detect_stack_set_drift(request).await
    }
    async fn assume_role(&self, role_arn: &str, session_name: &str) -> Result<(), Error> {
        self.inner.assume_role(role_arn, session_name).await
    }
    async fn list_stack_sets(&self, call_as: CallAs) -> Result<Vec<String>, Error> {
        self.inner.list_stack_sets(call_as).await
    }
    async fn stage_template(&self, bucket: &str, key: &str, body: &str) -> Result<String, Error> {
        self.mutated("PutObject");
        self.inner.stage_template(bucket, key, body).await
    }
    async fn check_no_new_access(
        &self,
        existing: &str,
        new: &str,
        kind: stacksetd::cloud::PolicyKind,
    ) -> Result<stacksetd::cloud::AccessVerdict, Error> {
        self.inner.check_no_new_access(existing, new, kind).await
    }
    fn calls(&self) -> &CallCounter {
        self.inner.calls()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A daemon in process

struct Running {
    addr: String,
    path: PathBuf,
    sim: Sim,
    probe: Arc<Probe>,
    reloader: Reloader,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
    _dir: tempfile::TempDir,
}

struct Setup {
    yaml: String,
    resync: Duration,
    concurrency: usize,
    shutdown_timeout: Duration,
    describe_delay: Duration,
    access_check_interval: Duration,
    deletion_delay: Duration,
    status_token: Option<String>,
    /// The sim's realistic organization (nested OUs, a suspended account) instead of three accounts.
    realistic: bool,
}

impl Setup {
    fn new(yaml: String) -> Setup {
        Setup {
            yaml,
            resync: Duration::from_secs(3600),
            concurrency: 4,
            shutdown_timeout: Duration::from_secs(10),
            describe_delay: Duration::ZERO,
            access_check_interval: Duration::from_secs(3600),
            deletion_delay: controller::DEFAULT_DELETION_DELAY,
            status_token: None,
            realistic: false,
        }
    }

    async fn start(self) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desired.yaml");
        std::fs::write(&path, &self.yaml).unwrap();
        let sim_config = SimConfig {
            instance_duration: Duration::from_millis(20),
            operation_overhead: Duration::from_millis(10),
            ..SimConfig::default()
        };
        let sim = if self.realistic {
            Sim::realistic(sim_config)
        } else {
            let sim = Sim::new(sim_config);
            let ou = sim.add_ou(&sim.root_id(), "Workloads");
            for i in 0..3 {
                sim.add_account(&ou, &format!("member-{i}"));
            }
            sim
        };
        let probe = Probe::new(sim.clone());
        probe.set_delay(self.describe_delay);
        let config = controller::Config {
            resync_interval: self.resync,
            poll_min: Duration::from_millis(20),
            poll_max: Duration::from_millis(200),
            error_backoff_base: Duration::from_millis(50),
            error_backoff_max: Duration::from_secs(1),
            org_scan_interval: Duration::from_secs(3600),
            deletion_delay: self.deletion_delay,
            ..controller::Config::default()
        };
        let options = Options {
            status_token: self.status_token.clone(),
            concurrency: self.concurrency,
            shutdown_timeout: self.shutdown_timeout,
            access_check_interval: self.access_check_interval,
            ..Options::local(path.clone())
        };
        let daemon = Daemon::bind(probe.clone(), config, options).await.unwrap();
        let addr = daemon.local_addr().to_string();
        let reloader = daemon.reloader();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(daemon.run(async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            path,
            sim,
            probe,
            reloader,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }
}

impl Running {
    async fn status(&self) -> Value {
        get(&self.addr, "/status").await.json()
    }

    async fn metrics(&self) -> String {
        get(&self.addr, "/metrics").await.body
    }

    async fn passes(&self, deployment: &str) -> f64 {
        metric_sum(
            &self.metrics().await,
            "stacksetd_reconcile_total",
            &[("deployment", deployment)],
        )
    }

    /// Wait until /readyz says 200 and `deployment`'s Ready condition is True.
    async fn converged(&self, deployment: &str) {
        eventually(WAIT, &format!("{deployment} converged"), || async {
            let ready = get(&self.addr, "/readyz").await.status == 200;
            let s = self.status().await;
            (ready && condition(&s, deployment, "Ready")["status"] == "True").then_some(())
        })
        .await;
    }

    /// Shut down; returns how long it took.
    async fn shutdown(mut self) -> Duration {
        let started = Instant::now();
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the daemon returns after shutdown")
            .expect("the daemon task does not panic")
            .expect("the daemon returns Ok");
        started.elapsed()
    }
}

fn condition<'a>(status: &'a Value, deployment: &str, kind: &str) -> &'a Value {
    status["deployments"][deployment]["conditions"]
        .as_array()
        .unwrap_or_else(|| panic!("no deployment {deployment} in {status:#}"))
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no condition {kind}"))
}

fn generation(yaml: &str) -> String {
    stacksetd::desired::parse_str(yaml, std::path::Path::new("x.yaml"))
        .unwrap()
        .remove(0)
        .generation()
}

// ---------------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_reconciles_at_once_in_every_save_style() {
    let yaml = deployment_yaml("aimably", "Aimably", "v0", REGION);
    let daemon = Setup::new(yaml).start().await;
    daemon.converged("aimably").await;
    let status = daemon.status().await;
    let d = &status["deployments"]["aimably"];
    assert_eq!(d["observedGeneration"], d["generation"], "{status:#}");
    assert_eq!(
        condition(&status, "aimably", "Ready")["reason"],
        "Converged"
    );
    assert_eq!(condition(&status, "aimably", "Stalled")["status"], "False");
    assert_eq!(d["lastOutcome"]["report"]["accountsTargeted"], 3, "{d:#}");
    assert_eq!(
        crate::daemon_support::snake_case_keys(&status),
        Vec::<String>::new(),
        "/status has one key casing (camelCase): {status:#}"
    );

    for (i, how) in [
        Save::AtomicRename,
        Save::TruncateWrite,
        Save::DeleteRecreate,
    ]
    .into_iter()
    .enumerate()
    {
        let description = format!("v{}", i + 1);
        let yaml = deployment_yaml("aimably", "Aimably", &description, REGION);
        let edited = Instant::now();
        save(&daemon.path, &yaml, how);
        let (at, call) = eventually(WAIT, "a mutating call after the edit", || async {
            daemon.probe.first_mutation_after(edited)
        })
        .await;
        println!(
            "{how:?}: edit -> first mutating call ({call}) {:?} (debounce {:?})",
            at - edited,
            stacksetd::file_watch::DEBOUNCE
        );
        assert!(at - edited < Duration::from_secs(5), "{how:?} too slow");
        eventually(WAIT, "the new description applied", || async {
            let set = daemon.sim.stack_set("Aimably")?;
            (set.settings.description.as_deref() == Some(description.as_str())).then_some(())
        })
        .await;
        daemon.converged("aimably").await;
        let status = daemon.status().await;
        assert_eq!(
            status["deployments"]["aimably"]["observedGeneration"],
            generation(&yaml)
        );
    }
    let metrics = daemon.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "stacksetd_desired_state_reloads_total",
            &[("result", "valid")]
        ),
        Some(4.0),
        "the start and three edits:\n{metrics}"
    );
    daemon.shutdown().await;
}

/// A file written in place in two parts (`cat > file`, an upload, a tool that truncates then writes) with a pause
/// longer than the debounce: the first part alone is valid YAML with one Region fewer. The daemon must not take
/// it for the desired state (two reads 200 ms apart disagree), so nothing is deleted, with no deletion_delay to
/// catch it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_in_place_in_two_parts_deletes_nothing() {
    use std::io::Write;
    let full = deployment_yaml("aimably", "Aimably", "v0", "us-east-1, eu-west-1").replace(
        "  regions: [us-east-1, eu-west-1]\n",
        "  regions:\n    - us-east-1\n    - eu-west-1\n",
    );
    let split = full
        .find("    - eu-west-1\n")
        .expect("the second Region's line");
    let (first, rest) = full.split_at(split);
    assert!(
        stacksetd::desired::parse_str(first, std::path::Path::new("x.yaml")).is_ok(),
        "the first part is valid alone"
    );
    let mut setup = Setup::new(full.clone());
    setup.deletion_delay = Duration::ZERO;
    let daemon = setup.start().await;
    daemon.converged("aimably").await;
    let deletions = || {
        daemon
            .probe
            .mutations
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, w)| *w == "DeleteStackInstances")
            .count()
    };

    // The same content written again, in place, with a pause longer than the debounce between the parts.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&daemon.path)
        .unwrap();
    file.write_all(first.as_bytes()).unwrap();
    file.flush().unwrap();
    tokio::time::sleep(stacksetd::file_watch::DEBOUNCE + Duration::from_millis(100)).await;
    file.write_all(rest.as_bytes()).unwrap();
    drop(file);
    tokio::time::sleep(Duration::from_secs(2)).await;
    daemon.converged("aimably").await;
    assert_eq!(
        deletions(),
        0,
        "the half-written file was never the desired state"
    );
    assert_eq!(
        daemon
            .sim
            .stack_set("Aimably")
            .unwrap()
            .regions
            .map(|r| r.len()),
        Some(2)
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_configmap_swap_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut cm = ConfigMapDir::new(
        dir.path(),
        &deployment_yaml("aimably", "Aimably", "v0", REGION),
    );
    // Setup writes a plain file; this daemon is built by hand on the ConfigMap's path.
    let sim = Sim::new(SimConfig {
        instance_duration: Duration::from_millis(20),
        operation_overhead: Duration::from_millis(10),
        ..SimConfig::default()
    });
    let ou = sim.add_ou(&sim.root_id(), "Workloads");
    sim.add_account(&ou, "member-0");
    let config = controller::Config {
        poll_min: Duration::from_millis(20),
        ..controller::Config::default()
    };
    let options = Options {
        concurrency: 1,
        shutdown_timeout: Duration::from_secs(5),
        ..Options::local(cm.path())
    };
    let daemon = Daemon::bind(Arc::new(sim.clone()), config, options)
        .await
        .unwrap();
    let addr = daemon.local_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run(async move {
        let _ = stopped.await;
    }));
    eventually(WAIT, "created", || async {
        sim.stack_set("Aimably").map(|_| ())
    })
    .await;
    for version in ["v1", "v2"] {
        cm.update(&deployment_yaml("aimably", "Aimably", version, REGION));
        eventually(WAIT, "the swapped content applied", || async {
            let set = sim.stack_set("Aimably")?;
            (set.settings.description.as_deref() == Some(version)).then_some(())
        })
        .await;
    }
    let status = get(&addr, "/status").await.json();
    assert_eq!(status["desiredState"]["lastLoad"]["result"], "valid");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_at_start_is_not_ready_until_fixed() {
    let daemon = Setup::new(invalid_yaml("aimably", "Aimably", REGION))
        .start()
        .await;
    let readyz = eventually(WAIT, "the invalid load recorded", || async {
        let r = get(&daemon.addr, "/readyz").await;
        r.body.contains("desired.yaml:18:").then_some(r)
    })
    .await;
    assert_eq!(readyz.status, 503, "{readyz:?}");
    assert!(
        readyz.body.contains("no valid desired state"),
        "{}",
        readyz.body
    );
    assert_eq!(get(&daemon.addr, "/healthz").await.status, 200);
    let status = daemon.status().await;
    let load = &status["desiredState"]["lastLoad"];
    assert_eq!(load["result"], "invalid", "{status:#}");
    assert_eq!(load["problems"][0]["line"], 18, "{status:#}");
    assert_eq!(
        load["problems"][0]["field"],
        "spec.operationPreferences.maxConcurrentCount"
    );
    assert_eq!(status["desiredState"]["appliedSha256"], Value::Null);
    assert_eq!(status["deployments"], serde_json::json!({}));
    let metrics = daemon.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "stacksetd_desired_state_reloads_total",
            &[("result", "invalid")]
        ),
        Some(1.0)
    );
    assert_eq!(daemon.probe.mutation_count(), 0, "nothing applied");

    save(
        &daemon.path,
        &deployment_yaml("aimably", "Aimably", "fixed", REGION),
        Save::AtomicRename,
    );
    daemon.converged("aimably").await;
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_keeps_the_last_good_state_reconciling() {
    let good = deployment_yaml("aimably", "Aimably", "good", REGION);
    let mut setup = Setup::new(good.clone());
    setup.resync = Duration::from_millis(100);
    let daemon = setup.start().await;
    daemon.converged("aimably").await;
    let applied = daemon.status().await["desiredState"]["appliedSha256"].clone();

    save(
        &daemon.path,
        &invalid_yaml("aimably", "Aimably", REGION),
        Save::AtomicRename,
    );
    let status = eventually(WAIT, "the invalid edit recorded", || async {
        let s = daemon.status().await;
        (s["desiredState"]["lastLoad"]["result"] == "invalid").then_some(s)
    })
    .await;
    let error = status["desiredState"]["lastLoad"]["error"]
        .as_str()
        .unwrap();
    assert!(
        error.contains("desired.yaml:18:25: spec.operationPreferences.maxConcurrentCount"),
        "{error}"
    );
    assert_eq!(status["desiredState"]["appliedSha256"], applied);
    assert_eq!(
        status["deployments"]["aimably"]["observedGeneration"],
        generation(&good)
    );
    let before = daemon.passes("aimably").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = daemon.passes("aimably").await;
    assert!(
        after >= before + 2.0,
        "still resyncing: {before} -> {after}"
    );
    assert_eq!(get(&daemon.addr, "/readyz").await.status, 200);
    let set = daemon.sim.stack_set("Aimably").unwrap();
    assert_eq!(set.settings.description.as_deref(), Some("good"));
    let metrics = daemon.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "stacksetd_desired_state_reloads_total",
            &[("result", "invalid")]
        ),
        Some(1.0)
    );
    // Visible where an operator looks, not only in the raw JSON: the gauge the alert reads, the page's banner,
    // and `stacksetd status` (which fails) with the first problem's file and line.
    assert_eq!(
        metric(&metrics, "stacksetd_desired_state_valid", &[]),
        Some(0.0)
    );
    let page = get(&daemon.addr, "/").await;
    let html = page.body;
    assert!(
        html.contains("Desired state rejected: ") && html.contains("desired.yaml:18:25"),
        "{html}"
    );
    let doc: stacksetd::cli::status_view::StatusDocument =
        serde_json::from_value(serde_json::json!({
            "source": "daemon",
            "desiredState": status["desiredState"]["lastLoad"].clone(),
            "deployments": {}
        }))
        .expect("a status document");
    assert!(stacksetd::cli::status_view::has_errors(&doc));
    let text = stacksetd::cli::status_view::text(&doc);
    assert!(
        text.contains("desired state: REJECTED") && text.contains("desired.yaml:18:25"),
        "{text}"
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_deployments_stop_and_changed_ones_get_a_new_generation() {
    let both = format!(
        "{}---\n{}",
        deployment_yaml("a", "StackA", "a0", REGION),
        deployment_yaml("b", "StackB", "b0", REGION)
    );
    let mut setup = Setup::new(both);
    setup.resync = Duration::from_millis(100);
    let daemon = setup.start().await;
    daemon.converged("a").await;
    daemon.converged("b").await;

    let only_a = deployment_yaml("a", "StackA", "a1", REGION);
    save(&daemon.path, &only_a, Save::AtomicRename);
    eventually(WAIT, "a at its new generation, b gone", || async {
        let s = daemon.status().await;
        let a = &s["deployments"]["a"];
        (a["observedGeneration"] == generation(&only_a) && s["deployments"].get("b").is_none())
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b_passes = daemon.passes("b").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        daemon.passes("b").await,
        b_passes,
        "b is no longer reconciled"
    );
    assert!(
        daemon.sim.stack_set("StackB").is_some(),
        "b's stack set is left alone"
    );
    assert!(
        !daemon.sim.instances("StackB").is_empty(),
        "and its instances"
    );
    let metrics = daemon.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "stacksetd_last_successful_reconcile_timestamp_seconds",
            &[("deployment", "b")]
        ),
        None,
        "no stale gauge for a removed deployment"
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_during_a_pass_cause_exactly_one_more_pass() {
    let daemon = Setup::new(deployment_yaml("aimably", "Aimably", "v0", REGION))
        .start()
        .await;
    daemon.converged("aimably").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = daemon.passes("aimably").await;
    daemon.probe.set_delay(Duration::from_millis(400));
    daemon.reloader.reload();
    eventually(WAIT, "the forced pass in flight", || async {
        (daemon.probe.in_flight_now() == 1).then_some(())
    })
    .await;
    for _ in 0..4 {
        daemon.reloader.reload();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = daemon.passes("aimably").await;
    assert_eq!(after - before, 2.0, "the forced pass and exactly one more");
    let (_, per_stack_set) = daemon.probe.max_in_flight();
    assert_eq!(
        per_stack_set, 1,
        "never two passes of one deployment at once"
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_cap_holds_across_deployments() {
    let three = ["a", "b", "c"]
        .iter()
        .map(|n| deployment_yaml(n, &format!("Stack{n}"), n, REGION))
        .collect::<Vec<_>>()
        .join("---\n");
    let mut setup = Setup::new(three);
    setup.concurrency = 2;
    setup.describe_delay = Duration::from_millis(200);
    let daemon = setup.start().await;
    for n in ["a", "b", "c"] {
        daemon.converged(n).await;
    }
    let (total, per_stack_set) = daemon.probe.max_in_flight();
    assert_eq!(total, 2, "three deployments, two at a time");
    assert_eq!(per_stack_set, 1);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_starts_no_operation_and_is_bounded() {
    // A pass is inside DescribeStackSet when shutdown begins: it finishes, but its CreateStackSet is not sent.
    let mut setup = Setup::new(deployment_yaml("aimably", "Aimably", "v0", REGION));
    setup.describe_delay = Duration::from_millis(500);
    let daemon = setup.start().await;
    eventually(WAIT, "the first pass in flight", || async {
        (daemon.probe.max_in_flight().0 == 1).then_some(())
    })
    .await;
    let sim = daemon.sim.clone();
    let probe = daemon.probe.clone();
    let took = daemon.shutdown().await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(
        sim.stack_set("Aimably").is_none(),
        "no CreateStackSet after shutdown"
    );
    assert_eq!(
        probe.mutation_count(),
        0,
        "the gate above the cloud refused it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_pass_is_cancelled_at_the_shutdown_timeout() {
    let mut setup = Setup::new(deployment_yaml("aimably", "Aimably", "v0", REGION));
    setup.describe_delay = Duration::from_secs(60);
    setup.shutdown_timeout = Duration::from_millis(500);
    let daemon = setup.start().await;
    eventually(WAIT, "the first pass in flight", || async {
        (daemon.probe.max_in_flight().0 == 1).then_some(())
    })
    .await;
    let took = daemon.shutdown().await;
    // The drain gives up shortly before the timeout (the rest is the HTTP server's), then run returns.
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_get_and_head_only() {
    let daemon = Setup::new(deployment_yaml("aimably", "Aimably", "v0", REGION))
        .start()
        .await;
    daemon.converged("aimably").await;
    for path in ["/healthz", "/readyz", "/metrics", "/status"] {
        let head = request(&daemon.addr, "HEAD", path).await.unwrap();
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path} has no body");
        for method in ["POST", "PUT", "DELETE"] {
            let r = request(&daemon.addr, method, path).await.unwrap();
            assert_eq!(r.status, 405, "{method} {path}");
        }
    }
    assert_eq!(get(&daemon.addr, "/nope").await.status, 404);
    let metrics = get(&daemon.addr, "/metrics").await;
    assert!(
        metrics
            .headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        metrics.headers
    );
    let text = metrics.body;
    // The exposition format: every sample belongs to a family announced by # HELP and # TYPE.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                text.contains(&format!("# TYPE {base} histogram"))
                    .then_some(base)
            })
            .unwrap_or(name);
        assert!(
            text.contains(&format!("# HELP {family} "))
                && text.contains(&format!("# TYPE {family} ")),
            "{line}: no HELP/TYPE for {family}"
        );
        assert!(family.starts_with("stacksetd_"), "{family}");
    }
    for (name, labels) in [
        (
            "stacksetd_reconcile_total",
            vec![("deployment", "aimably"), ("result", "converged")],
        ),
        (
            "stacksetd_reconcile_duration_seconds_count",
            vec![("deployment", "aimably")],
        ),
        (
            "stacksetd_last_successful_reconcile_timestamp_seconds",
            vec![("deployment", "aimably")],
        ),
        (
            "stacksetd_desired_state_reloads_total",
            vec![("result", "valid")],
        ),
        (
            "stacksetd_aws_requests_total",
            vec![
                ("service", "cloudformation"),
                ("operation", "CreateStackSet"),
                ("outcome", "ok"),
            ],
        ),
    ] {
        let value = metric(&text, name, &labels);
        assert!(
            value.is_some_and(|v| v > 0.0),
            "{name}{labels:?} in\n{text}"
        );
    }
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_stall_with_backoff_and_recover_after_success() {
    let mut setup = Setup::new(deployment_yaml("aimably", "Aimably", "v0", REGION));
    setup.resync = Duration::from_millis(100);
    let daemon = setup.start().await;
    daemon.converged("aimably").await;
    daemon.sim.fail_next(
        "DescribeStackSet",
        stacksetd::error::AwsErrorKind::AccessDenied,
        3,
    );
    let stalled = eventually(WAIT, "Stalled after AccessDenied", || async {
        let s = daemon.status().await;
        let d = &s["deployments"]["aimably"];
        (condition(&s, "aimably", "Stalled")["status"] == "True"
            && d["consecutiveFailures"].as_u64() >= Some(2))
        .then(|| s.clone())
    })
    .await;
    let d = &stalled["deployments"]["aimably"];
    assert_eq!(
        condition(&stalled, "aimably", "Stalled")["reason"],
        "access_denied"
    );
    assert_eq!(condition(&stalled, "aimably", "Ready")["status"], "False");
    assert_eq!(d["lastError"]["reason"], "access_denied", "{d:#}");
    // The backoff grows with each failure (base 50 ms doubling, ±20% jitter), beyond the 100 ms resync.
    assert!(
        d["requeueAfterSeconds"].as_f64().unwrap() > 0.15,
        "backed off: {d:#}"
    );
    let metrics = daemon.metrics().await;
    assert!(
        metric(
            &metrics,
            "stacksetd_reconcile_errors_total",
            &[("deployment", "aimably"), ("reason", "access_denied")]
        )
        .is_some_and(|v| v >= 2.0),
        "{metrics}"
    );
    // The fault runs out: the next pass succeeds and the failure count resets.
    let recovered = eventually(WAIT, "recovered", || async {
        let s = daemon.status().await;
        (condition(&s, "aimably", "Ready")["status"] == "True").then(|| s.clone())
    })
    .await;
    let d = &recovered["deployments"]["aimably"];
    assert_eq!(d["consecutiveFailures"], 0);
    assert_eq!(d["lastError"], Value::Null);
    assert_eq!(
        condition(&recovered, "aimably", "Stalled")["status"],
        "False"
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_access_failures_are_counted_and_listed_on_status() {
    let yaml = format!(
        "{}  accessCheck: {{roleName: AimablyMemberRole}}\n",
        deployment_yaml("aimably", "Aimably", "v0", REGION)
    );
    let mut setup = Setup::new(yaml);
    setup.access_check_interval = Duration::from_millis(200);
    let daemon = setup.start().await;
    daemon.converged("aimably").await;
    let members: Vec<String> = daemon
        .sim
        .accounts()
        .into_iter()
        .map(|(a, _)| a.id)
        .filter(|id| *id != daemon.sim.management_account_id())
        .collect();
    assert_eq!(members.len(), 3);
    eventually(WAIT, "a clean access check", || async {
        let text = daemon.metrics().await;
        let checked = metric(
            &text,
            "stacksetd_member_access_checked_accounts",
            &[("deployment", "aimably")],
        );
        let failed = metric(
            &text,
            "stacksetd_member_access_failures",
            &[("deployment", "aimably")],
        );
        (checked == Some(3.0) && failed == Some(0.0)).then_some(())
    })
    .await;

    daemon
        .sim
        .deny_access(&members[1], "an SCP denies sts:AssumeRole");
    let access = eventually(WAIT, "the failure on /status", || async {
        let status = daemon.status().await;
        let access = status["deployments"]["aimably"]["access"].clone();
        (access["failed"] == 1).then_some(access)
    })
    .await;
    assert_eq!(access["roleName"], "AimablyMemberRole");
    assert_eq!(access["checked"], 3);
    assert_eq!(access["failures"][0]["account"], members[1].as_str());
    assert_eq!(access["failures"][0]["kind"], "access_denied");
    assert!(
        access["failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("an SCP denies sts:AssumeRole")
    );
    let text = daemon.metrics().await;
    assert_eq!(
        metric(
            &text,
            "stacksetd_member_access_failures",
            &[("deployment", "aimably")]
        ),
        Some(1.0)
    );
    // No per-account label anywhere in the exposition.
    assert!(!text.contains(members[1].as_str()), "{text}");
    daemon.shutdown().await;
}

#[path = "daemon_sim/credentials.rs"]
mod credentials;
#[path = "daemon_sim/events.rs"]
mod events;
#[path = "daemon_sim/http_hardening.rs"]
mod http_hardening;
#[path = "daemon_sim/page_chromium.rs"]
mod page_chromium;
