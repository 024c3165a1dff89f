//! The manifest: what a transfer contains, described once, up front.
//!
//! Entries are addressed by id (their index); block data never carries names. Paths travel as
//! validated components, never as joined strings, and the receiver maps them to safe local names
//! itself (see [`crate::names`]).

use std::cell::Cell;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::names::{self, NameError};

/// Most entries one transfer may hold.
pub const MAX_ENTRIES: usize = 250_000;
/// Largest single file (1 PiB): bigger claims are lies, not files.
pub const MAX_FILE_SIZE: u64 = 1 << 50;
/// Largest encoded manifest frame.
pub const MAX_MANIFEST_BYTES: usize = 48 << 20;
/// Most path components one manifest holds in all: 8 per entry at [`MAX_ENTRIES`], and up to
/// [`names::MAX_DEPTH`] for any one entry. Decoded, every component is a `String` of about 56
/// bytes however short it is, so without this a 48 MiB manifest of 250,000 entries, 64
/// one-letter components each, decoded into 870 MiB, every limit above respected.
pub const MAX_COMPONENTS: usize = 2_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File,
    Dir,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path, one component per element.
    #[serde(deserialize_with = "components")]
    pub path: Vec<String>,
    pub kind: EntryKind,
    /// Bytes (0 for directories).
    pub size: u64,
    /// Unix permission bits (0o777 mask); informational on other systems.
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Entry `i` has id `i`. Parents come before their children.
    #[serde(deserialize_with = "entries")]
    pub entries: Vec<Entry>,
}

thread_local! {
    /// How many more path components the manifest being decoded on this thread may hold.
    static COMPONENTS_LEFT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn entries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Entry>, D::Error> {
    // Decoding is synchronous and manifests do not nest: the budget is this call's alone.
    let outer = COMPONENTS_LEFT.replace(MAX_COMPONENTS);
    let entries = bounded_seq(d, MAX_ENTRIES);
    COMPONENTS_LEFT.set(outer);
    entries
}

fn components<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let left = COMPONENTS_LEFT.get();
    let path: Vec<String> = bounded_seq(d, names::MAX_DEPTH.min(left))?;
    COMPONENTS_LEFT.set(left - path.len());
    Ok(path)
}

/// A sequence of at most `max` items, refused as soon as it claims more. A peer's manifest is
/// decoded before [`Manifest::validate`] can look at it, and decoding is where the memory goes:
/// without this bound a 40 MB offer holding one path of 40 million empty components decoded
/// into about 1 GB of `String`s (and blocked its thread for seconds), and a million tiny entries
/// took 120 MB, all to be refused afterwards.
fn bounded_seq<'de, D, T>(d: D, max: usize) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T> {
        max: usize,
        item: std::marker::PhantomData<T>,
    }
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a sequence of at most {} items", self.max)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            use serde::de::Error;
            let claimed = seq.size_hint().unwrap_or(0);
            if claimed > self.max {
                return Err(A::Error::invalid_length(claimed, &self));
            }
            // Like serde's own: a claimed length reserves no more than about 1 MiB up front.
            let cap = (1 << 20) / std::mem::size_of::<T>().max(1);
            let mut v = Vec::with_capacity(claimed.min(cap));
            while let Some(item) = seq.next_element()? {
                if v.len() == self.max {
                    return Err(A::Error::invalid_length(self.max + 1, &self));
                }
                v.push(item);
            }
            Ok(v)
        }
    }
    d.deserialize_seq(Bounded {
        max,
        item: std::marker::PhantomData,
    })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the transfer is empty")]
    Empty,
    #[error("{count} entries exceed the limit of {MAX_ENTRIES}")]
    TooManyEntries { count: usize },
    #[error("{count} path components in all exceed the limit of {MAX_COMPONENTS}")]
    TooManyComponents { count: usize },
    #[error("entry {id}: {source}")]
    BadName { id: usize, source: NameError },
    #[error("entry {id}: size {size} exceeds the limit")]
    TooLarge { id: usize, size: u64 },
    #[error("entry {id}: a directory with a size")]
    DirWithSize { id: usize },
    #[error("entry {id}: the same path appears twice")]
    Duplicate { id: usize },
    #[error("entry {id}: its parent folder is not listed before it")]
    Orphan { id: usize },
}

