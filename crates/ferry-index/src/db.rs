//! The contents tables of a library's database, and the [`Contents`] handle over them.
//!
//! They live in the library's own SQLite file (`libraries/<id>.db`, WAL) beside the member
//! tables, but migrate on their own counter (`contents_meta.version`), so this crate never
//! needs to know the other tables' history.
//!
//! Schema (version 4; version 2 added the `entries_listing` index, version 3 what sync needs,
//! version 4 dropped `entries_parent`, a prefix of `entries_listing`):
//! - `locations`: one row per indexed folder. `id` is 16 random bytes, stable everywhere; `node`
//!   is the member whose disk it is on (its *owner*, the only node that writes its rows); `path`
//!   its absolute path there (raw OS bytes). `state` (`pending` → `walking` → `identifying` →
//!   `done`, so a restart knows what to resume), `online`, `last_scan` and `error` are the
//!   owner's; the root folder's `(root_dev, root_ino)` (to tell an unmounted drive's empty mount
//!   point from a folder that was emptied) is local only.
//! - `entries`: one row per file, folder and symlink under a location. `id` is 16 random bytes
//!   that survive renames and moves (so a synced peer sees a move, not a delete and an add);
//!   `rel` is the path relative to the location, `/`-separated raw bytes (names need not be
//!   UTF-8), unique per location; `parent` is the `rel` of its folder (`""` at the top), indexed
//!   by `entries_listing` (location, parent, then display order), so a folder lists in one range
//!   read and a page of a 100,000-entry folder needs no sort; `name` is the display name (lossy UTF-8); `kind`,
//!   `size`, `mtime` (ns); `inode` (local, to recognise a move; 0 in replicas); `cas` is the content id once
//!   computed (NULL until then, and again after the file changes); `error` says why an entry is
//!   not fully indexed (unreadable, changed while hashed).
//! - `objects`: one row per content id of this node's files: size, when first seen, and the
//!   thumbnail state (`thumb`: 0 not tried, 1 ready, 2 failed with `thumb_error`, 3 not an image).
//! - Change tracking for sync (see `replica`): every row a node writes for its own locations
//!   takes the next number of its counter `contents_meta.seq` (`locations.seq`, `entries.seq`);
//!   a deleted entry leaves `removed(id, location, seq)`, a removed location
//!   `removed_locations(id, node, seq)`. `contents_meta.index_id` (the creation time of this
//!   counter, ms) names the sequence space: a reset database gets a new one. Rows of other
//!   members' locations (replicas) keep their author's numbers, and `sync_heads` says how far
//!   this node holds each author's sequence (`seq`, of `index_id`), the highest head heard of
//!   (`head`) and when it last applied a batch (`synced_at`, ms).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use crate::cas::{self, Cas};

pub type LocationId = [u8; 16];
pub type EntryId = [u8; 16];

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("library database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("library database is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Refused(String),
    #[error("no such {0}")]
    NotFound(String),
    #[error("cancelled")]
    Cancelled,
    #[error("that location is on another member's disk: only its owner changes it")]
    NotOwner,
}

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE locations (
    id BLOB PRIMARY KEY,
    node BLOB NOT NULL,
    path BLOB NOT NULL,
    name TEXT NOT NULL,
    added INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    online INTEGER NOT NULL DEFAULT 1,
    root_dev INTEGER,
    root_ino INTEGER,
    last_scan INTEGER,
    error TEXT
);
CREATE TABLE entries (
    id BLOB PRIMARY KEY,
    location BLOB NOT NULL REFERENCES locations(id) ON DELETE CASCADE,
    rel BLOB NOT NULL,
    parent BLOB NOT NULL,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    cas BLOB,
    error TEXT,
    seq INTEGER NOT NULL,
    UNIQUE (location, rel)
);
CREATE INDEX entries_parent ON entries (location, parent);
CREATE INDEX entries_cas ON entries (cas);
CREATE INDEX entries_seq ON entries (seq);
CREATE INDEX entries_unidentified ON entries (location) WHERE cas IS NULL AND kind = 0 AND error IS NULL;
CREATE TABLE objects (
    cas BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    thumb INTEGER NOT NULL DEFAULT 0,
    thumb_error TEXT
);
CREATE INDEX objects_thumb ON objects (thumb);
CREATE TABLE removed (
    id BLOB PRIMARY KEY,
    location BLOB NOT NULL,
    seq INTEGER NOT NULL
);
INSERT INTO contents_meta (version, seq) VALUES (0, 0);
"#,
    r#"
