//! Ferry's LocalSend side against localsendd (PyPI), an implementation written outside this
//! project, on a virtual LAN of network namespaces (bridge + veth; nothing reaches the host's
//! interfaces, multicast included). localsendd runs in host 0, Ferry in host 1.
//!
//! Needs root and scripts/setup-localsend.sh; otherwise SKIPPED (a failure under CI=true).

mod lsd;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_localsend::server::{Answer, IncomingOffer, ServerEvent};
use ferry_localsend::{
    client, device_info, Client, ClientError, DeviceType, Devices, Discovery, DiscoveryConfig,
    Identity, Protocol, SendOptions, SendOutcome, SendProgress, Server, ServerConfig, SessionEnd,
    Target,
};
use lsd::*;
use serde_json::json;
use tokio::sync::{mpsc, watch};

const FERRY: usize = 1;
const LSD: usize = 0;

struct Node {
    server: Server,
    devices: Arc<Devices>,
    client: Client,
    events: mpsc::Receiver<ServerEvent>,
    dest: tempfile::TempDir,
    _discovery: Discovery,
}

async fn node(lan_ip: Ipv4Addr, pin: Option<&str>) -> Node {
    let id = Identity::generate().unwrap();
    let mut cfg = ServerConfig::new(device_info("ferry-in-ns", DeviceType::Headless));
    cfg.pin = pin.map(str::to_string);
    let devices = Arc::new(Devices::new(64));
    let (server, events) =
        Server::bind("0.0.0.0:53317".parse().unwrap(), &id, cfg, devices.clone())
            .await
            .unwrap();
    let client = Client::new(&id, server.info()).unwrap();
    let disc = DiscoveryConfig {
        interfaces: vec![lan_ip],
        ..Default::default()
    };
    let discovery = Discovery::start(disc, server.info(), devices.clone(), client.clone()).unwrap();
    Node {
        server,
        devices,
        client,
        events,
        dest: tempfile::tempdir().unwrap(),
        _discovery: discovery,
    }
}

impl Node {
    async fn next(&mut self, what: &str, secs: u64) -> ServerEvent {
        match tokio::time::timeout(Duration::from_secs(secs), self.events.recv()).await {
            Ok(Some(e)) => e,
            _ => panic!("ferry: no {what} event"),
        }
    }

    async fn offer(&mut self) -> IncomingOffer {
        loop {
            if let ServerEvent::Offer(o) = self.next("offer", 30).await {
                return o;
            }
        }
    }

    /// Waits for the session's end; returns it with the files placed.
    async fn end(&mut self, secs: u64) -> (SessionEnd, Vec<PathBuf>) {
        let mut placed = vec![];
        loop {
            match self.next("end", secs).await {
                ServerEvent::FileDone { path, .. } => placed.push(path),
                ServerEvent::Ended { end, .. } => return (end, placed),
                _ => {}
            }
        }
    }

    async fn device(&self, alias: &str, secs: u64) -> ferry_localsend::Device {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(d) = self.devices.find(alias).filter(|d| d.verified) {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "ferry never verified {alias}: {:?}",
                self.devices.list()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(f)
}

#[test]
fn discovery_both_ways() {
    let Some((lan, bin)) = lan(2) else { return };
    let lsd = Lsd::start(&lan, LSD, &bin, "lsd-phone", &[]);
    let ip = lan.host_ip(FERRY);
    in_netns(lan.ns(FERRY), move || async move {
        let t = Instant::now();
        let n = node(ip, None).await;
        let mut ctl = lsd.ctl();
        let lsd_fp = ctl.fingerprint();
        // Ferry heard localsendd's announcement and its register answer proved the certificate.
        let d = n.device("lsd-phone", 15).await;
        assert_eq!(d.fingerprint, lsd_fp);
        assert_eq!(
            d.addr.ip(),
            std::net::IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1))
        );
        println!("ferry found localsendd (verified) after {:?}", t.elapsed());
        // localsendd lists Ferry, with the fingerprint of Ferry's certificate.
        let ours = n.server.info().fingerprint;
        let found = ctl.wait("ferry in its devices", 15, |s| {
            s["devices"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["alias"] == "ferry-in-ns"))
        });
        let me = found["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["alias"] == "ferry-in-ns")
            .unwrap()
            .clone();
        assert_eq!(me["fingerprint"], json!(ours));
        // Heard on its dual-stack HTTP socket (Ferry's register), localsendd writes the
        // address IPv4-mapped; heard by multicast, plain. Which comes first is a race.
        let seen = me["ip"].as_str().unwrap_or_default();
        assert_eq!(seen.trim_start_matches("::ffff:"), ip.to_string(), "{me}");
        assert_eq!(me["protocol"], "https");
        println!("localsendd found ferry after {:?}", t.elapsed());
        drop(lsd);
    });
}

