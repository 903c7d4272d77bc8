//! Hash partition ids must equal the ids a real Spark computes. The expected values in
//! data/spark_hash_vectors.json come from pyspark (scripts/gen_spark_hash_vectors.py).

use std::sync::Arc;

use arrow_array::builder::*;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde_json::Value;
use sluice_splitter::{PartitionSpec, Partitioner};

const VECTORS: &str = include_str!("data/spark_hash_vectors.json");

fn parse_decimal_type(t: &str) -> Option<(u8, i8)> {
    let inner = t.strip_prefix("decimal(")?.strip_suffix(')')?;
    let (p, s) = inner.split_once(',')?;
    Some((p.trim().parse().ok()?, s.trim().parse().ok()?))
}

fn hex_bits(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn long(v: &Value) -> i64 {
    v.as_str().unwrap().parse().unwrap()
}

/// Builds one Arrow column of Spark type `t` from the JSON-encoded values.
fn column(t: &str, values: &[&Value]) -> (DataType, ArrayRef) {
    macro_rules! build {
        ($builder:expr, $dt:expr, |$v:ident| $conv:expr) => {{
            let mut b = $builder;
            for $v in values {
                if $v.is_null() {
                    b.append_null();
                } else {
                    b.append_value($conv);
                }
            }
            ($dt, Arc::new(b.finish()) as ArrayRef)
        }};
    }
    if let Some((p, s)) = parse_decimal_type(t) {
        let dt = DataType::Decimal128(p, s);
        let (dt, a) = build!(Decimal128Builder::new(), dt, |v| v
            .as_str()
            .unwrap()
            .parse::<i128>()
            .unwrap());
        let a = Arc::new(
            a.as_any()
                .downcast_ref::<arrow_array::Decimal128Array>()
                .unwrap()
                .clone()
                .with_precision_and_scale(p, s)
                .unwrap(),
        );
        return (dt, a);
    }
    match t {
        "boolean" => build!(BooleanBuilder::new(), DataType::Boolean, |v| v
            .as_bool()
            .unwrap()),
        "byte" => build!(Int8Builder::new(), DataType::Int8, |v| v.as_i64().unwrap()
            as i8),
        "short" => build!(
            Int16Builder::new(),
            DataType::Int16,
            |v| v.as_i64().unwrap() as i16
        ),
        "int" => build!(
            Int32Builder::new(),
            DataType::Int32,
            |v| v.as_i64().unwrap() as i32
        ),
        "long" => build!(Int64Builder::new(), DataType::Int64, |v| long(v)),
        "float" => build!(
            Float32Builder::new(),
            DataType::Float32,
            |v| f32::from_bits(hex_bits(v) as u32)
        ),
        "double" => build!(
            Float64Builder::new(),
            DataType::Float64,
            |v| f64::from_bits(hex_bits(v))
        ),
        "date" => build!(
            Date32Builder::new(),
            DataType::Date32,
            |v| v.as_i64().unwrap() as i32
        ),
        "timestamp" => build!(
            TimestampMicrosecondBuilder::new(),
            DataType::Timestamp(TimeUnit::Microsecond, None),
            |v| long(v)
        ),
        "string" => build!(StringBuilder::new(), DataType::Utf8, |v| v
            .as_str()
            .unwrap()),
        "binary" => build!(BinaryBuilder::new(), DataType::Binary, |v| hex_bytes(
            v.as_str().unwrap()
        )),
        other => panic!("unknown type {other}"),
    }
}

#[test]
fn hash_partition_ids_match_real_spark() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    let partition_counts: Vec<u32> = doc["num_partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap() as u32)
        .collect();
    let mut checked = 0;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let types: Vec<&str> = case["types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let rows = case["rows"].as_array().unwrap();
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for (c, t) in types.iter().enumerate() {
            let values: Vec<&Value> = rows.iter().map(|r| &r["values"][c]).collect();
            let (dt, array) = column(t, &values);
            fields.push(Field::new(format!("c{c}"), dt, true));
            columns.push(array);
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let keys: Vec<usize> = (0..types.len()).collect();
        for (k, &n) in partition_counts.iter().enumerate() {
            let mut partitioner = Partitioner::new(
                PartitionSpec::Hash {
                    columns: keys.clone(),
                },
                n,
                &schema,
            )
            .unwrap();
            let mut ids = Vec::new();
            partitioner.partition(&batch, &mut ids).unwrap();
            for (r, row) in rows.iter().enumerate() {
                let expected = row["pmod"][k].as_u64().unwrap() as u32;
                assert_eq!(
                    ids[r], expected,
                    "case {name}, row {r} ({:?}), P={n}: hash {}",
                    row["values"], row["hash"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 15_000, "only {checked} ids checked");
}

#[test]
fn dictionary_keys_hash_like_their_values() {
    use arrow_array::types::Int32Type;
    use arrow_array::DictionaryArray;
    let dict: DictionaryArray<Int32Type> =
        vec![Some("a"), None, Some("bb"), Some("a"), Some("日本語")]
            .into_iter()
            .collect();
    let plain = arrow_array::StringArray::from(vec![
        Some("a"),
        None,
        Some("bb"),
        Some("a"),
        Some("日本語"),
    ]);
    let ids = |array: ArrayRef| {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "k",
            array.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![array]).unwrap();
        let mut p =
            Partitioner::new(PartitionSpec::Hash { columns: vec![0] }, 2000, &schema).unwrap();
        let mut out = Vec::new();
        p.partition(&batch, &mut out).unwrap();
        out
    };
    assert_eq!(ids(Arc::new(dict)), ids(Arc::new(plain)));
}