impl Manifest {
    /// Checks everything a peer could lie about. A manifest that fails is refused whole.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.entries.is_empty() {
            return Err(ManifestError::Empty);
        }
        if self.entries.len() > MAX_ENTRIES {
            return Err(ManifestError::TooManyEntries {
                count: self.entries.len(),
            });
        }
        let components = self.entries.iter().map(|e| e.path.len()).sum();
        if components > MAX_COMPONENTS {
            return Err(ManifestError::TooManyComponents { count: components });
        }
        let mut seen = std::collections::HashSet::with_capacity(self.entries.len());
        let mut dirs = std::collections::HashSet::new();
        for (id, e) in self.entries.iter().enumerate() {
            names::validate_wire_path(&e.path)
                .map_err(|source| ManifestError::BadName { id, source })?;
            match e.kind {
                EntryKind::File if e.size > MAX_FILE_SIZE => {
                    return Err(ManifestError::TooLarge { id, size: e.size })
                }
                EntryKind::Dir if e.size != 0 => return Err(ManifestError::DirWithSize { id }),
                _ => {}
            }
            if !seen.insert(e.path.as_slice()) {
                return Err(ManifestError::Duplicate { id });
            }
            if e.path.len() > 1 && !dirs.contains(&e.path[..e.path.len() - 1]) {
                return Err(ManifestError::Orphan { id });
            }
            if e.kind == EntryKind::Dir {
                dirs.insert(e.path.as_slice());
            }
        }
        Ok(())
    }

    pub fn total_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| e.size)
            .fold(0u64, u64::saturating_add)
    }

    pub fn file_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .count()
    }

    /// Entry `id`'s path as people read it ("photos/a.jpg"); empty for an unknown id.
    pub fn display_path(&self, id: u32) -> String {
        self.entries
            .get(id as usize)
            .map(|e| e.path.join("/"))
            .unwrap_or_default()
    }

    /// Up to `n` files inside folders, by path ("photos/a.jpg"): what a prompt shows of a
    /// folder's contents, as it shows loose files by their names.
    pub fn first_nested_files(&self, n: usize) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File && e.path.len() > 1)
            .take(n)
            .map(|e| e.path.join("/"))
            .collect()
    }

    pub fn folder_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .count()
    }

    /// Up to `n` top-level names, for a prompt ("photos/, notes.txt, …").
    pub fn first_names(&self, n: usize) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.path.len() == 1)
            .take(n)
            .map(|e| match e.kind {
                EntryKind::Dir => format!("{}/", e.path[0]),
                EntryKind::File => e.path[0].clone(),
            })
            .collect()
    }
}

