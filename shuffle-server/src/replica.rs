//! The receiving end of a second copy: another server forwards the blocks it stored for
//! a map (already split and compressed), and this server appends them as they are and
//! commits them with the writer's sums. So a copy costs this server a check and a
//! write per block, never a split: and the blocks, their sequence numbers included, are
//! the same on both servers, which lets a reader move from one copy to the other
//! mid-map and skip what it already has.

use std::sync::Arc;

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use sluice_format::{BatchDecoder, BlockView, DecodeLimits};
use sluice_proto::session::{ReplicaSession, ReplicaStep};
use sluice_proto::{Message, PushStart};
use sluice_spill::{CommitRecord, WriteGroup};

use crate::ctx::Ctx;
use crate::error::RequestError;
use crate::io::{write_message, FrameReader};
use crate::metrics as m;
use crate::reclaim::Reclaim;
use crate::registry::{App, Shuffle, ShuffleShape};

/// A copy being received: its shuffle, epoch and what it stored so far.
struct Copy {
    shuffle: Arc<Shuffle>,
    map: sluice_proto::MapAttempt,
    epoch: u32,
    limits: DecodeLimits,
    writes: Arc<WriteGroup>,
    stored_bytes: Vec<u64>,
    stored_rows: Vec<u64>,
}

impl Copy {
    /// Checks one forwarded block (header, checksum, that it belongs to this map) and
    /// appends it as it is. Blocking: on the worker pool.
    fn store(&mut self, partition: u32, block: &Bytes) -> Result<(), RequestError> {
        let bad = |e: sluice_format::FormatError| {
            RequestError::InvalidData(format!("forwarded block: {e}"))
        };
        let header = BlockView::parse(block, &self.limits).map_err(bad)?.header;
        if (header.map_id, header.map_index, header.attempt)
            != (self.map.map_id, self.map.map_index, self.map.attempt)
        {
            return Err(RequestError::InvalidData(format!(
                "a forwarded block of map {} in a copy of map {}",
                header.map_id, self.map.map_id
            )));
        }
        if header.block_len() != block.len() {
            return Err(RequestError::InvalidData(
                "forwarded block has trailing bytes".into(),
            ));
        }
        let len =
            self.shuffle
                .store
                .append(partition, self.epoch, block.len(), &self.writes, |out| {
                    out.extend_from_slice(block);
                    Ok(header)
                })?;
        metrics::counter!(m::BLOCKS_WRITTEN).increment(1);
        metrics::counter!(m::SPILL_BYTES).increment(u64::from(len));
        self.stored_bytes[partition as usize] += u64::from(len);
        self.stored_rows[partition as usize] += u64::from(header.rows);
        Ok(())
    }
}

/// Opens a copy: the app (by its secret), the shuffle (created with the shape given,
/// or checked against it) and an epoch for the map.
fn open_copy(ctx: &Ctx, start: PushStart) -> Result<(Copy, Arc<App>, u32), RequestError> {
    let app = ctx.registry.app(&start.app, &start.secret)?;
    if start.schema.len() > ctx.shapes.max_schema_size {
        return Err(RequestError::Limit(format!(
            "a schema of {} bytes (limits.max_schema_size = {})",
            start.schema.len(),
            ctx.shapes.max_schema_size
        )));
    }
    let decoder =
        BatchDecoder::new(&start.schema).map_err(|e| RequestError::InvalidData(e.to_string()))?;
    let n = start.num_partitions as usize;
    let shape = ShuffleShape {
        num_partitions: start.num_partitions,
        partitioning: start.partitioning,
        schema: decoder.schema().clone(),
        bytes: 2 * start.schema.len(),
        schema_ipc: start.schema,
    };
    let shuffle = app.shuffle_for_push(start.shuffle_id, shape, &ctx.shapes)?;
    let epoch = match shuffle.begin_push(&start.map) {
        Ok(epoch) => epoch,
        Err(e) => {
            if app.push_ended(start.shuffle_id, &shuffle) {
                let _ = shuffle.delete_files();
            }
            return Err(e);
        }
    };
    let copy = Copy {
        shuffle,
        map: start.map,
        epoch,
        limits: DecodeLimits::default(),
        writes: WriteGroup::with_budget(ctx.memory.clone()),
        stored_bytes: vec![0; n],
        stored_rows: vec![0; n],
    };
    Ok((copy, app, start.shuffle_id))
}

