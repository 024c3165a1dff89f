//! Remote media benchmark: real nodes on 127.0.0.1 (discovery off), real SQLite files, real
//! JPEG pictures, all in this one process. Prints figures; asserts nothing about time.
//!
//! 1. A remote grid: B opens A's folder of N pictures (default 10,000): time from asking for a
//!    screen (60 tiles) to all its thumbnails fetched through `ferry://` and decoded — with the
//!    thumbnails not yet synced, then synced.
//! 2. Preview-media sync of the whole folder: thumbnails/s, bytes, peak RSS of the process.
//! 3. A 256 MiB file read through `ferry://` the way a media element reads (`bytes=a-`, one
//!    answer after another), remote (B reading A's) against local (A reading its own): MB/s.
//! 4. Seeks in that file: request to answer, for a 64 KiB range and for an open-ended one.
//! 5. That file downloaded (`ferry get`, *Save to this device*): fetched, written, flushed and
//!    verified with BLAKE3, MB/s.
//!
//! `cargo run --release -p ferry-core --example media_bench -- [N]`

#[path = "../tests/support/members.rs"]
mod members;

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_core::library::wire::LibraryId;
use ferry_core::Node;
use ferry_index::{EntryInfo, LocationId};
use members::{converged, link, shared_library, start, start_with, until};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const SCREEN: u32 = 60;
const BIG: usize = 256 << 20;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// N distinct pictures: a gradient, and a strip of 8×8 blocks along the top that spells the
/// picture's number in binary (so no two files, ids or thumbnails are the same).
fn pictures(dir: &Path, n: usize) -> Res<()> {
    std::fs::create_dir_all(dir)?;
    for i in 0..n {
        image::RgbImage::from_fn(480, 320, |x, y| {
            if y < 8 && x < 8 * 16 {
                let on = (i >> (x / 8)) & 1 == 1;
                return image::Rgb(if on { [255; 3] } else { [0; 3] });
            }
            image::Rgb([(x / 2) as u8, (y * 3 / 4) as u8, ((x + y) / 4) as u8])
        })
        .save(dir.join(format!("img-{i:05}.jpg")))?;
    }
    Ok(())
}

fn page(node: &Node, lib: &LibraryId, loc: &LocationId, dir: &str, at: u32) -> Vec<EntryInfo> {
    node.libraries()
        .contents()
        .page(lib, loc, dir, at, SCREEN)
        .map(|p| p.entries)
        .unwrap_or_default()
}

/// Asks for one screen of the folder and fetches and decodes every thumbnail on it, all at
/// once like a grid does; returns how long that took, and how many decoded.
async fn screen(node: &Node, lib: &LibraryId, loc: &LocationId, at: u32) -> (Duration, usize) {
    let t = Instant::now();
    let entries = page(node, lib, loc, "pics", at);
    let mut tasks = tokio::task::JoinSet::new();
    for e in entries.into_iter().filter(|e| e.thumb) {
        let (libs, url) = (
            node.libraries().clone(),
            format!("/thumb/{lib}/{}", e.cas.unwrap_or_default()),
        );
        tasks.spawn(async move {
            let r = libs.serve_media(&url, None, false).await;
            tokio::task::spawn_blocking(move || {
                r.status == 200 && image::load_from_memory(&r.body).is_ok()
            })
            .await
            .unwrap_or(false)
        });
    }
    let mut ok = 0;
    while let Some(d) = tasks.join_next().await {
        ok += usize::from(d.unwrap_or(false));
    }
    (t.elapsed(), ok)
}

