#!/usr/bin/env bash
# The one test command: sets up moto (pinned, in ./.venv) and runs the whole suite, end-to-end tests included.
# Extra arguments go to cargo test, e.g. `scripts/test.sh --test e2e moto_harness::`
# (the test binaries: sim, e2e, process, soak_sim, aws_endpoint_env; each tests/*.rs file is a module of one).
set -euo pipefail

cd "$(dirname "$0")/.."

# --backend fakecloud: the end-to-end tests against fakecloud (a second emulator nobody here wrote) instead of moto.
# Its first build takes most of an hour on 2 cores: it is installed once, pinned, under target/fakecloud/.
backend=moto
if [[ "${1:-}" == "--backend" ]]; then
    backend="${2:?--backend needs moto or fakecloud}"
    shift 2
fi
FAKECLOUD_VERSION=0.51.0
if [[ "$backend" == fakecloud ]]; then
    fakecloud="$(pwd)/target/fakecloud/$FAKECLOUD_VERSION/bin/fakecloud"
    if [[ ! -x "$fakecloud" ]]; then
        echo "test.sh: installing fakecloud $FAKECLOUD_VERSION into target/fakecloud/ (once; most of an hour on 2 cores)" >&2
        cargo install fakecloud --version "$FAKECLOUD_VERSION" --locked --root "target/fakecloud/$FAKECLOUD_VERSION"
    fi
    export STACKSETD_TEST_BACKEND=fakecloud STACKSETD_FAKECLOUD="$fakecloud"
    if [[ $# -eq 0 ]]; then
        # The end-to-end tests. moto_harness checks moto's own patches, so it stays on moto; tenants_moto assumes
        # a role in a second organization's account that the harness does not create, which moto allows and
        # fakecloud (like AWS) refuses; rollout_moto drives the moto patch that scopes UpdateStackSet and its fault
        # file, which fakecloud does not have; events_moto drives moto's SQS (unsigned JSON protocol) and the fault
        # file's hold-operation, which fakecloud does not have either.
        set -- --test e2e -- --skip moto_harness:: --skip tenants_moto:: --skip rollout_moto:: --skip events_moto::
    fi
elif [[ "$backend" != moto ]]; then
    echo "test.sh: --backend moto or --backend fakecloud" >&2
    exit 2
fi

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
# tests/daemon_sim/page_chromium.rs drives the daemon's page (GET /) in a headless Chromium (with one font
# package: without recommends Debian's chromium brings none, and its screenshot would have no text).
require_debian_tool chromium "chromium fonts-dejavu-core"

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
