#!/usr/bin/env bash
# The one test command: sets up moto (pinned, in ./.venv) and runs the whole suite, end-to-end tests included.
# Extra arguments go to cargo test, e.g. `scripts/test.sh --test moto_harness`.
set -euo pipefail

cd "$(dirname "$0")/.."

scripts/setup-moto.sh
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
