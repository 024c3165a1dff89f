//! What remote media needs from a library's rows: where an entry's bytes are (which node,
//! whether its location is online there), which other members hold the same content, and which
//! of the other members' pictures still lack a thumbnail here (preview-media sync).
//!
//! Every answer is one indexed query: `ferry://` asks once per request, never per chunk.

use std::path::PathBuf;

use rusqlite::{params, OptionalExtension};

use crate::cas::{Cas, FULL_LIMIT};
use crate::db::{bytes_path, id16_of, info_of, Contents, EntryId, EntryInfo, IndexError};
use crate::replica::Author;
use crate::thumb::EXTENSIONS;
use crate::LocationId;

/// One entry and where its bytes are.
#[derive(Debug, Clone)]
pub struct Located {
    pub info: EntryInfo,
    pub location: LocationId,
    /// The node whose disk holds it.
    pub owner: Author,
    /// Its location's last known state (the owner's record, synced).
    pub location_online: bool,
    /// The absolute path, when it is on this node's disk.
    pub local_path: Option<PathBuf>,
}

/// `e.name LIKE '%.jpg' OR …`: the pictures [`crate::thumb::is_thumbnailable`] accepts (`LIKE`
/// ignores ASCII case, as that check does).
fn picture_names() -> String {
    let any: Vec<String> = EXTENSIONS
        .iter()
        .map(|x| format!("e.name LIKE '%.{x}'"))
        .collect();
    format!("({})", any.join(" OR "))
}

impl Contents {
    /// Any entry of the library, this node's or a replica.
    pub fn locate(&self, id: &EntryId) -> Result<Located, IndexError> {
        let r = self.reader();
        let mut st = r.prepare_cached(
            "SELECT e.id, e.rel, e.kind, e.size, e.mtime, e.cas, e.error, o.thumb, e.location,
                    l.path, l.node, l.online
             FROM entries e JOIN locations l ON l.id = e.location
             LEFT JOIN objects o ON o.cas = e.cas WHERE e.id = ?1",
        )?;
        let mut q = st.query(params![id])?;
        let row = q
            .next()?
            .ok_or_else(|| IndexError::NotFound("entry".into()))?;
        let location: LocationId = id16_of(row.get(8)?)?;
        let owner: Author = id16_of(row.get(10)?)?;
        let local_path = (owner == self.node()).then(|| {
            bytes_path(&row.get::<_, Vec<u8>>(9).unwrap_or_default())
                .join(bytes_path(&row.get::<_, Vec<u8>>(1).unwrap_or_default()))
        });
        Ok(Located {
            info: info_of(&location, row)?,
            location,
            owner,
            location_online: row.get(11)?,
            local_path,
        })
    }

    /// An entry and, when its bytes are not on this node, the other members holding the same
    /// content ([`Self::holders`]): everything routing needs, in one read.
    pub fn sources(&self, id: &EntryId) -> Result<(Located, Vec<(EntryId, Author)>), IndexError> {
        let l = self.locate(id)?;
        let holders = match (&l.info.cas, &l.local_path) {
            (Some(h), None) => crate::cas::from_hex(h).map_or(Ok(vec![]), |h| self.holders(&h))?,
            _ => vec![],
        };
        Ok((l, holders))
    }

