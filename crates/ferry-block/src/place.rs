//! Where received files end up, and how they get there without ever replacing anything.
//!
//! - [`layout`] maps every manifest path to a safe local path under the destination, once, at
//!   accept time (the result is persisted, so a resumed transfer lands in the same places).
//!   Top-level names that already exist get "name (1).ext"; names this OS cannot hold are
//!   mapped or shortened, and every change is reported for the user.
//! - [`place`] moves a verified temp file to its final path with a no-clobber rename (a link
//!   where the filesystem has no such rename): if the name was taken meanwhile, the next free "name (n)" is used. An existing file is never replaced.
//! - [`sync_batch`] makes a batch of small files durable with one `syncfs` (Linux) instead of
//!   one fsync each, before they are placed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::manifest::Manifest;
use crate::names::{self, NameError, Os};

/// A name the receiver had to change.
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Renamed {
    pub id: u32,
    /// The path as the sender named it.
    pub original: String,
    /// The path it has here, relative to the destination.
    pub local: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `paths[id]`: where entry `id` goes, relative to the destination.
    pub paths: Vec<PathBuf>,
    pub renamed: Vec<Renamed>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("entry {id}: {source}")]
    Name { id: usize, source: NameError },
    #[error("no free name for '{0}'")]
    NoFreeName(String),
}

/// Chooses the local path of every entry. `exists` says whether a top-level name is taken in
/// the destination (a closure, so tests need no disk).
pub fn layout(
    manifest: &Manifest,
    os: Os,
    exists: impl Fn(&str) -> bool,
) -> Result<Layout, LayoutError> {
    let mut paths = Vec::with_capacity(manifest.entries.len());
    let mut renamed = vec![];
    // Original directory path -> its local path, so children follow their parent's new name.
    let mut dirs: HashMap<&[String], PathBuf> = HashMap::new();
    // Names already used in each local folder by this transfer.
    let mut used: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    for (id, e) in manifest.entries.iter().enumerate() {
        let (safe, notes) = names::safe_relative_path(&e.path, os)
            .map_err(|source| LayoutError::Name { id, source })?;
        let parent = match e.path.len() {
            0 | 1 => PathBuf::new(),
            n => dirs.get(&e.path[..n - 1]).cloned().unwrap_or_default(),
        };
        let wanted = safe.last().cloned().unwrap_or_default();
        let siblings = used.entry(parent.clone()).or_default();
        let top = parent.as_os_str().is_empty();
        let name = if siblings.contains(&wanted) || (top && exists(&wanted)) {
            names::unique_name(&wanted, os, |n| siblings.contains(n) || (top && exists(n)))
                .ok_or_else(|| LayoutError::NoFreeName(wanted.clone()))?
        } else {
            wanted.clone()
        };
        siblings.insert(name.clone());
        let local = parent.join(&name);
        let mut reasons: Vec<String> = notes
            .iter()
            .filter(|n| n.index + 1 == e.path.len())
            .map(|n| n.describe())
            .collect();
        if name != wanted {
            reasons.push("a file or folder with that name already exists".into());
        }
        if !reasons.is_empty() {
            renamed.push(Renamed {
                id: id as u32,
                original: e.path.join("/"),
                local: local.to_string_lossy().replace('\\', "/"),
                reason: reasons.join("; "),
            });
        }
        if e.kind == crate::manifest::EntryKind::Dir {
            dirs.insert(&e.path, local.clone());
        }
        paths.push(local);
    }
    Ok(Layout { paths, renamed })
}

/// Whether two paths name the same file (after a crash between linking and unlinking).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

/// Moves `temp` to `wanted` without replacing anything; returns where it went.
pub fn place(temp: &Path, wanted: &Path, os: Os) -> std::io::Result<PathBuf> {
    if let Some(parent) = wanted.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut target = wanted.to_path_buf();
    for _ in 0..10_000 {
        // One syscall where the OS has it: a rename that fails if the name exists.
        match rename_noreplace(temp, &target) {
            Some(Ok(())) => return Ok(target),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                target = next_free(wanted, os)?;
                continue;
            }
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Err(e),
            // Not supported by this filesystem: the link below.
            Some(Err(_)) | None => {}
        }
        // A hard link fails if the name exists: an atomic "create, never replace".
        match std::fs::hard_link(temp, &target) {
            Ok(()) => {
                std::fs::remove_file(temp)?;
                return Ok(target);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                target = next_free(wanted, os)?;
            }
            // Filesystems without hard links (FAT, some network mounts): claim the name with an
            // exclusive create first, so the rename can only ever replace our own placeholder.
            Err(_) => match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
            {
                Ok(_) => {
                    std::fs::rename(temp, &target)?;
                    return Ok(target);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    target = next_free(wanted, os)?;
                }
                Err(e) => return Err(e),
            },
        }
    }
    Err(std::io::Error::other("no free name"))
}

