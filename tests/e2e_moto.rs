//! End-to-end tests of the stacksetd binary against moto (the local AWS, see tests/moto/README.md), through the
//! command-line contract in docs/reference.md ("Command line"): `validate`, `plan [--detailed-exitcode]
//! [--output json]` and `reconcile --once`. Every test starts its own moto server and organization; results are checked through the
//! AWS SDK, never through stacksetd's own output alone.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::*;
use crate::fault_support::proxy::{FaultProxy, Rates};
use crate::fault_support::{assert_calls_granted, moto_addr, stacksetd_via};
use aws_sdk_cloudformation::types::ConcurrencyMode;
use serde_json::Value;

const DESCRIPTION: &str = "Aimably access to usage data in every member account";

/// `plan --detailed-exitcode` codes (docs/reference.md, "Command line").
const PLAN_NO_CHANGES: i32 = 0;
const PLAN_ERROR: i32 = 1;
const PLAN_CHANGES: i32 = 2;

impl Desired {
    fn whole_org() -> Desired {
        Desired::new(DESCRIPTION, vec!["ROOT".to_string()])
    }
}

/// At least 25 member accounts in at least 2 OUs, one nested, plus two left at the root.
fn org_spec() -> OrgSpec {
    OrgSpec {
        root_accounts: 2,
        ..OrgSpec::standard()
    }
}

async fn reconcile_once(server: &MotoServer, desired: &Path) -> std::process::Output {
    let mut command = stacksetd(server);
    command
        .arg("--desired")
        .arg(desired)
        .args(["reconcile", "--once"]);
    run(command).await
}

async fn plan_detailed(server: &MotoServer, desired: &Path) -> std::process::Output {
    let mut command = stacksetd(server);
    command
        .arg("--desired")
        .arg(desired)
        .args(["plan", "--detailed-exitcode"]);
    run(command).await
}

async fn plan_exit_code(server: &MotoServer, desired: &Path) -> i32 {
    let output = plan_detailed(server, desired).await;
    let code = exit_code(&output);
    assert!(
        [PLAN_NO_CHANGES, PLAN_CHANGES].contains(&code),
        "plan --detailed-exitcode failed\n{}",
        describe_output(&output)
    );
    code
}

/// `plan --output json`, parsed, with the contract's shape checked.
async fn plan_json(server: &MotoServer, desired: &Path) -> Value {
    let mut command = stacksetd(server);
    command
        .arg("--desired")
        .arg(desired)
        .args(["plan", "--output", "json"]);
    let output = run(command).await;
    assert_exit(&output, 0, "plan --output json");
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "plan --output json is not JSON ({e})\n{}",
            describe_output(&output)
        )
    });
    let deployments = plan["deployments"]
        .as_array()
        .expect("plan.deployments is an array");
    let counted: usize = deployments
        .iter()
        .map(|d| {
            d["actions"]
                .as_array()
                .expect("deployment.actions is an array")
                .len()
        })
        .sum();
    assert_eq!(
        plan["changes"].as_u64(),
        Some(counted as u64),
        "plan.changes counts the actions: {plan}"
    );
    plan
}

/// The action names planned for our deployment, in order.
fn planned_actions(plan: &Value) -> Vec<String> {
    let deployment = plan["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .find(|d| d["name"] == DEPLOYMENT)
        .unwrap_or_else(|| panic!("no deployment {DEPLOYMENT} in the plan: {plan}"));
    assert_eq!(deployment["stackSetName"], STACK_SET);
    deployment["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| {
            assert!(a["summary"].is_string(), "every action has a summary: {a}");
            a["action"].as_str().expect("action name").to_string()
        })
        .collect()
}

/// Deploys `desired` from nothing with one `reconcile --once` and checks it converged.
/// A staging bucket as docs/reference.md asks for one: versioned.
async fn versioned_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning");
}

async fn deploy(server: &MotoServer, desired: &Path) {
    let output = reconcile_once(server, desired).await;
    assert_exit(&output, 0, "reconcile --once from nothing");
}

