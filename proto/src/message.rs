//! Protocol messages and their binary codecs.

use bytes::{BufMut, Bytes};

use crate::ids::AppId;
use crate::wire::{put_bytes, put_u64s, Reader};
use crate::ProtoError;

/// Maximum length of a cluster token or an application secret.
pub const MAX_SECRET_LEN: usize = 1024;
/// Minimum length of a new application's secret: anything shorter can be guessed.
pub const MIN_SECRET_LEN: usize = 16;

/// Message type ids (the frame's type byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageKind {
    Hello = 1,
    HelloOk = 2,
    Error = 3,
    Ok = 4,
    RegisterApp = 10,
    PushStart = 20,
    PushBatch = 21,
    PushEnd = 22,
    PushCommitted = 23,
    ReplicaStart = 24,
    ReplicaBlock = 25,
    ReplicaEnd = 26,
    FetchRequest = 30,
    FetchSchema = 31,
    FetchBlock = 32,
    FetchEnd = 33,
    FetchSums = 34,
    DeleteShuffle = 40,
    DeleteApp = 41,
}

impl MessageKind {
    fn from_id(id: u8) -> Result<Self, ProtoError> {
        use MessageKind::*;
        let kind = match id {
            1 => Hello,
            2 => HelloOk,
            3 => Error,
            4 => Ok,
            10 => RegisterApp,
            20 => PushStart,
            21 => PushBatch,
            22 => PushEnd,
            23 => PushCommitted,
            24 => ReplicaStart,
            25 => ReplicaBlock,
            26 => ReplicaEnd,
            30 => FetchRequest,
            31 => FetchSchema,
            32 => FetchBlock,
            33 => FetchEnd,
            34 => FetchSums,
            40 => DeleteShuffle,
            41 => DeleteApp,
            other => return Err(ProtoError::UnknownType(other)),
        };
        Result::Ok(kind)
    }
}

/// Error codes carried by [`Message::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed or out-of-order message.
    BadRequest,
    /// Wrong cluster token or application secret.
    Unauthorized,
    /// The peer speaks another protocol version.
    VersionMismatch,
    UnknownApp,
    UnknownShuffle,
    /// A push's schema, partition count or partitioning differs from the shuffle's.
    ShuffleMismatch,
    /// The pushed data is invalid (bad Arrow IPC, partition id out of range, ...).
    InvalidData,
    /// This map attempt was already committed.
    AlreadyCommitted,
    FrameTooLarge,
    LimitExceeded,
    Storage,
    /// A disk quota (the server's or the application's) would be exceeded.
    QuotaExceeded,
    /// The server's disk is full.
    DiskFull,
    /// The server cannot take the request now; retrying later is safe.
    Unavailable,
    /// The server is draining before shutdown and takes no new pushes; push to another
    /// server (fetches are still served).
    Draining,
    Internal,
    /// The application or shuffle was deleted while the request was in progress: the
    /// request ended, and nothing it sent is kept.
    Deleted,
    /// A code this version does not know.
    Other(u16),
}

impl ErrorCode {
    pub fn to_u16(self) -> u16 {
        match self {
            Self::BadRequest => 1,
            Self::Unauthorized => 2,
            Self::VersionMismatch => 3,
            Self::UnknownApp => 4,
            Self::UnknownShuffle => 5,
            Self::ShuffleMismatch => 6,
            Self::InvalidData => 7,
            Self::AlreadyCommitted => 8,
            Self::FrameTooLarge => 9,
            Self::LimitExceeded => 10,
            Self::Storage => 11,
            Self::Unavailable => 12,
            Self::Internal => 13,
            Self::QuotaExceeded => 14,
            Self::DiskFull => 15,
            Self::Draining => 16,
            Self::Deleted => 17,
            Self::Other(c) => c,
        }
    }

