//! Tests of the simulator's AWS semantics, on tokio's paused clock. Shared fixtures live here.

mod autodeploy;
mod faults;
mod operations;
mod targets;
mod tolerance;

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Duration;

use super::{Sim, SimConfig};
use crate::{
    AccountFilterType, AutoDeployment, CallAs, Cloud, CreateStackSet, DeleteInstancesRequest,
    InstancesRequest, Operation, OperationPreferences, StackInstance, Targets,
};

const NAME: &str = "Vendor";
const REGION: &str = "us-west-2";
/// Short simulated durations keep arithmetic in the tests readable.
const INSTANCE: Duration = Duration::from_secs(2);
const OVERHEAD: Duration = Duration::from_secs(1);

fn config() -> SimConfig {
    SimConfig {
        instance_duration: INSTANCE,
        operation_overhead: OVERHEAD,
        ..SimConfig::default()
    }
}

/// root (management account)
///  +- Workloads: w1
///  |    +- Prod: p1, p2
///  |    +- Dev: d1
///  +- Sandbox: s1
struct Org {
    sim: Sim,
    workloads: String,
    prod: String,
    dev: String,
    sandbox: String,
    w1: String,
    p1: String,
    p2: String,
    d1: String,
    s1: String,
}

fn org_with(config: SimConfig) -> Org {
    let sim = Sim::new(config);
    let root = sim.root_id();
    let workloads = sim.add_ou(&root, "Workloads");
    let prod = sim.add_ou(&workloads, "Prod");
    let dev = sim.add_ou(&workloads, "Dev");
    let sandbox = sim.add_ou(&root, "Sandbox");
    Org {
        w1: sim.add_account(&workloads, "w1"),
        p1: sim.add_account(&prod, "p1"),
        p2: sim.add_account(&prod, "p2"),
        d1: sim.add_account(&dev, "d1"),
        s1: sim.add_account(&sandbox, "s1"),
        sim,
        workloads,
        prod,
        dev,
        sandbox,
    }
}

fn org() -> Org {
    org_with(config())
}

fn create_request(managed_execution: bool, auto: bool) -> CreateStackSet {
    CreateStackSet {
        name: NAME.to_string(),
        call_as: CallAs::SelfAccount,
        settings: crate::StackSetSettings {
            description: Some("vendor access".to_string()),
            template_body: "{\"Resources\":{}}".to_string(),
            parameters: BTreeMap::new(),
            capabilities: BTreeSet::from(["CAPABILITY_NAMED_IAM".to_string()]),
            tags: BTreeMap::new(),
            auto_deployment: Some(AutoDeployment {
                enabled: auto,
                retain_stacks_on_account_removal: false,
                depends_on: Vec::new(),
            }),
            managed_execution: Some(managed_execution),
        },
        template_url: None,
        client_token: "token-1".to_string(),
    }
}

fn targets(ous: &[&str]) -> Targets {
    Targets {
        organizational_unit_ids: ous.iter().map(|s| s.to_string()).collect(),
        accounts: Vec::new(),
        account_filter_type: AccountFilterType::None,
    }
}

fn instances_request(
    id: &str,
    ous: &[&str],
    regions: &[&str],
    preferences: OperationPreferences,
) -> InstancesRequest {
    InstancesRequest {
        name: NAME.to_string(),
        call_as: CallAs::SelfAccount,
        targets: targets(ous),
        regions: regions.iter().map(|s| s.to_string()).collect(),
        preferences,
        operation_id: id.to_string(),
    }
}

fn delete_request(
    id: &str,
    ous: &[&str],
    regions: &[&str],
    retain: bool,
) -> DeleteInstancesRequest {
    DeleteInstancesRequest {
        name: NAME.to_string(),
        call_as: CallAs::SelfAccount,
        targets: targets(ous),
        regions: regions.iter().map(|s| s.to_string()).collect(),
        retain_stacks: retain,
        preferences: OperationPreferences::default(),
        operation_id: id.to_string(),
    }
}

/// Polls DescribeStackSetOperation like the controller does, sleeping on the paused clock in between.
async fn wait(sim: &Sim, id: &str) -> Operation {
    loop {
        let op = sim
            .describe_operation(NAME, id, CallAs::SelfAccount)
            .await
            .expect("describe operation");
        if !op.status.is_active() {
            return op;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A stack set with instances in every non-management account of `ous` in `regions`, all CURRENT.
async fn deployed(org: &Org, ous: &[&str], regions: &[&str], auto: bool) {
    org.sim
        .create_stack_set(&create_request(false, auto))
        .await
        .expect("create stack set");
    let all = OperationPreferences {
        max_concurrent_percentage: Some(100),
        failure_tolerance_percentage: Some(100),
        ..OperationPreferences::default()
    };
    let id = org
        .sim
        .create_stack_instances(&instances_request("seed", ous, regions, all))
        .await
        .expect("create instances");
    wait(&org.sim, &id).await;
}

fn instance<'a>(instances: &'a [StackInstance], account: &str, region: &str) -> &'a StackInstance {
    instances
        .iter()
        .find(|i| i.account == account && i.region == region)
        .unwrap_or_else(|| panic!("no instance {account}/{region} in {instances:#?}"))
}

fn detailed(instance: &StackInstance) -> &str {
    instance.detailed_status.as_deref().unwrap_or("")
}

fn accounts_of(instances: &[StackInstance]) -> BTreeSet<String> {
    instances.iter().map(|i| i.account.clone()).collect()
}
