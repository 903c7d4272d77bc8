//! The store's behaviour on every backend available here: appends, indexing, reads,
//! commits, recovery from torn and damaged files, quotas.

use std::path::Path;
use std::sync::Arc;

use sluice_format::{encode_block, BlockMeta, BlockView, CodecConfig, DecodeLimits};
use sluice_spill::{
    CommitRecord, DiskQuota, Durability, IoBackend, ShuffleStore, SpillError, StoreEnv,
    SyscallBackend, WriteGroup, DIRECT_ALIGN,
};

/// A backend and whether records go through `O_DIRECT`.
#[derive(Debug, Clone)]
struct Setup {
    backend: Arc<dyn IoBackend>,
    direct: bool,
}

/// Every backend available here, each with buffered and direct writes.
fn setups() -> Vec<Setup> {
    let mut backends: Vec<Arc<dyn IoBackend>> = vec![Arc::new(SyscallBackend)];
    match sluice_spill::uring::UringBackend::start(Default::default()) {
        Ok(b) => backends.push(Arc::new(b)),
        Err(e) => eprintln!("io_uring not available here, testing the syscall backend only: {e}"),
    }
    let with = |direct| {
        backends.iter().map(move |b| Setup {
            backend: b.clone(),
            direct,
        })
    };
    with(false).chain(with(true)).collect()
}

fn env(setup: &Setup, quota: Option<u64>, durability: Durability) -> StoreEnv {
    StoreEnv {
        backend: setup.backend.clone(),
        quota: DiskQuota::new("server", quota),
        durability,
        limits: DecodeLimits::default(),
        direct_io: setup.direct,
    }
}

fn meta(map_id: u64, seq: u32, payload: &[u8]) -> BlockMeta {
    BlockMeta {
        map_id,
        map_index: map_id as u32,
        attempt: 0,
        seq,
        rows: payload.len() as u32,
    }
}

/// Appends a block of `map_id` holding `payload`, as the server does.
fn append(
    store: &ShuffleStore,
    partition: u32,
    (map_id, seq, payload): (u64, u32, &[u8]),
    epoch: u32,
    group: &Arc<WriteGroup>,
) -> Result<u32, SpillError> {
    store.append(partition, epoch, payload.len(), group, |out| {
        encode_block(
            meta(map_id, seq, payload),
            payload,
            &CodecConfig::default(),
            out,
        )
    })
}

/// The bytes of a whole record holding a block of `map_id` with `payload`, as a store
/// writes it.
fn record_bytes(map_id: u64, seq: u32, payload: &[u8], epoch: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        backend: Arc::new(SyscallBackend),
        direct: false,
    };
    let store = ShuffleStore::create(
        dir.path().join("s"),
        env(&setup, None, Durability::PageCache),
    )
    .unwrap();
    let group = WriteGroup::new();
    append(&store, 0, (map_id, seq, payload), epoch, &group).unwrap();
    group.wait().unwrap();
    std::fs::read(part_file(&dir.path().join("s"), 0)).unwrap()
}

fn payload(map_id: u64, partition: u32, seq: u32) -> Vec<u8> {
    let n = 100 + (map_id as usize * 37 + partition as usize * 11 + seq as usize * 5) % 3000;
    (0..n)
        .map(|i| (i as u64 ^ map_id ^ partition as u64) as u8)
        .collect()
}

/// Pushes `blocks` blocks to each of `partitions` for `map_id`, waits, commits.
fn push_map(
    store: &ShuffleStore,
    map_id: u64,
    epoch: u32,
    partitions: u32,
    blocks: u32,
    commit: bool,
) {
    let group = WriteGroup::new();
    for p in 0..partitions {
        for seq in 0..blocks {
            append(
                store,
                p,
                (map_id, seq, &payload(map_id, p, seq)),
                epoch,
                &group,
            )
            .unwrap();
        }
    }
    let (written, touched) = group.wait().unwrap();
    assert_eq!(written, partitions * blocks);
    if commit {
        let c = CommitRecord {
            map_id,
            map_index: map_id as u32,
            attempt: 0,
            epoch,
            blocks: written,
            bytes: 0,
            rows: 0,
        };
        store.commit(&c, &touched, &[]).unwrap();
    }
}

