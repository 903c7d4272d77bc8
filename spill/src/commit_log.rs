//! A shuffle's commit log: one fixed-size, checksummed record per committed map
//! attempt, appended before the commit is acknowledged. Recovery replays it; a torn
//! last record (a crash mid-append) is cut off.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::SpillError;

const MAGIC: [u8; 4] = *b"SLC1";
const BODY_LEN: usize = 40;
/// Bytes of one record: magic, body, crc32c of the body.
pub const COMMIT_RECORD_LEN: usize = 4 + BODY_LEN + 4;

/// One committed map attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRecord {
    pub map_id: u64,
    pub map_index: u32,
    pub attempt: u32,
    /// The push whose blocks are the committed ones.
    pub epoch: u32,
    /// Blocks written by that push, across partitions.
    pub blocks: u32,
    /// Stored bytes of those blocks.
    pub bytes: u64,
    pub rows: u64,
}

impl CommitRecord {
    pub fn encode(&self) -> [u8; COMMIT_RECORD_LEN] {
        let mut b = [0u8; COMMIT_RECORD_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..12].copy_from_slice(&self.map_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.map_index.to_le_bytes());
        b[16..20].copy_from_slice(&self.attempt.to_le_bytes());
        b[20..24].copy_from_slice(&self.epoch.to_le_bytes());
        b[24..28].copy_from_slice(&self.blocks.to_le_bytes());
        b[28..36].copy_from_slice(&self.bytes.to_le_bytes());
        b[36..44].copy_from_slice(&self.rows.to_le_bytes());
        let crc = crc32c::crc32c(&b[4..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; COMMIT_RECORD_LEN] = b.get(..COMMIT_RECORD_LEN)?.try_into().ok()?;
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if b[0..4] != MAGIC || crc32c::crc32c(&b[4..44]) != u32_at(44) {
            return None;
        }
        Some(Self {
            map_id: u64_at(4),
            map_index: u32_at(12),
            attempt: u32_at(16),
            epoch: u32_at(20),
            blocks: u32_at(24),
            bytes: u64_at(28),
            rows: u64_at(36),
        })
    }
}

/// The open log of one shuffle. Appends are serialized by the caller.
#[derive(Debug)]
pub struct CommitLog {
    path: PathBuf,
    file: Arc<File>,
    end: u64,
}

impl CommitLog {
    /// Opens (creating if needed) the log at `path` and replays it. A torn tail is
    /// truncated; records after a damaged one are not trusted.
    pub fn open(path: &Path) -> Result<(Self, Vec<CommitRecord>), SpillError> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(|e| SpillError::io("open", path, e))?;
        let bytes = std::fs::read(path).map_err(|e| SpillError::io("read", path, e))?;
        let records: Vec<CommitRecord> = bytes
            .chunks(COMMIT_RECORD_LEN)
            .map_while(CommitRecord::decode)
            .collect();
        let end = (records.len() * COMMIT_RECORD_LEN) as u64;
        if end != bytes.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                kept = records.len(),
                cut_bytes = bytes.len() as u64 - end,
                "commit log has a torn or damaged tail; truncating"
            );
            file.set_len(end)
                .map_err(|e| SpillError::io("truncate", path, e))?;
        }
        let log = Self {
            path: path.to_path_buf(),
            file: Arc::new(file),
            end,
        };
        Ok((log, records))
    }

    /// Appends a record; with `durable`, returns only once it is on stable storage.
    pub fn append(&mut self, record: &CommitRecord, durable: bool) -> Result<(), SpillError> {
        self.file
            .write_all_at(&record.encode(), self.end)
            .map_err(|e| SpillError::io("write", &self.path, e))?;
        if durable {
            self.file
                .sync_data()
                .map_err(|e| SpillError::io("fdatasync", &self.path, e))?;
        }
        self.end += COMMIT_RECORD_LEN as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(map_id: u64) -> CommitRecord {
        CommitRecord {
            map_id,
            map_index: map_id as u32 * 2,
            attempt: 1,
            epoch: 3,
            blocks: 4,
            bytes: 5_000_000_000,
            rows: 6,
        }
    }

    #[test]
    fn replays_appended_records_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commits.log");
        let (mut log, replayed) = CommitLog::open(&path).unwrap();
        assert!(replayed.is_empty());
        log.append(&record(1), false).unwrap();
        log.append(&record(2), true).unwrap();
        drop(log);
        // A crash in the middle of the third append.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&record(3).encode()[..20]);
        std::fs::write(&path, &bytes).unwrap();

        let (mut log, replayed) = CommitLog::open(&path).unwrap();
        assert_eq!(replayed, vec![record(1), record(2)]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            2 * COMMIT_RECORD_LEN as u64
        );
        log.append(&record(4), false).unwrap();
        let (_, replayed) = CommitLog::open(&path).unwrap();
        assert_eq!(replayed, vec![record(1), record(2), record(4)]);
    }

    #[test]
    fn a_damaged_record_ends_the_trusted_log() {
        let mut bytes = record(1).encode().to_vec();
        let mut bad = record(2).encode();
        bad[10] ^= 1;
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&record(3).encode());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commits.log");
        std::fs::write(&path, &bytes).unwrap();
        let (_, replayed) = CommitLog::open(&path).unwrap();
        assert_eq!(replayed, vec![record(1)]);
    }
}
