//! Sluice client: push Arrow record batches to a Sluice server and fetch them back by
//! partition.
//!
//! This is the API native engines (which already hold Arrow batches) use directly, and
//! what the JNI bridge wraps. [`Client`] is async (tokio); [`BlockingClient`] is the same
//! API for threads without a runtime. Blocks are decompressed and their checksums
//! verified here, on the reader, never on the server.
//!
//! It owns the client's side of each request and its checks of what the server sends.
//! It must not hold server logic: the QUIC side is `sluice-transport`'s, and nothing of
//! the server depends on this crate.
//!
//! ```no_run
//! # async fn demo(addr: std::net::SocketAddr, cert_pem: String, token: Vec<u8>,
//! #               batch: arrow_array::RecordBatch) -> Result<(), sluice_client::ClientError> {
//! use sluice_client::*;
//! let client = Client::connect(addr, &ClientConfig::new(Trust::PinnedPem(cert_pem), token)).await?;
//! let app = AppCredentials::new("app-1", b"app secret".to_vec())?;
//! client.register_app(&app).await?;
//! let mut push = client
//!     .push(PushRequest {
//!         app: app.clone(),
//!         shuffle_id: 0,
//!         map: MapAttempt { map_id: 1, map_index: 0, attempt: 0 },
//!         num_partitions: 8,
//!         partitioning: Partitioning::Hash { columns: vec![0] },
//!         schema: batch.schema(),
//!         replicas: Vec::new(),
//!     })
//!     .await?;
//! push.send(&batch).await?;
//! let ack = push.commit().await?; // per-partition bytes and rows, once stored
//! let mut fetch = client.fetch(FetchRequest::partitions(app.clone(), 0, 0..8)).await?;
//! while let Some((partition, rows)) = fetch.next_batch().await? {
//!     println!("partition {partition}: {} rows", rows.num_rows());
//! }
//! # Ok(()) }
//! ```

mod blocking;
mod client;
mod config;
mod error;
mod fetch;
mod io;
mod push;

pub use blocking::{BlockingClient, BlockingFetchStream, BlockingPushStream};
pub use client::{AppCredentials, Client};
pub use config::{ClientConfig, Trust};
pub use error::ClientError;
pub use fetch::{FetchItem, FetchRequest, FetchStream, FetchSummary, FetchedBlock};
pub use push::{
    range_partitioning, reversed_range_partitioning, CommitAck, PushRequest, PushStream,
};
pub use sluice_proto::{
    AppId, ErrorCode, MapAttempt, MapFilter, MapSum, PartitionSum, Partitioning, RangeOrder,
};
pub use sluice_transport::TransportTuning;
