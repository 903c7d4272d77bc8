//! Where the benchmark's bytes travel: loopback (the default), or a veth pair between
//! two network namespaces (`--link veth[,rate=…][,loss=…][,mtu=…]`). On a link the whole
//! process runs in the client namespace (its runtime's threads were started there) and
//! every server socket is made by a thread in the server namespace: a socket stays in
//! the namespace it was made in, whichever thread later uses it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use sluice_testkit::netns::{Link, LinkSpec, SERVER_ADDR};

use crate::BenchError;

#[derive(Debug, Clone, Default)]
pub struct NetPath {
    link: Option<Arc<Link>>,
}

impl NetPath {
    /// Makes the link and moves the calling thread into its client namespace: call it
    /// before the runtime is built, so that every worker starts there.
    pub fn over_link(spec: LinkSpec) -> Result<Self, BenchError> {
        let link = Link::create(spec).map_err(|e| format!("--link {}: {e}", spec.describe()))?;
        link.enter_client()?;
        Ok(Self {
            link: Some(Arc::new(link)),
        })
    }

    /// `loopback` or the link's spec.
    pub fn describe(&self) -> String {
        self.link
            .as_ref()
            .map_or_else(|| "loopback".into(), |l| l.spec().describe())
    }

    /// Whether the link has a rate limit (then the link, not the CPU, is the limit).
    pub fn rate_limited(&self) -> bool {
        self.link
            .as_ref()
            .is_some_and(|l| l.spec().rate_mbit.is_some())
    }

    pub fn is_link(&self) -> bool {
        self.link.is_some()
    }

    /// The address servers listen on (port 0).
    pub fn server_bind(&self) -> SocketAddr {
        let ip = if self.link.is_some() {
            SERVER_ADDR
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        SocketAddr::new(ip, 0)
    }

    /// The address clients bind (port 0).
    pub fn client_bind(&self) -> SocketAddr {
        let ip = if self.link.is_some() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        SocketAddr::new(ip, 0)
    }

    /// Runs `f` where server sockets belong: here on loopback, else on a thread in the
    /// server namespace. Either way inside the current runtime (sockets register with
    /// its reactor). Blocks this worker for as long as `f` runs.
    pub fn server_side<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, BenchError> {
        let Some(link) = &self.link else {
            return Ok(f());
        };
        let runtime = tokio::runtime::Handle::current();
        Ok(tokio::task::block_in_place(|| {
            link.in_server(|| {
                let _entered = runtime.enter();
                f()
            })
        })?)
    }

    /// Starts a server on the server side (its socket made by [`server_side`]).
    ///
    /// [`server_side`]: Self::server_side
    pub async fn start_server(
        &self,
        mut config: sluice_server::ServerConfig,
    ) -> Result<sluice_server::ServerHandle, BenchError> {
        config.listen = self.server_bind();
        let Some(link) = &self.link else {
            return Ok(sluice_server::Server::start(config).await?);
        };
        let runtime = tokio::runtime::Handle::current();
        let started = tokio::task::block_in_place(|| {
            link.in_server(|| runtime.block_on(sluice_server::Server::start(config)))
        })?;
        Ok(started?)
    }

    /// Packets the link's loss rules dropped so far.
    pub fn dropped_packets(&self) -> u64 {
        self.link
            .as_ref()
            .and_then(|l| l.dropped_packets().ok())
            .unwrap_or(0)
    }
}