    pub fn from_u16(code: u16) -> Self {
        match code {
            1 => Self::BadRequest,
            2 => Self::Unauthorized,
            3 => Self::VersionMismatch,
            4 => Self::UnknownApp,
            5 => Self::UnknownShuffle,
            6 => Self::ShuffleMismatch,
            7 => Self::InvalidData,
            8 => Self::AlreadyCommitted,
            9 => Self::FrameTooLarge,
            10 => Self::LimitExceeded,
            11 => Self::Storage,
            12 => Self::Unavailable,
            13 => Self::Internal,
            14 => Self::QuotaExceeded,
            15 => Self::DiskFull,
            16 => Self::Draining,
            17 => Self::Deleted,
            c => Self::Other(c),
        }
    }

    /// A stable snake_case name: the `kind` label of the server's error metric.
    pub fn name(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::VersionMismatch => "version_mismatch",
            Self::UnknownApp => "unknown_app",
            Self::UnknownShuffle => "unknown_shuffle",
            Self::ShuffleMismatch => "shuffle_mismatch",
            Self::InvalidData => "invalid_data",
            Self::AlreadyCommitted => "already_committed",
            Self::FrameTooLarge => "frame_too_large",
            Self::LimitExceeded => "limit_exceeded",
            Self::Storage => "storage",
            Self::QuotaExceeded => "quota_exceeded",
            Self::DiskFull => "disk_full",
            Self::Unavailable => "unavailable",
            Self::Draining => "draining",
            Self::Internal => "internal",
            Self::Deleted => "deleted",
            Self::Other(_) => "other",
        }
    }

    /// Whether the same request may succeed if sent again later (`Draining`: on
    /// another server).
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Unavailable | Self::Draining)
    }
}

/// How the server assigns the rows of a pushed batch to partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Partitioning {
    /// Every row goes to partition 0.
    Single,
    /// Rows are dealt round-robin, continuing across the batches of one push.
    RoundRobin,
    /// An Int32 column holds each row's partition id.
    PartitionIdColumn { column: u32 },
    /// Spark-compatible Murmur3 hash (seed 42) of the key columns, `pmod` partition count.
    Hash { columns: Vec<u32> },
    /// Spark's range partitioning: a row goes to the number of bounds that sort before
    /// its key. The bounds are one Arrow IPC record batch, one column per key, strictly
    /// increasing in the keys' order, at most P - 1 rows: `bounds_schema` is its schema
    /// message and `bounds` the batch message. With `reversed` (an RDD
    /// `RangePartitioner` with `ascending = false`, as `sortByKey(false)` makes) that
    /// index `i` becomes `bounds - i`; Spark SQL's partitioner is never reversed (its
    /// descending keys are in `keys`).
    Range {
        keys: Vec<RangeOrder>,
        bounds_schema: Bytes,
        bounds: Bytes,
        reversed: bool,
    },
}

/// One key column of a range partitioning, as in a Spark `SortOrder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RangeOrder {
    pub column: u32,
    pub descending: bool,
    pub nulls_first: bool,
}

const RANGE_DESCENDING: u8 = 1;
const RANGE_NULLS_FIRST: u8 = 2;

/// One attempt of one map task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapAttempt {
    /// Unique per application (Spark: the task attempt id).
    pub map_id: u64,
    pub map_index: u32,
    pub attempt: u32,
}

/// Which map outputs a fetch reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapFilter {
    /// For every map index, the attempt that committed first.
    All,
    /// Exactly these map ids (attempts), e.g. the ones Spark's MapOutputTracker holds.
    MapIds(Vec<u64>),
    /// Map indexes in `[start, end)`, first committed attempt of each.
    MapIndexRange { start: u32, end: u32 },
}

/// Most replica candidates a push may name.
pub const MAX_REPLICAS: usize = 8;
/// Longest replica address (`host:port`).
pub const MAX_ADDRESS_LEN: usize = 256;

