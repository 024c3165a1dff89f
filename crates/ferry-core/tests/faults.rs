//! Spacedrop through a bad network: real nodes on 127.0.0.1 talking through a userspace
//! impairment proxy (delay, loss, reordering, duplication, corrupted payloads, a link that goes
//! down). Every file arrives bit-exact or the transfer resumes; nothing corrupt is placed.
//! Each case prints its throughput and what the proxy did.

#[path = "../../ferry-bench/src/impair.rs"]
mod impair;
#[path = "support/nodes.rs"]
mod nodes;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use ferry_core::{AcceptPolicy, TransferState};
use impair::{Counts, Impair, Rules};
use nodes::*;

/// A folder with one big file and many small ones: both shapes of traffic.
fn source(root: &Path, big: usize) -> PathBuf {
    let top = root.join("payload");
    std::fs::create_dir_all(top.join("small")).unwrap();
    let bytes = pseudo_random(big, 0x9e37_79b9_7f4a_7c15);
    std::fs::write(top.join("big.bin"), bytes).unwrap();
    for i in 0..40 {
        std::fs::write(
            top.join(format!("small/{i}.txt")),
            format!("{i} ").repeat(i * 50 + 1),
        )
        .unwrap();
    }
    top
}

/// Sends `src` from a fresh `a` to a fresh `b` through a proxy with `rules`; returns (a, b,
/// proxy, transfer id) once the transfer is under way.
async fn through(t: &Path, rules: Rules, seed: u64) -> (Peer, Peer, Impair) {
    let a = peer(&t.join("a"), "alpha", AcceptPolicy::Ask, "127.0.0.1:0").await;
    let b = peer(&t.join("b"), "beta", AcceptPolicy::Everyone, "127.0.0.1:0").await;
    let proxy = Impair::start(b.node.local_addr().unwrap(), rules, seed).await;
    a.node
        .p2p()
        .connect(proxy.addr, Some(b.node.id()))
        .await
        .expect("handshake through the proxy");
    (a, b, proxy)
}

/// Whether the proxy did what a case's rules claim: each impairment asked for happened at about
/// its rate (within a factor of 3 either way), and none that was not asked for. Without this a
/// proxy that impaired nothing would pass every case.
fn impaired_as_claimed(r: &Rules, c: &Counts) -> Result<(), String> {
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let (relayed, dropped) = (n(&c.relayed), n(&c.dropped));
    let checks = [
        ("dropped", r.loss, dropped, relayed + dropped),
        ("corrupted", r.corrupt, n(&c.corrupted), relayed),
        ("duplicated", r.duplicate, n(&c.duplicated), relayed),
        ("reordered", r.reorder, n(&c.reordered), relayed),
    ];
    for (what, rate, count, of) in checks {
        let want = rate * of;
        let fits = if rate == 0.0 {
            count == 0.0
        } else {
            count >= want / 3.0 && count <= want * 3.0
        };
        if !fits {
            return Err(format!(
                "{count} of {of} packets {what}, for a rate of {rate} ({want:.0} expected)"
            ));
        }
    }
    Ok(())
}

#[test]
fn the_impairment_check_needs_what_was_claimed() {
    let counts = |relayed: u64, dropped: u64, reordered: u64| Counts {
        relayed: relayed.into(),
        dropped: dropped.into(),
        reordered: reordered.into(),
        ..Counts::default()
    };
    let rules = Rules {
        loss: 0.01,
        ..Rules::default()
    };
    assert!(impaired_as_claimed(&rules, &counts(9_900, 100, 0)).is_ok());
    // Nothing dropped, or far too much.
    assert!(impaired_as_claimed(&rules, &counts(10_000, 0, 0)).is_err());
    assert!(impaired_as_claimed(&rules, &counts(9_000, 1_000, 0)).is_err());
    // Something not asked for.
    assert!(impaired_as_claimed(&rules, &counts(9_900, 100, 5)).is_err());
    assert!(impaired_as_claimed(&Rules::default(), &counts(10_000, 0, 0)).is_ok());
}

