#!/usr/bin/env python3
"""Generate test vectors for Spark SQL's range partitioning, as computed by a real Spark.

`df.repartitionByRange(P, *sort_orders)` sends a row to partition i when its key is
greater than bounds[0..i) and at most bounds[i], in the sort orders' ordering
(ascending/descending, nulls first/last per column). The bounds are sampled keys, so
each is the greatest key of its partition; this script recovers them with
`sortWithinPartitions` and writes, per case and ordering, the bounds (as row indices)
and Spark's partition id of every row to splitter/tests/data/spark_range_vectors.json.

The cases (types, values, nulls, edge values such as NaN, -0.0, extreme dates, non-ASCII
strings) are the ones of gen_spark_hash_vectors.py, in the same value encoding. Run it
with a Python that has pyspark, e.g.

    timeout 900 ~/.cache/sluice/venv-spark-3.5/bin/python scripts/gen_spark_range_vectors.py
"""

import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(os.path.dirname(HERE), "splitter", "tests", "data",
                              "spark_range_vectors.json")
NUM_PARTITIONS = [3, 16]
# (descending, nulls_first) for every key column of a single-column case.
SINGLE_ORDERS = [(False, True), (False, False), (True, True), (True, False)]


def load_hash_script():
    spec = importlib.util.spec_from_file_location(
        "gen_spark_hash_vectors", os.path.join(HERE, "gen_spark_hash_vectors.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def orders_for(case):
    k = len(case["types"])
    if k == 1:
        return [[o] for o in SINGLE_ORDERS]
    # Multi-column keys: mixed directions, and their mirror image.
    mixed = [(i % 2 == 1, i % 3 != 1) for i in range(k)]
    return [mixed, [(not d, not n) for d, n in mixed]]


def sort_exprs(cols, order):
    from pyspark.sql import functions as F
    exprs = []
    for c, (desc, nulls_first) in zip(cols, order):
        col = F.col(c)
        if desc:
            exprs.append(col.desc_nulls_first() if nulls_first else col.desc_nulls_last())
        else:
            exprs.append(col.asc_nulls_first() if nulls_first else col.asc_nulls_last())
    return exprs


def range_vector(spark, hv, case, order, n):
    """Spark's partition id of every row, and the bounds as row indices."""
    from pyspark.sql import functions as F
    df, cols, _ = hv.make_dataframe(spark, case)
    exprs = sort_exprs(cols, order)
    rows = (df.repartitionByRange(n, *exprs)
              .sortWithinPartitions(*exprs)
              .select("idx", F.spark_partition_id().alias("pid"))
              .collect())
    assert len(rows) == len(case["rows"]), case["name"]
    pids = [None] * len(rows)
    last_of = {}
    for r in rows:  # partition by partition, each in key order
        pids[r["idx"]] = r["pid"]
        last_of[r["pid"]] = r["idx"]
    top = max(pids)
    missing = [p for p in range(top) if p not in last_of]
    assert not missing, (case["name"], order, n, "empty partitions before the last", missing)
    return {
        "keys": [{"column": j, "descending": d, "nulls_first": nf}
                 for j, (d, nf) in enumerate(order)],
        "num_partitions": n,
        "bounds": [last_of[p] for p in range(top)],
        "pids": pids,
    }


def write_json(path, version, cases):
    d = lambda x: json.dumps(x, ensure_ascii=False)  # noqa: E731
    lines = ["{", '  "spark_version": %s,' % d(version), '  "cases": [']
    for ci, case in enumerate(cases):
        lines.append("    {")
        lines.append('      "name": %s,' % d(case["name"]))
        lines.append('      "types": %s,' % d(case["types"]))
        lines.append('      "rows": [')
        lines += ["        %s%s" % (d(row), "," if ri + 1 < len(case["rows"]) else "")
                  for ri, row in enumerate(case["rows"])]
        lines.append("      ],")
        lines.append('      "partitionings": [')
        lines += ["        %s%s" % (d(v), "," if vi + 1 < len(case["ranges"]) else "")
                  for vi, v in enumerate(case["ranges"])]
        lines.append("      ]")
        lines.append("    }" + ("," if ci + 1 < len(cases) else ""))
    lines += ["  ]", "}"]
    text = "\n".join(lines) + "\n"
    json.loads(text)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUTPUT
    hv = load_hash_script()
    hv.prepare_environment()
    from pyspark.sql import SparkSession
    spark = (SparkSession.builder.master("local[2]").appName("sluice-range-vectors")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.adaptive.enabled", "false")
             .getOrCreate())
    cases = hv.build_cases()
    for case in cases:
        case["ranges"] = [range_vector(spark, hv, case, order, n)
                          for order in orders_for(case) for n in NUM_PARTITIONS]
        used = [max(v["pids"]) + 1 for v in case["ranges"]]
        print("  %s: %d rows, partitions used %s" % (case["name"], len(case["rows"]), used))
    write_json(out, spark.version, cases)
    print("wrote %s (Spark %s)" % (out, spark.version))
    spark.stop()


if __name__ == "__main__":
    main()
