//! Walking a location and bringing its rows in line with the disk.
//!
//! A scan compares every path under the location with its row: new paths get a row (a fresh
//! id), changed ones are updated (their content id dropped if size or mtime changed), and rows
//! whose path is gone are deleted — but only after a walk that completed with the location
//! still there, so a drive unplugged mid-scan never reads as "everything was deleted".
//! Writes go in batches of [`BATCH`] rows per transaction. A scan is idempotent: an
//! interrupted one is simply run again, and rows it already wrote keep their ids and content
//! ids.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::db::{
    self, delete_entry, insert_entry, random_id, update_entry, Contents, EntryKind, IndexError,
    LocationId, Row, Stat,
};

pub(crate) const BATCH: usize = 4096;
/// At most this many problems are kept in a report (all are counted and logged).
const MAX_REPORTED: usize = 100;

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScanReport {
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub seen: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub added: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub updated: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub removed: u64,
    /// Paths that could not be read, with why (the first 100; `problem_count` counts all).
    pub problems: Vec<Problem>,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub problem_count: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub ms: u64,
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    pub path: String,
    pub error: String,
}

impl ScanReport {
    pub(crate) fn problem(&mut self, rel: &[u8], error: String) {
        tracing::warn!(path = %String::from_utf8_lossy(rel), %error, "skipped while indexing");
        self.problem_count += 1;
        if self.problems.len() < MAX_REPORTED {
            self.problems.push(Problem {
                path: String::from_utf8_lossy(rel).into_owned(),
                error,
            });
        }
    }
}

/// Reads what the index records of one path (never following a symlink).
pub(crate) fn stat(abs: &Path, rel: Vec<u8>) -> std::io::Result<Stat> {
    let m = std::fs::symlink_metadata(abs)?;
    Ok(stat_of(&m, rel))
}

pub(crate) fn stat_of(m: &std::fs::Metadata, rel: Vec<u8>) -> Stat {
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    };
    Stat {
        rel,
        kind,
        size: if kind == EntryKind::File { m.len() } else { 0 },
        mtime: mtime_ns(m),
        inode: inode(m),
        error: None,
    }
}

pub(crate) fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn inode(m: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        0
    }
}

fn dev_ino(m: &std::fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        (0, 0)
    }
}

pub(crate) fn join_rel(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut rel = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        rel.extend_from_slice(parent);
        rel.push(b'/');
    }
    rel.extend_from_slice(name);
    rel
}

/// Walks the folder `abs` (whose relative path is `rel`), calling `each` for every path under
/// it, parents before children. Unreadable folders are reported through `problem` and their
/// stat carries the error. Folders already seen (by device and inode: bind-mount loops) are
/// not entered twice; symlinks are never followed.
pub(crate) fn walk(
    abs: &Path,
    rel: &[u8],
    cancel: &AtomicBool,
    each: &mut dyn FnMut(Stat) -> Result<(), IndexError>,
    problem: &mut dyn FnMut(&[u8], String),
) -> Result<(), IndexError> {
    let mut visited: HashSet<(u64, u64)> = HashSet::new();
    if let Ok(m) = std::fs::metadata(abs) {
        visited.insert(dev_ino(&m));
    }
    // A folder is reported when it is taken off the stack, with the error if it cannot be
    // read, so its row says why its contents are missing.
    let mut stack: Vec<(PathBuf, Vec<u8>, Option<Stat>)> =
        vec![(abs.to_path_buf(), rel.to_vec(), None)];
    while let Some((dir, dir_rel, dir_stat)) = stack.pop() {
        if cancel.load(Ordering::Relaxed) {
            return Err(IndexError::Cancelled);
        }
        let rd = std::fs::read_dir(&dir);
        if let Some(mut s) = dir_stat {
            if let Err(e) = &rd {
                if e.kind() == std::io::ErrorKind::NotFound {
                    continue; // gone since it was listed
                }
                s.error = Some(format!("cannot read folder: {e}"));
            }
            each(s)?;
        }
        let rd = match rd {
            Ok(rd) => rd,
            Err(e) => {
                problem(&dir_rel, format!("cannot read folder: {e}"));
                continue;
            }
        };
        for entry in rd {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    problem(&dir_rel, format!("cannot list folder: {e}"));
                    continue;
                }
            };
            let child_rel = join_rel(&dir_rel, &db::path_bytes(Path::new(&entry.file_name())));
            if crate::marker::is_marker(&child_rel) {
                continue;
            }
            let m = match entry.metadata() {
                Ok(m) => m,
                // Gone between listing and stat: it is simply not there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    problem(&child_rel, format!("cannot stat: {e}"));
                    continue;
                }
            };
            let s = stat_of(&m, child_rel);
            if s.kind != EntryKind::Dir {
                each(s)?;
            } else if visited.insert(dev_ino(&m)) {
                stack.push((entry.path(), s.rel.clone(), Some(s)));
            } else {
                problem(&s.rel, "folder loop (seen before); not entered".into());
                each(s)?;
            }
        }
    }
    Ok(())
}

