#!/usr/bin/env python3
"""One shuffle-heavy Spark job under Spark's sort shuffle and under Sluice, alternating.

Run by scripts/spark-bench.sh (which `sluice-bench --mode spark` calls): it passes the
plugin jar, the servers, the token and the certificate. The job, on ``--rows`` rows of
lineitem-like data generated inside the executors' JVMs:

    groupBy(l_orderkey)  -- about rows/4 keys: almost no map-side combining
      .agg(count, sum(quantity), sum(extendedprice), max(shipdate), max(comment))
    .repartition(200)    -- a second full shuffle, of the aggregated rows
    -> count and an order-independent digest (sum of xxhash64 of every row)

Each run starts a fresh driver JVM on local-cluster[2,1,1024] (the shuffle manager is a
static conf), times the job alone (not the JVM start), and checks that the result equals
the first sort-shuffle run's. Runs alternate sort, sluice, sort, ... so that drift of the
machine hits both. Writes {"sort": [secs...], "sluice": [secs...], "rows": n,
"result": [...], "spark": version} to ``--json``.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JOBS_PATH = os.path.join(HERE, "..", "..", "jni", "tests", "spark_jobs.py")


def load_harness():
    """The session helpers of the Spark integration tests (same private SPARK_HOME,
    same way of restarting the driver JVM between shuffle managers)."""
    spec = importlib.util.spec_from_file_location("spark_jobs", JOBS_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lineitem(spark, rows):
    from pyspark.sql import functions as F

    def h(salt, mod):
        return F.pmod(F.xxhash64("id", F.lit(salt)), F.lit(mod))

    modes = F.array(*[F.lit(m) for m in ["AIR", "MAIL", "SHIP", "TRUCK", "RAIL", "FOB", "REG AIR"]])
    return spark.range(0, rows, numPartitions=8).select(
        h(1, max(rows // 4, 1)).alias("l_orderkey"),
        h(2, 200_000).alias("l_partkey"),
        (h(3, 5_000) / 100).cast("decimal(15,2)").alias("l_quantity"),
        (h(4, 10_000_000) / 100).cast("decimal(15,2)").alias("l_extendedprice"),
        F.date_add(F.lit("1992-01-01").cast("date"), h(5, 2_500).cast("int")).alias("l_shipdate"),
        F.element_at(modes, (h(6, 7) + 1).cast("int")).alias("l_shipmode"),
        F.concat(F.lit("carefully final deposits "), h(7, 100_000).cast("string")).alias("l_comment"),
    )


def job(spark, rows):
    from pyspark.sql import functions as F
    agg = lineitem(spark, rows).groupBy("l_orderkey").agg(
        F.count(F.lit(1)).alias("n"),
        F.sum("l_quantity").alias("qty"),
        F.sum("l_extendedprice").alias("price"),
        F.max("l_shipdate").alias("last_ship"),
        F.max("l_comment").alias("comment"),
    )
    out = agg.repartition(200)
    digest = F.xxhash64(*[F.col(c) for c in out.columns]).cast("decimal(38,0)")
    row = out.agg(F.count(F.lit(1)), F.sum(digest), F.sum("n")).collect()[0]
    return [int(row[0]), str(row[1]), int(row[2])]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jar", required=True)
    p.add_argument("--servers", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--trust-file", required=True)
    p.add_argument("--work-dir", required=True)
    p.add_argument("--spark-version", default="")
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", required=True)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    harness = load_harness()
    os.makedirs(args.work_dir, exist_ok=True)
    harness.setup_environment(args.work_dir)
    base = dict(harness.BASE_CONF)
    base.update({
        "spark.sql.shuffle.partitions": "200",
    })
    sluice = dict(base)
    sluice.update(harness.sluice_conf(args))
    times = {"sort": [], "sluice": []}
    reference = None
    for i in range(args.runs):
        for name, conf in (("sort", base), ("sluice", sluice)):
            spark = harness.start_session(conf, f"sluice-bench-{name}-{i}")
            try:
                # Warm the executors (JVM start, class loading) outside the timing.
                spark.range(0, 1000, numPartitions=2).count()
                start = time.monotonic()
                result = job(spark, args.rows)
                secs = time.monotonic() - start
            finally:
                harness.stop_session(spark)
            if reference is None:
                reference = result
            elif result != reference:
                print(f"{name} run {i}: result {result} differs from {reference}", flush=True)
                return 1
            times[name].append(secs)
            print(f"{name} run {i}: {secs:.1f} s, result {result}", flush=True)
    with open(args.json, "w") as f:
        json.dump({"rows": args.rows, "spark": args.spark_version, "result": reference,
                   **times}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
