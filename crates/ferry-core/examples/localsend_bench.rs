//! LocalSend benchmark: a Ferry node against localsendd (PyPI; an independent LocalSend v2
//! daemon), and localsendd against itself, on one virtual LAN of network namespaces (a bridge
//! and veth pairs the run makes; nothing leaves them). Data on /dev/shm, every copy compared
//! with its source. Prints MB/s, files/s and peak RSS per direction; asserts nothing about time.
//!
//! Hosts: 0 and 2 run localsendd (`A` and `B`), 1 runs the Ferry node in this process.
//! Directions: Ferry → A, A → Ferry, A → B; workloads: one 1 GiB file, 10,000 × 4 KiB.
//!
//! `sudo cargo run --release -p ferry-core --example localsend_bench -- [MiB] [FILES]`
//! (needs root and scripts/setup-localsend.sh).

#[path = "../../ferry-localsend/tests/lsd/mod.rs"]
mod lsd;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_core::spacedrop::TransferState;
use ferry_core::{AcceptPolicy, Event, LocalSendConfig, Node, NodeConfig};
use lsd::*;
use serde_json::json;
use tokio::sync::broadcast;

const A: usize = 0;
const FERRY: usize = 1;
const B: usize = 2;

/// Peak RSS of a process in MiB (`VmHWM`), reset with [`reset_peak`].
fn peak_mib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
        / 1024.0
}

fn reset_peak(pid: &str) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Files of `size` bytes under `dir`, named `{prefix}-{i}.bin`.
fn make(dir: &Path, prefix: &str, count: usize, size: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..count)
        .map(|i| {
            let p = dir.join(format!("{prefix}-{i}.bin"));
            fill(&p, size, i as u64 + 1);
            p
        })
        .collect()
}

/// Every source has a bit-exact copy of the same name in `dest`.
fn verify(sources: &[PathBuf], dest: &Path) {
    for s in sources {
        let copy = dest.join(s.file_name().unwrap());
        assert_eq!(sha256(s), sha256(&copy), "{} differs", copy.display());
    }
}

fn remove(sources: &[PathBuf], dest: &Path) {
    for s in sources {
        let _ = std::fs::remove_file(dest.join(s.file_name().unwrap()));
    }
}

async fn done(events: &mut broadcast::Receiver<Event>, id: Option<&str>) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(600), events.recv()).await {
            Ok(Ok(Event::Transfer { transfer }))
                if transfer.state.is_final() && id.is_none_or(|i| i == transfer.id) =>
            {
                assert_eq!(transfer.state, TransferState::Done, "{transfer:?}");
                return transfer.id;
            }
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            _ => panic!("no end of the transfer"),
        }
    }
}