/// Payloads of `map_id`'s blocks in `partition`, in order.
fn read_map(store: &ShuffleStore, partition: u32, map_id: u64, epoch: u32) -> Vec<Vec<u8>> {
    let entries = store.blocks(partition, |e| e.map_id == map_id && e.epoch == epoch);
    store
        .read(partition, &entries)
        .unwrap()
        .iter()
        .map(|b| {
            let view = BlockView::parse(b, &DecodeLimits::default()).unwrap();
            view.decompress().unwrap()
        })
        .collect()
}

fn expected(map_id: u64, partition: u32, blocks: u32) -> Vec<Vec<u8>> {
    (0..blocks).map(|s| payload(map_id, partition, s)).collect()
}

fn part_file(dir: &Path, p: u32) -> std::path::PathBuf {
    dir.join(format!("part-{p}.data"))
}

/// Direct writes put every record on a 4 KiB boundary and keep the file a whole
/// number of 4 KiB pages; buffered ones pack records at 8 bytes.
fn assert_record_alignment(store: &ShuffleStore, dir: &Path, p: u32, direct: bool) {
    let starts: Vec<u64> = store
        .blocks(p, |_| true)
        .iter()
        .map(|e| e.offset - 16)
        .collect();
    let file_len = std::fs::metadata(part_file(dir, p)).unwrap().len();
    let page = DIRECT_ALIGN as u64;
    assert_eq!(starts.len(), 10);
    if direct {
        assert!(starts.iter().all(|s| s % page == 0), "{starts:?}");
        assert_eq!(file_len % page, 0);
    } else {
        assert!(starts.iter().any(|s| s % page != 0), "{starts:?}");
        assert!(starts.iter().all(|s| s % 8 == 0));
    }
}

#[test]
fn appends_are_indexed_and_read_back_on_every_backend() {
    for setup in setups() {
        for durability in [Durability::PageCache, Durability::Fsync] {
            let dir = tempfile::tempdir().unwrap();
            let store =
                ShuffleStore::create(dir.path().join("s"), env(&setup, None, durability)).unwrap();
            // Two pushes interleaved from two threads, many writes in flight.
            std::thread::scope(|s| {
                s.spawn(|| push_map(&store, 1, 0, 20, 5, true));
                s.spawn(|| push_map(&store, 2, 1, 20, 5, true));
            });
            for p in 0..20 {
                assert_eq!(read_map(&store, p, 1, 0), expected(1, p, 5), "{setup:?}");
                assert_eq!(read_map(&store, p, 2, 1), expected(2, p, 5));
                assert_record_alignment(&store, &dir.path().join("s"), p, setup.direct);
            }
            store.delete().unwrap();
            assert!(!dir.path().join("s").exists());
        }
    }
}

