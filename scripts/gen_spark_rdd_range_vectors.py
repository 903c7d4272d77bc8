#!/usr/bin/env python3
"""Generate test vectors for Spark's RDD range partitioner with ascending = false.

`rdd.sortByKey(ascending=False)` in Scala and Java builds
`org.apache.spark.RangePartitioner(P, rdd, ascending = false)`: it samples ascending
bounds, finds the number i of bounds a key is greater than, and returns
`bounds - i`. This script builds that partitioner in a real Spark's JVM (through
py4j) for long and string keys, reads the bounds it sampled, and asks it for the
partition of every key. The output, splitter/tests/data/spark_rdd_range_vectors.json,
holds per case the keys, and per partition count the bounds and every key's partition.

Run it with a Python that has pyspark, e.g.

    timeout 900 ~/.cache/sluice/venv-spark-3.5/bin/python scripts/gen_spark_rdd_range_vectors.py
"""

import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(os.path.dirname(HERE), "splitter", "tests", "data",
                              "spark_rdd_range_vectors.json")
# Up to 128 bounds Spark searches them linearly, beyond that by binary search.
NUM_PARTITIONS = [3, 16, 300]


def long_keys(rng):
    # py4j hands a Python int to the JVM as an Integer when it fits in 32 bits, and the
    # partitioner's Ordering.Long cannot compare those: every key here is outside.
    base = 2 ** 32
    edges = [-(2 ** 63), 2 ** 63 - 1, base, -base, 2 ** 31, -(2 ** 31) - 1]
    spread = [rng.randrange(-10 ** 6, 10 ** 6) for _ in range(3000)]
    return edges + [k + base if k >= 0 else k - base for k in spread]


def string_keys(rng):
    words = ["", "a", "aa", "ab", "b", "Z", "é", "日本", "日本語", "\U0001F600", "\ufb01"]
    letters = "abcdefghijklmnopqrstuvwxyzAZ09é日"
    rand = ["".join(rng.choice(letters) for _ in range(rng.randrange(0, 6)))
            for _ in range(3000)]
    return words + rand


def ordering(jvm, kind):
    name = {"long": "Ordering$Long$", "string": "Ordering$String$"}[kind]
    return getattr(getattr(jvm.scala.math, name), "MODULE$")


def class_tag(jvm, kind):
    tags = jvm.scala.reflect.ClassTag
    if kind == "long":
        return tags.Long()
    return tags.apply(jvm.java.lang.Class.forName("java.lang.String"))


def range_bounds(partitioner):
    """The private `rangeBounds` array of a RangePartitioner, by reflection."""
    for field in partitioner.getClass().getDeclaredFields():
        if field.getName().endswith("rangeBounds"):
            field.setAccessible(True)
            return list(field.get(partitioner))
    raise RuntimeError("RangePartitioner has no rangeBounds field")


def vector(sc, kind, keys, n):
    jvm = sc._jvm
    pairs = jvm.java.util.ArrayList()
    for k in keys:
        pairs.add(jvm.scala.Tuple2(k, 0))
    rdd = sc._jsc.parallelize(pairs, 4).rdd()
    partitioner = jvm.org.apache.spark.RangePartitioner(
        n, rdd, False, 20, ordering(jvm, kind), class_tag(jvm, kind))
    bounds = range_bounds(partitioner)
    pids = [partitioner.getPartition(k) for k in keys]
    assert partitioner.numPartitions() == len(bounds) + 1, (kind, n)
    return {
        "num_partitions": n,
        "bounds": [str(b) if kind == "long" else b for b in bounds],
        "pids": pids,
    }


def main():
    output = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUTPUT
    from pyspark.sql import SparkSession
    spark = (SparkSession.builder.master("local[2]")
             .config("spark.ui.enabled", "false").getOrCreate())
    sc = spark.sparkContext
    rng = random.Random(20261121)
    cases = []
    # Few keys, so every one is sampled and becomes a bound: the bounds then separate
    # U+E000..U+FFFF from the characters above U+FFFF, where Java's UTF-16 order and
    # UTF-8 byte order disagree.
    utf16 = ["a", "z", "\u00e9", "\u65e5", "\ue000", "\ufb01", "\uffff", "\U00010000",
             "\U0001F600", "a\U0001F600", "a\ufb01"]
    for kind, keys, counts in [("long", long_keys(rng), NUM_PARTITIONS),
                               ("string", string_keys(rng), NUM_PARTITIONS),
                               ("string", utf16, [4, 12])]:
        cases.append({
            "kind": kind,
            "keys": [str(k) for k in keys] if kind == "long" else keys,
            "partitionings": [vector(sc, kind, keys, n) for n in counts],
        })
    doc = {
        "spark_version": spark.version,
        "what": "org.apache.spark.RangePartitioner(P, rdd, ascending = false): bounds "
                "and getPartition of every key",
        "cases": cases,
    }
    with open(output, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=0)
        f.write("\n")
    spark.stop()
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
