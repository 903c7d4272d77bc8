//! `--mode net`: the transport alone. A raw quinn bulk transfer over one connection (the
//! limit Sluice's push and fetch are held to), under Sluice's default transport tuning
//! and under each alternative setting of one knob, both directions; plain tokio TCP
//! for reference. Then an e2e shuffle with the default tuning, whose push and fetch are
//! reported against the raw quinn limit measured in the same run.

pub mod raw;

use sluice_transport::TransportTuning;

use crate::report::{median, usage, Record};
use crate::{Args, BenchError};
use raw::Direction;

pub struct NetArgs {
    /// Bytes per transfer.
    pub bytes: u64,
    pub runs: usize,
}

/// A named transport setting: the server's and the client's tuning, and streams.
#[derive(Debug, Clone)]
pub struct Setting {
    pub name: String,
    pub server: TransportTuning,
    pub client: TransportTuning,
    pub streams: u32,
}

impl Setting {
    pub fn default_tuning() -> Self {
        Self {
            name: "default".into(),
            server: TransportTuning::SERVER,
            client: TransportTuning::CLIENT,
            streams: 1,
        }
    }

    fn with(name: &str, streams: u32, change: impl Fn(&mut TransportTuning)) -> Self {
        let mut s = Self::default_tuning();
        s.name = name.into();
        s.streams = streams;
        change(&mut s.server);
        change(&mut s.client);
        s
    }
}

/// The default and one change of one knob each; why each default wins is in
/// BENCHMARKS.md.
pub fn settings() -> Vec<Setting> {
    vec![
        Setting::default_tuning(),
        Setting::with("4 streams", 4, |_| {}),
        Setting::with("16 streams", 16, |_| {}),
        Setting::with("payload 1472 (Ethernet)", 1, |t| t.max_udp_payload = 1472),
        Setting::with("no GSO", 1, |t| t.segmentation_offload = false),
        Setting::with("no GSO, payload 1472", 1, |t| {
            t.segmentation_offload = false;
            t.max_udp_payload = 1472;
        }),
        Setting::with("no GSO, payload 65527", 1, |t| {
            t.segmentation_offload = false;
            t.max_udp_payload = 65527;
        }),
        Setting::with("OS socket buffers", 1, |t| t.udp_socket_buffer = 0),
        Setting::with("quinn default windows", 1, |t| {
            t.stream_receive_window = 1_250_000;
            t.receive_window = u32::MAX >> 2;
            t.send_window = 10_000_000;
        }),
        Setting::with("1 MiB windows", 1, |t| {
            t.stream_receive_window = 1 << 20;
            t.receive_window = 2 << 20;
            t.send_window = 2 << 20;
        }),
    ]
}

/// Median GB/s of raw quinn transfers under `setting`, and their CPU seconds per GB.
pub async fn raw_quinn(
    setting: &Setting,
    direction: Direction,
    args: &NetArgs,
) -> Result<(f64, f64), BenchError> {
    let mut rates = Vec::new();
    let before = usage();
    for _ in 0..args.runs.max(1) {
        let gbps = raw::quinn_transfer(
            &setting.server,
            &setting.client,
            args.bytes,
            setting.streams,
            direction,
        )
        .await
        .map_err(|e| format!("raw quinn transfer ({}): {e}", setting.name))?;
        rates.push(gbps);
    }
    let gb = (args.bytes * args.runs.max(1) as u64) as f64 / 1e9;
    Ok((median(&rates), (usage().cpu_secs - before.cpu_secs) / gb))
}

/// The transport sweep, TCP, then an e2e shuffle against the default raw limit.
pub async fn run(args: &Args, net: &NetArgs) -> Result<(bool, Vec<Record>), BenchError> {
    let mut records = Vec::new();
    let mut limit = [0.0; 2];
    println!(
        "{:<26} {:>11} {:>11} {:>12}",
        "raw quinn, 1 connection", "push", "fetch", "CPU s/GB"
    );
    let settings = settings();
    let bar = crate::report::progress(settings.len() as u64 * 2, "net");
    for setting in settings {
        bar.set_message(format!("net: {}", setting.name));
        let mut cpu = 0.0;
        let mut rates = [0.0; 2];
        for (i, direction) in [Direction::Push, Direction::Fetch].into_iter().enumerate() {
            let (gbps, cpu_per_gb) = raw_quinn(&setting, direction, net).await?;
            rates[i] = gbps;
            cpu += cpu_per_gb / 2.0;
            bar.inc(1);
        }
        bar.suspend(|| {
            println!(
                "{:<26} {:>6.3} GB/s {:>6.3} GB/s {:>12.2}",
                setting.name, rates[0], rates[1], cpu
            )
        });
        let case = format!("raw quinn, {}", setting.name);
        let mut push = Record::new("net", case.clone(), "push", rates[0], "GB/s");
        let mut fetch = Record::new("net", case.clone(), "fetch", rates[1], "GB/s");
        if setting.name == "default" {
            limit = rates;
        } else {
            // The default is the reference each alternative is held to.
            push = push.with_peer(limit[0]);
            fetch = fetch.with_peer(limit[1]);
        }
        records.extend([
            push,
            fetch,
            Record::new("net", case, "cpu_per_gb", cpu, "s/GB"),
        ]);
    }
    bar.finish_and_clear();
    let mut rates = Vec::new();
    for _ in 0..net.runs.max(1) {
        rates.push(raw::tcp_transfer(net.bytes).await?);
    }
    let tcp = median(&rates);
    println!("{:<26} {:>6.3} GB/s", "tokio TCP (no TLS)", tcp);
    records.push(Record::new("net", "tokio TCP, no TLS", "push", tcp, "GB/s"));

    // The whole path with the default tuning, against the default raw limit.
    let (ok, e2e) = crate::e2e::run(args).await?;
    for r in e2e {
        let r = match r.metric {
            "push" => r.with_limit(limit[0]),
            "fetch" => r.with_limit(limit[1]),
            _ => r,
        };
        if let Some(ratio) = r.ratio_to_limit {
            println!(
                "e2e {:<5} {:.3} GB/s = {:.0}% of raw quinn",
                r.metric,
                r.value,
                ratio * 100.0
            );
        }
        records.push(Record { mode: "net", ..r });
    }
    Ok((ok, records))
}
