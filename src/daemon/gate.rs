//! The daemon's gate to the cloud, a `Cloud` wrapper with two jobs:
//! - shutdown: it refuses every mutating call once shutdown has begun, so a pass that is running when SIGTERM
//!   arrives still observes and records what it saw, but starts no new operation. Whatever it would have
//!   submitted is planned again, identically, by the next start;
//! - the read budget: every CloudFormation read waits its turn in the one [`ReadBudget`] all deployments share;
//! - leases (`leases.table`): right before every mutating call, the replica confirms it still holds the lease of
//!   the deployment whose pass makes the call ([`ACTING_FOR`], set by the scheduler around each pass). A call
//!   made outside any pass, or after the lease was lost, fails closed with `Error::LeaseLost`; a call still
//!   running (retrying) at the lease's call deadline is abandoned with `Error::CallAbandoned`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use super::read_budget::{ReadBudget, pages};
use crate::cloud::calls;
use crate::cloud::{
    AccessVerdict, Account, AutoDeploymentTarget, CallAs, CallCounter, Cloud, Connector,
    CreateStackSet, DeleteInstancesRequest, DetectDriftRequest, InstancesRequest, ObservedStackSet,
    Operation, OperationResult, OrgNode, OrganizationInfo, PolicyKind, RoleToAssume, StackInstance,
    UpdateStackSet,
};
use crate::cloud::{DeleteStackRequest, ObservedStack, StackRequest};
use crate::error::Error;
use crate::leases::{LeaseToken, Leases};

type Result<T> = std::result::Result<T, Error>;

pub struct Gate {
    inner: Arc<dyn Cloud>,
    state: Arc<GateState>,
}

/// What every gate of one daemon shares: the daemon's own cloud and each role's (`spec.credentials`) close
/// together and draw on one read budget.
struct GateState {
    closed: AtomicBool,
    reads: ReadBudget,
    leases: OnceLock<Arc<Leases>>,
}

/// Whom the current pass acts for: the deployment, and the lease it began under (with leases).
#[derive(Debug, Clone)]
pub struct Acting {
    pub deployment: String,
    pub lease: Option<LeaseToken>,
    /// The generation the pass plans from, and the deployment as the daemon holds it now: a mutating call is
    /// refused once they differ (a step planned from a desired state that is no longer the desired state).
    pub desired: Option<(
        String,
        tokio::sync::watch::Receiver<std::sync::Arc<crate::desired::Deployment>>,
    )>,
}

tokio::task_local! {
    /// Set by the scheduler around each pass: whose lease a mutating call needs.
    pub static ACTING_FOR: Acting;
}

impl Gate {
    /// `max_read_rate`: CloudFormation reads a second, for all deployments together.
    pub fn new(inner: Arc<dyn Cloud>, max_read_rate: u32) -> Gate {
        Gate {
            inner,
            state: Arc::new(GateState {
                closed: AtomicBool::new(false),
                reads: ReadBudget::new(max_read_rate),
                leases: OnceLock::new(),
            }),
        }
    }

    /// A gate around another cloud (an assumed role's), closing with this one and sharing its read budget.
    pub fn wrap(&self, inner: Arc<dyn Cloud>) -> Gate {
        Gate {
            inner,
            state: self.state.clone(),
        }
    }

    /// A CloudFormation read: its turn first, the pages of a listing charged after.
    async fn read<T>(
        &self,
        call: impl Future<Output = Result<T>>,
        calls_made: impl Fn(&T) -> u32,
    ) -> Result<T> {
        self.state.reads.admit().await;
        let result = call.await;
        if let Ok(value) = &result {
            self.state.reads.charge(calls_made(value).saturating_sub(1));
        }
        result
    }

    /// From now on, mutating calls fail without reaching AWS.
    pub fn close(&self) {
        self.state.closed.store(true, Ordering::SeqCst);
    }

