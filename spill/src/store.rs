//! The data files, block indexes and commit log of one shuffle.
//!
//! An append reserves its file range under the partition's lock (so concurrent appends
//! never overlap), then hands the bytes to the backend; the block enters the index only
//! when the backend reports it written. A push's writes form a [`WriteGroup`] that its
//! commit waits on. Fetches only ever see indexed (fully written) blocks.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use sluice_format::{BlockHeader, DecodeLimits, FormatError};

use crate::backend::{IoBackend, SyscallBackend, WriteDone};
use crate::commit_log::{CommitLog, CommitRecord};
use crate::direct::{open_direct, DIRECT_ALIGN};
use crate::memory::MemoryBudget;
use crate::quota::DiskQuota;
use crate::record::{record_len, RecordBuf, ALIGN, PREFIX_LEN};
use crate::scan::scan_file;
use crate::sums_log::{SumsLog, SumsRecord, WriterSum};
use crate::SpillError;

/// Where a block is stored and whose rows it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    /// Offset of the block (after its record prefix).
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

/// How commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged once written to the page cache: survives a server crash, not a
    /// machine crash.
    #[default]
    PageCache,
    /// `fdatasync` of every file a map touched and of the commit log before the ack.
    Fsync,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct PartitionFile {
    path: PathBuf,
    file: Option<Arc<File>>,
    /// The handle writes go through: an `O_DIRECT` one in direct mode (or the plain one
    /// where the file system refuses `O_DIRECT`).
    writer: Option<Arc<File>>,
    /// Next record offset (space already assigned to in-flight writes included).
    end: u64,
    /// Bytes below `end` not held against the quota: holes punched by
    /// [`ShuffleStore::reclaim`], failed writes, or everything once deleted.
    reclaimed: u64,
    /// Set by [`ShuffleStore::delete`]: the file's bytes were all given back.
    deleted: bool,
    /// Written blocks, by offset.
    index: Vec<BlockEntry>,
}

impl PartitionFile {
    fn file(&mut self) -> Result<Arc<File>, SpillError> {
        if self.deleted {
            // Never reopen (and so recreate) the path of a deleted store.
            return Err(SpillError::Deleted(self.path.clone()));
        }
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        let f = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&self.path)
            .map_err(|e| SpillError::io("open", &self.path, e))?;
        let f = Arc::new(f);
        self.file = Some(f.clone());
        Ok(f)
    }

    /// The handle for writes.
    fn writer(&mut self, direct: bool) -> Result<Arc<File>, SpillError> {
        if self.deleted {
            return Err(SpillError::Deleted(self.path.clone()));
        }
        if let Some(w) = &self.writer {
            return Ok(w.clone());
        }
        let plain = self.file()?;
        let writer = if direct {
            match open_direct(&self.path) {
                Ok(Some(f)) => Arc::new(f),
                Ok(None) => {
                    tracing::warn!(path = %self.path.display(), "O_DIRECT is not supported here; writing through the page cache");
                    plain
                }
                Err(e) => return Err(SpillError::io("open for direct I/O", &self.path, e)),
            }
        } else {
            plain
        };
        self.writer = Some(writer.clone());
        Ok(writer)
    }

    /// The open file and its path (for error messages).
    fn handle(&mut self) -> Result<(Arc<File>, PathBuf), SpillError> {
        Ok((self.file()?, self.path.clone()))
    }

    /// Bytes this file holds against the quota.
    fn held(&self) -> u64 {
        self.end - self.reclaimed
    }

    fn insert(&mut self, entry: BlockEntry) {
        let at = self.index.partition_point(|e| e.offset < entry.offset);
        self.index.insert(at, entry);
    }
}

/// The outstanding writes of one push; its commit waits for all of them. Their bytes
/// count against the memory budget until written.
#[derive(Debug, Default)]
pub struct WriteGroup {
    state: Mutex<GroupState>,
    done: Condvar,
    budget: Option<Arc<MemoryBudget>>,
    /// Write on the appending thread instead of through the backend.
    inline: AtomicBool,
}

#[derive(Debug, Default)]
struct GroupState {
    pending: usize,
    written: u32,
    error: Option<SpillError>,
    touched: HashSet<u32>,
}

impl WriteGroup {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// A group whose in-flight bytes are charged to `budget`.
    pub fn with_budget(budget: Arc<MemoryBudget>) -> Arc<Self> {
        Arc::new(Self {
            budget: Some(budget),
            ..Self::default()
        })
    }

