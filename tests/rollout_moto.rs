//! Staged rollout (`spec.rollout`) end to end: the stacksetd binary against moto, whose UpdateStackSet is patched
//! to behave as AWS documents (tests/moto/patches.py, patch_update_stack_set_scoped_like_aws): a template change
//! marks every instance OUTDATED and updates only the DeploymentTargets x Regions given. A new version reaches the
//! canary account alone, tagged `stacksetd.dev/rollout: canary`, and bakes while the others keep their stacks; a
//! canary instance that fails its update (the launcher's `fail-instance-update` fault) halts the rollout, and
//! nothing more is sent. What moto received is read back from moto: the operation's DeploymentTargets, the
//! instances' status and the template each instance's stack runs.
//!
//! A `reconcile --once` that reaches a rollout state (baking, halted) stops there and exits 1: it never waits out a
//! bake or a halt. Each pass is given `PASS_LIMIT` and killed after it, and its exit is asserted last, so that a
//! pass that does not stop still lets every check of what it sent report first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::common::*;
use crate::moto_harness::stack_descriptions;
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types as cfn;

const ROLLOUT_TAG: &str = "stacksetd.dev/rollout";
/// The start of the vendor template's Description, and of the new version's (the only change: nothing widened).
const V1: &str = "Aimably: usage data only.";
const V2: &str = "Aimably: usage data only (v2).";
/// A `reconcile --once` pass on a handful of accounts takes seconds on moto; one still running after this is
/// waiting on the rollout (a bake, a halt) instead of stopping there.
const PASS_LIMIT: Duration = Duration::from_secs(120);

/// Five member accounts: two in Engineering, two in Finance, one under the root.
fn org_spec() -> OrgSpec {
    OrgSpec {
        root_accounts: 1,
        ous: vec![
            OuSpec::new("Engineering", None, 2),
            OuSpec::new("Finance", None, 2),
        ],
        trusted_access: true,
    }
}

/// A moto with an organization, the two template versions, and the launcher's fault file (empty).
struct Setup {
    server: MotoServer,
    org: Org,
    client: Client,
    dir: tempfile::TempDir,
    faults: PathBuf,
    /// The canary: a Finance account.
    canary: String,
    /// The templates' whole Descriptions: what each instance's stack runs.
    v1: String,
    v2: String,
}

