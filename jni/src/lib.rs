//! JNI bridge for the Spark shuffle plugin.
//!
//! Placeholder crate: the Spark issue fills it with the JNI exports (one place that turns
//! native errors and panics into Java exceptions) and the memory-listener bridge. It
//! depends on `sluice-client`, which it will wrap.
