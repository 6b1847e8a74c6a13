//! Which stack sets stacksetd may touch, and what it approved. Both live in AWS as stack set tags, so a restart
//! (or a second replica) loses nothing:
//!
//! - `stacksetd.dev/deployment=<metadata.name>`: the stack set is this deployment's. Every stack set stacksetd
//!   creates carries it. A stack set of the configured name without it (made in the console wizard, or by another
//!   team) is observed and reported, never updated or deleted, until the desired state says `adopt: true`;
//!   adopting adds the tag. One tagged for another deployment is never touched.
//! - `stacksetd.dev/template-sha256=<digest>`: the template version stacksetd last applied (the approval record).
//!   The guard judges a new version against the stack set's template only when that template has this digest;
//!   otherwise it was changed outside stacksetd, and no baseline exists.
//!
//! Stack sets made by stacksetd releases before these tags are recognised by their operation history (operation
//! ids stacksetd derives begin with `stacksetd-`) and tagged on their next update, as if adopted.

use std::collections::BTreeMap;

use tracing::info;

use super::Context;
use crate::cloud::ObservedStackSet;
use crate::desired::Deployment;
use crate::error::Error;

pub use crate::plan::{OWNER_TAG, TEMPLATE_TAG};
/// Tag keys under this prefix are stacksetd's; `spec.tags` may not use them.
pub const RESERVED_TAG_PREFIX: &str = "stacksetd.dev/";

/// How many recent operations are read to recognise a stack set an earlier stacksetd release made.
const HISTORY_LOOKBACK: usize = 20;

/// Whose the observed stack set is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// No stack set of that name: created with the tags.
    Absent,
    /// Tagged for this deployment.
    Owned,
    /// Not tagged, and `adopt: true` (or made by an earlier stacksetd release): taken over, the tags added.
    Adopting { earlier_release: bool },
}

/// Decide whether this pass may manage the stack set; an error (nothing is changed) when it may not.
pub async fn check(
    deployment: &Deployment,
    ctx: &Context,
    stack_set: Option<&ObservedStackSet>,
) -> Result<Ownership, Error> {
    let Some(stack_set) = stack_set else {
        return Ok(Ownership::Absent);
    };
    let name = deployment.name();
    match stack_set.settings.tags.get(OWNER_TAG) {
        Some(owner) if owner == name => Ok(Ownership::Owned),
        Some(other) => Err(Error::Preflight {
            reason: "stack_set_owned_elsewhere",
            message: format!(
                "stack set {} is tagged {OWNER_TAG}={other}: it belongs to deployment {other:?}, not {name:?}, and \
                 stacksetd never touches it from here; choose another stackSetName, or change the tag if {other:?} \
                 no longer exists",
                stack_set.name
            ),
        }),
        None if deployment.spec.adopt => Ok(Ownership::Adopting {
            earlier_release: false,
        }),
        None => {
            if made_by_stacksetd(deployment, ctx).await? {
                info!(stack_set = %stack_set.name, "made by an earlier stacksetd release (its operations have stacksetd ids): tagging it on the next update");
                return Ok(Ownership::Adopting {
                    earlier_release: true,
                });
            }
            Err(Error::Preflight {
                reason: "stack_set_not_managed",
                message: format!(
                    "stack set {} exists, not managed by stacksetd (no {OWNER_TAG} tag): it is left as it is; set \
                     spec.adopt: true to take it over",
                    stack_set.name
                ),
            })
        }
    }
}

/// Whether the stack set's recent operations carry ids stacksetd derived.
async fn made_by_stacksetd(deployment: &Deployment, ctx: &Context) -> Result<bool, Error> {
    let spec = &deployment.spec;
    let operations = ctx
        .cloud
        .list_operations(&spec.stack_set_name, spec.call_as, HISTORY_LOOKBACK)
        .await?;
    Ok(operations.iter().any(|op| op.id.starts_with("stacksetd-")))
}

/// The tags the stack set must carry: the operator's, stacksetd's owner tag, and the approval record (`record`:
/// the digest of the template the plan leaves on the stack set, when stacksetd approved it).
pub fn desired_tags(deployment: &Deployment, record: Option<&str>) -> BTreeMap<String, String> {
    let mut tags = deployment.spec.tags.clone();
    tags.insert(OWNER_TAG.to_string(), deployment.name().to_string());
    if let Some(sha) = record {
        tags.insert(TEMPLATE_TAG.to_string(), sha.to_string());
    }
    tags
}

/// The digest the approval record holds, if any.
pub fn recorded(stack_set: &ObservedStackSet) -> Option<&str> {
    stack_set
        .settings
        .tags
        .get(TEMPLATE_TAG)
        .map(String::as_str)
}

/// A stack set tagged for a deployment the desired state no longer names (its document removed, or its
/// `stackSetName` changed, as when a vendor's new policy comes as a new stack set). Reported, never deleted by
/// itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Orphan {
    pub stack_set: String,
    /// The deployment its tag names.
    pub deployment: String,
    /// What to do about it.
    pub advice: String,
    /// The Region of the deployment's stack in the management account (`spec.managementAccount`), when one is
    /// left beside the stack set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_stack: Option<String>,
}

