//! The member exchange, inside the tunnel: the opener sends its [`Snapshot`], the acceptor
//! merges it and answers with its own (merged) one, which the opener merges. Both then hold
//! the same list; a change is passed on to the other online members, so a removal reaches
//! every member that is reachable from the one who made it.

use std::sync::Arc;
use std::time::Duration;

use ferry_p2p::router::Incoming;
use ferry_p2p::wire::{expect_frame, write_frame};
use ferry_p2p::{Code, PeerId, StreamError};

use super::tunnel::{self, TunnelError};
use super::wire::{LibraryId, Snapshot, INNER_MEMBERS, MAX_SNAPSHOT};
use super::{LibraryError, Shared};
use crate::event::Event;

const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(15);
/// A whole exchange (dial, tunnel, both snapshots) ends within this, whatever the peer does.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(45);

/// Exchanges member lists with `peer` (the opener's side). Failures are logged: the next
/// connection retries.
pub(crate) async fn exchange(shared: Arc<Shared>, peer: PeerId, library: LibraryId) {
    match try_exchange(&shared, peer, library).await {
        Ok(()) => {}
        // Not proof by itself (it may not have heard of a re-join yet): it sends us the
        // record that removed us, which is merged like any other.
        Err(TunnelError::Revoked(_)) => {
            tracing::warn!(peer = %peer.short(), %library, "a member says this node was removed")
        }
        Err(TunnelError::Refused(_)) => {
            let db = shared.db(&library);
            if db.and_then(|db| db.pending_via().ok().flatten()) == Some(peer) {
                // Our inviter never recorded us (it failed between our join and its commit):
                // the pairing did not happen, so neither does the library here.
                tracing::warn!(peer = %peer.short(), %library, "inviter does not know this node: pairing undone");
                match shared.forget(&library) {
                    Ok(()) => {
                        let _ = shared
                            .events
                            .send(Event::LibraryRemoved { id: library.hex() });
                    }
                    Err(e) => {
                        tracing::error!(error = %LibraryError::from(e), "could not remove the library")
                    }
                }
            } else {
                tracing::info!(peer = %peer.short(), %library, "member refused us (has not heard of us yet?)");
            }
        }
        Err(e) => {
            tracing::info!(peer = %peer.short(), %library, error = %e, "member exchange failed")
        }
    }
}

pub(crate) async fn try_exchange(
    shared: &Arc<Shared>,
    peer: PeerId,
    library: LibraryId,
) -> Result<(), TunnelError> {
    send_snapshot(shared, peer, library, false).await
}

/// Tells a member we removed that it was: our snapshot goes out, its answer is not merged
/// (a removed node's records are not trusted any more, or it could re-add itself).
pub(crate) async fn tell_removed(
    shared: &Arc<Shared>,
    peer: PeerId,
    library: LibraryId,
) -> Result<(), TunnelError> {
    send_snapshot(shared, peer, library, true).await
}

/// The opener's side of one exchange, bounded as a whole: our snapshot out, theirs back,
/// merged unless `to_removed` (then their answer only says they merged ours).
async fn send_snapshot(
    shared: &Arc<Shared>,
    peer: PeerId,
    library: LibraryId,
    to_removed: bool,
) -> Result<(), TunnelError> {
    let once = async {
        let (mut send, mut recv) =
            tunnel::open(shared, &peer, &library, INNER_MEMBERS, to_removed).await?;
        let db = shared.db(&library).ok_or(TunnelError::NoLibrary(library))?;
        write_frame(&mut send, &db.snapshot().map_err(internal)?, MAX_SNAPSHOT).await?;
        let _ = send.finish();
        let theirs: Snapshot =
            expect_frame(&mut recv, MAX_SNAPSHOT, SNAPSHOT_TIMEOUT, "member snapshot").await?;
        if !to_removed {
            merge(shared, &library, &theirs, peer)?;
        }
        Ok(())
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, once)
        .await
        .unwrap_or(Err(TunnelError::Stream(StreamError::Timeout(
            "member exchange",
        ))))
}

/// The acceptor's side.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    library: LibraryId,
    peer: PeerId,
    s: &mut Incoming,
) -> Result<(), StreamError> {
    let theirs: Snapshot = expect_frame(
        &mut s.recv,
        MAX_SNAPSHOT,
        SNAPSHOT_TIMEOUT,
        "member snapshot",
    )
    .await?;
    merge(shared, &library, &theirs, peer)?;
    let db = shared
        .db(&library)
        .ok_or(StreamError::Local(Code::Internal, "library gone"))?;
    let mine = db
        .snapshot()
        .map_err(|_| StreamError::Local(Code::Internal, "library database"))?;
    write_frame(&mut s.send, &mine, MAX_SNAPSHOT).await
}

/// Merges a member's snapshot; on change, announces it and passes it on.
fn merge(
    shared: &Arc<Shared>,
    library: &LibraryId,
    theirs: &Snapshot,
    from: PeerId,
) -> Result<(), StreamError> {
    if theirs.library != *library {
        return Err(StreamError::Protocol("snapshot of another library".into()));
    }
    theirs.check().map_err(StreamError::Protocol)?;
    let db = shared
        .db(library)
        .ok_or(StreamError::Local(Code::Internal, "library gone"))?;
    let changed = db.merge(theirs).map_err(|e| match e {
        super::db::DbError::Rejected(why) => StreamError::Protocol(why),
        _ => StreamError::Local(Code::Internal, "library database"),
    })?;
    if changed {
        tracing::info!(peer = %from.short(), %library, "member list updated");
        if let Err(e) = shared.changed(library, Some(from)) {
            tracing::warn!(error = %e, "library changed but cannot be read");
        }
    }
    Ok(())
}

fn internal<E: std::fmt::Display>(e: E) -> TunnelError {
    TunnelError::Stream(StreamError::Protocol(e.to_string()))
}
