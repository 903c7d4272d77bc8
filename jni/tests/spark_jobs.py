#!/usr/bin/env python3
"""Run Spark jobs under the default sort shuffle and under Sluice; compare the results.

Usage::

    python spark_jobs.py --jar /abs/sluice-spark.jar \\
        --servers 127.0.0.1:7001,127.0.0.1:7002 \\
        --token-file /abs/token --trust-file /abs/cert.pem \\
        --work-dir /abs/dir [--jobs name1,name2] [--only-sort]
        [--kill-pid-file PATH --restart-cmd PATH]

Run it as a script with the python of a venv that has pyspark (3.5 or 4.x); the same
python runs the executors' Python workers. Always wrap it in ``timeout``.

Phase 1 starts one SparkSession on ``local-cluster[2,1,1024]`` with Spark's default sort
shuffle, runs every selected job and keeps each job's result as a canonical Python value
(lists of tuples, sorted wherever Spark defines no order). Phase 2 stops that session,
shuts its driver JVM down (so the plugin jar can go on the new driver's class path),
starts a new session with the same conf plus ``spark.shuffle.manager=
io.sluice.spark.SluiceShuffleManager``, runs the same jobs and compares each result exactly
with phase 1. It prints one line per job::

    job <name>: OK (<n> rows, <secs>s)
    job <name>: MISMATCH ... (first differing items)
    job <name>: ERROR ... (the exception)

and exits 1 if any job mismatched or failed, else 0.

Jobs that need static confs (``OWN_SESSION``: a small executor memory that makes Spark
call the writer's ``spill()``, dynamic allocation) run first, each in a session of its
own, in both phases.

Modes:
  --only-sort      run phase 1 only (no jar, servers or token needed); exit 1 if a job fails.
  --sort-vs-sort   run phase 2 with the sort shuffle as well: checks that every job is
                   deterministic and that the session restart works, without the plugin
                   (with --kill-pid-file, phase 2 still kills that pid).
  --kill-pid-file, --restart-cmd  add the jobs ``server_loss_{map,reduce}_r{1,2}``: in
                   phase 2 each SIGKILLs the pid read from that file once its map or
                   reduce stage has started, with spark.sluice.replication 1 or 2, and
                   runs the restart command afterwards. Each must still complete with the
                   sort-shuffle result; its event log must show no fetch failure and no
                   resubmitted stage with replication 2, and the recompute with 1. In the
                   sort phase the jobs just run.

``--work-dir`` holds a private SPARK_HOME of symlinks into the pyspark package (so executor
work dirs land there, not in site-packages), Spark's local dirs and marker files.
"""

import argparse
import collections
import datetime
import importlib.util
import itertools
import json
import operator
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
import zlib
from contextlib import contextmanager
from decimal import Decimal

MASTER = "local-cluster[2,1,1024]"
SLUICE_MANAGER = "io.sluice.spark.SluiceShuffleManager"

# Conf shared by both phases; the Sluice phase adds the plugin's settings on top.
BASE_CONF = {
    "spark.master": MASTER,
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.task.maxFailures": "4",
    "spark.sql.shuffle.partitions": "16",
    # Jobs that want AQE turn it on themselves; the others get exact partition counts.
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.autoBroadcastJoinThreshold": "-1",
}

# Strings with non-ASCII text: accents, sharp s, CJK, emoji, RTL, a combining mark, "".
WORDS = ["café", "Straße", "東京", "naïve", "😀 emoji", "ascii", "Ωmega", "",
         "zebra", "Ärger", "שלום", "e\u0301", "🇩🇪 flag", "ß", "Zürich"]


# ---------------------------------------------------------------------------------------
# Deterministic data generation (runs inside executors' Python workers)
# ---------------------------------------------------------------------------------------

MASK64 = (1 << 64) - 1


def mix(i, salt=0):
    """splitmix64 of (i, salt): a fixed-seed pseudo-random 64-bit value for row i."""
    z = (i * 0x9E3779B97F4A7C15 + (salt + 1) * 0xD1B54A32D192ED03) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def maybe_null(i, salt, one_in, value):
    """value, or None for roughly one row in `one_in`."""
    return None if mix(i, salt) % one_in == 0 else value


def ints(sc, n, parts=8):
    """RDD of 0..n-1 in `parts` input partitions (generated without shipping data)."""
    return sc.parallelize(range(n), parts)


def typed_row(i, salt=0):
    """One row of typed_schema(); every column but id can be null."""
    s = salt * 100
    return (
        i,
        maybe_null(i, s + 1, 20, int(mix(i, s + 2) % 50)),
        maybe_null(i, s + 3, 25, WORDS[mix(i, s + 4) % len(WORDS)]),
        maybe_null(i, s + 5, 10, int(mix(i, s + 6) % 2_000_001) - 1_000_000),
        maybe_null(i, s + 7, 10, int(mix(i, s + 8) % 20_000_000_001) - 10_000_000_000),
        maybe_null(i, s + 9, 12, Decimal(int(mix(i, s + 10) % 10**13) - 5 * 10**12).scaleb(-2)),
        maybe_null(i, s + 11, 12, Decimal(int(mix(i, s + 12) % 10**22) - 5 * 10**21).scaleb(-10)),
        maybe_null(i, s + 13, 15, datetime.date(1950, 1, 1)
                   + datetime.timedelta(days=mix(i, s + 14) % 40_000)),
        maybe_null(i, s + 15, 15, datetime.datetime(2000, 1, 1)
                   + datetime.timedelta(seconds=mix(i, s + 16) % 10**9,
                                        microseconds=mix(i, s + 17) % 10**6)),
        maybe_null(i, s + 18, 9, WORDS[mix(i, s + 19) % len(WORDS)] + str(mix(i, s + 20) % 1000)),
    )


def typed_schema():
    from pyspark.sql import types as T
    return T.StructType([
        T.StructField("id", T.LongType(), False),
        T.StructField("k_int", T.IntegerType()),
        T.StructField("k_str", T.StringType()),
        T.StructField("v_int", T.IntegerType()),
        T.StructField("v_long", T.LongType()),
        T.StructField("v_dec15", T.DecimalType(15, 2)),
        T.StructField("v_dec38", T.DecimalType(38, 10)),
        T.StructField("v_date", T.DateType()),
        T.StructField("v_ts", T.TimestampType()),
        T.StructField("v_str", T.StringType()),
    ])


def typed_df(spark, n, parts=8, salt=0):
    rdd = ints(spark.sparkContext, n, parts).map(lambda i: typed_row(i, salt))
    return spark.createDataFrame(rdd, typed_schema())


# ---------------------------------------------------------------------------------------
# Canonical values
# ---------------------------------------------------------------------------------------

