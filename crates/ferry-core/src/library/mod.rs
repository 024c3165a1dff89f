//! Libraries: named sets of trusted nodes, each one SQLite database, joined by pairing and
//! spoken to only through the tunnel.
//!
//! - [`wire`]: every message and the code/proof derivations.
//! - [`db`]: one library's database.
//! - `pair`: pairing (protocol 5): a short code both users compare, then the join.
//! - `tunnel`: the membership proof (protocol 6) in front of every library protocol.
//! - `members`: the member-list exchange that runs inside the tunnel.
//! - [`media`]: other members' thumbnails and files, for `ferry://` and downloads (spec:
//!   `media/PROTOCOL.md`).
//! - [`sync`]: library sync inside the tunnel: every member's locations and entries on every
//!   member (spec: `sync/PROTOCOL.md`).
//!
//! Trust model: every member is trusted with the member list (any member may add, by pairing,
//! or remove a node; the newest change wins). Nothing about libraries is published in mDNS:
//! members recognise each other by the identity the TLS handshake proves, which they find in
//! their member lists.

pub mod db;
pub mod wire;

pub mod contents;
pub mod media;
mod members;
mod pair;
pub mod sync;
mod tunnel;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ferry_p2p::{Identity, P2p, P2pEvent, PeerId, PeerState};
use ferry_util::{lock, unix_now};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};

use crate::event::Event;
pub use contents::{IndexProgress, LibraryContents};
use db::{DbError, LibraryDb};
pub use tunnel::TunnelError;
use wire::{LibraryId, MemberState, Snapshot, Stamp};

