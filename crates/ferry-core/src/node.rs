//! The node: one per data dir (enforced by a lock file), owning identity and peer-to-peer layer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_p2p::{DiscoveryConfig, Identity, NodeInfo, P2p, P2pConfig, PeerId, PeerSnapshot};
use tokio::sync::broadcast;

use crate::event::Event;
use crate::library::Libraries;
use crate::spacedrop::store::Store;
use crate::spacedrop::{LocalSendConfig, Spacedrop, SpacedropConfig};
use crate::target::{Target, TargetError};

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// Display name; defaults to the host name.
    pub name: Option<String>,
    pub listen: SocketAddr,
    pub discovery: bool,
    /// mDNS interface allow-list; empty means all.
    pub interfaces: Vec<String>,
    /// Peers to keep connected to by address (for networks without multicast).
    pub connect: Vec<(SocketAddr, Option<PeerId>)>,
    pub spacedrop: SpacedropConfig,
    /// Which finished transfers the store keeps (and listings show).
    pub history: crate::spacedrop::History,
    /// Pick up outgoing transfers a previous run left unfinished (off for one-shot commands).
    pub resume_transfers: bool,
    /// How long a pairing code waits for its user's confirmation.
    pub pair_timeout: Duration,
    /// Index and watch the libraries' locations (off for one-shot commands).
    pub index: bool,
    /// Talk to LocalSend devices too (off unless set: it listens on LocalSend's fixed port).
    /// Its multicast follows `discovery` and `interfaces`.
    pub localsend: Option<LocalSendConfig>,
    /// Copy members' thumbnails here in the background (a node that indexes).
    pub previews: crate::library::media::PreviewConfig,
    /// Let front ends on this machine attach through `ferry.sock` in the data dir (the app
    /// and `ferry node` do; one-shot commands do not).
    pub attachable: bool,
}

