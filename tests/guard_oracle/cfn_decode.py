#!/usr/bin/env python3
"""Oracle: decode CloudFormation templates exactly as cfn-lint does, print plain JSON.

What it is
    The reference side of a differential test for stacksetd's template reader.
    stacksetd must read YAML/JSON templates the way CloudFormation does; cfn-lint's
    decoder (PyYAML's CSafeLoader -- libyaml scanner/parser with PyYAML's YAML 1.1
    implicit resolvers -- plus cfn-lint's own constructors for maps, strings,
    sequences and the ``!Ref``/``!GetAtt``/``!Sub``... short-form tags, and a
    JSON fallback) is the closest executable stand-in we have. This script runs
    templates through that decoder and prints the result as plain JSON.

Written against
    cfn-lint 1.58.0 (PyYAML 6.0.4 with libyaml), as pinned in
    tests/moto/requirements.txt and installed into /work/main/.venv by
    scripts/setup-moto.sh. Run it with /work/main/.venv/bin/python.

Entry point used
    ``cfnlint.decode.decode(filename)`` -- the call cfn-lint's CLI makes for a
    template file (runner/template/runner.py). It reads the file as UTF-8 text
    in universal-newline mode, tries ``cfn_yaml.loads`` and falls back to
    ``cfn_json.load`` only when the YAML scanner's problem text is the tab
    message or "found unknown escape character". With libyaml (the case here)
    the tab message never matches, and every JSON escape is also a YAML escape,
    so JSON templates are in practice decoded by the YAML loader (YAML 1.1
    resolution applies: 1e3 -> "1e3", NaN -> "NaN"). It returns
    (template, matches); non-empty matches means cfn-lint refuses the template.

Usage
    python cfn_decode.py FILE...
        prints ONE JSON object: {"FILE": {"ok": <decoded>}, "FILE2": {"error": "<one line>"}}

    python cfn_decode.py --stdin-json-list [--decode-str] < list.json
        stdin is a JSON list of {"name": ..., "text": ...}; prints the same kind of
        object keyed by name. Each text is written byte-for-byte (UTF-8, no newline
        translation) to a temporary file and decoded with decode(path), so results
        are identical to the FILE mode. With --decode-str each text is instead
        passed to cfnlint.decode.decode_str (cfn-lint's Python API path), which does
        NOT translate \\r\\n / \\r newlines.

How the Rust test uses it
    The Rust differential test generates many small YAML/JSON documents, sends
    them all in one --stdin-json-list call (one Python start), parses stdout with
    serde_json and compares each entry against stacksetd's own decoder:
    "ok" values must be equal, "error" entries must be errors in stacksetd too.

Encoding of the decoded value
    * dict_node/str_node/list_node -> JSON object/string/array.
    * bool -> true/false, int -> JSON integer (any size), float -> JSON number
      (Python repr, so a float always has '.' or 'e', e.g. 1000.0),
      None -> null.
    * float inf/-inf/nan (not representable in JSON) -> {"__float__": "inf"|"-inf"|"nan"}.
    * datetime.date / datetime.datetime (YAML 1.1 timestamps) -> {"__timestamp__": str(value)}.
    * anything else (bytes from !!binary, set from !!set, tuples from !!omap/!!pairs,
      ...) -> {"__type__": "<python type name>", "repr": repr(value)} (a set's
      members are sorted so the output is deterministic).
    * a dict key that is not a string -> "__key__:<type>:<repr>", e.g.
      "__key__:bool:True", "__key__:int:1", "__key__:float:1.5".
    * a self-referencing structure (recursive alias) -> {"__type__": "recursive", ...}.

Errors
    {"error": "..."} carries cfn-lint's match messages joined with " | ", each as
    "<rule id> L<line>:C<col> <message>", newlines flattened. An unexpected Python
    exception inside cfn-lint is reported as "oracle-exception: <type>: <msg>".
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import sys
import tempfile

try:
    import cfnlint  # noqa: F401
    from cfnlint.decode import decode as _cfn_decode_file
    from cfnlint.decode import decode_str as _cfn_decode_str
except ImportError as exc:  # pragma: no cover
    sys.stderr.write(
        f"cfn_decode.py: cannot import cfnlint ({exc}); run with /work/main/.venv/bin/python "
        "after scripts/setup-moto.sh\n"
    )
    sys.exit(2)

# cfn-lint logs parse problems via logging; keep them off stdout (and quiet on stderr).
logging.disable(logging.CRITICAL)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _key(k) -> str:
    if isinstance(k, str):
        return str(k)
    return f"__key__:{type(k).__name__}:{k!r}"


def to_plain(value, _stack=None):
    """Convert cfn-lint's decoded template to plain JSON-able Python values."""
    if _stack is None:
        _stack = set()
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return {"__float__": "nan"}
        if math.isinf(value):
            return {"__float__": "inf" if value > 0 else "-inf"}
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return {"__timestamp__": str(value)}
    if isinstance(value, (dict, list)):
        if id(value) in _stack:
            return {"__type__": "recursive", "repr": f"<recursive {type(value).__name__}>"}
        _stack.add(id(value))
        try:
            if isinstance(value, dict):
                return {_key(k): to_plain(v, _stack) for k, v in value.items()}
            return [to_plain(v, _stack) for v in value]
        finally:
            _stack.discard(id(value))
    if isinstance(value, (set, frozenset)):
        # sorted so the output does not depend on hash randomisation
        body = ", ".join(sorted(repr(to_plain(v)) for v in value))
        return {"__type__": type(value).__name__, "repr": "{" + body + "}"}
    return {"__type__": type(value).__name__, "repr": repr(value)}