fn make_folder(root: &Path, files: usize) -> u64 {
    let mut total = 0;
    for i in 0..files {
        // Distinct base names: localsendd keeps only the base name of what it receives.
        let dir = root.join(format!("d{}", i % 3)).join(format!("s{}", i % 2));
        std::fs::create_dir_all(&dir).unwrap();
        let size = 1 + (i as u64 * 7919) % 8192;
        fill(&dir.join(format!("f{i:04}.bin")), size, i as u64 + 1);
        total += size;
    }
    total
}

#[test]
fn ferry_to_localsendd_large_file_and_folder_bit_exact() {
    let Some((lan, bin)) = lan(2) else { return };
    let lsd = Lsd::start(&lan, LSD, &bin, "lsd-rx", &[]);
    let ip = lan.host_ip(FERRY);
    let lan_t = Target {
        addr: SocketAddr::from((lan.host_ip(LSD), 53317)),
        protocol: Protocol::Https,
        fingerprint: None,
    };
    in_netns(lan.ns(FERRY), move || async move {
        let n = node(ip, None).await;
        let dev = n.device("lsd-rx", 15).await;
        let target = Target::from(&dev);
        assert_eq!(target.addr, lan_t.addr);
        assert!(
            target.fingerprint.is_some(),
            "sends are pinned to the announced certificate"
        );
        let src = tempfile::tempdir().unwrap();
        let big = src.path().join("big.bin");
        fill(&big, 200 << 20, 42);
        let folder = src.path().join("folder");
        let folder_bytes = make_folder(&folder, 300);
        for (roots, label) in [
            (vec![big.clone()], "200 MiB file"),
            (vec![folder.clone()], "300 small files"),
        ] {
            let files = client::collect(&roots).unwrap();
            let count = files.len();
            let mut ctl = lsd.ctl();
            let since = now();
            let accept = blocking(move || {
                ctl.answer_next(true);
                ctl
            });
            let (_c, cancel) = watch::channel(false);
            let t = Instant::now();
            let out = n
                .client
                .send(
                    &target,
                    files,
                    SendOptions::default(),
                    Arc::new(SendProgress::default()),
                    cancel,
                )
                .await
                .unwrap();
            println!("ferry -> localsendd, {label}: {:?}", t.elapsed());
            assert_eq!(
                out,
                SendOutcome::Sent {
                    files: count,
                    skipped: 0
                }
            );
            let mut ctl = accept.await.unwrap();
            let r = blocking(move || ctl.result_after(since, 60)).await.unwrap();
            assert_eq!(r["kind"], "received", "{r}");
        }
        let got = lsd.received();
        assert_eq!(got.len(), 301, "{got:?}");
        assert_eq!(sha256(&lsd.downloads.join("big.bin")), sha256(&big));
        let mut bytes = 0;
        for f in client::collect(std::slice::from_ref(&folder)).unwrap() {
            let base = f.path.file_name().unwrap();
            let theirs = lsd.downloads.join(base);
            assert_eq!(
                std::fs::read(&theirs).unwrap(),
                std::fs::read(&f.path).unwrap(),
                "{base:?}"
            );
            bytes += f.size;
        }
        assert_eq!(bytes, folder_bytes);
        drop(lsd);
    });
}

#[test]
fn localsendd_to_ferry_large_file_and_many_files_bit_exact() {
    let Some((lan, bin)) = lan(2) else { return };
    let lsd = Lsd::start(&lan, LSD, &bin, "lsd-tx", &[]);
    let ip = lan.host_ip(FERRY);
    in_netns(lan.ns(FERRY), move || async move {
        let mut n = node(ip, None).await;
        n.device("lsd-tx", 15).await;
        let src = tempfile::tempdir().unwrap();
        let big = src.path().join("big.bin");
        fill(&big, 200 << 20, 7);
        let folder = src.path().join("folder");
        make_folder(&folder, 300);
        let small: Vec<PathBuf> = client::collect(std::slice::from_ref(&folder))
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        let mut ctl = lsd.ctl();
        for (paths, label) in [
            (vec![big.clone()], "200 MiB file"),
            (small.clone(), "300 small files"),
        ] {
            let since = now();
            let files: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            let count = files.len();
            ctl.call("send", json!({"to": ip.to_string(), "files": files}))
                .unwrap();
            let t = Instant::now();
            let o = n.offer().await;
            assert_eq!(o.info.alias, "lsd-tx");
            assert_eq!(o.offer.files.len(), count);
            // localsendd shows its certificate: the prompt can say the fingerprint is proven.
            assert_eq!(
                o.cert_fingerprint.as_deref(),
                Some(ctl.fingerprint().as_str())
            );
            o.reply
                .send(Answer::Accept {
                    dest: n.dest.path().to_path_buf(),
                })
                .unwrap();
            let (end, placed) = n.end(120).await;
            println!("localsendd -> ferry, {label}: {:?}", t.elapsed());
            assert_eq!(end, SessionEnd::Done);
            assert_eq!(placed.len(), count);
            let r = ctl.result_after(since, 60);
            assert_eq!(r["kind"], "sent", "{r}");
        }
        assert_eq!(sha256(&n.dest.path().join("big.bin")), sha256(&big));
        for p in &small {
            let ours = n.dest.path().join(p.file_name().unwrap());
            assert_eq!(std::fs::read(&ours).unwrap(), std::fs::read(p).unwrap());
        }
        let left: Vec<_> = std::fs::read_dir(n.dest.path())
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(left.len(), 301, "no temp files left");
        drop(lsd);
    });
}

