//! A library's contents: the folders it indexes (locations), one row per file and folder under
//! them, content ids, a live watcher and thumbnails. Everything here is synchronous and
//! network-free; `ferry-core` runs it on blocking threads and turns its progress into events.
//!
//! - [`db`]: the schema (documented there) and the [`Contents`] handle: locations, listings.
//! - [`scan`]: walking a location and reconciling its rows with the disk.
//! - [`identify`]: content ids ([`cas`]) and thumbnails ([`thumb`]) for what is new.
//! - [`changes`]: applying the paths the [`watch`]er reports.
//! - [`serve`]: answers for the app's `ferry://` scheme (files and thumbnails, with Range).
//! - [`replica`]: what library sync reads and writes: changes after a sequence number, and
//!   other members' rows applied as read-only replicas.
//! - [`remote`]: where a member's bytes are, and which of its thumbnails this node lacks.
//! - [`marker`]: the file at a location's root that says which location it is (it travels
//!   with a drive).
//! - [`program`]: whether opening a file would run it (the app asks first).

// Nothing from the network or the disk may panic a node: errors are typed and returned. The
// compiler keeps that rule (tests may unwrap).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cas;
pub mod changes;
pub mod db;
pub mod identify;
pub mod marker;
pub mod program;
pub mod remote;
pub mod replica;
pub mod scan;
pub mod serve;
pub mod thumb;
pub mod watch;

pub use changes::ChangeReport;
pub use db::{Contents, EntryInfo, EntryKind, IndexError, LocationId, LocationInfo, Page};
pub use identify::{IdentifyReport, ThumbReport};
pub use scan::{Problem, ScanReport};
pub use watch::{WatchEvent, Watcher};
