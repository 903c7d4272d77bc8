//! Stream state machines: which message may come next, and what it means. The server
//! and client drive these with decoded messages; they hold no I/O.

use bytes::Bytes;
use subtle::ConstantTimeEq;

use crate::message::{ErrorCode, MapSum, Message, MessageKind, PartitionSum, PushStart};
use crate::{ProtoError, PROTOCOL_VERSION};

/// Constant-time equality of two secrets (a length mismatch is not secret).
pub fn secrets_match(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Server side of the connection handshake: checks the first message of a connection.
/// Returns the reply to send; `Err` carries the refusal to send before closing.
pub fn accept_hello(msg: &Message, cluster_token: &[u8]) -> Result<(), (ErrorCode, String)> {
    match msg {
        Message::Hello { version, token, .. } => {
            if *version != PROTOCOL_VERSION {
                return Err((
                    ErrorCode::VersionMismatch,
                    format!("server speaks protocol {PROTOCOL_VERSION}, client sent {version}"),
                ));
            }
            if !secrets_match(token, cluster_token) {
                return Err((ErrorCode::Unauthorized, "invalid cluster token".into()));
            }
            Ok(())
        }
        other => Err((
            ErrorCode::BadRequest,
            format!("expected Hello, got {:?}", other.kind()),
        )),
    }
}

/// What a message on a push stream asks the server to do, once the push started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushStep {
    Batch(Bytes),
    /// The end, with the writer's own sums (checked to be in range and distinct).
    End(Vec<PartitionSum>),
}

/// Server side of a push stream after its [`PushStart`]: `PushBatch`*, then `PushEnd`.
#[derive(Debug)]
pub struct PushSession {
    num_partitions: u32,
    ended: bool,
}

impl PushSession {
    /// Checks a push's opening; the session then takes its batches.
    pub fn start(start: &PushStart, max_partitions: u32) -> Result<Self, ProtoError> {
        check_partitions(start.num_partitions, max_partitions)?;
        Ok(Self {
            num_partitions: start.num_partitions,
            ended: false,
        })
    }

    pub fn on_message(&mut self, msg: Message) -> Result<PushStep, ProtoError> {
        match (self.ended, msg) {
            (false, Message::PushBatch { ipc }) => Ok(PushStep::Batch(ipc)),
            (false, Message::PushEnd { sums }) => {
                check_sums(&sums, self.num_partitions)?;
                self.ended = true;
                Ok(PushStep::End(sums))
            }
            (ended, msg) => Err(ProtoError::Unexpected {
                got: msg.kind(),
                state: if ended {
                    "push already ended"
                } else {
                    "streaming a push"
                },
            }),
        }
    }
}

/// What a message on a replica stream asks the server to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaStep {
    Block { partition: u32, block: Bytes },
    End(Vec<PartitionSum>),
}

/// Server side of a second copy after its `ReplicaStart`: `ReplicaBlock`*, then
/// `ReplicaEnd`.
#[derive(Debug)]
pub struct ReplicaSession {
    num_partitions: u32,
    ended: bool,
}

impl ReplicaSession {
    /// Checks a copy's opening: a push's shape, naming no further replicas.
    pub fn start(start: &PushStart, max_partitions: u32) -> Result<Self, ProtoError> {
        check_partitions(start.num_partitions, max_partitions)?;
        if !start.replicas.is_empty() {
            return Err(ProtoError::Invalid {
                field: "replicas",
                reason: "a second copy names no further replicas".into(),
            });
        }
        Ok(Self {
            num_partitions: start.num_partitions,
            ended: false,
        })
    }

    pub fn on_message(&mut self, msg: Message) -> Result<ReplicaStep, ProtoError> {
        match (self.ended, msg) {
            (false, Message::ReplicaBlock { partition, block }) => {
                if partition >= self.num_partitions {
                    return Err(ProtoError::Invalid {
                        field: "block partition",
                        reason: format!("{partition} of {}", self.num_partitions),
                    });
                }
                Ok(ReplicaStep::Block { partition, block })
            }
            (false, Message::ReplicaEnd { sums }) => {
                check_sums(&sums, self.num_partitions)?;
                self.ended = true;
                Ok(ReplicaStep::End(sums))
            }
            (ended, msg) => Err(ProtoError::Unexpected {
                got: msg.kind(),
                state: if ended {
                    "copy already ended"
                } else {
                    "receiving a copy"
                },
            }),
        }
    }
}

fn check_partitions(n: u32, max_partitions: u32) -> Result<(), ProtoError> {
    if n == 0 || n > max_partitions {
        return Err(ProtoError::Invalid {
            field: "partition count",
            reason: format!("{n} not in 1..={max_partitions}"),
        });
    }
    Ok(())
}