#[test]
fn reject_and_pin_both_ways() {
    let Some((lan, bin)) = lan(2) else { return };
    let lsd = Lsd::start(&lan, LSD, &bin, "lsd-pin", &["--pin", "2468"]);
    let ip = lan.host_ip(FERRY);
    in_netns(lan.ns(FERRY), move || async move {
        let mut n = node(ip, Some("1357")).await;
        let dev = n.device("lsd-pin", 15).await;
        let target = Target::from(&dev);
        let src = tempfile::tempdir().unwrap();
        let file = src.path().join("note.txt");
        std::fs::write(&file, b"pin test").unwrap();
        let files = client::collect(std::slice::from_ref(&file)).unwrap();
        let send = |pin: Option<&str>| {
            let (_c, cancel) = watch::channel(false);
            let opts = SendOptions {
                pin: pin.map(str::to_string),
                ..Default::default()
            };
            n.client.send(
                &target,
                files.clone(),
                opts,
                Arc::new(SendProgress::default()),
                cancel,
            )
        };
        // Ferry -> localsendd: PIN required, wrong PIN, then declined, then accepted.
        let r = send(None).await;
        assert!(matches!(r, Err(ClientError::PinRequired)), "{r:?}");
        assert!(matches!(
            send(Some("0000")).await,
            Err(ClientError::PinRequired)
        ));
        // localsendd answers 403 without showing an offer when it judges the sender gone (its
        // `_peer_alive` check read an end of stream): seen once in many CI runs. A refusal
        // that localsendd's user never saw is not the one under test: the send is made again.
        let mut ctl = lsd.ctl();
        let mut tries = 0;
        loop {
            let reject = blocking(move || {
                let seen = ctl.try_answer_next(false, 15);
                (ctl, seen)
            });
            let r = send(Some("2468")).await;
            assert!(matches!(r, Err(ClientError::Rejected)), "{r:?}");
            let (c, seen) = reject.await.unwrap();
            ctl = c;
            if seen {
                break;
            }
            tries += 1;
            assert!(
                tries < 3,
                "localsendd never showed the offer: {}",
                ctl.state()
            );
        }
        let accept = blocking(move || {
            ctl.answer_next(true);
            ctl
        });
        send(Some("2468")).await.unwrap();
        let mut ctl = accept.await.unwrap();
        assert_eq!(lsd.received(), ["note.txt"]);

        // localsendd -> Ferry: Ferry's own PIN, then Ferry declines, then accepts.
        let path = file.display().to_string();
        for (pin, want) in [("", "pin_required"), ("9999", "pin_required")] {
            let since = now();
            ctl.call(
                "send",
                json!({"to": ip.to_string(), "files": [path], "pin": pin}),
            )
            .unwrap();
            let r = ctl.result_after(since, 30);
            assert_eq!(r["kind"], want, "{r}");
        }
        let since = now();
        ctl.call(
            "send",
            json!({"to": ip.to_string(), "files": [path], "pin": "1357"}),
        )
        .unwrap();
        n.offer().await.reply.send(Answer::Reject).unwrap();
        assert_eq!(ctl.result_after(since, 30)["kind"], "declined");
        let since = now();
        ctl.call(
            "send",
            json!({"to": ip.to_string(), "files": [path], "pin": "1357"}),
        )
        .unwrap();
        let o = n.offer().await;
        o.reply
            .send(Answer::Accept {
                dest: n.dest.path().to_path_buf(),
            })
            .unwrap();
        assert_eq!(n.end(30).await.0, SessionEnd::Done);
        assert_eq!(ctl.result_after(since, 30)["kind"], "sent");
        assert_eq!(
            std::fs::read(n.dest.path().join("note.txt")).unwrap(),
            b"pin test"
        );
        drop(lsd);
    });
}

