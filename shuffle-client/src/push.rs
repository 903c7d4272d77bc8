use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use sluice_format::{encode_batch, encode_schema};
use sluice_proto::{
    Limits, MapAttempt, Message, PartitionSum, Partitioning, PushStart, RangeOrder,
    FRAME_HEADER_LEN,
};
use sluice_stages::Stage;

use crate::client::{AppCredentials, Client};
use crate::error::ClientError;
use crate::io::{read_reply, write_message};

/// What to push: one attempt of one map task.
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub app: AppCredentials,
    pub shuffle_id: u32,
    pub map: MapAttempt,
    pub num_partitions: u32,
    pub partitioning: Partitioning,
    pub schema: SchemaRef,
    /// Servers (`host:port`, as the server can reach them) that may keep a second copy,
    /// in order of preference: the server forwards the map to the first that takes it
    /// before it commits, and the ack names which one did. Empty: one copy.
    pub replicas: Vec<String>,
}

/// Spark SQL range partitioning by `keys` against `bounds`: one column per key, strictly
/// increasing in the keys' order, at most P - 1 rows (Spark's `rangeBounds`).
pub fn range_partitioning(
    keys: Vec<RangeOrder>,
    bounds: &RecordBatch,
) -> Result<Partitioning, ClientError> {
    range(keys, bounds, false)
}

/// An RDD `RangePartitioner` with `ascending = false` (`sortByKey(false)`): `bounds` (one
/// key column, strictly increasing) as Spark computed them, partition index reversed.
pub fn reversed_range_partitioning(
    key: RangeOrder,
    bounds: &RecordBatch,
) -> Result<Partitioning, ClientError> {
    range(vec![key], bounds, true)
}

fn range(
    keys: Vec<RangeOrder>,
    bounds: &RecordBatch,
    reversed: bool,
) -> Result<Partitioning, ClientError> {
    let mut batch = Vec::new();
    encode_batch(bounds, &mut batch)?;
    Ok(Partitioning::Range {
        keys,
        bounds_schema: Bytes::from(encode_schema(&bounds.schema())),
        bounds: Bytes::from(batch),
        reversed,
    })
}

/// The server's commit acknowledgement: what it stored for this map attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitAck {
    /// Stored (compressed) bytes per partition.
    pub partition_bytes: Vec<u64>,
    /// Rows per partition.
    pub partition_rows: Vec<u64>,
    /// The server that holds the second copy (one of the request's `replicas`), if any
    /// took it.
    pub replica: Option<String>,
}

/// An open push stream. Send batches, then [`PushStream::commit`]. Dropping it without
/// committing abandons the attempt: the server never serves its rows.
#[derive(Debug)]
pub struct PushStream {
    send: SendStream,
    recv: RecvStream,
    limits: Limits,
    /// Size of the last encoded batch: the next buffer's initial capacity.
    encoded_hint: usize,
}

impl PushStream {
    pub(crate) async fn open(client: &Client, r: PushRequest) -> Result<Self, ClientError> {
        let (mut send, recv) = client.open().await?;
        let start = Message::PushStart(PushStart {
            app: r.app.app,
            secret: r.app.secret,
            shuffle_id: r.shuffle_id,
            map: r.map,
            num_partitions: r.num_partitions,
            partitioning: r.partitioning,
            schema: Bytes::from(encode_schema(&r.schema)),
            replicas: r.replicas,
        });
        write_message(&mut send, &start).await?;
        Ok(Self {
            send,
            recv,
            limits: client.limits,
            encoded_hint: 1 << 20,
        })
    }

    /// Sends one batch. Batches larger than a frame are sent in slices; a batch of no
    /// rows sends nothing.
    pub async fn send(&mut self, batch: &RecordBatch) -> Result<(), ClientError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let mut pending = vec![batch.clone()];
        while let Some(b) = pending.pop() {
            // Encoded into a fresh buffer that becomes the frame payload without a copy.
            // An eighth more than the last batch took: a batch a little larger than the
            // last must not double the buffer (a copy, and fresh pages to fault in).
            let mut ipc = Vec::with_capacity(self.encoded_hint + self.encoded_hint / 8);
            Stage::ClientEncode.time(|| encode_batch(&b, &mut ipc))?;
            self.encoded_hint = ipc.len();
            if ipc.len() + FRAME_HEADER_LEN > self.limits.max_frame_len as usize {
                let rows = b.num_rows();
                if rows <= 1 {
                    return Err(ClientError::RowTooLarge {
                        limit: self.limits.max_frame_len,
                    });
                }
                // Second half first: the stack pops the first half next, keeping order.
                pending.push(b.slice(rows / 2, rows - rows / 2));
                pending.push(b.slice(0, rows / 2));
                continue;
            }
            let msg = Message::PushBatch {
                ipc: Bytes::from(ipc),
            };
            if let Err(e) = write_message(&mut self.send, &msg).await {
                return Err(self.server_error_or(e).await);
            }
        }
        Ok(())
    }

    /// Ends the push and waits until the server has stored every row.
    pub async fn commit(self) -> Result<CommitAck, ClientError> {
        self.commit_with_sums(Vec::new()).await
    }

    /// Ends the push with what the writer itself counted of each partition it wrote
    /// (ascending, each once): the server refuses the commit if its own counts differ,
    /// keeps them with the map, and serves them to readers, who check them too.
    pub async fn commit_with_sums(
        mut self,
        sums: Vec<PartitionSum>,
    ) -> Result<CommitAck, ClientError> {
        if let Err(e) = write_message(&mut self.send, &Message::PushEnd { sums }).await {
            return Err(self.server_error_or(e).await);
        }
        let _ = self.send.finish();
        match read_reply(&mut self.recv, &self.limits).await? {
            Message::PushCommitted {
                partition_bytes,
                partition_rows,
                replica,
            } => Ok(CommitAck {
                partition_bytes,
                partition_rows,
                replica,
            }),
            other => Err(ClientError::Stream(format!(
                "unexpected reply to PushEnd: {:?}",
                other.kind()
            ))),
        }
    }

    /// A write failed: the server usually stopped the stream after sending an error.
    /// Prefer that error, which says why, over the bare write failure.
    async fn server_error_or(&mut self, write_error: ClientError) -> ClientError {
        match read_reply(&mut self.recv, &self.limits).await {
            Err(server @ ClientError::Server { .. }) => server,
            _ => write_error,
        }
    }
}