    pub fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::SeqCst)
    }

    /// From now on, every mutating call needs the lease of the deployment it is made for.
    pub fn require_leases(&self, leases: Arc<Leases>) {
        let _ = self.state.leases.set(leases);
    }

    /// Before every mutating call: not shutting down, planned from the desired state in force, and (with leases)
    /// the lease held, confirmed with the table. With leases, returns the call deadline
    /// ([`Leases::ensure_held_since`]) and the deployment it holds for.
    async fn check(&self, what: &str) -> Result<Option<(tokio::time::Instant, String)>> {
        if self.is_closed() {
            return Err(Error::ShuttingDown(what.to_string()));
        }
        let acting = ACTING_FOR.try_with(Acting::clone);
        if let Ok(Acting {
            deployment,
            desired: Some((generation, current)),
            ..
        }) = &acting
            && current.borrow().generation() != *generation
        {
            return Err(Error::DesiredChanged {
                deployment: deployment.clone(),
                call: what.to_string(),
            });
        }
        let Some(leases) = self.state.leases.get() else {
            return Ok(None);
        };
        let Ok(Acting {
            deployment,
            lease: Some(began),
            ..
        }) = acting
        else {
            return Err(Error::LeaseLost {
                deployment: "(none)".into(),
                call: what.to_string(),
                reason: "the call was made outside a pass that began under a lease".into(),
            });
        };
        let deadline = leases.ensure_held_since(&deployment, what, &began).await?;
        Ok(Some((deadline, deployment)))
    }

    /// A mutating call: [`Gate::check`] first; with leases, the call (the SDK's retries and backoff included)
    /// is abandoned at the call deadline, so nothing it sends reaches AWS after another replica may hold the
    /// lease. The controller then looks its OperationId up before sending anything else
    /// (`controller::operation::triage`).
    async fn mutate<T>(&self, what: &str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let Some((deadline, deployment)) = self.check(what).await? else {
            return call.await;
        };
        match tokio::time::timeout_at(deadline, call).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(%deployment, call = what, "call abandoned at the lease's call deadline");
                Err(Error::CallAbandoned {
                    deployment,
                    call: what.to_string(),
                })
            }
        }
    }
}

