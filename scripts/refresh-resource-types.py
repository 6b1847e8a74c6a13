#!/usr/bin/env python3
"""Refresh data/resource-types.tsv: which CloudFormation resource types are inert.

The data comes from the resource provider schemas that cfn-lint (MIT-0) bundles in
cfnlint/data/schemas: providers/<Region>.json maps each resource type to a schema
file in resources/<hash>.json (providers/sam.json does the same for the SAM
transform's AWS::Serverless::* types, which are included too). The type list is the
union over all those files; a type whose schema differs between Regions is checked
in every version, so its property set is the union over Regions.

Usage (run with a Python that has cfn-lint installed, e.g. the project's .venv):
    .venv/bin/python scripts/refresh-resource-types.py                  # finds cfnlint's schemas
    .venv/bin/python scripts/refresh-resource-types.py --schemas DIR     # DIR has providers/ and resources/
    .venv/bin/python scripts/refresh-resource-types.py --check           # exit 1 if the committed file is stale

Only the Python standard library is used (cfnlint is located, not imported). The
output is deterministic for a given input; the only line that changes from run to
run is the "Generated" date (set SOURCE_DATE_EPOCH to pin it).

Classification rules (fail closed: when unsure, a type is "active"):

A type is INERT only when no property that a template can set can carry a policy, a
principal, code, a URL, a command or a destination. Every writable property is
walked recursively: through $ref (#/definitions/..., #/properties/...), array
items, nested objects, oneOf/anyOf/allOf branches, patternProperties and
additionalProperties schemas. A type is ACTIVE when any of these holds:

 1. Name rule. A property's name is split into words (camelCase, acronyms, IPv4/IPv6,
    digits) and one word, lowercased, is a keyword in KEYWORDS (whole words, plus
    plurals and a few derived forms: "Policies", "RoleArn", "KMSKeyId",
    "deadLetterTargetArn"). The walk stops at the first name that matches on each
    path; that name is the one reported. Kinds and (abridged) words:
      policy      Policy, Permission, Permit, Grant, Acl, Trust, Statement, Access,
                  Public, Ingress, Egress, Allow, Deny, Entitlement, Setting
      principal   Principal, Role, Account, User, Group, Identity, Member, Share,
                  Owner, Credential, Password, Secret, Token, Auth*, Login, SAML,
                  OIDC, Client, Tenant, Organization, OU, Admin, Directory, IAM,
                  Peer, SSH, Certificate, Master, Invitation, Accessor, Sign*, Thing
      code        Code, Script, Function, Lambda, Handler, Layer, Image, Container,
                  Docker, Runtime, Source, Package, Artifact, Notebook, Template,
                  Document, Definition, Body, Content, Payload, Input, Program, Job,
                  Step, Build, Workflow, Pipeline, Plugin, Extension, Module,
                  Expression, Transform, Resolver, Prompt, Deploy*, Mapping, Schema
      command     Command, Run, Exec*, Entrypoint, Args, Cmd, Shell, Invoke,
                  Trigger, Hook, Callback, Bootstrap, Startup
      url         URL, URI, Endpoint, Host, Domain, DNS, DHCP, Address, IP, IPv4,
                  IPv6, IPAM, CIDR, Server, Origin, Redirect, Link, Website, HTTP,
                  Proxy, Connection, Handle
      destination Destination, Target, Topic, Queue, Stream, Bucket, S3, SNS, SQS,
                  Kinesis, Firehose, Delivery, Export, Subscription, Notification,
                  Webhook, Email, Sink, Forward, Replica, Replication, Log, Output,
                  Location, KMS, Key, Gateway, Route, Action, Bus, Channel,
                  Recipient, Contact, Phone, SMS, Copy, Mirror, Publish,
                  Integration, Slack, Team, Attach*, Associat*, and Arn: an ARN
                  names another resource, maybe in another account.
 2. Free-form rule ("policy: ..."): the value can hold arbitrary JSON or key/value
    data, so it may be a policy: an object without properties; an object whose
    additionalProperties is not false (missing, true or a schema); a map
    (patternProperties); a type list that allows object (["object","string"]); a
    value with no type at all; a string with "format": "json" or whose
    description mentions JSON.
 3. Value rule: a string whose cfn-lint format ends in ".Arn", whose pattern
    contains "arn:" or whose description mentions an ARN (destination: ARN
    value); a string property whose name ends in "Data" (code: data text).
 4. Query rule: a name ending in Query, Queries or SQL (or QueryString, SqlText,
    ...) is code when its value is text. A Query that is an object with fixed
    properties (AWS::ResourceGroups::Group's tag and stack filter) is a filter, not
    code; the names inside it are checked as usual.
 5. Type-name rule: the type name after the vendor (e.g. "IAM::ServiceLinkedRole",
    "Organizations::Organization", "Amplify::Webhook") is checked like a property
    name (rule 1), except for the words Group (in type names, a collection:
    ResourceGroups::Group, Scheduler::ScheduleGroup) and Handle
    (CloudFormation::WaitConditionHandle).
 6. Anything the walker cannot follow: an unresolvable $ref, an unknown "type", or
    nesting deeper than MAX_DEPTH.

Exemptions: properties in the schema's readOnlyProperties (CloudFormation rejects
them in a template) are skipped. Tags: the value of a property named Tags (or Tag,
TagList, TagSet) is never free-form (rules 2 and 3); inside a property whose first
word is Tag or Label the names Key, Keys, Value and Values do not count, but every
other name does. Description-like names (Name, Description, DisplayName, Title,
Comment, Summary) match no keyword, and rules 2 and 3 skip their strings.

A type whose schema differs between Regions is active if any version is. For an
active type, "why" names up to 3 disqualifying paths (shallowest first, then by
kind in the order policy, principal, code, command, url, destination, then by
name), each with its kind(s), then "type name ..." if rule 5 applies and there is
room, and "+N more" for the other disqualifying top-level properties.
"""