/// Sums name partitions in range, each once, in ascending order.
fn check_sums(sums: &[PartitionSum], num_partitions: u32) -> Result<(), ProtoError> {
    let ascending = sums.windows(2).all(|w| w[0].partition < w[1].partition);
    let in_range = sums.last().is_none_or(|s| s.partition < num_partitions);
    if !ascending || !in_range {
        return Err(ProtoError::Invalid {
            field: "partition sums",
            reason: format!("partitions must ascend, each once, below {num_partitions}"),
        });
    }
    Ok(())
}

/// What a message on a fetch stream delivers to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchStep {
    Schema(Option<Bytes>),
    Block {
        partition: u32,
        block: Bytes,
    },
    /// What each map's writer counted of `partition`, after its blocks.
    Sums {
        partition: u32,
        sums: Vec<MapSum>,
    },
    /// The server's totals, already checked against what arrived.
    End {
        blocks: u64,
        bytes: u64,
        rows: u64,
        missing_maps: Vec<u64>,
    },
    /// The server refused or failed the fetch.
    Failed {
        code: ErrorCode,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchState {
    AwaitSchema,
    Blocks,
    Done,
}

/// Client side of a fetch stream: `FetchSchema`, `FetchBlock`*, `FetchEnd` (or `Error`
/// at any point). Checks that blocks belong to the requested partition range and that the
/// server's totals match what arrived.
#[derive(Debug)]
pub struct FetchSession {
    state: FetchState,
    start_partition: u32,
    end_partition: u32,
    blocks: u64,
    bytes: u64,
    /// The last partition whose sums arrived: its blocks (and earlier ones') are over.
    summed_through: Option<u32>,
}

impl FetchSession {
    pub fn new(start_partition: u32, end_partition: u32) -> Self {
        Self {
            state: FetchState::AwaitSchema,
            start_partition,
            end_partition,
            blocks: 0,
            bytes: 0,
            summed_through: None,
        }
    }

    fn check_partition(&self, partition: u32, what: &'static str) -> Result<(), ProtoError> {
        if !(self.start_partition..self.end_partition).contains(&partition) {
            return Err(ProtoError::Invalid {
                field: what,
                reason: format!(
                    "{partition} outside requested [{}, {})",
                    self.start_partition, self.end_partition
                ),
            });
        }
        if self.summed_through.is_some_and(|p| partition <= p) {
            return Err(ProtoError::Invalid {
                field: what,
                reason: format!("partition {partition} came after its sums"),
            });
        }
        Ok(())
    }

    pub fn is_done(&self) -> bool {
        self.state == FetchState::Done
    }

    pub fn on_message(&mut self, msg: Message) -> Result<FetchStep, ProtoError> {
        match (self.state, msg) {
            (FetchState::AwaitSchema | FetchState::Blocks, Message::Error { code, message }) => {
                self.state = FetchState::Done;
                Ok(FetchStep::Failed { code, message })
            }
            (FetchState::AwaitSchema, Message::FetchSchema { schema }) => {
                self.state = FetchState::Blocks;
                Ok(FetchStep::Schema(schema))
            }
            (FetchState::Blocks, Message::FetchBlock { partition, block }) => {
                self.check_partition(partition, "block partition")?;
                self.blocks += 1;
                self.bytes += block.len() as u64;
                Ok(FetchStep::Block { partition, block })
            }
            (FetchState::Blocks, Message::FetchSums { partition, sums }) => {
                self.check_partition(partition, "sums partition")?;
                self.summed_through = Some(partition);
                Ok(FetchStep::Sums { partition, sums })
            }
            (
                FetchState::Blocks,
                Message::FetchEnd {
                    blocks,
                    bytes,
                    rows,
                    missing_maps,
                },
            ) => {
                if (blocks, bytes) != (self.blocks, self.bytes) {
                    return Err(ProtoError::Invalid {
                        field: "fetch totals",
                        reason: format!(
                            "server sent {blocks} blocks / {bytes} bytes, received {} / {}",
                            self.blocks, self.bytes
                        ),
                    });
                }
                self.state = FetchState::Done;
                Ok(FetchStep::End {
                    blocks,
                    bytes,
                    rows,
                    missing_maps,
                })
            }
            (state, msg) => Err(ProtoError::Unexpected {
                got: msg.kind(),
                state: match state {
                    FetchState::AwaitSchema => "awaiting FetchSchema",
                    FetchState::Blocks => "receiving blocks",
                    FetchState::Done => "fetch already done",
                },
            }),
        }
    }
}

/// Kinds a client may open a request stream with (after the handshake).
pub fn is_request(kind: MessageKind) -> bool {
    matches!(
        kind,
        MessageKind::RegisterApp
            | MessageKind::PushStart
            | MessageKind::ReplicaStart
            | MessageKind::FetchRequest
            | MessageKind::DeleteShuffle
            | MessageKind::DeleteApp
    )
}
