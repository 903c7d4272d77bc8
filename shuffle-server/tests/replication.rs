//! Second copies: a push names replica candidates, the server forwards the map's stored
//! blocks to the first that commits them before it commits itself, and both copies
//! read back exactly, block for block. The writer's own counts travel with the map and
//! every reader checks them: faults below the protocol (a block lost from an index, a
//! block listed twice, a count damaged on disk) are caught at the reader.

mod common;

use common::*;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Int32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use sluice_client::{
    AppCredentials, Client, ClientError, FetchItem, FetchRequest, MapAttempt, MapFilter,
    PartitionSum, Partitioning, PushRequest,
};
use sluice_server::{Fault, ServerConfig, ServerHandle};

const N: u32 = 4;

fn pid_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pid", DataType::Int32, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

/// `rows` rows of values `first..`, row i in partition i % N.
fn rows(first: i64, rows: usize) -> RecordBatch {
    let pids: Int32Array = (0..rows as i32).map(|i| i % N as i32).collect();
    let values: Int64Array = (first..first + rows as i64).collect();
    RecordBatch::try_new(pid_schema(), vec![Arc::new(pids), Arc::new(values)]).unwrap()
}

/// What a writer counts of its batches: rows per partition, and the sum of the values
/// as the checksum.
fn sums_of(batches: &[RecordBatch]) -> Vec<PartitionSum> {
    let mut sums: Vec<PartitionSum> = (0..N)
        .map(|partition| PartitionSum {
            partition,
            rows: 0,
            checksum: 0,
        })
        .collect();
    for b in batches {
        let pids = b.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
        let values = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        for (p, v) in pids.values().iter().zip(values.values()) {
            let s = &mut sums[*p as usize];
            s.rows += 1;
            s.checksum = s.checksum.wrapping_add(*v as u64);
        }
    }
    sums.retain(|s| s.rows > 0);
    sums
}

/// A certificate and key every test server presents, so each trusts the others.
fn shared_identity(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    (c, k)
}

/// Two servers, `a` and `b`, with one certificate and one cluster token.
struct Pair {
    a: ServerHandle,
    b: ServerHandle,
    dirs: [tempfile::TempDir; 2],
    identity: (PathBuf, PathBuf, PathBuf),
}

impl Pair {
    fn configure(&self, c: &mut ServerConfig) {
        let (cert, key, token) = &self.identity;
        c.tls.cert = Some(cert.clone());
        c.tls.key = Some(key.clone());
        c.cluster_token_file = Some(token.clone());
    }

    /// Shuts `a` down, runs `meanwhile` on its data directory, starts it again.
    async fn restart_a(self, meanwhile: impl FnOnce(&Path)) -> Self {
        let Pair {
            a,
            b,
            dirs,
            identity,
        } = self;
        a.shutdown().await;
        meanwhile(&dirs[0].path().join("data"));
        let mut restarted = Pair {
            a: b,
            b: start(tempfile::tempdir().unwrap().path(), |_| {}).await,
            dirs,
            identity,
        };
        let a = start(restarted.dirs[0].path(), |c| restarted.configure(c)).await;
        // Back in their places: `a` the restarted server, `b` the replica.
        restarted.b = std::mem::replace(&mut restarted.a, a);
        restarted
    }
}

async fn pair(tweak: impl Fn(&mut ServerConfig)) -> Pair {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (cert, key) = shared_identity(dirs[0].path());
    let identity = |c: &mut ServerConfig| {
        c.tls.cert = Some(cert.clone());
        c.tls.key = Some(key.clone());
        tweak(c);
    };
    let b = start(dirs[1].path(), identity).await;
    // Both servers share the cluster token, as a cluster's do.
    let token = b.token_path().clone();
    let a = start(dirs[0].path(), |c| {
        identity(c);
        c.cluster_token_file = Some(token.clone());
    })
    .await;
    Pair {
        a,
        b,
        dirs,
        identity: (cert, key, token),
    }
}

fn address(s: &ServerHandle) -> String {
    s.local_addr().to_string()
}

async fn push_with(
    client: &Client,
    creds: &AppCredentials,
    map_id: u64,
    replicas: Vec<String>,
    batches: &[RecordBatch],
    sums: Vec<PartitionSum>,
) -> Result<sluice_client::CommitAck, ClientError> {
    let request = PushRequest {
        app: creds.clone(),
        shuffle_id: 1,
        map: MapAttempt {
            map_id,
            map_index: map_id as u32,
            attempt: 0,
        },
        num_partitions: N,
        partitioning: Partitioning::PartitionIdColumn { column: 0 },
        schema: pid_schema(),
        replicas,
    };
    let mut push = client.push(request).await?;
    for b in batches {
        push.send(b).await?;
    }
    push.commit_with_sums(sums).await
}

