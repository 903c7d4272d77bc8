#!/usr/bin/env bash
# TPC-H data for the Spark benchmark, generated once and cached outside git:
#   scripts/tpch-data.sh [SCALE]   (default 1) -> prints the directory of the Parquet tables.
# Installs `tpchgen-cli` (a TPC-H dbgen port, from crates.io) into the cache if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${1:-1}"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
tools="$cache/tools"
tpchgen_version=4.0.0
dir="$cache/tpch/sf$scale"

if [ ! -x "$tools/bin/tpchgen-cli" ]; then
  echo "installing tpchgen-cli $tpchgen_version into $tools" >&2
  cargo install --quiet --locked --root "$tools" --version "$tpchgen_version" tpchgen-cli >&2
fi
if [ ! -f "$dir/done" ]; then
  echo "generating TPC-H scale factor $scale into $dir" >&2
  rm -rf "$dir"
  mkdir -p "$dir"
  "$tools/bin/tpchgen-cli" parquet --scale-factor "$scale" --output-dir "$dir" >&2
  touch "$dir/done"
fi
echo "$dir"
