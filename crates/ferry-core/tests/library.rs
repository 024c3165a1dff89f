//! Libraries, pairing and the tunnel between real nodes over QUIC on 127.0.0.1 (discovery off:
//! host namespace), including the attacks the tunnel and pairing must refuse.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_core::library::db::LibraryDb;
use ferry_core::library::wire::{
    self, LibraryId, MemberRecord, MemberState, PairDecision, PairNonce, PairRequest, PairReveal,
    Snapshot, Stamp, INNER_MEMBERS, MAX_SMALL, PAIR_ID, VERSION,
};
use ferry_core::library::{PairingState, TunnelError};
use ferry_core::{Event, LibraryInfo, Node, NodeConfig, PairingInfo, PeerId};
use ferry_p2p::router::open as open_stream;
use ferry_p2p::wire::{expect_frame, write_frame};
use ferry_p2p::{Code, StreamError};
use tokio::sync::broadcast;

#[path = "support/nodes.rs"]
mod nodes;

const WAIT: Duration = Duration::from_secs(10);

async fn node(dir: &Path, name: &str, pair_timeout: Duration) -> Node {
    Node::start(NodeConfig {
        name: Some(name.into()),
        listen: "127.0.0.1:0".parse().unwrap(),
        discovery: false,
        pair_timeout,
        ..NodeConfig::new(dir)
    })
    .await
    .unwrap()
}

async fn connect(a: &Node, b: &Node) {
    a.p2p()
        .connect(b.local_addr().unwrap(), Some(b.id()))
        .await
        .unwrap();
}

/// The next pairing event of `rx` in a state `f` picks.
async fn pairing(
    rx: &mut broadcast::Receiver<Event>,
    f: impl Fn(&PairingInfo) -> bool,
) -> PairingInfo {
    nodes::next(rx, WAIT, |e| match e {
        Event::Pairing { pairing } if f(pairing) => Some(pairing.clone()),
        _ => None,
    })
    .await
}

fn confirm(p: &PairingInfo) -> bool {
    matches!(p.state, PairingState::Confirm { .. })
}

fn ended(p: &PairingInfo) -> bool {
    matches!(p.state, PairingState::Done | PairingState::Failed { .. })
}

/// Pairs `b` into `lib` from `a`, both users confirming; checks both saw the same code.
async fn pair(a: &Node, b: &Node, lib: &LibraryId) {
    let (mut ea, mut eb) = (a.subscribe(), b.subscribe());
    let id = a.libraries().pair(b.id(), lib).unwrap();
    let pa = pairing(&mut ea, confirm).await;
    let pb = pairing(&mut eb, confirm).await;
    assert_eq!((pa.id.as_str(), pb.id.as_str()), (id.as_str(), id.as_str()));
    assert_eq!(pa.code, pb.code, "both devices show the same code");
    assert_eq!(pb.library_name, pa.library_name);
    assert_eq!(pb.peer, a.id());
    b.libraries().answer_pairing(&id, true).unwrap();
    a.libraries().answer_pairing(&id, true).unwrap();
    assert_eq!(pairing(&mut ea, ended).await.state, PairingState::Done);
    assert_eq!(pairing(&mut eb, ended).await.state, PairingState::Done);
}

fn members(n: &Node, lib: &LibraryId) -> Vec<(PeerId, MemberState)> {
    match n.libraries().get(lib) {
        Ok(info) => info.members.iter().map(|m| (m.node, m.state)).collect(),
        Err(_) => vec![],
    }
}

fn state_of(n: &Node, lib: &LibraryId, who: &PeerId) -> Option<MemberState> {
    members(n, lib)
        .into_iter()
        .find(|(id, _)| id == who)
        .map(|(_, s)| s)
}

