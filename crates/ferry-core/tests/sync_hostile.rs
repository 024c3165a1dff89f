//! Library sync against a scripted hostile member: a real QUIC peer that passes the tunnel's
//! membership proof (it is a member) and then serves lies. Each lie must end the victim's pull
//! with a protocol error and leave its replica exactly as it was; strangers and removed
//! members are refused before any sync message; an honest member is still served.

#[path = "support/members.rs"]
mod members;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::library::sync::wire::{Down, Head, Up, MAX_DOWN, MAX_UP};
use ferry_core::library::wire::{
    self, Accepted, Challenge, LibraryId, Open, Proof, Role, Signature, INNER_SYNC, MAX_SMALL,
    TUNNEL_ID, VERSION,
};
use ferry_core::Node;
use ferry_index::replica::{Batch, Change, EntryRecord, LocationRecord, Mark};
use ferry_p2p::router::{open as open_stream, BoxFuture, Incoming};
use ferry_p2p::wire::{expect_frame, write_frame};
use ferry_p2p::{Code, Identity, StreamError};
use members::*;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);

/// What a scripted server sends after the puller's marks.
type Script = Vec<Down>;

/// The tunnel's acceptor side, honestly proven, then the script; reports how the victim
/// ended the stream.
struct HostileTunnel {
    identity: Arc<Identity>,
    scripts: tokio::sync::Mutex<mpsc::UnboundedReceiver<Script>>,
    outcome: mpsc::UnboundedSender<Result<(), StreamError>>,
}

impl ferry_p2p::Protocol for HostileTunnel {
    fn id(&self) -> u16 {
        TUNNEL_ID
    }
    fn versions(&self) -> std::ops::RangeInclusive<u16> {
        VERSION..=VERSION
    }
    fn handle<'a>(&'a self, s: &'a mut Incoming) -> BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(async move {
            let open: Open = expect_frame(&mut s.recv, MAX_SMALL, WAIT, "open").await?;
            let mut exp = [0u8; 32];
            s.conn
                .export_keying_material(&mut exp, b"EXPORTER-ferry-tunnel-v1", &open.library.0)
                .unwrap();
            let nonce = [9u8; 32];
            let me = self.identity.peer_id();
            let msg = wire::proof_message(Role::Acceptor, &exp, &open, &nonce, &s.peer, &me);
            let proof = Signature::from_bytes(self.identity.sign(&msg));
            write_frame(&mut s.send, &Challenge { nonce, proof }, MAX_SMALL).await?;
            let _: Proof = expect_frame(&mut s.recv, MAX_SMALL, WAIT, "proof").await?;
            write_frame(&mut s.send, &Accepted, MAX_SMALL).await?;
            if open.inner != INNER_SYNC {
                return Err(StreamError::Local(Code::Refused, "only sync is scripted"));
            }
            let _: Up = expect_frame(&mut s.recv, MAX_UP, WAIT, "pull").await?;
            let Some(script) = self.scripts.lock().await.recv().await else {
                return Ok(());
            };
            let mut written = Ok(());
            for msg in &script {
                if let Err(e) = write_frame(&mut s.send, msg, MAX_DOWN * 2).await {
                    written = Err(e);
                    break;
                }
            }
            // How the victim ended it: it must reset (or stop) the stream with a code.
            let mut buf = [0u8; 1];
            let r = match written {
                Err(e) => Err(e),
                Ok(()) => match tokio::time::timeout(WAIT, s.recv.read(&mut buf)).await {
                    Err(_) => Err(StreamError::Timeout("the victim's verdict")),
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.into()),
                },
            };
            let _ = self.outcome.send(r);
            Ok(())
        })
    }
}

struct Hostile {
    p2p: ferry_p2p::P2p,
    scripts: mpsc::UnboundedSender<Script>,
    outcomes: mpsc::UnboundedReceiver<Result<(), StreamError>>,
}

