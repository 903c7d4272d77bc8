//! Errors of the bridge. Every one reaches Java as a `io.sluice.spark.SluiceException`
//! (see `bridge.rs`, the one place that converts).

use sluice_client::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("invalid data from the server: {0}")]
    Data(String),
    #[error("no open {kind} with handle {handle} (closed already?)")]
    NoSuchHandle { kind: &'static str, handle: i64 },
    #[error("server {server}: {source}")]
    Client {
        server: String,
        #[source]
        source: ClientError,
    },
    #[error("native code panicked: {0}")]
    Panic(String),
}
