//! One map attempt's push, and what its writer counted.

use std::sync::Arc;

use sluice_client::{BlockingPushStream, ClientError, ErrorCode, PartitionSum};

use super::{client_error, Down, Session};
use crate::error::BridgeError;
use crate::records::JavaRecords;

/// What a writer or a reader counted of one partition of a map: rows, and the sum of
/// the crc32c of each record's bytes (so the order of records does not matter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sum {
    pub(super) rows: u64,
    pub(super) checksum: u64,
}

impl Sum {
    pub(super) fn add(&mut self, record: &[u8]) {
        self.rows += 1;
        self.checksum = self
            .checksum
            .wrapping_add(u64::from(crc32c::crc32c(record)));
    }
}

/// One map attempt's push.
pub struct MapWriter {
    session: Arc<Session>,
    server: String,
    draining: Down,
    /// `None` once committed or failed.
    stream: Option<BlockingPushStream>,
    num_partitions: u32,
    /// What was written to each partition, checked by the server and every reader.
    sums: Vec<Sum>,
    /// The buffers Java's records are copied into, kept from write to write.
    java: JavaRecords,
}

/// A committed map output: stored bytes per partition, and where its second copy is.
#[derive(Debug)]
pub struct Committed {
    pub partition_bytes: Vec<i64>,
    /// The index of the server holding the second copy, if one does.
    pub replica: Option<i32>,
}

impl MapWriter {
    pub(super) fn new(
        session: Arc<Session>,
        server: i32,
        stream: BlockingPushStream,
        num_partitions: u32,
    ) -> MapWriter {
        let s = &session.servers[server as usize];
        MapWriter {
            server: s.name.clone(),
            draining: s.draining.clone(),
            stream: Some(stream),
            num_partitions,
            sums: vec![Sum::default(); num_partitions as usize],
            java: JavaRecords::default(),
            session,
        }
    }

    fn note(&self, e: &ClientError) {
        if e.code() == Some(ErrorCode::Draining) {
            self.draining.mark(e);
        }
    }

    fn stream(&mut self) -> Result<&mut BlockingPushStream, BridgeError> {
        self.stream
            .as_mut()
            .ok_or_else(|| BridgeError::InvalidArgument("the push has ended".into()))
    }

    /// Sends `count` records of `len` bytes in all, which `fill` copies in from Java:
    /// partition ids, record ends and bytes (see `records.rs`), into buffers sized to
    /// fit and reused from the previous write.
    pub fn write_with(
        &mut self,
        count: usize,
        len: usize,
        fill: impl FnOnce(&mut [i32], &mut [i32], &mut [i8]) -> Result<(), BridgeError>,
    ) -> Result<(), BridgeError> {
        let (pids, ends, data) = self.java.prepare(count, len);
        fill(pids, ends, data)?;
        let lent = self.java.lend(self.num_partitions)?;
        let result = self.send(&lent.batch);
        // A failed send ends the push: nothing is kept for a next write.
        if result.is_ok() {
            self.java.reclaim(lent);
        }
        result
    }

    /// Bytes the writer keeps for the next write's records (their capacity).
    #[doc(hidden)]
    pub fn kept_bytes(&self) -> usize {
        self.java.kept_bytes()
    }

    /// Frees the buffers kept between writes (Java gave its memory back to Spark).
    pub fn trim(&mut self) {
        self.java = JavaRecords::default();
    }

    /// [`MapWriter::write_with`] from slices.
    pub fn write(&mut self, pids: &[i32], ends: &[i32], data: &[u8]) -> Result<(), BridgeError> {
        self.write_with(pids.len(), data.len(), |p, e, d| {
            crate::records::copy_records((pids, ends, data), (p, e, d))
        })
    }

    fn send(&mut self, batch: &arrow_array::RecordBatch) -> Result<(), BridgeError> {
        let records = crate::records::records(batch)?;
        let pids = crate::records::pids(batch)?;
        for (i, pid) in pids.values().iter().enumerate() {
            self.sums[*pid as usize].add(records.value(i));
        }
        let server = self.server.clone();
        let result = self.stream()?.send(batch);
        result.map_err(|e| {
            self.stream = None;
            self.note(&e);
            client_error(&server, e)
        })
    }

    /// Commits with the writer's counts; returns the stored bytes of each partition and
    /// the second copy's server.
    pub fn commit(&mut self) -> Result<Committed, BridgeError> {
        let stream = self
            .stream
            .take()
            .ok_or_else(|| BridgeError::InvalidArgument("the push has ended".into()))?;
        let sums = self
            .sums
            .iter()
            .enumerate()
            .filter(|(_, s)| s.rows > 0)
            .map(|(p, s)| PartitionSum {
                partition: p as u32,
                rows: s.rows,
                checksum: s.checksum,
            })
            .collect();
        let ack = stream.commit_with_sums(sums).map_err(|e| {
            self.note(&e);
            client_error(&self.server, e)
        })?;
        Ok(Committed {
            partition_bytes: ack
                .partition_bytes
                .iter()
                .map(|&b| i64::try_from(b).unwrap_or(i64::MAX))
                .collect(),
            replica: ack
                .replica
                .as_deref()
                .and_then(|r| self.session.index_of(r)),
        })
    }
}
