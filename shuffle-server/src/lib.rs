//! Sluice shuffle server.
//!
//! A QUIC endpoint (quinn, TLS 1.3) that accepts Arrow batches on push streams, splits
//! them by partition on a worker pool, compresses them into blocks and appends them to
//! per-partition files; and serves committed blocks on fetch streams. See ARCHITECTURE.md.
//!
//! It owns the meaning of requests: applications and their secrets, shuffles and which
//! map attempts are committed (`commits`, a pure state machine), memory accounting and
//! the limits on what a client can make it hold, deletes, the admin endpoint and the
//! configuration. It must not parse frames or blocks itself (`sluice-proto`,
//! `sluice-format`), touch data files except through `sluice-spill`, or run CPU work on
//! the async runtime (the worker pool does), and it does not depend on the client.

mod activity;
mod admin;
pub mod admin_client;
pub mod allocator;
mod allowance;
mod commits;
pub mod config;
mod conn;
mod ctx;
mod error;
mod fetch;
mod io;
mod meta;
pub mod metrics;
mod peers;
mod push;
mod reclaim;
mod registry;
mod replica;
mod server;
pub mod status;
mod sums;
mod tls;
mod token;
mod worker;

pub use config::ServerConfig;
pub use error::{RequestError, StartError};
#[cfg(feature = "fault-injection")]
pub use server::Fault;
pub use server::{DrainReport, Server, ServerHandle};
