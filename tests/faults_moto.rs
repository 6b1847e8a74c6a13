//! The stacksetd binary against moto through a fault proxy (tests/fault_support/proxy.rs): 20% of requests
//! throttled the way each service throttles, 5% answered 500/503 InternalFailure, 2% dropped before they reach
//! moto, 2% of reads and 50% of mutating calls dropped AFTER moto applied them (the answer is lost), 5% answered
//! slowly. `reconcile --once` deploys a 30-account organization from nothing, then an edit that adds an OU and
//! changes the description; then `stacksetd run` (with fewer SDK attempts, so errors also reach the daemon's own
//! backoff) follows another edit. Checked directly against moto through the SDK: every desired instance exists,
//! no instance was deleted, and no stack set operation was submitted twice (the same change under two sequence
//! numbers). The seed ($FAULT_SEED to replay another), the faults dealt and the retries are printed.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::daemon_support::process::{DaemonProcess, START_TIMEOUT};
use crate::daemon_support::{eventually, get, metric_sum};
use crate::fault_support::proxy::{FaultProxy, Rates};
use crate::fault_support::*;

const DEFAULT_SEED: u64 = 0x5eed_0007;

/// The faults of this test (20% throttling + 5% errors, plus lost connections and slow answers).
fn faults() -> Rates {
    Rates {
        drop_before: 0.02,
        throttle: 0.20,
        server_error: 0.05,
        drop_after: 0.02,
        drop_after_mutating: 0.5,
        slow: 0.05,
        slow_max: Duration::from_millis(400),
        slow_mutating: 0.0,
        slow_mutating_max: Duration::ZERO,
    }
}

/// 30 member accounts targeted at first (Engineering 12 > Platform 8, Finance 10), and Sales (4) added later.
fn org_spec() -> OrgSpec {
    let mut spec = OrgSpec::standard();
    spec.ous.push(OuSpec::new("Sales", None, 4));
    spec
}

/// How long the daemon gets to converge through the faults (its error backoff starts at 2-4 s).
/// The daemon retries a failed pass with exponential backoff (2 s doubling, capped at 300 s): with 2 SDK attempts
/// per call, a run of unlucky passes can legitimately take longer than 150 s (seen once on fakecloud). An
/// organization scan of ~10 pages then fails about half the time (any page failing twice fails the scan, by design:
/// a partial listing is never planned from), and six scans failing in a row (seen once on moto, 2026-12-02: the
/// seventh pass came 283 s after the sixth) need the backoffs up to the cap: the daemon phase allows two capped
/// backoffs beyond the 150 s. A daemon that never converges still fails here.
const DAEMON_CONVERGE_TIMEOUT: Duration = Duration::from_secs(150 + 2 * 300);

async fn reconcile_once_via(
    server: &MotoServer,
    proxy: &FaultProxy,
    desired: &std::path::Path,
) -> (std::process::Output, Duration) {
    let mut command = stacksetd_via(server, &proxy.endpoint());
    command
        .arg("--desired")
        .arg(desired)
        .args(["reconcile", "--once"]);
    let started = Instant::now();
    let output = run(command).await;
    (output, started.elapsed())
}