/// Reads the whole file as a media element would; MB/s.
async fn read_through(node: &Node, url: &str, len: usize) -> f64 {
    let t = Instant::now();
    let mut at = 0;
    while at < len {
        let r = node
            .libraries()
            .serve_media(url, Some(&format!("bytes={at}-")), false)
            .await;
        assert_eq!(r.status, 206, "{}", String::from_utf8_lossy(&r.body));
        at += r.body.len();
    }
    len as f64 / 1e6 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let t = tempfile::tempdir()?;
    let (da, db) = (t.path().join("a"), t.path().join("b"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta")]);
    let files = t.path().join("alpha-files");
    let made = Instant::now();
    pictures(&files.join("pics"), n)?;
    let big: Vec<u8> = (0..BIG).map(|i| (i * 31 + i / 4093) as u8).collect();
    std::fs::create_dir_all(files.join("video"))?;
    std::fs::write(files.join("video/film.mp4"), &big)?;
    println!(
        "made {n} pictures (480×320 JPEG) and a {} MiB file in {:.1} s",
        BIG >> 20,
        made.elapsed().as_secs_f64()
    );

    let a = start(&da, "alpha").await;
    let b = start_with(&db, "beta", false).await;
    let info = a.libraries().contents().add_location(&lib, &files)?;
    let loc = ferry_index::db::parse_id(&info.id).ok_or("location id")?;
    let t0 = Instant::now();
    until("A's thumbnails", Duration::from_secs(1800), || {
        a.libraries()
            .contents()
            .page(&lib, &loc, "pics", 0, u32::MAX)
            .map(|p| p.entries.iter().filter(|e| e.thumb).count() == n)
            .unwrap_or(false)
    })
    .await;
    println!(
        "A indexed and thumbnailed them in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    link(&a, &b).await;
    until("A's location on B", Duration::from_secs(600), || {
        converged(&a, &[&b], &lib, &loc)
    })
    .await;

    // 1. A remote grid, thumbnails not synced: five screens spread over the folder.
    let spread = (n as u32 / 5).max(2 * SCREEN) - SCREEN;
    let mut cold = vec![];
    for k in 0..5 {
        let (took, ok) = screen(&b, &lib, &loc, k * spread).await;
        assert_eq!(ok, SCREEN as usize, "every thumbnail of the screen decoded");
        cold.push(took.as_secs_f64() * 1e3);
    }
    println!(
        "remote grid, not synced: a screen of {SCREEN} thumbnails fetched and decoded in {:.0} ms median ({:.0}–{:.0} over {} screens; target <= 300 ms)",
        median(cold.clone()),
        cold.iter().cloned().fold(f64::MAX, f64::min),
        cold.iter().cloned().fold(0.0, f64::max),
        cold.len()
    );

    // 2. Preview sync of the rest.
    let rss0 = peak_rss_mib();
    let t0 = Instant::now();
    let bytes = b.libraries().sync_previews(&lib, u64::MAX).await?;
    let secs = t0.elapsed().as_secs_f64();
    let copied = n - 5 * SCREEN as usize;
    println!(
        "preview sync: {copied} thumbnails, {:.1} MB, in {secs:.2} s: {:.0} thumbnails/s; peak RSS of the process (both nodes) {:.0} MiB (before: {rss0:.0} MiB)",
        bytes as f64 / 1e6,
        copied as f64 / secs,
        peak_rss_mib()
    );
    // Where preview sync's time goes: the check (a decode) and the store's write (fsync each).
    let store = b.libraries().contents().thumbs().clone();
    let stored: Vec<(String, Vec<u8>)> = page(&b, &lib, &loc, "pics", 0)
        .into_iter()
        .filter_map(|e| {
            let cas = e.cas?;
            let bytes = std::fs::read(store.find(&cas)?.0).ok()?;
            Some((cas, bytes))
        })
        .collect();
    let t0 = Instant::now();
    for (_, bytes) in &stored {
        ferry_index::thumb::check_received(bytes)?;
    }
    let check = t0.elapsed().as_secs_f64() / stored.len() as f64;
    let scratch = ferry_index::thumb::ThumbStore::new(t.path().join("scratch"));
    let t0 = Instant::now();
    for (cas, bytes) in &stored {
        scratch.put(cas, bytes)?;
    }
    let put = t0.elapsed().as_secs_f64() / stored.len() as f64;
    println!(
        "  per thumbnail, one thread: check (decode) {:.2} ms, store (write, fsync, rename) {:.2} ms",
        check * 1e3,
        put * 1e3
    );
    let mut warm = vec![];
    for k in 0..5 {
        let (took, ok) = screen(&b, &lib, &loc, k * spread + SCREEN).await;
        assert_eq!(ok, SCREEN as usize);
        warm.push(took.as_secs_f64() * 1e3);
    }
    println!(
        "remote grid, synced: a screen in {:.0} ms median",
        median(warm)
    );

    // 3. A large file read through ferry://, remote against local.
    let film = page(&b, &lib, &loc, "video", 0)
        .into_iter()
        .find(|e| e.name == "film.mp4")
        .ok_or("the film")?;
    let url = format!("/file/{lib}/{}", film.id);
    let local = read_through(&a, &url, BIG).await;
    let remote = read_through(&b, &url, BIG).await;
    let local2 = read_through(&a, &url, BIG).await;
    let remote2 = read_through(&b, &url, BIG).await;
    println!(
        "a {} MiB file through ferry:// (bytes=a- answers of 8 MiB): local {local:.0} / {local2:.0} MB/s, remote {remote:.0} / {remote2:.0} MB/s: remote at {:.0} % of local (target >= 80 %)",
        BIG >> 20,
        100.0 * (remote + remote2) / (local + local2)
    );

    // 4. Seeks.
    let mut small = vec![];
    let mut open = vec![];
    for k in 0..40usize {
        let at = (k * 6_700_417) % (BIG - 70_000);
        let t = Instant::now();
        let r = b
            .libraries()
            .serve_media(&url, Some(&format!("bytes={at}-{}", at + 65_535)), false)
            .await;
        small.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.body[..], big[at..at + 65_536]);
        let t = Instant::now();
        let r = b
            .libraries()
            .serve_media(&url, Some(&format!("bytes={at}-")), false)
            .await;
        open.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.status, 206);
    }
    println!(
        "a seek in a remote file, request to answer: {:.1} ms median for 64 KiB, {:.1} ms for an open-ended range (target <= 50 ms)",
        median(small),
        median(open)
    );

    // 5. A download of it, verified.
    let mut rates = vec![];
    for k in 0..2 {
        let dest = t.path().join(format!("got-{k}"));
        let t0 = Instant::now();
        b.libraries()
            .download(&lib, &film.id, &dest, |_| {})
            .await?;
        rates.push(BIG as f64 / 1e6 / t0.elapsed().as_secs_f64());
    }
    println!(
        "a {} MiB file downloaded, written, flushed and verified (BLAKE3): {:.0} / {:.0} MB/s",
        BIG >> 20,
        rates[0],
        rates[1]
    );
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
