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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::discovery::{Discovery, DiscoveryConfig, DiscoveryEvent};
use crate::endpoint::{self, EndpointError, TransportLimits};
use crate::hello::{self, HelloProtocol, HelloSink, NodeInfo};
use crate::identity::{Identity, PeerId};
use crate::ping::{self, PingProtocol};
use crate::router::{Protocol, Router};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    Discovered,
    Connected,
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerSnapshot {
    pub id: PeerId,
    pub short_id: String,
    pub name: String,
    pub os: String,
    pub version: String,
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
    #[error("the node is shutting down")]
    Shutdown,
}

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
    /// A supervisor task is dialing this peer's mDNS addresses.
    supervised: bool,
}

impl PeerEntry {
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

struct Inner {
    identity: Arc<Identity>,
    cfg: P2pConfig,
    endpoint: quinn::Endpoint,
    router: Router,
    info: Mutex<NodeInfo>,
    peers: Mutex<HashMap<PeerId, PeerEntry>>,
    events: broadcast::Sender<P2pEvent>,
    discovery: Mutex<Option<Discovery>>,
    shutdown: watch::Sender<bool>,
}

/// Handle to the running layer; cheap to clone.
#[derive(Clone)]
pub struct P2p {
    inner: Arc<Inner>,
}

impl P2p {
    /// Binds the endpoint, starts accepting, announcing and browsing. `protocols` are served
    /// beside the built-in ping and hello.
    pub async fn start(
        identity: Arc<Identity>,
        cfg: P2pConfig,
        protocols: Vec<Arc<dyn Protocol>>,
    ) -> Result<P2p, P2pError> {
        let endpoint = endpoint::bind(cfg.listen, &identity, &cfg.limits)?;
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new_cyclic(|weak| {
            let mut router = Router::default();
            router.add(Arc::new(PingProtocol));
            router.add(Arc::new(HelloProtocol(weak.clone())));
            for p in protocols {
                router.add(p);
            }
            Inner {
                info: Mutex::new(cfg.info.clone().sanitized()),
                identity,
                cfg,
                endpoint,
                router,
                peers: Mutex::default(),
                events,
                discovery: Mutex::default(),
                shutdown: watch::channel(false).0,
            }
        });
        tokio::spawn(accept_loop(inner.clone()));
        if inner.cfg.discovery.enabled {
            let port = inner
                .endpoint
                .local_addr()
                .map_err(|source| EndpointError::Bind {
                    addr: inner.cfg.listen,
                    source,
                })?
                .port();
            let info = inner.info();
            let (d, rx) =
                Discovery::start(&inner.cfg.discovery, inner.identity.peer_id(), port, &info)?;
            *lock(&inner.discovery) = Some(d);
            tokio::spawn(discovery_loop(Arc::downgrade(&inner), rx));
        }
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
            info.name = name.to_string();
            *info = info.clone().sanitized();
            info.clone()
        };
        if let Some(d) = lock(&self.inner.discovery).as_ref() {
            if let Err(e) = d.announce(&info) {
                tracing::warn!(error = %e, "could not re-announce the new name");
            }
        }
        let conns: Vec<_> = lock(&self.inner.peers)
            .values()
            .filter_map(|e| e.conn.clone())
            .collect();
        for c in conns {
            let info = info.clone();
            let inner = self.inner.clone();
            tokio::spawn(async move {
                if let Ok(theirs) = hello::exchange(&c.conn, &info).await {
                    if let Some(id) = tls::peer_id_of(&c.conn) {
                        inner.update(id, |e| e.info = theirs);
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks is a bug, but the data stays consistent enough
    // to keep serving other peers.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn info(&self) -> NodeInfo {
        lock(&self.info).clone()
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn live_conn(&self, id: &PeerId) -> Option<quinn::Connection> {
        let peers = lock(&self.peers);
        let c = peers.get(id)?.conn.as_ref()?;
        c.conn.close_reason().is_none().then(|| c.conn.clone())
    }

    fn connection_count(&self) -> usize {
        lock(&self.peers)
            .values()
            .filter(|e| e.conn.is_some())
            .count()
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
                && !entry.supervised
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

    /// Dials, proves identity, exchanges hello, and installs the connection.
    async fn dial(
        self: Arc<Self>,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<(PeerId, quinn::Connection), DialError> {
        if self.is_shutting_down() {
            return Err(DialError::Shutdown);
        }
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
        let Some(id) = tls::peer_id_of(&conn) else {
            return Err(DialError::Connect {
                addr,
                reason: "peer presented no identity".into(),
            });
        };
        tokio::spawn(serve(self.clone(), id, conn.clone()));
        let info = match tokio::time::timeout(timeout, hello::exchange(&conn, &self.info())).await {
            Ok(Ok(info)) => info,
            Ok(Err(source)) => return Err(DialError::Hello { addr, source }),
            Err(_) => return Err(DialError::Timeout { addr, timeout }),
        };
        if self.install(id, &conn, true, info) {
            Ok((id, conn))
        } else {
            // The peer's own dial won the tie-break; use that one.
            self.live_conn(&id)
                .map(|c| (id, c))
                .ok_or(DialError::Duplicate { addr })
        }
    }

    /// Records a connection that has completed hello. Returns false if it lost a tie-break
    /// against a live connection to the same peer (and was closed).
    fn install(
        self: &Arc<Self>,
        id: PeerId,
        conn: &quinn::Connection,
        outgoing: bool,
        info: NodeInfo,
    ) -> bool {
        let me = self.identity.peer_id();
        let (kept, closed) = self.update(id, |e| {
            e.info = info;
            let remote = conn.remote_address();
            if !e.addrs.contains(&remote) && !e.in_mdns {
                e.addrs.push(remote);
            }
            let new = Conn {
                conn: conn.clone(),
                outgoing,
            };
            match e.conn.take() {
                Some(old) if old.conn.stable_id() == conn.stable_id() => {
                    e.conn = Some(old);
                    (true, None)
                }
                Some(old) if old.conn.close_reason().is_none() => {
                    let dialer = |c: &Conn| if c.outgoing { me } else { id };
                    // Smaller dialer id wins; between two of the same dialer, the newer wins.
                    if dialer(&new) <= dialer(&old) {
                        e.conn = Some(new);
                        e.gone = None;
                        (true, Some(old.conn))
                    } else {
                        e.conn = Some(old);
                        (false, Some(conn.clone()))
                    }
                }
                _ => {
                    e.conn = Some(new);
                    e.gone = None;
                    (true, None)
                }
            }
        });
        if let Some(c) = closed {
            c.close(CloseCode::Duplicate.var_int(), b"duplicate");
        }
        if kept {
            let inner = self.clone();
            let conn = conn.clone();
            tokio::spawn(async move {
                let reason = conn.closed().await;
                inner.on_closed(id, conn.stable_id(), reason);
            });
        }
        kept
    }

    fn on_closed(&self, id: PeerId, stable_id: usize, reason: quinn::ConnectionError) {
        let lost = match &reason {
            quinn::ConnectionError::ApplicationClosed(c)
                if c.error_code == CloseCode::Duplicate.var_int() =>
            {
                return
            }
            quinn::ConnectionError::ApplicationClosed(_) => LostReason::Left,
            quinn::ConnectionError::LocallyClosed => LostReason::Left,
            quinn::ConnectionError::TimedOut => LostReason::TimedOut,
            _ => LostReason::ConnectionError,
        };
        tracing::info!(peer = %id.short(), %reason, "connection closed");
        self.update(id, |e| {
            if e.conn
                .as_ref()
                .is_some_and(|c| c.conn.stable_id() == stable_id)
            {
                e.conn = None;
                e.gone = Some(lost);
            }
        });
    }
}

impl HelloSink for Inner {
    fn on_hello(self: Arc<Self>, conn: &quinn::Connection, info: NodeInfo) -> NodeInfo {
        if let Some(id) = tls::peer_id_of(conn) {
            self.install(id, conn, false, info);
        }
        self.info()
    }
}

/// Serves every stream the peer opens on `conn`.
async fn serve(inner: Arc<Inner>, id: PeerId, conn: quinn::Connection) {
    let router = inner.router.clone();
    drop(inner);
    while let Ok((send, recv)) = conn.accept_bi().await {
        let router = router.clone();
        let conn = conn.clone();
        tokio::spawn(async move { router.dispatch(id, conn, send, recv).await });
    }
}

async fn accept_loop(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let incoming = tokio::select! {
            i = inner.endpoint.accept() => i,
            _ = shutdown.changed() => None,
        };
        let Some(incoming) = incoming else { break };
        if inner.connection_count() >= inner.cfg.max_connections {
            tracing::warn!(remote = %incoming.remote_address(), "refused connection: too many");
            incoming.refuse();
            continue;
        }
        let inner = inner.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match tokio::time::timeout(inner.cfg.connect_timeout, incoming).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    return tracing::info!(%remote, error = %e, "incoming handshake failed")
                }
                Err(_) => return tracing::info!(%remote, "incoming handshake timed out"),
            };
            let Some(id) = tls::peer_id_of(&conn) else {
                return;
            };
            tracing::debug!(%remote, peer = %id.short(), "incoming connection");
            // A connection must introduce itself; otherwise it only holds resources.
            let watchdog = {
                let (weak, conn, wait) = (
                    Arc::downgrade(&inner),
                    conn.clone(),
                    inner.cfg.connect_timeout * 2,
                );
                async move {
                    tokio::time::sleep(wait).await;
                    let Some(inner) = weak.upgrade() else { return };
                    let installed = lock(&inner.peers)
                        .get(&id)
                        .and_then(|e| e.conn.as_ref())
                        .is_some_and(|c| c.conn.stable_id() == conn.stable_id());
                    if !installed && conn.close_reason().is_none() {
                        tracing::info!(%remote, "closing connection that sent no hello");
                        conn.close(CloseCode::HelloTimeout.var_int(), b"no hello");
                    }
                }
            };
            tokio::spawn(watchdog);
            serve(inner, id, conn).await;
        });
    }
}

async fn discovery_loop(
    weak: std::sync::Weak<Inner>,
    mut rx: tokio::sync::mpsc::Receiver<DiscoveryEvent>,
) {
    while let Some(ev) = rx.recv().await {
        let Some(inner) = weak.upgrade() else { break };
        match ev {
            DiscoveryEvent::Resolved { id, info, addrs } => {
                let start = inner.update(id, |e| {
                    if e.conn.is_none() {
                        e.info = info;
                    }
                    e.addrs = addrs;
                    e.in_mdns = true;
                    !std::mem::replace(&mut e.supervised, true)
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

/// Keeps dialing an mDNS-announced peer while mDNS says it exists and we have no connection.
async fn mdns_supervisor(weak: std::sync::Weak<Inner>, id: PeerId) {
    let mut backoff = Duration::from_millis(250);
    let mut first = true;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let (in_mdns, addrs, conn) = match lock(&inner.peers).get(&id) {
            Some(e) => (e.in_mdns, e.addrs.clone(), e.conn.clone()),
            None => (false, vec![], None),
        };
        if !in_mdns || inner.is_shutting_down() {
            inner.update(id, |e| e.supervised = false);
            return;
        }
        if let Some(c) = conn {
            drop(inner);
            c.conn.closed().await;
            backoff = Duration::from_millis(250);
            continue;
        }
        // The larger id gives the smaller one a moment to dial first: fewer duplicate handshakes.
        if first && inner.identity.peer_id() > id {
            first = false;
            let max = inner.cfg.max_backoff;
            drop(inner);
            tokio::time::sleep(Duration::from_millis(500).min(max)).await;
            continue;
        }
        first = false;
        let mut ok = false;
        for addr in addrs {
            match inner.clone().dial(addr, Some(id)).await {
                Ok(_) => {
                    ok = true;
                    break;
                }
                Err(e) => tracing::debug!(peer = %id.short(), %addr, error = %e, "dial failed"),
            }
        }
        let max = inner.cfg.max_backoff;
        drop(inner);
        if !ok {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(max);
        }
    }
}

/// Keeps a connection to a manually given address up until shutdown.
async fn manual_supervisor(
    weak: std::sync::Weak<Inner>,
    addr: SocketAddr,
    expected: Option<PeerId>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.is_shutting_down() {
            return;
        }
        let max = inner.cfg.max_backoff;
        match inner.clone().dial(addr, expected).await {
            Ok((id, conn)) => {
                inner.update(id, |e| e.supervised = true);
                drop(inner);
                conn.closed().await;
                backoff = Duration::from_millis(250);
                if let Some(inner) = weak.upgrade() {
                    // Whichever connection replaced this one (or none) decides the state.
                    if let Some(c) = inner.live_conn(&id) {
                        drop(inner);
                        c.closed().await;
                    }
                }
            }
            Err(e @ DialError::IdentityMismatch { .. }) => {
                tracing::warn!(error = %e, "manual peer refused");
                drop(inner);
                tokio::time::sleep(max).await;
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "manual dial failed");
                drop(inner);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max);
            }
        }
    }
}
