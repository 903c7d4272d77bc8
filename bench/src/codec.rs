//! `--mode codec`: the block codec path as the server and the reducer run it (Arrow IPC
//! body → compressed block with header and crc32c; block → checked, decompressed body),
//! against the codec alone on the same bytes (the limit), all in one run.
//!
//! Blocks are lineitem-like rows of about the server's block size, IPC-encoded as the
//! server encodes them before compressing.

use std::hint::black_box;
use std::time::Instant;

use sluice_format::{
    decode_block, encode_batch, encode_block, BlockMeta, Codec, CodecConfig, DecodeLimits,
};
use sluice_testkit::lineitem_batch;

use crate::report::{median_secs, Record};

pub struct CodecArgs {
    /// Raw (IPC) bytes per case.
    pub bytes: usize,
    /// Raw size of each block.
    pub block_size: usize,
    pub runs: usize,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    codec: Codec,
    level: i32,
}

impl Case {
    fn name(self) -> String {
        match self.codec {
            Codec::Zstd => format!("zstd-{}", self.level),
            c => c.name().to_string(),
        }
    }
}

const CASES: [Case; 4] = [
    Case {
        codec: Codec::None,
        level: 1,
    },
    Case {
        codec: Codec::Lz4,
        level: 1,
    },
    Case {
        codec: Codec::Zstd,
        level: 1,
    },
    Case {
        codec: Codec::Zstd,
        level: 3,
    },
];

/// IPC bodies of about `block_size` bytes each, `bytes` in all.
fn blocks(args: &CodecArgs) -> Vec<Vec<u8>> {
    let sample = lineitem_batch(1024, 0);
    let mut ipc = Vec::new();
    encode_batch(&sample, &mut ipc).expect("encode sample");
    let rows = (args.block_size * 1024 / ipc.len()).max(1);
    let count = args.bytes.div_ceil(args.block_size).max(1);
    (0..count)
        .map(|i| {
            let mut out = Vec::new();
            encode_batch(&lineitem_batch(rows, i as u64 + 1), &mut out).expect("encode");
            out
        })
        .collect()
}

fn meta(seq: usize) -> BlockMeta {
    BlockMeta {
        map_id: 1,
        map_index: 0,
        attempt: 0,
        seq: seq as u32,
        rows: 1,
    }
}

pub fn run(args: &CodecArgs) -> Vec<Record> {
    let raw = blocks(args);
    let raw_bytes: usize = raw.iter().map(Vec::len).sum();
    let gbps = |secs: f64| raw_bytes as f64 / secs / 1e9;
    let mut records = Vec::new();
    let bar = crate::report::progress(CASES.len() as u64, "codec");
    for case in CASES {
        bar.set_message(format!("codec {}", case.name()));
        let config = CodecConfig::new(case.codec, case.level).expect("valid codec");
        // Ours: what the server does per block (header, compression, crc32c).
        let mut encoded: Vec<Vec<u8>> = Vec::new();
        let compress = median_secs(args.runs, || {
            let start = Instant::now();
            encoded = raw
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut out = Vec::with_capacity(r.len() / 2);
                    encode_block(meta(i), r, &config, &mut out).expect("encode");
                    out
                })
                .collect();
            start.elapsed().as_secs_f64()
        });
        let stored: usize = encoded.iter().map(Vec::len).sum();
        let limits = DecodeLimits::default();
        let decompress = median_secs(args.runs, || {
            let start = Instant::now();
            for block in &encoded {
                black_box(decode_block(block, &limits).expect("decode"));
            }
            start.elapsed().as_secs_f64()
        });
        let (limit_c, limit_d) = codec_alone(case, &raw, args.runs);
        let name = case.name();
        records.push(
            Record::new("codec", &name, "compress", gbps(compress), "GB/s")
                .with_limit(gbps(limit_c)),
        );
        records.push(
            Record::new("codec", &name, "decompress", gbps(decompress), "GB/s")
                .with_limit(gbps(limit_d)),
        );
        records.push(Record::new(
            "codec",
            &name,
            "ratio",
            raw_bytes as f64 / stored as f64,
            "x",
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    records
}

/// Seconds to compress and to decompress every block with the codec's own API and
/// reused buffers and contexts: no header, no checksum (for `none`, a copy).
fn codec_alone(case: Case, raw: &[Vec<u8>], runs: usize) -> (f64, f64) {
    let max = raw.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = vec![0u8; max + max / 2 + 1024];
    let mut back = vec![0u8; max];
    let mut stored: Vec<Vec<u8>> = Vec::new();
    let compress = median_secs(runs, || {
        let start = Instant::now();
        stored = match case.codec {
            Codec::None => raw.iter().map(|r| r.to_vec()).collect(),
            Codec::Lz4 => raw
                .iter()
                .map(|r| {
                    let n = lz4_flex::block::compress_into(r, &mut out).expect("lz4");
                    out[..n].to_vec()
                })
                .collect(),
            Codec::Zstd => {
                let mut z = zstd::bulk::Compressor::new(case.level).expect("zstd context");
                raw.iter()
                    .map(|r| {
                        let n = z.compress_to_buffer(r, &mut out[..]).expect("zstd");
                        out[..n].to_vec()
                    })
                    .collect()
            }
        };
        start.elapsed().as_secs_f64()
    });
    let decompress = median_secs(runs, || {
        let start = Instant::now();
        let mut z = zstd::bulk::Decompressor::new().expect("zstd context");
        for (s, r) in stored.iter().zip(raw) {
            let dst = &mut back[..r.len()];
            match case.codec {
                Codec::None => dst.copy_from_slice(s),
                Codec::Lz4 => {
                    lz4_flex::block::decompress_into(s, dst).expect("lz4");
                }
                Codec::Zstd => {
                    z.decompress_to_buffer(s, dst).expect("zstd");
                }
            }
            black_box(&dst);
        }
        start.elapsed().as_secs_f64()
    });
    (compress, decompress)
}

pub fn print(records: &[Record]) {
    println!();
    println!("sluice-bench codec (one thread, lineitem-like IPC blocks)");
    println!(
        "{:<8} {:>12} {:>10} {:>14} {:>10} {:>8}",
        "codec", "compress", "of alone", "decompress", "of alone", "ratio"
    );
    for r in records.iter().filter(|r| r.metric == "compress") {
        let other = |metric: &str| {
            records
                .iter()
                .find(|x| x.metric == metric && x.case == r.case)
        };
        let d = other("decompress").expect("decompress record");
        let ratio = other("ratio").map_or(0.0, |x| x.value);
        println!(
            "{:<8} {:>7.2} GB/s {:>9.0}% {:>9.2} GB/s {:>9.0}% {:>7.2}x",
            r.case,
            r.value,
            100.0 * r.ratio_to_limit.unwrap_or(0.0),
            d.value,
            100.0 * d.ratio_to_limit.unwrap_or(0.0),
            ratio
        );
    }
}
