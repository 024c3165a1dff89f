//! Content ids for files that have none yet, and thumbnails for the objects that need one.
//!
//! Both passes pick up exactly the rows still missing their result (`cas IS NULL`,
//! `thumb = 0`), so after a restart they resume where they stopped. A file that changes while
//! it is hashed (size or mtime differ before and after) gets no id in this pass: its row takes
//! the new size and mtime and the next pass (or the watcher's next event) hashes it again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::cas::{self, Cas};
use crate::db::{self, bytes_path, lock, next_seq, Contents, EntryId, IndexError, LocationId};
use crate::scan::{mtime_ns, Problem};
use crate::thumb::{self, ThumbStore};

/// Rows hashed per transaction.
const IDENTIFY_BATCH: usize = 512;

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdentifyReport {
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub identified: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub bytes: u64,
    /// Files that changed while they were hashed (hashed again later).
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub changed: u64,
    /// Files that were gone by the time we read them (their rows are removed).
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub vanished: u64,
    pub problems: Vec<Problem>,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub problem_count: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub ms: u64,
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ThumbReport {
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub made: u64,
    /// Already in the shared thumbnail store (a duplicate, or made by another library).
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub reused: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub failed: u64,
    pub problems: Vec<Problem>,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub ms: u64,
}

enum Outcome {
    Id(Cas, i64, u64),
    Changed(u64, i64),
    Vanished,
    Failed(String),
}

struct Pending {
    id: EntryId,
    rel: Vec<u8>,
}

fn hash_one(path: &std::path::Path) -> Outcome {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::Vanished,
        Err(e) => return Outcome::Failed(format!("cannot read: {e}")),
    };
    let before = match f.metadata() {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(format!("cannot stat: {e}")),
    };
    if !before.is_file() {
        return Outcome::Failed("not a regular file any more".into());
    }
    let (len, mt) = (before.len(), mtime_ns(&before));
    let id = match cas::content_id(&mut f, len) {
        Ok(id) => id,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Outcome::Changed(len, mt)
        }
        Err(e) => return Outcome::Failed(format!("cannot read: {e}")),
    };
    match f.metadata() {
        // Stable while we read (even if it changed since its row was written): the id is
        // right for what is on disk now, and the row takes its size and mtime.
        Ok(after) if after.len() == len && mtime_ns(&after) == mt => Outcome::Id(id, mt, len),
        Ok(after) => Outcome::Changed(after.len(), mtime_ns(&after)),
        Err(e) => Outcome::Failed(format!("cannot stat: {e}")),
    }
}

/// Records content `cas` of a file of this node (at `rel`, `size` bytes) as an object, wanting
/// a thumbnail if it is a picture. One that was not wanted (3), or was a member's thumbnail
/// evicted here (4), is wanted now that this node has a picture of that content itself.
pub(crate) fn record_object(
    tx: &rusqlite::Transaction<'_>,
    cas: &Cas,
    size: u64,
    rel: &[u8],
    now: i64,
) -> Result<(), IndexError> {
    let wants = thumb::is_thumbnailable(&bytes_path(rel));
    tx.prepare_cached(
        "INSERT INTO objects (cas, size, first_seen, thumb) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (cas) DO UPDATE SET thumb = 0 WHERE thumb IN (3, 4) AND excluded.thumb = 0",
    )?
    .execute(params![cas, size as i64, now, if wants { 0 } else { 3 }])?;
    Ok(())
}

