//! What a reception keeps on disk besides its placed files: the folders and free space an
//! accepted offer needs, partial files under their temp names, and each file's end in the
//! store.

use std::collections::HashSet;
use std::path::Path;

use ferry_block::names::Os;
use ferry_block::{place, EntryKind};

use super::decide::{self, temp_path};
use super::state::SpacedropState;
use super::store::{FileStatus, SavedLayout, TransferRow};
use super::wire::{Refusal, Starts};

/// Records how entry `entry` of `row` ended, with its size and name for listings.
pub(super) fn record_file(
    shared: &SpacedropState,
    row: &TransferRow,
    entry: u32,
    status: &FileStatus,
) {
    let size = row
        .manifest
        .entries
        .get(entry as usize)
        .map_or(0, |e| e.size);
    let name = row.manifest.display_path(entry);
    if let Err(e) = shared.store.set_file(&row.id, entry, size, &name, status) {
        tracing::warn!(error = %e, "could not record a file's end");
    }
}

/// Removes the partial files of a transfer (cancelled, or failed for good).
pub(super) fn remove_temps(row: &TransferRow) {
    if let Some(dest) = &row.dest {
        for (i, e) in row.manifest.entries.iter().enumerate() {
            if e.kind == EntryKind::File {
                let _ = std::fs::remove_file(temp_path(dest, &row.id, i as u32));
            }
        }
    }
}

/// Free space, then the layout and the folders (empty ones included).
pub(super) fn prepare(
    dest: &Path,
    manifest: &ferry_block::Manifest,
) -> Result<SavedLayout, Refusal> {
    std::fs::create_dir_all(dest).map_err(|e| Refusal::Destination(e.to_string()))?;
    let needed = manifest.total_bytes();
    let available = fs4::available_space(dest).map_err(|e| Refusal::Destination(e.to_string()))?;
    if needed > available {
        return Err(Refusal::NoSpace { needed, available });
    }
    let l = place::layout(manifest, Os::current(), |n| dest.join(n).exists())
        .map_err(|e| Refusal::Invalid(e.to_string()))?;
    for (e, p) in manifest.entries.iter().zip(&l.paths) {
        if e.kind == EntryKind::Dir {
            std::fs::create_dir_all(dest.join(p))
                .map_err(|e| Refusal::Destination(e.to_string()))?;
        }
    }
    Ok(SavedLayout {
        paths: l.paths,
        renamed: l.renamed,
    })
}

/// Places the files recorded as done whose temp file is still there: verified, but not yet
/// moved when the node stopped. Returns whether every such file is in place now.
pub(super) fn place_recovered(shared: &SpacedropState, row: &TransferRow) -> bool {
    let dest = row.dest.clone().unwrap_or_default();
    let mut all = true;
    for (entry, status) in shared.store.files(&row.id).unwrap_or_default() {
        let temp = temp_path(&dest, &row.id, entry);
        if let (FileStatus::Done(wanted), true) = (status, temp.exists()) {
            // Linked into place just before the stop, only the temp name was left to remove.
            if place::same_file(&temp, &wanted) {
                let _ = std::fs::remove_file(&temp);
                continue;
            }
            match place::place(&temp, &wanted, Os::current()) {
                Ok(path) => {
                    record_file(shared, row, entry, &FileStatus::Done(path));
                }
                Err(e) => {
                    all = false;
                    tracing::warn!(error = %e, "could not place a recovered file");
                }
            }
        }
    }
    all
}

/// Where to start each entry of a resumed transfer (see [`decide::resume_starts`]), once the
/// files verified before a stop are in place.
pub(super) fn resume_starts(shared: &SpacedropState, row: &TransferRow) -> Starts {
    place_recovered(shared, row);
    let dest = row.dest.clone().unwrap_or_default();
    let done: HashSet<u32> = shared
        .store
        .files(&row.id)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, s)| matches!(s, FileStatus::Done(_)))
        .map(|(i, _)| i)
        .collect();
    let have = |entry| std::fs::metadata(temp_path(&dest, &row.id, entry)).map_or(0, |m| m.len());
    decide::resume_starts(&row.manifest, &done, have)
}
