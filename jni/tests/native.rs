//! The bridge's native side against a real server over QUIC: records pushed in Java's
//! layout come back exactly in Java's layout; failures are typed.

mod common;

use common::*;

use sluice_client::{ClientError, MapAttempt};
use sluice_jni::error::BridgeError;

#[test]
fn records_pushed_by_a_map_writer_are_fetched_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let s = session(dir.path(), vec![server.name()], 1).unwrap();
    let map = MapAttempt {
        map_id: 41,
        map_index: 0,
        attempt: 0,
    };
    let mut w = s.push(0, 3, 4, map).unwrap();
    // Three writes: the second, shorter, reuses the first's buffers; the third comes
    // after they were freed.
    for (n, range) in [0..500, 500..800, 800..1000].into_iter().enumerate() {
        let (mut pids, mut ends, mut data) = (Vec::new(), Vec::new(), Vec::new());
        for i in range {
            data.extend_from_slice(&record(i));
            ends.push(data.len() as i32);
            pids.push((i % 3) as i32); // partition 3 stays empty
        }
        if n == 2 {
            w.trim();
            assert_eq!(w.kept_bytes(), 0);
        }
        w.write(&pids, &ends, &data).unwrap();
        // Kept for the next write: nothing holds the sent batch's buffers.
        assert!(w.kept_bytes() >= data.len(), "{} kept", w.kept_bytes());
    }
    let committed = w.commit().unwrap();
    assert_eq!(committed.replica, None);
    let sizes = committed.partition_bytes;
    assert_eq!(sizes.len(), 4);
    assert!(sizes[..3].iter().all(|&b| b > 0), "{sizes:?}");
    assert_eq!(sizes[3], 0);

    // Each partition holds its records in push order; the empty one holds none.
    for p in 0..4u32 {
        let mut f = s.fetch(0, None, 3, p..p + 1, vec![41]).unwrap();
        let mut got = Vec::new();
        while let Some(batch) = f.next_batch().unwrap() {
            got.extend(parse(&batch));
        }
        let want: Vec<Vec<u8>> = (0..1000)
            .filter(|i| i % 3 == p as usize)
            .map(record)
            .collect();
        assert_eq!(got, want, "partition {p}");
    }

    // A map output the server does not hold is a typed error naming it.
    let err = s
        .fetch(0, None, 3, 0..4, vec![41, 99])
        .and_then(|mut f| {
            while f.next_batch()?.is_some() {}
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(&err, BridgeError::Client { source: ClientError::MissingMaps(m), .. } if m == &vec![99]),
        "{err}"
    );
    s.delete_shuffle(3).unwrap();
    s.delete_app().unwrap();
}

#[test]
fn bad_records_and_dead_servers_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let s = session(dir.path(), vec![server.name()], 1).unwrap();
    let map = MapAttempt {
        map_id: 1,
        map_index: 0,
        attempt: 0,
    };
    let mut w = s.push(0, 1, 2, map).unwrap();
    let err = w.write(&[2], &[1], &[0]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid argument: partition id 2 outside 0..2"
    );
    // The refused records were not sent: the push goes on and commits what follows.
    w.write(&[1], &[1], &[5]).unwrap();
    assert_eq!(w.commit().unwrap().partition_bytes[0], 0);
    assert!(matches!(
        s.push(5, 1, 2, map),
        Err(BridgeError::InvalidArgument(_))
    ));

    // A server nobody listens on: a connection error naming it.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = format!("127.0.0.1:{}", socket.local_addr().unwrap().port());
    drop(socket);
    let s = session(dir.path(), vec![dead.clone()], 1).unwrap();
    match s.push(0, 1, 2, map) {
        Err(BridgeError::Client { server, source }) => {
            assert_eq!(server, dead);
            assert!(source.is_retryable(), "{source}");
        }
        other => panic!("expected a connection error, got {:?}", other.map(|_| ())),
    }
    // Moments later the server is known to be down: no second wait for a timeout.
    let again = s.push(0, 1, 2, map).map(|_| ()).unwrap_err();
    assert!(
        again.to_string().contains("unreachable moments ago"),
        "{again}"
    );
    assert!(matches!(
        session(dir.path(), vec![], 1).map(|_| ()),
        Err(BridgeError::Config(m)) if m.contains("no server")
    ));
}

#[test]
fn a_draining_server_is_skipped_by_the_next_push() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let s = session(dir.path(), vec![server.name()], 1).unwrap();
    let map = |map_id| MapAttempt {
        map_id,
        map_index: 0,
        attempt: 0,
    };
    let push = |map_id| {
        let mut w = s.push(0, 1, 2, map(map_id))?;
        w.write(&[1], &[1], &[7])?;
        w.commit()
    };
    assert_eq!(push(1).unwrap().partition_bytes.len(), 2);
    let report = server
        .runtime
        .block_on(server.handle().drain(std::time::Duration::from_secs(10)));
    assert_eq!(report.abandoned_pushes, 0);
    // The push that meets the drain fails with the retryable refusal...
    match push(2) {
        Err(BridgeError::Client { source, .. }) => {
            assert!(source.is_retryable(), "{source}");
            assert_eq!(
                source.code(),
                Some(sluice_client::ErrorCode::Draining),
                "{source}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // ...and the next ones do not wait to be refused again: Java moves on.
    for _ in 0..2 {
        let again = s.push(0, 1, 2, map(3)).map(|_| ()).unwrap_err().to_string();
        assert!(
            again.contains("draining moments ago (server error Draining"),
            "{again}"
        );
    }
    // A draining server still serves fetches, so readers are not sent away.
    let mut fetch = s.fetch(0, None, 1, 0..2, vec![1]).unwrap();
    let mut records = 0;
    while let Some(batch) = fetch.next_batch().unwrap() {
        records += parse(&batch).len();
    }
    assert_eq!(records, 1);
}
