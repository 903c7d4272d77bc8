//! `--mode spark`: one shuffle-heavy pyspark job under Spark's sort shuffle and under
//! Sluice, alternating (`bench/spark/spark_bench.py`, run by `scripts/spark-bench.sh`,
//! which installs pyspark into a cached venv, builds the plugin jar and starts two
//! servers). Reports the median job time of each and their ratio; the script fails if
//! any run's result differs from the first sort-shuffle run's.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use crate::report::{median, Record};
use crate::BenchError;

pub struct SparkArgs {
    pub rows: u64,
    pub runs: usize,
}

#[derive(Debug, Deserialize)]
struct Outcome {
    rows: u64,
    spark: String,
    sort: Vec<f64>,
    sluice: Vec<f64>,
}

pub fn run(args: &SparkArgs) -> Result<Vec<Record>, BenchError> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::NamedTempFile::new()?;
    let status = Command::new(repo.join("scripts/spark-bench.sh"))
        .arg("--rows")
        .arg(args.rows.to_string())
        .arg("--runs")
        .arg(args.runs.max(1).to_string())
        .arg("--json")
        .arg(out.path())
        .status()?;
    if !status.success() {
        return Err(format!("scripts/spark-bench.sh failed ({status})").into());
    }
    let outcome: Outcome = serde_json::from_slice(&std::fs::read(out.path())?)?;
    Ok(records(&outcome))
}

fn records(o: &Outcome) -> Vec<Record> {
    let (sort, sluice) = (median(&o.sort), median(&o.sluice));
    let case = format!(
        "{}M rows, groupBy + repartition(200), Spark {}",
        o.rows / 1_000_000,
        o.spark
    );
    println!();
    println!("sluice-bench spark: {case}");
    let runs = |t: &[f64]| {
        t.iter()
            .map(|s| format!("{s:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{:<22} {:>8.1} s  (runs {})",
        "sort shuffle",
        sort,
        runs(&o.sort)
    );
    println!(
        "{:<22} {:>8.1} s  (runs {})",
        "Sluice",
        sluice,
        runs(&o.sluice)
    );
    println!(
        "{:<22} {:>8.2}  (<= 1.0: Sluice is not slower)",
        "Sluice / sort",
        sluice / sort
    );
    vec![
        // A time: higher is better for us when the peer takes longer.
        Record::new("spark", case.clone(), "job_time", sluice, "s").with_time_peer(sort),
        Record::new("spark", case, "time_ratio_to_sort", sluice / sort, "x"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_the_ratio_come_from_the_script_output() {
        let o: Outcome = serde_json::from_str(
            r#"{"rows": 20000000, "spark": "3.5.9", "result": [1, "2", 3],
                "sort": [30.0, 20.0, 40.0], "sluice": [10.0, 25.0, 15.0]}"#,
        )
        .unwrap();
        let r = records(&o);
        assert_eq!(r[0].value, 15.0);
        assert_eq!(r[0].peer, Some(30.0));
        assert_eq!(r[0].ratio_to_peer, Some(2.0));
        assert_eq!(r[1].value, 0.5);
        assert_eq!(
            r[0].case,
            "20M rows, groupBy + repartition(200), Spark 3.5.9"
        );
    }
}
