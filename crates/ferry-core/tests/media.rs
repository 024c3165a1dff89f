//! Remote media between real nodes on loopback, with real SQLite files, real pictures and real
//! folders: a member's thumbnails and byte ranges through `ferry://`, what is answered when its
//! owner is offline, a copy served by another member, preview-media sync, downloads (verified,
//! resumed, refused when damaged), and bad input from a member.

#[path = "support/members.rs"]
mod members;

use std::path::Path;
use std::time::Duration;

use ferry_core::library::wire::LibraryId;
use ferry_core::Node;
use ferry_index::serve::{Response, RANGE_CHUNK};
use ferry_index::EntryInfo;
use members::*;

const WAIT: Duration = Duration::from_secs(30);

fn write(p: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// A real picture, different for each `seed`.
fn picture(p: &Path, seed: u8) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(640, 400, |x, y| {
        image::Rgb([
            (x as u8).wrapping_add(seed),
            (y as u8) ^ seed,
            seed.wrapping_mul(7),
        ])
    })
    .save(p)
    .unwrap();
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 997) as u8 ^ seed).collect()
}

async fn add(node: &Node, lib: &LibraryId, root: &Path) -> ferry_index::LocationId {
    let info = node.libraries().contents().add_location(lib, root).unwrap();
    let loc = ferry_index::db::parse_id(&info.id).unwrap();
    indexed(node, lib, &loc, root).await;
    loc
}

/// Waits until the owner has thumbnailed every picture of `loc` (thumbnails come after ids).
async fn thumbnailed(node: &Node, lib: &LibraryId, loc: &ferry_index::LocationId, n: usize) {
    until("the owner's thumbnails", WAIT, || {
        all(node, lib, loc).iter().filter(|e| e.thumb).count() == n
    })
    .await;
}

/// A ("alpha", owning `files`, with `pictures` of them thumbnailed) and B ("beta", copying no
/// thumbnails in the background), linked, A's location synced to B.
async fn owner_and_member(
    da: &Path,
    db: &Path,
    lib: &LibraryId,
    files: &Path,
    pictures: usize,
) -> (Node, Node, ferry_index::LocationId) {
    let a = start(da, "alpha").await;
    let b = start_with(db, "beta", false).await;
    let la = add(&a, lib, files).await;
    thumbnailed(&a, lib, &la, pictures).await;
    link(&a, &b).await;
    until("A's location on B", WAIT, || converged(&a, &[&b], lib, &la)).await;
    (a, b, la)
}

/// Every entry of a location, as `node` lists it.
fn all(node: &Node, lib: &LibraryId, loc: &ferry_index::LocationId) -> Vec<EntryInfo> {
    let c = node.libraries().contents();
    let mut out = Vec::new();
    let mut dirs = vec![String::new()];
    while let Some(d) = dirs.pop() {
        for e in c.list(lib, loc, &d).unwrap() {
            if e.kind == ferry_index::EntryKind::Dir {
                dirs.push(e.path.clone());
            }
            out.push(e);
        }
    }
    out
}

fn named(entries: &[EntryInfo], path: &str) -> EntryInfo {
    entries.iter().find(|e| e.path == path).unwrap().clone()
}

