//! A scripted hostile Spacedrop peer ("mallory") against a real victim node, over real QUIC on
//! 127.0.0.1 (discovery off: nothing leaves loopback). Mallory is a real node (so it has a real,
//! proven identity) that speaks protocols 3 and 4 by hand: stream headers, frames and records
//! written byte for byte.
//!
//! What the lower layers already prove is not repeated here: bad stream headers, unknown
//! protocols and versions, 10,000 streams and slow headers (`ferry-p2p/tests/loopback.rs`), and
//! lying records fed straight into the block receiver (`ferry-block/tests/duplex.rs`). This file
//! covers the same kind of lies one level up, where the victim's Spacedrop service, its store,
//! its prompts and its other peers are involved: hostile names in an offer, oversized counts and
//! frames, lies in the data phase of an accepted transfer, endless and stalled streams, and
//! reused transfer ids; and, the other way round, a hostile receiver flooding a victim sender
//! with failure reports. Throughout, an honest third peer pings the victim, and after the attacks
//! it completes a real transfer to it.
//!
//! Every case prints what it measured (times, RSS); assertions are about behaviour (refused,
//! nothing placed, other peers served), with generous bounds where a bound is needed. The tests
//! take turns (one lock), so that each one's memory figures are its own.

#[path = "support/nodes.rs"]
mod nodes;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_block::{record, Entry, EntryKind, Manifest};
use ferry_core::spacedrop::wire::{
    Answer, Control, DataStart, Offer, Refusal, TransferId, CONTROL_ID, DATA_ID, MAX_ANSWER,
    MAX_CONTROL, MAX_OFFER, VERSION,
};
use ferry_core::spacedrop::Side;
use ferry_core::{AcceptPolicy, Decision, Event, TransferInfo, TransferState};
use ferry_p2p::router::open;
use ferry_p2p::wire::{expect_frame, read_frame, write_frame};
use ferry_p2p::{Code, StreamError};
use nodes::*;
use quinn::{RecvStream, SendStream};

/// Generous: a loaded 2-core CI machine runs these next to other builds.
const WAIT: Duration = Duration::from_secs(30);

/// Yields now and then inside an attacker's write loop. Mallory shares this test's runtime
/// with her victim; a real one runs elsewhere. A loop of writes that are ready at once (quinn's
/// streams spend no co-operative budget) would hold a worker thread for as long as the stream's
/// window lasts, stalling the victim's timers and connections in a way no remote peer can.
async fn attacker_yields() {
    tokio::task::coop::consume_budget().await;
}

/// One test at a time, so that RSS figures belong to the case that printed them.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The victim, the attacker, and an honest peer that must keep being served.
struct Scene {
    t: tempfile::TempDir,
    v: Peer,
    m: Peer,
    h: Peer,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

async fn scene(victim_accepts: AcceptPolicy) -> Scene {
    let turn = SERIAL.lock().await;
    let t = tempfile::tempdir().unwrap();
    let v = peer(&t.path().join("v"), "victim", victim_accepts, "127.0.0.1:0").await;
    let m = peer(
        &t.path().join("m"),
        "mallory",
        AcceptPolicy::Everyone,
        "127.0.0.1:0",
    )
    .await;
    let h = peer(
        &t.path().join("h"),
        "honest",
        AcceptPolicy::Ask,
        "127.0.0.1:0",
    )
    .await;
    pair(&m, &v).await;
    pair(&h, &v).await;
    // The honest peer's transfers are accepted whatever the policy for others.
    let mut cfg = v.node.spacedrop().config();
    if let AcceptPolicy::From(list) = &mut cfg.accept {
        list.push(h.node.id());
    }
    cfg.prompt_timeout = WAIT;
    v.node.spacedrop().set_config(cfg);
    Scene {
        t,
        v,
        m,
        h,
        _turn: turn,
    }
}

impl Scene {
    async fn conn(&self) -> quinn::Connection {
        self.m
            .node
            .p2p()
            .connect_peer(&self.v.node.id())
            .await
            .unwrap()
    }

    /// Everything on disk under the test dir but the nodes' data dirs (databases, keys).
    fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = walk(self.t.path())
            .into_iter()
            .filter(|p| !p.components().any(|c| c.as_os_str() == "data"))
            .collect();
        v.sort();
        v
    }
}

// ---- memory ----

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

/// RSS now, and the peak since the last [`Mem::start`] (VmHWM, reset through `clear_refs`).
struct Mem {
    rss0: u64,
}

impl Mem {
    fn start() -> Mem {
        // "5" resets the peak RSS of this process to its current RSS (Linux >= 4.0).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Mem {
            rss0: status_kib("VmRSS:"),
        }
    }

    /// Peak growth over the start, in MiB, printed.
    fn report(&self, what: &str) -> u64 {
        let (rss, peak) = (status_kib("VmRSS:"), status_kib("VmHWM:"));
        let grew = peak.saturating_sub(self.rss0) / 1024;
        println!(
            "    {what}: RSS {} MiB before, {} MiB after, peak {} MiB (+{grew} MiB)",
            self.rss0 / 1024,
            rss / 1024,
            peak / 1024
        );
        grew
    }
}

// ---- the honest peer ----

/// Pings the victim every 100 ms until stopped; each ping must answer within 5 s.
struct Pinger {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<(usize, usize, Duration)>,
}

fn pinger(s: &Scene) -> Pinger {
    let p2p = s.h.node.p2p().clone();
    let victim = s.v.node.id();
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let (mut ok, mut failed, mut worst) = (0, 0, Duration::ZERO);
        while !*rx.borrow() {
            let t = Instant::now();
            match tokio::time::timeout(Duration::from_secs(5), p2p.ping(&victim, 1, Duration::ZERO))
                .await
            {
                Ok(Ok(_)) => {
                    ok += 1;
                    worst = worst.max(t.elapsed());
                }
                other => {
                    failed += 1;
                    println!("    ping failed: {other:?}");
                }
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        (ok, failed, worst)
    });
    Pinger { stop, task }
}

impl Pinger {
    async fn finish(self, tag: &str) {
        let _ = self.stop.send(true);
        let (ok, failed, worst) = self.task.await.unwrap();
        println!("[{tag}] honest pings during the attacks: {ok} answered, {failed} failed, slowest {worst:?}");
        assert_eq!(failed, 0, "the victim stopped answering pings");
        assert!(ok > 0);
    }
}

