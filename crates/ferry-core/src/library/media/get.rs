//! Downloads ([`Libraries::download`]) of a member's file or folder (`ferry get`, the app's *Save to this device*): no
//! prompt (members are trusted with each other's libraries), bytes by range over the media
//! protocol, verified end to end, resumable.
//!
//! - Each file is written to a hidden `.NAME.ENTRY.ferry-part` beside its final place and
//!   continues from that file's length when the download runs again (after a kill, a cut).
//! - Once complete it is verified against the BLAKE3 hash of the whole file: the content id
//!   when that is one (files up to 32 MiB), else the hash the serving member reads from its
//!   disk. A mismatch deletes the part file and fails; nothing half-received is ever placed.
//! - It is then moved to its name without replacing anything (`name (1).ext` if taken); a
//!   file already there with the same bytes counts as done.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_block::names::{sanitize_component, Os};
use ferry_index::cas::{self, FULL_LIMIT};
use ferry_index::db::EntryId;
use ferry_index::remote::Located;
use ferry_index::{EntryInfo, EntryKind};
use ferry_p2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::wire::Source;
use super::{blocking, fetch, MediaError};
use crate::library::wire::LibraryId;
use crate::library::Libraries;

/// Bytes asked for per request.
const REQUEST: u64 = 16 * 1024 * 1024;
/// Progress reports: at most this often.
const EVERY: Duration = Duration::from_millis(250);

/// Where a download stands.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GetProgress {
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub bytes: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub total_bytes: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub files: u64,
    #[cfg_attr(feature = "specta", specta(type = specta_typescript::Number))]
    pub total_files: u64,
    /// The file being fetched (its path in the location).
    pub current: String,
}

/// What a finished download did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetReport {
    /// The file or folder it made (or completed).
    pub path: PathBuf,
    pub files: u64,
    pub bytes: u64,
    /// Bytes that were already here from an earlier, interrupted run.
    pub resumed: u64,
}

/// The part file of `entry` beside `target`.
fn part_path(target: &Path, entry: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let short = entry.get(..12).unwrap_or(entry);
    target.with_file_name(format!(".{name}.{short}.ferry-part"))
}

/// A location-relative path made safe for this OS, component by component.
fn local_rel(rel: &str) -> PathBuf {
    rel.split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .map(|c| sanitize_component(c, Os::current()).0)
        .collect()
}

impl Libraries {
    /// Downloads entry `entry` of `lib` (a file, or a folder and everything under it) into
    /// folder `dest`, verified; `progress` hears how far it is, at most 4 times a second.
    pub async fn download(
        &self,
        lib: &LibraryId,
        entry: &str,
        dest: &Path,
        mut progress: impl FnMut(&GetProgress) + Send,
    ) -> Result<GetReport, MediaError> {
        let c = self
            .shared
            .contents
            .of(lib)
            .map_err(|e| MediaError::Local(e.to_string()))?;
        let (top, root, files) = self.plan(lib, entry, dest).await?;
        tokio::fs::create_dir_all(if top.info.kind == EntryKind::Dir {
            &root
        } else {
            dest
        })
        .await
        .map_err(|e| MediaError::Local(format!("{}: {e}", dest.display())))?;
        let mut p = GetProgress {
            total_bytes: files.iter().map(|(e, _)| e.size).sum(),
            total_files: files.len() as u64,
            ..GetProgress::default()
        };
        let mut report = GetReport {
            path: root.clone(),
            files: 0,
            bytes: 0,
            resumed: 0,
        };
        let mut last = Instant::now() - EVERY;
        for (info, target) in files {
            p.current = info.path.clone();
            let c2 = c.clone();
            let eid = ferry_index::db::parse_id(&info.id).unwrap_or_default();
            let (located, holders) = blocking(move || c2.sources(&eid)).await?;
            let base = p.bytes;
            let placed = self
                .get_file(lib, &located, &holders, &target, &mut |done| {
                    p.bytes = base + done;
                    if last.elapsed() >= EVERY {
                        last = Instant::now();
                        progress(&p);
                    }
                })
                .await?;
            if top.info.kind == EntryKind::File {
                report.path = placed.0;
            }
            report.resumed += placed.1;
            p.bytes = base + info.size;
            p.files += 1;
            report.files += 1;
            report.bytes += info.size;
        }
        progress(&p);
        Ok(report)
    }

    /// What downloading `entry` into `dest` writes: the entry, the file or folder it makes,
    /// and every file under it with its target.
    pub(crate) async fn plan(
        &self,
        lib: &LibraryId,
        entry: &str,
        dest: &Path,
    ) -> Result<(Located, PathBuf, Vec<(EntryInfo, PathBuf)>), MediaError> {
        let c = self
            .shared
            .contents
            .of(lib)
            .map_err(|e| MediaError::Local(e.to_string()))?;
        let id: EntryId = ferry_index::db::parse_id(entry)
            .ok_or_else(|| MediaError::Local(format!("bad entry id {entry}")))?;
        let c2 = c.clone();
        let top = blocking(move || c2.locate(&id)).await?;
        let root = dest.join(local_rel(&top.info.name));
        let files: Vec<(EntryInfo, PathBuf)> = match top.info.kind {
            EntryKind::File => vec![(top.info.clone(), root.clone())],
            EntryKind::Dir => {
                let (c2, loc, rel) = (c.clone(), top.location, top.info.path.clone());
                let all = blocking(move || subtree(&c2, &loc, &rel)).await?;
                let base = top.info.path.len() + 1;
                all.into_iter()
                    .map(|e| {
                        let below = local_rel(e.path.get(base..).unwrap_or_default());
                        (e, root.join(below))
                    })
                    .collect()
            }
            _ => return Err(MediaError::Refused(super::wire::Refusal::NotFound)),
        };
        Ok((top, root, files))
    }