/// The opening of a push stream: which map attempt goes to which shuffle, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushStart {
    pub app: AppId,
    pub secret: Bytes,
    pub shuffle_id: u32,
    pub map: MapAttempt,
    pub num_partitions: u32,
    pub partitioning: Partitioning,
    /// Arrow IPC schema message; sent once per push stream.
    pub schema: Bytes,
    /// Servers (`host:port`) that may hold a second copy, in order of preference: the
    /// server forwards the stored blocks to the first that takes them before it commits.
    /// Empty: one copy. (Empty in a `ReplicaStart`.)
    pub replicas: Vec<String>,
}

/// What the writer itself counted of one partition of a map: its rows, and a checksum
/// of them whose definition the writer and the reader share (the server only keeps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionSum {
    pub partition: u32,
    pub rows: u64,
    pub checksum: u64,
}

/// A map's [`PartitionSum`] for the partition a `FetchSums` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MapSum {
    pub map_id: u64,
    pub rows: u64,
    pub checksum: u64,
}

/// A fetch: partitions `[start_partition, end_partition)` of the maps `maps` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub app: AppId,
    pub secret: Bytes,
    pub shuffle_id: u32,
    pub start_partition: u32,
    pub end_partition: u32,
    pub maps: MapFilter,
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello {
        version: u16,
        token: Bytes,
        client: String,
    },
    HelloOk {
        version: u16,
        server: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Ok,
    RegisterApp {
        app: AppId,
        secret: Bytes,
    },
    PushStart(PushStart),
    /// One Arrow IPC record batch body (the frame's whole payload).
    PushBatch {
        ipc: Bytes,
    },
    /// The end of a push, with what the writer counted of each partition it wrote (may
    /// be empty: then nothing is checked end to end).
    PushEnd {
        sums: Vec<PartitionSum>,
    },
    /// Commit acknowledgement: per-partition stored bytes and rows of this map attempt,
    /// and the server that holds its second copy, if any.
    PushCommitted {
        partition_bytes: Vec<u64>,
        partition_rows: Vec<u64>,
        replica: Option<String>,
    },
    /// A server opens a second copy of a map on another server: the shape of the push
    /// it took (its `replicas` empty), then `ReplicaBlock`s, then `ReplicaEnd`; the
    /// reply is `PushCommitted`.
    ReplicaStart(PushStart),
    /// One stored block (as the first server stored it) of `partition`.
    ReplicaBlock {
        partition: u32,
        block: Bytes,
    },
    /// The end of a second copy, with the writer's sums.
    ReplicaEnd {
        sums: Vec<PartitionSum>,
    },
    FetchRequest(FetchRequest),
    /// First frame of a fetch response: the shuffle's schema (absent if nothing was ever
    /// committed to it on this server).
    FetchSchema {
        schema: Option<Bytes>,
    },
    /// One stored block (header + compressed body) of `partition`.
    FetchBlock {
        partition: u32,
        block: Bytes,
    },
    FetchEnd {
        blocks: u64,
        bytes: u64,
        rows: u64,
        /// Requested map ids (`MapFilter::MapIds`) that are not committed on this server.
        missing_maps: Vec<u64>,
    },
    /// After the blocks of `partition`: what each served map's writer counted of it
    /// (maps whose writer gave sums).
    FetchSums {
        partition: u32,
        sums: Vec<MapSum>,
    },
    DeleteShuffle {
        app: AppId,
        secret: Bytes,
        shuffle_id: u32,
    },
    DeleteApp {
        app: AppId,
        secret: Bytes,
    },
}