async fn hostile(identity: Identity) -> Hostile {
    let identity = Arc::new(identity);
    let (stx, srx) = mpsc::unbounded_channel();
    let (otx, orx) = mpsc::unbounded_channel();
    let cfg = ferry_p2p::P2pConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        info: ferry_p2p::NodeInfo {
            name: "mallory".into(),
            os: "linux".into(),
            version: "test".into(),
        },
        discovery: ferry_p2p::DiscoveryConfig {
            enabled: false,
            interfaces: vec![],
        },
        ..Default::default()
    };
    let tunnel = HostileTunnel {
        identity: identity.clone(),
        scripts: tokio::sync::Mutex::new(srx),
        outcome: otx,
    };
    let p2p = ferry_p2p::P2p::start(identity, cfg, vec![Arc::new(tunnel)])
        .await
        .unwrap();
    Hostile {
        p2p,
        scripts: stx,
        outcomes: orx,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn loc_record(id: [u8; 16], seq: i64) -> LocationRecord {
    LocationRecord {
        id,
        name: "mallory's".into(),
        path: b"/home/mallory".to_vec(),
        added: 1,
        state: "done".into(),
        online: true,
        last_scan: None,
        error: None,
        seq,
    }
}

fn entry(loc: [u8; 16], seq: i64, rel: &[u8]) -> Change {
    Change::Entry(EntryRecord {
        id: [seq as u8; 16],
        location: loc,
        rel: rel.to_vec(),
        kind: 0,
        size: 10,
        mtime: 1,
        cas: None,
        error: None,
        seq,
    })
}

const LOC: [u8; 16] = [0x4d; 16];

/// A well-formed batch of `author`'s, `(from, to]`, whose location record comes first.
fn batch(author: [u8; 32], index: i64, from: i64, to: i64, mut changes: Vec<Change>) -> Batch {
    changes.insert(0, Change::Location(loc_record(LOC, from + 1)));
    Batch {
        author,
        index,
        from,
        to,
        context: vec![],
        changes,
    }
}

fn heads(author: [u8; 32], index: i64, seq: i64, pending: u64) -> Down {
    Down::Heads {
        heads: vec![Head {
            mark: Mark { author, index, seq },
            pending,
        }],
    }
}

/// What a victim holds that sync could have changed.
fn replica(v: &Node, lib: &LibraryId) -> (Vec<ferry_index::replica::Holding>, Vec<String>) {
    let c = v.libraries().contents().of(lib).unwrap();
    // Heads a member announced are remembered (seq 0) without holding anything.
    let holdings = c
        .holdings()
        .unwrap()
        .into_iter()
        .filter(|h| h.mark.seq > 0 || h.entries > 0)
        .collect();
    let locs = c.locations().unwrap().into_iter().map(|l| l.id).collect();
    (holdings, locs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lie_of_a_member_is_refused_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dv = t.path().join("victim");
    let dh = t.path().join("mallory");
    let dm = t.path().join("honest");
    std::fs::create_dir_all(&dh).unwrap();
    let h_identity = Identity::load_or_create(&dh).unwrap();
    let h = h_identity.peer_id().0;
    let stranger = [0x55; 32];
    let lib = shared_library(&[(&dv, "victim"), (&dh, "mallory"), (&dm, "honest")]);
    let v_id = Identity::load_or_create(&dv).unwrap().peer_id().0;
    let victim = start(&dv, "victim").await;
    let own_root = t.path().join("victim-files");
    std::fs::create_dir_all(&own_root).unwrap();
    std::fs::write(own_root.join("mine.txt"), b"mine").unwrap();
    let own = victim
        .libraries()
        .contents()
        .add_location(&lib, &own_root)
        .unwrap();
    let own_loc = ferry_index::db::parse_id(&own.id).unwrap();
    indexed(&victim, &lib, &own_loc, &own_root).await;

    let ix = now_ms() - 1000;
    let ok = batch(h, ix, 0, 2, vec![entry(LOC, 2, b"a.txt")]);
    let long = vec![b'x'; 1025];
    let deep: Vec<u8> = b"d/".repeat(64).into_iter().chain(*b"f").collect();
    let many: Vec<Change> = (2..2 + 2049)
        .map(|s| entry(LOC, s, format!("f{s}").as_bytes()))
        .collect();
    let lies: Vec<(&str, Script)> = vec![
        ("a batch nobody announced", vec![Down::Batch(ok.clone())]),
        (
            "rows of the victim's own node",
            vec![
                heads(v_id, ix, 2, 1),
                Down::Batch(batch(v_id, ix, 0, 2, vec![entry(LOC, 2, b"a")])),
            ],
        ),
        (
            "rows of a stranger",
            vec![
                heads(stranger, ix, 2, 1),
                Down::Batch(batch(stranger, ix, 0, 2, vec![entry(LOC, 2, b"a")])),
            ],
        ),
        (
            "a gap (starts past what is held)",
            vec![
                heads(h, ix, 9, 1),
                Down::Batch(batch(h, ix, 5, 9, vec![entry(LOC, 9, b"a")])),
            ],
        ),
        (
            "sequence numbers going backwards",
            vec![
                heads(h, ix, 5, 3),
                Down::Batch(batch(
                    h,
                    ix,
                    0,
                    5,
                    vec![entry(LOC, 4, b"a"), entry(LOC, 3, b"b")],
                )),
            ],
        ),
        (
            "a batch beyond the announced head",
            vec![
                heads(h, ix, 2, 1),
                Down::Batch(batch(h, ix, 0, 9, vec![entry(LOC, 9, b"a")])),
            ],
        ),
        (
            "a path escaping with ..",
            vec![
                heads(h, ix, 2, 1),
                Down::Batch(batch(h, ix, 0, 2, vec![entry(LOC, 2, b"../../etc/passwd")])),
            ],
        ),
        (
            "a path with NUL",
            vec![
                heads(h, ix, 2, 1),
                Down::Batch(batch(h, ix, 0, 2, vec![entry(LOC, 2, b"a\0b")])),
            ],
        ),
        (
            "a path with a separator inside a name",
            vec![
                heads(h, ix, 2, 1),
                Down::Batch(batch(h, ix, 0, 2, vec![entry(LOC, 2, b"a\\..\\b")])),
            ],
        ),
        (
            "a component over 1,024 bytes",
            vec![
                heads(h, ix, 2, 1),
                Down::Batch(batch(h, ix, 0, 2, vec![entry(LOC, 2, &long)])),
            ],
        ),
        (
            "a path deeper than 64",
            vec![
                heads(h, ix, 2, 1),
                Down::Batch(batch(h, ix, 0, 2, vec![entry(LOC, 2, &deep)])),
            ],
        ),
        (
            "rows for a location it did not send",
            vec![
                heads(h, ix, 2, 1),
                Down::Batch(Batch {
                    author: h,
                    index: ix,
                    from: 0,
                    to: 2,
                    context: vec![],
                    changes: vec![entry([0x77; 16], 2, b"a")],
                }),
            ],
        ),
        (
            "rows for the victim's own location",
            vec![
                heads(h, ix, 2, 1),
                Down::Batch(Batch {
                    author: h,
                    index: ix,
                    from: 0,
                    to: 2,
                    context: vec![],
                    changes: vec![entry(own_loc, 2, b"evil")],
                }),
            ],
        ),
        (
            "a clock far in the future",
            vec![
                heads(h, i64::MAX / 2, 2, 1),
                Down::Batch(batch(h, i64::MAX / 2, 0, 2, vec![entry(LOC, 2, b"a")])),
            ],
        ),
        (
            "a sequence number near u64::MAX",
            vec![
                heads(h, ix, i64::MAX, 1),
                Down::Batch(batch(h, ix, 0, i64::MAX, vec![entry(LOC, i64::MAX, b"a")])),
            ],
        ),
        (
            "more changes than a batch holds",
            vec![
                heads(h, ix, 3000, 10_000_000),
                Down::Batch(batch(h, ix, 0, 3000, many)),
            ],
        ),
        (
            "an endless batch that does not advance",
            vec![
                heads(h, ix, 2, 10_000_000),
                Down::Batch(Batch {
                    author: h,
                    index: ix,
                    from: 0,
                    to: 0,
                    context: vec![],
                    changes: vec![],
                }),
            ],
        ),
        (
            "a frame over its bound",
            vec![
                heads(h, ix, 2, 1),
                Down::Batch(batch(
                    h,
                    ix,
                    0,
                    2,
                    vec![entry(LOC, 2, &vec![b'y'; MAX_DOWN])],
                )),
            ],
        ),
    ];
    let mut m = hostile(h_identity).await;
    let before = replica(&victim, &lib);
    for (what, script) in lies {
        m.scripts.send(script).unwrap();
        // The victim pulls from every connected member: (re)connecting starts a pull at once.
        if victim.p2p().connection(&m.p2p.id()).is_none() {
            link_p2p(&victim, &m.p2p).await;
        }
        let t0 = Instant::now();
        let outcome = tokio::time::timeout(WAIT * 3, m.outcomes.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: the victim never pulled"))
            .unwrap();
        match outcome {
            Err(StreamError::Peer(Code::ProtocolError)) => {}
            other => {
                panic!("{what}: the victim ended the stream with {other:?}, not a protocol error")
            }
        }
        assert_eq!(
            replica(&victim, &lib),
            before,
            "{what}: the replica changed"
        );
        println!(
            "refused {what} in {:.1} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
        // Start the next pull at once instead of waiting out the victim's backoff.
        victim
            .p2p()
            .connection(&m.p2p.id())
            .unwrap()
            .close(0u32.into(), b"next");
        until("the hostile member disconnected", WAIT, || {
            victim.p2p().connection(&m.p2p.id()).is_none()
        })
        .await;
    }

    // A whole batch before a bad one is kept, exactly: the mark is its end.
    m.scripts
        .send(vec![
            heads(h, ix, 3, 2),
            Down::Batch(ok.clone()),
            Down::Batch(batch(h, ix, 2, 3, vec![entry(LOC, 3, b"../x")])),
        ])
        .unwrap();
    link_p2p(&victim, &m.p2p).await;
    let outcome = tokio::time::timeout(WAIT * 3, m.outcomes.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(outcome, Err(StreamError::Peer(Code::ProtocolError))),
        "{outcome:?}"
    );
    let (holdings, _) = replica(&victim, &lib);
    let held = holdings.iter().find(|x| x.mark.author == h).unwrap();
    assert_eq!((held.mark.seq, held.entries, held.locations), (2, 1, 1));

    // An honest member is still served, and serves.
    let honest = start(&dm, "honest").await;
    let hroot = t.path().join("honest-files");
    std::fs::create_dir_all(hroot.join("sub")).unwrap();
    std::fs::write(hroot.join("sub/ok.txt"), b"fine").unwrap();
    let hinfo = honest
        .libraries()
        .contents()
        .add_location(&lib, &hroot)
        .unwrap();
    let hloc = ferry_index::db::parse_id(&hinfo.id).unwrap();
    indexed(&honest, &lib, &hloc, &hroot).await;
    link(&honest, &victim).await;
    until("the honest member's rows on the victim", WAIT, || {
        converged(&honest, &[&victim], &lib, &hloc)
    })
    .await;
    until("the victim's rows on the honest member", WAIT, || {
        converged(&victim, &[&honest], &lib, &own_loc)
    })
    .await;
    victim.shutdown().await;
    honest.shutdown().await;
}

async fn link_p2p(n: &Node, p: &ferry_p2p::P2p) {
    n.p2p()
        .connect(p.local_addr().unwrap(), Some(p.id()))
        .await
        .unwrap();
}

/// Opens the tunnel for sync the way a stranger or a removed member would: the acceptor's
/// answer to `Open`, before any sync message.
async fn knock(from: &ferry_p2p::P2p, to: &Node, lib: LibraryId) -> Result<Challenge, StreamError> {
    let conn = from.connect_peer(&to.id()).await.unwrap();
    let (mut s, mut r) = open_stream(&conn, TUNNEL_ID, VERSION).await?;
    let open = Open {
        library: lib,
        inner: INNER_SYNC,
        nonce: [3; 32],
    };
    write_frame(&mut s, &open, MAX_SMALL).await?;
    expect_frame(&mut r, MAX_SMALL, WAIT, "challenge").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_removed_members_get_no_sync_stream() {
    let t = tempfile::tempdir().unwrap();
    let (dv, dr) = (t.path().join("victim"), t.path().join("removed"));
    std::fs::create_dir_all(&dr).unwrap();
    let r_identity = Identity::load_or_create(&dr).unwrap();
    let lib = shared_library(&[(&dv, "victim"), (&dr, "removed")]);
    let victim = start(&dv, "victim").await;
    let stranger = hostile(Identity::generate().unwrap()).await;
    link_p2p(&victim, &stranger.p2p).await;
    let got = knock(&stranger.p2p, &victim, lib).await;
    assert!(
        matches!(got, Err(StreamError::Peer(Code::Refused))),
        "{got:?}"
    );

    victim
        .libraries()
        .remove_member(&lib, &r_identity.peer_id())
        .unwrap();
    let removed = hostile(r_identity).await;
    link_p2p(&victim, &removed.p2p).await;
    let got = knock(&removed.p2p, &victim, lib).await;
    assert!(
        matches!(got, Err(StreamError::Peer(Code::Revoked))),
        "{got:?}"
    );
    victim.shutdown().await;
}

/// Seeds for the `sync` fuzz target, written when FERRY_WRITE_FUZZ_SEEDS is set: well-formed
/// frames of both directions, so the fuzzer starts from messages that decode.
#[test]
fn fuzz_seeds() {
    if std::env::var_os("FERRY_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/sync");
    std::fs::create_dir_all(&dir).unwrap();
    let frame = |tag: u8, body: Vec<u8>| {
        let mut v = vec![tag];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(&body);
        v
    };
    let a = [1u8; 32];
    let up = Up::Pull {
        marks: vec![Mark {
            author: a,
            index: 5,
            seq: 7,
        }],
    };
    std::fs::write(
        dir.join("pull"),
        frame(0, postcard::to_stdvec(&up).unwrap()),
    )
    .unwrap();
    let mut down = frame(1, postcard::to_stdvec(&heads(a, 5, 3, 2)).unwrap());
    let b = batch(
        a,
        5,
        0,
        3,
        vec![
            entry(LOC, 2, b"a/b.txt"),
            Change::Removed {
                id: [2; 16],
                location: LOC,
                seq: 3,
            },
        ],
    );
    down.extend_from_slice(&frame(0, postcard::to_stdvec(&Down::Batch(b)).unwrap())[1..]);
    down.extend_from_slice(&frame(0, postcard::to_stdvec(&Down::Caught).unwrap())[1..]);
    std::fs::write(dir.join("heads-batch-caught"), down).unwrap();
}
