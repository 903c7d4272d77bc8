//! The Prometheus endpoint: every documented metric is exposed, none is undocumented,
//! and the values follow what clients do. (One test in this binary: the recorder is
//! process-wide.)

mod common;

use std::collections::BTreeMap;

use common::*;
use sluice_client::ErrorCode;

/// `name{labels}` → value, from the text format.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn base_name(series: &str) -> &str {
    let name = series.split('{').next().unwrap();
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .filter(|n| n.ends_with("_seconds"))
        .unwrap_or(name)
}

#[tokio::test]
async fn metrics_are_documented_and_move_with_traffic() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for name in sluice_server::metrics::all() {
        let documented =
            readme.contains(&format!("`{name}`")) || readme.contains(&format!("`{name}{{"));
        assert!(documented, "{name} is not in the README's metrics table");
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.storage.disk_quota = Some(bytesize::ByteSize::gib(1));
        c.storage.block_size = bytesize::ByteSize::kib(4);
    })
    .await;
    let admin = server.admin_addr().unwrap();
    let client = connect(&server).await;
    let creds = app("metrics");
    client.register_app(&creds).await.unwrap();
    let batches = [
        keyed_batch(0, 1000),
        keyed_batch(1000, 1000),
        keyed_batch(2000, 1000),
    ];
    let ack = push(&client, &creds, 1, 1, &batches).await.unwrap();
    let keys = fetch_keys(&client, &creds, 1, vec![1]).await.unwrap();
    assert_eq!(keys, (0..3000).collect::<Vec<i64>>());
    let mut wrong = creds.clone();
    wrong.secret = bytes::Bytes::from_static(b"wrong");
    let err = fetch_keys(&client, &wrong, 1, vec![1]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized));

    let reply = admin_get(admin, "/metrics").await;
    assert_eq!(reply.status, 200);
    let m = parse(&reply.body);
    for series in m.keys() {
        let name = base_name(series);
        assert!(
            sluice_server::metrics::all().any(|n| n == name),
            "{series} is exposed but not documented"
        );
    }
    let get = |s: &str| {
        *m.get(s)
            .unwrap_or_else(|| panic!("{s} missing from\n{}", reply.body))
    };
    assert_eq!(get("sluice_push_rows_total"), 3000.0);
    assert_eq!(get("sluice_push_batches_total"), 3.0);
    assert!(get("sluice_push_bytes_total") > 3000.0 * 8.0);
    assert_eq!(get("sluice_commits_total"), 1.0);
    let stored: u64 = ack.partition_bytes.iter().sum();
    assert_eq!(get("sluice_spill_bytes_total"), stored as f64);
    assert_eq!(get("sluice_fetch_bytes_total"), stored as f64);
    assert!(get("sluice_blocks_written_total") >= PARTITIONS as f64);
    assert_eq!(
        get("sluice_fetch_blocks_total"),
        get("sluice_blocks_written_total")
    );
    assert_eq!(get("sluice_fetches_total"), 1.0);
    assert_eq!(get("sluice_errors_total{kind=\"unauthorized\"}"), 1.0);
    assert_eq!(get("sluice_commit_duration_seconds_count"), 1.0);
    assert_eq!(get("sluice_fetch_duration_seconds_count"), 1.0);
    assert_eq!(get("sluice_connections_accepted_total"), 1.0);
    assert_eq!(get("sluice_connections_active"), 1.0);
    assert_eq!(get("sluice_pushes_active"), 0.0);
    assert_eq!(get("sluice_apps"), 1.0);
    assert_eq!(get("sluice_shuffles"), 1.0);
    assert_eq!(get("sluice_draining"), 0.0);
    assert!(get("sluice_disk_used_bytes") >= stored as f64);
    assert_eq!(get("sluice_disk_quota_bytes"), (1u64 << 30) as f64);
    assert_eq!(get("sluice_memory_budget_bytes"), (1u64 << 30) as f64);
    assert_eq!(
        get("sluice_memory_used_bytes"),
        0.0,
        "nothing buffered after commit"
    );
    let info = format!(
        "sluice_info{{version=\"{}\",backend=\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        server.backend().name()
    );
    assert_eq!(get(&info), 1.0);
    assert_eq!(get("sluice_apps_expired_total"), 0.0);
    for name in sluice_server::metrics::all() {
        assert!(
            m.keys().any(|s| base_name(s) == name),
            "{name} is documented but not exposed"
        );
    }
}