#[tokio::test]
async fn reconcile_from_nothing_deploys_to_every_member_account_then_is_a_no_op() {
    let server = MotoServer::start();
    let org = build_org(&server, &org_spec()).await;
    assert!(org.member_accounts().len() >= 25);
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_desired(dir.path(), &Desired::whole_org().yaml());

    // Plan from nothing: a stack set and its instances are pending, and planning writes nothing.
    assert_eq!(plan_exit_code(&server, &desired).await, PLAN_CHANGES);
    let actions = planned_actions(&plan_json(&server, &desired).await);
    assert!(
        actions.contains(&"CreateStackSet".to_string())
            && actions.contains(&"CreateStackInstances".to_string()),
        "{actions:?}"
    );
    assert!(
        describe_stack_set(&client, STACK_SET).await.is_none(),
        "plan must not create anything"
    );

    deploy(&server, &desired).await;

    let stack_set = describe_stack_set(&client, STACK_SET)
        .await
        .expect("the stack set exists");
    assert_eq!(stack_set.description(), Some(DESCRIPTION));
    assert_eq!(
        stack_set.permission_model().map(|p| p.as_str()),
        Some("SERVICE_MANAGED")
    );
    // The vendor guide's wizard settings, as AWS echoes them: whole organization, one Region, auto-deployment on.
    assert_eq!(
        stack_set.organizational_unit_ids(),
        std::slice::from_ref(&org.root_id),
        "ROOT resolves to the root id"
    );
    assert_eq!(stack_set.regions(), &[REGION.to_string()]);
    let auto = stack_set.auto_deployment().expect("AutoDeployment");
    assert_eq!(
        (auto.enabled(), auto.retain_stacks_on_account_removal()),
        (Some(true), Some(false))
    );
    assert!(
        stack_set
            .capabilities()
            .iter()
            .any(|c| c.as_str() == "CAPABILITY_NAMED_IAM"),
        "CAPABILITY_NAMED_IAM: {:?}",
        stack_set.capabilities()
    );
    let parameters: Vec<(Option<&str>, Option<&str>)> = stack_set
        .parameters()
        .iter()
        .map(|p| (p.parameter_key(), p.parameter_value()))
        .collect();
    assert_eq!(
        parameters,
        vec![(Some("ManagementAccountId"), Some(MANAGEMENT_ACCOUNT_ID))]
    );
    assert_eq!(
        stack_set.template_body(),
        Some(template_body("aimably-data-only").as_str()),
        "the template's exact bytes, as TemplateBody"
    );

    let deployed = instances(&client, STACK_SET).await;
    let accounts: BTreeSet<String> = deployed.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(
        accounts,
        org.member_accounts(),
        "an instance in every member account, nested OU included"
    );
    assert!(
        !accounts.contains(&org.management_account_id),
        "none in the management account"
    );
    assert!(
        deployed.iter().all(|(_, region)| region == REGION),
        "only {REGION}: {deployed:?}"
    );

    // Converged: nothing to plan, and another pass submits no operation.
    assert_eq!(plan_exit_code(&server, &desired).await, PLAN_NO_CHANGES);
    assert_eq!(plan_json(&server, &desired).await["changes"], 0);
    let operations_before = operations(&client, STACK_SET).await.len();
    let output = reconcile_once(&server, &desired).await;
    assert_exit(&output, 0, "reconcile --once when converged");
    assert_eq!(
        operations(&client, STACK_SET).await.len(),
        operations_before,
        "no new operation"
    );
    assert_eq!(
        instance_accounts(&client, STACK_SET).await,
        org.member_accounts()
    );
}

#[tokio::test]
async fn description_and_operation_preference_edits_are_applied() {
    let server = MotoServer::start();
    let org = build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_desired(dir.path(), &Desired::whole_org().yaml());
    deploy(&server, &desired).await;
    assert_eq!(plan_exit_code(&server, &desired).await, PLAN_NO_CHANGES);

    // Operation preferences are not a property of the stack set: they ride on the update the description
    // change causes, and that operation must carry the new ones.
    let edited = Desired {
        description: "Aimably access, reviewed by the platform team".to_string(),
        failure_tolerance_percentage: 50,
        max_concurrent_percentage: 25,
        ..Desired::whole_org()
    };
    let desired = write_desired(dir.path(), &edited.yaml());
    assert_eq!(plan_exit_code(&server, &desired).await, PLAN_CHANGES);
    let actions = planned_actions(&plan_json(&server, &desired).await);
    assert_eq!(
        actions,
        vec!["UpdateStackSet".to_string()],
        "a description edit is one UpdateStackSet"
    );

    let output = reconcile_once(&server, &desired).await;
    assert_exit(&output, 0, "reconcile --once after the edit");

    let stack_set = describe_stack_set(&client, STACK_SET)
        .await
        .expect("the stack set exists");
    assert_eq!(stack_set.description(), Some(edited.description.as_str()));
    let latest = latest_operation(&client, STACK_SET)
        .await
        .expect("an operation");
    assert_eq!(latest.action().map(|a| a.as_str()), Some("UPDATE"));
    let preferences = latest
        .operation_preferences()
        .expect("the update carries operation preferences");
    assert_eq!(preferences.failure_tolerance_percentage(), Some(50));
    assert_eq!(preferences.max_concurrent_percentage(), Some(25));
    assert_eq!(
        preferences.concurrency_mode(),
        Some(&ConcurrencyMode::SoftFailureTolerance)
    );

    assert_eq!(plan_exit_code(&server, &desired).await, PLAN_NO_CHANGES);
    assert_eq!(
        instance_accounts(&client, STACK_SET).await,
        org.member_accounts(),
        "instances untouched"
    );
}

