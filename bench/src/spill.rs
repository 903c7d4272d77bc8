//! `--mode spill`: sequential append throughput of the store on each backend, with many
//! partition files open, against plain sequential writes of the same bytes to one file
//! (buffered, and O_DIRECT: the device limit), all measured in the same run. Every
//! case ends with its data on stable storage (fdatasync), so the page cache does not
//! flatter the buffered paths.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::Instant;

use sluice_format::{encode_block, BlockHeader, BlockMeta, Codec, CodecConfig, DecodeLimits};
use sluice_spill::record::{begin_record, finish_record};
use sluice_spill::uring::{UringBackend, UringConfig};
use sluice_spill::{
    DiskQuota, Durability, IoBackend, ShuffleStore, StoreEnv, SyscallBackend, WriteGroup,
};

use crate::report::{median_secs, Record};

pub struct SpillArgs {
    /// Bytes written per case.
    pub bytes: u64,
    /// Size of each block.
    pub block_size: usize,
    /// Partition files written round-robin.
    pub partitions: u32,
    pub runs: usize,
    pub dir: std::path::PathBuf,
}

/// O_DIRECT (Linux x86-64 and aarch64 value).
const O_DIRECT: i32 = 0o40000;
const ALIGN: usize = 4096;

/// Incompressible bytes, so the block is stored as given.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A framed record holding one block of `block_size` payload bytes.
fn record(block_size: usize) -> (BlockHeader, Vec<u8>) {
    let mut out = Vec::new();
    begin_record(&mut out);
    let meta = BlockMeta {
        map_id: 1,
        map_index: 0,
        attempt: 0,
        seq: 0,
        rows: 1,
    };
    let h = encode_block(
        meta,
        &noise(block_size, 7),
        &CodecConfig::new(Codec::None, 1).expect("codec"),
        &mut out,
    )
    .expect("encode block");
    finish_record(&mut out, 0).expect("record fits");
    (h, out)
}

/// The store on `backend`: `bytes` of records appended round-robin over the partition
/// files, then every file synced.
fn store_case(args: &SpillArgs, backend: Arc<dyn IoBackend>) -> f64 {
    let dir = tempfile::tempdir_in(&args.dir).expect("temporary directory");
    let env = StoreEnv {
        backend,
        quota: DiskQuota::new("server", None),
        durability: Durability::PageCache,
        limits: DecodeLimits::default(),
    };
    let store = ShuffleStore::create(dir.path().join("s"), env).expect("store");
    let (header, rec) = record(args.block_size);
    let count = args.bytes.div_ceil(rec.len() as u64);
    let group = WriteGroup::new();
    let start = Instant::now();
    for i in 0..count {
        let p = (i % args.partitions as u64) as u32;
        store
            .append(p, &header, rec.clone(), 0, &group)
            .expect("append");
    }
    group.wait().expect("writes");
    store.sync_all().expect("fdatasync");
    start.elapsed().as_secs_f64()
}

/// One file, written sequentially in `chunk`-byte writes; O_DIRECT or buffered.
fn plain_case(args: &SpillArgs, direct: bool) -> f64 {
    let dir = tempfile::tempdir_in(&args.dir).expect("temporary directory");
    let chunk = (args.block_size.max(ALIGN) / ALIGN) * ALIGN;
    // An aligned window of an over-allocated buffer (O_DIRECT needs aligned memory).
    let raw = noise(chunk + ALIGN, 9);
    let at = raw.as_ptr().align_offset(ALIGN);
    let buf = &raw[at..at + chunk];
    let mut options = OpenOptions::new();
    options.create(true).write(true).truncate(true);
    if direct {
        options.custom_flags(O_DIRECT);
    }
    let path = dir.path().join("plain.data");
    let mut file = options.open(&path).expect("open");
    let count = args.bytes.div_ceil(chunk as u64);
    let start = Instant::now();
    for _ in 0..count {
        file.write_all(buf).expect("write");
    }
    file.sync_data().expect("fdatasync");
    start.elapsed().as_secs_f64()
}

pub fn run(args: &SpillArgs) -> Vec<Record> {
    let gbps = |secs: f64| args.bytes as f64 / 1e9 / secs;
    let mut records = Vec::new();
    eprintln!(
        "spill: {} MiB per case in {} KiB blocks, P = {}, in {}",
        args.bytes >> 20,
        args.block_size >> 10,
        args.partitions,
        args.dir.display()
    );
    let direct = gbps(median_secs(args.runs, || plain_case(args, true)));
    records.push(Record::new(
        "spill",
        "plain write, O_DIRECT",
        "throughput",
        direct,
        "GB/s",
    ));
    let buffered = gbps(median_secs(args.runs, || plain_case(args, false)));
    records.push(
        Record::new(
            "spill",
            "plain write, buffered + fdatasync",
            "throughput",
            buffered,
            "GB/s",
        )
        .with_limit(direct),
    );
    let case = format!("store, P={}, syscall", args.partitions);
    let sys = gbps(median_secs(args.runs, || {
        store_case(args, Arc::new(SyscallBackend))
    }));
    records.push(Record::new("spill", case, "throughput", sys, "GB/s").with_limit(direct));
    match UringBackend::start(UringConfig::default()) {
        Ok(_) => {
            let case = format!("store, P={}, io_uring", args.partitions);
            let uring = gbps(median_secs(args.runs, || {
                let b = UringBackend::start(UringConfig::default()).expect("ring");
                store_case(args, Arc::new(b))
            }));
            records.push(
                Record::new("spill", case, "throughput", uring, "GB/s")
                    .with_limit(direct)
                    .with_peer(sys),
            );
        }
        Err(e) => eprintln!("spill: io_uring not available ({e}); measured syscalls only"),
    }
    records
}

pub fn print(records: &[Record]) {
    println!();
    println!("sluice-bench spill (sequential appends, every case synced to the device)");
    println!("{:<44} {:>10} {:>14}", "case", "GB/s", "of O_DIRECT");
    for r in records {
        println!(
            "{:<44} {:>10.3} {:>13.0}%",
            r.case,
            r.value,
            100.0 * r.ratio_to_limit.unwrap_or(1.0)
        );
    }
}
