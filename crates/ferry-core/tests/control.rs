//! The control surface between real nodes on loopback, with real SQLite files: front ends
//! attached over the local socket (shared prompts, the first answer wins, sessions freed when
//! they close, bad frames, other users, 1,000 front ends, one that never reads), and members
//! running commands on each other under grants (refused, granted, revoked inside an open
//! session, removed).

#[path = "support/members.rs"]
mod members;

use std::path::Path;
use std::time::Duration;

use ferry_core::control::command::Capability;
use ferry_core::control::local::{socket_path, Client, ClientError, Heard, MAX_SESSIONS};
use ferry_core::control::wire::{self, Down, Up, MAX_DOWN, MAX_UP, VERSION};
use ferry_core::control::{remote, Command, Refusal, Reply};
use ferry_core::{AcceptPolicy, Event, Node, NodeConfig, SpacedropConfig};
use members::*;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

const WAIT: Duration = Duration::from_secs(30);

/// These tests count descriptors and sessions of the whole process: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn attachable(data: &Path, name: &str, accept: AcceptPolicy) -> Node {
    let cfg = NodeConfig {
        name: Some(name.into()),
        listen: "127.0.0.1:0".parse().unwrap(),
        discovery: false,
        attachable: true,
        spacedrop: SpacedropConfig {
            dest: data.join("downloads"),
            prompt_timeout: Duration::from_secs(20),
            accept,
        },
        ..NodeConfig::new(data)
    };
    Node::start(cfg).await.unwrap()
}

/// Waits for the event `f` picks out of a front end's stream.
async fn heard<T>(c: &Client, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match c.next().await {
                Heard::Event(e) => {
                    if let Some(t) = f(&e) {
                        return t;
                    }
                }
                Heard::Lagged(_) => {}
                Heard::Closed(why) => panic!("session closed: {why}"),
            }
        }
    })
    .await
    .expect("the event in time")
}

/// `n` more sessions from `b` to `a`.
async fn futures_open(
    b: &Node,
    a: &Node,
    lib: &ferry_core::library::wire::LibraryId,
    n: usize,
) -> Vec<Client> {
    let mut v = vec![];
    for _ in 0..n {
        v.push(remote::open(b.libraries(), &a.id(), lib).await.unwrap());
    }
    v
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attached_front_ends_share_one_node_and_the_first_answer_wins() {
    let _one = ONE_AT_A_TIME.lock().await;
    let t = tempfile::tempdir().unwrap();
    let a = attachable(&t.path().join("a"), "alpha", AcceptPolicy::Ask).await;
    let b = attachable(&t.path().join("b"), "beta", AcceptPolicy::Ask).await;
    link(&b, &a).await;

    let started = std::time::Instant::now();
    let one = Client::attach(a.data_dir(), true).await.unwrap().unwrap();
    println!("attach (connect, hello, welcome): {:?}", started.elapsed());
    let two = Client::attach(a.data_dir(), true).await.unwrap().unwrap();
    assert_eq!(one.node().id, a.id().fingerprint());
    until("both sessions counted", WAIT, || a.attached() == 2).await;

    // Beta offers alpha a file; both front ends see the prompt and both answer at once.
    let file = t.path().join("hello.txt");
    std::fs::write(&file, b"hello").unwrap();
    let sent = b
        .execute(Command::Send {
            peer: a.id().fingerprint(),
            paths: vec![file.display().to_string()],
            wait_ms: 5000,
            pin: None,
        })
        .await
        .unwrap();
    let Reply::Sent { transfer, .. } = sent else {
        panic!("{sent:?}")
    };
    let prompt = |e: &Event| match e {
        Event::SpacedropPrompt { prompt } => Some(prompt.transfer.clone()),
        _ => None,
    };
    let (p1, p2) = tokio::join!(heard(&one, prompt), heard(&two, prompt));
    assert_eq!(p1, transfer.id);
    assert_eq!(p2, transfer.id);
    let answer = || Command::Answer {
        id: Some(transfer.id[..8].to_string()),
        accept: true,
        dest: None,
    };
    let (r1, r2) = tokio::join!(one.call(answer()), two.call(answer()));
    let wins = [&r1, &r2].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "exactly one answer wins: {r1:?} {r2:?}");
    let loser = if r1.is_err() { &r1 } else { &r2 };
    assert!(
        matches!(loser, Err(ClientError::Refused(Refusal::Failed { .. }))),
        "{loser:?}"
    );
    // Every front end is told the prompt was settled, and sees the transfer end.
    let resolved = |e: &Event| matches!(e, Event::PromptResolved { .. }).then_some(());
    tokio::join!(heard(&one, resolved), heard(&two, resolved));
    let done = |e: &Event| match e {
        Event::Transfer { transfer: x } if x.id == transfer.id && x.state.is_final() => {
            Some(x.state.clone())
        }
        _ => None,
    };
    assert_eq!(heard(&one, done).await, ferry_core::TransferState::Done);
    assert_eq!(
        std::fs::read(a.data_dir().join("downloads/hello.txt")).unwrap(),
        b"hello"
    );

    // Closing a front end frees its session: no task, stream or descriptor is left (each
    // session is two descriptors in this process: the front end's end and the node's).
    let with = open_fds();
    drop(one);
    drop(two);
    until("sessions freed", WAIT, || a.attached() == 0).await;
    until("descriptors freed", WAIT, || open_fds() <= with - 4).await;
    a.shutdown().await;
    b.shutdown().await;
    assert!(
        !socket_path(a.data_dir()).exists(),
        "the socket goes with the node"
    );
}