    /// Files of other nodes with content `cas` in locations their owners report online, one per
    /// owner (a second source for bytes whose owner is away). Only for content ids that are a
    /// full hash (files up to [`FULL_LIMIT`]): a sampled id does not prove two files equal.
    pub fn holders(&self, cas: &Cas) -> Result<Vec<(EntryId, Author)>, IndexError> {
        let r = self.reader();
        let mut st = r.prepare_cached(
            "SELECT min(e.id), l.node FROM entries e JOIN locations l ON l.id = e.location
             WHERE e.cas = ?1 AND e.kind = 0 AND e.size <= ?3 AND l.online = 1 AND l.node != ?2
             GROUP BY l.node",
        )?;
        let rows = st.query_map(params![cas, self.node(), FULL_LIMIT as i64], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, node) = row?;
            out.push((id16_of(id)?, id16_of(node)?));
        }
        Ok(out)
    }

    /// Whether any entry of the library (this node's or a replica) has content `cas`: what
    /// decides that its thumbnail may be served to or fetched for this library.
    pub fn holds_content(&self, cas: &Cas) -> Result<bool, IndexError> {
        Ok(self
            .reader()
            .prepare_cached("SELECT 1 FROM entries WHERE cas = ?1 LIMIT 1")?
            .query_row(params![cas], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Other members' pictures with a content id whose thumbnail this node has not stored yet,
    /// in content-id order after `after` (a page at a time, at most `limit`), each with the
    /// node that owns a copy.
    pub fn previews_wanted(
        &self,
        after: Option<&Cas>,
        limit: usize,
    ) -> Result<Vec<(Cas, Author)>, IndexError> {
        let r = self.reader();
        let sql = format!(
            "SELECT e.cas, min(l.node) FROM entries e JOIN locations l ON l.id = e.location
             LEFT JOIN objects o ON o.cas = e.cas
             WHERE l.node != ?1 AND e.kind = 0 AND e.cas > ?3
               AND (o.thumb IS NULL OR o.thumb NOT IN (1, 4)) AND {}
               AND NOT EXISTS (SELECT 1 FROM preview_off p WHERE p.location = e.location)
             GROUP BY e.cas ORDER BY e.cas LIMIT ?2",
            picture_names()
        );
        let mut st = r.prepare_cached(&sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after: &[u8] = after.map_or(&[], |c| c.as_slice());
        let rows = st.query_map(params![self.node(), limit, after], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (cas, node) = row?;
            out.push((id16_of(cas)?, id16_of(node)?));
        }
        Ok(out)
    }

    /// Whether a location of a node other than `asker` holds content `cas`: what a member may
    /// be sent a thumbnail for. Its own rows do not count, or a member could add any content id
    /// to its own location and learn from the answer whether this node has that picture in
    /// any of its libraries (the thumbnail store is shared by all of them).
    pub fn holds_content_for(&self, cas: &Cas, asker: &Author) -> Result<bool, IndexError> {
        Ok(self
            .reader()
            .prepare_cached(
                "SELECT 1 FROM entries e JOIN locations l ON l.id = e.location
                 WHERE e.cas = ?1 AND l.node != ?2 LIMIT 1",
            )?
            .query_row(params![cas, asker], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Whether members' location `loc` has its thumbnails copied here by preview sync.
    pub fn set_previews(&self, loc: &LocationId, on: bool) -> Result<(), IndexError> {
        let w = self.writer();
        if on {
            w.execute("DELETE FROM preview_off WHERE location = ?1", params![loc])?;
        } else {
            w.execute(
                "INSERT OR IGNORE INTO preview_off (location) VALUES (?1)",
                params![loc],
            )?;
        }
        Ok(())
    }

    /// Whether this node has a file of content `cas` itself (so it makes that thumbnail, and
    /// never evicts it).
    pub fn is_own_content(&self, cas: &Cas) -> Result<bool, IndexError> {
        Ok(self
            .reader()
            .prepare_cached(
                "SELECT 1 FROM entries e JOIN locations l ON l.id = e.location
                 WHERE e.cas = ?1 AND l.node = ?2 LIMIT 1",
            )?
            .query_row(params![cas, self.node()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Records that members' thumbnails of `cas` were evicted from the store to keep it under
    /// its cap: preview sync does not copy them again (a grid still fetches one on demand).
    pub fn mark_evicted(&self, cas: &[Cas]) -> Result<(), IndexError> {
        let mut w = self.writer();
        let tx = w.transaction()?;
        {
            let mut st =
                tx.prepare_cached("UPDATE objects SET thumb = 4 WHERE cas = ?1 AND thumb = 1")?;
            for c in cas {
                st.execute(params![c])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records that the thumbnails of `cas` are stored here (fetched from a member), so
    /// listings show them and preview sync does not ask again.
    pub fn mark_previews(&self, cas: &[Cas]) -> Result<(), IndexError> {
        let mut w = self.writer();
        let tx = w.transaction()?;
        {
            // An object's size is its content's (a file's), as for this node's own.
            let mut st = tx.prepare_cached(
                "INSERT INTO objects (cas, size, first_seen, thumb)
                 VALUES (?1, COALESCE((SELECT size FROM entries WHERE cas = ?1 LIMIT 1), 0), ?2, 1)
                 ON CONFLICT (cas) DO UPDATE SET thumb = 1, thumb_error = NULL",
            )?;
            let now = crate::db::now_ms();
            for c in cas {
                st.execute(params![c, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::{Batch, Change, EntryRecord, LocationRecord};
    use tempfile::TempDir;

    const ME: [u8; 32] = [1; 32];
    const THEM: [u8; 32] = [2; 32];

    fn open(dir: &TempDir) -> Contents {
        let path = dir.path().join("lib.db");
        rusqlite::Connection::open(&path).unwrap();
        Contents::open(&path, ME).unwrap()
    }

    fn entry(id: u8, name: &str, cas: Option<[u8; 32]>, seq: i64) -> Change {
        Change::Entry(EntryRecord {
            id: [id; 16],
            location: [9; 16],
            rel: name.as_bytes().to_vec(),
            kind: 0,
            size: 10,
            mtime: 1,
            cas,
            error: None,
            seq,
        })
    }

    /// A replica of THEM's location [9; 16] with `changes` after its record.
    fn replica(c: &Contents, online: bool, changes: Vec<Change>) {
        let mut all = vec![Change::Location(LocationRecord {
            id: [9; 16],
            name: "photos".into(),
            path: b"/theirs".to_vec(),
            added: 1,
            state: "done".into(),
            online,
            last_scan: None,
            error: None,
            seq: 1,
        })];
        all.extend(changes);
        let to = all.iter().map(Change::seq).max().unwrap();
        c.apply_batch(&Batch {
            author: THEM,
            index: 1,
            from: 0,
            to,
            context: vec![],
            changes: all,
        })
        .unwrap();
    }

    #[test]
    fn locate_finds_replicas_and_says_whose() {
        let dir = TempDir::new().unwrap();
        let c = open(&dir);
        replica(&c, true, vec![entry(1, "a.jpg", Some([5; 32]), 2)]);
        let l = c.locate(&[1; 16]).unwrap();
        assert_eq!(l.owner, THEM);
        assert!(l.local_path.is_none() && l.location_online);
        assert_eq!(l.info.name, "a.jpg");
        assert!(matches!(c.locate(&[7; 16]), Err(IndexError::NotFound(_))));
    }

    #[test]
    fn holders_are_online_copies_of_other_nodes() {
        let dir = TempDir::new().unwrap();
        let c = open(&dir);
        replica(&c, true, vec![entry(1, "a.bin", Some([5; 32]), 2)]);
        assert_eq!(c.holders(&[5; 32]).unwrap(), vec![([1; 16], THEM)]);
        // A large file's sampled id proves nothing: no stand-in for it.
        let mut big = entry(2, "big.bin", Some([8; 32]), 3);
        if let Change::Entry(e) = &mut big {
            e.size = FULL_LIMIT + 1;
        }
        let dir2 = TempDir::new().unwrap();
        let c2 = open(&dir2);
        replica(&c2, true, vec![big]);
        assert!(c2.holders(&[8; 32]).unwrap().is_empty());
        assert!(c.holders(&[6; 32]).unwrap().is_empty());
        assert!(c.holds_content(&[5; 32]).unwrap());
        assert!(c.holds_content_for(&[5; 32], &ME).unwrap());
        assert!(
            !c.holds_content_for(&[5; 32], &THEM).unwrap(),
            "its own rows do not count"
        );
        assert!(!c.holds_content(&[6; 32]).unwrap());

        let dir = TempDir::new().unwrap();
        let c = open(&dir);
        replica(&c, false, vec![entry(1, "a.bin", Some([5; 32]), 2)]);
        assert!(c.holders(&[5; 32]).unwrap().is_empty(), "location offline");
    }

    #[test]
    fn previews_wanted_are_pictures_without_a_stored_thumbnail() {
        let dir = TempDir::new().unwrap();
        let c = open(&dir);
        replica(
            &c,
            true,
            vec![
                entry(1, "a.JPG", Some([5; 32]), 2),
                entry(2, "b.txt", Some([6; 32]), 3),
                entry(3, "c.png", None, 4),
                entry(4, "d.webp", Some([7; 32]), 5),
            ],
        );
        let mut wanted = c.previews_wanted(None, 10).unwrap();
        wanted.sort();
        assert_eq!(wanted, vec![([5; 32], THEM), ([7; 32], THEM)]);
        assert_eq!(
            c.previews_wanted(Some(&[5; 32]), 10).unwrap(),
            vec![([7; 32], THEM)]
        );
        assert_eq!(c.previews_wanted(None, 1).unwrap().len(), 1);
        // A location whose thumbnails this node does not want copied.
        assert!(c.location(&[9; 16]).unwrap().previews);
        c.set_previews(&[9; 16], false).unwrap();
        assert!(c.previews_wanted(None, 10).unwrap().is_empty());
        assert!(!c.location(&[9; 16]).unwrap().previews);
        c.set_previews(&[9; 16], true).unwrap();
        c.mark_previews(&[[5; 32]]).unwrap();
        assert_eq!(c.previews_wanted(None, 10).unwrap(), vec![([7; 32], THEM)]);
        // Evicted: not wanted again by preview sync; a grid still offers it.
        c.mark_evicted(&[[5; 32]]).unwrap();
        assert_eq!(c.previews_wanted(None, 10).unwrap(), vec![([7; 32], THEM)]);
        assert!(!c.is_own_content(&[5; 32]).unwrap());
        let page = c.page(&[9; 16], "", 0, 10).unwrap();
        let a = page.entries.iter().find(|e| e.name == "a.JPG").unwrap();
        assert!(a.thumb);
    }
}
