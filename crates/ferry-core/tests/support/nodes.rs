//! Real nodes on 127.0.0.1 (discovery off: host namespace) and what Spacedrop tests check.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_core::spacedrop::wire::TransferId;
use ferry_core::{AcceptPolicy, Event, Node, NodeConfig, SpacedropConfig, TransferInfo};
use tokio::sync::broadcast;

pub struct Peer {
    pub node: Node,
    pub events: broadcast::Receiver<Event>,
    pub dir: PathBuf,
    pub downloads: PathBuf,
}

pub async fn peer(dir: &Path, name: &str, accept: AcceptPolicy, listen: &str) -> Peer {
    let downloads = dir.join("downloads");
    let cfg = NodeConfig {
        name: Some(name.into()),
        listen: listen.parse().unwrap(),
        discovery: false,
        spacedrop: SpacedropConfig {
            dest: downloads.clone(),
            prompt_timeout: Duration::from_secs(3),
            accept,
        },
        ..NodeConfig::new(dir.join("data"))
    };
    let node = Node::start(cfg).await.unwrap();
    let events = node.subscribe();
    Peer {
        node,
        events,
        dir: dir.to_path_buf(),
        downloads,
    }
}

/// Alpha (which asks) and beta (which answers offers by `b_accept`), connected.
pub async fn two_peers(t: &Path, b_accept: AcceptPolicy) -> (Peer, Peer) {
    let a = peer(&t.join("a"), "alpha", AcceptPolicy::Ask, "127.0.0.1:0").await;
    let b = peer(&t.join("b"), "beta", b_accept, "127.0.0.1:0").await;
    pair(&a, &b).await;
    (a, b)
}

pub async fn pair(a: &Peer, b: &Peer) {
    a.node
        .p2p()
        .connect(b.node.local_addr().unwrap(), Some(b.node.id()))
        .await
        .unwrap();
}

pub async fn next<T>(
    rx: &mut broadcast::Receiver<Event>,
    within: Duration,
    mut f: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(e)) => {
                if let Some(t) = f(&e) {
                    return t;
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("event not seen within {within:?}: {other:?}"),
        }
    }
}

/// The first event of transfer `id` that satisfies `f`.
pub async fn transfer_where(
    rx: &mut broadcast::Receiver<Event>,
    id: &TransferId,
    within: Duration,
    f: impl Fn(&TransferInfo) -> bool,
) -> TransferInfo {
    next(rx, within, |e| match e {
        Event::Transfer { transfer } if transfer.id == id.hex() && f(transfer) => {
            Some(transfer.clone())
        }
        _ => None,
    })
    .await
}

/// Waits until transfer `id` has moved some bytes.
pub async fn bytes_flowing(rx: &mut broadcast::Receiver<Event>, id: &TransferId, within: Duration) {
    transfer_where(rx, id, within, |t| t.bytes_done > 0).await;
}

pub async fn final_state(
    rx: &mut broadcast::Receiver<Event>,
    id: &TransferId,
    within: Duration,
) -> TransferInfo {
    transfer_where(rx, id, within, |t| t.state.is_final()).await
}

pub async fn interrupted(
    rx: &mut broadcast::Receiver<Event>,
    id: &TransferId,
    within: Duration,
) -> TransferInfo {
    transfer_where(rx, id, within, |t| {
        matches!(t.state, ferry_core::TransferState::Interrupted { .. })
    })
    .await
}

/// `len` reproducible bytes that do not compress (xorshift).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn make_tree(root: &Path) -> PathBuf {
    let top = root.join("album ✓");
    std::fs::create_dir_all(top.join("empty")).unwrap();
    std::fs::create_dir_all(top.join("raw")).unwrap();
    std::fs::write(top.join("zero"), b"").unwrap();
    std::fs::write(top.join("raw/a.bin"), vec![7u8; 2_500_000]).unwrap();
    for i in 0..50 {
        std::fs::write(
            top.join(format!("raw/small-{i}.txt")),
            format!("file {i}").repeat(i + 1),
        )
        .unwrap();
    }
    top
}

pub fn same_tree(a: &Path, b: &Path) {
    let list = |p: &Path| {
        let mut v: Vec<(String, Option<Vec<u8>>)> = walk(p)
            .into_iter()
            .map(|f| {
                (
                    f.strip_prefix(p).unwrap().to_string_lossy().into_owned(),
                    f.is_file().then(|| std::fs::read(&f).unwrap()),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(a), list(b));
}

pub fn walk(p: &Path) -> Vec<PathBuf> {
    let mut v = vec![];
    for c in std::fs::read_dir(p).unwrap() {
        let c = c.unwrap().path();
        v.push(c.clone());
        if c.is_dir() {
            v.extend(walk(&c));
        }
    }
    v
}
