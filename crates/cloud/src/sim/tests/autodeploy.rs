//! Auto-deployment: accounts joining, moving and leaving targeted OUs.

use tokio::time::Duration;

use super::*;
use crate::sim::Initiator;
use crate::{InstanceStatus, OperationAction, OperationStatus};

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

async fn settle(sim: &Sim) {
    while sim.operations(NAME).iter().any(|op| op.status.is_active()) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_account_in_a_targeted_ou_gets_instances_in_every_region() {
    let org = org();
    let sim = &org.sim;
    deployed(&org, &[&org.workloads], &REGIONS, true).await;
    // Joining a child OU of the target counts; joining Sandbox (untargeted) does not.
    let new = sim.add_account(&org.dev, "d2");
    let outside = sim.add_account(&org.sandbox, "s2");
    let ops = sim.operations(NAME);
    let auto = ops.last().unwrap();
    assert_eq!(auto.initiator, Initiator::AutoDeployment);
    assert_eq!(auto.action, OperationAction::Create);
    assert_eq!(ops.len(), 2, "one run for the new account only");
    settle(sim).await;
    let instances = sim.instances(NAME);
    for region in REGIONS {
        let i = instance(&instances, &new, region);
        assert_eq!(i.status, InstanceStatus::Current);
        assert_eq!(
            i.organizational_unit_id.as_deref(),
            Some(org.workloads.as_str())
        );
    }
    assert!(!accounts_of(&instances).contains(&outside));
}

#[tokio::test(start_paused = true)]
async fn moving_an_account_out_deletes_and_moving_in_creates() {
    let org = org();
    let sim = &org.sim;
    deployed(&org, &[&org.prod], &REGIONS, true).await;
    sim.move_account(&org.p1, &org.sandbox);
    sim.move_account(&org.s1, &org.prod);
    let ops = sim.operations(NAME);
    assert_eq!(ops[1].action, OperationAction::Delete);
    assert_eq!(ops[1].retain_stacks, Some(false));
    assert_eq!(ops[2].action, OperationAction::Create);
    assert_eq!(
        ops[2].status,
        OperationStatus::Queued,
        "service runs queue behind the active one"
    );
    settle(sim).await;
    let accounts = accounts_of(&sim.instances(NAME));
    assert_eq!(accounts, BTreeSet::from([org.p2.clone(), org.s1.clone()]));
    // Moving within the targeted subtree changes nothing.
    let before = sim.operations(NAME).len();
    let nested = sim.add_ou(&org.prod, "Payments");
    sim.move_account(&org.p2, &nested);
    assert_eq!(sim.operations(NAME).len(), before);
}

#[tokio::test(start_paused = true)]
async fn removing_an_account_respects_retain_stacks_on_account_removal() {
    let org = org();
    let sim = &org.sim;
    deployed(&org, &[&org.prod], &[REGION], true).await;
    let mut update = crate::UpdateStackSet {
        name: NAME.to_string(),
        call_as: CallAs::SelfAccount,
        settings: crate::StackSetSettings {
            auto_deployment: Some(AutoDeployment {
                enabled: true,
                retain_stacks_on_account_removal: true,
                depends_on: Vec::new(),
            }),
            ..Default::default()
        },
        keep_template: true,
        template_url: None,
        preferences: OperationPreferences::default(),
        only: None,
        operation_id: "retain".to_string(),
    };
    sim.update_stack_set(&update).await.unwrap();
    settle(sim).await;
    sim.remove_account(&org.p1);
    let auto = sim.operations(NAME).last().cloned().unwrap();
    assert_eq!(auto.retain_stacks, Some(true));
    settle(sim).await;
    assert_eq!(
        accounts_of(&sim.instances(NAME)),
        BTreeSet::from([org.p2.clone()])
    );

    // With auto-deployment off, nothing follows the organization.
    update.operation_id = "off".to_string();
    update.settings.auto_deployment = Some(AutoDeployment {
        enabled: false,
        retain_stacks_on_account_removal: false,
        depends_on: Vec::new(),
    });
    sim.update_stack_set(&update).await.unwrap();
    settle(sim).await;
    let before = sim.operations(NAME).len();
    sim.add_account(&org.prod, "p3");
    sim.remove_account(&org.p2);
    assert_eq!(sim.operations(NAME).len(), before);
}
