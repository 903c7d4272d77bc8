//! The same client for code without an async runtime: each call blocks the calling
//! thread while a private runtime thread drives QUIC. Block decoding runs on the
//! calling thread.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_array::RecordBatch;
use tokio::runtime::Runtime;

use crate::client::{AppCredentials, Client};
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::fetch::{FetchItem, FetchRequest, FetchStream, FetchSummary, FetchedBlock};
use crate::push::{CommitAck, PushRequest, PushStream};
use sluice_proto::PartitionSum;

/// A blocking [`Client`].
#[derive(Debug)]
pub struct BlockingClient {
    runtime: Arc<Runtime>,
    inner: Option<Client>,
}

fn runtime() -> Result<Runtime, ClientError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sluice-client-io")
        .enable_all()
        .build()
        .map_err(|e| ClientError::Runtime(e.to_string()))
}

impl BlockingClient {
    pub fn connect(addr: SocketAddr, config: &ClientConfig) -> Result<Self, ClientError> {
        let runtime = Arc::new(runtime()?);
        let inner = runtime.block_on(Client::connect(addr, config))?;
        Ok(Self {
            runtime,
            inner: Some(inner),
        })
    }

    fn client(&self) -> &Client {
        self.inner.as_ref().expect("present until drop")
    }

    pub fn register_app(&self, app: &AppCredentials) -> Result<(), ClientError> {
        self.runtime.block_on(self.client().register_app(app))
    }

    pub fn push(&self, request: PushRequest) -> Result<BlockingPushStream, ClientError> {
        let inner = self.runtime.block_on(self.client().push(request))?;
        Ok(BlockingPushStream {
            runtime: self.runtime.clone(),
            inner,
        })
    }

    pub fn fetch(&self, request: FetchRequest) -> Result<BlockingFetchStream, ClientError> {
        let inner = self.runtime.block_on(self.client().fetch(request))?;
        Ok(BlockingFetchStream {
            runtime: self.runtime.clone(),
            inner,
        })
    }

    pub fn delete_shuffle(&self, app: &AppCredentials, shuffle_id: u32) -> Result<(), ClientError> {
        self.runtime
            .block_on(self.client().delete_shuffle(app, shuffle_id))
    }

    pub fn delete_app(&self, app: &AppCredentials) -> Result<(), ClientError> {
        self.runtime.block_on(self.client().delete_app(app))
    }
}

impl Drop for BlockingClient {
    fn drop(&mut self) {
        if let Some(client) = self.inner.take() {
            self.runtime.block_on(client.close());
        }
    }
}

/// A blocking [`PushStream`].
#[derive(Debug)]
pub struct BlockingPushStream {
    runtime: Arc<Runtime>,
    inner: PushStream,
}

impl BlockingPushStream {
    pub fn send(&mut self, batch: &RecordBatch) -> Result<(), ClientError> {
        self.runtime.block_on(self.inner.send(batch))
    }

    pub fn commit(self) -> Result<CommitAck, ClientError> {
        self.runtime.block_on(self.inner.commit())
    }

    /// See [`PushStream::commit_with_sums`].
    pub fn commit_with_sums(self, sums: Vec<PartitionSum>) -> Result<CommitAck, ClientError> {
        self.runtime.block_on(self.inner.commit_with_sums(sums))
    }
}

/// A blocking [`FetchStream`]; also an iterator of `(partition, batch)`.
#[derive(Debug)]
pub struct BlockingFetchStream {
    runtime: Arc<Runtime>,
    inner: FetchStream,
}

impl BlockingFetchStream {
    pub fn next_block(&mut self) -> Result<Option<FetchedBlock>, ClientError> {
        self.runtime.block_on(self.inner.next_block())
    }

    /// See [`FetchStream::next_item`].
    pub fn next_item(&mut self) -> Result<Option<FetchItem>, ClientError> {
        self.runtime.block_on(self.inner.next_item())
    }

    /// Decompresses and decodes a block of this stream.
    pub fn decode(&self, block: &FetchedBlock) -> Result<RecordBatch, ClientError> {
        self.inner.decode(block)
    }

    pub fn next_batch(&mut self) -> Result<Option<(u32, RecordBatch)>, ClientError> {
        match self.next_block()? {
            Some(block) => Ok(Some((block.partition, self.inner.decode(&block)?))),
            None => Ok(None),
        }
    }

    pub fn summary(&self) -> Option<FetchSummary> {
        self.inner.summary()
    }
}

impl Iterator for BlockingFetchStream {
    type Item = Result<(u32, RecordBatch), ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}
