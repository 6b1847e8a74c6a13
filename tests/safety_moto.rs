//! Never destructive by surprise, never more than was approved: the release guarantees end to end, the stacksetd
//! binary against moto. Deletions wait for `deletion_delay`; a stack set stacksetd did not create is left alone
//! until adopted; a console edit is reverted and never becomes the approval; Manual creates nothing without a
//! pin; revocation works with the vendor's template gone; a transient empty ListRoots deletes nothing; a renamed
//! stack set's old one is reported as orphaned and left in place. Checked through the AWS SDK.

use std::path::Path;

use crate::common::*;
use aws_sdk_cloudformation::types as cfn;

const STACK_SET: &str = "AimablyDataOnly";
const OWNER_TAG: &str = "stacksetd.dev/deployment";
const TEMPLATE_TAG: &str = "stacksetd.dev/template-sha256";

fn org_spec() -> OrgSpec {
    OrgSpec {
        root_accounts: 2,
        ..OrgSpec::standard()
    }
}

/// A deployment document: `template` is the `template:` mapping (flow style), `extra` more spec lines.
fn yaml(stack_set: &str, template: &str, regions: &str, extra: &str) -> String {
    yaml_for(stack_set, template, "ROOT", regions, extra)
}

fn yaml_for(stack_set: &str, template: &str, ous: &str, regions: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: stacksetd.dev/v1alpha1
kind: StackSetDeployment
metadata:
  name: aimably
spec:
  stackSetName: {stack_set}
  description: "Aimably access"
  managementAccountId: "{MANAGEMENT_ACCOUNT_ID}"
  template: {template}
  parameters:
    ManagementAccountId: "{MANAGEMENT_ACCOUNT_ID}"
  capabilities: [CAPABILITY_NAMED_IAM]
  deploymentTargets:
    organizationalUnitIds: [{ous}]
  regions: [{regions}]
  operationPreferences:
    failureTolerancePercentage: 100
    maxConcurrentPercentage: 100
    concurrencyMode: SOFT_FAILURE_TOLERANCE
{extra}"#
    )
}

fn file_template(path: &Path) -> String {
    format!("{{url: \"file://{}\"}}", path.display())
}

async fn reconcile(
    server: &MotoServer,
    desired: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    let mut command = stacksetd(server);
    command
        .envs(env.iter().copied())
        .arg("--desired")
        .arg(desired)
        .args(["reconcile", "--once"])
        .args(args);
    run(command).await
}

async fn plan_text(server: &MotoServer, desired: &Path) -> String {
    let mut command = stacksetd(server);
    command.arg("--desired").arg(desired).arg("plan");
    let output = run(command).await;
    String::from_utf8_lossy(&output.stdout).to_string()
}

async fn deletions(client: &aws_sdk_cloudformation::Client, stack_set: &str) -> usize {
    operations(client, stack_set)
        .await
        .iter()
        .filter(|op| op.action() == Some(&cfn::StackSetOperationAction::Delete))
        .count()
}