def _format_matches(matches, filename=None, name=None) -> str:
    parts = []
    for m in matches:
        rule_id = getattr(getattr(m, "rule", None), "id", "?")
        msg = str(getattr(m, "message", m))
        if filename and name is not None:
            msg = msg.replace(filename, name)
        parts.append(
            f"{rule_id} L{getattr(m, 'linenumber', '?')}:C{getattr(m, 'columnnumber', '?')} "
            f"{_one_line(msg)}"
        )
    return " | ".join(parts) if parts else "error without matches"


def _decode_with(func, arg, filename=None, name=None) -> dict:
    try:
        template, matches = func(arg)
    except RecursionError as exc:
        return {"error": f"oracle-exception: RecursionError: {_one_line(exc)}"}
    except Exception as exc:  # noqa: BLE001 - report, do not crash the batch
        return {"error": f"oracle-exception: {type(exc).__name__}: {_one_line(exc)}"}
    if matches:
        return {"error": _format_matches(matches, filename, name)}
    try:
        return {"ok": to_plain(template)}
    except RecursionError:
        return {"error": "oracle-exception: RecursionError while converting"}


def decode_file(path: str) -> dict:
    return _decode_with(_cfn_decode_file, path)


def decode_text(name: str, text: str, use_decode_str: bool = False) -> dict:
    if use_decode_str:
        return _decode_with(_cfn_decode_str, text)
    fd, path = tempfile.mkstemp(prefix="cfn_decode_", suffix=".template")
    try:
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        except UnicodeEncodeError as exc:
            return {"error": f"oracle-exception: text is not encodable as UTF-8: {_one_line(exc)}"}
        return _decode_with(_cfn_decode_file, path, filename=path, name=name)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def main(argv: list[str]) -> int:
    args = argv[1:]
    out: dict = {}
    if "--stdin-json-list" in args:
        use_decode_str = "--decode-str" in args
        items = json.load(sys.stdin)
        if not isinstance(items, list):
            sys.stderr.write("cfn_decode.py: stdin must be a JSON list\n")
            return 2
        for item in items:
            name = str(item["name"])
            out[name] = decode_text(name, item["text"], use_decode_str)
    else:
        files = [a for a in args if not a.startswith("--")]
        if not files:
            sys.stderr.write(__doc__ or "")
            return 2
        for path in files:
            out[path] = decode_file(path)
    sys.stdout.write(json.dumps(out, ensure_ascii=True, allow_nan=False))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
