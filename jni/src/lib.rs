//! JNI bridge of the Sluice Spark plugin (`io.sluice.spark.NativeBridge`).
//!
//! - `records.rs`: the layouts records cross the boundary in, and the Arrow batch they
//!   become;
//! - `native.rs`: sessions, map writers and fetches, free of JNI types;
//! - `handles.rs`: the table Java's `long` handles index;
//! - `bridge.rs`: the exports, and the one place errors and panics become exceptions.

mod bridge;
pub mod error;
mod handles;
pub mod native;
pub mod records;
