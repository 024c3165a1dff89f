//! What library sync reads and writes in the contents tables (the protocol itself is
//! `ferry-core`'s `library/sync`).
//!
//! Every location has one *owner*, the node whose disk it is on, and only the owner writes its
//! rows; every other member holds a read-only replica. A node's writes to its own rows take the
//! next number of its counter (see [`crate::db`]), so "everything author A changed after N" is
//! a few indexed range reads: [`Contents::batch_since`]. A replica applies one [`Batch`] in
//! one transaction together with the advance of its mark for that author
//! ([`Contents::apply_batch`]), so a crash or a cut connection resumes exactly where it stopped
//! and a replayed batch changes nothing. A node serves other authors' rows exactly as it holds
//! them (with their numbers), which is how changes travel through members.
//!
//! Everything in a batch is checked before it is written ([`check_batch`]): bounds, order,
//! contiguity with what is held, and that every row belongs to a location of the batch's
//! author. A batch that fails any check changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use crate::db::{
    bytes_path, hex, next_seq, now_ms, parent_of, path_bytes, root_identity, Contents, EntryId,
    EntryKind, IndexError, LocationId, LocationInfo,
};

/// A member's node id (its Ed25519 public key).
pub type Author = [u8; 32];

/// Longest location display name, in bytes (a folder name's limit on common file systems).
pub const MAX_NAME: usize = 255;
/// Longest path component of an entry, in bytes.
pub const MAX_COMPONENT: usize = 1024;
/// Deepest entry path (components), as Spaceblock's manifests allow.
pub const MAX_DEPTH: usize = 64;
/// Longest owner's path of a location, in bytes (shown only).
pub const MAX_PATH: usize = 4096;
/// Longest error text of a row.
pub const MAX_ERROR: usize = 512;
/// Changes in one batch.
pub const MAX_CHANGES: usize = 2048;
/// Location records one batch may carry as context (and locations an author may have).
pub const MAX_LOCATIONS: usize = 256;
/// Sequence numbers stay below 2^53 (exact in JSON and JavaScript, and far from overflow).
pub const MAX_SEQ: i64 = 1 << 53;
/// An index id (a creation time, ms) may be at most this far in the future: a peer whose clock
/// is far ahead is refused, not believed forever.
pub const MAX_CLOCK_AHEAD_MS: i64 = 24 * 3600 * 1000;

const STATES: [&str; 4] = ["pending", "walking", "identifying", "done"];

/// A location as its owner records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationRecord {
    pub id: LocationId,
    pub name: String,
    /// The owner's absolute path (raw bytes; shown only).
    pub path: Vec<u8>,
    pub added: i64,
    pub state: String,
    pub online: bool,
    pub last_scan: Option<i64>,
    pub error: Option<String>,
    pub seq: i64,
}

/// An entry as its owner records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryRecord {
    pub id: EntryId,
    pub location: LocationId,
    pub rel: Vec<u8>,
    pub kind: u8,
    pub size: u64,
    pub mtime: i64,
    pub cas: Option<[u8; 32]>,
    pub error: Option<String>,
    pub seq: i64,
}

/// One row's change, in its author's sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    Location(LocationRecord),
    Entry(EntryRecord),
    Removed {
        id: EntryId,
        location: LocationId,
        seq: i64,
    },
    LocationRemoved {
        id: LocationId,
        seq: i64,
    },
}

impl Change {
    pub fn seq(&self) -> i64 {
        match self {
            Change::Location(l) => l.seq,
            Change::Entry(e) => e.seq,
            Change::Removed { seq, .. } | Change::LocationRemoved { seq, .. } => *seq,
        }
    }

    /// About what it costs on the wire (for batch sizing, not exact).
    fn weight(&self) -> usize {
        48 + match self {
            Change::Location(l) => l.name.len() + l.path.len() + 64,
            Change::Entry(e) => e.rel.len() + 64 + e.error.as_ref().map_or(0, String::len),
            _ => 0,
        }
    }
}

/// How far a node holds an author's sequence: every change with `seq <= seq` of sequence space
/// `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub author: Author,
    pub index: i64,
    pub seq: i64,
}

/// The changes of one author with sequence numbers in `(from, to]`, ascending. `context`
/// carries the current record of each location the changes refer to whose own record is not
/// in this batch's range (a location's record is renumbered whenever its state changes, so it
/// can sort after its entries); location records are applied before the other changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub author: Author,
    pub index: i64,
    pub from: i64,
    pub to: i64,
    pub context: Vec<LocationRecord>,
    pub changes: Vec<Change>,
}