/// Lines of stacksetd's stderr saying a pass hit a transient error and was retried.
fn pass_retries(output: &std::process::Output) -> usize {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains("transient error; retrying"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_and_the_daemon_converge_through_throttling_errors_and_lost_answers_without_duplicates()
 {
    let server = MotoServer::start();
    let seed = seed(DEFAULT_SEED);
    server.seed_ids(seed);
    let org = build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let proxy = FaultProxy::start(moto_addr(&server), seed, faults());
    // The first CreateStackInstances is applied and its answer lost whatever the draws (which depend on request
    // bodies, temporary paths included, and so may miss every mutating call in a run); the rest is up to the seed.
    proxy.lose_next_answers_of("CreateStackInstances", 1);
    println!(
        "seed {seed} (set {SEED_ENV} to replay another); faults {:?}",
        faults()
    );
    let dir = tempfile::tempdir().unwrap();

    // 1. From nothing: 30 accounts in Engineering (> Platform) and Finance.
    let mut desired = Desired::new(
        "v1",
        vec![
            org.ou("Engineering").to_string(),
            org.ou("Finance").to_string(),
        ],
    );
    let path = write_desired(dir.path(), &desired.yaml());
    let (output, took) = reconcile_once_via(&server, &proxy, &path).await;
    assert_exit(&output, 0, "reconcile --once through the faults");
    let expected = expected_instances(&org, &["Engineering", "Finance"]);
    assert_eq!(expected.len(), 30);
    let first = instances(&client, STACK_SET).await;
    assert_eq!(first, expected, "every targeted account has its instance");
    println!(
        "from nothing: converged in {took:?}, {} pass retries\n{}",
        pass_retries(&output),
        proxy.report()
    );
    audit_operations(&client, &proxy).await.assert_safe();

    // 2. An edit: Sales added, the description changed.
    desired.ous.push(org.ou("Sales").to_string());
    desired.description = "v2".to_string();
    write_desired(dir.path(), &desired.yaml());
    let (output, took) = reconcile_once_via(&server, &proxy, &path).await;
    assert_exit(
        &output,
        0,
        "reconcile --once of the edit through the faults",
    );
    let second = instances(&client, STACK_SET).await;
    assert!(
        lost(&first, &second).is_empty(),
        "nothing deleted: {:?}",
        lost(&first, &second)
    );
    assert_eq!(
        second,
        expected_instances(&org, &["Engineering", "Finance", "Sales"])
    );
    assert_eq!(
        describe_stack_set(&client, STACK_SET)
            .await
            .unwrap()
            .description(),
        Some("v2")
    );
    println!(
        "edit: converged in {took:?}, {} pass retries",
        pass_retries(&output)
    );
    audit_operations(&client, &proxy).await.assert_safe();

    // 3. The daemon, with 2 SDK attempts per call: more errors reach its own backoff.
    let daemon = DaemonProcess::spawn(
        stacksetd_via(&server, &proxy.endpoint()),
        &path,
        &[("STACKSETD_AWS__MAX_ATTEMPTS", "2")],
    );
    daemon.wait_ready(START_TIMEOUT).await;
    desired.description = "v3".to_string();
    let edited = Instant::now();
    crate::daemon_support::save(
        &path,
        &desired.yaml(),
        crate::daemon_support::Save::AtomicRename,
    );
    crate::daemon_support::eventually_or(
        DAEMON_CONVERGE_TIMEOUT,
        "the daemon applies v3 through the faults",
        || async {
            let set = describe_stack_set(&client, STACK_SET).await?;
            (set.description() == Some("v3")).then_some(())
        },
        || {
            format!(
                "{}\nthe daemon's log:\n{}",
                proxy.report(),
                crate::daemon_support::process::dump(&daemon.logs)
            )
        },
    )
    .await;
    eventually(
        DAEMON_CONVERGE_TIMEOUT,
        "the daemon reports converged",
        || async {
            let s = get(&daemon.addr, "/status").await.json();
            let d = &s["deployments"][DEPLOYMENT];
            let ready =
                d["conditions"][0]["type"] == "Ready" && d["conditions"][0]["status"] == "True";
            (ready && d["observedGeneration"] == d["generation"]).then_some(())
        },
    )
    .await;
    let metrics = daemon.metrics().await;
    // Counters as whole numbers (an empty sum of f64 is -0).
    let count = |x: f64| x.max(0.0) as u64;
    let throttled = count(metric_sum(
        &metrics,
        "stacksetd_aws_requests_total",
        &[("outcome", "throttling")],
    ));
    let ok = count(metric_sum(
        &metrics,
        "stacksetd_aws_requests_total",
        &[("outcome", "ok")],
    ));
    let all = count(metric_sum(&metrics, "stacksetd_aws_requests_total", &[]));
    let failed_passes = count(metric_sum(
        &metrics,
        "stacksetd_reconcile_errors_total",
        &[("deployment", DEPLOYMENT)],
    ));
    println!(
        "daemon: edit -> converged in {:?}; AWS calls as stacksetd saw them: {all} ({ok} ok, {throttled} throttled \
         after the SDK's retries); failed passes retried with backoff: {failed_passes}",
        edited.elapsed()
    );
    let third = instances(&client, STACK_SET).await;
    assert!(
        lost(&second, &third).is_empty(),
        "nothing deleted: {:?}",
        lost(&second, &third)
    );
    assert_eq!(third, second);
    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0));

    let audit = audit_operations(&client, &proxy).await;
    audit.print_and_assert_safe(&proxy.report());
    println!(
        "mutating calls that reached moto and lost their answer (the first of an id applied it; resends of the same id were refused as OperationIdAlreadyExists):"
    );
    for m in proxy
        .mutations()
        .iter()
        .filter(|m| m.fate == crate::fault_support::proxy::Fate::DroppedAfter)
    {
        println!(
            "  {} {}",
            m.action,
            m.operation_id.as_deref().unwrap_or("-")
        );
    }
    // The faults that matter hit mutating calls: some were applied with their answer lost (each then found
    // again by its id, never resubmitted: the audit above), others throttled or failed before reaching moto.
    let mutations = proxy.mutations();
    let lost_answers: Vec<_> = mutations
        .iter()
        .filter(|m| m.fate == crate::fault_support::proxy::Fate::DroppedAfter)
        .collect();
    assert!(
        !lost_answers.is_empty(),
        "no applied change lost its answer (seed {seed}): the lost-answer path was not exercised"
    );
    // CreateStackSet and DeleteStackSet start no operation (their id is a ClientRequestToken).
    let operation_calls = lost_answers
        .iter()
        .filter(|m| !m.action.ends_with("StackSet") || m.action == "UpdateStackSet");
    for id in operation_calls.filter_map(|m| m.operation_id.as_deref()) {
        assert!(
            audit.operations.iter().any(|(op, ..)| op == id),
            "{id}: its answer was lost, yet moto has no such operation"
        );
    }
    let refused_before: u64 = proxy
        .counts()
        .iter()
        .filter(|((_, action, fate), _)| {
            crate::fault_support::proxy::is_mutating(action)
                && matches!(
                    fate,
                    crate::fault_support::proxy::Fate::Throttled
                        | crate::fault_support::proxy::Fate::ServerError
                )
        })
        .map(|(_, n)| n)
        .sum();
    assert!(
        refused_before > 0,
        "no mutating call was throttled or failed (seed {seed})"
    );
}

