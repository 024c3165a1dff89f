//! Control: one typed command surface for every front end of a node (spec: `PROTOCOL.md`).
//!
//! - [`command`]: the [`Command`] enum, the [`Capability`] each needs, [`Reply`], [`Refusal`].
//! - [`wire`]: the frames of a session (a 4-byte length, one JSON object), bounded.
//! - `run`: what each command does, on an [`Engine`] (a running node's, or the data dir's
//!   libraries when no node runs).
//! - `session`: one front end's session: calls in, replies and events out, bounded.
//! - [`local`]: the session over a Unix socket in the data dir (mode 0600, peer uid checked):
//!   how the CLI attaches to a running app or `ferry node`.
//! - [`remote`]: the session over the library tunnel (inner protocol 4): members run
//!   commands here with what this node granted them.
//!
//! Who may run what is [`authorize`], a plain function: a local caller holds every
//! capability; a member holds `read` by membership, `manage` and `send` only if this node
//! granted them (checked at every call, so a revoke takes effect on the next one), and
//! `owner` never.

pub mod command;
pub mod local;
pub mod remote;
mod run;
mod session;
pub mod wire;

use std::path::PathBuf;

use ferry_p2p::{P2p, PeerId};

use crate::library::wire::LibraryId;
use crate::{Libraries, Spacedrop};
pub use command::{Capability, Command, NodeStatus, Refusal, Reply};
pub(crate) use run::resolve;

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// This machine's user: the app, or a front end on the local socket.
    Local,
    /// A member of `library`, over a proven tunnel.
    Member { node: PeerId, library: LibraryId },
}

/// What a command runs on: the libraries always; the rest while a node runs.
#[derive(Clone)]
pub struct Engine {
    libraries: Libraries,
    live: Option<Live>,
    data_dir: PathBuf,
}

/// A running node's parts.
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) p2p: P2p,
    pub(crate) spacedrop: Spacedrop,
    pub(crate) discovery: bool,
}

impl Engine {
    pub(crate) fn live(libraries: Libraries, live: Live, data_dir: PathBuf) -> Engine {
        Engine {
            libraries,
            live: Some(live),
            data_dir,
        }
    }

    /// A node's libraries once its network is gone (it stopped).
    pub(crate) fn stopped(libraries: Libraries) -> Engine {
        let data_dir = libraries.data_dir();
        Engine {
            libraries,
            live: None,
            data_dir,
        }
    }

    /// The data dir's libraries and stored transfers, without a node: library bookkeeping,
    /// listings and grants work; commands that need the network refuse with `NeedsNode`.
    pub fn offline(data_dir: PathBuf) -> Result<Engine, crate::LibraryError> {
        Ok(Engine {
            libraries: Libraries::offline(&data_dir)?,
            live: None,
            data_dir,
        })
    }

    pub fn libraries(&self) -> &Libraries {
        &self.libraries
    }

    /// Runs one command for `caller`: authorized, carried out, and (for a member) logged.
    pub async fn execute(&self, caller: Caller, command: Command) -> Result<Reply, Refusal> {
        // Commands that are SQLite and disk work run on a blocking thread, off the async ones
        // (the app's every click is one).
        if command.blocking() {
            let engine = self.clone();
            let handle = tokio::runtime::Handle::current();
            return tokio::task::spawn_blocking(move || {
                handle.block_on(engine.authorized(caller, command))
            })
            .await
            .map_err(|_| Refusal::failed("the command failed inside the node"))?;
        }
        self.authorized(caller, command).await
    }

