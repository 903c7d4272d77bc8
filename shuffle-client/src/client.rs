use std::net::SocketAddr;

use bytes::Bytes;
use quinn::{Connection, Endpoint};
use sluice_format::DecodeLimits;
use sluice_proto::{AppId, Limits, Message, PROTOCOL_VERSION};

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::fetch::{FetchRequest, FetchStream};
use crate::io::{read_reply, write_message};
use crate::push::{PushRequest, PushStream};

/// An application id and the secret that guards its shuffles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCredentials {
    pub app: AppId,
    pub secret: Bytes,
}

impl AppCredentials {
    pub fn new(app: impl Into<String>, secret: impl Into<Bytes>) -> Result<Self, ClientError> {
        Ok(Self {
            app: AppId::new(app)?,
            secret: secret.into(),
        })
    }
}

/// An authenticated connection to one Sluice server. Cheap to share by reference:
/// every request runs on its own QUIC stream.
#[derive(Debug)]
pub struct Client {
    endpoint: Endpoint,
    conn: Connection,
    pub(crate) limits: Limits,
    pub(crate) decode_limits: DecodeLimits,
}

impl Client {
    /// Connects, verifies the server's certificate and presents the cluster token.
    pub async fn connect(addr: SocketAddr, config: &ClientConfig) -> Result<Self, ClientError> {
        let connect_err = |message: String| ClientError::Connect { addr, message };
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("valid address")
        } else {
            "[::]:0".parse().expect("valid address")
        };
        let mut endpoint = config
            .transport
            .endpoint(bind, None)
            .map_err(|e| connect_err(e.to_string()))?;
        endpoint.set_default_client_config(config.quic_client_config()?);
        let connecting = endpoint
            .connect(addr, &config.server_name)
            .map_err(|e| connect_err(e.to_string()))?;
        let conn = tokio::time::timeout(config.connect_timeout, connecting)
            .await
            .map_err(|_| connect_err("timed out".into()))?
            .map_err(|e| connect_err(e.to_string()))?;
        let client = Self {
            endpoint,
            conn,
            limits: config.limits,
            decode_limits: config.decode_limits,
        };
        let hello = Message::Hello {
            version: PROTOCOL_VERSION,
            token: Bytes::from(config.token.clone()),
            client: config.client_name.clone(),
        };
        match tokio::time::timeout(config.connect_timeout, client.request(&hello)).await {
            Ok(Ok(Message::HelloOk { .. })) => Ok(client),
            Ok(Ok(other)) => Err(ClientError::Stream(format!(
                "unexpected handshake reply {:?}",
                other.kind()
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(connect_err("handshake timed out".into())),
        }
    }

    pub(crate) async fn open(&self) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        self.conn.open_bi().await.map_err(ClientError::connection)
    }

    /// One request, one reply, on a fresh stream.
    async fn request(&self, msg: &Message) -> Result<Message, ClientError> {
        let (mut send, mut recv) = self.open().await?;
        write_message(&mut send, msg).await?;
        let _ = send.finish();
        read_reply(&mut recv, &self.limits).await
    }

    async fn request_ok(&self, msg: &Message) -> Result<(), ClientError> {
        match self.request(msg).await? {
            Message::Ok => Ok(()),
            other => Err(ClientError::Stream(format!(
                "unexpected reply {:?}",
                other.kind()
            ))),
        }
    }

    /// Registers the application (idempotent with the same secret).
    pub async fn register_app(&self, app: &AppCredentials) -> Result<(), ClientError> {
        self.request_ok(&Message::RegisterApp {
            app: app.app.clone(),
            secret: app.secret.clone(),
        })
        .await
    }

    /// Tells the server the application is alive, so its data is not expired
    /// (`storage.app_expiry`). Any request of the application counts too; send this at
    /// least every few minutes while the application's shuffles are idle.
    pub async fn heartbeat(&self, app: &AppCredentials) -> Result<(), ClientError> {
        self.register_app(app).await
    }

    /// Opens a push stream for one map attempt.
    pub async fn push(&self, request: PushRequest) -> Result<PushStream, ClientError> {
        PushStream::open(self, request).await
    }

    /// Opens a fetch of a partition range.
    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchStream, ClientError> {
        FetchStream::open(self, request).await
    }

    /// Deletes a shuffle's data on this server.
    pub async fn delete_shuffle(
        &self,
        app: &AppCredentials,
        shuffle_id: u32,
    ) -> Result<(), ClientError> {
        self.request_ok(&Message::DeleteShuffle {
            app: app.app.clone(),
            secret: app.secret.clone(),
            shuffle_id,
        })
        .await
    }

    /// Deletes the application and all its shuffles on this server.
    pub async fn delete_app(&self, app: &AppCredentials) -> Result<(), ClientError> {
        self.request_ok(&Message::DeleteApp {
            app: app.app.clone(),
            secret: app.secret.clone(),
        })
        .await
    }

    /// Closes the connection and waits until the close has been sent.
    /// The QUIC connection's counters: bytes and datagrams on the wire, packets lost,
    /// and the path (RTT, the MTU discovery settled at).
    pub fn connection_stats(&self) -> quinn::ConnectionStats {
        self.conn.stats()
    }

    pub async fn close(self) {
        self.conn.close(0u32.into(), b"client closed");
        self.endpoint.wait_idle().await;
    }
}