#[test]
fn recovery_serves_committed_maps_and_cuts_a_torn_tail() {
    for setup in setups() {
        let dir = tempfile::tempdir().unwrap();
        let sdir = dir.path().join("s");
        {
            let store =
                ShuffleStore::create(sdir.clone(), env(&setup, None, Durability::PageCache))
                    .unwrap();
            push_map(&store, 1, 0, 4, 3, true);
            push_map(&store, 2, 1, 4, 3, false); // never committed
            push_map(&store, 3, 2, 4, 3, true);
        }
        // A crash mid-write: half a record at the end of partition 0's file.
        let path = part_file(&sdir, 0);
        let mut bytes = std::fs::read(&path).unwrap();
        let intact_len = bytes.len() as u64;
        let torn = record_bytes(4, 0, &payload(4, 0, 0), 3);
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();

        let quota = DiskQuota::new("server", None);
        let mut e = env(&setup, None, Durability::PageCache);
        e.quota = quota.clone();
        let rec = ShuffleStore::recover(sdir.clone(), e).unwrap();
        let ids: Vec<u64> = rec.commits.iter().map(|c| c.map_id).collect();
        assert_eq!(ids, vec![1, 3]);
        assert!(rec.incomplete.is_empty());
        assert_eq!(rec.max_epoch, Some(2));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), intact_len);
        assert_eq!(quota.used(), rec.store.stored_bytes());
        for p in 0..4 {
            assert_eq!(read_map(&rec.store, p, 1, 0), expected(1, p, 3));
            assert_eq!(read_map(&rec.store, p, 3, 2), expected(3, p, 3));
        }
        // New appends land after the recovered data and are recovered in turn.
        push_map(&rec.store, 5, 3, 4, 2, true);
        drop(rec);
        let rec = ShuffleStore::recover(sdir, env(&setup, None, Durability::PageCache)).unwrap();
        let ids: Vec<u64> = rec.commits.iter().map(|c| c.map_id).collect();
        assert_eq!(ids, vec![1, 3, 5]);
        assert_eq!(read_map(&rec.store, 0, 5, 3), expected(5, 0, 2));
        assert_eq!(read_map(&rec.store, 0, 1, 0), expected(1, 0, 3));
    }
}

#[test]
fn recovery_skips_a_damaged_region_and_drops_commits_missing_blocks() {
    for direct in [false, true] {
        damaged_region_case(&Setup {
            backend: Arc::new(SyscallBackend),
            direct,
        });
    }
}

