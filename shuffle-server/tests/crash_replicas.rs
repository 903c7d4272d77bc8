//! The SIGKILL campaign with two servers and replication: each round, pushers write to
//! both servers (each naming the other as its replica), and one of the two, chosen at
//! random, is SIGKILLed at a random moment. Every acknowledged map whose ack names a
//! second copy must then read back exactly from the survivor (no recompute needed);
//! after the victim restarts, every acknowledged map reads back exactly from every
//! server its ack says holds it. A push that never ended is served by neither; one whose
//! ack was lost is complete or missing on each.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::child::{self, spawn_child, spawn_child_peer, ChildServer};
use common::ledger::*;
use common::{app, Rng};
use sluice_client::{AppCredentials, Client};

/// Kill points in the default run; `SLUICE_CRASH_ROUNDS` asks for more.
const DEFAULT_ROUNDS: usize = 20;

/// The child server process that the tests below spawn (this binary, re-run).
#[test]
#[ignore = "the child process of the tests in this file"]
fn child_server() {
    child::run_child_server();
}

/// Server `i` of the pair on `dirs[i]`; the second is the first's peer.
fn spawn_server(dirs: &[&Path; 2], i: usize, direct_io: bool) -> ChildServer {
    match i {
        0 => spawn_child(dirs[0], direct_io),
        _ => spawn_child_peer(dirs[1], dirs[0], direct_io),
    }
}

async fn connect(server: &ChildServer, app: &AppCredentials) -> Arc<Client> {
    let client = Client::connect(server.addr, &server.config).await.unwrap();
    client.register_app(app).await.unwrap();
    Arc::new(client)
}

/// The server map `m`'s pusher wrote to: pusher i (the thousands of `m`) writes to
/// server i % 2.
fn primary_of(m: u64) -> usize {
    ((m % 1_000_000) / 1000 % 2) as usize
}

/// The servers an acknowledged map is on: its primary, and the other one if the ack
/// names a replica.
fn copies_of(m: u64, replica: &Option<String>) -> Vec<usize> {
    let primary = primary_of(m);
    match replica {
        Some(_) => vec![primary, 1 - primary],
        None => vec![primary],
    }
}

#[derive(Default, Debug)]
struct Tally {
    /// Acknowledged maps with two copies, and with one (no replica took the copy).
    two_copies: usize,
    one_copy: usize,
    /// Acknowledged maps read from the survivor right after a kill.
    read_from_survivor: usize,
    /// Ended pushes whose ack was lost: found complete on a server / on none.
    late_commits: usize,
    not_committed: usize,
}

/// Checks the ledger against one server (`on`): every acknowledged map it holds a copy
/// of reads back exactly, no map whose push never ended is served, an ended push is
/// complete (added to `found`) or missing. Returns how many acknowledged maps it read.
async fn check_server(
    client: &Client,
    on: usize,
    app: &AppCredentials,
    ledger: &Ledger,
    expected: &mut Expected,
    found: &mut BTreeSet<u64>,
    what: &str,
) -> usize {
    let snapshot = snapshot(ledger);
    let held: Vec<u64> = snapshot
        .iter()
        .filter_map(|(m, s)| match s {
            State::Acked { replica } if copies_of(*m, replica).contains(&on) => Some(*m),
            _ => None,
        })
        .collect();
    assert_all_exact(client, app, &held, expected, what).await;
    for (m, state) in snapshot {
        match (state, read_map(client, app, m).await) {
            (State::Pushing, Some(_)) => panic!("{what}: map {m} served without its end"),
            (State::EndSent, Some(got)) => {
                expected.assert_exact(m, &got);
                found.insert(m);
            }
            _ => {}
        }
    }
    held.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_commits_survive_sigkill_of_either_server() {
    let rounds = std::env::var("SLUICE_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let paths = [dirs[0].path(), dirs[1].path()];
    let app = app("app-crash-replicas");
    let mut servers = [
        spawn_server(&paths, 0, false),
        spawn_server(&paths, 1, false),
    ];
    let ledger = Ledger::default();
    let mut rng = Rng::new(0x2e91);
    let mut expected = Expected::default();
    let mut tally = Tally::default();
    for round in 0..rounds as u64 {
        let clients = [
            connect(&servers[0], &app).await,
            connect(&servers[1], &app).await,
        ];
        // Four pushers with disjoint map ids, two per server, each naming the other
        // server as its replica.
        let tasks: Vec<_> = (0..4u64)
            .map(|i| {
                let primary = (i % 2) as usize;
                let replica = servers[1 - primary].addr.to_string();
                tokio::spawn(pusher(
                    clients[primary].clone(),
                    app.clone(),
                    round * 1_000_000 + i * 1000 + 1,
                    vec![replica],
                    ledger.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10 + rng.below(250))).await;
        let victim = rng.below(2) as usize;
        let survivor = 1 - victim;
        servers[victim].process.kill().unwrap();
        servers[victim].process.wait().unwrap();
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        drop(clients);

        // The survivor serves every acknowledged map it has a copy of: with two
        // copies, that is every map the victim held too.
        let mut found = BTreeSet::new();
        let reader = connect(&servers[survivor], &app).await;
        let what = format!("round {round}, survivor {survivor}");
        tally.read_from_survivor += check_server(
            &reader,
            survivor,
            &app,
            &ledger,
            &mut expected,
            &mut found,
            &what,
        )
        .await;
        drop(reader);

        // The victim comes back with every copy it acknowledged.
        servers[victim] = spawn_server(&paths, victim, round % 2 == 1);
        let reader = connect(&servers[victim], &app).await;
        let what = format!("round {round}, restarted {victim}");
        check_server(
            &reader,
            victim,
            &app,
            &ledger,
            &mut expected,
            &mut found,
            &what,
        )
        .await;
        drop(reader);

        // Ended pushes without an ack leave the ledger (a retry would use a new id).
        let mut ledger = ledger.lock().unwrap();
        let ended = ledger
            .values()
            .filter(|s| matches!(s, State::EndSent))
            .count();
        tally.late_commits += found.len();
        tally.not_committed += ended - found.len();
        ledger.retain(|_, s| matches!(s, State::Acked { .. }));
    }
    let acked: BTreeMap<u64, State> = ledger.lock().unwrap().clone();
    for (m, s) in &acked {
        if let State::Acked { replica } = s {
            match copies_of(*m, replica).len() {
                2 => tally.two_copies += 1,
                _ => tally.one_copy += 1,
            }
        }
    }
    eprintln!("replicated crash test: {rounds} kill points, {tally:?}");
    assert!(
        tally.two_copies > 0,
        "no map was ever acknowledged with two copies"
    );
}
