//! Push streams: decode Arrow batches, split them by partition, buffer per partition,
//! compress full buffers into blocks and append them; commit on `PushEnd`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use sluice_format::{encode_batch, encode_block, BatchDecoder, BlockMeta, CodecConfig};
use sluice_proto::session::{PushSession, PushStep};
use sluice_proto::{MapAttempt, Message, Partitioning, PushStart};
use sluice_spill::{CommitRecord, MemoryBudget, WriteGroup};
use sluice_splitter::{
    PartitionSpec, PartitionWriter, Partitioner, RangeKey, SplitError, WriterLimits,
};
use sluice_stages::Stage;

use crate::allowance::{ConnectionAllowance, StateCharge};
use crate::ctx::Ctx;
use crate::error::RequestError;
use crate::io::{write_message, FrameReader};
use crate::metrics as m;
use crate::peers::CopyOf;
use crate::reclaim::Reclaim;
use crate::registry::{App, Shuffle, ShuffleShape};

/// The CPU side of one push stream; runs on worker threads, one call at a time. Rows
/// are split into per-partition buffers (one set per map attempt, so blocks never mix
/// attempts); every block the splitter cuts is encoded, compressed and appended.
struct PushWriter {
    decoder: BatchDecoder,
    writer: PartitionWriter,
    sink: BlockSink,
    memory: Arc<MemoryBudget>,
    /// Bytes of this writer's buffers currently charged to `memory`.
    charged: u64,
    /// Its per-partition tables, held against the connection's allowance.
    _state: StateCharge,
}

impl Drop for PushWriter {
    fn drop(&mut self) {
        self.memory.release(self.charged);
    }
}

/// Turns a partition's block of rows into a stored block.
struct BlockSink {
    shuffle: Arc<Shuffle>,
    map: MapAttempt,
    epoch: u32,
    codec: CodecConfig,
    next_seq: HashMap<u32, u32>,
    stored_bytes: Vec<u64>,
    stored_rows: Vec<u64>,
    ipc_scratch: Vec<u8>,
    /// The push's writes in flight; its commit waits for them.
    writes: Arc<WriteGroup>,
}

/// A finished push, ready to commit.
struct Finished {
    record: CommitRecord,
    touched: Vec<u32>,
    partition_bytes: Vec<u64>,
    partition_rows: Vec<u64>,
}

impl Finished {
    /// The acknowledgement of its commit.
    fn ack(self, replica: Option<String>) -> Message {
        Message::PushCommitted {
            partition_bytes: self.partition_bytes,
            partition_rows: self.partition_rows,
            replica,
        }
    }
}

impl From<SplitError> for RequestError {
    fn from(e: SplitError) -> Self {
        RequestError::InvalidData(e.to_string())
    }
}

impl PushWriter {
    /// Decodes, splits and buffers one pushed batch, storing blocks that are ready.
    fn add(&mut self, ipc: Bytes) -> Result<(), RequestError> {
        let ipc_len = ipc.len() as u64;
        let batch = Stage::ServerDecode
            .time(|| self.decoder.decode(Buffer::from(ipc)))
            .map_err(|e| RequestError::InvalidData(e.to_string()))?;
        metrics::counter!(m::PUSH_BYTES).increment(ipc_len);
        metrics::counter!(m::PUSH_BATCHES).increment(1);
        metrics::counter!(m::PUSH_ROWS).increment(batch.num_rows() as u64);
        let sink = &mut self.sink;
        Stage::Split.time(|| self.writer.write(batch, |p, block| sink.store(p, block)))?;
        self.account();
        if self.memory.above_high() {
            // Server-wide pressure: write out this push's largest buffers, keeping half.
            let half = self.writer.allocated_bytes() / 2;
            self.shrink_to(half)?;
        }
        Ok(())
    }

    /// Writes out buffered rows until at most `target` bytes stay allocated.
    fn shrink_to(&mut self, target: usize) -> Result<(), RequestError> {
        let sink = &mut self.sink;
        Stage::Split.time(|| {
            self.writer
                .shrink_to(target, |p, block| sink.store(p, block))
        })?;
        self.account();
        Ok(())
    }

    /// Brings this writer's charge on the memory budget up to date.
    fn account(&mut self) {
        let now = self.writer.allocated_bytes() as u64;
        self.memory.recharge(self.charged, now);
        self.charged = now;
    }

