#!/usr/bin/env bash
# Run one fuzz target of fuzz/ for a while.
#
#   scripts/fuzz.sh [TARGET] [SECONDS]     (defaults: decode_records 60)
#
# Targets: decode_records, pagemap_validate, tree_plan, wire_frames (see fuzz/fuzz_targets/). Installs cargo-fuzz if it is
# missing. cargo-fuzz passes -Z flags (sanitizers), which need a nightly compiler; the machines have
# only the pinned stable toolchain, so RUSTC_BOOTSTRAP=1 lets it accept them. Exits non-zero when the
# fuzzer finds a crash; the input is left in fuzz/artifacts/TARGET/.
set -euo pipefail

target=${1:-decode_records}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)

if ! cargo fuzz --version >/dev/null 2>&1; then
    (cd "$root" && cargo install cargo-fuzz --locked)
fi

cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run "$target" -- -max_total_time="$seconds"
