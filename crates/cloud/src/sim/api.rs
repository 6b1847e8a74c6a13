//! The `Cloud` implementation: every call advances the world, passes the fault layer, runs against the world and
//! is counted in the `CallCounter` with its outcome. Listings are counted (and can fail) per page, with AWS's page
//! sizes, so call budgets measured against the sim match what the SDK would pay.

use async_trait::async_trait;

use super::Sim;
use super::World;
use super::faults::SimError;
use super::targets::check_call_as;
use crate::error::AwsErrorKind;
use crate::pages;
use crate::{
    AccessVerdict, Account, CallAs, CallCounter, Cloud, CreateStackSet, DeleteInstancesRequest,
    DetectDriftRequest, InstancesRequest, ObservedStackSet, Operation, OperationAction,
    OperationResult, OrgNode, OrganizationInfo, PolicyKind, Result, StackInstance, UpdateStackSet,
};
use crate::{DeleteStackRequest, ObservedStack, StackRequest};

/// Page sizes of the listings (Organizations: MaxResults 20; CloudFormation: 100).
const ORG_PAGE: usize = 20;
const CFN_PAGE: usize = crate::CLOUDFORMATION_PAGE;

const CFN: &str = "cloudformation";
const ORGS: &str = "organizations";
const STS: &str = "sts";

impl Sim {
    /// One API call: faults first, then the body, then one more fault roll per extra page, then a lost
    /// response if one was injected. Records every attempted page with its outcome.
    fn call<T>(
        &self,
        service: &'static str,
        operation: &'static str,
        page_count: impl Fn(&T) -> usize,
        body: impl FnOnce(&mut World) -> Result<T, SimError>,
    ) -> Result<T> {
        let calls = &self.inner.calls;
        let mut world = self.world();
        let world = &mut *world;
        let outcome = (|| {
            if let Some(e) = world
                .faults
                .before_call(&mut world.fault_rng, service, operation)
            {
                return Err(e);
            }
            let value = body(world)?;
            for _ in 1..page_count(&value) {
                calls.record(service, operation, "ok");
                if let Some(e) = world
                    .faults
                    .before_call(&mut world.fault_rng, service, operation)
                {
                    return Err(e);
                }
            }
            if let Some(e) = world.faults.after_call(operation) {
                return Err(e);
            }
            Ok(value)
        })();
        match outcome {
            Ok(value) => {
                calls.record(service, operation, "ok");
                Ok(value)
            }
            Err(e) => {
                let error = e.into_error(service, operation);
                calls.record(service, operation, error.metric_label());
                Err(error)
            }
        }
    }

    /// ListStackInstances, in one Region when `region` is given; pages of the instances returned.
    fn list_instances(
        &self,
        name: &str,
        call_as: CallAs,
        region: Option<&str>,
    ) -> Result<Vec<StackInstance>> {
        self.call(
            CFN,
            "ListStackInstances",
            |v: &Vec<StackInstance>| pages(v.len(), CFN_PAGE),
            |w| {
                let stack_set = w.stack_set_ref(name, call_as)?;
                Ok(stack_set
                    .instances
                    .values()
                    .filter(|i| region.is_none_or(|r| i.region == r))
                    .cloned()
                    .collect())
            },
        )
    }

    fn single<T>(
        &self,
        service: &'static str,
        operation: &'static str,
        body: impl FnOnce(&mut World) -> Result<T, SimError>,
    ) -> Result<T> {
        self.call(service, operation, |_| 1, body)
    }
}

fn parent_must_exist(world: &World, parent_id: &str) -> Result<(), SimError> {
    if world.org.unit_exists(parent_id) {
        Ok(())
    } else {
        Err(SimError::new(
            AwsErrorKind::NotFound,
            "ParentNotFoundException",
            format!("parent {parent_id} not found"),
        ))
    }
}

fn operation_not_found(id: &str) -> SimError {
    SimError::new(
        AwsErrorKind::NotFound,
        "OperationNotFoundException",
        format!("Operation {id} not found"),
    )
}

#[async_trait]
impl Cloud for Sim {
    async fn caller_account(&self) -> Result<String> {
        self.single(STS, "GetCallerIdentity", |w| {
            Ok(w.config.caller_account_id().to_string())
        })
    }

