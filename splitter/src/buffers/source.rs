//! The source batches' columns as the gathers read them: their values (and offsets),
//! their own bytes, and the pass that brings them into cache.

use arrow_buffer::ArrowNativeType;
use arrow_data::ArrayData;
use arrow_schema::DataType;

use super::store::fixed_width;

/// Batches of up to this many rows are brought into cache column by column ahead of
/// the gathers; a column of a much larger batch would not fit in L2 anyway (the writer
/// appends batches together up to this many rows in all).
pub(super) const WARM_ROWS: usize = 16_384;

/// Reads one byte of every cache line of a column's values (and offsets), in order.
/// The gathers read rows in partition order, which the hardware prefetcher cannot
/// follow; one sequential pass first brings a cold column into cache at streaming speed
/// (and costs little when it is already there). Columns after the first are usually
/// prefetched during the gather before them instead ([`prefetch::NextColumn`]).
///
/// [`prefetch::NextColumn`]: crate::prefetch::NextColumn
pub(super) fn warm(data: &ArrayData) {
    const LINE: usize = 64;
    for bytes in own_bytes(data) {
        let touched = bytes.iter().step_by(LINE).fold(0u8, |acc, &b| acc ^ b);
        std::hint::black_box(touched);
    }
}

/// A fixed-width or string column's own bytes: values (and offsets), not the rest of
/// the buffers it may be a slice of. Empty for other types.
pub(super) fn own_bytes(data: &ArrayData) -> [&[u8]; 2] {
    let (offset, len) = (data.offset(), data.len());
    if let Some(w) = fixed_width(data.data_type()) {
        [
            &data.buffers()[0].as_slice()[offset * w..(offset + len) * w],
            &[],
        ]
    } else if let Some((offsets, values)) = byte_ranges(data) {
        [
            &data.buffers()[0].as_slice()[offsets],
            &data.buffers()[1].as_slice()[values],
        ]
    } else {
        [&[], &[]]
    }
}

type ByteRange = std::ops::Range<usize>;

/// For a string or binary column: the byte ranges of its offsets and of its values.
fn byte_ranges(data: &ArrayData) -> Option<(ByteRange, ByteRange)> {
    fn ranges<O: ArrowNativeType>(data: &ArrayData) -> (ByteRange, ByteRange) {
        let (offsets, _) = byte_source::<O>(data);
        let size = std::mem::size_of::<O>();
        (
            data.offset() * size..(data.offset() + offsets.len()) * size,
            offsets[0].as_usize()..offsets[offsets.len() - 1].as_usize(),
        )
    }
    match data.data_type() {
        DataType::Utf8 | DataType::Binary => Some(ranges::<i32>(data)),
        DataType::LargeUtf8 | DataType::LargeBinary => Some(ranges::<i64>(data)),
        _ => None,
    }
}

/// The variable-length bytes of a string or binary column (0 for other types).
pub(super) fn variable_bytes(data: &ArrayData) -> usize {
    byte_ranges(data).map_or(0, |(_, values)| values.len())
}

/// Uncompressed bytes of a column: its own values, offsets and validity bits (for a
/// slice, not the whole buffers it points into; other types count their buffers).
pub(crate) fn column_bytes(data: &ArrayData) -> usize {
    let validity = data.len().div_ceil(8);
    if let Some(w) = fixed_width(data.data_type()) {
        return data.len() * w + validity;
    }
    match byte_ranges(data) {
        Some((offsets, values)) => offsets.len() + values.len() + validity,
        None => data.buffers().iter().map(|b| b.len()).sum::<usize>() + validity,
    }
}

/// The values of a fixed-width column, starting at its offset.
pub(crate) fn native<T: ArrowNativeType>(data: &ArrayData) -> &[T] {
    &data.buffers()[0].typed_data::<T>()[data.offset()..data.offset() + data.len()]
}

/// A string or binary column's offsets (from its own offset) and values buffer.
pub(crate) type ByteSource<'a, O> = (&'a [O], &'a [u8]);

pub(crate) fn byte_source<O: ArrowNativeType>(data: &ArrayData) -> ByteSource<'_, O> {
    let (offset, len) = (data.offset(), data.len());
    let offsets = &data.buffers()[0].typed_data::<O>()[offset..=offset + len];
    (offsets, data.buffers()[1].as_slice())
}
