//! The two layouts records cross the JNI boundary in, and the Arrow batch they become.
//!
//! Java hands a writer `count` serialized records as one byte array plus each record's
//! partition id and end offset. The pushed batch has two columns, `pid` (Int32) and
//! `record` (Binary); the server splits it by the `pid` column. A fetched batch goes
//! back to Java as one byte array: little-endian `count`, `count` record lengths, then
//! the record bytes back to back.

use std::sync::{Arc, OnceLock};

use arrow_array::{Array, BinaryArray, Int32Array, RecordBatch};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::error::BridgeError;

/// Column 0 holds each row's partition id.
pub const PID_COLUMN: u32 = 0;

/// `pid: Int32, record: Binary`, neither nullable.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("pid", DataType::Int32, false),
                Field::new("record", DataType::Binary, false),
            ]))
        })
        .clone()
}

/// A batch from records `data[ends[i-1]..ends[i]]` bound for partitions `pids[i]`.
pub fn batch_from_java(
    pids: Vec<i32>,
    ends: &[i32],
    data: Vec<u8>,
    num_partitions: u32,
) -> Result<RecordBatch, BridgeError> {
    if pids.len() != ends.len() {
        return Err(BridgeError::InvalidArgument(format!(
            "{} partition ids for {} records",
            pids.len(),
            ends.len()
        )));
    }
    if let Some(bad) = pids.iter().find(|&&p| p < 0 || p as u32 >= num_partitions) {
        return Err(BridgeError::InvalidArgument(format!(
            "partition id {bad} outside 0..{num_partitions}"
        )));
    }
    let mut offsets = Vec::with_capacity(ends.len() + 1);
    offsets.push(0i32);
    offsets.extend_from_slice(ends);
    let monotonic = offsets.windows(2).all(|w| w[0] <= w[1]);
    let last = *offsets.last().expect("holds 0") as usize;
    if !monotonic || last > data.len() {
        return Err(BridgeError::InvalidArgument(format!(
            "record ends are not increasing within the {} data bytes",
            data.len()
        )));
    }
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    let records = BinaryArray::try_new(offsets, Buffer::from_vec(data), None)
        .map_err(|e| BridgeError::InvalidArgument(e.to_string()))?;
    RecordBatch::try_new(
        schema(),
        vec![Arc::new(Int32Array::from(pids)), Arc::new(records)],
    )
    .map_err(|e| BridgeError::InvalidArgument(e.to_string()))
}

/// A batch's record column.
pub fn records(batch: &RecordBatch) -> Result<&BinaryArray, BridgeError> {
    batch
        .columns()
        .get(1)
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
        .ok_or_else(|| BridgeError::Data("a batch has no binary record column".into()))
}

/// A batch's partition-id column.
pub fn pids(batch: &RecordBatch) -> Result<&Int32Array, BridgeError> {
    batch
        .columns()
        .first()
        .and_then(|c| c.as_any().downcast_ref::<Int32Array>())
        .ok_or_else(|| BridgeError::Data("a batch has no partition-id column".into()))
}

/// The records of a fetched batch in the layout Java reads (see the module docs), in two
/// parts so that the record bytes are copied once, straight into Java's array: the
/// header (`count`, then each record's length) is written into `header` (cleared
/// first, so one buffer serves every batch), and the record bytes are borrowed from
/// the batch.
pub fn java_layout<'a>(
    batch: &'a RecordBatch,
    header: &mut Vec<u8>,
) -> Result<&'a [u8], BridgeError> {
    let records = records(batch)?;
    let n = records.len();
    header.clear();
    header.reserve(4 + 4 * n);
    header.extend_from_slice(&(n as i32).to_le_bytes());
    let offsets = records.value_offsets();
    for w in offsets.windows(2) {
        header.extend_from_slice(&(w[1] - w[0]).to_le_bytes());
    }
    let (first, last) = (offsets[0] as usize, offsets[n] as usize);
    Ok(&records.value_data()[first..last])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_both_layouts() {
        let data = b"alphabetagamma".to_vec();
        let batch = batch_from_java(vec![2, 0, 2], &[5, 9, 14], data, 3).unwrap();
        assert_eq!(batch.num_rows(), 3);
        let mut out = vec![9; 100]; // a used buffer: cleared first
        let sliced = batch.slice(1, 2);
        let body = java_layout(&sliced, &mut out).unwrap();
        out.extend_from_slice(body);
        let mut want = Vec::new();
        want.extend_from_slice(&2i32.to_le_bytes());
        want.extend_from_slice(&4i32.to_le_bytes());
        want.extend_from_slice(&5i32.to_le_bytes());
        want.extend_from_slice(b"betagamma");
        assert_eq!(out, want);
    }

    #[test]
    fn bad_input_from_java_is_a_typed_error() {
        let err = |pids: Vec<i32>, ends: &[i32], len: usize| {
            batch_from_java(pids, ends, vec![0; len], 4)
                .unwrap_err()
                .to_string()
        };
        assert!(err(vec![4], &[1], 1).contains("partition id 4 outside 0..4"));
        assert!(err(vec![-1], &[1], 1).contains("partition id -1"));
        assert!(err(vec![0, 1], &[3, 2], 3).contains("not increasing"));
        assert!(err(vec![0], &[9], 3).contains("not increasing"));
        assert!(err(vec![0, 1], &[1], 3).contains("2 partition ids for 1 records"));
    }
}