/// Pairing prompts a node shows at once; more requests are refused as busy.
const MAX_PAIRINGS: usize = 2;
/// A peer whose pairing failed here (rejected, mismatched, timed out) waits this long.
const PAIR_COOLDOWN: Duration = Duration::from_secs(5);

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    #[cfg_attr(feature = "specta", specta(type = String))]
    pub node: PeerId,
    pub short_id: String,
    pub name: String,
    pub state: MemberState,
    /// This node.
    pub me: bool,
    /// Unix seconds.
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub added: i64,
    /// Last proven contact over the tunnel (unix seconds).
    #[cfg_attr(feature = "specta", specta(type = Option<specta_typescript::Number>))]
    pub last_seen: Option<i64>,
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibraryInfo {
    pub id: String,
    pub name: String,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub created: i64,
    pub members: Vec<MemberInfo>,
    /// Another member removed this node: the library is read-only history here.
    pub removed: bool,
    /// Joined by pairing, not yet confirmed by the inviter over the tunnel.
    pub pending: bool,
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairingRole {
    /// This node asked the peer to join one of its libraries.
    Initiator,
    /// The peer asked this node to join.
    Responder,
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PairingState {
    Connecting,
    /// Show the code; the user confirms that the other device shows the same.
    Confirm {
        #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
        expires_in_ms: u64,
    },
    /// Confirmed here; waiting for the other device's user.
    WaitingForPeer,
    Done,
    Failed {
        reason: String,
    },
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingInfo {
    pub id: String,
    pub role: PairingRole,
    #[cfg_attr(feature = "specta", specta(type = String))]
    pub peer: PeerId,
    pub peer_short: String,
    pub peer_name: String,
    pub library: String,
    pub library_name: String,
    /// "123 456", once both nonces are out.
    pub code: Option<String>,
    #[serde(flatten)]
    pub state: PairingState,
}

#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("no library {0}")]
    NotFound(String),
    #[error("{0:?} matches several libraries: {1}")]
    Ambiguous(String, String),
    #[error("bad library name: {0}")]
    BadName(String),
    #[error("{0} is not a member of this library")]
    NotMember(String),
    #[error("this node was removed from the library")]
    RemovedHere,
    #[error("no open pairing {0} (answered already, or over)")]
    NoPairing(String),
    #[error("the node is not running")]
    NotRunning,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Index(#[from] ferry_index::IndexError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

struct LivePairing {
    info: PairingInfo,
    opened: Instant,
    answer: Option<oneshot::Sender<bool>>,
}

pub(crate) struct Shared {
    dir: PathBuf,
    contents: LibraryContents,
    identity: Arc<Identity>,
    p2p: OnceLock<P2p>,
    events: broadcast::Sender<Event>,
    dbs: Mutex<HashMap<LibraryId, Arc<LibraryDb>>>,
    pairings: Mutex<HashMap<String, LivePairing>>,
    cooldown: Mutex<HashMap<PeerId, Instant>>,
    pair_timeout: Duration,
    /// The connection each peer's member lists were last exchanged on (one sync per connection).
    synced: Mutex<HashMap<PeerId, usize>>,
    /// Removed members told so on their current connection (once each, however often they knock).
    told: Mutex<HashMap<(PeerId, LibraryId), usize>>,
    /// Held while a pairing checks for and creates a library, so two never create one twice.
    creating: Mutex<()>,
    sync: sync::Sync,
    media: media::Media,
    /// The running node's parts, for members' control sessions (set when it starts).
    control: OnceLock<crate::control::Live>,
    /// What members' control sessions share (their slots, the transfers they started).
    remote: crate::control::remote::RemoteState,
}

/// Handle to the node's libraries.
#[derive(Clone)]
pub struct Libraries {
    shared: Arc<Shared>,
}

impl Libraries {
    pub(crate) fn new(
        data_dir: &std::path::Path,
        identity: Arc<Identity>,
        events: broadcast::Sender<Event>,
        pair_timeout: Duration,
    ) -> Result<Libraries, LibraryError> {
        let dir = data_dir.join("libraries");
        std::fs::create_dir_all(&dir)?;
        let contents =
            LibraryContents::new(data_dir, dir.clone(), identity.peer_id().0, events.clone());
        let libs = Libraries {
            shared: Arc::new(Shared {
                contents,
                dir,
                identity,
                p2p: OnceLock::new(),
                events,
                dbs: Mutex::default(),
                pairings: Mutex::default(),
                cooldown: Mutex::default(),
                pair_timeout,
                synced: Mutex::default(),
                told: Mutex::default(),
                creating: Mutex::default(),
                sync: sync::Sync::default(),
                media: media::Media::default(),
                control: OnceLock::new(),
                remote: Default::default(),
            }),
        };
        let weak = Arc::downgrade(&libs.shared);
        libs.shared.contents.set_decorate(Box::new(move |id, l| {
            if let Some(shared) = weak.upgrade() {
                shared.decorate(id, l);
            }
        }));
        Ok(libs)
    }

    /// The libraries of a data dir without a running node: reading, creating and renaming
    /// (changes reach the members at the next contact). Safe beside a running node.
    pub fn offline(data_dir: &std::path::Path) -> Result<Libraries, LibraryError> {
        let identity = Identity::load_or_create(data_dir)
            .map_err(|e| LibraryError::Io(std::io::Error::other(e)))?;
        let (events, _) = broadcast::channel(16);
        Libraries::new(
            data_dir,
            Arc::new(identity),
            events,
            Duration::from_secs(120),
        )
    }

    pub(crate) fn protocols(&self) -> Vec<Arc<dyn ferry_p2p::Protocol>> {
        vec![
            Arc::new(pair::PairProtocol(self.shared.clone())),
            Arc::new(tunnel::TunnelProtocol(self.shared.clone())),
        ]
    }

    /// Called once the p2p layer runs: exchanges member lists with every member that connects,
    /// and dials members where they were last seen.
    pub(crate) fn attach(&self, p2p: P2p) {
        let mut rx = p2p.subscribe();
        let _ = self.shared.p2p.set(p2p.clone());
        // Peers that connected before we subscribed (a --connect at start) are greeted too.
        for p in p2p.peers() {
            if p.state == PeerState::Connected {
                self.shared.on_connected(p.id);
            }
        }
        // Whatever changes a library's contents here wakes the servers of its sync streams.
        let mut events = self.shared.events.subscribe();
        let weak = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            loop {
                let lib = match events.recv().await {
                    Ok(
                        Event::ContentsChanged { library, .. }
                        | Event::Location { library, .. }
                        | Event::LocationRemoved { library, .. },
                    ) => LibraryId::parse(&library),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let Some(shared) = weak.upgrade() else { break };
                match lib {
                    Some(lib) => shared.sync.poke(&lib),
                    None => shared.sync.poke_all(),
                }
            }
        });
        let weak = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            loop {
                let peer = match rx.recv().await {
                    Ok(P2pEvent::PeerFound(p) | P2pEvent::PeerChanged(p))
                        if p.state == PeerState::Connected =>
                    {
                        p.id
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let Some(shared) = weak.upgrade() else { break };
                shared.on_connected(peer);
            }
        });
        let shared = self.shared.clone();
        tokio::spawn(async move {
            // Our own record carries our display name to the members: keep it current.
            let (me, name) = (shared.me(), shared.my_name());
            for id in shared.ids() {
                let Ok(db) = shared.usable(&id) else { continue };
                if db
                    .member(&me)
                    .ok()
                    .flatten()
                    .is_some_and(|m| m.record.name != name)
                {
                    let _ = db.set_member(me, &name, MemberState::Member, me, unix_now());
                }
            }
            let mut known = HashMap::new();
            for id in shared.ids() {
                if let Some(db) = shared.db(&id) {
                    for m in db.members().unwrap_or_default() {
                        if let Some(addr) = m.last_addr.and_then(|a| a.parse().ok()) {
                            if m.record.state == MemberState::Member && m.record.node != shared.me()
                            {
                                known.insert(m.record.node, addr);
                            }
                        }
                    }
                }
            }
            for (node, addr) in known {
                if p2p.connection(&node).is_none() {
                    // Failure is normal (the member is elsewhere); discovery may find it later.
                    let _ = p2p.connect(addr, Some(node)).await;
                }
            }
        });
    }

    /// Starts copying members' thumbnails here in the background (a long-running node).
    pub(crate) fn start_previews(&self, cfg: media::PreviewConfig) {
        *lock(&self.shared.media.previews) = cfg;
        media::preview::start(&self.shared);
        self.shared.media.wake.notify_one();
    }

    /// Whether a member's location has its thumbnails copied here (preview sync), and a round
    /// of copying at once when turned on.
    pub fn set_location_previews(
        &self,
        lib: &LibraryId,
        loc: &ferry_index::LocationId,
        on: bool,
    ) -> Result<ferry_index::LocationInfo, LibraryError> {
        let info = self.shared.contents.set_previews(lib, loc, on)?;
        if on {
            self.shared.media.wake.notify_one();
        }
        Ok(info)
    }

    /// Preview sync's switch and cap now.
    pub fn previews(&self) -> media::PreviewConfig {
        *lock(&self.shared.media.previews)
    }

    /// Changes preview sync's switch and cap on a running node.
    pub fn set_previews(&self, cfg: media::PreviewConfig) {
        *lock(&self.shared.media.previews) = cfg;
        self.shared.media.wake.notify_one();
    }

    /// Copies the members' thumbnails this node lacks now, up to `budget` bytes (what the
    /// background loop does; for tests and benchmarks). Returns the bytes stored.
    pub async fn sync_previews(
        &self,
        id: &LibraryId,
        budget: u64,
    ) -> Result<u64, media::MediaError> {
        media::preview::round(&self.shared, *id, budget).await
    }

    /// Libraries this node is a member of.
    pub(crate) fn ids(&self) -> Vec<LibraryId> {
        let ids = self.shared.ids();
        ids.into_iter()
            .filter(|id| self.shared.usable(id).is_ok())
            .collect()
    }

    /// The libraries' contents: locations, listings, indexing, media.
    pub fn contents(&self) -> &LibraryContents {
        &self.shared.contents
    }

    pub fn list(&self) -> Vec<LibraryInfo> {
        let mut v: Vec<_> = self
            .shared
            .ids()
            .into_iter()
            .filter_map(|id| self.shared.info(&id).ok())
            .collect();
        v.sort_by_key(|l| l.name.to_lowercase());
        v
    }

    pub fn get(&self, id: &LibraryId) -> Result<LibraryInfo, LibraryError> {
        self.shared.info(id)
    }

    /// Finds a library by name or id, then by a unique prefix of either (names ignore case).
    pub fn find(&self, query: &str) -> Result<LibraryId, LibraryError> {
        let all = self.list();
        let q = query.trim().to_lowercase();
        let pick = |f: &dyn Fn(&LibraryInfo) -> bool| -> Vec<&LibraryInfo> {
            all.iter().filter(|l| f(l)).collect()
        };
        let mut hits = pick(&|l| l.name.to_lowercase() == q || l.id == q);
        if hits.is_empty() {
            hits = pick(&|l| l.name.to_lowercase().starts_with(&q));
        }
        if hits.is_empty() && q.len() >= 4 {
            hits = pick(&|l| l.id.starts_with(&q));
        }
        match hits.as_slice() {
            [one] => LibraryId::parse(&one.id).ok_or_else(|| LibraryError::NotFound(query.into())),
            [] => Err(LibraryError::NotFound(query.into())),
            many => Err(LibraryError::Ambiguous(
                query.into(),
                many.iter()
                    .map(|l| format!("{} ({})", l.name, &l.id[..8]))
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    pub fn create(&self, name: &str) -> Result<LibraryInfo, LibraryError> {
        wire::check_name(name).map_err(LibraryError::BadName)?;
        let me = self.shared.me();
        let now = unix_now();
        let stamp = Stamp {
            clock: 1,
            author: me,
        };
        let snapshot = Snapshot {
            library: LibraryId::random(),
            created: now,
            name: name.trim().to_string(),
            name_stamp: stamp.clone(),
            members: vec![wire::MemberRecord {
                node: me,
                name: self.shared.my_name(),
                state: MemberState::Member,
                stamp,
                added: now,
            }],
        };
        let db = LibraryDb::create(&self.shared.path(&snapshot.library), &snapshot, None)?;
        lock(&self.shared.dbs).insert(snapshot.library, Arc::new(db));
        self.shared.changed(&snapshot.library, None)
    }

    /// Renames a library here and for every member (as they come online).
    pub fn rename(&self, id: &LibraryId, name: &str) -> Result<LibraryInfo, LibraryError> {
        wire::check_name(name).map_err(LibraryError::BadName)?;
        let db = self.shared.usable(id)?;
        db.rename(name.trim(), self.shared.me())?;
        self.shared.changed(id, None)
    }

    /// Removes `node` from a library; every member refuses it once it has heard.
    pub fn remove_member(
        &self,
        id: &LibraryId,
        node: &PeerId,
    ) -> Result<LibraryInfo, LibraryError> {
        let db = self.shared.usable(id)?;
        if db.member(node)?.is_none() {
            return Err(LibraryError::NotMember(node.short()));
        }
        db.set_member(
            *node,
            "",
            MemberState::Removed,
            self.shared.me(),
            unix_now(),
        )?;
        let info = self.shared.changed(id, None)?;
        if self
            .shared
            .p2p
            .get()
            .is_some_and(|p| p.connection(node).is_some())
        {
            let (shared, node, id) = (self.shared.clone(), *node, *id);
            tokio::spawn(async move {
                if let Err(e) = members::tell_removed(&shared, node, id).await {
                    tracing::info!(peer = %node.short(), error = %e, "could not tell a removed member");
                }
            });
        }
        Ok(info)
    }

    /// Leaves and deletes a library: tells the members who are online (waiting at most
    /// `wait`), then deletes its database here.
    pub async fn delete(&self, id: &LibraryId, wait: Duration) -> Result<(), LibraryError> {
        let db = self
            .shared
            .db(id)
            .ok_or_else(|| LibraryError::NotFound(id.hex()))?;
        let me = self.shared.me();
        if db
            .member(&me)?
            .is_some_and(|m| m.record.state == MemberState::Member)
        {
            db.set_member(me, "", MemberState::Removed, me, unix_now())?;
            let _ = tokio::time::timeout(wait, self.shared.clone().push(*id, None)).await;
        }
        drop(db);
        self.shared.forget(id)?;
        let _ = self
            .shared
            .events
            .send(Event::LibraryRemoved { id: id.hex() });
        Ok(())
    }

    /// Exchanges member lists with every online member now, waiting for all of them.
    pub async fn sync(&self, id: &LibraryId) {
        self.shared.clone().push(*id, None).await;
    }

    /// Dials every other member where it was last seen and exchanges member lists with the
    /// ones that answer within `wait`: how a change made by a short-lived node gets out.
    /// `removed` (a member just removed here) is told too. Returns each member tried, with
    /// the outcome.
    pub async fn reach(
        &self,
        id: &LibraryId,
        wait: Duration,
        removed: Option<PeerId>,
    ) -> Vec<(MemberInfo, Result<(), String>)> {
        let (Some(p2p), Some(db)) = (self.shared.p2p.get(), self.shared.db(id)) else {
            return vec![];
        };
        let Ok(info) = self.shared.info(id) else {
            return vec![];
        };
        let rows = db.members().unwrap_or_default();
        let tasks: Vec<_> = info
            .members
            .into_iter()
            .filter(|m| !m.me && (m.state == MemberState::Member || Some(m.node) == removed))
            .map(|m| {
                let addr = rows
                    .iter()
                    .find(|r| r.record.node == m.node)
                    .and_then(|r| r.last_addr.as_ref()?.parse().ok());
                let (p2p, shared, id) = (p2p.clone(), self.shared.clone(), *id);
                tokio::spawn(async move {
                    let r = tokio::time::timeout(wait, async {
                        if p2p.connection(&m.node).is_none() {
                            let addr = addr.ok_or("never seen at an address")?;
                            p2p.connect(addr, Some(m.node))
                                .await
                                .map_err(|e| e.to_string())?;
                        }
                        let r = if m.state == MemberState::Member {
                            members::try_exchange(&shared, m.node, id).await
                        } else {
                            members::tell_removed(&shared, m.node, id).await
                        };
                        r.map_err(|e| e.to_string())
                    })
                    .await
                    .unwrap_or_else(|_| Err("did not answer in time".into()));
                    (m, r)
                })
            })
            .collect();
        let mut out = vec![];
        for t in tasks {
            if let Ok(r) = t.await {
                out.push(r);
            }
        }
        out
    }

    /// Asks `peer` to join a library. Returns the pairing id at once; the code and the outcome
    /// arrive as [`Event::Pairing`].
    pub fn pair(&self, peer: PeerId, id: &LibraryId) -> Result<String, LibraryError> {
        self.shared.usable(id)?;
        if self.shared.p2p.get().is_none() {
            return Err(LibraryError::NotRunning);
        }
        Ok(pair::start(self.shared.clone(), peer, *id))
    }

    /// The local user's verdict on a pairing's code. The first answer wins.
    pub fn answer_pairing(&self, pairing: &str, accept: bool) -> Result<(), LibraryError> {
        let tx = lock(&self.shared.pairings)
            .get_mut(pairing)
            .and_then(|p| p.answer.take())
            .ok_or_else(|| LibraryError::NoPairing(pairing.into()))?;
        tx.send(accept)
            .map_err(|_| LibraryError::NoPairing(pairing.into()))
    }

    /// Pairings in progress, oldest first.
    pub fn pairings(&self) -> Vec<PairingInfo> {
        let mut v: Vec<_> = lock(&self.shared.pairings)
            .values()
            .map(|p| (p.opened, self.shared.fresh(&p.info, p.opened)))
            .collect();
        v.sort_by_key(|(t, _)| *t);
        v.into_iter().map(|(_, p)| p).collect()
    }

    /// Per member: what this node holds of its rows, how far behind it is, and the pull
    /// running from it.
    pub fn sync_status(&self, id: &LibraryId) -> Result<Vec<sync::MemberSync>, LibraryError> {
        sync::status(&self.shared, id)
    }

    pub(crate) fn from_shared(shared: &Arc<Shared>) -> Libraries {
        Libraries {
            shared: shared.clone(),
        }
    }

    /// This node's id.
    pub fn me(&self) -> PeerId {
        self.shared.me()
    }

    /// A library's database (grants and the log of members' commands live there).
    pub(crate) fn db_of(&self, id: &LibraryId) -> Option<Arc<LibraryDb>> {
        self.shared.db(id)
    }

    pub(crate) fn remote(&self) -> &crate::control::remote::RemoteState {
        &self.shared.remote
    }

    /// Lets members' control sessions reach the running node.
    pub(crate) fn set_live(&self, live: crate::control::Live) {
        let _ = self.shared.control.set(live);
    }

    /// The command engine members' sessions run on (`None` until the node runs).
    pub(crate) fn engine(&self) -> Option<crate::control::Engine> {
        let live = self.shared.control.get()?.clone();
        Some(crate::control::Engine::live(
            self.clone(),
            live,
            self.data_dir(),
        ))
    }

    /// The data dir these libraries live in.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.shared
            .dir
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Opens a tunnel to a member for a library protocol (for the library protocols to come).
    pub async fn open_tunnel(
        &self,
        peer: &PeerId,
        id: &LibraryId,
        inner: u16,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), TunnelError> {
        tunnel::open(&self.shared, peer, id, inner, false).await
    }
}

impl Shared {
    fn me(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// Fills in a location's owner: its name in the library and whether it is connected.
    fn decorate(&self, id: &LibraryId, l: &mut ferry_index::LocationInfo) {
        let Some(owner) = ferry_index::db::parse_hex32(&l.owner).map(PeerId) else {
            return;
        };
        l.owner = owner.fingerprint();
        if owner == self.me() {
            l.owner_name = Some(self.my_name());
            l.owner_online = Some(true);
            return;
        }
        l.owner_name = self
            .db(id)
            .and_then(|db| db.member(&owner).ok().flatten())
            .map(|m| m.record.name)
            .filter(|n| !n.is_empty())
            .or_else(|| Some(owner.short()));
        l.owner_online = self.p2p.get().map(|p| p.connection(&owner).is_some());
    }

    fn my_name(&self) -> String {
        self.p2p
            .get()
            .map(|p| p.info().name)
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
    }

    fn peer_name(&self, peer: &PeerId) -> String {
        self.p2p
            .get()
            .and_then(|p| p.peer(peer))
            .map(|p| p.name)
            .unwrap_or_default()
    }

    fn path(&self, id: &LibraryId) -> PathBuf {
        self.dir.join(format!("{}.db", id.hex()))
    }

    fn ids(&self) -> Vec<LibraryId> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        rd.filter_map(|e| {
            let name = e.ok()?.file_name();
            LibraryId::parse(name.to_str()?.strip_suffix(".db")?)
        })
        .collect()
    }

    /// The library's database, opened once and kept.
    fn db(&self, id: &LibraryId) -> Option<Arc<LibraryDb>> {
        let mut dbs = lock(&self.dbs);
        if let Some(db) = dbs.get(id) {
            return Some(db.clone());
        }
        let path = self.path(id);
        if !path.exists() {
            return None;
        }
        match LibraryDb::open(&path) {
            Ok(db) => {
                let db = Arc::new(db);
                dbs.insert(*id, db.clone());
                Some(db)
            }
            Err(e) => {
                tracing::error!(library = %id, error = %e, "cannot open library");
                None
            }
        }
    }

    /// A library this node is still a member of.
    fn usable(&self, id: &LibraryId) -> Result<Arc<LibraryDb>, LibraryError> {
        let db = self
            .db(id)
            .ok_or_else(|| LibraryError::NotFound(id.hex()))?;
        match db.member(&self.me())? {
            Some(m) if m.record.state == MemberState::Member => Ok(db),
            _ => Err(LibraryError::RemovedHere),
        }
    }

    /// Drops a library here: its cached handle and its files, under the cache's lock so no
    /// one reopens it in between.
    fn forget(&self, id: &LibraryId) -> std::io::Result<()> {
        self.contents.forget(id);
        let mut dbs = lock(&self.dbs);
        dbs.remove(id);
        let path = self.path(id);
        for ext in ["db-wal", "db-shm"] {
            let _ = std::fs::remove_file(path.with_extension(ext));
        }
        std::fs::remove_file(path)
    }

    fn info(&self, id: &LibraryId) -> Result<LibraryInfo, LibraryError> {
        let db = self
            .db(id)
            .ok_or_else(|| LibraryError::NotFound(id.hex()))?;
        let snap = db.snapshot()?;
        let me = self.me();
        let rows = db.members()?;
        let removed = !rows
            .iter()
            .any(|m| m.record.node == me && m.record.state == MemberState::Member);
        Ok(LibraryInfo {
            id: id.hex(),
            name: snap.name,
            created: snap.created,
            removed,
            pending: db.pending_via()?.is_some(),
            members: rows
                .into_iter()
                .map(|m| MemberInfo {
                    node: m.record.node,
                    short_id: m.record.node.short(),
                    name: m.record.name,
                    state: m.record.state,
                    me: m.record.node == me,
                    added: m.record.added,
                    last_seen: m.last_seen,
                })
                .collect(),
        })
    }

    /// Announces a library's new state, and spreads it to the online members (but `source`,
    /// which it came from).
    fn changed(
        self: &Arc<Self>,
        id: &LibraryId,
        source: Option<PeerId>,
    ) -> Result<LibraryInfo, LibraryError> {
        let info = self.info(id)?;
        let _ = self.events.send(Event::Library {
            library: info.clone(),
        });
        sync::prune(self, id);
        if let Some(p2p) = self.p2p.get() {
            for m in &info.members {
                if !m.me && m.state == MemberState::Member && p2p.connection(&m.node).is_some() {
                    sync::ensure(self, m.node, *id);
                }
            }
        }
        tokio::spawn(self.clone().push(*id, source));
        Ok(info)
    }

    /// Exchanges member lists with every connected member but `except`.
    async fn push(self: Arc<Self>, id: LibraryId, except: Option<PeerId>) {
        let (Some(p2p), Some(db)) = (self.p2p.get(), self.db(&id)) else {
            return;
        };
        let me = self.me();
        let targets: Vec<PeerId> = db
            .members()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.record.state == MemberState::Member)
            .map(|m| m.record.node)
            .filter(|n| *n != me && Some(*n) != except && p2p.connection(n).is_some())
            .collect();
        let tasks: Vec<_> = targets
            .into_iter()
            .map(|peer| tokio::spawn(members::exchange(self.clone(), peer, id)))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// A peer connected: exchange member lists for every library we share (once per connection).
    fn on_connected(self: &Arc<Self>, peer: PeerId) {
        let Some(conn) = self.p2p.get().and_then(|p| p.connection(&peer)) else {
            return;
        };
        let shared: Vec<LibraryId> = self
            .ids()
            .into_iter()
            .filter(|id| {
                self.db(id)
                    .and_then(|db| db.member(&peer).ok().flatten())
                    .is_some_and(|m| m.record.state == MemberState::Member)
            })
            .collect();
        for id in &shared {
            sync::ensure(self, peer, *id);
        }
        // Only members are remembered, so strangers cannot grow this map.
        if shared.is_empty()
            || lock(&self.synced).insert(peer, conn.stable_id()) == Some(conn.stable_id())
        {
            return;
        }
        for id in shared {
            tokio::spawn(members::exchange(self.clone(), peer, id));
        }
    }

    fn emit_pairing(&self, info: &PairingInfo, opened: Instant) {
        let _ = self.events.send(Event::Pairing {
            pairing: self.fresh(info, opened),
        });
    }

    /// A pairing as shown now (the countdown counted from `opened`).
    fn fresh(&self, info: &PairingInfo, opened: Instant) -> PairingInfo {
        let mut info = info.clone();
        if let PairingState::Confirm { expires_in_ms } = &mut info.state {
            *expires_in_ms = self
                .pair_timeout
                .saturating_sub(opened.elapsed())
                .as_millis() as u64;
        }
        info
    }
}