async fn get(node: &Node, path: &str, range: Option<&str>) -> Response {
    node.libraries().serve_media(path, range, false).await
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_thumbnails_and_byte_ranges_and_its_absence() {
    let t = tempfile::tempdir().unwrap();
    let (da, db) = (t.path().join("a"), t.path().join("b"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta")]);
    let fa = t.path().join("alpha-files");
    picture(&fa.join("pics/one.jpg"), 1);
    picture(&fa.join("pics/two.png"), 2);
    picture(&fa.join("pics/three.jpg"), 3);
    let video = data(3 * 1024 * 1024 + 17, 5);
    write(&fa.join("clip.mp4"), &video);
    // B copies nothing in the background: every thumbnail it shows, it fetched on demand.
    let (a, b, la) = owner_and_member(&da, &db, &lib, &fa, 3).await;

    let seen = all(&b, &lib, &la);
    let one = named(&seen, "pics/one.jpg");
    assert!(one.thumb, "a member's picture offers its thumbnail");
    let cas = one.cas.clone().unwrap();

    // A thumbnail, fetched from A, is A's own thumbnail byte for byte.
    let r = get(&b, &format!("/thumb/{lib}/{cas}"), None).await;
    assert_eq!(r.status, 200, "{r:?} {}", text(&r));
    assert_eq!(r.header("Content-Type"), Some("image/jpeg"));
    assert_eq!(r.header("ETag"), Some(format!("\"{cas}\"").as_str()));
    let (path, _) = a.libraries().contents().thumbs().find(&cas).unwrap();
    assert_eq!(r.body, std::fs::read(path).unwrap());

    // Byte ranges of a remote file: exact bytes, HTTP's answers for each kind of range.
    let clip = named(&seen, "clip.mp4");
    let url = format!("/file/{lib}/{}", clip.id);
    let r = get(&b, &url, Some("bytes=1000-1999")).await;
    assert_eq!(r.status, 206, "{}", text(&r));
    assert_eq!(
        r.header("Content-Range"),
        Some(format!("bytes 1000-1999/{}", video.len()).as_str())
    );
    assert_eq!(r.header("Content-Type"), Some("video/mp4"));
    assert_eq!(r.body, video[1000..2000]);
    let r = get(&b, &url, Some("bytes=-100")).await;
    assert_eq!(r.body, video[video.len() - 100..]);
    let r = get(&b, &url, None).await;
    assert_eq!((r.status, r.body == video), (200, true));
    let r = get(&b, &url, Some(&format!("bytes={}-", video.len()))).await;
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("Content-Range"),
        Some(format!("bytes */{}", video.len()).as_str())
    );
    let r = b
        .libraries()
        .serve_media(&url, Some("bytes=0-"), true)
        .await;
    assert_eq!((r.status, r.body.len()), (206, 0), "HEAD reads nothing");
    assert_eq!(
        r.header("Content-Length"),
        Some(RANGE_CHUNK.min(video.len() as u64).to_string().as_str())
    );
    // Ids only, and unknown ones say nothing more than "no".
    assert_eq!(
        get(&b, &format!("/file/{lib}/{}", "0".repeat(32)), None)
            .await
            .status,
        404
    );
    assert_eq!(
        get(&b, &format!("/file/{lib}/../../etc/passwd"), None)
            .await
            .status,
        404
    );
    assert_eq!(
        get(&b, &format!("/thumb/{lib}/{}", "ab".repeat(32)), None)
            .await
            .status,
        404
    );
    assert_eq!(
        get(&b, &format!("/file/{lib}/nothex"), None).await.status,
        400
    );

    // A goes away: the fetched thumbnail is still served, the others and originals say why.
    a.shutdown().await;
    drop(a);
    owner_offline(&b, &lib, &la).await;
    let r = get(&b, &format!("/thumb/{lib}/{cas}"), None).await;
    assert_eq!(r.status, 200, "kept from the first fetch");
    let r = get(&b, &url, Some("bytes=0-9")).await;
    assert_eq!((r.status, text(&r).as_str()), (503, "alpha is offline"));
    let two = named(&seen, "pics/two.png").cas.unwrap();
    assert_eq!(
        get(&b, &format!("/thumb/{lib}/{two}"), None).await.status,
        503
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_sync_and_a_copy_on_another_member_stands_in_for_its_owner() {
    let t = tempfile::tempdir().unwrap();
    let (da, db, dc) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta"), (&dc, "gamma")]);
    let (fa, fc) = (t.path().join("alpha-files"), t.path().join("gamma-files"));
    for i in 0..6 {
        picture(&fa.join(format!("p{i}.jpg")), i);
    }
    let song = data(700_000, 9);
    write(&fa.join("song.ogg"), &song);
    write(&fc.join("copy of song.ogg"), &song);
    let a = start(&da, "alpha").await;
    let b = start(&db, "beta").await;
    let c = start_with(&dc, "gamma", false).await;
    let la = add(&a, &lib, &fa).await;
    add(&c, &lib, &fc).await;
    thumbnailed(&a, &lib, &la, 6).await;
    link(&a, &b).await;
    link(&b, &c).await;
    link(&a, &c).await;
    until("A's location on B and C", WAIT, || {
        converged(&a, &[&b, &c], &lib, &la)
    })
    .await;

    // B copies every thumbnail of A's in the background, checked, into its own store.
    let pics: Vec<String> = all(&a, &lib, &la)
        .into_iter()
        .filter(|e| e.name.ends_with(".jpg"))
        .map(|e| e.cas.unwrap())
        .collect();
    until("B's preview sync", WAIT, || {
        pics.iter()
            .all(|p| b.libraries().contents().thumbs().has(p))
    })
    .await;
    assert!(
        pics.iter()
            .all(|p| !c.libraries().contents().thumbs().has(p)),
        "C's is off"
    );
    let listed = all(&b, &lib, &la);
    assert!(listed
        .iter()
        .filter(|e| e.name.ends_with(".jpg"))
        .all(|e| e.thumb));

    // A goes away. B still shows every thumbnail; C (which never synced them) gets them from B.
    let seen = all(&c, &lib, &la);
    a.shutdown().await;
    drop(a);
    owner_offline(&c, &lib, &la).await;
    for p in &pics {
        assert_eq!(
            get(&b, &format!("/thumb/{lib}/{p}"), None).await.status,
            200
        );
        let r = get(&c, &format!("/thumb/{lib}/{p}"), None).await;
        assert_eq!(r.status, 200, "from B's synced store: {}", text(&r));
    }
    // A's song, asked of B while A is away: C holds the same content and serves it.
    let s = named(&seen, "song.ogg");
    let r = get(&b, &format!("/file/{lib}/{}", s.id), Some("bytes=10-99")).await;
    assert_eq!(r.status, 206, "{}", text(&r));
    assert_eq!(r.body, song[10..100]);
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_verify_resume_and_never_place_damaged_bytes() {
    let t = tempfile::tempdir().unwrap();
    let (da, db) = (t.path().join("a"), t.path().join("b"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta")]);
    let fa = t.path().join("alpha-files");
    let big = data(40 * 1024 * 1024 + 3, 1); // over 32 MiB: its content id is sampled
    write(&fa.join("album/big.bin"), &big);
    write(&fa.join("album/sub/small.txt"), b"hello from alpha");
    write(&fa.join("album/sub/empty"), b"");
    let (a, b, la) = owner_and_member(&da, &db, &lib, &fa, 0).await;
    let seen = all(&b, &lib, &la);
    let album = named(&seen, "album");

    // A folder, whole and verified.
    let dest = t.path().join("downloads");
    let report = b
        .libraries()
        .download(&lib, &album.id, &dest, |_| {})
        .await
        .unwrap();
    assert_eq!(report.path, dest.join("album"));
    assert_eq!((report.files, report.bytes), (3, big.len() as u64 + 16));
    assert_eq!(std::fs::read(dest.join("album/big.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read(dest.join("album/sub/small.txt")).unwrap(),
        b"hello from alpha"
    );
    assert_eq!(std::fs::read(dest.join("album/sub/empty")).unwrap(), b"");
    // Again: the same bytes are there already, nothing is duplicated.
    b.libraries()
        .download(&lib, &album.id, &dest, |_| {})
        .await
        .unwrap();
    assert!(!dest.join("album/big (1).bin").exists());

    // Interrupted (a part file holds the first 10 MB): it resumes from there.
    let big_entry = named(&seen, "album/big.bin");
    let dest2 = t.path().join("resumed");
    let part = dest2.join(format!(".big.bin.{}.ferry-part", &big_entry.id[..12]));
    write(&part, &big[..10_000_000]);
    let mut seen_progress = 0;
    let r = b
        .libraries()
        .download(&lib, &big_entry.id, &dest2, |p| seen_progress = p.bytes)
        .await
        .unwrap();
    assert_eq!(r.resumed, 10_000_000);
    assert_eq!(seen_progress, big.len() as u64);
    assert_eq!(std::fs::read(dest2.join("big.bin")).unwrap(), big);
    assert!(!part.exists());

    // A part file with damaged bytes: verification fails, nothing is placed, the part goes.
    let dest3 = t.path().join("damaged");
    let part = dest3.join(format!(".big.bin.{}.ferry-part", &big_entry.id[..12]));
    let mut bad = big[..5_000_000].to_vec();
    bad[4_000_000] ^= 0xFF;
    write(&part, &bad);
    let e = b
        .libraries()
        .download(&lib, &big_entry.id, &dest3, |_| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("did not verify"), "{e}");
    assert!(!dest3.join("big.bin").exists() && !part.exists());
    // The same for a small file whose content id is its full hash.
    let small = named(&seen, "album/sub/small.txt");
    let part = dest3.join(format!(".small.txt.{}.ferry-part", &small.id[..12]));
    write(&part, b"HELLO");
    let e = b
        .libraries()
        .download(&lib, &small.id, &dest3, |_| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("did not verify"), "{e}");
    assert!(!dest3.join("small.txt").exists());

    // As the app runs it: a download with state, paused and resumed, and one cancelled.
    use ferry_core::library::media::downloads::DownloadState;
    let state = |id: &str| {
        b.libraries()
            .downloads()
            .into_iter()
            .find(|d| d.id == id)
            .unwrap()
    };
    let dest4 = t.path().join("app-downloads");
    let d = b
        .libraries()
        .save(&lib, &album.id, dest4.clone())
        .await
        .unwrap();
    assert_eq!((d.name.as_str(), d.from.as_str()), ("album", "alpha"));
    b.libraries().pause_download(&d.id).unwrap();
    assert_eq!(state(&d.id).state, DownloadState::Paused);
    b.libraries().resume_download(&d.id).unwrap();
    until("the resumed download done", WAIT, || {
        matches!(state(&d.id).state, DownloadState::Done { .. })
    })
    .await;
    assert_eq!(std::fs::read(dest4.join("album/big.bin")).unwrap(), big);
    assert_eq!(state(&d.id).progress.bytes, big.len() as u64 + 16);
    let dest5 = t.path().join("cancelled");
    let d = b
        .libraries()
        .save(&lib, &big_entry.id, dest5.clone())
        .await
        .unwrap();
    b.libraries().cancel_download(&d.id).await.unwrap();
    assert_eq!(state(&d.id).state, DownloadState::Cancelled);
    let left: Vec<_> = std::fs::read_dir(&dest5)
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "a cancelled download leaves nothing: {left:?}"
    );

    // The owner offline: a clear error.
    a.shutdown().await;
    drop(a);
    owner_offline(&b, &lib, &la).await;
    let e = b
        .libraries()
        .download(&lib, &small.id, &t.path().join("x"), |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "alpha is offline");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_thumbnails_and_floods_from_a_member_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (da, db) = (t.path().join("a"), t.path().join("b"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta")]);
    let fa = t.path().join("alpha-files");
    picture(&fa.join("x.jpg"), 1);
    picture(&fa.join("y.jpg"), 2);
    let blob = data(1 << 20, 3);
    write(&fa.join("blob.bin"), &blob);
    let (a, b, la) = owner_and_member(&da, &db, &lib, &fa, 2).await;
    let seen = all(&b, &lib, &la);

    // A's store holds something that is not a thumbnail for x (a page), and a picture far
    // larger than a thumbnail for y (what a bomb would look like): B stores and serves neither.
    let store = a.libraries().contents().thumbs();
    let x = named(&seen, "x.jpg").cas.unwrap();
    let y = named(&seen, "y.jpg").cas.unwrap();
    std::fs::write(
        store.find(&x).unwrap().0,
        b"\xFF\xD8\xFF<script>alert(1)</script>",
    )
    .unwrap();
    let mut huge = Vec::new();
    image::RgbImage::new(4000, 4000)
        .write_to(
            &mut std::io::Cursor::new(&mut huge),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    std::fs::write(store.find(&y).unwrap().0, &huge).unwrap();
    for cas in [&x, &y] {
        let r = get(&b, &format!("/thumb/{lib}/{cas}"), None).await;
        assert_eq!(r.status, 404, "{}", text(&r));
        assert!(!b.libraries().contents().thumbs().has(cas));
    }

    // 2,000 requests at once: each is answered (queued behind the member's slots), none lost,
    // and A serves normally afterwards.
    let url = format!("/file/{lib}/{}", named(&seen, "blob.bin").id);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2000u64 {
        let (b2, url) = (b.libraries().clone(), url.clone());
        tasks.spawn(async move {
            let at = (i * 499) % (1 << 20);
            let r = b2
                .serve_media(&url, Some(&format!("bytes={at}-{}", at + 99)), false)
                .await;
            (at, r)
        });
    }
    let mut ok = 0;
    while let Some(done) = tasks.join_next().await {
        let (at, r) = done.unwrap();
        if r.status == 206 {
            let at = at as usize;
            assert_eq!(r.body, blob[at..(at + 100).min(blob.len())]);
            ok += 1;
        } else {
            assert_eq!(r.status, 503, "{}", text(&r));
        }
    }
    println!("2,000 concurrent range requests: {ok} served");
    assert!(ok > 0);
    let r = get(&b, &url, Some("bytes=0-9")).await;
    assert_eq!((r.status, &r.body[..]), (206, &blob[..10]));
    a.shutdown().await;
    b.shutdown().await;
}

/// Opens `n` media streams from `from` to `to` asking for a large range, reads only their
/// headers, and keeps them open without reading: each holds one of `to`'s slots for `from`.
async fn stalled(
    from: &Node,
    to: &Node,
    lib: &LibraryId,
    entry: &str,
    n: usize,
) -> Vec<(quinn::SendStream, quinn::RecvStream)> {
    use ferry_core::library::media::wire::{Reply, Request, INNER_MEDIA, MAX_REPLY, MAX_REQUEST};
    let entry = ferry_index::db::parse_id(entry).unwrap();
    let mut held = Vec::new();
    for _ in 0..n {
        let (mut send, mut recv) = from
            .libraries()
            .open_tunnel(&to.id(), lib, INNER_MEDIA)
            .await
            .unwrap();
        let req = Request::File {
            entry,
            first: 0,
            len: 64 << 20,
        };
        ferry_p2p::wire::write_frame(&mut send, &req, MAX_REQUEST)
            .await
            .unwrap();
        let reply: Option<Reply> = ferry_p2p::wire::read_frame(&mut recv, MAX_REPLY)
            .await
            .unwrap();
        assert!(matches!(reply, Some(Reply::Bytes { .. })), "{reply:?}");
        held.push((send, recv));
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_requests_cancelled_streams_an_owner_gone_and_a_removed_member() {
    let t = tempfile::tempdir().unwrap();
    let (da, db) = (t.path().join("a"), t.path().join("b"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta")]);
    let fa = t.path().join("alpha-files");
    let film = data(48 << 20, 4);
    write(&fa.join("film.mkv"), &film);
    let (a, b, la) = owner_and_member(&da, &db, &lib, &fa, 0).await;
    let entry = named(&all(&b, &lib, &la), "film.mkv").id;
    let url = format!("/file/{lib}/{entry}");

    // Sixteen readers that stopped reading hold every one of B's slots on A: a request waits.
    let held = stalled(&b, &a, &lib, &entry, 16).await;
    let libs = b.libraries().clone();
    let u = url.clone();
    let mut waiting =
        tokio::spawn(async move { libs.serve_media(&u, Some("bytes=0-9"), false).await });
    assert!(
        tokio::time::timeout(Duration::from_secs(2), &mut waiting)
            .await
            .is_err(),
        "a 17th request waits for a slot"
    );
    // Dropping the stalled streams (what an abandoned request does) frees their slots at once.
    drop(held);
    // (Without that, the slots would free only when the stalled writes time out, after 30 s.)
    let r = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.status, &r.body[..]), (206, &film[..10]));

    // A request waiting on A when A goes away ends with an error, not a hang.
    let held = stalled(&b, &a, &lib, &entry, 16).await;
    let libs = b.libraries().clone();
    let u = url.clone();
    let waiting = tokio::spawn(async move { libs.serve_media(&u, Some("bytes=0-9"), false).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.shutdown().await;
    drop(a);
    let r = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("an answer, not a hang")
        .unwrap();
    assert_eq!(r.status, 503, "{}", text(&r));
    assert!(text(&r).starts_with("alpha did not answer"), "{}", text(&r));
    drop(held);

    // A removed member gets nothing more: A, back, refuses B's requests in the tunnel.
    let a = start(&da, "alpha").await;
    a.libraries().remove_member(&lib, &b.id()).unwrap();
    link(&a, &b).await;
    let r = get(&b, &url, Some("bytes=0-9")).await;
    assert!(r.status == 503 || r.status == 404, "{r:?}");
    assert!(
        r.body.len() < 100 && r.body != film[..10],
        "no bytes: {}",
        text(&r)
    );
    a.shutdown().await;
    b.shutdown().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The thumbnail store's files and their total size.
fn store_of(node: &Node) -> (usize, u64) {
    let u = node.libraries().contents().thumbs().usage().unwrap();
    (u.len(), u.iter().map(|(_, n, _)| n).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thumbnail_store_stays_under_its_cap_and_keeps_its_own() {
    let t = tempfile::tempdir().unwrap();
    let (da, db) = (t.path().join("a"), t.path().join("b"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta")]);
    let (fa, fb) = (t.path().join("alpha-files"), t.path().join("beta-files"));
    for i in 0..12 {
        picture(&fa.join(format!("a{i}.jpg")), 20 + i);
    }
    picture(&fb.join("mine.jpg"), 99);
    let a = start(&da, "alpha").await;
    let la = add(&a, &lib, &fa).await;
    thumbnailed(&a, &lib, &la, 12).await;
    let sizes: Vec<u64> = a
        .libraries()
        .contents()
        .thumbs()
        .usage()
        .unwrap()
        .iter()
        .map(|u| u.1)
        .collect();
    // Room for about a third of A's thumbnails.
    let cap = sizes.iter().sum::<u64>() / 3;
    let b = start_capped(&db, "beta", true, cap).await;
    let lb = add(&b, &lib, &fb).await;
    thumbnailed(&b, &lib, &lb, 1).await;
    link(&a, &b).await;
    until("A's location on B", WAIT, || {
        converged(&a, &[&b], &lib, &la)
    })
    .await;
    // Preview sync copies until the cap, then stops.
    until("preview sync up to the cap", WAIT, || store_of(&b).0 > 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (n, used) = store_of(&b);
    assert!(
        used <= cap && n < 13,
        "{n} thumbnails, {used} bytes, cap {cap}"
    );

    // A grid asks for every one of A's thumbnails: each is served (fetched on demand), the
    // store evicts the least recently used to stay under the cap, and B's own stays.
    let seen = all(&b, &lib, &la);
    for e in &seen {
        let r = get(
            &b,
            &format!("/thumb/{lib}/{}", e.cas.as_ref().unwrap()),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", text(&r));
        assert!(store_of(&b).1 <= cap + r.body.len() as u64);
    }
    assert!(store_of(&b).1 <= cap, "{:?} against {cap}", store_of(&b));
    let mine = all(&b, &lib, &lb)[0].cas.clone().unwrap();
    assert!(
        b.libraries().contents().thumbs().has(&mine),
        "its own thumbnail is never evicted"
    );
    // The last one asked for is still there: the oldest uses went first.
    assert!(b
        .libraries()
        .contents()
        .thumbs()
        .has(seen.last().unwrap().cas.as_ref().unwrap()));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_sync_skips_a_location_turned_off_here() {
    let t = tempfile::tempdir().unwrap();
    let (da, db) = (t.path().join("a"), t.path().join("b"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta")]);
    let (f1, f2) = (t.path().join("kept"), t.path().join("skipped"));
    picture(&f1.join("k.jpg"), 1);
    picture(&f2.join("s.jpg"), 2);
    let a = start(&da, "alpha").await;
    let l1 = add(&a, &lib, &f1).await;
    let l2 = add(&a, &lib, &f2).await;
    thumbnailed(&a, &lib, &l1, 1).await;
    thumbnailed(&a, &lib, &l2, 1).await;
    // B learns the locations with previews off, turns one off, then copies.
    let b = start_with(&db, "beta", false).await;
    link(&a, &b).await;
    until("A's locations on B", WAIT, || {
        converged(&a, &[&b], &lib, &l1) && converged(&a, &[&b], &lib, &l2)
    })
    .await;
    let info = b
        .libraries()
        .set_location_previews(&lib, &l2, false)
        .unwrap();
    assert!(!info.previews);
    b.libraries().sync_previews(&lib, u64::MAX).await.unwrap();
    let kept = all(&b, &lib, &l1)[0].cas.clone().unwrap();
    let skipped = all(&b, &lib, &l2)[0].cas.clone().unwrap();
    let store = b.libraries().contents().thumbs();
    assert!(store.has(&kept) && !store.has(&skipped));
    // Still shown on demand.
    assert_eq!(
        get(&b, &format!("/thumb/{lib}/{skipped}"), None)
            .await
            .status,
        200
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_whose_drive_moves_to_another_member_keeps_its_id_entries_and_links() {
    let t = tempfile::tempdir().unwrap();
    let (da, db, dc) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta"), (&dc, "gamma")]);
    // The "drive": a folder on B.
    let drive = t.path().join("usb-on-beta");
    picture(&drive.join("dcim/p1.jpg"), 1);
    let song = data(300_000, 7);
    write(&drive.join("music/song.ogg"), &song);
    let a = start_with(&da, "alpha", false).await;
    let b = start(&db, "beta").await;
    let c = start(&dc, "gamma").await;
    let loc = add(&b, &lib, &drive).await;
    thumbnailed(&b, &lib, &loc, 1).await;
    assert!(
        drive.join(".ferry-location").exists(),
        "the location's marker is on the drive"
    );
    link(&a, &b).await;
    link(&a, &c).await;
    link(&b, &c).await;
    until("B's location on A and C", WAIT, || {
        converged(&b, &[&a, &c], &lib, &loc)
    })
    .await;
    let before = all(&a, &lib, &loc);
    assert!(
        before.iter().all(|e| e.name != ".ferry-location"),
        "the marker is never an entry"
    );
    let song_entry = named(&before, "music/song.ogg");

    // A copy of the folder (its marker too) added on C while B has it: a new location.
    let copy = t.path().join("copy-on-gamma");
    copy_dir(&drive, &copy);
    let other = c.libraries().contents().add_location(&lib, &copy).unwrap();
    assert_ne!(ferry_index::db::parse_id(&other.id), Some(loc));
    let marked = ferry_index::marker::read(&copy).unwrap().1;
    assert_eq!(
        ferry_index::db::hex(&marked),
        other.id,
        "the copy's marker names its own location"
    );
    c.libraries()
        .contents()
        .remove_location(&lib, &marked)
        .unwrap();

    // Unplugged from B (B reports the location offline, then goes away), plugged into C.
    let moved = t.path().join("usb-on-gamma");
    std::fs::rename(&drive, &moved).unwrap();
    until("the location offline on C", WAIT, || {
        !c.libraries()
            .contents()
            .location(&lib, &loc)
            .unwrap()
            .online
    })
    .await;
    b.shutdown().await;
    drop(b);
    owner_offline(&c, &lib, &loc).await;
    let info = c.libraries().contents().add_location(&lib, &moved).unwrap();
    assert_eq!(
        ferry_index::db::parse_id(&info.id),
        Some(loc),
        "the same location"
    );
    assert!(info.local);
    let c_id = c.id().fingerprint();
    until("A sees the location on C, as C indexes it", WAIT, || {
        a.libraries()
            .contents()
            .location(&lib, &loc)
            .is_ok_and(|l| l.owner == c_id)
            && converged(&c, &[&a], &lib, &loc)
    })
    .await;
    // The same entries (ids, content ids) as before the move, and links to them still work,
    // now served by C.
    let after = all(&a, &lib, &loc);
    let ids = |v: &[EntryInfo]| {
        let mut v: Vec<(String, String, Option<String>)> = v
            .iter()
            .map(|e| (e.id.clone(), e.path.clone(), e.cas.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&after), ids(&before));
    let r = get(
        &a,
        &format!("/file/{lib}/{}", song_entry.id),
        Some("bytes=100-199"),
    )
    .await;
    assert_eq!(
        (r.status, &r.body[..]),
        (206, &song[100..200]),
        "{}",
        text(&r)
    );
    let pic = named(&after, "dcim/p1.jpg").cas.unwrap();
    until("C has the picture's thumbnail", WAIT, || {
        c.libraries().contents().thumbs().has(&pic)
    })
    .await;
    assert_eq!(
        get(&a, &format!("/thumb/{lib}/{pic}"), None).await.status,
        200
    );

    // B comes back without the drive: it learns where its location went and lets it go.
    let b = start(&db, "beta").await;
    link(&b, &c).await;
    until("B sees its old location as C's", WAIT, || {
        b.libraries()
            .contents()
            .location(&lib, &loc)
            .is_ok_and(|l| !l.local && l.owner == c_id)
            && converged(&c, &[&b], &lib, &loc)
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}
