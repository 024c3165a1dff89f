//! Library sync's messages (inner protocol [`INNER_SYNC`] of the tunnel) and the plan a server
//! makes from a puller's marks. Flow, bounds and failure cases: `PROTOCOL.md` beside this file.

use ferry_index::replica::{Author, Batch, Mark};
use serde::{Deserialize, Serialize};

pub use crate::library::wire::INNER_SYNC;

/// Largest puller message: [`MAX_MARKS`] marks of 48 bytes and change.
pub const MAX_UP: usize = 64 * 1024;
/// Largest server message: a batch (about [`BATCH_BYTES`] of changes, one change of a path at
/// its deepest, and the location records it refers to).
pub const MAX_DOWN: usize = 4 * 1024 * 1024;
/// What a server puts in one batch, about (it stops adding changes past this).
pub const BATCH_BYTES: usize = 512 * 1024;
/// Authors a puller may report, and a server announce: a library's member bound.
pub const MAX_MARKS: usize = crate::library::wire::MAX_MEMBERS;

/// Puller → server, once, first: how far it holds each author.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Up {
    Pull { marks: Vec<Mark> },
}

/// What a server holds of one author, and how many changes the puller lacks of it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub mark: Mark,
    pub pending: u64,
}

/// Server → puller: heads, then the batches they announce, then `Caught`; again after every
/// change the server learns of (its own, or another member's it received), for as long as the
/// stream is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Down {
    Heads { heads: Vec<Head> },
    Batch(Batch),
    Caught,
}

/// Where to start sending `author`'s changes to a puller that holds `theirs` (`None`: don't;
/// the puller has everything, or holds a newer sequence space than ours).
pub fn start_for(ours: &Mark, theirs: Option<&Mark>) -> Option<i64> {
    match theirs {
        None => (ours.seq > 0).then_some(0),
        Some(t) if t.index == ours.index => (ours.seq > t.seq).then_some(t.seq),
        // Its database was reset (a new index id): everything, from the new space's start.
        Some(t) if ours.index > t.index => (ours.seq > 0).then_some(0),
        Some(_) => None,
    }
}

/// The authors to send and where to start each: every head we hold but the puller's own and
/// those not allowed (removed members).
pub fn plan(
    ours: &[Mark],
    theirs: &[Mark],
    puller: &Author,
    allowed: impl Fn(&Author) -> bool,
) -> Vec<(Mark, i64)> {
    ours.iter()
        .filter(|m| m.author != *puller && allowed(&m.author))
        .filter_map(|m| {
            let t = theirs.iter().find(|t| t.author == m.author);
            start_for(m, t).map(|from| (*m, from))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(author: u8, index: i64, seq: i64) -> Mark {
        Mark {
            author: [author; 32],
            index,
            seq,
        }
    }

    #[test]
    fn start_points() {
        let ours = mark(1, 10, 50);
        assert_eq!(start_for(&ours, None), Some(0));
        assert_eq!(start_for(&ours, Some(&mark(1, 10, 20))), Some(20));
        assert_eq!(start_for(&ours, Some(&mark(1, 10, 50))), None);
        // The puller is ahead of us on this author (it heard from someone fresher).
        assert_eq!(start_for(&ours, Some(&mark(1, 10, 70))), None);
        // The author's database was reset: a new space, sent whole.
        assert_eq!(start_for(&ours, Some(&mark(1, 9, 70))), Some(0));
        assert_eq!(start_for(&ours, Some(&mark(1, 11, 5))), None);
        assert_eq!(start_for(&mark(1, 10, 0), None), None);
    }

    #[test]
    fn the_plan_skips_the_puller_and_removed_members() {
        let ours = [mark(1, 1, 5), mark(2, 1, 5), mark(3, 1, 5)];
        let theirs = [mark(3, 1, 5)];
        let p = plan(&ours, &theirs, &[2; 32], |a| *a != [9; 32]);
        assert_eq!(p, vec![(mark(1, 1, 5), 0)]);
        let p = plan(&ours, &[], &[2; 32], |a| *a != [1; 32]);
        assert_eq!(p, vec![(mark(3, 1, 5), 0)]);
    }
}