import argparse
import datetime
import glob
import hashlib
import importlib.util
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from datafile import write_or_check  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "data", "resource-types.tsv")

KIND_ORDER = ("policy", "principal", "code", "command", "url", "destination")

# Whole-word patterns (lowercased words), per kind. Keep in sync with the docstring
# and data/README.md.
KEYWORDS = {
    "policy": r"""
        polic(y|ies) permissions? permit(s|ted)? grants? grantees? acls? trust(s|ed)?
        truststores? statements? access public(ly)? ingress egress allow(s|ed)?
        den(y|ies|ied) entitlements? settings?
    """,
    "principal": r"""
        principals? roles? accounts? users? usernames? groups? identit(y|ies) members?
        membership shar(e|es|ed|ing) owners? ownership credentials? passwords?
        secrets? tokens? auth authenticat(e|ed|ion|ions|or|ors) authori[sz]ations?
        authori[sz]ers? logins? saml oidc oauth jwt clients? tenants?
        organi[sz]ations? organi[sz]ational orgs? ous? admins? administrators?
        federat(ed|ion) sso ldap directory director(y|ies) kerberos iam audiences?
        issuers? peers? peering persons? people assumed? ssh keypairs? certificates?
        certs? masters? invitations? accessors? sign(ing|er|ers|ature|atures)? things?
    """,
    "code": r"""
        codes? scripts? functions? lambdas? handlers? layers? images? containers?
        docker(file)? runtimes? sources? packages? artifacts? notebooks? templates?
        documents? definitions? bod(y|ies) contents? payloads? inputs? programs?
        jobs? steps? builds? buildspec workflows? pipelines? plugins? extensions?
        modules? binar(y|ies) jars? librar(y|ies) snippets? macros? expressions?
        transforms? transformations? resolvers? automations? playbooks? recipes?
        prompts? instructions? deploy(s|ed|ment|ments)? mappings? schemas?
    """,
    "command": r"""
        commands? runs? running runner(s)? exec execut(e|es|ed|ion|ions|able|ables|or|ors)
        entrypoints? entry args arguments? argv cmds? shell bash invoke(s|d)?
        invocations? triggers? hooks? callbacks? bootstrap startup
    """,
    "url": r"""
        urls? uris? endpoints? hosts? hostnames? hosted domains? dns fqdns? address(es)?
        ips? ipv4 ipv6 cidrs? servers? origins? redirects? links? websites? https?
        prox(y|ies) handles? dhcp ipams? connections? connectionstrings?
    """,
    "destination": r"""
        destinations? targets? topics? queues? streams? streaming buckets? s3 sns sqs
        kinesis firehose deliver(y|ies|ed)? exports? exporters? subscriptions?
        subscribers? subscribe notifications? notify webhooks? emails? sinks?
        forward(s|ed|ing|er|ers)? replicas? replicat(e|ed|ion|ions) logs? logging
        loggers? outputs? locations? arns? kms keys? gateways? routes? routing
        actions? bus(es)? channels? recipients? contacts? phones? sms cop(y|ies)
        mirror(s|ing)? publish(ing|er|ers)? integrations? slack teams?
        attach(es|ed|ment|ments)? associat(e|es|ed|ion|ions)
    """,
}
KEYWORD_RES = {k: re.compile(r"^(?:%s)$" % "|".join(v.split())) for k, v in KEYWORDS.items()}