/// Every block of the map (as (partition, seq, rows, bytes)) and every sums item.
async fn read_all(
    client: &Client,
    creds: &AppCredentials,
    map_id: u64,
) -> Result<
    (
        Vec<(u32, u32, u32, bytes::Bytes)>,
        Vec<(u32, Vec<sluice_client::MapSum>)>,
    ),
    ClientError,
> {
    let request =
        FetchRequest::partitions(creds.clone(), 1, 0..N).with_maps(MapFilter::MapIds(vec![map_id]));
    let mut stream = client.fetch(request).await?;
    let (mut blocks, mut sums) = (Vec::new(), Vec::new());
    while let Some(item) = stream.next_item().await? {
        match item {
            FetchItem::Block(b) => blocks.push((b.partition, b.header.seq, b.header.rows, b.bytes)),
            FetchItem::Sums { partition, sums: s } => sums.push((partition, s)),
        }
    }
    Ok((blocks, sums))
}

fn client_of(s: &ServerHandle) -> sluice_client::ClientConfig {
    client_config(s.certificate_pem(), s.token())
}

async fn connect_to(s: &ServerHandle) -> Client {
    Client::connect(s.local_addr(), &client_of(s))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_map_is_stored_on_both_servers_block_for_block() {
    let p = pair(|c| c.storage.block_size = bytesize::ByteSize::kib(8)).await;
    let client = connect_to(&p.a).await;
    let creds = app("replicated");
    client.register_app(&creds).await.unwrap();
    let batches: Vec<_> = (0..5).map(|i| rows(i * 10_000, 10_000)).collect();
    let sums = sums_of(&batches);
    let ack = push_with(
        &client,
        &creds,
        7,
        vec![address(&p.b)],
        &batches,
        sums.clone(),
    )
    .await
    .unwrap();
    assert_eq!(ack.replica, Some(address(&p.b)));
    assert_eq!(ack.partition_rows.iter().sum::<u64>(), 50_000);

    let (on_a, sums_a) = read_all(&client, &creds, 7).await.unwrap();
    let other = connect_to(&p.b).await;
    let (on_b, sums_b) = read_all(&other, &creds, 7).await.unwrap();
    assert!(on_a.len() > N as usize, "{} blocks", on_a.len());
    assert_eq!(
        on_a, on_b,
        "the copy holds the same blocks, sequence numbers and all"
    );
    assert_eq!(sums_a, sums_b);
    let served: Vec<PartitionSum> = sums_a
        .iter()
        .map(|(partition, s)| PartitionSum {
            partition: *partition,
            rows: s[0].rows,
            checksum: s[0].checksum,
        })
        .collect();
    assert_eq!(
        served, sums,
        "the writer's counts come back with the blocks"
    );
    // Both survive a restart of the replica.
    let status = p.b.status();
    assert_eq!(status.apps[0].shuffles[0].committed_maps, 1);
}

#[tokio::test]
async fn a_failed_replica_moves_the_copy_to_the_next_candidate_or_commits_one_copy() {
    // A replica that does not answer costs a connect timeout, then is skipped.
    let p = pair(|c| c.limits.handshake_timeout = std::time::Duration::from_secs(1)).await;
    let client = connect_to(&p.a).await;
    let creds = app("moving");
    client.register_app(&creds).await.unwrap();
    // An address with nothing listening.
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().to_string()
    };
    let batches = [rows(0, 1000)];
    let ack = push_with(
        &client,
        &creds,
        1,
        vec![dead.clone(), address(&p.b)],
        &batches,
        sums_of(&batches),
    )
    .await
    .unwrap();
    assert_eq!(ack.replica, Some(address(&p.b)));
    let ack = push_with(&client, &creds, 2, vec![dead], &batches, sums_of(&batches))
        .await
        .unwrap();
    assert_eq!(ack.replica, None, "no candidate left: one copy");
    let other = connect_to(&p.b).await;
    assert_eq!(
        read_all(&other, &creds, 1).await.unwrap().0.len(),
        N as usize
    );
    let missing = read_all(&other, &creds, 2).await;
    assert!(
        matches!(missing, Err(ClientError::MissingMaps(ref m)) if m == &vec![2]),
        "{missing:?}"
    );
}