#[tokio::test]
async fn dropping_an_ou_deletes_exactly_its_instances() {
    let server = MotoServer::start();
    let org = build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let both = Desired {
        ous: vec![
            org.ou("Engineering").to_string(),
            org.ou("Finance").to_string(),
        ],
        ..Desired::whole_org()
    };
    let desired = write_desired(dir.path(), &both.yaml());
    deploy(&server, &desired).await;
    let targeted: BTreeSet<String> = org
        .accounts_under("Engineering")
        .union(&org.accounts_under("Finance"))
        .cloned()
        .collect();
    assert_eq!(
        instance_accounts(&client, STACK_SET).await,
        targeted,
        "OU targets, nested OU included"
    );

    // Drop Engineering (which holds the nested Platform OU): exactly its 20 accounts lose their instances.
    let finance_only = Desired {
        ous: vec![org.ou("Finance").to_string()],
        ..Desired::whole_org()
    };
    let desired = write_desired(dir.path(), &finance_only.yaml());
    assert_eq!(plan_exit_code(&server, &desired).await, PLAN_CHANGES);
    let actions = planned_actions(&plan_json(&server, &desired).await);
    assert!(
        actions.contains(&"DeleteStackInstances".to_string()),
        "{actions:?}"
    );
    assert!(
        !actions.contains(&"DeleteStackSet".to_string()),
        "{actions:?}"
    );

    let output = reconcile_once(&server, &desired).await;
    assert_exit(&output, 0, "reconcile --once after dropping an OU");
    assert_eq!(
        instance_accounts(&client, STACK_SET).await,
        org.accounts_under("Finance")
    );
    let stack_set = describe_stack_set(&client, STACK_SET)
        .await
        .expect("the stack set stays");
    assert_eq!(
        stack_set.organizational_unit_ids(),
        &[org.ou("Finance").to_string()]
    );
    assert_eq!(plan_exit_code(&server, &desired).await, PLAN_NO_CHANGES);
}

#[tokio::test]
async fn ensure_absent_removes_instances_and_stack_set_then_changes_nothing() {
    let server = MotoServer::start();
    let org = build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_desired(dir.path(), &Desired::whole_org().yaml());
    deploy(&server, &desired).await;
    assert_eq!(
        instance_accounts(&client, STACK_SET).await,
        org.member_accounts()
    );

    let absent = Desired {
        ensure: "Absent",
        ..Desired::whole_org()
    };
    let desired = write_desired(dir.path(), &absent.yaml());
    assert_eq!(plan_exit_code(&server, &desired).await, PLAN_CHANGES);
    let actions = planned_actions(&plan_json(&server, &desired).await);
    assert_eq!(
        actions,
        vec![
            "DeleteStackInstances".to_string(),
            "DeleteStackSet".to_string()
        ],
        "instances first, then the stack set"
    );

    let output = reconcile_once(&server, &desired).await;
    assert_exit(&output, 0, "reconcile --once with ensure: Absent");
    assert!(
        describe_stack_set(&client, STACK_SET).await.is_none(),
        "the stack set is gone"
    );
    let listed = stack_sets_named(&client, STACK_SET).await;
    assert!(
        listed
            .iter()
            .all(|s| s.status().map(|st| st.as_str()) == Some("DELETED")),
        "no active stack set named {STACK_SET}: {listed:?}"
    );

    // A second pass has nothing to do: exit 0, no stack set created, nothing pending.
    let output = reconcile_once(&server, &desired).await;
    assert_exit(&output, 0, "second reconcile --once with ensure: Absent");
    assert_eq!(
        stack_sets_named(&client, STACK_SET).await.len(),
        listed.len(),
        "no new stack set"
    );
    assert!(describe_stack_set(&client, STACK_SET).await.is_none());
    assert_eq!(plan_exit_code(&server, &desired).await, PLAN_NO_CHANGES);
}

