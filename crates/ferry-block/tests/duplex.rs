//! Spaceblock over `tokio::io::duplex`: the data path without a network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};

use ferry_block::manifest::{collect, EntryKind};
use ferry_block::names::Os;
use ferry_block::place::layout;
use ferry_block::recv::{receive_files, Expect, FileFailure, FileOutcome, RecvError};
use ferry_block::send::{send_files, FileJob};
use ferry_block::{record, Manifest};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

fn no_journal() -> ferry_block::recv::Journal {
    std::sync::Arc::new(|_| Ok(()))
}

struct Setup {
    manifest: Manifest,
    jobs: Vec<FileJob>,
    plan: HashMap<u32, Expect>,
}

fn setup(roots: &[PathBuf], dest: &Path) -> Setup {
    let c = collect(roots).unwrap();
    let l = layout(&c.manifest, Os::current(), |n| dest.join(n).exists()).unwrap();
    let mut jobs = vec![];
    let mut plan = HashMap::new();
    for (i, e) in c.manifest.entries.iter().enumerate() {
        let id = i as u32;
        match e.kind {
            EntryKind::Dir => std::fs::create_dir_all(dest.join(&l.paths[i])).unwrap(),
            EntryKind::File => {
                jobs.push(FileJob {
                    id,
                    source: c.sources[i].clone(),
                    offset: 0,
                    size: e.size,
                    mtime: e.mtime,
                });
                let exp = Expect {
                    temp: dest.join(format!(".part-{id}")),
                    dest: dest.join(&l.paths[i]),
                    offset: 0,
                    size: e.size,
                };
                plan.insert(id, exp);
            }
        }
    }
    Setup {
        manifest: c.manifest,
        jobs,
        plan,
    }
}

/// Runs both ends over `w`/`r`; returns outcomes in arrival order and the receiver's result.
async fn run<W, R>(
    w: W,
    r: R,
    jobs: Vec<FileJob>,
    plan: &HashMap<u32, Expect>,
) -> (Vec<FileOutcome>, Result<(), RecvError>)
where
    W: AsyncWrite + Unpin + Send + 'static,
    R: tokio::io::AsyncRead + Unpin,
{
    run_journaled(w, r, jobs, plan, no_journal()).await
}

async fn run_journaled<W, R>(
    mut w: W,
    mut r: R,
    jobs: Vec<FileJob>,
    plan: &HashMap<u32, Expect>,
    journal: ferry_block::recv::Journal,
) -> (Vec<FileOutcome>, Result<(), RecvError>)
where
    W: AsyncWrite + Unpin + Send + 'static,
    R: tokio::io::AsyncRead + Unpin,
{
    let (_pause_tx, pause_rx) = watch::channel(false);
    let sender = tokio::spawn(async move {
        let sent = AtomicU64::new(0);
        let r = send_files(&mut w, jobs, pause_rx, &sent).await;
        let _ = w.shutdown().await;
        r
    });
    let (tx, mut rx) = mpsc::channel(1024);
    let received = AtomicU64::new(0);
    let result = receive_files(
        &mut r,
        plan,
        Os::current(),
        journal,
        tx,
        &received,
        watch::channel(false).1,
    )
    .await;
    let _ = sender.await;
    let mut outcomes = vec![];
    while let Ok(o) = rx.try_recv() {
        outcomes.push(o);
    }
    (outcomes, result)
}

fn tree(root: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = vec![];
    for e in walk(root) {
        let rel = e.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel.starts_with(".part") {
            continue;
        }
        out.push((rel, e.is_file().then(|| std::fs::read(&e).unwrap())));
    }
    out.sort();
    out
}

fn walk(p: &Path) -> Vec<PathBuf> {
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

fn sample(src: &Path) -> PathBuf {
    let root = src.join("trip ✈ 日本");
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("zero.bin"), b"").unwrap();
    std::fs::write(root.join("sub/ünï.txt"), "héllo".repeat(1000)).unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    std::fs::write(root.join("sub/deeper/big.bin"), big).unwrap();
    root
}

