//! Library sync (inner protocol 2 of the tunnel): every member holds every member's locations
//! and entries, kept current both ways and passed on through members. The model, the flow and
//! the bounds are in `PROTOCOL.md` beside this file; the rows and their checks are
//! `ferry_index::replica`.
//!
//! Each node *pulls* from each connected member of each library it shares: one long-lived
//! tunnel stream per (member, library), opened by the puller, on which the server sends what
//! the puller lacks and then, whenever it learns of more (its own index committed, or a batch
//! it received from someone else), the rest. Both sides pull, so sync runs both ways; a pull
//! that fails is retried with backoff while the member stays connected.

pub mod wire;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_index::replica::{Applied, Author, Batch, Mark, ReplicaError, MAX_CHANGES};
use ferry_index::{Contents, LocationId};
use ferry_p2p::router::Incoming;
use ferry_p2p::wire::{expect_frame, read_frame, write_frame};
use ferry_p2p::{Code, PeerId, StreamError};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

use super::tunnel::{self, TunnelError};
use super::wire::{LibraryId, MemberState};
use super::Shared;
use crate::event::Event;
use ferry_util::lock;
use wire::{plan, Down, Head, Up, BATCH_BYTES, INNER_SYNC, MAX_DOWN, MAX_MARKS, MAX_UP};

/// The puller's first message must arrive within this.
const PULL_TIMEOUT: Duration = Duration::from_secs(15);
/// A server gives up on a puller that reads nothing for this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Sync streams a node serves at once, over all members and libraries.
const MAX_SERVING: usize = 256;
/// Retry delays of a failed pull: 1 s, doubling up to 30 s.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));
/// Events for a running pull: at most 4 a second.
const EVENT_EVERY: Duration = Duration::from_millis(250);

/// Where the pull from one member stands, for progress bars and `ferry sync status`.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncProgress {
    pub library: String,
    #[cfg_attr(feature = "specta", specta(type = String))]
    pub member: PeerId,
    /// `pulling`, `caught_up` or `failed`.
    pub state: String,
    /// Changes received in this pull, and how many the member announced.
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub received: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub total: u64,
    pub message: Option<String>,
}

/// What this node holds of one member's rows, and how far behind it is.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberSync {
    #[cfg_attr(feature = "specta", specta(type = String))]
    pub member: PeerId,
    pub name: String,
    pub me: bool,
    /// Connected now (`None`: not known, e.g. read without a running node).
    pub online: Option<bool>,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub locations: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub entries: u64,
    /// The member's sequence number this node holds up to, and the highest heard of.
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub seq: i64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub head: i64,
    /// Changes known to be missing (at most; some of those numbers may be superseded).
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub behind: i64,
    /// Unix ms of the last batch received.
    #[cfg_attr(feature = "specta", specta(type = Option<specta_typescript::Number>))]
    pub synced_at: Option<i64>,
    /// The pull from this member now, if one runs.
    pub pull: Option<SyncProgress>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("member sent a bad batch: {0}")]
    Bad(ReplicaError),
    #[error("library database: {0}")]
    Local(String),
}

/// A running pull task, and what wakes it from its backoff.
type Pull = (tokio::task::AbortHandle, Arc<Notify>);

/// The node's sync state, in [`Shared`].
#[derive(Default)]
pub(crate) struct Sync {
    /// Bumped whenever a library's contents change here, waking its servers.
    pokes: Mutex<HashMap<LibraryId, watch::Sender<u64>>>,
    /// The pull task per (member, library), and what wakes it from its backoff (a new
    /// connection of that member).
    pulls: Mutex<HashMap<(PeerId, LibraryId), Pull>>,
    /// The newest serving stream per (puller, library): an older one ends when a newer opens.
    serving: Mutex<HashMap<(PeerId, LibraryId), u64>>,
    tickets: AtomicU64,
    progress: Mutex<HashMap<(PeerId, LibraryId), SyncProgress>>,
}

