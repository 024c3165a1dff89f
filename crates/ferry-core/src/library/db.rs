//! One library's SQLite database (`libraries/<id>.db` in the data dir, WAL).
//!
//! Schema (version 1; migrations by `user_version`):
//! - `library`: exactly one row: id, name and the stamp of its last rename, creation time, and
//!   `pending_via`: the node that invited us, until the first tunnel to it succeeds (see
//!   [`LibraryDb::confirm_join`]).
//! - `members`: one row per node ever added: display name, `member`/`removed`, the stamp of its
//!   last change (Lamport clock + author: the larger wins on merge), when it was added, and
//!   where and when we last saw it over a proven tunnel.
//!
//! - `grants` (version 2): what this node lets each member do on it beyond reading
//!   (`manage`, `send`; see `control`). A local choice: never sent to anyone.
//! - `remote_log` (version 2): every command a member ran here, allowed or refused, with who
//!   and when (the newest [`REMOTE_LOG_KEEP`] rows).
//!
//! Later tables (locations, files, objects) join this file; every row that is shared carries a
//! stamp like `members` does, so merges stay per row.

use std::path::Path;
use std::sync::Mutex;

use ferry_p2p::PeerId;
use rusqlite::{params, Connection};

use super::wire::{LibraryId, MemberRecord, MemberState, Snapshot, Stamp};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("library database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("library database is corrupt: {0}")]
    Corrupt(String),
    #[error("library file: {0}")]
    Io(#[from] std::io::Error),
    #[error("refused: {0}")]
    Rejected(String),
}

/// How far ahead of ours a merged clock may be. Honest members advance it by one per change,
/// so this is thousands of offline changes of headroom; a hostile one cannot jump to the end.
pub const MAX_CLOCK_JUMP: u64 = 1 << 20;

/// Makes a new directory entry durable (a no-op where directories cannot be opened).
fn sync_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// A member row as stored here (the shared record plus what only we observed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub record: MemberRecord,
    pub last_seen: Option<i64>,
    pub last_addr: Option<String>,
}

pub struct LibraryDb {
    conn: Mutex<Connection>,
}

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE library (
    id BLOB NOT NULL,
    name TEXT NOT NULL,
    name_clock INTEGER NOT NULL,
    name_author BLOB NOT NULL,
    created INTEGER NOT NULL,
    pending_via BLOB
);
CREATE TABLE members (
    node BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('member', 'removed')),
    clock INTEGER NOT NULL,
    author BLOB NOT NULL,
    added INTEGER NOT NULL,
    last_seen INTEGER,
    last_addr TEXT
);
"#,
    r#"
CREATE TABLE grants (
    node BLOB NOT NULL,
    capability TEXT NOT NULL,
    granted INTEGER NOT NULL,
    PRIMARY KEY (node, capability)
);
CREATE TABLE remote_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    node BLOB NOT NULL,
    command TEXT NOT NULL,
    outcome TEXT NOT NULL
);
"#,
];

/// Rows of `remote_log` kept: enough to see who did what this month, bounded for ever.
pub const REMOTE_LOG_KEEP: i64 = 1000;

/// One grant: `node` may use `capability` on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub node: PeerId,
    pub capability: String,
    pub granted: i64,
}

/// One command a member ran here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLogRow {
    pub at: i64,
    pub node: PeerId,
    pub command: String,
    pub outcome: String,
}

fn corrupt<E: std::fmt::Display>(e: E) -> DbError {
    DbError::Corrupt(e.to_string())
}

fn peer(b: Vec<u8>) -> Result<PeerId, DbError> {
    Ok(PeerId(b.try_into().map_err(|_| corrupt("node id"))?))
}

/// SQLite stores u64 as i64; clocks never come near 2⁶³, but a hostile one must not wrap.
fn clock_to_sql(c: u64) -> i64 {
    i64::try_from(c).unwrap_or(i64::MAX)
}