impl NodeConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.into(),
            name: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            discovery: true,
            interfaces: vec![],
            connect: vec![],
            spacedrop: SpacedropConfig::default(),
            history: Default::default(),
            resume_transfers: true,
            pair_timeout: Duration::from_secs(120),
            index: true,
            localsend: None,
            previews: Default::default(),
            attachable: false,
        }
    }

    /// `$XDG_DATA_HOME/ferry` (or the platform's equivalent).
    pub fn default_data_dir() -> PathBuf {
        dirs::data_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("ferry")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another Ferry node is already running with data dir {0} (use --data-dir for a second node)")]
    Locked(PathBuf),
    #[error(transparent)]
    Identity(#[from] ferry_p2p::identity::IdentityError),
    #[error(transparent)]
    P2p(#[from] ferry_p2p::node::P2pError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Dial(#[from] ferry_p2p::DialError),
    #[error(transparent)]
    Ping(#[from] ferry_p2p::PingFailure),
    #[error(transparent)]
    Store(#[from] crate::spacedrop::store::StoreError),
    #[error(transparent)]
    Library(#[from] crate::library::LibraryError),
}

/// A running node. Dropping it without [`Node::shutdown`] still closes everything, but without
/// saying goodbye to peers.
pub struct Node {
    p2p: P2p,
    spacedrop: Spacedrop,
    libraries: Libraries,
    cfg: NodeConfig,
    events: broadcast::Sender<Event>,
    /// Front ends attached over the local socket (while the node runs).
    local: std::sync::Mutex<Option<crate::control::local::LocalServer>>,
    /// Held for the node's lifetime: the OS releases the lock when the process ends, even on a crash.
    _lock: std::fs::File,
}

impl Node {
    pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
        let lock = lock_data_dir(&cfg.data_dir)?;
        let identity = Arc::new(Identity::load_or_create(&cfg.data_dir)?);
        let name = cfg
            .name
            .clone()
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
        let p2p_cfg = P2pConfig {
            listen: cfg.listen,
            info: NodeInfo {
                name,
                os: std::env::consts::OS.into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            discovery: DiscoveryConfig {
                enabled: cfg.discovery,
                interfaces: cfg.interfaces.clone(),
            },
            ..Default::default()
        };
        let store = Store::open(&cfg.data_dir.join("ferry.db"))?;
        let (events, _) = broadcast::channel(1024);
        let spacedrop = Spacedrop::new(store, cfg.spacedrop.clone(), cfg.history, events.clone());
        let libraries = Libraries::new(
            &cfg.data_dir,
            identity.clone(),
            events.clone(),
            cfg.pair_timeout,
        )?;
        let mut protocols = spacedrop.protocols();
        protocols.extend(libraries.protocols());
        let p2p = P2p::start(identity, p2p_cfg, protocols).await?;
        let mut rx = p2p.subscribe();
        let tx = events.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => {
                        let _ = tx.send(e.into());
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(n, "event stream lagged")
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        for (addr, pin) in &cfg.connect {
            p2p.add_manual_peer(*addr, *pin);
        }
        spacedrop.attach(p2p.clone(), cfg.resume_transfers);
        if let Some(ls) = localsend_config(&cfg) {
            // Another LocalSend app may hold the port: Ferry's own protocols still run.
            let alias = p2p.info().name;
            if let Err(e) = spacedrop.start_localsend(&cfg.data_dir, &alias, ls).await {
                tracing::warn!(error = %e, "LocalSend is off");
            }
        }
        libraries.attach(p2p.clone());
        // The one copy of the node's parts the command surface runs on (members' sessions
        // and front ends alike: `Node::engine`).
        libraries.set_live(crate::control::Live {
            p2p: p2p.clone(),
            spacedrop: spacedrop.clone(),
            discovery: cfg.discovery,
        });
        if cfg.index {
            libraries.contents().start(libraries.ids());
            libraries.start_previews(cfg.previews);
        }
        let node = Node {
            p2p,
            spacedrop,
            libraries,
            cfg,
            events,
            local: std::sync::Mutex::new(None),
            _lock: lock,
        };
        if node.cfg.attachable {
            match crate::control::local::start(
                node.engine(),
                node.events.clone(),
                &node.cfg.data_dir,
            ) {
                Ok(server) => *ferry_util::lock(&node.local) = Some(server),
                // A data dir whose path is too long for a socket, say: the node runs, alone.
                Err(e) => tracing::warn!(error = %e, "front ends cannot attach to this node"),
            }
        }
        Ok(node)
    }

    /// The event that describes this node; front ends print it first.
    pub fn started_event(&self) -> Event {
        let listen = self.p2p.local_addr().unwrap_or(self.cfg.listen);
        Event::NodeStarted {
            id: self.id(),
            short_id: self.id().short(),
            name: self.p2p.info().name,
            listen,
            discovery: self.cfg.discovery,
        }
    }

    pub fn id(&self) -> PeerId {
        self.p2p.id()
    }

    pub fn name(&self) -> String {
        self.p2p.info().name
    }

    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.p2p.local_addr()
    }

    pub fn p2p(&self) -> &P2p {
        &self.p2p
    }

    pub fn spacedrop(&self) -> &Spacedrop {
        &self.spacedrop
    }

    pub fn libraries(&self) -> &Libraries {
        &self.libraries
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn peers(&self) -> Vec<PeerSnapshot> {
        self.p2p.peers()
    }

    pub fn set_name(&self, name: &str) {
        self.p2p.set_name(name);
    }

    /// Finds the peer a user means, dialing it if it was given by address. Names and prefixes
    /// are matched against nearby peers, waiting up to `wait` for discovery to find a match.
    pub async fn resolve(&self, target: &Target, wait: Duration) -> Result<PeerId, NodeError> {
        crate::control::resolve(&self.p2p, target, wait).await
    }

    /// The command surface of this node, as the app and attached front ends use it.
    pub fn engine(&self) -> crate::control::Engine {
        self.libraries
            .engine()
            .unwrap_or_else(|| crate::control::Engine::stopped(self.libraries.clone()))
    }

    /// Runs one command as this machine's user (every capability).
    pub async fn execute(
        &self,
        command: crate::control::Command,
    ) -> Result<crate::control::Reply, crate::control::Refusal> {
        self.engine()
            .execute(crate::control::Caller::Local, command)
            .await
    }

    /// Front ends attached over the local socket now.
    pub fn attached(&self) -> usize {
        ferry_util::lock(&self.local)
            .as_ref()
            .map_or(0, |s| s.sessions())
    }

    /// Round-trip times to a peer over its real connection.
    pub async fn ping(
        &self,
        peer: &PeerId,
        count: u32,
        interval: Duration,
    ) -> Result<Vec<Duration>, NodeError> {
        Ok(self.p2p.ping(peer, count, interval).await?)
    }

    /// Says goodbye to every peer and stops.
    pub async fn shutdown(&self) {
        // Attached front ends first: their sessions close (they hear it), the socket goes.
        ferry_util::lock(&self.local).take();
        self.libraries.contents().shutdown();
        self.spacedrop.shutdown().await;
        self.p2p.shutdown().await;
        let _ = self.events.send(Event::NodeStopped);
    }
}

/// LocalSend's settings with the node's discovery switch and interface allow-list applied
/// (names become the IPv4 addresses LocalSend's multicast joins on).
fn localsend_config(cfg: &NodeConfig) -> Option<LocalSendConfig> {
    let mut ls = cfg.localsend.clone()?;
    ls.discovery &= cfg.discovery;
    if ls.discovery && ls.interfaces.is_empty() && !cfg.interfaces.is_empty() {
        ls.interfaces = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| cfg.interfaces.contains(&i.name))
            .filter_map(|i| match i.ip() {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        if ls.interfaces.is_empty() {
            tracing::warn!(interfaces = ?cfg.interfaces, "LocalSend: no IPv4 address on the allowed interfaces; discovery off");
            ls.discovery = false;
        }
    }
    Some(ls)
}

fn lock_data_dir(dir: &Path) -> Result<std::fs::File, NodeError> {
    let err = |source| NodeError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("node.lock"))
        .map_err(err)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(NodeError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> NodeConfig {
        NodeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            discovery: false,
            ..NodeConfig::new(dir)
        }
    }

    #[tokio::test]
    async fn one_node_per_data_dir_and_identity_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = Node::start(cfg(dir.path())).await.unwrap();
        assert!(matches!(
            Node::start(cfg(dir.path())).await,
            Err(NodeError::Locked(_))
        ));
        let id = a.id();
        a.shutdown().await;
        drop(a);
        let b = Node::start(cfg(dir.path())).await.unwrap();
        assert_eq!(b.id(), id);
    }

    #[tokio::test]
    async fn resolves_by_address_then_by_name() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Node::start(NodeConfig {
            name: Some("alpha".into()),
            ..cfg(da.path())
        })
        .await
        .unwrap();
        let b = Node::start(NodeConfig {
            name: Some("beta".into()),
            ..cfg(db.path())
        })
        .await
        .unwrap();
        let by_addr = Target::Addr {
            addr: b.local_addr().unwrap(),
            pin: Some(b.id()),
        };
        assert_eq!(a.resolve(&by_addr, Duration::ZERO).await.unwrap(), b.id());
        let by_name = Target::Query("BETA".into());
        assert_eq!(a.resolve(&by_name, Duration::ZERO).await.unwrap(), b.id());
        assert_eq!(a.ping(&b.id(), 2, Duration::ZERO).await.unwrap().len(), 2);
        assert!(matches!(
            a.resolve(&Target::Query("gamma".into()), Duration::from_millis(50))
                .await,
            Err(NodeError::Target(_))
        ));
    }
}