impl Setup {
    async fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (server, faults) = MotoServer::start_with_fault_file(dir.path());
        let org = build_org(&server, &org_spec()).await;
        let client = cfn_client(&server).await;
        let original = template_body("aimably-data-only");
        let v2 = original.replacen(&format!("\"{V1}"), &format!("\"{V2}"), 1);
        assert_ne!(
            v2, original,
            "the template's Description starts with {V1:?}"
        );
        std::fs::write(dir.path().join("v1.json"), &original).unwrap();
        std::fs::write(dir.path().join("v2.json"), &v2).unwrap();
        let canary = org.accounts_under("Finance").into_iter().next().unwrap();
        let description = |body: &str| -> String {
            let doc: serde_json::Value = serde_json::from_str(body).expect("a JSON template");
            doc["Description"]
                .as_str()
                .expect("a Description")
                .to_string()
        };
        let (v1, v2) = (description(&original), description(&v2));
        Setup {
            server,
            org,
            client,
            dir,
            faults,
            canary,
            v1,
            v2,
        }
    }

    /// Writes the desired state: the whole organization on `version` (v1 or v2), with the canary and `bake`.
    fn desired(&self, version: &str, bake: &str) -> PathBuf {
        let template = self.dir.path().join(format!("{version}.json"));
        let desired = Desired {
            template_url: format!("file://{}", template.display()),
            extra: format!(
                "  rollout:\n    canary:\n      accounts: [\"{}\"]\n    bake: {bake}\n",
                self.canary
            ),
            ..Desired::new("Aimably access", vec!["ROOT".into()])
        };
        write_desired(self.dir.path(), &desired.yaml())
    }

    /// Converged on v1 (`bake: 0s`): the first deployment is staged too (the canary's instance first), so
    /// `reconcile --once` may stop at a rollout state (exit 1) before a later run converges (exit 0).
    async fn on_v1(&self) -> PathBuf {
        let desired = self.desired("v1", "0s");
        let mut runs = Vec::new();
        while runs.len() < 4 {
            let pass = reconcile_once(&self.server, &desired).await;
            runs.push(pass.describe());
            match pass.code {
                Some(0) => break,
                Some(1) => {}
                _ => panic!("the first deployment:\n{}", runs.join("\n")),
            }
        }
        assert!(
            runs.last().is_some_and(|r| r.starts_with("exit 0")),
            "v1 never converged:\n{}",
            runs.join("\n")
        );
        // Every member account runs v1 (`instances` asserts every instance CURRENT), the rollout is over.
        assert_eq!(
            instance_accounts(&self.client, STACK_SET).await,
            self.org.member_accounts()
        );
        let stacks = stack_descriptions(&self.server, STACK_SET).await;
        assert!(
            stacks.values().all(|d| *d == self.v1),
            "every stack on v1: {stacks:#?}"
        );
        assert_eq!(
            self.tags().await.get(ROLLOUT_TAG),
            None,
            "the promotion removed the tag"
        );
        desired
    }

    fn fail_updates_in(&self, account: &str) {
        std::fs::write(&self.faults, format!("fail-instance-update {account}\n")).unwrap();
    }

    async fn tags(&self) -> BTreeMap<String, String> {
        stack_set_tags(
            &describe_stack_set(&self.client, STACK_SET)
                .await
                .expect("the stack set"),
        )
    }

    /// Each instance's (Status, DetailedStatus), by account.
    async fn statuses(&self) -> BTreeMap<String, (String, String)> {
        instance_statuses(&self.client, STACK_SET)
            .await
            .into_iter()
            .map(|(account, status, detailed)| (account, (status, detailed)))
            .collect()
    }

    /// The UpdateStackSet operations moto recorded, by id.
    async fn update_ids(&self) -> BTreeSet<String> {
        operations(&self.client, STACK_SET)
            .await
            .iter()
            .filter(|o| o.action() == Some(&cfn::StackSetOperationAction::Update))
            .filter_map(|o| o.operation_id().map(str::to_string))
            .collect()
    }

    async fn operation(&self, id: &str) -> cfn::StackSetOperation {
        self.client
            .describe_stack_set_operation()
            .stack_set_name(STACK_SET)
            .operation_id(id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeStackSetOperation {id}: {e:?}"))
            .stack_set_operation
            .expect("an operation")
    }

    /// The one UpdateStackSet sent since `before`: asserts it was the canary's, scoped to exactly the canary
    /// account (its parent OU, INTERSECTION), and returns it.
    async fn the_canary_update(&self, before: &BTreeSet<String>) -> cfn::StackSetOperation {
        let sent: Vec<String> = self
            .update_ids()
            .await
            .difference(before)
            .cloned()
            .collect();
        assert_eq!(sent.len(), 1, "one UpdateStackSet, the canary's: {sent:?}");
        assert!(sent[0].starts_with("stacksetd-canary-"), "{}", sent[0]);
        let op = self.operation(&sent[0]).await;
        let targets = op
            .deployment_targets()
            .expect("the canary update names DeploymentTargets");
        assert_eq!(
            targets.accounts(),
            std::slice::from_ref(&self.canary),
            "{op:?}"
        );
        assert_eq!(
            targets.organizational_unit_ids(),
            [self.org.ou("Finance").to_string()],
            "{op:?}"
        );
        assert_eq!(
            targets.account_filter_type(),
            Some(&cfn::AccountFilterType::Intersection),
            "{op:?}"
        );
        op
    }

    async fn rollout_status(&self, desired: &Path, json: bool) -> std::process::Output {
        let mut command = stacksetd(&self.server);
        command
            .arg("--desired")
            .arg(desired)
            .args(["rollout", "status", DEPLOYMENT]);
        if json {
            command.args(["--output", "json"]);
        }
        run(command).await
    }
}

/// One `reconcile --once`, killed if it is still running after `PASS_LIMIT`.
struct Pass {
    /// None: killed.
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Pass {
    fn describe(&self) -> String {
        match self.code {
            Some(code) => format!(
                "exit {code}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.stdout, self.stderr
            ),
            None => format!(
                "still running after {PASS_LIMIT:?}, killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.stdout, self.stderr
            ),
        }
    }

    /// A pass that reached a rollout state stops there and exits 1 (it never waits out a bake or a halt).
    #[track_caller]
    fn assert_stopped_rolling_out(&self, what: &str) {
        assert_eq!(
            self.code,
            Some(1),
            "{what}: reconcile --once should stop at the rollout state and exit 1:\n{}",
            self.describe()
        );
        assert!(
            self.stdout.contains("rolling out"),
            "{what}:\n{}",
            self.describe()
        );
    }
}

async fn reconcile_once(server: &MotoServer, desired: &Path) -> Pass {
    use tokio::io::AsyncReadExt;
    let mut command = stacksetd(server);
    command
        .arg("--desired")
        .arg(desired)
        .args(["reconcile", "--once"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let mut child = command.spawn().expect("run stacksetd reconcile --once");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = tokio::spawn(async move {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text).await;
        text
    });
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text).await;
        text
    });
    let code = match tokio::time::timeout(PASS_LIMIT, child.wait()).await {
        Ok(status) => Some(
            status
                .expect("wait for stacksetd")
                .code()
                .expect("stacksetd exited (not killed by a signal)"),
        ),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    Pass {
        code,
        stdout: stdout.await.unwrap(),
        stderr: stderr.await.unwrap(),
    }
}

