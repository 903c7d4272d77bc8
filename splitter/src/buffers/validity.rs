//! Validity: a column's null bitmaps per slot, gathered from the sources' bitmaps.

use arrow_buffer::{BooleanBuffer, BooleanBufferBuilder, NullBuffer};
use arrow_data::ArrayData;

use super::Run;

/// A column's validity bitmaps, per slot. A slot's bitmap exists only once a null has
/// arrived: until then every row appended to the slot is valid.
#[derive(Debug, Default)]
pub(super) struct ColumnValidity {
    pub(super) slots: Vec<Option<BooleanBufferBuilder>>,
    /// Slots that have a bitmap: with none, and no nulls in a batch, the column's
    /// validity needs no work at all.
    with_bits: usize,
}

impl ColumnValidity {
    pub(super) fn capacity(&self, slot: usize) -> usize {
        self.slots[slot].as_ref().map_or(0, |b| b.capacity() / 8)
    }

    /// Appends the validity of `runs`' rows. `buffered` holds each slot's rows before
    /// this append (the valid prefix of a bitmap created now); `valid_bytes` is scratch.
    pub(super) fn gather(
        &mut self,
        datas: &[ArrayData],
        runs: &[Run<'_>],
        buffered: &[usize],
        valid_bytes: &mut Vec<Vec<u8>>,
    ) {
        if self.with_bits == 0 && datas.iter().all(|d| d.null_count() == 0) {
            return;
        }
        // A byte per row makes a row's bit one load in the loop below (+2% at P = 200).
        valid_bytes.resize_with(datas.len(), Vec::new);
        let valid: Vec<Option<&[u8]>> = datas
            .iter()
            .zip(valid_bytes.iter_mut())
            .map(|(d, bytes)| {
                let nulls = d.nulls().filter(|n| n.null_count() > 0)?;
                Some(unpack_bits(nulls.inner(), bytes))
            })
            .collect();
        // Rows of the slot's runs in this append, up to the current one.
        let mut appended = 0;
        for run in runs {
            if run.slot_rows > 0 {
                appended = 0;
            }
            let earlier = appended;
            appended += run.rows.len();
            let slot = &mut self.slots[run.slot];
            let Some(valid) = valid[run.source] else {
                if let Some(bits) = slot {
                    bits.append_n(run.rows.len(), true);
                }
                continue;
            };
            // 64 validity bits are assembled in a register, then appended packed.
            for (k, chunk) in run.rows.chunks(64).enumerate() {
                let word = chunk.iter().enumerate().fold(0u64, |word, (i, &r)| {
                    word | u64::from(valid[r as usize]) << i
                });
                if slot.is_none() && word == u64::MAX >> (64 - chunk.len()) {
                    continue; // still no null in this slot
                }
                let bits = slot.get_or_insert_with(|| {
                    // Every row before this chunk was valid.
                    let prefix = buffered[run.slot] + earlier + k * 64;
                    self.with_bits += 1;
                    let mut bits = BooleanBufferBuilder::new(prefix + chunk.len());
                    bits.append_n(prefix, true);
                    bits
                });
                bits.append_packed_range(0..chunk.len(), &word.to_le_bytes());
            }
        }
    }

    /// Takes `slot`'s bitmap out (`None`: every row valid).
    pub(super) fn finish(&mut self, slot: usize) -> Option<NullBuffer> {
        let mut bits = self.slots[slot].take()?;
        self.with_bits -= 1;
        Some(NullBuffer::new(bits.finish()))
    }
}

/// `bits` written into `out` as a byte (0 or 1) per bit; returns the bytes of `bits`'
/// own rows (from its offset).
fn unpack_bits<'a>(bits: &BooleanBuffer, out: &'a mut Vec<u8>) -> &'a [u8] {
    /// Each byte's 8 bits, spread to 8 bytes of 0 or 1.
    static SPREAD: [u64; 256] = {
        let mut table = [0u64; 256];
        let mut byte = 0;
        while byte < 256 {
            let mut bit = 0;
            while bit < 8 {
                table[byte] |= (((byte >> bit) & 1) as u64) << (8 * bit);
                bit += 1;
            }
            byte += 1;
        }
        table
    };
    let (offset, len) = (bits.offset(), bits.len());
    let bytes = &bits.values()[offset / 8..(offset + len).div_ceil(8)];
    out.clear();
    out.extend(bytes.iter().flat_map(|&b| SPREAD[b as usize].to_le_bytes()));
    &out[offset % 8..offset % 8 + len]
}

#[cfg(test)]
mod tests {
    use arrow_array::RecordBatch;
    use arrow_schema::{DataType, Schema};

    use super::*;
    use crate::buffers::{PartitionBuffers, Refill};

    /// A bitmap created in a slot's second run of an append, past its first 64 rows,
    /// starts with every row buffered before it valid.
    #[test]
    fn a_late_first_null_keeps_every_earlier_row_valid() {
        use std::sync::Arc;

        use arrow_array::Int64Array;
        use arrow_schema::Field;

        use crate::{PartitionSpec, Partitioner, SplitIndices, Splitter};
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let batch = |values: Vec<Option<i64>>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap()
        };
        let mut splitter =
            Splitter::new(Partitioner::new(PartitionSpec::Single, 1, &schema).unwrap());
        let mut split = |b: &RecordBatch| {
            let mut s = SplitIndices::default();
            splitter.split_into(b, &mut s).unwrap();
            s
        };
        let mut buffers = PartitionBuffers::new(schema.clone(), 1);
        let (b0, b1) = (batch(vec![Some(1); 5]), batch(vec![Some(2); 10]));
        let b2 = batch((0..80).map(|i| (i != 70).then_some(3)).collect());
        let (s0, s1, s2) = (split(&b0), split(&b1), split(&b2));
        buffers.append_batches(&[(&b0, &s0)]).unwrap();
        buffers.append_batches(&[(&b1, &s1), (&b2, &s2)]).unwrap();
        let block = buffers.drain(0, Refill::Empty).unwrap().unwrap();
        let nulls: Vec<usize> = (0..95).filter(|&i| block.column(0).is_null(i)).collect();
        assert_eq!(nulls, [5 + 10 + 70]);
    }

    #[test]
    fn unpack_bits_gives_a_byte_per_bit_from_the_offset() {
        let bools: Vec<bool> = (0..40).map(|i| i % 3 == 0 || i % 7 == 0).collect();
        let mut out = Vec::new();
        for (offset, len) in [(0, 40), (3, 10), (8, 17), (13, 0)] {
            let bits = BooleanBuffer::from(bools.clone()).slice(offset, len);
            let want: Vec<u8> = bools[offset..offset + len]
                .iter()
                .map(|&b| b as u8)
                .collect();
            assert_eq!(unpack_bits(&bits, &mut out), want, "{offset} {len}");
        }
    }
}
