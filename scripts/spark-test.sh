#!/usr/bin/env bash
# Spark integration tests: builds the plugin jar, starts two sluice-server processes,
# runs pyspark in local-cluster[2,1,1024] and compares every job's result under Sluice
# with the same job under Spark's sort shuffle (jni/tests/spark_jobs.py).
#
#   SLUICE_SPARK_VERSIONS="3.5.9 4.3.0" (default): the pyspark releases tested, one after
#   the other; each is installed into a cached venv on first use.
#   SLUICE_SPARK_VERSION=4.1.4: test this one release only.
#   SLUICE_SPARK_JOBS=name,name: run only these jobs.
#   SLUICE_SPARK_REFERENCE_DIR: sort-shuffle results shared between versions (set by
#   the loop over versions; see --reference-dir in spark_jobs.py).
#   SLUICE_SPARK_NETNS=0|1: servers in a network namespace of their own, reached over a
#   veth pair (see spark-env.sh). Default: 1 for the last version when root, else 0.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SLUICE_SPARK_VERSION:-}" ]; then
  # The first version's sort-shuffle results are the later versions' reference (a result
  # that differs is checked against that version's own sort shuffle): one sort phase.
  SLUICE_SPARK_REFERENCE_DIR="$(mktemp -d)"
  export SLUICE_SPARK_REFERENCE_DIR
  trap 'rm -rf "$SLUICE_SPARK_REFERENCE_DIR"' EXIT
  read -r -a versions <<< "${SLUICE_SPARK_VERSIONS:-3.5.9 4.3.0}"
  for version in "${versions[@]}"; do
    netns="${SLUICE_SPARK_NETNS:-}"
    if [ -z "$netns" ]; then
      # One version's whole suite, the server kills included, over a real device.
      netns=0
      if [ "$(id -u)" -eq 0 ] && [ "$version" = "${versions[-1]}" ]; then netns=1; fi
    fi
    printf '\n==> Spark %s%s\n' "$version" "$([ "$netns" = 1 ] && echo ', servers in their own network namespace')"
    SLUICE_SPARK_VERSION="$version" SLUICE_SPARK_NETNS="$netns" "$0"
  done
  exit 0
fi
source scripts/spark-env.sh

options=()
if [ -n "${SLUICE_SPARK_JOBS:-}" ]; then options=(--jobs "$SLUICE_SPARK_JOBS"); fi
if [ -n "${SLUICE_SPARK_REFERENCE_DIR:-}" ]; then
  options+=(--reference-dir "$SLUICE_SPARK_REFERENCE_DIR")
fi
status=0
timeout 1500 "${in_client[@]}" "$venv/bin/python" jni/tests/spark_jobs.py \
  "${cluster_args[@]}" \
  --kill-pid-file "$work/b/pid" --restart-cmd "$work/b/restart" \
  "${options[@]}" || status=$?
if [ "$status" -ne 0 ]; then server_logs; fi
exit "$status"