#[tokio::test]
async fn a_wrong_management_account_id_creates_nothing_and_names_both_accounts() {
    let server = MotoServer::start();
    build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = "111122223333";
    let yaml = Desired::whole_org().yaml().replace(
        &format!("managementAccountId: \"{MANAGEMENT_ACCOUNT_ID}\""),
        &format!("managementAccountId: \"{wrong}\""),
    );
    assert!(yaml.contains(wrong));
    let desired = write_desired(dir.path(), &yaml);
    let planned = plan_detailed(&server, &desired).await;
    assert_eq!(
        exit_code(&planned),
        PLAN_ERROR,
        "plan explains instead of planning"
    );
    let said = String::from_utf8_lossy(&planned.stdout);
    assert!(
        said.contains(wrong) && said.contains(MANAGEMENT_ACCOUNT_ID),
        "{said}"
    );
    let output = reconcile_once(&server, &desired).await;
    assert_ne!(exit_code(&output), 0, "{}", describe_output(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(wrong) && stderr.contains(MANAGEMENT_ACCOUNT_ID),
        "the message names the expected and the actual account:\n{stderr}"
    );
    assert!(
        describe_stack_set(&client, STACK_SET).await.is_none(),
        "nothing created"
    );
    assert!(
        stack_sets_named(&client, STACK_SET).await.is_empty(),
        "nothing created"
    );
}

/// The `FILE:LINE:COL: field: message` lines of stderr that point into `file`.
fn diagnostics_for(stderr: &str, file: &Path) -> Vec<(u32, u32, String)> {
    let prefix = format!("{}:", file.display());
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let mut parts = rest.splitn(3, ':');
            let line_no = parts.next()?.parse().ok()?;
            let col = parts.next()?.parse().ok()?;
            Some((line_no, col, parts.next()?.trim().to_string()))
        })
        .collect()
}

#[tokio::test]
async fn validate_accepts_a_good_file_and_rejects_a_broken_one_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = Desired::whole_org().yaml();
    let good_path = write_desired(dir.path(), &good);
    let mut command = stacksetd_offline();
    command.arg("validate").arg(&good_path);
    assert_exit(&run(command).await, 0, "validate of a valid file");

    // Break one value and find the line it is on (1-based), rather than hard-coding the template's layout.
    let broken = good.replace(
        "failureTolerancePercentage: 100",
        "failureTolerancePercentage: 150",
    );
    assert_ne!(broken, good);
    let broken_line = broken
        .lines()
        .position(|l| l.contains("failureTolerancePercentage: 150"))
        .expect("the broken line") as u32
        + 1;
    // A second document before it checks that lines count from the start of the file, not of the document.
    let first = Desired::whole_org()
        .yaml()
        .replace(&format!("name: {DEPLOYMENT}"), "name: other")
        .replace(&format!("stackSetName: {STACK_SET}"), "stackSetName: Other");
    let file = format!("{first}---\n{broken}");
    let offset = first.lines().count() as u32 + 1;
    let broken_path = dir.path().join("broken.yaml");
    std::fs::write(&broken_path, &file).expect("write broken.yaml");

    let mut command = stacksetd_offline();
    command.arg("validate").arg(&broken_path);
    let output = run(command).await;
    assert_exit(&output, 1, "validate of an invalid file");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let found = diagnostics_for(&stderr, &broken_path);
    assert!(
        found
            .iter()
            .any(|(line, col, message)| *line == offset + broken_line
                && *col >= 1
                && message.contains("failureTolerancePercentage")),
        "expected `{}:{}:COL: ...failureTolerancePercentage...: message` on stderr, got:\n{stderr}",
        broken_path.display(),
        offset + broken_line
    );

    // plan reports the broken file as an error (1), not as "changes pending".
    let mut command = stacksetd_offline();
    command
        .arg("--desired")
        .arg(&broken_path)
        .args(["plan", "--detailed-exitcode"]);
    assert_exit(
        &run(command).await,
        PLAN_ERROR,
        "plan --detailed-exitcode of an invalid file",
    );
}