/// Bytes of every file under `dir`: what a receiver has on disk.
fn bytes_on_disk(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn temps_left(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".ferry"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impaired_links_deliver_every_file_bit_exact() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path(), 8 << 20);
    let ms = Duration::from_millis;
    let cases = [
        ("no impairment (the proxy alone)", Rules::default()),
        (
            "1 ms one-way",
            Rules {
                delay: ms(1),
                ..Rules::default()
            },
        ),
        (
            "50 ms RTT",
            Rules {
                delay: ms(25),
                ..Rules::default()
            },
        ),
        (
            "50 ms RTT + 1% loss",
            Rules {
                delay: ms(25),
                loss: 0.01,
                ..Rules::default()
            },
        ),
        (
            "5% loss",
            Rules {
                delay: ms(2),
                loss: 0.05,
                ..Rules::default()
            },
        ),
        (
            "5% reordered + 2% duplicated",
            Rules {
                delay: ms(2),
                reorder: 0.05,
                duplicate: 0.02,
                ..Rules::default()
            },
        ),
        (
            "1% payloads with a flipped bit",
            Rules {
                delay: ms(2),
                corrupt: 0.01,
                ..Rules::default()
            },
        ),
    ];
    for (i, (name, rules)) in cases.into_iter().enumerate() {
        let dir = t.path().join(format!("case-{i}"));
        let (mut a, b, proxy) = through(&dir, rules.clone(), 1000 + i as u64).await;
        let started = Instant::now();
        let id = a
            .node
            .spacedrop()
            .send(b.node.id(), vec![src.clone()])
            .await
            .unwrap();
        let end = final_state(&mut a.events, &id, Duration::from_secs(180)).await;
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(end.state, TransferState::Done, "{name}: {end:?}");
        same_tree(&src, &b.downloads.join("payload"));
        assert!(
            temps_left(&b.downloads).is_empty(),
            "{name}: temp files left"
        );
        eprintln!(
            "{name}: {:.1} MB in {secs:.2} s = {:.2} MB/s, bit-exact; proxy: {}",
            end.bytes_total as f64 / 1e6,
            end.bytes_total as f64 / 1e6 / secs,
            proxy.report()
        );
        if let Err(e) = impaired_as_claimed(&rules, &proxy.counts) {
            panic!("{name}: the proxy did not impair as claimed: {e}");
        }
        a.node.shutdown().await;
        b.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_down_for_20_seconds_mid_transfer_resumes_when_it_is_back() {
    let t = tempfile::tempdir().unwrap();
    // Big enough that the cut comes mid-transfer: with windows that cover the path, the
    // sender's count runs tens of megabytes ahead of what has arrived, and a 48 MiB file was
    // once wholly across by the time the link went down.
    let src = source(t.path(), 160 << 20);
    let rules = Rules {
        delay: Duration::from_millis(10),
        ..Rules::default()
    };
    let (mut a, mut b, proxy) = through(t.path(), rules, 7).await;
    let id = a
        .node
        .spacedrop()
        .send(b.node.id(), vec![src.clone()])
        .await
        .unwrap();
    // Cut it once a few megabytes have arrived.
    transfer_where(&mut b.events, &id, Duration::from_secs(60), |t| {
        t.bytes_done > 4 << 20
    })
    .await;
    proxy.set(|r| r.down = true);
    let cut = Instant::now();
    // Both sides notice (idle timeout) and keep what they have.
    let on_a = interrupted(&mut a.events, &id, Duration::from_secs(15)).await;
    interrupted(&mut b.events, &id, Duration::from_secs(15)).await;
    // The receiver's run has ended (its writer too): what a resume can keep is on disk now.
    let on_disk = bytes_on_disk(&b.downloads);
    eprintln!(
        "link down: both sides saw the transfer interrupted after {:?} ({:.1} MB across, {:.1} MB on the receiver's disk)",
        cut.elapsed(),
        on_a.bytes_done as f64 / 1e6,
        on_disk as f64 / 1e6
    );
    let dropped_down = proxy.counts.dropped.load(Ordering::Relaxed);
    assert!(dropped_down > 0, "the link was never down: nothing dropped");
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(cut.elapsed())).await;
    proxy.set(|r| r.down = false);
    let back = Instant::now();
    let end = final_state(&mut a.events, &id, Duration::from_secs(120)).await;
    assert_eq!(end.state, TransferState::Done, "{end:?}");
    same_tree(&src, &b.downloads.join("payload"));
    assert!(temps_left(&b.downloads).is_empty(), "temp files left");
    eprintln!(
        "link back: done {:.2} s later, bit-exact; {:.1} MB of {:.1} MB were kept across the outage; proxy: {}",
        back.elapsed().as_secs_f64(),
        end.bytes_resumed as f64 / 1e6,
        end.bytes_total as f64 / 1e6,
        proxy.report()
    );
    // The resume kept what was on disk: a restart from byte 0 also ends bit-exact.
    assert!(
        end.bytes_resumed > 0
            && end.bytes_resumed <= on_disk
            && on_disk - end.bytes_resumed < 1 << 20,
        "resumed with {} bytes kept of {on_disk} on disk",
        end.bytes_resumed
    );
}
