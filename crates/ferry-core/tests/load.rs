//! Load: three nodes sending to each other at once, 20 transfers in flight per round, for a
//! bounded time (`FERRY_SOAK_SECS`, default 30 s here; set it to hours for a soak). Every file
//! is verified; memory stays bounded; tasks and file descriptors come back to where they were.

#[path = "support/nodes.rs"]
mod nodes;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_core::{AcceptPolicy, SpacedropConfig, TransferState};
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
    let mut rss_by_round = vec![];
    while rounds == 0 || started.elapsed() < Duration::from_secs(secs) {
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
        let deadline = Instant::now() + Duration::from_secs(120);
        for (s, r, id, src) in &ids {
            let end = loop {
                let t = peers[*s]
                    .node
                    .spacedrop()
                    .transfers()
                    .into_iter()
                    .find(|t| t.id == id.hex());
                match t {
                    Some(t) if t.state.is_final() => break t,
                    _ if Instant::now() > deadline => {
                        panic!("transfer {} not finished: {t:?}", id.hex())
                    }
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            assert_eq!(end.state, TransferState::Done, "{end:?}");
            bytes += end.bytes_total;
            same_tree(src, &dest(&peers[*r]).join(src.file_name().unwrap()));
        }
        for p in &peers {
            let _ = std::fs::remove_dir_all(dest(p));
        }
        rounds += 1;
        rss_by_round.push(status_kib("VmRSS:"));
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
    // Bounded: after the first few rounds memory stops growing (allocator pools fill once).
    let settled = rss_by_round[rss_by_round.len().min(5) - 1];
    let last = *rss_by_round.last().unwrap();
    println!(
        "RSS after round {}: {:.1} MiB; after the last: {:.1} MiB",
        rss_by_round.len().min(5),
        settled as f64 / 1024.0,
        last as f64 / 1024.0
    );
    assert!(
        last <= settled + settled / 2 + 32 * 1024,
        "memory kept growing: {settled} KiB -> {last} KiB"
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
