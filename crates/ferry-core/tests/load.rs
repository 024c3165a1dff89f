//! Load: three nodes sending to each other at once, 20 transfers in flight per round, for a
//! bounded time (`FERRY_SOAK_SECS`, default 30 s here; set it to hours for a soak) and at least
//! [`MIN_ROUNDS`] rounds. Every file is verified; tasks and file descriptors come back to where
//! they were. Memory stays flat: between rounds every in-memory map of Spacedrop is empty, each
//! node's store holds no more transfers than its history setting keeps, and the process's heap
//! and RSS after the last round are within a generous bound of what they were halfway.

#[path = "support/nodes.rs"]
mod nodes;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_core::spacedrop::Footprint;
use ferry_core::{AcceptPolicy, History, SpacedropConfig, TransferState};
use nodes::*;

/// Open file descriptors (failing if /proc cannot be read: 0 would pass "no fd leaked").
fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("reading /proc/self/fd")
        .count()
}

/// A figure of /proc/self/status in KiB. One that cannot be read fails the test: read as 0,
/// every "memory grew less than N" would pass.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Finished transfers each node keeps here: reached within the first rounds, so every later
/// round prunes as many as it adds.
const KEEP: u32 = 100;
/// Rounds run at least, whatever the time: the halfway point is past the allocator's warm-up.
const MIN_ROUNDS: usize = 16;

/// The heap in use (glibc's count: live allocations, SQLite's page cache among them), in KiB.
fn heap_kib() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let m = unsafe { libc::mallinfo2() };
    ((m.uordblks + m.hblkhd) / 1024) as u64
}

/// What SQLite holds (page caches and statements of every connection), in KiB.
fn sqlite_kib() -> u64 {
    // SAFETY: a read of SQLite's global counter.
    (unsafe { rusqlite::ffi::sqlite3_memory_used() } / 1024) as u64
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One round's figures, taken once every transfer of it has ended on both sides.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss: u64,
    heap: u64,
    sqlite: u64,
}