/// What applying a batch changed, for events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// Locations whose record or entries changed.
    pub locations: BTreeSet<LocationId>,
    /// Locations that were removed.
    pub removed: BTreeSet<LocationId>,
    /// This node's own locations that another member now holds (their drive moved there).
    pub lost: BTreeSet<LocationId>,
    pub changes: u64,
}

/// Whether a location record that claims a location for a new owner (its drive moved there)
/// wins over the owner's record held here: the later claim (`added`, the time each owner took
/// it) wins; a tie keeps the owner held.
pub fn claim_wins(claim_added: i64, held_added: i64) -> bool {
    claim_added > held_added
}

/// What this node holds of one author.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holding {
    pub mark: Mark,
    /// The highest sequence number heard of (from any member).
    pub head: i64,
    pub synced_at: Option<i64>,
    pub locations: u64,
    pub entries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("batch starts at {from} but {held} is held: a gap or a replay")]
    Gap { from: i64, held: i64 },
    #[error("batch of sequence space {got}, older than the held {held}")]
    StaleIndex { got: i64, held: i64 },
    #[error("rows of this node's own locations")]
    Own,
    #[error("location {0} belongs to another member")]
    Foreign(String),
    #[error("rows for location {0}, which the batch's author does not have")]
    NoLocation(String),
    #[error("invalid batch: {0}")]
    Invalid(String),
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl From<rusqlite::Error> for ReplicaError {
    fn from(e: rusqlite::Error) -> Self {
        ReplicaError::Index(IndexError::Sql(e))
    }
}

fn invalid(why: impl Into<String>) -> ReplicaError {
    ReplicaError::Invalid(why.into())
}

/// A relative path as a replica accepts it: `/`-separated components, none empty, `.`, `..`
/// or over [`MAX_COMPONENT`] bytes, no NUL or backslash, at most [`MAX_DEPTH`] deep.
pub fn check_rel(rel: &[u8]) -> Result<(), ReplicaError> {
    if rel.is_empty() {
        return Err(invalid("empty path"));
    }
    let mut depth = 0;
    for c in rel.split(|&b| b == b'/') {
        depth += 1;
        if c.is_empty() || c == b"." || c == b".." {
            return Err(invalid("path with an empty, . or .. component"));
        }
        if c.len() > MAX_COMPONENT {
            return Err(invalid("path component too long"));
        }
        if c.contains(&0) || c.contains(&b'\\') {
            return Err(invalid("path with NUL or a backslash"));
        }
    }
    if depth > MAX_DEPTH {
        return Err(invalid("path too deep"));
    }
    Ok(())
}

fn check_text(t: &Option<String>, what: &str) -> Result<(), ReplicaError> {
    match t {
        Some(t) if t.len() > MAX_ERROR => Err(invalid(format!("{what} too long"))),
        _ => Ok(()),
    }
}

fn check_seq(seq: i64) -> Result<(), ReplicaError> {
    if (1..=MAX_SEQ).contains(&seq) {
        Ok(())
    } else {
        Err(invalid(format!("sequence number {seq} out of range")))
    }
}

fn check_location(l: &LocationRecord) -> Result<(), ReplicaError> {
    check_seq(l.seq)?;
    if l.name.is_empty() || l.name.len() > MAX_NAME {
        return Err(invalid("location name empty or too long"));
    }
    if l.path.len() > MAX_PATH {
        return Err(invalid("location path too long"));
    }
    if !STATES.contains(&l.state.as_str()) {
        return Err(invalid("unknown location state"));
    }
    check_text(&l.error, "location error")
}

fn check_change(c: &Change) -> Result<(), ReplicaError> {
    match c {
        Change::Location(l) => check_location(l),
        Change::Entry(e) => {
            check_seq(e.seq)?;
            check_rel(&e.rel)?;
            if e.kind > 3 {
                return Err(invalid("unknown entry kind"));
            }
            if e.size > i64::MAX as u64 {
                return Err(invalid("entry size out of range"));
            }
            check_text(&e.error, "entry error")
        }
        Change::Removed { seq, .. } | Change::LocationRemoved { seq, .. } => check_seq(*seq),
    }
}

