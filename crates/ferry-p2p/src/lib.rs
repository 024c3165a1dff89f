//! Ferry's peer-to-peer layer. It knows nothing of files or libraries.
//!
//! Layout, bottom up:
//! - [`identity`]: the node's Ed25519 key pair; its public key is the [`PeerId`].
//! - [`tls`]: TLS 1.3 with raw public keys, so the handshake proves each side's identity.
//! - [`endpoint`]: the UDP socket and quinn endpoint, with liveness and stream limits.
//! - [`congestion`]: the congestion controller (CUBIC that ignores random loss).
//! - [`wire`]: the stream header, error codes and bounded length-prefixed frames.
//! - [`router`]: dispatches each incoming stream to its [`Protocol`] by header.
//! - [`ping`] (the reference protocol) and [`hello`] (display data exchange).
//! - [`discovery`]: mDNS announcements and browsing (hints, never trusted).
//! - [`text`]: the characters never shown as they are (controls, invisible formatting).
//! - [`node`]: [`P2p`], which runs all of the above and keeps the peer registry.
//!
//! The wire format is specified in `PROTOCOL.md` beside this crate.

// Nothing from the network or the disk may panic a node: errors are typed and returned. The
// compiler keeps that rule (tests may unwrap).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod congestion;
pub mod discovery;
pub mod endpoint;
pub mod hello;
pub mod identity;
pub mod node;
pub mod ping;
pub mod router;
/// The characters never shown as they are (one list, in `ferry-util`, for every crate).
pub use ferry_util::text;
pub mod tls;
pub mod wire;

pub use discovery::DiscoveryConfig;
pub use endpoint::TransportLimits;
pub use hello::NodeInfo;
pub use identity::{Identity, PeerId};
pub use node::{
    DialError, LostReason, P2p, P2pConfig, P2pEvent, PeerSnapshot, PeerState, PingFailure,
};
pub use router::{Incoming, Protocol};
pub use wire::{Code, StreamError};
