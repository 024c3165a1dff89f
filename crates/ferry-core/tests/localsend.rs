//! A Ferry node with LocalSend on, against localsendd (PyPI; an independent LocalSend v2
//! daemon), on a virtual LAN of network namespaces the test creates (nothing reaches the
//! host's interfaces, multicast included). localsendd runs in host 0, the node in host 1.
//! A LocalSend offer raises the node's own prompt, a LocalSend transfer is a Spacedrop
//! transfer (listed, recorded, cancelled like one), and the node sends to LocalSend devices.
//!
//! Needs root and scripts/setup-localsend.sh; otherwise SKIPPED (a failure under CI=true).

#[path = "../../ferry-localsend/tests/lsd/mod.rs"]
mod lsd;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_core::spacedrop::{Decision, TransferState, Via};
use ferry_core::{Event, LocalSendConfig, Node, NodeConfig};
use lsd::*;
use serde_json::json;
use tokio::sync::broadcast;

const FERRY: usize = 1;
const LSD: usize = 0;

async fn node(data: &Path, dest: &Path) -> Node {
    let mut cfg = NodeConfig::new(data);
    cfg.name = Some("ferry-node".into());
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    cfg.spacedrop.dest = dest.to_path_buf();
    cfg.index = false;
    cfg.localsend = Some(LocalSendConfig::default());
    Node::start(cfg).await.unwrap()
}

/// Waits until the node has heard `alias` and verified its certificate.
async fn device(n: &Node, alias: &str) -> ferry_core::spacedrop::LocalSendDevice {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = n.spacedrop().localsend_devices();
        if let Some(d) = found.iter().find(|d| d.alias == alias && d.verified) {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "never heard {alias}: {found:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn next<T>(
    events: &mut broadcast::Receiver<Event>,
    what: &str,
    mut f: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(e)) => {
                if let Some(t) = f(&e) {
                    return t;
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            _ => panic!("no {what}"),
        }
    }
}

/// The final state of transfer `id`.
async fn end(events: &mut broadcast::Receiver<Event>, id: &str) -> ferry_core::TransferInfo {
    next(events, "end of the transfer", |e| match e {
        Event::Transfer { transfer } if transfer.id == id && transfer.state.is_final() => {
            Some(transfer.clone())
        }
        _ => None,
    })
    .await
}

fn make_folder(root: &Path, files: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    (0..files)
        .map(|i| {
            let p = root
                .join(if i % 2 == 0 { "sub" } else { "." })
                .join(format!("f{i}.txt"));
            std::fs::write(&p, format!("file {i} ").repeat(i + 1)).unwrap();
            p
        })
        .collect()
}

#[test]
fn a_localsend_offer_is_the_nodes_own_prompt_and_transfer() {
    let Some((lan, bin)) = lan(2) else { return };
    let lsd = Lsd::start(&lan, LSD, &bin, "lsd-phone", &[]);
    let (ip, phone_ip, ns) = (
        lan.host_ip(FERRY),
        lan.host_ip(LSD),
        lan.ns(FERRY).to_string(),
    );
    in_netns(&ns, move || async move {
        let (data, dest, src) = (tempdir(), tempdir(), tempdir());
        let n = node(data.path(), dest.path()).await;
        let mut events = n.subscribe();
        let phone = device(&n, "lsd-phone").await;
        // Front ends heard of it as an event too.
        let listed = next(&mut events, "the device list", |e| match e {
            Event::LocalSendDevices { devices } => {
                devices.iter().find(|d| d.alias == "lsd-phone").cloned()
            }
            _ => None,
        })
        .await;
        assert_eq!(listed.fingerprint, phone.fingerprint);
        assert_eq!(listed.address, format!("{phone_ip}:53317"));
        let mut ctl = lsd.ctl();
        let fingerprint = ctl.fingerprint();
        assert_eq!(phone.fingerprint, fingerprint);
        let files = make_folder(src.path(), 40);
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();

        // Declined: nothing lands, and the sender hears it.
        let since = now();
        ctl.call("send", json!({"to": ip.to_string(), "files": names}))
            .unwrap();
        let prompt = next(&mut events, "a prompt", |e| match e {
            Event::SpacedropPrompt { prompt } => Some(prompt.clone()),
            _ => None,
        })
        .await;
        assert_eq!(prompt.peer_name, "lsd-phone");
        assert_eq!(prompt.files, 40);
        // Its certificate was shown on the connection: proven, yet not a Ferry identity.
        assert_eq!(
            prompt.via,
            Via::LocalSend {
                fingerprint: fingerprint.clone(),
                verified: true,
                address: phone_ip.to_string(),
            }
        );
        assert_eq!(
            prompt.peer,
            ferry_core::spacedrop::localsend_peer(&fingerprint)
        );
        let id = ferry_core::spacedrop::wire::TransferId::parse(&prompt.transfer).unwrap();
        n.spacedrop().answer(&id, Decision::Reject).unwrap();
        let mut ctl = tokio::task::spawn_blocking(move || {
            let r = ctl.result_after(since, 30);
            assert_ne!(r["kind"], "sent", "{r}");
            ctl
        })
        .await
        .unwrap();
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);

        // Accepted: every file lands bit-exact, and the transfer is recorded like a Ferry one.
        let since = now();
        ctl.call("send", json!({"to": ip.to_string(), "files": names}))
            .unwrap();
        let prompt = next(&mut events, "a second prompt", |e| match e {
            Event::SpacedropPrompt { prompt } => Some(prompt.clone()),
            _ => None,
        })
        .await;
        let id = ferry_core::spacedrop::wire::TransferId::parse(&prompt.transfer).unwrap();
        n.spacedrop()
            .answer(&id, Decision::Accept { dest: None })
            .unwrap();
        let done = end(&mut events, &prompt.transfer).await;
        assert_eq!(done.state, TransferState::Done, "{done:?}");
        assert_eq!((done.files_done, done.files_total), (40, 40));
        assert!(done.via.is_localsend());
        // LocalSend has no pause: refused, not silently ignored.
        assert!(n.spacedrop().pause(&id).is_err());
        for p in &files {
            let name = p.file_name().unwrap();
            let got = std::fs::read(dest.path().join(name))
                .unwrap_or_else(|e| panic!("{name:?} not received: {e}"));
            assert_eq!(got, std::fs::read(p).unwrap(), "{name:?}");
        }
        let listed = n.spacedrop().transfers();
        let t = listed.iter().find(|t| t.id == prompt.transfer).unwrap();
        assert_eq!(t.state, TransferState::Done);
        assert!(t.via.is_localsend(), "{t:?}");
        let r = tokio::task::spawn_blocking(move || ctl.result_after(since, 30))
            .await
            .unwrap();
        assert_eq!(r["kind"], "sent", "{r}");
        n.shutdown().await;
        drop(lsd);
    });
    drop(lan);
}