    /// From now on this group's writes run on the thread that appends them, not
    /// through the backend: for a push's last blocks, whose writer waits for them
    /// anyway. On a busy host a hand-off to the ring's thread and back costs two
    /// waits for a core (see `uring.rs`).
    pub fn write_inline(&self) {
        self.inline.store(true, Ordering::Relaxed);
    }

    fn start(&self, partition: u32, bytes: u64) {
        if let Some(b) = &self.budget {
            b.charge(bytes);
        }
        let mut s = lock(&self.state);
        s.pending += 1;
        s.touched.insert(partition);
    }

    fn finish(&self, result: Result<(), SpillError>, bytes: u64) {
        if let Some(b) = &self.budget {
            b.release(bytes);
        }
        let mut s = lock(&self.state);
        s.pending -= 1;
        match result {
            Ok(()) => s.written += 1,
            Err(e) => {
                s.error.get_or_insert(e);
            }
        }
        // Waiters wait for zero or for room below a bound.
        self.done.notify_all();
    }

    /// Partitions this group has started writes to.
    pub fn touched(&self) -> Vec<u32> {
        lock(&self.state).touched.iter().copied().collect()
    }

    /// Writes handed to the backend and not yet completed.
    pub fn pending(&self) -> usize {
        lock(&self.state).pending
    }