    /// Stores every remaining row and waits until all of the push's blocks are written.
    fn finish(mut self) -> Result<Finished, RequestError> {
        let sink = &mut self.sink;
        sink.writes.write_inline();
        Stage::Split.time(|| self.writer.finish(|p, block| sink.store(p, block)))?;
        let (blocks, touched) = sink.writes.wait()?;
        let record = CommitRecord {
            map_id: sink.map.map_id,
            map_index: sink.map.map_index,
            attempt: sink.map.attempt,
            epoch: sink.epoch,
            blocks,
            bytes: sink.stored_bytes.iter().sum(),
            rows: sink.stored_rows.iter().sum(),
        };
        Ok(Finished {
            record,
            touched,
            partition_bytes: std::mem::take(&mut sink.stored_bytes),
            partition_rows: std::mem::take(&mut sink.stored_rows),
        })
    }
}

impl BlockSink {
    fn store(&mut self, partition: u32, batch: RecordBatch) -> Result<(), RequestError> {
        let rows = batch.num_rows();
        let seq = self.next_seq.entry(partition).or_insert(0);
        let meta = BlockMeta {
            map_id: self.map.map_id,
            map_index: self.map.map_index,
            attempt: self.map.attempt,
            seq: *seq,
            rows: u32::try_from(rows)
                .map_err(|_| RequestError::InvalidData(format!("{rows} rows in one block")))?,
        };
        *seq += 1;
        self.ipc_scratch.clear();
        Stage::BlockEncode
            .time(|| encode_batch(&batch, &mut self.ipc_scratch))
            .map_err(|e| RequestError::Internal(format!("encoding a block: {e}")))?;
        let (raw, codec) = (&self.ipc_scratch, &self.codec);
        // Room for the worst case: the record's buffer never grows (a copy) while the
        // block is compressed into it.
        let hint = sluice_format::HEADER_LEN + codec.max_compressed_len(raw.len());
        let block_len = Stage::Append.time(|| {
            self.shuffle
                .store
                .append(partition, self.epoch, hint, &self.writes, |out| {
                    Stage::Compress.time(|| encode_block(meta, raw, codec, out))
                })
        })?;
        metrics::counter!(m::BLOCKS_WRITTEN).increment(1);
        metrics::counter!(m::SPILL_BYTES).increment(block_len as u64);
        self.stored_bytes[partition as usize] += block_len as u64;
        self.stored_rows[partition as usize] += rows as u64;
        Ok(())
    }
}

fn partition_spec(
    p: &Partitioning,
    map: &MapAttempt,
    num_partitions: u32,
) -> Result<PartitionSpec, RequestError> {
    Ok(match p {
        Partitioning::Single => PartitionSpec::Single,
        Partitioning::RoundRobin => PartitionSpec::RoundRobin {
            start: map.map_index % num_partitions,
        },
        Partitioning::PartitionIdColumn { column } => PartitionSpec::PartitionIdColumn {
            column: *column as usize,
        },
        Partitioning::Hash { columns } => PartitionSpec::Hash {
            columns: columns.iter().map(|&c| c as usize).collect(),
        },
        Partitioning::Range {
            keys,
            bounds_schema,
            bounds,
            reversed,
        } => {
            // The bounds pass the same checks as any pushed batch.
            let bad = |e: sluice_format::FormatError| {
                RequestError::InvalidData(format!("range bounds: {e}"))
            };
            let bounds = BatchDecoder::new(bounds_schema)
                .and_then(|d| d.decode(Buffer::from(bounds.clone())))
                .map_err(bad)?;
            let keys = keys
                .iter()
                .map(|k| RangeKey {
                    column: k.column as usize,
                    descending: k.descending,
                    nulls_first: k.nulls_first,
                })
                .collect();
            PartitionSpec::Range {
                keys,
                bounds,
                reversed: *reversed,
            }
        }
    })
}

/// A push that passed its checks: its writer, its shuffle and its app.
struct Opened {
    writer: PushWriter,
    shuffle: Arc<Shuffle>,
    app: Arc<App>,
    shuffle_id: u32,
}

/// Bytes of a push's per-partition tables: the writer's, and the stored bytes and rows
/// per partition it counts and acknowledges.
fn push_state_bytes(num_partitions: u32, columns: usize) -> u64 {
    let acks = num_partitions as usize * 4 * std::mem::size_of::<u64>();
    (PartitionWriter::fixed_bytes_for(num_partitions, columns) + acks) as u64
}

