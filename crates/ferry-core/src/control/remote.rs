//! Members' sessions (tunnel inner protocol [`INNER_CONTROL`]): a member runs commands on this
//! node with what this node granted it, and this node runs commands on members the same way.
//! The tunnel has proven who the member is and that both are in the library; the session is
//! bound to that library, streams no events, and every call is authorized and logged here
//! (see [`super::Engine::execute`]). Every remote call names its target node: nothing here
//! ever falls back to running a command locally.

use std::sync::Arc;

use ferry_p2p::router::Incoming;
use ferry_p2p::{Code, PeerId, StreamError};

use super::command::{Command, Refusal, Reply};
use super::local::{Client, ClientError};
use super::wire::INNER_CONTROL;
use super::{Caller, Engine};
use crate::library::wire::LibraryId;
use crate::library::{Libraries, Shared};

/// Serves a member's session on a proven tunnel stream.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    library: LibraryId,
    peer: PeerId,
    s: &mut Incoming,
) -> Result<(), StreamError> {
    let Some(engine) = Libraries::from_shared(shared).engine() else {
        return Err(StreamError::Local(Code::Busy, "node not running"));
    };
    let caller = Caller::Member {
        node: peer,
        library,
    };
    super::session::serve(engine, caller, None, &mut s.recv, &mut s.send)
        .await
        .map_err(|e| {
            tracing::debug!(peer = %peer.short(), error = %e, "member session ended");
            StreamError::Local(Code::ProtocolError, "control session")
        })?;
    let _ = s.send.finish();
    Ok(())
}

/// Opens a session with member `peer` of `library` (no events).
pub async fn open(libs: &Libraries, peer: &PeerId, library: &LibraryId) -> Result<Client, Refusal> {
    let (send, recv) = libs
        .open_tunnel(peer, library, INNER_CONTROL)
        .await
        .map_err(Refusal::failed)?;
    Client::start(recv, send, false)
        .await
        .map_err(Refusal::failed)
}

/// [`Command::Remote`]: finds the member (`node`: name or fingerprint prefix) in `library`
/// (or the first library both are in), and runs `command` there.
pub(crate) async fn call_member(
    engine: &Engine,
    node: &str,
    library: Option<&str>,
    mut command: Command,
) -> Result<Reply, Refusal> {
    let libs = engine.libraries();
    let candidates = match library {
        Some(q) => vec![libs.find(q).map_err(Refusal::failed)?],
        None => libs
            .list()
            .into_iter()
            .filter(|l| !l.removed)
            .filter_map(|l| LibraryId::parse(&l.id))
            .collect(),
    };
    let mut found = None;
    for lib in candidates {
        if let Ok(m) = engine.member(&lib, node) {
            found = Some((lib, m.node));
            break;
        }
    }
    let Some((lib, peer)) = found else {
        return Err(Refusal::failed(format!(
            "{node} is not a member of {}",
            library.unwrap_or("any library here")
        )));
    };
    // The member resolves nothing of ours: the library goes by id.
    if let Some(q) = command.library_mut() {
        *q = lib.hex();
    }
    let client = open(libs, &peer, &lib).await?;
    match client.call(command).await {
        Ok(r) => Ok(r),
        Err(ClientError::Refused(r)) => Err(r),
        Err(e) => Err(Refusal::failed(e)),
    }
}
