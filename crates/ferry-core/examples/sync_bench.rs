//! Library sync benchmark: real nodes on 127.0.0.1 (discovery off), real SQLite files, real
//! folders, all in this one process. Prints figures; asserts nothing about time.
//!
//! 1. Initial sync of an N-entry location (default 100,000 files of 64 B in 1,000 folders) from
//!    A to a new member B: entries/s, bytes on the wire per entry, peak RSS.
//! 2. Latency from a file written on A to its row (with its content id) on C through B (A–B and
//!    B–C linked, A and C not), beside A's own index latency (the watcher's debounce).
//! 3. Catch-up of N/10 changed files after B was offline.
//! 4. Ed25519 sign + verify of a postcard-encoded entry row, against sync's rows per second.
//!
//! `cargo run --release -p ferry-core --example sync_bench -- [N]`

#[path = "../tests/support/members.rs"]
mod members;

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_core::library::wire::LibraryId;
use ferry_core::{Event, Node};
use ferry_index::replica::EntryRecord;
use ferry_index::LocationId;
use members::{link, listing, shared_library, start};
use tokio::sync::broadcast;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const FOLDERS: usize = 1000;
/// Latency probes (part 2).
const PROBES: usize = 20;
/// How long any one wait may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(600);

/// A field of `/proc/self/status` in MiB (`VmHWM` peak, `VmRSS` now).
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// CPU time this process has used (all threads, user + system), in seconds: the machine is
/// shared, so rates per CPU-second say more than rates per wall-second. `/proc/self/stat`
/// counts in USER_HZ, which is 100 on Linux.
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<u64> = s
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .skip(11)
                .take(2)
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            Some((f[0] + f[1]) as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

/// Resets the process's peak RSS to its current RSS (Linux ≥ 4.0), so a phase's peak can be read
/// on its own.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn body(i: usize, len: usize) -> Vec<u8> {
    let mut b = vec![b'.'; len];
    let tag = format!("{i:08}");
    b[..8].copy_from_slice(tag.as_bytes());
    b
}

fn file_path(root: &Path, i: usize, n: usize) -> std::path::PathBuf {
    let per = n.div_ceil(FOLDERS);
    root.join(format!("d{:04}", i / per))
        .join(format!("f{i:06}.txt"))
}

fn make_tree(root: &Path, n: usize) -> Res<()> {
    let per = n.div_ceil(FOLDERS);
    for i in 0..n {
        let p = file_path(root, i, n);
        if i % per == 0 {
            std::fs::create_dir_all(p.parent().ok_or("parent")?)?;
        }
        std::fs::write(p, body(i, 64))?;
    }
    Ok(())
}

fn own_seq(node: &Node, lib: &LibraryId) -> Res<i64> {
    Ok(node.libraries().contents().of(lib)?.own_mark()?.seq)
}

/// How far `node` holds `author`'s sequence.
fn held(node: &Node, lib: &LibraryId, author: &Node) -> Res<i64> {
    Ok(node
        .libraries()
        .contents()
        .of(lib)?
        .marks()?
        .into_iter()
        .find(|m| m.author == author.id().0)
        .map_or(0, |m| m.seq))
}

/// Polls `f` every `every` until it holds; an error after [`PATIENCE`].
async fn until(what: &str, every: Duration, mut f: impl FnMut() -> Res<bool>) -> Res<Duration> {
    let t = Instant::now();
    while !f()? {
        if t.elapsed() > PATIENCE {
            return Err(format!("not within {PATIENCE:?}: {what}").into());
        }
        tokio::time::sleep(every).await;
    }
    Ok(t.elapsed())
}

/// Waits until `other` holds all of `owner`'s changes and lists `loc` exactly as `owner` does;
/// `events` is `other`'s subscription. Checks when one of its pulls reports caught up (and
/// every second), not by polling: reading the marks costs a count over the replica, which
/// would take CPU from the sync being measured. Returns the time since `t0` at which that
/// report arrived, and how many changes the pull had received by then.
async fn converged(
    t0: Instant,
    owner: &Node,
    other: &Node,
    events: &mut broadcast::Receiver<Event>,
    lib: &LibraryId,
    loc: &LocationId,
) -> Res<(Duration, u64)> {
    let mut received = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
            Ok(Ok(Event::Sync { progress })) if progress.state == "caught_up" => {
                received = progress.received;
            }
            Ok(Ok(_)) => continue,
            Ok(Err(broadcast::error::RecvError::Closed)) => return Err("node stopped".into()),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => {}
        }
        let at = t0.elapsed();
        if held(other, lib, owner)? >= own_seq(owner, lib)?
            && listing(other, lib, loc) == listing(owner, lib, loc)
        {
            return Ok((at, received));
        }
        if at > PATIENCE {
            return Err(format!("not converged within {PATIENCE:?}").into());
        }
    }
}