/// Bytes of what a shuffle's shape keeps: its schema and range bounds, as received and
/// decoded (about as large again).
fn shape_bytes(start: &PushStart) -> usize {
    let bounds = match &start.partitioning {
        Partitioning::Range {
            bounds_schema,
            bounds,
            ..
        } => bounds_schema.len() + bounds.len(),
        _ => 0,
    };
    start.schema.len() + bounds
}

/// Validates a push's opening and prepares its writer; its per-partition tables are
/// held against the connection's `allowance`.
fn open_push(
    ctx: &Ctx,
    allowance: &Arc<ConnectionAllowance>,
    h: PushStart,
) -> Result<Opened, RequestError> {
    let app = ctx.registry.app(&h.app, &h.secret)?;
    let declared = shape_bytes(&h);
    if declared > ctx.shapes.max_schema_size {
        return Err(RequestError::Limit(format!(
            "a schema and range bounds of {declared} bytes (limits.max_schema_size = {})",
            ctx.shapes.max_schema_size
        )));
    }
    let decoder =
        BatchDecoder::new(&h.schema).map_err(|e| RequestError::InvalidData(e.to_string()))?;
    let n = h.num_partitions;
    let state = allowance.try_hold(
        push_state_bytes(n, decoder.schema().fields().len()),
        &format!("a push of {n} partitions"),
    )?;
    let spec = partition_spec(&h.partitioning, &h.map, n)?;
    let partitioner = Partitioner::new(spec, n, decoder.schema())
        .map_err(|e| RequestError::InvalidData(e.to_string()))?;
    let shape = ShuffleShape {
        num_partitions: n,
        partitioning: h.partitioning,
        schema: decoder.schema().clone(),
        schema_ipc: h.schema,
        bytes: 2 * declared,
    };
    let shuffle = app.shuffle_for_push(h.shuffle_id, shape, &ctx.shapes)?;
    // From here on the push counts on the shuffle: `Reclaim` ends it.
    let epoch = match shuffle.begin_push(&h.map) {
        Ok(epoch) => epoch,
        Err(e) => {
            if app.push_ended(h.shuffle_id, &shuffle) {
                let _ = shuffle.delete_files();
            }
            return Err(e);
        }
    };
    let limits = WriterLimits {
        block_size: ctx.block_size,
        memory_limit: ctx.push_buffer_limit,
    };
    let writer = PushWriter {
        writer: PartitionWriter::new(partitioner, decoder.schema().clone(), limits),
        decoder,
        sink: BlockSink {
            shuffle: shuffle.clone(),
            map: h.map,
            epoch,
            codec: ctx.codec,
            next_seq: HashMap::new(),
            stored_bytes: vec![0; n as usize],
            stored_rows: vec![0; n as usize],
            ipc_scratch: Vec::new(),
            writes: WriteGroup::with_budget(ctx.memory.clone()),
        },
        memory: ctx.memory.clone(),
        charged: 0,
        _state: state,
    };
    Ok(Opened {
        writer,
        shuffle,
        app,
        shuffle_id: h.shuffle_id,
    })
}

/// At the memory limit: writes out everything this push buffers, then stops reading
/// its stream (QUIC flow control holds the client back) until memory is below the low
/// watermark, or until this push holds nothing at all: its buffers are empty and its
/// writes are done. The second condition keeps pushes live when others sharing the
/// connection's flow-control window are the ones holding memory: a push that holds
/// nothing may always take one more batch.
async fn wait_for_memory(ctx: &Ctx, w: PushWriter) -> Result<PushWriter, RequestError> {
    let (w, result) = ctx
        .pool
        .run(move || {
            let mut w = w;
            let result = w.shrink_to(0);
            (w, result)
        })
        .await?;
    result?;
    let started = std::time::Instant::now();
    while !ctx.memory.below_low() && w.sink.writes.pending() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    tracing::trace!(waited = ?started.elapsed(), "push resumed under the memory budget");
    Ok(w)
}

