#!/usr/bin/env python3
"""Generate test vectors for Spark's Murmur3 hash, as computed by a real Spark.

Spark's HashPartitioning assigns a row to partition
    pmod(hash(key_1, ..., key_k), num_partitions)
where `hash` is the Murmur3Hash expression with seed 42 (the SQL `hash()`
function / `pyspark.sql.functions.hash`).  This script builds DataFrames with
exact Spark types, asks Spark for `hash(...)` and `pmod(hash(...), n)` and
writes everything to splitter/tests/data/spark_hash_vectors.json, so the Rust
reimplementation in the splitter crate can be tested against it.

Run it with a Python that has pyspark installed, e.g.

    python3 -m venv /root/.cache/sluice/venv-spark-3.5
    /root/.cache/sluice/venv-spark-3.5/bin/pip install pyspark==3.5.9
    timeout 900 /root/.cache/sluice/venv-spark-3.5/bin/python \
        scripts/gen_spark_hash_vectors.py [output.json]

Output format (one value per column in "values"; JSON null is SQL NULL):
    boolean              true / false
    byte, short, int     JSON number
    long                 decimal string
    float                "0x" + 8 hex digits of the IEEE-754 bits
    double               "0x" + 16 hex digits of the IEEE-754 bits
    date                 JSON number, days since 1970-01-01
    timestamp            decimal string, microseconds since epoch (UTC)
    decimal(P,S)         unscaled integer as a decimal string
    string               JSON string
    binary               lowercase hex of the bytes ("" when empty)

The output is deterministic: all random values come from random.Random(SEED).

Besides writing the vectors, the script checks (and fails loudly otherwise):
  * every value Spark holds round-trips to the value we meant to write,
  * pmod(hash, n) from Spark equals Python's ((hash % n) + n) % n,
  * the interpreted (non-codegen) evaluation gives the same hashes,
  * for the ["int"] and ["string","string","long"] cases, df.repartition(n, cols)
    really puts every row in partition pmod(hash(cols), n), for n = 7 and 200.
"""

import decimal
import json
import math
import os
import random
import re
import shutil
import struct
import sys
import tempfile

# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

