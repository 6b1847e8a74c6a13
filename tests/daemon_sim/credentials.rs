//! `spec.credentials`: one daemon, several organizations, each deployment acting through its own role. The
//! daemon's own identity is organization A's management account; organization B is reached only by assuming a
//! role (with an external id). Also: a role that cannot be assumed stalls its deployment with the role and the
//! permission named and nothing sent anywhere; a role leading into the wrong organization is refused by
//! preflight (the assumed identity is checked, not the ARN).

use std::sync::Arc;
use std::time::Duration;

use stacksetd::cloud::sim::{Sim, SimConfig, SimRoles};
use stacksetd::controller;
use stacksetd::daemon::{Daemon, Options};
use tokio::sync::oneshot;

use crate::daemon_support::*;

const REGION: &str = "us-east-1";
const WAIT: Duration = Duration::from_secs(15);
const B_ACCOUNT: &str = "210987654321";
const B_ROLE: &str = "arn:aws:iam::210987654321:role/stacksetd-tenant";

fn organization(management: &str, members: usize) -> Sim {
    let sim = Sim::new(SimConfig {
        management_account_id: management.to_string(),
        instance_duration: Duration::from_millis(20),
        operation_overhead: Duration::from_millis(10),
        ..SimConfig::default()
    });
    let ou = sim.add_ou(&sim.root_id(), "Workloads");
    for i in 0..members {
        sim.add_account(&ou, &format!("{management}-member-{i}"));
    }
    sim
}

/// A deployment of `management`'s organization, acting as `credentials` (YAML lines under `credentials:`).
fn document(name: &str, stack_set: &str, management: &str, credentials: Option<&str>) -> String {
    let mut yaml =
        deployment_yaml(name, stack_set, "tenant", REGION).replace("123456789012", management);
    if let Some(credentials) = credentials {
        yaml.push_str(&format!("  credentials:\n{credentials}"));
    }
    yaml
}

fn active_instances(sim: &Sim, stack_set: &str) -> usize {
    sim.instances(stack_set).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_converges_two_organizations_each_with_its_own_role() {
    let a = organization("123456789012", 3);
    let b = organization(B_ACCOUNT, 2);
    let roles = SimRoles::default();
    roles.allow(B_ROLE, &b, Some("tenant-b-7f3a"));
    // A role that looks like organization A's but leads into B: preflight must catch the identity.
    roles.allow("arn:aws:iam::123456789012:role/misrouted", &b, None);

    let desired = [
        document("tenant-a", "TenantA", "123456789012", None),
        document(
            "tenant-b",
            "TenantB",
            B_ACCOUNT,
            Some(&format!(
                "    roleArn: {B_ROLE}\n    externalId: tenant-b-7f3a\n    durationSeconds: 900\n"
            )),
        ),
        document(
            "tenant-c",
            "TenantC",
            B_ACCOUNT,
            Some("    roleArn: arn:aws:iam::210987654321:role/not-trusted\n"),
        ),
        document(
            "tenant-d",
            "TenantD",
            "123456789012",
            Some("    roleArn: arn:aws:iam::123456789012:role/misrouted\n"),
        ),
    ]
    .join("---\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desired.yaml");
    std::fs::write(&path, &desired).unwrap();
    let config = controller::Config {
        poll_min: Duration::from_millis(20),
        poll_max: Duration::from_millis(200),
        error_backoff_base: Duration::from_millis(50),
        error_backoff_max: Duration::from_secs(1),
        ..controller::Config::default()
    };
    let options = Options {
        shutdown_timeout: Duration::from_secs(5),
        ..Options::local(path)
    };
    let daemon = Daemon::bind(Arc::new(a.clone()), config, options)
        .await
        .unwrap()
        .with_connector(Arc::new(roles.clone()));
    let addr = daemon.local_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run(async move {
        let _ = stopped.await;
    }));

    let ready = |s: &serde_json::Value, name: &str, kind: &str| {
        s["deployments"][name]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind).cloned())
            .unwrap_or_default()
    };
    eventually(WAIT, "tenant-a and tenant-b converged", || async {
        let s = get(&addr, "/status").await.json();
        (ready(&s, "tenant-a", "Ready")["status"] == "True"
            && ready(&s, "tenant-b", "Ready")["status"] == "True")
            .then_some(())
    })
    .await;
    // Each organization holds its own stack set, deployed to its own members; nothing crossed over.
    assert_eq!(active_instances(&a, "TenantA"), 3);
    assert_eq!(active_instances(&b, "TenantB"), 2);
    assert!(a.stack_set("TenantB").is_none() && b.stack_set("TenantA").is_none());
    assert!(
        roles
            .assumed()
            .iter()
            .all(|r| r != "arn:aws:iam::210987654321:role/not-trusted")
    );

    let status = eventually(WAIT, "tenant-c and tenant-d stalled", || async {
        let s = get(&addr, "/status").await.json();
        (ready(&s, "tenant-c", "Stalled")["status"] == "True"
            && ready(&s, "tenant-d", "Stalled")["status"] == "True")
            .then_some(s)
    })
    .await;
    let c = ready(&status, "tenant-c", "Stalled");
    assert_eq!(c["reason"], "assume_role_failed", "{c}");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("arn:aws:iam::210987654321:role/not-trusted")
            && message.contains("sts:AssumeRole"),
        "{message}"
    );
    // The preflight compared the identity the role gave with managementAccountId.
    let d = ready(&status, "tenant-d", "Stalled");
    assert_eq!(d["reason"], "wrong_organization", "{d}");
    assert!(d["message"].as_str().unwrap().contains(B_ACCOUNT), "{d}");
    for sim in [&a, &b] {
        assert!(sim.stack_set("TenantC").is_none() && sim.stack_set("TenantD").is_none());
    }
    // The external id is a shared secret with the role's owner: never on /status.
    assert!(!status.to_string().contains("tenant-b-7f3a"));

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[test]
fn credentials_are_checked_offline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desired.yaml");
    let text = document(
        "bad",
        "Bad",
        "123456789012",
        Some(
            "    roleArn: arn:aws:iam::210987654321:role/elsewhere\n    externalId: x\n    sessionName: \"a b\"\n    durationSeconds: 60\n",
        ),
    );
    std::fs::write(&path, &text).unwrap();
    let err = stacksetd::desired::load(&path).unwrap_err().to_string();
    for expected in [
        "spec.credentials.roleArn",
        "callAs SELF",
        "spec.credentials.externalId",
        "spec.credentials.sessionName",
        "spec.credentials.durationSeconds",
    ] {
        assert!(err.contains(expected), "{expected} missing from:\n{err}");
    }
    // The external id is not echoed back (a finding names the field, not the value).
    assert!(!err.contains("externalId: x"), "{err}");
    std::fs::write(
        &path,
        text.replace("    externalId: x\n", "    roleARN: typo\n"),
    )
    .unwrap();
    let err = stacksetd::desired::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("unknown field `roleARN`; did you mean `roleArn`?"),
        "{err}"
    );
    // The management account's stack is accepted with the management account's own identity.
    let text =
        document("mgmt", "Mgmt", "123456789012", None) + "  managementAccount: {deploy: true}\n";
    std::fs::write(&path, &text).unwrap();
    stacksetd::desired::load(&path).expect("managementAccount.deploy with callAs SELF");
}
