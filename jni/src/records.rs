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

/// A writer's records as Java hands them over, in buffers that serve every write of
/// the writer: partition ids, the offsets `0, end of record 0, ...`, and the record
/// bytes (`i8`, as Java's `byte`; the same bytes). A batch borrows them while it is
/// sent and gives them back after.
#[derive(Debug, Default)]
pub struct JavaRecords {
    pids: Vec<i32>,
    offsets: Vec<i32>,
    data: Vec<i8>,
}

/// A batch over a writer's [`JavaRecords`], and its two columns to take them back from.
pub struct LentBatch {
    pub batch: RecordBatch,
    pids: Int32Array,
    records: BinaryArray,
}

impl JavaRecords {
    /// Sizes the buffers for `count` records of `len` bytes in all and returns what Java
    /// fills: the partition ids, each record's end, and the bytes. Only what the
    /// buffers' lengths grow into is zeroed first.
    pub fn prepare(&mut self, count: usize, len: usize) -> (&mut [i32], &mut [i32], &mut [i8]) {
        fit(&mut self.pids, count);
        fit(&mut self.offsets, count + 1);
        fit(&mut self.data, len);
        self.offsets[0] = 0;
        (&mut self.pids, &mut self.offsets[1..], &mut self.data)
    }

    /// The prepared records as a batch for `num_partitions` partitions, checked: ids in
    /// range, ends increasing within the bytes. The buffers move into the batch; give
    /// them back with [`JavaRecords::reclaim`].
    pub fn lend(&mut self, num_partitions: u32) -> Result<LentBatch, BridgeError> {
        if let Some(bad) = self
            .pids
            .iter()
            .find(|&&p| p < 0 || p as u32 >= num_partitions)
        {
            return Err(BridgeError::InvalidArgument(format!(
                "partition id {bad} outside 0..{num_partitions}"
            )));
        }
        let monotonic = self.offsets.windows(2).all(|w| w[0] <= w[1]);
        let last = *self.offsets.last().unwrap_or(&0) as usize;
        if !monotonic || last > self.data.len() {
            return Err(BridgeError::InvalidArgument(format!(
                "record ends are not increasing within the {} data bytes",
                self.data.len()
            )));
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(std::mem::take(&mut self.offsets)));
        let data = Buffer::from_vec(std::mem::take(&mut self.data));
        let records = BinaryArray::try_new(offsets, data, None)
            .map_err(|e| BridgeError::InvalidArgument(e.to_string()))?;
        let pids = Int32Array::from(std::mem::take(&mut self.pids));
        let batch = RecordBatch::try_new(
            schema(),
            vec![Arc::new(pids.clone()), Arc::new(records.clone())],
        )
        .map_err(|e| BridgeError::InvalidArgument(e.to_string()))?;
        Ok(LentBatch {
            batch,
            pids,
            records,
        })
    }

    /// The capacity of the buffers, in bytes.
    pub fn kept_bytes(&self) -> usize {
        4 * (self.pids.capacity() + self.offsets.capacity()) + self.data.capacity()
    }

    /// Takes the buffers back from a sent batch. A buffer something else still shares
    /// stays with it, and the next write allocates afresh.
    pub fn reclaim(&mut self, lent: LentBatch) {
        let LentBatch {
            batch,
            pids,
            records,
        } = lent;
        drop(batch);
        let (offsets, data, _) = records.into_parts();
        self.offsets = offsets
            .into_inner()
            .into_inner()
            .into_vec()
            .unwrap_or_default();
        self.data = data.into_vec().unwrap_or_default();
        self.pids = pids
            .into_parts()
            .1
            .into_inner()
            .into_vec()
            .unwrap_or_default();
    }
}

/// Copies records given as slices (`ends` one per id) into buffers from
/// [`JavaRecords::prepare`], as Java would.
pub fn copy_records(
    (pids, ends, data): (&[i32], &[i32], &[u8]),
    (to_pids, to_ends, to_data): (&mut [i32], &mut [i32], &mut [i8]),
) -> Result<(), BridgeError> {
    if pids.len() != ends.len() {
        return Err(BridgeError::InvalidArgument(format!(
            "{} partition ids for {} records",
            pids.len(),
            ends.len()
        )));
    }
    to_pids.copy_from_slice(pids);
    to_ends.copy_from_slice(ends);
    for (to, &from) in to_data.iter_mut().zip(data) {
        *to = from as i8;
    }
    Ok(())
}

/// Makes `v` exactly `len` long, zeroing only what its length grows into. Beyond its
/// capacity it is allocated afresh at exactly `len` (growth by doubling would keep up to
/// twice the largest write, more than the Java side counts, and copy dead bytes).
fn fit<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    if len > v.capacity() {
        drop(std::mem::take(v));
        *v = vec![T::default(); len];
    } else if v.len() < len {
        v.resize(len, T::default());
    } else {
        v.truncate(len);
    }
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

    /// A batch from records `data[ends[i-1]..ends[i]]` bound for partitions `pids[i]`.
    fn batch_from_java(
        pids: &[i32],
        ends: &[i32],
        data: &[u8],
        num_partitions: u32,
    ) -> Result<RecordBatch, BridgeError> {
        let mut java = JavaRecords::default();
        let into = java.prepare(pids.len(), data.len());
        copy_records((pids, ends, data), into)?;
        Ok(java.lend(num_partitions)?.batch)
    }

    #[test]
    fn a_writer_s_buffers_serve_every_write() {
        let mut java = JavaRecords::default();
        let write = |java: &mut JavaRecords, bytes: &[u8]| {
            let into = java.prepare(2, bytes.len());
            copy_records((&[1, 0], &[3, bytes.len() as i32], bytes), into).unwrap();
            java.lend(2).unwrap()
        };
        let lent = write(&mut java, b"abcdefgh");
        let first = lent.records.values().as_ptr();
        let first_pids = lent.pids.values().as_ptr();
        let first_offsets = lent.records.value_offsets().as_ptr();
        let r = records(&lent.batch).unwrap();
        assert_eq!((r.value(0), r.value(1)), (&b"abc"[..], &b"defgh"[..]));
        java.reclaim(lent);
        // A shorter write reuses the same bytes, and sees only its own.
        let lent = write(&mut java, b"xyzw");
        assert_eq!(lent.records.values().as_ptr(), first);
        assert_eq!(lent.pids.values().as_ptr(), first_pids);
        assert_eq!(lent.records.value_offsets().as_ptr(), first_offsets);
        let r = records(&lent.batch).unwrap();
        assert_eq!((r.value(0), r.value(1)), (&b"xyz"[..], &b"w"[..]));
        assert_eq!(r.value_data(), b"xyzw");
        assert_eq!(pids(&lent.batch).unwrap().values(), &[1, 0]);
        // A batch still shared keeps its buffers; the next write gets new ones.
        let kept = lent.batch.clone();
        java.reclaim(lent);
        let lent = write(&mut java, b"12345");
        assert_ne!(lent.records.values().as_ptr(), first);
        assert_eq!(records(&kept).unwrap().value(0), b"xyz");
        assert_eq!(records(&lent.batch).unwrap().value(1), b"45");
    }

    #[test]
    fn records_round_trip_through_both_layouts() {
        let data = b"alphabetagamma".to_vec();
        let batch = batch_from_java(&[2, 0, 2], &[5, 9, 14], &data, 3).unwrap();
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
            batch_from_java(&pids, ends, &vec![0; len], 4)
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
