//! `ferry` commands attached to a running node (`ferry node` standing in for the app), as real
//! processes on 127.0.0.1: a send is the node's (its receiver sees one peer), a prompt raised by
//! the node is answered by attached receivers (exactly one wins the race, every front end is
//! told), a killed front end leaves no descriptor behind; and members operating each other's
//! nodes: refused without a grant, allowed with one, refused again once revoked, all logged.

#[path = "support/proc.rs"]
mod proc;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use proc::NodeProc;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn base(dir: &Path, name: &str) -> Command {
    let mut c = proc::loopback_node(&dir.join(name), name, "127.0.0.1:0");
    c.arg("--no-localsend")
        .arg("--dest")
        .arg(dir.join(name).join("downloads"));
    c
}

/// A one-shot command on `name`'s data dir (attached when its node runs): exit code, lines.
/// [`base`] with more global options.
fn with(dir: &Path, name: &str, more: &[&str]) -> Command {
    let mut c = base(dir, name);
    c.args(more);
    c
}

fn run(dir: &Path, name: &str, args: &[&str]) -> (i32, Vec<Value>) {
    proc::json_output(base(dir, name).arg("--json").args(args).output().unwrap())
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn poll(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn commands_attach_to_the_running_node_and_share_its_prompts() {
    let t = tempfile::tempdir().unwrap();
    let mut alpha = NodeProc::spawn(base(t.path(), "alpha"));
    let mut beta = NodeProc::spawn(with(t.path(), "beta", &["--yes"]));
    let beta_addr = format!("{}@127.0.0.1:{}", beta.id(), beta.port());
    let file = t.path().join("hello.txt");
    std::fs::write(&file, b"hello").unwrap();

    // `ferry send` on alpha's data dir is alpha's send: beta meets one peer, alpha.
    let started = Instant::now();
    let (code, lines) = run(t.path(), "alpha", &["id"]);
    println!(
        "an attached command's whole run (`ferry id`): {:?}",
        started.elapsed()
    );
    assert_eq!(code, 0);
    assert_eq!(lines[0]["id"], alpha.id().as_str());
    let (code, lines) = run(
        t.path(),
        "alpha",
        &["send", &beta_addr, file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{lines:?}");
    let done = beta.expect("transfer", WAIT, |v| v["transfer"]["state"] == "done");
    assert_eq!(done["transfer"]["peer"], alpha.id().as_str());
    let found: Vec<Value> = beta
        .drain()
        .into_iter()
        .filter(|l| l["type"] == "peer_found")
        .collect();
    assert!(
        found.iter().all(|l| l["peer"]["id"] == alpha.id().as_str()),
        "beta met another node: {found:?}"
    );
    // Alpha's own front end saw the transfer the attached command started.
    alpha.expect("transfer", WAIT, |v| {
        v["transfer"]["state"] == "done" && v["transfer"]["direction"] == "send"
    });

    // Beta offers alpha a file; two attached receivers race to accept it: one wins.
    let fds_before = fds(alpha.child.id());
    let mut r1 = NodeProc::spawn_args(with(t.path(), "alpha", &["--yes"]), &["receive", "--once"]);
    let mut r2 = NodeProc::spawn_args(with(t.path(), "alpha", &["--yes"]), &["receive", "--once"]);
    // Both attached: two sessions, each a descriptor in alpha.
    // Both attached (each says so) before anything is offered.
    for r in [&mut r1, &mut r2] {
        let a = r.expect("attached", WAIT, |_| true);
        assert_eq!(a["node"]["id"], alpha.id().as_str());
    }
    let alpha_addr = format!("{}@127.0.0.1:{}", alpha.id(), alpha.port());
    let back = t.path().join("back.txt");
    std::fs::write(&back, b"back").unwrap();
    let mut send = NodeProc::spawn_args(
        base(t.path(), "gamma"),
        &["send", &alpha_addr, back.to_str().unwrap()],
    );
    alpha.expect("prompt_resolved", WAIT, |v| v["outcome"] == "accepted");
    assert_eq!(send.wait_exit(WAIT), 0);
    assert_eq!(r1.wait_exit(WAIT), 0);
    assert_eq!(r2.wait_exit(WAIT), 0);
    let (l1, l2) = (r1.drain(), r2.drain());
    for lines in [&l1, &l2] {
        let has = |ty: &str| lines.iter().any(|l| l["type"] == ty);
        assert!(
            has("spacedrop_prompt") && has("prompt_resolved"),
            "{lines:?}"
        );
    }
    let errors: Vec<&Value> = l1
        .iter()
        .chain(&l2)
        .filter(|l| l["type"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "exactly one answer loses: {errors:?}");
    assert_eq!(
        std::fs::read(t.path().join("alpha/downloads/back.txt")).unwrap(),
        b"back"
    );
    poll("the receivers' sessions freed", || {
        fds(alpha.child.id()) <= fds_before
    });

    // A front end killed while attached leaves nothing behind in the node.
    let mut r3 = NodeProc::spawn_args(base(t.path(), "alpha"), &["receive"]);
    r3.expect("attached", WAIT, |_| true);
    assert!(
        fds(alpha.child.id()) > fds_before,
        "its session is a descriptor in alpha"
    );
    r3.kill9();
    poll("its session freed", || fds(alpha.child.id()) <= fds_before);
    alpha.quit();
    beta.quit();
}

#[test]
fn members_operate_each_others_nodes_under_grants() {
    let t = tempfile::tempdir().unwrap();
    let mut alpha = NodeProc::spawn(base(t.path(), "alpha"));
    let mut beta = NodeProc::spawn(base(t.path(), "beta"));
    let beta_addr = format!("{}@127.0.0.1:{}", beta.id(), beta.port());
    // Pairing, every command attached to the node of its data dir.
    assert_eq!(run(t.path(), "alpha", &["library", "create", "Fam"]).0, 0);
    let mut pair = NodeProc::spawn_args(
        base(t.path(), "alpha"),
        &["pair", &beta_addr, "--library", "Fam"],
    );
    pair.expect("pairing", WAIT, |v| v["pairing"]["state"] == "confirm");
    beta.expect("pairing", WAIT, |v| v["pairing"]["state"] == "confirm");
    beta.send("y");
    pair.send("y");
    assert_eq!(pair.wait_exit(WAIT), 0);
    beta.expect("pairing", WAIT, |v| v["pairing"]["state"] == "done");

    // Beta asks alpha to add a folder of alpha's: refused, naming what is missing.
    let folder = t.path().join("alpha-music");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("song.txt"), b"la la").unwrap();
    let add = [
        "--on",
        "alpha",
        "location",
        "add",
        folder.to_str().unwrap(),
        "--library",
        "Fam",
    ];
    let started = Instant::now();
    let (code, lines) = run(t.path(), "beta", &add);
    println!(
        "a remote command through an attached CLI: {:?}",
        started.elapsed()
    );
    assert_eq!(code, 1, "{lines:?}");
    let msg = lines.last().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("not granted you \"manage\""), "{msg}");

    // Alpha grants beta manage: the same command works, and adds the folder on alpha.
    let (code, lines) = run(
        t.path(),
        "alpha",
        &["grant", "beta", "manage", "--library", "Fam"],
    );
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0]["grants"][0]["capability"], "manage");
    let (code, lines) = run(t.path(), "beta", &add);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0]["location"]["path"], folder.to_str().unwrap());
    let (_, locs) = run(t.path(), "alpha", &["location", "list", "Fam"]);
    assert!(locs
        .iter()
        .any(|l| l["location"]["path"] == folder.to_str().unwrap()));

    // Revoked: the next command is refused.
    let (code, _) = run(
        t.path(),
        "alpha",
        &["revoke", "beta", "manage", "--library", "Fam"],
    );
    assert_eq!(code, 0);
    let rescan = [
        "--on",
        "alpha",
        "location",
        "rescan",
        "alpha-music",
        "--library",
        "Fam",
    ];
    let (code, lines) = run(t.path(), "beta", &rescan);
    assert_eq!(code, 1, "{lines:?}");
    // Reading needs no grant (once alpha has indexed the folder).
    poll("beta lists alpha's folder on alpha", || {
        let (code, lines) = run(
            t.path(),
            "beta",
            &["--on", "alpha", "ls", "Fam", "alpha-music"],
        );
        code == 0 && lines.iter().any(|l| l["entry"]["name"] == "song.txt")
    });

    // Alpha's log: who did what, refused or not.
    let (code, lines) = run(t.path(), "alpha", &["grants", "Fam"]);
    assert_eq!(code, 0);
    let log: Vec<(String, bool)> = lines[0]["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["name"], "beta");
            (
                a["command"].as_str().unwrap().to_string(),
                a["outcome"] == "ok",
            )
        })
        .collect();
    for want in [
        ("add_location".to_string(), false),
        ("add_location".to_string(), true),
        ("rescan_location".to_string(), false),
        ("entries".to_string(), true),
    ] {
        assert!(log.contains(&want), "{want:?} not in {log:?}");
    }
    alpha.quit();
    beta.quit();
}
