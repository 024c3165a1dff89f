//! Remote media's messages (inner protocol [`INNER_MEDIA`] of the tunnel), and the plain
//! decisions both sides make about them. Flow and bounds: `PROTOCOL.md` beside this file.

use ferry_index::cas::Cas;
use ferry_index::db::EntryId;
use serde::{Deserialize, Serialize};

pub use crate::library::wire::INNER_MEDIA;

/// Largest request: [`MAX_THUMBS`] content ids and change.
pub const MAX_REQUEST: usize = 16 * 1024;
/// Content ids one `Thumbs` request may ask for.
pub const MAX_THUMBS: usize = 256;
/// Largest reply frame: one thumbnail at its limit, with its id.
pub const MAX_REPLY: usize = ferry_index::thumb::MAX_RECEIVED_BYTES + 64;
/// Largest byte range one `File` request may ask for (a reader asks again from where it is).
pub const MAX_RANGE: u64 = 64 * 1024 * 1024;

/// Requester → server, once, first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Thumbnails by content id: one for a grid tile, up to [`MAX_THUMBS`] for preview sync.
    Thumbs { cas: Vec<Cas> },
    /// Bytes `first .. first + len` of file entry `entry` (`len` ≤ [`MAX_RANGE`]).
    File {
        entry: EntryId,
        first: u64,
        len: u64,
    },
    /// The BLAKE3 hash of the whole file of `entry`, read now (to verify a download).
    Hash { entry: EntryId },
}

/// Server → requester. `Thumbs` gets one `Thumb` or `Missing` per id, in order; `File` gets
/// `Bytes` followed by exactly `len` raw bytes; `Hash` gets `Hash`. Any of them may get
/// `Refused` instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Thumb {
        cas: Cas,
        bytes: Vec<u8>,
    },
    Missing {
        cas: Cas,
    },
    /// `size` is the whole file's length now; `len` raw bytes from `first` follow.
    Bytes {
        size: u64,
        first: u64,
        len: u64,
    },
    Hash {
        size: u64,
        hash: [u8; 32],
    },
    Refused(Refusal),
}

/// Why a request gets no bytes. Deliberately coarse: an entry that is not in the library and
/// one that is not on this node get the same `NotFound`, so a member learns nothing of paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("no such file on that device")]
    NotFound,
    #[error("range not satisfiable (the file has {size} bytes)")]
    Unsatisfiable { size: u64 },
    #[error("the file changed on its device since it was indexed")]
    Changed,
    #[error("the device cannot read the file")]
    Unreadable,
    #[error("bad request")]
    Bad,
}

impl Request {
    /// Whether the request is within bounds (checked by the server before any work).
    pub fn check(&self) -> Result<(), Refusal> {
        match self {
            Request::Thumbs { cas } if cas.is_empty() || cas.len() > MAX_THUMBS => {
                Err(Refusal::Bad)
            }
            Request::File { len, .. } if *len == 0 || *len > MAX_RANGE => Err(Refusal::Bad),
            _ => Ok(()),
        }
    }
}

/// What a server sends of a file `size` bytes long for `first, len`: `first` and how many
/// bytes (clamped to the end), or `Unsatisfiable` when `first` is past it.
pub fn clamp(size: u64, first: u64, len: u64) -> Result<(u64, u64), Refusal> {
    if first >= size {
        return Err(Refusal::Unsatisfiable { size });
    }
    Ok((first, len.min(size - first)))
}

/// Where a file's bytes come from, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<N> {
    /// This node's disk.
    Here,
    /// A connected node, for entry `EntryId` (the owner's entry, or another member's copy of
    /// the same content).
    Member(N, EntryId),
    /// Nobody online holds it: say that its owner is offline.
    Offline(N),
}

/// Picks the source of an entry's bytes: this node if it owns it; else its owner if connected
/// and the location is online there; else any connected node holding the same content.
pub fn route<N: Copy + PartialEq>(
    me: N,
    owner: N,
    entry: EntryId,
    location_online: bool,
    holders: &[(EntryId, N)],
    connected: impl Fn(&N) -> bool,
) -> Source<N> {
    if owner == me {
        return Source::Here;
    }
    if location_online && connected(&owner) {
        return Source::Member(owner, entry);
    }
    holders
        .iter()
        .find(|(_, n)| *n != me && *n != owner && connected(n))
        .map_or(Source::Offline(owner), |(e, n)| Source::Member(*n, *e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_bounded() {
        assert_eq!(Request::Thumbs { cas: vec![] }.check(), Err(Refusal::Bad));
        assert!(Request::Thumbs {
            cas: vec![[0; 32]; MAX_THUMBS]
        }
        .check()
        .is_ok());
        assert_eq!(
            Request::Thumbs {
                cas: vec![[0; 32]; MAX_THUMBS + 1]
            }
            .check(),
            Err(Refusal::Bad)
        );
        let file = |len| Request::File {
            entry: [0; 16],
            first: 0,
            len,
        };
        assert_eq!(file(0).check(), Err(Refusal::Bad));
        assert!(file(MAX_RANGE).check().is_ok());
        assert_eq!(file(MAX_RANGE + 1).check(), Err(Refusal::Bad));
        // The largest request fits its frame bound.
        let big = Request::Thumbs {
            cas: vec![[0xFF; 32]; MAX_THUMBS],
        };
        assert!(postcard::to_stdvec(&big).unwrap().len() <= MAX_REQUEST);
    }

    #[test]
    fn ranges_clamp_to_the_file() {
        assert_eq!(clamp(10, 0, 100), Ok((0, 10)));
        assert_eq!(clamp(10, 4, 3), Ok((4, 3)));
        assert_eq!(clamp(10, 9, 5), Ok((9, 1)));
        assert_eq!(clamp(10, 10, 1), Err(Refusal::Unsatisfiable { size: 10 }));
        assert_eq!(clamp(0, 0, 1), Err(Refusal::Unsatisfiable { size: 0 }));
    }

    #[test]
    fn routes_prefer_here_then_the_owner_then_a_copy() {
        let up = |n: &u8| *n != 9;
        assert_eq!(route(1, 1, [1; 16], true, &[], up), Source::Here);
        assert_eq!(
            route(1, 2, [1; 16], true, &[], up),
            Source::Member(2, [1; 16])
        );
        // Owner away (or its drive unplugged): another member's copy of the content.
        let holders = [([7; 16], 1), ([8; 16], 3)];
        assert_eq!(
            route(1, 9, [1; 16], true, &holders, up),
            Source::Member(3, [8; 16])
        );
        assert_eq!(
            route(1, 2, [1; 16], false, &holders, up),
            Source::Member(3, [8; 16])
        );
        assert_eq!(
            route(1, 9, [1; 16], true, &[([7; 16], 9)], up),
            Source::Offline(9)
        );
        assert_eq!(route(1, 9, [1; 16], true, &[], up), Source::Offline(9));
    }
}
