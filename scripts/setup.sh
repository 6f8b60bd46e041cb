#!/usr/bin/env bash
# Installs what building and testing stasis needs on a Debian 12 machine. Run as root. Idempotent:
# when everything is already there it touches no network and takes well under a second.
#
#   Debian packages: build-essential and gcc (C workloads, linking, and the libzstd that the zstd
#                    crate vendors and builds with cc, for --compress), libc6-dev (static test
#                    workloads), pkg-config, tmux and screen (terminal tests and demos), util-linux
#                    (setsid, nsenter), bsdutils (script), iproute2 (ip), shellcheck (scripts/test.sh
#                    lints the scripts), nftables (nft: the network lock of TCP connections), iptables
#                    (iptables-restore: the lock of --network-lock iptables),
#                    runc and busybox-static (the runc test of `stasis swrk`: a busybox container),
#                    and the real programs tests/tests/programs.rs checkpoints: python3 (CPython),
#                    nodejs (Node.js), openjdk-17-jre-headless (OpenJDK; its java runs a source
#                    file), postgresql (PostgreSQL: initdb, postgres, psql and the postgres user)
#   Rust:            the toolchain pinned in rust-toolchain.toml, with clippy and rustfmt; rustup is
#                    installed from sh.rustup.rs only if cargo is missing.
#   cargo-nextest:   used by scripts/test.sh when present; `cargo test` otherwise.
set -euo pipefail

die() { echo "setup.sh: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run me as root (apt-get and the tests need it): sudo $0"
[[ -r /etc/debian_version ]] || die "this script knows Debian (12) only; install the same packages by hand"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(build-essential gcc libc6-dev pkg-config tmux screen util-linux bsdutils iproute2 shellcheck nftables iptables
    runc podman busybox-static python3 nodejs openjdk-17-jre-headless postgresql)

installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

install_debian_packages() {
    local missing=() p
    for p in "$@"; do
        installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        return
    fi
    echo "setup.sh: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The toolchain channel pinned in rust-toolchain.toml.
pinned_toolchain() {
    sed -n 's/^channel *= *"\(.*\)"/\1/p' "$repo/rust-toolchain.toml"
}

install_rust() {
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    if ! command -v cargo >/dev/null; then
        install_debian_packages curl ca-certificates
        echo "setup.sh: cargo is missing: installing rustup"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y --profile minimal --default-toolchain none
    fi
    local channel toolchains=""
    channel=$(pinned_toolchain)
    if command -v rustup >/dev/null; then
        toolchains=$(rustup toolchain list 2>/dev/null || true)
    fi
    if command -v rustup >/dev/null && [[ $'\n'$toolchains != *$'\n'"$channel"* ]]; then
        echo "setup.sh: installing Rust $channel"
        rustup toolchain install "$channel" --profile minimal --component clippy,rustfmt
    fi
    (cd "$repo" && cargo --version >/dev/null) || die "cargo does not run in $repo"
    if ! (cd "$repo" && cargo clippy --version >/dev/null 2>&1 && cargo fmt --version >/dev/null 2>&1); then
        command -v rustup >/dev/null || die "clippy or rustfmt is missing and there is no rustup to add them"
        (cd "$repo" && rustup component add clippy rustfmt)
    fi
}

install_debian_packages "${packages[@]}"
install_rust

nextest="no (scripts/test.sh falls back to cargo test)"
if (cd "$repo" && cargo nextest --version >/dev/null 2>&1); then
    nextest=yes
fi
echo "setup.sh: ready: $(cd "$repo" && cargo --version), kernel $(uname -r), cargo-nextest: $nextest"
