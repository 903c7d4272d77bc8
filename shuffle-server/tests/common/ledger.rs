//! The SIGKILL campaigns' ledger: pushers that record what happened to each map (being
//! pushed, ended without an ack, acknowledged and where its copies are), each map's
//! rows, and the checks that a map read back is exactly what was pushed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sluice_client::{
    AppCredentials, Client, ClientError, FetchRequest, MapAttempt, MapFilter, PushRequest,
};
use sluice_testkit::every_type::{batch, hash_spec, reference_split, schema, KEYS};
use sluice_testkit::server::{assert_map_matches, fetch_grouped};

pub const PARTITIONS: u32 = 16;

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Rows being sent; the push never ended.
    Pushing,
    /// PushEnd sent, no ack seen.
    EndSent,
    /// Acknowledged; the second copy's server, if the ack names one.
    Acked { replica: Option<String> },
}

pub type Ledger = Arc<Mutex<BTreeMap<u64, State>>>;

/// A copy of every map's state, taken under the lock (the pushers keep going).
pub fn snapshot(ledger: &Ledger) -> Vec<(u64, State)> {
    let ledger = ledger.lock().unwrap();
    ledger.iter().map(|(&m, s)| (m, s.clone())).collect()
}

pub fn rows_of(map_id: u64) -> Vec<arrow_array::RecordBatch> {
    let rows = 50 + (map_id as usize * 131) % 250;
    vec![batch(rows, map_id), batch(rows / 3, map_id + 7_000_000)]
}

/// Pushes maps `first, first + 1, ...` (naming `replicas`) until aborted or refused,
/// recording each one's state.
pub async fn pusher(
    client: Arc<Client>,
    app: AppCredentials,
    first: u64,
    replicas: Vec<String>,
    ledger: Ledger,
) {
    for m in first.. {
        ledger.lock().unwrap().insert(m, State::Pushing);
        let request = PushRequest {
            app: app.clone(),
            shuffle_id: 0,
            map: MapAttempt {
                map_id: m,
                map_index: m as u32,
                attempt: 0,
            },
            num_partitions: PARTITIONS,
            partitioning: sluice_client::Partitioning::Hash {
                columns: KEYS.to_vec(),
            },
            schema: schema(),
            replicas: replicas.clone(),
        };
        let Ok(mut push) = client.push(request).await else {
            return;
        };
        for b in rows_of(m) {
            if push.send(&b).await.is_err() {
                return;
            }
        }
        ledger.lock().unwrap().insert(m, State::EndSent);
        let Ok(ack) = push.commit().await else {
            return;
        };
        let replica = ack.replica;
        ledger.lock().unwrap().insert(m, State::Acked { replica });
    }
}

/// Reads map `m` back: `None` if the server reports it missing.
pub async fn read_map(
    client: &Client,
    app: &AppCredentials,
    m: u64,
) -> Option<BTreeMap<(u32, u64), arrow_array::RecordBatch>> {
    let request = FetchRequest::partitions(app.clone(), 0, 0..PARTITIONS)
        .with_maps(MapFilter::MapIds(vec![m]));
    match fetch_grouped(client, request).await {
        Ok(got) => Some(got),
        Err(ClientError::MissingMaps(missing)) if missing == vec![m] => None,
        Err(e) => panic!("reading map {m}: {e}"),
    }
}

/// Reads `maps` back in one fetch; panics if any is missing or differs.
pub async fn assert_all_exact(
    client: &Client,
    app: &AppCredentials,
    maps: &[u64],
    expected: &mut Expected,
    what: &str,
) {
    let request = FetchRequest::partitions(app.clone(), 0, 0..PARTITIONS)
        .with_maps(MapFilter::MapIds(maps.to_vec()));
    let got = fetch_grouped(client, request)
        .await
        .unwrap_or_else(|e| panic!("{what}: acknowledged maps lost: {e}"));
    for &m in maps {
        expected.assert_exact(m, &got);
    }
}

/// The reference split of each map, computed once.
#[derive(Default)]
pub struct Expected(BTreeMap<u64, Vec<arrow_array::RecordBatch>>);

impl Expected {
    pub fn assert_exact(&mut self, m: u64, got: &BTreeMap<(u32, u64), arrow_array::RecordBatch>) {
        let reference = self
            .0
            .entry(m)
            .or_insert_with(|| reference_split(&rows_of(m), hash_spec(), PARTITIONS));
        assert_map_matches(got, m, reference);
    }
}