def canon(v):
    """Row/list/dict -> nested tuples (hashable, comparable); scalars unchanged."""
    if isinstance(v, (tuple, list)):  # pyspark Row is a tuple
        return tuple(canon(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted(((canon(k), canon(x)) for k, x in v.items()), key=sort_key))
    return v


def sort_key(v):
    """Total order over canonical values that tolerates None (None sorts first)."""
    if v is None:
        return (0,)
    if isinstance(v, tuple):
        return (1, tuple(sort_key(x) for x in v))
    return (1, v)


def sorted_rows(rows):
    """For results whose order Spark does not define."""
    return sorted((canon(r) for r in rows), key=sort_key)


def ordered_rows(rows):
    """For results whose order is defined (sortByKey, orderBy): keep it."""
    return [canon(r) for r in rows]


def count_rows(value):
    if isinstance(value, dict):
        return sum(count_rows(v) for v in value.values())
    if isinstance(value, list):
        return len(value)
    return 1


# ---------------------------------------------------------------------------------------
# Job context and helpers
# ---------------------------------------------------------------------------------------

class JobContext:
    """What a job gets: the session plus the phase's settings."""

    def __init__(self, spark, phase, work_dir, kill_pid_file, restart_cmd):
        self.spark = spark
        self.sc = spark.sparkContext
        self.phase = phase
        self.work_dir = work_dir
        self.kill_pid_file = kill_pid_file  # set only in the phase that kills a server
        self.restart_cmd = restart_cmd
        self.job = None
        self._markers = itertools.count()

    def info(self, msg):
        print(f"  info {self.phase} {self.job}: {msg}", flush=True)

    def new_marker(self, tag):
        """A fresh path executors can create to signal the driver (same machine)."""
        d = os.path.join(self.work_dir, "markers")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"{tag}-{self.phase}-{os.getpid()}-{next(self._markers)}")
        if os.path.exists(path):
            os.unlink(path)
        return path


@contextmanager
def sql_conf(spark, settings):
    """Set session confs for the duration of a job, then restore them."""
    old = {k: spark.conf.get(k, None) for k in settings}
    for k, v in settings.items():
        spark.conf.set(k, str(v))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)


@contextmanager
def cached(*datasets):
    """Cache inputs that several actions read (generating rows in Python is the slow part)."""
    for d in datasets:
        d.cache()
    try:
        yield datasets
    finally:
        for d in datasets:
            d.unpersist()


def executed_plan(df):
    return df._jdf.queryExecution().executedPlan().toString()


def touch(path):
    with open(path, "a"):
        pass


# ---------------------------------------------------------------------------------------
# RDD jobs
# ---------------------------------------------------------------------------------------

def combine_stats(a, b):
    return (a[0] + b[0], a[1] + b[1], min(a[2], b[2]), max(a[3], b[3]))


def sum_by_key(it):
    sums = collections.defaultdict(int)
    for k, v in it:
        sums[k] += v
    return iter(sums.items())


def job_rdd_reduce_by_key(ctx):
    sc = ctx.sc

    def int_keys(i):
        v = mix(i, 11) % 1_000_000
        return (mix(i, 10) % 5000, (1, v, v, v))

    def str_keys(i):
        # 300 keys over 2000 partitions: most reduce partitions are empty.
        return (f"{WORDS[mix(i, 20) % len(WORDS)]}/{mix(i, 21) % 20}", mix(i, 22) % 1000)

    many = ints(sc, 100_000).map(int_keys)
    few = ints(sc, 100_000).map(str_keys)
    # reduceByKey(add, 2000) spelled out with the same shuffle (map-side combine, 2000
    # reduce partitions, most of them empty), but read by 16 tasks of 125 partitions each:
    # PySpark runs one Python worker call per reduce task, which costs ~40 ms here, so
    # 2000 reduce tasks alone would take well over a minute on 2 cores.
    few_2000 = few.mapPartitions(sum_by_key).partitionBy(2000).coalesce(16)
    return {
        "5000_keys_1_partition": sorted_rows(many.reduceByKey(combine_stats, 1).collect()),
        "5000_keys_200_partitions": sorted_rows(many.reduceByKey(combine_stats, 200).collect()),
        "300_str_keys_2000_partitions": sorted_rows(few_2000.mapPartitions(sum_by_key).collect()),
    }


def job_rdd_group_by_key(ctx):
    def row(i):
        # One hot key holds 20% of the rows; the rest spread over ~7500 string keys.
        key = "hot" if i % 5 == 0 else f"{WORDS[mix(i, 1) % len(WORDS)]}-{mix(i, 2) % 500}"
        return (key, mix(i, 3) % 100_000)

    grouped = ints(ctx.sc, 100_000).map(row).groupByKey(64)
    return sorted_rows(grouped.mapValues(lambda vs: tuple(sorted(vs))).collect())


def job_rdd_sort_by_key(ctx):
    sc = ctx.sc
    dup_keys = ints(sc, 80_000).map(lambda i: (mix(i, 1) % 20_000, mix(i, 2) % 1000))
    str_keys = ints(sc, 30_000, 6).map(lambda i: (f"{WORDS[i % len(WORDS)]}{i:06d}", i))
    return {
        # (k, v) tuples as the sort key: a total order even with duplicate keys.
        "tuple_asc": ordered_rows(dup_keys.sortBy(lambda kv: kv, True, 12).collect()),
        "tuple_desc": ordered_rows(dup_keys.sortBy(lambda kv: kv, False, 12).collect()),
        "unique_str_keys_desc": ordered_rows(str_keys.sortByKey(False, 10).collect()),
        "unique_str_keys_asc_1_partition": ordered_rows(str_keys.sortByKey(True, 1).collect()),
    }


def join_inputs(sc):
    left = ints(sc, 50_000).map(lambda i: (mix(i, 1) % 20_000, i))
    right = ints(sc, 30_000, 6).map(lambda i: (10_000 + mix(i, 2) % 20_000, -i))
    return left, right


def job_rdd_join(ctx):
    left, right = join_inputs(ctx.sc)
    return {
        "join": sorted_rows(left.join(right, 32).collect()),
        "left_outer_join": sorted_rows(left.leftOuterJoin(right, 32).collect()),
        "full_outer_join": sorted_rows(left.fullOuterJoin(right, 7).collect()),
    }


def job_rdd_cogroup(ctx):
    sc = ctx.sc
    left, right = join_inputs(sc)
    third = ints(sc, 10_000, 3).map(lambda i: (mix(i, 3) % 40_000, str(i)))

    def sort_groups(groups):
        return tuple(tuple(sorted(g)) for g in groups)

    return {
        "cogroup": sorted_rows(left.cogroup(right, 24).mapValues(sort_groups).collect()),
        "group_with_3": sorted_rows(left.groupWith(right, third).mapValues(sort_groups).collect()),
    }