SEED = 20240601          # fixed seed: the output must be reproducible
NUM_RANDOM = 150         # random values per single-column case
NUM_RANDOM_MULTI = 150   # random rows per multi-column case
NUM_PARTITIONS = [1, 7, 200, 2000, 20000]
REPARTITION_CHECK_NS = [7, 200]
REPARTITION_CHECK_CASES = ["int", "string_string_long"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(REPO_ROOT, "splitter", "tests", "data",
                              "spark_hash_vectors.json")

INT8_MIN, INT8_MAX = -(2 ** 7), 2 ** 7 - 1
INT16_MIN, INT16_MAX = -(2 ** 15), 2 ** 15 - 1
INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


# --------------------------------------------------------------------------
# Environment: must be set before pyspark launches the JVM.
# --------------------------------------------------------------------------

def prepare_environment():
    """Make the local Spark run self-contained.

    * SPARK_LOCAL_IP: bind to loopback (no network needed).
    * SPARK_HOME: a stale value in the environment silently wins over the
      pip package, so point it at a private temp folder of symlinks to the
      pyspark package directories (keeps any work dirs out of site-packages).
    """
    import pyspark

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    pkg_dir = os.path.dirname(os.path.abspath(pyspark.__file__))
    home = tempfile.mkdtemp(prefix="sluice-spark-home-")
    for sub in ("bin", "jars", "python", "sbin"):
        src = os.path.join(pkg_dir, sub)
        if os.path.exists(src):
            os.symlink(src, os.path.join(home, sub))
    os.environ["SPARK_HOME"] = home
    return home


# --------------------------------------------------------------------------
# Float helpers: build Python floats from exact bit patterns.
# --------------------------------------------------------------------------

def f32_from_bits(bits):
    """Python float holding exactly the float32 value with these bits."""
    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f64_from_bits(bits):
    return struct.unpack("<d", struct.pack("<Q", bits & 0xFFFFFFFFFFFFFFFF))[0]


def f64_bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


# --------------------------------------------------------------------------
# Type descriptions.
#
# A "canonical" value is what goes into the JSON (already in JSON encoding,
# see module docstring).  For each type we need:
#   spark_type()     -> the final Spark DataType of the column
#   to_spark(v)      -> Python object handed to createDataFrame (or None)
#   load_type()      -> DataType used in createDataFrame (may differ: date and
#                       timestamp are loaded as int/long and converted in SQL)
#   load_expr(c)     -> SQL turning the loaded column into the final type
#   back_expr(c)     -> SQL reading the final column back for the round-trip
#   from_spark(x)    -> canonical value from what back_expr collects
# --------------------------------------------------------------------------

def parse_decimal_type(name):
    m = re.fullmatch(r"decimal\((\d+),(\d+)\)", name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def make_type(name):
    from pyspark.sql import types as T

    ident = lambda c: c  # noqa: E731

    if name == "boolean":
        return dict(spark=T.BooleanType(), load=T.BooleanType(),
                    to_spark=lambda v: v, load_expr=ident, back_expr=ident,
                    from_spark=lambda x: x)
    if name in ("byte", "short", "int"):
        st = {"byte": T.ByteType(), "short": T.ShortType(),
              "int": T.IntegerType()}[name]
        return dict(spark=st, load=st, to_spark=lambda v: v,
                    load_expr=ident, back_expr=ident, from_spark=lambda x: x)
    if name == "long":
        return dict(spark=T.LongType(), load=T.LongType(),
                    to_spark=int, load_expr=ident, back_expr=ident,
                    from_spark=str)
    if name == "float":
        # The float reaches the JVM as a Python double (exact for every
        # float32 value) and is read back the same way.  Only NaN payloads
        # may change on the way (0x7f800001 arrives as 0x7fc00001), which
        # does not matter: Spark hashes every NaN as 0x7fc00000.
        return dict(spark=T.FloatType(), load=T.FloatType(),
                    to_spark=lambda v: f32_from_bits(int(v, 16)),
                    load_expr=ident, back_expr=ident,
                    from_spark=lambda x: "0x%08x" % f32_bits(x))
    if name == "double":
        return dict(spark=T.DoubleType(), load=T.DoubleType(),
                    to_spark=lambda v: f64_from_bits(int(v, 16)),
                    load_expr=ident, back_expr=ident,
                    from_spark=lambda x: "0x%016x" % f64_bits(x))
    if name == "date":
        # Python's datetime.date only covers years 1..9999, but Spark's
        # DateType is any int32 day number.  Load an int and convert in SQL.
        return dict(spark=T.DateType(), load=T.IntegerType(),
                    to_spark=lambda v: v,
                    load_expr=lambda c: "date_from_unix_date(%s)" % c,
                    back_expr=lambda c: "unix_date(%s)" % c,
                    from_spark=lambda x: x)
    if name == "timestamp":
        # Same idea: TimestampType is any int64 microsecond count (UTC).
        return dict(spark=T.TimestampType(), load=T.LongType(),
                    to_spark=int,
                    load_expr=lambda c: "timestamp_micros(%s)" % c,
                    back_expr=lambda c: "unix_micros(%s)" % c,
                    from_spark=str)
    ps = parse_decimal_type(name)
    if ps:
        p, s = ps
        dt = T.DecimalType(p, s)

        def to_dec(v, s=s):
            # Build the Decimal from a (sign, digits, exponent) tuple: exact,
            # independent of the decimal context precision (28 by default).
            u = int(v)
            return decimal.Decimal((1 if u < 0 else 0,
                                    tuple(int(d) for d in str(abs(u))), -s))

        def from_dec(x, s=s):
            sign, digits, exp = x.as_tuple()
            u = int("".join(map(str, digits)) or "0")
            u = -u if sign else u
            # Rescale to exactly `s` fractional digits.  The collected Decimal
            # may carry a different exponent (e.g. Decimal('-1.00E-10') for
            # unscaled -1 at scale 10), so allow both directions but insist
            # the value is exact.
            shift = exp + s
            if shift >= 0:
                return str(u * 10 ** shift)
            q, r = divmod(u, 10 ** -shift)
            assert r == 0, ("decimal not representable at scale", x, s)
            return str(q)

        return dict(spark=dt, load=dt, to_spark=to_dec, load_expr=ident,
                    back_expr=ident, from_spark=from_dec)
    if name == "string":
        return dict(spark=T.StringType(), load=T.StringType(),
                    to_spark=lambda v: v, load_expr=ident, back_expr=ident,
                    from_spark=lambda x: x)
    if name == "binary":
        return dict(spark=T.BinaryType(), load=T.BinaryType(),
                    to_spark=lambda v: bytearray(bytes.fromhex(v)),
                    load_expr=ident, back_expr=ident,
                    from_spark=lambda x: bytes(x).hex())
    raise ValueError("unknown type " + name)


# --------------------------------------------------------------------------
# Value generators: edge values and random values, in canonical encoding.
# --------------------------------------------------------------------------

# Characters of 1, 2, 3 and 4 UTF-8 bytes, used to build non-ASCII strings.
CHARS_1 = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-,.\t\n\x00~"
CHARS_2 = "éüßñçøΩπЖж\u00ff\u0100\u07ff"
CHARS_3 = "日本語中文한국\u20ac\u0800\uffef\ufffd"
CHARS_4 = "😀🎉🚀\U0001f9ea\U00010000\U0010ffff"


def utf8_len(s):
    return len(s.encode("utf-8"))


def random_string(rng, max_bytes):
    """Random string with mixed 1-4 byte characters, at most max_bytes."""
    target = rng.randint(0, max_bytes)
    out = []
    n = 0
    while True:
        pool = rng.choices([CHARS_1, CHARS_2, CHARS_3, CHARS_4],
                           weights=[6, 2, 2, 1])[0]
        ch = rng.choice(pool)
        if n + utf8_len(ch) > target:
            break
        out.append(ch)
        n += utf8_len(ch)
    return "".join(out)


def edge_bool():
    return [True, False, None, True, False]


def rand_bool(rng):
    return rng.choice([True, False])


def edge_intlike(lo, hi):
    vals = [0, -1, 1, lo, hi, None, lo + 1, hi - 1, 2, -2, 42, -42]
    # powers of two around each byte boundary
    for k in (7, 8, 15, 16, 23, 24, 31, 32, 47, 48, 62, 63):
        for v in (2 ** k - 1, 2 ** k, -(2 ** k), -(2 ** k) - 1):
            if lo <= v <= hi:
                vals.append(v)
    out = []
    for v in vals:  # dedupe, keep order (None once)
        if v not in out:
            out.append(v)
    return out


def rand_intlike(rng, lo, hi):
    # half uniform over the full range, half small-ish numbers
    if rng.random() < 0.5:
        return rng.randint(lo, hi)
    bits = rng.randint(1, (hi - lo).bit_length() - 1)
    return max(lo, min(hi, rng.randint(-(2 ** bits), 2 ** bits)))


FLOAT_EDGE_BITS = [
    0x00000000,  # +0.0
    0x80000000,  # -0.0
    0x3F800000,  # 1.0
    0xBF800000,  # -1.0
    0x7FC00000,  # canonical NaN
    0xFFC00000,  # NaN with sign bit set
    0x7F800001,  # signalling NaN payload
    0x7FBFFFFF,  # another NaN payload
    0x7F800000,  # +inf
    0xFF800000,  # -inf
    0x7F7FFFFF,  # max finite
    0xFF7FFFFF,  # min finite (most negative)
    0x00800000,  # min positive normal
    0x00000001,  # min positive subnormal
    0x80000001,  # max negative subnormal
    0x007FFFFF,  # max subnormal
    0x40490FDB,  # pi
    0x3DCCCCCD,  # 0.1
    0x4B800000,  # 16777216.0 (2^24)
]

DOUBLE_EDGE_BITS = [
    0x0000000000000000,  # +0.0
    0x8000000000000000,  # -0.0
    0x3FF0000000000000,  # 1.0
    0xBFF0000000000000,  # -1.0
    0x7FF8000000000000,  # canonical NaN
    0xFFF8000000000000,  # NaN with sign bit set
    0x7FF0000000000001,  # signalling NaN payload
    0x7FF7FFFFFFFFFFFF,  # another NaN payload
    0x7FF0000000000000,  # +inf
    0xFFF0000000000000,  # -inf
    0x7FEFFFFFFFFFFFFF,  # max finite
    0xFFEFFFFFFFFFFFFF,  # most negative finite
    0x0010000000000000,  # min positive normal
    0x0000000000000001,  # min positive subnormal
    0x8000000000000001,  # max negative subnormal
    0x000FFFFFFFFFFFFF,  # max subnormal
    0x400921FB54442D18,  # pi
    0x3FB999999999999A,  # 0.1
    0x4340000000000000,  # 2^53
]


def edge_float():
    return ["0x%08x" % b for b in FLOAT_EDGE_BITS] + [None]


def rand_float(rng):
    r = rng.random()
    if r < 0.4:   # arbitrary bit pattern (any class: normal, subnormal, NaN...)
        return "0x%08x" % rng.getrandbits(32)
    if r < 0.8:   # "ordinary" numbers
        return "0x%08x" % f32_bits(rng.uniform(-1e6, 1e6))
    return "0x%08x" % f32_bits(float(rng.randint(-1000, 1000)))  # integers


def edge_double():
    return ["0x%016x" % b for b in DOUBLE_EDGE_BITS] + [None]


def rand_double(rng):
    r = rng.random()
    if r < 0.4:
        return "0x%016x" % rng.getrandbits(64)
    if r < 0.8:
        return "0x%016x" % f64_bits(rng.uniform(-1e12, 1e12))
    return "0x%016x" % f64_bits(float(rng.randint(-1000, 1000)))


DATE_EDGE = [0, -1, 1, None, INT32_MIN, INT32_MAX,
             -719162,   # 0001-01-01
             2932896,   # 9999-12-31
             -141427,   # 1582-10-15 (Gregorian cutover)
             10957,     # 2000-01-01
             19723]     # 2024-01-01


def rand_date(rng):
    if rng.random() < 0.2:
        return rng.randint(INT32_MIN, INT32_MAX)
    return rng.randint(-25567, 47482)  # 1900-01-01 .. 2100-01-01


TS_EDGE = [0, -1, 1, None, INT64_MIN, INT64_MAX,
           -62135596800000000,   # 0001-01-01T00:00:00Z
           253402300799999999,   # 9999-12-31T23:59:59.999999Z
           946684800000000,      # 2000-01-01T00:00:00Z
           1704067200123456]     # 2024-01-01T00:00:00.123456Z


def rand_timestamp(rng):
    if rng.random() < 0.2:
        return rng.randint(INT64_MIN, INT64_MAX)
    # 1900 .. 2100, microsecond precision
    return rng.randint(-2208988800000000, 4102444800000000)


def edge_decimal(p):
    m = 10 ** p - 1  # largest unscaled value
    vals = [0, -1, 1, None, m, -m, m - 1, -m + 1, 42, -42, 100, -100]
    # boundaries of the two's complement byte length (matters for p > 18,
    # where Spark hashes BigInteger.toByteArray()) and of int32/int64.
    for k in (7, 8, 15, 16, 31, 32, 63, 64, 71, 72, 126, 127):
        for v in (2 ** k - 1, 2 ** k, -(2 ** k), -(2 ** k) - 1):
            if -m <= v <= m:
                vals.append(v)
    out = []
    for v in vals:
        if v not in out:
            out.append(v)
    return [None if v is None else str(v) for v in out]


def rand_decimal(rng, p):
    m = 10 ** p - 1
    r = rng.random()
    if r < 0.5:
        return str(rng.randint(-m, m))
    # fewer digits, so small magnitudes are well covered too
    d = rng.randint(1, p)
    return str(rng.randint(-(10 ** d - 1), 10 ** d - 1))


def edge_string():
    vals = ["", None, "a", "é", "日本語", "😀", "hello", "Hello, World!",
            "\x00", "a\x00b", " ", "ÿ", "NULL", "null"]
    # every UTF-8 byte length 0..12, ASCII only
    for n in range(0, 13):
        vals.append("abcdefghijklm"[:n])
    # every byte length 1..12 ending with a multibyte char (so the tail of
    # the murmur loop sees bytes >= 0x80)
    for n in range(1, 13):
        for tail in ("é", "日", "😀"):
            k = n - utf8_len(tail)
            if k >= 0:
                vals.append("x" * k + tail)
    vals += [
        "日本語のテキスト",
        "Grüße aus Köln 🎉",
        "a" * 100,
        "0123456789" * 10 + "x",                      # 101 bytes
        "é" * 64,                                      # 128 bytes
        "日本語" * 40 + "😀",                          # 364 bytes
        "The quick brown fox jumps over the lazy dog. " * 25,  # 1125 bytes
    ]
    out = []
    for v in vals:
        if v not in out:
            out.append(v)
    return out


def rand_string(rng):
    return random_string(rng, 200 if rng.random() < 0.1 else 40)


def edge_binary():
    vals = ["", None, "00", "ff", "80", "7f", "0000", "ffff", "8081", "00ff"]
    # every length 0..12 of high bytes (0x80..0xff) and low bytes
    for n in range(0, 13):
        vals.append(bytes((0x80 + 7 * i) % 0x80 + 0x80 for i in range(n)).hex())
        vals.append(bytes((0x11 * i) & 0x7F for i in range(n)).hex())
    vals += [bytes(range(256)).hex(), ("ff" * 101), ("80" * 100)]
    out = []
    for v in vals:
        if v not in out:
            out.append(v)
    return out


def rand_binary(rng):
    n = rng.randint(0, 200 if rng.random() < 0.1 else 24)
    return bytes(rng.getrandbits(8) for _ in range(n)).hex()


def generators(name):
    """(edge values list, random value function) for a type name."""
    if name == "boolean":
        return edge_bool(), rand_bool
    if name == "byte":
        return edge_intlike(INT8_MIN, INT8_MAX), \
            lambda r: rand_intlike(r, INT8_MIN, INT8_MAX)
    if name == "short":
        return edge_intlike(INT16_MIN, INT16_MAX), \
            lambda r: rand_intlike(r, INT16_MIN, INT16_MAX)
    if name == "int":
        return edge_intlike(INT32_MIN, INT32_MAX), \
            lambda r: rand_intlike(r, INT32_MIN, INT32_MAX)
    if name == "long":
        return [None if v is None else str(v)
                for v in edge_intlike(INT64_MIN, INT64_MAX)], \
            lambda r: str(rand_intlike(r, INT64_MIN, INT64_MAX))
    if name == "float":
        return edge_float(), rand_float
    if name == "double":
        return edge_double(), rand_double
    if name == "date":
        return list(DATE_EDGE), rand_date
    if name == "timestamp":
        return [None if v is None else str(v) for v in TS_EDGE], \
            lambda r: str(rand_timestamp(r))
    ps = parse_decimal_type(name)
    if ps:
        p = ps[0]
        return edge_decimal(p), lambda r: rand_decimal(r, p)
    if name == "string":
        return edge_string(), rand_string
    if name == "binary":
        return edge_binary(), rand_binary
    raise ValueError(name)


# --------------------------------------------------------------------------
# Case construction
# --------------------------------------------------------------------------

SINGLE_TYPES = ["boolean", "byte", "short", "int", "long", "float", "double",
                "date", "timestamp", "decimal(7,2)", "decimal(15,2)",
                "decimal(18,0)", "decimal(38,10)", "decimal(20,0)", "string",
                "binary"]

MULTI_TYPES = [["int", "string"],
               ["long", "date"],
               ["string", "string", "long"],
               ["decimal(15,2)", "double", "binary"]]


def case_name(types):
    return "_".join(re.sub(r"[^a-z0-9]+", "", t) if not t.startswith("decimal")
                    else "decimal%s" % "_".join(map(str, parse_decimal_type(t)))
                    for t in types)


def single_case(rng, name):
    edges, rand = generators(name)
    # a boolean has only 3 possible values; a few random ones are plenty
    n_random = 10 if name == "boolean" else NUM_RANDOM
    rows = [[v] for v in edges] + [[rand(rng)] for _ in range(n_random)]
    return {"name": case_name([name]), "types": [name], "rows": rows}


def multi_case(rng, types):
    gens = [generators(t) for t in types]
    k = len(types)
    rows = []
    # all-null rows (hash must stay at the seed, 42)
    rows.append([None] * k)
    rows.append([None] * k)
    # each column alone non-null (and each column alone null)
    for i in range(k):
        rows.append([gens[j][1](rng) if j == i else None for j in range(k)])
        rows.append([None if j == i else gens[j][1](rng) for j in range(k)])
    # edge values of each column, zipped (shorter lists cycle)
    n_edges = max(len(g[0]) for g in gens)
    for e in range(n_edges):
        rows.append([g[0][e % len(g[0])] for g in gens])
    # random rows, ~15 % nulls per cell
    for _ in range(NUM_RANDOM_MULTI):
        rows.append([None if rng.random() < 0.15 else g[1](rng) for g in gens])
    return {"name": case_name(types), "types": list(types), "rows": rows}


def build_cases():
    rng = random.Random(SEED)
    cases = [single_case(rng, t) for t in SINGLE_TYPES]
    cases += [multi_case(rng, ts) for ts in MULTI_TYPES]
    return cases


# --------------------------------------------------------------------------
# Spark evaluation
# --------------------------------------------------------------------------

def canonical_equal(type_name, want, got):
    """Compare an intended canonical value with what Spark holds."""
    if want is None or got is None:
        return want is None and got is None
    if type_name == "float":
        a, b = f32_from_bits(int(want, 16)), f32_from_bits(int(got, 16))
        # NaN payloads may not survive the Python -> JVM trip; Spark's hash
        # maps every NaN to the same bits anyway (floatToIntBits).
        return (math.isnan(a) and math.isnan(b)) or want == got
    if type_name == "double":
        a, b = f64_from_bits(int(want, 16)), f64_from_bits(int(got, 16))
        return (math.isnan(a) and math.isnan(b)) or want == got
    return want == got


def make_dataframe(spark, case):
    """DataFrame with columns idx (row order) and c0..c{k-1} of exact types."""
    from pyspark.sql import types as T

    tinfo = [make_type(t) for t in case["types"]]
    cols = ["c%d" % i for i in range(len(tinfo))]
    load_schema = T.StructType(
        [T.StructField("idx", T.IntegerType(), False)]
        + [T.StructField(c, ti["load"], True) for c, ti in zip(cols, tinfo)])
    data = []
    for i, row in enumerate(case["rows"]):
        data.append(tuple([i] + [None if v is None else ti["to_spark"](v)
                                 for v, ti in zip(row, tinfo)]))
    raw = spark.createDataFrame(data, schema=load_schema, verifySchema=True)
    df = raw.selectExpr("idx", *["%s AS %s" % (ti["load_expr"](c), c)
                                 for c, ti in zip(cols, tinfo)])
    # The final schema must be exactly what the case claims.
    for c, ti in zip(cols, tinfo):
        got = df.schema[c].dataType
        assert got == ti["spark"], (case["name"], c, got, ti["spark"])
    return df, cols, tinfo


def hash_rows(spark, case):
    """Return [(hash, [pmod...])] for each row, plus round-trip checks."""
    from pyspark.sql import functions as F

    df, cols, tinfo = make_dataframe(spark, case)
    col_list = ", ".join(cols)
    exprs = [F.col("idx"), F.hash(*cols).alias("h")]
    exprs += [F.expr("pmod(hash(%s), %d)" % (col_list, n)).alias("p%d" % n)
              for n in NUM_PARTITIONS]
    exprs += [F.expr(ti["back_expr"](c)).alias("back_" + c)
              for c, ti in zip(cols, tinfo)]
    out = df.select(*exprs).orderBy("idx").collect()
    assert len(out) == len(case["rows"]), case["name"]

    results = []
    for i, (r, want_row) in enumerate(zip(out, case["rows"])):
        assert r["idx"] == i
        # Round trip: Spark must hold the value we meant to write.
        for j, (c, ti) in enumerate(zip(cols, tinfo)):
            back = r["back_" + c]
            got = None if back is None else ti["from_spark"](back)
            if not canonical_equal(case["types"][j], want_row[j], got):
                raise AssertionError("round trip failed in %s row %d col %s: "
                                     "wrote %r, Spark holds %r"
                                     % (case["name"], i, c, want_row[j], got))
        h = r["h"]
        assert INT32_MIN <= h <= INT32_MAX
        pm = [r["p%d" % n] for n in NUM_PARTITIONS]
        # pmod sanity: Python's % already is a non-negative modulo for n > 0
        assert pm == [h % n for n in NUM_PARTITIONS], (case["name"], i, h, pm)
        results.append((h, pm))
    return results


def interpreted_hashes(spark, case):
    """Hashes computed with code generation switched off (interpreted path)."""
    from pyspark.sql import functions as F

    df, cols, _ = make_dataframe(spark, case)
    return [r["h"] for r in
            df.select("idx", F.hash(*cols).alias("h")).orderBy("idx").collect()]


def repartition_check(spark, case, hashes):
    """Assert df.repartition(n, cols) puts row i in partition pmod(hash_i, n)."""
    from pyspark.sql import functions as F

    df, cols, _ = make_dataframe(spark, case)
    for n in REPARTITION_CHECK_NS:
        got = (df.repartition(n, *cols)
                 .select("idx", F.spark_partition_id().alias("pid"))
                 .collect())
        assert len(got) == len(hashes), (case["name"], n)
        pids = {r["idx"]: r["pid"] for r in got}
        bad = [(i, pids[i], h % n) for i, h in enumerate(hashes)
               if pids[i] != h % n]
        if bad:
            raise AssertionError("repartition(%d) of %s disagrees with "
                                 "pmod(hash, n) on %d rows, e.g. %r"
                                 % (n, case["name"], len(bad), bad[:5]))
        used = len(set(pids.values()))
        print("  repartition check %s n=%d: OK (%d rows, %d partitions used)"
              % (case["name"], n, len(hashes), used))


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------

def write_json(path, version, cases):
    """Write the vectors; one row per line keeps the file diffable."""
    d = lambda x: json.dumps(x, ensure_ascii=False)  # noqa: E731
    lines = ["{",
             '  "spark_version": %s,' % d(version),
             '  "num_partitions": %s,' % d(NUM_PARTITIONS),
             '  "cases": [']
    for ci, case in enumerate(cases):
        lines.append("    {")
        lines.append('      "name": %s,' % d(case["name"]))
        lines.append('      "types": %s,' % d(case["types"]))
        lines.append('      "rows": [')
        n = len(case["rows"])
        for ri, row in enumerate(case["rows"]):
            obj = {"values": row, "hash": case["hashes"][ri][0],
                   "pmod": case["hashes"][ri][1]}
            lines.append("        " + d(obj) + ("," if ri + 1 < n else ""))
        lines.append("      ]")
        lines.append("    }" + ("," if ci + 1 < len(cases) else ""))
    lines.append("  ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # must be valid JSON
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return len(text.encode("utf-8"))


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUTPUT
    spark_home = prepare_environment()

    import pyspark
    from pyspark.sql import SparkSession

    warehouse = tempfile.mkdtemp(prefix="sluice-spark-warehouse-")
    spark = (SparkSession.builder
             .master("local[1]")
             .appName("sluice-gen-spark-hash-vectors")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.warehouse.dir", warehouse)
             .config("spark.driver.memory", "1g")
             .config("spark.sql.shuffle.partitions", "4")
             # Keep repartition(n, cols) at exactly n partitions (AQE would
             # not change an explicit n, but leave no room for doubt).
             .config("spark.sql.adaptive.enabled", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    print("pyspark %s, Spark %s, SPARK_HOME=%s"
          % (pyspark.__version__, spark.version, spark_home))

    cases = build_cases()
    for case in cases:
        case["hashes"] = hash_rows(spark, case)
        print("  %-28s %4d rows" % (case["name"], len(case["rows"])))

    # Interpreted evaluation must agree with generated code.
    spark.conf.set("spark.sql.codegen.wholeStage", "false")
    spark.conf.set("spark.sql.codegen.factoryMode", "NO_CODEGEN")
    for case in cases:
        interp = interpreted_hashes(spark, case)
        codegen = [h for h, _ in case["hashes"]]
        if interp != codegen:
            bad = [i for i, (a, b) in enumerate(zip(interp, codegen)) if a != b]
            raise AssertionError("interpreted hash differs from codegen in %s "
                                 "rows %r" % (case["name"], bad[:10]))
    print("  interpreted (NO_CODEGEN) hashes agree with codegen: OK")
    spark.conf.unset("spark.sql.codegen.factoryMode")
    spark.conf.unset("spark.sql.codegen.wholeStage")

    # HashPartitioning cross-check.
    by_name = {c["name"]: c for c in cases}
    for name in REPARTITION_CHECK_CASES:
        case = by_name[name]
        repartition_check(spark, case, [h for h, _ in case["hashes"]])

    spark.stop()
    shutil.rmtree(warehouse, ignore_errors=True)
    shutil.rmtree(spark_home, ignore_errors=True)

    size = write_json(out_path, pyspark.__version__, cases)
    total = sum(len(c["rows"]) for c in cases)
    print("wrote %s: %d cases, %d rows, %d bytes"
          % (out_path, len(cases), total, size))


if __name__ == "__main__":
    main()
