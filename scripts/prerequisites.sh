#!/usr/bin/env bash
# Checks what the test command needs besides a Rust toolchain: a JDK 17+ with javac,
# jar and javap (the Spark plugin is compiled against pyspark's jars), Python 3 with
# venv (pyspark is installed into a venv), and strip. As root on Debian or Ubuntu it
# installs what is missing with apt; otherwise it stops at once, naming what is missing
# and how to get it.
set -euo pipefail

missing=()
packages=()

java_major() {
  javac -version 2>&1 | sed -n 's/^javac \([0-9]*\).*/\1/p'
}
if ! command -v javac >/dev/null || ! command -v jar >/dev/null || ! command -v javap >/dev/null; then
  missing+=("a JDK 17 or newer (javac, jar, javap)")
  packages+=(default-jdk-headless)
elif [ "$(java_major)" -lt 17 ] 2>/dev/null || [ -z "$(java_major)" ]; then
  missing+=("a JDK 17 or newer (javac is $(javac -version 2>&1))")
  packages+=(default-jdk-headless)
fi
if ! command -v python3 >/dev/null; then
  missing+=("Python 3 with venv")
  packages+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=("Python 3's venv module")
  packages+=(python3-venv)
fi
if ! command -v strip >/dev/null; then
  missing+=("strip (binutils)")
  packages+=(binutils)
fi

# As root, the network-path tests (shuffle-server/tests/netpath.rs) put the server in
# a network namespace of its own: they need ip and tc (iproute2) and nft (nftables).
# Without root they are skipped, so these are only needed (and installed) as root.
if [ "$(id -u)" -eq 0 ]; then
  for tool in ip:iproute2 tc:iproute2 nft:nftables; do
    if ! PATH="$PATH:/usr/sbin:/sbin" command -v "${tool%%:*}" >/dev/null; then
      missing+=("${tool%%:*} (${tool##*:}, for the network-namespace tests)")
      packages+=("${tool##*:}")
    fi
  done
fi

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null && [ -z "${SLUICE_APT_TRIED:-}" ]; then
  echo "installing ${packages[*]} (missing: $(IFS=';'; echo "${missing[*]}"))"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
  SLUICE_APT_TRIED=1 exec "$0"  # check again: an old release's default JDK may be too old
fi

{
  echo "The test command needs, besides a Rust toolchain:"
  for m in "${missing[@]}"; do echo "  - missing: $m"; done
  echo "On Debian or Ubuntu: sudo apt-get install ${packages[*]}"
  echo "Elsewhere: install a JDK 17+ (e.g. from https://adoptium.net) with javac on PATH,"
  echo "and Python 3 with its venv module."
} >&2
exit 1
