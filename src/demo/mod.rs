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
use crate::controller::{self, Config, Context, DeploymentState};
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
    let mut story = Story::new(speed, &dir)?;
    story.introduce().await?;
    story.converge_from_nothing().await?;
    story.an_account_joins().await?;
    story.the_policy_level_changes().await?;
    story.an_account_is_blocked().await?;
    story.the_sandbox_is_excluded().await?;
    story.access_is_revoked().await?;
    story.total();
    drop(dir);
    Ok(())
}

/// The story: the simulated organization, the controller's context, the deployment as the scenes change it, and
/// what is printed (progress lines, and plans whose template warnings are printed once per version).
struct Story {
    speed: f64,
    sim: Sim,
    ctx: Context,
    deployment: Deployment,
    /// What the controller keeps between the deployment's passes (the daemon's worker owns it there).
    state: DeploymentState,
    scheduling_url: String,
    progress: ProgressPrinter,
    warned: BTreeSet<String>,
}

impl Story {
    fn new(speed: f64, dir: &TempDir) -> Result<Story, Error> {
        let data_only_url = file_url(&dir.write("aimably-data-only.json", DATA_ONLY_TEMPLATE)?);
        let scheduling_url =
            file_url(&dir.write("aimably-data-and-scheduling.json", SCHEDULING_TEMPLATE)?);
        let sim = Sim::realistic(SimConfig {
            instance_duration: Duration::from_secs_f64(SIM_INSTANCE_SECONDS / speed),
            operation_overhead: Duration::from_secs_f64(5.0 / speed),
            ..SimConfig::default()
        });
        let config = Config {
            poll_min: Duration::from_millis(50),
            poll_max: Duration::from_millis(500),
            error_backoff_base: Duration::from_millis(100),
            error_backoff_max: Duration::from_secs(2),
            org_scan_interval: Duration::from_secs(3600),
            track_progress: true,
            // Simulated time, like the operations: the deletions' wait is announced, then lasts a 60 s delay /
            // speed.
            deletion_delay: Duration::from_secs_f64(
                crate::controller::DEFAULT_DELETION_DELAY.as_secs_f64() / speed,
            ),
            ..Config::default()
        };
        let ctx = Context::new(Arc::new(sim.clone()) as Arc<dyn Cloud>, config);
        let mut deployment = example_deployment(&data_only_url)?;
        deployment.spec.managed_execution.active = false;
        Ok(Story {
            speed,
            sim,
            ctx,
            deployment,
            state: DeploymentState::default(),
            scheduling_url,
            progress: ProgressPrinter::new(),
            warned: BTreeSet::new(),
        })
    }

    async fn introduce(&mut self) -> Result<(), Error> {
        let snapshot = org::scan(&self.sim).await?;
        let suspended = snapshot
            .accounts
            .values()
            .filter(|a| !a.account.is_active())
            .count();
        self.message(format!(
            "== A simulated organization: {} accounts in {} OUs (management account {}, {} suspended)",
            snapshot.accounts.len(),
            snapshot.units.len() - 1,
            snapshot.management_account_id,
            suspended
        ));
        let speed = self.speed;
        self.message(format!(
            "   Simulated time runs {speed}x: an instance deploys in {:.1} s, and deletion_delay's {} s wait \
             (deletions wait until the desired state has stayed unchanged that long) lasts {:.1} s.",
            SIM_INSTANCE_SECONDS / speed,
            crate::controller::DEFAULT_DELETION_DELAY.as_secs(),
            crate::controller::DEFAULT_DELETION_DELAY.as_secs_f64() / speed
        ));
        Ok(())
    }

    /// The first scene, then what one more pass of a converged deployment costs.
    async fn converge_from_nothing(&mut self) -> Result<(), Error> {
        self.step("The desired state asks for Aimably's DataOnly role in every member account")
            .await?;
        let before = self.sim.calls().snapshot();
        let pass = controller::reconcile(&self.deployment, &self.ctx, &mut self.state).await?;
        let after = self.sim.calls().snapshot();
        let cost: Vec<String> = after
            .iter()
            .filter_map(|(key, n)| {
                let delta = n - before.get(key).copied().unwrap_or(0);
                (delta > 0).then(|| format!("{} x{delta}", key.1))
            })
            .collect();
        self.message(format!(
            "   a converged pass ({:?}) costs: {}",
            pass.state,
            cost.join(", ")
        ));
        Ok(())
    }