impl LibraryDb {
    /// Opens an existing library database, migrating it if needed.
    pub fn open(path: &Path) -> Result<LibraryDb, DbError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Self::init(conn)
    }

    fn init(conn: Connection) -> Result<LibraryDb, DbError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = usize::try_from(version).map_err(corrupt)?;
        if version > MIGRATIONS.len() {
            return Err(DbError::Corrupt(format!(
                "schema version {version} is newer than this build ({})",
                MIGRATIONS.len()
            )));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version) {
            conn.execute_batch(&format!(
                "BEGIN; {m}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))?;
        }
        Ok(LibraryDb {
            conn: Mutex::new(conn),
        })
    }

    /// Creates a library database at `path` (which must not exist) holding `snapshot`, written
    /// to a temp file and hard-linked into place, so a crash never leaves half a library
    /// behind.
    pub fn create(
        path: &Path,
        snapshot: &Snapshot,
        pending_via: Option<PeerId>,
    ) -> Result<LibraryDb, DbError> {
        // A fresh temp name per attempt: two creates of one library never share a file.
        let tmp = path.with_extension(format!(
            "{}.tmp",
            super::wire::random::<8>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        {
            let db = Self::init(Connection::open(&tmp)?)?;
            let mut conn = db.lock();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO library (id, name, name_clock, name_author, created, pending_via)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    &snapshot.library.0[..],
                    snapshot.name,
                    clock_to_sql(snapshot.name_stamp.clock),
                    &snapshot.name_stamp.author.0[..],
                    snapshot.created,
                    pending_via.as_ref().map(|p| p.0.to_vec()),
                ],
            )?;
            for m in &snapshot.members {
                put_member(&tx, m)?;
            }
            tx.commit()?;
            conn.pragma_update(None, "journal_mode", "DELETE")?;
        }
        // A hard link fails if `path` exists: an existing library is never replaced.
        let linked = std::fs::hard_link(&tmp, path).and_then(|()| sync_dir(path));
        let _ = std::fs::remove_file(&tmp);
        linked.map_err(DbError::Io)?;
        Self::open(path)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        ferry_util::lock(&self.conn)
    }

    /// The library's shared state, as sent to members.
    pub fn snapshot(&self) -> Result<Snapshot, DbError> {
        let conn = self.lock();
        let (library, name, clock, author, created) = conn.query_row(
            "SELECT id, name, name_clock, name_author, created FROM library",
            [],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )?;
        let members = members(&conn)?.into_iter().map(|m| m.record).collect();
        Ok(Snapshot {
            library: LibraryId(library.try_into().map_err(|_| corrupt("library id"))?),
            created,
            name,
            name_stamp: Stamp {
                clock: clock as u64,
                author: peer(author)?,
            },
            members,
        })
    }

    pub fn members(&self) -> Result<Vec<MemberRow>, DbError> {
        members(&self.lock())
    }

    pub fn member(&self, node: &PeerId) -> Result<Option<MemberRow>, DbError> {
        Ok(members(&self.lock())?
            .into_iter()
            .find(|m| m.record.node == *node))
    }

    pub fn pending_via(&self) -> Result<Option<PeerId>, DbError> {
        let v: Option<Vec<u8>> =
            self.lock()
                .query_row("SELECT pending_via FROM library", [], |r| r.get(0))?;
        v.map(peer).transpose()
    }

    /// Our join is confirmed: the inviter accepted us on a tunnel.
    pub fn confirm_join(&self) -> Result<(), DbError> {
        self.lock()
            .execute("UPDATE library SET pending_via = NULL", [])?;
        Ok(())
    }

    /// The next Lamport clock value: larger than every stamp this library has seen.
    fn next_clock(conn: &Connection) -> Result<u64, DbError> {
        let max: i64 = conn.query_row(
            "SELECT max((SELECT name_clock FROM library), coalesce((SELECT max(clock) FROM members), 0))",
            [],
            |r| r.get(0),
        )?;
        Ok((max as u64).saturating_add(1))
    }

    /// Renames the library (a local change, stamped by `me`).
    pub fn rename(&self, name: &str, me: PeerId) -> Result<(), DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let clock = Self::next_clock(&tx)?;
        tx.execute(
            "UPDATE library SET name = ?1, name_clock = ?2, name_author = ?3",
            params![name, clock_to_sql(clock), &me.0[..]],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Marks our membership as awaiting confirmation by `inviter` (a re-join).
    pub fn set_pending(&self, inviter: PeerId) -> Result<(), DbError> {
        self.lock().execute(
            "UPDATE library SET pending_via = ?1",
            params![&inviter.0[..]],
        )?;
        Ok(())
    }

    /// Adds or re-adds `node`, or removes it (a local change, stamped by `me`).
    pub fn set_member(
        &self,
        node: PeerId,
        name: &str,
        state: MemberState,
        me: PeerId,
        now: i64,
    ) -> Result<MemberRecord, DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let clock = Self::next_clock(&tx)?;
        let old = members(&tx)?.into_iter().find(|m| m.record.node == node);
        let record = MemberRecord {
            node,
            name: if name.is_empty() {
                old.as_ref()
                    .map(|o| o.record.name.clone())
                    .unwrap_or_default()
            } else {
                name.to_string()
            },
            state,
            stamp: Stamp { clock, author: me },
            added: old.map_or(now, |o| o.record.added),
        };
        put_member(&tx, &record)?;
        tx.commit()?;
        Ok(record)
    }

    /// Merges a member's snapshot: per record (and for the name), the newer stamp wins.
    /// Returns whether anything here changed. The caller has checked the snapshot's bounds.
    ///
    /// Two rules keep a member from making itself unremovable: no clock may run more than
    /// [`MAX_CLOCK_JUMP`] ahead of ours (so the clock space cannot be exhausted), and a node
    /// removed here cannot re-add itself (only another member, by pairing, can).
    pub fn merge(&self, theirs: &Snapshot) -> Result<bool, DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let limit = Self::next_clock(&tx)?.saturating_add(MAX_CLOCK_JUMP);
        if theirs.max_clock() > limit {
            return Err(DbError::Rejected(format!(
                "a clock runs more than {MAX_CLOCK_JUMP} ahead of this library's"
            )));
        }
        let mine = {
            let (clock, author): (i64, Vec<u8>) =
                tx.query_row("SELECT name_clock, name_author FROM library", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            Stamp {
                clock: clock as u64,
                author: peer(author)?,
            }
        };
        let mut changed = false;
        if theirs.name_stamp.newer_than(&mine) {
            tx.execute(
                "UPDATE library SET name = ?1, name_clock = ?2, name_author = ?3",
                params![
                    theirs.name,
                    clock_to_sql(theirs.name_stamp.clock),
                    &theirs.name_stamp.author.0[..]
                ],
            )?;
            changed = true;
        }
        let have: std::collections::HashMap<PeerId, MemberRecord> = members(&tx)?
            .into_iter()
            .map(|m| (m.record.node, m.record))
            .collect();
        for m in &theirs.members {
            let mine = have.get(&m.node);
            let self_readd = mine.is_some_and(|r| r.state == MemberState::Removed)
                && m.state == MemberState::Member
                && m.stamp.author == m.node;
            if !self_readd && mine.is_none_or(|r| m.stamp.newer_than(&r.stamp)) {
                put_member(&tx, m)?;
                changed = true;
            }
        }
        tx.commit()?;
        Ok(changed)
    }

    /// Records that `node` just proved membership to us over a tunnel from `addr`.
    pub fn seen(&self, node: &PeerId, addr: Option<String>, now: i64) -> Result<(), DbError> {
        self.lock().execute(
            "UPDATE members SET last_seen = ?2, last_addr = coalesce(?3, last_addr) WHERE node = ?1",
            params![&node.0[..], now, addr],
        )?;
        Ok(())
    }
}