    /// Waits until at most `n` writes are outstanding (bounds the bytes in flight of a
    /// writer that has no memory budget).
    pub fn wait_until_pending_at_most(&self, n: usize) {
        let mut s = lock(&self.state);
        while s.pending > n {
            s = self.done.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits for every write; returns the blocks written and the partitions touched,
    /// or the first error.
    pub fn wait(&self) -> Result<(u32, Vec<u32>), SpillError> {
        let mut s = lock(&self.state);
        while s.pending > 0 {
            s = self.done.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        Ok((s.written, s.touched.iter().copied().collect()))
    }
}

/// Everything a store needs from the server.
#[derive(Debug, Clone)]
pub struct StoreEnv {
    pub backend: Arc<dyn IoBackend>,
    pub quota: Arc<DiskQuota>,
    pub durability: Durability,
    pub limits: DecodeLimits,
    /// Write records with `O_DIRECT`, each padded to [`DIRECT_ALIGN`] bytes.
    pub direct_io: bool,
}

impl StoreEnv {
    /// Where records start in a partition file.
    fn record_align(&self) -> u64 {
        if self.direct_io {
            DIRECT_ALIGN as u64
        } else {
            ALIGN
        }
    }
}

/// The data files and block indexes of one shuffle on this server.
///
/// Once [`ShuffleStore::close`] (or [`ShuffleStore::delete`]) ran, every later append,
/// commit and read fails with [`SpillError::Deleted`]: a push or fetch that still holds
/// the store can never touch the files of a store created later at the same place.
#[derive(Debug)]
pub struct ShuffleStore {
    dir: PathBuf,
    env: StoreEnv,
    partitions: Mutex<Partitions>,
    /// `None` once closed.
    log: Mutex<Option<Logs>>,
    /// Each committed map's writer sums, by (map id, epoch), partitions ascending.
    sums: Mutex<HashMap<(u64, u32), Sums>>,
}

/// One map's writer sums, partitions ascending.
type Sums = Arc<[WriterSum]>;

/// The logs a commit appends to: the writer's sums first, then the commit record.
#[derive(Debug)]
struct Logs {
    commits: CommitLog,
    sums: SumsLog,
}

#[derive(Debug, Default)]
struct Partitions {
    files: HashMap<u32, Arc<Mutex<PartitionFile>>>,
    closed: bool,
}

const LOG_NAME: &str = "commits.log";
const SUMS_NAME: &str = "sums.log";

/// A store reopened from disk, with the commits its log holds.
#[derive(Debug)]
pub struct Recovered {
    pub store: ShuffleStore,
    /// Commits whose blocks are all present, in commit order.
    pub commits: Vec<CommitRecord>,
    /// Commits dropped because blocks are missing (their maps will be recomputed).
    pub incomplete: Vec<CommitRecord>,
    /// Highest epoch seen in data files or the log.
    pub max_epoch: Option<u32>,
}

impl ShuffleStore {
    /// Creates a new, empty store (its directory may not hold a previous one).
    pub fn create(dir: PathBuf, env: StoreEnv) -> Result<Self, SpillError> {
        fs::create_dir_all(&dir).map_err(|e| SpillError::io("create directory", &dir, e))?;
        let (commits, _) = CommitLog::open(&dir.join(LOG_NAME))?;
        let (sums, _) = SumsLog::open(&dir.join(SUMS_NAME))?;
        if env.durability == Durability::Fsync {
            sync_dir(&dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(Self {
            dir,
            env,
            partitions: Mutex::default(),
            log: Mutex::new(Some(Logs { commits, sums })),
            sums: Mutex::default(),
        })
    }

    /// Reopens a store: scans every partition file (cutting torn tails), replays the
    /// commit log and keeps the commits whose blocks are all there.
    pub fn recover(dir: PathBuf, env: StoreEnv) -> Result<Recovered, SpillError> {
        let (commits_log, logged) = CommitLog::open(&dir.join(LOG_NAME))?;
        let (sums_log, logged_sums) = SumsLog::open(&dir.join(SUMS_NAME))?;
        let mut partitions = HashMap::new();
        let mut blocks_of: HashMap<(u64, u32), u32> = HashMap::new();
        let mut max_epoch: Option<u32> = None;
        for (partition, path) in partition_files(&dir)? {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| SpillError::io("open", &path, e))?;
            let len = file
                .metadata()
                .map_err(|e| SpillError::io("stat", &path, e))?
                .len();
            let scan = scan_file(&file, &path, len, &env.limits)?;
            if scan.valid_end < len || scan.skipped > 0 {
                tracing::warn!(
                    path = %path.display(),
                    torn_tail = len - scan.valid_end,
                    skipped = scan.skipped,
                    "partition file had damaged regions"
                );
                file.set_len(scan.valid_end)
                    .map_err(|e| SpillError::io("truncate", &path, e))?;
            }
            for e in &scan.entries {
                *blocks_of.entry((e.map_id, e.epoch)).or_default() += 1;
                max_epoch = max_epoch.max(Some(e.epoch));
            }
            let end = scan.valid_end.next_multiple_of(env.record_align());
            env.quota.force_reserve(end);
            let part = PartitionFile {
                path,
                file: Some(Arc::new(file)),
                writer: None,
                end,
                reclaimed: 0,
                deleted: false,
                index: scan.entries,
            };
            partitions.insert(partition, Arc::new(Mutex::new(part)));
        }
        let (mut commits, mut incomplete) = (Vec::new(), Vec::new());
        let mut seen = HashSet::new();
        for c in logged {
            max_epoch = max_epoch.max(Some(c.epoch));
            let found = blocks_of.get(&(c.map_id, c.epoch)).copied().unwrap_or(0);
            if found == c.blocks && seen.insert(c.map_id) {
                commits.push(c);
            } else {
                tracing::warn!(
                    dir = %dir.display(), map_id = c.map_id, logged_blocks = c.blocks, found,
                    "committed map has missing blocks; it will not be served"
                );
                incomplete.push(c);
            }
        }
        let store = Self {
            dir,
            env,
            partitions: Mutex::new(Partitions {
                files: partitions,
                closed: false,
            }),
            log: Mutex::new(Some(Logs {
                commits: commits_log,
                sums: sums_log,
            })),
            sums: Mutex::default(),
        };
        // Sums count only for the commits that are served.
        let served: HashSet<(u64, u32)> = commits.iter().map(|c| (c.map_id, c.epoch)).collect();
        let mut sums = lock(&store.sums);
        for r in logged_sums {
            if served.contains(&(r.map_id, r.epoch)) {
                sums.insert((r.map_id, r.epoch), r.sums.into());
            }
        }
        drop(sums);
        Ok(Recovered {
            store,
            commits,
            incomplete,
            max_epoch,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn deleted(&self) -> SpillError {
        SpillError::Deleted(self.dir.clone())
    }

    /// The partition's file entry, created on first use; an error once closed.
    fn partition(&self, partition: u32) -> Result<Arc<Mutex<PartitionFile>>, SpillError> {
        let mut parts = lock(&self.partitions);
        if parts.closed {
            return Err(self.deleted());
        }
        let part = parts.files.entry(partition).or_insert_with(|| {
            Arc::new(Mutex::new(PartitionFile {
                path: self.dir.join(format!("part-{partition}.data")),
                file: None,
                writer: None,
                end: 0,
                reclaimed: 0,
                deleted: false,
                index: Vec::new(),
            }))
        });
        Ok(part.clone())
    }

    /// The partition's file entry if it exists; an error once closed.
    fn existing(&self, partition: u32) -> Result<Option<Arc<Mutex<PartitionFile>>>, SpillError> {
        let parts = lock(&self.partitions);
        if parts.closed {
            return Err(self.deleted());
        }
        Ok(parts.files.get(&partition).cloned())
    }

    fn all_partitions(&self) -> Vec<Arc<Mutex<PartitionFile>>> {
        lock(&self.partitions).files.values().cloned().collect()
    }

    /// Creates and opens the data files of `partitions` now rather than at their first
    /// append (file creation is slow on some file systems, e.g. ext4 just after many
    /// deletions).
    pub fn open_files(&self, partitions: impl IntoIterator<Item = u32>) -> Result<(), SpillError> {
        for p in partitions {
            let part = self.partition(p)?;
            lock(&part).writer(self.env.direct_io)?;
        }
        Ok(())
    }

    /// Appends one block to `partition`, tagged with the push's `epoch`. `encode` writes
    /// the block (header and body, as `sluice_format::encode_block` does) into the
    /// buffer it is given, which is the record's own: the prefix before it and the
    /// padding after are the store's business. `block_hint` is the expected block
    /// length. Returns the stored block's length. The block is indexed once written;
    /// `group` learns the outcome.
    pub fn append(
        &self,
        partition: u32,
        epoch: u32,
        block_hint: usize,
        group: &Arc<WriteGroup>,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<BlockHeader, FormatError>,
    ) -> Result<u32, SpillError> {
        let part = self.partition(partition)?;
        let mut record = RecordBuf::new(block_hint);
        let header = encode(record.block_mut())?;
        let block_len = record.block_len();
        // The index holds the block's own length, without the record's padding, as the
        // recovery scan does: fetches send exactly the block.
        let len = record
            .finish(epoch)
            .ok_or(SpillError::BlockTooLarge(block_len))?;
        let bytes = record.as_slice();
        let span = bytes
            .len()
            .next_multiple_of(self.env.record_align() as usize) as u64;
        self.env.quota.try_reserve(span)?;
        let (file, offset, path) = {
            let mut p = lock(&part);
            let file = match p.writer(self.env.direct_io) {
                Ok(f) => f,
                Err(e) => {
                    self.env.quota.release(span);
                    return Err(e);
                }
            };
            let offset = p.end;
            p.end += span;
            (file, offset, p.path.clone())
        };
        let entry = BlockEntry {
            offset: offset + PREFIX_LEN as u64,
            len,
            map_id: header.map_id,
            map_index: header.map_index,
            attempt: header.attempt,
            rows: header.rows,
            epoch,
        };
        let data = record.into_write_buf(span as usize, self.env.direct_io);
        let charged = data.capacity() as u64;
        group.start(partition, charged);
        let group_inline = group.inline.load(Ordering::Relaxed);
        let group = group.clone();
        let quota = self.env.quota.clone();
        let done: WriteDone = Box::new(move |result: io::Result<()>| {
            let result = {
                let mut p = lock(&part);
                match result {
                    // A store deleted meanwhile indexes nothing more.
                    Ok(()) if p.deleted => Err(SpillError::Deleted(path)),
                    Ok(()) => {
                        p.insert(entry);
                        Ok(())
                    }
                    Err(e) => {
                        // The space stays assigned (a hole recovery skips); its bytes do
                        // not count against the quota (a delete already gave them back).
                        if !p.deleted {
                            quota.release(span);
                            p.reclaimed += span;
                        }
                        Err(SpillError::io("write", &path, e))
                    }
                }
            };
            group.finish(result, charged);
        });
        if group_inline {
            SyscallBackend.write(file, offset, data, done);
        } else {
            self.env.backend.write(file, offset, data, done);
        }
        Ok(len)
    }

    /// Makes a finished push durable (per the durability mode) and records its commit.
    /// Call after [`WriteGroup::wait`] succeeded, with the partitions it touched.
    /// `sums` (the writer's own counts of each partition, possibly none) are logged just
    /// before the record and served with the map's blocks ([`ShuffleStore::sums`]).
    /// A store closed meanwhile refuses the commit: a commit either is logged before the
    /// store is closed (and is deleted with it) or fails.
    pub fn commit(
        &self,
        record: &CommitRecord,
        touched: &[u32],
        sums: &[WriterSum],
    ) -> Result<(), SpillError> {
        let fsync = self.env.durability == Durability::Fsync;
        if fsync {
            for &p in touched {
                let part = self.partition(p)?;
                self.sync_partition(&part)?;
            }
            sync_dir(&self.dir)?;
        }
        let mut logs = lock(&self.log);
        let Some(logs) = logs.as_mut() else {
            return Err(self.deleted());
        };
        if !sums.is_empty() {
            let logged = SumsRecord {
                map_id: record.map_id,
                epoch: record.epoch,
                sums: sums.to_vec(),
            };
            logs.sums.append(&logged, fsync)?;
        }
        logs.commits.append(record, fsync)?;
        if !sums.is_empty() {
            lock(&self.sums).insert((record.map_id, record.epoch), sums.into());
        }
        Ok(())
    }

    /// What the writer of the map committed as (`map_id`, `epoch`) counted of
    /// `partition`: `None` if it gave no sums, a zero sum if it wrote nothing there.
    pub fn sums(&self, partition: u32, map_id: u64, epoch: u32) -> Option<WriterSum> {
        let sums = lock(&self.sums).get(&(map_id, epoch))?.clone();
        let found = sums.binary_search_by_key(&partition, |s| s.partition);
        Some(found.map_or(
            WriterSum {
                partition,
                rows: 0,
                checksum: 0,
            },
            |i| sums[i],
        ))
    }

    /// fdatasync of every partition file, on the calling thread.
    pub fn sync_all(&self) -> Result<(), SpillError> {
        self.all_partitions()
            .iter()
            .try_for_each(|p| self.sync_partition(p))
    }

    fn sync_partition(&self, part: &Mutex<PartitionFile>) -> Result<(), SpillError> {
        let (file, path) = lock(part).handle()?;
        file.sync_data()
            .map_err(|e| SpillError::io("fdatasync", &path, e))
    }

    /// Index entries of `partition` accepted by `keep`, in file order.
    pub fn blocks(
        &self,
        partition: u32,
        mut keep: impl FnMut(&BlockEntry) -> bool,
    ) -> Vec<BlockEntry> {
        let Ok(Some(part)) = self.existing(partition) else {
            return Vec::new();
        };
        let part = lock(&part);
        part.index.iter().filter(|e| keep(e)).copied().collect()
    }

    /// Reads the bytes of indexed blocks of `partition`, on the calling thread (`pread`).
    pub fn read(&self, partition: u32, entries: &[BlockEntry]) -> Result<Vec<Vec<u8>>, SpillError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let part = self.existing(partition)?.ok_or_else(|| self.deleted())?;
        let (file, path) = lock(&part).handle()?;
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

    /// Bytes of the partition files (written or assigned to in-flight writes), less
    /// what was reclaimed.
    pub fn stored_bytes(&self) -> u64 {
        self.all_partitions().iter().map(|p| lock(p).held()).sum()
    }

    /// Gives back the disk space of the blocks of `epoch` in `partitions`, a push that
    /// will never be committed: they leave the index, their records become holes
    /// (`FALLOC_FL_PUNCH_HOLE`, which read as zeros and which recovery skips), and their
    /// bytes return to the quota. Returns the bytes freed. Call only once the push's
    /// writes are done, and only for an epoch that can no longer commit. On a file
    /// system without hole punching the blocks just leave the index. Holes are punched
    /// outside the partition's lock, so writes and reads of the file go on meanwhile.
    pub fn reclaim(&self, epoch: u32, partitions: &[u32]) -> Result<u64, SpillError> {
        let align = self.env.record_align();
        let mut freed = 0;
        for &partition in partitions {
            let Some(part) = self.existing(partition).ok().flatten() else {
                continue;
            };
            let (gone, file, path) = {
                let mut p = lock(&part);
                let (gone, kept) = std::mem::take(&mut p.index)
                    .into_iter()
                    .partition::<Vec<_>, _>(|e| e.epoch == epoch);
                p.index = kept;
                if gone.is_empty() {
                    continue;
                }
                let (file, path) = p.handle()?;
                (gone, file, path)
            };
            let mut punched = 0;
            for e in gone {
                let start = e.offset - PREFIX_LEN as u64;
                let span = record_len(e.len).next_multiple_of(align);
                match punch_hole(&file, start, span) {
                    Ok(()) => punched += span,
                    Err(err) if err.kind() == io::ErrorKind::Unsupported => {}
                    Err(err) => return Err(SpillError::io("punch a hole in", &path, err)),
                }
            }
            // A delete in the meantime already gave back the whole file.
            let mut p = lock(&part);
            if !p.deleted {
                p.reclaimed += punched;
                self.env.quota.release(punched);
                freed += punched;
            }
        }
        Ok(freed)
    }

    /// Ends every use of the store and returns its bytes to the quota, leaving its
    /// files in place: afterwards appends, commits and reads fail with
    /// [`SpillError::Deleted`], writes still in flight index nothing, and no file is
    /// ever opened (so created) through it again. A commit already logged stays logged;
    /// the caller removes the files.
    pub fn close(&self) {
        let parts: Vec<_> = {
            let mut parts = lock(&self.partitions);
            parts.closed = true;
            parts.files.drain().map(|(_, p)| p).collect()
        };
        // Taken after the commit in progress, if any, has appended its record.
        lock(&self.log).take();
        lock(&self.sums).clear();
        let mut bytes = 0;
        for part in &parts {
            // Marked under the lock, so a reclaim in flight releases nothing twice.
            let mut p = lock(part);
            bytes += p.held();
            p.reclaimed = p.end;
            p.deleted = true;
            p.index.clear();
            p.file = None;
            p.writer = None;
        }
        self.env.quota.release(bytes);
    }

    /// [`close`](Self::close)s the store and removes its directory: first renamed
    /// aside (atomically, so a crash never leaves a half-deleted shuffle that recovery
    /// would take for a live one), then removed.
    pub fn delete(&self) -> Result<(), SpillError> {
        self.close();
        remove_dir(&self.dir)
    }
}

/// Prefix of a directory being removed; recovery removes what it finds of them.
pub const TRASH_PREFIX: &str = ".deleted-";

/// Removes `dir` and everything in it, after renaming it to a trash name beside it. A
/// directory that is already gone is not an error.
pub fn remove_dir(dir: &Path) -> Result<(), SpillError> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(SpillError::io(
            "remove",
            dir,
            io::Error::from(io::ErrorKind::InvalidInput),
        ));
    };
    let mut trash_name = std::ffi::OsString::from(TRASH_PREFIX);
    trash_name.push(name);
    let trash = parent.join(trash_name);
    match fs::rename(dir, &trash) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SpillError::io("rename for removal", dir, e)),
    }
    match fs::remove_dir_all(&trash) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(SpillError::io("remove directory", &trash, e))
        }
        _ => Ok(()),
    }
}

/// Deallocates `len` bytes at `offset`; the file keeps its size and reads zeros there.
fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use rustix::fs::{fallocate, FallocateFlags};
    let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    fallocate(file, flags, offset, len).map_err(|e| {
        if e == rustix::io::Errno::OPNOTSUPP {
            io::Error::from(io::ErrorKind::Unsupported)
        } else {
            io::Error::from(e)
        }
    })
}

