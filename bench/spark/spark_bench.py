#!/usr/bin/env python3
"""Spark workloads under Spark's sort shuffle and under Sluice, alternating.

Run by scripts/spark-bench.sh (which `sluice-bench --mode spark` calls): it passes the
plugin jar, the servers, their pid files, the token and the certificate. Workloads
(``--workloads``, comma-separated):

    groupby   ``--rows`` lineitem-like rows generated in the executors' JVMs,
              groupBy(l_orderkey) (about rows/4 keys: almost no map-side combining) with
              five aggregates, then repartition(200); count and digest of the result.
    wide200   shuffle-dominated: ``--wide-rows`` rows of a wide table (longs, an int, two
    wide2000  decimals, a date, a double, four strings) repartitioned by a key to 200 or
              2000 partitions, with 512 MiB executors so that sort shuffle spills; count and
              digest of the result.
    tpch      TPC-H, all 22 queries in order, on ``--tpch-dir`` (Parquet), on 2 GiB
              executors with AQE and broadcast joins as Spark ships them.

Each run starts a fresh driver JVM on local-cluster[2,1,mem] (the shuffle manager is a
static conf), warms the executors up, then times the workload alone. Runs alternate
sort, sluice, sort, ... so that drift of the machine hits both. For each run it records
the wall time, the CPU seconds of the executor JVMs, the servers and the driver (from
/proc), and Spark's task metrics summed over the timed part (from the event log). Every
run's result must equal the first sort run's (the digest is order-independent: a sum of
xxhash64 over every row).
"""

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import measure  # noqa: E402
import tpch  # noqa: E402

JOBS_PATH = os.path.join(HERE, "..", "..", "jni", "tests", "spark_jobs.py")


