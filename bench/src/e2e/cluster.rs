//! The servers of one measured shuffle, and the shuffle itself: every map pushed,
//! every partition fetched and checked against the generator's digests.

use std::path::PathBuf;
use std::time::Instant;

use sluice_client::{
    AppCredentials, Client, ClientConfig, FetchRequest, MapFilter, Partitioning, PushRequest, Trust,
};
use sluice_server::config::CodecName;
use sluice_server::{ServerConfig, ServerHandle};
use sluice_testkit::lineitem_schema;

use super::{stages, MapInput, Shuffle};
use crate::data::{row_hashes, Digest};
use crate::{Args, Codec};

/// The fresh servers of one measured shuffle, each on a temp dir of its own; they
/// share the first one's certificate and cluster token, so each can keep the others'
/// second copies.
pub(super) struct Cluster {
    servers: Vec<ServerHandle>,
    data_dirs: Vec<PathBuf>,
    client_config: ClientConfig,
    app: AppCredentials,
    _tmp: tempfile::TempDir,
}

/// What the clients' connections put on the wire and took off it (UDP payload bytes,
/// QUIC headers and tags included), and the smallest path MTU they discovered.
#[derive(Debug, Clone, Copy)]
struct Wire {
    sent: u64,
    received: u64,
    mtu: u16,
}

impl Default for Wire {
    fn default() -> Self {
        Self {
            sent: 0,
            received: 0,
            mtu: u16::MAX,
        }
    }
}

impl Wire {
    fn of(client: &Client) -> Self {
        let stats = client.connection_stats();
        Self {
            sent: stats.udp_tx.bytes,
            received: stats.udp_rx.bytes,
            mtu: stats.path.current_mtu,
        }
    }

    fn add(&mut self, other: Wire) {
        self.sent += other.sent;
        self.received += other.received;
        self.mtu = self.mtu.min(other.mtu);
    }
}

impl Cluster {
    pub(super) async fn start(args: &Args, count: usize) -> Result<Cluster, crate::BenchError> {
        let tmp = tempfile::tempdir()?;
        let (mut servers, mut data_dirs) = (Vec::new(), Vec::new());
        for i in 0..count {
            let data_dir = match &args.data_dir {
                Some(dir) => tempfile::tempdir_in(dir)?.keep(),
                None => tmp.path().join(format!("data-{i}")),
            };
            let mut config = ServerConfig::embedded(data_dir.clone());
            config.storage.codec = match args.codec {
                Codec::None => CodecName::None,
                Codec::Lz4 => CodecName::Lz4,
                Codec::Zstd => CodecName::Zstd,
            };
            config.storage.zstd_level = args.zstd_level;
            if let Some(first) = data_dirs.first() {
                let first: &PathBuf = first;
                config.tls.cert = Some(first.join("tls/cert.pem"));
                config.tls.key = Some(first.join("tls/key.pem"));
                config.cluster_token_file = Some(first.join("cluster-token"));
            }
            servers.push(args.path.start_server(config).await?);
            data_dirs.push(data_dir);
        }
        let client_config = ClientConfig::new(
            Trust::PinnedPem(servers[0].certificate_pem().to_string()),
            servers[0].token().to_vec(),
        );
        let app = AppCredentials::new("sluice-bench", b"sluice-bench-app-secret".to_vec())?;
        for server in &servers {
            Client::connect(server.local_addr(), &client_config)
                .await?
                .register_app(&app)
                .await?;
        }
        Ok(Cluster {
            servers,
            data_dirs,
            client_config,
            app,
            _tmp: tmp,
        })
    }

    pub(super) fn addrs(&self) -> Vec<std::net::SocketAddr> {
        self.servers.iter().map(|s| s.local_addr()).collect()
    }

    pub(super) fn client_config(&self) -> &ClientConfig {
        &self.client_config
    }

    pub(super) fn app(&self) -> &AppCredentials {
        &self.app
    }

    pub(super) async fn stop(self, args: &Args) -> Result<(), crate::BenchError> {
        for server in self.servers {
            server.shutdown().await;
        }
        if args.data_dir.is_some() {
            for dir in &self.data_dirs {
                std::fs::remove_dir_all(dir)?;
            }
        }
        Ok(())
    }

