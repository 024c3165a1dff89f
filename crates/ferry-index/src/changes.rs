//! Applying what the watcher saw: a set of paths that changed, each checked against the disk.
//!
//! The watcher's events only say *where* to look; the disk says what is true, so a lost or
//! reordered event cannot make the index lie. In one transaction: paths that are gone lose
//! their rows (and everything under them); paths that exist are inserted or updated, their
//! missing parent folders first; a new folder is walked. A path that appears with the inode of
//! one that disappeared in the same batch is a rename or move: the row (and, for a folder, its
//! whole subtree) takes the new path and keeps its id and content ids, so nothing is hashed
//! again and a synced peer will see a move, not a delete and an add.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::db::{
    bytes_path, delete_entry, insert_entry, move_entry, parent_of, path_bytes, random_id,
    update_entry, Contents, EntryId, EntryKind, IndexError, LocationId, Row, Stat,
};
use crate::scan::{stat, walk};

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChangeReport {
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub added: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub updated: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub moved: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub removed: u64,
    /// The location's folder itself went away: it is offline now, its rows kept.
    pub offline: bool,
}

impl ChangeReport {
    pub fn is_empty(&self) -> bool {
        *self == ChangeReport::default()
    }
}

impl Contents {
    /// Brings the rows of `paths` (absolute, under location `loc`) in line with the disk.
    pub fn apply(&self, loc: &LocationId, paths: &[PathBuf]) -> Result<ChangeReport, IndexError> {
        let root = self.root(loc)?;
        let mut report = ChangeReport::default();
        let mut rels: BTreeSet<Vec<u8>> = BTreeSet::new();
        for p in paths {
            match p.strip_prefix(&root) {
                Ok(r) if r.as_os_str().is_empty() => {
                    if !self.check_online(loc)? {
                        report.offline = true;
                        return Ok(report);
                    }
                }
                Ok(r) if !crate::marker::is_marker(&path_bytes(r)) => {
                    rels.insert(path_bytes(r));
                }
                Ok(_) => {}
                Err(_) => {}
            }
        }
        if rels.is_empty() {
            return Ok(report);
        }
        if !self.check_online(loc)? {
            report.offline = true;
            return Ok(report);
        }

        // What is there now, parents included (sorted: "a" before "a/b").
        let mut present: Vec<Stat> = Vec::new();
        let mut gone: Vec<Row> = Vec::new();
        let mut have: BTreeSet<Vec<u8>> = BTreeSet::new();
        for rel in &rels {
            let mut chain = vec![rel.clone()];
            let mut p = parent_of(rel);
            while !p.is_empty() && !rels.contains(p) && !have.contains(p) {
                if self.row_at(loc, p)?.is_some() {
                    break;
                }
                chain.push(p.to_vec());
                p = parent_of(p);
            }
            for r in chain.into_iter().rev() {
                if !have.insert(r.clone()) {
                    continue;
                }
                match stat(&root.join(bytes_path(&r)), r.clone()) {
                    Ok(s) => present.push(s),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        if let Some(row) = self.row_at(loc, &r)? {
                            gone.push(row);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(path = %String::from_utf8_lossy(&r), error = %e, "cannot stat");
                    }
                }
            }
        }
        present.sort_by(|a, b| a.rel.cmp(&b.rel));

        // Gone rows by inode: candidates for a move. A row under another gone row moves (or
        // goes) with it, so only the topmost ones count.
        let gone_rels: BTreeSet<Vec<u8>> = gone.iter().map(|r| r.rel.clone()).collect();
        let mut by_inode: HashMap<(u64, EntryKind), Row> = HashMap::new();
        let mut unmatched: Vec<Row> = Vec::new();
        for row in gone {
            let nested = gone_rels.iter().any(|g| {
                row.rel.len() > g.len() && row.rel.starts_with(g) && row.rel[g.len()] == b'/'
            });
            if nested {
                continue;
            }
            if row.inode == 0 {
                unmatched.push(row); // no inodes here: a move reads as a delete and an add
            } else if let Some(other) = by_inode.insert((row.inode, row.kind), row) {
                unmatched.push(other);
            }
        }

        let mut inserts: Vec<Stat> = Vec::new();
        let mut w = self.writer();
        let tx = w.transaction()?;
        for s in present {
            let existing = row_in(&tx, loc, &s.rel)?;
            match existing {
                Some(row) if row.kind == s.kind => {
                    if !row.matches(&s) || row.inode != s.inode {
                        update_entry(&tx, &row, &s)?;
                        report.updated += 1;
                    }
                }
                other => {
                    if let Some(row) = other {
                        // Replaced by a different kind of thing.
                        remove_subtree(&tx, loc, &row, &mut report)?;
                    }
                    if let Some(old) = by_inode.remove(&(s.inode, s.kind)) {
                        move_subtree(&tx, loc, &old, &s.rel)?;
                        report.moved += 1;
                        if !old.matches(&s) {
                            if let Some(row) = row_in(&tx, loc, &s.rel)? {
                                update_entry(&tx, &row, &s)?;
                            }
                        }
                    } else {
                        insert_entry(&tx, loc, &random_id(), &s)?;
                        report.added += 1;
                        if s.kind == EntryKind::Dir {
                            inserts.push(s);
                        }
                    }
                }
            }
        }
        for row in by_inode.into_values().chain(unmatched) {
            remove_subtree(&tx, loc, &row, &mut report)?;
        }
        // New folders (made or moved in from outside): everything under them is new too.
        for dir in inserts {
            let abs = root.join(bytes_path(&dir.rel));
            let never = AtomicBool::new(false);
            walk(
                &abs,
                &dir.rel,
                &never,
                &mut |s| {
                    if row_in(&tx, loc, &s.rel)?.is_none() {
                        insert_entry(&tx, loc, &random_id(), &s)?;
                        report.added += 1;
                    }
                    Ok(())
                },
                &mut |rel, e| {
                    tracing::warn!(path = %String::from_utf8_lossy(rel), error = %e, "skipped");
                },
            )?;
        }
        tx.commit()?;
        Ok(report)
    }
}