/// Asserts the canary runs `canary` (and is CURRENT) while every other instance is OUTDATED on v1's stack.
async fn assert_only_the_canary_changed(
    setup: &Setup,
    canary_status: (&str, &str),
    canary_stack: &str,
) {
    let statuses = setup.statuses().await;
    let stacks = stack_descriptions(&setup.server, STACK_SET).await;
    assert_eq!(
        statuses.keys().cloned().collect::<BTreeSet<_>>(),
        setup.org.member_accounts()
    );
    for (account, (status, detailed)) in &statuses {
        let stack = stacks.get(account).map(String::as_str);
        if *account == setup.canary {
            assert_eq!(
                (status.as_str(), detailed.as_str()),
                canary_status,
                "the canary {account}"
            );
            assert_eq!(stack, Some(canary_stack), "the canary {account}'s stack");
        } else {
            // Marked OUTDATED by the template change, never updated: still running v1.
            assert_eq!(status, "OUTDATED", "{account}: {statuses:?}");
            assert_eq!(stack, Some(setup.v1.as_str()), "{account}'s stack keeps v1");
        }
    }
}

/// A new version reaches the canary account alone, tags the stack set, and bakes: `rollout status` says so
/// (exit 2, waiting), with the bake ending `bake` after the canary operation's EndTimestamp, and another pass
/// during the bake sends nothing.
#[tokio::test]
async fn a_new_version_reaches_only_the_canary_and_bakes() {
    let setup = Setup::start().await;
    setup.on_v1().await;
    let before = setup.update_ids().await;

    let desired = setup.desired("v2", "1h");
    let canary_pass = reconcile_once(&setup.server, &desired).await;
    let op = setup.the_canary_update(&before).await;
    assert_eq!(
        op.status(),
        Some(&cfn::StackSetOperationStatus::Succeeded),
        "{op:?}\n{}",
        canary_pass.describe()
    );
    assert_only_the_canary_changed(&setup, ("CURRENT", "SUCCEEDED"), &setup.v2).await;
    let tags = setup.tags().await;
    assert_eq!(
        tags.get(ROLLOUT_TAG).map(String::as_str),
        Some("canary"),
        "{tags:?}"
    );
    let stack_set = describe_stack_set(&setup.client, STACK_SET).await.unwrap();
    assert!(
        stack_set.template_body().is_some_and(|b| b.contains(V2)),
        "the stack set holds v2"
    );

    let status = setup.rollout_status(&desired, false).await;
    assert_exit(&status, 2, "rollout status while baking (waiting)");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("(baking)"), "{text}");
    assert!(text.contains("then: 4 instance(s) after bake 1h"), "{text}");

    // The bake ends an hour after the canary operation ended (which was before now), however much later it is
    // looked at: a few seconds later than that, so a bake counted from the look would show (bakeEndsAt has
    // whole seconds).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let json = setup.rollout_status(&desired, true).await;
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| {
        panic!(
            "rollout status --output json ({e}):\n{}",
            describe_output(&json)
        )
    });
    let rollout = &doc[DEPLOYMENT];
    assert_eq!(rollout["phase"], "baking", "{doc}");
    assert_eq!(
        rollout["canaryAccounts"],
        serde_json::json!([setup.canary]),
        "{doc}"
    );
    let ends = aws_smithy_types::DateTime::from_str(
        rollout["bakeEndsAt"].as_str().expect("bakeEndsAt"),
        aws_smithy_types::date_time::Format::DateTime,
    )
    .unwrap();
    let ended = SystemTime::try_from(*op.end_timestamp().expect("EndTimestamp")).unwrap();
    assert!(
        ended <= SystemTime::now(),
        "the canary operation ended in the past: {op:?}"
    );
    let bake_ends = SystemTime::try_from(ends).unwrap();
    let off = bake_ends
        .duration_since(ended + Duration::from_secs(3600))
        .unwrap_or_else(|e| e.duration());
    assert!(
        off <= Duration::from_secs(1),
        "bake ends at {ends} (off by {off:?} from EndTimestamp + 1h: {op:?})"
    );

    // Another pass during the bake sends nothing.
    let baking_pass = reconcile_once(&setup.server, &desired).await;
    assert_eq!(
        setup.update_ids().await.difference(&before).count(),
        1,
        "nothing but the canary during the bake\n{}",
        baking_pass.describe()
    );
    assert_only_the_canary_changed(&setup, ("CURRENT", "SUCCEEDED"), &setup.v2).await;

    canary_pass.assert_stopped_rolling_out("the canary pass");
    baking_pass.assert_stopped_rolling_out("a pass during the bake");
    assert!(
        baking_pass.stdout.contains("(baking)"),
        "{}",
        baking_pass.describe()
    );
}

