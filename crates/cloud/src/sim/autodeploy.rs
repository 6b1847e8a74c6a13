//! Auto-deployment: CloudFormation's own operations when an account joins or leaves the part of the organization
//! a stack set targets. Like AWS's service-initiated runs they queue behind any active operation (managed
//! execution or not) and ignore the stack set's operation preferences.

use std::collections::BTreeSet;

use super::World;
use super::stacksets::{Initiator, NewOperation, Pair, Work};
use crate::{OperationAction, OperationPreferences, StackSetStatus};

impl World {
    /// Auto-deployment: an account entered or left the part of the organization a stack set targets.
    pub(crate) fn account_moved(&mut self, account: &str, from: Option<&str>, to: Option<&str>) {
        if account == self.org.management_account_id {
            return;
        }
        let mut submissions = Vec::new();
        for stack_set in self.stack_sets.values() {
            if stack_set.status != StackSetStatus::Active
                || !stack_set.settings.auto_deployment_enabled()
            {
                continue;
            }
            let targeted = |unit: Option<&str>| {
                unit.and_then(|u| {
                    self.org
                        .nearest_of(u, |id| stack_set.ou_ids.iter().any(|t| t == id))
                })
            };
            let (before, after) = (targeted(from), targeted(to));
            let (work, action, pairs) = match (before, after) {
                (None, Some(ou)) => {
                    let pairs: Vec<Pair> = stack_set
                        .regions()
                        .into_iter()
                        .map(|region| Pair {
                            account: account.to_string(),
                            region,
                            ou: Some(ou.clone()),
                        })
                        .collect();
                    (Work::Create, OperationAction::Create, pairs)
                }
                (Some(_), None) => {
                    let pairs: Vec<Pair> = stack_set
                        .instances
                        .values()
                        .filter(|i| i.account == account)
                        .map(|i| Pair {
                            account: i.account.clone(),
                            region: i.region.clone(),
                            ou: i.organizational_unit_id.clone(),
                        })
                        .collect();
                    let retain_stacks = stack_set
                        .settings
                        .auto_deployment
                        .as_ref()
                        .is_some_and(|a| a.retain_stacks_on_account_removal);
                    (
                        Work::Delete { retain_stacks },
                        OperationAction::Delete,
                        pairs,
                    )
                }
                _ => continue,
            };
            if !pairs.is_empty() {
                submissions.push((stack_set.name.clone(), work, action, pairs));
            }
        }
        for (name, work, action, pairs) in submissions {
            let regions = pairs
                .iter()
                .map(|p| p.region.clone())
                .collect::<BTreeSet<_>>();
            let id = self.new_uuid();
            self.submit(
                &name,
                NewOperation {
                    id,
                    action,
                    initiator: Initiator::AutoDeployment,
                    work,
                    targets: None,
                    regions: regions.into_iter().collect(),
                    preferences: OperationPreferences::default(),
                    pairs,
                    change: None,
                },
            );
        }
    }
}