struct Row {
    what: String,
    secs: f64,
    bytes: u64,
    files: usize,
    rss: String,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let small: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let Some((lan, bin)) = lan(3) else { return };
    let shm = Path::new("/dev/shm");
    let work = tempfile::tempdir_in(if shm.is_dir() { shm } else { Path::new("/tmp") }).unwrap();
    println!(
        "localsend_bench: {mib} MiB and {small} x 4 KiB, data in {}",
        work.path().display()
    );
    let lsd_a = Lsd::start(&lan, A, &bin, "lsd-a", &["--unattended"]);
    let lsd_b = Lsd::start(&lan, B, &bin, "lsd-b", &["--unattended"]);
    let (a_pid, b_pid) = (lsd_a.pid().to_string(), lsd_b.pid().to_string());
    let (ferry_ip, b_ip) = (lan.host_ip(FERRY), lan.host_ip(B));
    let ns = lan.ns(FERRY).to_string();
    let root = work.path().to_path_buf();
    let rows_out: Arc<Mutex<Vec<Row>>> = Arc::default();
    let (lsd_a, lsd_b) = (Arc::new(lsd_a), Arc::new(lsd_b));
    {
        let (rows_out, lsd_a, lsd_b) = (rows_out.clone(), lsd_a.clone(), lsd_b.clone());
        in_netns(&ns, move || async move {
            let data = tempfile::tempdir().unwrap();
            let dest = root.join("ferry-down");
            let mut cfg = NodeConfig::new(data.path());
            cfg.name = Some("ferry-bench".into());
            cfg.listen = "0.0.0.0:0".parse().unwrap();
            cfg.spacedrop.dest = dest.clone();
            cfg.spacedrop.accept = AcceptPolicy::Everyone;
            cfg.index = false;
            cfg.localsend = Some(LocalSendConfig::default());
            let n = Node::start(cfg).await.unwrap();
            let mut events = n.subscribe();
            let deadline = Instant::now() + Duration::from_secs(30);
            let a_fp = loop {
                let found = n.spacedrop().localsend_devices();
                if let Some(d) = found.iter().find(|d| d.alias == "lsd-a" && d.verified) {
                    break d.fingerprint.clone();
                }
                assert!(Instant::now() < deadline, "never heard lsd-a: {found:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let loads = [
                ("1 file", 1usize, mib << 20),
                ("small files", small, 4096u64),
            ];
            for (label, count, size) in loads {
                let bytes = count as u64 * size;
                // Ferry → A.
                let src = make(&root.join("f2a"), "f2a", count, size);
                let me = "self";
                reset_peak(me);
                reset_peak(&a_pid);
                let t = Instant::now();
                let id = n
                    .spacedrop()
                    .send_localsend(&a_fp, src.clone(), None)
                    .await
                    .unwrap();
                done(&mut events, Some(&id.hex())).await;
                let secs = t.elapsed().as_secs_f64();
                verify(&src, &lsd_a.downloads);
                remove(&src, &lsd_a.downloads);
                rows_out.lock().unwrap().push(Row {
                    what: format!("{label}: Ferry → localsendd"),
                    secs,
                    bytes,
                    files: count,
                    rss: format!(
                        "Ferry {:.0}, localsendd {:.0}",
                        peak_mib(me),
                        peak_mib(&a_pid)
                    ),
                });
                // A → Ferry, and A → B, from the same files.
                let src = make(&root.join("a2x"), "a2x", count, size);
                let files: Vec<String> = src.iter().map(|p| p.display().to_string()).collect();
                for (to, name) in [(ferry_ip, "Ferry"), (b_ip, "localsendd")] {
                    reset_peak(me);
                    reset_peak(&a_pid);
                    reset_peak(&b_pid);
                    let mut ctl = lsd_a.ctl();
                    let since = now();
                    let t = Instant::now();
                    ctl.call("send", json!({"to": to.to_string(), "files": files}))
                        .unwrap();
                    let secs = if name == "Ferry" {
                        done(&mut events, None).await;
                        t.elapsed().as_secs_f64()
                    } else {
                        let r = tokio::task::spawn_blocking(move || ctl.result_after(since, 600))
                            .await
                            .unwrap();
                        assert_eq!(r["kind"], "sent", "{r}");
                        t.elapsed().as_secs_f64()
                    };
                    let (dest_dir, rss) = if name == "Ferry" {
                        (
                            dest.clone(),
                            format!(
                                "localsendd {:.0}, Ferry {:.0}",
                                peak_mib(&a_pid),
                                peak_mib(me)
                            ),
                        )
                    } else {
                        (
                            lsd_b.downloads.clone(),
                            format!(
                                "localsendd {:.0}, localsendd {:.0}",
                                peak_mib(&a_pid),
                                peak_mib(&b_pid)
                            ),
                        )
                    };
                    verify(&src, &dest_dir);
                    remove(&src, &dest_dir);
                    rows_out.lock().unwrap().push(Row {
                        what: format!("{label}: localsendd → {name}"),
                        secs,
                        bytes,
                        files: count,
                        rss,
                    });
                }
                let _ = std::fs::remove_dir_all(root.join("f2a"));
                let _ = std::fs::remove_dir_all(root.join("a2x"));
            }
            n.shutdown().await;
        });
    }
    let rows = std::mem::take(&mut *rows_out.lock().unwrap());
    println!("\n| direction | time | MB/s | files/s | peak RSS (MiB, sender, receiver) |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.2} s | {:.1} | {:.0} | {} |",
            r.what,
            r.secs,
            r.bytes as f64 / r.secs / 1e6,
            r.files as f64 / r.secs,
            r.rss
        );
    }
    // Ratios against localsendd → localsendd, workload by workload.
    for label in ["1 file", "small files"] {
        let of = |d: &str| {
            rows.iter()
                .find(|r| r.what == format!("{label}: {d}"))
                .map(|r| r.secs)
        };
        if let (Some(base), Some(f2a), Some(a2f)) = (
            of("localsendd → localsendd"),
            of("Ferry → localsendd"),
            of("localsendd → Ferry"),
        ) {
            println!(
                "{label}: against localsendd → localsendd, Ferry → localsendd is {:.2}x as fast, localsendd → Ferry {:.2}x",
                base / f2a,
                base / a2f
            );
        }
    }
    drop(lsd_a);
    drop(lsd_b);
}
