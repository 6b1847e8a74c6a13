//! Benchmark: the cost of a converged pass against moto (the local AWS), at organization scale.
//!
//!     scripts/setup-moto.sh && BENCH_ACCOUNTS=1000 cargo bench --bench converged_pass
//!
//! Builds an organization of BENCH_ACCOUNTS member accounts in BENCH_OUS OUs on a fresh moto, converges the
//! deployment (whole organization, one Region), then runs BENCH_PASSES converged passes and reports, per pass,
//! the API calls by operation and the wall time; plus the wall time of the release binary's `plan` (process
//! start, credentials, organization scan, observation). Not a test: it is `test = false` in Cargo.toml.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{MotoServer, OrgSpec, OuSpec};
use stacksetd::cloud::Cloud;
use stacksetd::cloud::aws::{AwsCloud, AwsSettings};
use stacksetd::controller::{self, Config, Context, DeploymentState};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if !common::bench_start() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let accounts = env_number("BENCH_ACCOUNTS", 1000);
    let ous = env_number("BENCH_OUS", 10).max(1);
    let passes = env_number("BENCH_PASSES", 5).max(1);
    let server = MotoServer::start();
    let spec = OrgSpec {
        root_accounts: accounts % ous,
        ous: (0..ous)
            .map(|i| OuSpec::new(&format!("OU{i}"), None, accounts / ous))
            .collect(),
        trusted_access: true,
    };
    let started = Instant::now();
    let org = common::build_org(&server, &spec).await;
    println!(
        "organization: {} member accounts in {ous} OUs, built in {:.1?}",
        org.member_accounts().len(),
        started.elapsed()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "apiVersion: stacksetd.dev/v1alpha1\nkind: StackSetDeployment\nmetadata: {{name: bench}}\nspec:\n  \
         stackSetName: AimablyBench\n  managementAccountId: \"{}\"\n  template: {{url: \"{}\"}}\n  \
         parameters: {{ManagementAccountId: \"{}\"}}\n  deploymentTargets: {{organizationalUnitIds: [ROOT]}}\n  \
         regions: [{}]\n  operationPreferences: {{failureTolerancePercentage: 100, maxConcurrentPercentage: 100, \
         concurrencyMode: SOFT_FAILURE_TOLERANCE}}\n",
        org.management_account_id,
        common::template_url("aimably-data-only"),
        org.management_account_id,
        common::REGION
    );
    let desired_path = common::write_desired(dir.path(), &yaml);
    let deployment = stacksetd::desired::load(&desired_path)
        .expect("valid desired state")
        .deployments
        .remove(0);

    let settings = AwsSettings {
        region: Some(common::REGION.into()),
        endpoint_url: Some(server.endpoint()),
        max_attempts: 5,
    };
    let cloud = Arc::new(AwsCloud::connect(&settings).await.expect("connect"));
    let config = Config {
        poll_min: std::time::Duration::from_millis(200),
        ..Config::default()
    };
    let ctx = Context::new(cloud.clone() as Arc<dyn Cloud>, config);
    let state = &mut DeploymentState::default();
    let started = Instant::now();
    let outcome = controller::converge(&deployment, &ctx, state, |_| {})
        .await
        .expect("converges");
    println!(
        "converged from nothing in {:.1?}: {} instances, {} missing",
        started.elapsed(),
        outcome.report.instance_total(),
        outcome.report.missing_instances
    );

    let mut walls = Vec::new();
    let mut per_pass = None;
    for _ in 0..passes {
        let before = cloud.calls().snapshot();
        let started = Instant::now();
        let outcome = controller::reconcile(&deployment, &ctx, state)
            .await
            .expect("pass");
        walls.push(started.elapsed());
        assert!(outcome.is_converged(), "{:?}", outcome.state);
        let after = cloud.calls().snapshot();
        let delta: Vec<(String, u64)> = after
            .iter()
            .filter_map(|(key, n)| {
                let d = n - before.get(key).copied().unwrap_or(0);
                (d > 0).then(|| (format!("{}:{}", key.0, key.1), d))
            })
            .collect();
        per_pass = Some(delta);
    }
    walls.sort();
    let calls = per_pass.unwrap_or_default();
    println!("converged pass ({passes} runs, in-process, debug or release as built):");
    println!(
        "  API calls: {} total: {calls:?}",
        calls.iter().map(|(_, n)| n).sum::<u64>()
    );
    println!(
        "  wall time: min {:.1?}, median {:.1?}, max {:.1?}",
        walls[0],
        walls[walls.len() / 2],
        walls[walls.len() - 1]
    );

    let started = Instant::now();
    let mut command = common::stacksetd(&server);
    command.args([
        "--desired",
        desired_path.to_str().unwrap_or_default(),
        "plan",
        "--detailed-exitcode",
    ]);
    let output = command.output().expect("run stacksetd plan");
    println!(
        "`stacksetd plan` as a process (start, credentials, organization scan, observe): {:.1?}, exit {:?}",
        started.elapsed(),
        output.status.code()
    );
}
