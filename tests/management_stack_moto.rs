//! `spec.managementAccount: {deploy: true}` end to end on moto: the stacksetd binary keeps a plain stack in the
//! management account beside the stack set (moto has CreateStack, UpdateStack, DeleteStack, DescribeStacks and
//! GetTemplate; not DetectStackDrift, whose handling the simulator and aws-smithy-mocks tests cover). Results are
//! read back through the AWS SDK.

use aws_sdk_cloudformation::types::Tag;

use crate::common::*;
use crate::fault_support::proxy::{FaultProxy, Rates};
use crate::fault_support::{called_actions, moto_addr, policy_actions, stacksetd_via};

/// The stacksetd binary through a counting proxy (no faults), so the test sees every call it makes.
fn counted(server: &MotoServer) -> FaultProxy {
    FaultProxy::start(moto_addr(server), 0, Rates::none())
}

/// Every call stacksetd made is granted: the plain-stack calls by deploy/iam/stacksetd-policy-management-stack.json
/// (and exactly those are the plain-stack calls), the rest by the main policy; and the lifecycle's stack calls
/// were all made (a run that made none cannot pass).
fn assert_stack_calls_granted(proxy: &FaultProxy, expected: &[&str]) {
    use stacksetd::cloud::aws::errors::{
        MANAGEMENT_STACK_IAM_ACTIONS, MANAGEMENT_STACK_POLICY_FILE,
    };
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(MANAGEMENT_STACK_POLICY_FILE),
    )
    .expect("the management stack policy");
    let policy: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let stack_policy: std::collections::BTreeSet<String> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .filter(|s| s["Sid"] == "ManagementAccountStack")
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let stack_calls: std::collections::BTreeSet<&str> = MANAGEMENT_STACK_IAM_ACTIONS
        .iter()
        .map(|(_, _, a)| *a)
        .collect();
    let main = policy_actions();
    for action in called_actions(proxy) {
        if stack_calls.contains(action.as_str()) {
            assert!(
                stack_policy.contains(&action),
                "{action} called, not granted by {MANAGEMENT_STACK_POLICY_FILE}: {stack_policy:?}"
            );
        } else {
            assert!(
                main.contains(&action),
                "{action} called, not granted by the main policy"
            );
        }
    }
    let called = called_actions(proxy);
    for action in expected {
        assert!(
            called.contains(*action),
            "{action} never called: {called:?}"
        );
    }
}

fn yaml(management: &str) -> String {
    Desired::new("Aimably access", vec!["ROOT".to_string()]).yaml()
        + &format!("  managementAccount: {management}\n")
}

async fn reconcile_once(
    server: &MotoServer,
    proxy: &FaultProxy,
    desired: &std::path::Path,
    what: &str,
) -> String {
    let mut command = stacksetd_via(server, &proxy.endpoint());
    command
        .arg("--desired")
        .arg(desired)
        .args(["reconcile", "--once"]);
    let output = run(command).await;
    assert_exit(&output, 0, what);
    describe_output(&output)
}

async fn plan_exit(
    server: &MotoServer,
    proxy: &FaultProxy,
    desired: &std::path::Path,
) -> (i32, String) {
    let mut command = stacksetd_via(server, &proxy.endpoint());
    command
        .arg("--desired")
        .arg(desired)
        .args(["plan", "--detailed-exitcode"]);
    let output = run(command).await;
    (exit_code(&output), describe_output(&output))
}

/// The stack of the stack set's name in the management account, if any.
async fn stack(
    client: &aws_sdk_cloudformation::Client,
) -> Option<aws_sdk_cloudformation::types::Stack> {
    match client.describe_stacks().stack_name(STACK_SET).send().await {
        Ok(out) => out.stacks.unwrap_or_default().into_iter().next(),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                aws_smithy_types::error::metadata::ProvideErrorMetadata::message(s)
                    .is_some_and(|m| m.contains("does not exist"))
            }) =>
        {
            None
        }
        Err(e) => panic!("DescribeStacks: {e:?}"),
    }
}

async fn template_of(client: &aws_sdk_cloudformation::Client) -> String {
    client
        .get_template()
        .stack_name(STACK_SET)
        .send()
        .await
        .expect("GetTemplate")
        .template_body
        .expect("a body")
}

/// The template with one more resource: a change made outside stacksetd.
fn with_topic(body: &str) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(body).expect("a JSON template");
    doc["Resources"]["Topic"] = serde_json::json!({"Type": "AWS::SNS::Topic"});
    doc.to_string()
}

fn tag<'a>(stack: &'a aws_sdk_cloudformation::types::Stack, key: &str) -> Option<&'a str> {
    stack
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

