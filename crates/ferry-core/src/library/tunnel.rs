//! The tunnel (protocol 6): before any library protocol runs on a stream, both sides prove
//! that they are members of the library, with signatures bound to this TLS channel.
//!
//! ```text
//! opener                                   acceptor
//!   Open { library, inner, nonce_o }  ──▶   member? else reset Refused (or Revoked)
//!                                     ◀──   Challenge { nonce_a, sig_a }
//!   verify sig_a, acceptor a member?
//!   Proof { sig_o }                   ──▶   verify sig_o
//!                                     ◀──   Accepted
//!   ...the inner protocol...
//! ```
//!
//! Each signature covers [`wire::proof_message`]: role, TLS exporter, library, inner protocol,
//! both nonces and both identities, so it cannot be replayed on another connection or stream,
//! for another library, or reflected. Unknown libraries and non-members get the same code
//! (`Refused`): a stranger cannot probe which libraries exist.

use std::time::Duration;

use ferry_p2p::router::{open as open_stream, BoxFuture, Incoming, Protocol};
use ferry_p2p::wire::{expect_frame, write_frame};
use ferry_p2p::{Code, PeerId, StreamError};
use ferry_util::unix_now;

use super::wire::{
    self, Accepted, Challenge, LibraryId, MemberState, Open, Proof, Role, Signature, MAX_SMALL,
    TUNNEL_ID, VERSION,
};
use super::{members, Shared};

/// Each handshake message must arrive within this.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("{0} refused: not a member of this library (or it does not know it)")]
    Refused(String),
    #[error("{0} refused: this node was removed from the library")]
    Revoked(String),
    #[error("{0} is not a member of this library here")]
    NotMember(String),
    #[error("{0} failed the membership proof")]
    BadProof(String),
    #[error("this node is not a member of library {0}")]
    NoLibrary(LibraryId),
    #[error("cannot reach {0}: {1}")]
    Connect(String, String),
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// Who may use a library's tunnel: members whose record says so, while we are one too.
fn authorize(shared: &Shared, library: &LibraryId, peer: &PeerId) -> Result<(), Code> {
    let Some(db) = shared.db(library) else {
        return Err(Code::Refused);
    };
    let me = db.member(&shared.me()).ok().flatten();
    if !me.is_some_and(|m| m.record.state == MemberState::Member) {
        return Err(Code::Refused);
    }
    match db.member(peer) {
        Ok(Some(m)) if m.record.state == MemberState::Member => Ok(()),
        Ok(Some(_)) => Err(Code::Revoked),
        Ok(None) => Err(Code::Refused),
        Err(e) => {
            tracing::error!(library = %library, error = %e, "library database");
            Err(Code::Internal)
        }
    }
}

fn exporter(conn: &quinn::Connection, library: &LibraryId) -> Result<[u8; 32], StreamError> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, b"EXPORTER-ferry-tunnel-v1", &library.0)
        .map_err(|_| StreamError::Local(Code::Internal, "TLS exporter unavailable"))?;
    Ok(out)
}

pub(crate) struct TunnelProtocol(pub(crate) std::sync::Arc<Shared>);

impl Protocol for TunnelProtocol {
    fn id(&self) -> u16 {
        TUNNEL_ID
    }

    fn versions(&self) -> std::ops::RangeInclusive<u16> {
        VERSION..=VERSION
    }

    fn handle<'a>(&'a self, s: &'a mut Incoming) -> BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(accept(&self.0, s))
    }
}

async fn accept(shared: &std::sync::Arc<Shared>, s: &mut Incoming) -> Result<(), StreamError> {
    let peer = s.peer;
    let open: Open = expect_frame(&mut s.recv, MAX_SMALL, STEP_TIMEOUT, "tunnel open").await?;
    if let Err(code) = authorize(shared, &open.library, &peer) {
        tracing::warn!(peer = %peer.short(), library = %open.library, ?code, "tunnel refused");
        if code == Code::Revoked {
            tell_once_per_connection(shared, &s.conn, peer, open.library);
        }
        return Err(StreamError::Local(code, "not a member of this library"));
    }
    let me = shared.me();
    let exp = exporter(&s.conn, &open.library)?;
    let nonce: [u8; 32] = wire::random();
    let sig = shared.identity.sign(&wire::proof_message(
        Role::Acceptor,
        &exp,
        &open,
        &nonce,
        &peer,
        &me,
    ));
    write_frame(
        &mut s.send,
        &Challenge {
            nonce,
            proof: Signature::from_bytes(sig),
        },
        MAX_SMALL,
    )
    .await?;
    let proof: Proof = expect_frame(&mut s.recv, MAX_SMALL, STEP_TIMEOUT, "tunnel proof").await?;
    let msg = wire::proof_message(Role::Opener, &exp, &open, &nonce, &peer, &me);
    if !peer.verify(&msg, &proof.proof.to_bytes()) {
        tracing::warn!(peer = %peer.short(), library = %open.library, "tunnel refused: bad proof");
        return Err(StreamError::Local(Code::Refused, "bad membership proof"));
    }
    write_frame(&mut s.send, &Accepted, MAX_SMALL).await?;
    proven(shared, &open.library, &peer, Some(s.conn.remote_address()));
    match open.inner {
        wire::INNER_MEMBERS => members::serve(shared, open.library, peer, s).await,
        wire::INNER_SYNC => super::sync::serve(shared, open.library, peer, s).await,
        wire::INNER_MEDIA => super::media::serve::serve(shared, open.library, peer, s).await,
        wire::INNER_CONTROL => crate::control::remote::serve(shared, open.library, peer, s).await,
        _ => Err(StreamError::Local(
            Code::UnknownProtocol,
            "unknown library protocol",
        )),
    }
}