    async fn describe_organization(&self) -> Result<OrganizationInfo> {
        self.single(ORGS, "DescribeOrganization", |w| {
            Ok(OrganizationInfo {
                id: w.org.id.clone(),
                management_account_id: w.org.management_account_id.clone(),
                feature_set: w.org.feature_set.clone(),
            })
        })
    }

    async fn list_roots(&self) -> Result<Vec<OrgNode>> {
        self.single(ORGS, "ListRoots", |w| {
            let root = &w.org.root_id;
            let name = w
                .org
                .units
                .get(root)
                .map(|u| u.name.clone())
                .unwrap_or_default();
            Ok(vec![OrgNode {
                id: root.clone(),
                name,
            }])
        })
    }

    async fn list_organizational_units(&self, parent_id: &str) -> Result<Vec<OrgNode>> {
        self.call(
            ORGS,
            "ListOrganizationalUnitsForParent",
            |v: &Vec<OrgNode>| pages(v.len(), ORG_PAGE),
            |w| {
                parent_must_exist(w, parent_id)?;
                Ok(w.org.child_units(parent_id))
            },
        )
    }

    async fn list_accounts(&self, parent_id: &str) -> Result<Vec<Account>> {
        self.call(
            ORGS,
            "ListAccountsForParent",
            |v: &Vec<Account>| pages(v.len(), ORG_PAGE),
            |w| {
                parent_must_exist(w, parent_id)?;
                Ok(w.org.child_accounts(parent_id))
            },
        )
    }

    async fn list_delegated_administrators(&self, service_principal: &str) -> Result<Vec<String>> {
        self.call(
            ORGS,
            "ListDelegatedAdministrators",
            |v: &Vec<String>| pages(v.len(), ORG_PAGE),
            |w| {
                Ok(if service_principal == crate::STACKSETS_SERVICE_PRINCIPAL {
                    w.org.delegated_admins.iter().cloned().collect()
                } else {
                    Vec::new()
                })
            },
        )
    }

    async fn list_aws_service_access(&self) -> Result<Vec<String>> {
        self.single(ORGS, "ListAWSServiceAccessForOrganization", |w| {
            if w.config.caller_account_id() != w.org.management_account_id
                && !w
                    .org
                    .delegated_admins
                    .contains(w.config.caller_account_id())
            {
                return Err(SimError::new(
                    AwsErrorKind::AccessDenied,
                    "AccessDeniedException",
                    "You don't have permissions to access this resource.",
                ));
            }
            Ok(if w.org.trusted_access {
                vec![crate::STACKSETS_SERVICE_PRINCIPAL.to_string()]
            } else {
                Vec::new()
            })
        })
    }

    async fn describe_organizations_access(&self, call_as: CallAs) -> Result<String> {
        self.single(CFN, "DescribeOrganizationsAccess", |w| {
            check_call_as(w, call_as)?;
            Ok(if w.org.trusted_access {
                "ENABLED"
            } else {
                "DISABLED"
            }
            .to_string())
        })
    }

    async fn activate_organizations_access(&self) -> Result<()> {
        self.single(CFN, "ActivateOrganizationsAccess", |w| {
            if w.config.caller_account_id() != w.org.management_account_id {
                return Err(SimError::new(
                    AwsErrorKind::AccessDenied,
                    "AccessDenied",
                    "Only the management account can activate organizations access",
                ));
            }
            w.org.trusted_access = true;
            Ok(())
        })
    }