impl Message {
    pub fn kind(&self) -> MessageKind {
        use MessageKind as K;
        match self {
            Self::Hello { .. } => K::Hello,
            Self::HelloOk { .. } => K::HelloOk,
            Self::Error { .. } => K::Error,
            Self::Ok => K::Ok,
            Self::RegisterApp { .. } => K::RegisterApp,
            Self::PushStart(_) => K::PushStart,
            Self::PushBatch { .. } => K::PushBatch,
            Self::PushEnd { .. } => K::PushEnd,
            Self::PushCommitted { .. } => K::PushCommitted,
            Self::ReplicaStart(_) => K::ReplicaStart,
            Self::ReplicaBlock { .. } => K::ReplicaBlock,
            Self::ReplicaEnd { .. } => K::ReplicaEnd,
            Self::FetchRequest(_) => K::FetchRequest,
            Self::FetchSchema { .. } => K::FetchSchema,
            Self::FetchBlock { .. } => K::FetchBlock,
            Self::FetchEnd { .. } => K::FetchEnd,
            Self::FetchSums { .. } => K::FetchSums,
            Self::DeleteShuffle { .. } => K::DeleteShuffle,
            Self::DeleteApp { .. } => K::DeleteApp,
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn encoded_len_hint(&self) -> usize {
        match self {
            Self::PushBatch { ipc } => ipc.len(),
            Self::FetchBlock { block, .. } | Self::ReplicaBlock { block, .. } => 4 + block.len(),
            Self::PushStart(p) | Self::ReplicaStart(p) => 256 + p.schema.len(),
            _ => 64,
        }
    }

    /// The bulk payload that ends this message's body, if any. The I/O layer may write
    /// it separately after [`Message::encode_head`] instead of copying it.
    pub fn trailing_payload(&self) -> Option<&Bytes> {
        match self {
            Self::PushBatch { ipc } => Some(ipc),
            Self::FetchBlock { block, .. } | Self::ReplicaBlock { block, .. } => Some(block),
            _ => None,
        }
    }

    /// Frame header plus the body without the trailing payload (see
    /// [`Message::trailing_payload`]): writing the head and then the payload produces
    /// exactly [`crate::encode_frame`]'s bytes.
    pub fn encode_head(&self) -> Vec<u8> {
        let payload_len = self.trailing_payload().map_or(0, |p| p.len());
        let mut out = Vec::with_capacity(64);
        out.put_u32_le(0);
        out.put_u8(self.kind() as u8);
        self.encode_body_head(&mut out);
        let body_len = out.len() - crate::FRAME_HEADER_LEN + payload_len;
        out[..4].copy_from_slice(&(body_len as u32).to_le_bytes());
        out
    }

    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        self.encode_body_head(out);
        if let Some(payload) = self.trailing_payload() {
            out.put_slice(payload);
        }
    }

    fn encode_body_head(&self, out: &mut Vec<u8>) {
        match self {
            Self::Hello {
                version,
                token,
                client,
            } => {
                out.put_u16_le(*version);
                put_bytes(out, token);
                put_bytes(out, client.as_bytes());
            }
            Self::HelloOk { version, server } => {
                out.put_u16_le(*version);
                put_bytes(out, server.as_bytes());
            }
            Self::Error { code, message } => {
                out.put_u16_le(code.to_u16());
                put_bytes(out, message.as_bytes());
            }
            Self::Ok => {}
            Self::PushEnd { sums } | Self::ReplicaEnd { sums } => put_partition_sums(out, sums),
            Self::RegisterApp { app, secret } | Self::DeleteApp { app, secret } => {
                put_app(out, app, secret);
            }
            Self::PushStart(start) | Self::ReplicaStart(start) => put_push_start(out, start),
            Self::PushBatch { .. } => {}
            Self::PushCommitted {
                partition_bytes,
                partition_rows,
                replica,
            } => {
                put_u64s(out, partition_bytes);
                put_u64s(out, partition_rows);
                match replica {
                    None => out.put_u8(0),
                    Some(r) => {
                        out.put_u8(1);
                        put_bytes(out, r.as_bytes());
                    }
                }
            }
            Self::ReplicaBlock { partition, .. } => out.put_u32_le(*partition),
            Self::FetchRequest(FetchRequest {
                app,
                secret,
                shuffle_id,
                start_partition,
                end_partition,
                maps,
            }) => {
                put_app(out, app, secret);
                out.put_u32_le(*shuffle_id);
                out.put_u32_le(*start_partition);
                out.put_u32_le(*end_partition);
                put_map_filter(out, maps);
            }
            Self::FetchSchema { schema } => match schema {
                None => out.put_u8(0),
                Some(s) => {
                    out.put_u8(1);
                    put_bytes(out, s);
                }
            },
            Self::FetchBlock { partition, .. } => out.put_u32_le(*partition),
            Self::FetchEnd {
                blocks,
                bytes,
                rows,
                missing_maps,
            } => {
                out.put_u64_le(*blocks);
                out.put_u64_le(*bytes);
                out.put_u64_le(*rows);
                put_u64s(out, missing_maps);
            }
            Self::FetchSums { partition, sums } => {
                out.put_u32_le(*partition);
                out.put_u32_le(sums.len() as u32);
                for s in sums {
                    out.put_u64_le(s.map_id);
                    out.put_u64_le(s.rows);
                    out.put_u64_le(s.checksum);
                }
            }
            Self::DeleteShuffle {
                app,
                secret,
                shuffle_id,
            } => {
                put_app(out, app, secret);
                out.put_u32_le(*shuffle_id);
            }
        }
    }

    /// Decodes a frame body of type `kind`. Total: never panics on any input.
    pub fn decode(kind: u8, body: Bytes) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body);
        let message = match MessageKind::from_id(kind)? {
            MessageKind::Hello => Self::Hello {
                version: r.u16("hello version")?,
                token: secret(&mut r, "cluster token")?,
                client: r.string("client name")?,
            },
            MessageKind::HelloOk => Self::HelloOk {
                version: r.u16("hello version")?,
                server: r.string("server name")?,
            },
            MessageKind::Error => Self::Error {
                code: ErrorCode::from_u16(r.u16("error code")?),
                message: r.string("error message")?,
            },
            MessageKind::Ok => Self::Ok,
            MessageKind::RegisterApp => {
                let (app, secret) = app(&mut r)?;
                Self::RegisterApp { app, secret }
            }
            MessageKind::DeleteApp => {
                let (app, secret) = app(&mut r)?;
                Self::DeleteApp { app, secret }
            }
            MessageKind::PushStart => Self::PushStart(push_start(&mut r)?),
            MessageKind::ReplicaStart => Self::ReplicaStart(push_start(&mut r)?),
            MessageKind::PushBatch => Self::PushBatch { ipc: r.rest() },
            MessageKind::PushEnd => Self::PushEnd {
                sums: partition_sums(&mut r)?,
            },
            MessageKind::ReplicaEnd => Self::ReplicaEnd {
                sums: partition_sums(&mut r)?,
            },
            MessageKind::ReplicaBlock => Self::ReplicaBlock {
                partition: r.u32("partition")?,
                block: r.rest(),
            },
            MessageKind::PushCommitted => Self::PushCommitted {
                partition_bytes: r.vec("partition bytes", 8, |r| r.u64("partition bytes"))?,
                partition_rows: r.vec("partition rows", 8, |r| r.u64("partition rows"))?,
                replica: match r.u8("replica flag")? {
                    0 => None,
                    1 => Some(address(&mut r)?),
                    other => return Err(invalid("replica flag", format!("{other}"))),
                },
            },
            MessageKind::FetchRequest => {
                let (app, secret) = app(&mut r)?;
                Self::FetchRequest(FetchRequest {
                    app,
                    secret,
                    shuffle_id: r.u32("shuffle id")?,
                    start_partition: r.u32("start partition")?,
                    end_partition: r.u32("end partition")?,
                    maps: map_filter(&mut r)?,
                })
            }
            MessageKind::FetchSchema => Self::FetchSchema {
                schema: match r.u8("schema flag")? {
                    0 => None,
                    1 => Some(r.bytes("schema")?),
                    other => return Err(invalid("schema flag", format!("{other}"))),
                },
            },
            MessageKind::FetchBlock => Self::FetchBlock {
                partition: r.u32("partition")?,
                block: r.rest(),
            },
            MessageKind::FetchEnd => Self::FetchEnd {
                blocks: r.u64("block count")?,
                bytes: r.u64("byte count")?,
                rows: r.u64("row count")?,
                missing_maps: r.vec("missing maps", 8, |r| r.u64("map id"))?,
            },
            MessageKind::FetchSums => Self::FetchSums {
                partition: r.u32("partition")?,
                sums: r.vec("map sums", 24, |r| {
                    Ok(MapSum {
                        map_id: r.u64("map id")?,
                        rows: r.u64("rows")?,
                        checksum: r.u64("checksum")?,
                    })
                })?,
            },
            MessageKind::DeleteShuffle => {
                let (app, secret) = app(&mut r)?;
                Self::DeleteShuffle {
                    app,
                    secret,
                    shuffle_id: r.u32("shuffle id")?,
                }
            }
        };
        r.finish()?;
        Ok(message)
    }
}

