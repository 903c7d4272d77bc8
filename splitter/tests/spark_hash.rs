//! Hash partition ids must equal the ids a real Spark computes. The expected values in
//! data/spark_hash_vectors.json come from pyspark (scripts/gen_spark_hash_vectors.py).

mod common;

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use serde_json::Value;
use sluice_splitter::{PartitionSpec, Partitioner};

const VECTORS: &str = include_str!("data/spark_hash_vectors.json");

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
        let rows = case["rows"].as_array().unwrap();
        let batch = common::case_batch(case, |row| &row["values"]);
        let schema = batch.schema();
        let keys: Vec<usize> = (0..batch.num_columns()).collect();
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
