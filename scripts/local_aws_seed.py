"""Seed the local AWS (moto, started by scripts/local-aws.sh) with an organization, and write a desired state for it.

Usage: .venv/bin/python scripts/local_aws_seed.py --endpoint http://127.0.0.1:5000
           --config config/aimably-data-only.yaml --template config/templates/aimably-data-only.json
           --out target/local-aws

Creates, through boto3 (moto ships it) against --endpoint only:
- the organization (FeatureSet ALL), whose management account is the credentials' account (moto's default
  123456789012);
- the OUs Security, Workloads > Prod, Workloads > Dev and Sandbox, and ten member accounts: one under the root,
  the others in the OUs;
- trusted access for StackSets, as the console's "Enable trusted access" does: Organizations'
  EnableAWSServiceAccess for member.org.stacksets.cloudformation.amazonaws.com and CloudFormation's
  ActivateOrganizationsAccess.

Then writes, in --out:
- desired.yaml: --config with the template read from --template by file:// (the vendor catalog is not reachable
  from a local AWS) and the seeded management account in managementAccountId and ManagementAccountId;
- org.json: what was created (management account, root, OUs, member accounts), for scripts and tests.

It prints the organization as a short tree. It refuses to seed an endpoint that already has an organization.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

# The credentials moto maps to its default account; any would do, these say what they are.
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"
STACKSETS_SERVICE_PRINCIPAL = "member.org.stacksets.cloudformation.amazonaws.com"

# (OU path, account names): the path's last element is the OU, the ones before it its parents; () is the root.
LAYOUT: list[tuple[tuple[str, ...], list[str]]] = [
    ((), ["shared-services"]),
    (("Security",), ["log-archive", "security-tooling"]),
    (("Workloads",), []),
    (("Workloads", "Prod"), ["prod-web", "prod-data", "prod-api"]),
    (("Workloads", "Dev"), ["dev-web", "dev-data"]),
    (("Sandbox",), ["sandbox-alice", "sandbox-bob"]),
]


def clients(endpoint: str):
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name=REGION,
    )
    return (
        session.client("organizations", endpoint_url=endpoint),
        session.client("cloudformation", endpoint_url=endpoint),
    )


def create_account(orgs, name: str) -> str:
    """CreateAccount, polled until it succeeds (moto finishes at once; AWS would not)."""
    status = orgs.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"]
    deadline = time.monotonic() + 60
    while status["State"] == "IN_PROGRESS":
        if time.monotonic() > deadline:
            sys.exit(f"local-aws seed: CreateAccount {name} still in progress after 60 s")
        time.sleep(0.1)
        status = orgs.describe_create_account_status(CreateAccountRequestId=status["Id"])["CreateAccountStatus"]
    if status["State"] != "SUCCEEDED":
        sys.exit(f"local-aws seed: CreateAccount {name}: {status}")
    return status["AccountId"]


def seed(endpoint: str) -> dict:
    orgs, cfn = clients(endpoint)
    try:
        existing = orgs.describe_organization()["Organization"]
    except orgs.exceptions.AWSOrganizationsNotInUseException:
        existing = None
    if existing is not None:
        sys.exit(
            f"local-aws seed: {endpoint} already has an organization ({existing['Id']}); "
            "stop this local AWS and start a fresh one"
        )

    organization = orgs.create_organization(FeatureSet="ALL")["Organization"]
    management = organization["MasterAccountId"]
    root_id = orgs.list_roots()["Roots"][0]["Id"]

    ou_ids: dict[tuple[str, ...], str] = {(): root_id}
    ous = []
    accounts = []
    for path, names in LAYOUT:
        if path not in ou_ids:
            parent = ou_ids[path[:-1]]
            ou = orgs.create_organizational_unit(ParentId=parent, Name=path[-1])["OrganizationalUnit"]
            ou_ids[path] = ou["Id"]
            ous.append({"path": "/".join(path), "id": ou["Id"], "parentId": parent})
        for name in names:
            account_id = create_account(orgs, name)
            if path:
                orgs.move_account(AccountId=account_id, SourceParentId=root_id, DestinationParentId=ou_ids[path])
            accounts.append({"name": name, "id": account_id, "ou": "/".join(path) or "ROOT", "parentId": ou_ids[path]})

    # "Enable trusted access" for StackSets: what service-managed stack sets need in the management account.
    orgs.enable_aws_service_access(ServicePrincipal=STACKSETS_SERVICE_PRINCIPAL)
    cfn.activate_organizations_access()
    if cfn.describe_organizations_access()["Status"] != "ENABLED":
        sys.exit("local-aws seed: trusted access for StackSets is not ENABLED after ActivateOrganizationsAccess")

    return {
        "endpoint": endpoint,
        "organizationId": organization["Id"],
        "managementAccountId": management,
        "rootId": root_id,
        "organizationalUnits": ous,
        "memberAccounts": accounts,
    }


def desired_state(config_text: str, template: str, management: str) -> str:
    """config_text with the template from a file and the seeded management account; its comments kept."""
    url = "file://" + os.path.abspath(template)
    lines = config_text.splitlines()
    # The config's own header describes the config: replace it with what this file is.
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    out = [
        "# Desired state for the local AWS of scripts/local-aws.sh (generated: edit freely, the next start",
        "# overwrites it). From config/aimably-data-only.yaml, with the template read from config/templates/ by",
        "# file:// (the vendor catalog is not reachable from a local AWS) and the seeded management account.",
    ]
    replaced = {"url": 0, "managementAccountId": 0, "ManagementAccountId": 0}
    for line in lines:
        account = re.match(r'^(\s*)(managementAccountId|ManagementAccountId):\s*"?\d{12}"?(.*)$', line)
        policy = re.match(r"^(\s*)policy:\s*DataOnly\b", line)
        updates = re.match(r"^(\s*)updates:\s*Auto\b", line)
        if account:
            indent, key, rest = account.groups()
            out.append(f'{indent}{key}: "{management}"{rest}')
            replaced[key] += 1
        elif policy:
            # json.dumps: a YAML double-quoted scalar, whatever the path holds.
            indent = policy.group(1)
            out.append(f"{indent}url: {json.dumps(url)}   # the template, from this machine")
            out.append(f"{indent}policy: DataOnly                  # the level the guard holds every version to")
            replaced["url"] += 1
        elif updates:
            # The catalog's comment does not fit a file: a new version is an edit of the file.
            comment = "# apply an edit of the file when the guard allows it"
            out.append(f"{updates.group(1)}updates: Auto                     {comment}")
        else:
            out.append(line)
    missing = [key for key, count in replaced.items() if count != 1]
    if missing:
        sys.exit(f"local-aws seed: the config does not have exactly one line for {', '.join(missing)}")
    text = "\n".join(out) + "\n"

    # What stacksetd will read: check the edits landed where they should.
    import yaml

    spec = yaml.safe_load(text)["spec"]
    if (
        spec["managementAccountId"] != management
        or spec["parameters"]["ManagementAccountId"] != management
        or spec["template"].get("url") != url
        or spec["template"].get("policy") != "DataOnly"
    ):
        sys.exit(f"local-aws seed: the generated desired state does not read as intended: {spec}")
    return text


def write(path: str, text: str) -> None:
    """Replace `path` whole (a reader never sees half a file)."""
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(partial, path)


def print_tree(org: dict) -> None:
    print(f"organization {org['organizationId']}: management account {org['managementAccountId']}, "
          f"{len(org['memberAccounts'])} member accounts")
    by_ou: dict[str, list[dict]] = {}
    for account in org["memberAccounts"]:
        by_ou.setdefault(account["ou"], []).append(account)
    for ou in ["ROOT"] + [o["path"] for o in org["organizationalUnits"]]:
        depth = 0 if ou == "ROOT" else ou.count("/") + 1
        name = f"root {org['rootId']}" if ou == "ROOT" else ou.split("/")[-1]
        members = ", ".join(f"{a['name']} {a['id']}" for a in by_ou.get(ou, [])) or "-"
        print(f"  {'  ' * depth}{name}: {members}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="the local AWS, e.g. http://127.0.0.1:5000")
    parser.add_argument("--config", required=True, help="the desired state to derive from")
    parser.add_argument("--template", required=True, help="the template file the desired state reads")
    parser.add_argument("--out", required=True, help="the directory for desired.yaml and org.json")
    args = parser.parse_args()

    with open(args.config, encoding="utf-8") as f:
        config_text = f.read()
    if not os.path.isfile(args.template):
        sys.exit(f"local-aws seed: no template at {args.template}")

    org = seed(args.endpoint)
    desired = desired_state(config_text, args.template, org["managementAccountId"])
    write(os.path.join(args.out, "org.json"), json.dumps(org, indent=2) + "\n")
    write(os.path.join(args.out, "desired.yaml"), desired)
    print_tree(org)


if __name__ == "__main__":
    main()