fn invalid(field: &'static str, reason: String) -> ProtoError {
    ProtoError::Invalid { field, reason }
}

fn put_push_start(out: &mut Vec<u8>, start: &PushStart) {
    put_app(out, &start.app, &start.secret);
    out.put_u32_le(start.shuffle_id);
    out.put_u64_le(start.map.map_id);
    out.put_u32_le(start.map.map_index);
    out.put_u32_le(start.map.attempt);
    out.put_u32_le(start.num_partitions);
    put_partitioning(out, &start.partitioning);
    put_bytes(out, &start.schema);
    out.put_u32_le(start.replicas.len() as u32);
    for r in &start.replicas {
        put_bytes(out, r.as_bytes());
    }
}

fn push_start(r: &mut Reader) -> Result<PushStart, ProtoError> {
    let (app, secret) = app(r)?;
    Ok(PushStart {
        app,
        secret,
        shuffle_id: r.u32("shuffle id")?,
        map: MapAttempt {
            map_id: r.u64("map id")?,
            map_index: r.u32("map index")?,
            attempt: r.u32("attempt")?,
        },
        num_partitions: r.u32("partition count")?,
        partitioning: partitioning(r)?,
        schema: r.bytes("schema")?,
        replicas: {
            let count = r.u32("replica count")? as usize;
            if count > MAX_REPLICAS {
                return Err(invalid(
                    "replica count",
                    format!("{count} over {MAX_REPLICAS}"),
                ));
            }
            (0..count).map(|_| address(r)).collect::<Result<_, _>>()?
        },
    })
}