# Query-like names: code when the value is text (rule 4): the last word is Query or
# SQL, or the name ends in QueryString, QueryText, SqlStatement and the like.
QUERY_RE = re.compile(r"^(?:quer(y|ies)|sql)$")
QUERY_TAIL_RE = re.compile(r"^(?:strings?|text|statements?)$")
# Names of tag properties: their value is never free-form (see Exemptions in the docstring).
TAG_PROPERTY_NAMES = frozenset(("Tags", "Tag", "TagList", "TagSet", "tags"))
TAG_WORD_RE = re.compile(r"^(?:tags?|tagging|labels?)$")
TAG_ENTRY_NAMES = frozenset(("Key", "Keys", "Value", "Values"))
DESCRIPTIVE_RE = re.compile(r"^(?:name|names|description|descriptions|display|title|comment|summary)$")
JSON_RE = re.compile(r"\bJSON\b", re.IGNORECASE)
WORD_RE = re.compile(r"[Ii][Pp][Vv][46]|[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
ARN_PATTERN_RE = re.compile(r"arn:", re.IGNORECASE)
ARN_DESC_RE = re.compile(r"\bARNs?\b")
KIND_RANK = {k: i for i, k in enumerate(KIND_ORDER)}
PY_MAP_LINE_RE = re.compile(r'^\s*"([A-Za-z0-9]+::[A-Za-z0-9]+::[A-Za-z0-9]+)":\s*"([0-9a-f]+)",?\s*$', re.MULTILINE)

SHAPE_KEYS = frozenset((
    "type", "properties", "patternProperties", "additionalProperties", "items",
    "$ref", "enum", "const", "oneOf", "anyOf", "allOf",
))
# Words that do not count in a type name (rule 5): there, "Group" is a collection
# (ResourceGroups::Group, Scheduler::ScheduleGroup, EC2::PlacementGroup) and "Handle"
# is CloudFormation's own WaitConditionHandle.
TYPE_NAME_IGNORED = frozenset(("group", "groups", "handle"))
MAX_DEPTH = 64
MAX_SHOWN = 3
MAX_LINE = 399
INERT_WHY = "no property carries a policy, principal, code, URL, command or destination"


def die(msg):
    sys.stderr.write("refresh-resource-types: %s\n" % msg)
    sys.exit(2)


def words(name):
    return [w.lower() for w in WORD_RE.findall(name)]


def name_kinds(name, ignored=frozenset()):
    """Kinds whose keywords occur as a word of name (rule 1), in KIND_ORDER."""
    ws = [w for w in words(name) if w not in ignored]
    return [k for k in KIND_ORDER if any(KEYWORD_RES[k].match(w) for w in ws)]


def is_query_name(name):
    ws = words(name)
    if ws and QUERY_RE.match(ws[-1]):
        return True
    return len(ws) >= 2 and QUERY_RE.match(ws[-2]) is not None and QUERY_TAIL_RE.match(ws[-1]) is not None


def is_tag_name(name):
    ws = words(name)
    return bool(ws) and TAG_WORD_RE.match(ws[0]) is not None


def is_descriptive(name):
    ws = words(name)
    return bool(ws) and all(DESCRIPTIVE_RE.match(w) for w in ws)


def name_class(name):
    """What node() needs to know about the property name (for the memo key)."""
    return (is_query_name(name), is_descriptive(name), name in TAG_PROPERTY_NAMES, words(name)[-1:] == ["data"])


def type_list(node):
    t = node.get("type")
    if t is None:
        return None
    if isinstance(t, str):
        return [t]
    if isinstance(t, list) and all(isinstance(x, str) for x in t):
        return list(t)
    return ["?"]  # odd "type" value: treated as unknown (fail closed)


class Walker:
    """Walks one resource schema and finds disqualifying property paths."""

    def __init__(self, schema):
        self.schema = schema
        ro = set()
        for p in schema.get("readOnlyProperties") or []:
            if isinstance(p, str) and p.startswith("/properties/"):
                ro.add(tuple(seg.replace("~1", "/").replace("~0", "~") for seg in p.split("/")[2:]))
        self.readonly = ro
        self.ro_prefixes = {r[:i] for r in ro for i in range(1, len(r))}
        self.memo = {}

    def resolve(self, ref):
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return None
        node = self.schema
        for seg in ref[2:].split("/"):
            seg = seg.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or seg not in node:
                return None
            node = node[seg]
        return node if isinstance(node, dict) else None

    def top_level(self):
        """[(name, [hits])] for each writable top-level property, sorted by name.
        A hit is (path tuple, kind text)."""
        out = []
        for name in sorted(self.schema.get("properties") or {}):
            if (name,) in self.readonly:
                continue
            res = self.prop(name, self.schema["properties"][name], (), (), False, 0, ())
            out.append((name, res[0], res[1]))
        return out

    def prop(self, name, node, path, ipath, under_tag, depth, stack):
        """Check a named property; returns (first hits, total hit count, cut)."""
        path = path + (name,)
        ipath = ipath + (name,)
        if ipath in self.readonly:
            return [], 0, False
        if not (under_tag and name in TAG_ENTRY_NAMES):
            kinds = name_kinds(name)
            if kinds:
                return [(path, ", ".join(kinds))], 1, False
        return self.node(node, path, ipath, under_tag or is_tag_name(name), depth + 1, stack, name, None)

    def node(self, node, path, ipath, under_tag, depth, stack, pname, inherited):
        """Check the value schema node found at path."""
        if depth > MAX_DEPTH:
            return [(path, "policy: nesting too deep to check")], 1, False
        if not isinstance(node, dict):
            return [(path, "policy: unreadable schema")], 1, False
        if "$ref" in node:
            ref = node["$ref"]
            target = self.resolve(ref)
            if target is None:
                return [(path, "policy: unresolved $ref %s" % ref)], 1, False
            if ref in stack:
                return [], 0, True  # recursive definition: checked on the way down
            rest = {k: v for k, v in node.items() if k != "$ref"}
            key = (ref, under_tag, name_class(pname), json.dumps(rest, sort_keys=True))
            memo_ok = ipath not in self.ro_prefixes
            if memo_ok and key in self.memo:
                rel, n = self.memo[key]
                return [(path + p, k) for p, k in rel], n, False
            merged = dict(target)
            merged.update(rest)  # sibling keywords (e.g. description) apply too
            hits, n, cut = self.node(merged, path, ipath, under_tag, depth + 1, stack + (ref,), pname, inherited)
            if memo_ok and not cut:
                self.memo[key] = ([(p[len(path):], k) for p, k in hits], n)
            return hits, n, cut

        types = type_list(node)
        if types is None:
            if "properties" in node or "patternProperties" in node or "additionalProperties" in node:
                types = ["object"]
            elif "items" in node:
                types = ["array"]
            else:
                types = inherited
        combinators = [b for k in ("oneOf", "anyOf", "allOf") for b in (node.get(k) or [])]
        has_enum = "enum" in node or "const" in node

        hits, total, cut = [], 0, False

        def add(res):
            nonlocal total, cut
            best(hits, res[0])
            total += res[1]
            cut = cut or res[2]

        # The value of a Tags property is tags, whatever its shape (Exemptions): only the
        # names inside it are checked.
        tag_value = pname in TAG_PROPERTY_NAMES
        if types is None and not combinators and not has_enum:
            if tag_value:
                return [], 0, False
            return [(path, "policy: value has no type")], 1, False
        types = types or []
        if "?" in types:
            return [(path, "policy: unknown type %r" % (node.get("type"),))], 1, False

        textual = "string" in types or "object" in types
        if is_query_name(pname) and textual and not (
            types == ["object"] and node.get("properties") and node.get("additionalProperties") is False
        ):
            return [(path, "code: query text")], 1, False

        if "object" in types:
            props = node.get("properties")
            pprops = node.get("patternProperties")
            addl = node.get("additionalProperties")
            tags_map = tag_value or (under_tag and not props and _string_map(node, self))
            if tags_map:
                pass
            elif len(types) > 1:
                add(([(path, "policy: free-form JSON (type %s)" % "/".join(types))], 1, False))
            elif not props and not pprops and not isinstance(addl, dict) and not combinators:
                add(([(path, "policy: free-form object")], 1, False))
            elif pprops or isinstance(addl, dict) or addl is True or (props and addl is not False):
                why = "free-form map" if not props else "additionalProperties allowed"
                add(([(path, "policy: %s" % why)], 1, False))
            for pn in sorted(props or {}):
                add(self.prop(pn, props[pn], path, ipath, under_tag, depth, stack))
            for pat in sorted(pprops or {}):
                add(self.node(pprops[pat], path + ("*",), ipath + ("*",), under_tag, depth + 1, stack, pname, None))
            if isinstance(addl, dict):
                add(self.node(addl, path + ("*",), ipath + ("*",), under_tag, depth + 1, stack, pname, None))
        if "array" in types:
            items = node.get("items")
            if items is None:
                if not combinators and not tag_value and not (len(types) > 1 and "object" in types):
                    add(([(path, "policy: array of untyped values")], 1, False))
            elif isinstance(items, list):
                for it in items:
                    add(self.node(it, path, ipath + ("*",), under_tag, depth + 1, stack, pname, None))
            else:
                add(self.node(items, path, ipath + ("*",), under_tag, depth + 1, stack, pname, None))
        if "string" in types and not has_enum and not tag_value and not is_descriptive(pname):
            desc = node.get("description") if isinstance(node.get("description"), str) else ""
            fmt = node.get("format") if isinstance(node.get("format"), str) else ""
            pat = node.get("pattern") if isinstance(node.get("pattern"), str) else ""
            if fmt == "json":
                add(([(path, "policy: JSON text")], 1, False))
            elif JSON_RE.search(desc):
                add(([(path, "policy: text documented as JSON")], 1, False))
            if words(pname)[-1:] == ["data"]:
                add(([(path, "code: data text")], 1, False))
            if fmt.endswith(".Arn") or ARN_PATTERN_RE.search(pat) or ARN_DESC_RE.search(desc):
                add(([(path, "destination: ARN value")], 1, False))

        inherit = types or inherited
        for b in combinators:
            if not isinstance(b, dict):
                add(([(path, "policy: unreadable schema")], 1, False))
                continue
            if not (SHAPE_KEYS & set(b)):
                continue  # a pure constraint (required, format, ...): no shape of its own
            add(self.node(b, path, ipath, under_tag, depth + 1, stack, pname, inherit))
        return hits, total, cut


def hit_key(hit):
    path, kind = hit
    first = re.split(r"[:,]", kind, maxsplit=1)[0]
    return (len(path), KIND_RANK.get(first, -1), path, kind)


def best(acc, new):
    """Merge the hits in new into acc, keeping the MAX_SHOWN best by hit_key."""
    for h in new:
        if h not in acc:
            acc.append(h)
    acc.sort(key=hit_key)
    del acc[MAX_SHOWN:]


def _string_map(node, walker):
    """True if node is a map whose values are all plain strings (a Tags map)."""
    vals = list((node.get("patternProperties") or {}).values())
    addl = node.get("additionalProperties")
    if isinstance(addl, dict):
        vals.append(addl)
    elif addl is True or (addl is None and not vals):
        return False
    for v in vals:
        if isinstance(v, dict) and "$ref" in v:
            v = walker.resolve(v["$ref"])
        if not isinstance(v, dict) or v.get("type") != "string":
            return False
    return True


def classify(typ, schemas):
    """schemas: the schema dicts for one type (one per distinct Region version).
    Returns (inert?, why)."""
    per_prop = {}  # top-level name -> best hits
    writable = set()
    for schema in schemas:
        for name, hits, n in Walker(schema).top_level():
            writable.add(name)
            if n:
                best(per_prop.setdefault(name, []), hits)
    type_words = "::".join(typ.split("::")[1:])
    type_kinds = name_kinds(type_words, TYPE_NAME_IGNORED)
    if not per_prop and not type_kinds:
        why = INERT_WHY
        if writable:
            names = sorted(writable)
            why += " (checked: %s)" % ", ".join(names)
            if len(why) > MAX_LINE - 80:
                why = INERT_WHY + " (checked %d properties)" % len(names)
        return True, why
    shown = []
    for name in per_prop:
        best(shown, per_prop[name])
    parts = ["%s (%s)" % (".".join(path), kind) for path, kind in shown]
    extra = len(per_prop) - len({path[0] for path, _ in shown})
    if type_kinds and len(parts) < MAX_SHOWN:
        parts.append("type name %s (%s)" % (type_words, ", ".join(type_kinds)))
    elif type_kinds:
        extra += 1
    why = "; ".join(parts)
    if extra > 0:
        why += "; +%d more" % extra
    return False, why


def find_schemas_dir():
    spec = importlib.util.find_spec("cfnlint")
    if spec is None or not spec.submodule_search_locations:
        die("cfnlint is not installed for %s; use the project's .venv python or --schemas DIR" % sys.executable)
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "schemas")


