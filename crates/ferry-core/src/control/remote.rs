//! Members' sessions (tunnel inner protocol [`INNER_CONTROL`]): a member runs commands on this
//! node with what this node granted it, and this node runs commands on members the same way.
//! The tunnel has proven who the member is and that both are in the library; the session is
//! bound to that library, streams no events, and every call is authorized and logged here
//! (see [`super::Engine::execute`]). Every remote call names its target node: nothing here
//! ever falls back to running a command locally.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_p2p::router::Incoming;
use ferry_p2p::{Code, PeerId, StreamError};
use ferry_util::lock;
use tokio::sync::Semaphore;

use super::command::{Command, Refusal, Reply};
use super::local::{Client, ClientError};
use super::session::Limits;
use super::wire::{INNER_CONTROL, MAX_MEMBER_UP};
use super::{Caller, Engine};
use crate::library::wire::LibraryId;
use crate::library::{Libraries, Shared};

/// Sessions one member may hold here at once; more are refused as busy.
pub const SESSIONS_PER_MEMBER: usize = 4;
/// A member's session with no call for this long is closed.
pub const MEMBER_IDLE: Duration = Duration::from_secs(120);
/// A command run on a member (its tunnel, proofs, the command and the answer) gives up after
/// this: a member that never answers holds no front end for ever.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Transfers members asked this node to send that are remembered (the oldest go first).
const SENDS_KEPT: usize = 10_000;

/// What members' sessions share on this node.
#[derive(Default)]
pub(crate) struct RemoteState {
    slots: Mutex<HashMap<PeerId, Arc<Semaphore>>>,
    /// Transfers members asked this node to send: who asked, in which library, in order.
    sends: Mutex<Vec<(String, PeerId, LibraryId)>>,
}

impl RemoteState {
    /// Records that `member` of `library` started transfer `id` here.
    pub(crate) fn sent(&self, id: String, member: PeerId, library: LibraryId) {
        let mut sends = lock(&self.sends);
        if sends.len() >= SENDS_KEPT {
            sends.remove(0);
        }
        sends.push((id, member, library));
    }

    /// Whether `member` of `library` started transfer `id` here.
    pub(crate) fn started(&self, id: &str, member: &PeerId, library: &LibraryId) -> bool {
        lock(&self.sends)
            .iter()
            .any(|(t, m, l)| t == id && m == member && l == library)
    }
}

/// Serves a member's session on a proven tunnel stream.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    library: LibraryId,
    peer: PeerId,
    s: &mut Incoming,
) -> Result<(), StreamError> {
    let libs = Libraries::from_shared(shared);
    let Some(engine) = libs.engine() else {
        return Err(StreamError::Local(Code::Busy, "node not running"));
    };
    let slots = lock(&libs.remote().slots)
        .entry(peer)
        .or_insert_with(|| Arc::new(Semaphore::new(SESSIONS_PER_MEMBER)))
        .clone();
    let Ok(_slot) = slots.try_acquire_owned() else {
        tracing::info!(peer = %peer.short(), "a member opened too many control sessions");
        return Err(StreamError::Local(Code::Busy, "too many sessions"));
    };
    let caller = Caller::Member {
        node: peer,
        library,
    };
    let limits = Limits {
        max_up: MAX_MEMBER_UP,
        idle: Some(MEMBER_IDLE),
    };
    super::session::serve(engine, caller, None, limits, &mut s.recv, &mut s.send)
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

/// The member `node` (name or fingerprint prefix) in `library`, or in whichever library it is
/// a member of: refused when the name is ambiguous, so a member of another library that took
/// the same name is never reached instead.
fn find_member(
    engine: &Engine,
    node: &str,
    library: Option<&str>,
) -> Result<(LibraryId, PeerId), Refusal> {
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
    let found: Vec<(LibraryId, PeerId)> = candidates
        .into_iter()
        .filter_map(|lib| Some((lib, engine.member(&lib, node).ok()?.node)))
        .collect();
    match found.as_slice() {
        [] => Err(Refusal::failed(format!(
            "{node} is not a member of {}",
            library.unwrap_or("any library here")
        ))),
        [(_, first), ..] if found.iter().any(|(_, p)| p != first) => Err(Refusal::failed(format!(
            "{node} names members in several libraries: give --library or a fingerprint"
        ))),
        [one, ..] => Ok(*one),
    }
}

/// [`Command::Remote`]: runs `command` on the member `node` of `library` (or of whichever
/// library it is in), under what that member granted this node.
pub(crate) async fn call_member(
    engine: &Engine,
    node: &str,
    library: Option<&str>,
    mut command: Command,
) -> Result<Reply, Refusal> {
    let (lib, peer) = find_member(engine, node, library)?;
    // The member resolves nothing of ours: the library goes by id.
    if let Some(q) = command.library_mut() {
        *q = lib.hex();
    }
    let call = async {
        let client = open(engine.libraries(), &peer, &lib).await?;
        match client.call(command).await {
            Ok(r) => Ok(r),
            Err(ClientError::Refused(r)) => Err(r),
            Err(e) => Err(Refusal::failed(e)),
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(Refusal::failed(format!(
                "no answer within {CALL_TIMEOUT:?}"
            )))
        })
}