#[tokio::test]
async fn folders_round_trip_verified_with_empty_dirs_and_zero_byte_files() {
    let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = sample(src.path());
    let s = setup(std::slice::from_ref(&root), dest.path());
    assert_eq!(s.manifest.file_count(), 3);
    let (a, b) = tokio::io::duplex(256 << 10);
    let (outcomes, result) = run(a, b, s.jobs, &s.plan).await;
    result.unwrap();
    assert_eq!(outcomes.len(), 3);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, FileOutcome::Verified { .. })),
        "{outcomes:?}"
    );
    assert_eq!(tree(&root), tree(&dest.path().join("trip ✈ 日本")));
    assert!(
        !walk(dest.path())
            .iter()
            .any(|p| p.to_string_lossy().contains(".part")),
        "temp files left behind"
    );
}

/// Flips one byte of the stream at `at`.
struct Corrupt<W> {
    inner: W,
    at: usize,
    pos: usize,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Corrupt<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let (pos, at) = (self.pos, self.at);
        let mut owned;
        let data = if (pos..pos + buf.len()).contains(&at) {
            owned = buf.to_vec();
            owned[at - pos] ^= 0x20;
            &owned[..]
        } else {
            buf
        };
        let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, data))?;
        self.pos += n;
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_corrupted_byte_fails_that_file_only_and_it_is_never_placed() {
    let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(src.path().join("a.bin"), vec![1u8; 100_000]).unwrap();
    std::fs::write(src.path().join("b.bin"), vec![2u8; 1000]).unwrap();
    let s = setup(
        &[src.path().join("a.bin"), src.path().join("b.bin")],
        dest.path(),
    );
    let (a, b) = tokio::io::duplex(64 << 10);
    // FileStart (13) + Data head (5) + 500 bytes into a.bin's content.
    let (outcomes, result) = run(
        Corrupt {
            inner: a,
            at: 13 + 5 + 500,
            pos: 0,
        },
        b,
        s.jobs,
        &s.plan,
    )
    .await;
    result.unwrap();
    assert_eq!(
        outcomes[0],
        FileOutcome::Failed {
            id: 0,
            reason: FileFailure::HashMismatch
        }
    );
    assert!(matches!(&outcomes[1], FileOutcome::Verified { id: 1, .. }));
    assert!(
        !dest.path().join("a.bin").exists(),
        "a corrupt file must never be placed"
    );
    assert!(!dest.path().join(".part-0").exists());
    assert_eq!(
        std::fs::read(dest.path().join("b.bin")).unwrap(),
        vec![2u8; 1000]
    );
}

#[tokio::test]
async fn resume_sends_only_the_rest_and_the_hash_still_covers_everything() {
    let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(src.path().join("f.bin"), &data).unwrap();
    let mut s = setup(&[src.path().join("f.bin")], dest.path());
    // A previous attempt left 2,000,000 good bytes and some junk after them.
    let mut partial = data[..2_000_000].to_vec();
    partial.extend_from_slice(b"junk past the offset");
    std::fs::write(&s.plan[&0].temp, &partial).unwrap();
    s.plan.get_mut(&0).unwrap().offset = 2_000_000;
    s.jobs[0].offset = 2_000_000;
    let (a, b) = tokio::io::duplex(1 << 20);
    let (outcomes, result) = run(a, b, s.jobs.clone(), &s.plan).await;
    result.unwrap();
    assert!(
        matches!(&outcomes[0], FileOutcome::Verified { .. }),
        "{outcomes:?}"
    );
    assert_eq!(std::fs::read(dest.path().join("f.bin")).unwrap(), data);

    // A bad prefix is caught by the whole-file hash.
    let dest2 = tempfile::tempdir().unwrap();
    let mut s2 = setup(&[src.path().join("f.bin")], dest2.path());
    let mut bad = data[..1_000_000].to_vec();
    bad[10] ^= 1;
    std::fs::write(&s2.plan[&0].temp, &bad).unwrap();
    s2.plan.get_mut(&0).unwrap().offset = 1_000_000;
    s2.jobs[0].offset = 1_000_000;
    let (a, b) = tokio::io::duplex(1 << 20);
    let (outcomes, _) = run(a, b, s2.jobs, &s2.plan).await;
    assert_eq!(
        outcomes[0],
        FileOutcome::Failed {
            id: 0,
            reason: FileFailure::HashMismatch
        }
    );
}

