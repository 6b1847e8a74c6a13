//! EventBridge events through SQS (`events.queue_url`, issue 30) end to end: `stacksetd run` as a process against
//! moto, whose SQS answers on the same endpoint as its CloudFormation and Organizations. The test puts EventBridge
//! envelopes (`stacksetd::events::envelopes`) on the queue itself, as EventBridge would, and watches what the daemon
//! does about them in moto, on /status and in /metrics.
//!
//! Every daemon here resyncs every 10 minutes and scans the organization and relists instances twice a day, and
//! moto has no auto-deployment: within a test's few seconds only an event can explain a reaction. Each reaction is
//! measured from just before the event was sent and printed; the budget is [`REACTION`]. A wait runs on
//! past the budget ([`MEASURE`]), so that a slow reaction is measured before the test fails on it.
//!
//! The dev-dependencies have no SQS client (aws-sdk-sqs belongs to the cloud crate), so [`Sqs`] speaks SQS's JSON
//! protocol over plain HTTP, as the harness already does for moto's own endpoints: moto routes a request by its
//! Authorization header's credential scope and does not check the signature.
//!
//! An operation started outside stacksetd must be seen while it runs, and moto finishes operations before
//! answering: the launcher's `hold-operation <id> <seconds>` fault (tests/moto/patches.py,
//! patch_operations_run_when_held) keeps one RUNNING for that long.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::daemon_support::process::*;
use crate::daemon_support::*;
use aws_sdk_cloudformation::types::{DeploymentTargets, StackSetOperationStatus};
use stacksetd::events::envelopes;

const QUEUE_NAME: &str = "stacksetd-events";
/// The promise: the pass an event concerns has acted within this of the event's sending.
const REACTION: Duration = Duration::from_secs(2);
/// How long a wait for a reaction runs past [`REACTION`], so a slow reaction is measured, not only failed.
const MEASURE: Duration = Duration::from_secs(20);
/// A long poll (20 s) under way when the queue goes away ends only after its wait: the reader notices after that.
/// Also the bound on the first `events` mode after a start, should it wait for the first long poll.
const OUTAGE_NOTICED: Duration = Duration::from_secs(20 + 30);
/// The reader retries a failing queue with a backoff that doubles up to 60 s (`daemon::events::RETRY_MAX`), plus a
/// long poll's 20 s should the retry that succeeds be one.
const RECOVERY: Duration = Duration::from_secs(60 + 20 + 30);
/// The operation started outside: held RUNNING this long by the launcher's fault file, unless released earlier.
const OUTSIDE_OPERATION: &str = "outside-1";
const HOLD_SECONDS: u32 = 60;
/// An account the organization does not have: an account event about it concerns the deployment through the
/// parents it names, and the rescan it causes finds nothing changed.
const UNKNOWN_ACCOUNT: &str = "210987654321";