/// A manifest built from local paths, with the source of every entry.
#[derive(Debug, Default)]
pub struct Collected {
    pub manifest: Manifest,
    /// `sources[i]` is where entry `i` is read from.
    pub sources: Vec<PathBuf>,
    /// Symlinks and special files that were left out, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: has no file name to send it under")]
    NoName(PathBuf),
    #[error("{0}: its name is not valid UTF-8 and cannot be sent")]
    NotUtf8(PathBuf),
    #[error("two items would be sent as '{0}'")]
    Duplicate(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Walks files and folders (folders recursively, empty ones kept). Symlinks are not followed:
/// they are listed in `skipped`.
pub fn collect(roots: &[PathBuf]) -> Result<Collected, CollectError> {
    let mut out = Collected::default();
    for root in roots {
        let name = root
            .file_name()
            .ok_or_else(|| CollectError::NoName(root.clone()))?;
        let name = name
            .to_str()
            .ok_or_else(|| CollectError::NotUtf8(root.clone()))?
            .to_string();
        if out
            .manifest
            .entries
            .iter()
            .any(|e| e.path.len() == 1 && e.path[0] == name)
        {
            return Err(CollectError::Duplicate(name));
        }
        walk(root, vec![name], &mut out)?;
    }
    out.manifest.validate()?;
    Ok(out)
}

fn walk(path: &Path, rel: Vec<String>, out: &mut Collected) -> Result<(), CollectError> {
    let io = |source| CollectError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    #[cfg(unix)]
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
    #[cfg(not(unix))]
    let mode = if meta.permissions().readonly() {
        0o444
    } else {
        0o644
    };
    let ft = meta.file_type();
    if ft.is_file() {
        out.manifest.entries.push(Entry {
            path: rel,
            kind: EntryKind::File,
            size: meta.len(),
            mode,
            mtime,
        });
        out.sources.push(path.to_path_buf());
    } else if ft.is_dir() {
        out.manifest.entries.push(Entry {
            path: rel.clone(),
            kind: EntryKind::Dir,
            size: 0,
            mode,
            mtime,
        });
        out.sources.push(path.to_path_buf());
        let mut children: Vec<_> = std::fs::read_dir(path)
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let Some(name) = child.file_name().to_str().map(String::from) else {
                out.skipped
                    .push((child.path(), "name is not valid UTF-8".into()));
                continue;
            };
            let mut rel = rel.clone();
            rel.push(name);
            walk(&child.path(), rel, out)?;
        }
    } else if ft.is_symlink() {
        out.skipped
            .push((path.to_path_buf(), "symbolic link (not followed)".into()));
    } else {
        out.skipped
            .push((path.to_path_buf(), "not a regular file or folder".into()));
    }
    if out.manifest.entries.len() > MAX_ENTRIES {
        return Err(ManifestError::TooManyEntries {
            count: out.manifest.entries.len(),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &[&str], size: u64) -> Entry {
        Entry {
            path: path.iter().map(|s| s.to_string()).collect(),
            kind: EntryKind::File,
            size,
            mode: 0o644,
            mtime: 0,
        }
    }
    fn dir(path: &[&str]) -> Entry {
        Entry {
            kind: EntryKind::Dir,
            size: 0,
            ..file(path, 0)
        }
    }

    #[test]
    fn validation_refuses_lies() {
        let ok = Manifest {
            entries: vec![dir(&["a"]), file(&["a", "b"], 3)],
        };
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(Manifest::default().validate(), Err(ManifestError::Empty));
        let traversal = Manifest {
            entries: vec![file(&["..", "etc"], 1)],
        };
        assert!(matches!(
            traversal.validate(),
            Err(ManifestError::BadName { id: 0, .. })
        ));
        let huge = Manifest {
            entries: vec![file(&["x"], u64::MAX)],
        };
        assert!(matches!(
            huge.validate(),
            Err(ManifestError::TooLarge { .. })
        ));
        let orphan = Manifest {
            entries: vec![file(&["a", "b"], 1)],
        };
        assert_eq!(orphan.validate(), Err(ManifestError::Orphan { id: 0 }));
        let dup = Manifest {
            entries: vec![file(&["x"], 1), file(&["x"], 2)],
        };
        assert_eq!(dup.validate(), Err(ManifestError::Duplicate { id: 1 }));
        let sized_dir = Manifest {
            entries: vec![Entry {
                size: 5,
                ..dir(&["d"])
            }],
        };
        assert_eq!(
            sized_dir.validate(),
            Err(ManifestError::DirWithSize { id: 0 })
        );
        let nul = Manifest {
            entries: vec![file(&["a\0b"], 1)],
        };
        assert!(nul.validate().is_err());
        let long = Manifest {
            entries: vec![file(&[&"x".repeat(10_000)], 1)],
        };
        assert!(long.validate().is_err());
    }

    #[test]
    fn collects_trees_with_empty_dirs_and_skips_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("photos");
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::create_dir_all(root.join("ünïcødé 日本")).unwrap();
        std::fs::write(root.join("ünïcødé 日本/a.txt"), b"hello").unwrap();
        std::fs::write(root.join("zero"), b"").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let c = collect(&[root]).unwrap();
        let paths: Vec<String> = c
            .manifest
            .entries
            .iter()
            .map(|e| e.path.join("/"))
            .collect();
        assert_eq!(
            paths,
            [
                "photos",
                "photos/empty",
                "photos/zero",
                "photos/ünïcødé 日本",
                "photos/ünïcødé 日本/a.txt"
            ]
        );
        assert_eq!(c.manifest.total_bytes(), 5);
        assert_eq!(c.manifest.file_count(), 2);
        #[cfg(unix)]
        assert_eq!(c.skipped.len(), 1);
        assert_eq!(c.manifest.first_names(3), ["photos/"]);
        assert_eq!(
            c.manifest.first_nested_files(3),
            ["photos/zero", "photos/ünïcødé 日本/a.txt"]
        );
        assert_eq!(c.manifest.folder_count(), 3);
    }

    #[test]
    fn decoding_refuses_more_entries_or_components_than_allowed() {
        let one = |path: Vec<String>| Entry {
            path,
            ..file(&["x"], 1)
        };
        let at_limit = Manifest {
            entries: vec![one(vec!["d".into(); names::MAX_DEPTH])],
        };
        let bytes = postcard::to_stdvec(&at_limit).unwrap();
        assert_eq!(postcard::from_bytes::<Manifest>(&bytes).unwrap(), at_limit);
        let deep = Manifest {
            entries: vec![one(vec!["d".into(); names::MAX_DEPTH + 1])],
        };
        let bytes = postcard::to_stdvec(&deep).unwrap();
        assert!(postcard::from_bytes::<Manifest>(&bytes).is_err());
        let many = Manifest {
            entries: vec![file(&["x"], 1); MAX_ENTRIES + 1],
        };
        let bytes = postcard::to_stdvec(&many).unwrap();
        assert!(postcard::from_bytes::<Manifest>(&bytes).is_err());
        // A count that claims billions, with nothing behind it: refused before anything.
        let mut bytes = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
        bytes.extend_from_slice(&[1, 1, b'a', 0, 1, 0, 0]);
        assert!(postcard::from_bytes::<Manifest>(&bytes).is_err());
    }

    #[test]
    fn decoding_refuses_more_components_in_all_than_allowed() {
        let deep = |n: usize| Entry {
            path: (0..names::MAX_DEPTH).map(|i| format!("{n}-{i}")).collect(),
            ..file(&["x"], 1)
        };
        // Exactly the limit, and one component more.
        let at_limit = Manifest {
            entries: (0..MAX_COMPONENTS / names::MAX_DEPTH).map(deep).collect(),
        };
        assert_eq!(MAX_COMPONENTS % names::MAX_DEPTH, 0);
        let bytes = postcard::to_stdvec(&at_limit).unwrap();
        assert_eq!(postcard::from_bytes::<Manifest>(&bytes).unwrap(), at_limit);
        let mut over = at_limit.clone();
        over.entries.push(file(&["y"], 1));
        let bytes = postcard::to_stdvec(&over).unwrap();
        assert!(postcard::from_bytes::<Manifest>(&bytes).is_err());
        assert_eq!(
            over.validate(),
            Err(ManifestError::TooManyComponents {
                count: MAX_COMPONENTS + 1
            })
        );
        // The budget is per manifest: the next decode on this thread starts afresh.
        let bytes = postcard::to_stdvec(&at_limit).unwrap();
        assert!(postcard::from_bytes::<Manifest>(&bytes).is_ok());
    }

    #[test]
    fn manifest_round_trips_in_postcard() {
        let m = Manifest {
            entries: vec![dir(&["a"]), file(&["a", "é"], 42)],
        };
        let bytes = postcard::to_stdvec(&m).unwrap();
        assert_eq!(postcard::from_bytes::<Manifest>(&bytes).unwrap(), m);
    }
}