/// Opens a tunnel stream to `peer` for `library`'s protocol `inner`, both sides proven.
/// `to_removed` also opens one to a member we removed, only to tell it so (see `members`).
pub(crate) async fn open(
    shared: &Shared,
    peer: &PeerId,
    library: &LibraryId,
    inner: u16,
    to_removed: bool,
) -> Result<(quinn::SendStream, quinn::RecvStream), TunnelError> {
    let attempt = || {
        tokio::time::timeout(
            STEP_TIMEOUT * 3,
            open_once(shared, peer, library, inner, to_removed),
        )
    };
    match attempt().await {
        // The connection was replaced under us (both sides dialed; the tie-break closed this
        // one): once more, on the survivor.
        Ok(Err(TunnelError::Stream(StreamError::Connection(_)))) => attempt().await,
        r => r,
    }
    .unwrap_or(Err(TunnelError::Stream(StreamError::Timeout("tunnel"))))
}

async fn open_once(
    shared: &Shared,
    peer: &PeerId,
    library: &LibraryId,
    inner: u16,
    to_removed: bool,
) -> Result<(quinn::SendStream, quinn::RecvStream), TunnelError> {
    match authorize(shared, library, peer) {
        Ok(()) => {}
        Err(Code::Revoked) if to_removed => {}
        Err(Code::Refused) if shared.db(library).is_none() => {
            return Err(TunnelError::NoLibrary(*library))
        }
        Err(_) => return Err(TunnelError::NotMember(peer.short())),
    }
    let p2p = shared
        .p2p
        .get()
        .ok_or_else(|| TunnelError::Connect(peer.short(), "node not running".into()))?;
    let conn = p2p
        .connect_peer(peer)
        .await
        .map_err(|e| TunnelError::Connect(peer.short(), e.to_string()))?;
    let me = shared.me();
    let (mut send, mut recv) = open_stream(&conn, TUNNEL_ID, VERSION).await?;
    let open = Open {
        library: *library,
        inner,
        nonce: wire::random(),
    };
    write_frame(&mut send, &open, MAX_SMALL).await?;
    let challenge: Challenge =
        match expect_frame(&mut recv, MAX_SMALL, STEP_TIMEOUT, "tunnel challenge").await {
            Ok(c) => c,
            Err(StreamError::Peer(Code::Refused)) => {
                return Err(TunnelError::Refused(peer.short()))
            }
            Err(StreamError::Peer(Code::Revoked)) => {
                return Err(TunnelError::Revoked(peer.short()))
            }
            Err(e) => return Err(e.into()),
        };
    let exp = exporter(&conn, library)?;
    let msg = wire::proof_message(Role::Acceptor, &exp, &open, &challenge.nonce, &me, peer);
    if !peer.verify(&msg, &challenge.proof.to_bytes()) {
        let _ = send.reset(Code::Refused.var_int());
        return Err(TunnelError::BadProof(peer.short()));
    }
    let sig = shared.identity.sign(&wire::proof_message(
        Role::Opener,
        &exp,
        &open,
        &challenge.nonce,
        &me,
        peer,
    ));
    write_frame(
        &mut send,
        &Proof {
            proof: Signature::from_bytes(sig),
        },
        MAX_SMALL,
    )
    .await?;
    match expect_frame::<_, Accepted>(&mut recv, MAX_SMALL, STEP_TIMEOUT, "tunnel accept").await {
        Ok(Accepted) => {}
        Err(StreamError::Peer(Code::Refused)) => return Err(TunnelError::Refused(peer.short())),
        Err(e) => return Err(e.into()),
    }
    proven(shared, library, peer, Some(conn.remote_address()));
    Ok((send, recv))
}

/// A removed member that knocks is sent the record that removed it (once per connection), so
/// it learns from a record, not from our word.
fn tell_once_per_connection(
    shared: &std::sync::Arc<Shared>,
    conn: &quinn::Connection,
    peer: PeerId,
    library: LibraryId,
) {
    let first = {
        let mut told = super::lock(&shared.told);
        told.retain(|(p, _), _| shared.p2p.get().is_some_and(|n| n.connection(p).is_some()));
        told.insert((peer, library), conn.stable_id()) != Some(conn.stable_id())
    };
    if first {
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = members::tell_removed(&shared, peer, library).await {
                tracing::info!(peer = %peer.short(), error = %e, "could not tell a removed member");
            }
        });
    }
}

/// A member proved itself: remember where. Any member accepting us means our inviter recorded
/// our join (that is how the others heard of us), so a pending join is confirmed.
fn proven(shared: &Shared, library: &LibraryId, peer: &PeerId, addr: Option<std::net::SocketAddr>) {
    let Some(db) = shared.db(library) else { return };
    if let Err(e) = db.seen(peer, addr.map(|a| a.to_string()), unix_now()) {
        tracing::warn!(error = %e, "could not record a member sighting");
    }
    if db.pending_via().ok().flatten().is_some() && db.confirm_join().is_ok() {
        if let Ok(library) = shared.info(library) {
            let _ = shared.events.send(crate::event::Event::Library { library });
        }
    }
}
