//! Ferry's engine. A [`Node`] owns the data dir, the identity and the peer-to-peer layer, and
//! reports everything that happens as one typed [`Event`] stream; the CLI prints it, the desktop
//! shell forwards it to the UI.
//!
//! - [`node`]: starting and stopping a node, and its commands.
//! - [`event`]: the [`Event`] enum (serialized with a `type` tag; documented in docs/USAGE.md).
//! - [`spacedrop`]: sending files and folders to a nearby peer (protocols 3 and 4): its spec,
//!   messages, flows, decisions and transfer store, in one folder.
//! - [`library`]: libraries, pairing, the tunnel, the member exchange and library sync.
//! - [`control`]: the one command surface every front end uses (in process, over the local
//!   socket, and for members over the tunnel), each command tagged with its capability.
//! - [`target`]: how a user names a peer (fingerprint, name, `host:port`, `id@host:port`).
//!
//! A protocol lives in one folder: its specification (`PROTOCOL.md`), its messages
//! (`wire.rs`), its flows, its decisions as plain functions, and the store only it uses
//! (`spacedrop/`, `library/sync/`; pairing and the tunnel are specified in `PROTOCOL.md` at
//! the crate's root).

// Nothing from the network or the disk may panic a node: errors are typed and returned. The
// compiler keeps that rule (tests may unwrap).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod control;
pub mod event;
pub mod library;
pub mod node;
pub mod spacedrop;
pub mod target;

pub use event::Event;
/// The contents engine (locations, entries, `ferry://` answers), for the shells that show it.
pub use ferry_index as index;
/// The characters never shown as they are (one list for the engine, the CLI and the app).
pub use ferry_p2p::text;
pub use ferry_p2p::{LostReason, PeerId, PeerSnapshot, PeerState};
pub use library::{Libraries, LibraryError, LibraryInfo, MemberInfo, PairingInfo, PairingState};
pub use node::{Node, NodeConfig, NodeError};
pub use spacedrop::{
    AcceptPolicy, Decision, History, LocalSendConfig, Spacedrop, SpacedropConfig, TransferInfo,
    TransferState, Via,
};
pub use target::{Target, TargetError};