/// A template over CloudFormation's 51,200-byte TemplateBody limit is uploaded, exactly as checked, to the
/// operator's staging bucket under its digest, and the stack set is created from that TemplateURL (moto's
/// CloudFormation reads it from moto's S3). Without a bucket the same file is refused with the fix.
#[tokio::test]
async fn a_large_template_is_staged_by_digest_and_applied_from_the_bucket() {
    let server = MotoServer::start();
    build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let config = sdk_config(&server).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    const BUCKET: &str = "operator-templates";
    versioned_bucket(&s3, BUCKET).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut doc: Value = serde_json::from_str(&template_body("aimably-data-only")).unwrap();
    doc["Metadata"] = serde_json::json!({"Notes": "n".repeat(60_000)});
    let body = serde_json::to_string_pretty(&doc).unwrap();
    assert!(body.len() > 51_200);
    let path = dir.path().join("large.json");
    std::fs::write(&path, &body).unwrap();
    let url = format!("file://{}", path.display());
    let yaml = Desired::whole_org().yaml().replace(
        &format!("url: \"{}\"", template_url("aimably-data-only")),
        &format!("url: \"{url}\""),
    );

    // No staging bucket: refused, nothing created, the fix named.
    let without = write_desired(dir.path(), &yaml);
    let output = reconcile_once(&server, &without).await;
    assert_exit(
        &output,
        1,
        "reconcile --once of a large template without a bucket",
    );
    assert!(
        describe_output(&output).contains("stagingBucket"),
        "{}",
        describe_output(&output)
    );
    assert!(describe_stack_set(&client, STACK_SET).await.is_none());

    let with = write_desired(
        dir.path(),
        &yaml.replace(
            &format!("url: \"{url}\""),
            &format!("url: \"{url}\"\n    stagingBucket: {BUCKET}"),
        ),
    );
    deploy(&server, &with).await;
    let stack_set = describe_stack_set(&client, STACK_SET)
        .await
        .expect("created");
    assert_eq!(
        stack_set.template_body(),
        Some(body.as_str()),
        "exactly the checked bytes"
    );
    let key = stacksetd::template::staging_key(&body);
    assert_eq!(
        key,
        format!(
            "stacksetd/{}.json",
            stacksetd::template::sha256_hex(body.as_bytes())
        )
    );
    let object = s3
        .get_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .expect("the staged object");
    assert!(object.version_id().is_some(), "a versioned bucket");
    let staged = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(staged.as_ref(), body.as_bytes());
    assert!(instance_accounts(&client, STACK_SET).await.len() >= 25);
    // Converged: plan is empty.
    assert_eq!(plan_exit_code(&server, &with).await, PLAN_NO_CHANGES);
}

/// INTERSECTION deploys only to the listed accounts within the OU, DIFFERENCE to the OU's other accounts; each
/// converges in one run and then plans nothing (no re-submission of its targets).
#[tokio::test]
async fn intersection_and_difference_filters_converge_and_stay_converged() {
    let server = MotoServer::start();
    let org = build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let finance: Vec<String> = org.accounts_under("Finance").into_iter().collect();
    let chosen = [finance[0].as_str(), finance[1].as_str()];

    let desired = filtered_yaml(
        dir.path(),
        &[org.ou("Finance")],
        &chosen,
        "INTERSECTION",
        &[REGION],
    );
    deploy(&server, &desired).await;
    assert_eq!(
        instance_accounts(&client, STACK_SET).await,
        chosen
            .iter()
            .map(|a| a.to_string())
            .collect::<BTreeSet<_>>(),
        "INTERSECTION: only the listed accounts"
    );
    assert_eq!(
        plan_exit_code(&server, &desired).await,
        PLAN_NO_CHANGES,
        "no re-submission"
    );

    // Revoked, then DIFFERENCE: every Finance account but the listed two.
    let absent = {
        let text = std::fs::read_to_string(&desired).unwrap().replace(
            "  operationPreferences:",
            "  ensure: Absent\n  operationPreferences:",
        );
        write_desired(dir.path(), &text)
    };
    deploy(&server, &absent).await;
    let desired = filtered_yaml(
        dir.path(),
        &[org.ou("Finance")],
        &chosen,
        "DIFFERENCE",
        &[REGION],
    );
    deploy(&server, &desired).await;
    let expected: BTreeSet<String> = finance
        .iter()
        .filter(|a| !chosen.contains(&a.as_str()))
        .cloned()
        .collect();
    assert_eq!(
        instance_accounts(&client, STACK_SET).await,
        expected,
        "DIFFERENCE: all but the listed"
    );
    assert_eq!(
        plan_exit_code(&server, &desired).await,
        PLAN_NO_CHANGES,
        "no re-submission"
    );
}