#[tokio::test]
async fn the_management_account_keeps_a_stack_of_the_same_checked_template() {
    let server = MotoServer::start();
    let proxy = counted(&server);
    let org = build_org(&server, &OrgSpec::standard()).await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = write_desired(dir.path(), &yaml("{deploy: true}"));

    // plan shows the stack last, after the stack set's steps.
    let (code, output) = plan_exit(&server, &proxy, &desired).await;
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("create stack AimablyDataOnly in the management account"),
        "{output}"
    );

    reconcile_once(
        &server,
        &proxy,
        &desired,
        "reconcile --once with managementAccount",
    )
    .await;
    let found = stack(&client)
        .await
        .expect("the management account's stack");
    assert_eq!(
        found.stack_status().map(|s| s.as_str()),
        Some("CREATE_COMPLETE")
    );
    assert_eq!(tag(&found, "stacksetd.dev/deployment"), Some(DEPLOYMENT));
    let record = tag(&found, "stacksetd.dev/template-sha256").expect("the approval record");
    let body = template_body("aimably-data-only");
    assert_eq!(record, stacksetd::template::sha256_hex(body.as_bytes()));
    assert_eq!(template_of(&client).await, body, "the exact checked bytes");
    let set = describe_stack_set(&client, STACK_SET)
        .await
        .expect("stack set");
    assert_eq!(set.template_body(), Some(body.as_str()));
    assert!(
        !instance_accounts(&client, STACK_SET)
            .await
            .contains(MANAGEMENT_ACCOUNT_ID),
        "the stack set still never deploys to the management account"
    );
    assert_eq!(
        instance_accounts(&client, STACK_SET).await,
        org.member_accounts()
    );

    // Converged: plan has nothing to do (moto's answers read back the same), reconcile sends nothing.
    let (code, output) = plan_exit(&server, &proxy, &desired).await;
    assert_eq!(code, 0, "{output}");

    // Someone changes the stack's template outside stacksetd: put back.
    client
        .update_stack()
        .stack_name(STACK_SET)
        .template_body(with_topic(&body))
        .set_tags(Some(found.tags().to_vec()))
        .send()
        .await
        .expect("an edit outside stacksetd");
    let (code, output) = plan_exit(&server, &proxy, &desired).await;
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("update stack AimablyDataOnly"), "{output}");
    reconcile_once(
        &server,
        &proxy,
        &desired,
        "reconcile --once after the outside edit",
    )
    .await;
    assert_eq!(template_of(&client).await, body);
    assert_eq!(plan_exit(&server, &proxy, &desired).await.0, 0);

    // deploy: false deletes it; the stack set stays.
    let desired = write_desired(dir.path(), &yaml("{deploy: false}"));
    reconcile_once(
        &server,
        &proxy,
        &desired,
        "reconcile --once with deploy: false",
    )
    .await;
    assert!(stack(&client).await.is_none(), "deleted");
    assert!(describe_stack_set(&client, STACK_SET).await.is_some());
    assert_eq!(plan_exit(&server, &proxy, &desired).await.0, 0);
    assert_stack_calls_granted(
        &proxy,
        &[
            "cloudformation:CreateStack",
            "cloudformation:UpdateStack",
            "cloudformation:DeleteStack",
            "cloudformation:DescribeStacks",
            "cloudformation:GetTemplate",
        ],
    );
}

#[tokio::test]
async fn a_stack_of_that_name_stacksetd_did_not_make_is_left_alone() {
    let server = MotoServer::start();
    let proxy = counted(&server);
    build_org(&server, &OrgSpec::standard()).await;
    let client = cfn_client(&server).await;
    let theirs = r#"{"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}"#;
    client
        .create_stack()
        .stack_name(STACK_SET)
        .template_body(theirs)
        .tags(Tag::builder().key("team").value("platform").build())
        .send()
        .await
        .expect("a stack made by hand");
    let dir = tempfile::tempdir().expect("tempdir");
    for management in ["{deploy: true}", "{deploy: false}"] {
        let desired = write_desired(dir.path(), &yaml(management));
        let output = reconcile_once(
            &server,
            &proxy,
            &desired,
            "reconcile --once beside a foreign stack",
        )
        .await;
        let (_, plan) = plan_exit(&server, &proxy, &desired).await;
        assert!(
            plan.contains("left as it is"),
            "{management}: {plan}\n{output}"
        );
        let found = stack(&client).await.expect("still there");
        assert_eq!(tag(&found, "stacksetd.dev/deployment"), None);
        assert_eq!(
            template_of(&client).await,
            theirs,
            "{management}: untouched"
        );
    }
    let touched: Vec<_> = called_actions(&proxy)
        .into_iter()
        .filter(|a| {
            ["CreateStack", "UpdateStack", "DeleteStack"]
                .iter()
                .any(|c| a == &format!("cloudformation:{c}"))
        })
        .collect();
    assert!(
        touched.is_empty(),
        "a call on the foreign stack: {touched:?}"
    );
}
