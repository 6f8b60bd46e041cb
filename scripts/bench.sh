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

# Closes every fd above 2 that child processes would inherit (those without close-on-exec): an fd
# this script was handed (a pipe of a CI runner or an editor, say) would otherwise be inherited by
# the processes stasis checkpoints, and stasis does not checkpoint pipes yet.
close_inherited_fds() {
    local path fd flags
    for path in "/proc/$$/fdinfo/"*; do
        fd=${path##*/}
        ((fd > 2)) || continue
        flags=$(awk '/^flags:/ {print $2}' "$path" 2>/dev/null) || continue
        [[ -n $flags ]] || continue
        # O_CLOEXEC is 02000000 (octal).
        if (((8#$flags & 8#2000000) == 0)); then
            exec {fd}>&-
        fi
    done
}
close_inherited_fds

needs_root=1
for arg in "$@"; do
    case $arg in
    --limits-only | --help | -h | --version | -V) needs_root=0 ;;
    esac
done

if [[ $(id -u) -eq 0 ]]; then
    "$repo/scripts/setup.sh"
elif ((needs_root)); then
    echo "scripts/bench.sh must run as root to checkpoint and restore (or pass --limits-only): sudo $0 $*" >&2
    exit 1
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

cargo build --release -p stasis-cli -p stasis-bench
exec "$repo/target/release/stasis-bench" "$@"