def cfnlint_version(schemas_dir):
    vfile = os.path.normpath(os.path.join(schemas_dir, "..", "..", "version.py"))
    try:
        with open(vfile, encoding="utf-8") as f:
            m = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", f.read())
            if m:
                return m.group(1)
    except OSError:
        pass
    return None


def describe_dir(schemas_dir):
    """A machine-independent name for the schemas dir."""
    parts = os.path.normpath(os.path.abspath(schemas_dir)).split(os.sep)
    if parts[-3:] == ["cfnlint", "data", "schemas"]:
        return "cfnlint/data/schemas"
    return os.path.basename(os.path.normpath(schemas_dir)) or schemas_dir


def load(schemas_dir):
    """Returns ({type: [schema, ...]}, sha256 hex, n_files, schema_date)."""
    # cfn-lint 1.58 stores each Region's map as providers/<region>.json; some older
    # 1.x releases as providers/<region>.py (a dict literal named "types").
    provider_files = sorted(glob.glob(os.path.join(schemas_dir, "providers", "*.json")))
    if not provider_files:
        provider_files = sorted(
            p for p in glob.glob(os.path.join(schemas_dir, "providers", "*.py"))
            if os.path.basename(p) != "__init__.py"
        )
    if not provider_files:
        die("no providers/*.json (or providers/*.py) under %s" % schemas_dir)
    resource_files = sorted(glob.glob(os.path.join(schemas_dir, "resources", "*.json")))
    sha = hashlib.sha256()
    raw = {}
    for path in provider_files + resource_files:
        rel = os.path.relpath(path, schemas_dir).replace(os.sep, "/")
        with open(path, "rb") as f:
            data = f.read()
        raw[rel] = data
    for rel in sorted(raw):
        sha.update(rel.encode("utf-8") + b"\0" + hashlib.sha256(raw[rel]).digest())
    hashes = {}  # type -> set of schema file names
    for path in provider_files:
        rel = os.path.relpath(path, schemas_dir).replace(os.sep, "/")
        if rel.endswith(".py"):
            mapping = dict(PY_MAP_LINE_RE.findall(raw[rel].decode("utf-8")))
            if not mapping:
                die("%s: no \"Type\": \"hash\" lines" % rel)
        else:
            mapping = json.loads(raw[rel].decode("utf-8"))
        if not isinstance(mapping, dict):
            die("%s: not an object" % rel)
        for typ, h in mapping.items():
            hashes.setdefault(typ, set()).add(h)
    cache = {}
    types = {}
    for typ in sorted(hashes):
        schemas = []
        for h in sorted(hashes[typ]):
            rel = "resources/%s.json" % h
            if rel not in raw:
                die("%s: schema file %s is missing" % (typ, rel))
            if rel not in cache:
                cache[rel] = json.loads(raw[rel].decode("utf-8"))
            s = cache[rel]
            if s.get("typeName") not in (None, typ):
                die("%s: %s names type %s" % (typ, rel, s.get("typeName")))
            schemas.append(s)
        types[typ] = schemas
    schema_date = None
    try:
        with open(os.path.join(schemas_dir, "version.json"), encoding="utf-8") as f:
            schema_date = json.load(f).get("schema_date")
    except (OSError, ValueError):
        pass
    names = [os.path.splitext(os.path.basename(p))[0] for p in provider_files]
    n_regions = len([n for n in names if n != "sam"])
    files = "%d Regions%s" % (n_regions, " plus sam" if "sam" in names else "")
    return types, sha.hexdigest(), files, schema_date