/// A server address (`host:port`), bounded in length.
fn address(r: &mut Reader) -> Result<String, ProtoError> {
    let a = r.string("server address")?;
    if a.is_empty() || a.len() > MAX_ADDRESS_LEN {
        return Err(invalid(
            "server address",
            format!("{} bytes, not 1..={MAX_ADDRESS_LEN}", a.len()),
        ));
    }
    Ok(a)
}

fn put_partition_sums(out: &mut Vec<u8>, sums: &[PartitionSum]) {
    out.put_u32_le(sums.len() as u32);
    for s in sums {
        out.put_u32_le(s.partition);
        out.put_u64_le(s.rows);
        out.put_u64_le(s.checksum);
    }
}

fn partition_sums(r: &mut Reader) -> Result<Vec<PartitionSum>, ProtoError> {
    r.vec("partition sums", 20, |r| {
        Ok(PartitionSum {
            partition: r.u32("partition")?,
            rows: r.u64("rows")?,
            checksum: r.u64("checksum")?,
        })
    })
}

fn put_app(out: &mut Vec<u8>, app: &AppId, secret: &Bytes) {
    put_bytes(out, app.as_str().as_bytes());
    put_bytes(out, secret);
}

fn app(r: &mut Reader) -> Result<(AppId, Bytes), ProtoError> {
    let app = AppId::new(r.string("app id")?)?;
    Ok((app, secret(r, "app secret")?))
}

fn secret(r: &mut Reader, what: &'static str) -> Result<Bytes, ProtoError> {
    let s = r.bytes(what)?;
    if s.len() > MAX_SECRET_LEN {
        return Err(invalid(what, format!("longer than {MAX_SECRET_LEN} bytes")));
    }
    Ok(s)
}

