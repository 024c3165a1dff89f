//! `ferry send` / `ferry receive` / `ferry transfers` as real processes on 127.0.0.1.

#[path = "support/proc.rs"]
mod proc;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proc::NodeProc;
use serde_json::Value;

fn base(dir: &Path, name: &str, listen: &str) -> Command {
    proc::loopback_node(&dir.join(name), name, listen)
}

/// `ferry … receive` as a NodeProc (its stdin answers prompts).
fn receiver(dir: &Path, listen: &str, extra: &[&str]) -> NodeProc {
    let mut c = base(dir, "beta", listen);
    c.arg("--dest").arg(dir.join("down")).args(extra);
    NodeProc::spawn_with(c, "receive")
}

/// Runs `ferry send` to completion, returning its exit code and JSON lines.
fn send(dir: &Path, to: &str, paths: &[&Path], extra: &[&str]) -> (i32, Vec<Value>) {
    let mut c = base(dir, "alpha", "127.0.0.1:0");
    c.args(extra)
        .arg("--json")
        .arg("send")
        .arg(to)
        .args(paths)
        .stdin(Stdio::null());
    proc::json_output(c.output().unwrap())
}

fn last_transfer(lines: &[Value]) -> Value {
    lines
        .iter()
        .rev()
        .find(|l| l["type"] == "transfer")
        .cloned()
        .unwrap_or(Value::Null)["transfer"]
        .clone()
}

fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = vec![];
    for e in walk(root) {
        let rel = e.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        v.push((
            rel,
            if e.is_file() {
                std::fs::read(&e).unwrap()
            } else {
                b"<dir>".to_vec()
            },
        ));
    }
    v.sort();
    v
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![];
    for c in std::fs::read_dir(p).unwrap() {
        let c = c.unwrap().path();
        v.push(c.clone());
        if c.is_dir() {
            v.extend(walk(&c));
        }
    }
    v
}

#[test]
fn send_a_folder_accept_on_stdin_and_list_it() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src/photos ✓");
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    std::fs::write(src.join("b.bin"), vec![9u8; 3_000_000]).unwrap();
    let mut b = receiver(t.path(), "127.0.0.1:0", &[]);
    let to = format!("127.0.0.1:{}", b.port());
    let sender = {
        let dir = t.path().to_path_buf();
        let src = src.clone();
        std::thread::spawn(move || send(&dir, &to, &[&src], &[]))
    };
    let prompt = b.expect("spacedrop_prompt", Duration::from_secs(10), |_| true);
    assert_eq!(prompt["prompt"]["peer_name"], "alpha");
    assert_eq!(prompt["prompt"]["files"], 2);
    b.send("y");
    b.expect("prompt_resolved", Duration::from_secs(5), |v| {
        v["outcome"] == "accepted"
    });
    let done = b.expect("transfer", Duration::from_secs(30), |v| {
        v["transfer"]["state"] == "done"
    });
    assert_eq!(done["transfer"]["files_done"], 2);
    let (code, lines) = sender.join().unwrap();
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(last_transfer(&lines)["state"], "done");
    assert_eq!(tree(&src), tree(&t.path().join("down/photos ✓")));

    // Both sides list it (the receiver's node is still running: the list reads its database).
    let out = base(t.path(), "beta", "127.0.0.1:0")
        .args(["--json", "transfers"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["transfers"][0]["state"], "done");
    assert_eq!(list["transfers"][0]["direction"], "receive");
    // A page at a time: this one is the last (no `next`), and nothing is older than its
    // transfer. The sender's list, read from its data dir alone, pages the same way.
    for who in ["beta", "alpha"] {
        let out = base(t.path(), who, "127.0.0.1:0")
            .args(["--json", "transfers", "--limit", "1"])
            .output()
            .unwrap();
        let page: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(page["transfers"].as_array().unwrap().len(), 1, "{page}");
        assert_eq!(page["next"], Value::Null, "{page}");
        let id = page["transfers"][0]["id"].as_str().unwrap();
        let out = base(t.path(), who, "127.0.0.1:0")
            .args(["transfers", "--before", &id[..8]])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("No older transfers."), "{text}");
    }
}

