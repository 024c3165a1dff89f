//! The running peer-to-peer layer: endpoint, router, discovery and the peer registry.
//!
//! Peer life cycle (each transition is one [`P2pEvent`]):
//! - *discovered*: mDNS announced it, no connection yet (or none possible);
//! - *connected*: a QUIC connection whose handshake proved the peer's key, and hello exchanged;
//! - *lost*: the connection ended (goodbye = `left`, silence = `timed_out`) or mDNS withdrew it.
//!
//! A supervisor task per known address keeps trying to (re)connect with backoff, so a peer that
//! comes back reappears on its own. There is one connection per peer pair: when both sides dial
//! at once, both keep the connection dialed by the smaller id and close the other (`Duplicate`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Weak;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_util::lock;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::discovery::{Discovery, DiscoveryConfig, DiscoveryEvent};
use crate::endpoint::{self, EndpointError, TransportLimits};
use crate::hello::{self, HelloProtocol, HelloSink, NodeInfo};
use crate::identity::{Identity, PeerId};
use crate::ping::{self, PingProtocol};
use crate::router::{BoxFuture, Protocol, Router};
use crate::tls;
use crate::wire::{CloseCode, StreamError};

#[derive(Debug, Clone)]
pub struct P2pConfig {
    pub listen: SocketAddr,
    pub info: NodeInfo,
    pub discovery: DiscoveryConfig,
    pub limits: TransportLimits,
    /// Time allowed for a handshake plus hello.
    pub connect_timeout: Duration,
    /// Live connections we hold at most; further incoming ones are refused.
    pub max_connections: usize,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            info: NodeInfo::default(),
            discovery: DiscoveryConfig {
                enabled: true,
                interfaces: vec![],
            },
            limits: TransportLimits::default(),
            connect_timeout: Duration::from_secs(4),
            max_connections: 256,
            max_backoff: Duration::from_secs(5),
        }
    }
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    Discovered,
    Connected,
    Lost,
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LostReason {
    /// The peer said goodbye (clean shutdown), over QUIC or mDNS.
    Left,
    /// The connection went silent (crash, sleep, network gone).
    TimedOut,
    /// The connection failed some other way.
    ConnectionError,
}

/// What the node knows of a peer at one moment.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerSnapshot {
    #[cfg_attr(feature = "specta", specta(type = String))]
    pub id: PeerId,
    pub short_id: String,
    pub name: String,
    pub os: String,
    pub version: String,
    #[cfg_attr(feature = "specta", specta(type = Vec<String>))]
    pub addrs: Vec<SocketAddr>,
    pub state: PeerState,
    /// QUIC's smoothed round-trip estimate, while connected.
    pub rtt_ms: Option<f64>,
    /// Seen through mDNS (as opposed to only a manual or incoming connection).
    pub discovered: bool,
}

#[derive(Debug, Clone)]
pub enum P2pEvent {
    PeerFound(PeerSnapshot),
    PeerChanged(PeerSnapshot),
    PeerLost {
        peer: PeerSnapshot,
        reason: LostReason,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
    #[error("two protocols claim stream protocol id {0}")]
    DuplicateProtocol(u16),
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("identity mismatch at {addr}: expected {expected}, but the node there is {found}")]
    IdentityMismatch {
        addr: SocketAddr,
        expected: PeerId,
        found: PeerId,
    },
    #[error("could not connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("peer at {addr} did not introduce itself: {source}")]
    Hello {
        addr: SocketAddr,
        source: StreamError,
    },
    #[error("connection to {addr} was replaced by a simultaneous one")]
    Duplicate { addr: SocketAddr },
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    #[error("{addr} is this node itself")]
    SelfDial { addr: SocketAddr },
    #[error("the node is shutting down")]
    Shutdown,
}