/// A raw connection: what a hostile or broken front end can send.
async fn raw(data: &Path) -> UnixStream {
    UnixStream::connect(socket_path(data)).await.unwrap()
}

async fn frame(s: &mut UnixStream, body: &[u8]) {
    s.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(body).await.unwrap();
}

/// Reads until the node says goodbye and closes; the goodbye's reason.
async fn bye(s: &mut UnixStream) -> String {
    let mut reason = None;
    loop {
        match tokio::time::timeout(WAIT, wire::read::<_, Down>(s, MAX_DOWN)).await {
            Ok(Ok(Some(Down::Bye { reason: r }))) => reason = Some(r),
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) | Ok(Err(_)) => break,
            Err(_) => panic!("the node neither said goodbye nor closed"),
        }
    }
    reason.unwrap_or_default()
}

async fn hello(s: &mut UnixStream, events: bool) {
    let h = Up::Hello {
        version: VERSION,
        events,
    };
    wire::write(s, &h, MAX_UP).await.unwrap();
    let w: Down = wire::read(s, MAX_DOWN).await.unwrap().unwrap();
    assert!(matches!(w, Down::Welcome { .. }), "{w:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_frames_other_users_and_a_thousand_front_ends_are_refused_or_bounded() {
    let _one = ONE_AT_A_TIME.lock().await;
    // 1,000 connections and their other ends: more than a default soft limit of 1,024.
    raise_fd_limit();
    let t = tempfile::tempdir().unwrap();
    let a = attachable(&t.path().join("a"), "alpha", AcceptPolicy::Ask).await;
    let dir = a.data_dir().to_path_buf();
    let keeper = Client::attach(&dir, false).await.unwrap().unwrap();

    // A call before the hello.
    let mut s = raw(&dir).await;
    frame(
        &mut s,
        br#"{"up":"call","id":1,"command":{"cmd":"status"}}"#,
    )
    .await;
    bye(&mut s).await;
    // Another version.
    let mut s = raw(&dir).await;
    frame(&mut s, br#"{"up":"hello","version":99,"events":false}"#).await;
    assert!(bye(&mut s).await.contains("version 99"));
    // An unknown command.
    let mut s = raw(&dir).await;
    hello(&mut s, false).await;
    frame(
        &mut s,
        br#"{"up":"call","id":1,"command":{"cmd":"format_disk"}}"#,
    )
    .await;
    assert!(bye(&mut s).await.contains("format_disk"));
    // A frame longer than any command may be: refused before it is read.
    let mut s = raw(&dir).await;
    hello(&mut s, false).await;
    s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    assert!(bye(&mut s).await.contains("over the limit"));
    // Half a frame, then gone.
    let mut s = raw(&dir).await;
    hello(&mut s, false).await;
    s.write_all(&[0, 0, 0, 200, b'{']).await.unwrap();
    drop(s);
    // Not JSON at all.
    let mut s = raw(&dir).await;
    hello(&mut s, false).await;
    frame(&mut s, &[0xff; 64]).await;
    bye(&mut s).await;

    // 1,000 front ends: the first ones are served, the rest told why and closed.
    until("the bad sessions freed", WAIT, || a.attached() == 1).await;
    let before = a.attached();
    let mut conns = vec![];
    let (mut welcomed, mut refused) = (0, 0);
    for _ in 0..1000 {
        let mut s = raw(&dir).await;
        let h = Up::Hello {
            version: VERSION,
            events: true,
        };
        // A refused one may be closed before its hello arrives: the goodbye is read anyway.
        let _ = wire::write(&mut s, &h, MAX_UP).await;
        match wire::read::<_, Down>(&mut s, MAX_DOWN).await {
            Ok(Some(Down::Welcome { .. })) => welcomed += 1,
            Ok(Some(Down::Bye { .. })) => refused += 1,
            other => panic!("{other:?}"),
        }
        conns.push(s);
    }
    println!("1,000 front ends: {welcomed} attached, {refused} refused");
    assert_eq!(welcomed, MAX_SESSIONS - before);
    assert_eq!(refused, 1000 - welcomed);
    // The node still answers the front end it had.
    let r = keeper.call(Command::Status).await.unwrap();
    assert!(matches!(r, Reply::Status { .. }));
    drop(conns);
    until("the 1,000 sessions freed", WAIT, || a.attached() == 1).await;

    // Another user of this machine (root only: it takes a second uid).
    if unsafe_getuid() == 0 {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        // Loosen the permissions, so only the uid check stands in the way.
        for p in [t.path(), dir.as_path(), &socket_path(&dir)] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let script = r#"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = b'{"up":"hello","version":1,"events":false}'
s.settimeout(10)
try:
    s.sendall(struct.pack('>I', len(body)) + body)
    print(len(s.recv(65536)))
except (ConnectionResetError, BrokenPipeError):
    print(0)
"#;
        let out = std::process::Command::new("python3")
            .args(["-c", script, socket_path(&dir).to_str().unwrap()])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(said.trim(), "0", "another user got an answer: {out:?}");
    } else {
        println!("SKIPPED: another user's connection (needs root for a second uid)");
    }
    a.shutdown().await;
}

fn raise_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

fn unsafe_getuid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file this process just made is its uid.
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().uid()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_front_end_that_never_reads_neither_holds_the_node_nor_loses_track() {
    let _one = ONE_AT_A_TIME.lock().await;
    let t = tempfile::tempdir().unwrap();
    let a = attachable(&t.path().join("a"), "alpha", AcceptPolicy::Ask).await;
    let dir = a.data_dir().to_path_buf();
    let mut sleeper = raw(&dir).await;
    hello(&mut sleeper, true).await;
    let busy = Client::attach(&dir, false).await.unwrap().unwrap();
    let Reply::Library { library } = busy
        .call(Command::CreateLibrary {
            name: "Events".into(),
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    // Far more events than the node keeps for a reader (1,024), each a few hundred bytes:
    // the sleeper's socket fills, and every call still completes.
    let started = std::time::Instant::now();
    for i in 0..3000 {
        busy.call(Command::RenameLibrary {
            library: library.id.clone(),
            name: format!("Events {i}"),
        })
        .await
        .unwrap();
    }
    println!(
        "3,000 commands while a front end read nothing: {:?}",
        started.elapsed()
    );
    // When it reads again, it is told it missed events (and reads the state again).
    let mut lagged = None;
    while lagged.is_none() {
        match tokio::time::timeout(WAIT, wire::read::<_, Down>(&mut sleeper, MAX_DOWN)).await {
            Ok(Ok(Some(Down::Lagged { missed }))) => lagged = Some(missed),
            Ok(Ok(Some(_))) => {}
            other => panic!("no lag reported: {other:?}"),
        }
    }
    println!("the sleeper missed {} events", lagged.unwrap());
    assert!(lagged.unwrap() > 0);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_run_commands_under_grants_revoked_at_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let t = tempfile::tempdir().unwrap();
    let (da, db) = (t.path().join("a"), t.path().join("b"));
    let lib = shared_library(&[(&da, "alpha"), (&db, "beta")]);
    let a = start(&da, "alpha").await;
    let b = start(&db, "beta").await;
    link(&b, &a).await;
    let folder = t.path().join("alpha-photos");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("a.txt"), b"a").unwrap();

    let session = remote::open(b.libraries(), &a.id(), &lib).await.unwrap();
    assert_eq!(session.node().id, a.id().fingerprint());
    let add = Command::AddLocation {
        library: lib.hex(),
        path: folder.display().to_string(),
    };
    let refused = |r: Result<Reply, ClientError>| match r {
        Err(ClientError::Refused(r)) => r,
        other => panic!("not refused: {other:?}"),
    };
    // Membership gives reading.
    let r = session
        .call(Command::Locations { library: lib.hex() })
        .await
        .unwrap();
    assert!(matches!(r, Reply::Locations { .. }), "{r:?}");
    // Without a grant: refused, naming what is missing.
    let started = std::time::Instant::now();
    assert_eq!(
        refused(session.call(add.clone()).await),
        Refusal::NotGranted {
            capability: Capability::Manage
        }
    );
    println!(
        "a refused remote command's round trip: {:?}",
        started.elapsed()
    );
    // What is never granted, and other libraries, are refused too.
    assert_eq!(
        refused(session.call(Command::Peers).await),
        Refusal::OwnerOnly
    );
    let grant = |cap| Command::Grant {
        library: lib.hex(),
        node: b.id().fingerprint(),
        capability: cap,
    };
    assert_eq!(
        refused(session.call(grant(Capability::Manage)).await),
        Refusal::OwnerOnly
    );
    assert_eq!(
        refused(
            session
                .call(Command::Locations {
                    library: "0123456789abcdef0123456789abcdef".into()
                })
                .await
        ),
        Refusal::OtherLibrary
    );

    // Alpha grants manage: the same open session may now add the location.
    a.execute(grant(Capability::Manage)).await.unwrap();
    let Reply::Location { location } = session.call(add.clone()).await.unwrap() else {
        panic!()
    };
    assert_eq!(location.path, folder.display().to_string());
    // Never the node's own data (its identity key), nor a folder holding it.
    for own in [a.data_dir().to_path_buf(), t.path().to_path_buf()] {
        let r = session
            .call(Command::AddLocation {
                library: lib.hex(),
                path: own.display().to_string(),
            })
            .await;
        let Err(ClientError::Refused(Refusal::Failed { message })) = r else {
            panic!("{r:?}")
        };
        assert!(message.contains("own data folder"), "{message}");
    }
    // A member with `send` sees and steers only what it asked this node to send.
    a.execute(grant(Capability::Send)).await.unwrap();
    let list = Command::Transfers {
        limit: None,
        before: None,
    };
    let Reply::Transfers { transfers, .. } = session.call(list).await.unwrap() else {
        panic!()
    };
    assert!(transfers.is_empty(), "{transfers:?}");
    let r = session
        .call(Command::Send {
            peer: "127.0.0.1:9".into(),
            paths: vec!["alpha-photos/a.txt".into()],
            wait_ms: 0,
            pin: None,
        })
        .await;
    assert!(
        matches!(r, Err(ClientError::Refused(Refusal::Failed { .. }))),
        "{r:?}"
    );
    // What a member sends ends up in the log cut short, on one line.
    let long = format!("{}\n{}", "x".repeat(5000), "forged line");
    let _ = session
        .call(Command::Entries {
            library: lib.hex(),
            path: long,
        })
        .await;
    // Four sessions per member at once; a fifth is refused while they stay open.
    let more: Vec<_> = futures_open(&b, &a, &lib, 3).await;
    assert!(remote::open(b.libraries(), &a.id(), &lib).await.is_err());
    drop(more);
    let own = a.libraries().contents().locations(&lib).unwrap();
    assert!(own
        .iter()
        .any(|l| l.local && l.path == folder.display().to_string()));

    // Alpha revokes: the next call in the same session is refused.
    a.execute(Command::Revoke {
        library: lib.hex(),
        node: b.id().fingerprint(),
        capability: Capability::Manage,
    })
    .await
    .unwrap();
    let rescan = Command::RescanLocation {
        library: lib.hex(),
        location: location.id.clone(),
    };
    assert_eq!(
        refused(session.call(rescan).await),
        Refusal::NotGranted {
            capability: Capability::Manage
        }
    );

    // Alpha's log says who did what, refused or not.
    let Reply::Grants { grants, log } = a
        .execute(Command::Grants { library: lib.hex() })
        .await
        .unwrap()
    else {
        panic!()
    };
    // Manage was revoked; send is still held.
    let held: Vec<_> = grants.iter().map(|g| g.capability).collect();
    assert_eq!(held, [Capability::Send]);
    let by_beta: Vec<_> = log
        .iter()
        .filter(|l| l.node == b.id().fingerprint())
        .map(|l| (l.command.as_str(), l.outcome.starts_with("refused")))
        .collect();
    assert!(by_beta.contains(&("add_location", true)), "{by_beta:?}");
    assert!(
        log.iter()
            .all(|l| l.outcome.chars().count() <= 201 && !l.outcome.contains('\n')),
        "{log:?}"
    );
    assert!(by_beta.contains(&("add_location", false)), "{by_beta:?}");
    assert!(by_beta.contains(&("rescan_location", true)), "{by_beta:?}");

    // The other way round, by name, through alpha's own surface: reading needs no grant.
    let r = a
        .execute(Command::Remote {
            node: "beta".into(),
            library: None,
            command: Box::new(Command::Status),
        })
        .await
        .unwrap();
    let Reply::Status { status } = r else {
        panic!()
    };
    assert_eq!(status.id, b.id().fingerprint(), "it ran on beta, not here");
    // A node that is not a member is never run on locally instead.
    let r = a
        .execute(Command::Remote {
            node: "gamma".into(),
            library: None,
            command: Box::new(Command::Status),
        })
        .await;
    assert!(matches!(r, Err(Refusal::Failed { .. })), "{r:?}");

    // Beta removed from the library: its open session is refused from the next call on.
    a.libraries().remove_member(&lib, &b.id()).unwrap();
    let r = session
        .call(Command::Locations { library: lib.hex() })
        .await;
    assert!(
        matches!(r, Err(ClientError::Refused(Refusal::NotMember))),
        "{r:?}"
    );
    drop(session);
    a.shutdown().await;
    b.shutdown().await;
}
