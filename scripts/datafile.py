"""Writing or checking a generated data file (data/*.tsv): shared by the refresh scripts.

`write_or_check(out, text, check, name, summary)` compares `text` with the file at `out`, ignoring the
"# Generated:" date line, when `check` is set (exit status 1 when stale), and otherwise writes it atomically.
"""

import os
import sys


def strip_date(text):
    return "\n".join(l for l in text.split("\n") if not l.startswith("# Generated:"))


def write_or_check(out, text, check, name, summary):
    if check:
        try:
            with open(out, encoding="utf-8") as f:
                old = f.read()
        except FileNotFoundError:
            old = ""
        if strip_date(old) != strip_date(text):
            sys.stderr.write("%s: %s is stale; rerun without --check\n" % (name, out))
            return 1
        print("%s is up to date" % out)
        return 0
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp_out = out + ".tmp"
    with open(tmp_out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp_out, out)
    print("wrote %s: %s, %d bytes" % (out, summary, len(text.encode("utf-8"))))
    return 0
