"""Small patches that move moto 5.2.x's CloudFormation StackSets toward AWS's documented behaviour.

Each `patch_*` function changes one behaviour, says in its docstring which AWS behaviour it restores, and is
described in tests/moto/README.md. They patch moto's classes in this process only (the launcher imports this module
before starting the server); nothing in the installed package is modified. Patches never make AWS's behaviour
looser than AWS's: stacksetd must stay faithful to AWS, so moto is bent toward AWS, never the reverse.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from moto.cloudformation import models as cfn_models
from moto.cloudformation import responses as cfn_responses
from moto.cloudformation.exceptions import CloudFormationError
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.organizations.models import organizations_backends

StackSet = cfn_models.StackSet
StackInstances = cfn_models.StackInstances
CloudFormationResponse = cfn_responses.CloudFormationResponse

SERVICE_MANAGED = "SERVICE_MANAGED"
# The service principal the StackSets console's "Enable trusted access" turns on in Organizations.
STACKSETS_SERVICE_PRINCIPAL = "member.org.stacksets.cloudformation.amazonaws.com"


class OperationIdAlreadyExistsException(CloudFormationError):
    code = "OperationIdAlreadyExistsException"


class OperationNotFoundException(CloudFormationError):
    code = "OperationNotFoundException"


class NameAlreadyExistsException(CloudFormationError):
    code = "NameAlreadyExistsException"


def _wrap(owner: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace `owner.name` with `make(original)`, keeping the original's name for moto's dispatcher."""
    original = getattr(owner, name, None)
    replacement = make(original) if original is not None else make(lambda *a, **k: None)
    if original is not None:
        functools.update_wrapper(replacement, original)
    setattr(owner, name, replacement)


def _org_backend(stack_instances: StackInstances) -> Any:
    return stack_instances.org_backend


def _descendant_ous(org: Any, ou_ids: list[str]) -> list[str]:
    """The given OUs and every OU below them, at any depth (breadth-first, no duplicates)."""
    found: list[str] = []
    frontier = list(ou_ids)
    while frontier:
        current = frontier.pop(0)
        if current in found:
            continue
        found.append(current)
        frontier.extend(ou.id for ou in org.ou if ou.parent_id == current)
    return found


# AWS does not document whether a CreateStackInstances that reaches an existing instance through another OU (a
# child OU of the one it was created through) re-associates it. By default an instance keeps the OU it was first
# created through; STACKSETD_MOTO_REASSOCIATE=1 re-associates it with the OU the latest creation reached it through,
# as fakecloud does. stacksetd must be right under both (tests/coverage_moto.rs runs each).
REASSOCIATE = os.environ.get("STACKSETD_MOTO_REASSOCIATE") == "1"


def _record_instance_ous(instances: StackInstances, accounts: list[str], regions: list[str], requested: list[str]) -> None:
    """Each new instance remembers the requested OU its account was reached through (see patch_instances_report_ou);
    with REASSOCIATE, an existing one takes it too."""
    org = _org_backend(instances)
    parent_of = {a.id: a.parent_id for a in org.accounts}
    for instance in instances.stack_instances:
        if instance.account_id not in accounts or instance.region_name not in regions:
            continue
        if getattr(instance, "organizational_unit_id", None) and not REASSOCIATE:
            continue
        for ou in requested:
            if parent_of.get(instance.account_id) in _descendant_ous(org, [ou]):
                instance.organizational_unit_id = ou
                break


def patch_instances_report_ou() -> None:
    """ListStackInstances reports each service-managed instance's OrganizationalUnitId.

    AWS (StackInstanceSummary): "OrganizationalUnitId: [Service-managed permissions] The organization root ID or
    organizational unit (OU) IDs that you specified for DeploymentTargets." moto 5.2 omits it; the targeted OU is
    recorded at creation by patch_resolve_deployment_targets_like_aws.
    """

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def to_dict(self: Any) -> dict[str, Any]:
            out = original(self)
            ou = getattr(self, "organizational_unit_id", None)
            if ou:
                out["OrganizationalUnitId"] = ou
            return out

        return to_dict

    _wrap(cfn_models.StackInstance, "to_dict", make)