/// Checks a batch against its bounds and against what is held of its author (`held`), before
/// anything is written. `now` is this node's clock (unix ms).
pub fn check_batch(b: &Batch, held: Option<Mark>, now: i64) -> Result<(), ReplicaError> {
    if b.changes.len() > MAX_CHANGES || b.context.len() > MAX_LOCATIONS {
        return Err(invalid("batch over its bounds"));
    }
    if b.index < 1 || b.index > now.saturating_add(MAX_CLOCK_AHEAD_MS) {
        return Err(invalid(format!(
            "sequence space {} from the future",
            b.index
        )));
    }
    if b.from < 0 || b.to <= b.from || b.to > MAX_SEQ {
        return Err(invalid(format!(
            "range ({}, {}] out of order",
            b.from, b.to
        )));
    }
    match held {
        Some(m) if m.index == b.index && b.from != m.seq => {
            return Err(ReplicaError::Gap {
                from: b.from,
                held: m.seq,
            })
        }
        Some(m) if b.index < m.index => {
            return Err(ReplicaError::StaleIndex {
                got: b.index,
                held: m.index,
            })
        }
        Some(m) if m.index != b.index && b.from != 0 => {
            return Err(ReplicaError::Gap {
                from: b.from,
                held: 0,
            })
        }
        None if b.from != 0 => {
            return Err(ReplicaError::Gap {
                from: b.from,
                held: 0,
            })
        }
        _ => {}
    }
    let mut last = b.from;
    for c in &b.changes {
        let s = c.seq();
        if s <= last || s > b.to {
            return Err(invalid(format!(
                "sequence {s} out of order in ({}, {}]",
                b.from, b.to
            )));
        }
        last = s;
        check_change(c)?;
    }
    for l in &b.context {
        check_location(l)?;
    }
    // A location's `added` decides who owns it after a move (`claim_wins`): one from the
    // future would win every claim for ever.
    let records = b.changes.iter().filter_map(|c| match c {
        Change::Location(l) => Some(l),
        _ => None,
    });
    if b.context
        .iter()
        .chain(records)
        .any(|l| l.added > now.saturating_add(MAX_CLOCK_AHEAD_MS))
    {
        return Err(invalid("a location added in the future"));
    }
    Ok(())
}

impl Contents {
    /// This node's own sequence: its index id and the last number taken.
    pub fn own_mark(&self) -> Result<Mark, IndexError> {
        let (index, seq) =
            self.reader()
                .query_row("SELECT index_id, seq FROM contents_meta", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        Ok(Mark {
            author: self.node(),
            index,
            seq,
        })
    }

    /// How far this node holds each other author.
    pub fn marks(&self) -> Result<Vec<Mark>, IndexError> {
        // From `sync_heads` alone: every pull and every serving round reads these, and
        // `holdings` counts each author's rows (32 % of a benchmark's CPU when polled).
        let r = self.reader();
        let mut st =
            r.prepare_cached("SELECT author, index_id, seq FROM sync_heads ORDER BY author")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (author, index, seq) = row?;
            out.push(Mark {
                author: id16(author)?,
                index,
                seq,
            });
        }
        Ok(out)
    }

    /// What this node holds of each other author.
    pub fn holdings(&self) -> Result<Vec<Holding>, IndexError> {
        let r = self.reader();
        let mut st = r.prepare(
            "SELECT h.author, h.index_id, h.seq, h.head, h.synced_at,
                (SELECT COUNT(*) FROM locations l WHERE l.node = h.author),
                (SELECT COUNT(*) FROM entries e JOIN locations l ON l.id = e.location WHERE l.node = h.author)
             FROM sync_heads h ORDER BY h.author",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (author, index, seq, head, synced_at, locations, entries) = row?;
            let author: Author = author
                .try_into()
                .map_err(|_| IndexError::Corrupt("sync head author".into()))?;
            out.push(Holding {
                mark: Mark { author, index, seq },
                head: head.max(seq),
                synced_at,
                locations: locations as u64,
                entries: entries as u64,
            });
        }
        Ok(out)
    }

    /// Records the head a member announced for `author` (for "how far behind"), without
    /// holding anything more.
    pub fn heard_head(&self, author: &Author, index: i64, head: i64) -> Result<(), IndexError> {
        if *author == self.node() {
            return Ok(());
        }
        self.writer().execute(
            "INSERT INTO sync_heads (author, index_id, seq, head) VALUES (?1, ?2, 0, ?3)
             ON CONFLICT (author) DO UPDATE SET head = MAX(head, excluded.head)
             WHERE index_id = excluded.index_id",
            params![author, index, head],
        )?;
        Ok(())
    }