#[async_trait]
impl Cloud for Gate {
    async fn caller_account(&self) -> Result<String> {
        self.inner.caller_account().await
    }
    async fn describe_organization(&self) -> Result<OrganizationInfo> {
        self.inner.describe_organization().await
    }
    async fn list_roots(&self) -> Result<Vec<OrgNode>> {
        self.inner.list_roots().await
    }
    async fn list_organizational_units(&self, parent_id: &str) -> Result<Vec<OrgNode>> {
        self.inner.list_organizational_units(parent_id).await
    }
    async fn list_accounts(&self, parent_id: &str) -> Result<Vec<Account>> {
        self.inner.list_accounts(parent_id).await
    }
    async fn list_delegated_administrators(&self, service_principal: &str) -> Result<Vec<String>> {
        self.inner
            .list_delegated_administrators(service_principal)
            .await
    }
    async fn list_aws_service_access(&self) -> Result<Vec<String>> {
        self.inner.list_aws_service_access().await
    }
    async fn describe_organizations_access(&self, call_as: CallAs) -> Result<String> {
        self.read(self.inner.describe_organizations_access(call_as), |_| 1)
            .await
    }
    async fn activate_organizations_access(&self) -> Result<()> {
        self.mutate(
            "ActivateOrganizationsAccess",
            self.inner.activate_organizations_access(),
        )
        .await
    }
    async fn describe_stack_set(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> Result<Option<ObservedStackSet>> {
        self.read(self.inner.describe_stack_set(name, call_as), |_| 1)
            .await
    }
    async fn list_stack_instances(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> Result<Vec<StackInstance>> {
        self.read(self.inner.list_stack_instances(name, call_as), |v| {
            pages(v.len())
        })
        .await
    }
    async fn list_stack_instances_in(
        &self,
        name: &str,
        call_as: CallAs,
        region: &str,
    ) -> Result<Vec<StackInstance>> {
        self.read(
            self.inner.list_stack_instances_in(name, call_as, region),
            |v| pages(v.len()),
        )
        .await
    }
    async fn list_operations(
        &self,
        name: &str,
        call_as: CallAs,
        limit: usize,
    ) -> Result<Vec<Operation>> {
        self.read(self.inner.list_operations(name, call_as, limit), |v| {
            pages(v.len())
        })
        .await
    }
    async fn describe_operation(
        &self,
        name: &str,
        operation_id: &str,
        call_as: CallAs,
    ) -> Result<Operation> {
        self.read(
            self.inner.describe_operation(name, operation_id, call_as),
            |_| 1,
        )
        .await
    }
    async fn list_operation_results(
        &self,
        name: &str,
        operation_id: &str,
        call_as: CallAs,
    ) -> Result<Vec<OperationResult>> {
        self.read(
            self.inner
                .list_operation_results(name, operation_id, call_as),
            |v| pages(v.len()),
        )
        .await
    }

    async fn list_auto_deployment_targets(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> Result<Vec<AutoDeploymentTarget>> {
        self.read(
            self.inner.list_auto_deployment_targets(name, call_as),
            |v| pages(v.len()),
        )
        .await
    }

    async fn create_stack_set(&self, request: &CreateStackSet) -> Result<()> {
        self.mutate(
            calls::CREATE_STACK_SET,
            self.inner.create_stack_set(request),
        )
        .await
    }
    async fn update_stack_set(&self, request: &UpdateStackSet) -> Result<String> {
        self.mutate(
            calls::UPDATE_STACK_SET,
            self.inner.update_stack_set(request),
        )
        .await
    }
    async fn create_stack_instances(&self, request: &InstancesRequest) -> Result<String> {
        self.mutate(
            calls::CREATE_STACK_INSTANCES,
            self.inner.create_stack_instances(request),
        )
        .await
    }
    async fn update_stack_instances(&self, request: &InstancesRequest) -> Result<String> {
        self.mutate(
            calls::UPDATE_STACK_INSTANCES,
            self.inner.update_stack_instances(request),
        )
        .await
    }
    async fn delete_stack_instances(&self, request: &DeleteInstancesRequest) -> Result<String> {
        self.mutate(
            calls::DELETE_STACK_INSTANCES,
            self.inner.delete_stack_instances(request),
        )
        .await
    }
    async fn delete_stack_set(&self, name: &str, call_as: CallAs) -> Result<()> {
        self.mutate(
            calls::DELETE_STACK_SET,
            self.inner.delete_stack_set(name, call_as),
        )
        .await
    }
    async fn detect_stack_set_drift(&self, request: &DetectDriftRequest) -> Result<String> {
        self.mutate(
            calls::DETECT_STACK_SET_DRIFT,
            self.inner.detect_stack_set_drift(request),
        )
        .await
    }
    async fn describe_stack(&self, name: &str, region: &str) -> Result<Option<ObservedStack>> {
        self.read(self.inner.describe_stack(name, region), |_| 1)
            .await
    }
    async fn get_stack_template(&self, stack_id: &str, region: &str) -> Result<String> {
        self.read(self.inner.get_stack_template(stack_id, region), |_| 1)
            .await
    }
    async fn create_stack(&self, request: &StackRequest) -> Result<()> {
        self.mutate(calls::CREATE_STACK, self.inner.create_stack(request))
            .await
    }
    async fn update_stack(&self, request: &StackRequest) -> Result<bool> {
        self.mutate(calls::UPDATE_STACK, self.inner.update_stack(request))
            .await
    }
    async fn delete_stack(&self, request: &DeleteStackRequest) -> Result<()> {
        self.mutate(calls::DELETE_STACK, self.inner.delete_stack(request))
            .await
    }
    /// Starts work in CloudFormation: gated like a change.
    async fn detect_stack_drift(&self, stack_id: &str, region: &str) -> Result<()> {
        self.mutate(
            calls::DETECT_STACK_DRIFT,
            self.inner.detect_stack_drift(stack_id, region),
        )
        .await
    }
    /// Not a change, so not gated; the access checker stops on its own at shutdown.
    async fn assume_role(&self, role_arn: &str, session_name: &str) -> Result<()> {
        self.inner.assume_role(role_arn, session_name).await
    }

    async fn list_stack_sets(&self, call_as: CallAs) -> Result<Vec<String>> {
        self.read(self.inner.list_stack_sets(call_as), |v| pages(v.len()))
            .await
    }
    /// Uploading a template precedes a change: gated like one.
    async fn stage_template(&self, bucket: &str, key: &str, body: &str) -> Result<String> {
        self.mutate("PutObject", self.inner.stage_template(bucket, key, body))
            .await
    }
    /// A read (a policy comparison), so not gated.
    async fn check_no_new_access(
        &self,
        existing: &str,
        new: &str,
        kind: PolicyKind,
    ) -> Result<AccessVerdict> {
        self.inner.check_no_new_access(existing, new, kind).await
    }

    fn calls(&self) -> &CallCounter {
        self.inner.calls()
    }

    async fn refresh_credentials(&self) -> Result<()> {
        self.inner.refresh_credentials().await
    }
}

/// Makes the clouds of `spec.credentials` roles, each behind a gate sharing this one's state.
pub struct GatedConnector {
    pub gate: Arc<Gate>,
    pub inner: Arc<dyn Connector>,
}

#[async_trait]
impl Connector for GatedConnector {
    async fn assume(&self, role: &RoleToAssume) -> Result<Arc<dyn Cloud>> {
        let cloud = self.inner.assume(role).await?;
        Ok(Arc::new(self.gate.wrap(cloud)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::sim::{Sim, SimConfig};
    use crate::fixtures::DeploymentYaml;
    use crate::leases::{LeaseSettings, LeaseStore, MIN_LEASE_DURATION, MemoryStore};
    use tokio::time::{Duration, Instant};

    fn replica(store: &Arc<MemoryStore>, id: &str) -> Arc<Leases> {
        let store: Arc<dyn LeaseStore> = store.clone();
        let leases = Leases::new(
            store,
            LeaseSettings {
                table: "leases".into(),
                duration: MIN_LEASE_DURATION,
                replica_id: id.into(),
            },
        );
        leases.set_deployments(["t".to_string()]);
        leases
    }

    fn delete_calls(sim: &Sim) -> u64 {
        sim.calls()
            .by_operation()
            .get("DeleteStackSet")
            .copied()
            .unwrap_or(0)
    }

    /// Replica A sends DeleteStackSet under its lease; the call is held inside the cloud (the SDK retrying
    /// through throttling, a partition) for longer than the lease lives, while A stops heartbeating (paused) and
    /// replica B takes the lease. The gate abandons the call at A's call deadline, before B could hold the
    /// lease: the held call never reaches the cloud, however long after.
    #[tokio::test(start_paused = true)]
    async fn a_mutating_call_held_past_its_lease_never_lands() {
        for stall in [None, Some(Duration::from_secs(10))] {
            let sim = Sim::new(SimConfig::default());
            let store = Arc::new(MemoryStore::default());
            let (a, b) = (replica(&store, "replica-a"), replica(&store, "replica-b"));
            a.tick().await.expect("a tick");
            let token = a.token("t").expect("A holds the lease");
            let gate = Gate::new(Arc::new(sim.clone()), 100);
            gate.require_leases(a.clone());
            if let Some(stall) = stall {
                sim.stall_next("DeleteStackSet", stall);
            }
            let started = Instant::now();
            let call = tokio::spawn({
                let acting = Acting {
                    deployment: "t".into(),
                    lease: Some(token),
                    desired: None,
                };
                async move {
                    let result = ACTING_FOR
                        .scope(
                            acting,
                            gate.delete_stack_set("Vendor", crate::cloud::CallAs::SelfAccount),
                        )
                        .await;
                    (result, Instant::now())
                }
            });
            // B takes the lease as soon as A's session has expired on the table.
            let taken = loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                b.tick().await.expect("b tick");
                if b.held("t") {
                    break Instant::now();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "B never took the lease"
                );
            };
            let (result, ended) = call.await.expect("the call task");
            tokio::time::sleep(Duration::from_secs(20)).await;
            match stall {
                // The positive control: a call that is not held lands at once (no such stack set here).
                None => {
                    assert_eq!(delete_calls(&sim), 1, "{result:?}");
                    assert!(
                        !matches!(result, Err(Error::CallAbandoned { .. })),
                        "{result:?}"
                    );
                }
                Some(_) => {
                    let err = result.expect_err("abandoned");
                    assert!(matches!(err, Error::CallAbandoned { .. }), "{err}");
                    assert!(
                        ended < taken,
                        "abandoned {:?} after the start, B held the lease at {:?}",
                        ended - started,
                        taken - started
                    );
                    assert_eq!(
                        delete_calls(&sim),
                        0,
                        "the held call never reached the cloud"
                    );
                }
            }
        }
    }

    /// A pass whose UpdateStackSet was abandoned at the call deadline leaves its OperationId to be looked up
    /// (the call may have reached AWS): the next pass asks DescribeStackSetOperation about it before anything
    /// else, and plans again only after AWS says it never arrived.
    #[tokio::test(start_paused = true)]
    async fn an_abandoned_call_is_looked_up_before_anything_else_is_sent() {
        let sim = Sim::realistic(SimConfig::default());
        let store = Arc::new(MemoryStore::default());
        let leases = replica(&store, "replica-a");
        leases.tick().await.expect("a tick");
        // The lease stays held throughout: heartbeats every second.
        let ticking = tokio::spawn({
            let leases = leases.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = leases.tick().await;
                }
            }
        });
        let gate = Arc::new(Gate::new(Arc::new(sim.clone()), 100));
        gate.require_leases(leases.clone());
        let ctx =
            crate::controller::Context::new(gate.clone(), crate::controller::Config::default());
        let spec = |description: &str| {
            DeploymentYaml::new()
                .management_account(&sim.management_account_id())
                .spec(&format!(
                    "  description: {description}\n  template: {{url: \"file://{}/config/templates/aimably-data-only.json\"}}\n  \
                     parameters: {{ManagementAccountId: \"{}\"}}\n  capabilities: [CAPABILITY_NAMED_IAM]\n",
                    env!("CARGO_MANIFEST_DIR"),
                    sim.management_account_id()
                ))
                .targets(&["ROOT"], &["us-east-1"])
                .build()
        };
        let mut state = crate::controller::DeploymentState::default();
        let acting = || Acting {
            deployment: "t".into(),
            lease: leases.token("t"),
            desired: None,
        };
        let first = spec("first");
        for _ in 0..200 {
            let outcome = ACTING_FOR
                .scope(
                    acting(),
                    crate::controller::reconcile(&first, &ctx, &mut state),
                )
                .await
                .expect("a pass");
            if outcome.is_converged() {
                break;
            }
            tokio::time::sleep(outcome.requeue_after.max(Duration::from_millis(100))).await;
        }
        let edited = spec("edited");
        sim.stall_next("UpdateStackSet", Duration::from_secs(10));
        let err = ACTING_FOR
            .scope(
                acting(),
                crate::controller::reconcile(&edited, &ctx, &mut state),
            )
            .await
            .expect_err("abandoned");
        assert!(matches!(err, Error::CallAbandoned { .. }), "{err}");
        let id = state.take_unconfirmed().expect("the id kept for a lookup");
        assert!(id.starts_with("stacksetd-update-set-"), "{id}");
        state.sent_unconfirmed(&id);
        let looked_up = |sim: &Sim| {
            sim.calls()
                .snapshot()
                .iter()
                .filter(|((_, op, _), _)| *op == "DescribeStackSetOperation")
                .map(|(_, n)| n)
                .sum::<u64>()
        };
        let before = looked_up(&sim);
        let outcome = ACTING_FOR
            .scope(
                acting(),
                crate::controller::reconcile(&edited, &ctx, &mut state),
            )
            .await
            .expect("the next pass");
        assert!(
            looked_up(&sim) > before,
            "DescribeStackSetOperation for {id}"
        );
        assert!(state.take_unconfirmed().is_none(), "looked up once");
        assert!(
            matches!(
                outcome.state,
                crate::controller::State::Acted {
                    action: "UpdateStackSet",
                    ..
                }
            ),
            "then planned again and sent: {:?}",
            outcome.state
        );
        ticking.abort();
    }

    /// A pass planned from a desired state that is no longer the desired state (an edit read meanwhile; a replica
    /// that was paused and read the edit on waking) sends nothing: the gate refuses before the cloud is called.
    #[tokio::test]
    async fn a_mutating_call_planned_from_a_superseded_desired_state_never_reaches_the_cloud() {
        let sim = Sim::new(SimConfig::default());
        let gate = Gate::new(Arc::new(sim.clone()), 100);
        let old = Arc::new(
            DeploymentYaml::new()
                .targets(&["ROOT"], &["us-east-1"])
                .build(),
        );
        let new = Arc::new(
            DeploymentYaml::new()
                .spec("  description: edited\n")
                .targets(&["ROOT"], &["us-east-1"])
                .build(),
        );
        assert_ne!(old.generation(), new.generation());
        let (tx, rx) = tokio::sync::watch::channel(old.clone());
        let acting = |rx| Acting {
            deployment: "t".into(),
            lease: None,
            desired: Some((old.generation(), rx)),
        };
        // Unchanged: the call reaches the cloud (which answers that there is no such stack set).
        let before = sim.calls().snapshot();
        let _ = ACTING_FOR
            .scope(
                acting(rx.clone()),
                gate.delete_stack_set("Vendor", crate::cloud::CallAs::SelfAccount),
            )
            .await;
        assert_ne!(
            sim.calls().snapshot(),
            before,
            "an unchanged desired state lets the call through"
        );
        // Changed: refused before the cloud.
        tx.send(new).expect("a receiver");
        let before = sim.calls().snapshot();
        let err = ACTING_FOR
            .scope(
                acting(rx),
                gate.delete_stack_set("Vendor", crate::cloud::CallAs::SelfAccount),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DesiredChanged { .. }), "{err}");
        assert_eq!(sim.calls().snapshot(), before, "nothing reached the cloud");
    }
}