/// The canary's instance fails its update: the rollout halts there. Every other instance stays OUTDATED on v1's
/// stack, `rollout status` exits 1 naming the halt, and another pass sends no UpdateStackSet, though the bake
/// (0s) is long over.
#[tokio::test]
async fn a_failed_canary_halts_with_the_rest_on_the_previous_version() {
    let setup = Setup::start().await;
    setup.on_v1().await;
    let before = setup.update_ids().await;

    setup.fail_updates_in(&setup.canary);
    let desired = setup.desired("v2", "0s");
    let canary_pass = reconcile_once(&setup.server, &desired).await;
    // The pass that saw the canary operation end with a failed instance reports it and fails.
    assert_eq!(canary_pass.code, Some(1), "{}", canary_pass.describe());
    assert!(
        canary_pass.stderr.contains(&setup.canary) && canary_pass.stderr.contains("FAILED"),
        "{}",
        canary_pass.describe()
    );
    setup.the_canary_update(&before).await;
    // The failed canary keeps its v1 stack too (OUTDATED, FAILED).
    assert_only_the_canary_changed(&setup, ("OUTDATED", "FAILED"), &setup.v1).await;

    let status = setup.rollout_status(&desired, false).await;
    assert_exit(&status, 1, "rollout status of a halted rollout");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("(halted)"), "{text}");
    assert!(
        text.contains(&format!("halted at: {}/{REGION}", setup.canary)),
        "{text}"
    );

    let halted_pass = reconcile_once(&setup.server, &desired).await;
    assert_eq!(
        setup.update_ids().await.difference(&before).count(),
        1,
        "a halted rollout sends no further UpdateStackSet\n{}",
        halted_pass.describe()
    );
    assert_only_the_canary_changed(&setup, ("OUTDATED", "FAILED"), &setup.v1).await;
    halted_pass.assert_stopped_rolling_out("a pass of a halted rollout");
    assert!(
        halted_pass.stdout.contains("(halted)"),
        "{}",
        halted_pass.describe()
    );
}

/// The first deployment is staged too: the stack set and the canary's instance first, then, once the bake has
/// passed, every other account. Its canary is a CreateStackInstances, so the bake cannot count from a canary
/// update's EndTimestamp; it must still end.
#[tokio::test]
async fn the_first_deployment_bakes_then_reaches_every_account() {
    const BAKE: Duration = Duration::from_secs(5);
    let setup = Setup::start().await;
    let desired = setup.desired("v1", "5s");
    let started = std::time::Instant::now();
    let mut passes: Vec<Pass> = Vec::new();
    let mut after_the_first_pass = BTreeSet::new();
    while passes.len() < 4 {
        let pass = reconcile_once(&setup.server, &desired).await;
        let code = pass.code;
        passes.push(pass);
        if passes.len() == 1 {
            after_the_first_pass = instances_any_status(&setup.client, STACK_SET)
                .await
                .into_iter()
                .map(|(account, _)| account)
                .collect();
        }
        match code {
            Some(1) => tokio::time::sleep(BAKE).await,
            _ => break,
        }
    }
    let all = passes
        .iter()
        .map(Pass::describe)
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        passes.last().and_then(|p| p.code),
        Some(0),
        "the first deployment converges once the {BAKE:?} bake has passed:\n{all}"
    );
    assert!(started.elapsed() >= BAKE, "{all}");
    assert_eq!(
        instance_accounts(&setup.client, STACK_SET).await,
        setup.org.member_accounts()
    );
    assert_eq!(setup.tags().await.get(ROLLOUT_TAG), None, "{all}");
    // The canary's instance came first, alone.
    assert_eq!(
        after_the_first_pass,
        BTreeSet::from([setup.canary.clone()]),
        "{all}"
    );
}
