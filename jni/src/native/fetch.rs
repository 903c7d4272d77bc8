//! A fetch that reads each map from one copy and moves to the other when it fails.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::RecordBatch;

use sluice_client::{BlockingFetchStream, ClientError, FetchItem, FetchRequest, MapFilter};

use super::writer::Sum;
use super::{client_error, Session};
use crate::error::BridgeError;

/// A fetch of some maps' partitions from the server holding them, and from the server
/// holding their second copies when the first fails: it is cut off, reports a map
/// missing, or sends something its writer did not write (a block out of sequence, rows
/// or a checksum that differ from the writer's counts). Copies hold the same blocks,
/// so the move restarts nothing: blocks already handed to Java (by map, partition and
/// sequence number) are skipped, and each (map, partition) is checked against its
/// writer's counts once complete, whichever copies its blocks came from.
pub struct Fetch {
    session: Arc<Session>,
    /// The primary, then the replica (if any).
    copies: [Option<i32>; 2],
    /// Which of `copies` is being read.
    on: usize,
    shuffle_id: u32,
    partitions: Range<u32>,
    map_ids: Vec<u64>,
    stream: Option<BlockingFetchStream>,
    /// Per (map, partition): the next block due and what was handed to Java.
    delivered: HashMap<(u64, u32), (u32, Sum)>,
    /// The header of each batch handed to Java (record count and lengths), reused.
    pub header: Vec<u8>,
}

impl Fetch {
    /// Opens the fetch on the first of `copies` (checked to be servers of the session).
    pub(super) fn open(
        session: Arc<Session>,
        copies: [Option<i32>; 2],
        shuffle_id: u32,
        partitions: Range<u32>,
        map_ids: Vec<u64>,
    ) -> Result<Fetch, BridgeError> {
        let mut fetch = Fetch {
            session,
            copies,
            on: 0,
            shuffle_id,
            partitions,
            map_ids,
            stream: None,
            delivered: HashMap::new(),
            header: Vec::new(),
        };
        if let Err(e) = fetch.connect() {
            fetch.fail_over(e)?;
        }
        Ok(fetch)
    }

    fn server(&self) -> i32 {
        self.copies[self.on].expect("the copy being read exists")
    }

    fn connect(&mut self) -> Result<(), BridgeError> {
        let request = FetchRequest::partitions(
            self.session.app.clone(),
            self.shuffle_id,
            self.partitions.clone(),
        )
        .with_maps(MapFilter::MapIds(self.map_ids.clone()));
        let stream = self
            .session
            .call(self.server(), |c| c.fetch(request.clone()))?;
        self.stream = Some(stream);
        Ok(())
    }

    /// Moves to the second copy after `failure` of the first; the failure itself if
    /// there is none (or it was the second copy that failed).
    fn fail_over(&mut self, failure: BridgeError) -> Result<(), BridgeError> {
        self.stream = None;
        if self.on == 1 || self.copies[1].is_none() {
            return Err(failure);
        }
        tracing::warn!(
            shuffle = self.shuffle_id,
            error = %failure,
            "reading from the second copy"
        );
        self.on = 1;
        self.connect()
    }

    /// The next batch of records (checked against its writer's counts), or `None` at
    /// the end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, BridgeError> {
        loop {
            if self.stream.is_none() {
                return Ok(None);
            }
            match self.next_from_copy() {
                Ok(Some(records)) => return Ok(Some(records)),
                Ok(None) => {
                    self.stream = None;
                    return Ok(None);
                }
                Err(ClientError::MissingMaps(missing)) if self.on == 0 => {
                    // Every other map was served whole; read these from the copy.
                    let failure = client_error(
                        &self.session.servers[self.server() as usize].name,
                        ClientError::MissingMaps(missing.clone()),
                    );
                    self.map_ids = missing;
                    self.fail_over(failure)?;
                }
                Err(e) => {
                    let name = self.session.servers[self.server() as usize].name.clone();
                    self.fail_over(client_error(&name, e))?;
                }
            }
        }
    }

    /// The next batch of the copy being read, skipping blocks already delivered and
    /// checking each finished (map, partition) against its writer's counts.
    fn next_from_copy(&mut self) -> Result<Option<RecordBatch>, ClientError> {
        let stream = self.stream.as_mut().expect("a copy is being read");
        loop {
            match stream.next_item()? {
                None => return Ok(None),
                Some(FetchItem::Block(block)) => {
                    let key = (block.header.map_id, block.partition);
                    let (next, sum) = self.delivered.entry(key).or_insert((0, Sum::default()));
                    if block.header.seq < *next {
                        continue; // delivered from the other copy
                    }
                    if block.header.seq > *next {
                        return Err(ClientError::Integrity(format!(
                            "block {} of map {} partition {} where {} was due",
                            block.header.seq, key.0, key.1, *next
                        )));
                    }
                    let batch = stream.decode(&block)?;
                    let records = crate::records::records(&batch)
                        .map_err(|e| ClientError::Stream(e.to_string()))?;
                    for record in records.iter().flatten() {
                        sum.add(record);
                    }
                    *next += 1;
                    return Ok(Some(batch));
                }
                Some(FetchItem::Sums { partition, sums }) => {
                    for s in sums {
                        let got = self
                            .delivered
                            .get(&(s.map_id, partition))
                            .map_or(Sum::default(), |d| d.1);
                        let want = Sum {
                            rows: s.rows,
                            checksum: s.checksum,
                        };
                        if got != want {
                            return Err(ClientError::Integrity(format!(
                                "map {} partition {partition}: {got:?} arrived, its writer \
                                 counted {want:?}",
                                s.map_id
                            )));
                        }
                    }
                }
            }
        }
    }
}