fn row_in(
    tx: &rusqlite::Transaction<'_>,
    loc: &LocationId,
    rel: &[u8],
) -> Result<Option<Row>, IndexError> {
    let mut st = tx.prepare_cached(
        "SELECT id, rel, kind, size, mtime, inode, error FROM entries WHERE location = ?1 AND rel = ?2",
    )?;
    let mut q = st.query(rusqlite::params![loc, rel])?;
    let Some(r) = q.next()? else { return Ok(None) };
    Ok(Some(Row {
        id: r
            .get::<_, Vec<u8>>(0)?
            .try_into()
            .map_err(|_| IndexError::Corrupt("entry id".into()))?,
        rel: r.get(1)?,
        kind: match r.get::<_, i64>(2)? {
            0 => EntryKind::File,
            1 => EntryKind::Dir,
            2 => EntryKind::Symlink,
            _ => EntryKind::Other,
        },
        size: r.get::<_, i64>(3)? as u64,
        mtime: r.get(4)?,
        inode: r.get::<_, i64>(5)? as u64,
        error: r.get(6)?,
    }))
}

/// (id, relative path) of the rows under `rel`, read inside the transaction (so moves already
/// made in it are seen).
fn subtree_ids(
    tx: &rusqlite::Transaction<'_>,
    loc: &LocationId,
    rel: &[u8],
) -> Result<Vec<(EntryId, Vec<u8>)>, IndexError> {
    let (lo, hi) = crate::db::subtree_bounds(rel);
    let mut st = tx.prepare_cached(
        "SELECT id, rel FROM entries WHERE location = ?1 AND rel >= ?2 AND rel < ?3",
    )?;
    let mut q = st.query(rusqlite::params![loc, lo, hi])?;
    let mut out = Vec::new();
    while let Some(r) = q.next()? {
        let id: EntryId = r
            .get::<_, Vec<u8>>(0)?
            .try_into()
            .map_err(|_| IndexError::Corrupt("entry id".into()))?;
        out.push((id, r.get(1)?));
    }
    Ok(out)
}

fn remove_subtree(
    tx: &rusqlite::Transaction<'_>,
    loc: &LocationId,
    row: &Row,
    report: &mut ChangeReport,
) -> Result<(), IndexError> {
    if row.kind == EntryKind::Dir {
        for (id, _) in subtree_ids(tx, loc, &row.rel)? {
            delete_entry(tx, loc, &id)?;
            report.removed += 1;
        }
    }
    delete_entry(tx, loc, &row.id)?;
    report.removed += 1;
    Ok(())
}

fn move_subtree(
    tx: &rusqlite::Transaction<'_>,
    loc: &LocationId,
    old: &Row,
    new_rel: &[u8],
) -> Result<(), IndexError> {
    let children = if old.kind == EntryKind::Dir {
        subtree_ids(tx, loc, &old.rel)?
    } else {
        Vec::new()
    };
    // Anything already recorded under the new path was replaced by this move.
    for (id, _) in subtree_ids(tx, loc, new_rel)? {
        delete_entry(tx, loc, &id)?;
    }
    move_entry(tx, &old.id, new_rel)?;
    for (id, rel) in children {
        let mut moved = new_rel.to_vec();
        moved.extend_from_slice(&rel[old.rel.len()..]);
        move_entry(tx, &id, &moved)?;
    }
    Ok(())
}
