#!/usr/bin/env python3
"""The side-by-side baseline of the benchmark harness (benches/scale.rs, scripts/bench.sh): a plain boto3 script
doing the same observation stacksetd does, against the same endpoint (moto on 127.0.0.1).

    python benches/boto3_baseline.py --endpoint http://127.0.0.1:PORT --part stackset --stack-set NAME
    python benches/boto3_baseline.py --endpoint http://127.0.0.1:PORT --part org

`stackset`: DescribeStackSet + every ListStackInstances page (MaxResults 100), what a converged pass reads.
`org`: the organization walk: DescribeOrganization, ListRoots, then ListOrganizationalUnitsForParent and
ListAccountsForParent for every parent, recursively (what stacksetd's organization scan reads).

Prints one JSON line: wall and CPU seconds of the observation itself (clients made before), the process's peak
resident memory (interpreter and boto3 included, as a script's user would see it), the calls by operation, and
what was seen. Only loopback endpoints are accepted.
"""

import argparse
import json
import resource
import time
import urllib.parse

import boto3
from botocore.config import Config


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--part", choices=["stackset", "org"], required=True)
    parser.add_argument("--stack-set", default="")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args()
    host = urllib.parse.urlparse(args.endpoint).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing a non-loopback endpoint: {args.endpoint}")

    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=args.region,
    )
    config = Config(retries={"max_attempts": 5, "mode": "standard"})
    calls = {}

    def count(operation):
        calls[operation] = calls.get(operation, 0) + 1

    seen = {}
    if args.part == "stackset":
        cfn = session.client("cloudformation", endpoint_url=args.endpoint, config=config)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        cfn.describe_stack_set(StackSetName=args.stack_set)
        count("DescribeStackSet")
        instances = 0
        kwargs = {"StackSetName": args.stack_set, "MaxResults": 100}
        while True:
            page = cfn.list_stack_instances(**kwargs)
            count("ListStackInstances")
            instances += len(page.get("Summaries", []))
            token = page.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
        seen["instances"] = instances
    else:
        org = session.client("organizations", endpoint_url=args.endpoint, config=config)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        org.describe_organization()
        count("DescribeOrganization")
        roots = org.list_roots()["Roots"]
        count("ListRoots")
        parents = [r["Id"] for r in roots]
        accounts = 0
        units = 0
        while parents:
            parent = parents.pop()
            for operation, method, key in (
                ("ListOrganizationalUnitsForParent", org.list_organizational_units_for_parent, "OrganizationalUnits"),
                ("ListAccountsForParent", org.list_accounts_for_parent, "Accounts"),
            ):
                kwargs = {"ParentId": parent}
                while True:
                    page = method(**kwargs)
                    count(operation)
                    items = page.get(key, [])
                    if key == "Accounts":
                        accounts += len(items)
                    else:
                        units += len(items)
                        parents.extend(ou["Id"] for ou in items)
                    token = page.get("NextToken")
                    if not token:
                        break
                    kwargs["NextToken"] = token
        seen["accounts"] = accounts
        seen["ous"] = units
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    # ru_maxrss is in KiB on Linux.
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "part": args.part,
                "wall_s": wall,
                "cpu_s": cpu,
                "peak_rss_kib": rss_kib,
                "calls": calls,
                "seen": seen,
            }
        )
    )


if __name__ == "__main__":
    main()
