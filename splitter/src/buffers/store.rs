//! Slot storage: a column's buffers, one typed vector per partition slot.

use arrow_array::ArrayRef;
use arrow_buffer::{i256, BooleanBufferBuilder};
use arrow_schema::DataType;

/// One column's buffers, one per partition slot.
#[derive(Debug)]
pub(super) enum Store {
    Null,
    W1(Vec<Vec<u8>>),
    W2(Vec<Vec<u16>>),
    W4(Vec<Vec<u32>>),
    W8(Vec<Vec<u64>>),
    W16(Vec<Vec<i128>>),
    W32(Vec<Vec<i256>>),
    FixedBytes {
        width: usize,
        data: Vec<Vec<u8>>,
    },
    Bool(Vec<BooleanBufferBuilder>),
    Bytes32 {
        offsets: Vec<Vec<i32>>,
        data: Vec<Vec<u8>>,
    },
    Bytes64 {
        offsets: Vec<Vec<i64>>,
        data: Vec<Vec<u8>>,
    },
    /// Nested, view and dictionary types: `take` per partition, concatenated on drain.
    Other(Vec<Vec<ArrayRef>>),
}

impl Store {
    pub(super) fn for_type(data_type: &DataType) -> Self {
        use DataType::*;
        match (data_type, fixed_width(data_type)) {
            (Null, _) => Self::Null,
            (Boolean, _) => Self::Bool(Vec::new()),
            (_, Some(1)) => Self::W1(Vec::new()),
            (_, Some(2)) => Self::W2(Vec::new()),
            (_, Some(4)) => Self::W4(Vec::new()),
            (_, Some(8)) => Self::W8(Vec::new()),
            (_, Some(16)) => Self::W16(Vec::new()),
            (_, Some(32)) => Self::W32(Vec::new()),
            (FixedSizeBinary(n), _) if *n > 0 => Self::FixedBytes {
                width: *n as usize,
                data: Vec::new(),
            },
            (Utf8 | Binary, _) => Self::Bytes32 {
                offsets: Vec::new(),
                data: Vec::new(),
            },
            (LargeUtf8 | LargeBinary, _) => Self::Bytes64 {
                offsets: Vec::new(),
                data: Vec::new(),
            },
            _ => Self::Other(Vec::new()),
        }
    }

    pub(super) fn add_slot(&mut self) {
        match self {
            Self::Null => {}
            Self::W1(v) => v.push(Vec::new()),
            Self::W2(v) => v.push(Vec::new()),
            Self::W4(v) => v.push(Vec::new()),
            Self::W8(v) => v.push(Vec::new()),
            Self::W16(v) => v.push(Vec::new()),
            Self::W32(v) => v.push(Vec::new()),
            Self::FixedBytes { data, .. } => data.push(Vec::new()),
            Self::Bool(v) => v.push(BooleanBufferBuilder::new(0)),
            Self::Bytes32 { offsets, data } => {
                offsets.push(vec![0]);
                data.push(Vec::new());
            }
            Self::Bytes64 { offsets, data } => {
                offsets.push(vec![0]);
                data.push(Vec::new());
            }
            Self::Other(v) => v.push(Vec::new()),
        }
    }
}

impl Store {
    /// Reserves room for `rows` more rows in `slot`, of `value_bytes` variable-length
    /// bytes (strings and binaries): one allocation instead of a chain of doublings.
    pub(super) fn reserve_slot(&mut self, slot: usize, rows: usize, value_bytes: usize) {
        match self {
            Self::Null | Self::Bool(_) | Self::Other(_) => {}
            Self::W1(v) => v[slot].reserve(rows),
            Self::W2(v) => v[slot].reserve(rows),
            Self::W4(v) => v[slot].reserve(rows),
            Self::W8(v) => v[slot].reserve(rows),
            Self::W16(v) => v[slot].reserve(rows),
            Self::W32(v) => v[slot].reserve(rows),
            Self::FixedBytes { width, data } => data[slot].reserve(rows * *width),
            Self::Bytes32 { offsets, data } => {
                offsets[slot].reserve(rows);
                data[slot].reserve(value_bytes);
            }
            Self::Bytes64 { offsets, data } => {
                offsets[slot].reserve(rows);
                data[slot].reserve(value_bytes);
            }
        }
    }

    /// Empties `slot`, releasing its buffers.
    pub(super) fn reset_slot(&mut self, slot: usize) {
        match self {
            Self::Null => {}
            Self::W1(v) => v[slot] = Vec::new(),
            Self::W2(v) => v[slot] = Vec::new(),
            Self::W4(v) => v[slot] = Vec::new(),
            Self::W8(v) => v[slot] = Vec::new(),
            Self::W16(v) => v[slot] = Vec::new(),
            Self::W32(v) => v[slot] = Vec::new(),
            Self::FixedBytes { data, .. } => data[slot] = Vec::new(),
            Self::Bool(v) => v[slot] = BooleanBufferBuilder::new(0),
            Self::Bytes32 { offsets, data } => {
                offsets[slot] = vec![0];
                data[slot] = Vec::new();
            }
            Self::Bytes64 { offsets, data } => {
                offsets[slot] = vec![0];
                data[slot] = Vec::new();
            }
            Self::Other(v) => v[slot] = Vec::new(),
        }
    }

    /// Whether this column's gather goes run by run with a typed kernel (and so can
    /// prefetch the next column along the way).
    pub(super) fn by_runs(&self) -> bool {
        !matches!(
            self,
            Self::Null | Self::Bool(_) | Self::FixedBytes { .. } | Self::Other(_)
        )
    }

    /// Bytes allocated for `slot` (capacities, not lengths).
    pub(super) fn slot_capacity(&self, slot: usize) -> usize {
        fn cap<T>(v: &[Vec<T>], slot: usize) -> usize {
            v[slot].capacity() * std::mem::size_of::<T>()
        }
        match self {
            Self::Null => 0,
            Self::W1(v) => cap(v, slot),
            Self::W2(v) => cap(v, slot),
            Self::W4(v) => cap(v, slot),
            Self::W8(v) => cap(v, slot),
            Self::W16(v) => cap(v, slot),
            Self::W32(v) => cap(v, slot),
            Self::FixedBytes { data, .. } => cap(data, slot),
            Self::Bool(v) => v[slot].capacity() / 8,
            Self::Bytes32 { offsets, data } => cap(offsets, slot) + cap(data, slot),
            Self::Bytes64 { offsets, data } => cap(offsets, slot) + cap(data, slot),
            Self::Other(v) => v[slot].iter().map(|a| a.get_array_memory_size()).sum(),
        }
    }
}

/// The byte width of the types gathered as plain values (of a native type whose
/// alignment the buffers are guaranteed to have); `None` for every other type.
pub(crate) fn fixed_width(data_type: &DataType) -> Option<usize> {
    use DataType::*;
    match data_type {
        Int8 | UInt8 => Some(1),
        Int16 | UInt16 | Float16 => Some(2),
        Int32 | UInt32 | Float32 | Date32 | Time32(_) | Decimal32(_, _) => Some(4),
        Int64
        | UInt64
        | Float64
        | Date64
        | Time64(_)
        | Timestamp(_, _)
        | Duration(_)
        | Decimal64(_, _) => Some(8),
        Decimal128(_, _) => Some(16),
        Decimal256(_, _) => Some(32),
        _ => None,
    }
}
