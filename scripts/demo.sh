#!/usr/bin/env bash
# The stasis demo: checkpoint a running counter, which kills it, then restore it and watch it carry
# on from the next number, with the same pid and its 64 MiB of memory intact.
#
#   sudo ./scripts/demo.sh
#
# Works in /tmp/stasis-demo (the counter's log, the image); exits non-zero if any step fails or the
# restored counter does not continue from where it was checkpointed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/demo.sh must run as root (stasis uses ptrace and clone3 with set_tid): sudo $0" >&2
    exit 1
fi

# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
close_inherited_fds

work=/tmp/stasis-demo
img=$work/img
log=$work/counter.log
stasis=$repo/target/release/stasis
counter=$repo/target/release/stasis-sample-counter
pid=""

bold="" plain=""
if [[ -t 1 ]]; then
    bold=$'\033[1m' plain=$'\033[0m'
fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
exec 3>&2
fail() {
    echo "demo FAILED: $*" >&3
    exit 1
}

# Alive and not a zombie.
running() {
    [[ -r /proc/$1/stat ]] || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# Waits up to $2 tenths of a second until pid $1 is no longer running.
wait_dead() {
    local i
    for ((i = 0; i < $2; i++)); do
        running "$1" || return 0
        sleep 0.1
    done
    return 1
}

# The last counter value in the log.
last_counter() {
    awk '/^counter /{n = $2} END {print n}' "$log"
}

cleanup() {
    if [[ -n $pid ]] && running "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

"$repo/scripts/setup.sh"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

say "building stasis and the sample counter (release)"
cargo build --release -p stasis-cli -p stasis-samples || fail "the build failed"

rm -rf "$work"
mkdir -p "$work"

say "starting the sample counter"
"$counter" </dev/null >"$log" 2>&1 3>&- &
pid=$!
echo "stasis-sample-counter runs as pid $pid, printing to $log"
sleep 3
running "$pid" || fail "the counter exited early: $(cat "$log")"
cat "$log"

say "stasis dump -t $pid -D $img"
# Bash reports the killed job on its stderr: keep that notice out of the demo's output (fd 3 is
# the real stderr, for stasis and for fail).
{
    "$stasis" dump -t "$pid" -D "$img" 2>&3 || fail "stasis dump failed"
    wait_dead "$pid" 50 || fail "stasis dump returned but pid $pid still runs"
    wait "$pid" || true # reap it, so that its pid is free for the restore
} 2>/dev/null
lines=$(wc -l <"$log")
checkpointed=$(last_counter)
[[ -n $checkpointed ]] || fail "the counter printed nothing before the checkpoint"
echo "checkpointed after counter $checkpointed"

say "stasis show $img"
"$stasis" show "$img" >"$work/show.txt" || fail "stasis show failed"
# The summary, with the list of memory areas cut short and without the limits.
awk '
    /^  memory \(/ { print; mem = 1; n = 0; next }
    mem && /^  [a-z]/ { if (n > 6) print "    ... " n - 6 " more"; mem = 0 }
    mem { if (++n <= 6) print; next }
    /^  limits:/ { skip = 1; next }
    skip && /^    / { next }
    { skip = 0; print }
' "$work/show.txt"
echo "(all of it: $work/show.txt; every record as JSON: stasis show --json $img)"

say "the process is gone"
[[ ! -e /proc/$pid ]] || fail "pid $pid still exists after the dump"
echo "no /proc/$pid: pid $pid is gone"

say "stasis restore -D $img -d"
"$stasis" restore -D "$img" -d --pidfile "$work/restore.pid" || fail "stasis restore failed"
restored=$(cat "$work/restore.pid")
[[ $restored == "$pid" ]] || fail "restored as pid $restored, not $pid"
running "$pid" || fail "pid $pid is not running after the restore"
echo "pid $pid runs again: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
sleep 3

say "the counter's log"
sed -n "1,${lines}p" "$log"
echo "--- checkpointed at $checkpointed ---"
echo "--- restored, same pid $pid ---"
sed -n "$((lines + 1)),\$p" "$log"

resumed=$(sed -n "$((lines + 1)),\$p" "$log" | awk '/^counter /{print $2; exit}')
[[ -n $resumed ]] || fail "the restored counter printed nothing"
((resumed == checkpointed + 1)) || fail "the counter resumed at $resumed, not $((checkpointed + 1))"
if grep -q "memory MISMATCH" "$log"; then
    fail "the restored counter found its memory changed"
fi
running "$pid" || fail "the restored counter exited"

kill -KILL "$pid"
wait_dead "$pid" 50 || fail "pid $pid did not die"
pid=""
say "demo passed: the counter resumed at $resumed after the checkpoint at $checkpointed, same pid $restored, memory intact"
