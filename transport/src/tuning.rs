//! QUIC transport tuning, one definition for both ends: the client uses it for its
//! endpoints, the server (`[transport]` in its config) for its own, and `sluice-bench
//! --mode net` for the raw-quinn limit it compares Sluice against. Why each default is
//! what it is: BENCHMARKS.md, "net".

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

/// Socket and flow-control settings of one QUIC endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportTuning {
    /// `SO_RCVBUF` and `SO_SNDBUF` of the UDP socket in bytes (0: the OS default). The
    /// kernel caps the request at `net.core.rmem_max` / `wmem_max`.
    pub udp_socket_buffer: usize,
    /// Generic segmentation offload: hand the kernel up to 10 datagrams per send call.
    pub segmentation_offload: bool,
    /// Largest UDP payload this endpoint sends or accepts; MTU discovery probes up to
    /// it from 1200 bytes and settles at the path's MTU. With segmentation offload at
    /// most [`GSO_MAX_PAYLOAD`](Self::GSO_MAX_PAYLOAD).
    pub max_udp_payload: u16,
    /// Unread bytes the peer may have in flight on one stream.
    pub stream_receive_window: u32,
    /// Unread bytes the peer may have in flight on the whole connection.
    pub receive_window: u32,
    /// Unacknowledged bytes this end may have in flight on the connection.
    pub send_window: u64,
}

impl TransportTuning {
    /// The client's defaults: fetches are read by one reducer thread, so a generous
    /// stream window lets one stream fill a fast link.
    pub const CLIENT: Self = Self {
        udp_socket_buffer: 4 << 20,
        segmentation_offload: true,
        max_udp_payload: Self::GSO_MAX_PAYLOAD,
        stream_receive_window: 16 << 20,
        receive_window: 64 << 20,
        send_window: 64 << 20,
    };

    /// The server's defaults: its receive windows bound the unread bytes a client can
    /// park in the server's memory (outside the memory budget) while pushes wait.
    pub const SERVER: Self = Self {
        stream_receive_window: 4 << 20,
        receive_window: 32 << 20,
        ..Self::CLIENT
    };

    /// The largest payload segmentation offload can carry: quinn hands the kernel up to
    /// 10 datagrams per send, and the kernel refuses (EMSGSIZE) a batch over 64 KiB,
    /// which quinn counts as loss.
    pub const GSO_MAX_PAYLOAD: u16 = 6500;

    /// Why this tuning cannot work, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(1200..=65527).contains(&self.max_udp_payload) {
            return Err(format!(
                "max_udp_payload: {} not in 1200..=65527",
                self.max_udp_payload
            ));
        }
        if self.segmentation_offload && self.max_udp_payload > Self::GSO_MAX_PAYLOAD {
            return Err(format!(
                "max_udp_payload: {} is over {} with segmentation_offload (turn one down)",
                self.max_udp_payload,
                Self::GSO_MAX_PAYLOAD
            ));
        }
        Ok(())
    }

    /// The quinn transport settings this tuning names (timeouts and stream counts are
    /// left to the caller).
    pub fn transport_config(&self) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        t.stream_receive_window(quinn::VarInt::from_u32(self.stream_receive_window));
        t.receive_window(quinn::VarInt::from_u32(self.receive_window));
        t.send_window(self.send_window);
        t.enable_segmentation_offload(self.segmentation_offload);
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(self.max_udp_payload);
        t.mtu_discovery_config(Some(mtu));
        t
    }

    /// A quinn endpoint on `bind` with this tuning's UDP socket; a server endpoint if
    /// `server` is given.
    pub fn endpoint(
        &self,
        bind: SocketAddr,
        server: Option<quinn::ServerConfig>,
    ) -> std::io::Result<quinn::Endpoint> {
        self.check().map_err(std::io::Error::other)?;
        let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
        if bind.is_ipv6() {
            // Dual-stack where the OS allows it, as quinn's own client endpoints are.
            let _ = socket.set_only_v6(false);
        }
        if self.udp_socket_buffer > 0 {
            socket.set_recv_buffer_size(self.udp_socket_buffer)?;
            socket.set_send_buffer_size(self.udp_socket_buffer)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&bind.into())?;
        let mut config = quinn::EndpointConfig::default();
        config
            .max_udp_payload_size(self.max_udp_payload)
            .map_err(|e| std::io::Error::other(format!("max_udp_payload: {e}")))?;
        quinn::Endpoint::new(config, server, socket.into(), Arc::new(quinn::TokioRuntime))
    }
}
