//! Sluice spill storage: one append-only data file per (shuffle, partition), an in-memory
//! index of the blocks in each file, and read-back of selected blocks.
//!
//! This is the plain-syscall backend (`pwrite`/`pread`). Appends to one partition file are
//! serialized by that file's lock; an append's offset only advances once its bytes are
//! written, so a failed write is overwritten by the next append and never indexed.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sluice_format::BlockHeader;

/// Storage errors, with the file they concern.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("block of {0} bytes is too large to index")]
    BlockTooLarge(usize),
}

impl SpillError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where a block is stored and whose rows it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    pub offset: u64,
    pub len: u32,
    pub map_id: u64,
    pub map_index: u32,
    pub attempt: u32,
    pub rows: u32,
    /// Which push of this map id wrote the block (a retried push gets a new epoch, so
    /// blocks of an abandoned push are never mistaken for the committed one).
    pub epoch: u32,
}

#[derive(Debug)]
struct PartitionFile {
    path: PathBuf,
    file: Option<File>,
    end: u64,
    index: Vec<BlockEntry>,
}

impl PartitionFile {
    fn file(&mut self) -> Result<&File, SpillError> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(false)
                .open(&self.path)
                .map_err(|e| SpillError::io("open", &self.path, e))?;
            self.file = Some(f);
        }
        Ok(self.file.as_ref().expect("opened above"))
    }
}

/// The data files and block indexes of one shuffle on this server.
#[derive(Debug)]
pub struct ShuffleStore {
    dir: PathBuf,
    partitions: Mutex<HashMap<u32, Arc<Mutex<PartitionFile>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ShuffleStore {
    /// Creates (or reuses) the shuffle's directory.
    pub fn create(dir: PathBuf) -> Result<Self, SpillError> {
        fs::create_dir_all(&dir).map_err(|e| SpillError::io("create directory", &dir, e))?;
        Ok(Self {
            dir,
            partitions: Mutex::new(HashMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn partition(&self, partition: u32) -> Arc<Mutex<PartitionFile>> {
        lock(&self.partitions)
            .entry(partition)
            .or_insert_with(|| {
                Arc::new(Mutex::new(PartitionFile {
                    path: self.dir.join(format!("part-{partition}.data")),
                    file: None,
                    end: 0,
                    index: Vec::new(),
                }))
            })
            .clone()
    }

    /// Appends one encoded block (header + body) to `partition`'s file and indexes it.
    pub fn append(
        &self,
        partition: u32,
        header: &BlockHeader,
        block: &[u8],
        epoch: u32,
    ) -> Result<BlockEntry, SpillError> {
        let len = u32::try_from(block.len()).map_err(|_| SpillError::BlockTooLarge(block.len()))?;
        let part = self.partition(partition);
        let mut part = lock(&part);
        let offset = part.end;
        let path = part.path.clone();
        part.file()?
            .write_all_at(block, offset)
            .map_err(|e| SpillError::io("write", &path, e))?;
        let entry = BlockEntry {
            offset,
            len,
            map_id: header.map_id,
            map_index: header.map_index,
            attempt: header.attempt,
            rows: header.rows,
            epoch,
        };
        part.end = offset + len as u64;
        part.index.push(entry);
        Ok(entry)
    }

    /// Index entries of `partition` accepted by `keep`, in file order.
    pub fn blocks(
        &self,
        partition: u32,
        mut keep: impl FnMut(&BlockEntry) -> bool,
    ) -> Vec<BlockEntry> {
        let part = match lock(&self.partitions).get(&partition) {
            Some(p) => p.clone(),
            None => return Vec::new(),
        };
        let part = lock(&part);
        part.index.iter().filter(|e| keep(e)).copied().collect()
    }

    /// Reads the bytes of indexed blocks of `partition`.
    pub fn read(&self, partition: u32, entries: &[BlockEntry]) -> Result<Vec<Vec<u8>>, SpillError> {
        let part = self.partition(partition);
        let mut part = lock(&part);
        let path = part.path.clone();
        let file = part.file()?;
        entries
            .iter()
            .map(|e| {
                let mut buf = vec![0u8; e.len as usize];
                file.read_exact_at(&mut buf, e.offset)
                    .map_err(|err| SpillError::io("read", &path, err))?;
                Ok(buf)
            })
            .collect()
    }

    /// Total bytes stored across partition files.
    pub fn stored_bytes(&self) -> u64 {
        let parts: Vec<_> = lock(&self.partitions).values().cloned().collect();
        parts.iter().map(|p| lock(p).end).sum()
    }

    /// Removes the shuffle's files. The store must not be used afterwards.
    pub fn delete(&self) -> Result<(), SpillError> {
        lock(&self.partitions).clear();
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(SpillError::io("remove directory", &self.dir, e))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_format::{encode_block, BlockMeta, BlockView, CodecConfig, DecodeLimits};

    fn block(map_id: u64, rows: u32, payload: &[u8]) -> (BlockHeader, Vec<u8>) {
        let mut out = Vec::new();
        let meta = BlockMeta {
            map_id,
            map_index: map_id as u32,
            attempt: 0,
            seq: 0,
            rows,
        };
        let h = encode_block(meta, payload, &CodecConfig::default(), &mut out).unwrap();
        (h, out)
    }

    #[test]
    fn appends_index_and_reads_back_selected_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShuffleStore::create(dir.path().join("s1")).unwrap();
        let (h1, b1) = block(1, 10, b"first block payload");
        let (h2, b2) = block(2, 20, &[7u8; 5000]);
        let (h3, b3) = block(1, 30, b"third");
        let e1 = store.append(3, &h1, &b1, 0).unwrap();
        let e2 = store.append(3, &h2, &b2, 0).unwrap();
        store.append(4, &h3, &b3, 0).unwrap();
        assert_eq!(e1.offset, 0);
        assert_eq!(e2.offset, b1.len() as u64);
        assert_eq!((e2.map_id, e2.rows), (2, 20));

        let only_map_2 = store.blocks(3, |e| e.map_id == 2);
        assert_eq!(only_map_2, vec![e2]);
        let read = store.read(3, &only_map_2).unwrap();
        assert_eq!(read, vec![b2.clone()]);
        let view = BlockView::parse(&read[0], &DecodeLimits::default()).unwrap();
        assert_eq!(view.decompress().unwrap(), vec![7u8; 5000]);

        assert_eq!(store.blocks(4, |_| true).len(), 1);
        assert!(store.blocks(99, |_| true).is_empty());
        assert_eq!(
            store.stored_bytes(),
            (b1.len() + b2.len() + b3.len()) as u64
        );
        let file_len = std::fs::metadata(store.dir().join("part-3.data"))
            .unwrap()
            .len();
        assert_eq!(file_len, (b1.len() + b2.len()) as u64);

        store.delete().unwrap();
        assert!(!dir.path().join("s1").exists());
    }
}
