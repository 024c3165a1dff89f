//! Indexing benchmark: N small files (default 100,000 × 1 KiB in 1,000 folders) in a temp dir,
//! then a walk (scan), content ids (identify), a rescan with nothing changed, and the watcher's
//! latency from a write to its row. Prints figures; asserts nothing.
//!
//! `cargo run --release -p ferry-index --example index_bench -- [N]`

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_index::watch::Debounce;
use ferry_index::{Contents, WatchEvent, Watcher};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let t = tempfile::tempdir()?;
    let root = t.path().join("loc");
    let per_dir = 100;
    for i in 0..n {
        let dir = root.join(format!("d{:04}", i / per_dir));
        if i % per_dir == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        let mut body = vec![0u8; 1024];
        body[..8].copy_from_slice(&(i as u64).to_le_bytes());
        std::fs::write(dir.join(format!("{i}.txt")), body)?;
    }
    let db = t.path().join("library.db");
    rusqlite::Connection::open(&db)?;
    let c = Arc::new(Contents::open(&db, [1; 32])?);
    let loc = ferry_index::db::parse_id(&c.add_location(&root)?.id).ok_or("id")?;
    let no = AtomicBool::new(false);
    println!(
        "index_bench: {n} files of 1 KiB in {} folders",
        n.div_ceil(per_dir)
    );
    println!("peak RSS before indexing: {:.1} MiB", peak_rss_mib());

    let t0 = Instant::now();
    let r = c.scan(&loc, &no, &mut |_| {})?;
    let walk = t0.elapsed().as_secs_f64();
    println!(
        "walk (scan, {} rows written): {:.2} s = {:.0} entries/s",
        r.added,
        walk,
        r.seen as f64 / walk
    );
    let t0 = Instant::now();
    let r = c.identify(&loc, &no, &mut |_, _| {})?;
    let id = t0.elapsed().as_secs_f64();
    println!(
        "content ids: {:.2} s = {:.0} files/s; walk + ids together {:.0} files/s",
        id,
        r.identified as f64 / id,
        n as f64 / (walk + id)
    );
    let t0 = Instant::now();
    let r = c.scan(&loc, &no, &mut |_| {})?;
    let re = t0.elapsed().as_secs_f64();
    println!(
        "rescan, nothing changed: {:.2} s = {:.0} entries/s ({} updated)",
        re,
        r.seen as f64 / re,
        r.updated
    );
    println!("peak RSS after indexing: {:.1} MiB", peak_rss_mib());

    let (tx, rx) = std::sync::mpsc::channel();
    let cc = c.clone();
    let mut w = Watcher::new(Debounce::default(), move |ev| {
        if let WatchEvent::Changed { location, paths } = ev {
            let _ = cc.apply(&location, &paths);
            let _ = tx.send(Instant::now());
        }
    })?;
    let t0 = Instant::now();
    w.watch(loc, &root)?;
    println!(
        "watching {} folders took {:.0} ms",
        n.div_ceil(per_dir) + 1,
        t0.elapsed().as_secs_f64() * 1e3
    );
    let mut lat = Vec::new();
    for i in 0..20 {
        let t0 = Instant::now();
        std::fs::write(root.join(format!("d0000/new{i}.txt")), b"new")?;
        let seen = rx.recv_timeout(Duration::from_secs(5))?;
        lat.push(seen.duration_since(t0).as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(50));
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "watcher latency, write to row (20 writes): median {:.0} ms, max {:.0} ms (debounce quiet 150 ms)",
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    Ok(())
}