CREATE INDEX entries_listing ON entries (location, parent, kind != 1, name COLLATE NOCASE);
"#,
    // Sync: one sequence number per row (renumbering what version 2 stamped per batch), and
    // the tables of what was removed and what is held of each author.
    r#"
ALTER TABLE contents_meta ADD COLUMN index_id INTEGER NOT NULL DEFAULT 0;
UPDATE contents_meta SET index_id = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);
ALTER TABLE locations ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE entries SET seq = rowid;
UPDATE removed SET seq = rowid + (SELECT COALESCE(MAX(seq), 0) FROM entries);
UPDATE locations SET seq = rowid + MAX((SELECT COALESCE(MAX(seq), 0) FROM entries),
                                       (SELECT COALESCE(MAX(seq), 0) FROM removed));
UPDATE contents_meta SET seq = MAX((SELECT COALESCE(MAX(seq), 0) FROM entries),
                                   (SELECT COALESCE(MAX(seq), 0) FROM removed),
                                   (SELECT COALESCE(MAX(seq), 0) FROM locations));
DROP INDEX entries_seq;
CREATE INDEX entries_location_seq ON entries (location, seq);
CREATE INDEX removed_location_seq ON removed (location, seq);
CREATE INDEX locations_node ON locations (node, seq);
CREATE TABLE removed_locations (
    id BLOB PRIMARY KEY,
    node BLOB NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX removed_locations_node ON removed_locations (node, seq);
CREATE TABLE sync_heads (
    author BLOB PRIMARY KEY,
    index_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    head INTEGER NOT NULL DEFAULT 0,
    synced_at INTEGER
);
"#,
    // `entries_listing` starts with (location, parent): this index only cost every write.
    r#"
DROP INDEX entries_parent;
"#,
    // Members' locations whose thumbnails this node does not copy (its own choice, not synced).
    r#"
CREATE TABLE preview_off (location BLOB PRIMARY KEY);
"#,
];

/// What an entry is. Symlinks are recorded, never followed (so a link loop cannot trap us).
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

impl EntryKind {
    pub(crate) fn to_sql(self) -> i64 {
        match self {
            EntryKind::File => 0,
            EntryKind::Dir => 1,
            EntryKind::Symlink => 2,
            EntryKind::Other => 3,
        }
    }
    fn from_sql(v: i64) -> EntryKind {
        match v {
            0 => EntryKind::File,
            1 => EntryKind::Dir,
            2 => EntryKind::Symlink,
            _ => EntryKind::Other,
        }
    }
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LocationInfo {
    pub id: String,
    pub name: String,
    /// Where it is on its owner's disk.
    pub path: String,
    /// The node whose disk it is on (hex id).
    pub owner: String,
    /// On this node's disk (else a read-only replica of the owner's rows).
    pub local: bool,
    /// The owner's name in the library, and whether it is connected now (`None`: not known,
    /// e.g. read without a running node). Filled in by the library layer.
    pub owner_name: Option<String>,
    pub owner_online: Option<bool>,
    /// A replica: when it last received a batch from anyone (unix ms).
    #[cfg_attr(feature = "specta", specta(type = Option<specta_typescript::Number>))]
    pub synced_at: Option<i64>,
    /// `pending`, `walking`, `identifying` or `done`.
    pub state: String,
    pub online: bool,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub files: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub folders: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub bytes: u64,
    /// Files with a content id.
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub identified: u64,
    /// Entries that could not be fully indexed (see their `error`).
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub errors: u64,
    /// Unix ms of the last completed scan.
    #[cfg_attr(feature = "specta", specta(type = Option<specta_typescript::Number>))]
    pub last_scan: Option<i64>,
    pub error: Option<String>,
    /// A member's location: its thumbnails are copied here (preview sync; this node's choice,
    /// on unless turned off). Always true for this node's own.
    pub previews: bool,
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EntryInfo {
    pub id: String,
    pub location: String,
    /// Path relative to the location, `/`-separated (lossy UTF-8 for display).
    pub path: String,
    pub name: String,
    pub kind: EntryKind,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub size: u64,
    /// Unix ms.
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub modified: i64,
    pub cas: Option<String>,
    /// A thumbnail is ready (serve it by `cas`).
    pub thumb: bool,
    pub error: Option<String>,
}

/// A window of a folder's listing.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Page {
    /// Entries in the whole folder.
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub total: u64,
    pub entries: Vec<EntryInfo>,
}

/// What the indexer knows of one path on disk.
#[derive(Debug, Clone)]
pub(crate) struct Stat {
    pub rel: Vec<u8>,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime: i64,
    pub inode: u64,
    pub error: Option<String>,
}

/// An entry row as the writers need it.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub id: EntryId,
    pub rel: Vec<u8>,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime: i64,
    pub inode: u64,
    pub error: Option<String>,
}

