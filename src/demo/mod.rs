//! `stacksetd demo`: the controller against the embedded simulated organization, no AWS account needed. It tells
//! the product's story on a realistic organization: converge from nothing, a new member account joining, the
//! vendor's policy level changing, an account whose deployment fails (and is retried), a dropped OU, and revoking
//! access. Every step is a real controller pass against `sim`, which keeps AWS's semantics.
//!
//! `serve` is `demo --serve`: the daemon with its page and endpoints on the same organization, kept changing.

pub mod serve;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::output::{self, Planned, ProgressPrinter};
use crate::cloud::sim::{Sim, SimConfig};
use crate::cloud::{Cloud, org};
use crate::controller::{self, Config, Context};
use crate::desired::{self, Deployment, Ensure};
use crate::error::Error;

/// The project's example templates, embedded so the demo runs from any directory.
const DATA_ONLY_TEMPLATE: &str = include_str!("../../config/templates/aimably-data-only.json");
const SCHEDULING_TEMPLATE: &str =
    include_str!("../../config/templates/aimably-data-and-scheduling.json");
/// The documented example desired state, with the template pointed at the embedded copy.
const EXAMPLE_DESIRED: &str = include_str!("../../config/aimably-data-only.yaml");

/// Simulated seconds one instance takes to deploy (AWS: "less than a minute per account").
const SIM_INSTANCE_SECONDS: f64 = 20.0;

/// The `--speed` values the demo accepts (simulated seconds per real second).
pub const SPEED_RANGE: (f64, f64) = (1.0, 10_000.0);
/// The default `--speed`: the whole story in about ten seconds, each wait still long enough to read its line.
pub const DEFAULT_SPEED: f64 = 40.0;