/// A Region added creates instances there for the targeted OUs; a Region dropped deletes exactly those.
#[tokio::test]
async fn a_region_added_then_dropped_converges_each_time() {
    let server = MotoServer::start();
    let org = build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let finance = org.accounts_under("Finance");
    let pairs = |regions: &[&str]| -> BTreeSet<(String, String)> {
        finance
            .iter()
            .flat_map(|a| regions.iter().map(move |r| (a.clone(), r.to_string())))
            .collect()
    };

    let one = filtered_yaml(dir.path(), &[org.ou("Finance")], &[], "NONE", &[REGION]);
    deploy(&server, &one).await;
    assert_eq!(instances(&client, STACK_SET).await, pairs(&[REGION]));
    let two = filtered_yaml(
        dir.path(),
        &[org.ou("Finance")],
        &[],
        "NONE",
        &[REGION, "eu-west-1"],
    );
    deploy(&server, &two).await;
    assert_eq!(
        instances(&client, STACK_SET).await,
        pairs(&[REGION, "eu-west-1"])
    );
    assert_eq!(plan_exit_code(&server, &two).await, PLAN_NO_CHANGES);
    let back = filtered_yaml(
        dir.path(),
        &[org.ou("Finance")],
        &[],
        "NONE",
        &["eu-west-1"],
    );
    deploy(&server, &back).await;
    assert_eq!(instances(&client, STACK_SET).await, pairs(&["eu-west-1"]));
    assert_eq!(plan_exit_code(&server, &back).await, PLAN_NO_CHANGES);
}

/// Removing the description, and removing every tag, converge in one step or are reported: plan is empty after.
#[tokio::test]
async fn removing_every_optional_field_converges_in_one_step_or_is_reported() {
    let server = MotoServer::start();
    let org = build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = filtered_yaml(dir.path(), &[org.ou("Finance")], &[], "NONE", &[REGION]);
    let text = std::fs::read_to_string(&base).unwrap();
    let with = text.replace(
        "  managementAccountId:",
        "  description: \"vendor access\"\n  tags: {team: finops, cost-center: \"42\"}\n  \
         capabilities: [CAPABILITY_IAM, CAPABILITY_NAMED_IAM]\n  \
         autoDeployment: {enabled: true, retainStacksOnAccountRemoval: true}\n  \
         managedExecution: {active: true}\n  managementAccountId:",
    );
    let desired = write_desired(dir.path(), &with);
    deploy(&server, &desired).await;
    let set = describe_stack_set(&client, STACK_SET).await.unwrap();
    assert_eq!(set.description(), Some("vendor access"));
    assert!(set.tags().iter().any(|t| t.key() == Some("team")));
    assert_eq!(plan_exit_code(&server, &desired).await, PLAN_NO_CHANGES);

    // All removed: the tags are cleared (stacksetd's own stay), capabilities, auto-deployment and managed
    // execution return to their defaults, the description is reported as unmanaged; one reconcile, then nothing.
    let desired = write_desired(dir.path(), &text);
    let mut command = stacksetd(&server);
    command.arg("--desired").arg(&desired).arg("plan");
    let plan = String::from_utf8_lossy(&run(command).await.stdout).to_string();
    assert!(
        plan.contains("description: not managed once removed"),
        "{plan}"
    );
    deploy(&server, &desired).await;
    let set = describe_stack_set(&client, STACK_SET).await.unwrap();
    let keys: BTreeSet<&str> = set.tags().iter().filter_map(|t| t.key()).collect();
    assert!(
        keys.iter().all(|k| k.starts_with("stacksetd.dev/")),
        "{keys:?}"
    );
    let auto = set.auto_deployment().expect("auto-deployment");
    assert_eq!(
        (auto.enabled(), auto.retain_stacks_on_account_removal()),
        (Some(true), Some(false))
    );
    assert_eq!(
        set.managed_execution().and_then(|m| m.active()),
        Some(false)
    );
    let capabilities: Vec<&str> = set.capabilities().iter().map(|c| c.as_str()).collect();
    assert_eq!(capabilities, ["CAPABILITY_NAMED_IAM"]);
    assert_eq!(
        plan_exit_code(&server, &desired).await,
        PLAN_NO_CHANGES,
        "no perpetual diff"
    );
}