    /// Changes of `author` after `from`, as this node holds them: how many there are.
    pub fn pending(&self, author: &Author, from: i64) -> Result<u64, IndexError> {
        let r = self.reader();
        let n: i64 = r.query_row(
            "SELECT (SELECT COUNT(*) FROM locations WHERE node = ?1 AND seq > ?2)
                  + (SELECT COUNT(*) FROM removed_locations WHERE node = ?1 AND seq > ?2)
                  + (SELECT COUNT(*) FROM entries e JOIN locations l ON l.id = e.location
                     WHERE l.node = ?1 AND e.seq > ?2)
                  + (SELECT COUNT(*) FROM removed d JOIN locations l ON l.id = d.location
                     WHERE l.node = ?1 AND d.seq > ?2)",
            params![author, from],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// The head this node can serve of `author`: its own counter, or what it holds of another.
    fn head_in(&self, c: &Connection, author: &Author) -> Result<Option<(i64, i64)>, IndexError> {
        if *author == self.node() {
            return Ok(Some(c.query_row(
                "SELECT index_id, seq FROM contents_meta",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?));
        }
        Ok(c.query_row(
            "SELECT index_id, seq FROM sync_heads WHERE author = ?1 AND seq > 0",
            params![author],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
    }

    /// The next batch of `author`'s changes after `from`: at most `limit` changes and about
    /// `max_bytes`, read in one snapshot. `None` if this node holds nothing of `author`.
    pub fn batch_since(
        &self,
        author: &Author,
        from: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Option<Batch>, IndexError> {
        let limit = limit.clamp(1, MAX_CHANGES);
        let r = self.reader();
        let tx = r.unchecked_transaction()?;
        let Some((index, head)) = self.head_in(&tx, author)? else {
            return Ok(None);
        };
        let lim = limit as i64;
        let mut found: Vec<Change> = Vec::new();
        let mut locs: BTreeMap<LocationId, LocationRecord> = BTreeMap::new();
        {
            let mut st = tx.prepare_cached(
                "SELECT id, name, path, added, state, online, last_scan, error, seq
                 FROM locations WHERE node = ?1 ORDER BY seq",
            )?;
            let mut q = st.query(params![author])?;
            while let Some(row) = q.next()? {
                let l = location_record(row)?;
                locs.insert(l.id, l);
            }
        }
        for l in locs.values().filter(|l| l.seq > from) {
            found.push(Change::Location(l.clone()));
        }
        {
            let mut st = tx.prepare_cached(
                "SELECT id, seq FROM removed_locations WHERE node = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )?;
            let mut q = st.query(params![author, from, lim])?;
            while let Some(row) = q.next()? {
                found.push(Change::LocationRemoved {
                    id: id16(row.get(0)?)?,
                    seq: row.get(1)?,
                });
            }
        }
        for loc in locs.keys() {
            let mut st = tx.prepare_cached(
                "SELECT id, rel, kind, size, mtime, cas, error, seq FROM entries
                 WHERE location = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let mut q = st.query(params![loc, from, lim])?;
            while let Some(row) = q.next()? {
                let cas: Option<Vec<u8>> = row.get(5)?;
                found.push(Change::Entry(EntryRecord {
                    id: id16(row.get(0)?)?,
                    location: *loc,
                    rel: row.get(1)?,
                    kind: row.get::<_, i64>(2)?.clamp(0, 3) as u8,
                    size: row.get::<_, i64>(3)?.max(0) as u64,
                    mtime: row.get(4)?,
                    cas: match cas {
                        Some(c) => Some(
                            c.try_into()
                                .map_err(|_| IndexError::Corrupt("content id".into()))?,
                        ),
                        None => None,
                    },
                    error: row.get(6)?,
                    seq: row.get(7)?,
                }));
            }
            let mut st = tx.prepare_cached(
                "SELECT id, seq FROM removed WHERE location = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let mut q = st.query(params![loc, from, lim])?;
            while let Some(row) = q.next()? {
                found.push(Change::Removed {
                    id: id16(row.get(0)?)?,
                    location: *loc,
                    seq: row.get(1)?,
                });
            }
        }
        tx.finish()?;
        found.sort_by_key(Change::seq);
        let (mut changes, mut bytes, mut cut) = (Vec::new(), 0usize, false);
        for c in found {
            if changes.len() == limit || (!changes.is_empty() && bytes + c.weight() > max_bytes) {
                cut = true;
                break;
            }
            bytes += c.weight();
            changes.push(c);
        }
        // A full batch may have stopped short of the head; only a short one reaches it.
        let to = match changes.last() {
            Some(c) if cut || changes.len() == limit => c.seq(),
            _ => head,
        };
        let in_batch: BTreeSet<LocationId> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Location(l) => Some(l.id),
                _ => None,
            })
            .collect();
        let context = changes
            .iter()
            .filter_map(|c| match c {
                Change::Entry(e) => Some(e.location),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|l| !in_batch.contains(l))
            .filter_map(|l| locs.get(&l).filter(|r| r.seq > to).cloned())
            .collect();
        Ok(Some(Batch {
            author: *author,
            index,
            from,
            to: to.max(from),
            context,
            changes,
        }))
    }

    /// Applies a batch of another member's rows: checked first, then written in one
    /// transaction with the advance of the mark, so a failure of any kind leaves the replica
    /// as it was.
    pub fn apply_batch(&self, b: &Batch) -> Result<Applied, ReplicaError> {
        if b.author == self.node() {
            return Err(ReplicaError::Own);
        }
        let mut w = self.writer();
        let tx = w.transaction()?;
        // A mark at 0 was only heard of: nothing is held of that space yet.
        let held = mark_in(&tx, &b.author)?.filter(|m| m.seq > 0);
        check_batch(b, held, now_ms())?;
        let mut out = Applied::default();
        if held.is_some_and(|m| m.index != b.index && m.seq > 0) {
            // A new sequence space (the author's database was reset): start over from it.
            out.removed.extend(forget_in(&tx, &b.author)?);
        }
        // Location records first: an entry may sort before its location's newest record.
        let records = b.changes.iter().filter_map(|c| match c {
            Change::Location(l) => Some(l),
            _ => None,
        });
        for l in b.context.iter().chain(records) {
            if upsert_location(&tx, &b.author, l, &self.node())? {
                out.lost.insert(l.id);
            }
        }
        let mut owners = Owners::default();
        for c in &b.changes {
            match c {
                Change::Location(l) => {
                    out.locations.insert(l.id);
                }
                Change::Entry(e) => {
                    upsert_entry(&tx, &mut owners, &b.author, &self.node(), e)?;
                    out.locations.insert(e.location);
                }
                Change::Removed { id, location, seq } => {
                    if owners.of(&tx, location)? == Some(b.author) {
                        tx.prepare_cached("DELETE FROM entries WHERE id = ?1 AND location = ?2")?
                            .execute(params![id, location])?;
                        tx.prepare_cached(
                            "INSERT OR REPLACE INTO removed (id, location, seq) VALUES (?1, ?2, ?3)",
                        )?
                        .execute(params![id, location, seq])?;
                        out.locations.insert(*location);
                    }
                }
                Change::LocationRemoved { id, seq } => {
                    // Another owner's now (it moved): this author's removal is of its old claim.
                    if owner_in(&tx, id)?.is_some_and(|o| o != b.author) {
                        out.changes += 1;
                        continue;
                    }
                    tx.execute("DELETE FROM locations WHERE id = ?1", params![id])?;
                    tx.execute("DELETE FROM removed WHERE location = ?1", params![id])?;
                    tx.execute(
                        "INSERT OR REPLACE INTO removed_locations (id, node, seq) VALUES (?1, ?2, ?3)",
                        params![id, b.author, seq],
                    )?;
                    owners.forget(id);
                    out.locations.remove(id);
                    out.removed.insert(*id);
                }
            }
            out.changes += 1;
        }
        let n: i64 = tx.query_row(
            "SELECT COUNT(*) FROM locations WHERE node = ?1",
            params![b.author],
            |r| r.get(0),
        )?;
        if n as usize > MAX_LOCATIONS {
            return Err(invalid("more locations than an author may have"));
        }
        tx.execute(
            "INSERT INTO sync_heads (author, index_id, seq, head, synced_at) VALUES (?1, ?2, ?3, ?3, ?4)
             ON CONFLICT (author) DO UPDATE SET index_id = excluded.index_id, seq = excluded.seq,
                head = CASE WHEN index_id = excluded.index_id THEN MAX(head, excluded.seq)
                            ELSE excluded.seq END,
                synced_at = excluded.synced_at",
            params![b.author, b.index, b.to, now_ms()],
        )?;
        tx.commit()?;
        Ok(out)
    }

    /// Drops every row of `author` (a member that was removed): its locations, entries,
    /// tombstones and mark. Returns the locations that went.
    pub fn forget_author(&self, author: &Author) -> Result<Vec<LocationId>, IndexError> {
        if *author == self.node() {
            return Ok(vec![]);
        }
        let mut w = self.writer();
        let tx = w.transaction()?;
        let gone = forget_in(&tx, author).map_err(|e| match e {
            ReplicaError::Index(e) => e,
            other => IndexError::Corrupt(other.to_string()),
        })?;
        tx.execute("DELETE FROM sync_heads WHERE author = ?1", params![author])?;
        tx.commit()?;
        Ok(gone)
    }

    /// Makes this node the owner of a member's location `loc`, found at `path` on this node's
    /// disk (its drive moved here): it keeps its id and its entries (ids, content ids, so links
    /// and thumbnails stay), renumbered in this node's sequence so every member hears of the
    /// move, and its record claims it later than the old owner's did ([`claim_wins`]). The
    /// scan that follows brings the rows up to date with the disk.
    pub fn take_over(&self, loc: &LocationId, path: &Path) -> Result<LocationInfo, IndexError> {
        let canon = self.new_root(path)?;
        let (dev, ino) = root_identity(&canon).unwrap_or((0, 0));
        {
            let mut w = self.writer();
            let tx = w.transaction()?;
            let held: Option<(Vec<u8>, i64)> = tx
                .query_row(
                    "SELECT node, added FROM locations WHERE id = ?1",
                    params![loc],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((owner, added)) = held else {
                return Err(IndexError::NotFound("location".into()));
            };
            if owner == self.node() {
                return Err(IndexError::Refused(
                    "already a location of this device".into(),
                ));
            }
            let seq = next_seq(&tx)?;
            tx.execute(
                "UPDATE locations SET node = ?2, path = ?3, added = ?4, state = 'pending', online = 1,
                    root_dev = ?5, root_ino = ?6, last_scan = NULL, error = NULL, seq = ?7
                 WHERE id = ?1",
                params![
                    loc,
                    self.node(),
                    path_bytes(&canon),
                    now_ms().max(added + 1),
                    dev as i64,
                    ino as i64,
                    seq
                ],
            )?;
            tx.execute("DELETE FROM removed WHERE location = ?1", params![loc])?;
            // (id, content id, size, path) of each entry, in the old owner's order.
            type Taken = (Vec<u8>, Option<Vec<u8>>, i64, Vec<u8>);
            let rows: Vec<Taken> = {
                let mut st = tx.prepare(
                    "SELECT id, cas, size, rel FROM entries WHERE location = ?1 ORDER BY seq",
                )?;
                let rows = st.query_map(params![loc], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
                rows.collect::<Result<_, _>>()?
            };
            for (id, cas, size, rel) in rows {
                tx.prepare_cached("UPDATE entries SET seq = ?2 WHERE id = ?1")?
                    .execute(params![id, next_seq(&tx)?])?;
                // Its objects, as identifying them here would have recorded them.
                if let Some(cas) = cas {
                    let cas: crate::cas::Cas = id16(cas)?;
                    crate::identify::record_object(&tx, &cas, size as u64, &rel, now_ms())?;
                }
            }
            tx.commit()?;
        }
        self.location(loc)
    }

    /// The owner of a location (this node or another member).
    pub fn owner(&self, loc: &LocationId) -> Result<Author, IndexError> {
        owner_in(&self.reader(), loc)?.ok_or_else(|| IndexError::NotFound("location".into()))
    }
}

use crate::db::id16_of as id16;

fn location_record(row: &rusqlite::Row<'_>) -> Result<LocationRecord, IndexError> {
    Ok(LocationRecord {
        id: id16(row.get(0)?)?,
        name: row.get(1)?,
        path: row.get(2)?,
        added: row.get(3)?,
        state: row.get(4)?,
        online: row.get(5)?,
        last_scan: row.get(6)?,
        error: row.get(7)?,
        seq: row.get(8)?,
    })
}

fn mark_in(c: &Connection, author: &Author) -> Result<Option<Mark>, ReplicaError> {
    Ok(c.query_row(
        "SELECT index_id, seq FROM sync_heads WHERE author = ?1",
        params![author],
        |r| {
            Ok(Mark {
                author: *author,
                index: r.get(0)?,
                seq: r.get(1)?,
            })
        },
    )
    .optional()?)
}

fn owner_in(c: &Connection, loc: &LocationId) -> Result<Option<Author>, IndexError> {
    match c
        .prepare_cached("SELECT node FROM locations WHERE id = ?1")?
        .query_row(params![loc], |r| r.get::<_, Vec<u8>>(0))
        .optional()?
    {
        Some(n) => Ok(Some(id16(n)?)),
        None => Ok(None),
    }
}

fn forget_in(tx: &Transaction<'_>, author: &Author) -> Result<Vec<LocationId>, ReplicaError> {
    let ids: Vec<LocationId> = {
        let mut st = tx.prepare("SELECT id FROM locations WHERE node = ?1")?;
        let rows = st.query_map(params![author], |r| r.get::<_, Vec<u8>>(0))?;
        let mut v = Vec::new();
        for r in rows {
            v.push(id16(r?)?);
        }
        v
    };
    for id in &ids {
        tx.execute("DELETE FROM removed WHERE location = ?1", params![id])?;
    }
    tx.execute("DELETE FROM locations WHERE node = ?1", params![author])?;
    tx.execute(
        "DELETE FROM removed_locations WHERE node = ?1",
        params![author],
    )?;
    Ok(ids)
}

/// Writes an author's location record. A location held here under another owner is taken
/// over when the record claims it later ([`claim_wins`]: its drive moved to the author), and
/// ignored otherwise. Returns whether that took one of this node's own (`me`).
fn upsert_location(
    tx: &Transaction<'_>,
    author: &Author,
    l: &LocationRecord,
    me: &Author,
) -> Result<bool, ReplicaError> {
    let mut lost = false;
    match owner_in(tx, &l.id)? {
        Some(o) if o != *author => {
            let held: i64 = tx.query_row(
                "SELECT added FROM locations WHERE id = ?1",
                params![l.id],
                |r| r.get(0),
            )?;
            // The same rule on every member, the old owner included, so all converge on one
            // owner whatever order the records arrive in.
            if !claim_wins(l.added, held) {
                return Ok(false);
            }
            // The entries stay (same ids, same content): the new owner's sequence renumbers
            // and corrects them. Tombstones were the old owner's, in its numbering.
            tx.execute(
                "UPDATE locations SET node = ?2, seq = 0 WHERE id = ?1",
                params![l.id, author],
            )?;
            tx.execute("DELETE FROM removed WHERE location = ?1", params![l.id])?;
            lost = o == *me;
        }
        _ => {}
    }
    // A record older than the location's tombstone here is of a location that is gone.
    let tomb: Option<i64> = tx
        .query_row(
            "SELECT seq FROM removed_locations WHERE id = ?1 AND node = ?2",
            params![l.id, author],
            |r| r.get(0),
        )
        .optional()?;
    if tomb.is_some_and(|t| t >= l.seq) {
        return Ok(lost);
    }
    tx.prepare_cached(
        "INSERT INTO locations (id, node, path, name, added, state, online, last_scan, error, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET path = excluded.path, name = excluded.name,
            added = excluded.added, state = excluded.state, online = excluded.online,
            last_scan = excluded.last_scan, error = excluded.error, seq = excluded.seq
         WHERE excluded.seq >= locations.seq",
    )?
    .execute(params![
        l.id,
        author,
        l.path,
        l.name,
        l.added,
        l.state,
        l.online,
        l.last_scan,
        l.error,
        l.seq
    ])?;
    Ok(lost)
}

/// The owners of the locations a batch's entries refer to, each looked up once per batch (a
/// batch has up to 2,048 entries of a few locations). A location's owner never changes; only
/// its removal, inside the batch, is forgotten.
#[derive(Default)]
struct Owners(HashMap<LocationId, Option<Author>>);

impl Owners {
    fn of(&mut self, c: &Connection, loc: &LocationId) -> Result<Option<Author>, IndexError> {
        if let Some(o) = self.0.get(loc) {
            return Ok(*o);
        }
        let o = owner_in(c, loc)?;
        self.0.insert(*loc, o);
        Ok(o)
    }

    fn forget(&mut self, loc: &LocationId) {
        self.0.remove(loc);
    }
}

fn upsert_entry(
    tx: &Transaction<'_>,
    owners: &mut Owners,
    author: &Author,
    me: &Author,
    e: &EntryRecord,
) -> Result<(), ReplicaError> {
    match owners.of(tx, &e.location)? {
        Some(o) if o == *author => {}
        // Only this node writes its own locations (a member that lost one to this node, its
        // drive having moved here, stops sending it once it pulls the claim from us).
        Some(o) if o == *me => return Err(ReplicaError::Foreign(hex(&e.location))),
        // Another member's now (a drive that moved there, whose old owner has not heard):
        // not this author's to write; the new owner's own rows say what is there.
        Some(_) => return Ok(()),
        None => return Err(ReplicaError::NoLocation(hex(&e.location))),
    }
    // An entry id lives in one location; one in another member's location is a forgery.
    let at: Option<Vec<u8>> = tx
        .prepare_cached("SELECT location FROM entries WHERE id = ?1")?
        .query_row(params![e.id], |r| r.get(0))
        .optional()?;
    if let Some(at) = at {
        let at: LocationId = id16(at)?;
        if at != e.location && owners.of(tx, &at)? != Some(*author) {
            return Err(ReplicaError::Foreign(hex(&at)));
        }
    }
    // Another row still at this path has moved or gone since (its own change follows in the
    // author's sequence): it makes room now.
    tx.prepare_cached("DELETE FROM entries WHERE location = ?1 AND rel = ?2 AND id != ?3")?
        .execute(params![e.location, e.rel, e.id])?;
    let kind = match e.kind {
        0 => EntryKind::File,
        1 => EntryKind::Dir,
        2 => EntryKind::Symlink,
        _ => EntryKind::Other,
    };
    let name = {
        let start = e.rel.iter().rposition(|&c| c == b'/').map_or(0, |i| i + 1);
        String::from_utf8_lossy(&e.rel[start..]).into_owned()
    };
    tx.prepare_cached(
        "INSERT INTO entries (id, location, rel, parent, name, kind, size, mtime, inode, cas, error, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, ?11)
         ON CONFLICT (id) DO UPDATE SET location = excluded.location, rel = excluded.rel,
            parent = excluded.parent, name = excluded.name, kind = excluded.kind,
            size = excluded.size, mtime = excluded.mtime, cas = excluded.cas,
            error = excluded.error, seq = excluded.seq",
    )?
    .execute(params![
        e.id,
        e.location,
        e.rel,
        parent_of(&e.rel),
        name,
        kind.to_sql(),
        e.size as i64,
        e.mtime,
        e.cas,
        e.error,
        e.seq
    ])?;
    Ok(())
}

/// One row of [`snapshot`]: path, kind, size, mtime (ns), content id.
pub type Row = (String, u8, u64, i64, Option<[u8; 32]>);

/// A location's rows as a plain list, whoever owns it, by path (what tests and benchmarks
/// compare between members).
pub fn snapshot(c: &Contents, loc: &LocationId) -> Result<Vec<Row>, IndexError> {
    let r = c.reader();
    let mut st = r.prepare(
        "SELECT rel, kind, size, mtime, cas FROM entries WHERE location = ?1 ORDER BY rel",
    )?;
    let rows = st.query_map(params![loc], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, Option<Vec<u8>>>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (rel, kind, size, mtime, cas) = row?;
        let cas = match cas {
            Some(c) => Some(id16(c)?),
            None => None,
        };
        out.push((
            bytes_path(&rel).to_string_lossy().into_owned(),
            kind as u8,
            size as u64,
            mtime,
            cas,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(from: i64, to: i64, changes: Vec<Change>) -> Batch {
        Batch {
            author: [1; 32],
            index: 5,
            from,
            to,
            context: vec![],
            changes,
        }
    }

    fn entry(seq: i64, rel: &[u8]) -> Change {
        Change::Entry(EntryRecord {
            id: [seq as u8; 16],
            location: [9; 16],
            rel: rel.to_vec(),
            kind: 0,
            size: 1,
            mtime: 0,
            cas: None,
            error: None,
            seq,
        })
    }

    fn held(index: i64, seq: i64) -> Option<Mark> {
        Some(Mark {
            author: [1; 32],
            index,
            seq,
        })
    }

    #[test]
    fn paths_that_escape_are_refused() {
        for bad in [
            &b""[..],
            b"/a",
            b"a/",
            b"a//b",
            b"..",
            b"a/../b",
            b"./a",
            b"a\0b",
            b"a\\b",
        ] {
            assert!(
                check_rel(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(check_rel(&vec![b'x'; MAX_COMPONENT + 1]).is_err());
        assert!(check_rel(
            &b"a/"
                .repeat(MAX_DEPTH)
                .into_iter()
                .chain(*b"a")
                .collect::<Vec<_>>()
        )
        .is_err());
        assert!(check_rel(b"a/b c/\xff.txt").is_ok());
        assert!(check_rel(&vec![b'x'; MAX_COMPONENT]).is_ok());
    }

    #[test]
    fn a_batch_must_follow_what_is_held() {
        let now = 1_000;
        let b = batch(10, 20, vec![entry(11, b"a"), entry(20, b"b")]);
        assert!(check_batch(&b, held(5, 10), now).is_ok());
        assert!(matches!(
            check_batch(&b, held(5, 9), now),
            Err(ReplicaError::Gap { from: 10, held: 9 })
        ));
        assert!(matches!(
            check_batch(&b, None, now),
            Err(ReplicaError::Gap { .. })
        ));
        // A newer sequence space starts at 0; an older one is refused.
        assert!(check_batch(&batch(0, 20, vec![]), held(4, 30), now).is_ok());
        assert!(matches!(
            check_batch(&batch(0, 20, vec![]), held(6, 30), now),
            Err(ReplicaError::StaleIndex { .. })
        ));
    }

    #[test]
    fn order_bounds_and_clocks_are_checked() {
        let now = 1_000;
        let h = held(5, 10);
        let out_of_order = batch(10, 20, vec![entry(12, b"a"), entry(11, b"b")]);
        assert!(check_batch(&out_of_order, h, now).is_err());
        let beyond = batch(10, 20, vec![entry(21, b"a")]);
        assert!(check_batch(&beyond, h, now).is_err());
        let no_progress = batch(10, 10, vec![]);
        assert!(check_batch(&no_progress, h, now).is_err());
        let huge_seq = batch(10, i64::MAX, vec![]);
        assert!(check_batch(&huge_seq, h, now).is_err());
        let mut future = batch(0, 5, vec![]);
        future.index = now + MAX_CLOCK_AHEAD_MS + 1;
        assert!(check_batch(&future, None, now).is_err());
        let many = batch(
            10,
            10 + MAX_CHANGES as i64 + 1,
            (11..12 + MAX_CHANGES as i64)
                .map(|s| entry(s, b"a"))
                .collect(),
        );
        assert!(check_batch(&many, h, now).is_err());
        let bad_path = batch(10, 20, vec![entry(11, b"../etc/passwd")]);
        assert!(check_batch(&bad_path, h, now).is_err());
    }
}
