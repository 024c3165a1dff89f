//! Pairing (protocol 5): one user asks a nearby node to join a library; both devices show the
//! same six-digit code, both users confirm it, and only then does the peer get the library.
//!
//! ```text
//! initiator                                          responder
//!   PairRequest { pairing, library, name, commit } ──▶  busy? reset Busy
//!                                                  ◀──  PairNonce { nonce_r }
//!   PairReveal { nonce_i }                         ──▶  commit matches? else ProtocolError
//!   both: code = SAS(TLS exporter, request, ids, nonces); each user confirms or rejects
//!   PairDecision { accept }                        ◀─▶  PairDecision { accept }
//!   (both accepted)
//!   PairJoin { snapshot with the responder in it } ──▶  check, store (pending_via = initiator)
//!                                                  ◀──  PairJoined
//!   record the responder, tell the other members
//! ```
//!
//! Nothing is stored before both users accept. The one window left, between the responder
//! storing the library and the initiator recording it, is closed by `pending_via`: if the
//! initiator's tunnel refuses the responder afterwards, the responder drops the library.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_p2p::router::{open as open_stream, BoxFuture, Incoming, Protocol};
use ferry_p2p::wire::{expect_frame, write_frame};
use ferry_p2p::{Code, PeerId, StreamError};
use ferry_util::unix_now;
use tokio::sync::oneshot;

use super::db::LibraryDb;
use super::wire::{
    self, LibraryId, MemberRecord, MemberState, PairDecision, PairJoin, PairJoined, PairNonce,
    PairRequest, PairReveal, Stamp, Transcript, MAX_SMALL, MAX_SNAPSHOT, PAIR_ID, VERSION,
};
use super::{
    lock, LivePairing, PairingInfo, PairingRole, PairingState, Shared, MAX_PAIRINGS, PAIR_COOLDOWN,
};
use crate::event::Event;

/// Each machine-to-machine step must complete within this (humans get `pair_timeout`).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a pairing ended without a join: shown to the user, and the code the stream ends with
/// (`Done` for a clean "no", which must reach the peer intact rather than be reset away).
struct Failure {
    reason: String,
    code: Code,
}

impl Failure {
    fn new(code: Code, reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            code,
        }
    }
}

impl From<StreamError> for Failure {
    fn from(e: StreamError) -> Self {
        let reason = match &e {
            StreamError::Peer(Code::Rejected) => "rejected on the other device".into(),
            StreamError::Peer(Code::Cancelled) => "cancelled on the other device".into(),
            StreamError::Peer(Code::Busy) => {
                "the other device is busy with another pairing; try again in a few seconds".into()
            }
            StreamError::Connection(_) | StreamError::Peer(_) => {
                format!("the other device went away ({e})")
            }
            _ => e.to_string(),
        };
        Failure::new(e.code(), reason)
    }
}

macro_rules! internal_failure {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                Failure::new(Code::Internal, e.to_string())
            }
        }
    )*};
}
internal_failure!(
    ferry_p2p::DialError,
    super::db::DbError,
    super::LibraryError
);

pub(crate) struct PairProtocol(pub(crate) Arc<Shared>);

impl Protocol for PairProtocol {
    fn id(&self) -> u16 {
        PAIR_ID
    }

    fn versions(&self) -> std::ops::RangeInclusive<u16> {
        VERSION..=VERSION
    }

    fn handle<'a>(&'a self, s: &'a mut Incoming) -> BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(respond(self.0.clone(), s))
    }
}

/// A slot among the live pairings; dropping it ends the pairing's entry.
struct Slot {
    shared: Arc<Shared>,
    id: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.shared.pairings).remove(&self.id);
    }
}

impl Slot {
    fn set(&self, f: impl FnOnce(&mut PairingInfo)) {
        let shown = {
            let mut map = lock(&self.shared.pairings);
            let Some(p) = map.get_mut(&self.id) else {
                return;
            };
            f(&mut p.info);
            (p.info.clone(), p.opened)
        };
        self.shared.emit_pairing(&shown.0, shown.1);
    }

    /// Shows the code and returns where the local user's answer arrives.
    fn ask(&self, code: String) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        if let Some(p) = lock(&self.shared.pairings).get_mut(&self.id) {
            p.answer = Some(tx);
            p.opened = Instant::now();
        }
        self.set(|i| {
            i.code = Some(code);
            i.state = PairingState::Confirm { expires_in_ms: 0 };
        });
        rx
    }

    /// Ends the pairing: out of the live list first, so no one sees it open after its end.
    fn end(&self, outcome: &Result<(), Failure>) {
        let Some(mut p) = lock(&self.shared.pairings).remove(&self.id) else {
            return;
        };
        p.info.state = match outcome {
            Ok(()) => PairingState::Done,
            Err(f) => PairingState::Failed {
                reason: f.reason.clone(),
            },
        };
        self.shared.emit_pairing(&p.info, p.opened);
    }
}