/// The honest peer sends a small file for real; it must arrive bit-exact.
async fn honest_transfer(s: &Scene, tag: &str) {
    let data = pseudo_random(256 << 10, tag.len() as u64 + 7);
    let name = format!("honest-{tag}.bin");
    let src = s.h.dir.join(&name);
    std::fs::write(&src, &data).unwrap();
    let t = Instant::now();
    let id =
        s.h.node
            .spacedrop()
            .send(s.v.node.id(), vec![src])
            .await
            .unwrap();
    // The sender's view first: a refused offer never reaches the victim's list.
    let t0 = Instant::now();
    let sent = loop {
        let info =
            s.h.node
                .spacedrop()
                .transfers()
                .into_iter()
                .find(|t| t.id == id.hex());
        if let Some(i) = info.filter(|i| i.state.is_final()) {
            break i;
        }
        assert!(t0.elapsed() < WAIT * 2, "honest transfer not done in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sent.state, TransferState::Done, "honest transfer: {sent:?}");
    let got = victim_final(&s.v, &id, WAIT).await;
    assert_eq!(got.state, TransferState::Done, "honest transfer: {got:?}");
    assert_eq!(std::fs::read(s.v.downloads.join(&name)).unwrap(), data);
    println!(
        "[{tag}] honest peer: 256 KiB Spacedrop transfer done bit-exact in {:?}",
        t.elapsed()
    );
}

// ---- the victim, seen from outside ----

fn victim_info(v: &Peer, id: &TransferId) -> Option<TransferInfo> {
    v.node
        .spacedrop()
        .transfers()
        .into_iter()
        .find(|t| t.id == id.hex())
}

/// Polls the victim (its event stream may lag behind a flood) until `f` holds for `id`.
async fn victim_where(
    v: &Peer,
    id: &TransferId,
    within: Duration,
    f: impl Fn(&TransferInfo) -> bool,
) -> TransferInfo {
    let t = Instant::now();
    loop {
        if let Some(info) = victim_info(v, id).filter(|i| f(i)) {
            return info;
        }
        assert!(
            t.elapsed() < within,
            "transfer {} not as expected within {within:?}: {:?}",
            id.hex(),
            victim_info(v, id).map(|i| (i.state, i.bytes_done, i.files_done, i.failed_count))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn victim_final(v: &Peer, id: &TransferId, within: Duration) -> TransferInfo {
    victim_where(v, id, within, |i| i.state.is_final()).await
}

fn parts(dir: &Path) -> Vec<PathBuf> {
    if !dir.exists() {
        return vec![];
    }
    walk(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".part"))
        .collect()
}

// ---- mallory's tools ----

fn entry(path: &[&str], kind: EntryKind, size: u64) -> Entry {
    Entry {
        path: path.iter().map(|c| c.to_string()).collect(),
        kind,
        size,
        mode: 0o644,
        mtime: 0,
    }
}

fn file(path: &[&str], size: u64) -> Entry {
    entry(path, EntryKind::File, size)
}

fn manifest(entries: Vec<Entry>) -> Manifest {
    Manifest { entries }
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn describe(r: &Result<Answer, StreamError>) -> String {
    match r {
        Ok(Answer::Rejected(why)) => format!("Rejected({why:?}): {why}"),
        Ok(Answer::Accepted { starts }) => format!("ACCEPTED ({} starts)", starts.len()),
        Err(e) => format!("stream ended: {e}"),
    }
}

/// Sends an offer frame (any bytes) on a fresh control stream and reads the answer. Returns
/// the answer, the time from the last byte written to the answer, and the streams.
async fn raw_offer(
    conn: &quinn::Connection,
    frame: &[u8],
) -> (
    Result<Answer, StreamError>,
    Duration,
    SendStream,
    RecvStream,
) {
    let (mut s, mut r) = open(conn, CONTROL_ID, VERSION).await.unwrap();
    // The victim may stop reading before the end (a length it refuses): that is fine.
    let _ = s.write_all(frame).await;
    let t = Instant::now();
    let got = expect_frame::<_, Answer>(&mut r, MAX_ANSWER, WAIT, "an answer").await;
    (got, t.elapsed(), s, r)
}

fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn offer_frame(id: TransferId, m: &Manifest, resume: bool) -> Vec<u8> {
    let body = postcard::to_stdvec(&Offer {
        transfer: id,
        manifest: m.clone(),
        resume,
    })
    .unwrap();
    frame_of(&body)
}

async fn offer(
    conn: &quinn::Connection,
    id: TransferId,
    m: &Manifest,
    resume: bool,
) -> (Result<Answer, StreamError>, Duration) {
    let (got, took, _s, _r) = raw_offer(conn, &offer_frame(id, m, resume)).await;
    (got, took)
}

/// An offer the victim accepted: mallory's end of its control stream.
struct Session {
    id: TransferId,
    cs: SendStream,
    cr: RecvStream,
}

async fn accepted(conn: &quinn::Connection, m: &Manifest) -> Session {
    let id = TransferId::random();
    let (got, _, cs, cr) = raw_offer(conn, &offer_frame(id, m, false)).await;
    assert!(
        matches!(got, Ok(Answer::Accepted { .. })),
        "{}",
        describe(&got)
    );
    Session { id, cs, cr }
}

/// Opens the data stream of an accepted transfer (DataStart written).
async fn data_stream(conn: &quinn::Connection, id: TransferId) -> (SendStream, RecvStream) {
    let (mut ds, dr) = open(conn, DATA_ID, VERSION).await.unwrap();
    write_frame(&mut ds, &DataStart { transfer: id }, MAX_CONTROL)
        .await
        .unwrap();
    (ds, dr)
}

/// What the victim writes on a control stream until it ends (or `within` passes), in short.
async fn victim_says(cr: &mut RecvStream, within: Duration) -> Vec<String> {
    let mut said = vec![];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, read_frame::<_, Control>(cr, MAX_CONTROL)).await {
            Err(_) => {
                said.push("(still open)".into());
                return said;
            }
            Ok(Ok(Some(Control::Progress { .. }))) => {
                if said.last().map(String::as_str) != Some("Progress…") {
                    said.push("Progress…".into());
                }
            }
            Ok(Ok(Some(c))) => said.push(format!("{c:?}")),
            Ok(Ok(None)) => {
                said.push("FIN".into());
                return said;
            }
            Ok(Err(e)) => {
                said.push(format!("{e}"));
                return said;
            }
        }
    }
}

/// The code a stream was reset or stopped with, as seen by a read.
async fn reset_code(r: &mut RecvStream, within: Duration) -> Option<Code> {
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, r.read(&mut buf)).await {
            Ok(Err(quinn::ReadError::Reset(c))) => return Some(Code::from_u64(c.into_inner())),
            Ok(Ok(Some(_))) => continue,
            _ => return None,
        }
    }
}

// ---- the cases ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_and_nothing_is_written() {
    let s = scene(AcceptPolicy::Everyone).await;
    let ping = pinger(&s);
    let conn = s.conn().await;
    let before = s.files();
    let long = "x".repeat(1025);
    let deep: Vec<&str> = vec!["d"; 65];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("'../x' as one name", vec!["../x"]),
        ("'..' then 'x'", vec!["..", "x"]),
        ("'/etc/passwd' as one name", vec!["/etc/passwd"]),
        ("absolute: '', 'etc', 'passwd'", vec!["", "etc", "passwd"]),
        ("'C:\\x'", vec!["C:\\x"]),
        ("UNC '\\\\host\\share\\x'", vec!["\\\\host\\share\\x"]),
        ("'a/../../b' as one name", vec!["a/../../b"]),
        ("'a', '..', '..', 'b'", vec!["a", "..", "..", "b"]),
        ("'.'", vec!["."]),
        ("a NUL in the name", vec!["evil\0.txt"]),
        ("a 1025-byte name", vec![long.as_str()]),
        ("65 levels deep", deep),
    ];
    for (what, path) in cases {
        // A harmless folder and file first: the whole manifest is refused, not just the entry.
        let m = manifest(vec![
            entry(&["ok"], EntryKind::Dir, 0),
            file(&["ok", "fine.txt"], 5),
            file(&path, 5),
        ]);
        let id = TransferId::random();
        let (got, took) = offer(&conn, id, &m, false).await;
        println!("[names] {what}: refused in {took:?}: {}", describe(&got));
        // Too deep is refused while decoding (before the path is allocated): a reset, not an
        // answer. Every other name decodes and fails validation.
        let refused = match &got {
            Ok(Answer::Rejected(Refusal::Invalid(_))) => true,
            Err(StreamError::Peer(Code::ProtocolError)) => path.len() > 64,
            _ => false,
        };
        assert!(refused, "{what}: {}", describe(&got));
        assert!(
            victim_info(&s.v, &id).is_none(),
            "{what}: a transfer was recorded"
        );
    }
    // Nothing at all was written: not even the destination folder exists.
    assert_eq!(s.files(), before, "something was written");
    assert!(!s.v.downloads.exists());
    println!("[names] nothing written anywhere under the test dir, no transfer recorded");
    ping.finish("names").await;
    honest_transfer(&s, "names").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_offers_and_frames_are_refused_without_allocating_them() {
    let s = scene(AcceptPolicy::Everyone).await;
    let ping = pinger(&s);
    let conn = s.conn().await;
    let before = s.files();

    // A manifest whose count claims ten million entries, followed by a handful of bytes.
    let mut body = TransferId::random().0.to_vec();
    varint(10_000_000, &mut body);
    body.extend_from_slice(&[1, 1, b'a', 0, 5, 0, 0]);
    let mem = Mem::start();
    let (got, took, _, _) = raw_offer(&conn, &frame_of(&body)).await;
    println!(
        "[oversized] count claims 10,000,000 entries ({} bytes): {} after {took:?}",
        body.len(),
        describe(&got)
    );
    assert!(mem.report("claimed count") < 64);
    assert!(matches!(got, Err(StreamError::Peer(Code::ProtocolError))));

    // A million real (tiny) entries, 7 MB on the wire: four times the limit.
    let mut body = TransferId::random().0.to_vec();
    varint(1_000_000, &mut body);
    for _ in 0..1_000_000 {
        body.extend_from_slice(&[1, 1, b'a', 0, 5, 0, 0]);
    }
    body.push(0);
    let mem = Mem::start();
    let (got, took, _, _) = raw_offer(&conn, &frame_of(&body)).await;
    println!(
        "[oversized] 1,000,000 entries ({} MB): {} {took:?} after the last byte",
        body.len() >> 20,
        describe(&got)
    );
    let grew = mem.report("a million entries");
    assert!(
        matches!(got, Err(StreamError::Peer(Code::ProtocolError))),
        "{}",
        describe(&got)
    );
    // The frame itself is 7 MB, held by both ends here; decoded it was 120 MiB.
    assert!(grew < 64, "a million-entry offer cost {grew} MiB");

    // One entry whose path has 40 million (empty) components: 40 MB that would decode into
    // 40 million Strings (~1 GB) if it were decoded before being checked.
    let n = 40_000_000;
    let mut body = TransferId::random().0.to_vec();
    varint(1, &mut body);
    varint(n, &mut body);
    body.resize(body.len() + n as usize, 0);
    body.extend_from_slice(&[0, 5, 0, 0, 0]);
    let mem = Mem::start();
    let (got, took, _, _) = raw_offer(&conn, &frame_of(&body)).await;
    println!(
        "[oversized] a path of {n} components ({} MB): {} {took:?} after the last byte",
        body.len() >> 20,
        describe(&got)
    );
    drop(body);
    let grew = mem.report("a 40-million-component path");
    assert!(
        matches!(got, Err(StreamError::Peer(Code::ProtocolError))),
        "{}",
        describe(&got)
    );
    // The 40 MB frame is held by both ends here; decoded it was about 1 GB.
    assert!(grew < 256, "a path bomb cost {grew} MiB");

    // Every limit per entry respected: 250,000 entries, 64 one-letter components each (33 MB).
    // Decoded whole that was 16 million Strings, 870 MiB; the total is bounded to 2,000,000.
    let mut body = TransferId::random().0.to_vec();
    varint(250_000, &mut body);
    for _ in 0..250_000 {
        varint(64, &mut body);
        for _ in 0..64 {
            body.extend_from_slice(&[1, b'a']);
        }
        body.extend_from_slice(&[0, 5, 0, 0]);
    }
    body.push(0);
    let mem = Mem::start();
    let (got, took, _, _) = raw_offer(&conn, &frame_of(&body)).await;
    println!(
        "[oversized] 250,000 entries 64 components deep ({} MB): {} {took:?} after the last byte",
        body.len() >> 20,
        describe(&got)
    );
    drop(body);
    let grew = mem.report("16 million components");
    assert!(
        matches!(got, Err(StreamError::Peer(Code::ProtocolError))),
        "{}",
        describe(&got)
    );
    assert!(grew < 320, "16 million components cost {grew} MiB");

    // Absurd sizes: over the per-file limit, and three files of 1 PiB each (valid, but no disk
    // has that much space).
    for (what, m) in [
        (
            "a file of 2^64-1 bytes",
            manifest(vec![file(&["huge"], u64::MAX)]),
        ),
        (
            "three files of 1 PiB",
            manifest(vec![
                file(&["p1"], 1 << 50),
                file(&["p2"], 1 << 50),
                file(&["p3"], 1 << 50),
            ]),
        ),
    ] {
        let id = TransferId::random();
        let (got, took) = offer(&conn, id, &m, false).await;
        println!("[oversized] {what}: {} in {took:?}", describe(&got));
        assert!(
            matches!(
                &got,
                Ok(Answer::Rejected(
                    Refusal::Invalid(_) | Refusal::NoSpace { .. }
                ))
            ),
            "{what}: {}",
            describe(&got)
        );
        assert!(victim_info(&s.v, &id).is_none());
    }

    // Frames over their limit: the length alone is refused, nothing after it is read.
    for (what, len) in [
        ("an offer frame of 4 GiB", u32::MAX),
        (
            "an offer frame one byte over the limit",
            MAX_OFFER as u32 + 1,
        ),
    ] {
        let mem = Mem::start();
        let (got, took, _, _) = raw_offer(&conn, &len.to_be_bytes()).await;
        println!("[oversized] {what}: {} in {took:?}", describe(&got));
        mem.report(what);
        assert!(matches!(got, Err(StreamError::Peer(Code::ProtocolError))));
    }
    // The free-space check created the (empty) destination folder; nothing else was written.
    let files: Vec<PathBuf> = s
        .files()
        .into_iter()
        .filter(|p| p != &s.v.downloads)
        .collect();
    assert_eq!(files, before, "something was written");
    assert!(!s.v.downloads.exists() || walk(&s.v.downloads).is_empty());
    println!("[oversized] nothing written, no transfer recorded");

    // An oversized control frame in an accepted transfer.
    let mut sess = accepted(&conn, &manifest(vec![file(&["small.txt"], 10)])).await;
    let t = Instant::now();
    sess.cs.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let info = victim_final(&s.v, &sess.id, WAIT).await;
    let said = victim_says(&mut sess.cr, WAIT).await;
    println!(
        "[oversized] a 4 GiB control frame mid-transfer: {} in {:?}: {:?}; mallory read {said:?}",
        info.state.name(),
        t.elapsed(),
        info.state
    );
    assert!(
        matches!(&info.state, TransferState::Failed { reason } if reason.contains("4096")),
        "{info:?}"
    );
    assert!(parts(&s.v.downloads).is_empty());
    assert!(!s.v.downloads.join("small.txt").exists());

    ping.finish("oversized").await;
    honest_transfer(&s, "oversized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_data_fails_the_transfer_and_places_nothing() {
    let mut s = scene(AcceptPolicy::Everyone).await;
    let ping = pinger(&s);
    let conn = s.conn().await;
    // A file the victim already has under the name mallory will use.
    std::fs::create_dir_all(&s.v.downloads).unwrap();
    let existing = s.v.downloads.join("report.txt");
    std::fs::write(&existing, b"the victim's own report").unwrap();

    let ten = [7u8; 10];
    let hash_ten = *blake3::hash(&ten).as_bytes();
    let big = pseudo_random(3 << 20, 3);
    let start = record::file_start(0, 0);
    type Lie = (&'static str, u64, Vec<Vec<u8>>);
    let lies: Vec<Lie> = vec![
        (
            "more bytes than announced",
            10,
            vec![
                start.to_vec(),
                record::data_head(11).to_vec(),
                [7u8; 11].to_vec(),
                record::file_end(blake3::hash(&[7u8; 11]).as_bytes()).to_vec(),
            ],
        ),
        (
            "fewer bytes, then the file's end",
            10,
            vec![
                start.to_vec(),
                record::data_head(9).to_vec(),
                [7u8; 9].to_vec(),
                record::file_end(blake3::hash(&[7u8; 9]).as_bytes()).to_vec(),
            ],
        ),
        (
            "fewer bytes, then FIN",
            10,
            vec![
                start.to_vec(),
                record::data_head(4).to_vec(),
                [7u8; 4].to_vec(),
            ],
        ),
        (
            "the right size, a wrong hash",
            10,
            vec![
                start.to_vec(),
                record::data_head(10).to_vec(),
                ten.to_vec(),
                record::file_end(&[0xee; 32]).to_vec(),
            ],
        ),
        (
            "3 MiB (synced alone), a wrong hash",
            big.len() as u64,
            [
                vec![start.to_vec()],
                big.chunks(1 << 20)
                    .flat_map(|c| [record::data_head(c.len()).to_vec(), c.to_vec()])
                    .collect(),
                vec![record::file_end(&hash_ten).to_vec()],
            ]
            .concat(),
        ),
    ];
    for (what, size, records) in lies {
        let mut sess = accepted(&conn, &manifest(vec![file(&["report.txt"], size)])).await;
        let (mut ds, _dr) = data_stream(&conn, sess.id).await;
        let mut write_err = None;
        for r in &records {
            if let Err(e) = ds.write_all(r).await {
                write_err = Some(e);
                break;
            }
        }
        let _ = ds.finish();
        let t = Instant::now();
        let info = victim_final(&s.v, &sess.id, WAIT).await;
        // Front ends hear it as a Transfer event in state failed, with the same reason.
        let event = final_state(&mut s.v.events, &sess.id, WAIT).await;
        assert_eq!(event.state, info.state, "{what}");
        let said = victim_says(&mut sess.cr, WAIT).await;
        let reason = match &info.state {
            TransferState::Failed { reason } => reason.clone(),
            other => panic!("{what}: the transfer ended {other:?}"),
        };
        println!(
            "[lies] {what}: failed {:?} after the last record: {reason}; files: {:?}; mallory read {said:?}{}",
            t.elapsed(),
            info.failed,
            write_err.map(|e| format!("; data write: {e}")).unwrap_or_default()
        );
        assert!(!reason.is_empty());
        // Nothing placed, nothing half-written left, the victim's own file untouched.
        assert!(parts(&s.v.downloads).is_empty(), "{what}: .part left");
        assert_eq!(
            std::fs::read(&existing).unwrap(),
            b"the victim's own report",
            "{what}"
        );
        let listing: Vec<_> = std::fs::read_dir(&s.v.downloads)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(listing, ["report.txt"], "{what}: placed something");
    }
    ping.finish("lies").await;
    honest_transfer(&s, "lies").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_data_and_control_streams_are_cut_or_bounded() {
    let s = scene(AcceptPolicy::Everyone).await;
    let ping = pinger(&s);
    let conn = s.conn().await;

    // Data forever: 8 MiB announced, sent honestly, and then more and more.
    let size = 8u64 << 20;
    let mut sess = accepted(&conn, &manifest(vec![file(&["endless.bin"], size)])).await;
    let (mut ds, _dr) = data_stream(&conn, sess.id).await;
    let mem = Mem::start();
    ds.write_all(&record::file_start(0, 0)).await.unwrap();
    let chunk = vec![0x5a; 1 << 20];
    let (mut sent, mut over) = (0u64, None);
    let stopped = loop {
        if sent == size {
            over = Some(Instant::now());
        }
        if let Err(e) = async {
            ds.write_all(&record::data_head(chunk.len())).await?;
            ds.write_all(&chunk).await
        }
        .await
        {
            break e;
        }
        sent += chunk.len() as u64;
        assert!(sent < 1 << 30, "the victim took 1 GiB for an 8 MiB file");
    };
    let info = victim_final(&s.v, &sess.id, WAIT).await;
    println!(
        "[endless] data past the announced 8 MiB: cut {:?} after the excess began, {} MiB written in all; data stream: {stopped}; victim: {:?}",
        over.expect("the excess was sent").elapsed(),
        sent >> 20,
        info.state
    );
    let grew = mem.report("endless data");
    assert!(
        matches!(&info.state, TransferState::Failed { reason } if reason.contains("more bytes"))
    );
    assert!(grew < 256, "endless data cost {grew} MiB");
    let said = victim_says(&mut sess.cr, WAIT).await;
    println!("    mallory read {said:?}");
    assert!(said.iter().any(|m| m.starts_with("Abort")), "{said:?}");
    assert!(parts(&s.v.downloads).is_empty());
    assert!(!s.v.downloads.join("endless.bin").exists());

    // A control stream that never ends: Pause/Resume as fast as mallory can write, for 3 s, on
    // a transfer of 5,000 files whose names all had to be renamed (a control character in
    // each). Every state change was an event carrying the whole renamed list, so this flood
    // once held 1 GiB in the event channel for the test's own subscriber (which is behind).
    let names: Vec<String> = (0..5_000).map(|i| format!("f\u{1}{i}")).collect();
    let m = manifest(names.iter().map(|n| file(&[n.as_str()], 1)).collect());
    let mut sess = accepted(&conn, &m).await;
    let renamed = victim_info(&s.v, &sess.id).unwrap().renamed_count;
    assert_eq!(renamed, 5_000);
    // The event lists the first 100; the node gives them all, a page at a time.
    let all =
        s.v.node
            .spacedrop()
            .renamed_files(&sess.id, 0, usize::MAX)
            .unwrap();
    assert_eq!(all.len(), 5_000);
    assert_eq!(all[4_999].original, "f\u{1}4999");
    let last =
        s.v.node
            .spacedrop()
            .renamed_files(&sess.id, 4_900, 500)
            .unwrap();
    assert_eq!(last, all[4_900..].to_vec());
    let (_ds, _dr) = data_stream(&conn, sess.id).await;
    let mem = Mem::start();
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_secs(3) {
        let c = if n.is_multiple_of(2) {
            Control::Pause
        } else {
            Control::Resume
        };
        if let Err(e) = write_frame(&mut sess.cs, &c, MAX_CONTROL).await {
            panic!(
                "the victim stopped reading after {n} messages ({e}): {:?}",
                victim_info(&s.v, &sess.id)
            );
        }
        n += 1;
        attacker_yields().await;
    }
    let live = victim_info(&s.v, &sess.id).unwrap();
    println!(
        "[endless] {n} Pause/Resume messages in 3 s on a transfer with {renamed} renamed names; the transfer is {}",
        live.state.name()
    );
    let grew = mem.report("control flood");
    assert!(grew < 128, "a control flood cost {grew} MiB");
    // The victim still commands its transfer.
    let t = Instant::now();
    s.v.node.spacedrop().cancel(&sess.id).unwrap();
    let info = victim_final(&s.v, &sess.id, WAIT).await;
    println!(
        "    the victim's own cancel took {:?}: {:?}",
        t.elapsed(),
        info.state
    );
    assert_eq!(info.state, TransferState::Cancelled { by: Side::Local });

    // Messages only a receiver sends, from the sender, without end: cut at the first one.
    for c in [
        Control::Progress {
            bytes: u64::MAX,
            files: u32::MAX,
        },
        Control::FileDone { id: 0 },
        Control::Finished,
    ] {
        let mut sess = accepted(&conn, &manifest(vec![file(&["spam.txt"], 10)])).await;
        let (_ds, _dr) = data_stream(&conn, sess.id).await;
        let t = Instant::now();
        let mut n = 0;
        // Mallory writes until the victim stops reading (or 2 s, for the failure message).
        while t.elapsed() < Duration::from_secs(2) {
            if write_frame(&mut sess.cs, &c, MAX_CONTROL).await.is_err() {
                break;
            }
            n += 1;
            tokio::task::yield_now().await;
            if victim_info(&s.v, &sess.id).is_some_and(|i| i.state.is_final()) {
                break;
            }
        }
        let info = victim_final(&s.v, &sess.id, Duration::from_secs(5)).await;
        println!(
            "[endless] {c:?} from the sender, {n} written: cut in {:?}: {:?}",
            t.elapsed(),
            info.state
        );
        assert!(matches!(info.state, TransferState::Failed { .. }));
    }
    ping.finish("endless").await;
    honest_transfer(&s, "endless").await;
}

/// Every state change of a transfer is an event, and the event channel keeps 1,024 of them for
/// a subscriber that is behind (here: the test's first one, which never reads). When an event
/// carried the whole renamed list, names mallory chose were copied into each of them, so every
/// transfer of 25,000 renamed names, accepted and aborted, left two more copies there. Events
/// now carry counts and a bounded, shared preview.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_names_cannot_fill_a_stalled_subscribers_events() {
    let mut s = scene(AcceptPolicy::Everyone).await;
    let ping = pinger(&s);
    let conn = s.conn().await;
    const NAMES: usize = 25_000;
    const TRANSFERS: usize = 20;
    const WARM: usize = 3;
    // 100 bytes, then a control character: every name must be renamed.
    let long = "n".repeat(100);
    let names: Vec<String> = (0..NAMES).map(|i| format!("{long}\u{1}{i}")).collect();
    let m = manifest(names.iter().map(|n| file(&[n.as_str()], 1)).collect());
    let mut watch = s.v.node.subscribe();
    let mut mem = Mem::start();
    let t = Instant::now();
    let mut ids = vec![];
    for n in 0..TRANSFERS {
        if n == WARM {
            // What a transfer of that size costs (decoding, the layout, the store, the
            // allocator's pools) is the same whatever the events carry; what they carry is what
            // accumulates.
            mem.report(&format!("the first {WARM} transfers"));
            mem = Mem::start();
        }
        let mut sess = accepted(&conn, &m).await;
        write_frame(
            &mut sess.cs,
            &Control::Abort {
                reason: "mallory changed her mind".into(),
            },
            MAX_CONTROL,
        )
        .await
        .unwrap();
        // Read from a subscriber of its own that keeps up (the test's first one stays behind).
        final_state(&mut watch, &sess.id, WAIT).await;
        ids.push(sess.id);
    }
    println!(
        "[renamed] {TRANSFERS} transfers of {NAMES} renamed names, offered, accepted and aborted in {:?}",
        t.elapsed()
    );
    let grew = mem.report(&format!(
        "the other {} transfers, their events held",
        TRANSFERS - WARM
    ));
    // What the stalled subscriber holds of them: every event, each with a preview.
    let (mut events, mut most) = (0, 0);
    loop {
        match s.v.events.try_recv() {
            Ok(Event::Transfer { transfer }) if ids.iter().any(|i| i.hex() == transfer.id) => {
                assert_eq!(transfer.renamed_count, NAMES);
                assert_eq!(
                    transfer.renamed.len(),
                    ferry_core::spacedrop::preview::ITEMS
                );
                most = most.max(serde_json::to_vec(&transfer).unwrap().len());
                events += 1;
            }
            Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    println!("    {events} of their events held; the largest is {most} bytes of JSON");
    assert!(events >= 2 * TRANSFERS, "{events} events");
    assert!(most < 64 << 10, "an event of {most} bytes");
    assert!(grew < 64, "renamed names cost {grew} MiB");
    ping.finish("renamed").await;
    honest_transfer(&s, "renamed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_offers_are_cut_and_do_not_starve_other_peers() {
    let s = scene(AcceptPolicy::Everyone).await;
    let ping = pinger(&s);
    let conn = s.conn().await;
    let good = offer_frame(
        TransferId::random(),
        &manifest(vec![file(&["never.txt"], 5)]),
        false,
    );
    // Each stalls at a different point of the offer: right after the header, inside the
    // length, inside the body.
    let stalls: [(&str, &[u8]); 3] = [
        ("after the header", &[]),
        ("inside the length", &good[..2]),
        ("inside the body", &good[..good.len() / 2]),
    ];
    let stalled = |round: usize| {
        let mut tasks = vec![];
        for i in 0..4 {
            let (what, bytes) = stalls[(round + i) % stalls.len()];
            let (conn, bytes) = (conn.clone(), bytes.to_vec());
            tasks.push(tokio::spawn(async move {
                let (mut s, mut r) = open(&conn, CONTROL_ID, VERSION).await.unwrap();
                s.write_all(&bytes).await.unwrap();
                let t = Instant::now();
                let got =
                    expect_frame::<_, Answer>(&mut r, MAX_ANSWER, WAIT * 2, "an answer").await;
                (what, t.elapsed(), got, s)
            }));
        }
        tasks
    };
    // Two waves of four, 4 s apart, each stream stalled for good; the honest peer offers
    // in between.
    let t0 = Instant::now();
    let mut tasks = stalled(0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    tasks.extend(stalled(1));
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "[slowloris] 8 stalled offers open; honest transfer starts at {:?}",
        t0.elapsed()
    );
    honest_transfer(&s, "slowloris").await;
    for task in tasks {
        let (what, took, got, _s) = task.await.unwrap();
        println!(
            "[slowloris] stalled {what}: cut after {took:?}: {}",
            describe(&got)
        );
        assert!(
            matches!(got, Err(StreamError::Peer(Code::Timeout)))
                || matches!(got, Ok(Answer::Rejected(Refusal::Busy))),
            "{what}: {}",
            describe(&got)
        );
        assert!(took < WAIT * 2);
    }
    ping.finish("slowloris").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_id_cannot_be_hijacked_or_reused() {
    // Offers are prompted (answered by this test); the honest peer's are accepted.
    let mut s = scene(AcceptPolicy::From(vec![])).await;
    let ping = pinger(&s);
    let b = peer(
        &s.t.path().join("b"),
        "beta",
        AcceptPolicy::Ask,
        "127.0.0.1:0",
    )
    .await;
    pair(&b, &s.v).await;
    let conn = s.conn().await;
    let data = pseudo_random(48 << 20, 11);
    let src = b.dir.join("b.bin");
    std::fs::write(&src, &data).unwrap();

    // Beta offers X; the victim's prompt is open. Beta asks for a pause before any data flows,
    // so its transfer stays live while mallory tries things.
    let x = b
        .node
        .spacedrop()
        .send(s.v.node.id(), vec![src.clone()])
        .await
        .unwrap();
    // (The send's task registers it a moment after `send` returns.)
    while b.node.spacedrop().pause(&x).is_err() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    next(&mut s.v.events, WAIT, |e| match e {
        Event::SpacedropPrompt { prompt } if prompt.transfer == x.hex() => Some(()),
        _ => None,
    })
    .await;
    let small = manifest(vec![file(&["x.txt"], 5)]);
    let beta_manifest = manifest(vec![file(&["b.bin"], data.len() as u64)]);
    let taken = |what: &str, got: &Result<Answer, StreamError>, took: Duration| {
        println!("[reuse] {what}: {} in {took:?}", describe(got));
        assert!(
            matches!(got, Ok(Answer::Rejected(Refusal::Invalid(why))) if why.contains("taken")),
            "{what}: {}",
            describe(got)
        );
    };
    for (what, m, resume) in [
        ("mallory offers X while beta's X is prompted", &small, false),
        ("... as a resume", &small, true),
        ("... with beta's manifest", &beta_manifest, false),
    ] {
        let (got, took) = offer(&conn, x, m, resume).await;
        taken(what, &got, took);
    }
    let prompts = s.v.node.spacedrop().open_prompts();
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    assert_eq!(prompts[0].peer, b.node.id());
    s.v.node
        .spacedrop()
        .answer(&x, Decision::Accept { dest: None })
        .unwrap();
    let paused = victim_where(&s.v, &x, WAIT, |i| {
        i.state == TransferState::Paused { by: Side::Peer }
    })
    .await;
    println!(
        "[reuse] beta's X accepted and paused by beta at {} bytes",
        paused.bytes_done
    );

    // X is live (paused). Mallory tries to take it over, feed it, or learn about it.
    for (what, m, resume) in [
        ("mallory offers live X", &small, false),
        ("mallory resumes live X", &small, true),
        (
            "mallory resumes live X with beta's manifest",
            &beta_manifest,
            true,
        ),
    ] {
        let (got, took) = offer(&conn, x, m, resume).await;
        taken(what, &got, took);
    }
    let (mut ds, mut dr) = data_stream(&conn, x).await;
    let _ = ds.write_all(&record::file_start(0, 0)).await;
    let code = reset_code(&mut dr, WAIT).await;
    println!("[reuse] mallory opens a data stream for X: reset {code:?}");
    assert_eq!(code, Some(Code::ProtocolError));
    // A control message where an offer belongs.
    let (got, took, _, _) = raw_offer(
        &conn,
        &frame_of(&postcard::to_stdvec(&Control::Resume).unwrap()),
    )
    .await;
    println!(
        "[reuse] mallory sends Resume instead of an offer: {} in {took:?}",
        describe(&got)
    );
    assert!(matches!(got, Err(StreamError::Peer(Code::ProtocolError))));

    // (Beta itself reusing its live id for a second offer, and mallory resuming X once it is
    // done, are refused by `decide::admit` before anything is touched: its unit test.)

    // None of it touched beta's transfer.
    let now = victim_info(&s.v, &x).unwrap();
    assert_eq!(
        now.state,
        TransferState::Paused { by: Side::Peer },
        "{now:?}"
    );
    assert_eq!(now.peer, b.node.id());
    assert_eq!(now.bytes_total, data.len() as u64);
    b.node.spacedrop().resume(&x).unwrap();
    let done = victim_final(&s.v, &x, WAIT * 2).await;
    assert_eq!(done.state, TransferState::Done, "{done:?}");
    assert_eq!(done.peer, b.node.id());
    assert_eq!(std::fs::read(s.v.downloads.join("b.bin")).unwrap(), data);
    println!("[reuse] beta's X completed bit-exact (48 MiB)");

    // An id the victim itself uses to send (mallory is its receiver, so knows the id).
    let mine = s.v.downloads.join("to-mallory.txt");
    std::fs::write(&mine, b"hello mallory").unwrap();
    let y =
        s.v.node
            .spacedrop()
            .send(s.m.node.id(), vec![mine])
            .await
            .unwrap();
    let sent = final_state(&mut s.m.events, &y, WAIT).await;
    assert_eq!(sent.state, TransferState::Done);
    let (got, took) = offer(&conn, y, &small, true).await;
    taken(
        "mallory offers back the id of the victim's send to it",
        &got,
        took,
    );
    let y_now = victim_info(&s.v, &y).unwrap();
    assert_eq!(y_now.state, TransferState::Done);
    assert_eq!(
        y_now.direction,
        ferry_core::spacedrop::store::Direction::Send
    );

    ping.finish("reuse").await;
    honest_transfer(&s, "reuse").await;
}

/// Answers `offer` on a hostile receiver's control stream: accepted, every file from its start.
async fn accept(s: &mut ferry_p2p::Incoming, offer: &Offer) -> Result<(), StreamError> {
    let starts = offer
        .manifest
        .entries
        .iter()
        .map(|e| (e.kind == EntryKind::File).then_some(0))
        .collect();
    write_frame(&mut s.send, &Answer::Accepted { starts }, MAX_ANSWER).await
}

/// What a scripted receiver does with each offer it reads.
trait Script: Send + Sync + 'static {
    fn answer<'a>(
        &'a self,
        s: &'a mut ferry_p2p::Incoming,
        offer: Offer,
    ) -> ferry_p2p::router::BoxFuture<'a, Result<(), StreamError>>;
}

/// The control protocol of a scripted receiver: reads the offer, then follows the script.
struct Scripted<S>(S);

impl<S: Script> ferry_p2p::Protocol for Scripted<S> {
    fn id(&self) -> u16 {
        CONTROL_ID
    }
    fn versions(&self) -> std::ops::RangeInclusive<u16> {
        VERSION..=VERSION
    }
    fn handle<'a>(
        &'a self,
        s: &'a mut ferry_p2p::Incoming,
    ) -> ferry_p2p::router::BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(async move {
            let offer: Offer = expect_frame(&mut s.recv, MAX_OFFER, WAIT, "an offer").await?;
            self.0.answer(s, offer).await
        })
    }
}

/// A scripted receiver on 127.0.0.1 (discovery off) answering offers by `script` and
/// swallowing data, which the victim has connected to.
async fn hostile_receiver(s: &Scene, name: &str, script: impl Script) -> ferry_p2p::P2p {
    hostile_node(s, name, std::sync::Arc::new(Scripted(script))).await
}

/// A node on 127.0.0.1 (discovery off) that takes control streams with `control` and
/// swallows data, which the victim has connected to.
async fn hostile_node(
    s: &Scene,
    name: &str,
    control: std::sync::Arc<dyn ferry_p2p::Protocol>,
) -> ferry_p2p::P2p {
    let cfg = ferry_p2p::P2pConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        info: ferry_p2p::NodeInfo {
            name: name.into(),
            os: "linux".into(),
            version: "test".into(),
        },
        discovery: ferry_p2p::DiscoveryConfig {
            enabled: false,
            interfaces: vec![],
        },
        ..Default::default()
    };
    let node = ferry_p2p::P2p::start(
        std::sync::Arc::new(ferry_p2p::Identity::generate().unwrap()),
        cfg,
        vec![control, std::sync::Arc::new(Sink)],
    )
    .await
    .unwrap();
    s.v.node
        .p2p()
        .connect(node.local_addr().unwrap(), Some(node.id()))
        .await
        .unwrap();
    node
}

/// A scripted hostile *receiver*: accepts any offer, then reports failures without end.
struct FlooderControl {
    flood: Duration,
}

impl Script for FlooderControl {
    fn answer<'a>(
        &'a self,
        s: &'a mut ferry_p2p::Incoming,
        offer: Offer,
    ) -> ferry_p2p::router::BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(async move {
            accept(s, &offer).await?;
            // The same file, a folder-less id and an id far outside the manifest, over and over,
            // each with a long reason.
            let reason = "r".repeat(3000);
            let (t, mut n) = (Instant::now(), 0u64);
            while t.elapsed() < self.flood {
                for id in [0, 0, 1, u32::MAX] {
                    let c = Control::FileFailed {
                        id,
                        reason: reason.clone(),
                    };
                    write_frame(&mut s.send, &c, MAX_CONTROL).await?;
                    n += 1;
                }
                attacker_yields().await;
            }
            println!("    the hostile receiver sent {n} FileFailed reports");
            write_frame(&mut s.send, &Control::Finished, MAX_CONTROL).await?;
            let _ = s.send.finish();
            let _ = tokio::time::timeout(WAIT, s.send.stopped()).await;
            Ok(())
        })
    }
}

