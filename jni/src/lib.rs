//! JNI bridge of the Sluice Spark plugin (`io.sluice.spark.NativeBridge`).
//!
//! - `records.rs`: the layouts records cross the boundary in, and the Arrow batch they
//!   become;
//! - `native/`: sessions, map writers (with their counts) and fetches that move to a
//!   map's second copy, free of JNI types;
//! - `handles.rs`: the table Java's `long` handles index;
//! - `bridge.rs`: the exports, and the one place errors and panics become exceptions.
//!
//! It owns the boundary with the JVM only: what a Spark task needs from
//! `sluice-client`, in the record layouts Java sends. It must not implement protocol or
//! storage logic of its own, and no error or panic may cross into Java other than as a
//! `SluiceException`.

mod bridge;
pub mod error;
mod handles;
pub mod native;
pub mod records;
