//! `--replication 2`: the e2e shuffle on two servers, each map pushed to one of them,
//! with one copy and with two (the server forwards each map to the other before it
//! commits), alternating run by run. Reports push and fetch throughput and CPU per GB
//! of input for both, and their ratios: what the second copy costs.

use super::{Cluster, Digest, MapInput, Shuffle};
use crate::report::{median, Record};
use crate::Args;

pub async fn compare(
    args: &Args,
    maps: &[MapInput],
    expected: &[Digest],
    rows: u64,
    input_bytes: u64,
) -> Result<(bool, Vec<Record>), crate::BenchError> {
    // [one copy, two copies], alternating so drift hits both alike.
    let mut runs: [Vec<Shuffle>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..args.runs.max(1) {
        for (copies, out) in runs.iter_mut().enumerate() {
            let cluster = Cluster::start(args, 2).await?;
            out.push(
                cluster
                    .shuffle(args, copies == 1, maps, expected, rows)
                    .await?,
            );
        }
    }
    let gb = input_bytes as f64 / 1e9;
    let ok = runs.iter().flatten().all(|r| r.ok);
    let figures = |runs: &[Shuffle]| {
        let med = |f: &dyn Fn(&Shuffle) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        [
            med(&|r| gb / r.push_secs),
            med(&|r| gb / r.fetch_secs),
            med(&|r| r.push_cpu_secs / gb),
            med(&|r| r.fetch_cpu_secs / gb),
        ]
    };
    let (one, two) = (figures(&runs[0]), figures(&runs[1]));
    println!();
    println!(
        "sluice-bench e2e --replication 2: {} maps over 2 servers -> {} partitions, \
         {:.1} MB of input, median of {} alternating runs",
        args.maps,
        args.partitions,
        input_bytes as f64 / 1e6,
        runs[0].len()
    );
    println!(
        "{:<22} {:>14} {:>14} {:>8}",
        "", "1 copy", "2 copies", "2 / 1"
    );
    let names = [
        ("push", "GB/s", "push"),
        ("fetch", "GB/s", "fetch"),
        ("push CPU per GB", "s", "push_cpu_per_gb"),
        ("fetch CPU per GB", "s", "fetch_cpu_per_gb"),
    ];
    let mut records = Vec::new();
    for (i, (name, unit, metric)) in names.iter().enumerate() {
        let ratio = two[i] / one[i];
        println!(
            "{name:<22} {:>14} {:>14} {ratio:>8.2}",
            format!("{:.3} {unit}", one[i]),
            format!("{:.3} {unit}", two[i])
        );
        let unit = if *unit == "s" { "s/GB" } else { unit };
        for (copies, value) in [("1 copy", one[i]), ("2 copies", two[i])] {
            records.push(Record::new("e2e_replication", copies, metric, value, unit));
        }
        records.push(Record::new("e2e_replication", "2 / 1", metric, ratio, "x"));
    }
    let replicated = runs[1].iter().map(|r| r.replicated_maps).min().unwrap_or(0);
    println!(
        "{:<22} {:>14}",
        "maps with 2 copies",
        format!("{replicated} of {}", maps.len())
    );
    println!(
        "{:<22} {:>14}",
        "verified",
        if ok { "OK" } else { "MISMATCH" }
    );
    Ok((ok, records))
}
