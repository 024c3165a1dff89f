//! A scripted hostile LocalSend client against a real Ferry LocalSend server on loopback
//! (HTTPS, hyper, the real placement). Each bad input must be a clear refusal with the spec's
//! status, reported, nothing written outside the destination, and the server still serving an
//! honest sender afterwards. The multicast flood runs inside a network namespace (root).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_localsend::server::ServerEvent;
use ferry_localsend::wire::FileInfo;
use ferry_localsend::{ClientError, LocalFile, SendOptions, SendOutcome, SendProgress, SessionEnd};
use http_body_util::BodyExt;
use support::*;
use tokio::sync::{mpsc, watch};

const API: &str = "/api/localsend/v2";

fn info(name: &str, size: u64) -> FileInfo {
    FileInfo {
        id: "0".into(),
        file_name: name.into(),
        size,
        file_type: "application/octet-stream".into(),
        sha256: None,
        metadata: None,
    }
}

/// An honest send after the abuse: the server still works.
async fn honest_send(rx: &Receiver, name: &str) {
    let src = tempfile::tempdir().unwrap();
    let p = temp_file(src.path(), name, b"still served");
    let (_tx, cancel) = watch::channel(false);
    let out = client()
        .send(
            &target(rx.addr),
            vec![LocalFile {
                name: name.into(),
                path: p,
                size: 12,
            }],
            SendOptions::default(),
            Arc::new(SendProgress::default()),
            cancel,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        SendOutcome::Sent {
            files: 1,
            skipped: 0
        }
    );
    assert_eq!(
        std::fs::read(rx.dest.path().join(name)).unwrap(),
        b"still served"
    );
}