/// Grants and the log of members' commands (see `control`).
impl LibraryDb {
    /// Lets `node` use `capability` here; true if it did not hold it yet.
    pub fn grant(&self, node: &PeerId, capability: &str, now: i64) -> Result<bool, DbError> {
        Ok(self.lock().execute(
            "INSERT OR IGNORE INTO grants (node, capability, granted) VALUES (?1, ?2, ?3)",
            params![&node.0[..], capability, now],
        )? > 0)
    }

    /// Takes a grant back; true if `node` held it.
    pub fn revoke(&self, node: &PeerId, capability: &str) -> Result<bool, DbError> {
        Ok(self.lock().execute(
            "DELETE FROM grants WHERE node = ?1 AND capability = ?2",
            params![&node.0[..], capability],
        )? > 0)
    }

    /// When `node` was granted `capability` (unix seconds), if it holds it.
    pub fn granted_at(&self, node: &PeerId, capability: &str) -> Result<Option<i64>, DbError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .lock()
            .query_row(
                "SELECT granted FROM grants WHERE node = ?1 AND capability = ?2",
                params![&node.0[..], capability],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn grants(&self) -> Result<Vec<GrantRow>, DbError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT node, capability, granted FROM grants ORDER BY granted, node",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get(1)?, r.get(2)?)))?;
        let mut out = vec![];
        for row in rows {
            let (node, capability, granted) = row?;
            out.push(GrantRow {
                node: peer(node)?,
                capability,
                granted,
            });
        }
        Ok(out)
    }