    /// One shuffle: map i is pushed to server i % servers (naming the next server as
    /// its replica when `replicate`), and each reducer reads every map from the server
    /// it was pushed to. Stops the servers.
    pub(super) async fn shuffle(
        self,
        args: &Args,
        replicate: bool,
        maps: &[MapInput],
        expected: &[Digest],
        rows: u64,
    ) -> Result<Shuffle, crate::BenchError> {
        let shuffle = self.run(args, replicate, maps, expected, rows).await;
        self.stop(args).await?;
        shuffle
    }
    async fn run(
        &self,
        args: &Args,
        replicate: bool,
        maps: &[MapInput],
        expected: &[Digest],
        rows: u64,
    ) -> Result<Shuffle, crate::BenchError> {
        let (client_config, app) = (&self.client_config, &self.app);
        let addrs = self.addrs();
        let primary = |i: usize| i % addrs.len();
        // Push: every map concurrently, each on its own connection.
        let before = crate::report::usage();
        let stages_before = stages::sample();
        let t_push = Instant::now();
        let mut pushes = Vec::new();
        let bar =
            crate::report::progress((args.maps * args.batches_per_map) as u64, "push batches");
        for (i, input) in maps.iter().enumerate() {
            let (cfg, app, bar) = (client_config.clone(), app.clone(), bar.clone());
            let (map, batches) = (input.map, input.batches.clone());
            let n = args.partitions;
            let addr = addrs[primary(i)];
            let replicas = match replicate {
                true => vec![addrs[(primary(i) + 1) % addrs.len()].to_string()],
                false => Vec::new(),
            };
            pushes.push(tokio::spawn(async move {
                let client = Client::connect(addr, &cfg).await?;
                let mut push = client
                    .push(PushRequest {
                        app,
                        shuffle_id: 0,
                        map,
                        num_partitions: n,
                        partitioning: Partitioning::Hash { columns: vec![0] },
                        schema: lineitem_schema(),
                        replicas,
                    })
                    .await?;
                for batch in &batches {
                    push.send(batch).await?;
                    bar.inc(1);
                }
                let ack = push.commit().await?;
                let wire = Wire::of(&client);
                client.close().await;
                Ok::<_, sluice_client::ClientError>((ack, wire))
            }));
        }
        let (mut stored_bytes, mut acked_rows, mut replicated_maps) = (0u64, 0u64, 0);
        let mut push_wire = Wire::default();
        for p in pushes {
            let (ack, wire) = p.await??;
            push_wire.add(wire);
            stored_bytes += ack.partition_bytes.iter().sum::<u64>();
            acked_rows += ack.partition_rows.iter().sum::<u64>();
            replicated_maps += usize::from(ack.replica.is_some());
        }
        let push_secs = t_push.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let after_push = crate::report::usage();
        let stages_push = stages::sample();

        // Fetch: reducers over contiguous partition ranges, decoding as a reducer would and
        // dropping each batch once it is checked (a reducer streams its input). The check's
        // own CPU is measured on its thread and taken out of the fetch's.
        let t_fetch = Instant::now();
        let mut fetches = Vec::new();
        let n = args.partitions;
        let reducers = args.reducers.clamp(1, n);
        let bar = crate::report::progress(rows, "fetch rows");
        for r in 0..reducers {
            let range = (r * n / reducers)..((r + 1) * n / reducers);
            let (cfg, app, bar) = (client_config.clone(), app.clone(), bar.clone());
            // From each server, the maps pushed to it (all of them when there is one).
            let sources: Vec<(std::net::SocketAddr, FetchRequest)> = addrs
                .iter()
                .enumerate()
                .map(|(s, &addr)| {
                    let request = FetchRequest::partitions(app.clone(), 0, range.clone());
                    let request = match addrs.len() {
                        1 => request,
                        _ => request.with_maps(MapFilter::MapIds(
                            (0..maps.len())
                                .filter(|&i| primary(i) == s)
                                .map(|i| maps[i].map.map_id)
                                .collect(),
                        )),
                    };
                    (addr, request)
                })
                .collect();
            fetches.push(tokio::spawn(async move {
                let mut digests = vec![Digest::default(); n as usize];
                let (mut hashes, mut check_secs) = (Vec::new(), 0.0);
                let mut wire = Wire::default();
                for (addr, request) in sources {
                    let client = Client::connect(addr, &cfg).await?;
                    let mut stream = client.fetch(request).await?;
                    while let Some((partition, batch)) = stream.next_batch().await? {
                        let start = sluice_stages::thread_cpu_secs();
                        bar.inc(batch.num_rows() as u64);
                        row_hashes(&batch, &mut hashes);
                        digests[partition as usize].add(&hashes);
                        check_secs += sluice_stages::thread_cpu_secs() - start;
                    }
                    wire.add(Wire::of(&client));
                    client.close().await;
                }
                Ok::<_, sluice_client::ClientError>((digests, check_secs, wire))
            }));
        }
        let mut actual = vec![Digest::default(); n as usize];
        let mut check_secs = 0.0;
        let mut fetch_wire = Wire::default();
        for f in fetches {
            let (digests, secs, wire) = f.await??;
            fetch_wire.add(wire);
            for (a, d) in actual.iter_mut().zip(&digests) {
                a.merge(d);
            }
            check_secs += secs;
        }
        let fetch_secs = t_fetch.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let after_fetch = crate::report::usage();
        let stages_fetch = stages::sample().less(check_secs);

        let mismatched: Vec<u32> = (0..n)
            .filter(|&p| actual[p as usize] != expected[p as usize])
            .collect();
        if !mismatched.is_empty() || acked_rows != rows {
            eprintln!(
                "rows acked {acked_rows} of {rows}; {} partitions differ, first: {:?}",
                mismatched.len(),
                mismatched
                    .iter()
                    .take(5)
                    .map(|&p| (p, expected[p as usize], actual[p as usize]))
                    .collect::<Vec<_>>()
            );
        }
        Ok(Shuffle {
            push_secs,
            fetch_secs,
            push_cpu_secs: after_push.cpu_secs - before.cpu_secs,
            fetch_cpu_secs: after_fetch.cpu_secs - after_push.cpu_secs - check_secs,
            check_cpu_secs: check_secs,
            push_faults: after_push.page_faults - before.page_faults,
            fetch_faults: after_fetch.page_faults - after_push.page_faults,
            stages: [stages_before, stages_push, stages_fetch],
            stored_bytes,
            push_udp_bytes: push_wire.sent,
            fetch_udp_bytes: fetch_wire.received,
            // The pushing clients send the bulk, so their MTU discovery has the traffic to
            // run on (a reducer sends almost nothing).
            path_mtu: push_wire.mtu,
            peak_rss_bytes: after_fetch.peak_rss_bytes,
            replicated_maps,
            ok: mismatched.is_empty()
                && acked_rows == rows
                && replicated_maps == if replicate { maps.len() } else { 0 },
        })
    }
}
