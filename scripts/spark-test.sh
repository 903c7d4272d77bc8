#!/usr/bin/env bash
# Spark integration tests: builds the plugin jar, starts two sluice-server processes,
# runs pyspark in local-cluster[2,1,1024] and compares every job's result under Sluice
# with the same job under Spark's sort shuffle (jni/tests/spark_jobs.py).
#
#   SLUICE_SPARK_VERSION=3.5.9 (default) or 4.1.4, 4.3.0: the pyspark release used; it is
#   installed into a cached venv on first use.
#   SLUICE_SPARK_JOBS=name,name: run only these jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/spark-env.sh

jobs=()
if [ -n "${SLUICE_SPARK_JOBS:-}" ]; then jobs=(--jobs "$SLUICE_SPARK_JOBS"); fi
status=0
timeout 1500 "$venv/bin/python" jni/tests/spark_jobs.py \
  "${cluster_args[@]}" \
  --kill-pid-file "$work/b/pid" \
  "${jobs[@]}" || status=$?
if [ "$status" -ne 0 ]; then server_logs; fi
exit "$status"
