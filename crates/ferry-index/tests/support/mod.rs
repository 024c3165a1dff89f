//! Shared by the indexer's tests: a library database with contents, and what the disk says.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use ferry_index::{Contents, EntryKind, LocationId};

/// A fresh library database file (the contents tables migrate themselves).
pub fn contents(dir: &Path) -> Contents {
    let db = dir.join("library.db");
    rusqlite::Connection::open(&db).unwrap();
    Contents::open(&db, [7; 32]).unwrap()
}

pub fn loc_id(info: &ferry_index::LocationInfo) -> LocationId {
    ferry_index::db::parse_id(&info.id).unwrap()
}

/// (kind, size) of every path under `root`, by relative path, from a plain walk.
pub fn disk(root: &Path) -> BTreeMap<String, (EntryKind, u64)> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, (EntryKind, u64)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let kind = if m.file_type().is_symlink() {
                EntryKind::Symlink
            } else if m.is_dir() {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            out.insert(
                rel,
                (kind, if kind == EntryKind::File { m.len() } else { 0 }),
            );
            if kind == EntryKind::Dir {
                go(root, &e.path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

/// The same view from the index: every entry of the location, walking its listings.
pub fn index(c: &Contents, loc: &LocationId) -> BTreeMap<String, (EntryKind, u64)> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![String::new()];
    while let Some(d) = dirs.pop() {
        for e in c.list(loc, &d).unwrap() {
            if e.kind == EntryKind::Dir {
                dirs.push(e.path.clone());
            }
            assert!(out.insert(e.path, (e.kind, e.size)).is_none());
        }
    }
    out
}

/// Entry ids by path.
pub fn ids(c: &Contents, loc: &LocationId) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![String::new()];
    while let Some(d) = dirs.pop() {
        for e in c.list(loc, &d).unwrap() {
            if e.kind == EntryKind::Dir {
                dirs.push(e.path.clone());
            }
            out.insert(e.path, e.id);
        }
    }
    out
}
