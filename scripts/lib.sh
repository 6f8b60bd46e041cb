#!/usr/bin/env bash
# Shared by the scripts in this folder; sourced, not run.

# Closes every fd above 2 that child processes would inherit (those without close-on-exec): an fd
# the calling script was handed (a pipe of a CI runner or an editor, say) would otherwise be
# inherited by the processes stasis checkpoints, and stasis refuses pipes it cannot see both ends of.
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