/// Small files are journaled a synced batch at a time (the caller's one transaction; one per
/// file cost two thirds of the small-file rate), every one of them exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_are_journaled_in_batches() {
    let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let many = src.path().join("many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..600 {
        std::fs::write(
            many.join(format!("{i}.txt")),
            format!("file {i}\n").repeat(i % 50 + 1),
        )
        .unwrap();
    }
    let s = setup(std::slice::from_ref(&many), dest.path());
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u32>>::new()));
    let journal: ferry_block::recv::Journal = {
        let calls = calls.clone();
        std::sync::Arc::new(move |files| {
            calls
                .lock()
                .unwrap()
                .push(files.iter().map(|(id, _)| *id).collect());
            Ok(())
        })
    };
    let (a, b) = tokio::io::duplex(1 << 20);
    let (outcomes, result) = run_journaled(a, b, s.jobs.clone(), &s.plan, journal).await;
    result.unwrap();
    assert_eq!(outcomes.len(), 600);
    assert!(outcomes.iter().all(|o| matches!(
        o,
        FileOutcome::Verified {
            journaled: true,
            ..
        }
    )));
    let calls = calls.lock().unwrap();
    let mut ids: Vec<u32> = calls.iter().flatten().copied().collect();
    ids.sort_unstable();
    let mut planned: Vec<u32> = s.plan.keys().copied().collect();
    planned.sort_unstable();
    assert_eq!(ids, planned, "every file journaled exactly once");
    // 512 a batch, or what came within 200 ms: a journal call per file would be 600.
    assert!(
        calls.len() <= 60,
        "{} journal calls for 600 files",
        calls.len()
    );
    assert_eq!(tree(&many), tree(&dest.path().join("many")));
}

/// A small file (read whole in one piece by the sender) resumes like a big one: the rest is
/// sent, and the hash still covers the prefix already here.
#[tokio::test]
async fn a_small_file_resumes_from_its_offset() {
    let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(src.path().join("s.bin"), &data).unwrap();
    let mut s = setup(&[src.path().join("s.bin")], dest.path());
    std::fs::write(&s.plan[&0].temp, &data[..100_000]).unwrap();
    s.plan.get_mut(&0).unwrap().offset = 100_000;
    s.jobs[0].offset = 100_000;
    let (a, b) = tokio::io::duplex(1 << 20);
    let (outcomes, result) = run(a, b, s.jobs, &s.plan).await;
    result.unwrap();
    assert!(
        matches!(&outcomes[0], FileOutcome::Verified { .. }),
        "{outcomes:?}"
    );
    assert_eq!(std::fs::read(dest.path().join("s.bin")).unwrap(), data);
}

#[tokio::test]
async fn a_file_that_changed_since_the_offer_is_refused_by_the_sender() {
    let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(src.path().join("a.txt"), b"original").unwrap();
    std::fs::write(src.path().join("b.txt"), b"fine").unwrap();
    let s = setup(
        &[src.path().join("a.txt"), src.path().join("b.txt")],
        dest.path(),
    );
    std::fs::write(src.path().join("a.txt"), b"changed later, longer").unwrap();
    let (a, b) = tokio::io::duplex(64 << 10);
    let (outcomes, result) = run(a, b, s.jobs, &s.plan).await;
    result.unwrap();
    assert!(
        matches!(&outcomes[0], FileOutcome::Failed { id: 0, reason: FileFailure::SenderAborted(r) } if r.contains("changed"))
    );
    assert!(matches!(&outcomes[1], FileOutcome::Verified { id: 1, .. }));
    assert!(!dest.path().join("a.txt").exists());
}