#[tokio::test]
async fn deletions_wait_for_the_delay_and_a_withdrawn_one_never_runs() {
    let server = MotoServer::start();
    let org = build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let template = file_template(&template_path("aimably-data-only"));
    let (engineering, finance) = (org.ou("Engineering"), org.ou("Finance"));
    // Two files: write_desired always writes desired.yaml.
    let both = dir.path().join("both.yaml");
    std::fs::write(
        &both,
        yaml_for(
            STACK_SET,
            &template,
            &format!("{engineering}, {finance}"),
            "us-east-1",
            "",
        ),
    )
    .unwrap();
    assert_exit(
        &reconcile(&server, &both, &[], &[]).await,
        0,
        "deploy to two OUs",
    );
    let before = instances(&client, STACK_SET).await;

    // Drop an OU with a 5 s delay, --no-wait: exit 1 naming the pending step and when it runs.
    let one = dir.path().join("one.yaml");
    std::fs::write(
        &one,
        yaml_for(STACK_SET, &template, engineering, "us-east-1", ""),
    )
    .unwrap();
    let delayed = [("STACKSETD_DELETION_DELAY", "5s")];
    let output = reconcile(&server, &one, &delayed, &["--no-wait"]).await;
    assert_exit(&output, 1, "--no-wait with a pending deletion");
    let text = describe_output(&output);
    assert!(
        text.contains("waits for deletion_delay") && text.contains("runs at"),
        "{text}"
    );
    assert_eq!(
        instances(&client, STACK_SET).await,
        before,
        "nothing deleted"
    );
    let mut plan = stacksetd(&server);
    plan.envs(delayed).arg("--desired").arg(&one).arg("plan");
    let text = String::from_utf8_lossy(&run(plan).await.stdout).to_string();
    assert!(text.contains("pending: DeleteStackInstances"), "{text}");

    // Withdrawn within the delay, in one running daemon (each `reconcile --once` is a new process whose delay
    // starts afresh, so only a daemon can withdraw a deletion it was waiting for): the OU is dropped, the daemon
    // reports the deletion pending, the OU is put back before the delay ends, and nothing is ever deleted.
    let live = dir.path().join("live.yaml");
    std::fs::copy(&both, &live).unwrap();
    let daemon = crate::daemon_support::process::DaemonProcess::spawn(
        stacksetd(&server),
        &live,
        &[("STACKSETD_DELETION_DELAY", "8s")],
    );
    daemon.wait_converged("aimably").await;
    let pending = || async {
        let s = crate::daemon_support::get(&daemon.addr, "/status")
            .await
            .json();
        let reason = s["deployments"]["aimably"]["conditions"][0]["reason"].clone();
        (reason == "DeletionPending").then_some(())
    };
    std::fs::copy(&one, &live).unwrap();
    let dropped = std::time::Instant::now();
    crate::daemon_support::eventually(
        std::time::Duration::from_secs(30),
        "the deletion pending",
        pending,
    )
    .await;
    assert!(
        dropped.elapsed() < std::time::Duration::from_secs(6),
        "seen pending well within the delay"
    );
    std::fs::copy(&both, &live).unwrap();
    daemon.wait_converged("aimably").await;
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    assert_eq!(
        deletions(&client, STACK_SET).await,
        0,
        "the withdrawn deletion never ran"
    );
    assert_eq!(
        instances(&client, STACK_SET).await,
        before,
        "nothing deleted"
    );
    // The control: dropped again and kept, it runs once, after the delay.
    std::fs::copy(&one, &live).unwrap();
    let kept = std::time::Instant::now();
    crate::daemon_support::eventually(
        std::time::Duration::from_secs(60),
        "the kept deletion ran",
        || async { (deletions(&client, STACK_SET).await == 1).then_some(()) },
    )
    .await;
    assert!(
        kept.elapsed() >= std::time::Duration::from_secs(8),
        "{:?}",
        kept.elapsed()
    );
    daemon.terminate();
    // Back to both OUs for the one-shot part below.
    assert_exit(
        &reconcile(&server, &both, &[], &[]).await,
        0,
        "both OUs again",
    );

    // Kept: reconcile --once waits for the delay, then deletes once.
    let started = std::time::Instant::now();
    assert_exit(
        &reconcile(&server, &one, &delayed, &[]).await,
        0,
        "the deletion after its delay",
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(deletions(&client, STACK_SET).await, 2);
    let finance_accounts = org.accounts_under("Finance");
    assert!(
        instances(&client, STACK_SET)
            .await
            .iter()
            .all(|(a, _)| !finance_accounts.contains(a))
    );
}

#[tokio::test]
async fn an_untagged_stack_set_is_left_alone_then_adopted() {
    let server = MotoServer::start();
    let org = build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    // The console wizard's stack set, with instances.
    client
        .create_stack_set()
        .stack_set_name(STACK_SET)
        .template_body(template_body("aimably-data-only"))
        .parameters(
            cfn::Parameter::builder()
                .parameter_key("ManagementAccountId")
                .parameter_value(MANAGEMENT_ACCOUNT_ID)
                .build(),
        )
        .capabilities(cfn::Capability::CapabilityNamedIam)
        .permission_model(cfn::PermissionModels::ServiceManaged)
        .auto_deployment(
            cfn::AutoDeployment::builder()
                .enabled(true)
                .retain_stacks_on_account_removal(false)
                .build(),
        )
        .send()
        .await
        .expect("console create");
    let console = client
        .create_stack_instances()
        .stack_set_name(STACK_SET)
        .deployment_targets(
            cfn::DeploymentTargets::builder()
                .organizational_unit_ids(&org.root_id)
                .build(),
        )
        .regions("us-east-1")
        .send()
        .await
        .expect("console instances");
    wait_for_operation(
        &client,
        STACK_SET,
        console.operation_id().expect("an operation id"),
    )
    .await;
    let before = instances(&client, STACK_SET).await;
    let ops_before = operations(&client, STACK_SET).await.len();
    let dir = tempfile::tempdir().unwrap();
    let template = file_template(&template_path("aimably-data-only"));

    let desired = write_desired(
        dir.path(),
        &yaml(STACK_SET, &template, "us-east-1", "  ensure: Absent\n"),
    );
    let output = reconcile(&server, &desired, &[], &[]).await;
    assert_exit(&output, 1, "an untagged stack set is not stacksetd's");
    assert!(
        describe_output(&output).contains("set spec.adopt: true to take it over"),
        "{}",
        describe_output(&output)
    );
    assert!(
        plan_text(&server, &desired)
            .await
            .contains("not managed by stacksetd")
    );
    assert_eq!(
        instances(&client, STACK_SET).await,
        before,
        "not even a revocation touched it"
    );
    assert_eq!(operations(&client, STACK_SET).await.len(), ops_before);

    let adopted = write_desired(
        dir.path(),
        &yaml(STACK_SET, &template, "us-east-1", "  adopt: true\n"),
    );
    assert_exit(&reconcile(&server, &adopted, &[], &[]).await, 0, "adopted");
    let set = describe_stack_set(&client, STACK_SET).await.unwrap();
    assert_eq!(
        stack_set_tags(&set).get(OWNER_TAG).map(String::as_str),
        Some("aimably")
    );
    assert!(stack_set_tags(&set).contains_key(TEMPLATE_TAG));
}

#[tokio::test]
async fn a_console_edit_is_reverted_and_a_later_widening_publication_is_held() {
    let server = MotoServer::start();
    build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let vendor = dir.path().join("vendor.json");
    let v1 = template_body("aimably-data-only");
    std::fs::write(&vendor, &v1).unwrap();
    let mut wide: serde_json::Value = serde_json::from_str(&v1).unwrap();
    wide["Resources"]["AimablyMemberRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Action"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!("cloudtrail:LookupEvents"));
    let wide = serde_json::to_string_pretty(&wide).unwrap();
    let desired = write_desired(
        dir.path(),
        &yaml(STACK_SET, &file_template(&vendor), "us-east-1", ""),
    );
    assert_exit(
        &reconcile(&server, &desired, &[], &[]).await,
        0,
        "deploy v1",
    );
    let set = describe_stack_set(&client, STACK_SET).await.unwrap();
    assert_eq!(
        stack_set_tags(&set).get(TEMPLATE_TAG),
        Some(&stacksetd::template::sha256_hex(v1.as_bytes()))
    );

    let console_edit = || async {
        let set = describe_stack_set(&client, STACK_SET).await.unwrap();
        client
            .update_stack_set()
            .stack_set_name(STACK_SET)
            .template_body(&wide)
            .set_parameters(Some(set.parameters().to_vec()))
            .capabilities(cfn::Capability::CapabilityNamedIam)
            .set_tags(Some(set.tags().to_vec()))
            .send()
            .await
            .expect("console update");
    };
    console_edit().await;
    assert_exit(&reconcile(&server, &desired, &[], &[]).await, 0, "reverted");
    assert_eq!(
        describe_stack_set(&client, STACK_SET)
            .await
            .unwrap()
            .template_body(),
        Some(v1.as_str())
    );

    // Edited again, and the vendor publishes the same widening: held, the console's version never approved. There
    // is no approved version to put back (the one fetched is the widening), so the deployment is not converged:
    // `reconcile --once` exits 1 and says why, and nothing is applied or approved.
    console_edit().await;
    std::fs::write(&vendor, &wide).unwrap();
    let text = plan_text(&server, &desired).await;
    assert!(text.contains("nothing to judge it against"), "{text}");
    let output = reconcile(&server, &desired, &[], &[]).await;
    assert_exit(
        &output,
        1,
        "an unapproved template with nothing to put back",
    );
    let text = describe_output(&output);
    assert!(
        text.contains("not converged") && text.contains("not the version stacksetd approved"),
        "{text}"
    );
    let set = describe_stack_set(&client, STACK_SET).await.unwrap();
    assert_eq!(
        stack_set_tags(&set).get(TEMPLATE_TAG),
        Some(&stacksetd::template::sha256_hex(v1.as_bytes())),
        "still v1 approved"
    );
    assert_eq!(set.template_body(), Some(wide.as_str()), "nothing applied");

    // Reviewed and pinned: recorded as approved, then converged.
    let wide_sha = stacksetd::template::sha256_hex(wide.as_bytes());
    let pinned = write_desired(
        dir.path(),
        &yaml(
            STACK_SET,
            &format!(
                "{{url: \"file://{}\", sha256: {wide_sha}}}",
                vendor.display()
            ),
            "us-east-1",
            "",
        ),
    );
    assert_exit(
        &reconcile(&server, &pinned, &[], &[]).await,
        0,
        "the reviewed version pinned",
    );
    let set = describe_stack_set(&client, STACK_SET).await.unwrap();
    assert_eq!(stack_set_tags(&set).get(TEMPLATE_TAG), Some(&wide_sha));
}

#[tokio::test]
async fn manual_with_no_pin_creates_nothing() {
    let server = MotoServer::start();
    build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let path = template_path("aimably-data-only");
    let template = format!("{{url: \"file://{}\", updates: Manual}}", path.display());
    let desired = write_desired(dir.path(), &yaml(STACK_SET, &template, "us-east-1", ""));
    let output = reconcile(&server, &desired, &[], &[]).await;
    assert_exit(&output, 1, "Manual without a pin");
    let sha = stacksetd::template::sha256_hex(template_body("aimably-data-only").as_bytes());
    assert!(
        describe_output(&output).contains(&format!("spec.template.sha256: {sha}")),
        "{}",
        describe_output(&output)
    );
    assert!(describe_stack_set(&client, STACK_SET).await.is_none());
    let pinned = format!(
        "{{url: \"file://{}\", updates: Manual, sha256: {sha}}}",
        path.display()
    );
    let desired = write_desired(dir.path(), &yaml(STACK_SET, &pinned, "us-east-1", ""));
    assert_exit(&reconcile(&server, &desired, &[], &[]).await, 0, "pinned");
    assert!(describe_stack_set(&client, STACK_SET).await.is_some());
}

#[tokio::test]
async fn revocation_works_with_the_vendors_template_gone() {
    let server = MotoServer::start();
    build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let vendor = dir.path().join("vendor.json");
    std::fs::write(&vendor, template_body("aimably-data-only")).unwrap();
    let desired = write_desired(
        dir.path(),
        &yaml(STACK_SET, &file_template(&vendor), "us-east-1", ""),
    );
    assert_exit(&reconcile(&server, &desired, &[], &[]).await, 0, "deploy");
    std::fs::remove_file(&vendor).unwrap();
    let absent = write_desired(
        dir.path(),
        &yaml(
            STACK_SET,
            &file_template(&vendor),
            "us-east-1",
            "  ensure: Absent\n",
        ),
    );
    assert_exit(
        &reconcile(&server, &absent, &[], &[]).await,
        0,
        "revoked without the template",
    );
    assert!(
        describe_stack_set(&client, STACK_SET)
            .await
            .is_none_or(|s| s.status() == Some(&cfn::StackSetStatus::Deleted))
    );
}

/// A transient empty ListRoots answer, dealt by the fault proxy in front of the emulator (moto and fakecloud
/// alike): an error of the scan, nothing deleted; whole again, still nothing deleted.
#[tokio::test]
async fn an_empty_root_listing_deletes_nothing() {
    use crate::fault_support::proxy::{FaultProxy, Rates};
    let server = MotoServer::start();
    build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let template = file_template(&template_path("aimably-data-only"));
    let desired = write_desired(dir.path(), &yaml(STACK_SET, &template, "us-east-1", ""));
    assert_exit(&reconcile(&server, &desired, &[], &[]).await, 0, "deploy");
    let before = instances(&client, STACK_SET).await;

    let proxy = FaultProxy::start(crate::fault_support::moto_addr(&server), 1, Rates::none());
    proxy.answer("ListRoots", Some(r#"{"Roots": []}"#));
    let via = |proxy: &FaultProxy| {
        let mut command = crate::fault_support::stacksetd_via(&server, &proxy.endpoint());
        command
            .arg("--desired")
            .arg(&desired)
            .args(["reconcile", "--once"]);
        command
    };
    let output = run(via(&proxy)).await;
    assert_exit(&output, 1, "an empty ListRoots");
    assert!(
        describe_output(&output).contains("organization listing looks incomplete"),
        "{}",
        describe_output(&output)
    );
    assert_eq!(instances(&client, STACK_SET).await, before);
    assert_eq!(deletions(&client, STACK_SET).await, 0);
    proxy.answer("ListRoots", None);
    assert_exit(&run(via(&proxy)).await, 0, "whole again");
    assert_eq!(deletions(&client, STACK_SET).await, 0);
}

#[tokio::test]
async fn a_renamed_stack_sets_old_one_is_reported_as_orphaned_and_left_in_place() {
    let server = MotoServer::start();
    build_org(&server, &org_spec()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let template = file_template(&template_path("aimably-data-only"));
    let desired = write_desired(dir.path(), &yaml(STACK_SET, &template, "us-east-1", ""));
    assert_exit(&reconcile(&server, &desired, &[], &[]).await, 0, "deploy");
    let before = instances(&client, STACK_SET).await;
    // A new stack set name for the same deployment (another Region: IAM role names are global per account).
    let renamed = write_desired(
        dir.path(),
        &yaml("AimablyDataOnlyV2", &template, "us-west-2", ""),
    );
    let text = plan_text(&server, &renamed).await;
    assert!(
        text.contains(&format!(
            "orphaned stack set {STACK_SET} (tagged for deployment aimably)"
        )),
        "{text}"
    );
    let mut command = stacksetd(&server);
    command
        .arg("--desired")
        .arg(&renamed)
        .args(["plan", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&run(command).await.stdout).unwrap();
    assert_eq!(
        json["orphanedStackSets"][0]["stackSet"], STACK_SET,
        "{json}"
    );
    assert_eq!(instances(&client, STACK_SET).await, before, "left in place");
    assert_eq!(deletions(&client, STACK_SET).await, 0);
}