def load_harness():
    """The session helpers of the Spark integration tests (same private SPARK_HOME,
    same way of restarting the driver JVM between shuffle managers)."""
    spec = importlib.util.spec_from_file_location("spark_jobs", JOBS_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hashed(salt, mod):
    from pyspark.sql import functions as F
    return F.pmod(F.xxhash64("id", F.lit(salt)), F.lit(mod))


def count_and_digest(df):
    from pyspark.sql import functions as F
    digest = F.xxhash64(*[F.col(c) for c in df.columns]).cast("decimal(38,0)")
    row = df.agg(F.count(F.lit(1)), F.sum(digest)).collect()[0]
    return [int(row[0]), str(row[1])]


def lineitem(spark, rows):
    from pyspark.sql import functions as F
    h = hashed
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


def groupby_job(spark, args):
    from pyspark.sql import functions as F
    agg = lineitem(spark, args.rows).groupBy("l_orderkey").agg(
        F.count(F.lit(1)).alias("n"),
        F.sum("l_quantity").alias("qty"),
        F.sum("l_extendedprice").alias("price"),
        F.max("l_shipdate").alias("last_ship"),
        F.max("l_comment").alias("comment"),
    )
    return count_and_digest(agg.repartition(200)), None


TEXT = ("furiously regular packages wake slyly along the blithely ironic accounts "
        "quickly express deposits haggle carefully final requests ")


def wide_table(spark, rows):
    """About 190 bytes per row in Spark's UnsafeRow: what a fact table carries."""
    from pyspark.sql import functions as F
    h = hashed
    modes = F.array(*[F.lit(m) for m in ["AIR", "MAIL", "SHIP", "TRUCK", "RAIL", "FOB", "REG AIR"]])
    # 4 map tasks of rows/4 each: at 8 M rows, 270 MB per task against about 130 MB of
    # execution memory in a 512 MiB executor, so sort shuffle spills.
    return spark.range(0, rows, numPartitions=4).select(
        F.col("id"),
        h(1, 1 << 40).alias("customer_id"),
        h(2, 1_000_000).cast("int").alias("item_id"),
        (h(3, 1_000_000_000) / 100).cast("decimal(15,2)").alias("price"),
        (h(4, 10 ** 15) / 10 ** 6).cast("decimal(38,6)").alias("amount"),
        F.date_add(F.lit("1992-01-01").cast("date"), h(5, 2_500).cast("int")).alias("day"),
        (h(6, 1_000_000) / 7.0).alias("ratio"),
        F.element_at(modes, (h(7, 7) + 1).cast("int")).alias("mode"),
        F.concat(F.lit("Customer#"), F.lpad(h(8, 150_000).cast("string"), 9, "0")).alias("name"),
        F.concat(F.lit(TEXT).substr((h(9, 60) + 1).cast("int"), (h(10, 40) + 20).cast("int")),
                 h(11, 1 << 30).cast("string")).alias("comment"),
        F.sha1(h(12, 1 << 20).cast("string")).alias("tag"),
    )


def wide_job(partitions):
    # Hash partitioning on a key, as joins and aggregations shuffle (a round-robin
    # repartition would add a sort of every map's rows before the shuffle).
    def job(spark, args):
        table = wide_table(spark, args.wide_rows)
        return count_and_digest(table.repartition(partitions, "customer_id")), None
    return job


def tpch_job(spark, args):
    answers, secs = tpch.run_queries(spark)
    if args.tpch_scale == 1:
        tpch.check_sf1_row_counts(answers)
    digest = hashlib.sha256(repr(sorted(answers.items())).encode()).hexdigest()[:16]
    return [digest], {str(q): round(s, 3) for q, s in secs.items()}


def tpch_warm_up(spark, args):
    tpch.register(spark, args.tpch_dir)
    tpch.run_queries(spark, [6, 3])


def simple_warm_up(spark, args):
    spark.range(0, 1000, numPartitions=2).count()


# name: (executor MiB, extra conf, warm-up, job, description)
WORKLOADS = {
    "groupby": (1024, {}, simple_warm_up, groupby_job,
                "{rows}M rows, groupBy + repartition(200)"),
    "wide200": (512, {}, simple_warm_up, wide_job(200),
                "{wide_rows}M wide rows, repartition(200, key)"),
    "wide2000": (512, {}, simple_warm_up, wide_job(2000),
                 "{wide_rows}M wide rows, repartition(2000, key)"),
    "tpch": (2048, {"spark.sql.adaptive.enabled": "true",
                    "spark.sql.autoBroadcastJoinThreshold": "10MB"},
             tpch_warm_up, tpch_job, "TPC-H SF{tpch_scale}, 22 queries"),
}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jar", required=True)
    p.add_argument("--servers", required=True)
    p.add_argument("--server-pid-files", default="",
                   help="comma-separated pid files of the Sluice servers (their CPU)")
    p.add_argument("--token-file", required=True)
    p.add_argument("--trust-file", required=True)
    p.add_argument("--work-dir", required=True)
    p.add_argument("--spark-version", default="")
    p.add_argument("--workloads", default="groupby")
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--wide-rows", type=int, default=8_000_000)
    p.add_argument("--tpch-dir", default="")
    p.add_argument("--tpch-scale", type=float, default=1)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--modes", default="sort,sluice",
                   help="the shuffles to run, in turn (a subset for experiments on one)")
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    args.workloads = args.workloads.split(",")
    args.modes = args.modes.split(",")
    if not args.modes or any(m not in ("sort", "sluice") for m in args.modes):
        p.error(f"--modes takes sort and sluice, not {args.modes}")
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        p.error(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")
    if "tpch" in args.workloads and not args.tpch_dir:
        p.error("the tpch workload needs --tpch-dir")
    return args


def session_conf(harness, args, name, mode, events):
    mib, extra, _, _, _ = WORKLOADS[name]
    conf = dict(harness.BASE_CONF)
    conf.update({
        "spark.master": f"local-cluster[2,1,{mib}]",
        "spark.executor.memory": f"{mib}m",
        "spark.sql.shuffle.partitions": "200",
        "spark.local.dir": os.path.join(args.work_dir, "local"),
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": events,
        # One plain JSON file, as 3.5 writes it (4.x rolls and compresses by default).
        "spark.eventLog.rolling.enabled": "false",
        "spark.eventLog.compress": "false",
    })
    conf.update(extra)
    if mode == "sluice":
        conf.update(harness.sluice_conf(args))
    return conf


def run_once(harness, args, name, mode, i):
    """One timed run in a fresh driver JVM: its result and what it cost."""
    from pyspark import SparkContext
    _, _, warm_up, job, _ = WORKLOADS[name]
    events = os.path.join(args.work_dir, "events", f"{name}-{mode}-{i}")
    os.makedirs(events)
    os.makedirs(os.path.join(args.work_dir, "local"), exist_ok=True)
    spark = harness.start_session(session_conf(harness, args, name, mode, events),
                                  f"sluice-bench-{name}-{mode}-{i}")
    try:
        warm_up(spark, args)
        meter = measure.CpuMeter(args.server_pid_files.split(",") if args.server_pid_files
                                 else [], SparkContext._gateway.proc.pid)
        since_ms = int(time.time() * 1000)
        meter.start()
        start = time.monotonic()
        result, details = job(spark, args)
        secs = time.monotonic() - start
        cpu = meter.stop()
    finally:
        harness.stop_session(spark)
    run = {"secs": round(secs, 3), "cpu": {k: round(v, 2) for k, v in cpu.items()},
           "metrics": measure.task_metrics(harness.event_log(events), since_ms)}
    if details is not None:
        run["queries"] = details
    shutil.rmtree(events)
    return result, run


def run_workload(harness, args, name):
    runs = {"sort": [], "sluice": []}
    reference = None
    for i in range(args.runs):
        for mode in args.modes:
            result, run = run_once(harness, args, name, mode, i)
            if reference is None:
                reference = result
            elif result != reference:
                raise RuntimeError(f"{name} {mode} run {i}: result {result} differs from "
                                   f"{reference}")
            runs[mode].append(run)
            m = run["metrics"]
            print(f"{name} {mode} run {i}: {run['secs']:.1f} s, CPU executors "
                  f"{run['cpu']['executors']:.1f} s + servers {run['cpu']['servers']:.1f} s, "
                  f"shuffle written {m['shuffle_bytes_written'] / 1e9:.2f} GB, spilled "
                  f"{m['disk_bytes_spilled'] / 1e9:.2f} GB, result {result}", flush=True)
    description = WORKLOADS[name][4].format(rows=args.rows // 1_000_000,
                                            wide_rows=args.wide_rows // 1_000_000,
                                            tpch_scale=f"{args.tpch_scale:g}")
    return {"name": name, "case": description, "result": reference, "runs": runs}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    harness = load_harness()
    os.makedirs(args.work_dir, exist_ok=True)
    harness.setup_environment(args.work_dir)
    workloads = []
    for name in args.workloads:
        try:
            workloads.append(run_workload(harness, args, name))
        except RuntimeError as e:
            print(f"{name}: {e}", flush=True)
            return 1
    with open(args.json, "w") as f:
        json.dump({"spark": args.spark_version, "workloads": workloads}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
