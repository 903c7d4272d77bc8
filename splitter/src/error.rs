use arrow_schema::{ArrowError, DataType};

/// Errors from partitioning or splitting a batch. Any error rejects the whole batch.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("partition count must be at least 1")]
    NoPartitions,
    #[error("column {index} does not exist (batch has {columns} columns)")]
    NoSuchColumn { index: usize, columns: usize },
    #[error("partition id column {index} has type {data_type}, expected Int32")]
    PartitionIdType { index: usize, data_type: DataType },
    #[error("row {row} has partition id {id}, outside [0, {partitions})")]
    PartitionIdOutOfRange {
        row: usize,
        id: i64,
        partitions: u32,
    },
    #[error("row {row} has a null partition id")]
    NullPartitionId { row: usize },
    #[error("cannot hash key column {index} of type {data_type}")]
    UnsupportedKeyType { index: usize, data_type: DataType },
    #[error("hash and range partitioning need at least one key column")]
    NoKeyColumns,
    #[error("batch does not match the schema: {0}")]
    SchemaMismatch(String),
    #[error("invalid range bounds: {0}")]
    RangeBounds(String),
    #[error("batch has {rows} rows, more than a split supports ({max})")]
    TooManyRows { rows: usize, max: usize },
    #[error("a partition buffer outgrew 32-bit string offsets; use smaller blocks")]
    BufferOverflow,
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}