/// The retry settings stacksetd's clients use (`stacksetd::cloud::aws::retry_config`), on an STS client aimed at
/// the proxy, which throttles the first request. Under the SDK's default adaptive rules (Retry Behavior 2.0) the
/// retry of a throttled call waited for 10 rate-limiter tokens in a bucket holding at most 1, which is always the
/// full 20 s `max_backoff`; the retry now comes after a jittered exponential backoff (1 s base) and one token.
/// The bound below is half that fixed 20 s sleep, not a measure of machine speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_call_is_retried_after_a_short_backoff_not_the_20_s_cap() {
    let server = MotoServer::start();
    let proxy = FaultProxy::start(moto_addr(&server), seed(DEFAULT_SEED), Rates::none());
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_cloudformation::config::Region::new(REGION))
        .endpoint_url(proxy.endpoint())
        .credentials_provider(aws_sdk_cloudformation::config::Credentials::new(
            TEST_ACCESS_KEY_ID,
            TEST_SECRET_ACCESS_KEY,
            None,
            None,
            "stacksetd-tests",
        ))
        .retry_config(stacksetd::cloud::aws::retry_config(5))
        .load()
        .await;
    let sts = aws_sdk_sts::Client::new(&config);
    proxy.throttle_next(1);
    let started = Instant::now();
    let identity = sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity succeeds on its retry");
    let took = started.elapsed();
    assert_eq!(identity.account(), Some(MANAGEMENT_ACCOUNT_ID));
    assert_eq!(
        proxy
            .totals()
            .get(&crate::fault_support::proxy::Fate::Throttled)
            .copied(),
        Some(1)
    );
    println!("one throttled GetCallerIdentity, then its retry: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "the throttled call waited {took:?}: the adaptive rate limiter's 20 s sleep is back"
    );
}
