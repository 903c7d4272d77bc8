//! Metric names, their descriptions, and the Prometheus recorder behind `/metrics`.
//!
//! Counters and histograms are recorded where things happen; gauges of state (memory,
//! disk, connections, applications) are set from the live server just before each
//! scrape, so they are exact and cost nothing in between. Labels are bounded: error
//! kinds are the protocol's error codes, and no label carries an app or shuffle id.
//! Every name here is documented in the README's metrics table (a test checks both).

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const PUSH_BYTES: &str = "sluice_push_bytes_total";
pub const PUSH_BATCHES: &str = "sluice_push_batches_total";
pub const PUSH_ROWS: &str = "sluice_push_rows_total";
pub const COMMITS: &str = "sluice_commits_total";
pub const BLOCKS_WRITTEN: &str = "sluice_blocks_written_total";
pub const SPILL_BYTES: &str = "sluice_spill_bytes_total";
pub const RECLAIMED_BYTES: &str = "sluice_reclaimed_bytes_total";
pub const FETCHES: &str = "sluice_fetches_total";
pub const FETCH_BLOCKS: &str = "sluice_fetch_blocks_total";
pub const FETCH_BYTES: &str = "sluice_fetch_bytes_total";
pub const ERRORS: &str = "sluice_errors_total";
pub const CONNECTIONS_ACCEPTED: &str = "sluice_connections_accepted_total";
pub const CONNECTIONS_REFUSED: &str = "sluice_connections_refused_total";
pub const APPS_EXPIRED: &str = "sluice_apps_expired_total";
pub const COMMIT_SECONDS: &str = "sluice_commit_duration_seconds";
pub const FETCH_SECONDS: &str = "sluice_fetch_duration_seconds";
pub const MEMORY_USED: &str = "sluice_memory_used_bytes";
pub const MEMORY_BUDGET: &str = "sluice_memory_budget_bytes";
pub const DISK_USED: &str = "sluice_disk_used_bytes";
pub const DISK_QUOTA: &str = "sluice_disk_quota_bytes";
pub const CONNECTIONS_ACTIVE: &str = "sluice_connections_active";
pub const CONNECTIONS_PENDING: &str = "sluice_connections_pending";
pub const STREAMS_ACTIVE: &str = "sluice_streams_active";
pub const PUSHES_ACTIVE: &str = "sluice_pushes_active";
pub const APPS: &str = "sluice_apps";
pub const SHUFFLES: &str = "sluice_shuffles";
pub const DRAINING: &str = "sluice_draining";
pub const INFO: &str = "sluice_info";
pub const STAGE_CPU: &str = "sluice_stage_cpu_seconds";
pub const REPLICAS: &str = "sluice_replicas_total";

/// Counters without labels (they start at 0, so rates exist from the first scrape).
const PLAIN_COUNTERS: [&str; 13] = [
    PUSH_BYTES,
    PUSH_BATCHES,
    PUSH_ROWS,
    COMMITS,
    BLOCKS_WRITTEN,
    SPILL_BYTES,
    RECLAIMED_BYTES,
    FETCHES,
    FETCH_BLOCKS,
    FETCH_BYTES,
    CONNECTIONS_ACCEPTED,
    CONNECTIONS_REFUSED,
    APPS_EXPIRED,
];

/// The other metrics: labelled counters, histograms and gauges.
const OTHERS: [&str; 17] = [
    ERRORS,
    COMMIT_SECONDS,
    FETCH_SECONDS,
    MEMORY_USED,
    MEMORY_BUDGET,
    DISK_USED,
    DISK_QUOTA,
    CONNECTIONS_ACTIVE,
    CONNECTIONS_PENDING,
    STREAMS_ACTIVE,
    PUSHES_ACTIVE,
    APPS,
    SHUFFLES,
    DRAINING,
    INFO,
    STAGE_CPU,
    REPLICAS,
];

/// Every metric name, for the documentation test.
pub fn all() -> impl Iterator<Item = &'static str> {
    PLAIN_COUNTERS.into_iter().chain(OTHERS)
}

/// Latency buckets: 100 µs to 30 s.
const SECONDS_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 30.0,
];