/// Most addresses we keep for one peer (mDNS records are unauthenticated hints).
const MAX_ADDRS: usize = 8;
/// A connection that lived shorter than this does not reset the redial backoff.
const STABLE: Duration = Duration::from_secs(10);
/// A peer may re-send hello (a rename) at most this often per connection.
const HELLO_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Clone)]
struct Conn {
    conn: quinn::Connection,
    outgoing: bool,
}

#[derive(Default)]
struct PeerEntry {
    info: NodeInfo,
    addrs: Vec<SocketAddr>,
    conn: Option<Conn>,
    in_mdns: bool,
    /// Why the last connection ended; cleared by the next connection.
    gone: Option<LostReason>,
    /// An mDNS supervisor task is dialing this peer.
    mdns_supervised: bool,
    /// A manual (`--connect`) supervisor keeps this peer.
    manual: bool,
    last_hello: Option<Instant>,
}

impl PeerEntry {
    fn live(&self) -> Option<&Conn> {
        self.conn
            .as_ref()
            .filter(|c| c.conn.close_reason().is_none())
    }

    fn state(&self) -> PeerState {
        match (&self.conn, self.gone, self.in_mdns) {
            (Some(_), _, _) => PeerState::Connected,
            (None, None, true) => PeerState::Discovered,
            _ => PeerState::Lost,
        }
    }

    fn snapshot(&self, id: PeerId) -> PeerSnapshot {
        PeerSnapshot {
            id,
            short_id: id.short(),
            name: self.info.name.clone(),
            os: self.info.os.clone(),
            version: self.info.version.clone(),
            addrs: self.addrs.clone(),
            state: self.state(),
            rtt_ms: self
                .conn
                .as_ref()
                .map(|c| c.conn.rtt().as_secs_f64() * 1000.0),
            discovered: self.in_mdns,
        }
    }

    /// The part of a snapshot whose change is worth an event (RTT is not).
    fn view(&self) -> (PeerState, NodeInfo, Vec<SocketAddr>) {
        (self.state(), self.info.clone(), self.addrs.clone())
    }
}

/// What became of a connection offered to [`Inner::install`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Installed {
    /// Now the peer's connection.
    New,
    /// Already was (a repeated hello).
    Same,
    /// Closed: it lost the tie-break, or was dead already.
    Lost,
}

struct Inner {
    identity: Arc<Identity>,
    cfg: P2pConfig,
    endpoint: quinn::Endpoint,
    router: Router,
    info: Mutex<NodeInfo>,
    peers: Mutex<HashMap<PeerId, PeerEntry>>,
    /// One dial at a time per peer; later callers reuse the first one's connection.
    dialing: Mutex<HashMap<PeerId, Arc<tokio::sync::Mutex<()>>>>,
    events: broadcast::Sender<P2pEvent>,
    discovery: Mutex<Option<Discovery>>,
    shutdown: watch::Sender<bool>,
}

/// A turn at dialing a known peer. The last turn out, however it ends (a connection found,
/// a result, or the dial dropped mid-way), removes the peer's slot from `dialing`.
struct DialTurn<'a> {
    node: &'a Inner,
    id: PeerId,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for DialTurn<'_> {
    fn drop(&mut self) {
        let mut dialing = lock(&self.node.dialing);
        // Only the map's entry and our guard hold the slot: nobody is waiting behind us.
        if dialing
            .get(&self.id)
            .is_some_and(|s| Arc::strong_count(s) <= 2)
        {
            dialing.remove(&self.id);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropped without `shutdown()`: still stop serving (the accept loop ends on close).
        self.endpoint.close(CloseCode::Goodbye.var_int(), b"bye");
    }
}

/// Handle to the running layer; cheap to clone.
#[derive(Clone)]
pub struct P2p {
    inner: Arc<Inner>,
}