/// Serves one `ReplicaStart` stream: stores the forwarded blocks, then commits them
/// with the writer's sums and answers `PushCommitted`.
pub(crate) async fn handle_replica(
    ctx: &Arc<Ctx>,
    frames: &FrameReader,
    start: PushStart,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Result<(), RequestError> {
    let mut session = ReplicaSession::start(&start, ctx.limits.max_partitions)?;
    let state = frames.allowance.try_hold(
        16 * u64::from(start.num_partitions),
        &format!("a copy of {} partitions", start.num_partitions),
    )?;
    let c = ctx.clone();
    let (copy, app, shuffle_id) = tokio::task::spawn_blocking(move || open_copy(&c, start))
        .await
        .map_err(|e| RequestError::Internal(e.to_string()))??;
    let _busy = app.requests.enter();
    let shuffle = copy.shuffle.clone();
    let mut reclaim = Reclaim {
        app,
        shuffle_id,
        shuffle: shuffle.clone(),
        epoch: copy.epoch,
        writes: copy.writes.clone(),
        armed: true,
    };
    tokio::select! {
        biased;
        () = shuffle.closed() => Err(RequestError::Deleted(
            "the shuffle was deleted during this copy".into(),
        )),
        done = receive(ctx, frames, &mut session, copy, recv) => {
            let ack = done?;
            reclaim.armed = false;
            drop(state);
            write_message(send, &ack).await
        }
    }
}

/// Takes blocks until `ReplicaEnd`, then commits; returns the acknowledgement.
async fn receive(
    ctx: &Ctx,
    frames: &FrameReader,
    session: &mut ReplicaSession,
    copy: Copy,
    recv: &mut RecvStream,
) -> Result<Message, RequestError> {
    let mut copy = Some(copy);
    loop {
        let (msg, charge) = frames
            .read(recv)
            .await?
            .ok_or_else(|| RequestError::Stream("copy ended before ReplicaEnd".into()))?;
        match session.on_message(msg)? {
            ReplicaStep::Block { partition, block } => {
                let mut c = copy.take().expect("the copy is returned after every block");
                let (c, result) = ctx
                    .pool
                    .run(move || {
                        let result = c.store(partition, &block);
                        drop(charge);
                        (c, result)
                    })
                    .await?;
                result?;
                copy = Some(c);
            }
            ReplicaStep::End(sums) => {
                let c = copy.take().expect("the copy is returned after every block");
                return ctx.pool.run(move || commit(c, &sums)).await?;
            }
        }
    }
}

/// Waits for the copy's writes, checks them against the writer's sums and commits.
fn commit(copy: Copy, sums: &[sluice_proto::PartitionSum]) -> Result<Message, RequestError> {
    let (blocks, touched) = copy.writes.wait()?;
    let sums = crate::sums::check(sums, &copy.stored_rows)?;
    let record = CommitRecord {
        map_id: copy.map.map_id,
        map_index: copy.map.map_index,
        attempt: copy.map.attempt,
        epoch: copy.epoch,
        blocks,
        bytes: copy.stored_bytes.iter().sum(),
        rows: copy.stored_rows.iter().sum(),
    };
    copy.shuffle.commit(&record, &touched, &sums)?;
    metrics::counter!(m::COMMITS).increment(1);
    Ok(Message::PushCommitted {
        partition_bytes: copy.stored_bytes,
        partition_rows: copy.stored_rows,
        replica: None,
    })
}