/// Reserves a pairing slot for `peer`, or says why not (one per peer; [`MAX_PAIRINGS`] in all;
/// none during a peer's cooldown).
fn reserve(shared: &Arc<Shared>, info: PairingInfo) -> Result<Slot, &'static str> {
    if let Some(until) = lock(&shared.cooldown).get(&info.peer) {
        if Instant::now() < *until {
            return Err("cooling down after a failed pairing");
        }
    }
    let mut map = lock(&shared.pairings);
    if map.values().any(|p| p.info.peer == info.peer) {
        return Err("a pairing with this peer is in progress");
    }
    if info.role == PairingRole::Responder
        && map
            .values()
            .filter(|p| p.info.role == PairingRole::Responder)
            .count()
            >= MAX_PAIRINGS
    {
        return Err("too many pairing requests");
    }
    let id = info.id.clone();
    map.insert(
        id.clone(),
        LivePairing {
            info,
            opened: Instant::now(),
            answer: None,
        },
    );
    Ok(Slot {
        shared: shared.clone(),
        id,
    })
}

fn cool_down(shared: &Shared, peer: PeerId) {
    let mut c = lock(&shared.cooldown);
    let now = Instant::now();
    c.retain(|_, until| *until > now);
    c.insert(peer, now + PAIR_COOLDOWN);
}

fn exporter(conn: &quinn::Connection, pairing: &[u8; 16]) -> Result<[u8; 32], Failure> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, b"EXPORTER-ferry-pair-v1", pairing)
        .map_err(|_| Failure::new(Code::Internal, "TLS exporter unavailable"))?;
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts pairing `peer` into `library` from this side; returns the pairing id.
pub(crate) fn start(shared: Arc<Shared>, peer: PeerId, library: LibraryId) -> String {
    let pairing: [u8; 16] = wire::random();
    let id = hex(&pairing);
    let name = shared
        .db(&library)
        .and_then(|db| db.snapshot().ok())
        .map(|s| s.name)
        .unwrap_or_default();
    let info = PairingInfo {
        id: id.clone(),
        role: PairingRole::Initiator,
        peer,
        peer_short: peer.short(),
        peer_name: shared.peer_name(&peer),
        library: library.hex(),
        library_name: name.clone(),
        code: None,
        state: PairingState::Connecting,
    };
    let task_id = id.clone();
    tokio::spawn(async move {
        let slot = match reserve(&shared, info.clone()) {
            Ok(s) => s,
            Err(why) => {
                let _ = shared.events.send(Event::Pairing {
                    pairing: PairingInfo {
                        state: PairingState::Failed { reason: why.into() },
                        ..info
                    },
                });
                return;
            }
        };
        slot.set(|_| {});
        let outcome = initiate(&shared, &slot, peer, library, pairing, name).await;
        if let Err(f) = &outcome {
            tracing::info!(pairing = %task_id, peer = %peer.short(), why = %f.reason, "pairing failed");
        }
        slot.end(&outcome);
    });
    id
}

