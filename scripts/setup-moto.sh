#!/usr/bin/env bash
# Installs moto (the local AWS for the end-to-end tests) into ./.venv, pinned by tests/moto/requirements.txt.
# Idempotent and quiet: does nothing when ./.venv already has the pinned moto. Needs only python3 and PyPI.
set -euo pipefail

cd "$(dirname "$0")/.."

VENV=.venv
REQUIREMENTS=tests/moto/requirements.txt
# The moto version the requirements pin, e.g. 5.2.5.
PINNED=$(sed -n 's/^moto\[server\]==\([0-9.]*\)$/\1/p' "$REQUIREMENTS")
if [[ -z "$PINNED" ]]; then
    echo "setup-moto: no 'moto[server]==X.Y.Z' line in $REQUIREMENTS" >&2
    exit 1
fi

installed_moto() {
    "$VENV/bin/python" -c 'import moto, flask; print(moto.__version__)' 2>/dev/null || true
}

if [[ -x "$VENV/bin/python" && "$(installed_moto)" == "$PINNED" ]]; then
    exit 0
fi

echo "setup-moto: installing moto $PINNED into $VENV" >&2
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"

if [[ "$(installed_moto)" != "$PINNED" ]]; then
    echo "setup-moto: $VENV has moto '$(installed_moto)' after install, expected $PINNED" >&2
    exit 1
fi
