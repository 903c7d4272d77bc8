//! Range partition ids must equal the ids a real Spark computes for
//! `repartitionByRange`. The vectors in data/spark_range_vectors.json come from pyspark
//! (scripts/gen_spark_range_vectors.py): every row's partition id, and the bounds Spark
//! sampled, as the rows that hold them. Reversed ranges must equal an RDD
//! `RangePartitioner` with `ascending = false`, built in Spark's JVM
//! (scripts/gen_spark_rdd_range_vectors.py, data/spark_rdd_range_vectors.json).

mod common;

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema};
use arrow_select::take::take_record_batch;
use serde_json::Value;
use sluice_splitter::{PartitionSpec, Partitioner, RangeKey, SplitError};

const VECTORS: &str = include_str!("data/spark_range_vectors.json");
const RDD_VECTORS: &str = include_str!("data/spark_rdd_range_vectors.json");

fn indices(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as u32)
        .collect()
}

fn range_ids(
    batch: &RecordBatch,
    keys: Vec<RangeKey>,
    bounds: RecordBatch,
    n: u32,
    reversed: bool,
) -> Vec<u32> {
    let spec = PartitionSpec::Range {
        keys,
        bounds,
        reversed,
    };
    let mut p = Partitioner::new(spec, n, &batch.schema()).unwrap();
    let mut ids = Vec::new();
    p.partition(batch, &mut ids).unwrap();
    ids
}

#[test]
fn range_partition_ids_match_real_spark() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    let mut checked = 0;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let batch = common::case_batch(case, |row| row);
        for v in case["partitionings"].as_array().unwrap() {
            let keys: Vec<RangeKey> = v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| RangeKey {
                    column: k["column"].as_u64().unwrap() as usize,
                    descending: k["descending"].as_bool().unwrap(),
                    nulls_first: k["nulls_first"].as_bool().unwrap(),
                })
                .collect();
            let bound_rows = UInt32Array::from(indices(&v["bounds"]));
            let bounds = take_record_batch(&batch, &bound_rows).unwrap();
            let n = v["num_partitions"].as_u64().unwrap() as u32;
            let ids = range_ids(&batch, keys.clone(), bounds, n, false);
            let expected = indices(&v["pids"]);
            for (r, (&got, &want)) in ids.iter().zip(&expected).enumerate() {
                assert_eq!(
                    got, want,
                    "case {name}, row {r} ({:?}), P={n}, keys {keys:?}",
                    case["rows"][r]
                );
            }
            assert_eq!(ids.len(), expected.len());
            checked += ids.len();
        }
    }
    assert!(checked > 10_000, "only {checked} ids checked");
}

fn one_column(name: &str, array: arrow_array::ArrayRef) -> RecordBatch {
    let schema = Schema::new(vec![Field::new(name, array.data_type().clone(), true)]);
    RecordBatch::try_new(Arc::new(schema), vec![array]).unwrap()
}

#[test]
fn nan_sorts_last_and_negative_zero_equals_zero() {
    let batch = one_column(
        "d",
        Arc::new(Float64Array::from(vec![
            Some(-0.0),
            Some(0.0),
            Some(f64::NAN),
            Some(-f64::NAN),
            Some(f64::INFINITY),
            None,
        ])),
    );
    let bounds = one_column("d", Arc::new(Float64Array::from(vec![0.0, f64::INFINITY])));
    let ids = range_ids(&batch, vec![RangeKey::ascending(0)], bounds, 3, false);
    assert_eq!(ids, vec![0, 0, 2, 2, 1, 0]);
}

#[test]
fn invalid_bounds_are_typed_errors() {
    let batch = one_column("s", Arc::new(StringArray::from(vec!["a"])));
    let schema = batch.schema();
    let err = |bounds: RecordBatch, n: u32| {
        let spec = PartitionSpec::Range {
            keys: vec![RangeKey::ascending(0)],
            bounds,
            reversed: false,
        };
        match Partitioner::new(spec, n, &schema) {
            Err(SplitError::RangeBounds(why)) => why,
            other => panic!("expected RangeBounds, got {other:?}"),
        }
    };
    let unsorted = one_column("s", Arc::new(StringArray::from(vec!["b", "a"])));
    assert_eq!(err(unsorted, 3), "bound 1 does not sort after bound 0");
    let too_many = one_column("s", Arc::new(StringArray::from(vec!["a", "b"])));
    assert_eq!(err(too_many, 2), "2 bounds for 2 partitions");
    let wrong_type = one_column("s", Arc::new(Int32Array::from(vec![1])));
    assert_eq!(
        err(wrong_type, 2),
        format!(
            "bound column 0 has type {}, key column 0 has {}",
            DataType::Int32,
            DataType::Utf8
        )
    );
}

/// Keys of an RDD vector case as an Arrow column (longs are written as strings).
fn rdd_column(kind: &str, values: &[Value]) -> ArrayRef {
    match kind {
        "long" => Arc::new(Int64Array::from_iter_values(
            values
                .iter()
                .map(|v| v.as_str().unwrap().parse::<i64>().unwrap()),
        )),
        "string" => Arc::new(StringArray::from_iter_values(
            values.iter().map(|v| v.as_str().unwrap()),
        )),
        other => panic!("unknown key kind {other}"),
    }
}

#[test]
fn reversed_range_ids_match_an_rdd_range_partitioner_with_descending_order() {
    let doc: Value = serde_json::from_str(RDD_VECTORS).unwrap();
    let mut checked = 0;
    for case in doc["cases"].as_array().unwrap() {
        let kind = case["kind"].as_str().unwrap();
        let batch = one_column("k", rdd_column(kind, case["keys"].as_array().unwrap()));
        for v in case["partitionings"].as_array().unwrap() {
            let n = v["num_partitions"].as_u64().unwrap() as u32;
            let bounds = one_column("k", rdd_column(kind, v["bounds"].as_array().unwrap()));
            let ids = range_ids(&batch, vec![RangeKey::ascending(0)], bounds, n, true);
            let expected = indices(&v["pids"]);
            assert_eq!(ids.len(), expected.len());
            for (r, (&got, &want)) in ids.iter().zip(&expected).enumerate() {
                assert_eq!(got, want, "{kind} key {}, P={n}", case["keys"][r]);
            }
            checked += ids.len();
        }
    }
    assert!(checked > 15_000, "only {checked} ids checked");
}

#[test]
fn reversed_ranges_take_one_ascending_key_that_is_not_a_float() {
    let err = |batch: RecordBatch, keys: Vec<RangeKey>| {
        let bounds = batch.slice(0, 0);
        let spec = PartitionSpec::Range {
            keys,
            bounds,
            reversed: true,
        };
        match Partitioner::new(spec, 2, &batch.schema()) {
            Err(SplitError::RangeBounds(why)) => why,
            other => panic!("expected RangeBounds, got {other:?}"),
        }
    };
    let floats = one_column("d", Arc::new(Float64Array::from(vec![1.0])));
    assert_eq!(
        err(floats, vec![RangeKey::ascending(0)]),
        "a reversed (RDD) range partitioning takes no float key"
    );
    let ints = one_column("i", Arc::new(Int32Array::from(vec![1])));
    let descending = RangeKey {
        descending: true,
        ..RangeKey::ascending(0)
    };
    assert_eq!(
        err(ints, vec![descending]),
        "a reversed (RDD) range partitioning takes one ascending key"
    );
}