/// Every AWS call of a whole lifecycle, as a recording proxy saw it (plan; a large template staged and deployed to
/// two OUs; an edit; an OU dropped; revocation), is granted by deploy/iam/stacksetd-policy.json and named in
/// stacksetd's IAM table: the permissions are checked against the calls made, not against a hand-kept list.
#[tokio::test]
async fn every_call_of_a_lifecycle_is_granted_by_the_shipped_iam_policy() {
    let server = MotoServer::start();
    let org = build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let config = sdk_config(&server).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    const BUCKET: &str = "operator-templates";
    versioned_bucket(&s3, BUCKET).await;
    let proxy = FaultProxy::start(moto_addr(&server), 0, Rates::none());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut doc: Value = serde_json::from_str(&template_body("aimably-data-only")).unwrap();
    doc["Metadata"] = serde_json::json!({"Notes": "n".repeat(60_000)});
    let large = dir.path().join("large.json");
    std::fs::write(&large, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let yaml = |d: &Desired| {
        d.yaml().replace(
            &format!("url: \"{}\"", template_url("aimably-data-only")),
            &format!(
                "url: \"file://{}\"\n    stagingBucket: {BUCKET}",
                large.display()
            ),
        )
    };
    let step = |args: &'static [&'static str], text: String| {
        let path = write_desired(dir.path(), &text);
        let mut command = stacksetd_via(&server, &proxy.endpoint());
        command.arg("--desired").arg(&path).args(args);
        async move {
            let output = run(command).await;
            assert_exit(&output, 0, &format!("{args:?}"));
        }
    };
    let mut desired = Desired {
        ous: vec![
            org.ou("Engineering").to_string(),
            org.ou("Finance").to_string(),
        ],
        ..Desired::whole_org()
    };
    step(&["plan"], yaml(&desired)).await;
    step(&["reconcile", "--once"], yaml(&desired)).await;
    assert!(instance_accounts(&client, STACK_SET).await.len() >= 20);
    desired.description = "edited".to_string();
    step(&["reconcile", "--once"], yaml(&desired)).await;
    desired.ous = vec![org.ou("Finance").to_string()];
    step(&["reconcile", "--once"], yaml(&desired)).await;
    desired.ensure = "Absent";
    step(&["reconcile", "--once"], yaml(&desired)).await;
    assert!(describe_stack_set(&client, STACK_SET).await.is_none());

    let unexercised = assert_calls_granted(
        &proxy,
        &[
            "sts:GetCallerIdentity",
            "organizations:DescribeOrganization",
            "organizations:ListRoots",
            "cloudformation:DescribeStackSet",
            "cloudformation:CreateStackSet",
            "cloudformation:CreateStackInstances",
            "cloudformation:UpdateStackSet",
            "cloudformation:DeleteStackInstances",
            "cloudformation:DeleteStackSet",
            "cloudformation:DescribeStackSetOperation",
            "s3:PutObject",
        ],
    );
    println!(
        "IAM actions granted but not called in this lifecycle (the daemon's and other paths): {unexercised:?}"
    );
}