/// Takes a data stream and throws it away.
struct Sink;

impl ferry_p2p::Protocol for Sink {
    fn id(&self) -> u16 {
        DATA_ID
    }
    fn versions(&self) -> std::ops::RangeInclusive<u16> {
        VERSION..=VERSION
    }
    fn handle<'a>(
        &'a self,
        s: &'a mut ferry_p2p::Incoming,
    ) -> ferry_p2p::router::BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(async move {
            tokio::io::copy(&mut s.recv, &mut tokio::io::sink())
                .await
                .map_err(StreamError::from_io)?;
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_receiver_cannot_grow_the_senders_memory() {
    let mut s = scene(AcceptPolicy::Everyone).await;
    let ping = pinger(&s);
    let flooder = hostile_receiver(
        &s,
        "flooder",
        FlooderControl {
            flood: Duration::from_secs(3),
        },
    )
    .await;
    let src = s.v.dir.join("for-the-flooder.bin");
    std::fs::write(&src, pseudo_random(64 << 10, 5)).unwrap();
    let mem = Mem::start();
    let t = Instant::now();
    let id =
        s.v.node
            .spacedrop()
            .send(flooder.id(), vec![src])
            .await
            .unwrap();
    let info = final_state(&mut s.v.events, &id, WAIT).await;
    println!(
        "[receiver] the victim's send to a flooding receiver ended in {:?}: {:?}, {} failed file(s) listed",
        t.elapsed(),
        info.state,
        info.failed.len()
    );
    let grew = mem.report("FileFailed flood");
    // One file, so one failure at most, however often it is reported.
    assert_eq!((info.failed_count, info.failed.len()), (1, 1));
    // The sender stores it too, once: what its listings and full list show after a restart.
    let stored = s.v.node.spacedrop().failed_files(&id, 0, 100).unwrap();
    assert_eq!(stored, info.failed.to_vec());
    assert!(matches!(info.state, TransferState::Failed { .. }));
    assert!(grew < 128, "a FileFailed flood cost {grew} MiB");
    ping.finish("receiver").await;
    honest_transfer(&s, "receiver").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_never_reads_cannot_wedge_the_receiver() {
    let s = scene(AcceptPolicy::Everyone).await;
    let ping = pinger(&s);
    let conn = s.conn().await;
    // Every file aborted with a 512-byte reason: each makes the victim write a ~560-byte
    // FileFailed on the control stream, which mallory never reads, so QUIC's flow control
    // window (1.25 MB by default) fills after about 2,200 of them.
    let n = 4_000u32;
    let names: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
    let m = manifest(names.iter().map(|x| file(&[x.as_str()], 1)).collect());
    let sess = accepted(&conn, &m).await;
    let (mut ds, _dr) = data_stream(&conn, sess.id).await;
    let abort = record::file_abort(&"x".repeat(512));
    let mut records = vec![];
    for i in 0..n {
        records.extend_from_slice(&record::file_start(i, 0));
        records.extend_from_slice(&abort);
    }
    let t = Instant::now();
    let wrote = tokio::time::timeout(Duration::from_secs(10), ds.write_all(&records)).await;
    println!(
        "[unread] {} KB of aborted files written in {:?}: {}",
        records.len() >> 10,
        t.elapsed(),
        match &wrote {
            Ok(Ok(())) => "all taken".to_string(),
            Ok(Err(e)) => format!("{e}"),
            Err(_) => "the victim stopped taking data".into(),
        }
    );
    // Until the victim has got as far as it will (its count stands still for a second).
    let (mut last, mut since) = (usize::MAX, Instant::now());
    let live = loop {
        let live = victim_info(&s.v, &sess.id).unwrap();
        if live.failed_count != last {
            (last, since) = (live.failed_count, Instant::now());
        } else if since.elapsed() > Duration::from_secs(1) || last == n as usize {
            break live;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "    victim: {}, {} of {n} failed files listed",
        live.state.name(),
        live.failed_count
    );
    // The victim's user cancels while its transfer waits for room to write. That wait once
    // had no end, so the cancel was never read; then it ended only with the victim's write
    // bound (10 s), as failed: 9 s after the cancel in CI. A cancel is honoured at once.
    let t = Instant::now();
    s.v.node.spacedrop().cancel(&sess.id).unwrap();
    let info = victim_final(&s.v, &sess.id, WAIT).await;
    let took = t.elapsed();
    println!(
        "[unread] ended {took:?} after the victim's cancel ({:?} after its last progress): {:?}",
        since.elapsed(),
        info.state
    );
    assert_eq!(info.state, TransferState::Cancelled { by: Side::Local });
    assert!(took < Duration::from_secs(2), "the cancel took {took:?}");
    assert!(parts(&s.v.downloads).is_empty());
    drop(sess);
    ping.finish("unread").await;
    honest_transfer(&s, "unread").await;
}

/// A receiver that takes the control stream and never reads a byte of it.
struct Deaf;

impl ferry_p2p::Protocol for Deaf {
    fn id(&self) -> u16 {
        CONTROL_ID
    }
    fn versions(&self) -> std::ops::RangeInclusive<u16> {
        VERSION..=VERSION
    }
    fn handle<'a>(
        &'a self,
        _s: &'a mut ferry_p2p::Incoming,
    ) -> ferry_p2p::router::BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(async move {
            tokio::time::sleep(WAIT * 2).await;
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_reads_the_offer_cannot_hold_a_cancel() {
    let s = scene(AcceptPolicy::Everyone).await;
    let ping = pinger(&s);
    let deaf = hostile_node(&s, "deaf", std::sync::Arc::new(Deaf)).await;
    // An offer larger than a stream's flow-control window (1.25 MB by default), so that its
    // write waits for a reader that never comes: 400 files whose paths are ~3.8 KB each.
    let mut dir = s.v.dir.join("for-the-deaf");
    for level in 0..15 {
        dir.push(format!("{level:02}{}", "d".repeat(248)));
    }
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..400 {
        std::fs::write(dir.join(format!("{i:03}")), b"x").unwrap();
    }
    let top = s.v.dir.join("for-the-deaf");
    let id =
        s.v.node
            .spacedrop()
            .send(deaf.id(), vec![top])
            .await
            .unwrap();
    // Until the offer is well under way (its write then has long been waiting for room).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = victim_info(&s.v, &id).unwrap();
    assert_eq!(waiting.state, TransferState::Waiting);
    let t = Instant::now();
    s.v.node.spacedrop().cancel(&id).unwrap();
    let info = victim_final(&s.v, &id, WAIT).await;
    let took = t.elapsed();
    println!(
        "[deaf] the victim's send ended {took:?} after its cancel: {:?}",
        info.state
    );
    assert_eq!(info.state, TransferState::Cancelled { by: Side::Local });
    assert!(took < Duration::from_secs(2), "the cancel took {took:?}");
    ping.finish("deaf").await;
    honest_transfer(&s, "deaf").await;
}

/// A scripted hostile *receiver*: accepts any offer, then Pause/Resume as fast as it can write
/// for `flood`, then one Progress of [`MARK`] bytes and a Pause, and then nothing at all (no
/// more Progress) until the sender gives up. `ended` is when its last Pause went out.
const MARK: u64 = 12_345;

struct PauserControl {
    flood: Duration,
    ended: tokio::sync::watch::Sender<Option<Instant>>,
}

impl Script for PauserControl {
    fn answer<'a>(
        &'a self,
        s: &'a mut ferry_p2p::Incoming,
        offer: Offer,
    ) -> ferry_p2p::router::BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(async move {
            accept(s, &offer).await?;
            let (t, mut n) = (Instant::now(), 0u64);
            while t.elapsed() < self.flood {
                write_frame(&mut s.send, &Control::Resume, MAX_CONTROL).await?;
                write_frame(&mut s.send, &Control::Pause, MAX_CONTROL).await?;
                n += 2;
                attacker_yields().await;
            }
            // A mark the test can see the victim reach, then the last Pause.
            write_frame(&mut s.send, &Control::Resume, MAX_CONTROL).await?;
            let mark = Control::Progress {
                bytes: MARK,
                files: 0,
            };
            write_frame(&mut s.send, &mark, MAX_CONTROL).await?;
            write_frame(&mut s.send, &Control::Pause, MAX_CONTROL).await?;
            let _ = self.ended.send(Some(Instant::now()));
            println!("    the hostile receiver sent {n} Pause/Resume, the last a Pause");
            // Silent until the sender ends the transfer.
            let _ = tokio::time::timeout(WAIT, s.recv.read_to_end(1 << 20)).await;
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receivers_pause_flood_costs_no_more_events_than_progress() {
    let mut s = scene(AcceptPolicy::Everyone).await;
    let ping = pinger(&s);
    let (ended_tx, ended) = tokio::sync::watch::channel(None);
    let pauser = hostile_receiver(
        &s,
        "pauser",
        PauserControl {
            flood: Duration::from_secs(3),
            ended: ended_tx,
        },
    )
    .await;
    let src = s.v.dir.join("for-the-pauser.bin");
    std::fs::write(&src, pseudo_random(64 << 10, 9)).unwrap();
    let t = Instant::now();
    let id =
        s.v.node
            .spacedrop()
            .send(pauser.id(), vec![src])
            .await
            .unwrap();
    // Every event of this transfer (a lag counts what it skipped), until 1 s after the victim
    // took in the mark (it reads behind the writer: QUIC buffers up to a window of messages):
    // the last one seen must show the Pause after it, although nothing followed that.
    let (mut events, mut last, mut marked) = (0u64, None::<TransferInfo>, None::<Instant>);
    let quiet_from = loop {
        if marked.is_none() && victim_info(&s.v, &id).is_some_and(|i| i.bytes_done == MARK) {
            marked = Some(Instant::now());
        }
        if let Some(m) = marked.filter(|m| m.elapsed() >= Duration::from_secs(1)) {
            break m;
        }
        assert!(t.elapsed() < WAIT, "the flood did not end");
        match tokio::time::timeout(Duration::from_millis(50), s.v.events.recv()).await {
            Ok(Ok(Event::Transfer { transfer })) if transfer.id == id.hex() => {
                events += 1;
                last = Some(transfer);
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => events += n,
            _ => {}
        }
    };
    let last = last.expect("events of the transfer");
    println!(
        "[pauser] {events} events of the victim's send in {:?} of Pause/Resume flood ({:?} to take it in) and 1 s of silence; last shows {:?}",
        ended.borrow().map(|e| e.duration_since(t)),
        quiet_from.duration_since(t),
        last.state
    );
    assert_eq!(last.state, TransferState::Paused { by: Side::Peer });
    // 4 a second at most, and a few for state changes of the victim's own.
    assert!(events < 40, "{events} events");
    s.v.node.spacedrop().cancel(&id).unwrap();
    let info = final_state(&mut s.v.events, &id, WAIT).await;
    assert_eq!(info.state, TransferState::Cancelled { by: Side::Local });
    ping.finish("pauser").await;
    honest_transfer(&s, "pauser").await;
}

/// A scripted receiver (honest, but unlucky) whose first run reports file 0 failed and ends;
/// the resume asks for the file again and it arrives.
struct FailsThenDelivers;

impl Script for FailsThenDelivers {
    fn answer<'a>(
        &'a self,
        s: &'a mut ferry_p2p::Incoming,
        offer: Offer,
    ) -> ferry_p2p::router::BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(async move {
            accept(s, &offer).await?;
            if !offer.resume {
                let failed = Control::FileFailed {
                    id: 0,
                    reason: "no space left on device".into(),
                };
                return write_frame(&mut s.send, &failed, MAX_CONTROL).await;
            }
            let bytes = offer.manifest.total_bytes();
            for c in [
                Control::FileDone { id: 0 },
                Control::Progress { bytes, files: 1 },
                Control::Finished,
            ] {
                write_frame(&mut s.send, &c, MAX_CONTROL).await?;
            }
            let _ = tokio::time::timeout(WAIT, s.recv.read_to_end(1 << 20)).await;
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_failed_then_arrived_on_a_resume_is_not_counted_failed() {
    let mut s = scene(AcceptPolicy::Everyone).await;
    let unlucky = hostile_receiver(&s, "unlucky", FailsThenDelivers).await;
    let src = s.v.dir.join("retried.bin");
    std::fs::write(&src, pseudo_random(64 << 10, 12)).unwrap();
    let id =
        s.v.node
            .spacedrop()
            .send(unlucky.id(), vec![src])
            .await
            .unwrap();
    let first = transfer_where(&mut s.v.events, &id, WAIT, |i| {
        matches!(i.state, TransferState::Interrupted { .. })
    })
    .await;
    assert_eq!(first.failed_count, 1, "{first:?}");
    let info = final_state(&mut s.v.events, &id, WAIT).await;
    let listed = s.v.node.spacedrop().failed_files(&id, 0, 10).unwrap();
    println!(
        "[retried] failed, then resumed: {:?}, {} failed, stored failures {listed:?}",
        info.state, info.failed_count
    );
    assert_eq!(info.state, TransferState::Done);
    assert_eq!((info.failed_count, info.failed.len()), (0, 0));
    assert!(listed.is_empty());
}