impl Row {
    /// Whether the disk still matches this row (so its content id stays valid).
    pub fn matches(&self, s: &Stat) -> bool {
        self.kind == s.kind && self.size == s.size && self.mtime == s.mtime && self.error == s.error
    }
}

pub(crate) use ferry_util::lock;

pub(crate) fn random_id() -> [u8; 16] {
    let mut b = [0u8; 16];
    // The OS generator does not fail on supported platforms; a fallback keeps ids unique
    // within this process even if it did.
    if getrandom::fill(&mut b).is_err() {
        let t = ferry_util::since_epoch().as_nanos();
        b = (t ^ u128::from(std::process::id()) << 64).to_le_bytes();
    }
    b
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn parse_id(s: &str) -> Option<[u8; 16]> {
    parse_hex(s)
}

/// A node id as [`hex`] writes it.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    parse_hex(s)
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub(crate) use ferry_util::unix_now_ms as now_ms;

/// Raw bytes of a path (names need not be UTF-8 on Unix).
pub(crate) fn path_bytes(p: &Path) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        p.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        p.to_string_lossy().replace('\\', "/").into_bytes()
    }
}

pub(crate) fn bytes_path(b: &[u8]) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(b))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(String::from_utf8_lossy(b).into_owned())
    }
}

pub(crate) fn parent_of(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|&c| c == b'/') {
        Some(i) => &rel[..i],
        None => b"",
    }
}

fn name_of(rel: &[u8]) -> String {
    let start = rel.iter().rposition(|&c| c == b'/').map_or(0, |i| i + 1);
    String::from_utf8_lossy(&rel[start..]).into_owned()
}

/// Why a local-only operation found no location of this node: none at all, or another
/// member's (whose rows only it writes).
fn not_here(c: &Connection, id: &LocationId) -> Result<IndexError, IndexError> {
    let remote = c
        .query_row("SELECT 1 FROM locations WHERE id = ?1", params![id], |_| {
            Ok(())
        })
        .optional()?
        .is_some();
    Ok(if remote {
        IndexError::NotOwner
    } else {
        IndexError::NotFound("location".into())
    })
}

fn corrupt<E: std::fmt::Display>(e: E) -> IndexError {
    IndexError::Corrupt(e.to_string())
}

fn id16(b: Vec<u8>) -> Result<[u8; 16], IndexError> {
    id16_of(b)
}

/// A fixed-size id read from a BLOB column.
pub(crate) fn id16_of<const N: usize>(b: Vec<u8>) -> Result<[u8; N], IndexError> {
    b.try_into()
        .map_err(|_| IndexError::Corrupt(format!("id is not {N} bytes")))
}

/// The contents of one library. Writes go through one connection (the indexer and watcher
/// take turns, a batch at a time); reads use another, so with WAL a listing never waits for an
/// index batch.
pub struct Contents {
    node: [u8; 32],
    write: Mutex<Connection>,
    read: Mutex<Connection>,
}

pub(crate) fn open_conn(path: &Path) -> Result<Connection, IndexError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

impl Contents {
    /// Opens the contents of the library database at `path` (which must exist), migrating its
    /// contents tables. `node` is this node's id: the owner of locations added here.
    pub fn open(path: &Path, node: [u8; 32]) -> Result<Contents, IndexError> {
        let write = open_conn(path)?;
        write.execute_batch(
            "CREATE TABLE IF NOT EXISTS contents_meta (version INTEGER NOT NULL, seq INTEGER NOT NULL);",
        )?;
        let version: i64 = write
            .query_row("SELECT version FROM contents_meta", [], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let version = usize::try_from(version).map_err(corrupt)?;
        if version > MIGRATIONS.len() {
            return Err(IndexError::Corrupt(format!(
                "contents schema version {version} is newer than this build ({})",
                MIGRATIONS.len()
            )));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version) {
            write.execute_batch(&format!(
                "BEGIN; {m}; UPDATE contents_meta SET version = {}; COMMIT;",
                i + 1
            ))?;
        }
        let read = open_conn(path)?;
        Ok(Contents {
            node,
            write: Mutex::new(write),
            read: Mutex::new(read),
        })
    }

    pub(crate) fn node(&self) -> [u8; 32] {
        self.node
    }

    pub(crate) fn writer(&self) -> MutexGuard<'_, Connection> {
        lock(&self.write)
    }

