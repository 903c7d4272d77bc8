//! `--mode net`: the transport alone. A raw quinn bulk transfer over one connection (the
//! limit Sluice's push and fetch are held to), under Sluice's default transport tuning
//! and under each alternative setting of one knob, both directions; tokio TCP, plain and
//! under TLS 1.3, for reference. Then an e2e shuffle with the default tuning, whose push
//! and fetch are reported against the raw quinn limit measured in the same run. On
//! loopback by default; over a veth link between two network namespaces with `--link`.

pub mod path;
pub mod raw;

use sluice_transport::TransportTuning;

use crate::report::{median, usage, Record};
use crate::{Args, BenchError};
use path::NetPath;
use raw::{Direction, Transfer};

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
    /// Ask the peer (QUIC ACK frequency extension) to acknowledge only every this many
    /// ack-eliciting packets; `None`: the extension is off, an ACK every 2 packets.
    pub ack_eliciting_threshold: Option<u32>,
    /// BBR congestion control instead of quinn's default (Cubic).
    pub bbr: bool,
}

impl Setting {
    pub fn default_tuning() -> Self {
        Self {
            name: "default".into(),
            server: TransportTuning::SERVER,
            client: TransportTuning::CLIENT,
            streams: 1,
            ack_eliciting_threshold: None,
            bbr: false,
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
/// BENCHMARKS.md. On a link (MTU 1500 or 9000, discovered) the payload knobs are moot.
/// On a rate-limited link: the default, ACK frequency and BBR.
pub fn settings(path: &NetPath) -> Vec<Setting> {
    let ack = |threshold: u32| {
        let mut s = Setting::default_tuning();
        s.name = format!("ACK every {} packets", threshold + 1);
        s.ack_eliciting_threshold = Some(threshold);
        s
    };
    let bbr = || {
        let mut s = Setting::default_tuning();
        s.name = "BBR".into();
        s.bbr = true;
        s
    };
    if path.rate_limited() {
        // The link is the limit: what changes how a flow meets a full queue.
        return vec![Setting::default_tuning(), ack(9), bbr()];
    }
    if path.is_link() {
        return vec![
            Setting::default_tuning(),
            Setting::with("no GSO", 1, |t| t.segmentation_offload = false),
            ack(9),
            ack(31),
            bbr(),
            Setting::with("4 streams", 4, |_| {}),
            Setting::with("OS socket buffers", 1, |t| t.udp_socket_buffer = 0),
        ];
    }
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
        ack(9),
    ]
}

/// The median of raw quinn transfers under `setting`, and their CPU seconds per GB.
pub async fn raw_quinn(
    path: &NetPath,
    setting: &Setting,
    direction: Direction,
    args: &NetArgs,
) -> Result<(Transfer, f64), BenchError> {
    let mut transfers = Vec::new();
    let before = usage();
    for _ in 0..args.runs.max(1) {
        let t = raw::quinn_transfer(path, setting, args.bytes, direction)
            .await
            .map_err(|e| format!("raw quinn transfer ({}): {e}", setting.name))?;
        transfers.push(t);
    }
    let gb = (args.bytes * args.runs.max(1) as u64) as f64 / 1e9;
    let cpu = (usage().cpu_secs - before.cpu_secs) / gb;
    transfers.sort_by(|a, b| a.gbps.total_cmp(&b.gbps));
    Ok((transfers[transfers.len() / 2], cpu))
}

/// Median GB/s of TCP transfers (plain or TLS 1.3) and their CPU seconds per GB.
async fn tcp(path: &NetPath, args: &NetArgs, tls: bool) -> Result<(f64, f64), BenchError> {
    let before = usage();
    let mut rates = Vec::new();
    for _ in 0..args.runs.max(1) {
        rates.push(raw::tcp_transfer(path, args.bytes, tls).await?);
    }
    let gb = (args.bytes * args.runs.max(1) as u64) as f64 / 1e9;
    Ok((median(&rates), (usage().cpu_secs - before.cpu_secs) / gb))
}

/// The transport sweep, TCP, then an e2e shuffle against the default raw limit.
pub async fn run(args: &Args, net: &NetArgs) -> Result<(bool, Vec<Record>), BenchError> {
    let path = &args.path;
    println!("path: {}", path.describe());
    let mut records = Vec::new();
    let mut limit = [0.0; 2];
    // The default's UDP bytes per second: the e2e run's wire rates are held to these.
    let mut udp_limit = [0.0; 2];
    println!(
        "{:<26} {:>11} {:>11} {:>9} {:>6} {:>7}",
        "raw quinn, 1 connection", "push", "fetch", "CPU s/GB", "MTU", "lost"
    );
    let settings = settings(path);
    let bar = crate::report::progress(settings.len() as u64 * 2, "net");
    for setting in settings {
        bar.set_message(format!("net: {}", setting.name));
        let mut cpu = 0.0;
        let (mut rates, mut udp_rates) = ([0.0; 2], [0.0; 2]);
        let (mut mtu, mut lost) = (0, 0);
        for (i, direction) in [Direction::Push, Direction::Fetch].into_iter().enumerate() {
            let (transfer, cpu_per_gb) = raw_quinn(path, &setting, direction, net).await?;
            rates[i] = transfer.gbps;
            udp_rates[i] = transfer.udp_gbps;
            mtu = transfer.mtu;
            lost += transfer.lost_packets;
            cpu += cpu_per_gb / 2.0;
            bar.inc(1);
        }
        bar.suspend(|| {
            println!(
                "{:<26} {:>6.3} GB/s {:>6.3} GB/s {:>9.2} {:>6} {:>7}",
                setting.name, rates[0], rates[1], cpu, mtu, lost
            )
        });
        let case = format!("raw quinn, {}", setting.name);
        let mut push = Record::new("net", case.clone(), "push", rates[0], "GB/s");
        let mut fetch = Record::new("net", case.clone(), "fetch", rates[1], "GB/s");
        if setting.name == "default" {
            limit = rates;
            udp_limit = udp_rates;
        } else {
            // The default is the reference each alternative is held to.
            push = push.with_peer(limit[0]);
            fetch = fetch.with_peer(limit[1]);
        }
        records.extend([
            push,
            fetch,
            Record::new("net", case.clone(), "cpu_per_gb", cpu, "s/GB"),
            Record::new("net", case, "path_mtu", mtu as f64, "bytes"),
        ]);
    }
    bar.finish_and_clear();
    for tls in [false, true] {
        let (gbps, cpu) = tcp(path, net, tls).await?;
        let case = if tls {
            "tokio TCP + TLS 1.3"
        } else {
            "tokio TCP (no TLS)"
        };
        println!("{case:<26} {gbps:>6.3} GB/s {:>21.2}", cpu);
        records.push(Record::new("net", case, "push", gbps, "GB/s"));
        records.push(Record::new("net", case, "cpu_per_gb", cpu, "s/GB"));
    }

    // The whole path with the default tuning, against the default raw limit.
    let dropped_before = path.dropped_packets();
    let (ok, e2e) = crate::e2e::run(args).await?;
    // Input bytes per second against raw quinn's stream bytes (the fetch carries
    // compressed blocks, so it can pass 100%), and bytes on the wire against raw
    // quinn's on the wire (what a link limits).
    for r in e2e {
        let r = match r.metric {
            "push" => r.with_limit(limit[0]),
            "fetch" => r.with_limit(limit[1]),
            "push_wire" => r.with_limit(udp_limit[0]),
            "fetch_wire" => r.with_limit(udp_limit[1]),
            _ => r,
        };
        if let Some(ratio) = r.ratio_to_limit {
            println!(
                "e2e {:<10} {:.3} GB/s = {:.0}% of raw quinn",
                r.metric,
                r.value,
                ratio * 100.0
            );
        }
        records.push(Record { mode: "net", ..r });
    }
    if path.is_link() {
        let dropped = path.dropped_packets();
        println!(
            "packets dropped by the link's loss rule: {} in all, {} during the e2e runs",
            dropped,
            dropped - dropped_before
        );
    }
    Ok((ok, records))
}
