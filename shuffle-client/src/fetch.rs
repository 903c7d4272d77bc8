use std::collections::HashMap;
use std::ops::Range;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use bytes::Bytes;
use quinn::RecvStream;
use sluice_format::{BatchDecoder, BlockHeader, BlockView, DecodeLimits};
use sluice_proto::session::{FetchSession, FetchStep};
use sluice_proto::{FetchRequest as WireFetch, Limits, MapFilter, MapSum, Message};
use sluice_stages::Stage;

use crate::client::{AppCredentials, Client};
use crate::error::ClientError;
use crate::io::{read_message, write_message};

/// What to fetch: partitions `[start, end)` of a shuffle, of the selected map outputs.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub app: AppCredentials,
    pub shuffle_id: u32,
    pub partitions: Range<u32>,
    pub maps: MapFilter,
}

impl FetchRequest {
    /// Every committed map output of the partitions.
    pub fn partitions(app: AppCredentials, shuffle_id: u32, partitions: Range<u32>) -> Self {
        Self {
            app,
            shuffle_id,
            partitions,
            maps: MapFilter::All,
        }
    }

    pub fn with_maps(mut self, maps: MapFilter) -> Self {
        self.maps = maps;
        self
    }
}

/// A verified, still compressed block as the server stored it.
#[derive(Debug, Clone)]
pub struct FetchedBlock {
    pub partition: u32,
    pub header: BlockHeader,
    /// The whole block (header + stored body).
    pub bytes: Bytes,
}

/// What a fetch delivers: blocks, and after the blocks of a partition, what each map's
/// writer counted of it (for maps whose writer gave counts).
#[derive(Debug, Clone)]
pub enum FetchItem {
    Block(FetchedBlock),
    /// The writer's counts of `partition`, already checked against the rows of the
    /// blocks that arrived; their checksums are for the caller to check (their
    /// definition is the writer's).
    Sums {
        partition: u32,
        sums: Vec<MapSum>,
    },
}

/// The server's totals for a completed fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchSummary {
    pub blocks: u64,
    pub bytes: u64,
    pub rows: u64,
}

/// A fetch in progress: blocks arrive partition by partition, in storage order.
#[derive(Debug)]
pub struct FetchStream {
    recv: RecvStream,
    session: FetchSession,
    decoder: Option<BatchDecoder>,
    limits: Limits,
    decode_limits: DecodeLimits,
    rows_seen: u64,
    summary: Option<FetchSummary>,
    /// Per (map id, partition): the next block sequence number expected, and the rows
    /// delivered so far. A block out of sequence (lost or repeated) or rows that differ
    /// from the writer's count is an integrity error.
    delivered: HashMap<(u64, u32), (u32, u64)>,
}

impl FetchStream {
    pub(crate) async fn open(client: &Client, r: FetchRequest) -> Result<Self, ClientError> {
        let (mut send, recv) = client.open().await?;
        let msg = Message::FetchRequest(WireFetch {
            app: r.app.app,
            secret: r.app.secret,
            shuffle_id: r.shuffle_id,
            start_partition: r.partitions.start,
            end_partition: r.partitions.end,
            maps: r.maps,
        });
        write_message(&mut send, &msg).await?;
        let _ = send.finish();
        Ok(Self {
            recv,
            session: FetchSession::new(r.partitions.start, r.partitions.end),
            decoder: None,
            limits: client.limits,
            decode_limits: client.decode_limits,
            rows_seen: 0,
            summary: None,
            delivered: HashMap::new(),
        })
    }

    /// The next block, verified (header, lengths, crc32c, its place in its map's
    /// sequence) but not decompressed. `Ok(None)` once the server's end frame has
    /// arrived and matched. The writer's counts, where given, are checked on the way.
    pub async fn next_block(&mut self) -> Result<Option<FetchedBlock>, ClientError> {
        loop {
            match self.next_item().await? {
                Some(FetchItem::Block(block)) => return Ok(Some(block)),
                Some(FetchItem::Sums { .. }) => continue,
                None => return Ok(None),
            }
        }
    }

