#!/usr/bin/env bash
# Builds stasis and stasis-bench (release) and runs the benchmark; arguments go to stasis-bench:
#
#   sudo ./scripts/bench.sh                      # 5 rounds of 1 GiB in /var/tmp/stasis-bench, a table
#   sudo ./scripts/bench.sh --rounds 3 --json    # for machines
#   ./scripts/bench.sh --limits-only             # only the dd write and read limits (no root needed)
#   ./scripts/bench.sh --help
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
close_inherited_fds

needs_root=1
for arg in "$@"; do
    case $arg in
    --limits-only | --help | -h | --version | -V) needs_root=0 ;;
    esac
done

if [[ $(id -u) -eq 0 ]]; then
    # Status to stderr: stdout is the report (JSON with --json).
    "$repo/scripts/setup.sh" >&2
elif ((needs_root)); then
    echo "scripts/bench.sh must run as root to checkpoint and restore (or pass --limits-only): sudo $0 $*" >&2
    exit 1
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

cargo build --release -p stasis-cli -p stasis-bench
exec "$repo/target/release/stasis-bench" "$@"
