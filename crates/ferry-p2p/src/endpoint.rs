//! The QUIC endpoint: one UDP socket with large buffers, quinn on top, one transport config.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::identity::Identity;
use crate::tls;

/// Socket buffer size. Measured here: with the kernel defaults quinn lost thousands of packets
/// per GiB on loopback; 4 MiB removed the loss.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Liveness and limits of every connection.
#[derive(Debug, Clone)]
pub struct TransportLimits {
    /// A connection silent for this long is dead (a crashed or vanished peer).
    pub idle_timeout: Duration,
    /// Keep-alive interval; well under the idle timeout so a live peer never times out.
    pub keep_alive: Duration,
    /// Bidirectional streams a peer may have open on one connection at once.
    pub max_streams: u32,
    pub congestion: Congestion,
    /// Bytes a peer may send on one stream ahead of what we have read. One stream moves at
    /// most this per round trip: quinn's default (1.25 MB) caps a transfer at 25 MB/s on a
    /// 50 ms path; 8 MiB covers 1 Gbit/s at up to 65 ms. (16 MiB, tried, doubled each side's
    /// peak RSS for a 4 GiB file to 63 / 68 MiB: a slow disk lets the window fill.)
    pub stream_window: u32,
    /// The same for all streams of a connection together: the most a peer can make us buffer
    /// (quinn's default has no such bound). Twenty streams' worth: when unread streams fill
    /// it, every other stream of the connection stalls too, tunnel handshakes included — at
    /// 12 MiB, two of the media test's sixteen abandoned reads did that.
    pub connection_window: u32,
    /// Bytes we keep unacknowledged (in flight and queued) per connection.
    pub send_window: u64,
}

/// The congestion controller: Ferry's own ([`crate::congestion`], CUBIC that ignores random
/// loss) unless `FERRY_CONGESTION` names quinn's `cubic` or `bbr` (kept to compare against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Congestion {
    Tolerant,
    Cubic,
    Bbr,
}

impl Congestion {
    /// `FERRY_CONGESTION=cubic|bbr`, else [`Congestion::Tolerant`].
    pub fn from_env() -> Congestion {
        match std::env::var("FERRY_CONGESTION") {
            Ok(v) if v.eq_ignore_ascii_case("bbr") => Congestion::Bbr,
            Ok(v) if v.eq_ignore_ascii_case("cubic") => Congestion::Cubic,
            _ => Congestion::Tolerant,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Congestion::Tolerant => "tolerant",
            Congestion::Cubic => "cubic",
            Congestion::Bbr => "bbr",
        }
    }
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            idle_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_millis(1500),
            max_streams: 64,
            congestion: Congestion::from_env(),
            stream_window: 8 << 20,
            connection_window: 160 << 20,
            send_window: 12 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    #[error("invalid transport setting: {0}")]
    Config(String),
}

pub fn transport_config(
    limits: &TransportLimits,
) -> Result<Arc<quinn::TransportConfig>, EndpointError> {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(limits.idle_timeout)
        .map_err(|e| EndpointError::Config(e.to_string()))?;
    t.max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(limits.keep_alive))
        .max_concurrent_bidi_streams(limits.max_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window(limits.stream_window.into())
        .receive_window(limits.connection_window.into())
        .send_window(limits.send_window);
    match limits.congestion {
        Congestion::Tolerant => {
            t.congestion_controller_factory(Arc::new(crate::congestion::TolerantConfig::default()))
        }
        Congestion::Bbr => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
        }
        Congestion::Cubic => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()))
        }
    };
    Ok(Arc::new(t))
}

/// Binds the UDP socket and starts quinn on it, accepting connections from any Ed25519 identity.
pub fn bind(
    addr: SocketAddr,
    identity: &Identity,
    limits: &TransportLimits,
    max_connections: usize,
) -> Result<quinn::Endpoint, EndpointError> {
    let bind_err = |source| EndpointError::Bind { addr, source };
    let socket = udp_socket(addr).map_err(bind_err)?;
    let mut server = quinn::ServerConfig::with_crypto(tls::server_crypto(identity)?);
    server.transport_config(transport_config(limits)?);
    // Handshakes not yet accepted count too: a flood of Initials cannot queue without bound.
    server.max_incoming(max_connections);
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(bind_err)
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Dual stack where the OS allows it, so "[::]:port" also serves IPv4 peers.
        let _ = socket.set_only_v6(false);
    }
    grow_buffers(&socket);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Asks for [`SOCKET_BUFFER`]; the kernel caps it at `net.core.[rw]mem_max` unless we are
/// privileged, in which case the FORCE variants get the full size. Failure only costs speed.
fn grow_buffers(socket: &socket2::Socket) {
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let size = SOCKET_BUFFER as libc::c_int;
        for (opt, current) in [
            (libc::SO_RCVBUFFORCE, socket.recv_buffer_size()),
            (libc::SO_SNDBUFFORCE, socket.send_buffer_size()),
        ] {
            // Linux reports double the requested size (bookkeeping overhead).
            if current.map(|c| c < SOCKET_BUFFER).unwrap_or(true) {
                // SAFETY: plain setsockopt on a socket we own, with a c_int-sized value.
                unsafe {
                    libc::setsockopt(
                        socket.as_raw_fd(),
                        libc::SOL_SOCKET,
                        opt,
                        &size as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
            }
        }
    }
    tracing::debug!(recv = ?socket.recv_buffer_size().ok(), send = ?socket.send_buffer_size().ok(), "udp socket buffers");
}
