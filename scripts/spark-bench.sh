#!/usr/bin/env bash
# The Spark benchmark behind `sluice-bench --mode spark`: one shuffle-heavy job
# (bench/spark/spark_bench.py) under Spark's sort shuffle and under Sluice, alternating.
# Arguments go to spark_bench.py (--rows, --runs, --json PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/spark-env.sh

status=0
timeout 3600 "${in_client[@]}" "$venv/bin/python" bench/spark/spark_bench.py \
  "${cluster_args[@]}" \
  --spark-version "$version" \
  "$@" || status=$?
if [ "$status" -ne 0 ]; then server_logs; fi
exit "$status"