    /// Records a member's command and how it ended; keeps the newest [`REMOTE_LOG_KEEP`].
    pub fn log_remote(&self, row: &RemoteLogRow) -> Result<(), DbError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO remote_log (at, node, command, outcome) VALUES (?1, ?2, ?3, ?4)",
            params![row.at, &row.node.0[..], row.command, row.outcome],
        )?;
        conn.execute(
            "DELETE FROM remote_log WHERE id <= (SELECT max(id) FROM remote_log) - ?1",
            params![REMOTE_LOG_KEEP],
        )?;
        Ok(())
    }

    /// The newest `limit` commands members ran here, newest first.
    pub fn remote_log(&self, limit: usize) -> Result<Vec<RemoteLogRow>, DbError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT at, node, command, outcome FROM remote_log ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((r.get(0)?, r.get::<_, Vec<u8>>(1)?, r.get(2)?, r.get(3)?))
        })?;
        let mut out = vec![];
        for row in rows {
            let (at, node, command, outcome) = row?;
            out.push(RemoteLogRow {
                at,
                node: peer(node)?,
                command,
                outcome,
            });
        }
        Ok(out)
    }
}

fn put_member(conn: &Connection, m: &MemberRecord) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO members (node, name, state, clock, author, added) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (node) DO UPDATE SET name = ?2, state = ?3, clock = ?4, author = ?5, added = ?6",
        params![
            &m.node.0[..],
            m.name,
            m.state.as_str(),
            clock_to_sql(m.stamp.clock),
            &m.stamp.author.0[..],
            m.added
        ],
    )?;
    Ok(())
}

