//! Property: three members, A–B and B–C linked (A and C never), each changing its own location
//! at random (creates, edits, renames, folder moves, deletions) while members stop and start;
//! afterwards every node holds every location exactly as its owner does, and each owner's rows
//! are a walk of its disk. Cases: FERRY_SYNC_CASES (default 3; more by hand).

#[path = "support/members.rs"]
mod members;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_core::library::wire::LibraryId;
use ferry_core::Node;
use members::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Create(u8),
    Edit(u8, u8),
    Rename(u8, u8),
    MoveIntoFolder(u8, u8),
    Delete(u8),
    DeleteFolder(u8),
    /// The node stops (or, if stopped, starts again).
    Toggle,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..8).prop_map(Op::Create),
        (0u8..8, any::<u8>()).prop_map(|(a, b)| Op::Edit(a, b)),
        (0u8..8, 0u8..8).prop_map(|(a, b)| Op::Rename(a, b)),
        (0u8..8, 0u8..3).prop_map(|(a, b)| Op::MoveIntoFolder(a, b)),
        (0u8..8).prop_map(Op::Delete),
        (0u8..3).prop_map(Op::DeleteFolder),
        Just(Op::Toggle),
    ]
}

/// Applies `op` to a node's folder (files at the top, `d0..d2` folders holding moved ones).
fn apply(root: &Path, op: &Op) {
    let f = |n: u8| root.join(format!("f{n}.txt"));
    let d = |n: u8| root.join(format!("d{n}"));
    let _ = match op {
        Op::Create(a) => std::fs::write(f(*a), format!("file {a}")),
        Op::Edit(a, b) => std::fs::write(f(*a), vec![*b; *b as usize + 1]),
        Op::Rename(a, b) if f(*a).exists() => std::fs::rename(f(*a), f(*b)),
        Op::MoveIntoFolder(a, b) if f(*a).exists() => std::fs::create_dir_all(d(*b))
            .and_then(|()| std::fs::rename(f(*a), d(*b).join(format!("moved-{a}.txt")))),
        Op::Delete(a) if f(*a).exists() => std::fs::remove_file(f(*a)),
        Op::DeleteFolder(b) if d(*b).exists() => std::fs::remove_dir_all(d(*b)),
        _ => Ok(()),
    };
}

struct Member {
    data: PathBuf,
    root: PathBuf,
    name: &'static str,
    node: Option<Node>,
}

/// Links A–B and B–C among the nodes that run.
async fn relink(m: &[Member]) {
    for (x, y) in [(0, 1), (1, 2)] {
        if let (Some(a), Some(b)) = (&m[x].node, &m[y].node) {
            if a.p2p().connection(&b.id()).is_none() {
                link(a, b).await;
            }
        }
    }
}

async fn case(ops: Vec<(usize, Op)>) {
    let t = tempfile::tempdir().unwrap();
    let names = ["alpha", "beta", "gamma"];
    let mut m: Vec<Member> = names
        .iter()
        .map(|n| Member {
            data: t.path().join(n),
            root: t.path().join(format!("{n}-files")),
            name: n,
            node: None,
        })
        .collect();
    let lib: LibraryId = shared_library(&[
        (&m[0].data, names[0]),
        (&m[1].data, names[1]),
        (&m[2].data, names[2]),
    ]);
    let mut locs = Vec::new();
    for x in &mut m {
        std::fs::create_dir_all(&x.root).unwrap();
        std::fs::write(x.root.join("f0.txt"), x.name).unwrap();
        let node = start(&x.data, x.name).await;
        let info = node
            .libraries()
            .contents()
            .add_location(&lib, &x.root)
            .unwrap();
        locs.push(ferry_index::db::parse_id(&info.id).unwrap());
        x.node = Some(node);
    }
    relink(&m).await;
    for (who, op) in ops {
        match op {
            Op::Toggle => {
                if let Some(n) = m[who].node.take() {
                    n.shutdown().await;
                } else {
                    m[who].node = Some(start(&m[who].data, m[who].name).await);
                    relink(&m).await;
                }
            }
            op => apply(&m[who].root, &op),
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for x in &mut m {
        if x.node.is_none() {
            x.node = Some(start(&x.data, x.name).await);
        }
    }
    relink(&m).await;
    let nodes: Vec<&Node> = m.iter().map(|x| x.node.as_ref().unwrap()).collect();
    for (i, x) in m.iter().enumerate() {
        indexed(nodes[i], &lib, &locs[i], &x.root).await;
    }
    for (i, loc) in locs.iter().enumerate() {
        let others: Vec<&Node> = (0..3).filter(|j| *j != i).map(|j| nodes[j]).collect();
        until(
            &format!("{}'s location everywhere", m[i].name),
            Duration::from_secs(60),
            || converged(nodes[i], &others, &lib, loc),
        )
        .await;
        assert_eq!(
            shape(&listing(nodes[i], &lib, loc)),
            disk(&m[i].root),
            "{} equals its disk",
            m[i].name
        );
    }
    for x in m {
        if let Some(n) = x.node {
            n.shutdown().await;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("FERRY_SYNC_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3),
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            concat!(env!("CARGO_MANIFEST_DIR"), "/proptest-regressions/tests/sync_converge.txt"),
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn three_members_converge_through_random_changes_and_partitions(
        ops in proptest::collection::vec((0usize..3, op()), 5..40)
    ) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(case(ops));
    }
}
