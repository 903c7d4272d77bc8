//! `--mode spark`: Spark workloads under Spark's sort shuffle and under Sluice,
//! alternating (`bench/spark/spark_bench.py`, run by `scripts/spark-bench.sh`, which
//! installs pyspark into a cached venv, builds the plugin jar, starts two servers and,
//! for TPC-H, generates the data). For each workload it reports the median wall time,
//! the median CPU of the executor JVMs plus the servers (from /proc), Spark's own task
//! metrics (shuffle write time, fetch wait, bytes, spills) and the ratios; the script
//! fails if any run's result differs from the first sort-shuffle run's.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use crate::report::{median, Record};
use crate::BenchError;

pub struct SparkArgs {
    pub workloads: Vec<String>,
    pub rows: u64,
    pub wide_rows: u64,
    pub runs: usize,
}

#[derive(Debug, Deserialize)]
struct Outcome {
    spark: String,
    workloads: Vec<Workload>,
}

#[derive(Debug, Deserialize)]
struct Workload {
    case: String,
    runs: Runs,
}

#[derive(Debug, Deserialize)]
struct Runs {
    sort: Vec<Run>,
    sluice: Vec<Run>,
}

#[derive(Debug, Deserialize)]
struct Run {
    secs: f64,
    cpu: Cpu,
    metrics: Metrics,
    /// TPC-H: seconds per query.
    #[serde(default)]
    queries: BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize)]
struct Cpu {
    executors: f64,
    servers: f64,
}

/// Spark's task metrics, summed over the timed part of a run.
#[derive(Debug, Deserialize)]
struct Metrics {
    executor_cpu_s: f64,
    gc_s: f64,
    shuffle_bytes_written: f64,
    shuffle_write_s: f64,
    shuffle_bytes_read: f64,
    fetch_wait_s: f64,
    disk_bytes_spilled: f64,
}

pub fn run(args: &SparkArgs) -> Result<Vec<Record>, BenchError> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::NamedTempFile::new()?;
    let status = Command::new(repo.join("scripts/spark-bench.sh"))
        .arg("--workloads")
        .arg(args.workloads.join(","))
        .arg("--rows")
        .arg(args.rows.to_string())
        .arg("--wide-rows")
        .arg(args.wide_rows.to_string())
        .arg("--runs")
        .arg(args.runs.max(1).to_string())
        .arg("--json")
        .arg(out.path())
        .status()?;
    if !status.success() {
        return Err(format!("scripts/spark-bench.sh failed ({status})").into());
    }
    let outcome: Outcome = serde_json::from_slice(&std::fs::read(out.path())?)?;
    Ok(outcome
        .workloads
        .iter()
        .flat_map(|w| records(&outcome.spark, w))
        .collect())
}

/// The median over runs of one figure.
fn med(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    median(&runs.iter().map(f).collect::<Vec<_>>())
}

fn total_cpu(r: &Run) -> f64 {
    r.cpu.executors + r.cpu.servers
}

fn records(spark: &str, w: &Workload) -> Vec<Record> {
    let case = format!("{}, Spark {spark}", w.case);
    let (sort, sluice) = (&w.runs.sort, &w.runs.sluice);
    println!();
    println!("sluice-bench spark: {case}");
    print_table(sort, sluice);
    let (time_sort, time_sluice) = (med(sort, |r| r.secs), med(sluice, |r| r.secs));
    let (cpu_sort, cpu_sluice) = (med(sort, total_cpu), med(sluice, total_cpu));
    println!(
        "Sluice / sort: wall {:.2} (< 1.0: faster), CPU {:.2} (<= 1.0: no higher)",
        time_sluice / time_sort,
        cpu_sluice / cpu_sort
    );
    print_queries(sort, sluice);
    let metric = |name, f: fn(&Run) -> f64, unit| {
        Record::new("spark", case.clone(), name, med(sluice, f), unit).with_time_peer(med(sort, f))
    };
    vec![
        // Times: higher is better for us when the peer takes longer.
        metric("job_time", |r| r.secs, "s"),
        Record::new(
            "spark",
            case.clone(),
            "time_ratio_to_sort",
            time_sluice / time_sort,
            "x",
        ),
        metric("cpu_executors_and_servers", total_cpu, "s"),
        metric("shuffle_write_time", |r| r.metrics.shuffle_write_s, "s"),
        metric("fetch_wait_time", |r| r.metrics.fetch_wait_s, "s"),
        // Sluice may spill nothing: the peer without a ratio.
        Record {
            peer: Some(med(sort, |r| r.metrics.disk_bytes_spilled)),
            ..Record::new(
                "spark",
                case.clone(),
                "disk_bytes_spilled",
                med(sluice, |r| r.metrics.disk_bytes_spilled),
                "B",
            )
        },
    ]
}

