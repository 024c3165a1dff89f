//! Library sync between real nodes on loopback, with real SQLite files and real folders:
//! every kind of change reaches the other member both ways, changes travel through a member
//! that is online with each side in turn, and a removed member is cut off.

#[path = "support/members.rs"]
mod members;

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_core::library::wire::LibraryId;
use ferry_core::Node;
use members::*;

const WAIT: Duration = Duration::from_secs(20);

type Step<'a> = Box<dyn Fn() + 'a>;

fn write(p: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

async fn add(node: &Node, lib: &LibraryId, root: &Path) -> ferry_index::LocationId {
    let info = node.libraries().contents().add_location(lib, root).unwrap();
    let loc = ferry_index::db::parse_id(&info.id).unwrap();
    indexed(node, lib, &loc, root).await;
    loc
}

/// Waits until `others` hold `loc` exactly as `owner` does; returns how long it took.
async fn reaches(
    owner: &Node,
    others: &[&Node],
    lib: &LibraryId,
    loc: &ferry_index::LocationId,
    what: &str,
) -> Duration {
    until(what, WAIT, || converged(owner, others, lib, loc)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_change_reaches_the_other_member_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let (da, db) = (t.path().join("a"), t.path().join("b"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta")]);
    let (fa, fb) = (t.path().join("alpha-files"), t.path().join("beta-files"));
    write(&fa.join("docs/report.txt"), b"first draft");
    write(&fa.join("docs/old/notes.md"), b"# notes");
    write(&fa.join("photo.jpg"), &[7u8; 5000]);
    write(&fb.join("music/song.ogg"), &[1u8; 3000]);
    let a = start(&da, "alpha").await;
    let b = start(&db, "beta").await;
    let la = add(&a, &lib, &fa).await;
    let lb = add(&b, &lib, &fb).await;
    link(&a, &b).await;
    let first = reaches(&a, &[&b], &lib, &la, "A's location on B").await;
    reaches(&b, &[&a], &lib, &lb, "B's location on A").await;
    println!(
        "initial sync of a small location: {:.0} ms",
        first.as_secs_f64() * 1e3
    );

    // B lists A's location as A's, with A's name, online, browsable folder by folder.
    let seen = b.libraries().contents().location(&lib, &la).unwrap();
    assert!(!seen.local);
    assert_eq!(seen.owner_name.as_deref(), Some("alpha"));
    assert_eq!(seen.owner_online, Some(true));
    assert!(seen.synced_at.is_some());
    assert_eq!((seen.files, seen.folders), (3, 2));
    let docs = b.libraries().contents().list(&lib, &la, "docs").unwrap();
    let names: Vec<_> = docs.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["old", "report.txt"]);
    let own = a.libraries().contents().list(&lib, &la, "docs").unwrap();
    assert_eq!(docs, own, "the same ids, sizes, dates and content ids");

    // Each kind of change on A, and one on B, reaches the other side.
    let steps: [(&str, Step<'_>); 6] = [
        (
            "a new file",
            Box::new(|| write(&fa.join("docs/new.txt"), b"new")),
        ),
        (
            "an edit",
            Box::new(|| write(&fa.join("docs/report.txt"), b"second draft, longer")),
        ),
        (
            "a rename",
            Box::new(|| std::fs::rename(fa.join("photo.jpg"), fa.join("holiday.jpg")).unwrap()),
        ),
        (
            "a folder move",
            Box::new(|| std::fs::rename(fa.join("docs/old"), fa.join("archive")).unwrap()),
        ),
        (
            "a deletion",
            Box::new(|| std::fs::remove_file(fa.join("docs/new.txt")).unwrap()),
        ),
        (
            "a folder deletion",
            Box::new(|| std::fs::remove_dir_all(fa.join("archive")).unwrap()),
        ),
    ];
    for (what, change) in steps {
        change();
        let t0 = Instant::now();
        indexed(&a, &lib, &la, &fa).await;
        let indexed_after = t0.elapsed();
        let more = reaches(&a, &[&b], &lib, &la, what).await;
        println!(
            "{what}: indexed by A after {:.0} ms, on B {:.1} ms later",
            indexed_after.as_secs_f64() * 1e3,
            more.as_secs_f64() * 1e3
        );
    }
    write(&fb.join("music/another.ogg"), &[2u8; 100]);
    indexed(&b, &lib, &lb, &fb).await;
    reaches(&b, &[&a], &lib, &lb, "B's new file on A").await;

    // Location records: renamed, added, removed.
    a.libraries()
        .contents()
        .rename_location(&lib, &la, "Alpha's files")
        .unwrap();
    until("the rename on B", WAIT, || {
        b.libraries().contents().location(&lib, &la).unwrap().name == "Alpha's files"
    })
    .await;
    let fa2 = t.path().join("alpha-more");
    write(&fa2.join("x.bin"), &[3u8; 10]);
    let la2 = add(&a, &lib, &fa2).await;
    reaches(&a, &[&b], &lib, &la2, "a second location").await;
    // Only the owner changes its locations.
    assert!(b
        .libraries()
        .contents()
        .rename_location(&lib, &la2, "mine")
        .is_err());
    assert!(b
        .libraries()
        .contents()
        .remove_location(&lib, &la2)
        .is_err());
    assert!(b.libraries().contents().rescan(&lib, &la2).is_err());
    a.libraries()
        .contents()
        .remove_location(&lib, &la2)
        .unwrap();
    until("the removed location leaves B", WAIT, || {
        !locations(&b, &lib, false).contains(&la2)
    })
    .await;
    assert_eq!(listing(&b, &lib, &la2), vec![], "and its entries with it");

    // Offline: B shows A's location as of the last sync, A's device not online.
    let a_rows = listing(&a, &lib, &la);
    a.shutdown().await;
    owner_offline(&b, &lib, &la).await;
    assert_eq!(listing(&b, &lib, &la), a_rows);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_travel_through_a_member_and_a_removed_member_is_cut_off() {
    let t = tempfile::tempdir().unwrap();
    let (da, db, dc) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta"), (&dc, "gamma")]);
    let (fa, fc) = (t.path().join("alpha-files"), t.path().join("gamma-files"));
    write(&fa.join("a1.txt"), b"from alpha");
    write(&fc.join("c1.txt"), b"from gamma");

    // A and B online together; then A leaves.
    let a = start(&da, "alpha").await;
    let b = start(&db, "beta").await;
    let la = add(&a, &lib, &fa).await;
    link(&a, &b).await;
    reaches(&a, &[&b], &lib, &la, "A's rows on B").await;
    let a_rows = listing(&a, &lib, &la);
    a.shutdown().await;
    drop(a);

    // C and B online together: C gets A's rows from B, B gets C's.
    let c = start(&dc, "gamma").await;
    let lc = add(&c, &lib, &fc).await;
    link(&c, &b).await;
    until("A's rows on C through B", WAIT, || {
        listing(&c, &lib, &la) == a_rows
    })
    .await;
    reaches(&c, &[&b], &lib, &lc, "C's rows on B").await;
    let c_rows = listing(&c, &lib, &lc);
    c.shutdown().await;
    drop(c);

    // A back with B only: A gets C's rows, never having met C.
    let a = start(&da, "alpha").await;
    link(&a, &b).await;
    until("C's rows on A through B", WAIT, || {
        listing(&a, &lib, &lc) == c_rows
    })
    .await;
    // A's change while C is away, held by B for C.
    write(&fa.join("a2.txt"), b"later");
    indexed(&a, &lib, &la, &fa).await;
    reaches(&a, &[&b], &lib, &la, "A's later change on B").await;

    // A removes C: C's locations leave A and B; C gets nothing more.
    let c_id = ferry_p2p::Identity::load_or_create(&dc).unwrap().peer_id();
    a.libraries().remove_member(&lib, &c_id).unwrap();
    until("C's location gone from A", WAIT, || {
        !locations(&a, &lib, false).contains(&lc)
    })
    .await;
    until("C's location gone from B", WAIT, || {
        !locations(&b, &lib, false).contains(&lc)
    })
    .await;
    let before_removal = listing(&b, &lib, &la);
    let c = start(&dc, "gamma").await;
    link(&c, &b).await;
    write(&fa.join("a3.txt"), b"not for C");
    indexed(&a, &lib, &la, &fa).await;
    reaches(&a, &[&b], &lib, &la, "A's change on B after the removal").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let on_c = listing(&c, &lib, &la);
    assert!(
        on_c.len() < listing(&b, &lib, &la).len(),
        "C got no rows after its removal"
    );
    assert!(on_c.len() <= before_removal.len());
    for n in [a, b, c] {
        n.shutdown().await;
    }
}
