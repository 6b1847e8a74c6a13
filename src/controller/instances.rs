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
//! With a healthy event queue (`events.queue_url`) a pass that finds nothing new may skip even that page: see
//! [`Look::Trusting`] and `events::Ledger`.
//!
//! The cache never decides a deletion: a pass whose next step deletes lists afresh and decides again (see
//! `controller::reconcile`); nor does a skipped page decide anything but "converged".

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::debug;

use super::{Context, DeploymentState};
use crate::cloud::{ObservedStackSet, Operation, StackInstance};
use crate::desired::Deployment;
use crate::error::Error;

/// One page of ListStackSetOperations: what a pass reads to know whether its listing is still current.
pub const OPERATIONS_PAGE: usize = 100;

/// Regions a full listing reads at the same time: enough to overlap the round trips of a few Regions, few
/// enough that one deployment's relist does not take the whole read budget at once.
pub const REGIONS_LISTED_AT_ONCE: usize = 4;

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

/// The instances a pass plans with, whether they were listed by this pass, and the page of operations read
/// to decide that.
pub struct Listing {
    pub instances: Arc<Vec<StackInstance>>,
    pub fresh: bool,
    pub operations: Vec<Operation>,
    /// False when the page was not read: the event queue vouched that nothing happened since the last
    /// converged pass ([`Look::Trusting`]); `operations` is empty then.
    pub operations_listed: bool,
    /// The event ledger's stamp, read before the page, with the generation (what a converged pass keeps).
    pub events: Option<Quiet>,
}

/// What a converged pass keeps so that the next may trust the event queue: the ledger's stamp (read before the
/// page) and the deployment's generation. Made only while the ledger vouches at all (a trusted, healthy queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quiet {
    stamp: crate::events::Stamp,
    generation: String,
}

/// How much of what the last passes saw a pass may reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// The cached listing while current; and with a healthy event queue (`events::Ledger`), not even the page
    /// of operations when no event named the stack set since the last pass found it converged.
    Trusting,
    /// The cached listing while one page of operations shows it current.
    Operations,
    /// Every instance listed afresh.
    Afresh,
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

/// The stack set's instances: the cached listing when it is current, else a full listing (remembered). See
/// [`Look`] for what may be reused.
pub(super) async fn read(
    deployment: &Deployment,
    ctx: &Context,
    state: &mut DeploymentState,
    stack_set: &ObservedStackSet,
    look: Look,
) -> Result<Listing, Error> {
    let spec = &deployment.spec;
    let cached = state.cached_instances();
    // Read before the page: an event arriving from here on changes the stamp, so the next pass looks again.
    let events = ctx.events.stamp(&spec.stack_set_name).map(|stamp| Quiet {
        stamp,
        generation: deployment.generation(),
    });
    let quiet = look == Look::Trusting && events.is_some() && state.quiet() == events.as_ref();
    if quiet
        && let Some(cache) = &cached
        && relist_needed(
            Some(cache),
            stack_set,
            spec.call_as,
            &[],
            Instant::now(),
            ctx.config.instance_relist_interval,
        )
        .is_none()
    {
        return Ok(Listing {
            instances: cache.instances.clone(),
            fresh: false,
            operations: Vec::new(),
            operations_listed: false,
            events,
        });
    }
    let operations = ctx
        .cloud
        .list_operations(&spec.stack_set_name, spec.call_as, OPERATIONS_PAGE)
        .await?;
    let now = Instant::now();
    let reason = if look == Look::Afresh {
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
            operations,
            operations_listed: true,
            events,
        });
    };
    debug!(?reason, "listing the stack set's instances");
    let regions = regions_to_list(stack_set, &spec.regions, cached.as_ref());
    let instances = Arc::new(list_all(ctx, deployment, regions.as_deref()).await?);
    // The listing reflects every operation that had ended before it began; running ones are folded in when a
    // later page shows them ended. Only this page's ids matter (at most one page is ever compared).
    let seen = operations
        .iter()
        .filter(|op| !op.status.is_active())
        .map(|op| op.id.clone())
        .collect();
    state.store_instances(InstanceCache {
        key: key_of(stack_set, spec.call_as),
        instances: instances.clone(),
        listed_at: now,
        seen,
    });
    Ok(Listing {
        instances,
        fresh: true,
        operations,
        operations_listed: true,
        events,
    })
}

/// The Regions a full listing asks one by one: every Region DescribeStackSet says has instances, the desired
/// ones and the ones the last listing found. `None` when the endpoint does not report the stack set's Regions:
/// then only an unfiltered listing is sure to see every instance, wherever it is.
pub fn regions_to_list(
    stack_set: &ObservedStackSet,
    desired: &[String],
    cached: Option<&InstanceCache>,
) -> Option<Vec<String>> {
    let reported = stack_set.regions.as_ref()?;
    let mut regions: BTreeSet<&str> = reported.iter().map(String::as_str).collect();
    regions.extend(desired.iter().map(String::as_str));
    if let Some(cache) = cached {
        regions.extend(cache.instances.iter().map(|i| i.region.as_str()));
    }
    Some(regions.into_iter().map(str::to_string).collect())
}