/// The orphaned stack sets: ListStackSets (for each CallAs the deployments use), then DescribeStackSet of each
/// stack set no deployment names, to read its owner tag. One listing and a handful of descriptions, on the
/// organization-scan cadence (never in a pass).
pub async fn orphans(ctx: &Context, deployments: &[&Deployment]) -> Result<Vec<Orphan>, Error> {
    scan(ctx, deployments, deployments).await
}

/// `orphans` for deployments acting as several identities (`spec.credentials`): each identity's stack sets are
/// listed once, with the CallAs its deployments use, against every deployment's name (two identities may see one
/// organization, and a stack set another identity's deployment names is no orphan).
pub async fn orphans_across(
    contexts: &super::credentials::Contexts,
    deployments: &[&Deployment],
) -> Result<Vec<Orphan>, Error> {
    let mut groups: Vec<(Option<crate::cloud::RoleToAssume>, Vec<&Deployment>)> = Vec::new();
    for d in deployments {
        let role = crate::cloud::RoleToAssume::of(d);
        match groups.iter_mut().find(|(r, _)| *r == role) {
            Some((_, group)) => group.push(d),
            None => groups.push((role, vec![d])),
        }
    }
    if groups.is_empty() {
        groups.push((None, Vec::new()));
    }
    let mut out: Vec<Orphan> = Vec::new();
    for (_, group) in groups {
        let ctx = match group.first() {
            Some(first) => contexts.for_deployment(first).await?,
            None => contexts.base().clone(),
        };
        for orphan in scan(&ctx, &group, deployments).await? {
            if !out.contains(&orphan) {
                out.push(orphan);
            }
        }
    }
    Ok(out)
}

/// List with the CallAs `scanned` use; a stack set is an orphan unless one of `deployments` (all of them,
/// whatever their identity) names it.
async fn scan(
    ctx: &Context,
    scanned: &[&Deployment],
    deployments: &[&Deployment],
) -> Result<Vec<Orphan>, Error> {
    use std::collections::BTreeSet;
    let names: BTreeSet<&str> = deployments
        .iter()
        .map(|d| d.spec.stack_set_name.as_str())
        .collect();
    let mut call_as: Vec<crate::cloud::CallAs> = scanned.iter().map(|d| d.spec.call_as).collect();
    if call_as.is_empty() {
        call_as.push(Default::default());
    }
    call_as.sort_by_key(|c| c.as_str());
    call_as.dedup();
    // A management-account stack left beside an orphan is looked for only by an identity that keeps such stacks
    // (a deployment it serves has spec.managementAccount): one that does not is never asked for a DescribeStacks
    // it was not granted.
    let keeps_stacks = scanned.iter().any(|d| d.spec.management_account.is_some());
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for call_as in call_as {
        for name in ctx.cloud.list_stack_sets(call_as).await? {
            if names.contains(name.as_str()) || !seen.insert(name.clone()) {
                continue;
            }
            let Some(stack_set) = ctx.cloud.describe_stack_set(&name, call_as).await? else {
                continue;
            };
            let Some(owner) = stack_set.settings.tags.get(OWNER_TAG) else {
                continue;
            };
            let current = deployments.iter().find(|d| d.name() == owner);
            let advice = match current {
                Some(d) => format!(
                    "deployment {owner} now manages stack set {} (its stackSetName changed); {name} is left as it \
                     is: to keep it, remove its {OWNER_TAG} tag; to revoke it, remove the tag, then add a document \
                     with stackSetName {name}, adopt: true and ensure: Absent",
                    d.spec.stack_set_name
                ),
                None => format!(
                    "no deployment {owner} in the desired state; to revoke it, add a document with metadata.name \
                     {owner}, stackSetName {name} and ensure: Absent; to keep it, remove its {OWNER_TAG} tag"
                ),
            };
            let management_stack = if keeps_stacks {
                management_stack_of(ctx, &stack_set, owner, call_as).await
            } else {
                None
            };
            let advice = match &management_stack {
                Some(region) => format!(
                    "{advice}; its stack in the management account ({region}) goes too when that document also has \
                     managementAccount: {{deploy: false}}"
                ),
                None => advice,
            };
            out.push(Orphan {
                stack_set: name,
                deployment: owner.clone(),
                advice,
                management_stack,
            });
        }
    }
    Ok(out)
}

/// The Region of an orphaned deployment's stack in the management account, if it left one (`spec.managementAccount`
/// keeps it under the stack set's name in one of its Regions). Only the management account has such stacks
/// (callAs SELF); a Region that cannot be read is skipped: the report is a hint, never an input to a deletion.
async fn management_stack_of(
    ctx: &Context,
    stack_set: &ObservedStackSet,
    owner: &str,
    call_as: crate::cloud::CallAs,
) -> Option<String> {
    if call_as != crate::cloud::CallAs::SelfAccount {
        return None;
    }
    for region in stack_set.regions.iter().flatten() {
        match ctx.cloud.describe_stack(&stack_set.name, region).await {
            Ok(Some(stack)) if crate::plan::management_stack::owned(&stack, owner) => {
                return Some(region.clone());
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(region = %region, error = %e, "orphan scan: no stack read"),
        }
    }
    None
}