def job_rdd_repartition(ctx):
    sc = ctx.sc
    base = ints(sc, 60_000).map(lambda i: (i % 7_000, mix(i, 1) % 1_000_000))
    expected = sorted(base.collect())
    # Where rows land after repartition is implementation-defined; only the multiset is
    # checked. A hash partitioner's routing is defined, so partitionBy is checked exactly.
    parts = base.repartition(200).glom().collect()  # one shuffle read for rows and sizes
    rep_rows = sorted(row for part in parts for row in part)
    routing = base.partitionBy(64).mapPartitionsWithIndex(
        lambda idx, it: ((idx, k) for k, _ in it))
    return {
        "repartition_200_rows": rep_rows,
        "repartition_200_num_partitions": len(parts),
        "repartition_200_preserves_rows": rep_rows == expected,
        "repartition_3_preserves_rows": sorted(base.repartition(3).collect()) == expected,
        "coalesce_50_shuffle_preserves_rows":
            sorted(base.coalesce(50, shuffle=True).collect()) == expected,
        "coalesce_3_no_shuffle_preserves_rows": sorted(base.coalesce(3).collect()) == expected,
        "partition_by_64_routing": sorted(set(routing.collect())),
    }


def job_rdd_task_retry(ctx):
    """Map task 0 emits records, then fails on its first attempt; the retry succeeds."""
    marker = ctx.new_marker("task_retry")

    def flaky(idx, it):
        from pyspark import TaskContext
        attempt = TaskContext.get().attemptNumber()
        for n, i in enumerate(it):
            yield (mix(i, 1) % 3000, 1 + mix(i, 2) % 100)
            if idx == 0 and attempt == 0 and n == 7_500:
                touch(marker)
                raise RuntimeError("deliberate failure of the first attempt of map task 0")

    data = ints(ctx.sc, 80_000).mapPartitionsWithIndex(flaky)  # 10k rows per partition
    # reduceByKey combines map-side in Python first, so the JVM writer sees nothing before
    # the failure; partitionBy streams batches, so the failed attempt has written records.
    result = {
        "reduce_by_key": sorted_rows(data.reduceByKey(operator.add, 40).collect()),
        "partition_by_then_sum": sorted_rows(data.partitionBy(40).mapPartitions(sum_by_key)
                                             .collect()),
    }
    ctx.info("first attempt of map task 0 failed as planned" if os.path.exists(marker)
             else "WARNING: the planned task failure did not happen")
    return result


# ---------------------------------------------------------------------------------------
# SQL jobs
# ---------------------------------------------------------------------------------------

def job_sql_group_by(ctx):
    with cached(typed_df(ctx.spark, 60_000)) as (df,):
        return group_by_results(df)


def group_by_results(df):
    from pyspark.sql import functions as F
    full_aggs = [
        F.count(F.lit(1)).alias("n"), F.count("v_int"),
        F.sum("v_int"), F.min("v_int"), F.max("v_int"), F.round(F.avg("v_int"), 6),
        F.sum("v_long"), F.min("v_long"), F.max("v_long"),
        F.sum("v_dec15"), F.avg("v_dec15"), F.min("v_dec15"), F.max("v_dec15"),
        F.sum("v_dec38"), F.avg("v_dec38"), F.min("v_dec38"), F.max("v_dec38"),
        F.min("v_date"), F.max("v_date"), F.min("v_ts"), F.max("v_ts"),
        F.min("v_str"), F.max("v_str"), F.countDistinct("v_str"),
    ]
    by_str = df.groupBy("k_str").agg(
        F.count(F.lit(1)), F.sort_array(F.collect_set("k_int")), F.sum("v_dec38"),
        F.min("v_ts"), F.max("v_date"), F.max("v_str"))
    by_year = df.groupBy(F.year("v_date").alias("y"), F.col("k_int").isNull()).agg(
        F.count(F.lit(1)), F.sum("v_long"), F.avg("v_dec15"), F.max("v_str"))
    return {
        "by_int_and_str": sorted_rows(df.groupBy("k_int", "k_str").agg(*full_aggs).collect()),
        "by_str": sorted_rows(by_str.collect()),
        "by_year_and_null_key": sorted_rows(by_year.collect()),
        "global": sorted_rows(df.agg(*full_aggs).collect()),
    }


def join_tables(spark):
    from pyspark.sql import types as T
    sc = spark.sparkContext
    left_schema = T.StructType([
        T.StructField("id", T.LongType(), False), T.StructField("k", T.IntegerType()),
        T.StructField("s", T.StringType()), T.StructField("lv", T.IntegerType())])
    right_schema = T.StructType([
        T.StructField("id", T.LongType(), False), T.StructField("k", T.IntegerType()),
        T.StructField("s", T.StringType()), T.StructField("rv", T.DecimalType(15, 2))])
    left = ints(sc, 20_000).map(lambda i: (
        i, maybe_null(i, 1, 100, int(mix(i, 2) % 5000)),
        maybe_null(i, 3, 15, WORDS[mix(i, 4) % 5]), int(mix(i, 5) % 1000)))
    right = ints(sc, 10_000, 5).map(lambda i: (
        i, maybe_null(i, 6, 100, int(mix(i, 7) % 6000)),
        maybe_null(i, 8, 15, WORDS[mix(i, 9) % 5]), Decimal(int(mix(i, 10) % 100_000)).scaleb(-2)))
    return (spark.createDataFrame(left, left_schema).alias("l"),
            spark.createDataFrame(right, right_schema).alias("r"))


def join_suite(ctx, hint):
    """Inner/outer joins with null keys; `hint` (or None) is applied to the right side."""
    with cached(*join_tables(ctx.spark)) as (left, right):
        if hint:
            right = right.hint(hint)
        return join_results(ctx, left, right)


def join_results(ctx, left, right):
    from pyspark.sql import functions as F
    cols = [F.col("l.id").alias("lid"), F.col("r.id").alias("rid"), F.col("l.k").alias("lk"),
            F.col("r.k").alias("rk"), F.col("l.s").alias("ls"), F.col("r.s").alias("rs"),
            "lv", "rv"]
    on_k = F.col("l.k") == F.col("r.k")
    on_k_s = on_k & (F.col("l.s") == F.col("r.s"))
    null_safe = F.col("l.k").eqNullSafe(F.col("r.k")) & F.col("l.s").eqNullSafe(F.col("r.s"))
    joins = {
        "inner_on_k": left.join(right, on_k, "inner"),
        "left_outer_on_k": left.join(right, on_k, "left_outer"),
        "full_outer_on_k": left.join(right, on_k, "full_outer"),
        "inner_on_k_and_s": left.join(right, on_k_s, "inner"),
        "left_outer_null_safe_on_k_and_s": left.join(right, null_safe, "left_outer"),
    }
    result = {}
    plans = set()
    for name, df in joins.items():
        df = df.select(*cols)
        result[name] = sorted_rows(df.collect())
        plan = executed_plan(df)
        plans.update(j for j in ("SortMergeJoin", "ShuffledHashJoin", "BroadcastHashJoin")
                     if j in plan)
    ctx.info(f"join operators in executed plans: {sorted(plans)}")
    return result


def job_sql_join_smj(ctx):
    with sql_conf(ctx.spark, {"spark.sql.autoBroadcastJoinThreshold": "-1",
                              "spark.sql.join.preferSortMergeJoin": "true"}):
        return join_suite(ctx, None)


