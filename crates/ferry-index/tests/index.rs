//! The indexer against the real filesystem and a real SQLite file: random sequences of
//! creates, modifies, renames and deletes, applied both by a full rescan and by the watcher's
//! path batches, must leave the index equal to a plain walk of the disk; ids survive renames
//! and moves; content ids are the real BLAKE3 of what is on disk; bad input is skipped and
//! reported.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use ferry_index::{EntryKind, IndexError};
use proptest::prelude::*;
use support::*;

#[derive(Debug, Clone)]
enum Op {
    Write(u8, u8, u16),
    Mkdir(u8, u8),
    Rename(u8, u8, u8),
    Delete(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<u8>(), any::<u8>(), 0u16..5000).prop_map(|(d, n, len)| Op::Write(d, n, len)),
        (any::<u8>(), any::<u8>()).prop_map(|(d, n)| Op::Mkdir(d, n)),
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, d, n)| Op::Rename(a, d, n)),
        any::<u8>().prop_map(Op::Delete),
    ]
}

/// Every path under root (folders and files), sorted, for picking targets.
fn all(root: &Path) -> Vec<PathBuf> {
    disk(root).keys().map(|k| root.join(k)).collect()
}

fn dirs(root: &Path) -> Vec<PathBuf> {
    let mut v = vec![root.to_path_buf()];
    v.extend(all(root).into_iter().filter(|p| p.is_dir()));
    v
}

/// Applies one op; returns the paths it touched (what a watcher would report).
fn apply_op(root: &Path, op: &Op) -> Vec<PathBuf> {
    let pick = |v: &[PathBuf], i: u8| v.get(i as usize % v.len().max(1)).cloned();
    match *op {
        Op::Write(d, n, len) => {
            let dir = pick(&dirs(root), d).unwrap();
            let p = dir.join(format!("f{}", n % 16));
            if p.is_dir() {
                return vec![];
            }
            std::fs::write(&p, vec![n; len as usize]).unwrap();
            vec![p]
        }
        Op::Mkdir(d, n) => {
            let dir = pick(&dirs(root), d).unwrap();
            let p = dir.join(format!("d{}", n % 8));
            if p.exists() {
                return vec![];
            }
            std::fs::create_dir(&p).unwrap();
            vec![p]
        }
        Op::Rename(a, d, n) => {
            let Some(from) = pick(&all(root), a) else {
                return vec![];
            };
            let dir = pick(&dirs(root), d).unwrap();
            let to = dir.join(format!("r{}", n % 8));
            if to.exists() || to.starts_with(&from) {
                return vec![];
            }
            std::fs::rename(&from, &to).unwrap();
            vec![from, to]
        }
        Op::Delete(a) => {
            let Some(p) = pick(&all(root), a) else {
                return vec![];
            };
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
            vec![p]
        }
    }
}

fn check_ids_are_content(c: &ferry_index::Contents, loc: &ferry_index::LocationId, root: &Path) {
    let mut dirs = vec![String::new()];
    while let Some(d) = dirs.pop() {
        for e in c.list(loc, &d).unwrap() {
            match e.kind {
                EntryKind::Dir => dirs.push(e.path.clone()),
                EntryKind::File => {
                    let bytes = std::fs::read(root.join(&e.path)).unwrap();
                    assert_eq!(
                        e.cas.as_deref(),
                        Some(blake3::hash(&bytes).to_hex().as_str()),
                        "{}",
                        e.path
                    );
                }
                _ => {}
            }
        }
    }
}

/// Where a failing case is saved, to be replayed first on every later run (check it in). The
/// default looks for a lib.rs above the test file, which an integration test has none of: it
/// warned "failed to find lib.rs" on every run and fell back to a file beside the test.
fn regressions() -> Option<Box<dyn proptest::test_runner::FailurePersistence>> {
    Some(Box::new(
        proptest::test_runner::FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/tests/index.txt"
        )),
    ))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: regressions(),
        ..ProptestConfig::default()
    })]

    /// Rescans and watcher batches both converge on the disk, and content ids stay true.
    #[test]
    fn index_matches_a_walk_after_random_changes(ops in prop::collection::vec(op(), 1..40)) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("loc");
        std::fs::create_dir(&root).unwrap();
        for i in 0..4 {
            std::fs::create_dir(root.join(format!("d{i}"))).unwrap();
            std::fs::write(root.join(format!("d{i}/seed")), format!("seed {i}")).unwrap();
        }
        let c = contents(t.path());
        let loc = loc_id(&c.add_location(&root).unwrap());
        let no = AtomicBool::new(false);
        c.scan(&loc, &no, &mut |_| {}).unwrap();
        c.identify(&loc, &no, &mut |_, _| {}).unwrap();
        prop_assert_eq!(index(&c, &loc), disk(&root));

        // Half the ops go through the watcher path, then a rescan must find nothing to fix.
        let (first, second) = ops.split_at(ops.len() / 2);
        for o in first {
            let touched = apply_op(&root, o);
            c.apply(&loc, &touched).unwrap();
        }
        prop_assert_eq!(index(&c, &loc), disk(&root));
        c.identify(&loc, &no, &mut |_, _| {}).unwrap();
        check_ids_are_content(&c, &loc, &root);
        let again = c.scan(&loc, &no, &mut |_| {}).unwrap();
        prop_assert_eq!((again.added, again.removed), (0, 0), "watcher batches left drift: {:?}", again);

        for o in second {
            apply_op(&root, o);
        }
        c.scan(&loc, &no, &mut |_| {}).unwrap();
        c.identify(&loc, &no, &mut |_, _| {}).unwrap();
        prop_assert_eq!(index(&c, &loc), disk(&root));
        check_ids_are_content(&c, &loc, &root);
    }
}

