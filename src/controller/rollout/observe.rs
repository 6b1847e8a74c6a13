//! Gathering a rollout's facts: the canary resolved against the organization and the targets, the canary
//! operation, and the canary's access check.

use super::{CANARY_CREATION, CANARY_OPERATION, Facts, ROLLOUT_TAG};
use crate::cloud::org::OrgSnapshot;
use crate::cloud::{InstanceStatus, Operation};
use crate::controller::Context;
use crate::coverage::Coverage;
use crate::desired::Deployment;
use crate::plan::Observed;

/// Gather the facts: the canary accounts resolved against the organization and the targets, the newest canary
/// operation, and, once every canary instance is CURRENT, the access check of each canary account
/// (`spec.accessCheck`: sts:AssumeRole into its role, a handful of calls). `None` without `spec.rollout`.
pub async fn observe(
    deployment: &Deployment,
    ctx: &Context,
    observed: &Observed,
    org: &OrgSnapshot,
    coverage: &Coverage,
    operations: &[Operation],
) -> Option<Facts> {
    let spec = &deployment.spec;
    let rollout = spec.rollout.as_ref()?;
    let mut facts = Facts::at(ctx.wall_now());
    for account in &rollout.canary.accounts {
        if coverage.targeted.contains(account) {
            facts.canary.insert(account.clone());
        } else if !coverage.inactive.contains(account) {
            facts
                .untargeted
                .push(format!("account {account} is not targeted"));
        }
    }
    for unit in &rollout.canary.organizational_unit_ids {
        if !org.unit_exists(unit) {
            facts
                .untargeted
                .push(format!("OU {unit} is not in the organization"));
            continue;
        }
        let under: Vec<String> = org
            .accounts_under(std::slice::from_ref(unit))
            .into_iter()
            .map(|a| a.account.id.clone())
            .filter(|a| coverage.targeted.contains(a))
            .collect();
        if under.is_empty() {
            facts
                .untargeted
                .push(format!("OU {unit} has no targeted active account"));
        }
        facts.canary.extend(under);
    }
    for account in &facts.canary {
        if let Some(a) = org.accounts.get(account) {
            facts.parents.insert(account.clone(), a.parent.clone());
        }
    }
    // The operation that last reached the canary: a canary update, or (the first deployment) the creation of the
    // canary's instances. The newest: a running one, else the last to end (they never overlap: they touch the same
    // instances). Not the listing's position: AWS documents no order. Creations of other instances do not run
    // while a rollout holds the rest, so an older one only ends before the canary's.
    facts.last_canary = operations
        .iter()
        .filter(|op| {
            op.id.starts_with(&format!("stacksetd-{CANARY_OPERATION}-"))
                || op.id.starts_with(CANARY_CREATION)
        })
        .max_by_key(|op| (op.status.is_active(), op.ended))
        .cloned();
    // The slots the rest of the rollout reaches: the targeted active accounts outside the canary, every Region.
    facts.rest = coverage
        .targeted
        .iter()
        .filter(|a| !facts.canary.contains(*a))
        .count()
        * spec.regions.len();
    facts.busy = operations.iter().any(|op| op.status.is_active());
    let Some(stack_set) = observed.stack_set.as_ref() else {
        return Some(facts);
    };
    let canary_current = facts.canary.iter().all(|a| {
        spec.regions.iter().all(|r| {
            observed.instances.iter().any(|i| {
                &i.account == a
                    && &i.region == r
                    && i.status == InstanceStatus::Current
                    && !i.in_progress()
            })
        })
    });
    facts.access_configured = spec.access_check.is_some();
    if let (Some(access), true) = (&spec.access_check, canary_current)
        && stack_set.settings.tags.contains_key(ROLLOUT_TAG)
    {
        let partition = stack_set
            .arn
            .as_deref()
            .and_then(|arn| arn.split(':').nth(1))
            .unwrap_or("aws");
        let mut failures = Vec::new();
        for account in &facts.canary {
            let arn = crate::cloud::role_arn(partition, account, &access.role_name);
            if let Err(e) = ctx
                .cloud
                .assume_role(&arn, crate::cloud::ACCESS_CHECK_SESSION)
                .await
            {
                failures.push((account.clone(), e.to_string()));
            }
        }
        facts.access_failures = Some(failures);
    }
    Some(facts)
}
