//! Second copies through the bridge, as Spark uses them: with replication 2 a commit
//! names the server holding the map's second copy, and a fetch that loses its server,
//! finds a map missing, or receives what the writer did not write goes on from the
//! other copy, delivering every record exactly once.

mod common;

use common::*;

use sluice_client::{ClientError, MapAttempt};
use sluice_jni::error::BridgeError;
use sluice_jni::native::{Committed, Session};
use sluice_server::Fault;

const SHUFFLE: u32 = 7;

fn map(map_id: u64) -> MapAttempt {
    MapAttempt {
        map_id,
        map_index: map_id as u32,
        attempt: 0,
    }
}

/// Two servers of one cluster, and their directories (the first's holds the shared
/// token and certificate).
fn cluster() -> ([tempfile::TempDir; 2], Running, Running) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = start(dirs[0].path());
    let b = start_peer(dirs[1].path(), dirs[0].path());
    (dirs, a, b)
}

/// `n` records over `partitions` partitions (record i in partition i % partitions),
/// each `pad` bytes longer than `record(i)` with bytes that do not compress.
fn records(n: usize, partitions: u32, pad: usize) -> Vec<(u32, Vec<u8>)> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|i| {
            let mut r = record(i);
            r.extend((0..pad).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }));
            ((i as u32) % partitions, r)
        })
        .collect()
}

/// Pushes `records` as map `map_id` to `server`, 500 records per batch, and commits.
fn push(
    s: &std::sync::Arc<Session>,
    server: i32,
    map_id: u64,
    partitions: u32,
    records: &[(u32, Vec<u8>)],
) -> Committed {
    let mut w = s.push(server, SHUFFLE, partitions, map(map_id)).unwrap();
    for chunk in records.chunks(500) {
        write(&mut w, chunk).unwrap();
    }
    w.commit().unwrap()
}

/// Every record of the fetch, in order.
fn fetch_all(
    s: &std::sync::Arc<Session>,
    copies: (i32, Option<i32>),
    partitions: u32,
    map_ids: Vec<u64>,
) -> Result<Vec<Vec<u8>>, BridgeError> {
    let mut f = s.fetch(copies.0, copies.1, SHUFFLE, 0..partitions, map_ids)?;
    let mut got = Vec::new();
    while let Some(batch) = f.next_batch()? {
        got.extend(parse(&batch));
    }
    Ok(got)
}

/// The records of `maps` as a fetch of all partitions returns them: partition by
/// partition, each map's records in push order.
fn expected(maps: &[&[(u32, Vec<u8>)]], partitions: u32) -> Vec<Vec<u8>> {
    (0..partitions)
        .flat_map(|p| {
            maps.iter()
                .flat_map(move |m| m.iter().filter(move |r| r.0 == p).map(|r| r.1.clone()))
        })
        .collect()
}

fn integrity_error(e: &BridgeError) -> bool {
    matches!(
        e,
        BridgeError::Client {
            source: ClientError::Integrity(_),
            ..
        }
    )
}

