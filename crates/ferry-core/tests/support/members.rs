//! Members of one library on 127.0.0.1 (discovery off), made without pairing: the library's
//! database is written into each data dir before its node starts (pairing has its own tests).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_core::library::db::LibraryDb;
use ferry_core::library::wire::{LibraryId, MemberRecord, MemberState, Snapshot, Stamp};
use ferry_core::{Node, NodeConfig, PeerId};
use ferry_index::LocationId;

/// One row of a listing: path, kind, size, mtime (ns), content id.
pub use ferry_index::replica::Row;

/// Writes one library naming every `(data dir, name)` as a member into each data dir.
pub fn shared_library(members: &[(&Path, &str)]) -> LibraryId {
    let lib = LibraryId::random();
    let ids: Vec<PeerId> = members
        .iter()
        .map(|(d, _)| {
            std::fs::create_dir_all(d).unwrap();
            ferry_p2p::Identity::load_or_create(d).unwrap().peer_id()
        })
        .collect();
    let stamp = Stamp {
        clock: 1,
        author: ids[0],
    };
    let snap = Snapshot {
        library: lib,
        created: 1,
        name: "Shared".into(),
        name_stamp: stamp.clone(),
        members: ids
            .iter()
            .zip(members)
            .map(|(id, (_, name))| MemberRecord {
                node: *id,
                name: name.to_string(),
                state: MemberState::Member,
                stamp: stamp.clone(),
                added: 1,
            })
            .collect(),
    };
    for (d, _) in members {
        let dir = d.join("libraries");
        std::fs::create_dir_all(&dir).unwrap();
        LibraryDb::create(&dir.join(format!("{}.db", lib.hex())), &snap, None).unwrap();
    }
    lib
}

pub async fn start(data: &Path, name: &str) -> Node {
    start_with(data, name, true).await
}

/// [`start`], with preview-media sync on or off.
pub async fn start_with(data: &Path, name: &str, previews: bool) -> Node {
    start_capped(
        data,
        name,
        previews,
        ferry_core::library::media::PreviewConfig::default().cap,
    )
    .await
}

/// [`start_with`], with a cap on the thumbnail store.
pub async fn start_capped(data: &Path, name: &str, previews: bool, cap: u64) -> Node {
    let mut cfg = NodeConfig {
        name: Some(name.into()),
        listen: "127.0.0.1:0".parse().unwrap(),
        discovery: false,
        ..NodeConfig::new(data)
    };
    cfg.previews.sync = previews;
    cfg.previews.cap = cap;
    Node::start(cfg).await.unwrap()
}

pub async fn link(a: &Node, b: &Node) {
    a.p2p()
        .connect(b.local_addr().unwrap(), Some(b.id()))
        .await
        .unwrap();
}

/// A location's rows as `node` holds them (its own or a replica).
pub fn listing(node: &Node, lib: &LibraryId, loc: &LocationId) -> Vec<Row> {
    let c = node.libraries().contents().of(lib).unwrap();
    ferry_index::replica::snapshot(&c, loc).unwrap()
}

/// What is on disk under `root`, as the index records it (path, kind, size).
pub fn disk(root: &Path) -> Vec<(String, u8, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            // The location's marker at its root is never an entry.
            if ferry_index::marker::is_marker(r.to_string_lossy().as_bytes()) {
                continue;
            }
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let kind = if m.is_dir() {
                1
            } else if m.file_type().is_symlink() {
                2
            } else {
                0
            };
            out.push((
                r.to_string_lossy().into_owned(),
                kind,
                if kind == 0 { m.len() } else { 0 },
            ));
            if kind == 1 {
                stack.push(r);
            }
        }
    }
    out.sort();
    out
}

pub fn shape(rows: &[Row]) -> Vec<(String, u8, u64)> {
    rows.iter().map(|r| (r.0.clone(), r.1, r.2)).collect()
}

/// The ids of a node's locations in `lib` (all, or only its own).
pub fn locations(node: &Node, lib: &LibraryId, own_only: bool) -> Vec<LocationId> {
    node.libraries()
        .contents()
        .locations(lib)
        .unwrap()
        .into_iter()
        .filter(|l| !own_only || l.local)
        .map(|l| ferry_index::db::parse_id(&l.id).unwrap())
        .collect()
}

/// Polls `f` every 10 ms until it holds; panics with `what` after `within`. Returns how long.
pub async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.elapsed()
}

/// Waits until `node` sees the owner of `loc` as offline.
pub async fn owner_offline(node: &Node, lib: &LibraryId, loc: &LocationId) {
    until("the owner offline", Duration::from_secs(30), || {
        node.libraries()
            .contents()
            .location(lib, loc)
            .unwrap()
            .owner_online
            == Some(false)
    })
    .await;
}

/// Whether every node holds `loc` exactly as `owner` does.
pub fn converged(owner: &Node, others: &[&Node], lib: &LibraryId, loc: &LocationId) -> bool {
    let want = listing(owner, lib, loc);
    others.iter().all(|n| listing(n, lib, loc) == want)
}

/// Waits until `node` has indexed `root` as it is on disk (identified files included).
pub async fn indexed(node: &Node, lib: &LibraryId, loc: &LocationId, root: &Path) {
    until(
        "the owner's index matches its disk",
        Duration::from_secs(30),
        || {
            let rows = listing(node, lib, loc);
            shape(&rows) == disk(root) && rows.iter().all(|r| r.1 != 0 || r.2 == 0 || r.4.is_some())
        },
    )
    .await;
}
