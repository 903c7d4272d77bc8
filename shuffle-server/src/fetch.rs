//! Fetch streams: send the stored blocks of committed map attempts, as they are stored.

use std::sync::Arc;

use bytes::Bytes;
use quinn::SendStream;
use sluice_proto::{FetchRequest, MapFilter, MapSum, Message};
use sluice_spill::BlockEntry;

use crate::allowance::ConnectionAllowance;
use crate::ctx::Ctx;
use crate::error::RequestError;
use crate::io::write_message;
use crate::metrics as m;
use crate::registry::Shuffle;

/// Blocks read from disk per blocking task: a fetch's read-ahead (at least one block;
/// blocks are under twice `storage.block_size`).
const READ_CHUNK_BYTES: u64 = 1 << 20;

#[derive(Debug, Default)]
struct Totals {
    blocks: u64,
    bytes: u64,
    rows: u64,
}

/// Serves one fetch request.
pub(crate) async fn handle_fetch(
    ctx: &Ctx,
    allowance: &Arc<ConnectionAllowance>,
    request: FetchRequest,
    send: &mut SendStream,
) -> Result<(), RequestError> {
    let FetchRequest {
        app,
        secret,
        shuffle_id,
        start_partition,
        end_partition,
        maps,
    } = request;
    if start_partition > end_partition {
        return Err(RequestError::InvalidData(format!(
            "partition range [{start_partition}, {end_partition}) is reversed"
        )));
    }
    let app = ctx.registry.app(&app, &secret)?;
    let _busy = app.requests.enter();
    let Some(shuffle) = app.shuffle(shuffle_id)? else {
        // Nothing was ever pushed to this shuffle here: every named map is missing.
        let missing_maps = match maps {
            MapFilter::MapIds(mut ids) => {
                ids.sort_unstable();
                ids.dedup();
                ids
            }
            _ => Vec::new(),
        };
        write_or_stall(ctx, send, &Message::FetchSchema { schema: None }).await?;
        let end = Message::FetchEnd {
            blocks: 0,
            bytes: 0,
            rows: 0,
            missing_maps,
        };
        return write_or_stall(ctx, send, &end).await;
    };
    if end_partition > shuffle.shape.num_partitions {
        return Err(RequestError::InvalidData(format!(
            "partition range [{start_partition}, {end_partition}) exceeds the shuffle's {} partitions",
            shuffle.shape.num_partitions
        )));
    }
    // A delete of the shuffle or its app ends the fetch at once. The stream is reset
    // with the error code, since the fetch may have stopped in the middle of a frame.
    tokio::select! {
        biased;
        () = shuffle.closed() => {
            let e = RequestError::Deleted("the shuffle was deleted during this fetch".into());
            let _ = send.reset(quinn::VarInt::from(e.code().to_u16()));
            Err(e)
        }
        sent = send_partitions(ctx, allowance, &shuffle, start_partition..end_partition, &maps, send) => sent,
    }
}

/// Sends the schema, the selected blocks of `partitions` and the end frame.
async fn send_partitions(
    ctx: &Ctx,
    allowance: &Arc<ConnectionAllowance>,
    shuffle: &Arc<Shuffle>,
    partitions: std::ops::Range<u32>,
    maps: &MapFilter,
    send: &mut SendStream,
) -> Result<(), RequestError> {
    let selection = shuffle.select(maps);
    let schema = Some(shuffle.shape.schema_ipc.clone());
    write_or_stall(ctx, send, &Message::FetchSchema { schema }).await?;
    let mut totals = Totals::default();
    let selected = selection.maps();
    for partition in partitions {
        let entries = shuffle
            .store
            .blocks(partition, |e| selection.contains(e.map_id, e.epoch));
        for chunk in chunks(&entries, READ_CHUNK_BYTES) {
            let read_ahead = allowance
                .hold(chunk.iter().map(|e| e.len as u64).sum())
                .await;
            send_blocks(ctx, shuffle, partition, chunk.to_vec(), send, &mut totals).await?;
            drop(read_ahead);
        }
        // What each map's writer counted of this partition, for the reader to check.
        let sums: Vec<MapSum> = selected
            .iter()
            .filter_map(|&(map_id, epoch)| {
                let s = shuffle.store.sums(partition, map_id, epoch)?;
                Some(MapSum {
                    map_id,
                    rows: s.rows,
                    checksum: s.checksum,
                })
            })
            .collect();
        if !sums.is_empty() {
            write_or_stall(ctx, send, &Message::FetchSums { partition, sums }).await?;
        }
    }
    let end = Message::FetchEnd {
        blocks: totals.blocks,
        bytes: totals.bytes,
        rows: totals.rows,
        missing_maps: selection.missing,
    };
    write_or_stall(ctx, send, &end).await
}

/// Splits entries into runs of about `max_bytes`.
pub(crate) fn chunks(entries: &[BlockEntry], max_bytes: u64) -> Vec<&[BlockEntry]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, e) in entries.iter().enumerate() {
        bytes += e.len as u64;
        if bytes >= max_bytes {
            out.push(&entries[start..=i]);
            start = i + 1;
            bytes = 0;
        }
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

/// Writes one message, or gives up when the reader takes none of it for the stall
/// timeout.
async fn write_or_stall(
    ctx: &Ctx,
    send: &mut SendStream,
    msg: &Message,
) -> Result<(), RequestError> {
    let stall = ctx.conn.stall_timeout;
    tokio::time::timeout(stall, write_message(send, msg))
        .await
        .map_err(|_| RequestError::Stalled(stall))?
}

async fn send_blocks(
    ctx: &Ctx,
    shuffle: &Arc<Shuffle>,
    partition: u32,
    entries: Vec<BlockEntry>,
    send: &mut SendStream,
    totals: &mut Totals,
) -> Result<(), RequestError> {
    let store = shuffle.clone();
    let rows: u64 = entries.iter().map(|e| e.rows as u64).sum();
    let read = move || sluice_stages::Stage::Read.time(|| store.store.read(partition, &entries));
    let blocks = tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| RequestError::Internal(format!("read task: {e}")))??;
    for block in blocks {
        totals.blocks += 1;
        totals.bytes += block.len() as u64;
        metrics::counter!(m::FETCH_BLOCKS).increment(1);
        metrics::counter!(m::FETCH_BYTES).increment(block.len() as u64);
        let msg = Message::FetchBlock {
            partition,
            block: Bytes::from(block),
        };
        write_or_stall(ctx, send, &msg).await?;
    }
    totals.rows += rows;
    Ok(())
}
