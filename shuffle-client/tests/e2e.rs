//! End-to-end shuffles through a real server over QUIC on loopback: the client's API
//! round-trips every column type exactly. (Tests of the server's own behaviour, from
//! security to crashes, are in `shuffle-server/tests`.)

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use sluice_client::{
    ClientError, ErrorCode, FetchRequest, MapAttempt, MapFilter, Partitioning, PushRequest,
};
use sluice_testkit::every_type::*;
use sluice_testkit::server::*;

fn map_batches(map_index: u32, rows: usize) -> Vec<RecordBatch> {
    let seed = 1000 * map_index as u64;
    vec![
        batch(rows, seed + 1),
        batch(0, seed + 2), // empty batches are legal
        batch(rows / 2 + 3, seed + 3),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffle_round_trips_exactly_for_many_partition_counts() {
    let server = start_server().await;
    let client = server.client().await;
    let app = app("app-e2e");
    client.register_app(&app).await.unwrap();

    for (shuffle_id, n) in [1u32, 7, 200, 2000].into_iter().enumerate() {
        let shuffle_id = shuffle_id as u32;
        let maps: Vec<(MapAttempt, Vec<RecordBatch>)> = (0..3)
            .map(|i| {
                let map = MapAttempt {
                    map_id: 10 + i as u64,
                    map_index: i,
                    attempt: 0,
                };
                (map, map_batches(i, 1500))
            })
            .collect();
        let mut expected: BTreeMap<(u32, u64), RecordBatch> = BTreeMap::new();
        for (map, batches) in &maps {
            let ack = push_map(&client, &app, shuffle_id, *map, n, batches).await;
            let reference = reference_split(batches, hash_spec(), n);
            let rows: Vec<u64> = reference.iter().map(|b| b.num_rows() as u64).collect();
            assert_eq!(ack.partition_rows, rows, "commit ack rows, P={n}");
            for (p, part) in reference.into_iter().enumerate() {
                assert_eq!(ack.partition_bytes[p] == 0, part.num_rows() == 0);
                if part.num_rows() > 0 {
                    expected.insert((p as u32, map.map_id), part);
                }
            }
        }
        if n == 2000 {
            let empty = (0..n)
                .filter(|p| !expected.keys().any(|k| k.0 == *p))
                .count();
            assert!(empty > 0, "P={n} should have empty partitions");
        }

        // Everything at once.
        let all = fetch_grouped(
            &client,
            FetchRequest::partitions(app.clone(), shuffle_id, 0..n),
        )
        .await
        .unwrap();
        assert_eq!(all.len(), expected.len(), "P={n}");
        for (key, batch) in &expected {
            assert_eq!(
                all.get(key),
                Some(batch),
                "P={n}, (partition, map) = {key:?}"
            );
        }

        // A sub-range returns exactly its partitions.
        let (lo, hi) = (n / 3, (2 * n / 3).max(1));
        let sub = fetch_grouped(
            &client,
            FetchRequest::partitions(app.clone(), shuffle_id, lo..hi),
        )
        .await
        .unwrap();
        let want: BTreeMap<_, _> = expected
            .iter()
            .filter(|(k, _)| (lo..hi).contains(&k.0))
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        assert_eq!(sub, want, "P={n}, range {lo}..{hi}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_by_map_id_returns_exactly_that_attempt() {
    let server = start_server().await;
    let client = server.client().await;
    let app = app("app-attempts");
    client.register_app(&app).await.unwrap();
    let n = 16;
    let first = MapAttempt {
        map_id: 100,
        map_index: 0,
        attempt: 0,
    };
    let second = MapAttempt {
        map_id: 101,
        map_index: 0,
        attempt: 1,
    };
    let first_rows = vec![batch(700, 1)];
    let second_rows = vec![batch(500, 2)];
    push_map(&client, &app, 0, first, n, &first_rows).await;
    push_map(&client, &app, 0, second, n, &second_rows).await;

    for (map, rows) in [(first, &first_rows), (second, &second_rows)] {
        let got = fetch_map(&client, &app, 0, n, map.map_id).await.unwrap();
        let reference = reference_split(rows, hash_spec(), n);
        assert_map_matches(&got, map.map_id, &reference);
        assert!(
            got.keys().all(|k| k.1 == map.map_id),
            "another attempt leaked in"
        );
    }

    // Without naming attempts, the first committed attempt of each map index is served.
    let all = fetch_grouped(&client, FetchRequest::partitions(app.clone(), 0, 0..n))
        .await
        .unwrap();
    assert!(all.keys().all(|k| k.1 == first.map_id));
    let rows: usize = all.values().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 700);

    // Re-pushing a committed map id is refused; the committed data is unchanged.
    let mut again = client
        .push(PushRequest {
            app: app.clone(),
            shuffle_id: 0,
            map: first,
            num_partitions: n,
            partitioning: Partitioning::Hash {
                columns: KEYS.to_vec(),
            },
            schema: schema(),
            replicas: Vec::new(),
        })
        .await
        .unwrap();
    let err = match again.send(&batch(10, 3)).await {
        Err(e) => e,
        Ok(()) => again.commit().await.unwrap_err(),
    };
    assert_eq!(err.code(), Some(ErrorCode::AlreadyCommitted), "{err}");

    // Asking for a map id the server does not hold is an error naming it.
    let err = fetch_grouped(
        &client,
        FetchRequest::partitions(app.clone(), 0, 0..n).with_maps(MapFilter::MapIds(vec![100, 999])),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClientError::MissingMaps(ref m) if m == &vec![999]),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_index_range_fetch_returns_exactly_those_maps() {
    let server = start_server().await;
    let client = server.client().await;
    let app = app("app-ranges");
    client.register_app(&app).await.unwrap();
    let n = 5;
    let mut per_map = Vec::new();
    for i in 0..4u32 {
        let map = MapAttempt {
            map_id: 1000 + i as u64,
            map_index: i,
            attempt: 0,
        };
        let rows = vec![batch(300 + i as usize, 50 + i as u64)];
        push_map(&client, &app, 3, map, n, &rows).await;
        per_map.push((map, rows));
    }
    let got = fetch_grouped(
        &client,
        FetchRequest::partitions(app.clone(), 3, 0..n)
            .with_maps(MapFilter::MapIndexRange { start: 1, end: 3 }),
    )
    .await
    .unwrap();
    let mut expected = BTreeMap::new();
    for (map, rows) in &per_map[1..3] {
        for (p, part) in reference_split(rows, hash_spec(), n)
            .into_iter()
            .enumerate()
        {
            if part.num_rows() > 0 {
                expected.insert((p as u32, map.map_id), part);
            }
        }
    }
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_id_column_out_of_range_rejects_the_batch() {
    use arrow_array::{Int32Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    let server = start_server().await;
    let client = server.client().await;
    let app = app("app-pid");
    client.register_app(&app).await.unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("pid", DataType::Int32, false),
        Field::new("v", DataType::Utf8, true),
    ]));
    let good = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from(vec![2, 0, 2, 1])),
            Arc::new(StringArray::from(vec![
                Some("a"),
                None,
                Some("c"),
                Some("d"),
            ])),
        ],
    )
    .unwrap();
    let request = |map_id| PushRequest {
        app: app.clone(),
        shuffle_id: 9,
        map: MapAttempt {
            map_id,
            map_index: map_id as u32,
            attempt: 0,
        },
        num_partitions: 3,
        partitioning: Partitioning::PartitionIdColumn { column: 0 },
        schema: schema.clone(),
        replicas: Vec::new(),
    };
    let mut push = client.push(request(1)).await.unwrap();
    push.send(&good).await.unwrap();
    let ack = push.commit().await.unwrap();
    assert_eq!(ack.partition_rows, vec![1, 1, 2]);

    let bad = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from(vec![0, 3])),
            Arc::new(StringArray::from(vec![Some("x"), Some("y")])),
        ],
    )
    .unwrap();
    let mut push = client.push(request(2)).await.unwrap();
    let err = match push.send(&bad).await {
        Err(e) => e,
        Ok(()) => push.commit().await.unwrap_err(),
    };
    assert_eq!(err.code(), Some(ErrorCode::InvalidData), "{err}");
    assert!(err.to_string().contains("partition id 3"), "{err}");

    // Nothing of the rejected attempt is served; the committed one is intact.
    let mut fetch = client
        .fetch(FetchRequest::partitions(app.clone(), 9, 0..3))
        .await
        .unwrap();
    let mut rows = 0;
    while let Some((_, b)) = fetch.next_batch().await.unwrap() {
        rows += b.num_rows();
    }
    assert_eq!(rows, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_partitioning_splits_by_the_bounds_and_rejects_unsorted_bounds() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::Int64Array;
    use sluice_client::{range_partitioning, RangeOrder};
    use sluice_splitter::{PartitionSpec, RangeKey};

    let server = start_server().await;
    let client = server.client().await;
    let app = app("app-range");
    client.register_app(&app).await.unwrap();
    let batches: Vec<RecordBatch> = (0..3).map(|i| batch(700, 40 + i)).collect();
    let mut keys: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let n = 5u32;
    let bound_keys: Vec<i64> = (1..n as usize)
        .map(|q| keys[q * keys.len() / n as usize])
        .collect();
    let bounds_of = |values: Vec<i64>| {
        let schema =
            std::sync::Arc::new(arrow_schema::Schema::new(vec![schema().field(0).clone()]));
        RecordBatch::try_new(schema, vec![std::sync::Arc::new(Int64Array::from(values))]).unwrap()
    };
    let order = vec![RangeOrder {
        column: 0,
        descending: false,
        nulls_first: true,
    }];
    let request = |shuffle_id, bounds: &RecordBatch| PushRequest {
        app: app.clone(),
        shuffle_id,
        map: MapAttempt {
            map_id: 1,
            map_index: 0,
            attempt: 0,
        },
        num_partitions: n,
        partitioning: range_partitioning(order.clone(), bounds).unwrap(),
        schema: schema(),
        replicas: Vec::new(),
    };
    let bounds = bounds_of(bound_keys.clone());
    try_push(&client, request(3, &bounds), &batches)
        .await
        .unwrap();

    let fetched = fetch_grouped(&client, FetchRequest::partitions(app.clone(), 3, 0..n))
        .await
        .unwrap();
    let spec = PartitionSpec::Range {
        keys: vec![RangeKey::ascending(0)],
        bounds: bounds.clone(),
        reversed: false,
    };
    let reference = reference_split(&batches, spec, n);
    for (p, expected) in reference.iter().enumerate() {
        let got = &fetched[&(p as u32, 1)];
        assert_eq!(got, expected, "partition {p}");
        // Independently of the splitter: every key lies in (bound[p - 1], bound[p]].
        for &k in got.column(0).as_primitive::<Int64Type>().values() {
            assert!(
                p == 0 || k > bound_keys[p - 1],
                "partition {p} holds key {k}"
            );
            assert!(
                p == n as usize - 1 || k <= bound_keys[p],
                "partition {p} holds key {k}"
            );
        }
    }

    // An RDD partitioner with ascending = false: the same bounds, partitions mirrored.
    let reversed = PushRequest {
        partitioning: sluice_client::reversed_range_partitioning(order[0], &bounds).unwrap(),
        ..request(5, &bounds)
    };
    try_push(&client, reversed, &batches).await.unwrap();
    let mirrored = fetch_grouped(&client, FetchRequest::partitions(app.clone(), 5, 0..n))
        .await
        .unwrap();
    for (p, expected) in reference.iter().enumerate() {
        let got = &mirrored[&(n - 1 - p as u32, 1)];
        assert_eq!(got, expected, "partition {p}, reversed");
    }

    let mut unsorted = bound_keys.clone();
    unsorted.swap(1, 2);
    let err = try_push(&client, request(4, &bounds_of(unsorted)), &batches)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidData), "{err}");
    assert!(
        err.to_string()
            .contains("invalid range bounds: bound 2 does not sort after bound 1"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tight_push_buffer_limit_flushes_early_and_loses_nothing() {
    let server = start_server_with(|c| {
        // Each partition gets under 64 KiB in all, so without the push limit it would be
        // one block; the limit (crossed every other batch) cuts it into several.
        c.storage.block_size = bytesize::ByteSize::kib(64);
        c.storage.push_buffer_limit = bytesize::ByteSize::kib(64);
    })
    .await;
    let client = server.client().await;
    let app = app("app-limit");
    client.register_app(&app).await.unwrap();
    let n = 7;
    let map = MapAttempt {
        map_id: 5,
        map_index: 0,
        attempt: 0,
    };
    let batches: Vec<RecordBatch> = (0..6).map(|i| batch(400, 90 + i)).collect();
    push_map(&client, &app, 0, map, n, &batches).await;

    let mut stream = client
        .fetch(FetchRequest::partitions(app.clone(), 0, 0..n))
        .await
        .unwrap();
    let mut per_partition: BTreeMap<u32, (Vec<u32>, Vec<RecordBatch>)> = BTreeMap::new();
    while let Some(block) = stream.next_block().await.unwrap() {
        let entry = per_partition.entry(block.partition).or_default();
        entry.0.push(block.header.seq);
        entry.1.push(stream.decode(&block).unwrap());
    }
    let reference = reference_split(&batches, hash_spec(), n);
    for (p, expected) in reference.iter().enumerate() {
        let (seqs, parts) = &per_partition[&(p as u32)];
        assert!(seqs.len() >= 2, "partition {p}: {} blocks", seqs.len());
        assert_eq!(
            *seqs,
            (0..seqs.len() as u32).collect::<Vec<_>>(),
            "partition {p}"
        );
        assert_eq!(&concat(parts), expected, "partition {p}");
    }
}

#[test]
fn blocking_client_round_trips_and_trusts_a_ca_file() {
    use sluice_client::{BlockingClient, Trust};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(start_server());
    let mut config = server.client_config();
    let cert_path = server.handle.certificate_path().unwrap().clone();
    config.trust = Trust::CaFile(cert_path);
    let client = BlockingClient::connect(server.handle.local_addr(), &config).unwrap();
    let app = app("app-blocking");
    client.register_app(&app).unwrap();
    let rows = vec![batch(1000, 4), batch(10, 5)];
    let mut push = client
        .push(PushRequest {
            app: app.clone(),
            shuffle_id: 2,
            map: MapAttempt {
                map_id: 1,
                map_index: 0,
                attempt: 0,
            },
            num_partitions: 3,
            partitioning: Partitioning::Hash {
                columns: KEYS.to_vec(),
            },
            schema: schema(),
            replicas: Vec::new(),
        })
        .unwrap();
    for b in &rows {
        push.send(b).unwrap();
    }
    let ack = push.commit().unwrap();
    assert_eq!(ack.partition_rows.iter().sum::<u64>(), 1010);
    let fetch = client
        .fetch(FetchRequest::partitions(app.clone(), 2, 0..3))
        .unwrap();
    let mut got: BTreeMap<u32, Vec<RecordBatch>> = BTreeMap::new();
    for item in fetch {
        let (p, b) = item.unwrap();
        got.entry(p).or_default().push(b);
    }
    for (p, expected) in reference_split(&rows, hash_spec(), 3).iter().enumerate() {
        assert_eq!(&concat(&got[&(p as u32)]), expected);
    }
    client.delete_shuffle(&app, 2).unwrap();
    let mut fetch = client
        .fetch(FetchRequest::partitions(app.clone(), 2, 0..3))
        .unwrap();
    assert!(
        fetch.next_batch().unwrap().is_none(),
        "deleted shuffle serves nothing"
    );
    drop(client);
    runtime.block_on(server.handle.shutdown());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ends_with_different_transport_tunings_round_trip_exactly() {
    // The server without segmentation offload and with jumbo datagrams; the client at
    // Ethernet size with quinn's small windows: each end must respect the other's
    // limits, and a multi-megabyte push and fetch still match exactly.
    let server = start_server_with(|c| {
        c.transport.segmentation_offload = false;
        c.transport.max_udp_payload = 8972;
        c.transport.udp_socket_buffer = bytesize::ByteSize::b(0);
    })
    .await;
    let mut config = server.client_config();
    config.transport.max_udp_payload = 1472;
    config.transport.stream_receive_window = 1 << 20;
    config.transport.receive_window = 2 << 20;
    let client = sluice_client::Client::connect(server.handle.local_addr(), &config)
        .await
        .unwrap();
    let app = app("app-tuning");
    client.register_app(&app).await.unwrap();
    let n = 8;
    let map = MapAttempt {
        map_id: 7,
        map_index: 0,
        attempt: 0,
    };
    let rows = vec![batch(20_000, 11), batch(20_000, 12)];
    push_map(&client, &app, 0, map, n, &rows).await;
    let got = fetch_grouped(&client, FetchRequest::partitions(app.clone(), 0, 0..n))
        .await
        .unwrap();
    assert_map_matches(&got, map.map_id, &reference_split(&rows, hash_spec(), n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_client_tuning_is_refused_before_connecting() {
    let server = start_server().await;
    let mut config = server.client_config();
    config.transport.max_udp_payload = 9000; // with segmentation offload on
    let err = sluice_client::Client::connect(server.handle.local_addr(), &config)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Connect { message, .. }
            if message == "max_udp_payload: 9000 is over 6500 with segmentation_offload (turn one down)"),
        "{err:?}"
    );
}
