//! The stack set's instances, cached between passes in the style of a Kubernetes informer, so that a converged
//! pass costs a handful of calls whatever the organization's size.
//!
//! A full listing (every ListStackInstances page) is kept with the ids of the operations that had ended when it
//! was taken. A pass reads one page of ListStackSetOperations and lists in full again when:
//! - there is no listing yet, or it is older than `instance_relist_interval` (the level-triggered contract: a
//!   relist always wins, whatever the deltas missed);
//! - an ended operation appears that the listing has not seen: ours, an auto-deployment, anyone's (an operation
//!   still running is adopted and waited for, and folded in once it ends);
//! - the page is full of operations the listing has not seen (ListStackSetOperations documents no order and is
//!   eventually consistent, so older unseen ones may hide behind it: in doubt, relist);
//! - the stack set is not the one listed (another ARN, another name or `callAs`).
//!
//! The cache never decides a deletion: a pass whose next step deletes lists afresh and decides again (see
//! `controller::reconcile`).

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::debug;

use super::Context;
use crate::cloud::{ObservedStackSet, Operation, StackInstance};
use crate::desired::Deployment;
use crate::error::Error;

/// One page of ListStackSetOperations: what a pass reads to know whether its listing is still current.
pub const OPERATIONS_PAGE: usize = 100;

/// A full listing of one stack set's instances and what it already reflects.
#[derive(Debug, Clone)]
pub struct InstanceCache {
    /// The stack set listed: name, ARN (a stack set deleted and created again is another one) and `callAs`.
    key: (String, Option<String>, crate::desired::CallAs),
    pub instances: Arc<Vec<StackInstance>>,
    listed_at: Instant,
    /// Operations that had ended when the listing was taken (their effect is in it).
    seen: BTreeSet<String>,
}

/// The instances a pass plans with, and whether they were listed by this pass.
pub struct Listing {
    pub instances: Arc<Vec<StackInstance>>,
    pub fresh: bool,
}

/// Why the cached listing is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relist {
    /// Forced by the caller (a deletion is about to be decided).
    Forced,
    Missing,
    Expired,
    /// An ended operation the listing has not seen.
    NewOperation,
    /// A full page of operations the listing has not seen: older ones may be hidden.
    InDoubt,
    /// The stack set is not the one listed.
    Replaced,
}

/// Whether the cached listing may be used, given one page of the stack set's operations (pure).
pub fn relist_needed(
    cache: Option<&InstanceCache>,
    stack_set: &ObservedStackSet,
    call_as: crate::desired::CallAs,
    operations: &[Operation],
    now: Instant,
    interval: std::time::Duration,
) -> Option<Relist> {
    let Some(cache) = cache else {
        return Some(Relist::Missing);
    };
    if cache.key != key_of(stack_set, call_as) {
        return Some(Relist::Replaced);
    }
    if now.saturating_duration_since(cache.listed_at) >= interval {
        return Some(Relist::Expired);
    }
    let unseen = operations
        .iter()
        .filter(|op| !cache.seen.contains(&op.id))
        .count();
    if operations.len() >= OPERATIONS_PAGE && unseen == operations.len() {
        return Some(Relist::InDoubt);
    }
    if operations
        .iter()
        .any(|op| !op.status.is_active() && !cache.seen.contains(&op.id))
    {
        return Some(Relist::NewOperation);
    }
    None
}

fn key_of(
    stack_set: &ObservedStackSet,
    call_as: crate::desired::CallAs,
) -> (String, Option<String>, crate::desired::CallAs) {
    (stack_set.name.clone(), stack_set.arn.clone(), call_as)
}

/// The stack set's instances: the cached listing when it is current, else a full listing (remembered).
/// `force` lists afresh whatever the cache holds.
pub(super) async fn read(
    deployment: &Deployment,
    ctx: &Context,
    stack_set: &ObservedStackSet,
    force: bool,
) -> Result<Listing, Error> {
    let spec = &deployment.spec;
    let name = deployment.name();
    let cached = ctx.memory.cached_instances(name);
    let operations = ctx
        .cloud
        .list_operations(&spec.stack_set_name, spec.call_as, OPERATIONS_PAGE)
        .await?;
    let now = Instant::now();
    let reason = if force {
        Some(Relist::Forced)
    } else {
        relist_needed(
            cached.as_ref(),
            stack_set,
            spec.call_as,
            &operations,
            now,
            ctx.config.instance_relist_interval,
        )
    };
    let Some(reason) = reason else {
        let cache = cached.expect("a cache is current only when there is one");
        return Ok(Listing {
            instances: cache.instances,
            fresh: false,
        });
    };
    debug!(?reason, "listing the stack set's instances");
    let instances = Arc::new(
        ctx.cloud
            .list_stack_instances(&spec.stack_set_name, spec.call_as)
            .await?,
    );
    // The listing reflects every operation that had ended before it began; running ones are folded in when a
    // later page shows them ended. Only this page's ids matter (at most one page is ever compared).
    let seen = operations
        .iter()
        .filter(|op| !op.status.is_active())
        .map(|op| op.id.clone())
        .collect();
    ctx.memory.store_instances(
        name,
        InstanceCache {
            key: key_of(stack_set, spec.call_as),
            instances: instances.clone(),
            listed_at: now,
            seen,
        },
    );
    Ok(Listing {
        instances,
        fresh: true,
    })
}