    /// Deletes the part files a download of `entry` into `dest` left (a cancelled one).
    pub(crate) async fn discard_parts(&self, lib: &LibraryId, entry: &str, dest: &Path) {
        if let Ok((_, _, files)) = self.plan(lib, entry, dest).await {
            for (info, target) in files {
                let _ = tokio::fs::remove_file(part_path(&target, &info.id)).await;
            }
        }
    }

    /// One file to `target`; returns where it went and how many bytes were resumed.
    async fn get_file(
        &self,
        lib: &LibraryId,
        l: &Located,
        holders: &[(EntryId, [u8; 32])],
        target: &Path,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(PathBuf, u64), MediaError> {
        let shared = &self.shared;
        let (peer, entry): (Option<PeerId>, EntryId) = match shared.route(l, holders) {
            Source::Here => (None, EntryId::default()),
            Source::Member(peer, entry) => (Some(peer), entry),
            Source::Offline(owner) => {
                return Err(MediaError::Offline(shared.member_name(lib, &owner)));
            }
        };
        let fail = |e: std::io::Error| MediaError::Local(format!("{}: {e}", target.display()));
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(fail)?;
        }
        let Some(peer) = peer else {
            // On this node already: a local copy, verified like any other.
            let from = l.local_path.clone().unwrap_or_default();
            let part = part_path(target, &l.info.id);
            tokio::fs::copy(&from, &part).await.map_err(fail)?;
            return Ok((self.finish_file(lib, l, None, &part, target).await?, 0));
        };
        let part = part_path(target, &l.info.id);
        // Written by position, not appended: a write of a run that was paused and is still
        // landing puts the same bytes at the same place.
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&part)
            .await
            .map_err(fail)?;
        let size = l.info.size;
        let mut resumed = file.metadata().await.map_err(fail)?.len();
        if resumed > size {
            // Not a part of this file: start over.
            file.set_len(0).await.map_err(fail)?;
            resumed = 0;
        }
        file.seek(std::io::SeekFrom::Start(resumed))
            .await
            .map_err(fail)?;
        let mut at = resumed;
        let mut buf = vec![0u8; 256 * 1024];
        progress(at);
        while at < size {
            let want = REQUEST.min(size - at);
            let mut r = fetch::range(shared, &peer, lib, entry, at, want).await?;
            // The member's file is not the one indexed (it changed since): the bytes would not
            // verify; its new row comes with sync, and the download can run again then.
            if r.size != size {
                return Err(MediaError::Refused(super::wire::Refusal::Changed));
            }
            let mut left = r.len;
            while left > 0 {
                let n = r.read(&mut buf, left).await?;
                file.write_all(&buf[..n]).await.map_err(fail)?;
                left -= n as u64;
                at += n as u64;
                progress(at);
            }
        }
        file.flush().await.map_err(fail)?;
        file.sync_all().await.map_err(fail)?;
        drop(file);
        let placed = self
            .finish_file(lib, l, Some((peer, entry)), &part, target)
            .await?;
        Ok((placed, resumed))
    }

    /// Verifies a complete part file, then places it (or drops it if the same bytes are
    /// already at `target`).
    async fn finish_file(
        &self,
        lib: &LibraryId,
        l: &Located,
        from: Option<(PeerId, EntryId)>,
        part: &Path,
        target: &Path,
    ) -> Result<PathBuf, MediaError> {
        let hash_of = |p: PathBuf| blocking(move || cas::full_hash(&mut std::fs::File::open(&p)?));
        let (len, got) = hash_of(part.to_path_buf()).await?;
        let cas = l.info.cas.as_deref().and_then(cas::from_hex);
        let expected = match (cas, from) {
            (Some(c), _) if len <= FULL_LIMIT && len == l.info.size => c,
            (_, Some((peer, entry))) => {
                let (size, hash) = fetch::hash(&self.shared, &peer, lib, entry).await?;
                if size != len {
                    [0; 32]
                } else {
                    hash
                }
            }
            (_, None) => got,
        };
        if got != expected {
            let _ = tokio::fs::remove_file(part).await;
            return Err(MediaError::Bad(format!(
                "{} did not verify (its bytes changed on its device, or were damaged): removed, nothing placed",
                l.info.path
            )));
        }
        if let Ok((_, there)) = hash_of(target.to_path_buf()).await {
            if there == got {
                let _ = tokio::fs::remove_file(part).await;
                return Ok(target.to_path_buf());
            }
        }
        let (part, target) = (part.to_path_buf(), target.to_path_buf());
        blocking(move || ferry_block::place::place(&part, &target, Os::current())).await
    }
}

/// Every file under folder `rel` of a location, depth first.
fn subtree(
    c: &ferry_index::Contents,
    loc: &ferry_index::LocationId,
    rel: &str,
) -> Result<Vec<EntryInfo>, ferry_index::IndexError> {
    let mut out = Vec::new();
    let mut folders = vec![rel.to_owned()];
    while let Some(dir) = folders.pop() {
        for e in c.list(loc, &dir)? {
            match e.kind {
                EntryKind::Dir => folders.push(e.path),
                EntryKind::File => out.push(e),
                _ => {}
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_files_are_hidden_beside_their_target() {
        let p = part_path(Path::new("/d/a b.jpg"), "0123456789abcdef0123");
        assert_eq!(p, Path::new("/d/.a b.jpg.0123456789ab.ferry-part"));
    }

    #[test]
    fn member_paths_cannot_leave_the_destination() {
        assert_eq!(local_rel("a/../../b/./c"), PathBuf::from("a/b/c"));
        assert_eq!(local_rel("/x//y"), PathBuf::from("x/y"));
    }
}
