#!/usr/bin/env bash
# The Spark benchmark behind `sluice-bench --mode spark`: workloads
# (bench/spark/spark_bench.py) under Spark's sort shuffle and under Sluice, alternating.
# Arguments go to spark_bench.py (--workloads, --rows, --wide-rows, --runs, --json PATH,
# --modes sort,sluice to run only one of the two);
# with the tpch workload, the TPC-H data is generated first (scripts/tpch-data.sh, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

extra=()
if [[ " $* " == *tpch* ]]; then
  extra+=(--tpch-dir "$(scripts/tpch-data.sh 1)" --tpch-scale 1)
fi
source scripts/spark-env.sh

status=0
timeout 14400 "${in_client[@]}" "$venv/bin/python" bench/spark/spark_bench.py \
  "${cluster_args[@]}" \
  --server-pid-files "$work/a/pid,$work/b/pid" \
  --spark-version "$version" \
  "${extra[@]}" \
  "$@" || status=$?
if [ "$status" -ne 0 ]; then server_logs; fi
exit "$status"