/// Narrowing ROOT to an OU that has a child OU: AWS deletes a whole OU's stacks together with its child OUs', so a
/// deletion of ROOT would take the kept accounts' instances with it. Only the accounts outside the OU lose theirs:
/// no DELETE operation ever touches a kept account (read from moto's own operation results), and the end state is
/// exactly the OU's subtree. Then widening back to ROOT creates the others again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowing_root_to_a_nested_ou_never_touches_a_kept_account() {
    let server = MotoServer::start();
    let org = build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = Desired::whole_org();
    let desired = write_desired(dir.path(), &whole.yaml());
    deploy(&server, &desired).await;
    let everyone = instance_accounts(&client, STACK_SET).await;
    let kept = org.accounts_under("Engineering");
    assert!(kept.len() < everyone.len() && !kept.is_empty());

    let narrow = Desired {
        ous: vec![org.ou("Engineering").to_string()],
        ..Desired::whole_org()
    };
    let desired = write_desired(dir.path(), &narrow.yaml());
    let output = reconcile_once(&server, &desired).await;
    assert_exit(
        &output,
        0,
        "reconcile --once after narrowing ROOT to Engineering",
    );
    assert_eq!(instance_accounts(&client, STACK_SET).await, kept);
    let deleted: BTreeSet<String> = deleted_since(&client, &mut BTreeSet::new())
        .await
        .into_iter()
        .map(|(account, _)| account)
        .collect();
    assert!(
        !deleted.is_empty(),
        "the accounts outside Engineering were deleted"
    );
    let touched: Vec<_> = deleted.intersection(&kept).collect();
    assert!(
        touched.is_empty(),
        "a DELETE operation touched kept accounts {touched:?}"
    );
    assert_eq!(plan_exit_code(&server, &desired).await, PLAN_NO_CHANGES);

    // Back to ROOT: the accounts outside Engineering are targeted again and created by this reconcile.
    let desired = write_desired(dir.path(), &whole.yaml());
    let output = reconcile_once(&server, &desired).await;
    assert_exit(&output, 0, "reconcile --once after widening back to ROOT");
    assert_eq!(instance_accounts(&client, STACK_SET).await, everyone);
}

/// "Converged" only when it is true, for the one-shot commands: an instance deleted behind stacksetd's back
/// leaves a targeted account without one. With `repairCoverage: false` nothing is planned, and `reconcile --once`
/// exits 1 saying why (never 0 with an account missing); with the repair on, `plan --detailed-exitcode` exits 2
/// (a step would repair it) and `reconcile --once` repairs it at once and exits 0.
#[tokio::test]
async fn reconcile_once_never_exits_zero_while_a_targeted_account_lacks_its_instance() {
    let server = MotoServer::start();
    let org = build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = Desired::whole_org().yaml();
    let desired = write_desired(dir.path(), &whole);
    deploy(&server, &desired).await;
    let lost = org
        .accounts_under("Finance")
        .into_iter()
        .next()
        .expect("a Finance account");
    let id = client
        .delete_stack_instances()
        .stack_set_name(STACK_SET)
        .deployment_targets(
            aws_sdk_cloudformation::types::DeploymentTargets::builder()
                .organizational_unit_ids(org.ou("Finance"))
                .accounts(&lost)
                .account_filter_type(aws_sdk_cloudformation::types::AccountFilterType::Intersection)
                .build(),
        )
        .regions(REGION)
        .retain_stacks(false)
        .operation_id("someone-else-deletes-one")
        .send()
        .await
        .expect("DeleteStackInstances behind stacksetd's back")
        .operation_id()
        .expect("id")
        .to_string();
    wait_for_operation(&client, STACK_SET, &id).await;
    assert!(!instance_accounts(&client, STACK_SET).await.contains(&lost));

    let no_repair = write_desired(dir.path(), &format!("{whole}  repairCoverage: false\n"));
    assert_eq!(plan_exit_code(&server, &no_repair).await, PLAN_NO_CHANGES);
    // `status` with no daemon answering observes AWS itself and gives the controller's verdict, never Converged.
    let mut status = stacksetd(&server);
    status
        .arg("--desired")
        .arg(&no_repair)
        .args(["--listen", "127.0.0.1:9", "status"]);
    let text = describe_output(&run(status).await);
    assert!(
        text.contains("CoverageGap") || text.contains("Coverage gap"),
        "status from AWS names the gap: {text}"
    );
    assert!(!text.contains("Converged"), "{text}");
    let output = reconcile_once(&server, &no_repair).await;
    assert_exit(
        &output,
        1,
        "reconcile --once with an account missing and repairCoverage: false",
    );
    let text = describe_output(&output);
    assert!(
        text.contains("not converged") && text.contains("repairCoverage is false"),
        "{text}"
    );

    let desired = write_desired(dir.path(), &whole);
    assert_eq!(plan_exit_code(&server, &desired).await, PLAN_CHANGES);
    let output = reconcile_once(&server, &desired).await;
    assert_exit(&output, 0, "reconcile --once repairs the missing instance");
    assert!(instance_accounts(&client, STACK_SET).await.contains(&lost));
}