/// Feeds hand-made records to a receiver expecting one 10-byte file.
async fn receive_raw(
    bytes: Vec<u8>,
) -> (
    Vec<FileOutcome>,
    Result<(), RecvError>,
    PathBuf,
    tempfile::TempDir,
) {
    let dest = tempfile::tempdir().unwrap();
    let exp = Expect {
        temp: dest.path().join(".part-0"),
        dest: dest.path().join("f"),
        offset: 0,
        size: 10,
    };
    let plan = HashMap::from([(0u32, exp)]);
    let (tx, mut rx) = mpsc::channel(16);
    let got = AtomicU64::new(0);
    let result = receive_files(
        &mut &bytes[..],
        &plan,
        Os::current(),
        no_journal(),
        tx,
        &got,
        watch::channel(false).1,
    )
    .await;
    let mut outcomes = vec![];
    while let Ok(o) = rx.try_recv() {
        outcomes.push(o);
    }
    let final_path = dest.path().join("f");
    (outcomes, result, final_path, dest)
}

fn rec(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[tokio::test]
async fn lying_senders_get_clear_errors_and_nothing_is_placed() {
    let hash = *blake3::hash(&[7u8; 10]).as_bytes();
    let start = record::file_start(0, 0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "more bytes than declared",
            rec(&[
                &start,
                &record::data_head(11),
                &[7u8; 11],
                &record::file_end(&hash),
            ]),
        ),
        (
            "fewer bytes than declared",
            rec(&[
                &start,
                &record::data_head(9),
                &[7u8; 9],
                &record::file_end(&hash),
            ]),
        ),
        ("not in the plan", rec(&[&record::file_start(5, 0)])),
        ("wrong offset", rec(&[&record::file_start(0, 3)])),
        ("data outside a file", rec(&[&record::data_head(1), &[0]])),
        (
            "stream cut mid-file",
            rec(&[&start, &record::data_head(10), &[7u8; 4]]),
        ),
        (
            "sent twice",
            rec(&[
                &start,
                &record::data_head(10),
                &[7u8; 10],
                &record::file_end(&hash),
                &start,
            ]),
        ),
        ("ends without the planned file", vec![]),
        (
            "garbage after the end",
            rec(&[
                &start,
                &record::data_head(10),
                &[7u8; 10],
                &record::file_end(&hash),
                b"\xffjunk",
            ]),
        ),
    ];
    for (what, bytes) in cases {
        let (_outcomes, result, _f, _dest) = receive_raw(bytes).await;
        assert!(result.is_err(), "{what}: accepted");
        println!("{what}: {}", result.unwrap_err());
    }
    // The honest version of the same stream works.
    let ok = rec(&[
        &start,
        &record::data_head(10),
        &[7u8; 10],
        &record::file_end(&hash),
    ]);
    let (outcomes, result, f, _dest) = receive_raw(ok).await;
    result.unwrap();
    assert!(matches!(outcomes[0], FileOutcome::Verified { .. }));
    assert_eq!(std::fs::read(f).unwrap(), [7u8; 10]);
}

#[tokio::test]
async fn a_destination_that_vanished_is_a_clear_disk_error() {
    let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(src.path().join("a"), b"x").unwrap();
    let s = setup(&[src.path().join("a")], dest.path());
    std::fs::remove_dir_all(dest.path()).unwrap();
    let (a, b) = tokio::io::duplex(64 << 10);
    let (outcomes, result) = run(a, b, s.jobs, &s.plan).await;
    assert!(matches!(result, Err(RecvError::Disk { .. })), "{result:?}");
    assert!(outcomes.is_empty());
}