/// Four member accounts: two in Alpha (the deployment's target), two in Beta.
fn org_spec() -> OrgSpec {
    OrgSpec {
        root_accounts: 0,
        ous: vec![OuSpec::new("Alpha", None, 2), OuSpec::new("Beta", None, 2)],
        trusted_access: true,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// SQS on moto, over plain HTTP

/// moto's SQS through the JSON protocol (`X-Amz-Target: AmazonSQS.<Action>`), one request per connection.
struct Sqs {
    addr: String,
}

impl Sqs {
    fn new(server: &MotoServer) -> Sqs {
        Sqs {
            addr: format!("127.0.0.1:{}", server.port()),
        }
    }

    /// One call: the answer's JSON, or the HTTP status and body of a refusal.
    async fn call(&self, action: &str, input: Value) -> Result<Value, String> {
        let body = input.to_string();
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.0\r\n\
             X-Amz-Target: AmazonSQS.{action}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY_ID}/20260101/{REGION}/sqs/aws4_request, \
             SignedHeaders=host;x-amz-target, Signature=0\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n",
            addr = self.addr,
            length = body.len()
        );
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(&self.addr).await?;
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .map_err(|_| format!("SQS {action}: no answer within 30 s"))?
            .map_err(|e| format!("SQS {action}: {e}"))?;
        let text = String::from_utf8_lossy(&raw).to_string();
        let (headers, answer) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status: u16 = headers
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("SQS {action}: no status line in {headers:?}"))?;
        if status != 200 {
            return Err(format!("SQS {action}: HTTP {status}: {answer}"));
        }
        serde_json::from_str(answer).map_err(|e| format!("SQS {action}: not JSON ({e}): {answer}"))
    }

    /// CreateQueue; its URL (`http://127.0.0.1:PORT/123456789012/NAME`).
    async fn create_queue(&self) -> String {
        let answer = self
            .call("CreateQueue", json!({"QueueName": QUEUE_NAME}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        answer["QueueUrl"]
            .as_str()
            .unwrap_or_else(|| panic!("CreateQueue without a QueueUrl: {answer}"))
            .to_string()
    }

    async fn delete_queue(&self, url: &str) {
        self.call("DeleteQueue", json!({"QueueUrl": url}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// SendMessage: what EventBridge does with an event its rule matched.
    async fn send(&self, url: &str, body: &str) {
        self.call("SendMessage", json!({"QueueUrl": url, "MessageBody": body}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// (ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible): waiting, and received but not
    /// deleted. moto's counts are exact.
    async fn depth(&self, url: &str) -> (u64, u64) {
        let answer = self
            .call(
                "GetQueueAttributes",
                json!({"QueueUrl": url, "AttributeNames": [
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"
                ]}),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let count = |name: &str| -> u64 {
            answer["Attributes"][name]
                .as_str()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("GetQueueAttributes without {name}: {answer}"))
        };
        (
            count("ApproximateNumberOfMessages"),
            count("ApproximateNumberOfMessagesNotVisible"),
        )
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The setup every test shares

struct Setup {
    server: MotoServer,
    org: Org,
    cfn: aws_sdk_cloudformation::Client,
    orgs: aws_sdk_organizations::Client,
    sqs: Sqs,
    queue: String,
    _dir: tempfile::TempDir,
    desired: PathBuf,
    /// The launcher's fault file (empty: no fault).
    faults: PathBuf,
}

impl Setup {
    async fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (server, faults) = MotoServer::start_with_fault_file(dir.path());
        let org = build_org(&server, &org_spec()).await;
        let cfn = cfn_client(&server).await;
        let orgs = org_client(&server).await;
        let sqs = Sqs::new(&server);
        let queue = sqs.create_queue().await;
        let setup = Setup {
            desired: dir.path().join("desired.yaml"),
            server,
            org,
            cfn,
            orgs,
            sqs,
            queue,
            _dir: dir,
            faults,
        };
        setup.write_desired("events");
        setup
    }

    /// The deployment: Alpha, one Region, auto-deployment off (the daemon itself must cover a new account).
    fn write_desired(&self, description: &str) {
        let wizard = "autoDeployment: {enabled: true, retainStacksOnAccountRemoval: false}";
        let yaml = Desired::new(description, vec![self.org.ou("Alpha").to_string()]).yaml();
        assert!(
            yaml.contains(wizard),
            "the desired-state text changed:\n{yaml}"
        );
        let yaml = yaml.replace(
            wizard,
            "autoDeployment: {enabled: false, retainStacksOnAccountRemoval: false}",
        );
        save(&self.desired, &yaml, Save::AtomicRename);
    }

    /// Wait (within the budget and its measuring margin) until `account` has a stack instance in moto.
    async fn instance_in(&self, daemon: &DaemonProcess, account: &str, what: &str) {
        eventually_or(
            REACTION + MEASURE,
            what,
            || async {
                instances_any_status(&self.cfn, STACK_SET)
                    .await
                    .iter()
                    .any(|(a, _)| a == account)
                    .then_some(())
            },
            || context(daemon),
        )
        .await;
    }

    /// Move a Beta account into Alpha (the target) in Organizations, telling nobody: (account, Beta, Alpha).
    async fn move_into_alpha(&self) -> (String, &str, &str) {
        let account = self.org.accounts_under("Beta").into_iter().next().unwrap();
        let (beta, alpha) = (self.org.ou("Beta"), self.org.ou("Alpha"));
        self.orgs
            .move_account()
            .account_id(&account)
            .source_parent_id(beta)
            .destination_parent_id(alpha)
            .send()
            .await
            .expect("MoveAccount");
        (account, beta, alpha)
    }

    /// Moto, the organization and the queue; the daemon with the queue, converged and reading it.
    async fn reading_events() -> (Setup, DaemonProcess) {
        let setup = Setup::start().await;
        let daemon = setup.daemon(true);
        setup.converged(&daemon).await;
        setup.reading(&daemon, OUTAGE_NOTICED).await;
        (setup, daemon)
    }

    /// `stacksetd run` with nothing but events to hurry it: with the queue, or (`queue: false`) polling as before.
    fn daemon(&self, queue: bool) -> DaemonProcess {
        let mut env = vec![
            ("STACKSETD_RESYNC_INTERVAL", "10m"),
            ("STACKSETD_ORG_SCAN_INTERVAL", "12h"),
            ("STACKSETD_INSTANCE_RELIST_INTERVAL", "12h"),
            ("STACKSETD_TEMPLATE_POLL_INTERVAL", "12h"),
        ];
        if queue {
            env.push(("STACKSETD_EVENTS__QUEUE_URL", self.queue.as_str()));
        }
        DaemonProcess::spawn(stacksetd(&self.server), &self.desired, &env)
    }

    /// Ready, converged, and exactly Alpha's accounts covered.
    async fn converged(&self, daemon: &DaemonProcess) {
        daemon.wait_ready(START_TIMEOUT).await;
        daemon.wait_converged(DEPLOYMENT).await;
        assert_eq!(
            instance_accounts(&self.cfn, STACK_SET).await,
            self.org.accounts_under("Alpha"),
            "the first deployment covers Alpha"
        );
    }

    /// Wait until /status says the queue is read (`mode: events`) and the gauge agrees; the events section.
    async fn reading(&self, daemon: &DaemonProcess, within: Duration) -> Value {
        let events = eventually_or(
            within,
            "/status events.mode == \"events\" and stacksetd_event_queue_up 1",
            || async {
                let events = status(daemon).await["events"].clone();
                let up = metric(&daemon.metrics().await, "stacksetd_event_queue_up", &[]);
                (events["mode"] == "events" && up == Some(1.0)).then_some(events)
            },
            || context(daemon),
        )
        .await;
        assert_eq!(events["queueUrl"], self.queue.as_str(), "{events}");
        assert_eq!(events["convergedPassTrustsEvents"], true, "{events}");
        assert!(
            events.get("lastError").is_none_or(Value::is_null),
            "{events}"
        );
        events
    }

    /// Wait until every message is gone from the queue: none waiting, none received and not deleted.
    async fn drained(&self, daemon: &DaemonProcess, what: &str) {
        eventually_or(
            WAIT,
            &format!("the queue empty (ApproximateNumberOfMessages + NotVisible == 0) {what}"),
            || async { (self.sqs.depth(&self.queue).await == (0, 0)).then_some(()) },
            || {
                format!(
                    "depth {:?}\n{}",
                    self.sqs.depth_now(&self.queue),
                    context(daemon)
                )
            },
        )
        .await;
    }

    async fn stack_set_arn(&self) -> String {
        describe_stack_set(&self.cfn, STACK_SET)
            .await
            .and_then(|s| s.stack_set_arn().map(str::to_string))
            .expect("the stack set and its ARN")
    }
}

impl Sqs {
    /// `depth` for a failure message, from a synchronous context: a blocking request on a fresh runtime thread.
    fn depth_now(&self, url: &str) -> String {
        let addr = self.addr.clone();
        let url = url.to_string();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async { Sqs { addr }.depth(&url).await })
        })
        .join()
        .map(|d| format!("{d:?}"))
        .unwrap_or_else(|_| "unknown".into())
    }
}

async fn status(daemon: &DaemonProcess) -> Value {
    get(&daemon.addr, "/status").await.json()
}

fn passes(status: &Value) -> u64 {
    status["deployments"][DEPLOYMENT]["passes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pass count on /status: {status}"))
}

/// The daemon's log and /status, for a failure message (from a synchronous context, like `depth_now`).
fn context(daemon: &DaemonProcess) -> String {
    let addr = daemon.addr.clone();
    let status = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async { get(&addr, "/status").await.body })
    })
    .join()
    .unwrap_or_else(|_| "unreadable".into());
    format!(
        "--- /status ---\n{status}\n--- log ---\n{}",
        dump(&daemon.logs)
    )
}

/// `stacksetd_aws_requests_total` by `service:operation`, every outcome summed.
fn aws_calls(text: &str) -> BTreeMap<String, f64> {
    metric_by(
        text,
        "stacksetd_aws_requests_total",
        &["service", "operation"],
    )
}

/// What grew between two `aws_calls`.
fn grown(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(key, n)| {
            let delta = n - before.get(key).copied().unwrap_or(0.0);
            (delta > 0.0).then(|| (key.clone(), delta))
        })
        .collect()
}