#[test]
fn renames_and_folder_moves_keep_ids_and_content_ids() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("loc");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/b/photo.jpg"), b"not really a photo").unwrap();
    std::fs::write(root.join("a/x.txt"), b"x").unwrap();
    std::fs::create_dir(root.join("z")).unwrap();
    let c = contents(t.path());
    let loc = loc_id(&c.add_location(&root).unwrap());
    let no = AtomicBool::new(false);
    c.scan(&loc, &no, &mut |_| {}).unwrap();
    c.identify(&loc, &no, &mut |_, _| {}).unwrap();
    let before = ids(&c, &loc);
    let seq = c.seq().unwrap();

    std::fs::rename(root.join("a"), root.join("z/moved")).unwrap();
    let r = c
        .apply(&loc, &[root.join("a"), root.join("z/moved")])
        .unwrap();
    assert_eq!((r.moved, r.added, r.removed), (1, 0, 0), "{r:?}");
    let after = ids(&c, &loc);
    assert_eq!(after["z/moved/b/photo.jpg"], before["a/b/photo.jpg"]);
    assert_eq!(after["z/moved"], before["a"]);
    assert_eq!(index(&c, &loc), disk(&root));
    assert_eq!(
        c.unidentified(&loc).unwrap(),
        0,
        "a move hashes nothing again"
    );
    assert!(c.seq().unwrap() > seq, "moves are changes for sync");

    std::fs::rename(root.join("z/moved/x.txt"), root.join("y.txt")).unwrap();
    c.apply(&loc, &[root.join("z/moved/x.txt"), root.join("y.txt")])
        .unwrap();
    assert_eq!(ids(&c, &loc)["y.txt"], before["a/x.txt"]);
}

