//! The marker a location keeps at its root (`.ferry-location`): which library and which
//! location the folder is. It travels with the folder, so a drive unplugged from one member and
//! plugged into another is recognised there as the same location (same id, same entries, same
//! thumbnails) instead of a new one. Never indexed itself.
//!
//! ```text
//! ferry location v1
//! library <32 hex digits>
//! location <32 hex digits>
//! ```

use std::io::{self, Read};
use std::path::Path;

use crate::db::{hex, parse_id};
use crate::LocationId;

/// The marker's file name, at a location's root.
pub const MARKER: &str = ".ferry-location";
/// A marker is a few lines; anything longer is not one.
const MAX_LEN: u64 = 512;
const FIRST: &str = "ferry location v1";

pub fn text(library: &[u8; 16], location: &LocationId) -> String {
    format!(
        "{FIRST}\nlibrary {}\nlocation {}\n",
        hex(library),
        hex(location)
    )
}

/// The library and location a marker names, if it is one (anything else is ignored).
pub fn parse(s: &str) -> Option<([u8; 16], LocationId)> {
    let mut lines = s.lines();
    if lines.next()? != FIRST {
        return None;
    }
    let library = parse_id(lines.next()?.strip_prefix("library ")?)?;
    let location = parse_id(lines.next()?.strip_prefix("location ")?)?;
    Some((library, location))
}

/// The marker at `root`, if there is a readable one.
pub fn read(root: &Path) -> Option<([u8; 16], LocationId)> {
    let mut s = String::new();
    std::fs::File::open(root.join(MARKER))
        .ok()?
        .take(MAX_LEN)
        .read_to_string(&mut s)
        .ok()?;
    parse(&s)
}

/// Writes the marker at `root` (whole or not at all: a temporary file renamed over it).
pub fn write(root: &Path, library: &[u8; 16], location: &LocationId) -> io::Result<()> {
    let temp = root.join(format!("{MARKER}.tmp"));
    std::fs::write(&temp, text(library, location))?;
    std::fs::rename(&temp, root.join(MARKER)).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// Whether a location-relative path is the marker (or its temporary file): never an entry.
pub fn is_marker(rel: &[u8]) -> bool {
    rel == MARKER.as_bytes() || rel == format!("{MARKER}.tmp").as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back_and_nothing_else_is_one() {
        let t = text(&[7; 16], &[9; 16]);
        assert_eq!(parse(&t), Some(([7; 16], [9; 16])));
        assert_eq!(parse(""), None);
        assert_eq!(parse(&t.replace("v1", "v2")), None);
        assert_eq!(parse(&t.replace("library", "libary")), None);
        assert_eq!(parse("ferry location v1\nlibrary zz\nlocation 00\n"), None);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        write(dir.path(), &[1; 16], &[2; 16]).unwrap();
        assert_eq!(read(dir.path()), Some(([1; 16], [2; 16])));
        std::fs::write(dir.path().join(MARKER), vec![b'a'; 10_000]).unwrap();
        assert_eq!(read(dir.path()), None);
        assert!(is_marker(b".ferry-location") && !is_marker(b"sub/.ferry-location"));
    }
}