def job_sql_join_shj(ctx):
    with sql_conf(ctx.spark, {"spark.sql.autoBroadcastJoinThreshold": "-1"}):
        return join_suite(ctx, "shuffle_hash")


def job_sql_window(ctx):
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    df = typed_df(ctx.spark, 50_000, salt=1)
    by_int = Window.partitionBy("k_int")
    ordered = by_int.orderBy(F.col("v_int").asc_nulls_first(), F.col("id"))  # total order
    by_str_ts = Window.partitionBy("k_str").orderBy(F.col("v_ts").desc_nulls_last(), "id")
    out = df.select(
        "id", "k_int", "k_str",
        F.row_number().over(ordered).alias("rn"),
        # rank/dense_rank are defined by the order values alone, ties included.
        F.rank().over(by_int.orderBy("v_int")).alias("rank"),
        F.dense_rank().over(by_int.orderBy("v_int")).alias("dense_rank"),
        F.sum("v_long").over(ordered.rowsBetween(Window.unboundedPreceding, Window.currentRow))
        .alias("running_sum"),
        F.sum("v_dec15").over(by_int).alias("partition_sum"),
        F.lag("v_str", 1).over(ordered).alias("prev_str"),
        F.row_number().over(by_str_ts).alias("rn_by_str"),
        F.max("v_date").over(by_str_ts.rowsBetween(-3, 3)).alias("max_date_near"),
    )
    return sorted_rows(out.collect())


def job_sql_order_by(ctx):
    from pyspark.sql import functions as F
    df = typed_df(ctx.spark, 40_000, salt=2)
    first = df.orderBy(F.col("k_int").asc_nulls_first(), F.col("k_str").desc_nulls_last(),
                       F.col("v_dec15").asc_nulls_last(), F.col("id"))
    second = df.orderBy(F.col("v_date").desc_nulls_first(), F.col("v_ts").asc_nulls_last(),
                        F.col("v_str").asc_nulls_first(), F.col("id").desc())
    return {
        "int_str_dec_id": ordered_rows(first.collect()),
        "date_ts_str_id": ordered_rows(second.select("id", "v_date", "v_ts", "v_str").collect()),
    }


def job_sql_distinct(ctx):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    spark = ctx.spark

    def row(i):
        a = maybe_null(i, 1, 20, int(mix(i, 2) % 30))
        b = maybe_null(i, 3, 16, WORDS[mix(i, 4) % len(WORDS)])
        c = (a or 0) * 100 + len(b or "")  # a function of (a, b): any kept row agrees
        return (a, b, c, int(mix(i, 5) % 3))

    schema = T.StructType([T.StructField(n, t) for n, t in (
        ("a", T.IntegerType()), ("b", T.StringType()), ("c", T.IntegerType()),
        ("d", T.IntegerType()))])
    df = spark.createDataFrame(ints(spark.sparkContext, 80_000).map(row), schema)
    typed = typed_df(spark, 30_000, salt=3)
    return {
        "distinct_abc": sorted_rows(df.select("a", "b", "c").distinct().collect()),
        "distinct_all": sorted_rows(df.distinct().collect()),
        # dropDuplicates keeps an arbitrary row per (a, b); c is the same in all of them.
        "drop_duplicates_ab": sorted_rows(
            df.dropDuplicates(["a", "b"]).select("a", "b", "c").collect()),
        "drop_duplicates_count": df.dropDuplicates().count(),
        "count_distinct": sorted_rows(df.agg(F.countDistinct("a", "b"),
                                             F.countDistinct("d")).collect()),
        "distinct_typed": sorted_rows(typed.select("k_str", "k_int", F.year("v_date"))
                                      .distinct().collect()),
        "rdd_distinct": sorted_rows(ints(spark.sparkContext, 50_000)
                                    .map(lambda i: mix(i, 6) % 9000).distinct(17).collect()),
    }


def job_sql_aqe_coalesce(ctx):
    from pyspark.sql import functions as F
    settings = {
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.sql.shuffle.partitions": "200",
    }
    with sql_conf(ctx.spark, settings):
        df = typed_df(ctx.spark, 20_000, salt=4).groupBy("k_str").agg(
            F.count(F.lit(1)), F.sum("v_long"), F.max("v_dec38"), F.min("v_ts"))
        result = sorted_rows(df.collect())
        ctx.info(f"output partitions after AQE coalescing: {df.rdd.getNumPartitions()} "
                 "(200 before)")
    return result


def job_sql_aqe_skew(ctx):
    from pyspark.sql import types as T
    spark = ctx.spark
    sc = spark.sparkContext
    settings = {
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.skewJoin.enabled": "true",
        "spark.sql.adaptive.skewJoin.skewedPartitionFactor": "2",
        "spark.sql.adaptive.skewJoin.skewedPartitionThresholdInBytes": "1k",
        "spark.sql.adaptive.advisoryPartitionSizeInBytes": "16k",
        "spark.sql.autoBroadcastJoinThreshold": "-1",
        "spark.sql.adaptive.autoBroadcastJoinThreshold": "-1",
        "spark.sql.shuffle.partitions": "50",
    }
    schema = T.StructType([T.StructField("id", T.LongType(), False),
                           T.StructField("k", T.IntegerType()),
                           T.StructField("v", T.IntegerType())])
    # 80% of the left rows share key 0; the right side has one row per key.
    left = ints(sc, 40_000).map(
        lambda i: (i, 0 if mix(i, 1) % 10 < 8 else 1 + int(mix(i, 2) % 1000), int(mix(i, 3) % 999)))
    right = ints(sc, 1001, 4).map(lambda i: (i, i, -i))
    with sql_conf(spark, settings):
        l = spark.createDataFrame(left, schema).alias("l")
        r = spark.createDataFrame(right, schema).alias("r")
        df = l.join(r, l["k"] == r["k"]).select("l.id", "r.id", "l.k", "l.v", "r.v")
        result = sorted_rows(df.collect())
        plan = executed_plan(df)
        skew = "skew=true" in plan or "SkewJoin" in plan or "skewed" in plan
        ctx.info("executed plan has a skew join" if skew
                 else "executed plan has NO skew join (Spark did not split the partition)")
    return result


# ---------------------------------------------------------------------------------------
# Server loss jobs
# ---------------------------------------------------------------------------------------

class ServerKiller(threading.Thread):
    """Waits for `marker` to appear, then SIGKILLs the pid read from `pid_file`."""

    def __init__(self, marker, pid_file):
        super().__init__(daemon=True)
        self.marker, self.pid_file = marker, pid_file
        self.done = threading.Event()
        self.killed_pid = None
        self.error = None

    def run(self):
        try:
            while not self.done.is_set():
                if os.path.exists(self.marker):
                    pid = read_pid(self.pid_file)
                    os.kill(pid, signal.SIGKILL)
                    self.killed_pid = pid
                    return
                self.done.wait(0.05)
        except Exception as e:  # reported by the job
            self.error = e


