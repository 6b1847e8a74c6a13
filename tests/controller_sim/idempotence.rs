//! Plan idempotence as a law (proptest on the simulator, fixed case count and seed, printed): from a random
//! starting stack set (the convergence of a random desired state) to a random other desired state, plan -> apply
//! -> plan converges within a bounded number of passes and then plans nothing, for every field and target shape
//! (nested OUs, the root, INTERSECTION, DIFFERENCE, several Regions, Regions added and dropped, descriptions and
//! tags added and removed, auto-deployment and managed execution toggled).

use std::time::Duration;

use proptest::prelude::*;
use stacksetd::cloud::sim::{Sim, SimConfig};
use stacksetd::controller::{self, Config, Context, DeploymentState, State};
use stacksetd::desired::{self, Deployment};

use super::helpers::config;

const CASES: u32 = 48;
const DEFAULT_SEED: u64 = 0x1de_a90e;
/// Passes a change may take (each pass submits at most one step; operations take simulated seconds).
const MAX_PASSES: usize = 80;

/// An organization with nested OUs: A (2 accounts) > B (1), and C (2).
struct Org {
    sim: Sim,
    ous: Vec<String>,
    accounts: Vec<String>,
}

fn org() -> Org {
    let sim = Sim::new(SimConfig::default());
    let root = sim.root_id();
    let a = sim.add_ou(&root, "A");
    let b = sim.add_ou(&a, "B");
    let c = sim.add_ou(&root, "C");
    let accounts = vec![
        sim.add_account(&a, "a1"),
        sim.add_account(&a, "a2"),
        sim.add_account(&b, "b1"),
        sim.add_account(&c, "c1"),
        sim.add_account(&c, "c2"),
    ];
    Org {
        sim,
        ous: vec![a, b, c],
        accounts,
    }
}

/// One desired state, as indices into the organization (so any combination is meaningful).
#[derive(Debug, Clone)]
struct Shape {
    /// None: ROOT; else a non-empty subset of the OUs.
    ous: Option<Vec<usize>>,
    filter: u8,
    accounts: Vec<usize>,
    regions: Vec<usize>,
    description: Option<u8>,
    tags: Vec<(u8, u8)>,
    auto: bool,
    managed: bool,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        prop_oneof![
            Just(None),
            proptest::sample::subsequence(vec![0usize, 1, 2], 1..=2).prop_map(Some)
        ],
        0u8..3,
        proptest::sample::subsequence(vec![0usize, 1, 2, 3, 4], 1..=2),
        proptest::sample::subsequence(vec![0usize, 1, 2], 1..=3),
        proptest::option::of(0u8..3),
        proptest::collection::vec((0u8..3, 0u8..3), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(ous, filter, accounts, regions, description, tags, auto, managed)| Shape {
                ous,
                filter,
                accounts,
                regions,
                description,
                tags,
                auto,
                managed,
            },
        )
}

const REGIONS: [&str; 3] = ["us-west-2", "eu-west-1", "ap-south-1"];

