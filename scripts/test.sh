#!/usr/bin/env bash
# The one test command: sets up moto (pinned, in ./.venv) and runs the whole suite, end-to-end tests included.
# Extra arguments go to cargo test, e.g. `scripts/test.sh --test moto_harness`.
set -euo pipefail

cd "$(dirname "$0")/.."

scripts/setup-moto.sh

# tests/deploy_units.rs checks deploy/systemd/stacksetd.service with systemd-analyze (Debian package systemd).
# Installed only when missing; it needs root (or password-less sudo), otherwise the script stops and says so.
if ! command -v systemd-analyze >/dev/null 2>&1; then
    install_systemd=(sh -c 'apt-get update && apt-get install -y --no-install-recommends systemd')
    if [[ "$(id -u)" -eq 0 ]]; then
        "${install_systemd[@]}"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "${install_systemd[@]}"
    else
        echo "error: systemd-analyze is missing and installing it needs root; run as root:" >&2
        echo "  apt-get update && apt-get install -y --no-install-recommends systemd" >&2
        exit 1
    fi
    command -v systemd-analyze >/dev/null 2>&1 || {
        echo "error: systemd-analyze is still missing after installing Debian's systemd package" >&2
        exit 1
    }
fi
# tests/monitoring.rs checks deploy/prometheus with promtool (Debian package prometheus; its server is not used).
# Installed only when missing, like systemd-analyze above: root (or password-less sudo), otherwise the script stops.
if ! command -v promtool >/dev/null 2>&1; then
    install_prometheus=(sh -c 'apt-get update && apt-get install -y --no-install-recommends prometheus')
    if [[ "$(id -u)" -eq 0 ]]; then
        "${install_prometheus[@]}"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "${install_prometheus[@]}"
    else
        echo "error: promtool is missing and installing it needs root; run as root:" >&2
        echo "  apt-get update && apt-get install -y --no-install-recommends prometheus" >&2
        exit 1
    fi
    command -v promtool >/dev/null 2>&1 || {
        echo "error: promtool is still missing after installing Debian's prometheus package" >&2
        exit 1
    }
fi
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