fn damaged_region_case(setup: &Setup) {
    let dir = tempfile::tempdir().unwrap();
    let sdir = dir.path().join("s");
    {
        let store =
            ShuffleStore::create(sdir.clone(), env(setup, None, Durability::PageCache)).unwrap();
        push_map(&store, 1, 0, 2, 1, true);
        push_map(&store, 2, 1, 2, 1, true);
        push_map(&store, 3, 2, 2, 1, true);
    }
    // Zero the middle record of partition 1 (a write that never reached the disk while
    // the ones around it did).
    let path = part_file(&sdir, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let store = ShuffleStore::recover(sdir.clone(), env(setup, None, Durability::PageCache))
        .unwrap()
        .store;
    let middle = store.blocks(1, |e| e.map_id == 2)[0];
    drop(store);
    let start = middle.offset as usize - 16;
    bytes[start..middle.offset as usize + middle.len as usize].fill(0);
    std::fs::write(&path, &bytes).unwrap();

    let rec = ShuffleStore::recover(sdir, env(setup, None, Durability::PageCache)).unwrap();
    let ids: Vec<u64> = rec.commits.iter().map(|c| c.map_id).collect();
    assert_eq!(ids, vec![1, 3]);
    assert_eq!(
        rec.incomplete.iter().map(|c| c.map_id).collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(read_map(&rec.store, 1, 3, 2), expected(3, 1, 1));
    assert_eq!(read_map(&rec.store, 1, 1, 0), expected(1, 1, 1));
}

#[test]
fn quota_refuses_an_append_and_changes_nothing() {
    for setup in setups() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShuffleStore::create(
            dir.path().join("s"),
            env(&setup, Some(10_000), Durability::PageCache),
        )
        .unwrap();
        push_map(&store, 1, 0, 1, 2, true);
        let before = store.stored_bytes();
        let group = WriteGroup::new();
        let mut x = 0x9e37_79b9_u32;
        let noise: Vec<u8> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let err = append(&store, 0, (2, 0, &noise), 1, &group).unwrap_err();
        assert!(
            matches!(
                err,
                SpillError::QuotaExceeded {
                    scope: "server",
                    limit: 10_000,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(group.wait().unwrap().0, 0);
        assert_eq!(store.stored_bytes(), before);
        assert_eq!(read_map(&store, 0, 1, 0), expected(1, 0, 2));
    }
}

/// Bytes the file system actually holds for a file (holes excluded).
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn reclaiming_an_abandoned_push_frees_its_space_and_keeps_every_commit() {
    for setup in setups() {
        let dir = tempfile::tempdir().unwrap();
        let sdir = dir.path().join("s");
        let env = env(&setup, None, Durability::PageCache);
        let quota = env.quota.clone();
        let store = ShuffleStore::create(sdir.clone(), env.clone()).unwrap();
        // Map 1 commits; map 2 (epoch 1) is abandoned between map 1 and map 3 in every
        // file, so its holes sit between committed records.
        push_map(&store, 1, 0, 4, 6, true);
        let before_abandoned = quota.used();
        push_map(&store, 2, 1, 4, 6, false);
        let abandoned = quota.used() - before_abandoned;
        push_map(&store, 3, 2, 4, 6, true);
        let held = quota.used();
        let disk_before: u64 = (0..4).map(|p| allocated(&part_file(&sdir, p))).sum();

        let freed = store.reclaim(1, &[0, 1, 2, 3]).unwrap();
        assert_eq!(freed, abandoned, "{setup:?}");
        assert_eq!(quota.used(), held - freed);
        assert_eq!(store.stored_bytes(), held - freed);
        let disk_after: u64 = (0..4).map(|p| allocated(&part_file(&sdir, p))).sum();
        // Whole file-system blocks inside the holes are deallocated, partial ones only
        // zeroed: with O_DIRECT every record is whole 4 KiB pages.
        if setup.direct {
            assert!(disk_after < disk_before, "{disk_after} >= {disk_before}");
        } else {
            assert!(disk_after <= disk_before);
        }
        for p in 0..4 {
            assert!(store.blocks(p, |e| e.epoch == 1).is_empty());
            assert_eq!(read_map(&store, p, 1, 0), expected(1, p, 6));
            assert_eq!(read_map(&store, p, 3, 2), expected(3, p, 6));
        }
        assert_eq!(store.reclaim(1, &[0, 1, 2, 3]).unwrap(), 0, "nothing left");
        drop(store);

        // After a restart the holes are skipped and both commits read back exactly.
        let recovered = ShuffleStore::recover(sdir.clone(), env.clone()).unwrap();
        assert_eq!(recovered.commits.len(), 2);
        assert!(recovered.incomplete.is_empty());
        for p in 0..4 {
            assert!(recovered.store.blocks(p, |e| e.epoch == 1).is_empty());
            assert_eq!(read_map(&recovered.store, p, 1, 0), expected(1, p, 6));
            assert_eq!(read_map(&recovered.store, p, 3, 2), expected(3, p, 6));
        }
    }
}

#[test]
fn reclaiming_after_a_delete_gives_nothing_back_twice() {
    let setup = &setups()[0];
    let dir = tempfile::tempdir().unwrap();
    let server = DiskQuota::new("server", None);
    let app_quota = server.child("app", None);
    let mut env = env(setup, None, Durability::PageCache);
    env.quota = app_quota.clone();
    let store = ShuffleStore::create(dir.path().join("s"), env).unwrap();
    push_map(&store, 1, 0, 2, 3, true);
    push_map(&store, 2, 1, 2, 3, false);
    store.delete().unwrap();
    // The abandoned epoch's reclaim comes after the delete: it gives back nothing.
    assert_eq!(store.reclaim(1, &[0, 1]).unwrap(), 0);
    assert_eq!((app_quota.used(), server.used()), (0, 0));
}

/// After `close`, nothing goes through the store: appends, commits and reads get
/// `Deleted`, writes in flight at the close index nothing, no file is created again
/// (even where a new store took the same path) and the quota holds nothing.
#[test]
fn a_closed_store_refuses_everything_and_recreates_no_file() {
    for setup in setups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let env = env(&setup, None, Durability::PageCache);
        let quota = env.quota.clone();
        let store = ShuffleStore::create(path.clone(), env.clone()).unwrap();
        push_map(&store, 1, 0, 2, 3, true);
        // A push whose writes are in flight when the store closes.
        let group = WriteGroup::new();
        for seq in 0..50 {
            append(&store, 0, (2, seq, &payload(2, 0, seq)), 1, &group).unwrap();
        }
        let entries = store.blocks(1, |_| true);
        store.delete().unwrap();
        assert!(!path.exists());
        // A successor at the same path, as a store re-created there would be.
        let successor = ShuffleStore::create(path.clone(), env.clone()).unwrap();
        let _ = group.wait();
        assert!(store.blocks(0, |_| true).is_empty());
        fn is_deleted<T>(r: Result<T, SpillError>) -> bool {
            matches!(r, Err(SpillError::Deleted(_)))
        }
        let late: &[u8] = b"late";
        assert!(is_deleted(append(
            &store,
            1,
            (3, 0, late),
            2,
            &WriteGroup::new()
        )));
        assert!(is_deleted(append(
            &store,
            7,
            (3, 0, late),
            2,
            &WriteGroup::new()
        )));
        let c = CommitRecord {
            map_id: 2,
            map_index: 2,
            attempt: 0,
            epoch: 1,
            blocks: 50,
            bytes: 0,
            rows: 0,
        };
        assert!(is_deleted(store.commit(&c, &[0], &[])));
        assert!(is_deleted(store.read(1, &entries)));
        // Nothing of the old store reached the successor's directory.
        let mut names: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["commits.log", "sums.log"], "{setup:?}");
        assert_eq!(
            std::fs::metadata(path.join("commits.log")).unwrap().len(),
            0
        );
        assert_eq!(quota.used(), 0, "{setup:?}");
        drop(successor);
    }
}

/// A backend that holds every write until `release`, so a test sees what is queued.
#[derive(Default)]
struct HeldBackend {
    held: std::sync::Mutex<Vec<HeldWrite>>,
}

impl std::fmt::Debug for HeldBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldBackend")
    }
}