/// Serves one push stream that opened with `start`.
pub(crate) async fn handle_push(
    ctx: &Arc<Ctx>,
    frames: &FrameReader,
    start: PushStart,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Result<(), RequestError> {
    let mut session = PushSession::start(&start, ctx.limits.max_partitions)?;
    // What a second copy opens with: this push's shape, and the candidates to try.
    let copy = start.clone();
    // A new shuffle creates its directory and metadata file: off the runtime.
    let (c, allowance) = (ctx.clone(), frames.allowance.clone());
    let opened = tokio::task::spawn_blocking(move || open_push(&c, &allowance, start))
        .await
        .map_err(|e| RequestError::Internal(e.to_string()))??;
    let _busy = opened.app.requests.enter();
    let shuffle = opened.shuffle;
    let mut reclaim = Reclaim {
        app: opened.app.clone(),
        shuffle_id: opened.shuffle_id,
        shuffle: shuffle.clone(),
        epoch: opened.writer.sink.epoch,
        writes: opened.writer.sink.writes.clone(),
        armed: true,
    };
    // A delete of the shuffle or its app ends the push at once; the store refuses what
    // the push still has in flight.
    tokio::select! {
        biased;
        () = shuffle.closed() => Err(RequestError::Deleted(
            "the shuffle was deleted during this push".into(),
        )),
        done = push_loop(ctx, frames, &mut session, opened.writer, &shuffle, &copy, recv) => {
            let ack = done?;
            reclaim.armed = false;
            write_message(send, &ack).await
        }
    }
}

/// Takes batches until `PushEnd`, then commits; returns the acknowledgement to send.
async fn push_loop(
    ctx: &Ctx,
    frames: &FrameReader,
    session: &mut PushSession,
    writer: PushWriter,
    shuffle: &Arc<Shuffle>,
    copy: &PushStart,
    recv: &mut RecvStream,
) -> Result<Message, RequestError> {
    let mut writer = Some(writer);
    loop {
        if ctx.memory.exhausted() {
            let w = writer.take().expect("writer is returned after every batch");
            writer = Some(wait_for_memory(ctx, w).await?);
        }
        let (msg, charge) = frames
            .read(recv)
            .await?
            .ok_or_else(|| RequestError::Stream("push stream ended before PushEnd".into()))?;
        match session.on_message(msg)? {
            PushStep::Batch(ipc) => {
                let mut w = writer.take().expect("writer is returned after every batch");
                let (w, result) = ctx
                    .pool
                    .run(move || {
                        let result = w.add(ipc);
                        // The frame's bytes are split into buffers (counted there) or
                        // held by the writer's waiting batches (counted too).
                        drop(charge);
                        (w, result)
                    })
                    .await?;
                result?;
                writer = Some(w);
            }
            PushStep::End(sums) => {
                let started = std::time::Instant::now();
                let w = writer.take().expect("writer is returned after every batch");
                let ack = if copy.replicas.is_empty() {
                    // One worker job from the last rows to the durable commit: each
                    // hand-off back to the runtime waits for a core on a busy host.
                    let committer = shuffle.clone();
                    ctx.pool
                        .run(move || {
                            let done = w.finish()?;
                            let kept = crate::sums::check(&sums, &done.partition_rows)?;
                            committer.commit(&done.record, &done.touched, &kept)?;
                            Ok::<_, RequestError>(done.ack(None))
                        })
                        .await??
                } else {
                    finish_replicated(ctx, w, shuffle, copy, &sums).await?
                };
                metrics::counter!(m::COMMITS).increment(1);
                metrics::histogram!(m::COMMIT_SECONDS).record(started.elapsed());
                return Ok(ack);
            }
        }
    }
}

/// Finishes a push whose map keeps a second copy: the copy commits first, so a map
/// commits only once both copies are committed (or no candidate is left, which is
/// logged and counted).
async fn finish_replicated(
    ctx: &Ctx,
    w: PushWriter,
    shuffle: &Arc<Shuffle>,
    copy: &PushStart,
    sums: &[sluice_proto::PartitionSum],
) -> Result<Message, RequestError> {
    let epoch = w.sink.epoch;
    let done = ctx.pool.run(move || w.finish()).await??;
    let kept = crate::sums::check(sums, &done.partition_rows)?;
    let mut partitions = done.touched.clone();
    partitions.sort_unstable();
    let forward = CopyOf {
        start: copy,
        shuffle,
        epoch,
        partitions: &partitions,
        sums,
    };
    let replica = ctx.peers.replicate(&forward, &copy.replicas).await;
    let committer = shuffle.clone();
    let done = ctx
        .pool
        .run(move || {
            committer.commit(&done.record, &done.touched, &kept)?;
            Ok::<_, RequestError>(done)
        })
        .await??;
    Ok(done.ack(replica))
}