#[test]
fn maps_with_two_copies_are_read_from_the_second_when_their_server_is_gone() {
    let (dirs, mut a, mut b) = cluster();
    let servers = vec![a.name(), b.name()];
    let s = session(dirs[0].path(), servers.clone(), 2).unwrap();
    let data = [
        records(3000, 3, 0),
        records(2000, 3, 10),
        records(1000, 3, 20),
    ];
    // Each map's second copy is on the other server.
    assert_eq!(push(&s, 0, 1, 3, &data[0]).replica, Some(1));
    assert_eq!(push(&s, 1, 2, 3, &data[1]).replica, Some(0));
    // With replication 1 there is one copy.
    let single = session(dirs[0].path(), servers, 1).unwrap();
    let committed = push(&single, 0, 3, 3, &data[2]);
    assert_eq!(committed.replica, None);
    assert_eq!(committed.partition_bytes.len(), 3);

    a.stop();
    assert_eq!(
        fetch_all(&s, (0, Some(1)), 3, vec![1]).unwrap(),
        expected(&[&data[0]], 3)
    );
    assert_eq!(
        fetch_all(&s, (1, Some(0)), 3, vec![2]).unwrap(),
        expected(&[&data[1]], 3)
    );
    // The map with one copy is gone with its server: an error naming it (Spark's
    // FetchFailedException, and a recompute of that map only).
    match fetch_all(&s, (0, None), 3, vec![3]) {
        Err(BridgeError::Client { server, .. }) => assert_eq!(server, a.name()),
        other => panic!("expected the lost server's error, got {other:?}"),
    }
    // Both copies gone: the error names the second copy's server.
    b.stop();
    match fetch_all(&s, (0, Some(1)), 3, vec![1]) {
        Err(BridgeError::Client { server, .. }) => assert_eq!(server, b.name()),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn a_fetch_cut_off_mid_map_goes_on_from_the_other_copy_without_repeating_a_block() {
    let (dirs, mut a, b) = cluster();
    let s = session(dirs[0].path(), vec![a.name(), b.name()], 2).unwrap();
    // About 8 MiB that does not compress, in one partition: 128 blocks of 64 KiB, far
    // more than a fetch reads ahead.
    let data = records(8000, 1, 1024);
    assert_eq!(push(&s, 0, 1, 1, &data).replica, Some(1));

    let mut f = s.fetch(0, Some(1), SHUFFLE, 0..1, vec![1]).unwrap();
    let mut got = parse(&f.next_batch().unwrap().unwrap());
    let before = got.len();
    a.stop();
    while let Some(batch) = f.next_batch().unwrap() {
        got.extend(parse(&batch));
    }
    assert!(
        before > 0 && before < data.len() / 4,
        "{before} records before the cut"
    );
    // Exactly the map's records, in order: none lost, none twice.
    assert_eq!(got, expected(&[&data], 1));
    drop(b);
}

#[test]
fn maps_the_first_server_lacks_are_read_from_the_second() {
    let (dirs, a, b) = cluster();
    let servers = vec![a.name(), b.name()];
    let s = session(dirs[0].path(), servers.clone(), 2).unwrap();
    let data = [records(3000, 3, 0), records(1000, 3, 5)];
    assert_eq!(push(&s, 0, 1, 3, &data[0]).replica, Some(1));
    // Map 5 has a single copy, on the second server only.
    let single = session(dirs[0].path(), servers, 1).unwrap();
    assert_eq!(push(&single, 1, 5, 3, &data[1]).replica, None);

    // The first server serves map 1 whole, then reports map 5 missing; the fetch reads
    // map 5 from the second server.
    let got = fetch_all(&s, (0, Some(1)), 3, vec![1, 5]).unwrap();
    let mut want = expected(&[&data[0]], 3);
    want.extend(expected(&[&data[1]], 3));
    assert_eq!(got, want);
    // Without the second copy, the missing map is the error.
    let err = fetch_all(&s, (0, None), 3, vec![1, 5]).unwrap_err();
    assert!(
        matches!(&err, BridgeError::Client { source: ClientError::MissingMaps(m), .. } if m == &vec![5]),
        "{err}"
    );

    // Deleting the shuffle deletes every copy: neither server holds map 1 any more.
    s.delete_shuffle(SHUFFLE).unwrap();
    for server in [0, 1] {
        let err = fetch_all(&s, (server, None), 3, vec![1]).unwrap_err();
        assert!(
            matches!(&err, BridgeError::Client { source: ClientError::MissingMaps(m), .. } if m == &vec![1]),
            "server {server}: {err}"
        );
    }
}

#[test]
fn blocks_lost_or_listed_twice_on_one_copy_are_read_from_the_other() {
    let (dirs, a, b) = cluster();
    let s = session(dirs[0].path(), vec![a.name(), b.name()], 2).unwrap();
    let data = [records(4000, 2, 100), records(4000, 2, 100)];
    for (i, d) in data.iter().enumerate() {
        assert_eq!(push(&s, 0, i as u64 + 1, 2, d).replica, Some(1));
    }
    assert!(a.handle().inject(
        APP,
        SHUFFLE,
        Fault::DropBlock {
            partition: 0,
            map_id: 1
        }
    ));
    assert!(a.handle().inject(
        APP,
        SHUFFLE,
        Fault::DuplicateBlock {
            partition: 1,
            map_id: 2
        }
    ));
    for map_id in [1, 2] {
        // From the damaged copy alone, the reader catches it...
        let err = fetch_all(&s, (0, None), 2, vec![map_id]).unwrap_err();
        assert!(integrity_error(&err), "map {map_id}: {err}");
        // ...and with the second copy the records come back exact.
        let got = fetch_all(&s, (0, Some(1)), 2, vec![map_id]).unwrap();
        assert_eq!(
            got,
            expected(&[&data[map_id as usize - 1]], 2),
            "map {map_id}"
        );
    }
    drop(b);
}

#[test]
fn replication_two_with_one_server_commits_one_copy_and_three_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let s = session(dir.path(), vec![server.name()], 2).unwrap();
    let data = records(100, 2, 0);
    assert_eq!(push(&s, 0, 1, 2, &data).replica, None);
    assert_eq!(
        fetch_all(&s, (0, None), 2, vec![1]).unwrap(),
        expected(&[&data], 2)
    );
    match session(dir.path(), vec![server.name()], 3) {
        Err(BridgeError::Config(m)) => {
            assert_eq!(m, "spark.sluice.replication must be 1 or 2, not 3")
        }
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    }
}