    async fn an_account_joins(&mut self) -> Result<(), Error> {
        let prod = self
            .sim
            .ou_named("Prod")
            .unwrap_or_else(|| self.sim.root_id());
        let new_account = self.sim.add_account(&prod, "payments-prod-2");
        self.message(format!(
            "\n== A new member account {new_account} joins the Prod OU: auto-deployment covers it"
        ));
        wait_for_instance(
            &self.sim,
            &self.deployment.spec.stack_set_name,
            &new_account,
        )
        .await;
        self.ctx.invalidate_organization();
        self.converge().await
    }

    async fn the_policy_level_changes(&mut self) -> Result<(), Error> {
        self.deployment.spec.template.url = Some(self.scheduling_url.clone());
        self.deployment.spec.template.policy = Some(desired::PolicyLevel::DataAndScheduling);
        self.step("The customer moves to the DataAndScheduling policy level: it grants more, so it is held")
            .await?;
        self.deployment.spec.template.sha256 =
            Some(crate::template::sha256_hex(SCHEDULING_TEMPLATE.as_bytes()));
        self.step("The operator reviews the IAM diff and pins that digest: now it is applied")
            .await
    }

    /// An account blocked by a hand-made role: the failure is reported where it happens, then retried alone.
    async fn an_account_is_blocked(&mut self) -> Result<(), Error> {
        let victim = active_members(&self.sim).remove(0);
        self.sim.fail_account(
            &victim,
            "AimablyMemberRole already exists and is not managed by this stack",
        );
        self.deployment.spec.description = Some("Aimably access (reviewed by FinOps)".into());
        self.message(format!(
            "\n== An operator edits the description; account {victim} has a hand-made role in the way"
        ));
        self.plan().await;
        let Story {
            deployment,
            ctx,
            state,
            progress,
            ..
        } = self;
        match controller::converge(deployment, ctx, state, |o| {
            progress.outcome(deployment.name(), o)
        })
        .await
        {
            Err(e) => {
                self.finish();
                self.message(format!("reported: {e}"));
            }
            Ok(_) => self.message("(the failure did not surface)".into()),
        }
        self.sim.heal_account(&victim);
        self.message(format!(
            "== The hand-made role in {victim} is removed; the next pass retries that one instance"
        ));
        self.converge().await
    }

    async fn the_sandbox_is_excluded(&mut self) -> Result<(), Error> {
        let sandbox = self.sim.ou_named("Sandbox").unwrap_or_default();
        let sandbox_accounts: Vec<String> = self
            .sim
            .accounts()
            .into_iter()
            .filter(|(_, parent)| *parent == sandbox)
            .map(|(a, _)| a.id)
            .collect();
        let targets = &mut self.deployment.spec.deployment_targets;
        targets.accounts = sandbox_accounts;
        targets.account_filter_type = desired::AccountFilterType::Difference;
        self.step(
            "The Sandbox accounts are excluded (DIFFERENCE filter): exactly their instances go",
        )
        .await
    }

    async fn access_is_revoked(&mut self) -> Result<(), Error> {
        self.deployment.spec.ensure = Ensure::Absent;
        self.step("The customer leaves Aimably: revoke access (ensure: Absent)")
            .await
    }

    fn total(&mut self) {
        self.message(format!(
            "\n== Done: {} API calls in the whole demo, by operation:",
            self.sim.calls().total()
        ));
        for (operation, n) in self.sim.calls().by_operation() {
            self.message(format!("   {operation:<34} {n}"));
        }
    }

    /// A scene: its title, the plan, then the passes to convergence.
    async fn step(&mut self, title: &str) -> Result<(), Error> {
        self.message(format!("\n== {title}"));
        self.plan().await;
        self.converge().await
    }

    async fn plan(&mut self) {
        let planned = [Planned {
            deployment: &self.deployment,
            result: controller::dry_run(&self.deployment, &self.ctx, &mut self.state).await,
        }];
        let text = output::plan_text_warning_once(&planned, &mut self.warned);
        for line in text.lines() {
            self.progress.message(format!("   {line}"));
        }
    }

    async fn converge(&mut self) -> Result<(), Error> {
        let Story {
            deployment,
            ctx,
            state,
            progress,
            ..
        } = self;
        let result = controller::converge(deployment, ctx, state, |o| {
            progress.outcome(deployment.name(), o)
        })
        .await;
        self.finish();
        result.map(drop)
    }

    fn message(&mut self, line: String) {
        self.progress.message(line);
    }

    fn finish(&mut self) {
        self.progress.finish();
    }
}

/// The simulated organization's active member accounts (every active account below the root's own: the
/// management account sits in the root), the ones a scene may block.
fn active_members(sim: &Sim) -> Vec<String> {
    let root = sim.root_id();
    sim.accounts()
        .into_iter()
        .filter(|(account, parent)| account.is_active() && *parent != root)
        .map(|(account, _)| account.id)
        .collect()
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
