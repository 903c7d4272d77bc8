//! A shuffle's writer sums: for each committed map, what its writer counted of each
//! partition it wrote (rows, and a checksum only writer and reader interpret). Appended
//! just before the map's commit record, so a commit that is in the log has its sums
//! here; replayed on restart up to the first damaged record.
//!
//! A record: magic `SLS1`, map id (u64), epoch (u32), entry count (u32), the entries
//! (partition u32, rows u64, checksum u64), crc32c of everything after the magic.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::SpillError;

const MAGIC: [u8; 4] = *b"SLS1";
const HEAD_LEN: usize = 4 + 8 + 4 + 4;
const ENTRY_LEN: usize = 4 + 8 + 8;

/// What a writer counted of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterSum {
    pub partition: u32,
    pub rows: u64,
    pub checksum: u64,
}

/// One map's sums, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumsRecord {
    pub map_id: u64,
    pub epoch: u32,
    pub sums: Vec<WriterSum>,
}

impl SumsRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEAD_LEN + self.sums.len() * ENTRY_LEN + 4);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&self.map_id.to_le_bytes());
        b.extend_from_slice(&self.epoch.to_le_bytes());
        b.extend_from_slice(&(self.sums.len() as u32).to_le_bytes());
        for s in &self.sums {
            b.extend_from_slice(&s.partition.to_le_bytes());
            b.extend_from_slice(&s.rows.to_le_bytes());
            b.extend_from_slice(&s.checksum.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b[4..]);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// The record at the start of `b` and its length, if intact.
    pub fn decode(b: &[u8]) -> Option<(Self, usize)> {
        if b.get(..4)? != MAGIC {
            return None;
        }
        let count = u32_at(b, 16)? as usize;
        // The count must fit in the bytes present before anything is allocated for it.
        let len = HEAD_LEN
            .checked_add(count.checked_mul(ENTRY_LEN)?)?
            .checked_add(4)?;
        let whole = b.get(..len)?;
        if crc32c::crc32c(&whole[4..len - 4]) != u32_at(whole, len - 4)? {
            return None;
        }
        let sums = (0..count)
            .map(|i| {
                let at = HEAD_LEN + i * ENTRY_LEN;
                Some(WriterSum {
                    partition: u32_at(whole, at)?,
                    rows: u64_at(whole, at + 4)?,
                    checksum: u64_at(whole, at + 12)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let record = Self {
            map_id: u64_at(whole, 4)?,
            epoch: u32_at(whole, 12)?,
            sums,
        };
        Some((record, len))
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The open sums log of one shuffle. Appends are serialized by the caller.
#[derive(Debug)]
pub struct SumsLog {
    path: PathBuf,
    file: File,
    end: u64,
}

impl SumsLog {
    /// Opens (creating if needed) the log at `path` and replays it; a torn or damaged
    /// tail is cut off.
    pub fn open(path: &Path) -> Result<(Self, Vec<SumsRecord>), SpillError> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(|e| SpillError::io("open", path, e))?;
        let bytes = std::fs::read(path).map_err(|e| SpillError::io("read", path, e))?;
        let mut records = Vec::new();
        let mut at = 0;
        while let Some((record, len)) = SumsRecord::decode(&bytes[at..]) {
            records.push(record);
            at += len;
        }
        if at != bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept = records.len(),
                cut_bytes = bytes.len() - at,
                "sums log has a torn or damaged tail; truncating"
            );
            file.set_len(at as u64)
                .map_err(|e| SpillError::io("truncate", path, e))?;
        }
        let log = Self {
            path: path.to_path_buf(),
            file,
            end: at as u64,
        };
        Ok((log, records))
    }

    /// Appends a record; with `durable`, returns only once it is on stable storage.
    pub fn append(&mut self, record: &SumsRecord, durable: bool) -> Result<(), SpillError> {
        let bytes = record.encode();
        self.file
            .write_all_at(&bytes, self.end)
            .map_err(|e| SpillError::io("write", &self.path, e))?;
        if durable {
            self.file
                .sync_data()
                .map_err(|e| SpillError::io("fdatasync", &self.path, e))?;
        }
        self.end += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(map_id: u64, n: u32) -> SumsRecord {
        SumsRecord {
            map_id,
            epoch: 7,
            sums: (0..n)
                .map(|p| WriterSum {
                    partition: p * 3,
                    rows: u64::from(p) + map_id,
                    checksum: u64::MAX - u64::from(p),
                })
                .collect(),
        }
    }

    #[test]
    fn replays_records_and_cuts_a_torn_or_damaged_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sums.log");
        let (mut log, replayed) = SumsLog::open(&path).unwrap();
        assert!(replayed.is_empty());
        log.append(&record(1, 3), false).unwrap();
        log.append(&record(2, 0), true).unwrap();
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        let intact = bytes.len();
        bytes.extend_from_slice(&record(3, 5).encode()[..30]);
        std::fs::write(&path, &bytes).unwrap();
        let (mut log, replayed) = SumsLog::open(&path).unwrap();
        assert_eq!(replayed, vec![record(1, 3), record(2, 0)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), intact as u64);
        log.append(&record(4, 1), false).unwrap();
        drop(log);
        // A flipped bit in the first record: nothing after it is trusted.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[25] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, replayed) = SumsLog::open(&path).unwrap();
        assert!(replayed.is_empty());
    }

    #[test]
    fn a_count_larger_than_the_bytes_is_refused_without_allocating() {
        let mut bytes = record(1, 1).encode();
        bytes[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(SumsRecord::decode(&bytes).is_none());
    }
}