/// Collects writes and commits them in batches.
pub(crate) struct Writer<'a> {
    contents: &'a Contents,
    loc: LocationId,
    ops: Vec<Op>,
}

pub(crate) enum Op {
    Insert(Stat),
    Update(Row, Stat),
    Delete(db::EntryId),
}

impl<'a> Writer<'a> {
    pub fn new(contents: &'a Contents, loc: LocationId) -> Self {
        Writer {
            contents,
            loc,
            ops: Vec::new(),
        }
    }

    pub fn push(&mut self, op: Op) -> Result<(), IndexError> {
        self.ops.push(op);
        if self.ops.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), IndexError> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let mut w = self.contents.writer();
        let tx = w.transaction()?;
        for op in self.ops.drain(..) {
            match op {
                Op::Insert(s) => insert_entry(&tx, &self.loc, &random_id(), &s)?,
                Op::Update(row, s) => update_entry(&tx, &row, &s)?,
                Op::Delete(id) => delete_entry(&tx, &self.loc, &id)?,
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl Contents {
    /// Whether the location's folder is there. A missing folder, or an *empty* folder that is
    /// not the one we indexed (another device and inode: the mount point of an unplugged
    /// drive), is offline: its rows are kept, not deleted. A non-empty replacement is taken as
    /// the location (a drive that came back under a new device number).
    pub fn check_online(&self, loc: &LocationId) -> Result<bool, IndexError> {
        let root = self.root(loc)?;
        let why = match std::fs::metadata(&root) {
            Err(e) => Some(format!("folder not available: {e}")),
            Ok(m) if !m.is_dir() => Some("not a folder any more".to_string()),
            Ok(_) => {
                let now = db::root_identity(&root);
                let was = self.root_identity_recorded(loc)?;
                match (was, now) {
                    (Some(was), Some(now)) if was != now => {
                        let empty = std::fs::read_dir(&root)
                            .map(|mut d| d.next().is_none())
                            .unwrap_or(true);
                        if empty {
                            Some("an empty folder stands in for it (drive not mounted?)".into())
                        } else {
                            self.record_root_identity(loc, now)?;
                            None
                        }
                    }
                    (None, Some(now)) => {
                        self.record_root_identity(loc, now)?;
                        None
                    }
                    _ => None,
                }
            }
        };
        let online = why.is_none();
        self.set_online(loc, online, why.as_deref())?;
        Ok(online)
    }

    /// Scans a location: walks it and brings its rows in line with the disk. `progress` gets
    /// the number of paths seen so far (every 1,000).
    pub fn scan(
        &self,
        loc: &LocationId,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<ScanReport, IndexError> {
        let started = Instant::now();
        let root = self.root(loc)?;
        if !self.check_online(loc)? {
            return Err(IndexError::Refused(format!(
                "location {} is offline",
                root.display()
            )));
        }
        self.set_state(loc, "walking")?;
        let mut existing: HashMap<Vec<u8>, Row> = self.rows(loc)?;
        let mut report = ScanReport::default();
        let mut writer = Writer::new(self, *loc);
        let mut problems = Vec::new();
        let walked = walk(
            &root,
            b"",
            cancel,
            &mut |s: Stat| {
                report.seen += 1;
                if report.seen % 1000 == 0 {
                    progress(report.seen);
                }
                match existing.remove(&s.rel) {
                    None => {
                        report.added += 1;
                        writer.push(Op::Insert(s))
                    }
                    Some(row) if row.kind != s.kind => {
                        // A file became a folder (or back): a different thing, a new id.
                        report.updated += 1;
                        writer.push(Op::Delete(row.id))?;
                        writer.flush()?;
                        writer.push(Op::Insert(s))
                    }
                    Some(row) if !row.matches(&s) || row.inode != s.inode => {
                        report.updated += 1;
                        writer.push(Op::Update(row, s))
                    }
                    Some(_) => Ok(()),
                }
            },
            &mut |rel, e| problems.push((rel.to_vec(), e)),
        );
        writer.flush()?;
        for (rel, e) in problems {
            report.problem(&rel, e);
        }
        walked?;
        // Deletions only after a complete walk of a folder that is still there.
        if !self.check_online(loc)? {
            return Err(IndexError::Refused(format!(
                "location {} went offline during the scan; nothing was removed",
                root.display()
            )));
        }
        for row in existing.into_values() {
            report.removed += 1;
            writer.push(Op::Delete(row.id))?;
        }
        writer.flush()?;
        self.set_state(loc, "identifying")?;
        self.set_last_scan(loc, db::now_ms())?;
        progress(report.seen);
        report.ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}
