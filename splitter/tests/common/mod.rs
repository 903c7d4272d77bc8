//! Reading the Spark test vectors (scripts/gen_spark_hash_vectors.py's value encoding)
//! into Arrow columns.

use std::sync::Arc;

use arrow_array::builder::*;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde_json::Value;

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
pub fn column(t: &str, values: &[&Value]) -> (DataType, ArrayRef) {
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

/// A case's rows as a batch with columns c0..ck of the case's types; `values` picks a
/// row's list of values out of its JSON.
pub fn case_batch(case: &Value, values: impl Fn(&Value) -> &Value) -> RecordBatch {
    let types = case["types"].as_array().unwrap();
    let rows = case["rows"].as_array().unwrap();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (c, t) in types.iter().enumerate() {
        let cells: Vec<&Value> = rows.iter().map(|r| &values(r)[c]).collect();
        let (dt, array) = column(t.as_str().unwrap(), &cells);
        fields.push(Field::new(format!("c{c}"), dt, true));
        columns.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}