#[tokio::test]
async fn writer_counts_that_differ_from_what_arrived_refuse_the_commit() {
    let p = pair(|_| {}).await;
    let client = connect_to(&p.a).await;
    let creds = app("miscounted");
    client.register_app(&creds).await.unwrap();
    connect_to(&p.b).await.register_app(&creds).await.unwrap();
    let batches = [rows(0, 1000)];
    let mut sums = sums_of(&batches);
    sums[1].rows += 1;
    let err = push_with(&client, &creds, 3, vec![address(&p.b)], &batches, sums)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(sluice_client::ErrorCode::InvalidData),
        "{err}"
    );
    assert!(err.to_string().contains("partition 1"), "{err}");
    for s in [&p.a, &p.b] {
        let missing = read_all(&connect_to(s).await, &creds, 3).await;
        assert!(
            matches!(missing, Err(ClientError::MissingMaps(_))),
            "{missing:?}"
        );
    }
}

/// Pushes map 5 (replicated to B) and returns its writer's sums.
async fn pushed(p: &Pair, creds: &AppCredentials) -> Vec<PartitionSum> {
    let client = connect_to(&p.a).await;
    client.register_app(creds).await.unwrap();
    let batches: Vec<_> = (0..4).map(|i| rows(i * 5000, 5000)).collect();
    let sums = sums_of(&batches);
    let ack = push_with(
        &client,
        creds,
        5,
        vec![address(&p.b)],
        &batches,
        sums.clone(),
    )
    .await
    .unwrap();
    assert_eq!(ack.replica, Some(address(&p.b)));
    sums
}

fn integrity(result: Result<impl std::fmt::Debug, ClientError>) -> String {
    match result {
        Err(ClientError::Integrity(why)) => why,
        other => panic!("expected an integrity error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_block_lost_from_an_index_is_caught_at_the_reader_and_the_copy_is_whole() {
    let p = pair(|c| c.storage.block_size = bytesize::ByteSize::kib(8)).await;
    let creds = app("lost-block");
    pushed(&p, &creds).await;
    // The last block of partition 2, and the last of partition 3 too: one gap in the
    // middle of the sequence would be caught by its order, the last only by its count.
    assert!(p.a.inject(
        "lost-block",
        1,
        Fault::DropBlock {
            partition: 3,
            map_id: 5
        }
    ));
    let why = integrity(read_all(&connect_to(&p.a).await, &creds, 5).await);
    assert!(why.contains("map 5 partition 3"), "{why}");
    let (blocks, _) = read_all(&connect_to(&p.b).await, &creds, 5).await.unwrap();
    let rows: u64 = blocks.iter().map(|b| u64::from(b.2)).sum();
    assert_eq!(rows, 20_000);
}

#[tokio::test]
async fn a_block_listed_twice_is_caught_at_the_reader() {
    let p = pair(|c| c.storage.block_size = bytesize::ByteSize::kib(8)).await;
    let creds = app("twice");
    pushed(&p, &creds).await;
    assert!(p.a.inject(
        "twice",
        1,
        Fault::DuplicateBlock {
            partition: 0,
            map_id: 5
        }
    ));
    let why = integrity(read_all(&connect_to(&p.a).await, &creds, 5).await);
    assert!(why.contains("of map 5 in partition 0"), "{why}");
    assert!(read_all(&connect_to(&p.b).await, &creds, 5).await.is_ok());
}

#[tokio::test]
async fn counts_damaged_on_disk_are_caught_at_the_reader_after_a_restart() {
    let p = pair(|_| {}).await;
    let creds = app("damaged");
    pushed(&p, &creds).await;
    // Partition 1's row count in A's sums log, its checksum made right again.
    let p = p
        .restart_a(|data| {
            let shuffle = std::fs::read_dir(app_dir(data, "damaged").unwrap())
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .starts_with("shuffle-1@")
                })
                .unwrap();
            let log = shuffle.join("sums.log");
            let mut bytes = std::fs::read(&log).unwrap();
            let entry = 20 + 20; // the record's head, then partition 0's entry
            assert_eq!(
                u32::from_le_bytes(bytes[entry..entry + 4].try_into().unwrap()),
                1
            );
            let rows = u64::from_le_bytes(bytes[entry + 4..entry + 12].try_into().unwrap());
            bytes[entry + 4..entry + 12].copy_from_slice(&(rows + 3).to_le_bytes());
            let end = bytes.len() - 4;
            let crc = crc32c::crc32c(&bytes[4..end]);
            bytes[end..].copy_from_slice(&crc.to_le_bytes());
            std::fs::write(&log, &bytes).unwrap();
        })
        .await;
    let why = integrity(read_all(&connect_to(&p.a).await, &creds, 5).await);
    assert!(why.contains("map 5 partition 1"), "{why}");
    assert!(read_all(&connect_to(&p.b).await, &creds, 5).await.is_ok());
}
