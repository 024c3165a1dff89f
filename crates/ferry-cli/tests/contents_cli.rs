//! `ferry location` / `ferry ls` as real processes: indexing with a report, unreadable paths
//! skipped and named (run as `nobody`, since root reads anything), and a running node that
//! picks up a location added beside it and then sees changes live.

#[path = "support/proc.rs"]
mod proc;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use proc::NodeProc;
use serde_json::Value;

fn run(data: &Path, args: &[&str]) -> (i32, Vec<Value>) {
    let mut c = proc::loopback_node(data, "cli", "127.0.0.1:0");
    proc::json_output(c.arg("--json").args(args).output().unwrap())
}

fn of<'a>(lines: &'a [Value], ty: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == ty).collect()
}

#[test]
fn add_index_ls_and_a_running_node_picks_it_up() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let pics = t.path().join("pics");
    std::fs::create_dir_all(pics.join("sub")).unwrap();
    std::fs::write(pics.join("sub/a.txt"), b"hello").unwrap();
    std::fs::write(pics.join("b.bin"), vec![7u8; 100_000]).unwrap();
    let (code, _) = run(&data, &["library", "create", "Home"]);
    assert_eq!(code, 0);
    let (code, out) = run(
        &data,
        &[
            "location",
            "add",
            pics.to_str().unwrap(),
            "--library",
            "Home",
        ],
    );
    assert_eq!(code, 0, "{out:?}");
    let done = of(&out, "indexed")[0];
    assert_eq!(
        (done["seen"].as_u64(), done["identified"].as_u64()),
        (Some(3), Some(2)),
        "{done}"
    );
    let (code, out) = run(&data, &["ls", "Home", "pics/sub"]);
    assert_eq!(code, 0);
    let e = &of(&out, "entry")[0]["entry"];
    assert_eq!(e["name"], "a.txt");
    assert_eq!(
        e["cas"].as_str(),
        Some(blake3::hash(b"hello").to_hex().as_str())
    );
    let (code, _) = run(&data, &["ls", "Home", "nope"]);
    assert_eq!(code, 1);
    let (code, _) = run(
        &data,
        &[
            "location",
            "add",
            pics.join("sub").to_str().unwrap(),
            "--library",
            "Home",
        ],
    );
    assert_eq!(code, 1, "a location inside another is refused");

    // A running node indexes and watches; a second location added beside it is picked up.
    let mut node = NodeProc::spawn(proc::loopback_node(&data, "node", "127.0.0.1:0"));
    let more = t.path().join("more");
    std::fs::create_dir(&more).unwrap();
    let (code, _) = run(
        &data,
        &[
            "location",
            "add",
            "--no-index",
            more.to_str().unwrap(),
            "--library",
            "Home",
        ],
    );
    assert_eq!(code, 0);
    node.expect("location", Duration::from_secs(15), |l| {
        l["location"]["name"] == "more" && l["location"]["state"] == "done"
    });
    let t0 = Instant::now();
    std::fs::write(more.join("late.txt"), b"late").unwrap();
    loop {
        let (_, out) = run(&data, &["ls", "Home", "more", "--json"]);
        if of(&out, "entry")
            .iter()
            .any(|e| e["entry"]["name"] == "late.txt" && !e["entry"]["cas"].is_null())
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "not seen: {out:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "running node: a file written is listed with its content id after {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    node.quit();
}

#[test]
fn unreadable_files_and_folders_are_named_and_skipped() {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        eprintln!("SKIPPED: needs root (runuser)");
        return;
    }
    let t = tempfile::Builder::new()
        .prefix("ferry-unreadable")
        .tempdir_in("/tmp")
        .unwrap();
    let base = t.path();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o777)).unwrap();
    let pics = base.join("pics");
    std::fs::create_dir_all(pics.join("closed")).unwrap();
    std::fs::write(pics.join("closed/inside.txt"), b"x").unwrap();
    std::fs::write(pics.join("secret.txt"), b"s").unwrap();
    std::fs::write(pics.join("open.txt"), b"o").unwrap();
    let chown = |p: &Path| {
        Command::new("chown")
            .args(["-R", "nobody"])
            .arg(p)
            .status()
            .unwrap()
    };
    chown(&pics);
    std::fs::set_permissions(pics.join("closed"), std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(
        pics.join("secret.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let data = base.join("data");
    std::fs::create_dir(&data).unwrap();
    chown(&data);
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("runuser");
        c.args([
            "-u",
            "nobody",
            "--",
            env!("CARGO_BIN_EXE_ferry"),
            "--no-discovery",
            "--json",
            "--data-dir",
        ])
        .arg(&data)
        .args(args);
        proc::json_output(c.output().unwrap())
    };
    assert_eq!(as_nobody(&["library", "create", "L"]).0, 0);
    let (code, out) = as_nobody(&["location", "add", pics.to_str().unwrap(), "--library", "L"]);
    assert_eq!(code, 0, "{out:?}");
    let skipped: Vec<String> = of(&out, "skipped")
        .iter()
        .map(|s| format!("{} {}", s["path"], s["error"]))
        .collect();
    println!("skipped: {skipped:?}");
    assert!(
        skipped
            .iter()
            .any(|s| s.contains("closed") && s.contains("Permission denied")),
        "{skipped:?}"
    );
    assert!(
        skipped
            .iter()
            .any(|s| s.contains("secret.txt") && s.contains("Permission denied")),
        "{skipped:?}"
    );
    let (_, out) = as_nobody(&["ls", "L", "pics"]);
    let names: Vec<_> = of(&out, "entry")
        .iter()
        .map(|e| e["entry"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["closed", "open.txt", "secret.txt"],
        "rows stay, with their errors"
    );
    std::fs::set_permissions(pics.join("closed"), std::fs::Permissions::from_mode(0o755)).unwrap();
}