def header(version, dirname, sha256, n_provider_files, schema_date, date, n, n_inert):
    return [
        "# resource-types.tsv: every CloudFormation resource type, and whether it is inert.",
        "# Source: resource provider schemas bundled with cfn-lint %s (PyPI, MIT-0 license)," % (version or "(version unknown)"),
        "#   dir %s: providers/* (%s) and resources/*.json" % (dirname, n_provider_files),
        "#   schema_date %s; input sha256 (sorted files): %s" % (schema_date or "unknown", sha256),
        "# Generated: %s by scripts/refresh-resource-types.py (do not edit by hand)" % date,
        "# Counts: %d types, %d inert, %d active" % (n, n_inert, n - n_inert),
        "# Format: TYPE<TAB>inert|active<TAB>why, one line per type, sorted.",
        "#   inert = no writable property (at any depth) can carry a policy, principal, code, URL,",
        "#   command or destination; active = at least one can, or might (fail closed). For active,",
        "#   why = up to 3 disqualifying property paths (sorted), each with its kind.",
        "#   Rules: the docstring of scripts/refresh-resource-types.py and data/README.md.",
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--schemas", metavar="DIR", help="cfn-lint's data/schemas dir (default: found via the installed cfnlint)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output file (default: data/resource-types.tsv)")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if --out differs (ignoring the date line)")
    args = ap.parse_args()

    schemas_dir = args.schemas or find_schemas_dir()
    if not os.path.isdir(schemas_dir):
        die("%s is not a directory" % schemas_dir)
    types, sha256, n_files, schema_date = load(schemas_dir)
    version = cfnlint_version(schemas_dir)

    lines = []
    n_inert = 0
    for typ in sorted(types):
        inert, why = classify(typ, types[typ])
        n_inert += inert
        line = "%s\t%s\t%s" % (typ, "inert" if inert else "active", why)
        if len(line) > MAX_LINE:
            line = line[: MAX_LINE - 3] + "..."
        if "\n" in line or line.count("\t") != 2:
            die("%s: bad characters in the output line" % typ)
        lines.append(line)

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
        if epoch
        else datetime.datetime.now(datetime.timezone.utc)
    )
    date = when.strftime("%Y-%m-%d")
    text = "\n".join(
        header(version, describe_dir(schemas_dir), sha256, n_files, schema_date, date, len(lines), n_inert) + lines
    ) + "\n"

    return write_or_check(
        args.out,
        text,
        args.check,
        "refresh-resource-types",
        "%d types (%d inert, %d active) (cfn-lint %s)" % (len(lines), n_inert, len(lines) - n_inert, version or "unknown"),
    )


if __name__ == "__main__":
    sys.exit(main())