#[test]
fn cancel_from_either_side() {
    let Some((lan, bin)) = lan(2) else { return };
    // 400 Mbit/s each way, so a 200 MiB file takes seconds and a cancel lands mid-transfer.
    for host in [LSD, FERRY] {
        lan.qdisc(host, "tbf rate 400mbit burst 256kb latency 50ms")
            .unwrap();
    }
    let lsd = Lsd::start(&lan, LSD, &bin, "lsd-cancel", &[]);
    let ip = lan.host_ip(FERRY);
    in_netns(lan.ns(FERRY), move || async move {
        let mut n = node(ip, None).await;
        let dev = n.device("lsd-cancel", 15).await;
        let target = Target::from(&dev);
        let src = tempfile::tempdir().unwrap();
        let big = src.path().join("big.bin");
        fill(&big, 200 << 20, 3);
        let path = big.display().to_string();
        let mut ctl = lsd.ctl();

        // 1. localsendd sends, localsendd cancels: Ferry ends cancelled by the peer, no partial.
        // 2. localsendd sends, Ferry cancels: localsendd's send does not succeed.
        for ferry_cancels in [false, true] {
            let since = now();
            ctl.call("send", json!({"to": ip.to_string(), "files": [path]}))
                .unwrap();
            let o = n.offer().await;
            let session = o.session.clone();
            o.reply
                .send(Answer::Accept {
                    dest: n.dest.path().to_path_buf(),
                })
                .unwrap();
            loop {
                if let ServerEvent::Progress { bytes_done, .. } = n.next("progress", 30).await {
                    if bytes_done > 8 << 20 {
                        break;
                    }
                }
            }
            if ferry_cancels {
                assert!(n.server.cancel(&session));
            } else {
                ctl.call("cancel", json!({})).unwrap();
            }
            let (end, placed) = n.end(30).await;
            assert_eq!(
                end,
                SessionEnd::Cancelled {
                    by_peer: !ferry_cancels
                }
            );
            assert!(placed.is_empty());
            let r = ctl.result_after(since, 60);
            assert_ne!(r["kind"], "sent", "{r}");
            println!(
                "localsendd -> ferry cancelled by {}: localsendd says {}",
                if ferry_cancels { "ferry" } else { "localsendd" },
                r["kind"]
            );
            let left: Vec<_> = std::fs::read_dir(n.dest.path())
                .unwrap()
                .flatten()
                .collect();
            assert!(left.is_empty(), "{left:?}");
        }

        // 3. Ferry sends, Ferry cancels: localsendd records the sender's cancel.
        // 4. Ferry sends, localsendd cancels: Ferry's send ends with an error.
        for ferry_cancels in [true, false] {
            let files = client::collect(std::slice::from_ref(&big)).unwrap();
            let since = now();
            let mut c = lsd.ctl();
            let watcher = blocking(move || {
                c.answer_next(true);
                c.wait("transfer", 30, |s| {
                    s["active"]["bytesDone"]
                        .as_u64()
                        .is_some_and(|b| b > 8 << 20)
                        || s["result"]["at"].as_f64().is_some_and(|t| t >= since)
                });
                if !ferry_cancels {
                    c.call("cancel", json!({})).unwrap();
                }
                c.result_after(since, 60)
            });
            let (stop, cancel) = watch::channel(false);
            let progress = Arc::new(SendProgress::default());
            let p = progress.clone();
            let stopper = tokio::spawn(async move {
                while p.bytes_done.load(std::sync::atomic::Ordering::Relaxed) < 16 << 20 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if ferry_cancels {
                    let _ = stop.send(true);
                }
                stop
            });
            let r = n
                .client
                .send(&target, files, SendOptions::default(), progress, cancel)
                .await;
            let result = watcher.await.unwrap();
            stopper.abort();
            println!(
                "ferry -> localsendd cancelled by {}: ferry says {r:?}, localsendd says {}",
                if ferry_cancels { "ferry" } else { "localsendd" },
                result["kind"]
            );
            if ferry_cancels {
                assert!(matches!(r, Err(ClientError::Cancelled)), "{r:?}");
                assert_eq!(result["kind"], "recv_cancelled", "{result}");
            } else {
                assert!(r.is_err(), "{r:?}");
                assert_ne!(result["kind"], "received");
            }
            assert!(lsd.received().is_empty(), "{:?}", lsd.received());
        }
        drop(lsd);
    });
}