async fn wait_idle(rx: &Receiver) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.server.session().is_some() {
        assert!(Instant::now() < deadline, "session never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_without_session_or_token_or_from_another_address_is_403() {
    let mut rx = receiver(Policy::Accept, |_| {}).await;
    let c = client();
    let prep = c
        .prepare_upload(&target(rx.addr), None, &[info("a.txt", 5)])
        .await
        .unwrap()
        .unwrap();
    let (sid, token) = (prep.session_id.clone(), prep.files[0].1.clone());
    let up = |q: String| format!("{API}/upload?{q}");
    let len = [("content-length", "5".to_string())];
    let cases = [
        (
            up(format!("sessionId=nope&fileId=0&token={token}")),
            localhost(),
            403,
        ),
        (
            up(format!("sessionId={sid}&fileId=0&token=wrong")),
            localhost(),
            403,
        ),
        (
            up(format!("sessionId={sid}&fileId=9&token={token}")),
            localhost(),
            403,
        ),
        (
            up(format!("sessionId={sid}&fileId=0&token={token}")),
            "127.0.0.2".parse().unwrap(),
            403,
        ),
        (up(format!("sessionId={sid}&fileId=0")), localhost(), 400),
        (up(String::new()), localhost(), 400),
    ];
    for (path, from, want) in cases {
        let (status, body) = raw(rx.addr, from, "POST", &path, &len, bytes("hello"))
            .await
            .unwrap();
        assert_eq!(status, want, "{path} from {from}: {body}");
    }
    // A cancel from another address is refused too; the session goes on.
    let cancel = format!("{API}/cancel?sessionId={sid}");
    let other = "127.0.0.3".parse().unwrap();
    let (status, _) = raw(rx.addr, other, "POST", &cancel, &[], bytes(""))
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert!(rx.files().is_empty(), "nothing written: {:?}", rx.files());
    // The real sender's upload lands.
    let path = up(format!("sessionId={sid}&fileId=0&token={token}"));
    let (status, _) = raw(rx.addr, localhost(), "POST", &path, &len, bytes("hello"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    rx.expect("end", |e| {
        matches!(
            e,
            ServerEvent::Ended {
                end: SessionEnd::Done,
                ..
            }
        )
    })
    .await;
    assert_eq!(rx.files(), ["a.txt"]);
    let refused = rx
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.starts_with("refused"))
        .count();
    assert_eq!(
        refused,
        7,
        "every refusal is reported: {:?}",
        rx.seen.lock().unwrap()
    );
    honest_send(&rx, "b.txt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_larger_than_announced_is_refused_and_removed() {
    let mut rx = receiver(Policy::Accept, |_| {}).await;
    let c = client();
    let t = target(rx.addr);
    // A Content-Length other than the declared size: refused before reading.
    let prep = c
        .prepare_upload(&t, None, &[info("big.bin", 10)])
        .await
        .unwrap()
        .unwrap();
    let path = format!(
        "{API}/upload?sessionId={}&fileId=0&token={}",
        prep.session_id, prep.files[0].1
    );
    let hdr = [("content-length", "11".to_string())];
    let (status, body) = raw(
        rx.addr,
        localhost(),
        "POST",
        &path,
        &hdr,
        bytes(vec![7u8; 11]),
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("announced"), "{body}");
    rx.expect("end", |e| {
        matches!(
            e,
            ServerEvent::Ended {
                end: SessionEnd::Failed(_),
                ..
            }
        )
    })
    .await;
    // Chunked, no length: refused at the first byte over, the partial file removed.
    let prep = c
        .prepare_upload(&t, None, &[info("big.bin", 1 << 20)])
        .await
        .unwrap()
        .unwrap();
    let path = format!(
        "{API}/upload?sessionId={}&fileId=0&token={}",
        prep.session_id, prep.files[0].1
    );
    let (tx, chunks) = mpsc::channel(4);
    let feeder = tokio::spawn(async move {
        // 4 MiB for a 1 MiB file; the server stops reading after the first MiB.
        for _ in 0..64 {
            if tx.send(Bytes::from(vec![1u8; 64 << 10])).await.is_err() {
                return;
            }
        }
    });
    let body = ChanBody {
        rx: chunks,
        exact: None,
    }
    .boxed();
    let r = raw(rx.addr, localhost(), "POST", &path, &[], body).await;
    if let Ok((status, body)) = &r {
        assert_eq!(*status, 400, "{body}");
    }
    let ev = rx
        .expect("failure", |e| matches!(e, ServerEvent::FileFailed { .. }))
        .await;
    let ServerEvent::FileFailed { reason, .. } = ev else {
        unreachable!()
    };
    assert!(reason.contains("more data than"), "{reason}");
    feeder.abort();
    wait_idle(&rx).await;
    assert!(
        rx.files().is_empty(),
        "no partial file left: {:?}",
        rx.files()
    );
    honest_send(&rx, "ok.txt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_names_refuse_the_offer_and_odd_names_are_made_safe() {
    let mut rx = receiver(Policy::Accept, |_| {}).await;
    let prep = format!("{API}/prepare-upload");
    for bad in [
        "../evil.txt",
        "a/../../evil.txt",
        "/etc/evil",
        "a\\..\\evil",
        "dir//x",
        "x/",
    ] {
        let body = prepare_body(&[("fine.txt", 1), (bad, 1)]);
        let (status, msg) = raw(rx.addr, localhost(), "POST", &prep, &[], bytes(body))
            .await
            .unwrap();
        assert_eq!(status, 400, "{bad:?}: {msg}");
    }
    assert!(
        !rx.seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.starts_with("offer")),
        "a refused offer raises no prompt"
    );
    // Names that are valid but awkward land under safe local names, inside the destination.
    let src = tempfile::tempdir().unwrap();
    let names = ["bell\u{7}.txt", "dir/CON.txt", "dir/sub/deep.txt"];
    let files: Vec<LocalFile> = names
        .iter()
        .enumerate()
        .map(|(i, n)| LocalFile {
            name: n.to_string(),
            path: temp_file(src.path(), &format!("f{i}"), b"x"),
            size: 1,
        })
        .collect();
    let (_tx, cancel) = watch::channel(false);
    client()
        .send(
            &target(rx.addr),
            files,
            SendOptions::default(),
            Default::default(),
            cancel,
        )
        .await
        .unwrap();
    rx.expect("end", |e| matches!(e, ServerEvent::Ended { .. }))
        .await;
    let got = rx.files();
    assert!(got.contains(&"bell_.txt".to_string()), "{got:?}");
    let con = if cfg!(windows) {
        "dir/_CON.txt"
    } else {
        "dir/CON.txt"
    };
    assert!(got.contains(&con.to_string()), "{got:?}");
    assert!(got.contains(&"dir/sub/deep.txt".to_string()), "{got:?}");
    assert!(!src.path().parent().unwrap().join("evil.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_upload_of_250_001_files_is_refused() {
    let rx = receiver(Policy::Accept, |_| {}).await;
    let files: Vec<(String, u64)> = (0..250_001).map(|i| (format!("f{i}"), 1)).collect();
    let refs: Vec<(&str, u64)> = files.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let body = prepare_body(&refs);
    println!("250,001-file offer: {} bytes of JSON", body.len());
    let t = Instant::now();
    let (status, msg) = raw(
        rx.addr,
        localhost(),
        "POST",
        &format!("{API}/prepare-upload"),
        &[],
        bytes(body),
    )
    .await
    .unwrap();
    println!("refused in {:?}", t.elapsed());
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("more than 250000 files"), "{msg}");
    assert!(!rx
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.starts_with("offer")));
    honest_send(&rx, "after.txt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_json_body_is_refused_without_reading_it() {
    let rx = receiver(Policy::Accept, |_| {}).await;
    let before = rss();
    let prep = format!("{API}/prepare-upload");
    // Declared: refused from the header, before a byte of it is read.
    let (tx, chunks) = mpsc::channel(1);
    let declared = [("content-length", (1u64 << 30).to_string())];
    let body = ChanBody {
        rx: chunks,
        exact: Some(1 << 30),
    }
    .boxed();
    let t = Instant::now();
    let (status, _) = raw(rx.addr, localhost(), "POST", &prep, &declared, body)
        .await
        .unwrap();
    assert_eq!(status, 413);
    println!("declared 1 GiB body refused in {:?}", t.elapsed());
    drop(tx);
    // Undeclared (chunked): cut off at the 64 MiB limit while 1 GiB keeps coming.
    let (tx, chunks) = mpsc::channel(4);
    let feeder = tokio::spawn(async move {
        let chunk = Bytes::from(vec![b' '; 1 << 20]);
        for _ in 0..1024 {
            if tx.send(chunk.clone()).await.is_err() {
                return;
            }
        }
    });
    let body = ChanBody {
        rx: chunks,
        exact: None,
    }
    .boxed();
    let t = Instant::now();
    let r = raw(rx.addr, localhost(), "POST", &prep, &[], body).await;
    println!("chunked 1 GiB body: {r:?} after {:?}", t.elapsed());
    if let Ok((status, _)) = r {
        assert_eq!(status, 413);
    }
    feeder.abort();
    let grew = rss().saturating_sub(before);
    println!("receiver RSS grew {} MiB", grew >> 20);
    assert!(
        grew < 200 << 20,
        "memory bounded by the body limit, grew {grew}"
    );
    honest_send(&rx, "after.txt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_fails_and_leaves_nothing() {
    let mut rx = receiver(Policy::Accept, |c| {
        c.stall_timeout = Duration::from_millis(800);
        c.idle_timeout = Duration::from_secs(3);
    })
    .await;
    let c = client();
    let prep = c
        .prepare_upload(&target(rx.addr), None, &[info("slow.bin", 1 << 20)])
        .await
        .unwrap()
        .unwrap();
    let path = format!(
        "{API}/upload?sessionId={}&fileId=0&token={}",
        prep.session_id, prep.files[0].1
    );
    let (tx, chunks) = mpsc::channel(4);
    tx.send(Bytes::from(vec![1u8; 100_000])).await.unwrap();
    let body = ChanBody {
        rx: chunks,
        exact: Some(1 << 20),
    }
    .boxed();
    let hdr = [("content-length", (1u64 << 20).to_string())];
    let t = Instant::now();
    let (status, msg) = raw(rx.addr, localhost(), "POST", &path, &hdr, body)
        .await
        .unwrap();
    assert_eq!(status, 408, "{msg}");
    assert!(msg.contains("stalled"), "{msg}");
    println!("stalled upload refused after {:?}", t.elapsed());
    drop(tx);
    rx.expect("end", |e| {
        matches!(
            e,
            ServerEvent::Ended {
                end: SessionEnd::Failed(_),
                ..
            }
        )
    })
    .await;
    assert!(rx.files().is_empty(), "{:?}", rx.files());
    honest_send(&rx, "after.txt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sender_gets_409_while_a_session_runs_or_waits() {
    let rx = receiver(Policy::Hold, |_| {}).await;
    let prep = format!("{API}/prepare-upload");
    let addr = rx.addr;
    let first = tokio::spawn(async move {
        raw(
            addr,
            localhost(),
            "POST",
            &prep,
            &[],
            bytes(prepare_body(&[("a", 1)])),
        )
        .await
    });
    // While the first offer waits for its answer, everyone else is told 409.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rx
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.starts_with("offer"))
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for from in ["127.0.0.1", "127.0.0.9"] {
        let err = client()
            .prepare_upload(&target(rx.addr), None, &[info("b", 1)])
            .await;
        assert!(matches!(err, Err(ClientError::Busy)), "{from}: {err:?}");
        let (status, _) = raw(
            rx.addr,
            from.parse().unwrap(),
            "POST",
            &format!("{API}/prepare-upload"),
            &[],
            bytes(prepare_body(&[("c", 1)])),
        )
        .await
        .unwrap();
        assert_eq!(status, 409);
    }
    assert_eq!(
        rx.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.starts_with("offer"))
            .count(),
        1,
        "one prompt, no prompt spam"
    );
    first.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_required_wrong_pin_and_lockout() {
    let rx = receiver(Policy::Accept, |c| c.pin = Some("4711".into())).await;
    let t = target(rx.addr);
    let c = client();
    let files = [info("p.txt", 1)];
    assert!(matches!(
        c.prepare_upload(&t, None, &files).await,
        Err(ClientError::PinRequired)
    ));
    assert!(matches!(
        c.prepare_upload(&t, Some("0000"), &files).await,
        Err(ClientError::PinRequired)
    ));
    // The right PIN before the lockout works (and clears the count).
    let ok = c
        .prepare_upload(&t, Some("4711"), &files)
        .await
        .unwrap()
        .unwrap();
    rx.server.cancel(&ok.session_id);
    wait_idle(&rx).await;
    for _ in 0..3 {
        assert!(matches!(
            c.prepare_upload(&t, Some("1"), &files).await,
            Err(ClientError::PinRequired)
        ));
    }
    let locked = c.prepare_upload(&t, Some("4711"), &files).await;
    assert!(
        matches!(locked, Err(ClientError::TooManyRequests)),
        "{locked:?}"
    );
    // Another address is not locked out.
    let (status, _) = raw(
        rx.addr,
        "127.0.0.5".parse().unwrap(),
        "POST",
        &format!("{API}/prepare-upload?pin=4711"),
        &[],
        bytes(prepare_body(&[("q.txt", 1)])),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_offers_are_403_and_info_and_register_answer() {
    let rx = receiver(Policy::Reject, |_| {}).await;
    let c = client();
    let r = c
        .prepare_upload(&target(rx.addr), None, &[info("x", 1)])
        .await;
    assert!(matches!(r, Err(ClientError::Rejected)), "{r:?}");
    let (info, fp) = c.register(&target(rx.addr)).await.unwrap();
    assert_eq!(info.alias, "ferry-test");
    assert_eq!(fp.as_deref(), Some(info.fingerprint.as_str()));
    // The register told the server who we are, proven by our client certificate.
    let d = rx.devices.find("sender").expect("registered");
    assert!(d.verified);
    assert_eq!(d.fingerprint, c.info().fingerprint);
    let (status, body) = raw(
        rx.addr,
        localhost(),
        "GET",
        &format!("{API}/info"),
        &[],
        bytes(""),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("ferry-test"), "{body}");
    // A pinned fingerprint that the certificate does not have: refused before sending.
    let mut wrong = target(rx.addr);
    wrong.fingerprint = Some("00".repeat(32));
    assert!(matches!(
        c.register(&wrong).await,
        Err(ClientError::FingerprintMismatch { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_sha256_is_checked_before_placing() {
    let mut rx = receiver(Policy::Accept, |_| {}).await;
    let c = client();
    let mut f = info("h.txt", 5);
    f.sha256 = Some(ferry_localsend::tls::hex_upper(
        ring::digest::digest(&ring::digest::SHA256, b"hello").as_ref(),
    ));
    for (data, want) in [(b"jello", 400), (b"hello", 200)] {
        let prep = c
            .prepare_upload(&target(rx.addr), None, &[f.clone()])
            .await
            .unwrap()
            .unwrap();
        let path = format!(
            "{API}/upload?sessionId={}&fileId=0&token={}",
            prep.session_id, prep.files[0].1
        );
        let hdr = [("content-length", "5".to_string())];
        let (status, msg) = raw(
            rx.addr,
            localhost(),
            "POST",
            &path,
            &hdr,
            bytes(data.to_vec()),
        )
        .await
        .unwrap();
        assert_eq!(status, want, "{msg}");
        rx.expect("end", |e| matches!(e, ServerEvent::Ended { .. }))
            .await;
        wait_idle(&rx).await;
    }
    assert_eq!(rx.files(), ["h.txt"]);
    assert_eq!(
        std::fs::read(rx.dest.path().join("h.txt")).unwrap(),
        b"hello"
    );
}

#[path = "lsd/mod.rs"]
mod lsd;

/// 20,000 made-up announcements (distinct fingerprints and ports, all asking for an answer)
/// from one namespace at Ferry's discovery in another: the device list stays bounded, no
/// prompt is raised, and a genuine device announced after the flood is found and verified.
#[test]
fn a_multicast_flood_of_fake_announcements_keeps_the_list_bounded() {
    if let Err(why) = lsd::netns::available() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("network namespaces unavailable in CI: {why}");
        }
        eprintln!("SKIPPED: needs root and iproute2 for network namespaces ({why})");
        return;
    }
    let lan = lsd::Lan::new(2).unwrap();
    let (flooder_ns, genuine_ns) = (lan.ns(0).to_string(), lan.ns(0).to_string());
    let (ferry_ip, genuine_ip) = (lan.host_ip(1), lan.host_ip(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let flooder = std::thread::spawn(move || {
        lsd::in_netns(&flooder_ns, move || async move {
            ready_rx.recv().unwrap();
            let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            let t = Instant::now();
            for i in 0..20_000u32 {
                let msg = format!(
                    r#"{{"alias":"fake {i}","version":"2.1","fingerprint":"{i:064X}","port":{},"protocol":"https","announce":true}}"#,
                    1000 + i % 60_000
                );
                let _ = sock.send_to(msg.as_bytes(), "224.0.0.167:53317");
                if i % 500 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            println!("flood: 20,000 announcements in {:?}", t.elapsed());
            done_tx.send(()).unwrap();
        })
    });
    lsd::in_netns(lan.ns(1), move || async move {
        let mut rx = receiver(Policy::Accept, |_| {}).await;
        let disc = ferry_localsend::DiscoveryConfig {
            interfaces: vec![ferry_ip],
            announce_every: None,
            ..Default::default()
        };
        let c = ferry_localsend::Client::new(
            &ferry_localsend::Identity::generate().unwrap(),
            rx.server.info(),
        )
        .unwrap();
        let _d = ferry_localsend::Discovery::start(disc, rx.server.info(), rx.devices.clone(), c)
            .unwrap();
        ready_tx.send(()).unwrap();
        tokio::task::spawn_blocking(move || done_rx.recv().unwrap())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n = rx.devices.len();
        println!("device list after the flood: {n} entries");
        assert!(n <= ferry_localsend::devices::MAX_DEVICES, "{n}");
        assert!(n > 0, "the flood did arrive");
        // A genuine device on the other host announces now: found, and verified by its answer.
        let (gtx, grx) = std::sync::mpsc::channel();
        let g = std::thread::spawn(move || {
            lsd::in_netns(&genuine_ns, move || async move {
                let id = ferry_localsend::Identity::generate().unwrap();
                let cfg = ferry_localsend::ServerConfig::new(ferry_localsend::device_info(
                    "genuine",
                    ferry_localsend::DeviceType::Mobile,
                ));
                let devices = Arc::new(ferry_localsend::Devices::new(64));
                let (server, _ev) = ferry_localsend::Server::bind(
                    "0.0.0.0:53317".parse().unwrap(),
                    &id,
                    cfg,
                    devices.clone(),
                )
                .await
                .unwrap();
                let client = ferry_localsend::Client::new(&id, server.info()).unwrap();
                let disc = ferry_localsend::DiscoveryConfig {
                    interfaces: vec![genuine_ip],
                    announce_every: None,
                    ..Default::default()
                };
                let _d = ferry_localsend::Discovery::start(disc, server.info(), devices, client)
                    .unwrap();
                let _ = grx.recv_timeout(Duration::from_secs(30));
            })
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if rx.devices.find("genuine").is_some_and(|d| d.verified) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "genuine device not found: {:?}",
                rx.devices.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(rx.devices.len() <= ferry_localsend::devices::MAX_DEVICES);
        gtx.send(()).unwrap();
        tokio::task::spawn_blocking(move || g.join().unwrap())
            .await
            .unwrap();
        assert!(
            !rx.seen
                .lock()
                .unwrap()
                .iter()
                .any(|s| s.starts_with("offer")),
            "announcements never prompt"
        );
        while let Ok(e) = rx.events.try_recv() {
            assert!(!matches!(e, ServerEvent::Offer(_)));
        }
    });
    flooder.join().unwrap();
}
