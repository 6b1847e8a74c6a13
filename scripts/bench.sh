#!/usr/bin/env bash
# The one benchmark command (the "Prove it" harness, benches/scale.rs): the release build of stacksetd against moto
# (`stacksetd run` as a process, with benches/boto3_baseline.py as the side-by-side baseline) and the controller in
# process against `sim`, for organizations of each size x Region count. Prints a table and writes it to
# target/bench-report.md. Not part of the test suite (it is slow); it compiles with `cargo test --all-targets`.
#
#   scripts/bench.sh                                   # sizes 100,1000,5000 x Regions 1,3 x targets sim,moto
#   scripts/bench.sh --sizes 100,1000 --regions 1 --targets moto
#
#   scripts/bench.sh --targets fleet                  # 1,000 deployments x 100 accounts in one daemon (sim)
#   scripts/bench.sh --sizes 1000 --regions 3 --targets sim,events   # calls per converged pass with and without
#                                                     # the event queue; event -> pass latency (benches/scale/events.rs)
#
# Options: --sizes N,N,...  --regions 1,3 (1 to 3)  --targets sim,moto,events,fleet  --sim-passes N  --moto-passes N
# (fleet: BENCH_DEPLOYMENTS, BENCH_ACCOUNTS, BENCH_HOURS in the environment; defaults 1000, 100, 1)
set -euo pipefail

cd "$(dirname "$0")/.."

sizes=100,1000,5000
regions=1,3
targets=sim,moto
while [[ $# -gt 0 ]]; do
    case "$1" in
        --sizes) sizes="$2"; shift 2 ;;
        --sizes=*) sizes="${1#*=}"; shift ;;
        --regions) regions="$2"; shift 2 ;;
        --regions=*) regions="${1#*=}"; shift ;;
        --targets) targets="$2"; shift 2 ;;
        --targets=*) targets="${1#*=}"; shift ;;
        --sim-passes) export BENCH_SIM_PASSES="$2"; shift 2 ;;
        --moto-passes) export BENCH_MOTO_PASSES="$2"; shift 2 ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ ",$targets," == *",moto,"* ]]; then
    scripts/setup-moto.sh
fi
STACKSETD_TEST_PYTHON="$(pwd)/.venv/bin/python"
export STACKSETD_TEST_PYTHON BENCH_SIZES="$sizes" BENCH_REGIONS="$regions" BENCH_TARGETS="$targets"

echo "bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB" >&2
# `cargo bench` builds with the bench profile, which is the release profile: the binary measured is the release one.
# The guard first (seconds; target/bench-guard.md), then the fleet (many deployments in one daemon;
# target/bench-fleet.md) when asked, then the organization scale benchmark for sim and moto.
cargo bench --bench guard
if [[ ",$targets," == *",fleet,"* ]]; then
    cargo bench --bench fleet
fi
scale_targets="$(tr ',' '\n' <<<"$targets" | grep -v '^fleet$' | paste -sd, -)"
if [[ -n "$scale_targets" ]]; then
    export BENCH_TARGETS="$scale_targets"
    exec cargo bench --bench scale
fi