/// Every instance: one listing per Region, `REGIONS_LISTED_AT_ONCE` at a time, joined in Region order (or one
/// unfiltered listing when the Regions are unknown). Any Region's failure fails the whole listing: a partial
/// listing is never kept.
async fn list_all(
    ctx: &Context,
    deployment: &Deployment,
    regions: Option<&[String]>,
) -> Result<Vec<StackInstance>, Error> {
    use futures::{StreamExt, TryStreamExt};
    let spec = &deployment.spec;
    let Some(regions) = regions else {
        return ctx
            .cloud
            .list_stack_instances(&spec.stack_set_name, spec.call_as)
            .await;
    };
    // The futures are made first (the cloud's boxed futures), then polled a few at a time: a stream mapping
    // borrowed Regions to futures would not be provably Send for the scheduler's spawned task.
    let listings: Vec<_> = regions
        .iter()
        .map(|region| {
            ctx.cloud
                .list_stack_instances_in(&spec.stack_set_name, spec.call_as, region)
        })
        .collect();
    let per_region: Vec<Vec<StackInstance>> = futures::stream::iter(listings)
        .buffered(REGIONS_LISTED_AT_ONCE)
        .try_collect()
        .await?;
    Ok(per_region.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cloud::{OperationAction, OperationStatus, StackSetSettings, StackSetStatus};
    use crate::desired::CallAs;

    const INTERVAL: Duration = Duration::from_secs(1800);

    fn stack_set(arn: &str) -> ObservedStackSet {
        ObservedStackSet {
            name: "Vendor".into(),
            arn: Some(arn.into()),
            status: StackSetStatus::Active,
            settings: StackSetSettings::default(),
            permission_model: None,
            organizational_unit_ids: None,
            regions: None,
            drift: None,
        }
    }

    fn op(id: &str, status: OperationStatus) -> Operation {
        Operation {
            id: id.into(),
            action: OperationAction::Create,
            status,
            status_reason: None,
            failed_instances: None,
            preferences: None,
            ended: None,
        }
    }

    fn cache(at: Instant, seen: &[&str]) -> InstanceCache {
        InstanceCache {
            key: ("Vendor".into(), Some("arn:1".into()), CallAs::SelfAccount),
            instances: Arc::default(),
            listed_at: at,
            seen: seen.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn check(
        cache: Option<&InstanceCache>,
        arn: &str,
        ops: &[Operation],
        now: Instant,
    ) -> Option<Relist> {
        relist_needed(
            cache,
            &stack_set(arn),
            CallAs::SelfAccount,
            ops,
            now,
            INTERVAL,
        )
    }

    #[test]
    fn the_cache_is_used_only_while_nothing_says_it_is_stale() {
        let t0 = Instant::now();
        let c = cache(t0, &["a", "b"]);
        let ended = |id| op(id, OperationStatus::Succeeded);
        assert_eq!(check(None, "arn:1", &[], t0), Some(Relist::Missing));
        assert_eq!(
            check(Some(&c), "arn:1", &[ended("a"), ended("b")], t0),
            None
        );
        // Someone's operation ended since: its effect is not in the listing.
        assert_eq!(
            check(Some(&c), "arn:1", &[ended("a"), ended("c")], t0),
            Some(Relist::NewOperation)
        );
        // One still running is adopted and waited for; it is folded in once it ends.
        assert_eq!(
            check(
                Some(&c),
                "arn:1",
                &[ended("a"), op("d", OperationStatus::Running)],
                t0
            ),
            None
        );
        // A failed operation changed instances too.
        assert_eq!(
            check(Some(&c), "arn:1", &[op("e", OperationStatus::Failed)], t0),
            Some(Relist::NewOperation)
        );
        assert_eq!(check(Some(&c), "arn:2", &[], t0), Some(Relist::Replaced));
        assert_eq!(
            check(Some(&c), "arn:1", &[], t0 + INTERVAL),
            Some(Relist::Expired)
        );
        assert_eq!(check(Some(&c), "arn:1", &[], t0 + INTERVAL / 2), None);
    }

    #[test]
    fn a_full_listing_asks_every_region_that_may_hold_an_instance() {
        let desired = vec!["us-east-1".to_string(), "eu-west-1".to_string()];
        let mut observed = stack_set("arn:1");
        // The endpoint does not say where the instances are: one unfiltered listing, nothing assumed.
        assert_eq!(regions_to_list(&observed, &desired, None), None);
        observed.regions = Some(vec!["ap-south-1".into(), "us-east-1".into()]);
        let mut c = cache(Instant::now(), &[]);
        c.instances = Arc::new(vec![StackInstance {
            account: "111111111111".into(),
            region: "sa-east-1".into(),
            organizational_unit_id: None,
            status: crate::cloud::InstanceStatus::Current,
            detailed_status: None,
            status_reason: None,
            drift_status: None,
            last_operation_id: None,
        }]);
        assert_eq!(
            regions_to_list(&observed, &desired, Some(&c)).unwrap(),
            ["ap-south-1", "eu-west-1", "sa-east-1", "us-east-1"]
        );
        // No instance anywhere yet: the desired Regions are still asked (an instance may be on its way).
        observed.regions = Some(vec![]);
        assert_eq!(
            regions_to_list(&observed, &desired, None).unwrap(),
            ["eu-west-1", "us-east-1"]
        );
    }

    #[test]
    fn a_page_of_operations_it_has_never_seen_is_doubt() {
        let t0 = Instant::now();
        let c = cache(t0, &["old"]);
        let running: Vec<Operation> = (0..OPERATIONS_PAGE)
            .map(|i| op(&format!("r{i}"), OperationStatus::Running))
            .collect();
        // Even all running (nothing ended to fold in): what hides behind a full page is unknown.
        assert_eq!(
            check(Some(&c), "arn:1", &running, t0),
            Some(Relist::InDoubt)
        );
        assert_eq!(
            check(Some(&c), "arn:1", &running[..OPERATIONS_PAGE - 1], t0),
            None
        );
    }
}