fn members(conn: &Connection) -> Result<Vec<MemberRow>, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT node, name, state, clock, author, added, last_seen, last_addr FROM members
         ORDER BY added, node",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, Vec<u8>>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, Option<i64>>(6)?,
            r.get::<_, Option<String>>(7)?,
        ))
    })?;
    let mut out = vec![];
    for row in rows {
        let (node, name, state, clock, author, added, last_seen, last_addr) = row?;
        out.push(MemberRow {
            record: MemberRecord {
                node: peer(node)?,
                name,
                state: match state.as_str() {
                    "member" => MemberState::Member,
                    "removed" => MemberState::Removed,
                    s => return Err(corrupt(format!("member state {s:?}"))),
                },
                stamp: Stamp {
                    clock: clock as u64,
                    author: peer(author)?,
                },
                added,
            },
            last_seen,
            last_addr,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(me: PeerId) -> Snapshot {
        Snapshot {
            library: LibraryId([1; 16]),
            created: 10,
            name: "Photos".into(),
            name_stamp: Stamp {
                clock: 1,
                author: me,
            },
            members: vec![MemberRecord {
                node: me,
                name: "a".into(),
                state: MemberState::Member,
                stamp: Stamp {
                    clock: 1,
                    author: me,
                },
                added: 10,
            }],
        }
    }

    #[test]
    fn merges_converge_whatever_the_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (PeerId([1; 32]), PeerId([2; 32]), PeerId([3; 32]));
        let x = LibraryDb::create(&dir.path().join("x.db"), &snap(a), None).unwrap();
        let y = LibraryDb::create(&dir.path().join("y.db"), &snap(a), Some(a)).unwrap();
        assert_eq!(y.pending_via().unwrap(), Some(a));
        y.confirm_join().unwrap();
        assert_eq!(y.pending_via().unwrap(), None);
        // Concurrent changes on both sides.
        x.set_member(b, "b", MemberState::Member, a, 11).unwrap();
        x.rename("Family", a).unwrap();
        y.set_member(c, "c", MemberState::Member, b, 12).unwrap();
        y.set_member(b, "b", MemberState::Removed, c, 13).unwrap();
        let (sx, sy) = (x.snapshot().unwrap(), y.snapshot().unwrap());
        assert!(x.merge(&sy).unwrap());
        assert!(y.merge(&sx).unwrap());
        assert_eq!(x.snapshot().unwrap(), y.snapshot().unwrap());
        assert!(!x.merge(&y.snapshot().unwrap()).unwrap(), "idempotent");
        // Re-adding a removed member wins over the older removal.
        x.set_member(b, "", MemberState::Member, a, 14).unwrap();
        assert!(y.merge(&x.snapshot().unwrap()).unwrap());
        let b_row = y.member(&b).unwrap().unwrap();
        assert_eq!(b_row.record.state, MemberState::Member);
        assert_eq!(b_row.record.name, "b");
    }

    #[test]
    fn a_member_cannot_make_itself_unremovable() {
        let dir = tempfile::tempdir().unwrap();
        let (a, c) = (PeerId([1; 32]), PeerId([3; 32]));
        let x = LibraryDb::create(&dir.path().join("x.db"), &snap(a), None).unwrap();
        x.set_member(c, "c", MemberState::Member, a, 1).unwrap();
        // A jump to the end of the clock space is refused whole.
        let ci = |s: &Snapshot| s.members.iter().position(|m| m.node == c).unwrap();
        let mut evil = x.snapshot().unwrap();
        let i = ci(&evil);
        evil.members[i].stamp = Stamp {
            clock: u64::MAX,
            author: PeerId([0xff; 32]),
        };
        assert!(matches!(x.merge(&evil), Err(DbError::Rejected(_))));
        // Removed here, C's own re-add (relayed by anyone) is ignored; a member's re-add wins.
        x.set_member(c, "", MemberState::Removed, a, 2).unwrap();
        let mut readd = x.snapshot().unwrap();
        let i = ci(&readd);
        readd.members[i].state = MemberState::Member;
        readd.members[i].stamp = Stamp {
            clock: 100,
            author: c,
        };
        assert!(!x.merge(&readd).unwrap());
        readd.members[i].stamp.author = a;
        assert!(x.merge(&readd).unwrap());
        assert_eq!(
            x.member(&c).unwrap().unwrap().record.state,
            MemberState::Member
        );
    }

    #[test]
    fn survives_reopen_and_records_sightings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let a = PeerId([1; 32]);
        LibraryDb::create(&path, &snap(a), None).unwrap();
        assert!(
            LibraryDb::create(&path, &snap(a), None).is_err(),
            "never replaces a library"
        );
        let db = LibraryDb::open(&path).unwrap();
        db.seen(&a, Some("127.0.0.1:5".into()), 99).unwrap();
        db.seen(&a, None, 100).unwrap();
        let m = db.member(&a).unwrap().unwrap();
        assert_eq!(
            (m.last_seen, m.last_addr.as_deref()),
            (Some(100), Some("127.0.0.1:5"))
        );
        assert!(!dir.path().join("l.db.tmp").exists());
    }
}