impl P2p {
    /// Binds the endpoint, starts announcing, browsing and accepting. `protocols` are served
    /// beside the built-in ping and hello.
    pub async fn start(
        identity: Arc<Identity>,
        cfg: P2pConfig,
        protocols: Vec<Arc<dyn Protocol>>,
    ) -> Result<P2p, P2pError> {
        let endpoint = endpoint::bind(cfg.listen, &identity, &cfg.limits, cfg.max_connections)?;
        let (events, _) = broadcast::channel(1024);
        let mut duplicate = None;
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let mut router = Router::default();
            let builtin: [Arc<dyn Protocol>; 2] = [
                Arc::new(PingProtocol),
                Arc::new(HelloProtocol(weak.clone())),
            ];
            for p in builtin.into_iter().chain(protocols) {
                if let Err(id) = router.add(p) {
                    duplicate = Some(id);
                }
            }
            Inner {
                info: Mutex::new(cfg.info.clone().sanitized()),
                identity,
                cfg,
                endpoint,
                router,
                peers: Mutex::default(),
                dialing: Mutex::default(),
                events,
                discovery: Mutex::default(),
                shutdown: watch::channel(false).0,
            }
        });
        if let Some(id) = duplicate {
            return Err(P2pError::DuplicateProtocol(id));
        }
        if inner.cfg.discovery.enabled {
            let port = inner
                .endpoint
                .local_addr()
                .map_err(|source| EndpointError::Bind {
                    addr: inner.cfg.listen,
                    source,
                })?
                .port();
            let (d, rx) = Discovery::start(
                &inner.cfg.discovery,
                inner.identity.peer_id(),
                port,
                &inner.info(),
            )?;
            *lock(&inner.discovery) = Some(d);
            tokio::spawn(discovery_loop(Arc::downgrade(&inner), rx));
        }
        // Last, so a failure above leaves nothing running.
        tokio::spawn(accept_loop(Arc::downgrade(&inner), inner.endpoint.clone()));
        Ok(P2p { inner })
    }

    pub fn id(&self) -> PeerId {
        self.inner.identity.peer_id()
    }

    pub fn identity(&self) -> &Arc<Identity> {
        &self.inner.identity
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    pub fn info(&self) -> NodeInfo {
        self.inner.info()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<P2pEvent> {
        self.inner.events.subscribe()
    }

    /// Every peer we know that is nearby (discovered or connected), sorted by name.
    pub fn peers(&self) -> Vec<PeerSnapshot> {
        let mut v: Vec<_> = lock(&self.inner.peers)
            .iter()
            .filter(|(_, e)| e.state() != PeerState::Lost)
            .map(|(id, e)| e.snapshot(*id))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        v
    }

    pub fn peer(&self, id: &PeerId) -> Option<PeerSnapshot> {
        lock(&self.inner.peers).get(id).map(|e| e.snapshot(*id))
    }

    /// The live connection to `id`, if any.
    pub fn connection(&self, id: &PeerId) -> Option<quinn::Connection> {
        self.inner.live_conn(id)
    }

    /// A connection to `id`: the live one, or a fresh dial to its known addresses.
    pub async fn connect_peer(&self, id: &PeerId) -> Result<quinn::Connection, DialError> {
        if let Some(c) = self.connection(id) {
            return Ok(c);
        }
        let addrs = lock(&self.inner.peers)
            .get(id)
            .map(|e| e.addrs.clone())
            .unwrap_or_default();
        let mut last = DialError::Connect {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            reason: "no known address".into(),
        };
        for addr in addrs {
            match self.inner.clone().dial(addr, Some(*id)).await {
                Ok((_, c)) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Dials `addr` once (optionally insisting on the identity found there).
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<PeerId, DialError> {
        self.inner
            .clone()
            .dial(addr, expected)
            .await
            .map(|(id, _)| id)
    }

    /// Keeps a connection to `addr` up for the node's lifetime (manual peers, `--connect`).
    pub fn add_manual_peer(&self, addr: SocketAddr, expected: Option<PeerId>) {
        tokio::spawn(manual_supervisor(
            Arc::downgrade(&self.inner),
            addr,
            expected,
        ));
    }

    /// Pings a peer over its connection (dialing if needed).
    pub async fn ping(
        &self,
        id: &PeerId,
        count: u32,
        interval: Duration,
    ) -> Result<Vec<Duration>, PingFailure> {
        let conn = self.connect_peer(id).await?;
        Ok(ping::ping(&conn, count, interval).await?)
    }

    /// Changes our display name: re-announced over mDNS and sent to every connected peer.
    pub fn set_name(&self, name: &str) {
        let info = {
            let mut info = lock(&self.inner.info);
            *info = NodeInfo {
                name: name.to_string(),
                ..info.clone()
            }
            .sanitized();
            info.clone()
        };
        if let Some(d) = lock(&self.inner.discovery).as_ref() {
            if let Err(e) = d.announce(&info) {
                tracing::warn!(error = %e, "could not re-announce the new name");
            }
        }
        let conns: Vec<_> = lock(&self.inner.peers)
            .values()
            .filter_map(|e| e.live().cloned())
            .collect();
        for c in conns {
            let (info, weak) = (info.clone(), Arc::downgrade(&self.inner));
            tokio::spawn(async move {
                // Bounded by hello's own timeout. A peer refuses hellos closer than
                // HELLO_INTERVAL on one connection (flood guard), so a rename right after the
                // connection's first hello waits its turn instead of being lost.
                for _ in 0..3 {
                    match hello::exchange(&c.conn, &info).await {
                        Ok(theirs) => {
                            if let (Some(inner), Some(id)) =
                                (weak.upgrade(), tls::peer_id_of(&c.conn))
                            {
                                inner.update(id, |e| e.info = theirs);
                            }
                            return;
                        }
                        Err(StreamError::Peer(crate::wire::Code::Busy)) => {
                            tokio::time::sleep(HELLO_INTERVAL).await
                        }
                        Err(_) => return,
                    }
                }
            });
        }
    }

    /// Leaves cleanly: mDNS goodbye, every connection closed with `Goodbye`, packets flushed.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let d = lock(&self.inner.discovery).take();
        let bye = async {
            // Refuse new handshakes outright: an unanswered `Incoming` would keep the endpoint
            // (and its port) alive after we are gone.
            self.inner.endpoint.set_server_config(None);
            self.inner
                .endpoint
                .close(CloseCode::Goodbye.var_int(), b"bye");
            let _ =
                tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
        };
        match d {
            Some(d) => {
                tokio::join!(d.shutdown(), bye);
            }
            None => bye.await,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PingFailure {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("ping failed: {0}")]
    Stream(#[from] StreamError),
}

/// Closes a connection that never became a peer's connection (hello failed, dial abandoned).
struct CloseOnDrop(Option<quinn::Connection>);

impl CloseOnDrop {
    fn keep(mut self) -> Option<quinn::Connection> {
        self.0.take()
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.close(CloseCode::HelloTimeout.var_int(), b"abandoned");
        }
    }
}

impl Inner {
    fn info(&self) -> NodeInfo {
        lock(&self.info).clone()
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn live_conn(&self, id: &PeerId) -> Option<quinn::Connection> {
        lock(&self.peers).get(id)?.live().map(|c| c.conn.clone())
    }

    /// Applies `f` to a peer's entry and emits the event its change amounts to.
    fn update<R>(&self, id: PeerId, f: impl FnOnce(&mut PeerEntry) -> R) -> R {
        let (r, event) = {
            let mut peers = lock(&self.peers);
            let entry = peers.entry(id).or_default();
            let before = entry.view();
            let r = f(entry);
            let after = entry.view();
            let event = match (before.0, after.0) {
                _ if before == after => None,
                (PeerState::Lost, PeerState::Lost) => None,
                (PeerState::Lost, _) => Some(P2pEvent::PeerFound(entry.snapshot(id))),
                (_, PeerState::Lost) => Some(P2pEvent::PeerLost {
                    peer: entry.snapshot(id),
                    reason: entry.gone.unwrap_or(LostReason::Left),
                }),
                _ => Some(P2pEvent::PeerChanged(entry.snapshot(id))),
            };
            // Forget peers nobody can reach any more.
            if after.0 == PeerState::Lost
                && !entry.in_mdns
                && entry.conn.is_none()
                && !entry.mdns_supervised
                && !entry.manual
            {
                peers.remove(&id);
            }
            (r, event)
        };
        if let Some(ev) = event {
            tracing::debug!(?ev, "peer event");
            let _ = self.events.send(ev);
        }
        r
    }

    /// Dials, proves identity, exchanges hello, and installs the connection. Concurrent dials to
    /// the same known peer share one attempt.
    async fn dial(
        self: Arc<Self>,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<(PeerId, quinn::Connection), DialError> {
        if self.is_shutting_down() {
            return Err(DialError::Shutdown);
        }
        let _turn = match expected {
            Some(id) => {
                let turn = self.dial_turn(id).await;
                if let Some(c) = self.live_conn(&id) {
                    return Ok((id, c));
                }
                Some(turn)
            }
            None => None,
        };
        self.clone().dial_once(addr, expected).await
    }

    /// Waits for the turn at dialing `id`: dials to one peer, and the hellos that must not race
    /// them (see `on_hello`), go one at a time.
    async fn dial_turn(&self, id: PeerId) -> DialTurn<'_> {
        let slot = lock(&self.dialing).entry(id).or_default().clone();
        DialTurn {
            node: self,
            id,
            _guard: slot.lock_owned().await,
        }
    }

    async fn dial_once(
        self: Arc<Self>,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<(PeerId, quinn::Connection), DialError> {
        let (crypto, found) = tls::client_crypto(&self.identity, expected)?;
        let mut cfg = quinn::ClientConfig::new(crypto);
        if let Ok(t) = endpoint::transport_config(&self.cfg.limits) {
            cfg.transport_config(t);
        }
        let connecting = self
            .endpoint
            .connect_with(cfg, addr, tls::SERVER_NAME)
            .map_err(|e| DialError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let timeout = self.cfg.connect_timeout;
        let conn = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => return Err(DialError::Timeout { addr, timeout }),
            Ok(Err(e)) => {
                let found = *lock(&found);
                return Err(match (expected, found) {
                    (Some(expected), Some(found)) if expected != found => {
                        DialError::IdentityMismatch {
                            addr,
                            expected,
                            found,
                        }
                    }
                    _ => DialError::Connect {
                        addr,
                        reason: e.to_string(),
                    },
                });
            }
            Ok(Ok(c)) => c,
        };
        let guard = CloseOnDrop(Some(conn.clone()));
        let Some(id) = tls::peer_id_of(&conn) else {
            return Err(DialError::Connect {
                addr,
                reason: "peer presented no identity".into(),
            });
        };
        if id == self.identity.peer_id() {
            return Err(DialError::SelfDial { addr });
        }
        // An unpinned dial takes its turn now that it knows whom it reached (a pinned one took
        // it before dialing), then keeps a connection the peer already has: a second one from
        // us would replace it on both sides (see `install`), under whatever runs on it. The
        // new one closes unused.
        let _turn = match expected {
            Some(_) => None,
            None => {
                let turn = self.dial_turn(id).await;
                if let Some(live) = self.live_conn(&id) {
                    return Ok((id, live));
                }
                Some(turn)
            }
        };
        tokio::spawn(serve(self.router.clone(), id, conn.clone()));
        let info = match tokio::time::timeout(timeout, hello::exchange(&conn, &self.info())).await {
            Ok(Ok(info)) => info,
            // Both sides dialed at once and the peer kept its own connection: use that one.
            Ok(Err(_)) if closed_as_duplicate(&conn) => return self.surviving(id, addr).await,
            Ok(Err(source)) => return Err(DialError::Hello { addr, source }),
            Err(_) => return Err(DialError::Timeout { addr, timeout }),
        };
        match self.install(id, &conn, info) {
            Installed::New | Installed::Same => {
                guard.keep();
                Ok((id, conn))
            }
            // The peer's own dial won the tie-break; use that one.
            Installed::Lost => self
                .live_conn(&id)
                .map(|c| (id, c))
                .ok_or(DialError::Duplicate { addr }),
        }
    }

    /// The connection that won a tie-break against ours, once its hello has been recorded.
    async fn surviving(
        &self,
        id: PeerId,
        addr: SocketAddr,
    ) -> Result<(PeerId, quinn::Connection), DialError> {
        let deadline = tokio::time::Instant::now() + self.cfg.connect_timeout;
        while tokio::time::Instant::now() < deadline {
            if let Some(c) = self.live_conn(&id) {
                return Ok((id, c));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(DialError::Duplicate { addr })
    }

    /// Records a connection that has completed hello, settling duplicates: the connection dialed
    /// by the smaller id wins; between two dialed by the same node, the newer one. A node dials
    /// a peer it already has a live connection to only in a race (see `dial_once`), so a second
    /// connection from the same dialer means the dialer no longer has the first: it restarted
    /// (a crash leaves the first open here until the idle timeout) or its side timed out first.
    /// Keeping the older one refused a restarted peer's every dial until the stale connection
    /// timed out: a sender killed and restarted with `transfers resume` waited 4–5 s more.
    fn install(
        self: &Arc<Self>,
        id: PeerId,
        conn: &quinn::Connection,
        info: NodeInfo,
    ) -> Installed {
        if conn.close_reason().is_some() {
            return Installed::Lost;
        }
        let me = self.identity.peer_id();
        let new = Conn {
            conn: conn.clone(),
            outgoing: conn.side().is_client(),
        };
        let (outcome, loser) = self.update(id, |e| {
            e.info = info;
            if !e.in_mdns {
                e.addrs = vec![conn.remote_address()];
            }
            let (outcome, loser) = match e.live() {
                Some(old) if old.conn.stable_id() == conn.stable_id() => (Installed::Same, None),
                Some(old) => {
                    let dialer = |c: &Conn| if c.outgoing { me } else { id };
                    if dialer(&new) <= dialer(old) {
                        (Installed::New, Some(old.conn.clone()))
                    } else {
                        (Installed::Lost, Some(conn.clone()))
                    }
                }
                None => (Installed::New, None),
            };
            if outcome == Installed::New {
                e.conn = Some(new);
                e.gone = None;
            }
            (outcome, loser)
        });
        if let Some(c) = loser {
            c.close(CloseCode::Duplicate.var_int(), b"duplicate");
        }
        if outcome == Installed::New {
            let weak = Arc::downgrade(self);
            let conn = conn.clone();
            tokio::spawn(async move {
                let reason = conn.closed().await;
                if let Some(inner) = weak.upgrade() {
                    inner.on_closed(id, conn.stable_id(), reason);
                }
            });
        }
        outcome
    }

    fn on_closed(&self, id: PeerId, stable_id: usize, reason: quinn::ConnectionError) {
        let lost = match &reason {
            quinn::ConnectionError::ApplicationClosed(c)
                if c.error_code == CloseCode::Goodbye.var_int() =>
            {
                LostReason::Left
            }
            quinn::ConnectionError::LocallyClosed => LostReason::Left,
            quinn::ConnectionError::TimedOut => LostReason::TimedOut,
            _ => LostReason::ConnectionError,
        };
        self.update(id, |e| {
            // A connection that was already replaced changes nothing.
            if e.conn
                .as_ref()
                .is_some_and(|c| c.conn.stable_id() == stable_id)
            {
                tracing::info!(peer = %id.short(), %reason, "connection closed");
                e.conn = None;
                e.gone = Some(lost);
            }
        });
    }
}

impl HelloSink for Inner {
    fn on_hello<'a>(
        self: Arc<Self>,
        conn: &'a quinn::Connection,
        info: NodeInfo,
    ) -> BoxFuture<'a, Result<NodeInfo, StreamError>> {
        Box::pin(async move {
            let id = tls::peer_id_of(conn).ok_or(StreamError::Local(
                crate::wire::Code::Refused,
                "no identity",
            ))?;
            let (flooding, same) = self.update(id, |e| {
                let same = e
                    .live()
                    .is_some_and(|c| c.conn.stable_id() == conn.stable_id());
                let now = Instant::now();
                let recent = e
                    .last_hello
                    .is_some_and(|t| now.duration_since(t) < HELLO_INTERVAL);
                e.last_hello = Some(now);
                (same && recent, same)
            });
            if flooding {
                return Err(StreamError::Local(
                    crate::wire::Code::Busy,
                    "hello too often",
                ));
            }
            // A new connection dialed by the larger id loses to one we dial (see `install`).
            // Were our own dial to this peer under way and this connection answered now, the
            // peer would use it (an offer, say) until our dial replaced it and cut what runs
            // on it. So it waits for that dial's turn: once ours is in, this one loses before
            // the peer ever had it. Bounded, since a dial to a dead address takes its timeout.
            let _turn = if !same && self.identity.peer_id() < id {
                let hold = self.cfg.connect_timeout / 2;
                tokio::time::timeout(hold, self.dial_turn(id)).await.ok()
            } else {
                None
            };
            self.install(id, conn, info);
            Ok(self.info())
        })
    }
}

/// Serves every stream the peer opens on `conn`.
async fn serve(router: Router, id: PeerId, conn: quinn::Connection) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        let (router, conn) = (router.clone(), conn.clone());
        tokio::spawn(async move { router.dispatch(id, conn, send, recv).await });
    }
}

async fn accept_loop(weak: Weak<Inner>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        let Some(inner) = weak.upgrade() else { break };
        // Counts handshaking and hello-less connections too, not just installed ones.
        if endpoint.open_connections() >= inner.cfg.max_connections {
            tracing::warn!(remote = %incoming.remote_address(), "refused connection: too many");
            incoming.refuse();
            continue;
        }
        tokio::spawn(accept_one(inner, incoming));
    }
}

async fn accept_one(inner: Arc<Inner>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(inner.cfg.connect_timeout, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return tracing::info!(%remote, error = %e, "incoming handshake failed"),
        Err(_) => return tracing::info!(%remote, "incoming handshake timed out"),
    };
    let Some(id) = tls::peer_id_of(&conn) else {
        return;
    };
    if id == inner.identity.peer_id() {
        return conn.close(CloseCode::SelfConnection.var_int(), b"self");
    }
    tracing::debug!(%remote, peer = %id.short(), "incoming connection");
    // A connection must introduce itself; otherwise it only holds resources.
    let (weak, wait) = (
        Arc::downgrade(&inner),
        inner.cfg.connect_timeout.saturating_mul(2),
    );
    let watched = conn.clone();
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        let Some(inner) = weak.upgrade() else { return };
        let installed = lock(&inner.peers)
            .get(&id)
            .and_then(|e| e.conn.as_ref())
            .is_some_and(|c| c.conn.stable_id() == watched.stable_id());
        if !installed && watched.close_reason().is_none() {
            tracing::info!(%remote, "closing connection that sent no hello");
            watched.close(CloseCode::HelloTimeout.var_int(), b"no hello");
        }
    });
    let router = inner.router.clone();
    drop(inner);
    serve(router, id, conn).await;
}

async fn discovery_loop(weak: Weak<Inner>, mut rx: tokio::sync::mpsc::Receiver<DiscoveryEvent>) {
    while let Some(ev) = rx.recv().await {
        let Some(inner) = weak.upgrade() else { break };
        match ev {
            DiscoveryEvent::Resolved {
                id,
                info,
                mut addrs,
            } => {
                addrs.truncate(MAX_ADDRS);
                let start = inner.update(id, |e| {
                    // While connected, the proven connection beats unauthenticated records.
                    if e.live().is_none() {
                        e.info = info;
                        e.addrs = addrs;
                    }
                    e.in_mdns = true;
                    !std::mem::replace(&mut e.mdns_supervised, true)
                });
                if start {
                    tokio::spawn(mdns_supervisor(weak.clone(), id));
                }
            }
            DiscoveryEvent::Removed { id } => inner.update(id, |e| {
                e.in_mdns = false;
                if e.conn.is_none() {
                    e.gone = Some(LostReason::Left);
                }
            }),
        }
    }
}

enum Step {
    Exit,
    Wait(quinn::Connection),
    Dial(Vec<SocketAddr>),
}

/// Keeps dialing an mDNS-announced peer while mDNS says it exists and we have no connection.
async fn mdns_supervisor(weak: Weak<Inner>, id: PeerId) {
    let mut backoff = Duration::from_millis(250);
    let mut first = true;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let max = inner.cfg.max_backoff;
        let shutting_down = inner.is_shutting_down();
        // Decide and, when leaving, clear the flag in one step, so a new mDNS record arriving
        // meanwhile either sees us running or starts a new supervisor.
        let step = inner.update(id, |e| {
            if !e.in_mdns || shutting_down {
                e.mdns_supervised = false;
                Step::Exit
            } else if let Some(c) = e.live() {
                Step::Wait(c.conn.clone())
            } else {
                Step::Dial(e.addrs.clone())
            }
        });
        match step {
            Step::Exit => return,
            Step::Wait(conn) => {
                drop(inner);
                let since = Instant::now();
                conn.closed().await;
                backoff = settle(since, backoff, max).await;
            }
            Step::Dial(addrs) => {
                // The larger id gives the smaller one a moment to dial first: fewer duplicates.
                if std::mem::take(&mut first) && inner.identity.peer_id() > id {
                    drop(inner);
                    tokio::time::sleep(Duration::from_millis(500).min(max)).await;
                    continue;
                }
                let mut ok = false;
                for addr in addrs {
                    match inner.clone().dial(addr, Some(id)).await {
                        Ok(_) => {
                            ok = true;
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(peer = %id.short(), %addr, error = %e, "dial failed")
                        }
                    }
                }
                drop(inner);
                if !ok {
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(max);
                }
            }
        }
    }
}

/// After a connection ends: a long-lived one resets the backoff; a short-lived one (a peer that
/// accepts and drops at once) waits it out, so nobody redials in a hot loop.
async fn settle(since: Instant, backoff: Duration, max: Duration) -> Duration {
    if since.elapsed() >= STABLE {
        Duration::from_millis(250)
    } else {
        tokio::time::sleep(backoff).await;
        backoff.saturating_mul(2).min(max)
    }
}

/// Keeps a connection to a manually given address up until shutdown.
async fn manual_supervisor(weak: Weak<Inner>, addr: SocketAddr, expected: Option<PeerId>) {
    let mut backoff = Duration::from_millis(250);
    let mut known = expected;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.is_shutting_down() {
            return;
        }
        let max = inner.cfg.max_backoff;
        // Whatever connection the peer has now (ours, or its own dial to us) will do.
        let live = known.and_then(|id| inner.live_conn(&id));
        let conn = match live {
            Some(c) => Ok(c),
            None => inner.clone().dial(addr, expected).await.map(|(id, c)| {
                known = Some(id);
                inner.update(id, |e| e.manual = true);
                c
            }),
        };
        drop(inner);
        match conn {
            Ok(c) => {
                let since = Instant::now();
                c.closed().await;
                backoff = settle(since, backoff, max).await;
            }
            Err(e @ (DialError::IdentityMismatch { .. } | DialError::SelfDial { .. })) => {
                tracing::warn!(error = %e, "manual peer refused");
                tokio::time::sleep(max).await;
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "manual dial failed");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(max);
            }
        }
    }
}

fn closed_as_duplicate(conn: &quinn::Connection) -> bool {
    matches!(conn.close_reason(), Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == CloseCode::Duplicate.var_int())
}