def read_pid(pid_file):
    with open(pid_file) as f:
        return int(f.read().split()[0])


def ensure_server_up(ctx):
    """Starts the server of --kill-pid-file again (--restart-cmd) if a job killed it."""
    try:
        os.kill(read_pid(ctx.kill_pid_file), 0)
        return
    except ProcessLookupError:
        pass
    subprocess.run([ctx.restart_cmd], check=True, stdin=subprocess.DEVNULL)
    ctx.info(f"restarted the server (pid {read_pid(ctx.kill_pid_file)})")


def server_loss_job(stage):
    """A groupByKey job during whose `stage` ("map" or "reduce") a server is SIGKILLed
    (in the Sluice phase); the server is started again afterwards."""

    def job(ctx):
        marker = ctx.new_marker(f"kill_{stage}")

        def map_side(idx, it):
            # Eleven or more of the sixteen map outputs are committed by then, and the
            # rest are written with one server down. Maps take the two servers in
            # turn by map index, so six of maps 0..11 are on server b.
            if stage == "map" and idx == 12:
                touch(marker)
                time.sleep(2)
            return it

        def reduce_side(idx, groups):
            # PySpark's groupByKey has read the task's whole shuffle input by the time
            # this runs; partition 0 is among the first reduce tasks, so the kill lands
            # while the rest of the reduce stage still has to read.
            if stage == "reduce" and idx == 0:
                touch(marker)
                time.sleep(2)
            return ((k, len(vs), sum(vs), min(vs), max(vs),
                     zlib.crc32(repr(sorted(vs)).encode())) for k, vs in groups)

        data = (ints(ctx.sc, 120_000, 16).mapPartitionsWithIndex(map_side)
                .map(lambda i: (mix(i, 1) % 5000, mix(i, 2) % 100_000)))
        rdd = data.groupByKey(64).mapPartitionsWithIndex(reduce_side)
        if not ctx.kill_pid_file:
            return sorted_rows(rdd.collect())
        ensure_server_up(ctx)
        killer = ServerKiller(marker, ctx.kill_pid_file)
        killer.start()
        try:
            result = sorted_rows(rdd.collect())
        finally:
            killer.done.set()
            killer.join()
            if killer.killed_pid is not None:
                ensure_server_up(ctx)
        if killer.error is not None:
            raise RuntimeError(f"killing the server failed: {killer.error!r}")
        if killer.killed_pid is None:
            raise RuntimeError(f"the {stage} stage never signalled; no server was killed")
        ctx.info(f"killed server pid {killer.killed_pid} during the {stage} stage")
        return result

    return job


def replication_conf(replication):
    # A lost server is given up after 6 s of silence, not 20: these jobs kill one.
    return lambda phase: {"spark.sluice.replication": str(replication),
                          "spark.sluice.network.idleTimeout": "6s",
                          "spark.sluice.network.connectTimeout": "2s"}


def event_log(events_dir):
    """The one finished event log a stopped session wrote into ``events_dir``."""
    logs = [os.path.join(events_dir, f) for f in os.listdir(events_dir)]
    if len(logs) != 1 or logs[0].endswith(".inprogress"):
        raise RuntimeError(f"expected one finished event log in {events_dir}, found {logs}")
    return logs[0]


def scheduler_events(events_dir):
    """From a finished session's event log: (fetch failures, failed tasks, resubmitted
    stage attempts) - what Spark's own listeners saw of the job."""
    fetch_failed = failed_tasks = resubmitted = 0
    with open(event_log(events_dir)) as f:
        for line in f:
            event = json.loads(line)
            kind = event.get("Event")
            if kind == "SparkListenerTaskEnd":
                reason = event.get("Task End Reason", {}).get("Reason")
                failed_tasks += reason != "Success"
                fetch_failed += reason == "FetchFailed"
            elif kind == "SparkListenerStageSubmitted":
                resubmitted += event["Stage Info"]["Stage Attempt ID"] > 0
    return fetch_failed, failed_tasks, resubmitted


def check_no_recompute(phase, events_dir):
    """Replication 2: losing a server costs Spark nothing - no fetch failure, no stage
    resubmitted (a task whose push met the kill may be retried)."""
    fetch_failed, failed_tasks, resubmitted = scheduler_events(events_dir)
    if phase == "sluice" and (fetch_failed or resubmitted):
        raise RuntimeError(f"with replication 2 the lost server cost {fetch_failed} fetch "
                           f"failures and {resubmitted} resubmitted stages")
    return f"{fetch_failed} fetch failures, {failed_tasks} failed tasks, {resubmitted} " \
           "resubmitted stages"


def check_recomputed(phase, events_dir):
    """Replication 1: the lost maps come back through Spark's recompute."""
    fetch_failed, failed_tasks, resubmitted = scheduler_events(events_dir)
    if phase == "sluice" and not (fetch_failed and resubmitted):
        raise RuntimeError("with replication 1 the lost server should have cost a fetch "
                           "failure and a recompute")
    return f"{fetch_failed} fetch failures, {failed_tasks} failed tasks, {resubmitted} " \
           "resubmitted stages"


# ---------------------------------------------------------------------------------------
# Jobs with a session of their own (static confs)
# ---------------------------------------------------------------------------------------

def session_stages(sc):
    """Every stage of this session so far, as Spark's own status store has them (from
    the tasks' metrics), once the listeners have caught up."""
    jsc = sc._jsc.sc()
    jsc.listenerBus().waitUntilEmpty(60_000)
    no_quantiles = sc._gateway.new_array(sc._gateway.jvm.double, 0)
    stages = jsc.statusStore().stageList(None, False, False, no_quantiles, None)
    return [stages.apply(i) for i in range(stages.length())]


def stage_memory_spilled(sc):
    """Sum of the memory bytes spilled by every stage of this session so far."""
    return sum(s.memoryBytesSpilled() for s in session_stages(sc))


def stage_shuffle_records(sc):
    """Records written and read by the shuffles of every stage of this session so far."""
    stages = session_stages(sc)
    return (sum(s.shuffleWriteRecords() for s in stages),
            sum(s.shuffleReadRecords() for s in stages))


def job_shuffle_metrics(ctx):
    """Spark's task metrics count every shuffled record on both sides, as sort shuffle's
    do (the UI, the event log and listeners read them)."""
    written_before, read_before = stage_shuffle_records(ctx.sc)
    rows = ctx.spark.range(0, 50_000, numPartitions=4).repartition(16).count()
    pairs = ints(ctx.sc, 20_000, parts=4).map(lambda i: (i % 300, i)).groupByKey(8).count()
    written_after, read_after = stage_shuffle_records(ctx.sc)
    return {"rows": rows, "groups": pairs,
            "records_written": written_after - written_before,
            "records_read": read_after - read_before}


def memory_spill_conf(phase):
    # About 7 MB of execution memory per executor, far less than a writer's 64 MiB batch:
    # Spark must call the Sluice writer's spill() to grant it more.
    return {"spark.memory.fraction": "0.01", "spark.sluice.writer.batchBytes": "64m"}


