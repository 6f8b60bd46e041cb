#!/usr/bin/env bash
# Builds CRIU 4.2, the peer the benchmark measures stasis against, from its source (Debian's criu is
# too old for this kernel). Opt-in: scripts/bench.sh --build-criu DIR runs it. As root on Debian 12:
# installs CRIU's build packages with apt, then builds DIR/criu-4.2/criu/criu (nothing if it is there)
# and prints its path on the last line.
#
#   scripts/build-criu.sh DIR                 # source from CRIU_SRC (a criu-4.2 .tar.xz/.tar.gz) or GitHub
#
# CRIU is GPL-2.0 and a separate program: it runs beside stasis; none of its code is in this project.
set -euo pipefail
out=${1:?usage: scripts/build-criu.sh DIR}
url=https://github.com/checkpoint-restore/criu/archive/refs/tags/v4.2.tar.gz
bin="$out/criu-4.2/criu/criu"
mkdir -p "$out"
if [[ ! -x $bin ]]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends build-essential pkg-config libprotobuf-dev libprotobuf-c-dev \
        protobuf-c-compiler protobuf-compiler python3-protobuf libnl-3-dev libnl-route-3-dev libnet1-dev libcap-dev \
        libaio-dev libbsd-dev libdrm-dev libelf-dev libgnutls28-dev libnftables-dev libselinux1-dev uuid-dev \
        iproute2 iptables kmod curl ca-certificates xz-utils >/dev/null
    src=${CRIU_SRC:-}
    if [[ -z $src ]]; then
        src="$out/criu-4.2.tar.gz"
        echo "downloading $url" >&2
        curl -fsSL -o "$src" "$url"
    fi
    tar -xf "$src" -C "$out"
    [[ -d $out/criu-4.2 ]] || { echo "$src holds no criu-4.2 directory" >&2; exit 1; }
    echo "building CRIU 4.2 in $out/criu-4.2 (log: $out/criu-build.log)" >&2
    make -C "$out/criu-4.2" -j"$(nproc)" criu >"$out/criu-build.log" 2>&1 || { tail -20 "$out/criu-build.log" >&2; exit 1; }
fi
"$bin" --version | head -1 >&2
echo "$bin"