#[test]
fn the_node_sends_to_a_localsend_device() {
    let Some((lan, bin)) = lan(2) else { return };
    let lsd = Lsd::start(&lan, LSD, &bin, "lsd-laptop", &[]);
    let ns = lan.ns(FERRY).to_string();
    in_netns(&ns, move || async move {
        let (data, dest, src) = (tempdir(), tempdir(), tempdir());
        let n = node(data.path(), dest.path()).await;
        let mut events = n.subscribe();
        let laptop = device(&n, "lsd-laptop").await;
        let files = make_folder(&src.path().join("photos"), 25);
        let mut ctl = lsd.ctl();
        let accept = tokio::task::spawn_blocking(move || {
            ctl.answer_next(true);
            ctl
        });
        let id = n
            .spacedrop()
            .send_localsend(&laptop.fingerprint, vec![src.path().join("photos")], None)
            .await
            .unwrap();
        let done = end(&mut events, &id.hex()).await;
        accept.await.unwrap();
        assert_eq!(done.state, TransferState::Done, "{done:?}");
        assert_eq!(done.files_total, 25);
        assert_eq!(done.peer_name, "lsd-laptop");
        let got = lsd.received();
        for p in &files {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(got.contains(&name), "{name} not received: {got:?}");
            assert_eq!(
                std::fs::read(lsd.downloads.join(&name)).unwrap(),
                std::fs::read(p).unwrap()
            );
        }
        // Nothing of this resumes after a restart: LocalSend cannot.
        assert!(n.spacedrop().resume(&id).is_err());
        // A stopped node lets go of LocalSend's port (the app restarts its node on a settings
        // change, and the new one must be able to listen).
        n.shutdown().await;
        drop(n);
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Err(e) = std::net::TcpListener::bind("0.0.0.0:53317") {
            assert!(Instant::now() < deadline, "port 53317 still held: {e}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(lsd);
    });
    drop(lan);
}

#[test]
fn a_pin_protected_device_is_sent_to_again_with_its_pin() {
    let Some((lan, bin)) = lan(2) else { return };
    let lsd = Lsd::start(
        &lan,
        LSD,
        &bin,
        "lsd-locked",
        &["--pin", "2468", "--unattended"],
    );
    let ns = lan.ns(FERRY).to_string();
    in_netns(&ns, move || async move {
        let (data, dest, src) = (tempdir(), tempdir(), tempdir());
        let n = node(data.path(), dest.path()).await;
        let mut events = n.subscribe();
        let locked = device(&n, "lsd-locked").await;
        let file = src.path().join("note.txt");
        std::fs::write(&file, b"for your eyes only").unwrap();
        let sd = n.spacedrop();
        let first = sd
            .send_localsend(&locked.fingerprint, vec![file.clone()], None)
            .await
            .unwrap();
        let r = end(&mut events, &first.hex()).await;
        assert!(
            matches!(&r.state, TransferState::Rejected { reason } if reason.contains("PIN")),
            "{r:?}"
        );
        let wrong = sd
            .resend_localsend(&first, Some("0000".into()))
            .await
            .unwrap();
        let r = end(&mut events, &wrong.hex()).await;
        assert!(matches!(r.state, TransferState::Rejected { .. }), "{r:?}");
        let right = sd
            .resend_localsend(&first, Some("2468".into()))
            .await
            .unwrap();
        let r = end(&mut events, &right.hex()).await;
        assert_eq!(r.state, TransferState::Done, "{r:?}");
        assert_eq!(
            std::fs::read(lsd.downloads.join("note.txt")).unwrap(),
            b"for your eyes only"
        );
        n.shutdown().await;
        drop(lsd);
    });
    drop(lan);
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