def job_memory_spill(ctx):
    def row(i):
        return (mix(i, 1) % 20_000, f"{WORDS[mix(i, 2) % len(WORDS)]}-{mix(i, 3):020d}-{i}")

    def summarize(it):
        groups = collections.defaultdict(list)
        for k, v in it:
            groups[k].append(v)
        return ((k, len(vs), min(vs), max(vs)) for k, vs in groups.items())

    # No map-side combine: the task's only memory consumer is the Sluice writer.
    pairs = ints(ctx.sc, 400_000, parts=4).map(row).partitionBy(64)
    result = sorted_rows(pairs.mapPartitions(summarize).collect())
    spilled = stage_memory_spilled(ctx.sc)
    ctx.info(f"stages report {spilled} bytes of memory spilled")
    if ctx.phase == "sluice" and spilled == 0:
        raise RuntimeError("no stage reports spilled memory: the writer's spill() never ran")
    return result


def dynamic_allocation_conf(phase):
    return {
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.minExecutors": "0",
        "spark.dynamicAllocation.maxExecutors": "2",
        "spark.dynamicAllocation.executorIdleTimeout": "2s",
        "spark.dynamicAllocation.schedulerBacklogTimeout": "1s",
        # The sort shuffle needs shuffle tracking (or an external shuffle service) to start
        # at all. Sluice needs neither: its ShuffleDataIO reports reliable storage, which
        # the shuffle manager configures by itself.
        "spark.dynamicAllocation.shuffleTracking.enabled": str(phase != "sluice").lower(),
    }


def executor_count(sc):
    return sc._jsc.sc().getExecutorIds().length()


def job_dynamic_allocation(ctx):
    sc = ctx.sc
    map_calls = sc.accumulator(0)

    def keyed(i):
        map_calls.add(1)
        return (mix(i, 1) % 997, mix(i, 2) % 100_000)

    n = 50_000
    rdd = ints(sc, n, parts=4).map(keyed).reduceByKey(operator.add, 8)
    first = sorted_rows(rdd.collect())
    if ctx.phase == "sluice":
        # Idle executors go away although they wrote the map outputs...
        deadline = time.monotonic() + 120
        while executor_count(sc) > 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{executor_count(sc)} executors still up after 120 s")
            time.sleep(0.5)
        ctx.info("all executors were removed after the first action")
    # ...and new ones read the same shuffle without running a map task again.
    second = sorted_rows(rdd.collect())
    if second != first:
        raise RuntimeError("the second read of the shuffle differs from the first")
    if map_calls.value != n:
        raise RuntimeError(f"map functions ran {map_calls.value} times for {n} rows: "
                           "the map stage was recomputed")
    return first


# A job named here runs in a session of its own, started with these extra confs (a
# function of the phase), before the jobs that share one session.
OWN_SESSION = {
    "memory_spill": memory_spill_conf,
    "dynamic_allocation": dynamic_allocation_conf,
    "server_loss_map_r1": replication_conf(1),
    "server_loss_map_r2": replication_conf(2),
    "server_loss_reduce_r1": replication_conf(1),
    "server_loss_reduce_r2": replication_conf(2),
}

# Jobs whose result is another's (the same computation): the sort phase runs it once.
SAME_RESULT_AS = {
    "server_loss_map_r2": "server_loss_map_r1",
    "server_loss_reduce_r1": "server_loss_map_r1",
    "server_loss_reduce_r2": "server_loss_map_r1",
}

# Checks of an OWN_SESSION job's event log, once its session has stopped.
AFTER_SESSION = {
    "server_loss_map_r1": check_recomputed,
    "server_loss_map_r2": check_no_recompute,
    "server_loss_reduce_r1": check_recomputed,
    "server_loss_reduce_r2": check_no_recompute,
}


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------

JOBS = {
    "rdd_reduce_by_key": job_rdd_reduce_by_key,
    "rdd_group_by_key": job_rdd_group_by_key,
    "rdd_sort_by_key": job_rdd_sort_by_key,
    "rdd_join": job_rdd_join,
    "rdd_cogroup": job_rdd_cogroup,
    "rdd_repartition": job_rdd_repartition,
    "rdd_task_retry": job_rdd_task_retry,
    "sql_group_by": job_sql_group_by,
    "sql_join_smj": job_sql_join_smj,
    "sql_join_shj": job_sql_join_shj,
    "sql_window": job_sql_window,
    "sql_order_by": job_sql_order_by,
    "sql_distinct": job_sql_distinct,
    "sql_aqe_coalesce": job_sql_aqe_coalesce,
    "sql_aqe_skew": job_sql_aqe_skew,
    "shuffle_metrics": job_shuffle_metrics,
    "memory_spill": job_memory_spill,
    "dynamic_allocation": job_dynamic_allocation,
    "server_loss_map_r1": server_loss_job("map"),
    "server_loss_map_r2": server_loss_job("map"),
    "server_loss_reduce_r1": server_loss_job("reduce"),
    "server_loss_reduce_r2": server_loss_job("reduce"),
}
NEEDS_KILL_PID_FILE = {n for n in JOBS if n.startswith("server_loss_")}


# ---------------------------------------------------------------------------------------
# Environment and sessions
# ---------------------------------------------------------------------------------------

def setup_environment(work_dir):
    """Private SPARK_HOME of symlinks into the pyspark package; env for driver/executors."""
    spec = importlib.util.find_spec("pyspark")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"pyspark is not importable by {sys.executable}")
    pyspark_dir = list(spec.submodule_search_locations)[0]
    spark_home = os.path.join(work_dir, "spark-home")
    os.makedirs(spark_home, exist_ok=True)
    for name in ("bin", "jars", "python", "sbin"):
        link = os.path.join(spark_home, name)
        if os.path.islink(link):
            os.unlink(link)
        os.symlink(os.path.join(pyspark_dir, name), link)
    os.environ["SPARK_HOME"] = spark_home  # overrides any inherited SPARK_HOME
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("PYTHONHASHSEED", "0")


def start_session(conf, app_name):
    from pyspark import SparkContext
    from pyspark.sql import SparkSession
    if SparkContext._active_spark_context is not None:
        raise RuntimeError("a SparkContext is still active")
    builder = SparkSession.builder.appName(app_name)
    for k, v in conf.items():
        builder = builder.config(k, v)
    return builder.getOrCreate()


def stop_session(spark):
    """Stop the session and its driver JVM so the next session launches a fresh one.

    Confs like spark.driver.extraClassPath only apply when the driver JVM is launched,
    so reusing phase 1's JVM would leave the plugin jar off the driver's class path.
    """
    from pyspark import SparkContext
    spark.stop()
    gateway = SparkContext._gateway
    if gateway is not None:
        proc = getattr(gateway, "proc", None)
        try:
            gateway.shutdown()
        except Exception as e:
            print(f"warning: py4j gateway shutdown: {e!r}", flush=True)
        if proc is not None:
            proc.stdin.close()  # the gateway JVM exits when its stdin closes
            try:
                proc.wait(timeout=120)
            except Exception:
                proc.kill()
                proc.wait()
    with SparkContext._lock:
        SparkContext._gateway = None
        SparkContext._jvm = None
        SparkContext._active_spark_context = None