/// The deployment's passes and the daemon's AWS calls so far.
async fn tally(daemon: &DaemonProcess) -> (u64, BTreeMap<String, f64>) {
    (
        passes(&status(daemon).await),
        aws_calls(&daemon.metrics().await),
    )
}

/// The passes and the calls since `before` (a [`tally`]).
async fn since(
    daemon: &DaemonProcess,
    before: &(u64, BTreeMap<String, f64>),
) -> (u64, BTreeMap<String, f64>) {
    let now = tally(daemon).await;
    (now.0 - before.0, grown(&before.1, &now.1))
}

fn grew(delta: &BTreeMap<String, f64>, call: &str) -> f64 {
    delta.get(call).copied().unwrap_or(0.0)
}

/// The calls in `delta` that change something in AWS: every CloudFormation and Organizations call but the reads
/// (the queue's own DeleteMessageBatch is the reader's bookkeeping).
fn mutating(delta: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    delta
        .iter()
        .filter(|(call, _)| {
            let (service, operation) = call.split_once(':').unwrap();
            service != "sqs"
                && !["Describe", "List", "Get"]
                    .iter()
                    .any(|read| operation.starts_with(read))
        })
        .map(|(call, n)| (call.clone(), *n))
        .collect()
}

/// An account event that concerns the deployment (its destination is Alpha) and changes nothing: the account is
/// not in the organization, so the rescan it causes finds the organization as it was.
fn unknown_account_event(setup: &Setup, id: &str) -> String {
    envelopes::move_account(
        id,
        MANAGEMENT_ACCOUNT_ID,
        UNKNOWN_ACCOUNT,
        setup.org.ou("Beta"),
        setup.org.ou("Alpha"),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_moved_into_a_targeted_ou_is_covered_within_two_seconds_of_its_event() {
    let (setup, daemon) = Setup::reading_events().await;
    let before = daemon.metrics().await;

    // The move, in Organizations. The daemon scans the organization twice a day and moto does not auto-deploy (nor
    // does the deployment ask it to): only the event tells it.
    let (account, beta, alpha) = setup.move_into_alpha().await;
    let event = envelopes::move_account("move-1", MANAGEMENT_ACCOUNT_ID, &account, beta, alpha);
    let sent = Instant::now();
    setup.sqs.send(&setup.queue, &event).await;

    // The reaction: the account's stack instance exists in moto (CreateStackInstances returned).
    setup
        .instance_in(
            &daemon,
            &account,
            &format!("a stack instance in {account}, moved into Alpha"),
        )
        .await;
    let covered = sent.elapsed();
    let submitted = daemon
        .log_after(sent, "submitting")
        .map(|(at, line)| format!("{:?} ({})", at - sent, line["action"]));
    println!(
        "MoveAccount event -> instance in moto: {covered:?} (daemon's submitting line after {}; budget {REACTION:?})",
        submitted.as_deref().unwrap_or("none")
    );
    assert!(
        covered <= REACTION,
        "the moved account was covered {covered:?} after its event, beyond {REACTION:?}\n{}",
        context(&daemon)
    );

    // The message is deleted once the pass it triggered ended; counted by kind, its latency observed.
    setup
        .drained(&daemon, "after the MoveAccount event's pass")
        .await;
    daemon.wait_converged(DEPLOYMENT).await;
    let mut alpha_now = setup.org.accounts_under("Alpha");
    alpha_now.insert(account.clone());
    assert_eq!(
        instance_accounts(&setup.cfn, STACK_SET).await,
        alpha_now,
        "Alpha's accounts, the moved one included, each CURRENT"
    );
    let after = daemon.metrics().await;
    let count = |text: &str, name: &str, labels: &[(&str, &str)]| -> f64 {
        metric(text, name, labels).unwrap_or(0.0)
    };
    let received = [("kind", "account")];
    assert_eq!(
        count(&after, "stacksetd_events_received_total", &received)
            - count(&before, "stacksetd_events_received_total", &received),
        1.0,
        "one account event received\n{after}"
    );
    assert_eq!(
        count(&after, "stacksetd_event_latency_seconds_count", &[])
            - count(&before, "stacksetd_event_latency_seconds_count", &[]),
        1.0,
        "its latency observed once\n{after}"
    );
    let delta = grown(&aws_calls(&before), &aws_calls(&after));
    println!("calls for the event: {delta:?}");
    assert_eq!(
        grew(&delta, "cloudformation:CreateStackInstances"),
        1.0,
        "one CreateStackInstances: {delta:?}"
    );
    let events = status(&daemon).await["events"].clone();
    assert_eq!(
        (events["received"].as_u64(), events["dropped"].as_u64()),
        (Some(1), Some(0)),
        "{events}"
    );
}

/// An operation someone starts outside stacksetd, in three steps. (1) Its RUNNING event: the next pass reads the
/// operations page and reports the operation running (it changes nothing the daemon sees, so the deployment stays
/// Converged: there is nothing to wait for). (2) An account joins a targeted OU while it runs: the daemon has work
/// now, but the operation holds the stack set, so it adopts it and waits (AWS would refuse a second operation),
/// submitting nothing. (3) The operation ends (its SUCCEEDED event): the daemon covers the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_started_outside_is_adopted_within_two_seconds() {
    let (setup, daemon) = Setup::reading_events().await;
    let arn = setup.stack_set_arn().await;
    let before = aws_calls(&daemon.metrics().await);

    // (1) Someone runs CreateStackInstances for Alpha again from the console (it changes nothing), held RUNNING
    // by the launcher's fault file as AWS would run it.
    std::fs::write(
        &setup.faults,
        format!("hold-operation {OUTSIDE_OPERATION} {HOLD_SECONDS}\n"),
    )
    .unwrap();
    setup
        .cfn
        .create_stack_instances()
        .stack_set_name(STACK_SET)
        .deployment_targets(
            DeploymentTargets::builder()
                .organizational_unit_ids(setup.org.ou("Alpha"))
                .build(),
        )
        .regions(REGION)
        .operation_id(OUTSIDE_OPERATION)
        .send()
        .await
        .expect("CreateStackInstances from outside");
    assert_eq!(
        operation_status(&setup).await,
        StackSetOperationStatus::Running,
        "the fault holds the outside operation"
    );
    let start = passes(&status(&daemon).await);
    let sent = Instant::now();
    setup
        .sqs
        .send(
            &setup.queue,
            &envelopes::stack_set_operation("op-running", &arn, OUTSIDE_OPERATION, "RUNNING"),
        )
        .await;
    let state = eventually_or(
        REACTION + MEASURE,
        &format!("/status: a pass after the event reporting {OUTSIDE_OPERATION} running"),
        || async {
            let s = status(&daemon).await;
            let outcome = &s["deployments"][DEPLOYMENT]["lastOutcome"];
            let running = outcome["report"]["runningOperations"]
                .as_array()
                .is_some_and(|ops| ops.iter().any(|o| o["operationId"] == OUTSIDE_OPERATION));
            (passes(&s) > start && running).then(|| outcome["state"].clone())
        },
        || context(&daemon),
    )
    .await;
    let seen = sent.elapsed();
    println!(
        "(1) RUNNING event -> a pass reporting {OUTSIDE_OPERATION} running: {seen:?} (budget {REACTION:?}); state {state}"
    );
    assert!(
        seen <= REACTION,
        "the outside operation was seen {seen:?} after its event, beyond {REACTION:?}\n{}",
        context(&daemon)
    );
    setup
        .drained(&daemon, "after the RUNNING event's pass")
        .await;

    // (2) An account joins Alpha while the operation runs: the daemon would cover it, but waits on the operation.
    let (account, beta, alpha) = setup.move_into_alpha().await;
    let sent = Instant::now();
    setup
        .sqs
        .send(
            &setup.queue,
            &envelopes::move_account("move-1", MANAGEMENT_ACCOUNT_ID, &account, beta, alpha),
        )
        .await;
    let waiting = eventually_or(
        REACTION + MEASURE,
        &format!("/status: the deployment Waiting on {OUTSIDE_OPERATION}"),
        || async {
            let s = status(&daemon).await;
            let state = s["deployments"][DEPLOYMENT]["lastOutcome"]["state"].clone();
            (state["state"] == "Waiting" && state["operationId"] == OUTSIDE_OPERATION)
                .then_some(state)
        },
        || context(&daemon),
    )
    .await;
    let adopted = sent.elapsed();
    println!(
        "(2) MoveAccount event while it runs -> Waiting on {OUTSIDE_OPERATION}: {adopted:?} (budget {REACTION:?}): {waiting}"
    );
    assert!(
        adopted <= REACTION,
        "the outside operation was adopted {adopted:?} after the event, beyond {REACTION:?}\n{}",
        context(&daemon)
    );
    assert!(
        daemon.logged("adopting the running operation"),
        "the adoption is logged\n{}",
        context(&daemon)
    );
    setup.drained(&daemon, "after the adopting pass").await;
    let held = grown(&before, &aws_calls(&daemon.metrics().await));
    assert!(
        mutating(&held).is_empty(),
        "nothing submitted while the outside operation runs: {held:?}"
    );
    assert!(
        !instances_any_status(&setup.cfn, STACK_SET)
            .await
            .iter()
            .any(|(a, _)| *a == account),
        "{account} not covered yet"
    );

    // (3) The operation ends, and EventBridge says so: the daemon covers the account.
    std::fs::write(&setup.faults, "").unwrap();
    assert_eq!(
        operation_status(&setup).await,
        StackSetOperationStatus::Succeeded,
        "released"
    );
    let released = Instant::now();
    setup
        .sqs
        .send(
            &setup.queue,
            &envelopes::stack_set_operation("op-ended", &arn, OUTSIDE_OPERATION, "SUCCEEDED"),
        )
        .await;
    setup
        .instance_in(
            &daemon,
            &account,
            &format!("a stack instance in {account} once {OUTSIDE_OPERATION} ended"),
        )
        .await;
    let covered = released.elapsed();
    println!(
        "(3) end of {OUTSIDE_OPERATION} -> instance in {account}: {covered:?} (budget {REACTION:?})"
    );
    assert!(
        covered <= REACTION,
        "covered {covered:?} after the operation ended, beyond {REACTION:?}\n{}",
        context(&daemon)
    );
    let submitted = daemon
        .log_after(sent, "submitting")
        .expect("a submitting line after the MoveAccount event");
    assert_eq!(
        submitted.1["action"], "CreateStackInstances",
        "{}",
        submitted.1
    );
    assert!(
        submitted.0 >= released,
        "the daemon submitted before the outside operation ended: {}",
        submitted.1
    );
    setup.drained(&daemon, "after the SUCCEEDED event").await;
    daemon.wait_converged(DEPLOYMENT).await;
    let mut alpha_now = setup.org.accounts_under("Alpha");
    alpha_now.insert(account);
    assert_eq!(instance_accounts(&setup.cfn, STACK_SET).await, alpha_now);
    let delta = grown(&before, &aws_calls(&daemon.metrics().await));
    println!("calls from the first event to convergence: {delta:?}");
    assert_eq!(
        mutating(&delta),
        BTreeMap::from([("cloudformation:CreateStackInstances".to_string(), 1.0)]),
        "one submission, after the operation ended: {delta:?}"
    );
}

/// The outside operation's status, as DescribeStackSetOperation gives it.
async fn operation_status(setup: &Setup) -> StackSetOperationStatus {
    setup
        .cfn
        .describe_stack_set_operation()
        .stack_set_name(STACK_SET)
        .operation_id(OUTSIDE_OPERATION)
        .send()
        .await
        .expect("DescribeStackSetOperation")
        .stack_set_operation
        .and_then(|o| o.status)
        .expect("a status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converged_passes_with_a_healthy_queue_cost_one_call() {
    const PASSES: u64 = 3;
    let (setup, daemon) = Setup::reading_events().await;

    // One event whose pass finds the deployment converged while the queue vouches: it keeps the ledger's stamp.
    let received = |s: &Value| s["events"]["received"].as_u64().unwrap_or(0);
    let one_pass = |id: String| {
        let (setup, daemon) = (&setup, &daemon);
        async move {
            let start = status(daemon).await;
            setup
                .sqs
                .send(&setup.queue, &unknown_account_event(setup, &id))
                .await;
            eventually_or(
                WAIT,
                &format!("event {id} received and a pass after it"),
                || async {
                    let now = status(daemon).await;
                    (received(&now) > received(&start) && passes(&now) > passes(&start))
                        .then_some(())
                },
                || context(daemon),
            )
            .await;
            setup.drained(daemon, &format!("after event {id}")).await;
            daemon.wait_converged(DEPLOYMENT).await;
        }
    };
    one_pass("warm-up".into()).await;

    let before = tally(&daemon).await;
    for i in 0..PASSES {
        one_pass(format!("quiet-{i}")).await;
    }
    let (pass_count, delta) = since(&daemon, &before).await;
    println!("with the queue: {PASSES} account events, {pass_count} passes, calls {delta:?}");
    assert!(pass_count >= PASSES, "a pass per event: {pass_count}");
    assert_eq!(
        grew(&delta, "cloudformation:DescribeStackSet"),
        pass_count as f64,
        "one DescribeStackSet per pass: {delta:?}"
    );
    assert_eq!(
        grew(&delta, "cloudformation:ListStackSetOperations"),
        0.0,
        "no ListStackSetOperations while the queue vouches nothing happened to the stack set: {delta:?}"
    );
    assert_eq!(
        grew(&delta, "cloudformation:ListStackInstances"),
        0.0,
        "no listing: {delta:?}"
    );
    assert!(mutating(&delta).is_empty(), "{delta:?}");
    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0), "the daemon with the queue stops cleanly");

    // The contrast: the same deployment without the queue, each pass (SIGHUP) reading the operations page.
    let polling = setup.daemon(false);
    setup.converged(&polling).await;
    assert!(
        status(&polling)
            .await
            .get("events")
            .is_none_or(Value::is_null),
        "no events section without events.queue_url"
    );
    let before = tally(&polling).await;
    for _ in 0..PASSES {
        let start = passes(&status(&polling).await);
        polling.signal("HUP");
        eventually_or(
            WAIT,
            "a pass after SIGHUP",
            || async { (passes(&status(&polling).await) > start).then_some(()) },
            || context(&polling),
        )
        .await;
        polling.wait_converged(DEPLOYMENT).await;
    }
    let (pass_count, delta) = since(&polling, &before).await;
    println!("without the queue: {PASSES} SIGHUPs, {pass_count} passes, calls {delta:?}");
    assert!(pass_count >= PASSES, "a pass per SIGHUP: {pass_count}");
    assert_eq!(
        grew(&delta, "cloudformation:DescribeStackSet"),
        pass_count as f64,
        "{delta:?}"
    );
    assert_eq!(
        grew(&delta, "cloudformation:ListStackSetOperations"),
        pass_count as f64,
        "polling, every converged pass reads the operations page: {delta:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_outage_falls_back_to_polling_and_recovers() {
    let (setup, daemon) = Setup::reading_events().await;

    // The queue goes away: the long poll under way ends, the next receive fails.
    setup.sqs.delete_queue(&setup.queue).await;
    let deleted = Instant::now();
    let events = eventually_or(
        OUTAGE_NOTICED,
        "/status events.mode == \"polling\" with a lastError, and stacksetd_event_queue_up 0",
        || async {
            let events = status(&daemon).await["events"].clone();
            let up = metric(&daemon.metrics().await, "stacksetd_event_queue_up", &[]);
            let error = events["lastError"].as_str().is_some_and(|e| !e.is_empty());
            (events["mode"] == "polling" && error && up == Some(0.0)).then_some(events)
        },
        || context(&daemon),
    )
    .await;
    println!(
        "queue deleted -> polling after {:?}: {events}",
        deleted.elapsed()
    );

    // Passes still converge, by polling: an edit applies, and its passes read the operations page.
    let before = aws_calls(&daemon.metrics().await);
    setup.write_desired("edited during the outage");
    eventually_or(
        WAIT,
        "the edited description in moto",
        || async {
            let set = describe_stack_set(&setup.cfn, STACK_SET).await?;
            (set.description() == Some("edited during the outage")).then_some(())
        },
        || context(&daemon),
    )
    .await;
    daemon.wait_converged(DEPLOYMENT).await;
    let delta = grown(&before, &aws_calls(&daemon.metrics().await));
    println!("the edit's passes during the outage: {delta:?}");
    assert_eq!(
        grew(&delta, "cloudformation:UpdateStackSet"),
        1.0,
        "{delta:?}"
    );
    assert!(
        grew(&delta, "cloudformation:ListStackSetOperations") >= 1.0,
        "without the queue's word the passes read the operations page: {delta:?}"
    );

    // The queue is back (same name, same URL): the reader's next retry finds it.
    let recreated = setup.sqs.create_queue().await;
    assert_eq!(recreated, setup.queue, "the same URL");
    let back = Instant::now();
    let events = setup.reading(&daemon, RECOVERY).await;
    println!(
        "queue recreated -> events after {:?}: {events}",
        back.elapsed()
    );

    // And its events are followed again.
    let start = passes(&status(&daemon).await);
    setup
        .sqs
        .send(&setup.queue, &unknown_account_event(&setup, "after-outage"))
        .await;
    eventually_or(
        REACTION + MEASURE,
        "a pass for the event sent after the recovery",
        || async { (passes(&status(&daemon).await) > start).then_some(()) },
        || context(&daemon),
    )
    .await;
    setup.drained(&daemon, "after the recovery's event").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_malformed_messages_change_nothing() {
    let (setup, daemon) = Setup::reading_events().await;
    let arn = setup.stack_set_arn().await;
    let before = (status(&daemon).await, daemon.metrics().await);

    let valid = envelopes::stack_set_operation("twice-1", &arn, "someone-elses-op", "SUCCEEDED");
    let unknown = envelopes::envelope(
        "ec2-1",
        "aws.ec2",
        "EC2 Instance State-change Notification",
        MANAGEMENT_ACCOUNT_ID,
        json!({"instance-id": "i-0123456789abcdef0", "state": "running"}),
    );
    for body in [
        "{\"this is\": not an event",
        unknown.as_str(),
        valid.as_str(),
        valid.as_str(),
    ] {
        setup.sqs.send(&setup.queue, body).await;
    }

    let dropped = |text: &str, reason: &str| -> f64 {
        metric(
            text,
            "stacksetd_events_dropped_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    let counted = eventually_or(
        WAIT,
        "dropped {malformed: 1, unknown_type: 1, duplicate: 1} and received {stack_set_operation: 1}",
        || async {
            let text = daemon.metrics().await;
            let counts = (
                dropped(&text, "malformed") - dropped(&before.1, "malformed"),
                dropped(&text, "unknown_type") - dropped(&before.1, "unknown_type"),
                dropped(&text, "duplicate") - dropped(&before.1, "duplicate"),
                metric(
                    &text,
                    "stacksetd_events_received_total",
                    &[("kind", "stack_set_operation")],
                )
                .unwrap_or(0.0),
            );
            (counts == (1.0, 1.0, 1.0, 1.0)).then_some(counts)
        },
        || context(&daemon),
    )
    .await;
    println!("dropped (malformed, unknown_type, duplicate), received: {counted:?}");
    setup.drained(&daemon, "after the four messages").await;
    daemon.wait_converged(DEPLOYMENT).await;

    let after = (status(&daemon).await, daemon.metrics().await);
    let events = &after.0["events"];
    assert_eq!(
        (events["received"].as_u64(), events["dropped"].as_u64()),
        (Some(1), Some(3)),
        "{events}"
    );
    assert!(
        passes(&after.0) > passes(&before.0),
        "the valid event got its pass"
    );
    let delta = grown(&aws_calls(&before.1), &aws_calls(&after.1));
    println!("calls for the four messages: {delta:?}");
    assert!(mutating(&delta).is_empty(), "no mutating call: {delta:?}");
    // Still counted the same a moment later: nothing was left to come back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = daemon.metrics().await;
    for reason in ["malformed", "unknown_type", "duplicate"] {
        assert_eq!(
            dropped(&later, reason),
            dropped(&after.1, reason),
            "{reason}"
        );
    }
    assert_eq!(setup.sqs.depth(&setup.queue).await, (0, 0));
}