#[test]
fn reject_and_timeout_end_the_send_with_a_reason() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f.txt"), b"x").unwrap();
    let f = t.path().join("f.txt");
    let mut b = receiver(t.path(), "127.0.0.1:0", &["--prompt-timeout", "1s"]);
    let to = format!("127.0.0.1:{}", b.port());
    let sender = {
        let (dir, to, f) = (t.path().to_path_buf(), to.clone(), f.clone());
        std::thread::spawn(move || send(&dir, &to, &[&f], &[]))
    };
    b.expect("spacedrop_prompt", Duration::from_secs(10), |_| true);
    b.send("n");
    let (code, lines) = sender.join().unwrap();
    assert_eq!(code, 1);
    assert_eq!(last_transfer(&lines)["state"], "rejected");
    assert_eq!(last_transfer(&lines)["reason"], "the receiver declined");

    let t0 = Instant::now();
    let (code, lines) = send(t.path(), &to, &[&f], &[]);
    assert_eq!(code, 1);
    assert_eq!(last_transfer(&lines)["reason"], "no answer in time");
    println!("unanswered prompt: sender told after {:?}", t0.elapsed());
    assert!(!t.path().join("down/f.txt").exists());
}

#[test]
fn a_killed_receiver_resumes_where_it_stopped() {
    let t = tempfile::tempdir().unwrap();
    let big = t.path().join("big.bin");
    let data: Vec<u8> = (0..(192u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&big, &data).unwrap();
    let mut b = receiver(t.path(), "127.0.0.1:0", &["--yes"]);
    let addr = format!("127.0.0.1:{}", b.port());
    // The sender keeps redialing the receiver's address, so it finds the restarted one.
    let sender = {
        let (dir, addr, big) = (t.path().to_path_buf(), addr.clone(), big.clone());
        std::thread::spawn(move || send(&dir, &addr, &[&big], &["--connect", &addr]))
    };
    let half = (data.len() / 2) as u64;
    b.expect("transfer", Duration::from_secs(60), |v| {
        v["transfer"]["bytes_done"].as_u64().unwrap_or(0) > half / 2
    });
    b.kill9();
    let mut b2 = receiver(t.path(), &addr, &["--yes"]);
    let done = b2.expect("transfer", Duration::from_secs(60), |v| {
        v["transfer"]["state"] == "done"
    });
    let resumed = done["transfer"]["bytes_resumed"].as_u64().unwrap();
    let total = done["transfer"]["bytes_total"].as_u64().unwrap();
    println!(
        "killed receiver resumed with {resumed} of {total} bytes kept ({:.0}% re-sent)",
        (total - resumed) as f64 * 100.0 / total as f64
    );
    assert!(resumed > 0, "nothing was kept across the kill");
    let (code, lines) = sender.join().unwrap();
    assert_eq!(code, 0, "{:?}", last_transfer(&lines));
    assert_eq!(std::fs::read(t.path().join("down/big.bin")).unwrap(), data);
    let leftovers: Vec<_> = walk(&t.path().join("down"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `receive --once` exits as soon as its transfer is done; the sender must still learn it is
/// done (its last frame used to be lost with the receiver's connection). And `send ADDR
/// --connect ADDR` dials the same address twice at once; the loser of that race must not fail
/// the send.
#[test]
fn a_receiver_that_exits_at_once_still_finishes_the_sender() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f.txt"), b"once").unwrap();
    for round in 0..6 {
        let dest = t.path().join(format!("down-{round}"));
        let mut r = base(t.path(), "beta", "127.0.0.1:0");
        r.arg("--dest")
            .arg(&dest)
            .args(["--yes", "--json", "receive", "--once"])
            .stdout(Stdio::piped())
            .stdin(Stdio::null());
        let mut receiver = r.spawn().unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(receiver.stdout.as_mut().unwrap()),
            &mut first,
        )
        .unwrap();
        let started: Value = serde_json::from_str(&first).unwrap();
        let addr = started["listen"].as_str().unwrap().to_string();
        let t0 = Instant::now();
        let (code, lines) = send(
            t.path(),
            &addr,
            &[&t.path().join("f.txt")],
            &["--connect", &addr],
        );
        assert_eq!(code, 0, "round {round}: {:?}", last_transfer(&lines));
        assert!(receiver.wait().unwrap().success());
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "round {round} took {:?}",
            t0.elapsed()
        );
        assert_eq!(std::fs::read(dest.join("f.txt")).unwrap(), b"once");
    }
}

/// A source file the sender may not read (the sender runs as `nobody`; root reads anything):
/// the sender says which file and why, the receiver has every other file and no trace of that
/// one.
#[test]
fn an_unreadable_source_file_is_reported_and_the_rest_arrives() {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    if !root {
        assert!(std::env::var_os("CI").is_none(), "CI must run as root");
        eprintln!("SKIPPED: needs root to run the sender as another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("ok.txt"), b"anyone may read this").unwrap();
    std::fs::write(src.join("bell\u{7}.txt"), b"a control character: renamed").unwrap();
    std::fs::write(src.join("secret.txt"), b"root only").unwrap();
    std::fs::set_permissions(
        src.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mut b = receiver(t.path(), "127.0.0.1:0", &["--yes"]);
    let addr = format!("127.0.0.1:{}", b.port());
    let mut c = Command::new("runuser");
    c.args([
        "-u",
        "nobody",
        "--",
        env!("CARGO_BIN_EXE_ferry"),
        "--no-discovery",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(t.path().join("alpha"))
    .args(["--json", "send", &addr])
    .arg(&src)
    .stdin(Stdio::null());
    let (code, lines) = proc::json_output(c.output().unwrap());
    let end = last_transfer(&lines);
    println!(
        "unreadable source, sender sees: state {}, failed {}",
        end["state"], end["failed"]
    );
    assert_ne!(code, 0, "a file was not sent: {end}");
    let failed = end["failed"].as_array().expect("failed files listed");
    assert_eq!(failed.len(), 1, "{end}");
    assert!(
        failed[0]["path"].as_str().unwrap().ends_with("secret.txt"),
        "{end}"
    );
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("ermission denied"),
        "{end}"
    );
    b.expect("transfer", Duration::from_secs(10), |v| {
        v["transfer"]["state"]
            .as_str()
            .is_some_and(|s| s != "transferring" && s != "waiting")
    });
    let down = t.path().join("down/src");
    assert_eq!(
        std::fs::read(down.join("ok.txt")).unwrap(),
        b"anyone may read this"
    );
    assert!(!down.join("secret.txt").exists());
    let leftovers: Vec<_> = walk(&t.path().join("down"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // `transfers show`: every renamed and failed file, from each side's database (the
    // receiver's node still runs), by a prefix of the id.
    let id = end["id"].as_str().unwrap();
    let show = |side: &str, json: bool| {
        let mut c = base(t.path(), side, "127.0.0.1:0");
        if json {
            c.arg("--json");
        }
        let out = c.args(["transfers", "show", &id[..8]]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let got: Value = serde_json::from_str(&show("beta", true)).unwrap();
    assert_eq!(got["transfer"]["id"], id);
    let renamed = got["renamed"].as_array().unwrap();
    assert_eq!(renamed.len(), 1, "{got}");
    assert_eq!(renamed[0]["original"], "src/bell\u{7}.txt");
    let local = renamed[0]["local"].as_str().unwrap();
    assert_eq!(
        std::fs::read(t.path().join("down").join(local)).unwrap(),
        b"a control character: renamed"
    );
    let failed = got["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{got}");
    assert_eq!(failed[0]["path"], "src/secret.txt");
    let sent: Value = serde_json::from_str(&show("alpha", true)).unwrap();
    assert_eq!(
        sent["failed"], got["failed"],
        "the sender stored the same failure"
    );
    let text = show("beta", false);
    println!("{text}");
    assert!(
        text.contains("1 renamed (as sent → as saved here):"),
        "{text}"
    );
    // The peer's control character is shown escaped, never sent to the terminal.
    assert!(
        text.contains(&format!("src/bell\\u{{7}}.txt → {local}")),
        "{text}"
    );
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(text.contains("1 failed:\n  src/secret.txt — "), "{text}");
    let out = base(t.path(), "beta", "127.0.0.1:0")
        .args(["transfers", "show", "ffffffffff"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no transfer ffffffffff"));
}

/// What a new user met first: a missing source is named at once, before the peer is looked
/// for (it was named only after 4 s of dialing), and a receiver's folder that does not exist
/// is made at start, or refused at start, not at the first offer.
#[test]
fn missing_sources_and_folders_are_said_at_start() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nonexistent/file");
    let started = Instant::now();
    // Nothing answers at 127.0.0.1:9: looking for the peer first fails with "no answer".
    let (code, lines) = send(t.path(), "127.0.0.1:9", &[&missing], &[]);
    println!("missing source reported in {:?}", started.elapsed());
    assert_ne!(code, 0);
    let error = lines.iter().find(|l| l["type"] == "error").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("nonexistent/file") && error.contains("no such file or folder"),
        "{error}"
    );

    let new = t.path().join("new/down");
    let mut c = base(t.path(), "beta", "127.0.0.1:0");
    c.arg("--dest").arg(&new);
    let mut r = NodeProc::spawn_with(c, "receive");
    assert!(new.is_dir(), "the receiver made its folder at start");
    r.quit();

    let file = t.path().join("a file");
    std::fs::write(&file, b"x").unwrap();
    let mut c = base(t.path(), "gamma", "127.0.0.1:0");
    c.arg("--dest")
        .arg(file.join("down"))
        .args(["--json", "receive"])
        .stdin(Stdio::null());
    let (code, lines) = proc::json_output(c.output().unwrap());
    assert_ne!(code, 0);
    assert!(
        lines.iter().all(|l| l["type"] != "node_started"),
        "{lines:?}"
    );
    let error = lines.iter().find(|l| l["type"] == "error").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("cannot receive into"), "{error}");
}
