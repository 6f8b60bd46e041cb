#!/usr/bin/env bash
# The tmux demo: a tmux server with two windows (an interactive bash with a variable and a history,
# and a counter) is checkpointed with its whole tree, which kills it, then restored; tmux's own
# client then shows both windows with their scrollback, the shell's variable and history, and the
# counter going on from where it was.
#
#   sudo ./scripts/demo-tmux.sh             # then attach yourself: tmux -S /tmp/stasis-tmux/sock attach
#
# Works in /tmp/stasis-tmux; exits non-zero if a step fails or what tmux shows after the restore is
# not what it showed before. The restored server is left running for you to attach to.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/demo-tmux.sh must run as root (stasis uses ptrace and clone3 with set_tid): sudo $0" >&2
    exit 1
fi

# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
close_inherited_fds

work=/tmp/stasis-tmux
sock=$work/sock
img=$work/img
stasis=$repo/target/release/stasis

bold="" plain=""
if [[ -t 1 ]]; then
    bold=$'\033[1m' plain=$'\033[0m'
fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
fail() {
    echo "demo FAILED: $*" >&2
    exit 1
}
t() { tmux -S "$sock" -f /dev/null "$@" </dev/null; }

# Waits up to 10 s until the pane of $1 contains the fixed string $2.
wait_pane() {
    local i
    for ((i = 0; i < 100; i++)); do
        t capture-pane -p -J -S - -t "$1" | grep -qF -- "$2" && return 0
        sleep 0.1
    done
    fail "pane $1 does not show '$2': $(t capture-pane -p -t "$1")"
}

last_count() { t capture-pane -p -J -S - -t demo:1 | awk '/^count /{n = $2} END {print n}'; }

"$repo/scripts/setup.sh"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
command -v tmux >/dev/null || fail "tmux is not installed"

say "building stasis (release)"
cargo build --release -p stasis-cli || fail "the build failed"

t kill-server 2>/dev/null || true
rm -rf "$work"
mkdir -p "$work"

say "a tmux server with two windows"
t new-session -d -s demo -x 100 -y 30 "env PS1='\$ ' HISTFILE=/dev/null bash --norc --noprofile -i"
# shellcheck disable=SC2016 # expanded by the window's shell, not here
t new-window -t demo -n counter 'i=0; while :; do i=$((i+1)); echo "count $i"; sleep 0.5; done'
wait_pane demo:0 '$'
t send-keys -t demo:0 'export DEMO_VAR=hello-stasis' Enter
t send-keys -t demo:0 'echo before-the-checkpoint' Enter
wait_pane demo:0 'before-the-checkpoint'
sleep 2
server=$(t display-message -p -t demo '#{pid}')
echo "tmux server pid $server; its tree:"
ps -o pid,ppid,pgid,sid,tty,stat,args --forest -g "$(ps -o sid= -p "$server" | tr -d ' ')"
echo "--- window 0 (bash) ---"
t capture-pane -p -t demo:0 | sed '/^$/d'
echo "--- window 1 (counter), last lines ---"
t capture-pane -p -t demo:1 | sed '/^$/d' | tail -3
sleep 1 # let the server drop the fds of the clients above

say "stasis dump -t $server -D $img"
"$stasis" dump -t "$server" -D "$img" || fail "stasis dump failed"
for ((i = 0; i < 50; i++)); do
    [[ -e /proc/$server ]] || break
    sleep 0.1
done
t list-sessions 2>/dev/null && fail "the server still answers after the dump"
echo "the server and its windows are gone (tmux: no server running on $sock)"

say "stasis restore -D $img -d"
"$stasis" restore -D "$img" -d || fail "stasis restore failed"

say "tmux again"
t list-windows -t demo
echo "--- window 0: the scrollback, then a new command using the variable, and the history ---"
# shellcheck disable=SC2016 # expanded by the shell in the window
t send-keys -t demo:0 'echo "DEMO_VAR is $DEMO_VAR"' Enter
wait_pane demo:0 'DEMO_VAR is hello-stasis'
t send-keys -t demo:0 'history' Enter
wait_pane demo:0 'export DEMO_VAR=hello-stasis'
sleep 0.3
t capture-pane -p -J -S - -t demo:0 | sed '/^$/d'
echo "--- window 1: the counter goes on ---"
before=$(last_count)
sleep 2
after=$(last_count)
t capture-pane -p -J -S - -t demo:1 | sed '/^$/d' | tail -6
((after > before)) || fail "the counter did not go on after the restore ($before, then $after)"
counts=$(t capture-pane -p -J -S - -t demo:1 | awk '/^count /{print $2}')
awk 'NR > 1 && $1 != prev + 1 {exit 1} {prev = $1}' <<<"$counts" ||
    fail "the counter's output is not consecutive across the restore"

say "done: attach with  tmux -S $sock attach   (the restored server keeps running)"
