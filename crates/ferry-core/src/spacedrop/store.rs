//! The node's SQLite database (`ferry.db` in the data dir, WAL): transfers and their files, so
//! an interrupted transfer can be listed and resumed after a restart.
//!
//! Schema (version 3):
//! - `transfers`: one row per transfer, either direction: peer, state, destination, the
//!   manifest (postcard), the sender's source paths and the receiver's layout (JSON), and a
//!   `summary` (JSON: counts and the first renamed names) so that listing transfers never
//!   decodes a manifest (up to 250,000 entries each).
//! - `transfer_files`: per entry, once it ends: `done` with its final path, or `failed` with a
//!   reason; its `size` and its `name` as people read it. Entries without a row are still to
//!   come.
//! - `transfers_listed`: the listing's order (`created DESC, id`), so a page of it is read
//!   without sorting the table.
//!
//! Finished transfers are pruned by the node's [`History`] setting ([`Store::prune`]): the
//! table holds the newest ones and every unfinished one, not every transfer ever made.

use std::path::PathBuf;
use std::sync::Mutex;

use ferry_block::place::Renamed;
use ferry_block::Manifest;
use ferry_p2p::PeerId;
use ferry_util::unix_now;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::preview;
use super::types::{FailedFile, History, TransferInfo, TransferState, Via};
use super::wire::TransferId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database row is corrupt: {0}")]
    Corrupt(String),
}

pub use super::types::Direction;

/// Where each entry lands at the receiver, fixed at accept time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedLayout {
    pub paths: Vec<PathBuf>,
    pub renamed: Vec<Renamed>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TransferRow {
    pub id: TransferId,
    pub direction: Direction,
    pub peer: PeerId,
    pub peer_name: String,
    pub peer_addr: Option<String>,
    /// A [`crate::spacedrop::TransferState`] name.
    pub state: String,
    pub reason: Option<String>,
    pub dest: Option<PathBuf>,
    pub manifest: Manifest,
    pub sources: Vec<PathBuf>,
    pub layout: SavedLayout,
    pub created: i64,
    pub via: Via,
}

impl TransferRow {
    /// A new outgoing transfer of `collected`, waiting for the receiver's answer.
    pub fn outgoing(
        peer: PeerId,
        peer_name: String,
        peer_addr: Option<String>,
        collected: ferry_block::manifest::Collected,
        via: Via,
    ) -> TransferRow {
        TransferRow {
            id: TransferId::random(),
            direction: Direction::Send,
            peer,
            peer_name,
            peer_addr,
            state: "waiting".into(),
            reason: None,
            dest: None,
            manifest: collected.manifest,
            sources: collected.sources,
            layout: Default::default(),
            created: ferry_util::unix_now(),
            via,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    Done(PathBuf),
    Failed(String),
}

pub struct Store {
    conn: Mutex<Connection>,
}

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE transfers (
    id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,
    peer TEXT NOT NULL,
    peer_name TEXT NOT NULL,
    peer_addr TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    dest TEXT,
    manifest BLOB NOT NULL,
    sources TEXT NOT NULL,
    layout TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE transfer_files (
    transfer TEXT NOT NULL REFERENCES transfers(id) ON DELETE CASCADE,
    entry INTEGER NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (transfer, entry)
);
"#,
    r#"
ALTER TABLE transfers ADD COLUMN summary TEXT;
ALTER TABLE transfer_files ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transfer_files ADD COLUMN name TEXT NOT NULL DEFAULT '';
"#,
    r#"
CREATE INDEX transfers_listed ON transfers(created DESC, id);
"#,
];

/// The states a transfer ends in (the stored names of the final [`TransferState`]s): only
/// these are ever pruned.
const FINISHED: &str = "('done', 'failed', 'rejected', 'cancelled')";

/// What a listing shows of a transfer's manifest and layout, kept beside them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Counts {
    files: usize,
    bytes: u64,
    renamed_count: usize,
    /// The first renamed entries (see [`crate::spacedrop::preview`]).
    renamed: Vec<Renamed>,
    /// Kept here, not in a column of its own: rows from before it are Ferry's.
    #[serde(default)]
    via: Via,
}

impl Counts {
    fn of(t: &TransferRow) -> Counts {
        Counts {
            files: t.manifest.file_count(),
            bytes: t.manifest.total_bytes(),
            renamed_count: t.layout.renamed.len(),
            renamed: super::preview::of(&t.layout.renamed).to_vec(),
            via: t.via.clone(),
        }
    }
}

/// A transfer as a listing shows it, read without decoding its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub id: TransferId,
    pub direction: Direction,
    pub peer: PeerId,
    pub peer_name: String,
    pub via: Via,
    pub state: String,
    pub reason: Option<String>,
    pub dest: Option<PathBuf>,
    pub created: i64,
    pub files: usize,
    pub bytes: u64,
    pub renamed_count: usize,
    /// The first renamed entries.
    pub renamed: Vec<Renamed>,
    pub files_done: usize,
    pub bytes_done: u64,
    pub failed_count: usize,
    /// The first failed files: (name, reason).
    pub failed: Vec<(String, String)>,
}