type HeldWrite = (
    Arc<std::fs::File>,
    u64,
    sluice_spill::WriteBuf,
    sluice_spill::backend::WriteDone,
);

impl HeldBackend {
    fn release(&self) {
        let held = std::mem::take(&mut *self.held.lock().unwrap());
        for (file, offset, data, done) in held {
            SyscallBackend.write(file, offset, data, done);
        }
    }
}

impl IoBackend for HeldBackend {
    fn kind(&self) -> sluice_spill::BackendKind {
        sluice_spill::BackendKind::IoUring
    }

    fn write(
        &self,
        file: Arc<std::fs::File>,
        offset: u64,
        data: sluice_spill::WriteBuf,
        done: sluice_spill::backend::WriteDone,
    ) {
        self.held.lock().unwrap().push((file, offset, data, done));
    }
}

#[test]
fn an_inline_group_writes_on_the_appending_thread_behind_its_queued_writes() {
    for direct in [false, true] {
        let backend = Arc::new(HeldBackend::default());
        let setup = Setup {
            backend: backend.clone(),
            direct,
        };
        let dir = tempfile::tempdir().unwrap();
        let store = ShuffleStore::create(
            dir.path().join("s"),
            env(&setup, None, Durability::PageCache),
        )
        .unwrap();
        let group = WriteGroup::new();
        append(&store, 0, (1, 0, &payload(1, 0, 0)), 0, &group).unwrap();
        assert_eq!(group.pending(), 1, "queued to the backend");
        group.write_inline();
        for seq in 1..3 {
            append(&store, 0, (1, seq, &payload(1, 0, seq)), 0, &group).unwrap();
        }
        append(&store, 1, (1, 0, &payload(1, 1, 0)), 0, &group).unwrap();
        // Written and indexed before append returned; the queued one still waits.
        assert_eq!(group.pending(), 1);
        assert_eq!(read_map(&store, 1, 1, 0), expected(1, 1, 1));
        assert_eq!(read_map(&store, 0, 1, 0), expected(1, 0, 3)[1..].to_vec());
        backend.release();
        let (written, mut touched) = group.wait().unwrap();
        touched.sort_unstable();
        assert_eq!((written, touched), (4, vec![0, 1]));
        assert_eq!(read_map(&store, 0, 1, 0), expected(1, 0, 3));
    }
}
