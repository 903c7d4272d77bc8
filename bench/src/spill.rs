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
use sluice_spill::uring::{UringBackend, UringConfig};
use sluice_spill::{
    DiskQuota, Durability, IoBackend, ShuffleStore, StoreEnv, SyscallBackend, WriteBuf, WriteGroup,
    DIRECT_ALIGN, O_DIRECT,
};

use crate::report::{median, Record};

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

/// Encodes `payload` as one block, the way the server encodes its blocks into the
/// record buffers the store gives it.
fn encode(payload: &[u8], out: &mut Vec<u8>) -> Result<BlockHeader, sluice_format::FormatError> {
    let meta = BlockMeta {
        map_id: 1,
        map_index: 0,
        attempt: 0,
        seq: 0,
        rows: 1,
    };
    let codec = CodecConfig::new(Codec::None, 1).expect("codec");
    encode_block(meta, payload, &codec, out)
}

/// Writes in flight at once: 8 MiB of 256 KiB blocks. More does not write faster
/// (256 measured 89% of the limit where 32 measured 93%): buffers reused while still
/// in the CPU cache beat a deeper queue.
const IN_FLIGHT: usize = 32;

/// The store on `backend`: `bytes` of records appended round-robin over the partition
/// files, then every file synced.
fn store_case(args: &SpillArgs, backend: Arc<dyn IoBackend>, direct_io: bool) -> f64 {
    let dir = tempfile::tempdir_in(&args.dir).expect("temporary directory");
    let env = StoreEnv {
        backend,
        quota: DiskQuota::new("server", None),
        durability: Durability::PageCache,
        limits: DecodeLimits::default(),
        direct_io,
    };
    let store = ShuffleStore::create(dir.path().join("s"), env).expect("store");
    // "P files open": creating them is not part of the append throughput.
    store.open_files(0..args.partitions).expect("create files");
    let payload = noise(args.block_size, 7);
    let count = args.bytes.div_ceil(args.block_size as u64);
    let group = WriteGroup::new();
    let start = Instant::now();
    for i in 0..count {
        let p = (i % args.partitions as u64) as u32;
        let hint = payload.len() + sluice_format::HEADER_LEN;
        store
            .append(p, 0, hint, &group, |out| encode(&payload, out))
            .expect("append");
        // As the server's memory budget does: a bounded amount in flight.
        group.wait_until_pending_at_most(IN_FLIGHT);
    }
    group.wait().expect("writes");
    store.sync_all().expect("fdatasync");
    start.elapsed().as_secs_f64()
}

/// One file, written sequentially in `chunk`-byte writes; O_DIRECT or buffered.
fn plain_case(args: &SpillArgs, direct: bool) -> f64 {
    let dir = tempfile::tempdir_in(&args.dir).expect("temporary directory");
    let chunk = (args.block_size.max(DIRECT_ALIGN) / DIRECT_ALIGN) * DIRECT_ALIGN;
    // O_DIRECT needs aligned memory.
    let buf = WriteBuf::aligned_copy(&noise(chunk, 9), chunk);
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
        file.write_all(buf.as_slice()).expect("write");
    }
    file.sync_data().expect("fdatasync");
    start.elapsed().as_secs_f64()
}

/// One measured case: its name and how to run it once (returns seconds).
type Case<'a> = (String, Box<dyn Fn() -> f64 + 'a>);

fn cases(args: &SpillArgs) -> Vec<Case<'_>> {
    let mut out: Vec<Case<'_>> = vec![
        (
            "plain write, O_DIRECT".into(),
            Box::new(|| plain_case(args, true)),
        ),
        (
            "plain write, buffered + fdatasync".into(),
            Box::new(|| plain_case(args, false)),
        ),
    ];
    let mut backends: Vec<(&str, Arc<dyn IoBackend>)> = vec![("syscall", Arc::new(SyscallBackend))];
    match UringBackend::start(UringConfig::default()) {
        Ok(ring) => backends.push(("io_uring", Arc::new(ring))),
        Err(e) => eprintln!("spill: io_uring not available ({e}); measured syscalls only"),
    }
    for direct_io in [false, true] {
        for (name, backend) in &backends {
            let mode = if direct_io { "O_DIRECT" } else { "buffered" };
            let backend = backend.clone();
            out.push((
                format!("store, P={}, {name}, {mode}", args.partitions),
                Box::new(move || store_case(args, backend.clone(), direct_io)),
            ));
        }
    }
    out
}

/// Runs every case once per round, `runs` rounds (so a slow spell of the device hits
/// every case alike), and reports each case's median.
pub fn run(args: &SpillArgs) -> Vec<Record> {
    eprintln!(
        "spill: {} MiB per case in {} KiB blocks, P = {}, in {}",
        args.bytes >> 20,
        args.block_size >> 10,
        args.partitions,
        args.dir.display()
    );
    let cases = cases(args);
    let mut times = vec![Vec::new(); cases.len()];
    let bar = crate::report::progress((args.runs.max(1) * cases.len()) as u64, "spill");
    for _ in 0..args.runs.max(1) {
        for (i, (_, case)) in cases.iter().enumerate() {
            times[i].push(case());
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let gbps: Vec<f64> = times
        .iter()
        .map(|t| args.bytes as f64 / 1e9 / median(t))
        .collect();
    let limit = gbps[0];
    let mut records = vec![Record::new(
        "spill",
        &cases[0].0,
        "throughput",
        limit,
        "GB/s",
    )];
    for (i, (name, _)) in cases.iter().enumerate().skip(1) {
        let mut r = Record::new("spill", name, "throughput", gbps[i], "GB/s").with_limit(limit);
        // io_uring's peer: the syscall backend in the same mode, the case before it.
        if name.contains("io_uring") {
            r = r.with_peer(gbps[i - 1]);
        }
        records.push(r);
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