fn print_table(sort: &[Run], sluice: &[Run]) {
    println!(
        "{:<14} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8}",
        "",
        "wall s",
        "CPU s",
        "exec s",
        "server s",
        "task CPU",
        "GC s",
        "written",
        "write s",
        "wait s",
        "spilled"
    );
    for (name, runs) in [("sort shuffle", sort), ("Sluice", sluice)] {
        println!(
            "{:<14} {:>8.1} {:>9.1} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>7.2}GB {:>8.1} {:>8.1} {:>6.2}GB",
            name,
            med(runs, |r| r.secs),
            med(runs, total_cpu),
            med(runs, |r| r.cpu.executors),
            med(runs, |r| r.cpu.servers),
            med(runs, |r| r.metrics.executor_cpu_s),
            med(runs, |r| r.metrics.gc_s),
            med(runs, |r| r.metrics.shuffle_bytes_written) / 1e9,
            med(runs, |r| r.metrics.shuffle_write_s),
            med(runs, |r| r.metrics.fetch_wait_s),
            med(runs, |r| r.metrics.disk_bytes_spilled) / 1e9,
        );
        let walls: Vec<String> = runs.iter().map(|r| format!("{:.1}", r.secs)).collect();
        println!("{:<14} wall of each run: {}", "", walls.join(", "));
    }
    let read = med(sluice, |r| r.metrics.shuffle_bytes_read) / 1e9;
    println!("(medians; CPU = executors + servers from /proc; Sluice read {read:.2} GB)");
}

/// TPC-H: the median time of each query under both, and their ratio.
fn print_queries(sort: &[Run], sluice: &[Run]) {
    let Some(first) = sort.first() else { return };
    if first.queries.is_empty() {
        return;
    }
    let mut keys: Vec<&String> = first.queries.keys().collect();
    keys.sort_by_key(|k| k.parse::<u32>().unwrap_or(u32::MAX));
    let q = |runs: &[Run], k: &str| med(runs, |r| r.queries.get(k).copied().unwrap_or(f64::NAN));
    let line: Vec<String> = keys
        .iter()
        .map(|k| {
            let (a, b) = (q(sort, k), q(sluice, k));
            format!("q{k} {a:.1}/{b:.1} ({:.2})", b / a)
        })
        .collect();
    println!(
        "per query, sort/Sluice s (Sluice/sort): {}",
        line.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(secs: f64, executors: f64, servers: f64) -> String {
        format!(
            r#"{{"secs": {secs}, "cpu": {{"executors": {executors}, "servers": {servers},
                "driver": 1.0}},
               "metrics": {{"executor_cpu_s": 1, "gc_s": 0.5, "shuffle_bytes_written": 2e9,
                "shuffle_write_s": 3, "shuffle_bytes_read": 2e9, "fetch_wait_s": 4,
                "disk_bytes_spilled": 0, "tasks": 10}}}}"#
        )
    }

    #[test]
    fn medians_and_ratios_come_from_the_script_output() {
        let text = format!(
            r#"{{"spark": "3.5.9", "workloads": [{{"name": "groupby",
                "case": "20M rows, groupBy + repartition(200)", "result": [1, "2"],
                "runs": {{"sort": [{}, {}, {}], "sluice": [{}, {}, {}]}}}}]}}"#,
            run(30.0, 50.0, 0.1),
            run(20.0, 40.0, 0.1),
            run(40.0, 60.0, 0.1),
            run(10.0, 20.0, 5.0),
            run(25.0, 30.0, 5.0),
            run(15.0, 25.0, 5.0),
        );
        let o: Outcome = serde_json::from_str(&text).unwrap();
        let r = records(&o.spark, &o.workloads[0]);
        assert_eq!(
            r[0].case,
            "20M rows, groupBy + repartition(200), Spark 3.5.9"
        );
        assert_eq!(
            (r[0].metric, r[0].value, r[0].peer),
            ("job_time", 15.0, Some(30.0))
        );
        assert_eq!(r[0].ratio_to_peer, Some(2.0));
        assert_eq!((r[1].metric, r[1].value), ("time_ratio_to_sort", 0.5));
        // CPU: executors + servers, medians 30.0 (25 + 5) against 50.1.
        assert_eq!(r[2].metric, "cpu_executors_and_servers");
        assert_eq!((r[2].value, r[2].peer), (30.0, Some(50.1)));
    }
}
