//! Spaceblock v2: Ferry's data path, over any `AsyncRead`/`AsyncWrite` pair.
//!
//! - [`manifest`]: what a transfer holds, described once up front (ids, validated path
//!   components, sizes, modes, mtimes), and how it is collected from local paths.
//! - [`names`]: hostile names from a peer made safe for this OS.
//! - [`record`]: the data stream's records (file start, data, end with BLAKE3, abort).
//! - [`send`] / [`recv`]: the two ends of a data stream. No per-block acknowledgement: the
//!   transport's flow control is the back-pressure, and many small files go back to back.
//! - [`place`]: where verified files land, never replacing anything.
//!
//! The layout on the wire is specified in `PROTOCOL.md` beside this crate.

// Nothing from the network or the disk may panic a node: errors are typed and returned. The
// compiler keeps that rule (tests may unwrap).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod manifest;
pub mod names;
pub mod place;
pub mod record;
pub mod recv;
pub mod send;

pub use manifest::{Entry, EntryKind, Manifest};
