#!/usr/bin/env bash
# Builds stasis and stasis-bench (release) and runs the benchmark; arguments go to stasis-bench:
#
#   sudo ./scripts/bench.sh                      # 5 rounds of 1 GiB in /var/tmp/stasis-bench, a table
#   sudo ./scripts/bench.sh --rounds 3 --json    # for machines
#   ./scripts/bench.sh --limits-only             # only the dd write and read limits (no root needed)
#   sudo ./scripts/bench.sh --build-criu /var/tmp/criu   # CRIU 4.2 built there (once) and measured beside
#   ./scripts/bench.sh --help
#
# CRIU is measured where `criu` on PATH passes `criu check`, or the one given with --criu PATH;
# --build-criu DIR (opt-in) builds CRIU 4.2 from its source first (scripts/build-criu.sh). Without
# any, the report says that CRIU is not measured and why.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
close_inherited_fds

needs_root=1
build_criu=
args=()
while (($#)); do
    case $1 in
    --build-criu)
        build_criu=${2:?--build-criu needs a directory}
        shift 2
        continue
        ;;
    --limits-only | --help | -h | --version | -V) needs_root=0 ;;
    esac
    args+=("$1")
    shift
done
set -- "${args[@]+"${args[@]}"}"


if [[ $(id -u) -eq 0 ]]; then
    # Status to stderr: stdout is the report (JSON with --json).
    "$repo/scripts/setup.sh" >&2
elif ((needs_root)); then
    echo "scripts/bench.sh must run as root to checkpoint and restore (or pass --limits-only): sudo $0 $*" >&2
    exit 1
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

if [[ -n $build_criu ]]; then
    criu=$("$repo/scripts/build-criu.sh" "$build_criu" | tail -1)
    set -- --criu "$criu" "$@"
fi

cargo build --release -p stasis-cli -p stasis-bench
exec "$repo/target/release/stasis-bench" "$@"