pub(crate) fn put_partitioning(out: &mut Vec<u8>, p: &Partitioning) {
    match p {
        Partitioning::Single => out.put_u8(0),
        Partitioning::RoundRobin => out.put_u8(1),
        Partitioning::PartitionIdColumn { column } => {
            out.put_u8(2);
            out.put_u32_le(*column);
        }
        Partitioning::Hash { columns } => {
            out.put_u8(3);
            out.put_u32_le(columns.len() as u32);
            for c in columns {
                out.put_u32_le(*c);
            }
        }
        Partitioning::Range {
            keys,
            bounds_schema,
            bounds,
            reversed,
        } => {
            // Kind 5 is kind 4 reversed: the same payload.
            out.put_u8(if *reversed { 5 } else { 4 });
            out.put_u32_le(keys.len() as u32);
            for k in keys {
                out.put_u32_le(k.column);
                let flags = if k.descending { RANGE_DESCENDING } else { 0 }
                    | if k.nulls_first { RANGE_NULLS_FIRST } else { 0 };
                out.put_u8(flags);
            }
            put_bytes(out, bounds_schema);
            put_bytes(out, bounds);
        }
    }
}

fn range_order(r: &mut Reader) -> Result<RangeOrder, ProtoError> {
    let column = r.u32("range key column")?;
    let flags = r.u8("range key order")?;
    if flags & !(RANGE_DESCENDING | RANGE_NULLS_FIRST) != 0 {
        return Err(invalid(
            "range key order",
            format!("unknown flags {flags:#x}"),
        ));
    }
    Ok(RangeOrder {
        column,
        descending: flags & RANGE_DESCENDING != 0,
        nulls_first: flags & RANGE_NULLS_FIRST != 0,
    })
}

pub(crate) fn partitioning(r: &mut Reader) -> Result<Partitioning, ProtoError> {
    Ok(match r.u8("partitioning")? {
        0 => Partitioning::Single,
        1 => Partitioning::RoundRobin,
        2 => Partitioning::PartitionIdColumn {
            column: r.u32("partition id column")?,
        },
        3 => {
            let columns = r.vec("hash columns", 4, |r| r.u32("hash column"))?;
            if columns.is_empty() {
                return Err(invalid("hash columns", "no key column".into()));
            }
            Partitioning::Hash { columns }
        }
        kind @ (4 | 5) => {
            let keys = r.vec("range keys", 5, range_order)?;
            if keys.is_empty() {
                return Err(invalid("range keys", "no key column".into()));
            }
            Partitioning::Range {
                keys,
                bounds_schema: r.bytes("range bounds schema")?,
                bounds: r.bytes("range bounds")?,
                reversed: kind == 5,
            }
        }
        other => return Err(invalid("partitioning", format!("unknown kind {other}"))),
    })
}

fn put_map_filter(out: &mut Vec<u8>, f: &MapFilter) {
    match f {
        MapFilter::All => out.put_u8(0),
        MapFilter::MapIds(ids) => {
            out.put_u8(1);
            put_u64s(out, ids);
        }
        MapFilter::MapIndexRange { start, end } => {
            out.put_u8(2);
            out.put_u32_le(*start);
            out.put_u32_le(*end);
        }
    }
}

fn map_filter(r: &mut Reader) -> Result<MapFilter, ProtoError> {
    Ok(match r.u8("map filter")? {
        0 => MapFilter::All,
        1 => MapFilter::MapIds(r.vec("map ids", 8, |r| r.u64("map id"))?),
        2 => {
            let start = r.u32("map index start")?;
            let end = r.u32("map index end")?;
            if start > end {
                return Err(invalid("map index range", format!("{start} > {end}")));
            }
            MapFilter::MapIndexRange { start, end }
        }
        other => return Err(invalid("map filter", format!("unknown kind {other}"))),
    })
}