def patch_resolve_deployment_targets_like_aws() -> None:
    """Service-managed targets resolve to every account below the OUs, at any depth, honouring AccountFilterType.

    AWS (DeploymentTargets, CreateStackInstances): "OrganizationalUnitIds: the organization root ID or
    organizational unit (OU) IDs to which StackSets deploys" - child OUs are included, so targeting the root
    reaches the whole organization. AccountFilterType: INTERSECTION deploys only to the listed Accounts within the
    OUs, DIFFERENCE to the OUs' accounts except the listed ones, UNION to both, NONE to the OUs' accounts.
    moto 5.2 expands the OUs one level only and always adds Accounts as a union.
    Adds `StackInstances.target_accounts`, which the other patches reuse.
    """

    def target_accounts(
        self: StackInstances,
        accounts: list[str],
        deployment_targets: dict[str, Any] | None,
        permission_model: str,
    ) -> list[str]:
        targets = deployment_targets or {}
        if permission_model != SERVICE_MANAGED:
            return list(dict.fromkeys(list(accounts) + list(targets.get("Accounts") or [])))
        org = _org_backend(self)
        ous = _descendant_ous(org, list(targets.get("OrganizationalUnitIds") or []))
        in_ous = [a.id for a in org.accounts if a.parent_id in ous]
        listed = list(targets.get("Accounts") or [])
        filter_type = targets.get("AccountFilterType") or "NONE"
        if filter_type == "INTERSECTION":
            chosen = [a for a in in_ous if a in listed]
        elif filter_type == "DIFFERENCE":
            chosen = [a for a in in_ous if a not in listed]
        elif filter_type == "UNION":
            chosen = in_ous + listed
        else:
            chosen = in_ous
        return list(dict.fromkeys(chosen))

    StackInstances.target_accounts = target_accounts

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_instances(
            self: StackInstances,
            accounts: list[str],
            regions: list[str],
            parameters: Any,
            deployment_targets: dict[str, Any],
            permission_model: str,
        ) -> Any:
            resolved = self.target_accounts(accounts, deployment_targets, permission_model)
            # Pass resolved accounts and no OUs, so moto's own one-level expansion adds nothing.
            result = original(self, resolved, regions, parameters, {}, permission_model=permission_model)
            if permission_model == SERVICE_MANAGED:
                _record_instance_ous(self, resolved, regions, (deployment_targets or {}).get("OrganizationalUnitIds") or [])
            return result

        return create_instances

    _wrap(StackInstances, "create_instances", make)


def patch_no_instances_in_management_account() -> None:
    """A service-managed stack set never gets an instance in the organization's management account.

    AWS (StackSets user guide, service-managed permissions): "StackSets doesn't deploy stack instances to the
    organization management account, even if the management account is in your organization or in an OU in your
    organization." moto 5.2 deploys there whenever the root is targeted.
    """

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def target_accounts(
            self: StackInstances,
            accounts: list[str],
            deployment_targets: dict[str, Any] | None,
            permission_model: str,
        ) -> list[str]:
            resolved = original(self, accounts, deployment_targets, permission_model)
            org = _org_backend(self).org
            if permission_model != SERVICE_MANAGED or org is None:
                return resolved
            return [a for a in resolved if a != org.master_account_id]

        return target_accounts

    _wrap(StackInstances, "target_accounts", make)


def patch_delete_stack_instances_uses_deployment_targets() -> None:
    """DeleteStackInstances deletes the instances its DeploymentTargets resolve to.

    AWS (DeleteStackInstances): "[Service-managed permissions] The Organizations accounts from which to delete
    stack instances" are given as DeploymentTargets (OrganizationalUnitIds, with Accounts and AccountFilterType);
    "You can specify Accounts or DeploymentTargets, but not both." moto 5.2 reads only Accounts, so a
    service-managed delete by OU deletes nothing.
    """

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def delete_stack_instances(self: CloudFormationResponse) -> ActionResult:
            targets = self._get_param("DeploymentTargets")
            if not targets:
                return original(self)
            stackset = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
            accounts = stackset.instances.target_accounts(
                self._get_param("Accounts", []), targets, stackset.permission_model
            )
            regions = self._get_param("Regions", [])
            stackset = self.cloudformation_backend.delete_stack_instances(stackset.name, accounts, regions)
            return ActionResult({"OperationId": stackset.operations[-1]["OperationId"]})

        return delete_stack_instances

    _wrap(CloudFormationResponse, "delete_stack_instances", make)


