#!/usr/bin/env bash
# THE test command: everything CI runs, in the order that fails fastest.
#
#   1. scripts/setup.sh        (Debian packages and the pinned Rust toolchain; fast when present)
#   2. shell scripts           (bash -n, and shellcheck when installed)
#   3. cargo fmt --check
#   4. cargo clippy --all-targets -- -D warnings
#   5. cargo build --workspace --release --bins   (the end-to-end tests run target/release/stasis)
#   6. doctests, then the whole suite in release: cargo nextest (cargo test when nextest is missing);
#      the last line is the suite's totals, "tests: N passed, N failed, N skipped"
#
# Must run as root: the end-to-end tests ptrace, checkpoint and restore real processes.
# STASIS_TEST_THREADS sets the number of tests run at once (default 2, for a 2-core machine).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/test.sh must run as root (the tests ptrace, checkpoint and restore processes): sudo $0" >&2
    exit 1
fi

# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
close_inherited_fds

threads=${STASIS_TEST_THREADS:-2}
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

start_all=$SECONDS
step() {
    local name=$1 start=$SECONDS
    shift
    echo "=== $name"
    if ! "$@"; then
        echo "=== FAILED: $name ($((SECONDS - start)) s)" >&2
        exit 1
    fi
    echo "=== ok: $name ($((SECONDS - start)) s)"
}

# Steps run inside `if`, where set -e is off: each function returns its failures explicitly.
check_scripts() {
    local scripts=(scripts/*.sh .ci/run) s status=0
    for s in "${scripts[@]}"; do
        bash -n "$s" || status=1
    done
    if command -v shellcheck >/dev/null; then
        shellcheck "${scripts[@]}" || status=1
    else
        echo "shellcheck is not installed: only bash -n was run"
    fi
    return "$status"
}

suite_log="$repo/target/test-suite.log"
# Each test that skips itself appends "<binary>\t<test>\t<reason>" here (tests/src/harness, skip);
# suite_totals counts those tests as skipped, not passed.
export STASIS_SKIPPED_FILE="$repo/target/test-skipped.txt"

run_suite() {
    local status=0
    mkdir -p "$repo/target"
    : >"$STASIS_SKIPPED_FILE"
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --release --test-threads "$threads" --no-fail-fast 2>&1 |
            tee "$suite_log" || status=$?
    else
        echo "cargo-nextest is not installed: running cargo test"
        cargo test --workspace --release --no-fail-fast -- --test-threads "$threads" 2>&1 |
            tee "$suite_log" || status=$?
    fi
    suite_totals
    return "$status"
}

# Prints the suite's totals as one plain line, "tests: N passed, N failed, N skipped", from
# nextest's Summary line or the sum of cargo test's "test result:" lines; the tests that skipped
# themselves (listed in $STASIS_SKIPPED_FILE, printed first) move from passed to skipped unless
# they failed.
suite_totals() {
    awk -v skipfile="$STASIS_SKIPPED_FILE" '
        function count(word,   m) {
            return match($0, "[0-9]+ " word) ? substr($0, RSTART, RLENGTH) + 0 : 0
        }
        BEGIN {
            while ((getline line < skipfile) > 0) {
                split(line, field, "\t")
                key = field[1] " " field[2]
                if (!(key in reason)) { reason[key] = field[3]; test_of[key] = field[2] }
            }
        }
        /Summary .* tests run:/ { nextest = 1; p = count("passed"); f = count("failed"); s = count("skipped") }
        /^test result:/ && !nextest { p += count("passed"); f += count("failed"); s += count("ignored") }
        /^test .* \.\.\. FAILED$/ { failed[$2] = 1 }
        /^ *(FAIL|SIGSEGV|SIGABRT|TIMEOUT) \[/ { failed[$NF] = 1 }
        END {
            for (key in reason) {
                if (test_of[key] in failed) continue
                printf "skipped: %s: %s\n", key, reason[key]
                p--; s++
            }
            printf "tests: %d passed, %d failed, %d skipped\n", p, f, s
        }
    ' "$suite_log"
}

step "setup" "$repo/scripts/setup.sh"
step "shell scripts" check_scripts
step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo build --release" cargo build --workspace --release --bins
step "doctests" cargo test --workspace --release --doc
step "tests" run_suite
echo "=== all passed in $((SECONDS - start_all)) s"
suite_totals
