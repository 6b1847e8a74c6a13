#!/usr/bin/env bash
# The one test command: sets up moto (pinned, in ./.venv) and runs the whole suite, end-to-end tests included.
# Extra arguments go to cargo test, e.g. `scripts/test.sh --test moto_harness`.
set -euo pipefail

cd "$(dirname "$0")/.."

scripts/setup-moto.sh

# Debian tools some tests drive, installed only when missing. Installing needs root (or password-less sudo);
# otherwise the script stops and prints the command. Services a package would start (prometheus's server) are
# kept from starting with a temporary policy-rc.d: only the tools are wanted.
require_debian_tool() {
    local tool="$1" package="$2"
    command -v "$tool" >/dev/null 2>&1 && return 0
    local install="apt-get update && apt-get install -y --no-install-recommends $package"
    local guarded="if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; \
chmod +x /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; fi; $install"
    if [[ "$(id -u)" -eq 0 ]]; then
        sh -c "$guarded"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n sh -c "$guarded"
    else
        echo "error: $tool is missing and installing it needs root; run as root:" >&2
        echo "  $install" >&2
        exit 1
    fi
    command -v "$tool" >/dev/null 2>&1 || {
        echo "error: $tool is still missing after installing Debian's $package package" >&2
        exit 1
    }
}
# tests/deploy_units.rs checks deploy/systemd/stacksetd.service with systemd-analyze.
require_debian_tool systemd-analyze systemd
# tests/monitoring.rs and tests/observability_moto.rs check deploy/prometheus and a live /metrics with promtool.
require_debian_tool promtool prometheus

# The end-to-end harness (tests/common/mod.rs) starts tests/moto/launcher.py with this interpreter.
STACKSETD_TEST_PYTHON="$(pwd)/.venv/bin/python"
export STACKSETD_TEST_PYTHON

# Every target by default; arguments that pick targets themselves (e.g. --test NAME) replace --all-targets,
# which would otherwise override them.
targets=(--all-targets)
for arg in "$@"; do
    [[ "$arg" == "--" ]] && break
    case "$arg" in
        --lib | --bins | --bin | --bin=* | --tests | --test | --test=* | --examples | --example | --example=* | \
            --benches | --bench | --bench=* | --doc | --all-targets)
            targets=()
            break
            ;;
    esac
done

exec cargo test "${targets[@]}" "$@"