#[test]
fn symlink_loops_odd_names_and_nested_locations() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("loc");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::os::unix::fs::symlink(".", root.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(&root, root.join("up")).unwrap();
    use std::os::unix::ffi::OsStrExt;
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9 \xff.txt");
    std::fs::write(root.join("sub").join(odd), b"latin-1 name").unwrap();
    let c = contents(t.path());
    let loc = loc_id(&c.add_location(&root).unwrap());
    let no = AtomicBool::new(false);
    let r = c.scan(&loc, &no, &mut |_| {}).unwrap();
    assert_eq!(r.seen, 4, "{r:?}");
    let id = c.identify(&loc, &no, &mut |_, _| {}).unwrap();
    assert_eq!(id.identified, 1);
    let sub = c.list(&loc, "sub").unwrap();
    let kinds: Vec<_> = sub.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert!(kinds.contains(&("loop", EntryKind::Symlink)), "{kinds:?}");
    let f = sub.iter().find(|e| e.kind == EntryKind::File).unwrap();
    assert_eq!(
        f.name, "caf\u{fffd} \u{fffd}.txt",
        "shown lossily, stored exactly"
    );
    let (_, path) = c.entry(&ferry_index::db::parse_id(&f.id).unwrap()).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"latin-1 name");

    for nested in [root.join("sub"), t.path().to_path_buf()] {
        match c.add_location(&nested) {
            Err(IndexError::Refused(e)) => assert!(e.contains("overlaps"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn files_changed_or_deleted_before_hashing_get_no_false_id() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("loc");
    std::fs::create_dir(&root).unwrap();
    for i in 0..10 {
        std::fs::write(root.join(format!("{i}.bin")), vec![i as u8; 1000]).unwrap();
    }
    let c = contents(t.path());
    let loc = loc_id(&c.add_location(&root).unwrap());
    let no = AtomicBool::new(false);
    c.scan(&loc, &no, &mut |_| {}).unwrap();
    std::fs::remove_file(root.join("3.bin")).unwrap();
    std::fs::write(root.join("4.bin"), b"changed since the walk").unwrap();
    let r = c.identify(&loc, &no, &mut |_, _| {}).unwrap();
    assert_eq!((r.identified, r.vanished), (9, 1), "{r:?}");
    assert_eq!(index(&c, &loc), disk(&root));
    check_ids_are_content(&c, &loc, &root);

    // A file that keeps growing while it is hashed never gets an id of a state it was not in.
    let big = root.join("growing.bin");
    std::fs::write(&big, vec![1u8; 24 << 20]).unwrap();
    c.scan(&loc, &no, &mut |_| {}).unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let (big, stop) = (big.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&big).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(&[2u8; 4096]).unwrap();
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let r = c.identify(&loc, &no, &mut |_, _| {}).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    println!("hashing a growing file: {r:?}");
    assert_eq!(r.changed, 1, "{r:?}");
    c.identify(&loc, &no, &mut |_, _| {}).unwrap();
    check_ids_are_content(&c, &loc, &root);
}

#[test]
fn a_location_that_disappears_mid_scan_or_goes_offline_keeps_its_rows() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("loc");
    for d in 0..30 {
        std::fs::create_dir_all(root.join(format!("d{d}"))).unwrap();
        for f in 0..100 {
            std::fs::write(root.join(format!("d{d}/{f}")), b"x").unwrap();
        }
    }
    let c = contents(t.path());
    let loc = loc_id(&c.add_location(&root).unwrap());
    let no = AtomicBool::new(false);
    c.scan(&loc, &no, &mut |_| {}).unwrap();
    assert_eq!(c.location(&loc).unwrap().files, 3000);

    // Half-way through a rescan the folder vanishes (a drive pulled out).
    let aside = t.path().join("aside");
    let r = c.scan(&loc, &no, &mut |seen| {
        if seen == 1000 {
            std::fs::rename(&root, &aside).unwrap();
        }
    });
    assert!(
        matches!(r, Err(IndexError::Refused(ref e)) if e.contains("offline")),
        "{r:?}"
    );
    let info = c.location(&loc).unwrap();
    assert_eq!((info.online, info.files), (false, 3000), "{info:?}");

    // It comes back: online again, nothing lost.
    std::fs::rename(&aside, &root).unwrap();
    c.scan(&loc, &no, &mut |_| {}).unwrap();
    let info = c.location(&loc).unwrap();
    assert_eq!((info.online, info.files), (true, 3000));

    // The watcher reports the root itself gone: offline, rows kept.
    std::fs::rename(&root, &aside).unwrap();
    let r = c.apply(&loc, std::slice::from_ref(&root)).unwrap();
    assert!(r.offline);
    assert_eq!(c.location(&loc).unwrap().files, 3000);
}

#[test]
fn an_interrupted_index_resumes_without_hashing_again() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("loc");
    std::fs::create_dir(&root).unwrap();
    for f in 0..2000 {
        std::fs::write(root.join(format!("{f}")), format!("file {f}")).unwrap();
    }
    let db = t.path().join("library.db");
    let loc = {
        let c = contents(t.path());
        let loc = loc_id(&c.add_location(&root).unwrap());
        let no = AtomicBool::new(false);
        c.scan(&loc, &no, &mut |_| {}).unwrap();
        let cancel = AtomicBool::new(false);
        let r = c.identify(&loc, &cancel, &mut |done, _| {
            if done >= 1000 {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        assert!(matches!(r, Err(IndexError::Cancelled)));
        assert_eq!(c.location(&loc).unwrap().state, "identifying");
        loc
    };
    // "Restart": a new handle on the same file picks up the rest.
    let c = ferry_index::Contents::open(&db, [7; 32]).unwrap();
    let left = c.unidentified(&loc).unwrap();
    assert!(left > 0 && left <= 1000, "{left}");
    let r = c
        .identify(&loc, &AtomicBool::new(false), &mut |_, _| {})
        .unwrap();
    assert_eq!(r.identified, left);
    assert_eq!(c.location(&loc).unwrap().state, "done");
    check_ids_are_content(&c, &loc, &root);
}

#[test]
fn a_folder_pages_in_listing_order_with_its_total() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("loc");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..300 {
        // Mixed case: the order is case-insensitive, as a file manager shows it.
        let name = if i % 2 == 0 {
            format!("img{i:04}.jpg")
        } else {
            format!("IMG{i:04}.JPG")
        };
        std::fs::write(root.join(name), [i as u8]).unwrap();
    }
    for d in ["zeta", "Alpha", "mid"] {
        std::fs::create_dir(root.join(d)).unwrap();
    }
    let c = contents(t.path());
    let loc = loc_id(&c.add_location(&root).unwrap());
    c.scan(&loc, &AtomicBool::new(false), &mut |_| {}).unwrap();

    let whole = c.list(&loc, "").unwrap();
    assert_eq!(whole.len(), 303);
    let names: Vec<&str> = whole.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        &names[..4],
        ["Alpha", "mid", "zeta", "img0000.jpg"],
        "folders first, then by name"
    );
    assert_eq!(names[4], "IMG0001.JPG");

    let mut paged = Vec::new();
    for offset in (0..310).step_by(64) {
        let p = c.page(&loc, "", offset, 64).unwrap();
        assert_eq!(p.total, 303);
        paged.extend(p.entries);
    }
    assert_eq!(paged, whole, "pages join into the whole listing");
    let past = c.page(&loc, "/", 400, 10).unwrap();
    assert_eq!((past.total, past.entries.len()), (303, 0));
    assert_eq!(c.page(&loc, "nope", 0, 10).unwrap().total, 0);
}