fn deployment(org: &Org, s: &Shape) -> Deployment {
    let ous = match &s.ous {
        None => "ROOT".to_string(),
        Some(list) => list
            .iter()
            .map(|i| org.ous[*i].clone())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let filter = match s.filter {
        0 => String::new(),
        f => format!(
            "    accounts: [{}]\n    accountFilterType: {}\n",
            s.accounts
                .iter()
                .map(|i| format!("\"{}\"", org.accounts[*i]))
                .collect::<Vec<_>>()
                .join(", "),
            if f == 1 { "INTERSECTION" } else { "DIFFERENCE" }
        ),
    };
    let regions = s
        .regions
        .iter()
        .map(|i| REGIONS[*i])
        .collect::<Vec<_>>()
        .join(", ");
    let description = s
        .description
        .map(|d| format!("  description: \"version {d}\"\n"))
        .unwrap_or_default();
    let mut tags = std::collections::BTreeMap::new();
    for (k, v) in &s.tags {
        tags.insert(format!("k{k}"), format!("v{v}"));
    }
    let tags = tags
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let yaml = format!(
        r#"apiVersion: stacksetd.dev/v1alpha1
kind: StackSetDeployment
metadata:
  name: prop
spec:
  stackSetName: Prop
{description}  managementAccountId: "123456789012"
  template:
    url: "file://{template}"
  parameters:
    ManagementAccountId: "123456789012"
  tags: {{{tags}}}
  deploymentTargets:
    organizationalUnitIds: [{ous}]
{filter}  regions: [{regions}]
  autoDeployment: {{enabled: {auto}, retainStacksOnAccountRemoval: false}}
  managedExecution: {{active: {managed}}}
  operationPreferences: {{failureTolerancePercentage: 100, maxConcurrentPercentage: 100, concurrencyMode: SOFT_FAILURE_TOLERANCE}}
"#,
        template = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/templates/aimably-data-only.json"
        ),
        auto = s.auto,
        managed = s.managed,
    );
    desired::parse_str(&yaml, std::path::Path::new("prop.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
        .remove(0)
}

/// Passes until converged (each sleeping its requeue delay); the number of passes, or a failure.
async fn converge(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
) -> Result<usize, String> {
    let mut last = Vec::new();
    for pass in 1..=MAX_PASSES {
        let outcome = controller::reconcile(deployment, ctx, state)
            .await
            .map_err(|e| format!("pass {pass}: {e}"))?;
        if outcome.state == State::Converged {
            return Ok(pass);
        }
        last.push(format!("{:?}", outcome.state));
        tokio::time::sleep(outcome.requeue_after.max(Duration::from_millis(1))).await;
    }
    Err(format!(
        "not converged within {MAX_PASSES} passes; last: {:?}",
        &last[last.len() - 3..]
    ))
}

async fn case(from: Shape, to: Shape) -> Result<(), String> {
    let org = org();
    let ctx = Context::new(
        std::sync::Arc::new(org.sim.clone()),
        Config {
            deletion_delay: Duration::ZERO,
            ..config()
        },
    );
    let state = &mut DeploymentState::default();
    let (a, b) = (deployment(&org, &from), deployment(&org, &to));
    converge(&a, &ctx, state)
        .await
        .map_err(|e| format!("first state: {e}"))?;
    let passes = converge(&b, &ctx, state)
        .await
        .map_err(|e| format!("second state: {e}"))?;
    // Then it plans nothing, and a fresh controller (a restart: nothing remembered) agrees.
    let (plan, _) = controller::dry_run(&b, &ctx, state)
        .await
        .map_err(|e| e.to_string())?;
    if !plan.is_empty() {
        return Err(format!(
            "converged in {passes} passes but plans {:?}",
            plan.steps.iter().map(|s| &s.summary).collect::<Vec<_>>()
        ));
    }
    let fresh = Context::new(std::sync::Arc::new(org.sim.clone()), config());
    let fresh_state = &mut DeploymentState::default();
    let (plan, _) = controller::dry_run(&b, &fresh, fresh_state)
        .await
        .map_err(|e| e.to_string())?;
    if !plan.is_empty() {
        return Err(format!(
            "a restarted controller plans {:?}",
            plan.steps.iter().map(|s| &s.summary).collect::<Vec<_>>()
        ));
    }
    Ok(())
}

#[test]
fn plan_apply_plan_converges_and_then_plans_nothing() {
    let (mut runner, seed) = super::helpers::seeded_runner(CASES, DEFAULT_SEED);
    runner
        .run(&(shape(), shape()), |(from, to)| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("a runtime");
            rt.block_on(case(from.clone(), to.clone()))
                .map_err(|e| TestCaseError::fail(format!("{e}\nfrom {from:?}\nto {to:?}")))
        })
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
}