    async fn describe_stack_set(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> Result<Option<ObservedStackSet>> {
        self.single(CFN, "DescribeStackSet", |w| {
            if !check_call_as(w, call_as)? {
                return Ok(None);
            }
            Ok(w.stack_sets
                .get(name)
                .filter(|s| s.status == crate::StackSetStatus::Active)
                .map(|s| s.observe()))
        })
    }

    async fn list_stack_instances(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> Result<Vec<StackInstance>> {
        self.list_instances(name, call_as, None)
    }

    async fn list_stack_instances_in(
        &self,
        name: &str,
        call_as: CallAs,
        region: &str,
    ) -> Result<Vec<StackInstance>> {
        self.list_instances(name, call_as, Some(region))
    }

    async fn list_operations(
        &self,
        name: &str,
        call_as: CallAs,
        limit: usize,
    ) -> Result<Vec<Operation>> {
        self.single(CFN, "ListStackSetOperations", |w| {
            let epoch = w.epoch;
            let stack_set = w.stack_set_ref(name, call_as)?;
            Ok(stack_set
                .ops
                .iter()
                .rev()
                .take(limit)
                .map(|op| to_operation(epoch, &op.public))
                .collect())
        })
    }

    async fn describe_operation(
        &self,
        name: &str,
        operation_id: &str,
        call_as: CallAs,
    ) -> Result<Operation> {
        self.single(CFN, "DescribeStackSetOperation", |w| {
            let epoch = w.epoch;
            let stack_set = w.stack_set_ref(name, call_as)?;
            stack_set
                .ops
                .iter()
                .find(|op| op.public.id == operation_id)
                .map(|op| to_operation(epoch, &op.public))
                .ok_or_else(|| operation_not_found(operation_id))
        })
    }

    async fn list_operation_results(
        &self,
        name: &str,
        operation_id: &str,
        call_as: CallAs,
    ) -> Result<Vec<OperationResult>> {
        self.call(
            CFN,
            "ListStackSetOperationResults",
            |v: &Vec<OperationResult>| pages(v.len(), CFN_PAGE),
            |w| {
                let stack_set = w.stack_set_ref(name, call_as)?;
                stack_set
                    .ops
                    .iter()
                    .find(|op| op.public.id == operation_id)
                    .map(|op| op.results.values().cloned().collect())
                    .ok_or_else(|| operation_not_found(operation_id))
            },
        )
    }

    async fn list_auto_deployment_targets(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> Result<Vec<crate::AutoDeploymentTarget>> {
        // What the sim's automatic deployment follows: the targeted OUs, in the Regions with instances.
        self.single(CFN, "ListStackSetAutoDeploymentTargets", |w| {
            let stack_set = w.stack_set_ref(name, call_as)?;
            if !stack_set.settings.auto_deployment_enabled() {
                return Ok(Vec::new());
            }
            let regions: Vec<String> = stack_set.regions().into_iter().collect();
            Ok(stack_set
                .ou_ids
                .iter()
                .map(|ou| crate::AutoDeploymentTarget {
                    organizational_unit_id: ou.clone(),
                    regions: regions.clone(),
                })
                .collect())
        })
    }

    async fn create_stack_set(&self, request: &CreateStackSet) -> Result<()> {
        self.stall("CreateStackSet").await;
        self.single(CFN, "CreateStackSet", |w| w.create_stack_set(request))
    }

    async fn update_stack_set(&self, request: &UpdateStackSet) -> Result<String> {
        self.stall("UpdateStackSet").await;
        self.single(CFN, "UpdateStackSet", |w| w.update_stack_set(request))
    }

    async fn create_stack_instances(&self, request: &InstancesRequest) -> Result<String> {
        self.stall("CreateStackInstances").await;
        self.single(CFN, "CreateStackInstances", |w| {
            w.instances_operation(request, OperationAction::Create)
        })
    }

    async fn update_stack_instances(&self, request: &InstancesRequest) -> Result<String> {
        self.stall("UpdateStackInstances").await;
        self.single(CFN, "UpdateStackInstances", |w| {
            w.instances_operation(request, OperationAction::Update)
        })
    }

    async fn delete_stack_instances(&self, request: &DeleteInstancesRequest) -> Result<String> {
        self.stall("DeleteStackInstances").await;
        self.single(CFN, "DeleteStackInstances", |w| w.delete_instances(request))
    }

    async fn delete_stack_set(&self, name: &str, call_as: CallAs) -> Result<()> {
        self.stall("DeleteStackSet").await;
        self.single(CFN, "DeleteStackSet", |w| w.delete_stack_set(name, call_as))
    }

    async fn detect_stack_set_drift(&self, request: &DetectDriftRequest) -> Result<String> {
        self.single(CFN, "DetectStackSetDrift", |w| w.detect_drift(request))
    }

    async fn describe_stack(&self, name: &str, region: &str) -> Result<Option<ObservedStack>> {
        self.single(
            CFN,
            "DescribeStacks",
            |w| Ok(w.describe_stack(name, region)),
        )
    }

    async fn get_stack_template(&self, stack_id: &str, _region: &str) -> Result<String> {
        self.single(CFN, "GetTemplate", |w| w.stack_template(stack_id))
    }

    async fn create_stack(&self, request: &StackRequest) -> Result<()> {
        self.single(CFN, "CreateStack", |w| w.create_stack(request))
    }

    async fn update_stack(&self, request: &StackRequest) -> Result<bool> {
        let answer = self.single(CFN, "UpdateStack", |w| w.update_stack(request));
        match answer {
            Err(e) if e.to_string().contains(super::stacks::NO_UPDATES) => Ok(false),
            other => other.map(|()| true),
        }
    }

    async fn delete_stack(&self, request: &DeleteStackRequest) -> Result<()> {
        self.single(CFN, "DeleteStack", |w| w.delete_stack(request))
    }

    async fn detect_stack_drift(&self, stack_id: &str, _region: &str) -> Result<()> {
        self.single(CFN, "DetectStackDrift", |w| w.detect_stack_drift(stack_id))
    }

    async fn assume_role(&self, role_arn: &str, _session_name: &str) -> Result<()> {
        self.single(STS, "AssumeRole", |w| w.assume_role(role_arn))
    }

    async fn list_stack_sets(&self, call_as: CallAs) -> Result<Vec<String>> {
        self.single(CFN, "ListStackSets", |w| {
            let _ = call_as;
            Ok(w.stack_sets
                .iter()
                .filter(|(_, s)| s.status == crate::StackSetStatus::Active)
                .map(|(name, _)| name.clone())
                .collect())
        })
    }

    async fn stage_template(&self, bucket: &str, key: &str, body: &str) -> Result<String> {
        self.single("s3", "PutObject", |w| {
            let url = crate::staged_url(bucket, "", key, None);
            w.staged.insert(url.clone(), body.to_string());
            Ok(url)
        })
    }

    async fn check_no_new_access(
        &self,
        existing: &str,
        new: &str,
        _kind: PolicyKind,
    ) -> Result<AccessVerdict> {
        // The simulator has no policy engine: it reports new access whenever the documents differ, and counts the
        // (charged) call. Tests of the real answers use aws-smithy-mocks.
        self.single("access-analyzer", "CheckNoNewAccess", |_| {
            let same = existing == new;
            Ok(AccessVerdict {
                pass: same,
                reasons: if same {
                    vec![]
                } else {
                    vec!["the policy document changed".into()]
                },
            })
        })
    }

    fn calls(&self) -> &CallCounter {
        &self.inner.calls
    }
}

impl World {
    /// The role exists in an active member account once a stack set instance there is CURRENT (the stack set
    /// creates it); `Sim::deny_access` breaks it. Any role name is accepted: the sim does not read templates.
    fn assume_role(&self, role_arn: &str) -> Result<(), SimError> {
        let denied = |reason: &str| {
            SimError::new(
                AwsErrorKind::AccessDenied,
                "AccessDenied",
                format!(
                    "User: arn:aws:iam::{}:root is not authorized to perform: sts:AssumeRole on resource: \
                     {role_arn} ({reason})",
                    self.config.caller_account_id()
                ),
            )
        };
        let account = role_arn
            .strip_prefix("arn:aws:iam::")
            .and_then(|rest| rest.split(':').next())
            .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| SimError::validation(format!("{role_arn} is not a role ARN")))?;
        if let Some(reason) = self.faults.denied_access.get(account) {
            return Err(denied(reason));
        }
        if self.org.is_inactive(account) || !self.org.accounts.contains_key(account) {
            return Err(denied("the account is not an active member"));
        }
        let deployed = self.stack_sets.values().any(|s| {
            s.status == crate::StackSetStatus::Active
                && s.instances
                    .values()
                    .any(|i| i.account == account && i.status == crate::InstanceStatus::Current)
        });
        if deployed {
            Ok(())
        } else {
            Err(denied(
                "the role does not exist: no stack instance has created it",
            ))
        }
    }
}

/// `epoch`: the world's (simulated instant, wall clock) pair, for EndTimestamp.
fn to_operation(
    epoch: (tokio::time::Instant, std::time::SystemTime),
    op: &super::SimOperation,
) -> Operation {
    Operation {
        id: op.id.clone(),
        action: op.action,
        status: op.status,
        status_reason: op.status_reason.clone(),
        failed_instances: Some(op.failed_instances),
        preferences: Some(op.preferences.clone()),
        ended: op
            .ended_at
            .map(|at| epoch.1 + at.saturating_duration_since(epoch.0)),
    }
}
