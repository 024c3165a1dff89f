//! The renamed and failed lists as a [`super::types::TransferInfo`] carries them: counted in full,
//! listed in part.
//!
//! Both lists grow to a manifest's size (250,000 entries) and their names are the peer's to
//! choose, while every progress or state event carries a `TransferInfo`, and the event channel
//! holds 1,024 events for a subscriber that is behind. Whole lists in every event let a hostile
//! sender's names fill that channel (1,024 copies of up to 250,000 names), and made a UI parse
//! megabytes of JSON four times a second. So an event lists at most [`ITEMS`] entries, and at
//! most [`BYTES`] of text, as one shared, immutable slice: it is rebuilt only while it grows
//! (at most `ITEMS` times in a transfer's life), and every event in between shares it. The
//! full lists stay where they were: in the log, and for received files in the store.

use std::sync::Arc;

use ferry_block::place::Renamed;

/// Most entries an event lists.
pub const ITEMS: usize = 100;
/// Most bytes of names and reasons an event lists (a path may be 64 KiB on the wire).
pub const BYTES: usize = 32 << 10;

/// What an entry costs in text.
pub trait Weight {
    fn weight(&self) -> usize;
}

impl Weight for Renamed {
    fn weight(&self) -> usize {
        self.original.len() + self.local.len() + self.reason.len()
    }
}

/// The longest prefix of `all` within [`ITEMS`] and [`BYTES`].
pub fn of<T: Weight + Clone>(all: &[T]) -> Arc<[T]> {
    let mut bytes = 0;
    all.iter()
        .take(ITEMS)
        .take_while(|t| {
            bytes += t.weight();
            bytes <= BYTES
        })
        .cloned()
        .collect()
}

/// Appends `item` to `list`, a preview of a list that held `before` entries, if it still fits.
/// A preview stays a prefix: once one entry was left out, no later one is listed.
pub fn push<T: Weight + Clone>(list: &mut Arc<[T]>, before: usize, item: T) {
    let bytes: usize = list.iter().map(Weight::weight).sum();
    if list.len() == before && before < ITEMS && bytes + item.weight() <= BYTES {
        *list = list.iter().cloned().chain([item]).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spacedrop::types::FailedFile;

    fn failed(path: &str) -> FailedFile {
        FailedFile {
            path: path.into(),
            reason: "r".into(),
        }
    }

    #[test]
    fn a_preview_is_a_bounded_prefix() {
        let mut list: Arc<[FailedFile]> = Arc::from([]);
        for n in 0..1000 {
            push(&mut list, n, failed(&n.to_string()));
        }
        assert_eq!(list.len(), ITEMS);
        assert_eq!(list[ITEMS - 1].path, (ITEMS - 1).to_string());
        assert_eq!(
            of(&(0..1000)
                .map(|n| failed(&n.to_string()))
                .collect::<Vec<_>>()),
            list
        );

        // Long names: the byte budget ends it, and nothing after a left-out entry is listed.
        let long = "x".repeat(BYTES / 3);
        let mut list: Arc<[FailedFile]> = Arc::from([]);
        for n in 0..5 {
            push(&mut list, n, failed(&long));
        }
        push(&mut list, 5, failed("short"));
        assert_eq!(list.len(), 2);
        assert!(list.iter().map(Weight::weight).sum::<usize>() <= BYTES);
    }

    #[test]
    fn events_share_one_preview() {
        let mut list: Arc<[FailedFile]> = Arc::from([]);
        push(&mut list, 0, failed("a"));
        let event = list.clone();
        push(&mut list, 1000, failed("b"));
        assert!(
            Arc::ptr_eq(&event, &list),
            "an unchanged preview is not copied"
        );
    }
}
