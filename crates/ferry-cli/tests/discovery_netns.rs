//! Real mDNS discovery between real `ferry` processes, each in a network namespace of its own on
//! a virtual LAN the test builds (bridge + veth). Nothing reaches the host's interfaces.
//!
//! Needs root. Outside CI a non-root run skips with a message; in CI (`CI` set) it fails instead,
//! so the suite can never pass without having run these.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/proc.rs"]
mod proc;

use std::time::{Duration, Instant};

use netns::Lan;
use proc::NodeProc;

fn lan(hosts: usize) -> Option<Lan> {
    if let Err(why) = netns::available() {
        if std::env::var_os("CI").is_some() {
            panic!("network namespaces unavailable in CI: {why}");
        }
        eprintln!("SKIPPED: needs root and iproute2 for network namespaces ({why})");
        return None;
    }
    Some(Lan::new(hosts).expect("build the virtual LAN"))
}

fn spawn(lan: &Lan, i: usize, dir: &std::path::Path, name: &str, extra: &[&str]) -> NodeProc {
    let mut c = lan.command(i, env!("CARGO_BIN_EXE_ferry"));
    c.args(["--name", name, "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir)
        .args(extra);
    NodeProc::spawn(c)
}

#[test]
fn three_nodes_discover_rename_leave_and_crash() {
    let Some(lan) = lan(3) else { return };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let names = ["alpha", "beta", "gamma"];
    let mut nodes: Vec<_> = (0..3)
        .map(|i| spawn(&lan, i, dirs[i].path(), names[i], &[]))
        .collect();

    // Everyone finds everyone else, connected (the QUIC handshake proved the key mDNS claimed).
    for i in 0..3 {
        let mut missing: Vec<usize> = (0..3).filter(|&j| j != i).collect();
        while !missing.is_empty() {
            let found = nodes[i].expect("peer_found|peer_changed", Duration::from_secs(10), |v| {
                v["peer"]["state"] == "connected"
            });
            let Some(k) = missing
                .iter()
                .position(|&j| found["peer"]["name"] == names[j])
            else {
                continue;
            };
            let j = missing.remove(k);
            let ip = lan.host_ip(j).to_string();
            assert!(found["peer"]["addrs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a.as_str().unwrap().starts_with(&ip)));
            if i == 0 {
                println!(
                    "{} found {} {:?} after start",
                    names[i],
                    names[j],
                    nodes[i].started_at.elapsed()
                );
            }
        }
    }

    // Each sees both others through mDNS too (the first event may stem from the other's dial).
    for node in nodes.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            node.send("peers");
            let list = node.expect("peers", Duration::from_secs(2), |_| true);
            let peers = list["peers"].as_array().unwrap();
            if peers.len() == 2
                && peers
                    .iter()
                    .all(|p| p["discovered"] == true && p["state"] == "connected")
            {
                break;
            }
            assert!(Instant::now() < deadline, "not all discovered: {list}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // A rename reaches both others.
    nodes[2].send("name gamma-2");
    for node in &mut nodes[..2] {
        node.expect("peer_changed", Duration::from_secs(5), |v| {
            v["peer"]["name"] == "gamma-2"
        });
    }

    // Clean leave: seen as `left` by both others.
    let t = Instant::now();
    nodes[1].quit();
    for i in [0, 2] {
        let lost = nodes[i].expect("peer_lost", Duration::from_secs(3), |v| {
            v["peer"]["name"] == "beta"
        });
        assert_eq!(lost["reason"], "left");
    }
    println!("clean leave seen by both peers after {:?}", t.elapsed());

    // SIGKILL: mDNS would keep the record for its 120 s TTL; the connection's silence decides.
    let t = Instant::now();
    nodes[2].kill9();
    let lost = nodes[0].expect("peer_lost", Duration::from_secs(10), |v| {
        v["peer"]["name"] == "gamma-2"
    });
    assert_eq!(lost["reason"], "timed_out");
    println!("SIGKILLed peer seen as lost after {:?}", t.elapsed());

    // It comes back (same identity) and reappears without anyone restarting alpha.
    let t = Instant::now();
    nodes[2] = spawn(&lan, 2, dirs[2].path(), "gamma-3", &[]);
    nodes[0].expect("peer_found|peer_changed", Duration::from_secs(10), |v| {
        v["peer"]["name"] == "gamma-3" && v["peer"]["state"] == "connected"
    });
    println!("restarted peer rediscovered after {:?}", t.elapsed());
    drop(nodes);
}

#[test]
fn discovery_respects_the_allow_list_and_the_off_switch() {
    let Some(lan) = lan(3) else { return };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // Host 0 announces only on eth0; host 1 allows only loopback (so it is deaf to the LAN);
    // host 2 has discovery off.
    let mut a = spawn(&lan, 0, dirs[0].path(), "alpha", &["--interfaces", "eth0"]);
    let mut b = spawn(&lan, 1, dirs[1].path(), "beta", &["--interfaces", "lo"]);
    let mut c = spawn(&lan, 2, dirs[2].path(), "gamma", &["--no-discovery"]);
    let quiet = Duration::from_secs(4);
    assert!(
        a.try_expect("peer_found", quiet, |_| true).is_none(),
        "alpha must not find anyone"
    );
    assert!(
        b.try_expect("peer_found", Duration::ZERO, |_| true)
            .is_none(),
        "beta listens on lo only"
    );
    assert!(
        c.try_expect("peer_found", Duration::ZERO, |_| true)
            .is_none(),
        "gamma has discovery off"
    );

    // A fourth node on eth0 finds alpha, and only alpha.
    let d = tempfile::tempdir().unwrap();
    let mut d_node = {
        let mut cmd = lan.command(2, env!("CARGO_BIN_EXE_ferry"));
        cmd.args([
            "--name",
            "delta",
            "--listen",
            "0.0.0.0:0",
            "--interfaces",
            "eth0",
            "--data-dir",
        ])
        .arg(d.path());
        NodeProc::spawn(cmd)
    };
    d_node.expect("peer_found", Duration::from_secs(10), |v| {
        v["peer"]["name"] == "alpha"
    });
    assert!(d_node
        .try_expect("peer_found", Duration::from_secs(2), |v| v["peer"]["name"]
            != "alpha")
        .is_none());
    // And gamma, with discovery off, is still reachable by address.
    c.send(&format!("ping {}:{}", lan.host_ip(0), a.port()));
    c.expect("ping_reply", Duration::from_secs(5), |_| true);
}