/// The process's Prometheus recorder, installed by the first server that starts.
/// `None` if the embedding program installed another `metrics` recorder first (its
/// recorder then receives these metrics, and `/metrics` answers 404).
pub(crate) fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// Drains histogram samples into their buckets now and then, so memory stays flat when
/// nobody scrapes.
pub(crate) async fn upkeep(handle: &'static PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

fn describe() {
    use Unit::{Bytes, Count, Seconds};
    describe_counter!(
        PUSH_BYTES,
        Bytes,
        "Arrow IPC bytes received in pushed batches."
    );
    describe_counter!(PUSH_BATCHES, Count, "Pushed batches accepted.");
    describe_counter!(PUSH_ROWS, Count, "Rows in pushed batches accepted.");
    describe_counter!(COMMITS, Count, "Map attempts committed.");
    describe_counter!(BLOCKS_WRITTEN, Count, "Blocks appended to partition files.");
    describe_counter!(
        SPILL_BYTES,
        Bytes,
        "Stored (compressed) block bytes appended to partition files."
    );
    describe_counter!(
        RECLAIMED_BYTES,
        Bytes,
        "Bytes of pushes that ended without a commit, given back to the disk."
    );
    describe_counter!(FETCHES, Count, "Fetch requests served to the end.");
    describe_counter!(FETCH_BLOCKS, Count, "Blocks sent to reducers.");
    describe_counter!(FETCH_BYTES, Bytes, "Stored block bytes sent to reducers.");
    describe_counter!(
        ERRORS,
        Count,
        "Requests and connections refused or failed, by error kind."
    );
    describe_counter!(
        CONNECTIONS_ACCEPTED,
        Count,
        "Connections that passed the handshake."
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        Count,
        "Connection attempts refused at once: limits.max_pending_connections reached."
    );
    describe_counter!(
        APPS_EXPIRED,
        Count,
        "Applications removed after app_expiry without a request."
    );
    describe_histogram!(
        COMMIT_SECONDS,
        Seconds,
        "From PushEnd to the commit acknowledgement."
    );
    describe_histogram!(
        FETCH_SECONDS,
        Seconds,
        "From a fetch request to its last block sent."
    );
    describe_gauge!(
        MEMORY_USED,
        Bytes,
        "Memory charged to the push memory budget."
    );
    describe_gauge!(
        MEMORY_BUDGET,
        Bytes,
        "The push memory budget (storage.memory_budget)."
    );
    describe_gauge!(DISK_USED, Bytes, "Bytes of partition files on disk.");
    describe_gauge!(
        DISK_QUOTA,
        Bytes,
        "The server's disk quota (absent when unlimited)."
    );
    describe_gauge!(
        CONNECTIONS_ACTIVE,
        Count,
        "Open client connections that passed the token check."
    );
    describe_gauge!(
        CONNECTIONS_PENDING,
        Count,
        "Connections that have not yet shown the token, handshakes included."
    );
    describe_gauge!(STREAMS_ACTIVE, Count, "Open request streams.");
    describe_gauge!(
        PUSHES_ACTIVE,
        Count,
        "Pushes started and not yet failed or acknowledged to their client."
    );
    describe_gauge!(APPS, Count, "Registered applications.");
    describe_gauge!(SHUFFLES, Count, "Shuffles with data on this server.");
    describe_gauge!(
        DRAINING,
        Count,
        "1 while the server drains before exiting, else 0."
    );
    describe_counter!(
        REPLICAS,
        Count,
        "Second copies of maps this server forwarded; outcome: stored, or degraded (no candidate took it: committed with one copy)."
    );
    describe_gauge!(
        STAGE_CPU,
        Seconds,
        "CPU seconds of the process's threads in each stage of the data path since start; label: stage."
    );
    describe_gauge!(
        INFO,
        Count,
        "Always 1; labels: version, backend (io_uring or syscall)."
    );
    // Counters start at 0, so rates are defined from the first scrape.
    for name in PLAIN_COUNTERS {
        metrics::counter!(name).increment(0);
    }
    for outcome in ["stored", "degraded"] {
        metrics::counter!(REPLICAS, "outcome" => outcome).increment(0);
    }
}
