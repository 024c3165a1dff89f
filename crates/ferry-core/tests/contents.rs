//! A real node indexing a real folder: locations, the index and its events, thumbnails made
//! in the background, the live watcher, restarts, and the `ferry://` answers with Range.

#[path = "support/nodes.rs"]
mod nodes;

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_core::{AcceptPolicy, Event};
use nodes::*;

fn photo(path: &Path, w: u32, h: u32, seed: u8) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x as u8).wrapping_add(seed), y as u8, seed])
    });
    img.save(path).unwrap();
}

/// Waits for an event matching `f`, skipping others.
async fn wait_for(
    rx: &mut tokio::sync::broadcast::Receiver<Event>,
    what: &str,
    f: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = Instant::now() + Duration::from_secs(30);
    // What the indexer said meanwhile, for the failure message.
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(e)) if f(&e) => return e,
            Ok(Ok(Event::Index { progress })) => seen.push(format!("{progress:?}")),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => seen.push(format!("{e:?}")),
            Err(_) => panic!("{what}: not within 30 s; index events meanwhile: {seen:#?}"),
        }
    }
}

fn header<'a>(r: &'a ferry_index::serve::Response, name: &str) -> &'a str {
    r.header(name).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_is_indexed_thumbnailed_watched_and_served() {
    let t = tempfile::tempdir().unwrap();
    let folder = t.path().join("Pictures");
    std::fs::create_dir_all(folder.join("trip")).unwrap();
    photo(&folder.join("trip/a.png"), 640, 480, 1);
    photo(&folder.join("trip/b.jpg"), 300, 900, 2);
    std::fs::copy(folder.join("trip/a.png"), folder.join("copy-of-a.png")).unwrap();
    std::fs::write(folder.join("notes.txt"), b"0123456789abcdef").unwrap();
    std::fs::write(folder.join("broken.jpg"), b"not a jpeg at all").unwrap();

    let mut p = peer(
        &t.path().join("n"),
        "indexer",
        AcceptPolicy::Ask,
        "127.0.0.1:0",
    )
    .await;
    let libs = p.node.libraries().clone();
    let lib = libs.create("Photos").unwrap();
    let lib_id = ferry_core::library::wire::LibraryId::parse(&lib.id).unwrap();
    let c = libs.contents();
    let started = Instant::now();
    let loc = c.add_location(&lib_id, &folder).unwrap();
    let loc_id = ferry_core::library::contents::parse_loc(&loc.id).unwrap();
    wait_for(&mut p.events, "thumbnails done", |e| {
        matches!(e, Event::Index { progress } if progress.phase == "done" && progress.message.as_deref().is_some_and(|m| m.contains("could not be read")))
    })
    .await;
    println!(
        "indexed and thumbnailed in {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let info = &c.locations(&lib_id).unwrap()[0];
    assert_eq!(
        (
            info.files,
            info.folders,
            info.identified,
            info.state.as_str()
        ),
        (5, 1, 5, "done"),
        "{info:?}"
    );

    let top = c.list(&lib_id, &loc_id, "").unwrap();
    let names: Vec<_> = top.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["trip", "broken.jpg", "copy-of-a.png", "notes.txt"]);
    let trip = c.list(&lib_id, &loc_id, "trip").unwrap();
    let a = trip.iter().find(|e| e.name == "a.png").unwrap();
    let copy = top.iter().find(|e| e.name == "copy-of-a.png").unwrap();
    assert_eq!(a.cas, copy.cas, "duplicates share a content id");
    assert!(a.thumb && copy.thumb && trip.iter().all(|e| e.thumb));
    assert!(!top.iter().find(|e| e.name == "broken.jpg").unwrap().thumb);
    let thumbs = std::fs::read_dir(t.path().join("n/data/thumbnails"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .count();
    assert_eq!(thumbs, 2, "one thumbnail per content, shared by duplicates");

    // ferry:// answers: thumbnails by content id, files by entry id, with Range.
    let thumb = libs
        .serve_media(
            &format!("/thumb/{}/{}", lib.id, a.cas.as_ref().unwrap()),
            None,
            false,
        )
        .await;
    assert_eq!(
        (thumb.status, header(&thumb, "Content-Type")),
        (200, "image/jpeg")
    );
    let img = image::load_from_memory(&thumb.body).unwrap();
    assert_eq!((img.width(), img.height()), (256, 192));
    let notes = top.iter().find(|e| e.name == "notes.txt").unwrap();
    let r = libs
        .serve_media(
            &format!("/file/{}/{}", lib.id, notes.id),
            Some("bytes=4-7"),
            false,
        )
        .await;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"4567"[..]));
    assert_eq!(header(&r, "Content-Range"), "bytes 4-7/16");
    assert!(header(&r, "Content-Type").starts_with("text/plain"));
    let r = libs
        .serve_media(
            &format!("/file/{}/{}", lib.id, notes.id),
            Some("bytes=99-"),
            false,
        )
        .await;
    assert_eq!((r.status, header(&r, "Content-Range")), (416, "bytes */16"));
    let other = libs.create("Other").unwrap();
    for (path, status) in [
        (format!("/file/{}/{}", lib.id, "00".repeat(16)), 404),
        (format!("/file/{}/..%2F..%2Fetc%2Fpasswd", lib.id), 400),
        (format!("/file/{}/{}", "ab".repeat(16), notes.id), 404),
        (
            format!("/thumb/{}/{}", other.id, a.cas.as_ref().unwrap()),
            404,
        ),
        (format!("/file/{}/{}", other.id, notes.id), 404),
        ("/etc/passwd".to_string(), 404),
    ] {
        assert_eq!(
            libs.serve_media(&path, None, false).await.status,
            status,
            "{path}"
        );
    }

    // The watcher: a new photo shows within about a second, with its thumbnail soon after.
    let t0 = Instant::now();
    photo(&folder.join("trip/new.png"), 100, 100, 9);
    while !c
        .list(&lib_id, &loc_id, "trip")
        .unwrap()
        .iter()
        .any(|e| e.name == "new.png")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the watcher saw no new file"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = t0.elapsed();
    println!(
        "watcher: new file listed {:.0} ms after the write",
        seen.as_secs_f64() * 1e3
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c
        .list(&lib_id, &loc_id, "trip")
        .unwrap()
        .iter()
        .any(|e| e.name == "new.png" && e.thumb)
    {
        assert!(Instant::now() < deadline, "thumbnail of a new file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A file swapped for a symlink to a secret is not served through its old entry (the index
    // never follows links; serving checks before the watcher has even noticed).
    let secret = t.path().join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();
    std::fs::remove_file(folder.join("trip/a.png")).unwrap();
    std::os::unix::fs::symlink(&secret, folder.join("trip/a.png")).unwrap();
    let r = libs
        .serve_media(&format!("/file/{}/{}", lib.id, a.id), None, false)
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(!String::from_utf8_lossy(&r.body).contains("top secret"));

    // Restart: the index is there at once, and a change made while stopped is found.
    p.node.shutdown().await;
    drop(p);
    std::fs::remove_file(folder.join("notes.txt")).unwrap();
    let p = peer(
        &t.path().join("n"),
        "indexer",
        AcceptPolicy::Ask,
        "127.0.0.1:0",
    )
    .await;
    let c = p.node.libraries().contents().clone();
    assert!(c.list(&lib_id, &loc_id, "trip").unwrap().len() == 3);
    // Polled, not awaited as an event: the rescan starts inside Node::start and can be done
    // before this test has subscribed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while c
        .list(&lib_id, &loc_id, "")
        .unwrap()
        .iter()
        .any(|e| e.name == "notes.txt")
    {
        assert!(
            Instant::now() < deadline,
            "no rescan after restart: {:?}",
            c.locations(&lib_id)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Removing the location forgets its entries, not the folder.
    c.remove_location(&lib_id, &loc_id).unwrap();
    assert!(c.locations(&lib_id).unwrap().is_empty());
    assert!(c.list(&lib_id, &loc_id, "").unwrap().is_empty());
    assert!(folder.join("trip/a.png").exists());
    p.node.shutdown().await;
}