/// A directory for the demo's files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(kind: &str) -> Result<TempDir, Error> {
        let dir =
            std::env::temp_dir().join(format!("stacksetd-demo-{kind}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(TempDir(dir))
    }

    fn write(&self, name: &str, body: &str) -> Result<PathBuf, Error> {
        let path = self.0.join(name);
        std::fs::write(&path, body).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

pub async fn run(speed: f64) -> Result<(), Error> {
    if !(SPEED_RANGE.0..=SPEED_RANGE.1).contains(&speed) {
        return Err(Error::Settings(format!(
            "demo speed {speed} is out of range: use {} to {}",
            SPEED_RANGE.0, SPEED_RANGE.1
        )));
    }
    let dir = TempDir::new("story")?;
    let data_only_url = file_url(&dir.write("aimably-data-only.json", DATA_ONLY_TEMPLATE)?);
    let scheduling_url =
        file_url(&dir.write("aimably-data-and-scheduling.json", SCHEDULING_TEMPLATE)?);

    let sim = Sim::realistic(SimConfig {
        instance_duration: Duration::from_secs_f64(SIM_INSTANCE_SECONDS / speed),
        operation_overhead: Duration::from_secs_f64(5.0 / speed),
        ..SimConfig::default()
    });
    let cloud: Arc<dyn Cloud> = Arc::new(sim.clone());
    let config = Config {
        poll_min: Duration::from_millis(50),
        poll_max: Duration::from_millis(500),
        error_backoff_base: Duration::from_millis(100),
        error_backoff_max: Duration::from_secs(2),
        org_scan_interval: Duration::from_secs(3600),
        track_progress: true,
        // Simulated time, like the operations: the deletions' wait is announced, then lasts a 60 s delay / speed.
        deletion_delay: Duration::from_secs_f64(
            crate::controller::DEFAULT_DELETION_DELAY.as_secs_f64() / speed,
        ),
        ..Config::default()
    };
    let ctx = Context::new(cloud.clone(), config);
    let mut out = Story {
        progress: ProgressPrinter::new(),
        warned: BTreeSet::new(),
    };

    let snapshot = org::scan(cloud.as_ref()).await?;
    let suspended = snapshot
        .accounts
        .values()
        .filter(|a| !a.account.is_active())
        .count();
    out.message(format!(
        "== A simulated organization: {} accounts in {} OUs (management account {}, {} suspended)",
        snapshot.accounts.len(),
        snapshot.units.len() - 1,
        snapshot.management_account_id,
        suspended
    ));
    out.message(format!(
        "   Simulated time runs {speed}x: an instance deploys in {:.1} s, and deletion_delay's {} s wait (deletions \
         wait until the desired state has stayed unchanged that long) lasts {:.1} s.",
        SIM_INSTANCE_SECONDS / speed,
        crate::controller::DEFAULT_DELETION_DELAY.as_secs(),
        crate::controller::DEFAULT_DELETION_DELAY.as_secs_f64() / speed
    ));

    let mut deployment = example_deployment(&data_only_url)?;
    deployment.spec.managed_execution.active = false;
    step(
        &mut out,
        "The desired state asks for Aimably's DataOnly role in every member account",
        &ctx,
        &deployment,
    )
    .await?;

    let before = sim.calls().snapshot();
    let pass = controller::reconcile(&deployment, &ctx).await?;
    let after = sim.calls().snapshot();
    let cost: Vec<String> = after
        .iter()
        .filter_map(|(key, n)| {
            let delta = n - before.get(key).copied().unwrap_or(0);
            (delta > 0).then(|| format!("{} x{delta}", key.1))
        })
        .collect();
    out.message(format!(
        "   a converged pass ({:?}) costs: {}",
        pass.state,
        cost.join(", ")
    ));

    let workloads = sim.ou_named("Prod").unwrap_or_else(|| sim.root_id());
    let new_account = sim.add_account(&workloads, "payments-prod-2");
    out.message(format!(
        "\n== A new member account {new_account} joins the Prod OU: auto-deployment covers it"
    ));
    wait_for_instance(&sim, &deployment.spec.stack_set_name, &new_account).await;
    ctx.invalidate_organization().await;
    converge(&mut out, &ctx, &deployment).await?;

    deployment.spec.template.url = Some(scheduling_url);
    deployment.spec.template.policy = Some(desired::PolicyLevel::DataAndScheduling);
    step(
        &mut out,
        "The customer moves to the DataAndScheduling policy level: it grants more, so it is held",
        &ctx,
        &deployment,
    )
    .await?;

    deployment.spec.template.sha256 =
        Some(crate::template::sha256_hex(SCHEDULING_TEMPLATE.as_bytes()));
    step(
        &mut out,
        "The operator reviews the IAM diff and pins that digest: now it is applied",
        &ctx,
        &deployment,
    )
    .await?;

    let victim = snapshot
        .accounts
        .values()
        .find(|a| a.account.is_active() && a.account.id != snapshot.management_account_id)
        .map(|a| a.account.id.clone())
        .unwrap_or_default();
    sim.fail_account(
        &victim,
        "AimablyMemberRole already exists and is not managed by this stack",
    );
    deployment.spec.description = Some("Aimably access (reviewed by FinOps)".into());
    out.message(format!(
        "\n== An operator edits the description; account {victim} has a hand-made role in the way"
    ));
    plan(&mut out, &ctx, &deployment).await;
    match controller::converge(&deployment, &ctx, |o| out.outcome(deployment.name(), o)).await {
        Err(e) => {
            out.finish();
            out.message(format!("reported: {e}"));
        }
        Ok(_) => out.message("(the failure did not surface)".into()),
    }
    sim.heal_account(&victim);
    out.message(format!(
        "== The hand-made role in {victim} is removed; the next pass retries that one instance"
    ));
    converge(&mut out, &ctx, &deployment).await?;

    let sandbox = sim.ou_named("Sandbox").unwrap_or_default();
    let sandbox_accounts: Vec<String> = sim
        .accounts()
        .into_iter()
        .filter(|(_, parent)| *parent == sandbox)
        .map(|(a, _)| a.id)
        .collect();
    deployment.spec.deployment_targets.accounts = sandbox_accounts;
    deployment.spec.deployment_targets.account_filter_type = desired::AccountFilterType::Difference;
    step(
        &mut out,
        "The Sandbox accounts are excluded (DIFFERENCE filter): exactly their instances go",
        &ctx,
        &deployment,
    )
    .await?;

    deployment.spec.ensure = Ensure::Absent;
    step(
        &mut out,
        "The customer leaves Aimably: revoke access (ensure: Absent)",
        &ctx,
        &deployment,
    )
    .await?;

    out.message(format!(
        "\n== Done: {} API calls in the whole demo, by operation:",
        sim.calls().total()
    ));
    for (operation, n) in sim.calls().by_operation() {
        out.message(format!("   {operation:<34} {n}"));
    }
    drop(dir);
    Ok(())
}

/// What the story prints: progress lines, and plans whose template warnings are printed once per version.
struct Story {
    progress: ProgressPrinter,
    warned: BTreeSet<String>,
}

impl Story {
    fn message(&mut self, line: String) {
        self.progress.message(line);
    }

    fn outcome(&mut self, deployment: &str, outcome: &controller::Outcome) {
        self.progress.outcome(deployment, outcome);
    }

    fn finish(&mut self) {
        self.progress.finish();
    }
}

fn example_deployment(template_url: &str) -> Result<Deployment, Error> {
    let mut deployments = desired::parse_str(
        EXAMPLE_DESIRED,
        std::path::Path::new("config/aimably-data-only.yaml"),
    )?;
    let mut deployment = deployments.remove(0);
    deployment.spec.template.url = Some(template_url.to_string());
    Ok(deployment)
}

async fn plan(out: &mut Story, ctx: &Context, deployment: &Deployment) {
    let planned = [Planned {
        deployment,
        result: controller::dry_run(deployment, ctx).await,
    }];
    for line in output::plan_text_warning_once(&planned, &mut out.warned).lines() {
        out.message(format!("   {line}"));
    }
}

async fn step(
    out: &mut Story,
    title: &str,
    ctx: &Context,
    deployment: &Deployment,
) -> Result<(), Error> {
    out.message(format!("\n== {title}"));
    plan(out, ctx, deployment).await;
    converge(out, ctx, deployment).await
}

async fn converge(out: &mut Story, ctx: &Context, deployment: &Deployment) -> Result<(), Error> {
    let result = controller::converge(deployment, ctx, |o| out.outcome(deployment.name(), o)).await;
    out.finish();
    result.map(drop)
}

/// Auto-deployment is AWS's own operation; give it a moment (bounded) to show up.
async fn wait_for_instance(sim: &Sim, stack_set: &str, account: &str) {
    for _ in 0..200 {
        if sim
            .instances(stack_set)
            .iter()
            .any(|i| i.account == account && !i.in_progress())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