# ---------------------------------------------------------------------------------------
# Running and comparing
# ---------------------------------------------------------------------------------------

class Outcome:
    def __init__(self, value=None, secs=0.0, error=None, spark=None):
        self.value, self.secs, self.error = value, secs, error
        # The Spark version whose sort shuffle gave this result, if not this one's.
        self.spark = spark


def describe_error(exc, max_lines=40):
    lines = "".join(traceback.format_exception_only(type(exc), exc)).splitlines()
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines)"]
    return "\n".join("    " + line for line in lines)


@contextmanager
def watchdog(sc, seconds, label):
    """Cancel all Spark jobs if a job runs longer than `seconds` (turns hangs into errors)."""
    fired = threading.Event()

    def fire():
        fired.set()
        print(f"  {label}: timed out after {seconds}s, cancelling Spark jobs", flush=True)
        try:
            sc.cancelAllJobs()
        except Exception as e:
            print(f"  {label}: cancelAllJobs failed: {e!r}", flush=True)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


def run_phase(phase, conf, names, args, kill_pid_file, reference=None):
    """Run the jobs in one session. Returns (session, {name: Outcome}).

    With `reference` (phase 1's outcomes) each result is compared and reported as it ends.
    """
    t_start = time.monotonic()
    try:
        spark = start_session(conf, f"sluice-spark-jobs-{phase}")
    except Exception as e:
        print(f"== phase {phase}: ERROR starting the session\n{describe_error(e)}", flush=True)
        raise SystemExit(1)
    print(f"== phase {phase}: Spark {spark.version}, session up in "
          f"{time.monotonic() - t_start:.1f}s", flush=True)
    ctx = JobContext(spark, phase, args.work_dir, kill_pid_file, args.restart_cmd)
    outcomes = {}
    for name in names:
        ctx.job = name
        if reference is not None and reference[name].error is not None:
            print(f"job {name}: SKIPPED (failed in the reference phase)", flush=True)
            outcomes[name] = Outcome(error="skipped")
            continue
        t0 = time.monotonic()
        with watchdog(ctx.sc, args.job_timeout, f"{phase} job {name}") as fired:
            try:
                outcome = Outcome(value=JOBS[name](ctx))
            except Exception as e:
                outcome = Outcome(error=describe_error(e))
                if fired.is_set():
                    outcome.error = f"    timed out after {args.job_timeout}s\n" + outcome.error
        outcome.secs = time.monotonic() - t0
        outcomes[name] = outcome
        if reference is None:
            report_single(phase, name, outcome)
        else:
            report_comparison(phase, name, reference[name], outcome)
    print(f"== phase {phase}: {len(names)} jobs in {time.monotonic() - t_start:.1f}s "
          "(including session start)", flush=True)
    return spark, outcomes


def run_all(phase, conf, names, args, kill_pid_file, reference=None):
    """Run the jobs of one phase: each OWN_SESSION job in a session of its own, then the
    rest in one shared session. Returns {name: Outcome}."""
    outcomes = {}
    for name in [n for n in names if n in OWN_SESSION]:
        same = SAME_RESULT_AS.get(name)
        if reference is None and same in outcomes:
            outcomes[name] = outcomes[same]
            print(f"{phase} job {name}: the result of {same}", flush=True)
            continue
        own = dict(conf)
        own.update(OWN_SESSION[name](phase))
        events = os.path.join(args.work_dir, "events", f"{phase}-{name}")
        if name in AFTER_SESSION:
            os.makedirs(events, exist_ok=True)
            own.update({"spark.eventLog.enabled": "true", "spark.eventLog.dir": events,
                        # One plain JSON file, as 3.5 writes it (4.x rolls and
                        # compresses by default).
                        "spark.eventLog.rolling.enabled": "false",
                        "spark.eventLog.compress": "false"})
        spark, done = run_phase(phase, own, [name], args, kill_pid_file, reference)
        stop_session(spark)
        if name in AFTER_SESSION and done[name].error is None:
            try:
                print(f"  info {phase} {name}: {AFTER_SESSION[name](phase, events)}",
                      flush=True)
            except Exception as e:
                done[name].error = describe_error(e)
                print(f"job {name}: ERROR in phase {phase} after the session\n"
                      f"{done[name].error}", flush=True)
        outcomes.update(done)
    shared = [n for n in names if n not in OWN_SESSION]
    if shared:
        spark, done = run_phase(phase, conf, shared, args, kill_pid_file, reference)
        stop_session(spark)
        outcomes.update(done)
    return outcomes


def report_single(phase, name, outcome):
    if outcome.error is not None:
        print(f"{phase} job {name}: ERROR ({outcome.secs:.1f}s)\n{outcome.error}", flush=True)
    else:
        print(f"{phase} job {name}: done ({count_rows(outcome.value)} rows, "
              f"{outcome.secs:.1f}s)", flush=True)


def report_comparison(phase, name, ref, outcome):
    if outcome.error is not None:
        print(f"job {name}: ERROR in phase {phase} ({outcome.secs:.1f}s)\n{outcome.error}",
              flush=True)
    elif outcome.value == ref.value:
        print(f"job {name}: OK ({count_rows(outcome.value)} rows, {outcome.secs:.1f}s)",
              flush=True)
    elif ref.spark is not None:
        print(f"job {name}: differs from Spark {ref.spark}'s sort result; this version's "
              "sort shuffle decides", flush=True)
    else:
        print(f"job {name}: MISMATCH ({outcome.secs:.1f}s)", flush=True)
        for line in diff_values(ref.value, outcome.value, "sort", phase):
            print("    " + line, flush=True)


def short(v, limit=300):
    text = repr(v)
    return text if len(text) <= limit else text[:limit] + "..."