/// `part-<p>.data` files of a shuffle directory.
fn partition_files(dir: &Path) -> Result<Vec<(u32, PathBuf)>, SpillError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| SpillError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SpillError::io("list", dir, e))?;
        let name = entry.file_name();
        let partition = name
            .to_str()
            .and_then(|n| n.strip_prefix("part-"))
            .and_then(|n| n.strip_suffix(".data"))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(p) = partition {
            out.push((p, entry.path()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Makes a directory's entries (new files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), SpillError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SpillError::io("fsync directory", dir, e))
}

/// Faults below the protocol, for the tests that prove the readers catch them.
#[cfg(feature = "fault-injection")]
impl ShuffleStore {
    /// Forgets the last indexed block of `map_id` in `partition`, as a lost index entry
    /// would. Whether there was one.
    pub fn inject_drop_block(&self, partition: u32, map_id: u64) -> bool {
        let Ok(Some(part)) = self.existing(partition) else {
            return false;
        };
        let mut p = lock(&part);
        match p.index.iter().rposition(|e| e.map_id == map_id) {
            Some(at) => {
                p.index.remove(at);
                true
            }
            None => false,
        }
    }

    /// Indexes the last block of `map_id` in `partition` a second time, as a duplicated
    /// index entry would. Whether there was one.
    pub fn inject_duplicate_block(&self, partition: u32, map_id: u64) -> bool {
        let Ok(Some(part)) = self.existing(partition) else {
            return false;
        };
        let mut p = lock(&part);
        match p.index.iter().rposition(|e| e.map_id == map_id) {
            Some(at) => {
                let entry = p.index[at];
                p.index.insert(at + 1, entry);
                true
            }
            None => false,
        }
    }
}