    async fn authorized(&self, caller: Caller, mut command: Command) -> Result<Reply, Refusal> {
        let Caller::Member { node, library } = caller else {
            return run::run(self, caller, command).await;
        };
        let name = command.name();
        let db = self.libraries.db_of(&library);
        // Membership is read at every call: a member removed while its session is open is
        // refused from its next command on. A grant counts only if it was given after the
        // member joined: a node removed and paired again starts with none.
        let added = db
            .as_ref()
            .and_then(|db| db.member(&node).ok().flatten())
            .filter(|m| m.record.state == crate::library::wire::MemberState::Member)
            .map(|m| m.record.added);
        let granted = |cap: Capability| match (&db, added) {
            (Some(db), Some(added)) => db
                .granted_at(&node, cap.as_str())
                .ok()
                .flatten()
                .is_some_and(|at| at >= added),
            _ => false,
        };
        let named = match command.library_mut() {
            Some(q) => match self.libraries.find(q) {
                Ok(id) => {
                    // The member's own spelling is resolved here, once.
                    *q = id.hex();
                    Some(id)
                }
                Err(_) => None,
            }
            .or(Some(LibraryId([0; 16]))),
            None => None,
        };
        let result = match authorize(&caller, command.capability(), named, granted) {
            Ok(()) if added.is_none() => Err(Refusal::NotMember),
            Ok(()) => run::run(self, caller, command).await,
            Err(r) => Err(r),
        };
        let outcome = outcome(&result);
        tracing::info!(member = %node.short(), library = %library, command = %name, %outcome, "remote command");
        if let Some(db) = db {
            let row = crate::library::db::RemoteLogRow {
                at: ferry_util::unix_now(),
                node,
                command: name,
                outcome,
            };
            if let Err(e) = db.log_remote(&row) {
                tracing::warn!(error = %e, "could not log a remote command");
            }
        }
        result
    }
}

/// How a member's command ended, for the serving node's log: one short line. Messages can
/// repeat what the member sent (a path it asked for): they are cut and their control
/// characters escaped, so the log can neither be forged line by line nor grown without end.
pub fn outcome(result: &Result<Reply, Refusal>) -> String {
    const MAX: usize = 200;
    let text = match result {
        Ok(_) => return "ok".into(),
        // Said from this node's side: the member's own message reads "not granted you".
        Err(Refusal::NotGranted { capability }) => format!("refused: no \"{capability}\" grant"),
        Err(e) => e.to_string(),
    };
    let mut out = crate::text::escaped(&text, &[]).into_owned();
    if out.len() > MAX {
        let cut = (0..=MAX)
            .rev()
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(0);
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// May `caller` run a command that needs `cap` and names library `named` (`None`: none)?
/// `granted` says whether this node granted the member a capability (read at every call).
pub fn authorize(
    caller: &Caller,
    cap: Capability,
    named: Option<LibraryId>,
    granted: impl Fn(Capability) -> bool,
) -> Result<(), Refusal> {
    let Caller::Member { library, .. } = caller else {
        return Ok(());
    };
    if cap == Capability::Owner {
        return Err(Refusal::OwnerOnly);
    }
    if named.is_some_and(|l| l != *library) {
        return Err(Refusal::OtherLibrary);
    }
    match cap {
        Capability::Read => Ok(()),
        c if granted(c) => Ok(()),
        capability => Err(Refusal::NotGranted { capability }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> Caller {
        Caller::Member {
            node: PeerId([1; 32]),
            library: LibraryId([2; 16]),
        }
    }

    #[test]
    fn local_callers_may_do_everything() {
        for cap in [
            Capability::Owner,
            Capability::Read,
            Capability::Manage,
            Capability::Send,
        ] {
            assert_eq!(authorize(&Caller::Local, cap, None, |_| false), Ok(()));
        }
    }

    #[test]
    fn members_read_by_membership_and_need_grants_for_the_rest() {
        let lib = Some(LibraryId([2; 16]));
        assert_eq!(
            authorize(&member(), Capability::Read, lib, |_| false),
            Ok(())
        );
        assert_eq!(
            authorize(&member(), Capability::Manage, lib, |_| false),
            Err(Refusal::NotGranted {
                capability: Capability::Manage
            })
        );
        assert_eq!(
            authorize(&member(), Capability::Manage, lib, |c| c
                == Capability::Manage),
            Ok(())
        );
        // A grant of one capability is not another.
        assert_eq!(
            authorize(&member(), Capability::Send, None, |c| c
                == Capability::Manage),
            Err(Refusal::NotGranted {
                capability: Capability::Send
            })
        );
    }

    #[test]
    fn owner_commands_and_other_libraries_are_refused_to_members() {
        assert_eq!(
            authorize(&member(), Capability::Owner, None, |_| true),
            Err(Refusal::OwnerOnly)
        );
        assert_eq!(
            authorize(
                &member(),
                Capability::Read,
                Some(LibraryId([3; 16])),
                |_| true
            ),
            Err(Refusal::OtherLibrary)
        );
    }
}
