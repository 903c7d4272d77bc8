//! Helpers shared by Sluice's tests and benchmarks, one copy of each: the seeded
//! [`Rng`], generated batches (TPC-H lineitem shapes in [`lineitem`], one column of
//! every type in [`every_type`]) and, with the `server` feature, an in-process server on
//! a temp dir with the client-side helpers that push to it and fetch from it
//! ([`server`]). The `split` feature adds the reference split the fetched rows are
//! compared with.
//!
//! It is never a dependency of a shipped crate: the server, the client and the JNI
//! bridge take it only as a dev-dependency, and only the benchmark (a dev tool) uses it
//! as a normal one. Nothing here checks or hardens anything: a helper panics on the
//! first error, as a test wants. Generated data must not change: benchmark results and
//! test seeds depend on it (the tests in `tests/golden.rs` pin it). The `netns` feature
//! adds [`netns`]: a client and a server network namespace joined by a veth pair.

pub mod every_type;
pub mod lineitem;
#[cfg(feature = "netns")]
pub mod netns;
mod rng;
#[cfg(feature = "server")]
pub mod server;

pub use lineitem::{lineitem_batch, lineitem_schema};
pub use rng::Rng;