async fn initiate(
    shared: &Arc<Shared>,
    slot: &Slot,
    peer: PeerId,
    library: LibraryId,
    pairing: [u8; 16],
    library_name: String,
) -> Result<(), Failure> {
    let p2p = shared
        .p2p
        .get()
        .ok_or(Failure::new(Code::Internal, "node not running"))?;
    let conn = tokio::time::timeout(STEP_TIMEOUT, p2p.connect_peer(&peer))
        .await
        .map_err(|_| Failure::new(Code::Timeout, "could not reach the other device"))??;
    if let Some(p) = lock(&shared.pairings).get_mut(&slot.id) {
        p.info.peer_name = shared.peer_name(&peer);
    }
    let (mut send, mut recv) =
        tokio::time::timeout(STEP_TIMEOUT, open_stream(&conn, PAIR_ID, VERSION))
            .await
            .map_err(|_| Failure::new(Code::Timeout, "the other device accepts no streams"))??;
    let nonce_i: [u8; 32] = wire::random();
    let request = PairRequest {
        pairing,
        library,
        library_name,
        commit: wire::commit(&nonce_i, &pairing),
    };
    write_frame(&mut send, &request, MAX_SMALL).await?;
    let nonce_r: PairNonce = match expect_frame(&mut recv, MAX_SMALL, STEP_TIMEOUT, "nonce").await {
        Ok(n) => n,
        Err(e) => return Err(e.into()),
    };
    write_frame(&mut send, &PairReveal { nonce: nonce_i }, MAX_SMALL).await?;
    let code = Transcript {
        exporter: exporter(&conn, &pairing)?,
        request: &request,
        initiator: shared.me(),
        responder: peer,
        nonce_i,
        nonce_r: nonce_r.nonce,
    }
    .code();
    if let Err(f) = decide(shared, slot, code, &mut send, &mut recv).await {
        let _ = send.finish();
        return Err(f);
    }

    // Both accepted: hand over the library with the responder in it, record it once stored.
    let db = shared.usable(&library)?;
    let mut snapshot = db.snapshot()?;
    let clock = snapshot.max_clock().saturating_add(1);
    let added = MemberRecord {
        node: peer,
        name: shared.peer_name(&peer),
        state: MemberState::Member,
        stamp: Stamp {
            clock,
            author: shared.me(),
        },
        added: unix_now(),
    };
    snapshot.members.retain(|m| m.node != peer);
    snapshot.members.push(added);
    write_frame(
        &mut send,
        &PairJoin {
            snapshot: snapshot.clone(),
        },
        MAX_SNAPSHOT,
    )
    .await?;
    let _: PairJoined = expect_frame(&mut recv, MAX_SMALL, STEP_TIMEOUT, "joined").await?;
    db.merge(&snapshot)?;
    db.seen(&peer, Some(conn.remote_address().to_string()), unix_now())?;
    tracing::info!(peer = %peer.short(), %library, "paired");
    shared.changed(&library, None)?;
    Ok(())
}

async fn respond(shared: Arc<Shared>, s: &mut Incoming) -> Result<(), StreamError> {
    let peer = s.peer;
    // The slot is taken before the request is read, so a flood never queues prompts.
    let placeholder = PairingInfo {
        id: format!("pending-{}", hex(&wire::random::<8>())),
        role: PairingRole::Responder,
        peer,
        peer_short: peer.short(),
        peer_name: shared.peer_name(&peer),
        library: String::new(),
        library_name: String::new(),
        code: None,
        state: PairingState::Connecting,
    };
    let mut slot = match reserve(&shared, placeholder) {
        Ok(s) => s,
        Err(why) => {
            tracing::info!(peer = %peer.short(), why, "pairing request refused");
            return Err(StreamError::Local(Code::Busy, why));
        }
    };
    let outcome = match read_request(&shared, &mut slot, s).await {
        Ok(request) => respond_steps(&shared, &slot, s, &request).await,
        Err(f) => Err(f),
    };
    slot.end(&outcome);
    match outcome {
        Ok(()) => Ok(()),
        Err(f) => {
            // Every failure costs the peer a cooldown, so it cannot hold a slot on repeat.
            cool_down(&shared, peer);
            tracing::info!(peer = %peer.short(), why = %f.reason, "pairing failed");
            match f.code {
                Code::Done => Ok(()),
                code => Err(StreamError::Local(code, "pairing failed")),
            }
        }
    }
}

/// Reads and checks the request, and re-keys the slot by the pairing id both sides share.
async fn read_request(
    shared: &Arc<Shared>,
    slot: &mut Slot,
    s: &mut Incoming,
) -> Result<PairRequest, Failure> {
    let request: PairRequest =
        expect_frame(&mut s.recv, MAX_SMALL, STEP_TIMEOUT, "pair request").await?;
    wire::check_name(&request.library_name)
        .map_err(|e| Failure::new(Code::ProtocolError, format!("bad library name: {e}")))?;
    let mut map = lock(&shared.pairings);
    let id = hex(&request.pairing);
    if map.contains_key(&id) {
        return Err(Failure::new(Code::ProtocolError, "pairing id in use"));
    }
    let Some(mut live) = map.remove(&slot.id) else {
        return Err(Failure::new(Code::Internal, "pairing slot lost"));
    };
    live.info.id = id.clone();
    live.info.library = request.library.hex();
    live.info.library_name = request.library_name.clone();
    map.insert(id.clone(), live);
    slot.id = id;
    Ok(request)
}