/// Polls until `f` holds (member lists spread in the background).
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lib_id(info: &LibraryInfo) -> LibraryId {
    LibraryId::parse(&info.id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_pair_recognise_each_other_and_revocation_spreads_and_survives_restart() {
    let t = tempfile::tempdir().unwrap();
    let secs = Duration::from_secs(30);
    let a = node(&t.path().join("a"), "alpha", secs).await;
    let b = node(&t.path().join("b"), "beta", secs).await;
    let c = node(&t.path().join("c"), "gamma", secs).await;
    let lib = lib_id(&a.libraries().create("Family photos").unwrap());
    connect(&a, &b).await;
    connect(&b, &c).await;

    let started = Instant::now();
    pair(&a, &b, &lib).await;
    eprintln!(
        "pairing A-B (both confirmed at once): {:?}",
        started.elapsed()
    );
    let info_b = b.libraries().get(&lib).unwrap();
    assert_eq!(info_b.name, "Family photos");
    assert_eq!(info_b.members.len(), 2);
    eventually("B's join confirmed by A over the tunnel", || {
        !b.libraries().get(&lib).unwrap().pending
    })
    .await;

    // B brings C in; A hears of C from B, C hears of A in the library it receives.
    pair(&b, &c, &lib).await;
    eventually("A knows C", || {
        state_of(&a, &lib, &c.id()) == Some(MemberState::Member)
    })
    .await;
    assert_eq!(state_of(&c, &lib, &a.id()), Some(MemberState::Member));
    // A and C meet directly and prove membership to each other.
    connect(&a, &c).await;
    let (s, _r) = c
        .libraries()
        .open_tunnel(&a.id(), &lib, INNER_MEMBERS)
        .await
        .expect("C is a member at A");
    drop(s);
    // What the membership proof costs on an open connection (debug build; a figure, not a test).
    let mut times = vec![];
    for _ in 0..50 {
        let t0 = Instant::now();
        let (mut s, _r) = c
            .libraries()
            .open_tunnel(&a.id(), &lib, INNER_MEMBERS)
            .await
            .unwrap();
        times.push(t0.elapsed());
        let _ = s.finish();
    }
    times.sort();
    eprintln!(
        "tunnel open + membership proof, loopback: median {:?}, p90 {:?}",
        times[25], times[45]
    );
    eventually("A saw C over the tunnel", || {
        a.libraries()
            .get(&lib)
            .unwrap()
            .members
            .iter()
            .any(|m| m.node == c.id() && m.last_seen.is_some())
    })
    .await;

    // A removes C: B hears of it; C is refused by both, and learns it was removed.
    a.libraries().remove_member(&lib, &c.id()).unwrap();
    eventually("B knows C was removed", || {
        state_of(&b, &lib, &c.id()) == Some(MemberState::Removed)
    })
    .await;
    // C's own node stops using the library once told; a hostile C that keeps knocking is
    // refused by both, before any proof is exchanged.
    for refuser in [&a, &b] {
        let r = raw_tunnel(&c, refuser, lib).await;
        assert!(matches!(r, Err(StreamError::Peer(Code::Revoked))), "{r:?}");
    }
    eventually("C knows it was removed (A told it)", || {
        c.libraries().get(&lib).unwrap().removed
    })
    .await;
    assert!(
        c.libraries().pair(b.id(), &lib).is_err(),
        "a removed node cannot invite"
    );

    // Membership and revocation survive a restart of A.
    let a_dir = t.path().join("a");
    a.shutdown().await;
    drop(a);
    let a = node(&a_dir, "alpha", secs).await;
    assert_eq!(state_of(&a, &lib, &c.id()), Some(MemberState::Removed));
    assert_eq!(state_of(&a, &lib, &b.id()), Some(MemberState::Member));
    connect(&b, &a).await;
    connect(&c, &a).await;
    b.libraries()
        .open_tunnel(&a.id(), &lib, INNER_MEMBERS)
        .await
        .expect("B is still a member after A restarts");
    let r = c
        .libraries()
        .open_tunnel(&a.id(), &lib, INNER_MEMBERS)
        .await;
    assert!(
        matches!(r, Err(TunnelError::NotMember(_))),
        "C no longer even tries: {r:?}"
    );

    // Renames spread too.
    b.libraries().rename(&lib, "Photos").unwrap();
    eventually("A sees the rename", || {
        a.libraries().get(&lib).unwrap().name == "Photos"
    })
    .await;

    // B brings C back. C's first contacts (A may not have heard yet) must not split the
    // library: everyone ends with C as a member, C included.
    pair(&b, &c, &lib).await;
    eventually("A and C agree that C is back", || {
        state_of(&a, &lib, &c.id()) == Some(MemberState::Member)
            && !c.libraries().get(&lib).unwrap().removed
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !c.libraries().get(&lib).unwrap().removed,
        "no split after the re-join"
    );
    c.libraries()
        .open_tunnel(&a.id(), &lib, INNER_MEMBERS)
        .await
        .expect("C is a member at A again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_one_sided_or_timed_out_pairings_leave_no_state() {
    let t = tempfile::tempdir().unwrap();
    let a = node(&t.path().join("a"), "alpha", Duration::from_secs(30)).await;
    let b = node(&t.path().join("b"), "beta", Duration::from_millis(800)).await;
    let lib = lib_id(&a.libraries().create("L").unwrap());
    connect(&a, &b).await;
    let (mut ea, mut eb) = (a.subscribe(), b.subscribe());

    // The codes did not match for B's user: A confirmed, B rejects.
    let id = a.libraries().pair(b.id(), &lib).unwrap();
    pairing(&mut eb, confirm).await;
    pairing(&mut ea, confirm).await;
    a.libraries().answer_pairing(&id, true).unwrap();
    b.libraries().answer_pairing(&id, false).unwrap();
    let fa = pairing(&mut ea, ended).await;
    let fb = pairing(&mut eb, ended).await;
    assert_eq!(
        fa.state,
        PairingState::Failed {
            reason: "rejected on the other device".into()
        }
    );
    assert_eq!(
        fb.state,
        PairingState::Failed {
            reason: "rejected here".into()
        }
    );
    assert!(b.libraries().list().is_empty());
    assert_eq!(members(&a, &lib), vec![(a.id(), MemberState::Member)]);
    assert!(
        b.libraries().answer_pairing(&id, true).is_err(),
        "a second answer finds nothing"
    );

    // Confirmed on A only; B's user never answers: B times out, A is told.
    tokio::time::sleep(Duration::from_millis(5500)).await; // B's cooldown after a failed pairing
    let id = a.libraries().pair(b.id(), &lib).unwrap();
    pairing(&mut ea, confirm).await;
    a.libraries().answer_pairing(&id, true).unwrap();
    let fb = pairing(&mut eb, ended).await;
    assert_eq!(
        fb.state,
        PairingState::Failed {
            reason: "timed out".into()
        }
    );
    let fa = pairing(&mut ea, ended).await;
    assert!(matches!(fa.state, PairingState::Failed { .. }), "{fa:?}");
    assert!(b.libraries().list().is_empty());
    assert_eq!(members(&a, &lib).len(), 1);
    assert!(a.libraries().pairings().is_empty() && b.libraries().pairings().is_empty());
}

/// Writes a library database straight into a stopped node's data dir (what a copied or
/// forged file would look like).
fn plant(data_dir: &Path, lib: LibraryId, members: &[PeerId], pending_via: Option<PeerId>) {
    let dir = data_dir.join("libraries");
    std::fs::create_dir_all(&dir).unwrap();
    let stamp = Stamp {
        clock: 1,
        author: members[0],
    };
    let snap = Snapshot {
        library: lib,
        created: 1,
        name: "planted".into(),
        name_stamp: stamp.clone(),
        members: members
            .iter()
            .map(|n| MemberRecord {
                node: *n,
                name: String::new(),
                state: MemberState::Member,
                stamp: stamp.clone(),
                added: 1,
            })
            .collect(),
    };
    LibraryDb::create(&dir.join(format!("{}.db", lib.hex())), &snap, pending_via).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_with_a_real_library_id_get_refused_and_nothing_else() {
    let t = tempfile::tempdir().unwrap();
    let a = node(&t.path().join("a"), "alpha", WAIT).await;
    let lib = lib_id(&a.libraries().create("Secret").unwrap());
    // X knows the library's id (say, from a screenshot) and forges a library naming A and
    // itself; A has never paired with X.
    let x_dir = t.path().join("x");
    let x_id = ferry_p2p::Identity::load_or_create(&x_dir)
        .unwrap()
        .peer_id();
    plant(&x_dir, lib, &[a.id(), x_id], None);
    let x = node(&x_dir, "mallory", WAIT).await;
    connect(&x, &a).await;
    let r = x
        .libraries()
        .open_tunnel(&a.id(), &lib, INNER_MEMBERS)
        .await;
    assert!(matches!(r, Err(TunnelError::Refused(_))), "{r:?}");
    // A library A does not have at all gets the same answer: no existence oracle.
    plant(&x_dir, LibraryId([9; 16]), &[a.id(), x_id], None);
    let r = x
        .libraries()
        .open_tunnel(&a.id(), &LibraryId([9; 16]), INNER_MEMBERS)
        .await;
    assert!(matches!(r, Err(TunnelError::Refused(_))), "{r:?}");
    // A's member list did not move.
    assert_eq!(members(&a, &lib), vec![(a.id(), MemberState::Member)]);
    // An impostor cannot claim A's identity: the handshake fails before any stream.
    let wrong = a.p2p().connect(x.local_addr().unwrap(), Some(a.id())).await;
    assert!(wrong.is_err(), "{wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_the_inviter_never_recorded_is_undone() {
    // The crash window of pairing: B stored the library, A crashed before recording B.
    let t = tempfile::tempdir().unwrap();
    let a = node(&t.path().join("a"), "alpha", WAIT).await;
    let lib = lib_id(&a.libraries().create("L").unwrap());
    let b_dir = t.path().join("b");
    let b_id = ferry_p2p::Identity::load_or_create(&b_dir)
        .unwrap()
        .peer_id();
    plant(&b_dir, lib, &[a.id(), b_id], Some(a.id()));
    let b = node(&b_dir, "beta", WAIT).await;
    assert!(b.libraries().get(&lib).unwrap().pending);
    let mut eb = b.subscribe();
    connect(&b, &a).await;
    let gone = nodes::next(&mut eb, WAIT, |e| match e {
        Event::LibraryRemoved { id } => Some(id.clone()),
        _ => None,
    })
    .await;
    assert_eq!(gone, lib.hex());
    assert!(b.libraries().list().is_empty());
    assert!(!b_dir
        .join("libraries")
        .join(format!("{}.db", lib.hex()))
        .exists());
    assert_eq!(members(&a, &lib).len(), 1);
}

/// A hand-driven tunnel opening from `from` to `to`: the acceptor's first answer.
async fn raw_tunnel(
    from: &Node,
    to: &Node,
    lib: LibraryId,
) -> Result<wire::Challenge, StreamError> {
    let conn = from.p2p().connect_peer(&to.id()).await.unwrap();
    let (mut s, mut r) = open_stream(&conn, wire::TUNNEL_ID, VERSION).await?;
    let open = wire::Open {
        library: lib,
        inner: INNER_MEMBERS,
        nonce: [7; 32],
    };
    write_frame(&mut s, &open, MAX_SMALL).await?;
    expect_frame(&mut r, MAX_SMALL, WAIT, "challenge").await
}

/// A hand-driven pairing stream to `to` (what a hostile client can send).
async fn raw_pair_stream(from: &Node, to: &Node) -> (quinn::SendStream, quinn::RecvStream) {
    let conn = from.p2p().connect_peer(&to.id()).await.unwrap();
    open_stream(&conn, PAIR_ID, VERSION).await.unwrap()
}

fn request(lib: LibraryId, nonce: &[u8; 32]) -> PairRequest {
    let pairing: [u8; 16] = wire::random();
    PairRequest {
        pairing,
        library: lib,
        library_name: "bait".into(),
        commit: wire::commit(nonce, &pairing),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_floods_and_forged_messages_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let v = node(&t.path().join("v"), "victim", WAIT).await;
    let x = node(&t.path().join("x"), "mallory", WAIT).await;
    connect(&x, &v).await;
    let mut ev = v.subscribe();

    // 50 requests at once from one peer: one goes through to a code, the rest are busy.
    let mut streams = vec![];
    for _ in 0..50 {
        let (mut s, mut r) = raw_pair_stream(&x, &v).await;
        streams.push(tokio::spawn(async move {
            let sent = write_frame(&mut s, &request(LibraryId([5; 16]), &[1; 32]), MAX_SMALL).await;
            let got: Result<PairNonce, _> = match sent {
                Ok(()) => expect_frame(&mut r, MAX_SMALL, WAIT, "nonce").await,
                Err(e) => Err(e),
            };
            match got {
                Ok(_) => (true, s, r),
                Err(e) => {
                    assert!(matches!(e, StreamError::Peer(Code::Busy)), "{e:?}");
                    (false, s, r)
                }
            }
        }));
    }
    let mut open = vec![];
    let mut busy = 0;
    for s in streams {
        match s.await.unwrap() {
            (true, s, r) => open.push((s, r)),
            (false, ..) => busy += 1,
        }
    }
    assert_eq!(
        (open.len(), busy),
        (1, 49),
        "one pairing per peer at a time"
    );

    // The one that got through reveals a nonce other than the one it committed to.
    let (mut s, mut r) = open.pop().unwrap();
    write_frame(&mut s, &PairReveal { nonce: [2; 32] }, MAX_SMALL)
        .await
        .unwrap();
    let end: Result<PairDecision, _> = expect_frame(&mut r, MAX_SMALL, WAIT, "reset").await;
    assert!(
        matches!(end, Err(StreamError::Peer(Code::ProtocolError))),
        "{end:?}"
    );
    let failed = pairing(&mut ev, ended).await;
    assert!(
        matches!(&failed.state, PairingState::Failed { reason } if reason.contains("commitment")),
        "{failed:?}"
    );
    assert!(
        v.libraries().pairings().is_empty(),
        "no prompt was ever left open"
    );

    // Right after a failure the peer is cooling down: even an honest-looking request is busy.
    let (mut s, mut r) = raw_pair_stream(&x, &v).await;
    let got: Result<PairNonce, _> =
        match write_frame(&mut s, &request(LibraryId([5; 16]), &[3; 32]), MAX_SMALL).await {
            Ok(()) => expect_frame(&mut r, MAX_SMALL, WAIT, "nonce").await,
            Err(e) => Err(e),
        };
    assert!(matches!(got, Err(StreamError::Peer(Code::Busy))), "{got:?}");

    // A decision sent where the reveal belongs, and a join nobody asked for, are protocol
    // errors, never a library.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let (mut s, mut r) = raw_pair_stream(&x, &v).await;
    write_frame(&mut s, &request(LibraryId([5; 16]), &[4; 32]), MAX_SMALL)
        .await
        .unwrap();
    let _: PairNonce = expect_frame(&mut r, MAX_SMALL, WAIT, "nonce")
        .await
        .unwrap();
    write_frame(&mut s, &PairDecision { accept: true }, MAX_SMALL)
        .await
        .unwrap();
    let end: Result<PairDecision, _> = expect_frame(&mut r, MAX_SMALL, WAIT, "reset").await;
    assert!(
        matches!(end, Err(StreamError::Peer(Code::ProtocolError))),
        "{end:?}"
    );
    assert!(v.libraries().list().is_empty());
    // The victim still serves others.
    let w = node(&t.path().join("w"), "walter", WAIT).await;
    connect(&w, &v).await;
    assert_eq!(w.ping(&v.id(), 1, Duration::ZERO).await.unwrap().len(), 1);
}
