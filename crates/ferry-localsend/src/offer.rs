//! A LocalSend offer as a Spacedrop manifest, so that its names go through the same rules
//! (`ferry_block::names`) and the same no-clobber layout (`ferry_block::place`).
//!
//! LocalSend sends a folder as its files, each `fileName` a relative path with `/` between
//! components ("photos/2024/a.jpg"). Each path is split, checked like a Spacedrop manifest path
//! (no `..`, no empty or `.` component, no `\` or NUL, bounded depth and length), and its parent
//! folders are listed before it. Anything that fails refuses the whole offer.

use std::collections::HashSet;

use ferry_block::manifest::{Entry, EntryKind, Manifest, ManifestError};

use crate::wire::{FileInfo, PrepareUpload};

/// One offered file: its LocalSend id and where it sits in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFile {
    pub id: String,
    /// Index of its entry in [`Offer::manifest`].
    pub entry: u32,
    pub size: u64,
    pub sha256: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub manifest: Manifest,
    pub files: Vec<OfferedFile>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OfferError {
    #[error("no files offered")]
    Empty,
    #[error("file {id:?}: {source}")]
    Manifest { id: String, source: ManifestError },
}

/// Splits `fileName` into path components. Empty components are kept so that validation
/// refuses them ("a//b", "/etc/passwd", "dir/").
pub fn components(file_name: &str) -> Vec<String> {
    file_name.split('/').map(str::to_string).collect()
}

/// Builds the manifest of an offer, checking every name.
pub fn offer(p: &PrepareUpload) -> Result<Offer, OfferError> {
    offer_of(&p.files)
}

pub fn offer_of(files: &[FileInfo]) -> Result<Offer, OfferError> {
    if files.is_empty() {
        return Err(OfferError::Empty);
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(files.len());
    let mut dirs: HashSet<Vec<String>> = HashSet::new();
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let path = components(&f.file_name);
        let bad = |source| OfferError::Manifest {
            id: f.id.clone(),
            source,
        };
        ferry_block::names::validate_wire_path(&path)
            .map_err(|source| bad(ManifestError::BadName { id: 0, source }))?;
        for depth in 1..path.len() {
            let dir = path[..depth].to_vec();
            if dirs.insert(dir.clone()) {
                entries.push(Entry {
                    path: dir,
                    kind: EntryKind::Dir,
                    size: 0,
                    mode: 0o755,
                    mtime: 0,
                });
            }
        }
        out.push(OfferedFile {
            id: f.id.clone(),
            entry: entries.len() as u32,
            size: f.size,
            sha256: f.sha256_bytes(),
        });
        entries.push(Entry {
            path,
            kind: EntryKind::File,
            size: f.size,
            mode: 0o644,
            mtime: f
                .metadata
                .as_ref()
                .and_then(|m| m.modified.as_deref())
                .and_then(parse_rfc3339)
                .unwrap_or(0),
        });
    }
    let manifest = Manifest { entries };
    // Duplicates, a file where a folder must be, too many entries: as for Spacedrop. Its entry
    // index names the LocalSend file it belongs to.
    manifest.validate().map_err(|source| {
        let entry = match &source {
            ManifestError::BadName { id, .. }
            | ManifestError::TooLarge { id, .. }
            | ManifestError::DirWithSize { id }
            | ManifestError::Duplicate { id }
            | ManifestError::Orphan { id } => *id as u32,
            _ => 0,
        };
        let id = out
            .iter()
            .find(|f| f.entry >= entry)
            .map(|f| f.id.clone())
            .unwrap_or_default();
        OfferError::Manifest { id, source }
    })?;
    Ok(Offer {
        manifest,
        files: out,
    })
}

/// Seconds since the Unix epoch of "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)"; None otherwise.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: &str, name: &str) -> FileInfo {
        FileInfo {
            id: id.into(),
            file_name: name.into(),
            size: 3,
            file_type: "text/plain".into(),
            sha256: None,
            metadata: None,
        }
    }

    #[test]
    fn folders_become_entries_before_their_files() {
        let o = offer_of(&[
            file("1", "photos/2024/a.jpg"),
            file("2", "photos/b.jpg"),
            file("3", "notes.txt"),
        ])
        .unwrap();
        let paths: Vec<String> = o
            .manifest
            .entries
            .iter()
            .map(|e| e.path.join("/"))
            .collect();
        assert_eq!(
            paths,
            [
                "photos",
                "photos/2024",
                "photos/2024/a.jpg",
                "photos/b.jpg",
                "notes.txt"
            ]
        );
        assert_eq!(o.files[0].entry, 2);
        assert_eq!(o.files[2].entry, 4);
        assert_eq!(o.manifest.file_count(), 3);
    }

    #[test]
    fn traversal_and_odd_paths_refuse_the_offer() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "dir/",
            ".",
            "",
            "a\\..\\b",
            "nul\0byte",
        ] {
            let r = offer_of(&[file("1", "ok.txt"), file("2", bad)]);
            assert!(
                matches!(&r, Err(OfferError::Manifest { id, .. }) if id == "2"),
                "{bad:?}: {r:?}"
            );
        }
        // A file where a folder must be, or the same path twice.
        assert!(offer_of(&[file("1", "a"), file("2", "a/b")]).is_err());
        assert!(offer_of(&[file("1", "a"), file("2", "a")]).is_err());
        assert_eq!(offer_of(&[]), Err(OfferError::Empty));
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2021-01-01T12:34:56Z"), Some(1_609_504_496));
        assert_eq!(
            parse_rfc3339("2021-01-01T12:34:56.123+01:00"),
            Some(1_609_500_896)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2021-13-01T12:34:56Z"), None);
    }
}
