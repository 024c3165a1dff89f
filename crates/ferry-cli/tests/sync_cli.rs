//! Library sync between real `ferry` processes paired on the command line: `ferry ls` on one
//! member lists the other's location and a file made there, and a member killed in the middle
//! of its initial sync resumes with nothing missing and nothing twice. `ferry get` fetches a
//! member's folder, verified, and resumes after a kill.

#[path = "support/proc.rs"]
mod proc;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use proc::NodeProc;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn base(dir: &Path, name: &str) -> Command {
    proc::loopback_node(&dir.join(name), name, "127.0.0.1:0")
}

/// A node command with extra global options (e.g. `--connect ADDR`).
fn with(mut c: Command, args: &[&str]) -> Command {
    c.args(args);
    c
}

fn run(dir: &Path, name: &str, args: &[&str]) -> (i32, Vec<Value>) {
    proc::json_output(base(dir, name).arg("--json").args(args).output().unwrap())
}

/// Pairs beta (a running node, returned) into alpha's new library "Family".
fn paired(dir: &Path) -> NodeProc {
    assert_eq!(run(dir, "alpha", &["library", "create", "Family"]).0, 0);
    let mut beta = NodeProc::spawn(base(dir, "beta"));
    let addr = format!("{}@127.0.0.1:{}", beta.id(), beta.port());
    let mut pair =
        NodeProc::spawn_args(base(dir, "alpha"), &["pair", &addr, "--library", "Family"]);
    let confirm = |v: &Value| v["pairing"]["state"] == "confirm";
    pair.expect("pairing", WAIT, confirm);
    beta.expect("pairing", WAIT, confirm);
    beta.send("y");
    pair.send("y");
    pair.expect("pairing", WAIT, |v| v["pairing"]["state"] == "done");
    assert_eq!(pair.wait_exit(WAIT), 0);
    beta
}

/// `ferry ls` lines of type `ty` on `name`.
fn ls(dir: &Path, name: &str, args: &[&str], ty: &str) -> Vec<Value> {
    let mut a = vec!["ls", "Family"];
    a.extend_from_slice(args);
    let (_, lines) = run(dir, name, &a);
    lines.into_iter().filter(|l| l["type"] == ty).collect()
}

fn remote_location(dir: &Path, on: &str) -> Option<Value> {
    ls(dir, on, &[], "location")
        .into_iter()
        .find(|l| l["location"]["local"] == false)
}

fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, t.elapsed());
        }
        assert!(t.elapsed() < WAIT, "not within {WAIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_members_location_and_new_files_show_in_ferry_ls() {
    let t = tempfile::tempdir().unwrap();
    let mut beta = paired(t.path());
    let photos = t.path().join("Photos");
    std::fs::create_dir_all(photos.join("2026")).unwrap();
    std::fs::write(photos.join("2026/beach.jpg"), vec![5u8; 4000]).unwrap();
    assert_eq!(
        run(
            t.path(),
            "alpha",
            &[
                "location",
                "add",
                photos.to_str().unwrap(),
                "--library",
                "Family"
            ]
        )
        .0,
        0
    );
    let addr = format!("{}@127.0.0.1:{}", beta.id(), beta.port());
    let mut alpha = NodeProc::spawn(with(base(t.path(), "alpha"), &["--connect", &addr]));
    let (loc, took) = poll("alpha's location listed on beta", || {
        remote_location(t.path(), "beta")
    });
    println!(
        "alpha's location listed on beta after {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    let l = &loc["location"];
    assert_eq!(l["name"], "Photos");
    assert_eq!(l["owner_name"], "alpha");
    assert_eq!(l["files"], 1);
    let (_, text) = {
        let out = base(t.path(), "beta")
            .args(["ls", "Family"])
            .output()
            .unwrap();
        (0, String::from_utf8(out.stdout).unwrap())
    };
    assert!(text.contains("Photos on alpha ("), "{text}");

    // A file made on alpha is listed on beta, folder by folder, within a couple of seconds.
    std::fs::write(photos.join("2026/sunset.jpg"), vec![6u8; 9000]).unwrap();
    let made = Instant::now();
    let (entry, _) = poll("the new file on beta", || {
        ls(t.path(), "beta", &["Photos/2026"], "entry")
            .into_iter()
            .find(|e| e["entry"]["name"] == "sunset.jpg")
    });
    println!(
        "a new file on alpha listed by ferry ls on beta after {:.0} ms",
        made.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(entry["entry"]["size"], 9000);
    let (_, status) = run(t.path(), "beta", &["sync", "status", "Family"]);
    let alpha_row = status
        .iter()
        .find(|s| s["member"]["name"] == "alpha")
        .expect("alpha in sync status");
    assert_eq!(alpha_row["member"]["locations"], 1);
    alpha.quit();
    beta.quit();
}

#[test]
fn a_member_killed_mid_sync_resumes_with_no_row_missing_or_twice() {
    let t = tempfile::tempdir().unwrap();
    let mut beta = paired(t.path());
    let big = t.path().join("Big");
    for d in 0..100 {
        let dir = big.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..300 {
            std::fs::write(dir.join(format!("f{f:03}.txt")), format!("{d}/{f}")).unwrap();
        }
    }
    let (code, lines) = run(
        t.path(),
        "alpha",
        &[
            "location",
            "add",
            big.to_str().unwrap(),
            "--library",
            "Family",
        ],
    );
    assert_eq!(code, 0, "{lines:?}");
    let beta_port = beta.port();
    let addr = format!("{}@127.0.0.1:{beta_port}", beta.id());
    let mut alpha = NodeProc::spawn(with(base(t.path(), "alpha"), &["--connect", &addr]));
    let alpha_addr = format!("{}@127.0.0.1:{}", alpha.id(), alpha.port());
    // Kill beta in the middle of its first pull.
    let progress = beta.expect("sync", WAIT, |v| {
        let p = &v["progress"];
        p["state"] == "pulling"
            && p["received"].as_u64() > Some(0)
            && p["received"].as_u64() < p["total"].as_u64()
    });
    beta.kill9();
    let (_, status) = run(t.path(), "beta", &["sync", "status", "Family"]);
    let held = status
        .iter()
        .find(|s| s["member"]["name"] == "alpha")
        .map(|s| s["member"]["entries"].as_u64().unwrap_or(0))
        .unwrap_or(0);
    println!(
        "killed beta at {} of {} changes; {held} entries held",
        progress["progress"]["received"], progress["progress"]["total"]
    );
    assert!(held < 30_100, "the kill came before the end");
    let mut beta = NodeProc::spawn(with(base(t.path(), "beta"), &["--connect", &alpha_addr]));
    let want = 30_100u64;
    let (_, took) = poll("beta holds all of alpha's rows", || {
        let l = remote_location(t.path(), "beta")?;
        let n = l["location"]["files"].as_u64()? + l["location"]["folders"].as_u64()?;
        (n == want).then_some(())
    });
    println!(
        "the restarted beta caught up in {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    // Every path once, and the same as on alpha.
    for d in [0, 57, 99] {
        let folder = format!("Big/d{d:03}");
        let on_beta = ls(t.path(), "beta", &[&folder], "entry");
        let on_alpha = ls(t.path(), "alpha", &[&folder], "entry");
        assert_eq!(on_beta.len(), 300);
        assert_eq!(on_beta, on_alpha);
    }
    alpha.quit();
    beta.quit();
}

#[test]
fn ferry_get_fetches_a_members_folder_verified_and_resumes_after_a_kill() {
    let t = tempfile::tempdir().unwrap();
    let mut beta = paired(t.path());
    let photos = t.path().join("Photos");
    std::fs::create_dir_all(photos.join("trip/raw")).unwrap();
    // Large enough that a kill lands mid-file; sparse, so making it costs no disk.
    let big = std::fs::File::create(photos.join("trip/raw/video.mov")).unwrap();
    big.set_len(400 << 20).unwrap();
    std::fs::write(photos.join("trip/a.txt"), b"first").unwrap();
    std::fs::write(photos.join("trip/raw/b.txt"), vec![7u8; 70_000]).unwrap();
    let add = [
        "location",
        "add",
        photos.to_str().unwrap(),
        "--library",
        "Family",
    ];
    assert_eq!(run(t.path(), "alpha", &add).0, 0);
    let addr = format!("{}@127.0.0.1:{}", beta.id(), beta.port());
    let mut alpha = NodeProc::spawn(with(base(t.path(), "alpha"), &["--connect", &addr]));
    poll("alpha's folder listed on beta", || {
        ls(t.path(), "beta", &["Photos/trip/raw"], "entry")
            .into_iter()
            .find(|e| e["entry"]["name"] == "video.mov" && e["entry"]["cas"].is_string())
    });
    beta.quit();

    // `ferry get` on beta, a one-shot process that reaches alpha by address; killed once it
    // has fetched part of the video.
    let alpha_addr = format!("{}@127.0.0.1:{}", alpha.id(), alpha.port());
    let dest = t.path().join("Downloads");
    let args = ["get", "Family", "Photos/trip", dest.to_str().unwrap()];
    let get = || with(base(t.path(), "beta"), &["--connect", &alpha_addr]);
    let mut first = NodeProc::spawn_args(get(), &args);
    first.expect("get", WAIT, |v| {
        v["progress"]["bytes"].as_u64().unwrap_or(0) > (20 << 20)
    });
    first.kill9();
    let parts: Vec<_> = std::fs::read_dir(dest.join("trip/raw"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        parts
            .iter()
            .any(|n| n.starts_with(".video.mov.") && n.ends_with(".ferry-part")),
        "a part file, no final file yet: {parts:?}"
    );
    assert!(!dest.join("trip/raw/video.mov").exists());

    // Again: it resumes, verifies and places everything.
    let (code, lines) = proc::json_output(get().arg("--json").args(args).output().unwrap());
    assert_eq!(code, 0, "{lines:?}");
    let done = lines.iter().find(|l| l["type"] == "got").expect("a report");
    assert_eq!(done["report"]["files"], 3);
    assert!(
        done["report"]["resumed"].as_u64().unwrap() > (20 << 20),
        "{done}"
    );
    let video = std::fs::metadata(dest.join("trip/raw/video.mov")).unwrap();
    assert_eq!(video.len(), 400 << 20);
    assert_eq!(std::fs::read(dest.join("trip/a.txt")).unwrap(), b"first");
    assert_eq!(
        std::fs::read(dest.join("trip/raw/b.txt")).unwrap(),
        vec![7u8; 70_000]
    );
    let leftovers: Vec<_> = walk(&dest)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".ferry-part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    alpha.quit();
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