    /// The next block or partition's sums (see [`FetchItem`]).
    pub async fn next_item(&mut self) -> Result<Option<FetchItem>, ClientError> {
        loop {
            if self.session.is_done() {
                return Ok(None);
            }
            let msg = read_message(&mut self.recv, &self.limits)
                .await?
                .ok_or_else(|| ClientError::Stream("fetch stream ended early".into()))?;
            match self.session.on_message(msg)? {
                FetchStep::Schema(schema) => {
                    self.decoder = schema.map(|s| BatchDecoder::new(&s)).transpose()?;
                }
                FetchStep::Block { partition, block } => {
                    let header = Stage::Checksum
                        .time(|| BlockView::parse(&block, &self.decode_limits))?
                        .header;
                    self.in_sequence(partition, &header)?;
                    self.rows_seen += header.rows as u64;
                    return Ok(Some(FetchItem::Block(FetchedBlock {
                        partition,
                        header,
                        bytes: block,
                    })));
                }
                FetchStep::Sums { partition, sums } => {
                    self.check_sums(partition, &sums)?;
                    return Ok(Some(FetchItem::Sums { partition, sums }));
                }
                FetchStep::End {
                    blocks,
                    bytes,
                    rows,
                    missing_maps,
                } => {
                    if !missing_maps.is_empty() {
                        return Err(ClientError::MissingMaps(missing_maps));
                    }
                    if rows != self.rows_seen {
                        return Err(ClientError::RowCountMismatch {
                            expected: rows,
                            received: self.rows_seen,
                        });
                    }
                    self.summary = Some(FetchSummary {
                        blocks,
                        bytes,
                        rows,
                    });
                    return Ok(None);
                }
                FetchStep::Failed { code, message } => {
                    return Err(ClientError::Server { code, message })
                }
            }
        }
    }

    /// A map's blocks of a partition come in sequence, each once.
    fn in_sequence(&mut self, partition: u32, header: &BlockHeader) -> Result<(), ClientError> {
        let (next, rows) = self
            .delivered
            .entry((header.map_id, partition))
            .or_insert((0, 0));
        if header.seq != *next {
            return Err(ClientError::Integrity(format!(
                "block {} of map {} in partition {partition} where block {next} was due",
                header.seq, header.map_id
            )));
        }
        *next += 1;
        *rows += header.rows as u64;
        Ok(())
    }

    /// The rows of each map's blocks of `partition` match what its writer counted.
    fn check_sums(&mut self, partition: u32, sums: &[MapSum]) -> Result<(), ClientError> {
        for s in sums {
            let received = self
                .delivered
                .remove(&(s.map_id, partition))
                .map_or(0, |(_, rows)| rows);
            if received != s.rows {
                return Err(ClientError::Integrity(format!(
                    "map {} partition {partition}: {received} rows arrived, its writer counted {}",
                    s.map_id, s.rows
                )));
            }
        }
        Ok(())
    }

    /// Decompresses and decodes a block fetched by this stream.
    pub fn decode(&self, block: &FetchedBlock) -> Result<RecordBatch, ClientError> {
        let decoder = self
            .decoder
            .as_ref()
            .ok_or_else(|| ClientError::Stream("block arrived without a schema".into()))?;
        // next_block verified this block's header, lengths and crc.
        let view = BlockView::of_parsed(block.header, &block.bytes, &self.decode_limits)?;
        let raw = Stage::Decompress.time(|| view.decompress())?;
        let batch = Stage::Decode.time(|| decoder.decode(Buffer::from(raw)))?;
        if batch.num_rows() != block.header.rows as usize {
            return Err(ClientError::Format(sluice_format::FormatError::IpcShape(
                "block row count differs from its header",
            )));
        }
        Ok(batch)
    }

    /// The next partition's rows, decoded.
    pub async fn next_batch(&mut self) -> Result<Option<(u32, RecordBatch)>, ClientError> {
        match self.next_block().await? {
            Some(block) => Ok(Some((block.partition, self.decode(&block)?))),
            None => Ok(None),
        }
    }

    /// The shuffle's schema, once known (`None` before the first frame or if nothing
    /// was committed to the shuffle on this server).
    pub fn schema(&self) -> Option<&arrow_schema::SchemaRef> {
        self.decoder.as_ref().map(|d| d.schema())
    }

    /// The server's totals, after the stream has ended.
    pub fn summary(&self) -> Option<FetchSummary> {
        self.summary
    }
}