/// Waits until the owner's own counter has not moved for `quiet` (its index is at rest).
async fn settled(node: &Node, lib: &LibraryId, quiet: Duration) -> Res<()> {
    let mut last = (own_seq(node, lib)?, Instant::now());
    until("the index at rest", Duration::from_millis(50), || {
        let s = own_seq(node, lib)?;
        if s != last.0 {
            last = (s, Instant::now());
        }
        Ok(last.1.elapsed() >= quiet)
    })
    .await?;
    Ok(())
}

/// Bytes both ways on the connection from `a` to `b`, so far.
fn wire_bytes(a: &Node, b: &Node) -> u64 {
    a.p2p().connection(&b.id()).map_or(0, |c| {
        let s = c.stats();
        s.udp_tx.bytes + s.udp_rx.bytes
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Whether `node` lists `probe/<name>` with a content id.
fn has_probe(node: &Node, lib: &LibraryId, loc: &LocationId, name: &str) -> Res<bool> {
    Ok(node
        .libraries()
        .contents()
        .list(lib, loc, "probe")?
        .iter()
        .any(|e| e.name == name && e.cas.is_some()))
}

/// Part 4's figures, rows per second.
struct Signing {
    sign: f64,
    verify: f64,
    /// Sign + verify, per wall-second and per CPU-second.
    both: f64,
    both_cpu: f64,
}

/// Part 4: Ed25519 over realistic rows, on one thread: each row postcard-encoded and signed
/// (the author's cost), then verified (each receiver's).
fn signing(rows: usize) -> Res<Signing> {
    let id = ferry_p2p::Identity::generate()?;
    let me = id.peer_id();
    let record = |i: usize| EntryRecord {
        id: *blake3::hash(&i.to_le_bytes())
            .as_bytes()
            .first_chunk()
            .unwrap_or(&[0; 16]),
        location: [7; 16],
        rel: format!("d{:04}/f{i:06}.txt", i / 100).into_bytes(),
        kind: 0,
        size: 64,
        mtime: 1_763_700_000_123_456_789 + i as i64,
        cas: Some(*blake3::hash(&body(i, 64)).as_bytes()),
        error: None,
        seq: 1000 + i as i64,
    };
    let records: Vec<EntryRecord> = (0..rows).map(record).collect();
    let (t0, cpu0) = (Instant::now(), cpu_secs());
    let signed: Vec<(Vec<u8>, [u8; 64])> = records
        .iter()
        .map(|r| {
            let bytes = postcard::to_stdvec(r).expect("an entry encodes");
            let sig = id.sign(&bytes);
            (bytes, sig)
        })
        .collect();
    let sign = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let ok = signed.iter().filter(|(m, s)| me.verify(m, s)).count();
    let verify = t1.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    if ok != rows {
        return Err("a signature did not verify".into());
    }
    let n = rows as f64;
    let bytes = signed.iter().map(|(m, _)| m.len()).sum::<usize>() as f64 / n;
    println!("  signing: {rows} rows, postcard-encoded entry {bytes:.0} B each (+64 B signature)");
    Ok(Signing {
        sign: n / sign,
        verify: n / verify,
        both: n / (sign + verify),
        both_cpu: n / cpu,
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Res<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let changes = n / 10;
    let t = tempfile::tempdir()?;
    let (da, db, dc) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta"), (&dc, "gamma")]);
    // The location's files in memory when there is a tmpfs (making and removing 100,000
    // files on a shared VM's disk takes minutes and is not what is measured); the nodes' data
    // dirs, with their SQLite files, on disk.
    let files = match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm")?,
        false => tempfile::tempdir()?,
    };
    let root = files.path().join("alpha-files");
    println!(
        "sync_bench: {n} files of 64 B in {FOLDERS} folders under {}; nodes A, B, C in this \
         one process, their data in {}",
        files.path().display(),
        t.path().display()
    );
    let t0 = Instant::now();
    make_tree(&root, n)?;
    println!("  files written in {:.1} s", t0.elapsed().as_secs_f64());

    // A indexes the location fully (walk + content ids) before anyone syncs.
    let a = start(&da, "alpha").await;
    let t0 = Instant::now();
    let info = a.libraries().contents().add_location(&lib, &root)?;
    let la = ferry_index::db::parse_id(&info.id).ok_or("location id")?;
    until("A's index", Duration::from_millis(250), || {
        let l = a.libraries().contents().location(&lib, &la)?;
        Ok(l.state == "done" && l.identified >= n as u64)
    })
    .await?;
    let index_time = t0.elapsed();
    settled(&a, &lib, Duration::from_millis(500)).await?;
    let entries = listing(&a, &lib, &la).len();
    let rss_a = status_mib("VmHWM:");
    println!(
        "  A indexed {entries} entries (walk + content ids) in {:.1} s; peak RSS so far {rss_a:.1} MiB",
        index_time.as_secs_f64()
    );

    // 1. Initial sync to a new member B.
    let peak_reset = reset_peak();
    let rss_before = status_mib("VmRSS:");
    let (t0, cpu0) = (Instant::now(), cpu_secs());
    let b = start(&db, "beta").await;
    let mut b_events = b.subscribe();
    link(&a, &b).await;
    let (initial, sent) = converged(t0, &a, &b, &mut b_events, &lib, &la).await?;
    let cpu = cpu_secs() - cpu0;
    let per_cpu = entries as f64 / cpu;
    let wire = wire_bytes(&a, &b);
    let rss_sync = status_mib("VmHWM:");
    let rate = entries as f64 / initial.as_secs_f64();
    println!(
        "  1. initial sync: {entries} entries ({sent} changes) on B in {:.2} s = {rate:.0} entries/s; \
         {cpu:.2} CPU-s (A and B) = {per_cpu:.0} entries/CPU-s; {wire} B on the wire = {:.1} B/entry; RSS {rss_before:.1} MiB before B, peak {rss_sync:.1} MiB \
         (A and B together{})",
        initial.as_secs_f64(),
        wire as f64 / entries as f64,
        if peak_reset { ", peak reset before B" } else { ", peak NOT reset" }
    );

    // C joins through B only: it gets A's rows relayed by B.
    let (t0, cpu0) = (Instant::now(), cpu_secs());
    let c = start(&dc, "gamma").await;
    let mut c_events = c.subscribe();
    link(&c, &b).await;
    let (relayed, _) = converged(t0, &a, &c, &mut c_events, &lib, &la).await?;
    let relay_cpu = cpu_secs() - cpu0;
    println!(
        "     relayed initial sync A→B→C: {:.2} s = {:.0} entries/s; {relay_cpu:.2} CPU-s = {:.0} entries/CPU-s",
        relayed.as_secs_f64(),
        entries as f64 / relayed.as_secs_f64(),
        entries as f64 / relay_cpu
    );

    // 2. Latency: write on A, row with its content id on A (A's watcher and indexer) and on C.
    std::fs::create_dir_all(root.join("probe"))?;
    until("the probe folder on C", Duration::from_millis(10), || {
        Ok(c.libraries()
            .contents()
            .list(&lib, &la, "")?
            .iter()
            .any(|e| e.name == "probe"))
    })
    .await?;
    let (mut on_a, mut on_c, mut extra) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..PROBES {
        let name = format!("p{i:02}.txt");
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(root.join("probe").join(&name), body(i, 200))?;
        let t0 = Instant::now();
        let (mut ta, mut tc) = (None, None);
        until("a probe on A and C", Duration::from_millis(2), || {
            if ta.is_none() && has_probe(&a, &lib, &la, &name)? {
                ta = Some(t0.elapsed());
            }
            if tc.is_none() && has_probe(&c, &lib, &la, &name)? {
                tc = Some(t0.elapsed());
            }
            Ok(ta.is_some() && tc.is_some())
        })
        .await?;
        let (ta, tc) = (ms(ta.unwrap_or_default()), ms(tc.unwrap_or_default()));
        on_a.push(ta);
        on_c.push(tc);
        extra.push(tc - ta);
    }
    let lat = [
        (quantile(&mut on_a, 0.5), quantile(&mut on_a, 0.9)),
        (quantile(&mut on_c, 0.5), quantile(&mut on_c, 0.9)),
        (quantile(&mut extra, 0.5), quantile(&mut extra, 0.9)),
    ];
    println!(
        "  2. write on A → row with content id, {PROBES} files: on A median {:.0} ms p90 {:.0} ms \
         (debounce 150 ms); on C via B median {:.0} ms p90 {:.0} ms; C after A median {:.1} ms p90 {:.1} ms",
        lat[0].0, lat[0].1, lat[1].0, lat[1].1, lat[2].0, lat[2].1
    );

    // 3. Catch-up: B offline while A changes `changes` files, then B back.
    c.shutdown().await;
    drop(c);
    b.shutdown().await;
    drop(b);
    let seq_before = own_seq(&a, &lib)?;
    let t0 = Instant::now();
    for k in 0..changes {
        std::fs::write(file_path(&root, k * 10, n), body(k * 10, 128))?;
    }
    until(
        "A's index of the changes",
        Duration::from_millis(500),
        || {
            let rows = listing(&a, &lib, &la);
            Ok(rows
                .iter()
                .filter(|r| r.2 == 128 && r.4.is_some() && r.0.starts_with('d'))
                .count()
                >= changes)
        },
    )
    .await?;
    let reindex = t0.elapsed();
    settled(&a, &lib, Duration::from_millis(500)).await?;
    let seqs = own_seq(&a, &lib)? - seq_before;
    let (t0, cpu0) = (Instant::now(), cpu_secs());
    let b = start(&db, "beta").await;
    let mut b_events = b.subscribe();
    link(&a, &b).await;
    let (catch_up, sent_cu) = converged(t0, &a, &b, &mut b_events, &lib, &la).await?;
    let cu_cpu = cpu_secs() - cpu0;
    let wire_cu = wire_bytes(&a, &b);
    println!(
        "  3. catch-up: {changes} files changed on A while B was offline (A re-indexed them in {:.1} s, \
         {seqs} sequence numbers); B restarted and linked: converged in {:.2} s ({cu_cpu:.2} CPU-s), \
         {sent_cu} changes, {wire_cu} B on the wire",
        reindex.as_secs_f64(),
        catch_up.as_secs_f64()
    );
    b.shutdown().await;
    a.shutdown().await;
    drop((a, b));

    // 4. Signing.
    let sg = signing(20_000)?;
    // The extra time signing would add per row, as a share of sync's time per row: per
    // wall-second (as measured, on a shared machine) and per CPU-second (steadier).
    let cost = rate / sg.both;
    let cost_cpu = per_cpu / sg.both_cpu;
    println!(
        "  4. Ed25519, one thread: sign {:.0} rows/s, verify {:.0} rows/s, sign + verify {:.0} rows/s \
         ({:.0} per CPU-s); against sync's {rate:.0} entries/s that is +{:.0} % time per row \
         ({:.0} % less throughput); per CPU-second +{:.0} %",
        sg.sign,
        sg.verify,
        sg.both,
        sg.both_cpu,
        cost * 100.0,
        (1.0 - 1.0 / (1.0 + cost)) * 100.0,
        cost_cpu * 100.0
    );

    println!();
    println!("| what | figure | target |");
    println!("|---|---|---|");
    println!(
        "| A indexes {entries} entries (walk + content ids) | {:.1} s | |",
        index_time.as_secs_f64()
    );
    println!(
        "| initial sync A→B, {entries} entries | {:.2} s = **{rate:.0} entries/s**; {per_cpu:.0} entries/CPU-s | ≥ 30,000/s |",
        initial.as_secs_f64()
    );
    println!(
        "| bytes on the wire per entry (both ways, UDP) | {:.1} B | |",
        wire as f64 / entries as f64
    );
    println!(
        "| peak RSS, A and B in one process, during the sync | {rss_sync:.1} MiB (A alone before: {rss_before:.1} MiB now, {rss_a:.1} MiB peak indexing) | |"
    );
    println!(
        "| relayed initial sync A→B→C | {:.2} s = {:.0} entries/s | |",
        relayed.as_secs_f64(),
        entries as f64 / relayed.as_secs_f64()
    );
    println!(
        "| write on A → row on A (debounce 150 ms) | median {:.0} ms, p90 {:.0} ms | |",
        lat[0].0, lat[0].1
    );
    println!(
        "| write on A → row on C through B | median {:.0} ms, p90 {:.0} ms; {:.1} / {:.1} ms after A | median ≤ 1 s beyond the debounce |",
        lat[1].0, lat[1].1, lat[2].0, lat[2].1
    );
    println!(
        "| catch-up of {changes} changed files after a reconnect | {:.2} s ({sent_cu} changes, {:.0} B/change) | ≤ 2 s |",
        catch_up.as_secs_f64(),
        wire_cu as f64 / sent_cu.max(1) as f64
    );
    println!(
        "| Ed25519 sign + verify per row, one thread | {:.0} rows/s (sign {:.0}, verify {:.0}); {:.0} per CPU-s | |",
        sg.both, sg.sign, sg.verify, sg.both_cpu
    );
    println!(
        "| signing's cost against sync | +{:.0} % time per row (wall), +{:.0} % (CPU) | < 10 % to sign |",
        cost * 100.0,
        cost_cpu * 100.0
    );
    let t0 = Instant::now();
    drop((t, files));
    println!("(temp dir removed in {:.1} s)", t0.elapsed().as_secs_f64());
    Ok(())
}