fn folder(root: &Path, name: &str, seed: u64) -> PathBuf {
    let top = root.join(name);
    std::fs::create_dir_all(top.join("docs")).unwrap();
    let big = pseudo_random(2 << 20, seed);
    std::fs::write(top.join("big.bin"), big).unwrap();
    for i in 0..20 {
        std::fs::write(
            top.join(format!("docs/{i}.txt")),
            format!("{name} {i}\n").repeat(i + 1),
        )
        .unwrap();
    }
    top
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_twenty_transfers_at_once_for_a_bounded_time() {
    let t = tempfile::tempdir().unwrap();
    let secs: u64 = std::env::var("FERRY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut peers = vec![];
    for name in ["alpha", "beta", "gamma"] {
        peers.push(
            peer(
                &t.path().join(name),
                name,
                AcceptPolicy::Everyone,
                "127.0.0.1:0",
            )
            .await,
        );
    }
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        pair(&peers[i], &peers[j]).await;
    }
    let keep = History {
        count: KEEP,
        ..History::DEFAULT
    };
    for p in &peers {
        p.node.spacedrop().set_history(keep);
    }
    // 20 transfers per round: (sender, receiver) pairs in both directions of every link.
    let plan: Vec<(usize, usize)> = (0..20)
        .map(|k| (k % 3, (k % 3 + 1 + (k / 3) % 2) % 3))
        .collect();
    let sources: Vec<PathBuf> = plan
        .iter()
        .enumerate()
        .map(|(k, (s, r))| {
            folder(
                &t.path().join("src"),
                &format!("from-{s}-to-{r}-{k}"),
                k as u64,
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (fds0, tasks0) = (
        fds(),
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
    );
    let rss0 = status_kib("VmRSS:");
    let started = Instant::now();
    let mut rounds = 0;
    let mut bytes = 0u64;
    let mut samples: Vec<Sample> = vec![];
    while rounds < MIN_ROUNDS || started.elapsed() < Duration::from_secs(secs) {
        let dest = |p: &Peer| p.dir.join(format!("round-{rounds}"));
        for p in &peers {
            p.node.spacedrop().set_config(SpacedropConfig {
                dest: dest(p),
                ..p.node.spacedrop().config()
            });
        }
        let mut ids = vec![];
        for ((s, r), src) in plan.iter().zip(&sources) {
            let id = peers[*s]
                .node
                .spacedrop()
                .send(peers[*r].node.id(), vec![src.clone()])
                .await
                .unwrap();
            ids.push((*s, *r, id, src.clone()));
        }
        // Polled, not awaited as events: twenty transfers interleave on three event streams.
        // Each is looked up by its id; both sides must have ended it.
        let deadline = Instant::now() + Duration::from_secs(120);
        for (s, r, id, src) in &ids {
            for side in [*s, *r] {
                let end = loop {
                    let t = peers[side].node.spacedrop().find_transfers(&id.hex()).pop();
                    match t {
                        Some(t) if t.state.is_final() => break t,
                        _ if Instant::now() > deadline => {
                            panic!("transfer {} not finished: {t:?}", id.hex())
                        }
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                };
                assert_eq!(end.state, TransferState::Done, "{end:?}");
                if side == *s {
                    bytes += end.bytes_total;
                }
            }
            same_tree(src, &dest(&peers[*r]).join(src.file_name().unwrap()));
        }
        for p in &peers {
            let _ = std::fs::remove_dir_all(dest(p));
        }
        // Nothing in flight: every map is empty again (a stream handler may still be winding
        // down a moment after both sides recorded the end), and the store holds what the
        // setting keeps.
        for p in &peers {
            let sd = p.node.spacedrop();
            let wait = Instant::now() + Duration::from_secs(10);
            while sd.footprint() != Footprint::default() && Instant::now() < wait {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(sd.footprint(), Footprint::default(), "round {rounds}");
            let kept = sd.transfers().len();
            assert!(
                kept <= KEEP as usize,
                "round {rounds}: {kept} transfers kept"
            );
        }
        rounds += 1;
        samples.push(Sample {
            rss: status_kib("VmRSS:"),
            heap: heap_kib(),
            sqlite: sqlite_kib(),
        });
        if std::env::var_os("FERRY_SOAK_SECS").is_some() && rounds % 10 == 0 {
            let s = samples[rounds - 1];
            println!(
                "round {rounds} ({:.0} s): RSS {:.1} MiB, heap {:.1} MiB, SQLite {:.1} MiB",
                started.elapsed().as_secs_f64(),
                mib(s.rss),
                mib(s.heap),
                mib(s.sqlite)
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // Let finished transfers' tasks and streams wind down.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (fds1, tasks1) = (
        fds(),
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
    );
    let (rss1, peak) = (status_kib("VmRSS:"), status_kib("VmHWM:"));
    println!(
        "load: {rounds} rounds x 20 transfers across 3 nodes in {secs:.1} s, {:.1} MB verified ({:.1} MB/s); \
         fds {fds0} -> {fds1}, tasks {tasks0} -> {tasks1}, RSS {:.1} -> {:.1} MiB (peak {:.1} MiB, whole test process)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    // Flat: the second half of the run adds (almost) nothing to the first. The bounds are
    // generous (allocator pools and QUIC's recycled stream buffers fill for a while; RSS moves
    // by ±10 MiB from round to round), but a node that kept anything per transfer, or listed
    // its whole history, fails them in a soak.
    let (half, last) = (samples[rounds / 2 - 1], samples[rounds - 1]);
    println!(
        "after round {}: RSS {:.1} MiB, heap {:.1} MiB, SQLite {:.1} MiB; after round {rounds}: \
         RSS {:.1} MiB, heap {:.1} MiB, SQLite {:.1} MiB",
        rounds / 2,
        mib(half.rss),
        mib(half.heap),
        mib(half.sqlite),
        mib(last.rss),
        mib(last.heap),
        mib(last.sqlite)
    );
    assert!(
        last.heap <= half.heap + half.heap / 4 + 8 * 1024,
        "the heap kept growing: {half:?} -> {last:?}"
    );
    assert!(
        last.rss <= half.rss + half.rss / 4 + 32 * 1024,
        "RSS kept growing: {half:?} -> {last:?}"
    );
    // SQLite's page caches stop at their size (2 MiB a connection) or the table's, whichever
    // is smaller: the table stops growing once the history is full.
    assert!(
        last.sqlite <= half.sqlite + 1024,
        "SQLite kept growing: {half:?} -> {last:?}"
    );
    assert!(
        fds1 <= fds0 + 3,
        "file descriptors leaked: {fds0} -> {fds1}"
    );
    assert!(tasks1 <= tasks0 + 3, "tasks leaked: {tasks0} -> {tasks1}");
    for p in &peers {
        p.node.shutdown().await;
    }
}