def patch_describe_stack_set_echoes_settings() -> None:
    """DescribeStackSet returns the AutoDeployment (DependsOn included), ManagedExecution and Capabilities given.

    AWS (StackSet data type): AutoDeployment "[Service-managed permissions] Describes whether StackSets
    automatically deploys to Organizations accounts that are added to a target organization or OU";
    ManagedExecution "Describes whether StackSets performs non-conflicting operations concurrently";
    Capabilities "The capabilities that are allowed in the stack set". Create/UpdateStackSet set them (an update
    that omits one keeps the previous value). moto 5.2 drops all three.
    """

    def remember(stackset: StackSet, params: Callable[[str], Any]) -> None:
        auto = params("AutoDeployment")
        if auto is not None:
            previous = getattr(stackset, "auto_deployment", None) or {}
            depends_on = auto.get("DependsOn")
            if depends_on is None:
                depends_on = previous.get("DependsOn") or []
            stackset.auto_deployment = {
                "Enabled": bool(auto.get("Enabled", False)),
                "RetainStacksOnAccountRemoval": bool(auto.get("RetainStacksOnAccountRemoval", False)),
            }
            if depends_on:
                stackset.auto_deployment["DependsOn"] = list(depends_on)
        managed = params("ManagedExecution")
        if managed is not None:
            stackset._managed_execution = {"Active": bool(managed.get("Active", False))}
        capabilities = params("Capabilities")
        if capabilities is not None:
            stackset.capabilities = list(capabilities)

    StackSet.managed_execution = property(  # type: ignore[assignment]
        lambda self: getattr(self, "_managed_execution", {"Active": False})
    )

    def make_create(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_stack_set(self: CloudFormationResponse) -> ActionResult:
            result = original(self)
            stackset = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
            remember(stackset, self._get_param)
            return result

        return create_stack_set

    def make_update(original: Callable[..., Any]) -> Callable[..., Any]:
        def update_stack_set(self: CloudFormationResponse) -> ActionResult:
            result = original(self)
            stackset = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
            remember(stackset, self._get_param)
            return result

        return update_stack_set

    _wrap(CloudFormationResponse, "create_stack_set", make_create)
    _wrap(CloudFormationResponse, "update_stack_set", make_update)


def patch_describe_stack_set_echoes_targets() -> None:
    """DescribeStackSet returns the OUs targeted (and not since removed) and the Regions that have instances.

    AWS (StackSet data type): OrganizationalUnitIds "[Service-managed permissions] The organization root ID or
    organizational unit (OU) IDs that you specified for DeploymentTargets"; Regions "Returns a list of all Amazon
    Web Services Regions the given StackSet has stack instances deployed in". A CreateStackInstances adds its OUs;
    a DeleteStackInstances by whole OUs (no account filter) removes them. moto 5.2 returns neither field.
    """

    StackSet.regions = property(  # type: ignore[attr-defined]
        lambda self: sorted({i.region_name for i in self.instances.stack_instances})
    )
    StackSet.organizational_unit_ids = property(  # type: ignore[attr-defined]
        lambda self: list(getattr(self, "_targeted_ous", []))
    )

    def make_create(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_stack_instances(self: CloudFormationResponse) -> ActionResult:
            result = original(self)
            stackset = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
            ous = (self._get_param("DeploymentTargets") or {}).get("OrganizationalUnitIds") or []
            stackset._targeted_ous = list(dict.fromkeys(list(getattr(stackset, "_targeted_ous", [])) + ous))
            return result

        return create_stack_instances

    def make_delete(original: Callable[..., Any]) -> Callable[..., Any]:
        def delete_stack_instances(self: CloudFormationResponse) -> ActionResult:
            result = original(self)
            targets = self._get_param("DeploymentTargets") or {}
            if (targets.get("AccountFilterType") or "NONE") == "NONE":
                removed = set(targets.get("OrganizationalUnitIds") or [])
                stackset = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
                stackset._targeted_ous = [o for o in getattr(stackset, "_targeted_ous", []) if o not in removed]
            return result

        return delete_stack_instances

    _wrap(CloudFormationResponse, "create_stack_instances", make_create)
    _wrap(CloudFormationResponse, "delete_stack_instances", make_delete)


# The actions whose OperationId the caller chooses, and that take OperationPreferences.
OPERATION_ACTIONS = (
    "create_stack_instances",
    "update_stack_instances",
    "delete_stack_instances",
    "update_stack_set",
)


def patch_operations_keep_caller_id_and_preferences() -> None:
    """Stack set operations keep the caller's OperationId and OperationPreferences.

    AWS (Create/Update/DeleteStackInstances, UpdateStackSet): OperationId is "The unique identifier for this stack
    set operation" chosen by the caller (the SDK generates one when omitted); reusing one raises
    OperationIdAlreadyExistsException. DescribeStackSetOperation returns the OperationPreferences the operation ran
    with, and raises OperationNotFoundException for an unknown id. moto 5.2 replaces the id with its own UUID
    (except for UpdateStackSet), records no preferences, and raises ValidationError for an unknown id.
    """

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def operation(self: CloudFormationResponse) -> ActionResult:
            stackset = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
            wanted = self._get_param("OperationId")
            if wanted and any(op["OperationId"] == wanted for op in stackset.operations):
                raise OperationIdAlreadyExistsException(f"Operation with id {wanted} already exists")
            before = len(stackset.operations)
            original(self)
            # UpdateStackSet with Accounts and Regions records two operations; the first one is the call's own.
            op = stackset.operations[before]
            if wanted:
                op["OperationId"] = wanted
            preferences = self._get_param("OperationPreferences")
            if preferences:
                op["OperationPreferences"] = preferences
            return ActionResult({"OperationId": op["OperationId"]})

        return operation

    for action in OPERATION_ACTIONS:
        _wrap(CloudFormationResponse, action, make)

    def make_get(original: Callable[..., Any]) -> Callable[..., Any]:
        def get_operation(self: StackSet, operation_id: str) -> dict[str, Any]:
            for op in self.operations:
                if op["OperationId"] == operation_id:
                    return op
            raise OperationNotFoundException(f"Operation {operation_id} not found")

        return get_operation

    _wrap(StackSet, "get_operation", make_get)

    def make_dto(original: Callable[..., Any]) -> Callable[..., Any]:
        def init(self: Any, operation: dict[str, Any], stack_set: StackSet) -> None:
            original(self, operation, stack_set)
            self.operation_preferences = operation.get("OperationPreferences")

        return init

    _wrap(cfn_responses.StackSetOperationDTO, "__init__", make_dto)


def patch_create_stack_set_name_is_unique() -> None:
    """CreateStackSet refuses a name already in use, unless it is a retry with the same ClientRequestToken.

    AWS (CreateStackSet): NameAlreadyExistsException "The specified name is already in use"; ClientRequestToken
    "Specify this token if you plan to retry requests so that CloudFormation knows that you're not attempting to
    create another stack set with the same name." moto 5.2 silently creates a second stack set with the same name.
    """

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_stack_set(self: CloudFormationResponse) -> ActionResult:
            name = self._get_param("StackSetName")
            token = self._get_param("ClientRequestToken")
            for existing in self.cloudformation_backend.stacksets.values():
                if existing.name == name and existing.status != "DELETED":
                    if token and getattr(existing, "client_request_token", None) == token:
                        return ActionResult({"StackSetId": existing.id})
                    raise NameAlreadyExistsException(f"StackSet {name} already exists")
            result = original(self)
            self.cloudformation_backend.describe_stack_set(name).client_request_token = token
            return result

        return create_stack_set

    _wrap(CloudFormationResponse, "create_stack_set", make)


def patch_organizations_access() -> None:
    """DescribeOrganizationsAccess and ActivateOrganizationsAccess report and switch StackSets' trusted access.

    AWS (DescribeOrganizationsAccess): "Retrieves information about the account's OrganizationAccess status",
    ENABLED or DISABLED; ActivateOrganizationsAccess "Activate trusted access with Organizations", which enables
    the member.org.stacksets.cloudformation.amazonaws.com service principal in Organizations. moto 5.2 implements
    neither; here both read and write moto's own Organizations service-access list, so the two views agree.
    """

    def org_backend(response: CloudFormationResponse) -> Any:
        return organizations_backends[response.current_account][response.partition]

    def describe_organizations_access(self: CloudFormationResponse) -> ActionResult:
        backend = org_backend(self)
        enabled = any(s["ServicePrincipal"] == STACKSETS_SERVICE_PRINCIPAL for s in backend.services)
        return ActionResult({"Status": "ENABLED" if enabled and backend.org else "DISABLED"})

    def activate_organizations_access(self: CloudFormationResponse) -> EmptyResult:
        org_backend(self).enable_aws_service_access(ServicePrincipal=STACKSETS_SERVICE_PRINCIPAL)
        return EmptyResult()

    CloudFormationResponse.describe_organizations_access = describe_organizations_access
    CloudFormationResponse.activate_organizations_access = activate_organizations_access


def patch_list_stack_instances_pages() -> None:
    """ListStackInstances returns at most MaxResults summaries (1-100) and a NextToken for the rest.

    AWS (ListStackInstances): "MaxResults: The maximum number of results to be returned with a single call. If the
    number of available results exceeds this maximum, the response includes a NextToken value"; and
    "StackInstanceRegion: The name of the Region where you want to list stack instances". moto 5.2 returns every
    instance in one response, whatever Region is asked, which would hide the paging cost of a converged pass in
    benchmarks and make a per-Region listing see every Region.
    """

    page_limit = 100

    def list_stack_instances(self: CloudFormationResponse) -> ActionResult:
        instances = list(self.cloudformation_backend.list_stack_instances(self._get_param("StackSetName")))
        region = self._get_param("StackInstanceRegion")
        if region:
            instances = [i for i in instances if i.get("Region") == region]
        size = min(max(int(self._get_param("MaxResults") or page_limit), 1), page_limit)
        start = int(self._get_param("NextToken") or 0)
        result: dict[str, Any] = {"Summaries": instances[start : start + size]}
        if start + size < len(instances):
            result["NextToken"] = str(start + size)
        return ActionResult(result)

    functools.update_wrapper(list_stack_instances, CloudFormationResponse.list_stack_instances)
    CloudFormationResponse.list_stack_instances = list_stack_instances


def patch_list_auto_deployment_targets() -> None:
    """ListStackSetAutoDeploymentTargets returns the OUs the stack set auto-deploys to, with their Regions.

    AWS (ListStackSetAutoDeploymentTargets): "Returns summary information about deployment targets for a
    StackSet", each summary an OrganizationalUnitId and the Regions. moto 5.2 does not implement the action (its
    server answers 500, which the SDK retries). Here: when AutoDeployment is enabled, every OU the stack set
    targets (patch_describe_stack_set_echoes_targets) in every Region it has instances in.
    """

    def list_stack_set_auto_deployment_targets(self: CloudFormationResponse) -> ActionResult:
        stackset = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
        auto = getattr(stackset, "auto_deployment", None) or {}
        summaries: list[dict[str, Any]] = []
        if auto.get("Enabled"):
            regions = sorted({i.region_name for i in stackset.instances.stack_instances})
            summaries = [
                {"OrganizationalUnitId": ou, "Regions": regions} for ou in list(getattr(stackset, "_targeted_ous", []))
            ]
        return ActionResult({"Summaries": summaries})

    CloudFormationResponse.list_stack_set_auto_deployment_targets = list_stack_set_auto_deployment_targets  # type: ignore[attr-defined]


# A file the tests write to make moto fail where AWS can and moto never does, while the server runs: with
# STACKSETD_MOTO_FAULTS=<file> in the launcher's environment (MotoServer::start_with_env), each affected request reads
# it, one fault per line (blank lines and `#` comments ignored), so a test turns a fault on and off without a restart.
# `fail-instance-update <account-id>`: an UpdateStackSet that reaches that account's instances fails there (see
# patch_update_stack_set_scoped_like_aws). Answers rather than state (a transient empty ListRoots) belong to the fault
# proxy in front of the emulator instead (tests/fault_support/proxy.rs), which works on fakecloud too.
FAULTS_FILE_ENV = "STACKSETD_MOTO_FAULTS"
FAIL_INSTANCE_UPDATE = "fail-instance-update"
# `hold-operation <operation-id> <seconds>`: that operation runs for that long (see patch_operations_run_when_held).
HOLD_OPERATION = "hold-operation"


def _faults() -> list[list[str]]:
    path = os.environ.get(FAULTS_FILE_ENV)
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.split("#", 1)[0].split() for line in handle]
    except OSError:
        return []
    return [words for words in lines if words]


def _failing_update_accounts() -> set[str]:
    return {words[1] for words in _faults() if len(words) == 2 and words[0] == FAIL_INSTANCE_UPDATE}


def _failure_tolerance(preferences: dict[str, Any], instances: int) -> int:
    """How many instances of one Region may fail before the operation fails (AWS rounds a percentage down)."""
    if preferences.get("FailureToleranceCount") is not None:
        return int(preferences["FailureToleranceCount"])
    if preferences.get("FailureTolerancePercentage") is not None:
        return int(preferences["FailureTolerancePercentage"]) * instances // 100
    return 0


def patch_update_stack_set_scoped_like_aws() -> None:
    """UpdateStackSet updates the instances it targets; a template or parameter change leaves the rest OUTDATED.

    AWS (UpdateStackSet): "DeploymentTargets: [Service-managed permissions] The Organizations accounts in which to
    update associated stack instances. To update all the stack instances associated with this stack set do not
    specify DeploymentTargets or Regions. If the stack set update includes changes to the template (that is, if
    TemplateBody or TemplateURL is specified), or the Parameters, CloudFormation marks all stack instances with a
    status of OUTDATED prior to updating the stack instances in the specified accounts and Amazon Web Services
    Regions. If the stack set update doesn't include changes to the template or parameters, CloudFormation updates
    the stack instances in the specified accounts and Regions, while leaving all other stack instances with their
    existing stack instance status." An instance whose stack fails to update stays OUTDATED (DetailedStatus
    FAILED, with a StatusReason); the operation fails once a Region's failures exceed the failure tolerance, and
    StatusDetails.FailedStackInstancesCount counts them. EndTimestamp is patch_operations_end_when_they_finish's.
    moto 5.2 ignores DeploymentTargets, never changes an instance's stack, reports every instance CURRENT, and
    gives later instances the template the stack set was created with.
    Here: the targets resolve as CreateStackInstances' do (StackInstances.target_accounts, AccountFilterType
    included); a reached instance's stack gets the stack set's template and parameters (moto's resources are not
    re-applied) and is CURRENT, unless a `fail-instance-update <account>` fault (STACKSETD_MOTO_FAULTS) fails it.
    """

    def make_to_dict(original: Callable[..., Any]) -> Callable[..., Any]:
        def to_dict(self: Any) -> dict[str, Any]:
            out = original(self)
            out["Status"] = getattr(self, "status", "CURRENT")
            out["StackInstanceStatus"] = {"DetailedStatus": getattr(self, "detailed_status", "SUCCEEDED")}
            if getattr(self, "status_reason", None):
                out["StatusReason"] = self.status_reason
            return out

        return to_dict

    _wrap(cfn_models.StackInstance, "to_dict", make_to_dict)

    def apply(instance: Any, stackset: StackSet) -> None:
        """The instance's stack runs the stack set's template and parameters (its overrides kept)."""
        instance.template = stackset.template
        stack = instance.stack
        stack.template = stackset.template
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        overrides = instance.parameters if isinstance(instance.parameters, list) else []
        stack.parameters = {
            **dict(stackset.parameters or {}),
            **{p["ParameterKey"]: p["ParameterValue"] for p in overrides if "ParameterValue" in p},
        }
        instance.status, instance.detailed_status, instance.status_reason = "CURRENT", "SUCCEEDED", None

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def update_stack_set(self: CloudFormationResponse) -> ActionResult:
            stackset = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
            parameters_before = dict(stackset.parameters or {})
            before = len(stackset.operations)
            result = original(self)
            op = stackset.operations[before]
            # Instances created from now on get the new template (moto keeps the creation's).
            stackset.instances.template = stackset.template
            stackset.instances.parameters = stackset.parameters
            targets = self._get_param("DeploymentTargets")
            accounts = self._get_param("Accounts", [])
            regions = self._get_param("Regions", [])
            instances = [i for i in stackset.instances.stack_instances if getattr(i, "status", "") != "INOPERABLE"]
            if targets or accounts or regions:
                chosen = set(stackset.instances.target_accounts(accounts, targets, stackset.permission_model))
                instances = [i for i in instances if i.account_id in chosen and i.region_name in regions]
                if targets:
                    op["DeploymentTargets"] = targets
            template_given = bool(self._get_param("TemplateBody") or self._get_param("TemplateURL"))
            if template_given or dict(stackset.parameters or {}) != parameters_before:
                for instance in stackset.instances.stack_instances:
                    if getattr(instance, "status", "") != "INOPERABLE":
                        instance.status = "OUTDATED"
            failing = _failing_update_accounts()
            op["Instances"] = [{i.account_id: i.region_name} for i in instances]
            op["Results"] = []
            failed_by_region: dict[str, int] = {}
            for instance in instances:
                if instance.account_id in failing:
                    reason = f"The stack update failed (injected: {FAIL_INSTANCE_UPDATE} {instance.account_id})"
                    instance.status, instance.detailed_status, instance.status_reason = "OUTDATED", "FAILED", reason
                    failed_by_region[instance.region_name] = failed_by_region.get(instance.region_name, 0) + 1
                    op["Results"].append((instance.account_id, instance.region_name, "FAILED", reason))
                else:
                    apply(instance, stackset)
                    op["Results"].append((instance.account_id, instance.region_name, "SUCCEEDED", None))
            preferences = self._get_param("OperationPreferences") or {}
            per_region = {r: sum(1 for i in instances if i.region_name == r) for r in failed_by_region}
            if any(n > _failure_tolerance(preferences, per_region[r]) for r, n in failed_by_region.items()):
                op["Status"] = "FAILED"
            op["StatusDetails"] = {"FailedStackInstancesCount": sum(failed_by_region.values())}
            return result

        return update_stack_set

    _wrap(CloudFormationResponse, "update_stack_set", make)

    def make_dto(original: Callable[..., Any]) -> Callable[..., Any]:
        def init(self: Any, operation: dict[str, Any], stack_set: StackSet) -> None:
            original(self, operation, stack_set)
            self.deployment_targets = operation.get("DeploymentTargets")
            self.status_details = operation.get("StatusDetails")

        return init

    _wrap(cfn_responses.StackSetOperationDTO, "__init__", make_dto)

    def make_results(original: Callable[..., Any]) -> Callable[..., Any]:
        def list_stack_set_operation_results(self: CloudFormationResponse) -> ActionResult:
            stackset = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
            op = stackset.get_operation(self._get_param("OperationId"))
            if "Results" not in op:
                return original(self)
            summaries = []
            for account, region, status, reason in op["Results"]:
                summary = {"Account": account, "Region": region, "Status": status}
                if reason:
                    summary["StatusReason"] = reason
                summaries.append(summary)
            return ActionResult({"Summaries": summaries})

        return list_stack_set_operation_results

    _wrap(CloudFormationResponse, "list_stack_set_operation_results", make_results)


def patch_operations_end_when_they_finish() -> None:
    """A finished operation's EndTimestamp is when it finished.

    AWS (StackSetOperation): "EndTimestamp: The time at which the stack set operation ended, across all accounts
    and Regions specified." moto 5.2 finishes every operation before answering but stamps it as ending two minutes
    later, in the future; a bake timed from a canary operation's end (spec.rollout) would then start late.
    """

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_operation(self: StackSet, *args: Any, **kwargs: Any) -> dict[str, Any]:
            operation = original(self, *args, **kwargs)
            operation["EndTimestamp"] = utcnow()
            return operation

        return create_operation

    _wrap(StackSet, "_create_operation", make)


def _held(operation: dict[str, Any]) -> dict[str, Any]:
    """The operation as a `hold-operation <id> <seconds>` fault shows it: RUNNING, without an EndTimestamp, until
    `seconds` after its creation; then ended as moto finished it, at that time. Without the fault, unchanged."""
    seconds = None
    for words in _faults():
        if len(words) == 3 and words[0] == HOLD_OPERATION and words[1] == operation.get("OperationId"):
            try:
                seconds = float(words[2])
            except ValueError:
                pass
    if seconds is None:
        return operation
    ends = operation["CreationTimestamp"] + timedelta(seconds=seconds)
    shown = dict(operation)
    if utcnow() < ends:
        shown["Status"] = "RUNNING"
        shown.pop("EndTimestamp", None)
    else:
        shown["EndTimestamp"] = ends
    return shown


def patch_operations_run_when_held() -> None:
    """An operation named by a `hold-operation <id> <seconds>` fault runs for that long, as AWS's operations do.

    AWS (StackSetOperation): stack set operations run asynchronously; "RUNNING: The operation is currently being
    performed", and EndTimestamp is "The time at which the stack set operation ended". moto 5.2 finishes every
    operation before answering. With the fault listed (STACKSETD_MOTO_FAULTS), DescribeStackSetOperation and
    ListStackSetOperations report that operation RUNNING without an EndTimestamp until `seconds` after its
    creation, then with the status moto gave it and that end: so a test can start an operation outside stacksetd
    and watch stacksetd adopt it while it runs. Only what these two calls report changes: the instances are as moto
    made them at once, and other operations are not refused meanwhile (no OperationInProgressException).
    """

    def make_list(original: Callable[..., Any]) -> Callable[..., Any]:
        def list_stack_set_operations(self: CloudFormationResponse) -> ActionResult:
            operations = self.cloudformation_backend.list_stack_set_operations(self._get_param("StackSetName"))
            return ActionResult({"Summaries": [_held(op) for op in operations]})

        return list_stack_set_operations

    _wrap(CloudFormationResponse, "list_stack_set_operations", make_list)

    def make_dto(original: Callable[..., Any]) -> Callable[..., Any]:
        def init(self: Any, operation: dict[str, Any], stack_set: StackSet) -> None:
            original(self, operation, stack_set)
            shown = _held(operation)
            self.status = shown["Status"]
            self.end_timestamp = shown.get("EndTimestamp")

        return init

    _wrap(cfn_responses.StackSetOperationDTO, "__init__", make_dto)


# Order matters where patches wrap the same method: target resolution first, then what builds on it.
ALL_PATCHES = (
    patch_resolve_deployment_targets_like_aws,
    patch_no_instances_in_management_account,
    patch_delete_stack_instances_uses_deployment_targets,
    patch_describe_stack_set_echoes_settings,
    patch_describe_stack_set_echoes_targets,
    patch_operations_keep_caller_id_and_preferences,
    patch_create_stack_set_name_is_unique,
    patch_organizations_access,
    patch_list_stack_instances_pages,
    patch_instances_report_ou,
    patch_list_auto_deployment_targets,
    patch_update_stack_set_scoped_like_aws,
    patch_operations_end_when_they_finish,
    patch_operations_run_when_held,
)


def apply_all() -> None:
    for patch in ALL_PATCHES:
        patch()