    pub(crate) fn reader(&self) -> MutexGuard<'_, Connection> {
        lock(&self.read)
    }

    /// `path` canonicalised, if it can be one of this node's locations: an existing folder
    /// neither inside nor around another of them (an entry belongs to one location only).
    pub(crate) fn new_root(&self, path: &Path) -> Result<PathBuf, IndexError> {
        let canon = std::fs::canonicalize(path)
            .map_err(|e| IndexError::Refused(format!("{}: {e}", path.display())))?;
        if !canon.is_dir() {
            return Err(IndexError::Refused(format!(
                "{} is not a folder",
                canon.display()
            )));
        }
        for (_, other) in self.location_paths()? {
            if canon.starts_with(&other) || other.starts_with(&canon) {
                return Err(IndexError::Refused(format!(
                    "{} overlaps the location {} (a location cannot be inside another)",
                    canon.display(),
                    other.display()
                )));
            }
        }
        Ok(canon)
    }

    /// Adds `path` (an existing folder) as a location. Refused if it is inside another
    /// location of this library or contains one: an entry must belong to one location only.
    pub fn add_location(&self, path: &Path) -> Result<LocationInfo, IndexError> {
        let canon = self.new_root(path)?;
        let id = random_id();
        let name = canon
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| canon.to_string_lossy().into_owned());
        let (dev, ino) = root_identity(&canon).unwrap_or((0, 0));
        {
            let mut w = self.writer();
            let tx = w.transaction()?;
            tx.execute(
                "INSERT INTO locations (id, node, path, name, added, root_dev, root_ino, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    id,
                    self.node,
                    path_bytes(&canon),
                    name,
                    now_ms(),
                    dev as i64,
                    ino as i64,
                    next_seq(&tx)?
                ],
            )?;
            tx.commit()?;
        }
        self.location(&id)
    }

    /// Removes one of this node's locations and every entry under it from the library (the
    /// folder on disk is untouched). Members learn it from one tombstone for the location.
    pub fn remove_location(&self, id: &LocationId) -> Result<(), IndexError> {
        let mut w = self.writer();
        let tx = w.transaction()?;
        let n = tx.execute(
            "DELETE FROM locations WHERE id = ?1 AND node = ?2",
            params![id, self.node],
        )?;
        if n == 0 {
            return Err(not_here(&tx, id)?);
        }
        tx.execute("DELETE FROM removed WHERE location = ?1", params![id])?;
        tx.execute(
            "INSERT OR REPLACE INTO removed_locations (id, node, seq) VALUES (?1, ?2, ?3)",
            params![id, self.node, next_seq(&tx)?],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Renames one of this node's locations (its display name, for every member).
    pub fn rename_location(&self, id: &LocationId, name: &str) -> Result<LocationInfo, IndexError> {
        let name = name.trim();
        if name.is_empty()
            || name.len() > crate::replica::MAX_NAME
            || name.contains(char::is_control)
        {
            return Err(IndexError::Refused(format!(
                "a location name is 1 to {} bytes without control characters",
                crate::replica::MAX_NAME
            )));
        }
        self.touch_location(id, "name = ?2", name)?;
        self.location(id)
    }

    /// Updates columns of one of this node's locations and gives its row the next sequence
    /// number, so members receive the change.
    fn touch_location(
        &self,
        id: &LocationId,
        set: &str,
        value: impl rusqlite::ToSql,
    ) -> Result<(), IndexError> {
        let mut w = self.writer();
        let tx = w.transaction()?;
        let n = tx.execute(
            &format!("UPDATE locations SET {set}, seq = ?3 WHERE id = ?1 AND node = ?4"),
            params![id, value, next_seq(&tx)?, self.node],
        )?;
        if n == 0 {
            return Err(not_here(&tx, id)?);
        }
        tx.commit()?;
        Ok(())
    }

    /// This node's locations: (id, absolute path).
    pub fn location_paths(&self) -> Result<Vec<(LocationId, PathBuf)>, IndexError> {
        let r = self.reader();
        let mut st = r.prepare("SELECT id, path FROM locations WHERE node = ?1")?;
        let rows = st.query_map(params![self.node], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, p) = row?;
            out.push((id16(id)?, bytes_path(&p)));
        }
        Ok(out)
    }

    /// Every location of the library: this node's first, then the replicas of other members'.
    pub fn locations(&self) -> Result<Vec<LocationInfo>, IndexError> {
        let ids: Vec<LocationId> = {
            let r = self.reader();
            let mut st =
                r.prepare("SELECT id FROM locations ORDER BY node != ?1, node, added, id")?;
            let rows = st.query_map(params![self.node], |r| r.get::<_, Vec<u8>>(0))?;
            rows.map(|r| id16(r?)).collect::<Result<_, _>>()?
        };
        ids.iter().map(|id| self.location(id)).collect()
    }

    pub fn location(&self, id: &LocationId) -> Result<LocationInfo, IndexError> {
        let r = self.reader();
        let row = r
            .query_row(
                "SELECT l.name, l.path, l.state, l.online, l.last_scan, l.error, l.node, h.synced_at,
                        NOT EXISTS (SELECT 1 FROM preview_off p WHERE p.location = l.id)
                 FROM locations l LEFT JOIN sync_heads h ON h.author = l.node
                 WHERE l.id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Vec<u8>>(6)?,
                        r.get::<_, Option<i64>>(7)?,
                        r.get::<_, bool>(8)?,
                    ))
                },
            )
            .optional()?
            .ok_or_else(|| IndexError::NotFound("location".into()))?;
        let (files, folders, bytes, identified, errors) = r.query_row(
            "SELECT
                COALESCE(SUM(kind = 0), 0), COALESCE(SUM(kind = 1), 0),
                COALESCE(SUM(CASE WHEN kind = 0 THEN size ELSE 0 END), 0),
                COALESCE(SUM(cas IS NOT NULL), 0), COALESCE(SUM(error IS NOT NULL), 0)
             FROM entries WHERE location = ?1",
            params![id],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )?;
        let local = row.6 == self.node;
        Ok(LocationInfo {
            id: hex(id),
            name: row.0,
            path: bytes_path(&row.1).to_string_lossy().into_owned(),
            owner: hex(&row.6),
            local,
            owner_name: None,
            owner_online: None,
            synced_at: if local { None } else { row.7 },
            state: row.2,
            online: row.3,
            files: files as u64,
            folders: folders as u64,
            bytes: bytes as u64,
            identified: identified as u64,
            errors: errors as u64,
            last_scan: row.4,
            error: row.5,
            previews: local || row.8,
        })
    }

    /// Finds a location by id, id prefix, name or path.
    pub fn find_location(&self, query: &str) -> Result<LocationId, IndexError> {
        let q = query.trim_end_matches('/');
        let canon = std::fs::canonicalize(query).ok();
        let mut hits = Vec::new();
        for info in self.locations()? {
            let path = Path::new(&info.path);
            let hit = info.id.starts_with(&q.to_lowercase()) && q.len() >= 4
                || info.name == q
                || info.local && (path == Path::new(q) || canon.as_deref() == Some(path));
            if let Some(id) = parse_id(&info.id).filter(|_| hit) {
                hits.push(id);
            }
        }
        match hits.len() {
            1 => Ok(hits[0]),
            0 => Err(IndexError::NotFound(format!("location \"{query}\""))),
            n => Err(IndexError::Refused(format!(
                "\"{query}\" matches {n} locations; use its id"
            ))),
        }
    }

    /// The folder of one of this node's locations. Everything that reads or watches the disk
    /// starts here, so no local job ever touches a replica's rows.
    pub(crate) fn root(&self, id: &LocationId) -> Result<PathBuf, IndexError> {
        let r = self.reader();
        let p: Option<Vec<u8>> = r
            .query_row(
                "SELECT path FROM locations WHERE id = ?1 AND node = ?2",
                params![id, self.node],
                |r| r.get(0),
            )
            .optional()?;
        match p {
            Some(p) => Ok(bytes_path(&p)),
            None => Err(not_here(&r, id)?),
        }
    }

    pub(crate) fn set_state(&self, id: &LocationId, state: &str) -> Result<(), IndexError> {
        if self.state(id)? != state {
            self.touch_location(id, "state = ?2", state)?;
        }
        Ok(())
    }

    pub(crate) fn set_last_scan(&self, id: &LocationId, ms: i64) -> Result<(), IndexError> {
        self.touch_location(id, "last_scan = ?2", ms)
    }

    pub(crate) fn state(&self, id: &LocationId) -> Result<String, IndexError> {
        Ok(self.location(id)?.state)
    }

    /// Records whether the location's folder is there (and why not).
    pub(crate) fn set_online(
        &self,
        id: &LocationId,
        online: bool,
        error: Option<&str>,
    ) -> Result<(), IndexError> {
        let now = self.location(id)?;
        if now.online != online || now.error.as_deref() != error {
            let mut w = self.writer();
            let tx = w.transaction()?;
            tx.execute(
                "UPDATE locations SET online = ?2, error = ?3, seq = ?4 WHERE id = ?1 AND node = ?5",
                params![id, online, error, next_seq(&tx)?, self.node],
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    pub(crate) fn root_identity_recorded(
        &self,
        id: &LocationId,
    ) -> Result<Option<(u64, u64)>, IndexError> {
        let (d, i): (Option<i64>, Option<i64>) = self.reader().query_row(
            "SELECT root_dev, root_ino FROM locations WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(match (d, i) {
            (Some(d), Some(i)) if (d, i) != (0, 0) => Some((d as u64, i as u64)),
            _ => None,
        })
    }

    pub(crate) fn record_root_identity(
        &self,
        id: &LocationId,
        ident: (u64, u64),
    ) -> Result<(), IndexError> {
        self.writer().execute(
            "UPDATE locations SET root_dev = ?2, root_ino = ?3 WHERE id = ?1",
            params![id, ident.0 as i64, ident.1 as i64],
        )?;
        Ok(())
    }

    /// Every entry row of a location, by relative path (what a scan compares the disk with).
    pub(crate) fn rows(
        &self,
        loc: &LocationId,
    ) -> Result<std::collections::HashMap<Vec<u8>, Row>, IndexError> {
        let r = self.reader();
        let mut st = r.prepare(
            "SELECT id, rel, kind, size, mtime, inode, error FROM entries WHERE location = ?1",
        )?;
        let mut out = std::collections::HashMap::new();
        let mut q = st.query(params![loc])?;
        while let Some(r) = q.next()? {
            let row = row_of(r)?;
            out.insert(row.rel.clone(), row);
        }
        Ok(out)
    }

    pub(crate) fn row_at(&self, loc: &LocationId, rel: &[u8]) -> Result<Option<Row>, IndexError> {
        let r = self.reader();
        let mut st = r.prepare_cached(
            "SELECT id, rel, kind, size, mtime, inode, error FROM entries WHERE location = ?1 AND rel = ?2",
        )?;
        let mut q = st.query(params![loc, rel])?;
        match q.next()? {
            Some(r) => Ok(Some(row_of(r)?)),
            None => Ok(None),
        }
    }

    /// The entries directly inside folder `rel` of a location (`""` for its top), folders
    /// first, then by name.
    pub fn list(&self, loc: &LocationId, rel: &str) -> Result<Vec<EntryInfo>, IndexError> {
        Ok(self.page(loc, rel, 0, u32::MAX)?.entries)
    }

    /// Entries `offset..offset + limit` of [`Contents::list`]'s order, and how many there are
    /// in all (what a virtualised view needs: the total for its scroll height, a page at a
    /// time for what is on screen).
    pub fn page(
        &self,
        loc: &LocationId,
        rel: &str,
        offset: u32,
        limit: u32,
    ) -> Result<Page, IndexError> {
        let rel = rel.trim_matches('/');
        let r = self.reader();
        // One read transaction: the total and the page are of the same snapshot, whatever the
        // indexer commits meanwhile.
        let tx = r.unchecked_transaction()?;
        let total: i64 = tx
            .prepare_cached("SELECT count(*) FROM entries WHERE location = ?1 AND parent = ?2")?
            .query_row(params![loc, rel.as_bytes()], |r| r.get(0))?;
        // The inner ORDER BY matches `entries_listing` exactly, so SQLite skips the offset along
        // that covering index without reading a row; only the page's rows are then read, joined
        // and sorted (see the `listing_plan` test). The last page of a 100,000-entry folder: 9 ms,
        // against 115 ms when the join ran for every skipped row.
        let mut entries = {
            let mut st = tx.prepare_cached(
                "SELECT e.id, e.rel, e.kind, e.size, e.mtime, e.cas, e.error, o.thumb
                 FROM entries e LEFT JOIN objects o ON o.cas = e.cas
                 WHERE e.rowid IN (
                     SELECT rowid FROM entries WHERE location = ?1 AND parent = ?2
                     ORDER BY kind != 1, name COLLATE NOCASE LIMIT ?3 OFFSET ?4)
                 ORDER BY e.kind != 1, e.name COLLATE NOCASE",
            )?;
            let mut q = st.query(params![
                loc,
                rel.as_bytes(),
                i64::from(limit),
                i64::from(offset)
            ])?;
            let mut entries = Vec::new();
            while let Some(r) = q.next()? {
                entries.push(info_of(loc, r)?);
            }
            entries
        };
        // Another member's picture: its owner makes the thumbnail, which `ferry://` fetches
        // (or preview sync stored already), so offer it whenever it has a content id.
        let node: Option<Vec<u8>> = tx
            .prepare_cached("SELECT node FROM locations WHERE id = ?1")?
            .query_row(params![loc], |r| r.get(0))
            .optional()?;
        if node.is_some_and(|n| n != self.node) {
            for e in entries.iter_mut().filter(|e| e.cas.is_some()) {
                e.thumb |= crate::thumb::is_thumbnailable(Path::new(&e.name));
            }
        }
        tx.finish()?;
        Ok(Page {
            total: total as u64,
            entries,
        })
    }

    /// One entry by id, with its absolute path on this node (if its location is here).
    pub fn entry(&self, id: &EntryId) -> Result<(EntryInfo, PathBuf), IndexError> {
        let r = self.reader();
        let mut st = r.prepare_cached(
            "SELECT e.id, e.rel, e.kind, e.size, e.mtime, e.cas, e.error, o.thumb, e.location, l.path
             FROM entries e JOIN locations l ON l.id = e.location LEFT JOIN objects o ON o.cas = e.cas
             WHERE e.id = ?1 AND l.node = ?2",
        )?;
        let mut q = st.query(params![id, self.node])?;
        let r = q
            .next()?
            .ok_or_else(|| IndexError::NotFound("entry".into()))?;
        let loc = id16(r.get(8)?)?;
        let root = bytes_path(&r.get::<_, Vec<u8>>(9)?);
        let info = info_of(&loc, r)?;
        let rel: Vec<u8> = r.get(1)?;
        Ok((info, root.join(bytes_path(&rel))))
    }

    /// Whether content id `cas` is in this library (so its thumbnail may be served).
    pub fn has_object(&self, cas: &Cas) -> Result<bool, IndexError> {
        Ok(self
            .reader()
            .query_row("SELECT 1 FROM objects WHERE cas = ?1", params![cas], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    /// The current change sequence (see the module docs).
    pub fn seq(&self) -> Result<i64, IndexError> {
        Ok(self
            .reader()
            .query_row("SELECT seq FROM contents_meta", [], |r| r.get(0))?)
    }
}

/// `[lo, hi)` bounds of the relative paths strictly under folder `rel`: `rel/` up to `rel0`
/// ('0' follows '/'), so a subtree is one index range (`rel` is not empty).
pub(crate) fn subtree_bounds(rel: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut lo = rel.to_vec();
    lo.push(b'/');
    let mut hi = rel.to_vec();
    hi.push(b'0');
    (lo, hi)
}

fn row_of(r: &rusqlite::Row<'_>) -> Result<Row, IndexError> {
    Ok(Row {
        id: id16(r.get(0)?)?,
        rel: r.get(1)?,
        kind: EntryKind::from_sql(r.get(2)?),
        size: r.get::<_, i64>(3)? as u64,
        mtime: r.get(4)?,
        inode: r.get::<_, i64>(5)? as u64,
        error: r.get(6)?,
    })
}

pub(crate) fn info_of(loc: &LocationId, r: &rusqlite::Row<'_>) -> Result<EntryInfo, IndexError> {
    let rel: Vec<u8> = r.get(1)?;
    let cas: Option<Vec<u8>> = r.get(5)?;
    let cas = match cas {
        Some(c) => Some(cas::to_hex(
            &c.try_into().map_err(|_| corrupt("content id"))?,
        )),
        None => None,
    };
    Ok(EntryInfo {
        id: hex(&r.get::<_, Vec<u8>>(0)?),
        location: hex(loc),
        path: String::from_utf8_lossy(&rel).into_owned(),
        name: name_of(&rel),
        kind: EntryKind::from_sql(r.get(2)?),
        size: r.get::<_, i64>(3)? as u64,
        modified: r.get::<_, i64>(4)? / 1_000_000,
        cas,
        thumb: r.get::<_, Option<i64>>(7)? == Some(1),
        error: r.get(6)?,
    })
}

/// The identity of a folder: (device, inode) on Unix; None elsewhere.
pub(crate) fn root_identity(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Takes the next change sequence number, for one row written in `tx`. Every row of ours
/// carries its own number, so "what changed after N" pages exactly (no two rows share one).
pub(crate) fn next_seq(tx: &Connection) -> Result<i64, IndexError> {
    Ok(tx
        .prepare_cached("UPDATE contents_meta SET seq = seq + 1 RETURNING seq")?
        .query_row([], |r| r.get(0))?)
}

pub(crate) fn insert_entry(
    tx: &Transaction<'_>,
    loc: &LocationId,
    id: &EntryId,
    s: &Stat,
) -> Result<(), IndexError> {
    let seq = next_seq(tx)?;
    tx.prepare_cached(
        "INSERT INTO entries (id, location, rel, parent, name, kind, size, mtime, inode, error, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (location, rel) DO UPDATE SET kind = excluded.kind, size = excluded.size,
            mtime = excluded.mtime, inode = excluded.inode, error = excluded.error, cas = NULL,
            seq = excluded.seq",
    )?
    .execute(params![
        id,
        loc,
        s.rel,
        parent_of(&s.rel),
        name_of(&s.rel),
        s.kind.to_sql(),
        s.size as i64,
        s.mtime,
        s.inode as i64,
        s.error,
        seq
    ])?;
    Ok(())
}

/// Updates a row from disk; its content id is kept only if the content cannot have changed.
pub(crate) fn update_entry(tx: &Transaction<'_>, row: &Row, s: &Stat) -> Result<(), IndexError> {
    let seq = next_seq(tx)?;
    let keep_cas = row.kind == s.kind && row.size == s.size && row.mtime == s.mtime;
    tx.prepare_cached(
        "UPDATE entries SET kind = ?2, size = ?3, mtime = ?4, inode = ?5, error = ?6, seq = ?7,
            cas = CASE WHEN ?8 THEN cas ELSE NULL END
         WHERE id = ?1",
    )?
    .execute(params![
        row.id,
        s.kind.to_sql(),
        s.size as i64,
        s.mtime,
        s.inode as i64,
        s.error,
        seq,
        keep_cas
    ])?;
    Ok(())
}

pub(crate) fn delete_entry(
    tx: &Transaction<'_>,
    loc: &LocationId,
    id: &EntryId,
) -> Result<(), IndexError> {
    let seq = next_seq(tx)?;
    tx.prepare_cached("DELETE FROM entries WHERE id = ?1")?
        .execute(params![id])?;
    tx.prepare_cached("INSERT OR REPLACE INTO removed (id, location, seq) VALUES (?1, ?2, ?3)")?
        .execute(params![id, loc, seq])?;
    Ok(())
}

/// Gives an entry a new relative path (a rename or move: same id, same content id).
pub(crate) fn move_entry(tx: &Transaction<'_>, id: &EntryId, rel: &[u8]) -> Result<(), IndexError> {
    let seq = next_seq(tx)?;
    tx.prepare_cached(
        "UPDATE entries SET rel = ?2, parent = ?3, name = ?4, seq = ?5 WHERE id = ?1",
    )?
    .execute(params![id, rel, parent_of(rel), name_of(rel), seq])?;
    Ok(())
}

#[cfg(test)]
mod listing_plan {
    use super::*;

    /// A page of a big folder skips its offset along `entries_listing` (covering: no row is
    /// read to be skipped) and sorts only the page.
    #[test]
    fn a_page_reads_the_listing_index_without_sorting() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("lib.db");
        Connection::open(&db).unwrap();
        let c = Contents::open(&db, [7; 32]).unwrap();
        let r = c.reader();
        let mut st = r
            .prepare(
                "EXPLAIN QUERY PLAN SELECT rowid FROM entries WHERE location = ?1 AND parent = ?2
                 ORDER BY kind != 1, name COLLATE NOCASE LIMIT ?3 OFFSET ?4",
            )
            .unwrap();
        let plan: Vec<String> = st
            .query_map(params![[0u8; 16], b"".as_slice(), 10, 0], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("COVERING INDEX entries_listing"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