/// `renameat2(RENAME_NOREPLACE)`: `None` where this build has no such call.
fn rename_noreplace(from: &Path, to: &Path) -> Option<std::io::Result<()>> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let (Ok(a), Ok(b)) = (
            CString::new(from.as_os_str().as_bytes()),
            CString::new(to.as_os_str().as_bytes()),
        ) else {
            return None;
        };
        // SAFETY: two NUL-terminated paths that outlive the call; AT_FDCWD resolves them as
        // relative to the working directory like every other path here.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        Some(if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = (from, to);
        None
    }
}

/// The first "name (n).ext" beside `wanted` that does not exist (yet).
fn next_free(wanted: &Path, os: Os) -> std::io::Result<PathBuf> {
    let dir = wanted.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = wanted
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let next = names::unique_name(&name, os, |n| dir.join(n).exists())
        .ok_or_else(|| std::io::Error::other("no free name"))?;
    Ok(dir.join(next))
}

/// Makes every file in `files` durable: one `syncfs` of the filesystem holding `dir` on Linux,
/// an fsync per file elsewhere.
pub fn sync_batch(dir: &Path, files: &[PathBuf]) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let d = std::fs::File::open(dir)?;
        // SAFETY: syncfs on a descriptor we own.
        if unsafe { libc::syncfs(d.as_raw_fd()) } == 0 {
            return Ok(());
        }
    }
    let _ = dir;
    for f in files {
        std::fs::OpenOptions::new()
            .write(true)
            .open(f)?
            .sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Entry, EntryKind};

    fn entry(path: &[&str], kind: EntryKind) -> Entry {
        Entry {
            path: path.iter().map(|s| s.to_string()).collect(),
            kind,
            size: 0,
            mode: 0o644,
            mtime: 0,
        }
    }

    #[test]
    fn existing_top_level_names_get_numbered_and_children_follow() {
        let m = Manifest {
            entries: vec![
                entry(&["photos"], EntryKind::Dir),
                entry(&["photos", "a.jpg"], EntryKind::File),
                entry(&["notes.txt"], EntryKind::File),
                entry(&["new.txt"], EntryKind::File),
            ],
        };
        let l = layout(&m, Os::Unix, |n| n == "photos" || n == "notes.txt").unwrap();
        let p: Vec<_> = l
            .paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            p,
            ["photos (1)", "photos (1)/a.jpg", "notes (1).txt", "new.txt"]
        );
        assert_eq!(l.renamed.len(), 2);
        assert_eq!(l.renamed[1].original, "notes.txt");
    }

    #[test]
    fn windows_mapping_collisions_are_resolved() {
        let m = Manifest {
            entries: vec![
                entry(&["a:b"], EntryKind::File),
                entry(&["a_b"], EntryKind::File),
            ],
        };
        let l = layout(&m, Os::Windows, |_| false).unwrap();
        assert_eq!(l.paths[0], PathBuf::from("a_b"));
        assert_ne!(l.paths[1], l.paths[0]);
        assert_eq!(l.renamed.len(), 2);
    }

    #[test]
    fn place_never_replaces() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("x.txt");
        std::fs::write(&dest, b"precious").unwrap();
        let temp = t.path().join(".part");
        std::fs::write(&temp, b"new").unwrap();
        let got = place(&temp, &dest, Os::Unix).unwrap();
        assert_eq!(got, t.path().join("x (1).txt"));
        assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
        assert_eq!(std::fs::read(&got).unwrap(), b"new");
        assert!(!temp.exists());
        let deep = place(
            &{
                std::fs::write(&temp, b"deep").unwrap();
                temp.clone()
            },
            &t.path().join("a/b/c.txt"),
            Os::Unix,
        )
        .unwrap();
        assert_eq!(std::fs::read(deep).unwrap(), b"deep");
    }
}