fn corrupt<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl Store {
    pub fn open(path: &std::path::Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        backfill(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        ferry_util::lock(&self.conn)
    }

    pub fn put(&self, t: &TransferRow) -> Result<(), StoreError> {
        let manifest = postcard::to_stdvec(&t.manifest).map_err(corrupt)?;
        let sources = serde_json::to_string(&t.sources).map_err(corrupt)?;
        let layout = serde_json::to_string(&t.layout).map_err(corrupt)?;
        let counts = serde_json::to_string(&Counts::of(t)).map_err(corrupt)?;
        self.conn().execute(
            "INSERT OR REPLACE INTO transfers
             (id, direction, peer, peer_name, peer_addr, state, reason, dest, manifest, sources, layout, created, updated, summary)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                t.id.hex(),
                serde_json::to_string(&t.direction).map_err(corrupt)?,
                t.peer.fingerprint(),
                t.peer_name,
                t.peer_addr,
                t.state,
                t.reason,
                t.dest.as_ref().map(|d| d.to_string_lossy().into_owned()),
                manifest,
                sources,
                layout,
                t.created,
                unix_now(),
                counts
            ],
        )?;
        Ok(())
    }

    pub fn set_state(
        &self,
        id: &TransferId,
        state: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE transfers SET state = ?2, reason = ?3, updated = ?4 WHERE id = ?1",
            params![id.hex(), state, reason, unix_now()],
        )?;
        Ok(())
    }

    /// Records how entry `entry` (of `size` bytes, shown as `name`) ended.
    pub fn set_file(
        &self,
        id: &TransferId,
        entry: u32,
        size: u64,
        name: &str,
        status: &FileStatus,
    ) -> Result<(), StoreError> {
        self.set_files(id, &[(entry, size, name.to_string(), status.clone())])
    }

    /// [`Store::set_file`] for many files of one transfer, in one transaction.
    pub fn set_files(
        &self,
        id: &TransferId,
        files: &[(u32, u64, String, FileStatus)],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut q = tx.prepare_cached(
                "INSERT OR REPLACE INTO transfer_files (transfer, entry, status, detail, size, name)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let transfer = id.hex();
            for (entry, size, name, status) in files {
                let (s, detail) = match status {
                    FileStatus::Done(p) => ("done", p.to_string_lossy().into_owned()),
                    FileStatus::Failed(r) => ("failed", r.clone()),
                };
                q.execute(params![transfer, entry, s, detail, *size as i64, name])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn files(&self, id: &TransferId) -> Result<Vec<(u32, FileStatus)>, StoreError> {
        let conn = self.conn();
        let mut q = conn.prepare(
            "SELECT entry, status, detail FROM transfer_files WHERE transfer = ?1 ORDER BY entry",
        )?;
        let rows = q.query_map([id.hex()], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|r| {
            let (entry, status, detail) = r?;
            Ok((
                entry,
                if status == "done" {
                    FileStatus::Done(detail.into())
                } else {
                    FileStatus::Failed(detail)
                },
            ))
        })
        .collect()
    }

    pub fn get(&self, id: &TransferId) -> Result<Option<TransferRow>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(&format!("{SELECT} WHERE id = ?1"), [id.hex()], raw)
            .optional()?;
        row.map(parse).transpose()
    }

    /// All transfers as a listing shows them, newest first (as many as the history setting
    /// keeps, and the unfinished ones). Decodes no manifest: counts come from the stored
    /// summary and from the file rows (summed in SQL), names from the first 100 failed rows.
    pub fn summaries(&self) -> Result<Vec<Summary>, StoreError> {
        self.summaries_where("", "", &[])
    }

    /// Up to `limit` transfers in listing order (newest first), starting after `before` (the
    /// last one of the previous page; `None`: from the newest), and whether more follow. The
    /// place is kept by the transfer, not by a count: transfers that begin or are pruned
    /// between two pages shift nothing, and every transfer listed at both times comes once.
    /// `Ok(None)`: no transfer `before` (pruned meanwhile, or never here).
    pub fn summaries_page(
        &self,
        before: Option<&TransferId>,
        limit: usize,
    ) -> Result<Option<(Vec<Summary>, bool)>, StoreError> {
        let limit = limit.max(1);
        // One more than asked for: whether another page follows.
        let take = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let mut page = match before {
            None => self.summaries_where("", "LIMIT ?1", &[&take])?,
            Some(id) => {
                let created: Option<i64> = self
                    .conn()
                    .query_row(
                        "SELECT created FROM transfers WHERE id = ?1",
                        [id.hex()],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(created) = created else {
                    return Ok(None);
                };
                self.summaries_where(
                    "WHERE created < ?1 OR (created = ?1 AND id > ?2)",
                    "LIMIT ?3",
                    &[&created, &id.hex(), &take],
                )?
            }
        };
        let more = page.len() > limit;
        page.truncate(limit);
        Ok(Some((page, more)))
    }

    /// The transfers whose id starts with `prefix` (lowercase hex), newest first.
    pub fn summaries_by_prefix(&self, prefix: &str) -> Result<Vec<Summary>, StoreError> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(vec![]);
        }
        // A range of the primary key: hex digits sort below 'g'.
        let end = format!("{prefix}g");
        self.summaries_where("WHERE id >= ?1 AND id < ?2", "", &[&prefix, &end])
    }

    /// Every unfinished transfer and the newest `newest` others, newest first: what a front
    /// end shows at once (the rest come a page at a time).
    pub fn summaries_recent(&self, newest: usize) -> Result<Vec<Summary>, StoreError> {
        let n = i64::try_from(newest).unwrap_or(i64::MAX);
        self.summaries_where(
            &format!(
                "WHERE state NOT IN {FINISHED} OR id IN \
                 (SELECT id FROM transfers ORDER BY created DESC, id LIMIT ?1)"
            ),
            "",
            &[&n],
        )
    }

    /// The transfers that have not ended (waiting, transferring, paused, interrupted), newest
    /// first: what a starting node looks at.
    pub fn unfinished(&self) -> Result<Vec<Summary>, StoreError> {
        self.summaries_where(&format!("WHERE state NOT IN {FINISHED}"), "", &[])
    }

    /// The transfer at place `n` (from 0) of the listing, if there are that many.
    pub fn listed_at(&self, n: usize) -> Result<Option<TransferId>, StoreError> {
        let id: Option<String> = self
            .conn()
            .query_row(
                "SELECT id FROM transfers ORDER BY created DESC, id LIMIT 1 OFFSET ?1",
                [i64::try_from(n).unwrap_or(i64::MAX)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(id.and_then(|i| TransferId::parse(&i)))
    }

    /// The transfers `filter` (a `WHERE` on `transfers`) selects, in listing order, as many
    /// as `limit` (a `LIMIT`) says; `args` are both's parameters.
    fn summaries_where(
        &self,
        filter: &str,
        limit: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Summary>, StoreError> {
        let conn = self.conn();
        let mut q = conn.prepare(&format!(
            "SELECT id, direction, peer, peer_name, state, reason, dest, created, summary
             FROM transfers {filter} ORDER BY created DESC, id {limit}"
        ))?;
        let mut done = conn.prepare_cached(
            "SELECT count(*), coalesce(sum(size), 0) FROM transfer_files
             WHERE transfer = ?1 AND status = 'done'",
        )?;
        let mut failed = conn.prepare_cached(
            "SELECT name, detail, count(*) OVER () FROM transfer_files
             WHERE transfer = ?1 AND status = 'failed' ORDER BY entry LIMIT ?2",
        )?;
        type Head = (
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            i64,
            Option<String>,
        );
        let heads: Vec<Head> = q
            .query_map(args, |r| Head::try_from(r))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(heads.len());
        for (id, direction, peer, peer_name, state, reason, dest, created, counts) in heads {
            let counts: Counts = match counts {
                Some(c) => serde_json::from_str(&c).map_err(corrupt)?,
                None => Counts::default(),
            };
            let (files_done, bytes_done) = done.query_row([&id], |r| {
                Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as u64))
            })?;
            let mut failed_count = 0;
            let first_failed: Vec<(String, String)> = failed
                .query_map(params![id, super::preview::ITEMS as i64], |r| {
                    failed_count = r.get::<_, i64>(2)? as usize;
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            out.push(Summary {
                id: TransferId::parse(&id).ok_or_else(|| corrupt(format!("transfer id {id}")))?,
                direction: serde_json::from_str(&direction).map_err(corrupt)?,
                peer: peer.parse().map_err(corrupt)?,
                peer_name,
                via: counts.via,
                state,
                reason,
                dest: dest.map(PathBuf::from),
                created,
                files: counts.files,
                bytes: counts.bytes,
                renamed_count: counts.renamed_count,
                renamed: counts.renamed,
                files_done,
                bytes_done,
                failed_count,
                failed: first_failed,
            });
        }
        Ok(out)
    }

    /// Deletes the finished transfers `history` no longer keeps at `now` (unix seconds), with
    /// their file rows; never an unfinished one, nor one `keep` holds (live here). Returns how
    /// many went. The decision is [`super::decide::pruned`]'s.
    pub fn prune(
        &self,
        history: History,
        now: i64,
        keep: impl Fn(&TransferId) -> bool,
    ) -> Result<usize, StoreError> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        let finished: Vec<(String, i64)> = tx
            .prepare_cached(&format!(
                "SELECT id, updated FROM transfers WHERE state IN {FINISHED}
                 ORDER BY created DESC, id"
            ))?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let ended: Vec<i64> = finished.iter().map(|(_, e)| *e).collect();
        let mut gone = 0;
        {
            let mut delete = tx.prepare_cached(&format!(
                "DELETE FROM transfers WHERE id = ?1 AND state IN {FINISHED}"
            ))?;
            for i in super::decide::pruned(&ended, history, now) {
                let id = &finished[i].0;
                if TransferId::parse(id).is_some_and(|t| keep(&t)) {
                    continue;
                }
                gone += delete.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(gone)
    }

    /// Failed files `offset..offset + limit` of a transfer, in entry order: (name, reason).
    /// Listings carry only the first ones; this is the rest.
    pub fn failed_files(
        &self,
        id: &TransferId,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut q = conn.prepare(
            "SELECT name, detail FROM transfer_files WHERE transfer = ?1 AND status = 'failed'
             ORDER BY entry LIMIT ?2 OFFSET ?3",
        )?;
        let rows = q.query_map(params![id.hex(), limit as i64, offset as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets a transfer's failed files: an accepted resume gives each a new outcome (sent
    /// again, or already there by the receiver's word).
    pub fn clear_failed(&self, id: &TransferId) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM transfer_files WHERE transfer = ?1 AND status = 'failed'",
            [id.hex()],
        )?;
        Ok(())
    }

    /// Every file a reception renamed (from its layout; the manifest is not decoded). `None`:
    /// no such transfer.
    pub fn renamed(&self, id: &TransferId) -> Result<Option<Vec<Renamed>>, StoreError> {
        let layout: Option<String> = self
            .conn()
            .query_row(
                "SELECT layout FROM transfers WHERE id = ?1",
                [id.hex()],
                |r| r.get(0),
            )
            .optional()?;
        layout
            .map(|l| {
                Ok(serde_json::from_str::<SavedLayout>(&l)
                    .map_err(corrupt)?
                    .renamed)
            })
            .transpose()
    }

    pub fn delete(&self, id: &TransferId) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM transfers WHERE id = ?1", [id.hex()])?;
        Ok(())
    }
}

/// Fills what schema version 2 added for rows an older version wrote: each transfer's counts,
/// and its files' sizes and names. Runs once per such row.
fn backfill(conn: &Connection) -> Result<(), StoreError> {
    let ids: Vec<String> = conn
        .prepare("SELECT id FROM transfers WHERE summary IS NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        let row = conn.query_row(&format!("{SELECT} WHERE id = ?1"), [&id], raw)?;
        let row = match parse(row) {
            Ok(row) => row,
            Err(e) => {
                // A row that no longer decodes must not keep the node from starting: it is
                // listed with no counts, and marked so that this is not tried again.
                tracing::warn!(transfer = %id, error = %e, "stored transfer unreadable");
                conn.execute(
                    "UPDATE transfers SET summary = ?2 WHERE id = ?1",
                    params![
                        id,
                        serde_json::to_string(&Counts::default()).map_err(corrupt)?
                    ],
                )?;
                continue;
            }
        };
        let tx = conn.unchecked_transaction()?;
        tx.execute(
            "UPDATE transfers SET summary = ?2 WHERE id = ?1",
            params![
                id,
                serde_json::to_string(&Counts::of(&row)).map_err(corrupt)?
            ],
        )?;
        let entries: Vec<u32> = tx
            .prepare("SELECT entry FROM transfer_files WHERE transfer = ?1")?
            .query_map([&id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for entry in entries {
            let size = row
                .manifest
                .entries
                .get(entry as usize)
                .map_or(0, |e| e.size);
            tx.execute(
                "UPDATE transfer_files SET size = ?3, name = ?4 WHERE transfer = ?1 AND entry = ?2",
                params![id, entry, size as i64, row.manifest.display_path(entry)],
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}

const SELECT: &str = "SELECT id, direction, peer, peer_name, peer_addr, state, reason, dest, manifest, sources, layout, created, summary FROM transfers";

type Raw = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Vec<u8>,
    String,
    String,
    i64,
    Option<String>,
);

fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Raw::try_from(r)
}

fn parse(r: Raw) -> Result<TransferRow, StoreError> {
    let (
        id,
        direction,
        peer,
        peer_name,
        peer_addr,
        state,
        reason,
        dest,
        manifest,
        sources,
        layout,
        created,
        summary,
    ) = r;
    let via = match summary {
        Some(c) => serde_json::from_str::<Counts>(&c).map_err(corrupt)?.via,
        None => Via::Ferry,
    };
    Ok(TransferRow {
        id: TransferId::parse(&id).ok_or_else(|| corrupt(format!("transfer id {id}")))?,
        direction: serde_json::from_str(&direction).map_err(corrupt)?,
        peer: peer.parse().map_err(corrupt)?,
        peer_name,
        peer_addr,
        state,
        reason,
        dest: dest.map(PathBuf::from),
        manifest: postcard::from_bytes(&manifest).map_err(corrupt)?,
        sources: serde_json::from_str(&sources).map_err(corrupt)?,
        layout: serde_json::from_str(&layout).map_err(corrupt)?,
        created,
        via,
    })
}

impl TransferInfo {
    /// What front ends see of a stored transfer as it starts (live) in `state`: nothing moved
    /// yet, nothing failed.
    pub fn starting(row: &TransferRow, state: TransferState) -> TransferInfo {
        TransferInfo {
            id: row.id.hex(),
            direction: row.direction,
            peer: row.peer,
            peer_name: row.peer_name.clone(),
            via: row.via.clone(),
            state,
            files_total: row.manifest.file_count(),
            files_done: 0,
            bytes_total: row.manifest.total_bytes(),
            bytes_done: 0,
            bytes_resumed: 0,
            speed_bps: 0.0,
            eta_secs: None,
            current: None,
            dest: row.dest.as_ref().map(|d| d.display().to_string()),
            renamed: preview::of(&row.layout.renamed),
            renamed_count: row.layout.renamed.len(),
            failed: preview::of(&[]),
            failed_count: 0,
        }
    }
}

/// A stored transfer as front ends show it (also readable while another process runs the node).
pub fn info_from_summary(row: Summary) -> TransferInfo {
    let reason = row.reason.unwrap_or_default();
    let state = super::decide::stored_state(&row.state, reason);
    // A sender records no per-file rows: a finished send had every file but the failed ones.
    let finished_send = row.direction == Direction::Send && state.is_final();
    let (files_done, bytes_done) = match (&state, finished_send) {
        (TransferState::Done, true) => (row.files, row.bytes),
        _ => (row.files_done, row.bytes_done),
    };
    let failed: Vec<FailedFile> = row
        .failed
        .into_iter()
        .map(|(path, reason)| FailedFile { path, reason })
        .collect();
    TransferInfo {
        id: row.id.hex(),
        direction: row.direction,
        peer: row.peer,
        peer_name: row.peer_name,
        via: row.via,
        state,
        files_total: row.files,
        files_done,
        bytes_total: row.bytes,
        bytes_done,
        bytes_resumed: 0,
        speed_bps: 0.0,
        eta_secs: None,
        current: None,
        dest: row.dest.as_ref().map(|d| d.display().to_string()),
        renamed: preview::of(&row.renamed),
        renamed_count: row.renamed_count,
        failed: preview::of(&failed),
        failed_count: row.failed_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_block::{Entry, EntryKind};

    /// A received transfer of `n` files of 10 bytes, all of them renamed.
    fn big_row(n: usize) -> TransferRow {
        let entries: Vec<Entry> = (0..n)
            .map(|i| Entry {
                path: vec![format!("f{i}")],
                kind: EntryKind::File,
                size: 10,
                mode: 0o644,
                mtime: 1,
            })
            .collect();
        TransferRow {
            id: TransferId::random(),
            direction: Direction::Receive,
            peer: ferry_p2p::Identity::generate().unwrap().peer_id(),
            peer_name: "beta".into(),
            peer_addr: None,
            state: "transferring".into(),
            reason: None,
            dest: Some("/tmp/x".into()),
            layout: SavedLayout {
                paths: (0..n).map(|i| format!("g{i}").into()).collect(),
                renamed: (0..n)
                    .map(|i| Renamed {
                        id: i as u32,
                        original: format!("f{i}"),
                        local: format!("g{i}"),
                        reason: "test".into(),
                    })
                    .collect(),
            },
            manifest: Manifest { entries },
            sources: vec![],
            created: 5,
            via: Via::Ferry,
        }
    }

    fn record_some(s: &Store, row: &TransferRow) {
        for i in 0..300u32 {
            let status = if i % 3 == 0 {
                FileStatus::Failed(format!("reason {i}"))
            } else {
                FileStatus::Done(format!("/tmp/x/g{i}").into())
            };
            s.set_file(&row.id, i, 10, &row.manifest.display_path(i), &status)
                .unwrap();
        }
    }

    fn check(got: &Summary, n: usize) {
        assert_eq!((got.files, got.bytes), (n, 10 * n as u64));
        assert_eq!(got.renamed_count, n);
        assert_eq!(got.renamed.len(), crate::spacedrop::preview::ITEMS);
        assert_eq!((got.files_done, got.bytes_done), (200, 2000));
        assert_eq!(got.failed_count, 100);
        assert_eq!(got.failed.len(), 100);
        assert_eq!(got.failed[1], ("f3".to_string(), "reason 3".to_string()));
    }

    #[test]
    fn summaries_count_everything_and_list_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("ferry.db")).unwrap();
        let row = big_row(1000);
        s.put(&row).unwrap();
        record_some(&s, &row);
        let got = s.summaries().unwrap();
        assert_eq!(got.len(), 1);
        check(&got[0], 1000);
    }

    #[test]
    fn the_full_lists_come_in_pages_in_entry_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("ferry.db")).unwrap();
        let row = big_row(1000);
        s.put(&row).unwrap();
        record_some(&s, &row);
        // 100 failed (every third of the first 300), beyond the summary's preview of them.
        let all = s.failed_files(&row.id, 0, usize::MAX).unwrap();
        assert_eq!(all.len(), 100);
        assert_eq!(all[99], ("f297".to_string(), "reason 297".to_string()));
        assert_eq!(s.failed_files(&row.id, 98, 10).unwrap(), all[98..].to_vec());
        assert!(s.failed_files(&row.id, 100, 10).unwrap().is_empty());
        s.clear_failed(&row.id).unwrap();
        assert!(s.failed_files(&row.id, 0, 10).unwrap().is_empty());
        assert_eq!(s.files(&row.id).unwrap().len(), 200, "done files are kept");
        // Every renamed file, where the summary keeps the first 100.
        let renamed = s.renamed(&row.id).unwrap().unwrap();
        assert_eq!(renamed, row.layout.renamed);
        assert_eq!(s.renamed(&TransferId::random()).unwrap(), None);
    }

    #[test]
    fn a_version_1_database_gets_its_summaries_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.db");
        let row = big_row(1000);
        {
            // What version 1 wrote: no summary, no sizes or names for the files.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute(
                "INSERT INTO transfers (id, direction, peer, peer_name, state, manifest, sources, layout, created, updated)
                 VALUES (?1, '\"receive\"', ?2, 'beta', 'interrupted', ?3, '[]', ?4, 5, 5)",
                params![
                    row.id.hex(),
                    row.peer.fingerprint(),
                    postcard::to_stdvec(&row.manifest).unwrap(),
                    serde_json::to_string(&row.layout).unwrap()
                ],
            )
            .unwrap();
            for i in 0..300u32 {
                let (status, detail) = if i % 3 == 0 {
                    ("failed", format!("reason {i}"))
                } else {
                    ("done", format!("/tmp/x/g{i}"))
                };
                c.execute(
                    "INSERT INTO transfer_files (transfer, entry, status, detail) VALUES (?1, ?2, ?3, ?4)",
                    params![row.id.hex(), i, status, detail],
                )
                .unwrap();
            }
        }
        {
            // And a row whose manifest no longer decodes: it must not keep the store closed.
            let c = Connection::open(&path).unwrap();
            c.execute(
                "INSERT INTO transfers (id, direction, peer, peer_name, state, manifest, sources, layout, created, updated)
                 VALUES (?1, '\"receive\"', ?2, 'beta', 'interrupted', x'ffffffff', '[]', '{}', 1, 1)",
                params![TransferId::random().hex(), row.peer.fingerprint()],
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let got = s.summaries().unwrap();
        assert_eq!(got.len(), 2);
        check(&got[0], 1000);
        assert_eq!(got[0].state, "interrupted");
        assert_eq!((got[1].files, got[1].bytes, got[1].files_done), (0, 0, 0));
        assert_eq!(s.get(&row.id).unwrap().unwrap().manifest, row.manifest);
        drop(s);
        assert_eq!(Store::open(&path).unwrap().summaries().unwrap().len(), 2);
    }

    #[test]
    fn rows_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.db");
        let id = TransferId::random();
        let row = TransferRow {
            id,
            direction: Direction::Receive,
            peer: ferry_p2p::Identity::generate().unwrap().peer_id(),
            peer_name: "beta".into(),
            peer_addr: Some("127.0.0.1:1".into()),
            state: "transferring".into(),
            reason: None,
            dest: Some("/tmp/x".into()),
            manifest: Manifest {
                entries: vec![Entry {
                    path: vec!["a".into()],
                    kind: EntryKind::File,
                    size: 3,
                    mode: 0o644,
                    mtime: 1,
                }],
            },
            sources: vec![],
            layout: SavedLayout {
                paths: vec!["a".into()],
                renamed: vec![],
            },
            created: 5,
            via: Via::Ferry,
        };
        {
            let s = Store::open(&path).unwrap();
            s.put(&row).unwrap();
            s.set_file(&id, 0, 3, "a", &FileStatus::Done("/tmp/x/a".into()))
                .unwrap();
            s.set_state(&id, "interrupted", Some("connection lost"))
                .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let got = s.get(&id).unwrap().unwrap();
        assert_eq!(got.state, "interrupted");
        assert_eq!(got.reason.as_deref(), Some("connection lost"));
        assert_eq!(got.manifest, row.manifest);
        assert_eq!(
            s.files(&id).unwrap(),
            vec![(0, FileStatus::Done("/tmp/x/a".into()))]
        );
        assert_eq!(s.summaries().unwrap().len(), 1);
        s.delete(&id).unwrap();
        assert!(s.get(&id).unwrap().is_none());
        assert!(
            s.files(&id).unwrap().is_empty(),
            "files cascade with their transfer"
        );
    }

    #[test]
    fn pages_follow_the_listing_and_pruning_spares_unfinished_and_kept_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("ferry.db")).unwrap();
        // Nine transfers, three to a second: ties are ordered by id.
        let rows: Vec<TransferRow> = (0..9)
            .map(|i| TransferRow {
                created: 100 - i / 3,
                ..big_row(1)
            })
            .collect();
        for r in &rows {
            s.put(r).unwrap();
        }
        let all: Vec<TransferId> = s.summaries().unwrap().iter().map(|t| t.id).collect();
        let mut paged = vec![];
        let mut before = None;
        loop {
            let (page, more) = s.summaries_page(before.as_ref(), 2).unwrap().unwrap();
            paged.extend(page.iter().map(|t| t.id));
            before = page.last().map(|t| t.id);
            if !more {
                break;
            }
        }
        assert_eq!(paged, all);
        assert_eq!(s.listed_at(8).unwrap(), Some(all[8]));
        assert_eq!(s.listed_at(9).unwrap(), None);
        assert!(s
            .summaries_page(Some(&TransferId::random()), 2)
            .unwrap()
            .is_none());
        let hex = all[3].hex();
        let found = s.summaries_by_prefix(&hex[..6].to_uppercase()).unwrap();
        assert!(found.iter().any(|t| t.id == all[3]));
        assert!(s.summaries_by_prefix("not hex").unwrap().is_empty());
        // All but the newest end; the newest stays "transferring" (unfinished).
        for id in &all[1..] {
            s.set_state(id, "done", None).unwrap();
        }
        assert_eq!(s.unfinished().unwrap().len(), 1);
        // One finished transfer kept: the newest finished (all[1]), and all[2], which is live.
        let keep = History { days: 30, count: 1 };
        let gone = s.prune(keep, unix_now(), |id| *id == all[2]).unwrap();
        assert_eq!(gone, 6);
        let left: Vec<TransferId> = s.summaries().unwrap().iter().map(|t| t.id).collect();
        assert_eq!(left, all[..3].to_vec());
        // A year later, only the unfinished one and the live one are left.
        let later = unix_now() + 365 * 86_400;
        assert_eq!(s.prune(keep, later, |id| *id == all[2]).unwrap(), 1);
        let left: Vec<TransferId> = s.summaries().unwrap().iter().map(|t| t.id).collect();
        assert_eq!(left, vec![all[0], all[2]]);
    }
}
