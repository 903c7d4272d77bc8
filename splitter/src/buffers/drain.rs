//! Drain: a slot's buffers handed to Arrow as a block's arrays.

use arrow_array::{make_array, Array, ArrayRef};
use arrow_buffer::{ArrowNativeType, Buffer, NullBuffer};
use arrow_data::ArrayData;
use arrow_schema::DataType;

use super::store::Store;
use crate::error::SplitError;

/// Copies a slot's rows out into an array and empties the slot (keeping or releasing
/// its capacity).
pub(super) fn drain_store(
    store: &mut Store,
    slot: usize,
    data_type: &DataType,
    rows: usize,
    nulls: Option<NullBuffer>,
    keep_capacity: bool,
) -> Result<ArrayRef, SplitError> {
    // The buffered Vec becomes the block's Arrow buffer without a copy; the slot
    // starts over with the same capacity (a partition that fills blocks) or none.
    fn take_out<T: ArrowNativeType>(v: &mut Vec<T>, keep: bool) -> Buffer {
        let next = if keep {
            Vec::with_capacity(v.capacity())
        } else {
            Vec::new()
        };
        Buffer::from_vec(std::mem::replace(v, next))
    }
    fn take_offsets<O: ArrowNativeType>(v: &mut Vec<O>, keep: bool) -> Buffer {
        let out = take_out(v, keep);
        v.push(O::usize_as(0));
        out
    }
    let buffers = match store {
        Store::Null => vec![],
        Store::W1(v) => vec![take_out(&mut v[slot], keep_capacity)],
        Store::W2(v) => vec![take_out(&mut v[slot], keep_capacity)],
        Store::W4(v) => vec![take_out(&mut v[slot], keep_capacity)],
        Store::W8(v) => vec![take_out(&mut v[slot], keep_capacity)],
        Store::W16(v) => vec![take_out(&mut v[slot], keep_capacity)],
        Store::W32(v) => vec![take_out(&mut v[slot], keep_capacity)],
        Store::FixedBytes { data, .. } => vec![take_out(&mut data[slot], keep_capacity)],
        Store::Bool(v) => vec![v[slot].finish().into_inner()],
        Store::Bytes32 { offsets, data } => vec![
            take_offsets(&mut offsets[slot], keep_capacity),
            take_out(&mut data[slot], keep_capacity),
        ],
        Store::Bytes64 { offsets, data } => vec![
            take_offsets(&mut offsets[slot], keep_capacity),
            take_out(&mut data[slot], keep_capacity),
        ],
        Store::Other(v) => {
            let parts = std::mem::take(&mut v[slot]);
            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            return Ok(arrow_select::concat::concat(&refs)?);
        }
    };
    let builder = ArrayData::builder(data_type.clone())
        .len(rows)
        .buffers(buffers)
        .nulls(nulls);
    let data = if matches!(store, Store::Bytes32 { .. } | Store::Bytes64 { .. }) {
        // SAFETY: `gather_bytes` (gather.rs) copied whole values out of arrays of this type and
        // pushed each value's end as the next offset, after a leading 0.
        #[allow(unsafe_code)]
        unsafe {
            build_bytes(builder)?
        }
    } else {
        builder.build()?
    };
    Ok(make_array(data))
}

/// Builds a string or binary array without re-validating every value: a full
/// validation (UTF-8 and every offset) cost 8% of the split at P = 200
/// (`sluice-bench --mode split`). The cheap structural checks still run.
///
/// # Safety
/// The values buffer must consist of whole values copied out of arrays of this same
/// type (which Arrow guarantees are valid UTF-8 for strings), and the offsets must
/// start at 0, never decrease, and mark exactly those values.
#[allow(unsafe_code)]
pub(crate) unsafe fn build_bytes(
    builder: arrow_data::ArrayDataBuilder,
) -> Result<ArrayData, SplitError> {
    // SAFETY: the caller guarantees every value is valid for the type and the offsets
    // delimit exactly those values; buffer lengths and offset bounds are checked below.
    let data = unsafe { builder.build_unchecked() };
    data.validate()?;
    debug_assert!(data.validate_full().is_ok());
    Ok(data)
}