async fn respond_steps(
    shared: &Arc<Shared>,
    slot: &Slot,
    s: &mut Incoming,
    request: &PairRequest,
) -> Result<(), Failure> {
    let peer = s.peer;
    let nonce_r: [u8; 32] = wire::random();
    // Writes are bounded too: a peer that grants no flow-control credit must not hold the slot.
    tokio::time::timeout(
        STEP_TIMEOUT,
        write_frame(&mut s.send, &PairNonce { nonce: nonce_r }, MAX_SMALL),
    )
    .await
    .map_err(|_| Failure::new(Code::Timeout, "the other device stopped reading"))??;
    let reveal: PairReveal = expect_frame(&mut s.recv, MAX_SMALL, STEP_TIMEOUT, "reveal").await?;
    if wire::commit(&reveal.nonce, &request.pairing) != request.commit {
        return Err(Failure::new(
            Code::ProtocolError,
            "the other device broke the protocol (nonce does not match its commitment)",
        ));
    }
    let exporter = exporter(&s.conn, &request.pairing)?;
    let code = Transcript {
        exporter,
        request,
        initiator: peer,
        responder: shared.me(),
        nonce_i: reveal.nonce,
        nonce_r,
    }
    .code();
    decide(shared, slot, code, &mut s.send, &mut s.recv).await?;
    let join: PairJoin = expect_frame(&mut s.recv, MAX_SNAPSHOT, STEP_TIMEOUT, "join").await?;
    let snap = join.snapshot;
    snap.check()
        .map_err(|e| Failure::new(Code::ProtocolError, format!("bad library: {e}")))?;
    let member = |n: &PeerId| {
        snap.members
            .iter()
            .any(|m| m.node == *n && m.state == MemberState::Member)
    };
    if snap.library != request.library
        || snap.name != request.library_name
        || !member(&shared.me())
        || !member(&peer)
    {
        return Err(Failure::new(
            Code::ProtocolError,
            "the library handed over is not the one offered, or leaves us out",
        ));
    }
    let path = shared.path(&snap.library);
    let stored = {
        // One pairing at a time checks for and creates a library.
        let _creating = lock(&shared.creating);
        match shared.db(&snap.library) {
            // Already here (a re-join after removal, or a repeat): merged, never replaced.
            // An inviter we removed cannot bring us back.
            Some(db) => match db.member(&peer) {
                Ok(Some(m)) if m.record.state == MemberState::Removed => {
                    return Err(Failure::new(
                        Code::Rejected,
                        "the inviting device was removed from this library",
                    ))
                }
                _ => db
                    .merge(&snap)
                    .and_then(|_| db.set_pending(peer))
                    .map(|_| ()),
            },
            None => LibraryDb::create(&path, &snap, Some(peer)).map(|db| {
                lock(&shared.dbs).insert(snap.library, Arc::new(db));
            }),
        }
    };
    stored
        .map_err(|e| Failure::new(Code::Internal, format!("could not store the library: {e}")))?;
    write_frame(&mut s.send, &PairJoined, MAX_SMALL).await?;
    tracing::info!(peer = %peer.short(), library = %snap.library, "joined a library");
    let _ = shared.changed(&snap.library, Some(peer));
    Ok(())
}

/// Shows the code, then waits for both users: ours through [`super::Libraries::answer_pairing`]
/// (or the timeout), theirs as a [`PairDecision`]. Either "no" ends it at once.
async fn decide(
    shared: &Shared,
    slot: &Slot,
    code: String,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
) -> Result<(), Failure> {
    let answer = slot.ask(code);
    let local = tokio::time::timeout(shared.pair_timeout, answer);
    // The peer gets a little longer than its own prompt, so its timeout reaches us first.
    let theirs = expect_frame::<_, PairDecision>(
        recv,
        MAX_SMALL,
        shared.pair_timeout + STEP_TIMEOUT,
        "the other device's answer",
    );
    tokio::pin!(local, theirs);
    let (mut mine_done, mut theirs_done) = (false, false);
    while !(mine_done && theirs_done) {
        tokio::select! {
            r = &mut local, if !mine_done => {
                let accept = matches!(r, Ok(Ok(true)));
                if let Err(e) = write_frame(send, &PairDecision { accept }, MAX_SMALL).await {
                    // The other side may have said no and closed already: its answer is the
                    // better reason, and is already here if it was sent.
                    if !theirs_done {
                        if let Ok(Ok(PairDecision { accept: false })) =
                            tokio::time::timeout(Duration::from_secs(1), &mut theirs).await
                        {
                            return Err(Failure::new(Code::Done, "rejected on the other device"));
                        }
                    }
                    return Err(e.into());
                }
                if !accept {
                    let why = if r.is_err() { "timed out" } else { "rejected here" };
                    return Err(Failure::new(Code::Done, why));
                }
                mine_done = true;
                if !theirs_done {
                    slot.set(|i| i.state = PairingState::WaitingForPeer);
                }
            }
            r = &mut theirs, if !theirs_done => {
                match r {
                    Ok(PairDecision { accept: true }) => theirs_done = true,
                    Ok(PairDecision { accept: false }) => {
                        return Err(Failure::new(Code::Done, "rejected on the other device"))
                    }
                    Err(StreamError::Truncated) => {
                        return Err(Failure::new(Code::Done, "the other device gave up"))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}
