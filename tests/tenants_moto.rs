//! `spec.credentials` end to end: one `stacksetd run` process serves two organizations on moto (its
//! multi-account mode: credentials from AssumeRole act in the role's account). The daemon's own credentials are
//! organization A's management account; organization B's management account is reached only through a role with
//! an external id. Each deployment converges in its own organization and nothing crosses over.

use std::time::Duration;

use aws_sdk_cloudformation as cfn;

use crate::common::*;
use crate::daemon_support::eventually;
use crate::daemon_support::process::DaemonProcess;

const B_MANAGEMENT: &str = "210987654321";
const B_ROLE: &str = "arn:aws:iam::210987654321:role/stacksetd-tenant";
const CONVERGE: Duration = Duration::from_secs(120);

/// The common desired document, renamed and moved to another organization, with optional `credentials:` lines.
fn tenant_yaml(
    name: &str,
    stack_set: &str,
    management: &str,
    ou: &str,
    credentials: &str,
) -> String {
    let mut yaml = Desired::new("tenant", vec![ou.to_string()])
        .yaml()
        .replace(&format!("name: {DEPLOYMENT}"), &format!("name: {name}"))
        .replace(STACK_SET, stack_set)
        .replace(MANAGEMENT_ACCOUNT_ID, management);
    yaml.push_str(credentials);
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_organizations_from_one_daemon_each_through_its_own_role() {
    let server = MotoServer::start();
    let spec = OrgSpec {
        root_accounts: 0,
        ous: vec![OuSpec::new("Workloads", None, 3)],
        trusted_access: true,
    };
    let org_a = build_org(&server, &spec).await;
    let b_config = assume_role_config(&server, B_ROLE).await;
    let org_b = build_org_as(&b_config, &spec).await;
    assert_eq!(org_a.management_account_id, MANAGEMENT_ACCOUNT_ID);
    assert_eq!(
        org_b.management_account_id, B_MANAGEMENT,
        "moto serves the role's account"
    );

    let dir = tempfile::tempdir().unwrap();
    let ou_a = org_a.ou("Workloads").to_string();
    let ou_b = org_b.ou("Workloads").to_string();
    let desired = [
        tenant_yaml("tenant-a", "AimablyTenantA", MANAGEMENT_ACCOUNT_ID, &ou_a, ""),
        tenant_yaml(
            "tenant-b",
            "AimablyTenantB",
            B_MANAGEMENT,
            &ou_b,
            &format!(
                "  credentials:\n    roleArn: {B_ROLE}\n    externalId: b-7f3a91\n    durationSeconds: 900\n"
            ),
        ),
    ]
    .join("---\n");
    let path = write_desired(dir.path(), &desired);
    let daemon = DaemonProcess::spawn(stacksetd(&server), &path, &[]);
    for name in ["tenant-a", "tenant-b"] {
        eventually(CONVERGE, &format!("{name} converged"), || async {
            let s = crate::daemon_support::get(&daemon.addr, "/status")
                .await
                .json();
            let d = &s["deployments"][name];
            (d["conditions"][0]["status"] == "True").then_some(())
        })
        .await;
    }

    let cfn_a = cfn_client(&server).await;
    let cfn_b = cfn::Client::new(&b_config);
    assert_eq!(
        instance_accounts(&cfn_a, "AimablyTenantA").await,
        org_a.accounts_under("Workloads")
    );
    assert_eq!(
        instance_accounts(&cfn_b, "AimablyTenantB").await,
        org_b.accounts_under("Workloads")
    );
    // Each stack set exists in its own organization only.
    assert!(stack_sets_named(&cfn_a, "AimablyTenantB").await.is_empty());
    assert!(stack_sets_named(&cfn_b, "AimablyTenantA").await.is_empty());
    // The role was assumed (STS counted in the metrics), and the external id never reached /status or the log.
    let metrics = daemon.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("operation=\"AssumeRole\"") && l.contains("sts")),
        "no AssumeRole counted:\n{metrics}"
    );
    let status = crate::daemon_support::get(&daemon.addr, "/status")
        .await
        .body;
    assert!(!status.contains("b-7f3a91"));
    assert!(!crate::daemon_support::process::dump(&daemon.logs).contains("b-7f3a91"));
    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0));
}
