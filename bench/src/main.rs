//! `sluice-bench`: Sluice's standalone benchmark. `--mode e2e` (default) runs a verified
//! end-to-end shuffle through an embedded server; `split`, `codec`, `spill` and `net`
//! measure one stage each against the machine's limit (and peers) in the same run;
//! `spark` times Spark workloads under sort shuffle and under Sluice. `--json PATH` writes
//! every result, and a chart of them next to it (`PATH` with `.svg`). BENCHMARKS.md has
//! the current numbers.
//!
//! It owns measurement only: it drives the shipped crates as a user would (an embedded
//! server, the client) and must not reach into their internals or be a dependency of
//! anything shipped; a figure it prints names the command that produced it.

mod chart;
mod codec;
mod data;
#[cfg(feature = "peers")]
mod datafusion_peer;
mod e2e;
mod net;
mod report;
mod spark;
mod spill;
mod split;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

// The allocator the server ships with (see sluice-server's main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// End-to-end shuffle through an embedded server, verified.
    E2e,
    /// The split path alone, one thread, against memcpy and take-per-partition.
    Split,
    /// Sequential appends of the store on each I/O backend, against plain buffered
    /// and O_DIRECT writes of the same bytes.
    Spill,
    /// Block encoding and decoding (header, codec, crc32c), against the codec alone.
    Codec,
    /// The transport: raw quinn bulk transfers under each tuning, TCP for reference,
    /// and e2e push and fetch against the raw quinn limit.
    Net,
    /// Small reduce tasks as Spark runs them (one partition from each of two servers,
    /// through the blocking client), on an idle machine and with every core busy: the
    /// time to the first block and to the task's end.
    Latency,
    /// Spark workloads (`--spark-workloads`) under sort shuffle and under Sluice,
    /// alternating: wall time, CPU of executors and servers, Spark's task metrics
    /// (installs pyspark into a cached venv, generates TPC-H data; minutes to hours).
    Spark,
}

/// Any failure of a benchmark run (it is reported and the run exits 2).
pub(crate) type BenchError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Codec {
    None,
    Lz4,
    Zstd,
}

