#!/usr/bin/env bash
# Spark integration tests: builds the plugin jar, starts two sluice-server processes,
# runs pyspark in local-cluster[2,1,1024] and compares every job's result under Sluice
# with the same job under Spark's sort shuffle (jni/tests/spark_jobs.py).
#
#   SLUICE_SPARK_VERSIONS="3.5.9 4.3.0" (default): the pyspark releases tested, one after
#   the other; each is installed into a cached venv on first use.
#   SLUICE_SPARK_VERSION=4.1.4: test this one release only.
#   SLUICE_SPARK_JOBS=name,name: run only these jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SLUICE_SPARK_VERSION:-}" ]; then
  for version in ${SLUICE_SPARK_VERSIONS:-3.5.9 4.3.0}; do
    printf '\n==> Spark %s\n' "$version"
    SLUICE_SPARK_VERSION="$version" "$0"
  done
  exit 0
fi
source scripts/spark-env.sh

jobs=()
if [ -n "${SLUICE_SPARK_JOBS:-}" ]; then jobs=(--jobs "$SLUICE_SPARK_JOBS"); fi
status=0
timeout 1500 "$venv/bin/python" jni/tests/spark_jobs.py \
  "${cluster_args[@]}" \
  --kill-pid-file "$work/b/pid" --restart-cmd "$work/b/restart" \
  "${jobs[@]}" || status=$?
if [ "$status" -ne 0 ]; then server_logs; fi
exit "$status"