impl Sync {
    fn poke_rx(&self, lib: &LibraryId) -> watch::Receiver<u64> {
        lock(&self.pokes)
            .entry(*lib)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes the library's servers: there may be more to send.
    pub(crate) fn poke(&self, lib: &LibraryId) {
        if let Some(tx) = lock(&self.pokes).get(lib) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    pub(crate) fn poke_all(&self) {
        for tx in lock(&self.pokes).values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn set_progress(&self, p: SyncProgress, lib: LibraryId) {
        lock(&self.progress).insert((p.member, lib), p);
    }
}

fn is_member(shared: &Shared, lib: &LibraryId, node: &PeerId) -> bool {
    shared
        .db(lib)
        .and_then(|db| db.member(node).ok().flatten())
        .is_some_and(|m| m.record.state == MemberState::Member)
}

fn contents(shared: &Shared, lib: &LibraryId) -> Result<Arc<Contents>, SyncError> {
    shared
        .contents
        .of(lib)
        .map_err(|e| SyncError::Local(e.to_string()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ferry_index::IndexError> + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::Local(e.to_string()))?
        .map_err(|e| SyncError::Local(e.to_string()))
}

/// Starts pulling from `peer` for `lib`, unless a pull runs already.
pub(crate) fn ensure(shared: &Arc<Shared>, peer: PeerId, lib: LibraryId) {
    if peer == shared.me() || !is_member(shared, &lib, &peer) || shared.usable(&lib).is_err() {
        return;
    }
    let mut pulls = lock(&shared.sync.pulls);
    if let Some((task, wake)) = pulls.get(&(peer, lib)) {
        if !task.is_finished() {
            wake.notify_one();
            return;
        }
    }
    let weak = Arc::downgrade(shared);
    let wake = Arc::new(Notify::new());
    let woken = wake.clone();
    let task = tokio::spawn(async move {
        let mut delay = BACKOFF.0;
        loop {
            let Some(shared) = weak.upgrade() else { return };
            let connected = shared
                .p2p
                .get()
                .is_some_and(|p| p.connection(&peer).is_some());
            if !connected || !is_member(&shared, &lib, &peer) || shared.usable(&lib).is_err() {
                break;
            }
            let started = Instant::now();
            match pull(&shared, peer, lib).await {
                Ok(()) => tracing::debug!(peer = %peer.short(), %lib, "sync stream ended"),
                Err(e) => {
                    tracing::info!(peer = %peer.short(), %lib, error = %e, "sync pull failed");
                    report(&shared, peer, lib, "failed", 0, 0, Some(e.to_string()));
                }
            }
            // A pull that ran a while earned a fresh start; one that failed at once waits longer.
            delay = if started.elapsed() > BACKOFF.1 {
                BACKOFF.0
            } else {
                (delay * 2).min(BACKOFF.1)
            };
            drop(shared);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                // The member connected anew: try at once, with a fresh backoff.
                _ = woken.notified() => delay = BACKOFF.0,
            }
        }
        if let Some(shared) = weak.upgrade() {
            lock(&shared.sync.pulls).remove(&(peer, lib));
        }
    });
    pulls.insert((peer, lib), (task.abort_handle(), wake));
}

/// Stops pulling from `peer` for `lib` (it was removed).
pub(crate) fn stop(shared: &Shared, peer: &PeerId, lib: &LibraryId) {
    if let Some((task, _)) = lock(&shared.sync.pulls).remove(&(*peer, *lib)) {
        task.abort();
    }
    lock(&shared.sync.progress).remove(&(*peer, *lib));
}

/// Drops the rows of the library's removed members, and stops pulling from them.
pub(crate) fn prune(shared: &Shared, lib: &LibraryId) {
    let Some(db) = shared.db(lib) else { return };
    let Ok(c) = shared.contents.of(lib) else {
        return;
    };
    for m in db.members().unwrap_or_default() {
        if m.record.state != MemberState::Removed || m.record.node == shared.me() {
            continue;
        }
        stop(shared, &m.record.node, lib);
        match c.forget_author(&m.record.node.0) {
            Ok(gone) => {
                for loc in gone {
                    let _ = shared.events.send(Event::LocationRemoved {
                        library: lib.hex(),
                        location: ferry_index::db::hex(&loc),
                    });
                }
            }
            Err(e) => tracing::warn!(%lib, error = %e, "cannot drop a removed member's rows"),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    shared: &Shared,
    peer: PeerId,
    lib: LibraryId,
    state: &str,
    received: u64,
    total: u64,
    message: Option<String>,
) {
    let p = SyncProgress {
        library: lib.hex(),
        member: peer,
        state: state.into(),
        received,
        total,
        message,
    };
    shared.sync.set_progress(p.clone(), lib);
    let _ = shared.events.send(Event::Sync { progress: p });
}

/// The puller's side of one stream: marks out, then heads and batches in until the stream ends.
async fn pull(shared: &Arc<Shared>, peer: PeerId, lib: LibraryId) -> Result<(), SyncError> {
    let c = contents(shared, &lib)?;
    let (mut send, mut recv) = tunnel::open(shared, &peer, &lib, INNER_SYNC, false).await?;
    let marks = blocking({
        let c = c.clone();
        move || c.marks()
    })
    .await?;
    write_frame(&mut send, &Up::Pull { marks }, MAX_UP).await?;
    let mut announced: HashMap<Author, Mark> = HashMap::new();
    let (mut received, mut total) = (0u64, 0u64);
    let mut touched = Touched::default();
    let result = loop {
        let msg: Down = match read_frame(&mut recv, MAX_DOWN).await {
            Ok(Some(m)) => m,
            Ok(None) => break Ok(()),
            Err(e) => break Err(SyncError::Stream(e)),
        };
        match msg {
            Down::Heads { heads } => {
                if heads.len() > MAX_MARKS {
                    break Err(bad("too many heads"));
                }
                announced.clear();
                total = received;
                for h in heads {
                    // Only heads a batch could follow are remembered: of another current
                    // member, within the bounds a batch is checked against.
                    let m = h.mark;
                    if m.author == shared.me().0
                        || !(1..=ferry_index::replica::MAX_SEQ).contains(&m.seq)
                        || m.index
                            > ferry_util::unix_now_ms() + ferry_index::replica::MAX_CLOCK_AHEAD_MS
                        || !is_member(shared, &lib, &PeerId(m.author))
                    {
                        continue;
                    }
                    announced.insert(h.mark.author, h.mark);
                    total = total.saturating_add(h.pending);
                    let (c, m) = (c.clone(), h.mark);
                    blocking(move || c.heard_head(&m.author, m.index, m.seq)).await?;
                }
                report(shared, peer, lib, "pulling", received, total, None);
            }
            Down::Batch(b) => {
                if let Err(e) = admit(shared, &lib, &b, &announced) {
                    break Err(e);
                }
                let n = b.changes.len() as u64;
                let applied = {
                    let c = c.clone();
                    tokio::task::spawn_blocking(move || c.apply_batch(&b))
                        .await
                        .map_err(|e| SyncError::Local(e.to_string()))?
                };
                match applied {
                    Ok(a) => touched.add(a),
                    Err(ReplicaError::Index(e)) => break Err(SyncError::Local(e.to_string())),
                    Err(e) => break Err(SyncError::Bad(e)),
                }
                received += n;
                if touched.due() {
                    touched.flush(shared, &lib, &c);
                    report(
                        shared,
                        peer,
                        lib,
                        "pulling",
                        received,
                        total.max(received),
                        None,
                    );
                }
            }
            Down::Caught => {
                touched.flush(shared, &lib, &c);
                report(
                    shared,
                    peer,
                    lib,
                    "caught_up",
                    received,
                    total.max(received),
                    None,
                );
            }
        }
    };
    touched.flush(shared, &lib, &c);
    if let Err(e) = &result {
        let code = match e {
            SyncError::Bad(_) => Code::ProtocolError,
            // A frame over its bound or that does not decode is the server's fault too.
            SyncError::Stream(e) => e.code(),
            _ => Code::Internal,
        };
        let _ = send.reset(code.var_int());
        let _ = recv.stop(code.var_int());
        if code == Code::ProtocolError {
            tracing::warn!(peer = %peer.short(), %lib, error = %e, "refused what a member sent");
        }
    }
    result
}

fn bad(why: &str) -> SyncError {
    SyncError::Bad(ReplicaError::Invalid(why.into()))
}

/// Whether a batch may be applied at all: its author is another current member, and it stays
/// within the head the server announced.
fn admit(
    shared: &Shared,
    lib: &LibraryId,
    b: &Batch,
    announced: &HashMap<Author, Mark>,
) -> Result<(), SyncError> {
    if b.author == shared.me().0 {
        return Err(SyncError::Bad(ReplicaError::Own));
    }
    if !is_member(shared, lib, &PeerId(b.author)) {
        return Err(bad("rows of a node that is not a member"));
    }
    match announced.get(&b.author) {
        Some(h) if h.index == b.index && b.to <= h.seq => Ok(()),
        _ => Err(bad("batch beyond the heads announced")),
    }
}

/// Locations changed by applied batches, announced at most every [`EVENT_EVERY`].
#[derive(Default)]
struct Touched {
    locations: BTreeSet<LocationId>,
    removed: BTreeSet<LocationId>,
    /// This node's locations now held by another member (their drive moved there).
    lost: BTreeSet<LocationId>,
    last: Option<Instant>,
}

impl Touched {
    fn add(&mut self, a: Applied) {
        self.locations.extend(a.locations);
        self.locations.extend(a.lost.iter().copied());
        self.lost.extend(a.lost);
        for r in a.removed {
            self.locations.remove(&r);
            self.removed.insert(r);
        }
    }

    fn due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= EVENT_EVERY)
    }

    fn flush(&mut self, shared: &Shared, lib: &LibraryId, c: &Contents) {
        if self.locations.is_empty() && self.removed.is_empty() {
            return;
        }
        self.last = Some(Instant::now());
        // No longer ours to watch and index: its new owner does.
        for loc in std::mem::take(&mut self.lost) {
            tracing::info!(location = %ferry_index::db::hex(&loc), "a location moved to another member");
            shared.contents.stop_location(&loc);
        }
        for loc in std::mem::take(&mut self.removed) {
            let _ = shared.events.send(Event::LocationRemoved {
                library: lib.hex(),
                location: ferry_index::db::hex(&loc),
            });
        }
        for loc in std::mem::take(&mut self.locations) {
            if let Ok(mut location) = c.location(&loc) {
                shared.decorate(lib, &mut location);
                let _ = shared.events.send(Event::Location {
                    library: lib.hex(),
                    location,
                });
            }
            let _ = shared.events.send(Event::ContentsChanged {
                library: lib.hex(),
                location: ferry_index::db::hex(&loc),
            });
        }
        // What we received is news for our other members' pulls: pass it on.
        shared.sync.poke(lib);
    }
}

/// The server's side: reads the puller's marks, then sends heads and batches, again after
/// every change, until the puller leaves, is removed, or a newer stream of it takes over.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    lib: LibraryId,
    peer: PeerId,
    s: &mut Incoming,
) -> Result<(), StreamError> {
    let ticket = shared.sync.tickets.fetch_add(1, Ordering::Relaxed);
    {
        let mut serving = lock(&shared.sync.serving);
        if serving.len() >= MAX_SERVING && !serving.contains_key(&(peer, lib)) {
            return Err(StreamError::Local(Code::Busy, "too many sync streams"));
        }
        serving.insert((peer, lib), ticket);
    }
    let r = serve_stream(shared, lib, peer, s, ticket).await;
    let mut serving = lock(&shared.sync.serving);
    if serving.get(&(peer, lib)) == Some(&ticket) {
        serving.remove(&(peer, lib));
    }
    r
}

async fn serve_stream(
    shared: &Arc<Shared>,
    lib: LibraryId,
    peer: PeerId,
    s: &mut Incoming,
    ticket: u64,
) -> Result<(), StreamError> {
    let Up::Pull { marks } = expect_frame(&mut s.recv, MAX_UP, PULL_TIMEOUT, "sync pull").await?;
    if marks.len() > MAX_MARKS {
        return Err(StreamError::Protocol("too many marks".into()));
    }
    let mut theirs: HashMap<Author, Mark> = marks.into_iter().map(|m| (m.author, m)).collect();
    let c = shared
        .contents
        .of(&lib)
        .map_err(|_| StreamError::Local(Code::Internal, "library contents"))?;
    let mut pokes = shared.sync.poke_rx(&lib);
    let internal = |_| StreamError::Local(Code::Internal, "library database");
    let mut first = true;
    loop {
        pokes.borrow_and_update();
        if lock(&shared.sync.serving).get(&(peer, lib)) != Some(&ticket) {
            return Ok(()); // a newer stream of this puller serves it now
        }
        if !is_member(shared, &lib, &peer) {
            return Err(StreamError::Local(
                Code::Revoked,
                "removed from the library",
            ));
        }
        let ours: Vec<Mark> = {
            let c = c.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<Mark>, ferry_index::IndexError> {
                let mut v = vec![c.own_mark()?];
                v.extend(c.marks()?.into_iter().filter(|m| m.seq > 0));
                Ok(v)
            })
            .await
            .map_err(|_| StreamError::Local(Code::Internal, "task"))?
            .map_err(internal)?
        };
        let known: Vec<Mark> = theirs.values().copied().collect();
        let todo = plan(&ours, &known, &peer.0, |a| {
            is_member(shared, &lib, &PeerId(*a))
        });
        // The first round always answers (an empty one says "you have everything").
        if !todo.is_empty() || std::mem::take(&mut first) {
            let mut heads = Vec::with_capacity(todo.len());
            for (m, from) in &todo {
                let (c, a, f) = (c.clone(), m.author, *from);
                let pending = tokio::task::spawn_blocking(move || c.pending(&a, f))
                    .await
                    .map_err(|_| StreamError::Local(Code::Internal, "task"))?
                    .map_err(internal)?;
                heads.push(Head { mark: *m, pending });
            }
            send(s, &Down::Heads { heads }).await?;
            for (m, mut from) in todo {
                while from < m.seq {
                    let (c2, a) = (c.clone(), m.author);
                    let batch = tokio::task::spawn_blocking(move || {
                        c2.batch_since(&a, from, MAX_CHANGES, BATCH_BYTES)
                    })
                    .await
                    .map_err(|_| StreamError::Local(Code::Internal, "task"))?
                    .map_err(internal)?;
                    // The head may have moved on since `ours` was read: stay within the
                    // announced one, the rest goes in the next round.
                    let Some(mut batch) = batch.filter(|b| b.index == m.index) else {
                        break;
                    };
                    if batch.to > m.seq {
                        batch.changes.retain(|c| c.seq() <= m.seq);
                        batch.to = m.seq;
                    }
                    if batch.to <= from {
                        break;
                    }
                    from = batch.to;
                    send(s, &Down::Batch(batch)).await?;
                    theirs.insert(
                        m.author,
                        Mark {
                            author: m.author,
                            index: m.index,
                            seq: from,
                        },
                    );
                }
            }
            send(s, &Down::Caught).await?;
        }
        // Wait for news, or for the puller to leave (it sends nothing more; any read ending
        // means it closed or reset its side).
        let mut probe = [0u8; 1];
        tokio::select! {
            r = pokes.changed() => if r.is_err() { return Ok(()) },
            _ = s.recv.read(&mut probe) => return Ok(()),
        }
    }
}

async fn send(s: &mut Incoming, msg: &Down) -> Result<(), StreamError> {
    tokio::time::timeout(WRITE_TIMEOUT, write_frame(&mut s.send, msg, MAX_DOWN))
        .await
        .unwrap_or(Err(StreamError::Timeout("the puller to read")))
}

/// Per member of a library: what this node holds of its rows, and the pull running from it.
pub(crate) fn status(
    shared: &Shared,
    lib: &LibraryId,
) -> Result<Vec<MemberSync>, super::LibraryError> {
    let db = shared
        .db(lib)
        .ok_or_else(|| super::LibraryError::NotFound(lib.hex()))?;
    let c = shared.contents.of(lib)?;
    let holdings = c.holdings()?;
    let own = c.own_mark()?;
    let me = shared.me();
    let mut out = Vec::new();
    for m in db.members()? {
        if m.record.state != MemberState::Member {
            continue;
        }
        let node = m.record.node;
        let held = holdings.iter().find(|h| h.mark.author == node.0);
        let (seq, head) = if node == me {
            (own.seq, own.seq)
        } else {
            held.map_or((0, 0), |h| (h.mark.seq, h.head))
        };
        let (locations, entries) = if node == me {
            let locs = c.location_paths()?.len() as u64;
            let n = c
                .locations()?
                .iter()
                .filter(|l| l.local)
                .map(|l| l.files + l.folders)
                .sum();
            (locs, n)
        } else {
            held.map_or((0, 0), |h| (h.locations, h.entries))
        };
        out.push(MemberSync {
            member: node,
            name: m.record.name,
            me: node == me,
            online: match shared.p2p.get() {
                _ if node == me => Some(true),
                Some(p) => Some(p.connection(&node).is_some()),
                None => None,
            },
            locations,
            entries,
            seq,
            head,
            behind: (head - seq).max(0),
            synced_at: held.and_then(|h| h.synced_at),
            pull: lock(&shared.sync.progress).get(&(node, *lib)).cloned(),
        });
    }
    Ok(out)
}