def diff_values(expected, actual, exp_name, act_name, path="result", max_items=3):
    """Human-readable lines describing how two canonical values differ."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        lines = []
        for key in list(expected) + [k for k in actual if k not in expected]:
            if key not in actual or key not in expected:
                lines.append(f"{path}[{key!r}] missing in "
                             f"{act_name if key not in actual else exp_name}")
            elif expected[key] != actual[key]:
                lines += diff_values(expected[key], actual[key], exp_name, act_name,
                                     f"{path}[{key!r}]", max_items)
        return lines
    if not (isinstance(expected, list) and isinstance(actual, list)):
        return [f"{path}: {exp_name}={short(expected)} {act_name}={short(actual)}"]
    lines = [f"{path}: {exp_name} has {len(expected)} rows, {act_name} has {len(actual)}"]
    first = next((i for i, (a, b) in enumerate(zip(expected, actual)) if a != b),
                 min(len(expected), len(actual)))
    for i in range(first, min(first + max_items, max(len(expected), len(actual)))):
        a = short(expected[i]) if i < len(expected) else "<none>"
        b = short(actual[i]) if i < len(actual) else "<none>"
        lines.append(f"  [{i}] {exp_name}={a}  {act_name}={b}")
    try:
        exp_count, act_count = collections.Counter(expected), collections.Counter(actual)
        missing, extra = exp_count - act_count, act_count - exp_count
        if not missing and not extra:
            lines.append("  same rows, different order")
        for label, diff in ((f"only in {exp_name}", missing), (f"only in {act_name}", extra)):
            if diff:
                sample = sorted(diff.elements(), key=sort_key)[:max_items]
                lines.append(f"  {label}: {sum(diff.values())} rows, e.g. "
                             + ", ".join(short(x, 150) for x in sample))
    except TypeError:  # unhashable items
        pass
    return lines


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jar", help="Sluice Spark plugin jar")
    p.add_argument("--servers", help="comma-separated host:port list of Sluice servers")
    p.add_argument("--token-file", help="file holding the Sluice auth token")
    p.add_argument("--trust-file", help="PEM certificate(s) to trust for the servers")
    p.add_argument("--work-dir", required=True, help="scratch directory")
    p.add_argument("--jobs", help="comma-separated job names (default: all); "
                                  f"known: {', '.join(JOBS)}")
    p.add_argument("--only-sort", action="store_true", help="run the sort-shuffle phase only")
    p.add_argument("--sort-vs-sort", action="store_true",
                   help="run the second phase with the sort shuffle too (determinism check)")
    p.add_argument("--kill-pid-file", help="file with the pid of a Sluice server to SIGKILL "
                                           "during the server_loss_* jobs")
    p.add_argument("--restart-cmd", help="command that starts that server again (and returns "
                                         "once it listens)")
    p.add_argument("--reference-dir",
                   help="directory of sort-shuffle results shared between Spark versions: "
                        "results found there are the reference instead of a sort phase, "
                        "results computed here are saved there")
    p.add_argument("--job-timeout", type=int, default=300,
                   help="cancel a job's Spark jobs after this many seconds (default 300)")
    args = p.parse_args(argv)

    args.work_dir = os.path.abspath(args.work_dir)
    for attr in ("jar", "token_file", "trust_file", "kill_pid_file", "restart_cmd",
                 "reference_dir"):
        if getattr(args, attr):
            setattr(args, attr, os.path.abspath(getattr(args, attr)))
    if not (args.only_sort or args.sort_vs_sort):
        missing = [f"--{a.replace('_', '-')}" for a in ("jar", "servers", "token_file",
                                                         "trust_file") if not getattr(args, a)]
        if missing:
            p.error(f"{', '.join(missing)} required unless --only-sort or --sort-vs-sort")
        if not os.path.isfile(args.jar):
            p.error(f"no such jar: {args.jar}")

    if bool(args.kill_pid_file) != bool(args.restart_cmd):
        p.error("--kill-pid-file and --restart-cmd go together")
    available = [n for n in JOBS if n not in NEEDS_KILL_PID_FILE or args.kill_pid_file]
    if args.jobs:
        args.job_names = [n.strip() for n in args.jobs.split(",") if n.strip()]
        unknown = [n for n in args.job_names if n not in JOBS]
        if unknown:
            p.error(f"unknown job(s) {', '.join(unknown)}; known: {', '.join(JOBS)}")
        skipped = [n for n in args.job_names if n not in available]
        if skipped:
            p.error(f"job(s) {', '.join(skipped)} need --kill-pid-file")
    else:
        args.job_names = available
    return args


def load_references(directory, names):
    """The sort results an earlier Spark version saved in `directory`, by job name."""
    found = {}
    for name in names if directory else []:
        path = os.path.join(directory, f"{name}.pickle")
        if os.path.exists(path):
            with open(path, "rb") as f:
                saved = pickle.load(f)  # written by save_references in this test run
            found[name] = Outcome(value=saved["value"], spark=saved["spark"])
            print(f"sort job {name}: the result of Spark {saved['spark']}'s sort shuffle",
                  flush=True)
    return found


def save_references(directory, outcomes):
    """Saves the sort results that succeeded, for the next Spark version of this run."""
    if not directory:
        return
    from pyspark import __version__ as spark_version
    os.makedirs(directory, exist_ok=True)
    for name, outcome in outcomes.items():
        if outcome.error is None:
            with open(os.path.join(directory, f"{name}.pickle"), "wb") as f:
                pickle.dump({"spark": spark_version, "value": outcome.value}, f)


def sluice_conf(args):
    return {
        "spark.shuffle.manager": SLUICE_MANAGER,
        "spark.sluice.servers": args.servers,
        "spark.sluice.tokenFile": args.token_file,
        "spark.sluice.trustFile": args.trust_file,
        "spark.jars": args.jar,
        "spark.driver.extraClassPath": args.jar,
        "spark.executor.extraClassPath": args.jar,
    }


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.work_dir, exist_ok=True)
    setup_environment(args.work_dir)  # before pyspark is imported

    def conf_for(phase):
        conf = dict(BASE_CONF)
        conf["spark.local.dir"] = os.path.join(args.work_dir, f"local-{phase}")
        os.makedirs(conf["spark.local.dir"], exist_ok=True)
        if phase == "sluice":
            conf.update(sluice_conf(args))
        return conf

    print(f"jobs: {', '.join(args.job_names)}", flush=True)
    shared = load_references(args.reference_dir, args.job_names)
    to_run = [n for n in args.job_names if n not in shared]
    reference = run_all("sort", conf_for("sort"), to_run, args, None)
    save_references(args.reference_dir, reference)
    reference.update(shared)
    failed = [n for n, o in reference.items() if o.error is not None]
    if args.only_sort:
        print(f"sort phase: {len(args.job_names) - len(failed)}/{len(args.job_names)} jobs ran"
              + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
        return 1 if failed else 0

    phase = "sort2" if args.sort_vs_sort else "sluice"
    outcomes = run_all(phase, conf_for(phase), args.job_names, args, args.kill_pid_file,
                       reference=reference)
    # A result that differs from another version's sort result is held against this
    # version's sort shuffle before it counts as a mismatch.
    differ = [n for n in shared if outcomes[n].error is None
              and outcomes[n].value != reference[n].value]
    if differ:
        print(f"== sort shuffle on this version for {', '.join(differ)}", flush=True)
        rerun = run_all("sort", conf_for("sort"), differ, args, None)
        reference.update(rerun)
        for name in differ:
            report_comparison(phase, name, reference[name], outcomes[name])

    bad = [n for n in args.job_names
           if reference[n].error is not None or outcomes[n].error is not None
           or outcomes[n].value != reference[n].value]
    if bad:
        print(f"FAILED: {len(bad)}/{len(args.job_names)} jobs: {', '.join(bad)}", flush=True)
        return 1
    print(f"all {len(args.job_names)} jobs equal under sort and {phase}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