/// Sluice benchmark: an end-to-end shuffle (default) or one stage, with results as a
/// table and optionally as JSON.
#[derive(Debug, Parser)]
#[command(version)]
pub(crate) struct Args {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::E2e)]
    mode: Mode,
    /// Also write every result as JSON records to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Map tasks; each pushes over its own connection, all concurrently.
    #[arg(long, default_value_t = 8)]
    pub(crate) maps: u32,
    /// Batches each map pushes.
    #[arg(long, default_value_t = 48)]
    pub(crate) batches_per_map: u32,
    /// Rows per batch.
    #[arg(long, default_value_t = 8192)]
    pub(crate) rows_per_batch: usize,
    /// Reduce partitions (hash of l_orderkey, Spark-compatible).
    #[arg(long, default_value_t = 200)]
    pub(crate) partitions: u32,
    /// Reducers; each fetches a contiguous range of partitions, all concurrently.
    #[arg(long, default_value_t = 4)]
    pub(crate) reducers: u32,
    /// Block codec of the server.
    #[arg(long, value_enum, default_value_t = Codec::Lz4)]
    pub(crate) codec: Codec,
    /// zstd level when --codec zstd.
    #[arg(long, default_value_t = 1)]
    pub(crate) zstd_level: i32,
    /// A short run for smoke tests (e2e: 2 maps x 8 batches; split: 16 batches, 1 run).
    #[arg(long)]
    quick: bool,
    /// split: batches of lineitem data (8192 rows each by default).
    #[arg(long, default_value_t = 128)]
    split_batches: usize,
    /// split: partition counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [16u32, 200, 2000, 20000])]
    split_partitions: Vec<u32>,
    /// split: block size at which a partition's buffer is drained, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    block_size: usize,
    /// split: per-push buffer limit in MiB, above which the largest partitions are
    /// drained early (default: the server's `storage.push_buffer_limit`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
    split_memory_mib: Option<u32>,
    /// Runs per case, in every mode (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// split: skip the peers (profile Sluice's own path).
    #[arg(long)]
    no_peers: bool,
    /// spill: MiB written per case.
    #[arg(long, default_value_t = 2048)]
    spill_mib: u64,
    /// spill: partition files appended to round-robin.
    #[arg(long, default_value_t = 2000)]
    spill_partitions: u32,
    /// spill: block size in KiB.
    #[arg(long, default_value_t = 256)]
    spill_block_kib: usize,
    /// codec: MiB of raw (IPC) block bytes per case.
    #[arg(long, default_value_t = 256)]
    codec_mib: usize,
    /// net: MiB per raw transfer.
    #[arg(long, default_value_t = 2048)]
    net_mib: u64,
    /// spark: the workloads, of groupby, wide200, wide2000 and tpch (TPC-H SF1,
    /// 22 queries).
    #[arg(long, value_delimiter = ',', default_values_t = ["groupby".to_string()])]
    spark_workloads: Vec<String>,
    /// spark: rows of generated lineitem data (groupby).
    #[arg(long, default_value_t = 20_000_000)]
    spark_rows: u64,
    /// spark: rows of the generated wide table (wide200, wide2000).
    #[arg(long, default_value_t = 8_000_000)]
    spark_wide_rows: u64,
    /// e2e: 2 compares one copy of each map with two, on two servers (the server
    /// forwards each map to the other), alternating run by run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2))]
    pub(crate) replication: u32,
    /// e2e and net: run over a veth pair between two network namespaces instead of
    /// loopback (root only): `veth[,rate=1gbit][,loss=0.1%][,mtu=1500]` (MTU 1500 by
    /// default; the rate is a tbf limit on each direction, the loss a random drop of
    /// arriving packets at each end).
    #[arg(long, value_parser = sluice_testkit::netns::LinkSpec::parse)]
    link: Option<sluice_testkit::netns::LinkSpec>,
    /// Loopback, or the link made from `--link`.
    #[arg(skip)]
    pub(crate) path: net::path::NetPath,
    /// Where the server stores data (default: a temporary directory).
    #[arg(long)]
    pub(crate) data_dir: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    // The server's allocator settings, as it ships: the benchmark embeds it.
    let allocator = sluice_server::allocator::tune();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    if let Err(e) = allocator {
        eprintln!(
            "warning: transparent huge pages stay on: the kernel refused PR_SET_THP_DISABLE: {e}"
        );
    }
    let mut args = Args::parse();
    if args.quick {
        args.runs = 1;
        if matches!(args.mode, Mode::E2e | Mode::Net | Mode::Latency) {
            args.maps = args.maps.min(2);
            args.batches_per_map = args.batches_per_map.min(8);
        }
    }
    if let Some(spec) = args.link {
        if !matches!(args.mode, Mode::E2e | Mode::Net) {
            eprintln!("sluice-bench: --link is for --mode e2e and --mode net");
            return ExitCode::from(2);
        }
        // Before the runtime exists: its threads start in the client namespace.
        match net::path::NetPath::over_link(spec) {
            Ok(path) => args.path = path,
            Err(e) => {
                eprintln!("sluice-bench: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let (ok, records) = match run_mode(&args) {
        Ok(result) => result,
        Err(e) => {
            eprintln!("sluice-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.json {
        if let Err(e) = report::write_json(path, &records) {
            eprintln!("sluice-bench: writing {}: {e}", path.display());
            return ExitCode::from(2);
        }
        let title = format!(
            "sluice-bench --mode {}",
            format!("{:?}", args.mode).to_lowercase()
        );
        if let Err(e) = chart::write_next_to(path, &title, &records) {
            eprintln!("sluice-bench: writing the chart: {e}");
            return ExitCode::from(2);
        }
        eprintln!(
            "results written to {} and {}",
            path.display(),
            path.with_extension("svg").display()
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the chosen mode: whether it verified, and its results.
fn run_mode(args: &Args) -> Result<(bool, Vec<report::Record>), BenchError> {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let quick = |quick: usize, full: usize| if args.quick { quick } else { full };
    Ok(match args.mode {
        Mode::E2e => runtime()?.block_on(e2e::run(args))?,
        Mode::Latency => runtime()?.block_on(e2e::latency::run(args))?,
        Mode::Split => {
            let split_args = split::SplitArgs {
                batches: quick(16, args.split_batches),
                rows_per_batch: args.rows_per_batch,
                partitions: args.split_partitions.clone(),
                block_size: args.block_size,
                memory_limit: args.split_memory_mib.map_or_else(
                    || {
                        let config = sluice_server::ServerConfig::default();
                        config.storage.push_buffer_limit.as_u64() as usize
                    },
                    |mib| (mib as usize) << 20,
                ),
                runs: args.runs,
                no_peers: args.no_peers,
            };
            let records = split::run(&split_args);
            split::print(&records);
            (true, records)
        }
        Mode::Codec => {
            let codec_args = codec::CodecArgs {
                bytes: quick(16, args.codec_mib) << 20,
                block_size: args.block_size,
                runs: args.runs,
            };
            let records = codec::run(&codec_args);
            codec::print(&records);
            (true, records)
        }
        Mode::Net => {
            let net_args = net::NetArgs {
                bytes: (quick(64, args.net_mib as usize) as u64) << 20,
                runs: args.runs,
            };
            runtime()?.block_on(net::run(args, &net_args))?
        }
        Mode::Spark => {
            let spark_args = spark::SparkArgs {
                workloads: args.spark_workloads.clone(),
                rows: quick(1_000_000, args.spark_rows as usize) as u64,
                wide_rows: quick(1_000_000, args.spark_wide_rows as usize) as u64,
                runs: args.runs,
            };
            (true, spark::run(&spark_args)?)
        }
        Mode::Spill => {
            let spill_args = spill::SpillArgs {
                bytes: (quick(64, args.spill_mib as usize) as u64) << 20,
                block_size: args.spill_block_kib << 10,
                partitions: args.spill_partitions,
                runs: args.runs,
                dir: args.data_dir.clone().unwrap_or_else(|| PathBuf::from(".")),
            };
            let records = spill::run(&spill_args);
            spill::print(&records);
            (true, records)
        }
    })
}