impl Contents {
    /// Files of a location still without a content id.
    pub fn unidentified(&self, loc: &LocationId) -> Result<u64, IndexError> {
        Ok(self.reader().query_row(
            "SELECT COUNT(*) FROM entries WHERE location = ?1 AND kind = 0 AND cas IS NULL AND error IS NULL",
            params![loc],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Computes content ids for every file of the location that has none. `progress` gets
    /// (done, total) after each batch.
    pub fn identify(
        &self,
        loc: &LocationId,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<IdentifyReport, IndexError> {
        let started = Instant::now();
        let root = self.root(loc)?;
        let total = self.unidentified(loc)?;
        let mut report = IdentifyReport::default();
        let mut done = 0u64;
        // A cursor on rowid (the walk's order, so files are read folder by folder), and each
        // row is visited once per pass even if it stays unidentified.
        let mut after: i64 = 0;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(IndexError::Cancelled);
            }
            let batch: Vec<Pending> = {
                let r = self.reader();
                let mut st = r.prepare_cached(
                    "SELECT id, rel, rowid FROM entries
                     WHERE location = ?1 AND kind = 0 AND cas IS NULL AND error IS NULL AND rowid > ?2
                     ORDER BY rowid LIMIT ?3",
                )?;
                let rows = st.query_map(params![loc, after, IDENTIFY_BATCH as i64], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?;
                let mut v = Vec::new();
                for row in rows {
                    let (id, rel, rowid) = row?;
                    after = rowid;
                    let id: EntryId = id
                        .try_into()
                        .map_err(|_| IndexError::Corrupt("entry id".into()))?;
                    v.push(Pending { id, rel });
                }
                v
            };
            if batch.is_empty() {
                break;
            }
            let outcomes: Vec<(Pending, Outcome)> = batch
                .into_iter()
                .map(|p| {
                    let o = hash_one(&root.join(bytes_path(&p.rel)));
                    (p, o)
                })
                .collect();
            let mut w = self.writer();
            let tx = w.transaction()?;
            let now = db::now_ms();
            for (p, o) in &outcomes {
                match o {
                    Outcome::Id(id, mtime, size) => {
                        report.identified += 1;
                        report.bytes += size;
                        tx.prepare_cached(
                            "UPDATE entries SET cas = ?2, size = ?3, mtime = ?4, seq = ?5 WHERE id = ?1",
                        )?
                        .execute(params![p.id, id, *size as i64, mtime, next_seq(&tx)?])?;
                        record_object(&tx, id, *size, &p.rel, now)?;
                    }
                    Outcome::Changed(size, mtime) => {
                        report.changed += 1;
                        tx.prepare_cached(
                            "UPDATE entries SET size = ?2, mtime = ?3, seq = ?4 WHERE id = ?1",
                        )?
                        .execute(params![
                            p.id,
                            *size as i64,
                            mtime,
                            next_seq(&tx)?
                        ])?;
                    }
                    Outcome::Vanished => {
                        report.vanished += 1;
                        db::delete_entry(&tx, loc, &p.id)?;
                    }
                    Outcome::Failed(e) => {
                        let path = String::from_utf8_lossy(&p.rel).into_owned();
                        tracing::warn!(%path, error = %e, "no content id");
                        report.problem_count += 1;
                        if report.problems.len() < 100 {
                            report.problems.push(Problem {
                                path,
                                error: e.clone(),
                            });
                        }
                        tx.prepare_cached("UPDATE entries SET error = ?2, seq = ?3 WHERE id = ?1")?
                            .execute(params![p.id, e, next_seq(&tx)?])?;
                    }
                }
            }
            tx.commit()?;
            drop(w);
            done += outcomes.len() as u64;
            progress(done.min(total.max(done)), total.max(done));
        }
        if self.state(loc)? == "identifying" {
            self.set_state(loc, "done")?;
        }
        report.ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Objects still waiting for a thumbnail, with a path on this node to make it from.
    pub fn thumbs_pending(&self) -> Result<Vec<(Cas, PathBuf)>, IndexError> {
        let r = self.reader();
        let mut st = r.prepare(
            "SELECT o.cas, l.path, (SELECT e.rel FROM entries e WHERE e.cas = o.cas AND e.location = l.id LIMIT 1)
             FROM objects o JOIN locations l ON l.node = ?1
             WHERE o.thumb = 0 AND EXISTS (SELECT 1 FROM entries e WHERE e.cas = o.cas AND e.location = l.id)
             GROUP BY o.cas",
        )?;
        let rows = st.query_map(params![self.node()], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (cas, root, rel) = row?;
            let cas: Cas = cas
                .try_into()
                .map_err(|_| IndexError::Corrupt("content id".into()))?;
            out.push((cas, bytes_path(&root).join(bytes_path(&rel))));
        }
        Ok(out)
    }

    /// Makes the missing thumbnails on `threads` threads, into the shared `store`.
    /// `progress` gets (done, total).
    pub fn thumbnails(
        &self,
        store: &ThumbStore,
        threads: usize,
        cancel: &AtomicBool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<ThumbReport, IndexError> {
        let started = Instant::now();
        let todo = self.thumbs_pending()?;
        let total = todo.len() as u64;
        let queue = Mutex::new(todo.into_iter());
        let results: Mutex<Vec<(Cas, Result<(), String>)>> = Mutex::new(Vec::new());
        let done = AtomicU64::new(0);
        let flush = |results: &Mutex<Vec<(Cas, Result<(), String>)>>| -> Result<(), IndexError> {
            let batch: Vec<_> = std::mem::take(&mut *lock(results));
            if batch.is_empty() {
                return Ok(());
            }
            let mut w = self.writer();
            let tx = w.transaction()?;
            for (cas, r) in &batch {
                let (state, err) = match r {
                    Ok(_) => (1, None),
                    Err(e) => (2, Some(e.as_str())),
                };
                tx.prepare_cached(
                    "UPDATE objects SET thumb = ?2, thumb_error = ?3 WHERE cas = ?1",
                )?
                .execute(params![cas, state, err])?;
            }
            tx.commit()?;
            Ok(())
        };
        let (made, reused, failed) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        let problems: Mutex<Vec<Problem>> = Mutex::new(Vec::new());
        let outcome: Result<(), IndexError> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    s.spawn(|| loop {
                        if cancel.load(Ordering::Relaxed) {
                            return;
                        }
                        let Some((cas, path)) = lock(&queue).next() else {
                            return;
                        };
                        let hex = cas::to_hex(&cas);
                        let r = if store.has(&hex) {
                            reused.fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        } else {
                            match thumb::thumbnail(&path).map_err(|e| e.to_string()).and_then(|t| {
                                store
                                    .put(&hex, &t.bytes)
                                    .map_err(|e| format!("cannot store thumbnail: {e}"))
                            }) {
                                Ok(_) => {
                                    made.fetch_add(1, Ordering::Relaxed);
                                    Ok(())
                                }
                                Err(e) => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    tracing::warn!(path = %path.display(), error = %e, "no thumbnail");
                                    let mut p = lock(&problems);
                                    if p.len() < 100 {
                                        p.push(Problem {
                                            path: path.to_string_lossy().into_owned(),
                                            error: e.clone(),
                                        });
                                    }
                                    Err(e)
                                }
                            }
                        };
                        lock(&results).push((cas, r));
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        progress(n, total);
                    })
                })
                .collect();
            // Results are written from here in batches (64, or whatever a second made, so a
            // slow pass still shows its pictures as it goes), off the workers' path.
            let mut flushed = Instant::now();
            while workers.iter().any(|w| !w.is_finished()) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let pending = lock(&results).len();
                if pending >= 64 || (pending > 0 && flushed.elapsed().as_secs() >= 1) {
                    flush(&results)?;
                    flushed = Instant::now();
                }
            }
            Ok(())
        });
        flush(&results)?;
        outcome?;
        if cancel.load(Ordering::Relaxed) {
            return Err(IndexError::Cancelled);
        }
        Ok(ThumbReport {
            made: made.into_inner(),
            reused: reused.into_inner(),
            failed: failed.into_inner(),
            problems: problems.into_inner().unwrap_or_else(|p| p.into_inner()),
            ms: started.elapsed().as_millis() as u64,
        })
    }
}
